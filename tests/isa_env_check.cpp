// Run by ctest with BNORM_ISA set to a bad value: the first kernel call must throw
// bnorm::invalid_argument naming the choices (never crash), and set_isa must then recover.
// With the argument "last_level", run with BNORM_LAST_LEVEL set to a bad value: the first kernel
// call must throw the same way, before writing y (no recovery: the variable stays bad).
// Prints what happened; ctest matches the message (tests/CMakeLists.txt).
#include <bnorm/bnorm.hpp>
#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  std::vector<float> x(2 * 3 * 4, 1.5f), y(x.size(), 7.0f);
  x[0] = 0.5f;
  const bnorm::NCHWView<const float> xv(x.data(), 2, 3, 2, 2);
  const Eigen::ArrayXf w = Eigen::ArrayXf::Ones(3), b = Eigen::ArrayXf::Zero(3);
  try {
    bnorm::fused::forward_training(xv, w, b, 1e-5, {y.data(), 2, 3, 2, 2});
    std::printf("no exception\n");
    return 1;
  } catch (const bnorm::invalid_argument& e) {
    std::printf("threw: %s\n", e.what());
  }
  for (float v : y)
    if (v != 7.0f) return std::printf("y was written\n"), 1;
  if (argc > 1 && std::strcmp(argv[1], "last_level") == 0) return std::printf("y untouched\n"), 0;
  bnorm::set_isa("sse2");
  bnorm::fused::forward_training(xv, w, b, 1e-5, {y.data(), 2, 3, 2, 2});
  std::printf("after set_isa(\"sse2\"): %s, y[0] = %g\n", std::string(bnorm::isa()).c_str(), y[0]);
  return 0;
}
