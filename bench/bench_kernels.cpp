// bnorm_bench_kernels: the halves of the fused passes, each timed in turn with the faster floor
// of its pass (paired.hpp, pass_floor.hpp), to see where a pass's time over the floor goes: the
// statistics and the normalisation of training forward, the sums and the input gradient of
// backward. float32, the shapes of bnorm_bench. Each benchmark carries floor_ms and per_floor
// (its time over the floor's, the same iterations): the per_floor of a pass's two halves add up to
// about the pass's /floor in bnorm_bench. Implementation "bnorm" for NCHW views, "bnorm_nhwc" for
// channels-last ones. Not part of scripts/bench: run it directly, e.g.
//   OMP_NUM_THREADS=2 build-bench/bench/bnorm_bench_kernels --benchmark_filter=7x7
// The kernels are bnorm::detail internals; their names and signatures may change.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include <string>
#include <vector>

#include "paired.hpp"
#include "pass_floor.hpp"
#include "passes.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

enum class Half { moments, normalise, grad_sums, grad_input };

const char* half_name(Half h) {
  switch (h) {
    case Half::moments:
      return "moments";
    case Half::normalise:
      return "normalise";
    case Half::grad_sums:
      return "grad_sums";
    case Half::grad_input:
      return "grad_input";
  }
  return "?";
}

namespace on_sse2 {
namespace detail = bnorm::detail::baseline;
#include "kernel_halves.inc"
}  // namespace on_sse2
// The sets this unit compiled (all, unless BNORM_MAX_ISA leaves some out: dispatch.hpp).
#if BNORM_DETAIL_HAS_AVX2_SET
namespace on_avx2 {
namespace detail = bnorm::detail::avx2;
#include "kernel_halves.inc"
}  // namespace on_avx2
#endif
#if BNORM_DETAIL_HAS_AVX512_SET
namespace on_avx512 {
namespace detail = bnorm::detail::avx512;
#include "kernel_halves.inc"
}  // namespace on_avx512
#endif

// The half with the kernels of the instruction set in use (bnorm::isa()), or of the widest
// this unit has below it.
void run_half(benchmark::State& state, const Shape& s, Half half, Layout layout) {
  const auto isa = bnorm::detail::selected_isa();
#if BNORM_DETAIL_HAS_AVX512_SET
  if (isa == bnorm::detail::Isa::avx512) return on_avx512::run_half_with(state, s, half, layout);
#endif
#if BNORM_DETAIL_HAS_AVX2_SET
  if (isa != bnorm::detail::Isa::baseline) return on_avx2::run_half_with(state, s, half, layout);
#endif
  (void)isa;
  return on_sse2::run_half_with(state, s, half, layout);
}

}  // namespace

int main(int argc, char** argv) {
  return run_benchmarks(argc, argv, [] {
    for (const Shape& s : bench_shapes())
      for (Layout layout : {Layout::nchw, Layout::nhwc})
        for (Half h : {Half::moments, Half::normalise, Half::grad_sums, Half::grad_input})
          add_benchmark(
              bench_name(half_name(h), impl_name("bnorm", layout), s), s,
              [s, h, layout](benchmark::State& state) { run_half(state, s, h, layout); },
              Timing::manual);
  });
}
