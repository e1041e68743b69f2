// The seed notebook's experiment, done right: a random 2x2x2x2 input, gamma ones, beta zeros,
// forward, then backward with a random dout (not ones: for dout = ones dx is 0 for any correct
// or many incorrect backward passes), through the staged and the fused variant.
#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

using Tensor = std::vector<double>;
constexpr bnorm::index_t N = 2, C = 2, H = 2, W = 2;

void print(const char* name, const Tensor& t) {
  std::printf("%s (N, C, H, W) =\n", name);
  for (bnorm::index_t n = 0; n < N; ++n) {
    for (bnorm::index_t c = 0; c < C; ++c) {
      std::printf("  n=%td c=%td:", n, c);
      for (bnorm::index_t i = 0; i < H * W; ++i)
        std::printf(" %+.6f", t[static_cast<std::size_t>((n * C + c) * H * W + i)]);
      std::printf("\n");
    }
  }
}

struct Run {
  Tensor y, dx;
  Eigen::ArrayXd dgamma, dbeta;
};

Run run(bnorm::Variant variant, const Tensor& x, const Tensor& dout) {
  bnorm::BatchNorm2d<double> bn(C, {1e-5, 0.1, true, true, variant});  // gamma 1, beta 0
  Run r{Tensor(x.size()), Tensor(x.size()), {}, {}};
  const auto saved = bn.forward({x.data(), N, C, H, W}, {r.y.data(), N, C, H, W});
  bn.backward(saved, {dout.data(), N, C, H, W}, {r.dx.data(), N, C, H, W});
  r.dgamma = bn.weight_grad();
  r.dbeta = bn.bias_grad();
  return r;
}

double max_diff(const double* a, const double* b, std::size_t n) {
  double d = 0;
  for (std::size_t i = 0; i < n; ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

}  // namespace

int main() {
  std::mt19937_64 gen(2024);
  std::uniform_real_distribution<double> uniform(0, 1);  // np.random.rand, as in the notebook
  std::normal_distribution<double> normal(0, 1);
  Tensor x(N * C * H * W), dout(x.size());
  for (double& v : x) v = uniform(gen);
  for (double& v : dout) v = normal(gen);

  const Run staged = run(bnorm::Variant::staged, x, dout);
  const Run fused = run(bnorm::Variant::fused, x, dout);

  print("x", x);
  print("y = BatchNorm2d(x), staged", staged.y);
  print("dout (random)", dout);
  print("dx, staged", staged.dx);
  std::printf("dgamma, staged: %+.6f %+.6f\n", staged.dgamma[0], staged.dgamma[1]);
  std::printf("dbeta,  staged: %+.6f %+.6f\n", staged.dbeta[0], staged.dbeta[1]);

  const std::size_t n = x.size();
  const double dy = max_diff(staged.y.data(), fused.y.data(), n);
  const double ddx = max_diff(staged.dx.data(), fused.dx.data(), n);
  const double dg = max_diff(staged.dgamma.data(), fused.dgamma.data(), C);
  const double db = max_diff(staged.dbeta.data(), fused.dbeta.data(), C);
  std::printf("\nlargest |staged - fused|: y %.3g, dx %.3g, dgamma %.3g, dbeta %.3g\n", dy, ddx, dg,
              db);

  // The notebook's dout = ones, kept as a property: dx must vanish up to rounding.
  const Run ones = run(bnorm::Variant::fused, x, Tensor(n, 1.0));
  double largest = 0;
  for (double v : ones.dx) largest = std::max(largest, std::abs(v));
  std::printf("property, dout = ones: largest |dx| %.3g (0 up to rounding)\n", largest);
  return std::max({dy, ddx, dg, db}) < 1e-12 ? 0 : 1;
}
