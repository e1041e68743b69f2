// bnorm's fused passes on a shape's workspace, as callables: what bnorm_bench times, and the
// reference the peers are timed in turn with.
#pragma once

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include "passes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace bnorm_bench {

// One call of bnorm's `pass` on the workspace's buffers: training forward x -> y, inference
// forward x -> y with the running statistics, or backward x, dy -> dx with the statistics of a
// training forward made here, outside any timing, as in training; NCHW or channels-last views.
class BnormPass {
 public:
  static constexpr double kEps = 1e-5;

  BnormPass(Workspace& ws, Pass pass, Layout layout = Layout::nchw)
      : ws_(ws),
        pass_(pass),
        x_(input_view(ws.x.data(), ws.shape, layout)),
        dy_(input_view(ws.dy.data(), ws.shape, layout)),
        y_(output_view(ws.y.data(), ws.shape, layout)),
        dx_(output_view(ws.dx.data(), ws.shape, layout)) {
    if (pass == Pass::bwd)
      stats_ = bnorm::fused::forward_training<float>(x_, ws.weight, ws.bias, kEps, y_);
  }

  void operator()() const {
    switch (pass_) {
      case Pass::fwd_train: {
        auto stats = bnorm::fused::forward_training<float>(x_, ws_.weight, ws_.bias, kEps, y_);
        benchmark::DoNotOptimize(stats.invstd.data());
        break;
      }
      case Pass::fwd_infer:
        bnorm::fused::forward_inference<float>(x_, ws_.weight, ws_.bias, ws_.running_mean,
                                               ws_.running_var, kEps, y_);
        break;
      case Pass::bwd:
        bnorm::fused::backward<float>(x_, dy_, ws_.weight, stats_, dx_, dweight_, dbias_);
        benchmark::DoNotOptimize(dweight_.data());
        break;
    }
    benchmark::ClobberMemory();
  }

 private:
  Workspace& ws_;
  Pass pass_;
  bnorm::NCHWView<const float> x_, dy_;
  bnorm::NCHWView<float> y_, dx_;
  bnorm::fused::BatchStatistics stats_;
  mutable Eigen::ArrayXf dweight_, dbias_;
};

}  // namespace bnorm_bench
