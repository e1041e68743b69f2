// What the results depend on besides the code: the CPU model, for the report's header line.
#pragma once

#include <fstream>
#include <string>

namespace bnorm_bench {

// "model name" from /proc/cpuinfo (Linux); Google Benchmark's context has no model name.
inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return "unknown";
}

}  // namespace bnorm_bench
