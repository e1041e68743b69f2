/// @file detail/per_isa/activation.hpp
/// @brief The activations fused into the forward's elementwise map (y = act(BN(x) + residual)),
/// and the gate of their backward (g = dy where the activation passed).
///
/// As torch.relu: relu(z) = z < 0 ? 0 : z, so NaN and -0 pass as they are; its backward over its
/// output y = relu(z) is threshold_backward's g = y <= 0 ? 0 : dy (NaN lets its gradient
/// through, -0 and 0 do not), which recomputed from z is the same decision, z <= 0.

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

/// The forward's activation with its kind as a constant t instead of a type, so each kernel is
/// compiled once for both: act(z) = z < t ? 0 : z, where t = 0 is torch.relu (NaN and -0 pass
/// as they are) and t = -inf passes every z (activation_threshold). No NaN constant: a unit
/// built with -ffinite-math-only may assume comparisons are ordered. On scalars.
template <class T>
T activated(T z, T t) {
  return z < t ? T(0) : z;
}
#if defined(BNORM_HAVE_PACKS)
/// The same on packs, t in every lane: a comparison and an and-not per register.
template <class T>
Pack<T> activated(const Pack<T>& z, typename Scalar<T>::type t) {
  const typename Pack<T>::Native zero{}, v = t - zero;  // t in every lane (t - 0 is t)
  return per_part(z, v, [&zero](const auto& u, const auto& w) { return u < w ? zero : u; });
}
#endif

/// The constant t of activated for an activation: 0 for ReLU, -inf for none.
template <class T>
T activation_threshold(Activation activation) {
  return activation == Activation::relu ? T(0) : -std::numeric_limits<T>::infinity();
}

/// Calls f() or f(residual) with e's residual view when it has one, so a kernel is compiled once
/// per kind of input list (the activation is a constant: activation_threshold).
template <class T, class F>
void with_residual(const Epilogue<T>& e, const F& f) {
  if (e.residual != nullptr)
    f(*e.residual);
  else
    f();
}
