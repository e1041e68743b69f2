// The table of BatchNorm with an activation (issue 15), float32, NCHW: bnorm_bench registers
// these after its own rows (scripts/bench prints the table after the layout tables), and the
// standalone bnorm_bench_activation (built with BNORM_BENCH_ACTIVATION_MAIN) runs them alone,
// with scripts/bench's settings and report:
//   OMP_NUM_THREADS=2 build-bench/bench/bnorm_bench_activation --benchmark_repetitions=5
//     --benchmark_min_time=0.15 --benchmark_min_warmup_time=0.05
//     --benchmark_out=act.json --benchmark_out_format=json; python3 bench/report.py act.json
//
// On the ResNet-50 shapes at batch 32, per direction, one benchmark times in turn (paired.hpp),
// sample by sample: BatchNorm2d alone, BN + ReLU, BN + residual + ReLU (the benchmark's own
// time), the floor of BN + residual + ReLU's traffic and, on three shapes, BN followed by a
// separate ReLU (and add) pass:
//   act_fwd/bnorm/<shape>  training forward: fused::forward_training with Activation::none
//     (bn_ms), ::relu (relu_ms), and with the residual and ::relu; floor (floor_ms):
//     y = a * x + r, read x and r, write y (floor_kernels.hpp's backward floor with y as its
//     output); separate: fused::forward_training, then y = max(y, 0) (sep_relu_ms) or
//     y = max(y + r, 0) (sep_add_relu_ms) in place over y.
//   act_bwd/bnorm/<shape>  backward: fused::backward (bn_ms); BatchNorm2d's backward after a
//     forward with ReLU (relu_ms; the module as users call it, which gates dy itself), and
//     after forward(x, residual, y) with ReLU, with dresidual; floor: dx = a * x + dy and
//     dr = a * y + dy, read x, dy, y, write dx, dr; separate (sep_ms): g = y > 0 ? dy : 0 into
//     a tensor of its own, then fused::backward with dy = g (the add's backward is the identity,
//     so this serves both ReLU and add + ReLU).
// The residual is the workspace's dy tensor; dresidual and the separate g a fifth tensor. Floors
// and the separate gate take the faster of regular and non-temporal stores, chosen at the start
// of each repetition as bnorm_bench's floors are; the separate in-place passes use regular
// stores (they write the lines they have just read).
//
// Then one BatchNorm1d shape (NCLView 256x4096x1) and one BatchNorm3d shape (NCDHWView
// 8x64x16x56x56), no activation: fwd_train, fwd_infer and bwd, each timed in turn with its
// floor as bnorm_bench's rows are (implementations "bnorm1d" and "bnorm3d").

#include "bench_activation.hpp"

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include <string>
#include <vector>

#include "bnorm_passes.hpp"
#include "buffers.hpp"
#include "floor_kernels.hpp"
#include "paired.hpp"
#include "pass_floor.hpp"
#include "passes.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace bnorm_bench {
namespace {

constexpr double kEps = BnormPass::kEps;
constexpr float kFloorA = 0.75f;

double tensor_bytes(const Shape& s) {
  return static_cast<double>(s.size()) * sizeof(float);
}

// A tensor of shape s besides the workspace's four (dresidual, the separate pass's g), written
// once so that no timed call pays for first-touch page faults. Kept for one shape at a time.
float* fifth_tensor(const Shape& s) {
  static AlignedBuffer<float> buffer;
  static Shape shape{0, 0, 0, 0};
  if (shape != s) {
    buffer = AlignedBuffer<float>();  // free the old one first
    buffer = AlignedBuffer<float>(s.size());
    fill_uniform(buffer.data(), s.size(), 9, 0.0, 0.0);
    shape = s;
  }
  return buffer.data();
}

void set_store_counter(benchmark::State& state, const char* name, Store store) {
  state.counters[name] = store == Store::nontemporal ? 1 : 0;
}

// act_fwd: BN alone, BN + ReLU and the separate passes as references, BN + residual + ReLU as
// the subject.
void activation_forward(benchmark::State& state, const Shape& s, bool separate) {
  Workspace& ws = workspace(s);
  const index_t n = s.size();
  const auto x = input_view(ws.x.data(), s), r = input_view(ws.dy.data(), s);
  const auto y = output_view(ws.y.data(), s);
  const BnormPass bn(ws, Pass::fwd_train);
  const auto forward = [&](bnorm::Activation act, bool residual) {
    const bnorm::fused::BatchStatistics stats =
        residual ? bnorm::fused::forward_training<float>(x, r, ws.weight, ws.bias, kEps, y, act)
                 : bnorm::fused::forward_training<float>(x, ws.weight, ws.bias, kEps, y, act);
    benchmark::DoNotOptimize(stats.invstd.data());
    benchmark::ClobberMemory();
  };
  // y = a * x + r: read x and r, write y
  const auto floor_pass = [&](Store store) {
    floor_backward(ws.x.data(), ws.dy.data(), kFloorA, ws.y.data(), n, store);
  };
  const Store store = faster_store(floor_pass);
  std::vector<Reference> references{{"bn_ms", [&] { bn(); }},
                                    {"relu_ms", [&] { forward(bnorm::Activation::relu, false); }},
                                    {"floor_ms", [&] { floor_pass(store); }}};
  if (separate) {
    references.emplace_back("sep_relu_ms", [&] {
      bn();
      separate_relu(ws.y.data(), n);
      benchmark::ClobberMemory();
    });
    references.emplace_back("sep_add_relu_ms", [&] {
      bn();
      separate_relu_add(ws.y.data(), ws.dy.data(), n);
      benchmark::ClobberMemory();
    });
  }
  time_with_references(
      state, [&] { forward(bnorm::Activation::relu, true); }, references);
  set_store_counter(state, "floor_nt", store);
  set_traffic_counters(state, 3 * tensor_bytes(s));  // x, r, y
}

// act_bwd: BN's backward alone, BatchNorm2d's backward through ReLU and the separate gate + BN
// backward as references, its backward through residual + ReLU (with dresidual) as the subject.
void activation_backward(benchmark::State& state, const Shape& s, bool separate) {
  Workspace& ws = workspace(s);
  float* dr_data = fifth_tensor(s);
  const index_t n = s.size();
  const auto x = input_view(ws.x.data(), s), dy = input_view(ws.dy.data(), s);
  const auto y = output_view(ws.y.data(), s), dx = output_view(ws.dx.data(), s),
             dr = output_view(dr_data, s);
  const BnormPass bn(ws, Pass::bwd);
  const bnorm::fused::BatchStatistics stats =
      bnorm::fused::forward_training<float>(x, ws.weight, ws.bias, kEps, y);

  bnorm::Options options;
  options.eps = kEps;
  options.activation = bnorm::Activation::relu;
  bnorm::BatchNorm2d<float> relu(s.c, options), add_relu(s.c, options);
  for (bnorm::BatchNorm2d<float>* m : {&relu, &add_relu}) {
    m->weight() = ws.weight;
    m->bias() = ws.bias;
  }
  // Both keep a view of y for their backward's gate: the last forward's y serves both (the
  // gate's cost does not depend on which values pass).
  const auto relu_saved = relu.forward(x, y);
  const auto add_relu_saved = add_relu.forward(x, dy, y);  // the residual is dy's tensor

  // dx = a * x + dy, dr = a * y + dy: read x, dy, y, write dx, dr
  const auto floor_pass = [&](Store store) {
    floor_backward2(ws.x.data(), ws.dy.data(), ws.y.data(), kFloorA, ws.dx.data(), dr_data, n,
                    store);
  };
  const Store store = faster_store(floor_pass);
  std::vector<Reference> references{{"bn_ms", [&] { bn(); }},
                                    {"relu_ms",
                                     [&] {
                                       relu.backward(relu_saved, dy, dx);
                                       benchmark::DoNotOptimize(relu.weight_grad().data());
                                       benchmark::ClobberMemory();
                                     }},
                                    {"floor_ms", [&] { floor_pass(store); }}};
  Eigen::ArrayXf dweight, dbias;
  if (separate) {
    const auto gate = [&](Store st) {
      separate_relu_gate(ws.y.data(), ws.dy.data(), dr_data, n, st);
    };
    const Store gate_store = faster_store(gate);
    references.emplace_back("sep_ms", [&, gate, gate_store] {
      gate(gate_store);
      bnorm::fused::backward<float>(x, dr, ws.weight, stats, dx, dweight, dbias);
      benchmark::DoNotOptimize(dweight.data());
      benchmark::ClobberMemory();
    });
    set_store_counter(state, "sep_nt", gate_store);
  }
  time_with_references(
      state,
      [&] {
        add_relu.backward(add_relu_saved, dy, dx, dr);
        benchmark::DoNotOptimize(add_relu.weight_grad().data());
        benchmark::ClobberMemory();
      },
      references);
  set_store_counter(state, "floor_nt", store);
  set_traffic_counters(state, 5 * tensor_bytes(s));  // x, dy, y, dx, dresidual
}

// A BatchNorm1d or BatchNorm3d shape: the view kind V, its name in benchmark ids, and the NCHW
// shape of the same size and channels that sizes the workspace.
template <template <class> class V>
struct OtherRank {
  std::string name;
  Shape buffers;
  V<float> (*view)(float* p);
};

// fwd_train, fwd_infer or bwd on a rank-3 or rank-5 view, timed in turn with its pass's floor,
// as bnorm_bench's bnorm rows are.
template <template <class> class V>
void other_rank_against_floor(benchmark::State& state, const OtherRank<V>& shape, Pass pass) {
  Workspace& ws = workspace(shape.buffers);
  const V<const float> x = shape.view(ws.x.data()), dy = shape.view(ws.dy.data());
  const V<float> y = shape.view(ws.y.data()), dx = shape.view(ws.dx.data());
  bnorm::fused::BatchStatistics stats;
  if (pass == Pass::bwd)
    stats = bnorm::fused::forward_training<float, V>(x, ws.weight, ws.bias, kEps, y);
  Eigen::ArrayXf dweight, dbias;
  const auto kernel = [&] {
    switch (pass) {
      case Pass::fwd_train: {
        const auto st = bnorm::fused::forward_training<float, V>(x, ws.weight, ws.bias, kEps, y);
        benchmark::DoNotOptimize(st.invstd.data());
        break;
      }
      case Pass::fwd_infer:
        bnorm::fused::forward_inference<float, V>(x, ws.weight, ws.bias, ws.running_mean,
                                                  ws.running_var, kEps, y);
        break;
      case Pass::bwd:
        bnorm::fused::backward<float, V>(x, dy, ws.weight, stats, dx, dweight, dbias);
        benchmark::DoNotOptimize(dweight.data());
        break;
    }
    benchmark::ClobberMemory();
  };
  const bool backward = pass == Pass::bwd;
  const Store store = faster_floor_store(ws, backward);
  time_in_turn(state, kernel, "floor_ms", [&] { pass_floor(ws, backward, store); });
  set_store_counter(state, "floor_nt", store);
  set_traffic_counters(state, minimal_bytes(pass, shape.buffers, sizeof(float)));
}

template <template <class> class V>
void register_other_rank(const std::string& impl, const OtherRank<V>& shape) {
  for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd})
    add_benchmark(
        pass_name(pass) + ("/" + impl + "/") + shape.name, shape.buffers,
        [shape, pass](benchmark::State& state) { other_rank_against_floor(state, shape, pass); },
        Timing::manual);
}

}  // namespace

void register_activation_benchmarks() {
  // The separate passes on three shapes: over the last-level cache (103 MB tensors), over it
  // with a smaller per-channel slice (51 MB), and within it (6.4 MB).
  const std::vector<Shape> separate{{32, 64, 112, 112}, {32, 512, 28, 28}, {32, 256, 14, 14}};
  for (const Shape& s : bench_shapes()) {
    if (s.n != 32) continue;  // the ResNet-50 shapes
    bool sep = false;
    for (const Shape& t : separate) sep = sep || t == s;
    add_benchmark(
        bench_name("act_fwd", "bnorm", s), s,
        [s, sep](benchmark::State& state) { activation_forward(state, s, sep); }, Timing::manual);
    add_benchmark(
        bench_name("act_bwd", "bnorm", s), s,
        [s, sep](benchmark::State& state) { activation_backward(state, s, sep); }, Timing::manual);
  }
  // BatchNorm1d over (N, C) = (256, 4096) as NCL with L = 1: a fully connected layer's output.
  register_other_rank<bnorm::NCLView>("bnorm1d", {"256x4096x1", {256, 4096, 1, 1}, [](float* p) {
                                                    return bnorm::NCLView<float>(p, 256, 4096, 1);
                                                  }});
  // BatchNorm3d over 8x64x16x56x56 (a video network's early layer), NCDHW.
  register_other_rank<bnorm::NCDHWView>("bnorm3d",
                                        {"8x64x16x56x56", {8, 64, 16 * 56, 56}, [](float* p) {
                                           return bnorm::NCDHWView<float>(p, 8, 64, 16, 56, 56);
                                         }});
}

}  // namespace bnorm_bench

#if defined(BNORM_BENCH_ACTIVATION_MAIN)
int main(int argc, char** argv) {
  return bnorm_bench::run_benchmarks(argc, argv, [] {
    benchmark::AddCustomContext("floor_simd", bnorm_bench::floor_simd());
    bnorm_bench::register_activation_benchmarks();
  });
}
#endif
