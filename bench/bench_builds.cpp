// bnorm_bench_builds: the kernels of a default build against the same kernels compiled with
// -march=native, timed in turn in one process (paired.hpp), pass by pass on the shapes of
// bnorm_bench. A build of the benchmarks is one or the other, and two scripts/bench runs differ
// by the drift of the machine (2x from minute to minute here) more than by the flags; timed in
// turn, the ratio survives the drift. The counter per_native is the default build's time over
// the native build's (above 1: the flag gains). Not part of scripts/bench: run it directly, e.g.
//   OMP_NUM_THREADS=2 build-bench/bench/bnorm_bench_builds --benchmark_repetitions=5
// Both run the kernel set bnorm::isa() selects (BNORM_ISA chooses another).

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include "build_kernels.hpp"
#include "paired.hpp"
#include "passes.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

void default_against_native(benchmark::State& state, const Shape& s, Pass pass) {
  Workspace& ws = workspace(s);
  // Sized here, so the native unit's resize is a no-op: Eigen's allocator follows the unit's
  // vector flags, and an array must be freed by the unit that allocated it.
  Eigen::ArrayXf dweight(s.c), dbias(s.c);
  bnorm::fused::BatchStatistics stats;
  const PassArguments a{input_view(ws.x.data(), s),
                        input_view(ws.dy.data(), s),
                        output_view(ws.y.data(), s),
                        output_view(ws.dx.data(), s),
                        ws.weight,
                        ws.bias,
                        ws.running_mean,
                        ws.running_var,
                        stats,
                        dweight,
                        dbias};
  if (pass == Pass::bwd)
    stats = bnorm::fused::forward_training<float>(a.x, ws.weight, ws.bias, 1e-5, a.y);
  const double ms = time_in_turn(
      state, [&] { run_kernels(pass, a); }, "native_ms", [&] { run_native_kernels(pass, a); });
  // the default build's mean time per call over the native build's, the same iterations
  state.counters["per_native"] = ms / state.counters["native_ms"];
  set_traffic_counters(state, minimal_bytes(pass, s, sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
  return run_benchmarks(argc, argv, [] {
    for (const Shape& s : bench_shapes())
      for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd})
        add_benchmark(
            bench_name(pass_name(pass), "default_vs_native", s), s,
            [s, pass](benchmark::State& state) { default_against_native(state, s, pass); },
            Timing::manual);
  });
}
