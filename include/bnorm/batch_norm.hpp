/// @file batch_norm.hpp
/// @brief BatchNorm1d, BatchNorm2d, BatchNorm3d: parameters, running statistics,
/// train/eval, dispatch to a variant; one class template, BatchNorm<T, View>, for every rank.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "activation.hpp"
#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/epilogue_backward.hpp"
#include "detail/eval_affine.hpp"
#include "detail/staged_backend.hpp"
#include "fused.hpp"
#include "nchw_view.hpp"
#include "other_ranks.hpp"

namespace bnorm {

namespace mpi {
BNORM_DETAIL_BEGIN_NO_STAGED
template <class T, template <class> class View>
class SyncBatchNorm;  // <bnorm/mpi.hpp>: composes a BatchNorm and reuses its private checks
BNORM_DETAIL_END_NO_STAGED
}  // namespace mpi

// Without the staged variant the class differs, so it gets its own name for the linker (see
// detail/staged_backend.hpp); users still spell it bnorm::BatchNorm2d.
BNORM_DETAIL_BEGIN_NO_STAGED

/// torch.nn.BatchNorm1d, BatchNorm2d and BatchNorm3d, for T = float, double, Eigen::bfloat16 or
/// Eigen::half (16-bit data; parameters, buffers and gradients in float), over views of
/// kind View: NCLView (BatchNorm1d: (N, C, L), and (N, C) as L = 1), NCHWView (BatchNorm2d),
/// NCDHWView (BatchNorm3d). Users name the three faces below; this is where they are documented.
///
/// Training (or eval with track_running_stats = false) normalises each channel c with the
/// batch's statistics over its M values (N*L, N*H*W or N*D*H*W):
///   y = (x - mean) / sqrt(var + eps) * weight + bias,   var = (1/M) sum (x - mean)^2 (biased),
/// and, in training with tracked statistics, updates the running buffers with
///   running_mean = (1 - f) * running_mean + f * mean,
///   running_var  = (1 - f) * running_var  + f * var * M / (M - 1)   (unbiased),
/// where f = momentum, or 1 / num_batches_tracked when momentum is nullopt. Eval with tracked
/// statistics normalises with running_mean and running_var instead; they are then constants, so
/// its backward is dx = dy * weight / sqrt(running_var + eps).
///
/// Differences from PyTorch, on purpose: M == 0 changes no state at all (PyTorch still
/// increments num_batches_tracked); backward uses the weight as it is at backward time.
template <class T, template <class> class View>
class BatchNorm {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                    std::is_same_v<T, Eigen::bfloat16> || std::is_same_v<T, Eigen::half>,
                "bnorm::BatchNorm1d/2d/3d<T> are for T = float, double, Eigen::bfloat16 or "
                "Eigen::half");

 public:
  /// The extents of an input, in the view's logical order.
  using Extents = typename View<T>::extents_type;

  /// Per-channel parameters, buffers and gradients: plain Eigen arrays of C (or 0) elements,
  /// of T, or of float for the 16-bit T (as PyTorch's mixed-type batch norm keeps them).
  using Array = detail::ParameterArray<T>;

  /// What backward needs from one forward. For the fused variant it keeps a view of the
  /// forward's x, so x must outlive it and stay unchanged; the staged variant keeps its cache.
  /// The contract does not depend on the variant: backward checks dx against the forward's x
  /// either way, so keep x alive and unchanged until the last backward with this Saved.
  class Saved {
   public:
    /// The forward's input shape.
    const Extents& shape() const { return shape_; }
    /// true when the forward normalised with batch statistics.
    bool batch_statistics() const { return batch_statistics_; }
    /// The variant that ran the forward, and will run the backward.
    Variant variant() const { return variant_; }
    /// Per-channel mean used to normalise (batch or running), as PyTorch's save_mean.
    const Array& mean() const { return mean_; }
    /// Per-channel 1 / sqrt(var + eps) used to normalise, as PyTorch's save_invstd.
    const Array& invstd() const { return invstd_; }
    /// true when the forward ran in place (y was x): x is gone, so backward rejects it.
    bool in_place() const { return in_place_; }
    /// The activation the forward applied (the module's option at forward time).
    Activation activation() const { return epilogue_.activation; }
    /// true when the forward added a residual: backward can then give dresidual.
    bool has_residual() const { return epilogue_.residual; }

   private:
    friend class BatchNorm;
    Extents shape_{};
    bool batch_statistics_ = true;
    Variant variant_ = Variant::fused;
    bool in_place_ = false;
    Array mean_, invstd_;
    View<const T> x_;  // the forward's x: read by fused, checked against dx
    detail::SavedEpilogue<T, View> epilogue_;
    fused::BatchStatistics stats_;      // fused, batch statistics
    Array running_mean_, running_var_;  // fused, eval: the buffers as the forward used them
    typename detail::StagedBackend<T>::Cache cache_;  // staged
  };

  /// weight = 1, bias = 0 (size C, or 0 without affine); running_mean = 0, running_var = 1
  /// (size C, or 0 without tracking). Throws bnorm::invalid_argument for num_features <= 0,
  /// eps < 0 or NaN, or momentum outside [0, 1].
  explicit BatchNorm(index_t num_features, Options options = {})
      : num_features_(num_features), options_(options) {
    detail::require(num_features > 0, "num_features must be > 0, got ", num_features);
    detail::check_eps(options.eps);
    detail::check_momentum(options.momentum);
    detail::check_variant_available(options.variant, detail::StagedBackend<T>::available);
    const index_t p = options.affine ? num_features : 0;
    const index_t r = options.track_running_stats ? num_features : 0;
    weight_ = Array::Ones(p);
    bias_ = Array::Zero(p);
    running_mean_ = Array::Zero(r);
    running_var_ = Array::Ones(r);
    weight_grad_ = Array::Zero(p);
    bias_grad_ = Array::Zero(p);
  }

  /// Training mode (batch statistics, running statistics updated) when `mode`, else eval.
  void train(bool mode = true) { training_ = mode; }
  /// Eval mode: normalise with the running statistics (batch ones without tracking).
  void eval() { training_ = false; }
  /// true in training mode (the initial mode).
  bool is_training() const { return training_; }
  /// C, the channels the module was built for.
  index_t num_features() const { return num_features_; }
  /// The options the module was built with.
  const Options& options() const { return options_; }

  /// The weight (gamma): C elements, or 0 without affine. Assign freely; size is checked.
  Array& weight() { return weight_; }
  /// weight(), read-only.
  const Array& weight() const { return weight_; }
  /// The bias (beta): C elements, or 0 without affine.
  Array& bias() { return bias_; }
  /// bias(), read-only.
  const Array& bias() const { return bias_; }
  /// The running mean: C elements (zeros at first), or 0 without track_running_stats.
  Array& running_mean() { return running_mean_; }
  /// running_mean(), read-only.
  const Array& running_mean() const { return running_mean_; }
  /// The running (unbiased) variance: C elements (ones at first), or 0 without tracking.
  Array& running_var() { return running_var_; }
  /// running_var(), read-only.
  const Array& running_var() const { return running_var_; }
  /// Training forwards that updated the running statistics (the count momentum=nullopt uses).
  std::int64_t num_batches_tracked() const { return num_batches_tracked_; }
  /// dL/dweight of the last backward (size 0 without affine).
  const Array& weight_grad() const { return weight_grad_; }
  /// dL/dbias of the last backward (size 0 without affine).
  const Array& bias_grad() const { return bias_grad_; }

  /// Eval mode's per-channel affine map: y = scale * x + shift.
  struct ScaleShift {
    Array scale;  ///< weight / sqrt(running_var + eps)
    Array shift;  ///< bias - running_mean * scale
  };
  /// Eval mode's per-channel affine map, y = scale * x + shift with
  ///   scale = weight / sqrt(running_var + eps),   shift = bias - running_mean * scale
  /// (weight 1 and bias 0 without affine), computed in double and rounded once to T, as folding
  /// into a preceding layer uses it (fold.hpp). The form is for eval only: forward centres x on
  /// the mean instead, which stays accurate when the mean dwarfs the spread. Throws
  /// bnorm::invalid_argument without running statistics or with resized arrays.
  ScaleShift scale_shift() const {
    detail::require(options_.track_running_stats,
                    "scale_shift() needs running statistics, but track_running_stats is false");
    check_state();
    ScaleShift out{Array(num_features_), Array(num_features_)};
    for (index_t c = 0; c < num_features_; ++c) {
      const auto [scale, shift] =
          detail::eval_affine(options_.affine ? static_cast<double>(weight_[c]) : 1.0,
                              options_.affine ? static_cast<double>(bias_[c]) : 0.0,
                              static_cast<double>(running_mean_[c]),
                              static_cast<double>(running_var_[c]), options_.eps);
      out.scale[c] = static_cast<detail::compute_t<T>>(scale);
      out.shift[c] = static_cast<detail::compute_t<T>>(shift);
    }
    return out;
  }

  /// y = act(BatchNorm(x)), act the activation of the options. Validates everything first: on a
  /// throw, y and all state are unchanged.
  ///
  /// y must have a unique layout and either share no element with x or be exactly x (same
  /// data, extents and strides): the forward then runs in place with the same y and running
  /// statistics as out of place, useful for inference or for re-estimating running statistics.
  /// x then holds y, so the returned Saved has in_place() set and backward rejects it. With
  /// ReLU, backward recomputes its mask from x with the forward's weight and bias.
  Saved forward(View<const T> x, View<T> y) { return forward_impl(x, nullptr, y); }

  /// y = act(BatchNorm(x) + residual) (a ResNet block's end); residual has x's shape, any
  /// layout; y may be exactly residual. With ReLU, backward reads its mask from y: keep y alive
  /// and unchanged until the last backward with the returned Saved.
  Saved forward(View<const T> x, View<const T> residual, View<T> y) {
    return forward_impl(x, &residual, y);
  }

  /// dx = dL/dx for dy = dL/dy at the forward that returned `saved`, through its activation and
  /// BatchNorm; sets weight_grad() and bias_grad(). Validates everything first: on a throw, dx
  /// and all state are unchanged.
  ///
  /// dx must have a unique layout and either share no element with dy and the forward's x, or
  /// be exactly one of them (in place, same results as out of place; after dx over x, `saved`
  /// cannot serve another backward). A Saved from an in-place forward is rejected.
  void backward(const Saved& saved, View<const T> dy, View<T> dx) {
    backward_impl(saved, dy, dx, nullptr);
  }

  /// backward, and dresidual = dL/dresidual after forward(x, residual, y): dy where y > 0 with
  /// ReLU, else 0; dy without an activation. May be exactly dy; shares nothing with dx, x, y.
  void backward(const Saved& saved, View<const T> dy, View<T> dx, View<T> dresidual) {
    backward_impl(saved, dy, dx, &dresidual);
  }

 private:
  template <class, template <class> class>
  friend class mpi::SyncBatchNorm;

  Saved forward_impl(const View<const T>& x, const View<const T>* residual, const View<T>& y) {
    check_forward(x, y);
    if (residual != nullptr) detail::check_residual(x, *residual, y);
    const bool batch = uses_batch_statistics();
    if (batch) detail::check_training_count(x);

    Saved s;
    s.shape_ = x.extents();
    s.batch_statistics_ = batch;
    s.variant_ = options_.variant;
    s.x_ = x;
    s.in_place_ = detail::same_view(y, x);
    const Activation act = options_.activation;
    s.epilogue_.activation = act;
    s.epilogue_.residual = residual != nullptr;
    s.epilogue_.y = y;
    if (s.epilogue_.recomputed()) {  // the forward's, whatever the module's become by backward
      s.epilogue_.weight = weight_;
      s.epilogue_.bias = bias_;
    }
    if (x.size() == 0) return s;  // nothing to normalise and nothing learnt: no state changes

    const double eps = options_.eps;
    const bool staged = options_.variant == Variant::staged;
    if (batch) {
      Eigen::ArrayXd mean, var;
      if (staged) {
        s.cache_ =
            detail::StagedBackend<T>::forward_training(x, residual, weight_, bias_, eps, y, act);
        mean = detail::StagedBackend<T>::mean(s.cache_);
        var = detail::StagedBackend<T>::var(s.cache_);
        s.invstd_ = detail::inverse_std<detail::compute_t<T>>(var, eps);
      } else {
        s.stats_ = residual != nullptr
                       ? fused::forward_training<T>(x, *residual, weight_, bias_, eps, y, act)
                       : fused::forward_training<T>(x, weight_, bias_, eps, y, act);
        mean = s.stats_.mean;
        var = s.stats_.var;
        // the kernels' 1 / sqrt(var + eps), as inverse_std forms it (a serial square root and
        // division a channel: for 4096 channels, a tenth of a 256 x 4096 forward)
        s.invstd_ = s.stats_.invstd.template cast<detail::compute_t<T>>();
      }
      s.mean_ = mean.template cast<detail::compute_t<T>>();
      if (training_ && options_.track_running_stats)
        update_running_stats(mean, var, x.per_channel());
    } else {
      if (staged) {
        s.cache_ = detail::StagedBackend<T>::forward_inference(
            x, residual, weight_, bias_, running_mean_, running_var_, eps, y, act);
      } else {
        s.running_mean_ = running_mean_;
        s.running_var_ = running_var_;
        if (residual != nullptr)
          fused::forward_inference<T>(x, *residual, weight_, bias_, running_mean_, running_var_,
                                      eps, y, act);
        else
          fused::forward_inference<T>(x, weight_, bias_, running_mean_, running_var_, eps, y, act);
      }
      s.mean_ = running_mean_;
      s.invstd_ =
          detail::inverse_std<detail::compute_t<T>>(running_var_.template cast<double>(), eps);
    }
    return s;
  }

  void backward_impl(const Saved& saved, const View<const T>& dy, const View<T>& dx,
                     const View<T>* dresidual) {
    check_backward(saved.shape_, saved.in_place_, saved.x_, dy, dx);
    detail::check_epilogue_backward(saved.epilogue_, saved.x_, dy, dx, dresidual);
    const index_t p = options_.affine ? num_features_ : 0;
    if (dy.size() == 0) {
      weight_grad_.setZero(p);
      bias_grad_.setZero(p);
      return;
    }
    Array dweight, dbias;
    if (saved.variant_ == Variant::staged) {
      detail::StagedBackend<T>::backward(saved.cache_, weight_, dy, dx, dresidual, dweight, dbias);
    } else {
      detail::epilogue_backward<T, View>(
          saved.epilogue_, saved.x_, dy, dx, dresidual,
          [&](const View<const T>& g, const fused::Relu<T>* relu) {
            detail::fused_bn_backward(saved.batch_statistics_, saved.x_, g, weight_, saved.stats_,
                                      saved.running_mean_, saved.running_var_, options_.eps, dx,
                                      dweight, dbias, relu);
          });
    }
    weight_grad_ = std::move(dweight);
    bias_grad_ = std::move(dbias);
  }

  bool uses_batch_statistics() const { return training_ || !options_.track_running_stats; }

  template <class U>
  void check_channels(const char* name, const View<U>& v) const {
    detail::require(v.c() == num_features_, name, " has ", v.c(), " channels, module has ",
                    num_features_);
  }

  /// forward's checks of x and y, and of the module's state (SyncBatchNorm2d makes them too).
  void check_forward(const View<const T>& x, const View<T>& y) const {
    check_channels("x", x);
    detail::check_same_shape("y", y, "x", x);
    detail::check_unique_layout("y", y);
    detail::check_no_partial_overlap("y", y, "x", x);
    check_state();
  }

  /// backward's checks of dy and dx against the forward's x (its shape, whether y overwrote
  /// it), and of the module's state (SyncBatchNorm2d makes them too).
  void check_backward(const Extents& shape, bool in_place, const View<const T>& x,
                      const View<const T>& dy, const View<T>& dx) const {
    check_channels("dy", dy);
    detail::check_shape("dy", dy, shape, "the shape of the forward's x");
    detail::check_same_shape("dx", dx, "dy", dy);
    detail::require(!in_place,
                    "saved comes from a forward that ran in place (y was x) and overwrote the x "
                    "that backward needs: expected the Saved of a forward with a separate y");
    detail::check_backward_output(dy, dx);
    detail::check_no_partial_overlap("dx", dx, "the forward's x", x);
    check_state();
  }

  /// The user may resize the public arrays; they must still fit the module.
  void check_state() const {
    const index_t p = options_.affine ? num_features_ : 0;
    const index_t r = options_.track_running_stats ? num_features_ : 0;
    const char* why_p = options_.affine ? "num_features" : "affine is false";
    const char* why_r =
        options_.track_running_stats ? "num_features" : "track_running_stats is false";
    detail::check_size("weight", weight_.size(), p, why_p);
    detail::check_size("bias", bias_.size(), p, why_p);
    detail::check_size("running_mean", running_mean_.size(), r, why_r);
    detail::check_size("running_var", running_var_.size(), r, why_r);
  }

  /// running = (1 - f) * running + f * batch, the variance made unbiased with M / (M - 1),
  /// by the kernels in use (the same bits whatever flags compile this header).
  void update_running_stats(const Eigen::ArrayXd& mean, const Eigen::ArrayXd& var, index_t m) {
    detail::selected_isa();  // may throw (BNORM_ISA): before any change
    ++num_batches_tracked_;
    const double f =
        options_.momentum ? *options_.momentum : 1.0 / static_cast<double>(num_batches_tracked_);
    const double unbias = static_cast<double>(m) / static_cast<double>(m - 1);
    detail::update_running<T>(running_mean_, running_var_, mean, var, f, unbias);
  }

  index_t num_features_;
  Options options_;
  bool training_ = true;
  Array weight_, bias_, running_mean_, running_var_, weight_grad_, bias_grad_;
  std::int64_t num_batches_tracked_ = 0;
};

/// torch.nn.BatchNorm1d over NCLView: (N, C, L) inputs, and (N, C) ones as L = 1 (the
/// NCLView(data, n, c) constructor). BatchNorm<T, NCLView> documents the interface.
template <class T>
class BatchNorm1d : public BatchNorm<T, NCLView> {
 public:
  using BatchNorm<T, NCLView>::BatchNorm;
};

/// torch.nn.BatchNorm2d over NCHWView. BatchNorm<T, NCHWView> documents the interface.
template <class T>
class BatchNorm2d : public BatchNorm<T, NCHWView> {
 public:
  using BatchNorm<T, NCHWView>::BatchNorm;
};

/// torch.nn.BatchNorm3d over NCDHWView. BatchNorm<T, NCDHWView> documents the interface.
template <class T>
class BatchNorm3d : public BatchNorm<T, NCDHWView> {
 public:
  using BatchNorm<T, NCDHWView>::BatchNorm;
};

BNORM_DETAIL_END_NO_STAGED
}  // namespace bnorm
