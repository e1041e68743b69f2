// The bandwidth floors: kernels that move exactly the bytes a BatchNorm pass must move and do
// nothing else, with regular or non-temporal (streaming) stores, on the library's OpenMP threads.
// They are compiled for every instruction set the library dispatches to and run with the widest
// this CPU has, whatever flags the benchmarks are built with: the floor is the machine's, not the
// build's.
#pragma once

#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <cstdint>

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "shapes.hpp"

namespace bnorm_bench {

enum class Store { regular = 0, nontemporal = 1 };  // an index into FloorSet's kernels

inline const char* store_name(Store s) {
  return s == Store::regular ? "regular" : "nt";
}

namespace floor_detail {

// Streaming stores need a 64-byte aligned address; the buffers are, this only guards odd offsets.
inline bool line_aligned(const float* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 64 == 0;
}

// One instruction set's floor kernels, indexed by Store: y = a * x + b and dx = a * x + dy over
// [i, end).
struct FloorSet {
  const char* simd;
  void (*axpb[2])(const float* x, float a, float b, float* y, index_t i, index_t end);
  void (*axpy[2])(const float* x, const float* dy, float a, float* dx, index_t i, index_t end);
};

// One instruction set's kernels of bench_activation.cpp (epilogue_ranges.inc): the floor of
// BN+add+ReLU's backward (dx = a * x + dy, dr = a * y + dy), indexed by Store, and the separate
// ReLU passes: the backward's gate (g = y > 0 ? dy : 0), indexed by Store, and in place y =
// max(y + r, 0) and y = max(y, 0).
struct EpilogueSet {
  void (*axpy2[2])(const float* x, const float* dy, const float* y, float a, float* dx, float* dr,
                   index_t i, index_t end);
  void (*relu_gate[2])(const float* y, const float* dy, float* g, index_t i, index_t end);
  void (*relu_add)(float* y, const float* r, index_t i, index_t end);
  void (*relu)(float* y, index_t i, index_t end);
};

#if defined(__SSE2__)
#define BNORM_BENCH_FLOOR_ISA 1
#else
#define BNORM_BENCH_FLOOR_ISA 0
#endif
namespace baseline {
#include "floor_ranges.inc"
// after floor_ranges.inc, whose vector helpers it uses
#include "epilogue_ranges.inc"
}  // namespace baseline
#undef BNORM_BENCH_FLOOR_ISA

#if defined(BNORM_DETAIL_X86_DISPATCH)
#define BNORM_BENCH_FLOOR_ISA 2
BNORM_DETAIL_TARGET_BEGIN(BNORM_DETAIL_AVX2_FEATURES)
namespace avx2 {
#include "floor_ranges.inc"
// after floor_ranges.inc, whose vector helpers it uses
#include "epilogue_ranges.inc"
}  // namespace avx2
BNORM_DETAIL_TARGET_END
#undef BNORM_BENCH_FLOOR_ISA

#define BNORM_BENCH_FLOOR_ISA 3
BNORM_DETAIL_TARGET_BEGIN(BNORM_DETAIL_AVX512_FEATURES)
namespace avx512 {
#include "floor_ranges.inc"
// after floor_ranges.inc, whose vector helpers it uses
#include "epilogue_ranges.inc"
}  // namespace avx512
BNORM_DETAIL_TARGET_END
#undef BNORM_BENCH_FLOOR_ISA
#endif

// The floor kernels of the widest instruction set this CPU runs (chosen once).
inline const FloorSet& floor_set() {
  static const FloorSet& widest = []() -> const FloorSet& {
#if defined(BNORM_DETAIL_X86_DISPATCH)
    if (bnorm::isa_supported("avx512")) return avx512::kSet;
    if (bnorm::isa_supported("avx2")) return avx2::kSet;
#endif
    return baseline::kSet;
  }();
  return widest;
}

// epilogue_ranges.inc's kernels of the same instruction set as floor_set().
inline const EpilogueSet& epilogue_set() {
  static const EpilogueSet& widest = []() -> const EpilogueSet& {
#if defined(BNORM_DETAIL_X86_DISPATCH)
    if (bnorm::isa_supported("avx512")) return avx512::kEpilogueSet;
    if (bnorm::isa_supported("avx2")) return avx2::kEpilogueSet;
#endif
    return baseline::kEpilogueSet;
  }();
  return widest;
}

// Runs f(begin, end) on every thread of an OpenMP team, each on one contiguous range of whole
// cache lines of Line elements (16 floats, 32 16-bit values): the split schedule(static) makes,
// so each thread streams its own part.
template <index_t Line = 16, class F>
void parallel_ranges(index_t n, F&& f) {
  const auto run = [&](index_t t, index_t nt) {
    const index_t lines = (n + Line - 1) / Line;
    f(std::min(n, lines * t / nt * Line), std::min(n, lines * (t + 1) / nt * Line));
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
  return floor_detail::floor_set().simd;
}

// Forward floor, the traffic of a forward pass: y = a * x + b (read x, write y).
inline void floor_forward(const float* x, float a, float b, float* y, index_t n, Store store) {
  floor_detail::parallel_ranges(n, [&](index_t lo, index_t hi) {
    floor_detail::floor_set().axpb[static_cast<int>(store)](x, a, b, y, lo, hi);
  });
}

// Backward floor, the traffic of a backward pass: dx = a * x + dy (read x and dy, write dx).
inline void floor_backward(const float* x, const float* dy, float a, float* dx, index_t n,
                           Store store) {
  floor_detail::parallel_ranges(n, [&](index_t lo, index_t hi) {
    floor_detail::floor_set().axpy[static_cast<int>(store)](x, dy, a, dx, lo, hi);
  });
}

// The floor of BN+add+ReLU's backward, its minimal traffic: dx = a * x + dy and dr = a * y + dy
// (read x, dy and y, write dx and dr).
inline void floor_backward2(const float* x, const float* dy, const float* y, float a, float* dx,
                            float* dr, index_t n, Store store) {
  floor_detail::parallel_ranges(n, [&](index_t lo, index_t hi) {
    floor_detail::epilogue_set().axpy2[static_cast<int>(store)](x, dy, y, a, dx, dr, lo, hi);
  });
}

// A separate ReLU backward pass: g = y > 0 ? dy : 0 (read y and dy, write g).
inline void separate_relu_gate(const float* y, const float* dy, float* g, index_t n, Store store) {
  floor_detail::parallel_ranges(n, [&](index_t lo, index_t hi) {
    floor_detail::epilogue_set().relu_gate[static_cast<int>(store)](y, dy, g, lo, hi);
  });
}

// A separate add + ReLU pass in place: y = max(y + r, 0) (read y and r, write y).
inline void separate_relu_add(float* y, const float* r, index_t n) {
  floor_detail::parallel_ranges(
      n, [&](index_t lo, index_t hi) { floor_detail::epilogue_set().relu_add(y, r, lo, hi); });
}

// A separate ReLU pass in place: y = max(y, 0) (read y, write y).
inline void separate_relu(float* y, index_t n) {
  floor_detail::parallel_ranges(
      n, [&](index_t lo, index_t hi) { floor_detail::epilogue_set().relu(y, lo, hi); });
}

}  // namespace bnorm_bench
