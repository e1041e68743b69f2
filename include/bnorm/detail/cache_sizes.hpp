/// @file detail/cache_sizes.hpp
/// @brief This CPU's L2 (per core) and last-level cache sizes, read at first use, and whether
/// the last level serves as a cache for outputs (probed once, last_level_probe.hpp). The
/// kernels' plans take from them what is locality only (blocks of short channels, the kind of
/// store, pipelined sweeps), never a bit of a result: the same bits for any cache sizes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "../config.hpp"
#include "last_level_probe.hpp"

namespace bnorm::detail {

/// How the last level holds data that has left the cores' L2s: `fast`, as a cache (regular
/// stores and re-reads beat memory), `slow`, no better than memory, or `unknown`: probed the
/// first time a plan needs to know (last_level_fast).
enum class LastLevel : int { unknown = 0, fast = 1, slow = 2 };

/// Bytes of a core's L2 and of the last-level cache (L3, or L2 where there is none).
struct CacheSizes {
  std::size_t l2;
  std::size_t last_level;
  LastLevel speed = LastLevel::unknown;
};

/// What the plans assume where the system does not say: the machine they were first measured
/// on (1 MiB of L2 per core, 32 MiB of L3 that serves as a cache).
inline constexpr CacheSizes kAssumedCacheSizes{std::size_t{1} << 20, std::size_t{32} << 20,
                                               LastLevel::fast};

#if defined(__linux__)
/// The bytes of cpu0's data or unified cache of `level` as Linux reports them
/// (/sys/devices/system/cpu/cpu0/cache/index<i>/{level,type,size}, size as "1024K"); 0 if none.
inline std::size_t linux_cache_bytes(int level) {
  const auto read = [](int index, const char* leaf, char* out, int capacity) {
    char path[80];
    std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", index, leaf);
    std::FILE* f = std::fopen(path, "r");
    if (f == nullptr) return false;
    const bool ok = std::fgets(out, capacity, f) != nullptr;
    std::fclose(f);
    return ok;
  };
  for (int index = 0; index < 16; ++index) {
    char text[32] = {}, type[32] = {}, size[32] = {};
    if (!read(index, "level", text, sizeof text) || !read(index, "type", type, sizeof type) ||
        !read(index, "size", size, sizeof size))
      return 0;
    if (std::atoi(text) != level || std::strncmp(type, "Instruction", 11) == 0) continue;
    char* unit = nullptr;
    const unsigned long long n = std::strtoull(size, &unit, 10);
    const int shift = *unit == 'K' ? 10 : *unit == 'M' ? 20 : *unit == 'G' ? 30 : 0;
    return static_cast<std::size_t>(n) << shift;
  }
  return 0;
}
#endif

/// The sizes the system reports, the assumed ones where it reports none. Linux's own figures,
/// not glibc's sysconf: under KVM on an AMD EPYC, sysconf gave a 320 MiB L3 for a 32 MiB one.
inline CacheSizes read_cache_sizes() {
  CacheSizes sizes = kAssumedCacheSizes;
  sizes.speed = LastLevel::unknown;
#if defined(__linux__)
  const std::size_t l2 = linux_cache_bytes(2), l3 = linux_cache_bytes(3);
  if (l2 > 0) sizes.l2 = l2;
  if (l3 > 0)
    sizes.last_level = l3;
  else if (l2 > 0)
    sizes.last_level = l2;
#endif
  return sizes;
}

/// The sizes in use: one pair for the whole program (an inline function's static), read at
/// first use.
struct CacheSizeSlots {
  std::atomic<std::size_t> l2, last_level;
  std::atomic<int> speed;
};
inline CacheSizeSlots& cache_size_slots() {
  static CacheSizeSlots slots = [] {
    const CacheSizes read = read_cache_sizes();
    return CacheSizeSlots{{read.l2}, {read.last_level}, {static_cast<int>(read.speed)}};
  }();
  return slots;
}

inline CacheSizes cache_sizes() {
  const CacheSizeSlots& s = cache_size_slots();
  return {s.l2.load(std::memory_order_relaxed), s.last_level.load(std::memory_order_relaxed),
          static_cast<LastLevel>(s.speed.load(std::memory_order_relaxed))};
}

/// Replaces the sizes the plans use (the tests: other machines' plans on this one). Not while
/// a kernel runs.
inline void set_cache_sizes(CacheSizes sizes) {
  cache_size_slots().l2.store(sizes.l2, std::memory_order_relaxed);
  cache_size_slots().last_level.store(sizes.last_level, std::memory_order_relaxed);
  cache_size_slots().speed.store(static_cast<int>(sizes.speed), std::memory_order_relaxed);
}

/// The answer BNORM_LAST_LEVEL gives in place of the probe: "cache" (fast), "memory" (slow),
/// unset or empty (unknown: probe). Another value throws bnorm::invalid_argument.
inline LastLevel last_level_from(const char* value) {
  if (value == nullptr || *value == '\0') return LastLevel::unknown;
  if (std::strcmp(value, "cache") == 0) return LastLevel::fast;
  if (std::strcmp(value, "memory") == 0) return LastLevel::slow;
  throw invalid_argument(concat("bnorm: BNORM_LAST_LEVEL asks for \"", value,
                                "\" (expected \"cache\" or \"memory\", or unset to probe)"));
}

/// BNORM_LAST_LEVEL, read at first use (a bad value throws, now and at every use).
inline LastLevel last_level_setting() {
  static const LastLevel setting = last_level_from(std::getenv("BNORM_LAST_LEVEL"));
  return setting;
}

/// Whether the last level of `sizes` serves as a cache: their own answer, else BNORM_LAST_LEVEL's,
/// else this machine's, probed once per program with its own sizes on the threads OpenMP would
/// use.
inline bool last_level_fast(const CacheSizes& sizes) {
  if (sizes.speed != LastLevel::unknown) return sizes.speed == LastLevel::fast;
  if (const LastLevel set = last_level_setting(); set != LastLevel::unknown)
    return set == LastLevel::fast;
  static const bool measured = [] {
    const CacheSizes here = read_cache_sizes();
#if defined(_OPENMP)
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    const int threads = 1;
#endif
    return probe_last_level_fast(here.l2, here.last_level, threads);
  }();
  return measured;
}

}  // namespace bnorm::detail
