/// @file detail/per_isa/prefetch.hpp
/// @brief Software prefetch of short runs that the hardware prefetchers do not find.

/// Asks for the `count` values at p ahead of their use: a short run of one image, whose
/// successor the hardware prefetchers do not find: it is in the next image.
template <class T>
BNORM_PREFETCHING void prefetch_run(const T* p, index_t count) {
  const char* b = reinterpret_cast<const char*>(p);
  for (index_t i = 0; i < count * static_cast<index_t>(sizeof(T)); i += 64)
    __builtin_prefetch(b + i, 0, 2);
}

/// How many images ahead to prefetch when each image contributes `run_bytes`: about 64 KiB in
/// flight, enough to cover the memory latency of short runs.
inline index_t prefetch_distance(index_t run_bytes) {
  return std::clamp<index_t>(65536 / std::max<index_t>(run_bytes, 1), 1, 16);
}

/// Calls f(m) for the images to prefetch while working on image n of [n0, n1): all of the
/// first `ahead` at the start, then one image `ahead` further on.
template <class F>
void prefetch_images(index_t n, index_t n0, index_t n1, index_t ahead, const F& f) {
  if (n == n0) {
    for (index_t m = n0 + 1; m < std::min(n1, n0 + 1 + ahead); ++m) f(m);
  } else if (n + ahead < n1) {
    f(n + ahead);
  }
}
