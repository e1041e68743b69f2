// PyTorch's eager CPU kernels through libtorch: at::native_batch_norm (training and eval) and
// at::native_batch_norm_backward, float32, on contiguous (NCHW) and channels_last tensors, on the
// library's thread count. Inputs wrap the shared buffers; outputs are allocated by each call, as
// in PyTorch's eager mode, timed two ways (torch_allocator.hpp): "torch", as users call it (with
// PyTorch's own allocator, so glibc's), and "torch_warm", each block reused.

#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
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

void timed_calls(benchmark::State& state, const Shape& s, Pass pass, Layout layout) {
  c10::InferenceMode no_autograd;
  Workspace& ws = workspace(s);
  const at::Tensor x = wrap(ws.x.data(), s, layout), dy = wrap(ws.dy.data(), s, layout);
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
  set_traffic_counters(state, minimal_bytes(pass, s, sizeof(float)));
}

void run(benchmark::State& state, const Shape& s, Pass pass, Layout layout, Memory memory) {
  // Kept blocks serve every run of a shape (Google Benchmark calls this once to size the
  // iterations and once per repetition), so only the very first call pays for fresh pages.
  static Shape kept_for{};
  if (s != kept_for) {
    allocator->release();
    kept_for = s;
  }
  allocator->set_reuse(memory == Memory::warm);
  try {
    timed_calls(state, s, pass, layout);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  allocator->set_reuse(false);
}

void register_shape(const Shape& s) {
  for (Layout layout : {Layout::nchw, Layout::nhwc})
    for (Memory memory : {Memory::as_called, Memory::warm})
      for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd}) {
        const char* impl = memory == Memory::warm ? "torch_warm" : "torch";
        add_benchmark(bench_name(pass_name(pass), impl_name(impl, layout), s), s,
                      [s, pass, layout, memory](benchmark::State& state) {
                        run(state, s, pass, layout, memory);
                      });
      }
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

}  // namespace bnorm_bench
