// The float instances of the fused and staged functions (and the type-free pieces), compiled once
// for the test programs, whose other units define BNORM_EXTERN_TEMPLATES (see
// <bnorm/instantiate.hpp>); instances_double.cpp compiles double's beside this one.
#define BNORM_INSTANTIATE_PART 1
#include <bnorm/instantiate.hpp>
