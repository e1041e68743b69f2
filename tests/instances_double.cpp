// The double instances of the fused and staged functions, compiled beside instances_float.cpp
// for the test programs (see <bnorm/instantiate.hpp>).
#define BNORM_INSTANTIATE_PART 2
#include <bnorm/instantiate.hpp>
