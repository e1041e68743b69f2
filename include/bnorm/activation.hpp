/// @file activation.hpp
/// @brief The fused variant with an epilogue: y = act(BN(x) + residual) in the forward's one
/// elementwise sweep, and the backward of the activation, for views of every rank.
///
/// With z = BN(x) (+ residual) and act = relu, y = relu(z) = z < 0 ? 0 : z (NaN and -0 stay as
/// they are, as torch.relu). Its backward needs where the activation passed, g = z <= 0 ? 0 : dy
/// (as torch's threshold_backward over y):
/// - without a residual, z is recomputed from x inside BN's backward sweeps, with the forward's
///   weight and bias (fused::Relu) and the forward's formula, so the same bits: no mask is
///   stored and no extra memory is read (backward and backward_inference taking a Relu);
/// - with one, z also depends on the residual; y tells where it passed (y > 0 exactly where
///   z > 0 or NaN), so relu_backward(y, dy) gives g = dL/dresidual, and BN's backward (fused.hpp)
///   with dy = g gives dx, dweight and dbias: one read of y more than a 1-bit mask would need.
/// For NCHWView, and NCLView and NCDHWView on their NCHW faces (other_ranks.hpp).
#pragma once

#include <Eigen/Core>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/dispatch.hpp"
#include "detail/nchw_face.hpp"
#include "fused.hpp"
#include "isa.hpp"
#include "nchw_view.hpp"

namespace bnorm::fused {

/// The ReLU that followed BatchNorm in a forward without a residual, y = relu(BN(x)), given by
/// that forward's weight and bias: the backward recomputes z = BN(x) from x with them, as the
/// forward computed it, so it needs neither y nor a mask.
template <class T>
struct Relu {
  const bnorm::detail::ParameterArray<T>& weight;  ///< the forward's weight (C, or 0)
  const bnorm::detail::ParameterArray<T>& bias;    ///< the forward's bias (C, or 0)
};

namespace detail_relu {
/// relu's arrays checked (C elements, or both 0; neither a gradient array) as the kernels'
/// gate.
template <class T>
bnorm::detail::ReluGate<T> checked_gate(const Relu<T>& relu, index_t channels,
                                        const bnorm::detail::ParameterArray<T>& dweight,
                                        const bnorm::detail::ParameterArray<T>& dbias) {
  using namespace bnorm::detail;
  if (relu.weight.size() != 0 || relu.bias.size() != 0) {
    check_size("relu.weight", relu.weight.size(), channels,
               "the channels of x, or 0 for no affine transform");
    check_size("relu.bias", relu.bias.size(), channels, "the channels of x, as relu.weight");
  }
  for (const auto* out : {&dweight, &dbias}) {
    const char* name = out == &dweight ? "dweight" : "dbias";
    check_distinct_arrays(name, *out, "relu.weight", relu.weight);
    check_distinct_arrays(name, *out, "relu.bias", relu.bias);
  }
  return {&relu.weight, &relu.bias};
}
}  // namespace detail_relu

/// Training forward with a residual and an activation:
///   y = act((x - mean) * invstd * weight + bias + residual),
/// with the batch statistics of x (returned), as forward_training (fused.hpp) computes them.
/// residual has x's shape, in any layout; y may be exactly x or exactly residual (in place).
/// Throws bnorm::invalid_argument, before writing anything, for the errors of forward_training
/// and a residual of another shape or partly overlapping y.
template <class T>
BatchStatistics forward_training(detail::identity_t<NCHWView<const T>> x,
                                 detail::identity_t<NCHWView<const T>> residual,
                                 const bnorm::detail::ParameterArray<T>& weight,
                                 const bnorm::detail::ParameterArray<T>& bias, double eps,
                                 NCHWView<T> y, Activation act = Activation::none) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_residual(x, residual, y);
  detail::check_training_count(x);
  return detail::passes<T>().forward_training(x, weight, bias, eps, y, {act, &residual});
}

/// Training forward with an activation: y = act((x - mean) * invstd * weight + bias). The
/// rules and errors of forward_training (fused.hpp).
template <class T>
BatchStatistics forward_training(detail::identity_t<NCHWView<const T>> x,
                                 const bnorm::detail::ParameterArray<T>& weight,
                                 const bnorm::detail::ParameterArray<T>& bias, double eps,
                                 NCHWView<T> y, Activation act) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_training_count(x);
  return detail::passes<T>().forward_training(x, weight, bias, eps, y, {act});
}

/// Inference forward with a residual and an activation:
///   y = act((x - running_mean) / sqrt(running_var + eps) * weight + bias + residual).
/// The rules and errors of forward_inference (fused.hpp) and of the residual above.
template <class T>
void forward_inference(detail::identity_t<NCHWView<const T>> x,
                       detail::identity_t<NCHWView<const T>> residual,
                       const bnorm::detail::ParameterArray<T>& weight,
                       const bnorm::detail::ParameterArray<T>& bias,
                       const bnorm::detail::ParameterArray<T>& running_mean,
                       const bnorm::detail::ParameterArray<T>& running_var, double eps,
                       NCHWView<T> y, Activation act = Activation::none) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_residual(x, residual, y);
  detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  detail::passes<T>().forward_inference(x, weight, bias, running_mean, running_var, eps, y,
                                        {act, &residual});
}

/// Inference forward with an activation:
///   y = act((x - running_mean) / sqrt(running_var + eps) * weight + bias).
template <class T>
void forward_inference(detail::identity_t<NCHWView<const T>> x,
                       const bnorm::detail::ParameterArray<T>& weight,
                       const bnorm::detail::ParameterArray<T>& bias,
                       const bnorm::detail::ParameterArray<T>& running_mean,
                       const bnorm::detail::ParameterArray<T>& running_var, double eps,
                       NCHWView<T> y, Activation act) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  detail::passes<T>().forward_inference(x, weight, bias, running_mean, running_var, eps, y, {act});
}

/// The backward of y = relu(z) over its output y: g = y <= 0 ? 0 : dy (dL/dz for dL/dy = dy;
/// NaN in y passes dy, as torch's threshold_backward does). g may be exactly dy or y (in
/// place). Throws bnorm::invalid_argument, before writing anything, when shapes differ, g's
/// layout is not unique, or g partly overlaps y or dy.
template <class T>
void relu_backward(detail::identity_t<NCHWView<const T>> y,
                   detail::identity_t<NCHWView<const T>> dy, NCHWView<T> g) {
  detail::check_same_shape("dy", dy, "y", y);
  detail::check_same_shape("g", g, "dy", dy);
  detail::check_unique_layout("g", g);
  detail::check_no_partial_overlap("g", g, "dy", dy);
  detail::check_no_partial_overlap("g", g, "y", y);
  detail::passes<T>().relu_gate(y, dy, g);
}

/// Training backward of y = relu(BN(x)) (forward_training with Activation::relu and no
/// residual): with g = dy where z = (x - mean) * invstd * relu.weight + relu.bias > 0 (z as the
/// forward computed it), else 0, the closed form of backward (fused.hpp) with dy = g, in the
/// same sweeps: the mask costs no pass and no memory. The rules and errors of backward, and
/// relu's arrays must have C elements or 0 (affine = false).
template <class T>
void backward(detail::identity_t<NCHWView<const T>> x, detail::identity_t<NCHWView<const T>> dy,
              const bnorm::detail::ParameterArray<T>& weight, const BatchStatistics& stats,
              NCHWView<T> dx, bnorm::detail::ParameterArray<T>& dweight,
              bnorm::detail::ParameterArray<T>& dbias, const Relu<T>& relu) {
  detail::check_backward_args(x, dy, weight, dx);
  detail::check_gradient_arrays(weight, dweight, dbias);
  const index_t m = x.n() * x.h() * x.w();
  detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  detail::check_size("stats.invstd", stats.invstd.size(), x.c(), "the channels of x");
  detail::require(stats.count == m, "stats.count is ", stats.count, ", expected ", m,
                  " (N*H*W of x)");
  const auto gate = detail_relu::checked_gate(relu, x.c(), dweight, dbias);
  detail::passes<T>().backward(x, dy, weight, stats, dx, dweight, dbias, gate);
}

/// Eval backward of y = relu(BN(x)) with running statistics (forward_inference with
/// Activation::relu and no residual): g = dy where z > 0, z recomputed from x as above with
/// the running statistics, then backward_inference (fused.hpp) with dy = g.
template <class T>
void backward_inference(detail::identity_t<NCHWView<const T>> x,
                        detail::identity_t<NCHWView<const T>> dy,
                        const bnorm::detail::ParameterArray<T>& weight,
                        const bnorm::detail::ParameterArray<T>& running_mean,
                        const bnorm::detail::ParameterArray<T>& running_var, double eps,
                        NCHWView<T> dx, bnorm::detail::ParameterArray<T>& dweight,
                        bnorm::detail::ParameterArray<T>& dbias, const Relu<T>& relu) {
  detail::check_backward_args(x, dy, weight, dx);
  detail::check_gradient_arrays(weight, dweight, dbias, &running_mean, &running_var);
  detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  detail::check_eps(eps);
  const auto gate = detail_relu::checked_gate(relu, x.c(), dweight, dbias);
  detail::passes<T>().backward_inference(x, dy, weight, running_mean, running_var, eps, dx, dweight,
                                         dbias, gate);
}

// The same over NCLView and NCDHWView: checked on the views as given, run on their NCHW faces
// (other_ranks.hpp).

/// forward_training with a residual and an activation, over a rank-3 or rank-5 view.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
BatchStatistics forward_training(detail::identity_t<V<const T>> x,
                                 detail::identity_t<V<const T>> residual,
                                 const bnorm::detail::ParameterArray<T>& weight,
                                 const bnorm::detail::ParameterArray<T>& bias, double eps, V<T> y,
                                 Activation act = Activation::none) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_residual(x, residual, y);
  detail::check_training_count(x);
  const detail::NchwFace<const T> fx(x), fr(residual);
  detail::NchwFace<T> fy(y);
  const BatchStatistics s = forward_training<T>(*fx, *fr, weight, bias, eps, *fy, act);
  fy.write_back();
  return s;
}

/// forward_training with an activation, over a rank-3 or rank-5 view.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
BatchStatistics forward_training(detail::identity_t<V<const T>> x,
                                 const bnorm::detail::ParameterArray<T>& weight,
                                 const bnorm::detail::ParameterArray<T>& bias, double eps, V<T> y,
                                 Activation act) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_training_count(x);
  const detail::NchwFace<const T> fx(x);
  detail::NchwFace<T> fy(y);
  const BatchStatistics s = forward_training<T>(*fx, weight, bias, eps, *fy, act);
  fy.write_back();
  return s;
}

/// forward_inference with a residual and an activation, over a rank-3 or rank-5 view.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void forward_inference(detail::identity_t<V<const T>> x, detail::identity_t<V<const T>> residual,
                       const bnorm::detail::ParameterArray<T>& weight,
                       const bnorm::detail::ParameterArray<T>& bias,
                       const bnorm::detail::ParameterArray<T>& running_mean,
                       const bnorm::detail::ParameterArray<T>& running_var, double eps, V<T> y,
                       Activation act = Activation::none) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_residual(x, residual, y);
  const detail::NchwFace<const T> fx(x), fr(residual);
  detail::NchwFace<T> fy(y);
  forward_inference<T>(*fx, *fr, weight, bias, running_mean, running_var, eps, *fy, act);
  fy.write_back();
}

/// forward_inference with an activation, over a rank-3 or rank-5 view.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void forward_inference(detail::identity_t<V<const T>> x,
                       const bnorm::detail::ParameterArray<T>& weight,
                       const bnorm::detail::ParameterArray<T>& bias,
                       const bnorm::detail::ParameterArray<T>& running_mean,
                       const bnorm::detail::ParameterArray<T>& running_var, double eps, V<T> y,
                       Activation act) {
  detail::check_forward_args(x, weight, bias, eps, y);
  const detail::NchwFace<const T> fx(x);
  detail::NchwFace<T> fy(y);
  forward_inference<T>(*fx, weight, bias, running_mean, running_var, eps, *fy, act);
  fy.write_back();
}

/// backward of y = relu(BN(x)) over rank-3 or rank-5 views.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void backward(detail::identity_t<V<const T>> x, detail::identity_t<V<const T>> dy,
              const bnorm::detail::ParameterArray<T>& weight, const BatchStatistics& stats, V<T> dx,
              bnorm::detail::ParameterArray<T>& dweight, bnorm::detail::ParameterArray<T>& dbias,
              const Relu<T>& relu) {
  detail::check_backward_args(x, dy, weight, dx);
  const detail::NchwFace<const T> fx(x), fdy(dy);
  detail::NchwFace<T> fdx(dx);
  backward<T>(*fx, *fdy, weight, stats, *fdx, dweight, dbias, relu);
  fdx.write_back();
}

/// backward_inference of y = relu(BN(x)) over rank-3 or rank-5 views.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void backward_inference(detail::identity_t<V<const T>> x, detail::identity_t<V<const T>> dy,
                        const bnorm::detail::ParameterArray<T>& weight,
                        const bnorm::detail::ParameterArray<T>& running_mean,
                        const bnorm::detail::ParameterArray<T>& running_var, double eps, V<T> dx,
                        bnorm::detail::ParameterArray<T>& dweight,
                        bnorm::detail::ParameterArray<T>& dbias, const Relu<T>& relu) {
  detail::check_backward_args(x, dy, weight, dx);
  const detail::NchwFace<const T> fx(x), fdy(dy);
  detail::NchwFace<T> fdx(dx);
  backward_inference<T>(*fx, *fdy, weight, running_mean, running_var, eps, *fdx, dweight, dbias,
                        relu);
  fdx.write_back();
}

/// relu_backward over rank-3 or rank-5 views.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void relu_backward(detail::identity_t<V<const T>> y, detail::identity_t<V<const T>> dy, V<T> g) {
  detail::check_same_shape("dy", dy, "y", y);
  detail::check_same_shape("g", g, "dy", dy);
  detail::check_unique_layout("g", g);
  detail::check_no_partial_overlap("g", g, "dy", dy);
  detail::check_no_partial_overlap("g", g, "y", y);
  const detail::NchwFace<const T> fy(y), fdy(dy);
  detail::NchwFace<T> fg(g);
  relu_backward<T>(*fy, *fdy, *fg);
  fg.write_back();
}

}  // namespace bnorm::fused
