// Prints the digest of every reproducibility case, one per line, once for every kernel set this
// CPU runs (after a "# <set>" line; "# <set>: skipped ..." for the others). Built with and
// without OpenMP, with -march=native and with Clang; ctest compares all the outputs, every set
// of every build and thread count, and they must be the same bits (tests/compare_digests.cmake).
#include <cstdio>

#include "repro_cases.hpp"

int main() {
  for (const char* isa : {"sse2", "avx2", "avx512", "generic"}) {
    if (!bnorm::isa_supported(isa)) {
      if (std::string(isa) != "generic")
        std::printf("# %s: skipped, not on this CPU or in this build\n", isa);
      continue;
    }
    bnorm::set_isa(isa);
    std::printf("# %s\n%s", isa, bnorm_test::run_repro_cases().c_str());
  }
  return 0;
}
