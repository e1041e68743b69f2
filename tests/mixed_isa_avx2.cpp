// The unit of the serial digest program built with -mavx2 -mfma, as a shared library whose
// other symbols are hidden (tests/CMakeLists.txt): the digests of the reproducibility cases with
// the kernel set in use, as this unit compiled them (bnorm's functions, the cases and the
// kernels: none of them is the other unit's copy).
#include <string>

#include "repro_cases.hpp"

__attribute__((visibility("default"))) std::string digests_of_the_avx2_unit() {
  return bnorm_test::run_repro_cases();
}
