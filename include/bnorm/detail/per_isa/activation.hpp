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
/// The same on packs, lane by lane. In native registers: GCC compiles a comparison of vectors
/// wider than the target's registers (a pack of 16 on AVX2 and SSE2) into a branch per lane.
template <class T>
Pack<T> passed(const Pack<T>& by, const Pack<T>& v) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  const typename VectorOf<T>::type zero{};
  auto value = v.v;
  // v in a register first: folded into a load masked by the comparison, v's load would wait
  // for by's arithmetic, and a stream of them stalls (ReLU backward on 28x28 planes: 2x).
  if constexpr (sizeof value == 64) __asm__("" : "+v"(value));
  return {by.v <= zero ? zero : value};
#elif BNORM_KERNEL_ISA >= BNORM_ISA_SSE2
  // per register: m = by <= 0 (false for NaN), r = v & ~m
  Pack<T> r;
  const auto* b = reinterpret_cast<const char*>(&by.v);
  const auto* x = reinterpret_cast<const char*>(&v.v);
  auto* out = reinterpret_cast<char*>(&r.v);
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  using F = __m256;
  using D = __m256d;
#else
  using F = __m128;
  using D = __m128d;
#endif
  constexpr std::size_t kBytes = sizeof(F);
  for (std::size_t j = 0; j < sizeof r.v; j += kBytes) {
    if constexpr (std::is_same_v<T, float>) {
      F bf, xf;
      std::memcpy(&bf, b + j, kBytes);
      std::memcpy(&xf, x + j, kBytes);
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
      xf = _mm256_andnot_ps(_mm256_cmp_ps(bf, _mm256_setzero_ps(), _CMP_LE_OQ), xf);
#else
      xf = _mm_andnot_ps(_mm_cmple_ps(bf, _mm_setzero_ps()), xf);
#endif
      std::memcpy(out + j, &xf, kBytes);
    } else {
      D bd, xd;
      std::memcpy(&bd, b + j, kBytes);
      std::memcpy(&xd, x + j, kBytes);
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
      xd = _mm256_andnot_pd(_mm256_cmp_pd(bd, _mm256_setzero_pd(), _CMP_LE_OQ), xd);
#else
      xd = _mm_andnot_pd(_mm_cmple_pd(bd, _mm_setzero_pd()), xd);
#endif
      std::memcpy(out + j, &xd, kBytes);
    }
  }
  return r;
#else
  Pack<T> r;
  for (index_t j = 0; j < kPackLanes; ++j) r.v[j] = passed(by.v[j], v.v[j]);
  return r;
#endif
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
