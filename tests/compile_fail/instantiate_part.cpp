// Must not compile: BNORM_INSTANTIATE_PART names no part (the test passes
// -DBNORM_INSTANTIATE_PART=5), and the error must say which values it takes
// (tests/CMakeLists.txt).
#include <bnorm/instantiate.hpp>
