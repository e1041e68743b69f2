// The fuzz input and what every part of the target shares: its bounds on allocation, the
// failure check (FUZZ_CHECK), tracing, the Input reader and the Rng behind a seed.
#pragma once

#include <bnorm/bnorm.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

namespace {

using bnorm::index_t;
using Shape = std::array<index_t, 4>;
using bnorm::detail::concat;

constexpr index_t kMaxSpan = index_t{1} << 14;      // elements of memory behind one view
constexpr index_t kMaxElements = index_t{1} << 11;  // elements of one view
constexpr index_t kMaxChannels = 64;                // per-channel arrays
constexpr int kMaxSteps = 10;
constexpr std::size_t kGuard = 64;  // guard bytes on each side of every buffer
constexpr index_t kIndexMax = std::numeric_limits<index_t>::max();
__extension__ typedef __int128 i128;  // exact products of two index_t (GCC and clang)

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\nbnorm fuzz failure: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond, ...) \
  ((cond) ? (void)0 : fail(concat(__FILE__, ":", __LINE__, ": ", #cond, ": ", __VA_ARGS__)))

/// BNORM_FUZZ_TRACE=1 prints every step and its outcome (to read what an input does).
bool tracing() {
  static const bool on = std::getenv("BNORM_FUZZ_TRACE") != nullptr;
  return on;
}
template <class... A>
void trace(const A&... a) {
  if (tracing()) std::fprintf(stderr, "%s\n", concat(a...).c_str());
}

std::string str(const Shape& s) {
  return concat("[", s[0], ", ", s[1], ", ", s[2], ", ", s[3], "]");
}

/// The fuzz input, read front to back; zeros once exhausted.
class Input {
 public:
  Input(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  std::uint8_t byte() { return i_ < n_ ? p_[i_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = v << 8 | byte();
    return v;
  }
  template <class V, std::size_t N>
  V pick(const V (&table)[N]) {
    return table[byte() % N];
  }
  bool exhausted() const { return i_ >= n_; }

 private:
  const std::uint8_t* p_;
  std::size_t n_, i_ = 0;
};

/// splitmix64: the data behind a seed.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }  // [0, 1)
};

}  // namespace
