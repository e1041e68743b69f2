/// @file staged_activation.hpp
/// @brief The staged variant with an epilogue: after the nine steps of BatchNorm (staged.hpp),
/// step 10 adds a residual and step 11 applies ReLU, each a node of its own with its local
/// backward (detail/staged_nodes.hpp), for views of every rank.
///
///   10 added = out + residual           11 activated = relu(added or out)
/// Backward walks 11 (din = dout where its input > 0, else 0) and 10 (both inputs get dout:
/// dL/dresidual), then steps 9 to 0. The Cache keeps added and activated; staged::backward of
/// staged.hpp and other_ranks.hpp walks the epilogue of any Cache.
#pragma once

#include <Eigen/Core>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/nchw_face.hpp"
#include "nchw_view.hpp"
#include "staged.hpp"

namespace bnorm::staged {
namespace detail {

/// The forward's last steps on the faces: epilogue, y stored, the view's own extents kept.
template <class T, template <class> class V>
Cache<T> finish_forward(Cache<T> k, const V<const T>& x, const V<const T>* residual, Activation act,
                        const V<T>& y) {
  const bnorm::detail::NchwFace<const T> fr(residual != nullptr ? *residual : x);
  epilogue_steps(k, residual != nullptr ? &*fr : nullptr, act);
  bnorm::detail::NchwFace<T> fy(y);
  if (y.size() != 0) store(k.output(), *fy);  // (N may be huge when C or H*W is 0)
  fy.write_back();
  k.extents.assign(x.extents().begin(), x.extents().end());
  return k;
}

}  // namespace detail

/// Training forward through steps 1 to 11: y = act(BN(x) + residual) with batch statistics,
/// for NCHWView, NCLView or NCDHWView. residual has x's shape (nullptr: no step 10); y may be
/// exactly x or exactly the residual. Throws bnorm::invalid_argument, before writing anything,
/// for the errors of forward_training (staged.hpp) and a residual of another shape or partly
/// overlapping y.
template <class T, template <class> class V>
Cache<T> forward_training(bnorm::detail::identity_t<V<const T>> x,
                          const bnorm::detail::identity_t<V<const T>>* residual,
                          const bnorm::detail::ParameterArray<T>& weight,
                          const bnorm::detail::ParameterArray<T>& bias, double eps, V<T> y,
                          Activation act) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  if (residual != nullptr) bnorm::detail::check_residual(x, *residual, y);
  bnorm::detail::check_training_count(x);
  const bnorm::detail::NchwFace<const T> fx(x);
  return detail::finish_forward(detail::training_steps(*fx, weight, bias, eps), x, residual, act,
                                y);
}

/// Eval forward with running statistics through steps 2, 5 to 11:
/// y = act(BN(x) + residual). The rules and errors of forward_training above.
template <class T, template <class> class V>
Cache<T> forward_inference(bnorm::detail::identity_t<V<const T>> x,
                           const bnorm::detail::identity_t<V<const T>>* residual,
                           const bnorm::detail::ParameterArray<T>& weight,
                           const bnorm::detail::ParameterArray<T>& bias,
                           const bnorm::detail::ParameterArray<T>& running_mean,
                           const bnorm::detail::ParameterArray<T>& running_var, double eps, V<T> y,
                           Activation act) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  if (residual != nullptr) bnorm::detail::check_residual(x, *residual, y);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  const bnorm::detail::NchwFace<const T> fx(x);
  return detail::finish_forward(
      detail::inference_steps(*fx, weight, bias, running_mean, running_var, eps), x, residual, act,
      y);
}

/// Backward through steps 11 to 0 with `weight` as it is now (C elements, or 0 for ones):
/// dx, dweight, dbias, and dL/dresidual into *dresidual when given (the forward must have had a
/// residual). dx and dresidual may each be exactly dy, not each other. Throws
/// bnorm::invalid_argument, before writing anything, for the errors of backward (staged.hpp)
/// and a dresidual of another shape, overlapping, or given without a residual.
template <class T, template <class> class V>
void backward(const Cache<T>& k, const bnorm::detail::ParameterArray<T>& weight,
              bnorm::detail::identity_t<V<const T>> dy, V<T> dx, const V<T>* dresidual,
              bnorm::detail::ParameterArray<T>& dweight, bnorm::detail::ParameterArray<T>& dbias) {
  using S = bnorm::detail::staged_t<T>;
  detail::check_backward(k, dy, dx, dweight, dbias);
  detail::check_backward_weight(k, weight, dweight, dbias);
  if (dresidual != nullptr) {
    bnorm::detail::require(k.residual,
                           "dresidual given, but the forward had no residual: expected a Saved "
                           "of forward(x, residual, y)");
    bnorm::detail::check_dresidual(dy, dx, *dresidual);
  }
  const bnorm::detail::NchwFace<const T> fdy(dy);
  bnorm::detail::NchwFace<T> fdx(dx), fdr(dresidual != nullptr ? *dresidual : dx);
  detail::backward_steps(k, detail::vector_or(weight, k.channels(), S(1)), *fdy, *fdx, dweight,
                         dbias, dresidual != nullptr ? &*fdr : nullptr);
  fdx.write_back();
  if (dresidual != nullptr) fdr.write_back();
}

}  // namespace bnorm::staged
