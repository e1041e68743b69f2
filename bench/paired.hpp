// Timing two kernels in turn, sample by sample, so that the drift of a shared machine (2x from
// minute to minute) moves both alike and their ratio survives it.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace bnorm_bench {

// Calls f once untimed, then once timed, and returns the milliseconds of the timed call. The
// untimed call leaves the caches (and the OpenMP team) as f finds them in a loop of its own,
// whatever ran before it: a non-temporal-store kernel, for one, evicts the lines that a
// regular-store kernel would find cached.
template <class F>
double warm_ms(const F& f) {
  f();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  benchmark::ClobberMemory();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Times `subject` and `reference` in turn, one warm call of each per iteration, which goes
// first alternating from one iteration to the next. The benchmark's time is the subject's
// (register it with Timing::manual); the counter `reference_ms` gets the reference's mean time
// per call over the same iterations, so that a report can take the ratio of the two within each
// repetition. Returns the subject's mean time per call in ms.
//
// Why alternate: with the reference always first, two builds of the same 2x2x2x2 backward
// (calls of 0.2-0.3 us) read 1.06-1.09 in three runs, and 1.03-1.04 with the order swapped.
template <class Subject, class Reference>
double time_in_turn(benchmark::State& state, const Subject& subject,
                    const std::string& reference_ms, const Reference& reference) {
  double reference_total = 0, subject_total = 0;
  bool reference_first = true;
  for (auto _ : state) {
    if (reference_first) reference_total += warm_ms(reference);
    const double ms = warm_ms(subject);
    if (!reference_first) reference_total += warm_ms(reference);
    reference_first = !reference_first;
    subject_total += ms;
    state.SetIterationTime(ms * 1e-3);
  }
  const auto iterations = static_cast<double>(state.iterations());
  state.counters[reference_ms] = reference_total / iterations;
  return subject_total / iterations;
}

// A named reference of time_with_references: its counter (mean ms per call) and the call.
using Reference = std::pair<std::string, std::function<void()>>;

// time_in_turn with several references: each iteration runs each reference, then the subject,
// one warm call each; every reference's counter gets its mean time per call over the same
// iterations. Returns the subject's mean time per call in ms.
template <class Subject>
double time_with_references(benchmark::State& state, const Subject& subject,
                            const std::vector<Reference>& references) {
  std::vector<double> totals(references.size(), 0.0);
  double subject_total = 0;
  for (auto _ : state) {
    for (std::size_t r = 0; r < references.size(); ++r) totals[r] += warm_ms(references[r].second);
    const double ms = warm_ms(subject);
    subject_total += ms;
    state.SetIterationTime(ms * 1e-3);
  }
  const auto iterations = static_cast<double>(state.iterations());
  for (std::size_t r = 0; r < references.size(); ++r)
    state.counters[references[r].first] = totals[r] / iterations;
  return subject_total / iterations;
}

}  // namespace bnorm_bench
