// The unit of bnorm_mixed_isa built with -mavx2 -mfma (tests/CMakeLists.txt): the digests of the
// reproducibility cases with the kernel set in use, as this unit compiled them.
#include <string>

#include "repro_cases.hpp"

std::string digests_of_the_avx2_unit() {
  return bnorm_test::run_repro_cases();
}
