// The Eigen::bfloat16 instances of the fused and staged functions, compiled once for the test
// programs beside instances_float.cpp and instances_double.cpp (see <bnorm/instantiate.hpp>).
#define BNORM_INSTANTIATE_PART 3
#include <bnorm/instantiate.hpp>
