/// @file detail/per_isa/float16_packs.hpp
/// @brief bfloat16 and half (IEEE binary16) to and from packs of float: the functions of
/// detail/float16.hpp on 16 lanes, with F16C's instructions for half where the set has them.
/// Every set gives the scalar functions' bits (tests/test_float16.cpp compares them).

#if defined(BNORM_HAVE_PACKS)
/// The 32-bit integer lanes of one native register, and the 16-bit values of as many lanes.
using U32Vec = NativeOf<std::uint32_t>::type;
using I32Vec = NativeOf<std::int32_t>::type;
typedef std::uint16_t U16Vec
    __attribute__((vector_size(kNativeBytes / 2), aligned(kNativeBytes / 2)));
using FloatVec = Pack<float>::Native;

/// The 16-bit values at p, one per lane, zero-extended.
inline U32Vec load_u16_lanes(const std::uint16_t* p) {
  U16Vec h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, U32Vec);
}

/// All lanes s.
inline U32Vec splat_u32(std::uint32_t s) {
  return U32Vec{} + s;
}

// bfloat16_to_float on a register: b << 16
inline FloatVec bf16_part_to_float(const std::uint16_t* p) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  // one 512-bit widening (GCC's generic one goes 256 bits at a time when tuned for 256), the
  // zero-masked forms as elsewhere (a false GCC 12 -Wmaybe-uninitialized)
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return reinterpret_cast<FloatVec>(
      _mm512_maskz_slli_epi32(0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, b), 16));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return reinterpret_cast<FloatVec>(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
#else
  return reinterpret_cast<FloatVec>(load_u16_lanes(p) << 16);
#endif
}

// float_to_bf16 on a register: NaN ? u >> 16 | 0x40 : (u + 0x7FFF + (u >> 16 & 1)) >> 16
inline U16Vec bf16_bits(const FloatVec& v) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  // The same with fewer instructions (the conversion is most of a 16-bit pass's work): NaN by
  // classification (quiet or signalling: not a comparison, which -ffinite-math-only may fold);
  // its lanes u | 0x400000, whose top half is u >> 16 | 0x40; the top halves packed by one
  // narrowing.
  const __m512i u = reinterpret_cast<__m512i>(v);
  const __mmask16 nan = _mm512_fpclass_ps_mask(reinterpret_cast<__m512>(v), 0x81);
  const __m512i odd =
      _mm512_and_si512(_mm512_maskz_srli_epi32(0xFFFF, u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
  const __m512i r = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
  return reinterpret_cast<U16Vec>(
      _mm512_maskz_cvtepi32_epi16(0xFFFF, _mm512_maskz_srli_epi32(0xFFFF, r, 16)));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  // the same in AVX2's instructions: GCC's generic selection and narrowing of 8 lanes took 2.5
  // times F16C's time for half (inference over bfloat16)
  const __m256i u = reinterpret_cast<__m256i>(v);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)),
                                         _mm256_set1_epi32(0x7F800000));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
  const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
  const __m256i r = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, nan), 16);
  // each lane under 2^16: packus's saturation keeps it (it packs within 128-bit halves)
  return reinterpret_cast<U16Vec>(
      _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
#else
  const auto u = reinterpret_cast<U32Vec>(v);
  const auto a = reinterpret_cast<I32Vec>(u & 0x7FFFFFFFu);
  const U32Vec rounded = (u + 0x7FFFu + (u >> 16 & 1u)) >> 16, quiet = u >> 16 | 0x0040u;
  return __builtin_convertvector(a > 0x7F800000 ? quiet : rounded, U16Vec);
#endif
}

// half_to_float on a register (F16C's vcvtph2ps where the set has it)
inline FloatVec half_part_to_float(const std::uint16_t* p) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  // the zero-masked forms here and below: the plain ones trip a false GCC 12
  // -Wmaybe-uninitialized (widen_floats in pack.hpp)
  return reinterpret_cast<FloatVec>(
      _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  return reinterpret_cast<FloatVec>(
      _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
  // e == 31 ? sign | inf | m << 13 (| quiet) : e ? sign | (e + 112) << 23 | m << 13 : m * 2^-24
  const U32Vec h = load_u16_lanes(p);
  const U32Vec sign = (h & 0x8000u) << 16, e = h >> 10 & 0x1Fu, m = h & 0x3FFu;
  const U32Vec special = sign | 0x7F800000u | m << 13 | (m != 0 ? splat_u32(0x00400000u) : 0u);
  const U32Vec normal = sign | (e + 112u) << 23 | m << 13;
  const FloatVec small = __builtin_convertvector(reinterpret_cast<I32Vec>(m), FloatVec) * 0x1p-24f;
  const U32Vec subnormal = sign | reinterpret_cast<U32Vec>(small);
  return reinterpret_cast<FloatVec>(e == 0x1Fu ? special : e != 0u ? normal : subnormal);
#endif
}

// float_to_half on a register (F16C's vcvtps2ph, rounding to nearest even, where the set has it)
inline U16Vec half_bits(const FloatVec& v) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  return reinterpret_cast<U16Vec>(
      _mm512_maskz_cvtps_ph(0xFFFF, reinterpret_cast<__m512>(v), _MM_FROUND_TO_NEAREST_INT));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  return reinterpret_cast<U16Vec>(
      _mm256_cvtps_ph(reinterpret_cast<__m256>(v), _MM_FROUND_TO_NEAREST_INT));
#else
  // NaN ? quiet | top payload : a >= 2^16 ? inf : a < 2^-14 ? round(M >> min(126 - e, 31)) :
  // (a - 112 << 23 + 0xFFF + (a >> 13 & 1)) >> 13
  const auto u = reinterpret_cast<U32Vec>(v);
  const U32Vec a = u & 0x7FFFFFFFu, sign = u >> 16 & 0x8000u;
  const auto ai = reinterpret_cast<I32Vec>(a);
  const U32Vec nan = 0x7E00u | (a >> 13 & 0x3FFu);
  const U32Vec mantissa = (a & 0x7FFFFFu) | 0x800000u, e = a >> 23;
  // 126 - e in [14, 31] (the lanes over 2^-14 take 14: they are not subnormal, and no lane
  // shifts by its width or more)
  const U32Vec shift = e > 112u ? splat_u32(14u) : e < 95u ? splat_u32(31u) : 126u - e;
  const U32Vec subnormal =
      (mantissa + (splat_u32(1u) << (shift - 1u)) - 1u + (mantissa >> shift & 1u)) >> shift;
  const U32Vec normal = (a - 0x38000000u + 0xFFFu + (a >> 13 & 1u)) >> 13;
  const U32Vec finite = ai < 0x38800000 ? subnormal : normal;
  const U32Vec r = ai > 0x7F800000 ? nan : ai >= 0x47800000 ? splat_u32(0x7C00u) : finite;
  return __builtin_convertvector(sign | r, U16Vec);
#endif
}

/// The 16 values at p as floats, and back, a register at a time (as load_pack and store_pack)
/// with one of the register conversions above.
template <class Widen>
Pack<float> load_16bit(const std::uint16_t* p, const Widen& widen) {
  Pack<float> a;
  for (std::size_t j = 0; j < Pack<float>::kParts; ++j)
    a.part[j] = widen(p + j * Pack<float>::kPartLanes);
  return a;
}
/// A pack rounded to 16 bits by `bits` (bf16_bits, half_bits), register by register, to p.
template <class Bits>
void store_16bit(std::uint16_t* p, const Pack<float>& a, const Bits& bits) {
  for (std::size_t j = 0; j < Pack<float>::kParts; ++j) {
    const U16Vec h = bits(a.part[j]);
    std::memcpy(p + j * Pack<float>::kPartLanes, &h, sizeof h);
  }
}
/// The same with non-temporal stores, p 32-byte aligned: the pack's 32 bytes joined in registers.
/// (Stored as parts and read back whole, as a buffer would, they missed store forwarding: AVX2
/// bfloat16 inference ran 6 times slower.)
template <class Bits>
void stream_16bit(std::uint16_t* p, const Pack<float>& a, const Bits& bits) {
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
  _mm256_stream_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i>(bits(a.part[0])));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
  _mm256_stream_si256(reinterpret_cast<__m256i*>(p),
                      _mm256_set_m128i(reinterpret_cast<__m128i>(bits(a.part[1])),
                                       reinterpret_cast<__m128i>(bits(a.part[0]))));
#elif BNORM_KERNEL_ISA >= BNORM_ISA_SSE2
  // four registers of 8 bytes, two by two
  for (std::size_t j = 0; j < 4; j += 2) {
    long long lo, hi;
    const U16Vec l = bits(a.part[j]), h = bits(a.part[j + 1]);
    std::memcpy(&lo, &l, sizeof lo);
    std::memcpy(&hi, &h, sizeof hi);
    _mm_stream_si128(reinterpret_cast<__m128i*>(p + 4 * j), _mm_set_epi64x(hi, lo));
  }
#else
  store_16bit(p, a, bits);
#endif
}
inline Pack<float> load_bf16(const std::uint16_t* p) {
  return load_16bit(p, bf16_part_to_float);
}
inline void store_bf16(std::uint16_t* p, const Pack<float>& a) {
  store_16bit(p, a, bf16_bits);
}
inline Pack<float> load_half(const std::uint16_t* p) {
  return load_16bit(p, half_part_to_float);
}
inline void store_half(std::uint16_t* p, const Pack<float>& a) {
  store_16bit(p, a, half_bits);
}

/// The kernels' pack access for 16-bit elements (pack.hpp has it for float and double): the 16
/// values at p widened to a float pack, a float pack rounded to 16 values at p, regularly or
/// (stream_pack, p 32-byte aligned) with non-temporal stores, and the 16 values in double.
inline const std::uint16_t* raw_bits(const Eigen::bfloat16* p) {
  return reinterpret_cast<const std::uint16_t*>(p);
}
inline const std::uint16_t* raw_bits(const Eigen::half* p) {
  return reinterpret_cast<const std::uint16_t*>(p);
}
inline Pack<float> load_pack(const Eigen::bfloat16* p) {
  return load_bf16(raw_bits(p));
}
inline Pack<float> load_pack(const Eigen::half* p) {
  return load_half(raw_bits(p));
}
inline void store_pack(Eigen::bfloat16* p, const Pack<float>& a) {
  store_bf16(reinterpret_cast<std::uint16_t*>(p), a);
}
inline void store_pack(Eigen::half* p, const Pack<float>& a) {
  store_half(reinterpret_cast<std::uint16_t*>(p), a);
}
inline void stream_pack(Eigen::bfloat16* p, const Pack<float>& a) {
  stream_16bit(reinterpret_cast<std::uint16_t*>(p), a, bf16_bits);
}
inline void stream_pack(Eigen::half* p, const Pack<float>& a) {
  stream_16bit(reinterpret_cast<std::uint16_t*>(p), a, half_bits);
}
inline Wide load_wide(const Eigen::bfloat16* p) {
  return widen(load_pack(p));
}
inline Wide load_wide(const Eigen::half* p) {
  return widen(load_pack(p));
}
#endif

/// out[i] = in[i] as floats, i < n, for 16-bit values of the format `half` names (false:
/// bfloat16): packs, then the scalar form for the last n % 16.
BNORM_DETAIL_ENTRY void float16_to_float(bool half, const std::uint16_t* in, float* out,
                                         index_t n) {
  index_t i = 0;
#if defined(BNORM_HAVE_PACKS)
  // out[i] = float(in[i])
  for (; i + kPackLanes <= n; i += kPackLanes)
    store_pack(out + i, half ? load_half(in + i) : load_bf16(in + i));
#endif
  for (; i < n; ++i) out[i] = half ? half_to_float(in[i]) : bf16_to_float(in[i]);
}

/// out[i] = in[i] rounded to the 16-bit format `half` names (false: bfloat16), i < n.
BNORM_DETAIL_ENTRY void float_to_float16(bool half, const float* in, std::uint16_t* out,
                                         index_t n) {
  index_t i = 0;
#if defined(BNORM_HAVE_PACKS)
  // out[i] = round(in[i])
  for (; i + kPackLanes <= n; i += kPackLanes) {
    if (half)
      store_half(out + i, load_pack(in + i));
    else
      store_bf16(out + i, load_pack(in + i));
  }
#endif
  for (; i < n; ++i) out[i] = half ? float_to_half(in[i]) : float_to_bf16(in[i]);
}
