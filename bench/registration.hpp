// One place for how every benchmark is registered, so all of them are timed the same way.
#pragma once

#include <benchmark/benchmark.h>
#include <bnorm/detail/cache_sizes.hpp>
#include <bnorm/isa.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <string>
#include <utility>

#include "machine.hpp"
#include "shapes.hpp"

namespace bnorm_bench {

// Milliseconds for the big tensors; microseconds where a call is pure overhead.
inline benchmark::TimeUnit time_unit_for(const Shape& s) {
  return s.size() < (1 << 16) ? benchmark::kMicrosecond : benchmark::kMillisecond;
}

enum class Timing { wall, manual };

// Wall-clock time: the work runs on an OpenMP team, so the calling thread's CPU time says little.
// Timing::manual: the benchmark measures wall-clock time itself (SetIterationTime), for the
// benchmarks that time a kernel and its floor in turn.
template <class F>
benchmark::internal::Benchmark* add_benchmark(const std::string& name, const Shape& s, F&& f,
                                              Timing timing = Timing::wall) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(f));
  if (timing == Timing::manual)
    b->UseManualTime();
  else
    b->UseRealTime();
  return b->Unit(time_unit_for(s));
}

// Threads of the OpenMP team the kernels and the floors run on (1 without OpenMP).
inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Every benchmark binary's main: Google Benchmark's flags, what the results depend on besides
// the code in the output's context (bnorm's version, the CPU model, the kernels' instruction
// set, the build's flags, the threads), then
// add_all() registers the benchmarks, and they run.
template <class F>
int run_benchmarks(int argc, char** argv, F&& add_all) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
#if defined(BNORM_VERSION_MAJOR)
  benchmark::AddCustomContext("bnorm_version", std::to_string(BNORM_VERSION_MAJOR) + "." +
                                                   std::to_string(BNORM_VERSION_MINOR) + "." +
                                                   std::to_string(BNORM_VERSION_PATCH));
#endif
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("bnorm_isa", std::string(bnorm::isa()));
  // The cache sizes the kernels plan with (read at run time, detail/cache_sizes.hpp), and
  // whether the last level serves as a cache for outputs (probed, last_level_probe.hpp).
  const bnorm::detail::CacheSizes caches = bnorm::detail::cache_sizes();
  benchmark::AddCustomContext(
      "bnorm_caches",
      "L2 " + std::to_string(caches.l2 >> 10) + " KiB, last level " +
          std::to_string(caches.last_level >> 10) + " KiB (" +
          (bnorm::detail::last_level_fast(caches) ? "a cache" : "no faster than memory") + ")");
#if defined(BNORM_BENCH_NATIVE)
  benchmark::AddCustomContext("build", "-march=native");
#else
  benchmark::AddCustomContext("build", "default flags");
#endif
  benchmark::AddCustomContext("omp_threads", std::to_string(max_threads()));
  std::forward<F>(add_all)();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bnorm_bench
