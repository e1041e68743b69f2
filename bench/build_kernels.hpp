// One call of a fused pass straight on the kernel set in use, as compiled in the including unit:
// bnorm_bench_builds includes this in a unit with default flags and in one with -march=native,
// and times the two in turn. The kernels and dispatch.hpp's tables have internal linkage, so each
// unit runs its own compilation of them (the module and the fused free functions, inline with
// external linkage, would be merged into one copy by the linker).
#pragma once

#include <bnorm/bnorm.hpp>

#include "passes.hpp"

namespace bnorm_bench {

// The arguments of the three passes on one shape's buffers.
struct PassArguments {
  bnorm::NCHWView<const float> x, dy;
  bnorm::NCHWView<float> y, dx;
  const Eigen::ArrayXf &weight, &bias, &running_mean, &running_var;
  const bnorm::fused::BatchStatistics& stats;  // of a training forward, for backward
  Eigen::ArrayXf &dweight, &dbias;
};

namespace {

// `pass` on the buffers of a with the kernel set in use (bnorm::isa()); no validation.
inline void run_kernels(Pass pass, const PassArguments& a) {
  constexpr double kEps = 1e-5;
  const auto& kernels = bnorm::detail::passes<float>();
  switch (pass) {
    case Pass::fwd_train: {
      const auto stats = kernels.forward_training(a.x, a.weight, a.bias, kEps, a.y, {});
      benchmark::DoNotOptimize(stats.invstd.data());
      break;
    }
    case Pass::fwd_infer:
      kernels.forward_inference(a.x, a.weight, a.bias, a.running_mean, a.running_var, kEps, a.y,
                                {});
      break;
    case Pass::bwd:
      kernels.backward(a.x, a.dy, a.weight, a.stats, a.dx, a.dweight, a.dbias, {});
      benchmark::DoNotOptimize(a.dweight.data());
      break;
  }
  benchmark::ClobberMemory();
}

}  // namespace

// run_kernels as compiled with -march=native (build_native.cpp).
void run_native_kernels(Pass pass, const PassArguments& a);

}  // namespace bnorm_bench
