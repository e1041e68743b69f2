/// @file detail/epilogue_backward.hpp
/// @brief The module's fused backward of y = act(BN(x) + residual): the activation's gate,
/// then BatchNorm's backward with the gated gradient.
#pragma once

#include <vector>

#include "../activation.hpp"
#include "../config.hpp"
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

/// The checks of a module backward's epilogue: dresidual only after a forward with a residual,
/// and apart from the x and y backward reads; with an activation, dx apart from y (or exactly
/// it).
template <class T, template <class> class V>
void check_epilogue_backward(Activation act, bool had_residual, const V<const T>& x,
                             const V<const T>& y, const V<const T>& dy, const V<T>& dx,
                             const V<T>* dresidual) {
  if (act != Activation::none) check_no_partial_overlap("dx", dx, "the forward's y", y);
  if (dresidual == nullptr) return;
  require(had_residual,
          "dresidual given, but the forward had no residual: expected the Saved of "
          "forward(x, residual, y)");
  check_dresidual(dy, dx, *dresidual);
  check_no_partial_overlap("dresidual", *dresidual, "the forward's x", x);
  check_no_partial_overlap("dresidual", *dresidual, "the forward's y", y);
  require(dresidual->size() == 0 || (!same_view(*dresidual, x) && !same_view(*dresidual, y)),
          "dresidual is the forward's x or y, which backward reads: expected a view of its own");
}

/// With z = BN(x) (+ residual) and y = act(z): g = dL/dz = relu_backward(y, dy) (dy itself
/// without an activation) goes into dresidual when given, and bn_backward(g) gives dx and the
/// parameter gradients. g is written into dresidual, or into dx when dx is not x (BN's backward
/// then runs in place over it), or into a buffer of its own. All arguments are checked;
/// dresidual is neither x nor y.
template <class T, template <class> class V, class BnBackward>
void epilogue_backward(Activation act, const V<const T>& x, const V<const T>& y,
                       const V<const T>& dy, const V<T>& dx, const V<T>* dresidual,
                       const BnBackward& bn_backward) {
  if (act == Activation::none) {
    if (dresidual != nullptr && !same_view(*dresidual, dy)) copy_view(dy, *dresidual);
    bn_backward(dy);
    return;
  }
  std::vector<T> buffer;
  V<T> g = dresidual != nullptr ? *dresidual : dx;
  if (dresidual == nullptr && same_view(dx, x)) {
    buffer.resize(static_cast<std::size_t>(x.size()));
    g = V<T>(buffer.data(), x.extents(), V<T>::contiguous_strides(x.extents()));
  }
  fused::relu_backward<T>(y, dy, g);
  bn_backward(V<const T>(g));
}

}  // namespace bnorm::detail
