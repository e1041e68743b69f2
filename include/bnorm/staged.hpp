/// @file staged.hpp
/// @brief The staged variant: BatchNorm2d as the nine-step graph of the seed notebook.
///
/// Forward, per channel over N, H, W (M = N*H*W values), with gamma and beta broadcast over C:
///   1 mu = mean(x)           2 xmu = x - mu         3 sq = xmu^2
///   4 var = mean(sq)         5 sqrtvar = sqrt(var + eps)
///   6 ivar = 1 / sqrtvar     7 xhat = xmu * ivar    8 gammax = gamma * xhat
///   9 out = gammax + beta
/// Every step is a node below that materialises its output and owns its local backward; the
/// Cache keeps the intermediates, and backward() walks the nodes from step 9 back to step 0
/// (where the two paths into x meet). It is the executable specification the fused variant is
/// checked against: slow and obvious on purpose.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/element_types.hpp"
#include "detail/staged_nodes.hpp"
#include "nchw_view.hpp"

namespace bnorm::staged {

/// The intermediates of one forward pass, named after the notebook's steps.
template <class T>
struct Cache {
  using S = bnorm::detail::staged_t<T>;  ///< what the steps compute in: T, double for 16 bits
  /// true: mu and var are the batch's, functions of x (training); false: the running
  /// statistics, constants of the forward (eval), so backward stops at step 7.
  bool batch_statistics = true;
  bool affine = true;     ///< false: gamma = 1, beta = 0 and no parameter gradients
  S eps = S(0);           ///< added to var in step 5
  Tensor1<S> mu;          ///< step 1: the mean (running_mean in eval)
  Tensor1<S> var;         ///< step 4: the biased variance (running_var in eval)
  Tensor1<S> sqrtvar;     ///< step 5: sqrt(var + eps)
  Tensor1<S> ivar;        ///< step 6: 1 / sqrtvar
  Tensor1<S> gamma;       ///< the weight (ones without affine)
  Tensor1<S> beta;        ///< the bias (zeros without affine)
  Tensor4<S> xmu;         ///< step 2: x - mu
  Tensor4<S> sq;          ///< step 3: xmu^2 (not computed in eval)
  Tensor4<S> xhat;        ///< step 7: xmu * ivar
  Tensor4<S> gammax;      ///< step 8: gamma * xhat
  Tensor4<S> out;         ///< step 9: gammax + beta, BN(x)
  bool residual = false;  ///< step 10 ran: a residual was added
  Activation activation = Activation::none;  ///< step 11's activation (none: no step 11)
  Tensor4<S> added;                          ///< step 10: out + residual (empty without a residual)
  Tensor4<S> activated;  ///< step 11: relu of out or added (empty without an activation)
  /// The forward's x extents as its view gave them: (N, C, H, W), or (N, C, L) and
  /// (N, C, D, H, W) for the rank-3 and rank-5 views, whose steps run on (N, C, 1, L) and
  /// (N, C, D*H, W) (other_ranks.hpp). backward checks dy against them.
  std::vector<index_t> extents;

  /// The forward's input shape, (N, C, H, W).
  Shape shape() const { return xmu.dimensions(); }
  /// C.
  index_t channels() const { return static_cast<index_t>(mu.size()); }
  /// The input of step 11: added with a residual, else out.
  const Tensor4<S>& pre_activation() const { return residual ? added : out; }
  /// The output y: the last step's.
  const Tensor4<S>& output() const {
    return activation != Activation::none ? activated : pre_activation();
  }
};

namespace detail {

/// v's values in the staged type (exactly).
template <class T>
Tensor4<bnorm::detail::staged_t<T>> load(const NCHWView<const T>& v) {
  using S = bnorm::detail::staged_t<T>;
  Tensor4<S> t(v.n(), v.c(), v.h(), v.w());
  for (index_t n = 0; n < v.n(); ++n)
    for (index_t c = 0; c < v.c(); ++c)
      for (index_t h = 0; h < v.h(); ++h)
        for (index_t w = 0; w < v.w(); ++w)
          t(n, c, h, w) = static_cast<S>(bnorm::detail::to_compute(v(n, c, h, w)));
  return t;
}

/// t's values rounded once to v's type.
template <class T>
void store(const Tensor4<bnorm::detail::staged_t<T>>& t, const NCHWView<T>& v) {
  for (index_t n = 0; n < v.n(); ++n)
    for (index_t c = 0; c < v.c(); ++c)
      for (index_t h = 0; h < v.h(); ++h)
        for (index_t w = 0; w < v.w(); ++w)
          v(n, c, h, w) = bnorm::detail::round_from_staged<T>(t(n, c, h, w));
}

/// a's C values in S, or C times `fill` when a is empty.
template <class S, class U>
Tensor1<S> vector_or(const Eigen::Array<U, Eigen::Dynamic, 1>& a, index_t channels, S fill) {
  Tensor1<S> t(channels);
  for (index_t c = 0; c < channels; ++c) t(c) = a.size() == 0 ? fill : static_cast<S>(a[c]);
  return t;
}

/// Steps 7 to 9, shared by training and eval.
template <class T>
void normalise(Cache<T>& k, const bnorm::detail::ParameterArray<T>& weight,
               const bnorm::detail::ParameterArray<T>& bias) {
  using S = bnorm::detail::staged_t<T>;
  const index_t channels = k.mu.size();
  k.affine = weight.size() != 0;
  k.gamma = vector_or(weight, channels, S(1));
  k.beta = vector_or(bias, channels, S(0));
  k.xhat = nodes::MulChannel::forward<S>(k.xmu, k.ivar);        // step 7
  k.gammax = nodes::MulChannel::forward<S>(k.xhat, k.gamma);    // step 8
  k.out = nodes::AddChannel<+1>::forward<S>(k.gammax, k.beta);  // step 9
}

/// The cache of a forward over an empty x (mu and var set): the shapes and the per-channel
/// steps, and no element (N may be huge when C or H*W is 0, so nothing loops over it).
template <class T>
void finish_empty(Cache<T>& k, const NCHWView<const T>& x,
                  const bnorm::detail::ParameterArray<T>& weight,
                  const bnorm::detail::ParameterArray<T>& bias) {
  using S = bnorm::detail::staged_t<T>;
  k.sqrtvar = nodes::SqrtEps::forward<S>(k.var, k.eps);
  k.ivar = nodes::Reciprocal::forward<S>(k.sqrtvar);
  k.affine = weight.size() != 0;
  k.gamma = vector_or(weight, x.c(), S(1));
  k.beta = vector_or(bias, x.c(), S(0));
  const Tensor4<S> none(x.n(), x.c(), x.h(), x.w());
  k.xmu = k.sq = k.xhat = k.gammax = k.out = none;
}

/// Steps 1 to 9 with batch statistics, nothing stored; the arguments are already checked.
template <class T>
Cache<T> training_steps(const NCHWView<const T>& x, const bnorm::detail::ParameterArray<T>& weight,
                        const bnorm::detail::ParameterArray<T>& bias, double eps) {
  using S = bnorm::detail::staged_t<T>;
  Cache<T> k;
  k.eps = static_cast<S>(eps);
  k.extents.assign(x.extents().begin(), x.extents().end());
  if (x.size() == 0) {  // statistics of no values: 0, as the fused variant reports them
    k.mu = vector_or(bnorm::detail::ParameterArray<T>(), x.c(), S(0));
    k.var = k.mu;
    finish_empty(k, x, weight, bias);
    return k;
  }
  const Tensor4<S> xt = load(x);
  k.mu = nodes::ChannelMean::forward<S>(xt);             // step 1
  k.xmu = nodes::AddChannel<-1>::forward<S>(xt, k.mu);   // step 2
  k.sq = nodes::Square::forward<S>(k.xmu);               // step 3
  k.var = nodes::ChannelMean::forward<S>(k.sq);          // step 4
  k.sqrtvar = nodes::SqrtEps::forward<S>(k.var, k.eps);  // step 5
  k.ivar = nodes::Reciprocal::forward<S>(k.sqrtvar);     // step 6
  normalise(k, weight, bias);                            // steps 7-9
  return k;
}

/// Steps 2 and 5 to 9 with the running statistics, nothing stored; the arguments are checked.
template <class T>
Cache<T> inference_steps(const NCHWView<const T>& x, const bnorm::detail::ParameterArray<T>& weight,
                         const bnorm::detail::ParameterArray<T>& bias,
                         const bnorm::detail::ParameterArray<T>& running_mean,
                         const bnorm::detail::ParameterArray<T>& running_var, double eps) {
  using S = bnorm::detail::staged_t<T>;
  Cache<T> k;
  k.batch_statistics = false;
  k.eps = static_cast<S>(eps);
  k.extents.assign(x.extents().begin(), x.extents().end());
  k.mu = vector_or(running_mean, x.c(), S(0));
  k.var = vector_or(running_var, x.c(), S(1));
  if (x.size() == 0) {
    finish_empty(k, x, weight, bias);
    return k;
  }
  k.xmu = nodes::AddChannel<-1>::forward<S>(load(x), k.mu);  // step 2
  k.sqrtvar = nodes::SqrtEps::forward<S>(k.var, k.eps);      // step 5
  k.ivar = nodes::Reciprocal::forward<S>(k.sqrtvar);         // step 6
  normalise(k, weight, bias);                                // steps 7-9
  return k;
}

/// Steps 10 (with a residual) and 11 (with an activation) after step 9; x and the residual
/// have the forward's shape.
template <class T>
void epilogue_steps(Cache<T>& k, const NCHWView<const T>* residual, Activation act) {
  using S = bnorm::detail::staged_t<T>;
  k.residual = residual != nullptr;
  k.activation = act;
  if (k.out.size() == 0) {  // no element (and N may be huge): the empty tensors as they are
    if (k.residual) k.added = k.out;
    if (act != Activation::none) k.activated = k.out;
    return;
  }
  if (k.residual) k.added = nodes::Add::forward<S>(k.out, load(*residual));  // step 10
  if (act == Activation::relu) k.activated = nodes::Relu::forward<S>(k.pre_activation());  // 11
}

}  // namespace detail

/// Training forward through the nine steps with batch statistics; writes out into y and returns
/// the cache. weight and bias have C elements, or both 0 for affine = false. y may be exactly x
/// (in place: the cache keeps what backward needs). Throws bnorm::invalid_argument, before
/// writing anything, on mismatched shapes or sizes, a y whose layout is not unique or that
/// partially overlaps x, a negative or NaN eps, or M == 1.
template <class T>
Cache<T> forward_training(NCHWView<const T> x, const bnorm::detail::ParameterArray<T>& weight,
                          const bnorm::detail::ParameterArray<T>& bias, double eps, NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_training_count(x);
  Cache<T> k = detail::training_steps(x, weight, bias, eps);
  if (y.size() != 0) detail::store(k.out, y);  // (N may be huge when C or H*W is 0)
  return k;
}

/// Eval forward with running statistics: mu = running_mean and var = running_var are constants,
/// steps 3 and 4 do not run. y may be exactly x (in place). Throws bnorm::invalid_argument,
/// before writing anything, on mismatched shapes or sizes, a y whose layout is not unique or
/// that partially overlaps x, or a negative or NaN eps.
template <class T>
Cache<T> forward_inference(NCHWView<const T> x, const bnorm::detail::ParameterArray<T>& weight,
                           const bnorm::detail::ParameterArray<T>& bias,
                           const bnorm::detail::ParameterArray<T>& running_mean,
                           const bnorm::detail::ParameterArray<T>& running_var, double eps,
                           NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  Cache<T> k = detail::inference_steps(x, weight, bias, running_mean, running_var, eps);
  if (y.size() != 0) detail::store(k.out, y);  // (N may be huge when C or H*W is 0)
  return k;
}

namespace detail {

/// Steps 11 to 0 of the backward with weight `gamma`, dL/dresidual (step 10's) stored into
/// *dresidual when given; the arguments are already checked.
template <class T>
void backward_steps(const Cache<T>& k, const Tensor1<bnorm::detail::staged_t<T>>& gamma,
                    NCHWView<const T> dy, NCHWView<T> dx, bnorm::detail::ParameterArray<T>& dweight,
                    bnorm::detail::ParameterArray<T>& dbias,
                    const NCHWView<T>* dresidual = nullptr) {
  using S = bnorm::detail::staged_t<T>;
  using namespace nodes;
  const Shape s = k.shape();
  if (dy.size() == 0) {  // no element: gradients 0, as the fused variant gives
    dweight.setZero(k.affine ? k.channels() : 0);
    dbias.setZero(k.affine ? k.channels() : 0);
    return;
  }
  Tensor4<S> dout = load(dy);
  if (k.activation == Activation::relu)
    dout = Relu::backward<S>(k.pre_activation(), dout);  // step 11
  if (k.residual) {
    auto [dbn, dres] = Add::backward<S>(dout);  // step 10
    if (dresidual != nullptr) store(dres, *dresidual);
    dout = dbn;
  }
  auto [dgammax, dbeta] = AddChannel<+1>::backward<S>(dout);               // step 9
  auto [dxhat, dgamma] = MulChannel::backward<S>(k.xhat, gamma, dgammax);  // step 8
  auto [dxmu1, divar] = MulChannel::backward<S>(k.xmu, k.ivar, dxhat);     // step 7
  Tensor4<S> dxt = dxmu1;
  if (k.batch_statistics) {
    const Tensor1<S> dsqrtvar = Reciprocal::backward<S>(k.sqrtvar, divar);     // step 6
    const Tensor1<S> dvar = SqrtEps::backward<S>(k.var, k.eps, dsqrtvar);      // step 5
    const Tensor4<S> dsq = ChannelMean::backward<S>(dvar, s);                  // step 4
    const Tensor4<S> dxmu2 = Square::backward<S>(k.xmu, dsq);                  // step 3
    auto [dx1, dmu] = AddChannel<-1>::backward<S>(Tensor4<S>(dxmu1 + dxmu2));  // step 2
    const Tensor4<S> dx2 = ChannelMean::backward<S>(dmu, s);                   // step 1
    dxt = dx1 + dx2;                                                           // step 0
  }
  store(dxt, dx);
  const index_t channels = k.affine ? k.channels() : 0;
  dweight.resize(channels);
  dbias.resize(channels);
  for (index_t c = 0; c < channels; ++c) {  // (rounded once to the parameters' type)
    dweight[c] = static_cast<bnorm::detail::compute_t<T>>(dgamma(c));
    dbias[c] = static_cast<bnorm::detail::compute_t<T>>(dbeta(c));
  }
}

/// backward's checks of dy and dx (views of any rank) and of the gradient arrays.
template <class T, template <class> class V>
void check_backward(const Cache<T>& k, const V<const T>& dy, const V<T>& dx,
                    const bnorm::detail::ParameterArray<T>& dweight,
                    const bnorm::detail::ParameterArray<T>& dbias) {
  bnorm::detail::require(
      std::equal(k.extents.begin(), k.extents.end(), dy.extents().begin(), dy.extents().end()),
      "dy has shape ", bnorm::detail::shape_text(dy.extents()), ", expected ",
      bnorm::detail::shape_text(k.extents), " (the shape of the forward's x)");
  bnorm::detail::check_same_shape("dx", dx, "dy", dy);
  bnorm::detail::check_backward_output(dy, dx);
  bnorm::detail::check_distinct_arrays("dweight", dweight, "dbias", dbias);
}

/// The weight given to backward: C elements or none, and not a gradient array.
template <class T>
void check_backward_weight(const Cache<T>& k, const bnorm::detail::ParameterArray<T>& weight,
                           const bnorm::detail::ParameterArray<T>& dweight,
                           const bnorm::detail::ParameterArray<T>& dbias) {
  if (weight.size() != 0)
    bnorm::detail::check_size("weight", weight.size(), k.channels(), "the channels of x");
  bnorm::detail::check_distinct_arrays("dweight", dweight, "weight", weight);
  bnorm::detail::check_distinct_arrays("dbias", dbias, "weight", weight);
}

}  // namespace detail

/// Backward: walks the nodes from step 9 to step 0 with dout = dy. Writes dx and sets dweight
/// and dbias to dgamma and dbeta (size 0 when the forward was not affine). dx may be exactly
/// dy (in place). Throws bnorm::invalid_argument, before writing anything, when dy or dx differ
/// in shape from the cached forward, dx's layout is not unique or dx partially overlaps dy, or
/// dweight and dbias are the same array.
template <class T>
void backward(const Cache<T>& k, NCHWView<const T> dy, NCHWView<T> dx,
              bnorm::detail::ParameterArray<T>& dweight, bnorm::detail::ParameterArray<T>& dbias) {
  detail::check_backward(k, dy, dx, dweight, dbias);
  detail::backward_steps(k, k.gamma, dy, dx, dweight, dbias);
}

/// Backward as above with `weight` (C elements, or 0 for ones) in place of the forward's: the
/// weight as it is when backward runs, which is what BatchNorm2d uses, like the fused variant.
template <class T>
void backward(const Cache<T>& k, const bnorm::detail::ParameterArray<T>& weight,
              NCHWView<const T> dy, NCHWView<T> dx, bnorm::detail::ParameterArray<T>& dweight,
              bnorm::detail::ParameterArray<T>& dbias) {
  using S = bnorm::detail::staged_t<T>;
  detail::check_backward(k, dy, dx, dweight, dbias);
  detail::check_backward_weight(k, weight, dweight, dbias);
  detail::backward_steps(k, detail::vector_or(weight, k.channels(), S(1)), dy, dx, dweight, dbias);
}

}  // namespace bnorm::staged
