/// @file detail/epilogue_backward.hpp
/// @brief The module's fused backward of y = act(BN(x) + residual): the activation's mask
/// recomputed from x inside BatchNorm's backward, or its gate over y, then BatchNorm's backward.
#pragma once

#include <optional>
#include <vector>

#include "../activation.hpp"
#include "../config.hpp"
#include "../other_ranks.hpp"
#include "checks.hpp"
#include "nchw_face.hpp"

namespace bnorm::detail {

/// to = from, element by element, for two views of one shape.
template <class T, template <class> class V>
void copy_view(const V<const T>& from, const V<T>& to) {
  const NchwFace<const T> f(from);
  NchwFace<T> t(to);
  const NCHWView<const T>& a = *f;
  const NCHWView<T>& b = *t;
  for (index_t n = 0; n < a.n(); ++n)
    for (index_t c = 0; c < a.c(); ++c)
      for (index_t h = 0; h < a.h(); ++h)
        for (index_t w = 0; w < a.w(); ++w) b(n, c, h, w) = a(n, c, h, w);
  t.write_back();
}

/// What a module's Saved keeps of its forward's epilogue, y = act(BN(x) + residual).
template <class T, template <class> class V>
struct SavedEpilogue {
  Activation activation = Activation::none;
  bool residual = false;
  V<const T> y;  ///< the forward's y: with a residual, the activation's mask is read from it
  ParameterArray<T> weight, bias;  ///< the forward's (ReLU without a residual)

  /// ReLU without a residual: its mask recomputed from x with the forward's weight and bias.
  bool recomputed() const { return activation == Activation::relu && !residual; }
  /// The forward's ReLU for the fused backward, or null when the mask is not recomputed.
  std::optional<fused::Relu<T>> relu() const {
    if (!recomputed()) return std::nullopt;
    return fused::Relu<T>{weight, bias};
  }
};

/// The checks of a module backward's epilogue: dresidual only after a forward with a residual,
/// and apart from the x and y backward reads; dx apart from the y it reads (or exactly it).
template <class T, template <class> class V>
void check_epilogue_backward(const SavedEpilogue<T, V>& e, const V<const T>& x,
                             const V<const T>& dy, const V<T>& dx, const V<T>* dresidual) {
  if (e.activation != Activation::none && !e.recomputed())
    check_no_partial_overlap("dx", dx, "the forward's y", e.y);
  if (dresidual == nullptr) return;
  require(e.residual,
          "dresidual given, but the forward had no residual: expected the Saved of "
          "forward(x, residual, y)");
  check_dresidual(dy, dx, *dresidual);
  check_no_partial_overlap("dresidual", *dresidual, "the forward's x", x);
  check_no_partial_overlap("dresidual", *dresidual, "the forward's y", e.y);
  require(dresidual->size() == 0 || (!same_view(*dresidual, x) && !same_view(*dresidual, e.y)),
          "dresidual is the forward's x or y, which backward reads: expected a view of its own");
}

/// BatchNorm's fused backward of a module: with batch statistics or the running ones the
/// forward used, through the forward's ReLU when relu is not null.
template <class T, template <class> class V>
void fused_bn_backward(bool batch_statistics, const V<const T>& x, const V<const T>& dy,
                       const ParameterArray<T>& weight, const fused::BatchStatistics& stats,
                       const ParameterArray<T>& running_mean, const ParameterArray<T>& running_var,
                       double eps, const V<T>& dx, ParameterArray<T>& dweight,
                       ParameterArray<T>& dbias, const fused::Relu<T>* relu) {
  if (batch_statistics && relu)
    fused::backward<T>(x, dy, weight, stats, dx, dweight, dbias, *relu);
  else if (batch_statistics)
    fused::backward(x, dy, weight, stats, dx, dweight, dbias);
  else if (relu)
    fused::backward_inference<T>(x, dy, weight, running_mean, running_var, eps, dx, dweight, dbias,
                                 *relu);
  else
    fused::backward_inference(x, dy, weight, running_mean, running_var, eps, dx, dweight, dbias);
}

/// The fused backward of y = act(BN(x) + residual): bn_backward(g, relu) gives dx and the
/// parameter gradients for g = dL/dz, z = BN(x) (+ residual), where relu (a pointer to
/// fused::Relu<T>, or null) asks it to gate g itself.
/// - ReLU without a residual: bn_backward(dy, &relu), the mask recomputed from x in BN's sweeps.
/// - With a residual: g = relu_backward(y, dy) (dy itself without an activation) goes into
///   dresidual when given, else into dx when dx is not x (BN's backward then runs in place over
///   it), else into a buffer of its own; then bn_backward(g, null).
/// All arguments are checked; dresidual is neither x nor y.
template <class T, template <class> class V, class BnBackward>
void epilogue_backward(const SavedEpilogue<T, V>& e, const V<const T>& x, const V<const T>& dy,
                       const V<T>& dx, const V<T>* dresidual, const BnBackward& bn_backward) {
  if (const auto relu = e.relu()) {
    bn_backward(dy, &*relu);
    return;
  }
  const fused::Relu<T>* none = nullptr;
  if (e.activation == Activation::none) {
    if (dresidual != nullptr && !same_view(*dresidual, dy)) copy_view(dy, *dresidual);
    bn_backward(dy, none);
    return;
  }
  std::vector<T> buffer;
  V<T> g = dresidual != nullptr ? *dresidual : dx;
  if (dresidual == nullptr && same_view(dx, x)) {
    buffer.resize(static_cast<std::size_t>(x.size()));
    g = V<T>(buffer.data(), x.extents(), V<T>::contiguous_strides(x.extents()));
  }
  fused::relu_backward<T>(e.y, dy, g);
  bn_backward(V<const T>(g), none);
}

}  // namespace bnorm::detail
