// The -march=native unit of bnorm_bench_builds: its own compilation of the kernel sets.
#include "build_kernels.hpp"

namespace bnorm_bench {

void run_native_kernels(Pass pass, const PassArguments& a) {
  run_kernels(pass, a);
}

}  // namespace bnorm_bench
