/// @file detail/last_level_probe.hpp
/// @brief Whether this machine's last-level cache holds a kernel's output better than memory
/// does: timed once, the first time a plan needs to know.
///
/// The size of the last level does not say it. On an AMD EPYC (32 MiB L3) a sweep writing 16 MB
/// with regular stores ran 3x faster than with non-temporal ones; on an Intel Xeon under KVM that
/// reports a 480 MiB L3, regular stores were 1.8x slower from 4 MB up, and re-reads past the L2s
/// came at about the speed of memory (58 against 27-55 GB/s, L2: 250 GB/s). The plans therefore
/// ask this probe which of the two machines they run on. Its answer sets locality only (the
/// kind of store and the blocks), never a bit of a result.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <new>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace bnorm::detail {

/// y[i] = x[i] * 0.5 + 0.25 over [begin, end) (multiples of 4, y 16-byte aligned): a sweep with
/// a BatchNorm map's traffic, with non-temporal stores when `stream`.
inline void probe_sweep(const float* x, float* y, std::size_t begin, std::size_t end, bool stream) {
#if defined(__SSE2__)
  const __m128 a = _mm_set1_ps(0.5f), b = _mm_set1_ps(0.25f);
  if (stream) {
    // y = x * a + b, streamed past the caches
    for (std::size_t i = begin; i < end; i += 4)
      _mm_stream_ps(y + i, _mm_add_ps(_mm_mul_ps(_mm_load_ps(x + i), a), b));
    _mm_sfence();
  } else {
    // y = x * a + b, through the caches
    for (std::size_t i = begin; i < end; i += 4)
      _mm_store_ps(y + i, _mm_add_ps(_mm_mul_ps(_mm_load_ps(x + i), a), b));
  }
#else
  (void)stream;  // no non-temporal stores to compare with: the last level counts as fast
  for (std::size_t i = begin; i < end; ++i) y[i] = x[i] * 0.5f + 0.25f;
#endif
}

/// True unless non-temporal stores beat regular ones by more than 20% on a sweep whose traffic
/// (read x, write y) overflows the L2s of `threads` cores but stays well inside the last level:
/// min(4 x those L2s, half the last level). The fastest of 5 timed sweeps of each kind, in turn,
/// each after an untimed one. About 10 ms on the machines above; never when the last level
/// is not larger than twice the L2s (nothing to tell apart).
inline bool probe_last_level_fast(std::size_t l2, std::size_t last_level, int threads) {
#if defined(__SSE2__)
  threads = std::max(threads, 1);
  const std::size_t l2s = l2 * static_cast<std::size_t>(threads);
  if (last_level <= 2 * l2s) return true;
  const std::size_t traffic = std::min(4 * l2s, last_level / 2);
  const std::size_t n = traffic / (2 * sizeof(float)) / 64 * 64;  // 64 floats per thread share
  if (n == 0) return true;
  auto* x = static_cast<float*>(::operator new (n * sizeof(float), std::align_val_t{64}));
  auto* y = static_cast<float*>(::operator new (n * sizeof(float), std::align_val_t{64}));
  std::fill(x, x + n, 1.0f);
  std::fill(y, y + n, 0.0f);
  const auto sweep = [&](bool stream) {
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    {
      const auto t = static_cast<std::size_t>(omp_get_thread_num());
      const auto all = static_cast<std::size_t>(omp_get_num_threads());
      probe_sweep(x, y, n / 64 * t / all * 64, n / 64 * (t + 1) / all * 64, stream);
    }
#else
    probe_sweep(x, y, 0, n, stream);
#endif
  };
  const auto seconds = [&](bool stream) {
    sweep(stream);  // the caches as this kind of store leaves them
    const auto t0 = std::chrono::steady_clock::now();
    sweep(stream);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double regular = 1e300, streamed = 1e300;
  for (int round = 0; round < 5; ++round) {
    regular = std::min(regular, seconds(false));
    streamed = std::min(streamed, seconds(true));
  }
  ::operator delete (x, std::align_val_t{64});
  ::operator delete (y, std::align_val_t{64});
  return !(streamed < 0.8 * regular);
#else
  (void)l2;
  (void)last_level;
  (void)threads;
  return true;
#endif
}

}  // namespace bnorm::detail
