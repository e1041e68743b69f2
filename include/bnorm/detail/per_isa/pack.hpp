/// @file detail/per_isa/pack.hpp
/// @brief 16-lane packs of float or double (GCC/Clang vector extensions) for the plane kernels.
///
/// A Pack<T> holds 16 consecutive values; the compiler maps it onto whatever vector registers
/// the target has (one AVX-512 register of floats, two of doubles, four SSE registers, ...), so
/// the kernels are written once and vectorise without relying on the auto-vectoriser. Compilers
/// without the extensions leave BNORM_HAVE_PACKS undefined and the kernels fall back to the
/// row loops of fused_kernels.hpp.
#if defined(BNORM_HAVE_PACKS)

/// Lanes per pack.
inline constexpr index_t kPackLanes = 16;

/// Bytes of one native vector register of the target.
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
inline constexpr std::size_t kNativeBytes = 64;
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
inline constexpr std::size_t kNativeBytes = 32;
#else
inline constexpr std::size_t kNativeBytes = 16;
#endif

/// One native register of T. The alignment is explicit: a vector type's default alignment
/// follows the unit's flags, not the target region's, and the region's code would assume its own.
template <class T>
struct NativeOf {
  typedef T type __attribute__((vector_size(kNativeBytes), aligned(kNativeBytes)));
};

/// 16 values of T with elementwise arithmetic (a scalar operand applies to every lane), held as
/// the target's native registers (one AVX-512 register of floats, two AVX2 ones, four SSE ones):
/// GCC lowers a generic vector wider than the target's registers through the stack, a store of
/// halves and a reload of the whole that cannot be forwarded (AVX2 normalisation: 3x the
/// floor). The registers sit in a struct so that passing a Pack by value never depends on the
/// target's vector registers (which GCC would warn about as an ABI change).
template <class T>
struct Pack {
  using Native = typename NativeOf<T>::type;
  static constexpr std::size_t kParts = kPackLanes * sizeof(T) / kNativeBytes;
  static constexpr index_t kPartLanes = kNativeBytes / sizeof(T);
  Native part[kParts];
};

// The operators are namespace-scope templates, not friends: a class template's members are
// compiled where the class is instantiated, which may be past the end of this set's target
// region; then they would return packs under the unit's calling convention, not the set's.
template <class T>
struct Scalar {
  using type = T;
};
/// r.part[j] = op(a.part[j], b) for every native register j; b a register or a scalar.
template <class T, class B, class Op>
Pack<T> per_part(const Pack<T>& a, const B& b, const Op& op) {
  Pack<T> r;
  for (std::size_t j = 0; j < Pack<T>::kParts; ++j) {
    if constexpr (std::is_same_v<B, Pack<T>>)
      r.part[j] = op(a.part[j], b.part[j]);
    else
      r.part[j] = op(a.part[j], b);
  }
  return r;
}
template <class T>
Pack<T> operator+(const Pack<T>& a, const Pack<T>& b) {
  return per_part(a, b, [](const auto& u, const auto& v) { return u + v; });
}
template <class T>
Pack<T> operator-(const Pack<T>& a, const Pack<T>& b) {
  return per_part(a, b, [](const auto& u, const auto& v) { return u - v; });
}
template <class T>
Pack<T> operator*(const Pack<T>& a, const Pack<T>& b) {
  return per_part(a, b, [](const auto& u, const auto& v) { return u * v; });
}
template <class T>
Pack<T> operator+(const Pack<T>& a, typename Scalar<T>::type s) {
  return per_part(a, s, [](const auto& u, T v) { return u + v; });
}
template <class T>
Pack<T> operator-(const Pack<T>& a, typename Scalar<T>::type s) {
  return per_part(a, s, [](const auto& u, T v) { return u - v; });
}
template <class T>
Pack<T> operator*(const Pack<T>& a, typename Scalar<T>::type s) {
  return per_part(a, s, [](const auto& u, T v) { return u * v; });
}

/// Lane j of a pack.
template <class T>
T lane(const Pack<T>& a, index_t j) {
  return a.part[j / Pack<T>::kPartLanes][j % Pack<T>::kPartLanes];
}

template <class T>
inline Pack<T> load_pack(const T* p) {
  // a register at a time: one memcpy of the whole pack compiles to 16-byte moves through the
  // stack under GCC's AVX2 target region
  Pack<T> a;
  for (std::size_t j = 0; j < Pack<T>::kParts; ++j)
    std::memcpy(&a.part[j], p + j * Pack<T>::kPartLanes, sizeof a.part[j]);  // unaligned load
  return a;
}

template <class T>
inline void store_pack(T* p, const Pack<T>& a) {
  for (std::size_t j = 0; j < Pack<T>::kParts; ++j)
    std::memcpy(p + j * Pack<T>::kPartLanes, &a.part[j], sizeof a.part[j]);
}

/// Writes a pack to line-aligned p with non-temporal stores.
template <class T>
inline void stream_pack(T* p, const Pack<T>& a) {
  auto* dst = reinterpret_cast<float*>(p);
  for (std::size_t j = 0; j < Pack<T>::kParts; ++j) {
    float* line = dst + j * (kNativeBytes / sizeof(float));
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
    __m512 v;
    std::memcpy(&v, &a.part[j], sizeof v);
    _mm512_stream_ps(line, v);
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
    __m256 v;
    std::memcpy(&v, &a.part[j], sizeof v);
    _mm256_stream_ps(line, v);
#elif BNORM_KERNEL_ISA >= BNORM_ISA_SSE2
    __m128 v;
    std::memcpy(&v, &a.part[j], sizeof v);
    _mm_stream_ps(line, v);
#else
    std::memcpy(line, &a.part[j], sizeof a.part[j]);
#endif
  }
}

/// Runs walk(put), where put(p, a) stores pack a at p: with non-temporal stores, then a fence,
/// when `stream` (every p must then start a cache line), with regular stores otherwise. One put
/// that tests `stream` (the same way for every pack, so the branch is free), not one walk per
/// kind of store: each kernel's loop is compiled once.
template <class T, class Walk>
void walk_storing(bool stream, const Walk& walk) {
  walk([stream](T* p, const Pack<compute_t<T>>& a) {
    if (stream)
      stream_pack(p, a);
    else
      store_pack(p, a);
  });
  if (stream) streaming_fence();
}

/// Doubles in one native vector register of the target.
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
inline constexpr index_t kWideLanes = 8;
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
inline constexpr index_t kWideLanes = 4;
#else
inline constexpr index_t kWideLanes = 2;
#endif

/// kWideLanes values of T: as doubles, one register.
template <class T>
struct NarrowOf {
  typedef T type
      __attribute__((vector_size(kWideLanes * sizeof(T)), aligned(kWideLanes * sizeof(T))));
};
using WideVec = NarrowOf<double>::type;

/// 16 double lanes, the accumulators of the pack reductions, held as native registers: GCC keeps
/// a generic vector wider than the target's registers (16 doubles) in memory, which would put
/// every accumulation through a store and a reload.
struct Wide {
  static constexpr index_t kParts = kPackLanes / kWideLanes;
  WideVec part[kParts];

  friend Wide operator+(const Wide& a, const Wide& b) {
    Wide r;
    for (index_t j = 0; j < kParts; ++j) r.part[j] = a.part[j] + b.part[j];
    return r;
  }
  friend Wide operator*(const Wide& a, const Wide& b) {
    Wide r;
    for (index_t j = 0; j < kParts; ++j) r.part[j] = a.part[j] * b.part[j];
    return r;
  }
  friend Wide operator-(const Wide& a, const Wide& b) {
    Wide r;
    for (index_t j = 0; j < kParts; ++j) r.part[j] = a.part[j] - b.part[j];
    return r;
  }
};

/// kWideLanes floats in double (exact), one instruction: GCC splits its generic conversion in
/// halves through the stack when tuned for 256 bits (AVX2: the backward sums at 3x the floor).
inline WideVec widen_floats(typename NarrowOf<float>::type n) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  __m256 v;
  std::memcpy(&v, &n, sizeof v);
  // the zero-masked form, as the plain one trips a false GCC 12 -Wmaybe-uninitialized
  return reinterpret_cast<WideVec>(_mm512_maskz_cvtps_pd(0xFF, v));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  __m128 v;
  std::memcpy(&v, &n, sizeof v);
  return reinterpret_cast<WideVec>(_mm256_cvtps_pd(v));
#else
  return __builtin_convertvector(n, WideVec);
#endif
}

/// p[0..16) in double (exact for float).
template <class T>
inline Wide load_wide(const T* p) {
  Wide w;
  for (index_t j = 0; j < Wide::kParts; ++j) {
    typename NarrowOf<T>::type n;
    std::memcpy(&n, p + j * kWideLanes, sizeof n);
    if constexpr (std::is_same_v<T, double>)
      w.part[j] = n;
    else
      w.part[j] = widen_floats(n);
  }
  return w;
}

/// Lanes [J * kWideLanes, (J + 1) * kWideLanes) of a pack in double: a double pack's register J,
/// or half J % 2 of a float pack's register J / 2 (a native register of floats holds two
/// registers' worth of doubles).
template <index_t J, class T>
WideVec pack_part(const Pack<T>& p) {
  if constexpr (std::is_same_v<T, double>) {
    return p.part[J];
  } else {
    typename NarrowOf<T>::type n;
    std::memcpy(&n, reinterpret_cast<const char*>(&p.part[J / 2]) + (J % 2) * sizeof n, sizeof n);
    return widen_floats(n);
  }
}
template <class T, std::size_t... J>
Wide widen_parts(const Pack<T>& p, std::index_sequence<J...>) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  if constexpr (std::is_same_v<T, float>) {
    // two instructions (GCC's generic conversion goes 128 bits at a time when tuned for 256)
    __m512 v;
    std::memcpy(&v, &p.part, sizeof v);
    const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, _mm512_castps_pd(v), 0));
    const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, _mm512_castps_pd(v), 1));
    Wide w;
    w.part[0] = reinterpret_cast<WideVec>(_mm512_maskz_cvtps_pd(0xFF, lo));
    w.part[1] = reinterpret_cast<WideVec>(_mm512_maskz_cvtps_pd(0xFF, hi));
    return w;
  }
#endif
  Wide w;
  ((w.part[J] = pack_part<static_cast<index_t>(J)>(p)), ...);
  return w;
}
/// The 16 values of a pack in double (exact for float), from registers: a pack computed in T
/// (a gated gradient, say) joins the double accumulators without a trip through memory.
template <class T>
Wide widen(const Pack<T>& p) {
  return widen_parts(p, std::make_index_sequence<Wide::kParts>{});
}

/// 16 lanes of s.
inline Wide broadcast(double s) {
  Wide w{};
  for (index_t j = 0; j < Wide::kParts; ++j) w.part[j] += s;
  return w;
}

/// Lane j of a.
inline double lane(const Wide& a, index_t j) {
  double t[kPackLanes];
  std::memcpy(t, a.part, sizeof t);
  return t[j];
}

/// The sum of the 16 lanes, added pairwise in a fixed order.
inline double lane_total(const Wide& a) {
  double t[kPackLanes];
  std::memcpy(t, a.part, sizeof t);
  for (index_t width = kPackLanes / 2; width > 0; width /= 2)
    for (index_t j = 0; j < width; ++j) t[j] += t[j + width];
  return t[0];
}

#endif
