/// @file detail/element_types.hpp
/// @brief The element types of the tensors (float, double, Eigen::bfloat16, Eigen::half) and
/// the type each is computed in: float for the 16-bit formats, which are only loaded (widened
/// exactly) and stored (rounded once, to nearest even), never computed in.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "float16.hpp"

namespace bnorm::detail {

/// The type the kernels compute in for elements of type T (const or not): float for the
/// 16-bit formats, T itself for float and double. Parameters, running buffers and parameter
/// gradients are held in it too.
template <class T>
struct ComputeOf {
  using type = T;
};
template <>
struct ComputeOf<Eigen::bfloat16> {
  using type = float;
};
template <>
struct ComputeOf<Eigen::half> {
  using type = float;
};
template <class T>
using compute_t = typename ComputeOf<std::remove_const_t<T>>::type;

/// Parameters, running buffers and parameter gradients for elements of type T.
template <class T>
using ParameterArray = Eigen::Array<compute_t<T>, Eigen::Dynamic, 1>;

/// The bits of a 16-bit value, and the value of 16 bits.
template <class H>
std::uint16_t bits_of(H h) {
  std::uint16_t b;
  std::memcpy(&b, &h, sizeof b);
  return b;
}
template <class H>
H of_bits(std::uint16_t b) {
  H h;
  std::memcpy(static_cast<void*>(&h), &b, sizeof h);  // (a trivially copyable 16-bit value)
  return h;
}

/// v in its compute type, exactly (the functions above, not Eigen's conversions: the same bits
/// as the kernels' packs, a half NaN made quiet on every build).
template <class T>
T to_compute(T v) {
  return v;
}
inline float to_compute(Eigen::bfloat16 v) {
  return bf16_to_float(bits_of(v));
}
inline float to_compute(Eigen::half v) {
  return half_to_float(bits_of(v));
}

/// v rounded to T once (to nearest even for the 16-bit formats; none for float and double).
template <class T>
T from_compute(compute_t<T> v) {
  if constexpr (std::is_same_v<T, Eigen::bfloat16>)
    return of_bits<T>(float_to_bf16(v));
  else if constexpr (std::is_same_v<T, Eigen::half>)
    return of_bits<T>(float_to_half(v));
  else
    return v;
}

/// The type the staged variant, the specification, computes in: double for the 16-bit formats,
/// so that it is a reference for the fused variant's float arithmetic; T itself otherwise.
template <class T>
using staged_t = std::conditional_t<std::is_same_v<compute_t<T>, T>, T, double>;

/// d rounded to float toward zero, with the last bit set when that was inexact ("round to odd"):
/// rounded again to a format at least 2 bits narrower, to nearest even, it gives d rounded
/// once to that format (float's 24 bits against bfloat16's 8 and half's 11).
inline float round_to_odd_float(double d) {
  float f = static_cast<float>(d);  // one of d's two float neighbours (in any rounding mode)
  if (static_cast<double>(f) == d || d != d) return f;  // exact, or NaN (quiet, sign kept)
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  return bits_float(float_bits(f) | 1u);
}

/// v, of T's staged type, rounded once to T: to nearest even for the 16-bit formats (through
/// round_to_odd_float), v itself for float and double.
template <class T>
T round_from_staged(staged_t<T> v) {
  if constexpr (std::is_same_v<staged_t<T>, T>)
    return v;
  else
    return from_compute<T>(round_to_odd_float(v));
}

}  // namespace bnorm::detail
