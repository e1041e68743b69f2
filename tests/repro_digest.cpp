// Prints the digest of every reproducibility case, one per line, once for every kernel set this
// CPU runs (after a "# <set>" line; "# <set>: skipped ..." for the others). Built with OpenMP
// (through bnorm_instances), with -march=native, at -O0 and with Clang; ctest compares all the
// outputs with the serial build's (mixed_isa_main.cpp), every set of every build and thread
// count, and they must be the same bits (tests/compare_digests.cmake).
#include <cstdio>

#include "repro_cases.hpp"

int main() {
  std::fputs(bnorm_test::digests_of_every_isa().c_str(), stdout);
  return 0;
}
