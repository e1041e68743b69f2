// Cache-line aligned buffers filled with reproducible pseudo-random values.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "shapes.hpp"

namespace bnorm_bench {

// 64 bytes: one cache line and one AVX-512 register, so non-temporal stores need no peeling.
inline constexpr std::size_t kAlignment = 64;

template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(index_t size) : size_(size) {
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t bytes =
        (static_cast<std::size_t>(size) * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
    data_.reset(static_cast<T*>(std::aligned_alloc(kAlignment, bytes > 0 ? bytes : kAlignment)));
    if (!data_) throw std::bad_alloc();
  }
  T* data() const { return data_.get(); }
  index_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  index_t size_ = 0;
};

// A counter-based generator (splitmix64): element i depends only on (seed, i), so a parallel
// fill gives the same data for any thread count.
inline double uniform01(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E5Bull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

// Fills p[0, size) with values uniform in [lo, hi). The parallel loop also first-touches the
// pages with the same static split the kernels use.
template <class T>
void fill_uniform(T* p, index_t size, std::uint64_t seed, double lo, double hi) {
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < size; ++i)
    p[i] = static_cast<T>(lo + (hi - lo) * uniform01(seed, static_cast<std::uint64_t>(i)));
}

}  // namespace bnorm_bench
