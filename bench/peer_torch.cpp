// PyTorch's eager CPU kernels through libtorch: at::native_batch_norm (training and eval) and
// at::native_batch_norm_backward, on contiguous (NCHW) and channels_last tensors, on the
// library's thread count. Inputs wrap the shared buffers (float32, bnorm_bench) or are those
// values rounded once to bfloat16 or half, outside the timed loop (torch's mixed type, float32
// weight and statistics: bnorm_bench_16bit); outputs are allocated by each call, as in PyTorch's
// eager mode, timed two ways (torch_allocator.hpp): "torch", as users call it (with PyTorch's own
// allocator, so glibc's), and "torch_warm", each block reused.

#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <exception>
#include <string>

#include "passes.hpp"
#include "peers.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "torch_allocator.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace bnorm_bench {
namespace {

constexpr double kEps = 1e-5;
constexpr double kMomentum = 0.1;

enum class Memory { as_called, warm };

ReusingCpuAllocator* allocator = nullptr;  // installed by torch_peer()

at::Tensor wrap(float* p, const Shape& s, Layout layout) {
  const at::TensorOptions f32 = at::TensorOptions().dtype(at::kFloat);
  if (layout == Layout::nchw) return at::from_blob(p, {s.n, s.c, s.h, s.w}, f32);
  // NHWC memory with NCHW sizes: torch.channels_last
  return at::from_blob(p, {s.n, s.c, s.h, s.w}, {s.h * s.w * s.c, 1, s.w * s.c, s.c}, f32);
}
at::Tensor wrap(float* p, index_t c) {
  return at::from_blob(p, {c}, at::TensorOptions().dtype(at::kFloat));
}

// The workspace's tensor at p as `type`: itself for float32, else rounded once to nearest even
// (as bnorm_bench_16bit rounds its own 16-bit copies), in the same layout.
at::Tensor data_of(float* p, const Shape& s, Layout layout, at::ScalarType type) {
  const at::Tensor t = wrap(p, s, layout);
  return type == at::kFloat ? t : t.to(type);
}

void timed_calls(benchmark::State& state, const Shape& s, Pass pass, Layout layout,
                 at::ScalarType type) {
  c10::InferenceMode no_autograd;
  Workspace& ws = workspace(s);
  const at::Tensor x = data_of(ws.x.data(), s, layout, type);
  const at::Tensor dy = data_of(ws.dy.data(), s, layout, type);
  const at::Tensor weight = wrap(ws.weight.data(), s.c), bias = wrap(ws.bias.data(), s.c);
  // Training updates the running buffers in place: give it copies.
  const at::Tensor running_mean = wrap(ws.running_mean.data(), s.c).clone();
  const at::Tensor running_var = wrap(ws.running_var.data(), s.c).clone();
  if (pass == Pass::bwd) {
    // Saved statistics come from a training forward, outside the timed loop.
    const auto saved =
        at::native_batch_norm(x, weight, bias, running_mean, running_var, true, kMomentum, kEps);
    const at::Tensor& save_mean = std::get<1>(saved);
    const at::Tensor& save_invstd = std::get<2>(saved);
    for (auto _ : state) {
      auto grads =
          at::native_batch_norm_backward(dy, x, weight, running_mean, running_var, save_mean,
                                         save_invstd, true, kEps, {true, true, true});
      benchmark::DoNotOptimize(std::get<0>(grads).data_ptr());
    }
  } else {
    const bool training = pass == Pass::fwd_train;
    for (auto _ : state) {
      auto out = at::native_batch_norm(x, weight, bias, running_mean, running_var, training,
                                       kMomentum, kEps);
      benchmark::DoNotOptimize(std::get<0>(out).data_ptr());
    }
  }
  set_traffic_counters(state, minimal_bytes(pass, s, x.element_size()));
}

void run(benchmark::State& state, const Shape& s, Pass pass, Layout layout, Memory memory,
         at::ScalarType type) {
  // Kept blocks serve every run of a shape (Google Benchmark calls this once to size the
  // iterations and once per repetition), so only the very first call pays for fresh pages.
  static Shape kept_for{};
  if (s != kept_for) {
    allocator->release();
    kept_for = s;
  }
  allocator->set_reuse(memory == Memory::warm);
  try {
    timed_calls(state, s, pass, layout, type);
  } catch (const c10::Error& e) {  // its message alone, without libtorch's backtrace
    state.SkipWithError(e.what_without_backtrace());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  allocator->set_reuse(false);
}

// Benchmarks "<pass>/<torch|torch_warm><suffix>[_nhwc]/<shape>" over data of `type`.
void register_type(const Shape& s, at::ScalarType type, const std::string& suffix) {
  for (Layout layout : {Layout::nchw, Layout::nhwc})
    for (Memory memory : {Memory::as_called, Memory::warm})
      for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd}) {
        const std::string impl = (memory == Memory::warm ? "torch_warm" : "torch") + suffix;
        add_benchmark(bench_name(pass_name(pass), impl_name(impl, layout), s), s,
                      [s, pass, layout, memory, type](benchmark::State& state) {
                        run(state, s, pass, layout, memory, type);
                      });
      }
}

void register_shape(const Shape& s) {
  register_type(s, at::kFloat, "");
}

// PyTorch 1.13 has no CPU batch norm over half: those benchmarks end with its error and the
// report leaves them out; a libtorch that has one is measured.
void register_shape_16bit(const Shape& s) {
  register_type(s, at::kBFloat16, "_bfloat16");
  register_type(s, at::kHalf, "_half");
}

}  // namespace

Peer torch_peer() {
  // The same team size as bnorm (OMP_NUM_THREADS); libtorch otherwise picks its own.
#if defined(_OPENMP)
  at::set_num_threads(omp_get_max_threads());
#else
  at::set_num_threads(1);
#endif
  allocator = &ReusingCpuAllocator::install();
  return {"torch", TORCH_VERSION, &register_shape};
}

Peer torch_16bit_peer() {
  Peer p = torch_peer();
  p.register_shape = &register_shape_16bit;
  return p;
}

}  // namespace bnorm_bench
