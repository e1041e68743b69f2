// Must not compile: BNORM_MAX_ISA names no kernel set (the test passes -DBNORM_MAX_ISA=avx3),
// and the error must say which names it takes (tests/CMakeLists.txt).
#include <bnorm/fused.hpp>

int main() {
  return 0;
}
