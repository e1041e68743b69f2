// BatchNorm2d's PyTorch semantics, each checked against an independent computation: running
// statistics from the long-double reference's batch statistics, eval from plain loops.
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

template <class T>
class Module : public ::testing::Test {};
TYPED_TEST_SUITE(Module, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(Module, DefaultsAreTorchs) {
  using T = TypeParam;
  bnorm::BatchNorm2d<T> bn(5);
  EXPECT_TRUE(bn.is_training());
  EXPECT_TRUE((bn.weight() == 1).all());
  EXPECT_TRUE((bn.bias() == 0).all());
  EXPECT_TRUE((bn.running_mean() == 0).all());
  EXPECT_TRUE((bn.running_var() == 1).all());
  EXPECT_EQ(bn.weight().size(), 5);
  EXPECT_EQ(bn.num_batches_tracked(), 0);
  EXPECT_EQ(bn.options().eps, 1e-5);
  EXPECT_EQ(*bn.options().momentum, 0.1);
  EXPECT_EQ(bn.options().variant, bnorm::Variant::fused);
  bn.eval();
  EXPECT_FALSE(bn.is_training());
  bn.train();
  EXPECT_TRUE(bn.is_training());

  bnorm::BatchNorm2d<T> bare(5, {1e-5, 0.1, false, false, bnorm::Variant::fused});
  EXPECT_EQ(bare.weight().size(), 0);
  EXPECT_EQ(bare.bias().size(), 0);
  EXPECT_EQ(bare.running_mean().size(), 0);
  EXPECT_EQ(bare.running_var().size(), 0);
}

// Several training steps: running = (1 - f) running + f batch, var unbiased by M / (M - 1),
// f = momentum or 1 / num_batches_tracked. Checked for momentum 0.1, 0, 1 and nullopt.
TYPED_TEST(Module, RunningStatisticsFollowMomentum) {
  using T = TypeParam;
  const Shape s{3, 4, 2, 5};
  const index_t m = s[0] * s[2] * s[3];
  const std::optional<double> momenta[] = {0.1, 0.0, 1.0, std::nullopt};
  for (const auto& momentum : momenta)
    for (const auto variant : kVariants) {
      SCOPED_TRACE(::testing::Message()
                   << "momentum " << (momentum ? *momentum : -1.0)
                   << (variant == bnorm::Variant::staged ? " staged" : " fused"));
      bnorm::BatchNorm2d<T> bn(s[1], {1e-5, momentum, true, true, variant});
      std::vector<long double> rm(4, 0.0L), rv(4, 1.0L);
      for (int step = 1; step <= 4; ++step) {
        const auto x =
            random_values<T>(s, 100 + static_cast<std::uint64_t>(step), step * 2.0, step);
        Buffer<T> xb(s), yb(s);
        xb.set(x);
        bn.forward(xb.cview(), yb.view());
        const Reference ref = reference(s, x, x, bn.weight(), bn.bias(), 1e-5);
        const long double f = momentum ? *momentum : 1.0L / step;
        for (std::size_t c = 0; c < 4; ++c) {
          rm[c] = (1 - f) * rm[c] + f * ref.mean[c];
          rv[c] = (1 - f) * rv[c] + f * ref.var[c] * m / (m - 1);
        }
        EXPECT_EQ(bn.num_batches_tracked(), step);
        EXPECT_LE(rel_error(bn.running_mean(), rm), 4 * tolerance<T>());
        EXPECT_LE(rel_error(bn.running_var(), rv), 4 * tolerance<T>());
      }
    }
}

// Eval with tracked statistics: y = (x - rm) / sqrt(rv + eps) * w + b; backward
// dx = dy * w / sqrt(rv + eps), dweight = sum dy * xhat, dbias = sum dy; no state changes.
TYPED_TEST(Module, EvalUsesRunningStatisticsAsConstants) {
  using T = TypeParam;
  const Shape s{2, 3, 4, 5};
  const double eps = 1e-3;
  const auto x = random_values<T>(s, 41, 2.0), dy = random_values<T>(s, 42);
  for (const auto variant : kVariants)
    for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
      bnorm::BatchNorm2d<T> bn(s[1], {eps, 0.1, true, true, variant});
      bn.weight() = random_array<T>(s[1], 43, 0.5, 1.5);
      bn.bias() = random_array<T>(s[1], 44, -1, 1);
      bn.running_mean() = random_array<T>(s[1], 45, 1, 3);
      bn.running_var() = random_array<T>(s[1], 46, 0.5, 2);
      const Array<T> rm = bn.running_mean(), rv = bn.running_var();
      bn.eval();
      Buffer<T> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
      xb.set(x);
      dyb.set(dy);
      const auto saved = bn.forward(xb.cview(), yb.view());
      bn.backward(saved, dyb.cview(), dxb.view());
      EXPECT_FALSE(saved.batch_statistics());
      EXPECT_EQ(bn.num_batches_tracked(), 0);
      EXPECT_TRUE((bn.running_mean() == rm).all());
      EXPECT_TRUE((bn.running_var() == rv).all());

      std::vector<double> y(x.size()), dx(x.size()), dw(3, 0.0), db(3, 0.0);
      const index_t plane = s[2] * s[3];
      for (std::size_t i = 0; i < x.size(); ++i) {
        const auto c = static_cast<index_t>((static_cast<index_t>(i) / plane) % s[1]);
        const double invstd = 1 / std::sqrt(static_cast<double>(rv[c]) + eps);
        const double xhat = (static_cast<double>(x[i]) - rm[c]) * invstd;
        y[i] = xhat * bn.weight()[c] + bn.bias()[c];
        dx[i] = dy[i] * bn.weight()[c] * invstd;
        dw[static_cast<std::size_t>(c)] += dy[i] * xhat;
        db[static_cast<std::size_t>(c)] += dy[i];
      }
      EXPECT_LE(rel_error(yb.values(), y), tolerance<T>());
      EXPECT_LE(rel_error(dxb.values(), dx), tolerance<T>());
      EXPECT_LE(rel_error(bn.weight_grad(), dw), tolerance<T>());
      EXPECT_LE(rel_error(bn.bias_grad(), db), tolerance<T>());
    }
}

// track_running_stats = false: no buffers, and eval normalises with batch statistics exactly
// as training does.
TYPED_TEST(Module, UntrackedEvalUsesBatchStatistics) {
  using T = TypeParam;
  const Shape s{3, 2, 3, 4};
  const auto x = random_values<T>(s, 51, 1.0), dy = random_values<T>(s, 52);
  for (const auto variant : kVariants) {
    bnorm::BatchNorm2d<T> bn(s[1], {1e-5, 0.1, true, false, variant});
    bn.weight() = random_array<T>(s[1], 53, 0.5, 1.5);
    Buffer<T> xb(s), yb(s), dyb(s), dxb(s);
    xb.set(x);
    dyb.set(dy);
    std::vector<T> y[2], dx[2];
    for (int mode = 0; mode < 2; ++mode) {
      bn.train(mode == 0);
      const auto saved = bn.forward(xb.cview(), yb.view());
      EXPECT_TRUE(saved.batch_statistics());
      bn.backward(saved, dyb.cview(), dxb.view());
      y[mode] = yb.values();
      dx[mode] = dxb.values();
    }
    EXPECT_EQ(y[0], y[1]);
    EXPECT_EQ(dx[0], dx[1]);
    EXPECT_EQ(bn.num_batches_tracked(), 0);
    const Reference ref = reference(s, x, dy, bn.weight(), bn.bias(), 1e-5);
    EXPECT_LE(rel_error(y[1], ref.y), tolerance<T>());
    EXPECT_LE(rel_error(dx[1], ref.dx), tolerance<T>());
  }
}

TYPED_TEST(Module, AffineFalseNormalisesWithoutParameters) {
  using T = TypeParam;
  const Shape s{2, 3, 3, 2};
  const auto x = random_values<T>(s, 61, 5.0), dy = random_values<T>(s, 62);
  for (const auto variant : kVariants) {
    bnorm::BatchNorm2d<T> bn(s[1], {1e-5, 0.1, false, true, variant});
    Buffer<T> xb(s), yb(s), dyb(s), dxb(s);
    xb.set(x);
    dyb.set(dy);
    const auto saved = bn.forward(xb.cview(), yb.view());
    bn.backward(saved, dyb.cview(), dxb.view());
    const Reference ref = reference(s, x, dy, Array<T>(), Array<T>(), 1e-5);
    EXPECT_LE(rel_error(yb.values(), ref.y), tolerance<T>());
    EXPECT_LE(rel_error(dxb.values(), ref.dx), tolerance<T>());
    EXPECT_EQ(bn.weight_grad().size(), 0);
    EXPECT_EQ(bn.bias_grad().size(), 0);
  }
}

// N == 0 changes no state (PyTorch 1.13 would count the batch; DESIGN.md says no-op).
TYPED_TEST(Module, EmptyBatchIsANoOp) {
  using T = TypeParam;
  for (const auto variant : kVariants)
    for (const Shape s : {Shape{0, 3, 4, 5}, Shape{2, 3, 0, 5}}) {
      bnorm::BatchNorm2d<T> bn(3, {1e-5, std::nullopt, true, true, variant});
      bn.running_mean() << 1, 2, 3;
      const bnorm::NCHWView<T> empty(nullptr, {s[0], s[1], s[2], s[3]}, {0, 0, 0, 0});
      const auto saved = bn.forward(empty, empty);
      EXPECT_EQ(bn.num_batches_tracked(), 0);
      EXPECT_TRUE((bn.running_mean() == Array<T>::LinSpaced(3, 1, 3)).all());
      EXPECT_TRUE((bn.running_var() == 1).all());
      bn.backward(saved, empty, empty);
      EXPECT_TRUE((bn.weight_grad() == 0).all());
      EXPECT_EQ(bn.weight_grad().size(), 3);
    }
}

TYPED_TEST(Module, SavedRecordsVariantAndStatistics) {
  using T = TypeParam;
  const Shape s{2, 3, 2, 2};
  const auto x = random_values<T>(s, 71, -3.0);
  Buffer<T> xb(s), yb(s);
  xb.set(x);
  const Reference ref = reference(s, x, x, Array<T>(), Array<T>(), 1e-5);
  for (const auto variant : kVariants) {
    bnorm::BatchNorm2d<T> bn(3, {1e-5, 0.1, true, true, variant});
    const auto saved = bn.forward(xb.cview(), yb.view());
    EXPECT_EQ(saved.variant(), variant);
    EXPECT_EQ(saved.shape(), s);
    EXPECT_LE(rel_error(saved.mean(), ref.mean), tolerance<T>());
    std::vector<long double> invstd;
    for (const long double v : ref.var) invstd.push_back(1 / std::sqrt(v + 1e-5L));
    EXPECT_LE(rel_error(saved.invstd(), invstd), tolerance<T>());
  }
}

}  // namespace
}  // namespace bnorm_test
