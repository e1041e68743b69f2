// The staged graph: central finite differences (double) for every node's local backward and
// for the whole operation, in training and in eval, with random upstream gradients; the Add and
// ReLU nodes of a fused activation and residual too.
#include <tuple>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

using bnorm::staged::Tensor1;
using bnorm::staged::Tensor4;
namespace nodes = bnorm::staged::nodes;

const Shape kShape{2, 3, 2, 4};  // C != W

Tensor4<double> random_tensor4(std::uint64_t seed, double offset = 0.0) {
  const auto v = random_values<double>(kShape, seed, offset);
  Tensor4<double> t(kShape[0], kShape[1], kShape[2], kShape[3]);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

Tensor1<double> random_tensor1(std::uint64_t seed, double lo, double hi) {
  const auto a = random_array<double>(kShape[1], seed, lo, hi);
  Tensor1<double> t(kShape[1]);
  std::copy(a.data(), a.data() + a.size(), t.data());
  return t;
}

/// <g, t>: the scalar loss whose gradient with respect to t is g.
template <class A, class B>
double dot(const A& g, const B& t) {
  double s = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(t.size()); ++i)
    s += g.data()[i] * t.data()[i];
  return s;
}

/// Central differences of loss() with respect to every element of `input` (perturbed in place),
/// compared with `analytic`, relative to the largest analytic entry.
template <class Input, class Grad, class Loss>
void expect_matches_finite_differences(Input& input, const Grad& analytic, const Loss& loss,
                                       const char* what) {
  ASSERT_EQ(input.size(), analytic.size()) << what;
  double worst = 0, scale = 0;
  for (Eigen::Index i = 0; i < input.size(); ++i) {
    double& v = input.data()[i];
    const double keep = v, h = 1e-6 * std::max(1.0, std::abs(v));
    v = keep + h;
    const double up = loss();
    v = keep - h;
    const double down = loss();
    v = keep;
    worst = std::max(worst, std::abs((up - down) / (2 * h) - analytic.data()[i]));
    scale = std::max(scale, std::abs(analytic.data()[i]));
  }
  EXPECT_GT(scale, 0) << what << ": a zero gradient checks nothing";
  EXPECT_LE(worst / scale, 1e-7) << what;
}

TEST(StagedNodes, ChannelMean) {
  Tensor4<double> t = random_tensor4(1);
  const Tensor1<double> g = random_tensor1(2, -1, 1);
  const Tensor4<double> dt = nodes::ChannelMean::backward<double>(g, t.dimensions());
  expect_matches_finite_differences(
      t, dt, [&] { return dot(g, Tensor1<double>(nodes::ChannelMean::forward<double>(t))); }, "dt");
}

template <int Sign>
void check_add_channel() {
  Tensor4<double> t = random_tensor4(3);
  Tensor1<double> v = random_tensor1(4, -2, 2);
  const Tensor4<double> g = random_tensor4(5);
  auto loss = [&] {
    return dot(g, Tensor4<double>(nodes::AddChannel<Sign>::template forward<double>(t, v)));
  };
  const auto [dt, dv] = nodes::AddChannel<Sign>::template backward<double>(g);
  expect_matches_finite_differences(t, dt, loss, "dt");
  expect_matches_finite_differences(v, dv, loss, "dv");
}
TEST(StagedNodes, SubtractChannel) {
  check_add_channel<-1>();
}
TEST(StagedNodes, AddChannel) {
  check_add_channel<+1>();
}

TEST(StagedNodes, Square) {
  Tensor4<double> t = random_tensor4(6);
  const Tensor4<double> g = random_tensor4(7);
  const Tensor4<double> dt = nodes::Square::backward<double>(t, g);
  expect_matches_finite_differences(
      t, dt, [&] { return dot(g, Tensor4<double>(nodes::Square::forward<double>(t))); }, "dt");
}

TEST(StagedNodes, SqrtEps) {
  Tensor1<double> v = random_tensor1(8, 0.1, 3);
  const Tensor1<double> g = random_tensor1(9, -1, 1);
  const double eps = 1e-3;
  const Tensor1<double> dv = nodes::SqrtEps::backward<double>(v, eps, g);
  expect_matches_finite_differences(
      v, dv, [&] { return dot(g, Tensor1<double>(nodes::SqrtEps::forward<double>(v, eps))); },
      "dv");
}

TEST(StagedNodes, Reciprocal) {
  Tensor1<double> v = random_tensor1(10, 0.5, 3);
  const Tensor1<double> g = random_tensor1(11, -1, 1);
  const Tensor1<double> dv = nodes::Reciprocal::backward<double>(v, g);
  expect_matches_finite_differences(
      v, dv, [&] { return dot(g, Tensor1<double>(nodes::Reciprocal::forward<double>(v))); }, "dv");
}

TEST(StagedNodes, MulChannel) {
  Tensor4<double> t = random_tensor4(12);
  Tensor1<double> v = random_tensor1(13, 0.5, 1.5);
  const Tensor4<double> g = random_tensor4(14);
  auto loss = [&] { return dot(g, Tensor4<double>(nodes::MulChannel::forward<double>(t, v))); };
  const auto [dt, dv] = nodes::MulChannel::backward<double>(t, v, g);
  expect_matches_finite_differences(t, dt, loss, "dt");
  expect_matches_finite_differences(v, dv, loss, "dv");
}

// The whole operation: L = <dy, y(x, weight, bias)>, with batch statistics (training) and with
// constant running statistics (eval). Both variants' backward are checked against it.
struct WholeOp : ::testing::TestWithParam<std::tuple<bool, bnorm::Variant>> {};

TEST_P(WholeOp, MatchesFiniteDifferences) {
  // Not structured bindings: the lambdas below capture them (C++17).
  const bool training = std::get<0>(GetParam());
  const bnorm::Variant variant = std::get<1>(GetParam());
  using Array = Eigen::ArrayXd;
  Eigen::Tensor<double, 1> x(count(kShape)), dy(count(kShape));
  const auto xv = random_values<double>(kShape, 21, 1.5), dyv = random_values<double>(kShape, 22);
  std::copy(xv.begin(), xv.end(), x.data());
  std::copy(dyv.begin(), dyv.end(), dy.data());
  Array weight = random_array<double>(kShape[1], 23, 0.5, 1.5);
  Array bias = random_array<double>(kShape[1], 24, -1, 1);
  const Array running_mean = random_array<double>(kShape[1], 25, 1, 2);
  const Array running_var = random_array<double>(kShape[1], 26, 0.5, 2);
  const double eps = 1e-3;
  const index_t N = kShape[0], C = kShape[1], H = kShape[2], W = kShape[3];
  std::vector<double> y(static_cast<std::size_t>(count(kShape)));
  auto forward_loss = [&] {
    const bnorm::NCHWView<const double> xw(x.data(), N, C, H, W);
    const bnorm::NCHWView<double> yw(y.data(), N, C, H, W);
    if (training)
      bnorm::staged::forward_training(xw, weight, bias, eps, yw);
    else
      bnorm::staged::forward_inference(xw, weight, bias, running_mean, running_var, eps, yw);
    return dot(dy, y);
  };

  bnorm::BatchNorm2d<double> bn(C, {eps, 0.1, true, true, variant});
  bn.weight() = weight;
  bn.bias() = bias;
  bn.running_mean() = running_mean;
  bn.running_var() = running_var;
  bn.train(training);
  Eigen::Tensor<double, 1> dx(count(kShape));
  const auto saved = bn.forward({x.data(), N, C, H, W}, {y.data(), N, C, H, W});
  bn.backward(saved, {dy.data(), N, C, H, W}, {dx.data(), N, C, H, W});
  const Array dweight = bn.weight_grad(), dbias = bn.bias_grad();

  expect_matches_finite_differences(x, dx, forward_loss, "dx");
  expect_matches_finite_differences(weight, dweight, forward_loss, "dweight");
  expect_matches_finite_differences(bias, dbias, forward_loss, "dbias");
}

INSTANTIATE_TEST_SUITE_P(TrainAndEval, WholeOp,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values(bnorm::Variant::staged,
                                                              bnorm::Variant::fused)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "train" : "eval") + "_" +
                                  (std::get<1>(info.param) == bnorm::Variant::staged ? "staged"
                                                                                     : "fused");
                         });

// Finite differences of the staged nodes' local backward (step 10 Add, step 11 ReLU), and of
// the whole staged composition L = sum(w * y) in x and r, away from ReLU's kink.
TEST(ActivationStaged, NodesAndCompositionMatchFiniteDifferences) {
  using bnorm::staged::Tensor4;
  namespace nodes = bnorm::staged::nodes;
  const Shape s{2, 3, 4, 5};
  const auto tv = random_values<double>(s, 51), dv = random_values<double>(s, 52);
  Tensor4<double> t(2, 3, 4, 5), dout(2, 3, 4, 5);
  std::copy(tv.begin(), tv.end(), t.data());
  std::copy(dv.begin(), dv.end(), dout.data());
  const Tensor4<double> din = nodes::Relu::backward<double>(t, dout);
  const double h = 1e-6;
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    if (std::abs(t.data()[i]) < 1e-3) continue;
    Tensor4<double> up = t, down = t;
    up.data()[i] += h;
    down.data()[i] -= h;
    const Tensor4<double> fu = nodes::Relu::forward<double>(up),
                          fd = nodes::Relu::forward<double>(down);
    const double fdiff = (fu.data()[i] - fd.data()[i]) / (2 * h) * dout.data()[i];
    EXPECT_NEAR(din.data()[i], fdiff, 1e-8);
  }
  const auto [da, db] = nodes::Add::backward<double>(dout);
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    EXPECT_EQ(da.data()[i], dout.data()[i]);  // d(t + r)/dt = d(t + r)/dr = 1
    EXPECT_EQ(db.data()[i], dout.data()[i]);
  }

  // the whole op: L(x, r) = sum dy * relu(BN(x) + r)
  const auto xv = random_values<double>(s, 53), rv = random_values<double>(s, 54),
             dyv = random_values<double>(s, 55);
  const Eigen::ArrayXd w = random_array<double>(3, 56, -2, 2),
                       b = random_array<double>(3, 57, -1, 1);
  auto loss = [&](const std::vector<double>& xs, const std::vector<double>& rs) {
    std::vector<double> y(xs.size());
    const bnorm::NCHWView<const double> xview(xs.data(), 2, 3, 4, 5), rview(rs.data(), 2, 3, 4, 5);
    bnorm::staged::forward_training<double, bnorm::NCHWView>(
        xview, &rview, w, b, 1e-5, bnorm::NCHWView<double>(y.data(), 2, 3, 4, 5),
        bnorm::Activation::relu);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += dyv[i] * y[i];
    return l;
  };
  std::vector<double> y(xv.size()), dx(xv.size()), dr(xv.size());
  const bnorm::NCHWView<const double> xview(xv.data(), 2, 3, 4, 5), rview(rv.data(), 2, 3, 4, 5);
  const auto k = bnorm::staged::forward_training<double, bnorm::NCHWView>(
      xview, &rview, w, b, 1e-5, bnorm::NCHWView<double>(y.data(), 2, 3, 4, 5),
      bnorm::Activation::relu);
  Eigen::ArrayXd dw, dbias;
  const bnorm::NCHWView<double> drv(dr.data(), 2, 3, 4, 5);
  bnorm::staged::backward<double, bnorm::NCHWView>(
      k, w, bnorm::NCHWView<const double>(dyv.data(), 2, 3, 4, 5),
      bnorm::NCHWView<double>(dx.data(), 2, 3, 4, 5), &drv, dw, dbias);
  const Tensor4<double>& z = k.pre_activation();
  double min_abs_z = 1e300;
  for (Eigen::Index i = 0; i < z.size(); ++i)
    min_abs_z = std::min(min_abs_z, std::abs(z.data()[i]));
  ASSERT_GT(min_abs_z, 1e-4) << "a value at the kink: pick another seed";
  for (std::size_t i = 0; i < xv.size(); ++i) {
    auto xu = xv, xd = xv, ru = rv, rd = rv;
    xu[i] += h;
    xd[i] -= h;
    ru[i] += h;
    rd[i] -= h;
    EXPECT_NEAR(dx[i], (loss(xu, rv) - loss(xd, rv)) / (2 * h), 1e-6) << i;
    EXPECT_NEAR(dr[i], (loss(xv, ru) - loss(xv, rd)) / (2 * h), 1e-6) << i;
  }
}

// An empty view with huge extents (W = 0, N = 2^40): nothing to store, so every staged forward
// returns at once (a loop over N * C * H would not finish).
TEST(ActivationStaged, EmptyViewsWithHugeExtentsReturnAtOnce) {
  double d = 0;
  const index_t n = index_t{1} << 40;
  const bnorm::NCHWView<const double> x(&d, n, 4, 2, 0), r(&d, n, 4, 2, 0);
  const bnorm::NCHWView<double> y(&d, n, 4, 2, 0);
  const Eigen::ArrayXd w = Eigen::ArrayXd::Ones(4), b = Eigen::ArrayXd::Zero(4);
  const auto k1 = bnorm::staged::forward_inference(x, w, b, b, w, 1e-5, y);
  const auto k2 = bnorm::staged::forward_training<double, bnorm::NCHWView>(x, &r, w, b, 1e-5, y,
                                                                           bnorm::Activation::relu);
  const auto k3 = bnorm::staged::forward_inference<double, bnorm::NCHWView>(
      x, &r, w, b, b, w, 1e-5, y, bnorm::Activation::relu);
  EXPECT_EQ(k1.out.size() + k2.output().size() + k3.output().size(), 0);
  EXPECT_TRUE(k2.residual && k3.activation == bnorm::Activation::relu);
}

}  // namespace
}  // namespace bnorm_test
