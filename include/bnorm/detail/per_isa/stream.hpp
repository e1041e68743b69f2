/// @file detail/per_isa/stream.hpp
/// @brief Row output with regular or non-temporal (cache-bypassing) stores.

// Passes whose tensors (inputs and output) hold at least the last-level cache's bytes write
// their output with non-temporal stores (Plan::stream): the output would not stay in the
// last-level cache anyway, and streaming saves the read-for-ownership of every written line.
// Smaller passes use regular stores, so a following pass finds the output in cache. Measured
// with the floor kernels (2 threads, 32 MiB L3): non-temporal stores won from about 38 MB of
// traffic (backward of 32x2048x7x7: 0.28 ms against 0.38) and tied at 26 MB (forward of the
// same: 0.29 against 0.27).

template <class T>
void copy_plain(T* dst, const T* src, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = src[i];
}

/// Bytes of the widest vector this build has, and one non-temporal store of it: *dst = *src,
/// dst aligned to kStreamVectorBytes.
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
inline constexpr std::size_t kStreamVectorBytes = 64;
inline void stream_vector(float* dst, const float* src) {
  _mm512_stream_ps(dst, _mm512_loadu_ps(src));
}
inline void stream_vector(double* dst, const double* src) {
  _mm512_stream_pd(dst, _mm512_loadu_pd(src));
}
#elif BNORM_KERNEL_ISA >= BNORM_ISA_AVX2
inline constexpr std::size_t kStreamVectorBytes = 32;
inline void stream_vector(float* dst, const float* src) {
  _mm256_stream_ps(dst, _mm256_loadu_ps(src));
}
inline void stream_vector(double* dst, const double* src) {
  _mm256_stream_pd(dst, _mm256_loadu_pd(src));
}
#elif BNORM_KERNEL_ISA >= BNORM_ISA_SSE2
inline constexpr std::size_t kStreamVectorBytes = 16;
inline void stream_vector(float* dst, const float* src) {
  _mm_stream_ps(dst, _mm_loadu_ps(src));
}
inline void stream_vector(double* dst, const double* src) {
  _mm_stream_pd(dst, _mm_loadu_pd(src));
}
#else
inline constexpr std::size_t kStreamVectorBytes = 0;  // no non-temporal stores
#endif

#if BNORM_KERNEL_ISA >= BNORM_ISA_SSE2
/// The same for the 16-bit formats, whose arithmetic the kernels never use: the vector's bytes
/// moved as floats (a load and a store leave every bit as it was).
template <class H, class = std::enable_if_t<sizeof(H) == 2>>
void stream_vector(H* dst, const H* src) {
  stream_vector(reinterpret_cast<float*>(dst), reinterpret_cast<const float*>(src));
}
#endif

/// dst[0, n) = src[0, n) with non-temporal stores where the instruction set has them. dst is
/// written with regular stores up to its first aligned vector and for the tail.
template <class T>
void copy_streaming(T* dst, const T* src, index_t n) {
  if constexpr (kStreamVectorBytes == 0) {
    copy_plain(dst, src, n);
  } else {
    constexpr auto kVec = static_cast<index_t>(kStreamVectorBytes / sizeof(T));
    const auto misaligned = reinterpret_cast<std::uintptr_t>(dst) % kStreamVectorBytes;
    index_t head = misaligned == 0 ? 0 : kVec - static_cast<index_t>(misaligned / sizeof(T));
    if (misaligned % sizeof(T) != 0 || head > n) head = n;  // unalignable: plain stores
    copy_plain(dst, src, head);
    index_t i = head;
    // dst[i, i + kVec) = src[i, i + kVec), streamed
    for (; i + kVec <= n; i += kVec) stream_vector(dst + i, src + i);
    copy_plain(dst + i, src + i, n - i);
  }
}

/// Orders this thread's non-temporal stores before anything that follows (they are weakly
/// ordered); call once after a streaming pass, before other threads may read the output.
inline void streaming_fence() {
#if BNORM_KERNEL_ISA >= BNORM_ISA_SSE2
  _mm_sfence();
#endif
}

/// Writes out[i] = v_i for i in [0, len), where compute(i0, n, d) stores v_{i0 .. i0+n} to the
/// contiguous d[0, n). Contiguous rows are computed in place, or (stream) through a small
/// buffer in L1 that is then copied out with non-temporal stores; strided rows go through the
/// buffer and are scattered.
template <class T, bool Unit, class F>
void write_row(const Row<T, Unit>& out, index_t len, bool stream, const F& compute) {
  if (Unit && !stream) {
    compute(index_t{0}, len, out.p);
    return;
  }
  constexpr index_t kBuffer = 512;
  alignas(64) T buffer[kBuffer];
  for (index_t i0 = 0; i0 < len; i0 += kBuffer) {
    const index_t n = len - i0 < kBuffer ? len - i0 : kBuffer;
    compute(i0, n, buffer);
    if (Unit)
      copy_streaming(out.p + i0, buffer, n);
    else
      for (index_t i = 0; i < n; ++i) out[i0 + i] = buffer[i];
  }
}
