// Fits a BatchNorm2d layer's weight and bias by SGD so that its output matches a target
// y* = a * xhat + b (per channel), then switches to eval and shows the running statistics at
// work: eval on a fresh batch from the same distribution normalises it like training would.
#include <bnorm/bnorm.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  constexpr bnorm::index_t N = 8, C = 3, H = 5, W = 4, size = N * C * H * W;
  const float true_mean[C] = {4.0f, -2.0f, 0.5f}, true_std[C] = {2.0f, 0.5f, 1.0f};
  const float target_a[C] = {1.5f, 0.5f, -1.0f}, target_b[C] = {0.3f, -0.7f, 2.0f};
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0, 1);
  auto batch = [&](std::vector<float>& x) {
    for (bnorm::index_t i = 0; i < size; ++i) {
      const auto c = (i / (H * W)) % C;
      x[static_cast<std::size_t>(i)] = static_cast<float>(true_mean[c] + true_std[c] * normal(gen));
    }
  };

  bnorm::BatchNorm2d<float> bn(C);
  std::vector<float> x(size), y(size), dy(size), dx(size);
  const float lr = 0.5f / static_cast<float>(N * H * W);
  std::printf("step   loss        weight                 bias\n");
  for (int step = 0; step <= 60; ++step) {
    batch(x);
    const auto saved = bn.forward({x.data(), N, C, H, W}, {y.data(), N, C, H, W});
    // Loss 0.5 * sum (y - y*)^2 with y* built from the true statistics; dL/dy = y - y*.
    double loss = 0;
    for (bnorm::index_t i = 0; i < size; ++i) {
      const auto c = (i / (H * W)) % C;
      const auto k = static_cast<std::size_t>(i);
      const double target = target_a[c] * (x[k] - true_mean[c]) / true_std[c] + target_b[c];
      dy[k] = static_cast<float>(y[k] - target);
      loss += 0.5 * dy[k] * dy[k];
    }
    bn.backward(saved, {dy.data(), N, C, H, W}, {dx.data(), N, C, H, W});
    bn.weight() -= lr * bn.weight_grad();
    bn.bias() -= lr * bn.bias_grad();
    if (step % 10 == 0)
      std::printf("%4d %9.4f   [%6.3f %6.3f %6.3f]   [%6.3f %6.3f %6.3f]\n", step, loss / size,
                  bn.weight()[0], bn.weight()[1], bn.weight()[2], bn.bias()[0], bn.bias()[1],
                  bn.bias()[2]);
  }
  std::printf("target weight [%6.3f %6.3f %6.3f], bias [%6.3f %6.3f %6.3f]\n", target_a[0],
              target_a[1], target_a[2], target_b[0], target_b[1], target_b[2]);

  std::printf("\nrunning_mean [%6.3f %6.3f %6.3f]  (true means %4.1f %4.1f %4.1f)\n",
              bn.running_mean()[0], bn.running_mean()[1], bn.running_mean()[2], true_mean[0],
              true_mean[1], true_mean[2]);
  std::printf("running_var  [%6.3f %6.3f %6.3f]  (true variances %4.2f %4.2f %4.2f)\n",
              bn.running_var()[0], bn.running_var()[1], bn.running_var()[2],
              true_std[0] * true_std[0], true_std[1] * true_std[1], true_std[2] * true_std[2]);
  std::printf("num_batches_tracked %lld\n", static_cast<long long>(bn.num_batches_tracked()));

  // Eval: a single sample (N = 1, where batch statistics would be poor) is normalised with the
  // running statistics; compare with the target built from the true statistics.
  bn.eval();
  std::vector<float> one(C * H * W), out(C * H * W);
  batch(x);
  std::copy(x.begin(), x.begin() + C * H * W, one.begin());
  bn.forward({one.data(), 1, C, H, W}, {out.data(), 1, C, H, W});
  double err = 0;
  for (bnorm::index_t i = 0; i < C * H * W; ++i) {
    const auto c = i / (H * W);
    const auto k = static_cast<std::size_t>(i);
    const double target = target_a[c] * (one[k] - true_mean[c]) / true_std[c] + target_b[c];
    err += (out[k] - target) * (out[k] - target);
  }
  std::printf("eval on one new sample: rms distance to the target %.4f\n",
              std::sqrt(err / static_cast<double>(C * H * W)));
  // Succeed only when the fit and the eval path did what is printed above.
  const bool fitted =
      ((bn.weight() - Eigen::Array3f(target_a[0], target_a[1], target_a[2])).abs().maxCoeff() <
       0.2f) &&
      ((bn.bias() - Eigen::Array3f(target_b[0], target_b[1], target_b[2])).abs().maxCoeff() < 0.2f);
  return fitted && std::sqrt(err / static_cast<double>(C * H * W)) < 0.1 ? 0 : 1;
}
