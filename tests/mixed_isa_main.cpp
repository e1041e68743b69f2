// The serial digest program, of two units that include bnorm: this one built with default flags
// and mixed_isa_avx2.cpp with -mavx2 -mfma (tests/CMakeLists.txt).
// - Without arguments: the digests of every kernel set, as repro_digest.cpp prints them.
// - With "mixed": both units must give the same bits, on every kernel set. Each unit runs its
//   own copies of bnorm's inline functions and of its kernels: the -mavx2 unit is a shared
//   library that keeps its symbols to itself (in one executable the linker would keep one copy
//   of each inline function, and both units would run it).
#include <cstdio>
#include <cstring>
#include <string>

#include "repro_cases.hpp"

std::string digests_of_the_avx2_unit();

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "mixed") != 0) {
    std::fputs(bnorm_test::digests_of_every_isa().c_str(), stdout);
    return 0;
  }
  if (!bnorm::isa_supported("avx2")) {
    std::printf("skipped: this CPU lacks avx2, which the -mavx2 unit needs\n");
    return 0;
  }
  int failed = 0;
  for (const char* isa : {"sse2", "avx2", "avx512"}) {
    if (!bnorm::isa_supported(isa)) {
      std::printf("%s: skipped, not on this CPU\n", isa);
      continue;
    }
    bnorm::set_isa(isa);
    const std::string here = bnorm_test::run_repro_cases(), there = digests_of_the_avx2_unit();
    std::printf("%s: %s\n", isa, here == there ? "same bits in both units" : "DIFFERENT bits");
    failed += here != there;
  }
  return failed;
}
