// bnorm_bench_variants: the staged variant (the executable specification, one materialised
// stage per step) against the fused one, float32 NCHW. The gap is what the closed form and the
// single sweep per channel buy.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include <string>

#include "passes.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

constexpr double kEps = 1e-5;

void staged_forward_training(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto y = output_view(ws.y.data(), s);
  for (auto _ : state) {
    auto cache = bnorm::staged::forward_training<float>(x, ws.weight, ws.bias, kEps, y);
    benchmark::DoNotOptimize(cache);
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::fwd_train, s, sizeof(float)));
}

void staged_backward(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto cache = bnorm::staged::forward_training<float>(
      input_view(ws.x.data(), s), ws.weight, ws.bias, kEps, output_view(ws.y.data(), s));
  const auto dy = input_view(ws.dy.data(), s);
  const auto dx = output_view(ws.dx.data(), s);
  Eigen::ArrayXf dweight(s.c), dbias(s.c);
  for (auto _ : state) {
    bnorm::staged::backward<float>(cache, dy, dx, dweight, dbias);
    benchmark::DoNotOptimize(dweight.data());
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::bwd, s, sizeof(float)));
}

void fused_forward_training(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto y = output_view(ws.y.data(), s);
  for (auto _ : state) {
    auto stats = bnorm::fused::forward_training<float>(x, ws.weight, ws.bias, kEps, y);
    benchmark::DoNotOptimize(stats.invstd.data());
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::fwd_train, s, sizeof(float)));
}

void fused_backward(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto stats = bnorm::fused::forward_training<float>(x, ws.weight, ws.bias, kEps,
                                                           output_view(ws.y.data(), s));
  const auto dy = input_view(ws.dy.data(), s);
  const auto dx = output_view(ws.dx.data(), s);
  Eigen::ArrayXf dweight(s.c), dbias(s.c);
  for (auto _ : state) {
    bnorm::fused::backward<float>(x, dy, ws.weight, stats, dx, dweight, dbias);
    benchmark::DoNotOptimize(dweight.data());
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::bwd, s, sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
  return run_benchmarks(argc, argv, [] {
    for (const Shape& s : variant_shapes()) {
      add_benchmark(bench_name("fwd_train", "staged", s), s,
                    [s](benchmark::State& st) { staged_forward_training(st, s); });
      add_benchmark(bench_name("fwd_train", "fused", s), s,
                    [s](benchmark::State& st) { fused_forward_training(st, s); });
      add_benchmark(bench_name("bwd", "staged", s), s,
                    [s](benchmark::State& st) { staged_backward(st, s); });
      add_benchmark(bench_name("bwd", "fused", s), s,
                    [s](benchmark::State& st) { fused_backward(st, s); });
    }
  });
}
