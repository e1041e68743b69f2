// bnorm_bench_16bit: bnorm's fused passes over bfloat16 and half tensors (float parameters, as
// PyTorch's mixed type) on ResNet-50's BatchNorm2d inputs at batch 32, NCHW and channels-last,
// each timed in turn, in one process, with its own floor (the same streaming kernels over 16-bit
// data, floor16_kernels.hpp) and with bnorm's float32 pass on the same shape; where oneDNN is
// found, its bf16 and f16 passes in each layout (peer_onednn.cpp), and where libtorch is found,
// PyTorch's over bfloat16 and half with float32 parameters (peer_torch.cpp), each timed on its
// own. Benchmark ids are "<pass>/bnorm_<bfloat16|half>[_nhwc]/<NxCxHxW>",
// "<pass>/onednn_<bfloat16|half>_<layout>/<NxCxHxW>" and
// "<pass>/torch[_warm]_<bfloat16|half>[_nhwc]/<NxCxHxW>"; the counters floor_ms and float32_ms
// hold the references' times per call. bench/report_float16.py prints the tables.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bnorm_passes.hpp"
#include "buffers.hpp"
#include "floor16_kernels.hpp"
#include "paired.hpp"
#include "pass_floor.hpp"
#include "passes.hpp"
#include "peers.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

template <class H>
const char* type_name() {
  return std::is_same_v<H, Eigen::bfloat16> ? "bfloat16" : "half";
}

// The 16-bit tensors of a shape: the float workspace's values rounded once.
template <class H>
struct Workspace16 {
  explicit Workspace16(const Workspace& ws)
      : shape(ws.shape), x(shape.size()), y(shape.size()), dy(shape.size()), dx(shape.size()) {
    const index_t n = shape.size();
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) {
      x.data()[i] = bnorm::detail::from_compute<H>(ws.x.data()[i]);
      dy.data()[i] = bnorm::detail::from_compute<H>(ws.dy.data()[i]);
      y.data()[i] = dx.data()[i] = H{};
    }
  }
  const std::uint16_t* bits(const AlignedBuffer<H>& b) const {
    return reinterpret_cast<const std::uint16_t*>(b.data());
  }
  std::uint16_t* bits(AlignedBuffer<H>& b) {
    return reinterpret_cast<std::uint16_t*>(b.data());
  }

  Shape shape;
  AlignedBuffer<H> x, y, dy, dx;
};

// The 16-bit workspace of shape s (one shape at a time, as workspace()).
template <class H>
Workspace16<H>& workspace16(const Shape& s) {
  static std::unique_ptr<Workspace16<H>> current;
  if (!current || current->shape != s) {
    current.reset();
    current = std::make_unique<Workspace16<H>>(workspace(s));
  }
  return *current;
}

// One call of bnorm's `pass` over the 16-bit tensors, the parameters and running statistics
// those of the float workspace (BnormPass's, for float32).
template <class H>
class Bnorm16Pass {
 public:
  Bnorm16Pass(Workspace16<H>& w, const Workspace& ws, Pass pass, Layout layout)
      : ws_(ws),
        pass_(pass),
        x_(view<const H>(w.x.data(), w.shape, layout)),
        dy_(view<const H>(w.dy.data(), w.shape, layout)),
        y_(view(w.y.data(), w.shape, layout)),
        dx_(view(w.dx.data(), w.shape, layout)) {
    if (pass == Pass::bwd)
      stats_ = bnorm::fused::forward_training<H>(x_, ws.weight, ws.bias, BnormPass::kEps, y_);
  }

  void operator()() const {
    switch (pass_) {
      case Pass::fwd_train: {
        auto stats =
            bnorm::fused::forward_training<H>(x_, ws_.weight, ws_.bias, BnormPass::kEps, y_);
        benchmark::DoNotOptimize(stats.invstd.data());
        break;
      }
      case Pass::fwd_infer:
        bnorm::fused::forward_inference<H>(x_, ws_.weight, ws_.bias, ws_.running_mean,
                                           ws_.running_var, BnormPass::kEps, y_);
        break;
      case Pass::bwd:
        bnorm::fused::backward<H>(x_, dy_, ws_.weight, stats_, dx_, dweight_, dbias_);
        benchmark::DoNotOptimize(dweight_.data());
        break;
    }
    benchmark::ClobberMemory();
  }

 private:
  const Workspace& ws_;
  Pass pass_;
  bnorm::NCHWView<const H> x_, dy_;
  bnorm::NCHWView<H> y_, dx_;
  bnorm::fused::BatchStatistics stats_;
  mutable Eigen::ArrayXf dweight_, dbias_;
};

// The floor of a pass over the 16-bit tensors.
template <class H>
void pass_floor16(Workspace16<H>& w, bool backward, Store store) {
  const bool half = std::is_same_v<H, Eigen::half>;
  if (backward)
    floor16_backward(w.bits(w.x), w.bits(w.dy), 0.75f, w.bits(w.dx), w.shape.size(), half, store);
  else
    floor16_forward(w.bits(w.x), 0.75f, 0.25f, w.bits(w.y), w.shape.size(), half, store);
}

template <class H>
void register_type(const Shape& s) {
  for (Layout layout : {Layout::nchw, Layout::nhwc})
    for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd})
      add_benchmark(
          bench_name(pass_name(pass), impl_name(std::string("bnorm_") + type_name<H>(), layout), s),
          s,
          [s, pass, layout](benchmark::State& state) {
            Workspace& ws = workspace(s);
            Workspace16<H>& w = workspace16<H>(s);
            const Bnorm16Pass<H> subject(w, ws, pass, layout);
            const BnormPass float32(ws, pass, layout);
            const bool backward = pass == Pass::bwd;
            const Store store = faster_store([&](Store st) { pass_floor16(w, backward, st); });
            time_with_references(state, subject,
                                 {{"floor_ms", [&] { pass_floor16(w, backward, store); }},
                                  {"float32_ms", [&] { float32(); }}});
            state.counters["floor_nt"] = store == Store::nontemporal ? 1 : 0;
            set_traffic_counters(state, minimal_bytes(pass, s, sizeof(H)));
          },
          Timing::manual);
}

}  // namespace

int main(int argc, char** argv) {
  // glibc's mmap threshold settled as in bnorm_bench (bench_fused.cpp)
  void* volatile block = std::malloc((std::size_t{32} << 20) - (std::size_t{64} << 10));
  std::free(block);
  return run_benchmarks(argc, argv, [] {
    benchmark::AddCustomContext("floor_simd", floor16_simd());
    std::vector<Peer> peers;
#if defined(BNORM_BENCH_HAVE_ONEDNN)
    peers.push_back(onednn_16bit_peer());  // oneDNN over bf16 and f16, each layout
#endif
#if defined(BNORM_BENCH_HAVE_TORCH)
    peers.push_back(torch_16bit_peer());  // PyTorch over bfloat16 and half, as called and warm
#endif
    for (const Peer& p : peers) benchmark::AddCustomContext(p.name + "_version", p.version);
    for (const Shape& s : bench_shapes()) {
      if (s.n != 32) continue;  // ResNet-50's inputs at batch 32
      register_type<Eigen::bfloat16>(s);
      register_type<Eigen::half>(s);
      for (const Peer& p : peers) p.register_shape(s);
    }
  });
}
