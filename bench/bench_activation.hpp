// The benchmarks of bench_activation.cpp, which bnorm_bench registers after its own (and the
// standalone bnorm_bench_activation alone).
#pragma once

namespace bnorm_bench {

// BatchNorm2d with ReLU and with a residual and ReLU on the ResNet-50 shapes, and one
// BatchNorm1d and one BatchNorm3d shape without an activation (bench_activation.cpp).
void register_activation_benchmarks();

}  // namespace bnorm_bench
