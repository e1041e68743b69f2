// The bandwidth floors: kernels that move exactly the bytes a BatchNorm pass must move and do
// nothing else, with regular or non-temporal (streaming) stores, on the library's OpenMP threads.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "shapes.hpp"

namespace bnorm_bench {

enum class Store { regular, nontemporal };

inline const char* store_name(Store s) {
  return s == Store::regular ? "regular" : "nt";
}

namespace floor_detail {

#if defined(__AVX512F__)
using vec = __m512;
inline constexpr index_t kLanes = 16;
inline constexpr const char* kSimd = "avx512";
inline vec vset1(float a) {
  return _mm512_set1_ps(a);
}
inline vec vload(const float* p) {
  return _mm512_loadu_ps(p);
}
inline vec vfma(vec a, vec x, vec b) {
  return _mm512_fmadd_ps(a, x, b);
}
template <bool NT>
inline void vstore(float* p, vec v) {
  if constexpr (NT)
    _mm512_stream_ps(p, v);
  else
    _mm512_storeu_ps(p, v);
}
#elif defined(__AVX__)
using vec = __m256;
inline constexpr index_t kLanes = 8;
inline constexpr const char* kSimd = "avx2";
inline vec vset1(float a) {
  return _mm256_set1_ps(a);
}
inline vec vload(const float* p) {
  return _mm256_loadu_ps(p);
}
#if defined(__FMA__)
inline vec vfma(vec a, vec x, vec b) {
  return _mm256_fmadd_ps(a, x, b);
}
#else
inline vec vfma(vec a, vec x, vec b) {
  return _mm256_add_ps(_mm256_mul_ps(a, x), b);
}
#endif
template <bool NT>
inline void vstore(float* p, vec v) {
  if constexpr (NT)
    _mm256_stream_ps(p, v);
  else
    _mm256_storeu_ps(p, v);
}
#else
// No streaming-store intrinsics: "nt" runs the regular scalar loop.
inline constexpr index_t kLanes = 1;
inline constexpr const char* kSimd = "scalar (nt = regular)";
#endif

// Streaming stores need a 64-byte aligned address; the buffers are, this only guards odd offsets.
inline bool line_aligned(const float* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 64 == 0;
}

template <bool NT>
void axpb_range(const float* x, float a, float b, float* y, index_t i, index_t end) {
#if defined(__AVX__)
  // y[i] = a * x[i] + b   (head until y is line-aligned)
  for (; i < end && !line_aligned(y + i); ++i) y[i] = a * x[i] + b;
  const vec va = vset1(a), vb = vset1(b);
  // y[i] = a * x[i] + b
  for (; i + kLanes <= end; i += kLanes) vstore<NT>(y + i, vfma(va, vload(x + i), vb));
  if constexpr (NT) _mm_sfence();  // order the weakly-ordered streaming stores before returning
#endif
  // y[i] = a * x[i] + b   (tail)
  for (; i < end; ++i) y[i] = a * x[i] + b;
}

template <bool NT>
void axpy_range(const float* x, const float* dy, float a, float* dx, index_t i, index_t end) {
#if defined(__AVX__)
  // dx[i] = a * x[i] + dy[i]   (head until dx is line-aligned)
  for (; i < end && !line_aligned(dx + i); ++i) dx[i] = a * x[i] + dy[i];
  const vec va = vset1(a);
  // dx[i] = a * x[i] + dy[i]
  for (; i + kLanes <= end; i += kLanes) vstore<NT>(dx + i, vfma(va, vload(x + i), vload(dy + i)));
  if constexpr (NT) _mm_sfence();
#endif
  // dx[i] = a * x[i] + dy[i]   (tail)
  for (; i < end; ++i) dx[i] = a * x[i] + dy[i];
}

// Runs f(begin, end) on every thread of an OpenMP team, each on one contiguous range of whole
// cache lines: the split schedule(static) makes, so each thread streams its own part.
template <class F>
void parallel_ranges(index_t n, F&& f) {
  const auto run = [&](index_t t, index_t nt) {
    constexpr index_t line = 16;  // floats per 64-byte line
    const index_t lines = (n + line - 1) / line;
    f(std::min(n, lines * t / nt * line), std::min(n, lines * (t + 1) / nt * line));
  };
#if defined(_OPENMP)
#pragma omp parallel
  run(omp_get_thread_num(), omp_get_num_threads());
#else
  run(0, 1);
#endif
}

}  // namespace floor_detail

// Which instructions the floors use; goes into the benchmark context.
inline const char* floor_simd() {
  return floor_detail::kSimd;
}

// Forward floor, the traffic of a forward pass: y = a * x + b (read x, write y).
inline void floor_forward(const float* x, float a, float b, float* y, index_t n, Store store) {
  floor_detail::parallel_ranges(n, [&](index_t lo, index_t hi) {
    if (store == Store::nontemporal)
      floor_detail::axpb_range<true>(x, a, b, y, lo, hi);
    else
      floor_detail::axpb_range<false>(x, a, b, y, lo, hi);
  });
}

// Backward floor, the traffic of a backward pass: dx = a * x + dy (read x and dy, write dx).
inline void floor_backward(const float* x, const float* dy, float a, float* dx, index_t n,
                           Store store) {
  floor_detail::parallel_ranges(n, [&](index_t lo, index_t hi) {
    if (store == Store::nontemporal)
      floor_detail::axpy_range<true>(x, dy, a, dx, lo, hi);
    else
      floor_detail::axpy_range<false>(x, dy, a, dx, lo, hi);
  });
}

}  // namespace bnorm_bench
