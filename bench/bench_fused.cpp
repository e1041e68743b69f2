// bnorm_bench: the fused kernels against the bandwidth floors and the peer libraries, float32 NCHW.
// Benchmark ids are "<pass>/<implementation>/<NxCxHxW>"; bench/report.py turns the JSON output
// into one table of ratios.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <string>
#include <vector>

#include "floor_kernels.hpp"
#include "machine.hpp"
#include "passes.hpp"
#include "peers.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

constexpr double kEps = 1e-5;

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

void fused_forward_inference(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto y = output_view(ws.y.data(), s);
  for (auto _ : state) {
    bnorm::fused::forward_inference<float>(x, ws.weight, ws.bias, ws.running_mean, ws.running_var,
                                           kEps, y);
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::fwd_infer, s, sizeof(float)));
}

void fused_backward(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto dy = input_view(ws.dy.data(), s);
  const auto dx = output_view(ws.dx.data(), s);
  // Statistics come from the forward pass, outside the timed loop, as in training.
  const auto stats = bnorm::fused::forward_training<float>(x, ws.weight, ws.bias, kEps,
                                                           output_view(ws.y.data(), s));
  Eigen::ArrayXf dweight(s.c), dbias(s.c);
  for (auto _ : state) {
    bnorm::fused::backward<float>(x, dy, ws.weight, stats, dx, dweight, dbias);
    benchmark::DoNotOptimize(dweight.data());
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::bwd, s, sizeof(float)));
}

void floor_fwd(benchmark::State& state, const Shape& s, Store store) {
  Workspace& ws = workspace(s);
  for (auto _ : state) {
    floor_forward(ws.x.data(), 0.75f, 0.25f, ws.y.data(), s.size(), store);
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::fwd_train, s, sizeof(float)));
}

void floor_bwd(benchmark::State& state, const Shape& s, Store store) {
  Workspace& ws = workspace(s);
  for (auto _ : state) {
    floor_backward(ws.x.data(), ws.dy.data(), 0.75f, ws.dx.data(), s.size(), store);
    benchmark::ClobberMemory();
  }
  set_traffic_counters(state, minimal_bytes(Pass::bwd, s, sizeof(float)));
}

// Per shape: each floor next to the bnorm passes it bounds, then the peers, so a drift in the
// machine's speed during the run moves a kernel and its floor together.
void register_shape(const Shape& s, const std::vector<Peer>& peers) {
  for (Store st : {Store::regular, Store::nontemporal})
    add_benchmark(bench_name("floor_fwd", store_name(st), s), s,
                  [s, st](benchmark::State& state) { floor_fwd(state, s, st); });
  add_benchmark(bench_name("fwd_train", "bnorm", s), s,
                [s](benchmark::State& state) { fused_forward_training(state, s); });
  add_benchmark(bench_name("fwd_infer", "bnorm", s), s,
                [s](benchmark::State& state) { fused_forward_inference(state, s); });
  for (Store st : {Store::regular, Store::nontemporal})
    add_benchmark(bench_name("floor_bwd", store_name(st), s), s,
                  [s, st](benchmark::State& state) { floor_bwd(state, s, st); });
  add_benchmark(bench_name("bwd", "bnorm", s), s,
                [s](benchmark::State& state) { fused_backward(state, s); });
  for (const Peer& p : peers) p.register_shape(s);
}

int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  const std::vector<Peer> peers = available_peers();
#if defined(BNORM_VERSION_MAJOR)
  benchmark::AddCustomContext("bnorm_version", std::to_string(BNORM_VERSION_MAJOR) + "." +
                                                   std::to_string(BNORM_VERSION_MINOR) + "." +
                                                   std::to_string(BNORM_VERSION_PATCH));
#endif
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("omp_threads", std::to_string(max_threads()));
  benchmark::AddCustomContext("floor_simd", floor_simd());
  for (const Peer& p : peers) benchmark::AddCustomContext(p.name + "_version", p.version);

  for (const Shape& s : resnet_shapes()) register_shape(s, peers);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
