// bnorm_bench_kernels: the halves of the fused passes, each timed in turn with the faster floor
// of its pass (paired.hpp, pass_floor.hpp), to see where a pass's time over the floor goes: the
// statistics and the normalisation of training forward, the sums and the input gradient of
// backward. float32 NCHW, the shapes of bnorm_bench. Each benchmark carries floor_ms and per_floor
// (its time over the floor's, the same iterations): the per_floor of a pass's two halves add up to
// about the pass's /floor in bnorm_bench. Not part of scripts/bench: run it directly, e.g.
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
namespace detail = bnorm::detail;

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

// One half of a pass over the whole tensor, as the passes split it: the reductions over the
// plan's (block, chunk) pieces, the elementwise halves over images. Per-channel constants are
// fixed values here; the kernels' cost does not depend on them.
void run_half(benchmark::State& state, const Shape& s, Half half) {
  Workspace& ws = workspace(s);
  const auto x = input_view(ws.x.data(), s), dy = input_view(ws.dy.data(), s);
  const auto y = output_view(ws.y.data(), s), dx = output_view(ws.dx.data(), s);
  const bool backward = half == Half::grad_sums || half == Half::grad_input;
  const detail::Plan plan(x, sizeof(float), backward ? 3 : 2);
  const auto channels = static_cast<std::size_t>(s.c);
  std::vector<detail::Moments> moments(channels);
  std::vector<double> mean(channels, 0.5), scale(channels, 1.25), shift(channels, 0.25),
      sums(2 * channels);
  const auto kernel = [&] {
    switch (half) {
      case Half::moments:
        detail::channel_moments(x, plan, moments.data());
        break;
      case Half::normalise:
        detail::for_each_elementwise_piece(
            plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
              detail::normalise(x, y, c0, c1, n0, n1, mean.data(), scale.data(), shift.data(),
                                plan.stream);
            });
        break;
      case Half::grad_sums:
        detail::channel_grad_sums(x, dy, plan, mean.data(), sums.data(), sums.data() + s.c);
        break;
      case Half::grad_input:
        detail::for_each_elementwise_piece(
            plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
              detail::grad_input(x, dy, dx, c0, c1, n0, n1, mean.data(), scale.data(), shift.data(),
                                 scale.data(), plan.stream);
            });
        break;
    }
    benchmark::ClobberMemory();
  };
  const Store store = faster_floor_store(ws, backward);
  const double ms =
      time_in_turn(state, kernel, "floor_ms", [&] { pass_floor(ws, backward, store); });
  // the kernel's mean time per call over the floor's, the same iterations
  state.counters["per_floor"] = ms / state.counters["floor_ms"];
  // The half's own traffic: x (statistics); x, y (normalisation); x, dy (sums); x, dy, dx.
  const int tensors = half == Half::moments ? 1 : half == Half::grad_input ? 3 : 2;
  set_traffic_counters(state, tensors * static_cast<double>(s.size()) * sizeof(float));
}

}  // namespace

int main(int argc, char** argv) {
  return run_benchmarks(argc, argv, [] {
    for (const Shape& s : resnet_shapes())
      for (Half h : {Half::moments, Half::normalise, Half::grad_sums, Half::grad_input})
        add_benchmark(
            bench_name(half_name(h), "bnorm", s), s,
            [s, h](benchmark::State& state) { run_half(state, s, h); }, Timing::manual);
  });
}
