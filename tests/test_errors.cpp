// One test per caller mistake: the exact message, the exception type, and that outputs,
// parameters, running statistics, gradients and num_batches_tracked are exactly as before.
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

// A module that has trained one step (so state and gradients are non-trivial), with random
// data in its output buffers so an unwanted write shows.
template <class T>
struct Fixture {
  Shape s{2, 3, 4, 5};
  bnorm::BatchNorm2d<T> bn;
  Buffer<T> x{s}, y{s}, dy{s}, dx{s};
  typename bnorm::BatchNorm2d<T>::Saved saved;
  explicit Fixture(bnorm::Variant v, bool training = true) : bn(3, {1e-5, 0.1, true, true, v}) {
    x.set(random_values<T>(s, 1));
    dy.set(random_values<T>(s, 2));
    saved = bn.forward(x.cview(), y.view());
    bn.backward(saved, dy.cview(), dx.view());
    y.set(random_values<T>(s, 3));
    dx.set(random_values<T>(s, 4));
    bn.train(training);
  }
  // Runs f, expects `message`, and expects nothing changed in the module, y or dx.
  template <class F>
  void expect_rejected(const F& f, const std::string& message) {
    bnorm_test::expect_rejected<T>(bn, y, dx, f, message);
  }
};

template <class T>
class Errors : public ::testing::Test {};
TYPED_TEST_SUITE(Errors, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(Errors, ConstructorOptions) {
  using T = TypeParam;
  using BN = bnorm::BatchNorm2d<T>;
  EXPECT_EQ(message_of([] { BN(0); }), "bnorm: num_features must be > 0, got 0");
  EXPECT_EQ(message_of([] { BN(-4); }), "bnorm: num_features must be > 0, got -4");
  EXPECT_EQ(message_of([] { BN(3, {-1e-5}); }),
            "bnorm: eps must be finite and >= 0, got -1.0000000000000001e-05");
  EXPECT_EQ(message_of([] { BN(3, {std::nan("")}); }),
            "bnorm: eps must be finite and >= 0, got nan");
  EXPECT_EQ(message_of([] { BN(3, {1e-5, 1.5}); }), "bnorm: momentum must be in [0, 1], got 1.5");
  EXPECT_EQ(message_of([] {
              BN(3, {1e-5, -0.25});
            }),
            "bnorm: momentum must be in [0, 1], got -0.25");
  EXPECT_EQ(message_of([] {
              BN(3, {1e-5, std::nan("")});
            }),
            "bnorm: momentum must be in [0, 1], got nan");
}

TYPED_TEST(Errors, ChannelCountAgainstModule) {
  using T = TypeParam;
  for (const auto v : kVariants)
    for (const bool training : {true, false}) {
      Fixture<T> f(v, training);
      Buffer<T> x4({2, 4, 4, 5}), y4({2, 4, 4, 5});
      x4.set(random_values<T>({2, 4, 4, 5}, 9));
      f.expect_rejected([&] { f.bn.forward(x4.cview(), y4.view()); },
                        "bnorm: x has 4 channels, module has 3");
      f.expect_rejected([&] { f.bn.backward(f.saved, x4.cview(), y4.view()); },
                        "bnorm: dy has 4 channels, module has 3");
    }
}

TYPED_TEST(Errors, ShapeMismatches) {
  using T = TypeParam;
  for (const auto v : kVariants)
    for (const bool training : {true, false}) {
      Fixture<T> f(v, training);
      Buffer<T> other({2, 3, 4, 6});
      other.set(random_values<T>({2, 3, 4, 6}, 10));
      f.expect_rejected([&] { f.bn.forward(f.x.cview(), other.view()); },
                        "bnorm: y has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of x)");
      f.expect_rejected(
          [&] { f.bn.backward(f.saved, other.cview(), f.dx.view()); },
          "bnorm: dy has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of the forward's x)");
      f.expect_rejected(
          [&] { f.bn.backward(f.saved, f.dy.cview(), other.view()); },
          "bnorm: dx has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of dy)");
    }
}

TYPED_TEST(Errors, ResizedParametersAndBuffers) {
  using T = TypeParam;
  for (const auto v : kVariants) {
    {
      Fixture<T> f(v);
      f.bn.weight().resize(2);
      f.bn.weight().setOnes();
      f.expect_rejected([&] { f.bn.forward(f.x.cview(), f.y.view()); },
                        "bnorm: weight has 2 elements, expected 3 (num_features)");
      f.expect_rejected([&] { f.bn.backward(f.saved, f.dy.cview(), f.dx.view()); },
                        "bnorm: weight has 2 elements, expected 3 (num_features)");
    }
    {
      Fixture<T> f(v);
      f.bn.bias().resize(5);
      f.bn.bias().setZero();
      f.expect_rejected([&] { f.bn.forward(f.x.cview(), f.y.view()); },
                        "bnorm: bias has 5 elements, expected 3 (num_features)");
    }
    {
      Fixture<T> f(v);
      f.bn.running_mean().resize(0);
      f.expect_rejected([&] { f.bn.forward(f.x.cview(), f.y.view()); },
                        "bnorm: running_mean has 0 elements, expected 3 (num_features)");
    }
    {
      Fixture<T> f(v, false);
      f.bn.running_var().resize(4);
      f.bn.running_var().setOnes();
      f.expect_rejected([&] { f.bn.forward(f.x.cview(), f.y.view()); },
                        "bnorm: running_var has 4 elements, expected 3 (num_features)");
    }
  }
}

// M == N*H*W == 1 cannot be normalised with batch statistics: in training, and in eval without
// tracked statistics (PyTorch rejects both; eval with tracked statistics is fine).
TYPED_TEST(Errors, OneValuePerChannelWithBatchStatistics) {
  using T = TypeParam;
  for (const auto v : kVariants)
    for (const bool track : {true, false}) {
      bnorm::BatchNorm2d<T> bn(3, {1e-5, 0.1, true, track, v});
      Buffer<T> x({1, 3, 1, 1}), y({1, 3, 1, 1});
      x.set({1, 2, 3});
      y.set({7, 8, 9});
      const std::string msg =
          "bnorm: Expected more than 1 value per channel when training, got input of shape [1, 3, "
          "1, 1]";
      EXPECT_EQ(message_of([&] { bn.forward(x.cview(), y.view()); }), msg);
      EXPECT_EQ(y.values(), (std::vector<T>{7, 8, 9}));
      EXPECT_EQ(bn.num_batches_tracked(), 0);
      bn.eval();
      if (track) {
        bn.forward(x.cview(), y.view());  // running statistics: fine
        EXPECT_NEAR(y.values()[2], 3 / std::sqrt(1 + 1e-5), 1e-6);
      } else {
        EXPECT_EQ(message_of([&] { bn.forward(x.cview(), y.view()); }), msg);
      }
    }
}

TYPED_TEST(Errors, FreeFunctionArguments) {
  using T = TypeParam;
  const Shape s{2, 3, 2, 2};
  Buffer<T> x(s), y(s);
  x.set(random_values<T>(s, 5));
  y.set(random_values<T>(s, 6));
  const auto before = y.values();
  const Array<T> w3 = Array<T>::Ones(3), b3 = Array<T>::Zero(3), w2 = Array<T>::Ones(2);
  EXPECT_EQ(
      message_of([&] { bnorm::fused::forward_training<T>(x.cview(), w2, b3, 1e-5, y.view()); }),
      "bnorm: weight has 2 elements, expected 3 (the channels of x, or 0 for no affine transform)");
  EXPECT_EQ(
      message_of([&] { bnorm::staged::forward_training<T>(x.cview(), w3, w2, 1e-5, y.view()); }),
      "bnorm: bias has 2 elements, expected 3 (the channels of x, as weight)");
  EXPECT_EQ(
      message_of([&] { bnorm::fused::forward_training<T>(x.cview(), w3, b3, -1.0, y.view()); }),
      "bnorm: eps must be finite and >= 0, got -1");
  EXPECT_EQ(message_of([&] {
              bnorm::fused::forward_inference<T>(x.cview(), w3, b3, w2, w3, 1e-5, y.view());
            }),
            "bnorm: running_mean has 2 elements, expected 3 (the channels of x)");
  EXPECT_EQ(message_of([&] {
              bnorm::staged::forward_inference<T>(
                  x.cview(), w3, b3, w3, w3, std::numeric_limits<double>::quiet_NaN(), y.view());
            }),
            "bnorm: eps must be finite and >= 0, got nan");
  auto stats = bnorm::fused::forward_training<T>(x.cview(), w3, b3, 1e-5, y.view());
  y.set(before);
  Array<T> dw = Array<T>::Constant(3, 7), db = dw;
  stats.count = 99;
  EXPECT_EQ(message_of([&] {
              bnorm::fused::backward<T>(x.cview(), x.cview(), w3, stats, y.view(), dw, db);
            }),
            "bnorm: stats.count is 99, expected 8 (N*H*W of x)");
  EXPECT_EQ(y.values(), before);
  EXPECT_TRUE((dw == 7).all());
}

TEST(ActivationErrors, ClearMessagesAndNothingChanged) {
  const Shape s{2, 3, 4, 5};
  Buffer<float> x(s), r(s), y(s), dy(s), dx(s), dr(s), other({2, 3, 4, 6});
  x.set(random_values<float>(s, 71));
  r.set(random_values<float>(s, 72));
  dy.set(random_values<float>(s, 73));
  for (bnorm::Variant variant : kVariants) {
    SCOPED_TRACE(variant);
    bnorm::Options o;
    o.activation = bnorm::Activation::relu;
    o.variant = variant;
    bnorm::BatchNorm2d<float> bn(3, o);
    expect_rejected<float>(
        bn, y, dx, [&] { bn.forward(x.cview(), other.cview(), y.view()); },
        "bnorm: residual has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of x)");
    const auto plain = bn.forward(x.cview(), y.view());
    expect_rejected<float>(
        bn, y, dx, [&] { bn.backward(plain, dy.cview(), dx.view(), dr.view()); },
        "bnorm: dresidual given, but the forward had no residual: expected the Saved of "
        "forward(x, residual, y)");
    const auto saved = bn.forward(x.cview(), r.cview(), y.view());
    expect_rejected<float>(
        bn, y, dx, [&] { bn.backward(saved, dy.cview(), dx.view(), dx.view()); },
        "bnorm: dresidual and dx are the same view, expected two outputs that share no element");
    expect_rejected<float>(
        bn, y, dx,
        [&] {
          bn.backward(saved, dy.cview(), dx.view(),
                      bnorm::NCHWView<float>(const_cast<float*>(x.cview().data()), 2, 3, 4, 5));
        },
        "bnorm: dresidual is the forward's x or y, which backward reads: expected a view of its "
        "own");
    expect_rejected<float>(
        bn, y, dx, [&] { bn.backward(saved, dy.cview(), dx.view(), other.view()); },
        "bnorm: dresidual has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of dy)");
  }
}

}  // namespace
}  // namespace bnorm_test
