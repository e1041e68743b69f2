// The float and double instances of the fused and staged functions, compiled once for the test
// programs, whose other units define BNORM_EXTERN_TEMPLATES (see <bnorm/instantiate.hpp>).
#include <bnorm/instantiate.hpp>
