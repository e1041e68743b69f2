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
/// The same on packs, lane by lane, register by register: r = by <= 0 ? 0 : v (false for NaN).
template <class T>
Pack<T> passed(const Pack<T>& by, const Pack<T>& v) {
  const typename Pack<T>::Native zero{};
  Pack<T> r;
  for (std::size_t j = 0; j < Pack<T>::kParts; ++j) {
    auto value = v.part[j];
    // v in a register first: folded into a load masked by the comparison (AVX-512), v's load
    // would wait for by's arithmetic, and a stream of them stalls (ReLU backward on 28x28
    // planes: 2x).
    __asm__("" : "+x"(value));
    r.part[j] = by.part[j] <= zero ? zero : value;
  }
  return r;
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
