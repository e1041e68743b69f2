// bnorm_bench: the fused kernels against the bandwidth floors and the peer libraries, float32 NCHW.
// Benchmark ids are "<pass>/<implementation>/<NxCxHxW>"; bench/report.py turns the JSON output
// into one table of ratios.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstddef>
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

// Calls f once untimed, then once timed, and returns the milliseconds of the timed call. The
// untimed call leaves the caches (and the OpenMP team) as f finds them in a loop of its own,
// whatever ran before it: a non-temporal-store kernel, for one, evicts the lines that a
// regular-store kernel would find cached.
template <class F>
double warm_ms(const F& f) {
  f();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  benchmark::ClobberMemory();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Times a bnorm pass and its floor in turn, sample by sample, so that the machine's drift (2x
// from minute to minute on shared machines) moves both alike: the benchmark's time is bnorm's
// (manual time), and counters carry the floor of the same samples, floor_ms per call and
// floor_nt (1 when its stores are non-temporal). The floor's stores are those of the faster
// floor, found by timing each a few times in turn.
template <class Pass, class Floor>
void paired_with_floor(benchmark::State& state, double bytes_per_call, const Pass& pass,
                       const Floor& floor) {
  double regular = 1e300, nontemporal = 1e300;
  for (int round = 0; round < 3; ++round) {
    regular = std::min(regular, warm_ms([&] { floor(Store::regular); }));
    nontemporal = std::min(nontemporal, warm_ms([&] { floor(Store::nontemporal); }));
  }
  const Store store = nontemporal < regular ? Store::nontemporal : Store::regular;
  double floor_ms = 0;
  for (auto _ : state) {
    floor_ms += warm_ms([&] { floor(store); });
    state.SetIterationTime(warm_ms(pass) * 1e-3);
  }
  state.counters["floor_ms"] = floor_ms / static_cast<double>(state.iterations());
  state.counters["floor_nt"] = store == Store::nontemporal ? 1 : 0;
  set_traffic_counters(state, bytes_per_call);
}

void fused_forward_training(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto y = output_view(ws.y.data(), s);
  paired_with_floor(
      state, minimal_bytes(Pass::fwd_train, s, sizeof(float)),
      [&] {
        auto stats = bnorm::fused::forward_training<float>(x, ws.weight, ws.bias, kEps, y);
        benchmark::DoNotOptimize(stats.invstd.data());
      },
      [&](Store st) { floor_forward(ws.x.data(), 0.75f, 0.25f, ws.y.data(), s.size(), st); });
}

void fused_forward_inference(benchmark::State& state, const Shape& s) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s);
  const auto y = output_view(ws.y.data(), s);
  paired_with_floor(
      state, minimal_bytes(Pass::fwd_infer, s, sizeof(float)),
      [&] {
        bnorm::fused::forward_inference<float>(x, ws.weight, ws.bias, ws.running_mean,
                                               ws.running_var, kEps, y);
      },
      [&](Store st) { floor_forward(ws.x.data(), 0.75f, 0.25f, ws.y.data(), s.size(), st); });
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
  paired_with_floor(
      state, minimal_bytes(Pass::bwd, s, sizeof(float)),
      [&] {
        bnorm::fused::backward<float>(x, dy, ws.weight, stats, dx, dweight, dbias);
        benchmark::DoNotOptimize(dweight.data());
      },
      [&](Store st) {
        floor_backward(ws.x.data(), ws.dy.data(), 0.75f, ws.dx.data(), s.size(), st);
      });
}

// Per shape: the bnorm passes, each timed against its floor, then the peers.
void register_shape(const Shape& s, const std::vector<Peer>& peers) {
  add_benchmark(
      bench_name("fwd_train", "bnorm", s), s,
      [s](benchmark::State& state) { fused_forward_training(state, s); }, Timing::manual);
  add_benchmark(
      bench_name("fwd_infer", "bnorm", s), s,
      [s](benchmark::State& state) { fused_forward_inference(state, s); }, Timing::manual);
  add_benchmark(
      bench_name("bwd", "bnorm", s), s, [s](benchmark::State& state) { fused_backward(state, s); },
      Timing::manual);
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
