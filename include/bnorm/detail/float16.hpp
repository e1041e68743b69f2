/// @file detail/float16.hpp
/// @brief The two 16-bit floating-point formats, bit by bit: bfloat16 (float's sign, exponent
/// and top 7 mantissa bits) and IEEE binary16, "half" (5 exponent bits, 10 mantissa bits), to
/// and from float, with the same bits on every machine and build.
///
/// - Widening to float is exact; a bfloat16 NaN keeps every bit (the float's top half), a half
///   NaN is made quiet, as F16C's vcvtph2ps makes it.
/// - Narrowing from float rounds once, to nearest with ties to even. What rounds past the
///   largest finite value becomes infinity (half: from 65520 up). Half's subnormals are
///   rounded like its normal values.
/// - Narrowing keeps a NaN a NaN of the same sign, made quiet, with the top bits of its
///   payload: what F16C's vcvtps2ph does for half, and the same rule for bfloat16.
///
/// The kernel sets compute exactly these functions on packs (per_isa/float16_packs.hpp); these are
/// the scalar forms, for the last values of a row and for the code outside the kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace bnorm::detail {

/// The bits of f.
inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// The float whose bits are u.
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// bfloat16 bits b as a float: the top half of the float's bits.
inline float bf16_to_float(std::uint16_t b) {
  return bits_float(std::uint32_t{b} << 16);
}

/// f as bfloat16 bits: u = f's bits, (u + 0x7FFF + bit 16 of u) >> 16 rounds the low half away
/// to nearest even (a carry runs into the exponent: the next binade, or infinity); a NaN keeps
/// its top bits and gets the quiet bit.
inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>(u >> 16 | 0x0040u);
  return static_cast<std::uint16_t>((u + 0x7FFFu + (u >> 16 & 1u)) >> 16);
}

/// Half bits h as a float. Normal values move their exponent from bias 15 to bias 127;
/// subnormals are m * 2^-24 (exact in float); infinities and NaNs keep their payload, a NaN
/// made quiet as F16C's vcvtph2ps makes it.
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (std::uint32_t{h} & 0x8000u) << 16;
  const std::uint32_t e = std::uint32_t{h} >> 10 & 0x1Fu, m = std::uint32_t{h} & 0x3FFu;
  if (e == 0x1F) return bits_float(sign | 0x7F800000u | m << 13 | (m != 0 ? 0x00400000u : 0u));
  if (e != 0) return bits_float(sign | (e + 112) << 23 | m << 13);
  return bits_float(sign | float_bits(static_cast<float>(m) * 0x1p-24f));
}

/// m >> s rounded to nearest, ties to even, 14 <= s <= 31 and m < 2^24: integer arithmetic, so
/// the bits do not depend on the floating-point rounding mode (nor do F16C's, whose rounding is
/// fixed by the instruction).
inline std::uint32_t shift_round_even(std::uint32_t m, std::uint32_t s) {
  return (m + (1u << (s - 1)) - 1u + (m >> s & 1u)) >> s;
}

/// f as half bits, a = |f|'s bits:
/// - a NaN: quiet, with the top 10 bits of its payload;
/// - a >= 2^16: infinity;
/// - a < 2^-14 (half's subnormals): a in steps of 2^-24, M >> s rounded to nearest even, with M
///   the float's mantissa and its implicit bit and s = 126 - (a's exponent), at most 31 (the
///   float subnormals, under 2^-126, all round to 0);
/// - otherwise the exponent rebiased (- 112 << 23) and (. + 0xFFF + bit 13) >> 13, the rounding
///   of bfloat16's form on 13 bits (65520 and up carry into infinity).
inline std::uint16_t float_to_half(float f) {
  const std::uint32_t u = float_bits(f), a = u & 0x7FFFFFFFu, sign = u >> 16 & 0x8000u;
  std::uint32_t r;
  if (a > 0x7F800000u)
    r = 0x7E00u | (a >> 13 & 0x3FFu);
  else if (a >= 0x47800000u)
    r = 0x7C00u;
  else if (a < 0x38800000u)
    r = shift_round_even((a & 0x7FFFFFu) | 0x800000u, std::min(126u - (a >> 23), 31u));
  else
    r = (a - 0x38000000u + 0xFFFu + (a >> 13 & 1u)) >> 13;
  return static_cast<std::uint16_t>(sign | r);
}

}  // namespace bnorm::detail
