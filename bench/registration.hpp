// One place for how every benchmark is registered, so all of them are timed the same way.
#pragma once

#include <benchmark/benchmark.h>

#include <string>
#include <utility>

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

}  // namespace bnorm_bench
