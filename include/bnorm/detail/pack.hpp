/// @file detail/pack.hpp
/// @brief 16-lane packs of float or double (GCC/Clang vector extensions) for the plane kernels.
///
/// A Pack<T> holds 16 consecutive values; the compiler maps it onto whatever vector registers
/// the target has (one AVX-512 register of floats, two of doubles, four SSE registers, ...), so
/// the kernels are written once and vectorise without relying on the auto-vectoriser. Compilers
/// without the extensions leave BNORM_HAVE_PACKS undefined and the kernels fall back to the
/// row loops of fused_kernels.hpp.
#pragma once

#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 9)
#define BNORM_HAVE_PACKS 1

#include <cstring>

#include "../config.hpp"

namespace bnorm::detail {

/// Lanes per pack.
inline constexpr index_t kPackLanes = 16;

template <class T>
struct VectorOf;
template <>
struct VectorOf<float> {
  typedef float type __attribute__((vector_size(16 * sizeof(float))));
};
template <>
struct VectorOf<double> {
  typedef double type __attribute__((vector_size(16 * sizeof(double))));
};

/// 16 values of T with elementwise arithmetic (a scalar operand applies to every lane). The
/// vector sits in a struct so that passing a Pack by value never depends on the target's vector
/// registers (which GCC would warn about as an ABI change).
template <class T>
struct Pack {
  typename VectorOf<T>::type v;

  friend Pack operator+(const Pack& a, const Pack& b) { return {a.v + b.v}; }
  friend Pack operator+(const Pack& a, T s) { return {a.v + s}; }
  friend Pack operator-(const Pack& a, T s) { return {a.v - s}; }
  friend Pack operator*(const Pack& a, T s) { return {a.v * s}; }
};

template <class T>
inline Pack<T> load_pack(const T* p) {
  Pack<T> a;
  std::memcpy(&a.v, p, sizeof a.v);  // an unaligned vector load
  return a;
}

template <class T>
inline void store_pack(T* p, const Pack<T>& a) {
  std::memcpy(p, &a.v, sizeof a.v);
}

}  // namespace bnorm::detail

#endif
