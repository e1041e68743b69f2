/// @file detail/per_isa/parallel.hpp
/// @brief A parallel loop over independent items; serial without OpenMP.

/// Threads a parallel_for may use: OpenMP's limit, or 1 without OpenMP.
inline index_t max_threads() {
#if defined(_OPENMP)
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

/// Calls f(i) for i in [0, count) on at most `threads` threads. Items must be independent: each
/// writes only its own outputs, so the result never depends on how items are spread over
/// threads.
template <class F>
void parallel_for(index_t count, const F& f, index_t threads = max_threads()) {
#if defined(_OPENMP)
  if (count > 1 && threads > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static) num_threads(static_cast <int>(threads))
    for (index_t i = 0; i < count; ++i) f(i);
    return;
  }
#endif
  (void)threads;
  for (index_t i = 0; i < count; ++i) f(i);
}
