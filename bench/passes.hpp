// The three passes, their names in benchmark ids, and the fewest bytes each must move.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "shapes.hpp"

namespace bnorm_bench {

enum class Pass { fwd_train, fwd_infer, bwd };

inline const char* pass_name(Pass p) {
  switch (p) {
    case Pass::fwd_train:
      return "fwd_train";
    case Pass::fwd_infer:
      return "fwd_infer";
    case Pass::bwd:
      return "bwd";
  }
  return "?";
}

// Benchmark ids read "<pass>/<implementation>/<NxCxHxW>"; bench/report.py relies on it.
inline std::string bench_name(const std::string& pass, const std::string& impl, const Shape& s) {
  return pass + "/" + impl + "/" + s.name();
}

// Minimal DRAM traffic of one call: each tensor read or written once. The per-channel parameters
// and statistics are O(C) and left out. Training and inference forward both read x and write y;
// backward reads x and dy and writes dx.
inline double minimal_bytes(Pass p, const Shape& s, std::size_t element_size) {
  const double tensor = static_cast<double>(s.size()) * static_cast<double>(element_size);
  return p == Pass::bwd ? 3 * tensor : 2 * tensor;
}

// bytes_per_second (of the minimal traffic, over real time) and the bytes of one call.
inline void set_traffic_counters(benchmark::State& state, double bytes_per_call) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes_per_call) * state.iterations());
  state.counters["bytes"] = bytes_per_call;
}

}  // namespace bnorm_bench
