// The bandwidth floors over 16-bit tensors (bfloat16, half): the bytes of a BatchNorm pass over
// 16-bit data, each value widened to float and the result rounded back as the library does, with
// regular or non-temporal stores, on the library's OpenMP threads, with the widest instruction
// set this CPU has (as floor_kernels.hpp for float).
#pragma once

#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "floor_kernels.hpp"  // Store, parallel_ranges
#include "shapes.hpp"

namespace bnorm_bench {
namespace floor_detail {

// One instruction set's 16-bit floor kernels, indexed by Store: y = a * x + b and
// dx = a * x + dy over [i, end), `half` choosing the format (else bfloat16).
struct Floor16Set {
  const char* simd;
  void (*axpb[2])(const std::uint16_t* x, float a, float b, std::uint16_t* y, index_t i,
                  index_t end, bool half);
  void (*axpy[2])(const std::uint16_t* x, const std::uint16_t* dy, float a, std::uint16_t* dx,
                  index_t i, index_t end, bool half);
};

#define BNORM_BENCH_FLOOR_ISA 1
namespace baseline16 {
#include "floor16_ranges.inc"
}  // namespace baseline16
#undef BNORM_BENCH_FLOOR_ISA

#if defined(BNORM_DETAIL_X86_DISPATCH)
#define BNORM_BENCH_FLOOR_ISA 2
BNORM_DETAIL_TARGET_BEGIN(BNORM_DETAIL_AVX2_FEATURES)
namespace avx2_16 {
#include "floor16_ranges.inc"
}  // namespace avx2_16
BNORM_DETAIL_TARGET_END
#undef BNORM_BENCH_FLOOR_ISA

#define BNORM_BENCH_FLOOR_ISA 3
BNORM_DETAIL_TARGET_BEGIN(BNORM_DETAIL_AVX512_FEATURES)
namespace avx512_16 {
#include "floor16_ranges.inc"
}  // namespace avx512_16
BNORM_DETAIL_TARGET_END
#undef BNORM_BENCH_FLOOR_ISA
#endif

// The 16-bit floor kernels of the widest instruction set this CPU runs (chosen once).
inline const Floor16Set& floor16_set() {
  static const Floor16Set& widest = []() -> const Floor16Set& {
#if defined(BNORM_DETAIL_X86_DISPATCH)
    if (bnorm::isa_supported("avx512")) return avx512_16::kSet16;
    if (bnorm::isa_supported("avx2")) return avx2_16::kSet16;
#endif
    return baseline16::kSet16;
  }();
  return widest;
}

}  // namespace floor_detail

// Which instructions the 16-bit floors use; goes into the benchmark context.
inline const char* floor16_simd() {
  return floor_detail::floor16_set().simd;
}

// Forward floor over 16-bit data: y = a * x + b (read x, write y).
inline void floor16_forward(const std::uint16_t* x, float a, float b, std::uint16_t* y, index_t n,
                            bool half, Store store) {
  floor_detail::parallel_ranges<32>(n, [&](index_t lo, index_t hi) {
    floor_detail::floor16_set().axpb[static_cast<int>(store)](x, a, b, y, lo, hi, half);
  });
}

// Backward floor over 16-bit data: dx = a * x + dy (read x and dy, write dx).
inline void floor16_backward(const std::uint16_t* x, const std::uint16_t* dy, float a,
                             std::uint16_t* dx, index_t n, bool half, Store store) {
  floor_detail::parallel_ranges<32>(n, [&](index_t lo, index_t hi) {
    floor_detail::floor16_set().axpy[static_cast<int>(store)](x, dy, a, dx, lo, hi, half);
  });
}

}  // namespace bnorm_bench
