/// @file detail/per_isa/activation.hpp
/// @brief The activations fused into the forward's elementwise map (y = act(BN(x) + residual)),
/// and the gate of their backward (g = dy where the activation passed).
///
/// ReLU passes a value unless it is <= 0, so NaN passes (as torch.relu keeps NaN, and as
/// threshold_backward lets its gradient through): relu(z) = z <= 0 ? 0 : z, and its backward
/// over its output y = relu(z) is g = y <= 0 ? 0 : dy, the same decision as the forward's.

/// v where `by` passed (by > 0, or NaN), else 0; on scalars.
template <class T>
T passed(T by, T v) {
  return by <= T(0) ? T(0) : v;
}
#if defined(BNORM_HAVE_PACKS)
/// The same on packs, lane by lane.
template <class T>
Pack<T> passed(const Pack<T>& by, const Pack<T>& v) {
  const typename VectorOf<T>::type zero{};
  return {by.v <= zero ? zero : v.v};
}
#endif

/// No activation: act(z) = z.
struct Keep {
  template <class V>
  V operator()(const V& z) const {
    return z;
  }
};

/// act(z) = relu(z) = z <= 0 ? 0 : z.
struct Relu {
  template <class V>
  V operator()(const V& z) const {
    return passed(z, z);
  }
};

/// Calls f(act) with act the Keep or Relu of `e`, followed by e's residual view when it has one:
/// f(act) or f(act, residual), so a kernel is compiled once per kind of epilogue.
template <class T, class F>
void with_epilogue(const Epilogue<T>& e, const F& f) {
  const auto with_act = [&](const auto&... residual) {
    if (e.activation == Activation::relu)
      f(Relu{}, residual...);
    else
      f(Keep{}, residual...);
  };
  if (e.residual != nullptr)
    with_act(*e.residual);
  else
    with_act();
}
