// Prints the digest of every reproducibility case, one per line. Built twice, with and without
// OpenMP; ctest compares the outputs (tests/compare_digests.cmake) for 1 and 2 threads.
#include <cstdio>

#include "repro_cases.hpp"

int main() {
  for (const auto& c : bnorm_test::repro_cases())
    std::printf("%s\n", bnorm_test::run_repro_case(c).c_str());
  return 0;
}
