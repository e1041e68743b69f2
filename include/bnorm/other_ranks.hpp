/// @file other_ranks.hpp
/// @brief The free functions of the fused and staged variants over NCLView (BatchNorm1d) and
/// NCDHWView (BatchNorm3d).
///
/// BatchNorm of any rank normalises each channel over all its other axes, so these are the
/// 2-d functions (fused.hpp, staged.hpp: same formulas, arguments and rules) on the views'
/// NCHW faces: (N, C, 1, L) for NCL, (N, C, D*H, W) for NCDHW. A face is the view's own memory
/// when its axes merge (always for NCL; for NCDHW when stride_d = H * stride_h, as in NCDHW and
/// NDHWC memory), else a contiguous copy made for the call (detail/nchw_face.hpp). The arguments
/// are checked on the views as given, so messages speak of their own shapes.
///
/// The input view is not deduced: pass it const or not; T and the view kind are taken from the
/// output view.
#pragma once

#include <Eigen/Core>

#include "detail/checks.hpp"
#include "detail/nchw_face.hpp"
#include "fused.hpp"
#include "nchw_view.hpp"
#ifndef BNORM_NO_STAGED
#include "staged.hpp"
#endif

namespace bnorm {
namespace fused {

/// forward_training (fused.hpp) over a rank-3 or rank-5 view: batch statistics over the N*L
/// or N*D*H*W values of each channel, y = (x - mean) * invstd * weight + bias.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
BatchStatistics forward_training(detail::identity_t<V<const T>> x,
                                 const bnorm::detail::ParameterArray<T>& weight,
                                 const bnorm::detail::ParameterArray<T>& bias, double eps, V<T> y) {
  detail::check_forward_args(x, weight, bias, eps, y);
  detail::check_training_count(x);
  const detail::NchwFace<const T> fx(x);
  detail::NchwFace<T> fy(y);
  BatchStatistics stats = forward_training(*fx, weight, bias, eps, *fy);
  fy.write_back();
  return stats;
}

/// forward_inference (fused.hpp) over a rank-3 or rank-5 view:
/// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void forward_inference(detail::identity_t<V<const T>> x,
                       const bnorm::detail::ParameterArray<T>& weight,
                       const bnorm::detail::ParameterArray<T>& bias,
                       const bnorm::detail::ParameterArray<T>& running_mean,
                       const bnorm::detail::ParameterArray<T>& running_var, double eps, V<T> y) {
  detail::check_forward_args(x, weight, bias, eps, y);
  const detail::NchwFace<const T> fx(x);
  detail::NchwFace<T> fy(y);
  forward_inference(*fx, weight, bias, running_mean, running_var, eps, *fy);
  fy.write_back();
}

/// backward (fused.hpp) over rank-3 or rank-5 views, the closed form with M = N*L or N*D*H*W:
///   dx = weight * invstd / M * (M * dy - sum dy - xhat * sum(dy * xhat)).
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void backward(detail::identity_t<V<const T>> x, detail::identity_t<V<const T>> dy,
              const bnorm::detail::ParameterArray<T>& weight, const BatchStatistics& stats, V<T> dx,
              bnorm::detail::ParameterArray<T>& dweight, bnorm::detail::ParameterArray<T>& dbias) {
  detail::check_backward_args(x, dy, weight, dx);
  const detail::NchwFace<const T> fx(x), fdy(dy);
  detail::NchwFace<T> fdx(dx);
  backward(*fx, *fdy, weight, stats, *fdx, dweight, dbias);
  fdx.write_back();
}

/// backward_inference (fused.hpp) over rank-3 or rank-5 views: dx = dy * weight * invstd.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void backward_inference(detail::identity_t<V<const T>> x, detail::identity_t<V<const T>> dy,
                        const bnorm::detail::ParameterArray<T>& weight,
                        const bnorm::detail::ParameterArray<T>& running_mean,
                        const bnorm::detail::ParameterArray<T>& running_var, double eps, V<T> dx,
                        bnorm::detail::ParameterArray<T>& dweight,
                        bnorm::detail::ParameterArray<T>& dbias) {
  detail::check_backward_args(x, dy, weight, dx);
  const detail::NchwFace<const T> fx(x), fdy(dy);
  detail::NchwFace<T> fdx(dx);
  backward_inference(*fx, *fdy, weight, running_mean, running_var, eps, *fdx, dweight, dbias);
  fdx.write_back();
}

/// local_statistics (fused.hpp) of a rank-3 or rank-5 view.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
LocalStatistics local_statistics(V<T> x) {
  using U = std::remove_const_t<T>;
  return local_statistics(*detail::NchwFace<const U>(V<const U>(x)));
}

/// normalize (fused.hpp) of a rank-3 or rank-5 view with given statistics.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void normalize(detail::identity_t<V<const T>> x, const BatchStatistics& stats,
               const bnorm::detail::ParameterArray<T>& weight,
               const bnorm::detail::ParameterArray<T>& bias, V<T> y) {
  detail::check_forward_args(x, weight, bias, 0.0, y);
  const detail::NchwFace<const T> fx(x);
  detail::NchwFace<T> fy(y);
  normalize(*fx, stats, weight, bias, *fy);
  fy.write_back();
}

/// local_gradient_sums (fused.hpp) of rank-3 or rank-5 views.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
GradientSums local_gradient_sums(V<const T> x, detail::identity_t<V<const T>> dy,
                                 const BatchStatistics& stats) {
  detail::check_same_shape("dy", dy, "x", x);
  return local_gradient_sums(*detail::NchwFace<const T>(x), *detail::NchwFace<const T>(dy), stats);
}

/// backward_input (fused.hpp) of rank-3 or rank-5 views.
template <class T, template <class> class V, detail::if_other_rank<V> = 0>
void backward_input(detail::identity_t<V<const T>> x, detail::identity_t<V<const T>> dy,
                    const bnorm::detail::ParameterArray<T>& weight, const BatchStatistics& stats,
                    const GradientSums& sums, V<T> dx) {
  detail::check_backward_args(x, dy, weight, dx);
  const detail::NchwFace<const T> fx(x), fdy(dy);
  detail::NchwFace<T> fdx(dx);
  backward_input(*fx, *fdy, weight, stats, sums, *fdx);
  fdx.write_back();
}

}  // namespace fused

#ifndef BNORM_NO_STAGED
namespace staged {

/// forward_training (staged.hpp) over a rank-3 or rank-5 view, the nine steps on its NCHW face.
template <class T, template <class> class V, bnorm::detail::if_other_rank<V> = 0>
Cache<T> forward_training(bnorm::detail::identity_t<V<const T>> x,
                          const bnorm::detail::ParameterArray<T>& weight,
                          const bnorm::detail::ParameterArray<T>& bias, double eps, V<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_training_count(x);
  const bnorm::detail::NchwFace<const T> fx(x);
  bnorm::detail::NchwFace<T> fy(y);
  Cache<T> k = forward_training(*fx, weight, bias, eps, *fy);
  fy.write_back();
  k.extents.assign(x.extents().begin(), x.extents().end());
  return k;
}

/// forward_inference (staged.hpp) over a rank-3 or rank-5 view.
template <class T, template <class> class V, bnorm::detail::if_other_rank<V> = 0>
Cache<T> forward_inference(bnorm::detail::identity_t<V<const T>> x,
                           const bnorm::detail::ParameterArray<T>& weight,
                           const bnorm::detail::ParameterArray<T>& bias,
                           const bnorm::detail::ParameterArray<T>& running_mean,
                           const bnorm::detail::ParameterArray<T>& running_var, double eps,
                           V<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  const bnorm::detail::NchwFace<const T> fx(x);
  bnorm::detail::NchwFace<T> fy(y);
  Cache<T> k = forward_inference(*fx, weight, bias, running_mean, running_var, eps, *fy);
  fy.write_back();
  k.extents.assign(x.extents().begin(), x.extents().end());
  return k;
}

/// backward (staged.hpp) over rank-3 or rank-5 views, with the forward's weight.
template <class T, template <class> class V, bnorm::detail::if_other_rank<V> = 0>
void backward(const Cache<T>& k, bnorm::detail::identity_t<V<const T>> dy, V<T> dx,
              bnorm::detail::ParameterArray<T>& dweight, bnorm::detail::ParameterArray<T>& dbias) {
  detail::check_backward(k, dy, dx, dweight, dbias);
  const bnorm::detail::NchwFace<const T> fdy(dy);
  bnorm::detail::NchwFace<T> fdx(dx);
  detail::backward_steps(k, k.gamma, *fdy, *fdx, dweight, dbias);
  fdx.write_back();
}

/// backward (staged.hpp) over rank-3 or rank-5 views, with `weight` as it is now.
template <class T, template <class> class V, bnorm::detail::if_other_rank<V> = 0>
void backward(const Cache<T>& k, const bnorm::detail::ParameterArray<T>& weight,
              bnorm::detail::identity_t<V<const T>> dy, V<T> dx,
              bnorm::detail::ParameterArray<T>& dweight, bnorm::detail::ParameterArray<T>& dbias) {
  detail::check_backward(k, dy, dx, dweight, dbias);
  detail::check_backward_weight(k, weight, dweight, dbias);
  const bnorm::detail::NchwFace<const T> fdy(dy);
  bnorm::detail::NchwFace<T> fdx(dx);
  detail::backward_steps(k, detail::vector_or(weight, k.channels(), bnorm::detail::staged_t<T>(1)),
                         *fdy, *fdx, dweight, dbias);
  fdx.write_back();
}

}  // namespace staged
#endif

}  // namespace bnorm
