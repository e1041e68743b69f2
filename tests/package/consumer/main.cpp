// Smallest use of an installed bnorm: one training step; exits non-zero if the output is not
// normalised (zero mean per channel).
#include <bnorm/bnorm.hpp>
#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  std::vector<float> x(2 * 3 * 4 * 5), y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) + 2;
  bnorm::BatchNorm2d<float> bn(3);
  bn.forward(bnorm::NCHWView<const float>(x.data(), 2, 3, 4, 5), {y.data(), 2, 3, 4, 5});
  double worst = 0;
  for (int c = 0; c < 3; ++c) {
    double sum = 0;
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 20; ++i) sum += y[static_cast<std::size_t>((n * 3 + c) * 20 + i)];
    worst = std::fmax(worst, std::fabs(sum / 40));
  }
  std::printf("bnorm %d.%d.%d consumer: largest channel mean of y %.3g\n", BNORM_VERSION_MAJOR,
              BNORM_VERSION_MINOR, BNORM_VERSION_PATCH, worst);
  return worst < 1e-5 ? 0 : 1;
}
