// The fused free functions: properties of the closed form, statistics, and the seed
// notebook's dout = ones check kept as a property (it cannot tell right from wrong otherwise).
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

// Some tests call the baseline kernels themselves (bnorm::detail::baseline): this unit
// includes them, unlike the others of the suite (BNORM_EXTERN_TEMPLATES, detail/dispatch.hpp).
#define BNORM_DETAIL_COMPILE_KERNELS 1
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
class Fused : public ::testing::Test {};
TYPED_TEST_SUITE(Fused, FloatTypes, );  // the empty argument: -Wpedantic

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

template <class T>
struct Step {
  bnorm::fused::BatchStatistics stats;
  std::vector<T> y, dx;
  Array<T> dweight, dbias;
};

template <class T>
Step<T> train_step(const Shape& s, const std::vector<T>& x, const std::vector<T>& dy,
                   const Array<T>& w, const Array<T>& b) {
  Buffer<T> xb(s), yb(s), dyb(s), dxb(s);
  xb.set(x);
  dyb.set(dy);
  Step<T> r;
  r.stats = bnorm::fused::forward_training(xb.cview(), w, b, 1e-5, yb.view());
  bnorm::fused::backward(xb.cview(), dyb.cview(), w, r.stats, dxb.view(), r.dweight, r.dbias);
  r.y = yb.values();
  r.dx = dxb.values();
  return r;
}

TYPED_TEST(Fused, StatisticsMatchTheReference) {
  using T = TypeParam;
  const Shape s{3, 4, 5, 7};
  const auto x = random_values<T>(s, 7, 10.0, 3.0), dy = random_values<T>(s, 8);
  const Array<T> w = random_array<T>(s[1], 9, 0.5, 1.5), b = random_array<T>(s[1], 10, -1, 1);
  const auto r = train_step(s, x, dy, w, b);
  const Reference ref = reference(s, x, dy, w, b, 1e-5);
  EXPECT_EQ(r.stats.count, s[0] * s[2] * s[3]);
  // Statistics are accumulated in double from T inputs: close to the long double reference.
  EXPECT_LE(rel_error(r.stats.mean, ref.mean), 1e-14);
  EXPECT_LE(rel_error(r.stats.var, ref.var), 1e-13);
  for (index_t c = 0; c < s[1]; ++c)
    EXPECT_NEAR(r.stats.invstd[c],
                1 / std::sqrt(static_cast<double>(ref.var[static_cast<std::size_t>(c)]) + 1e-5),
                1e-13);
}

// The one-pass statistics shift each channel by the mean of a chunk's first 16 values. When
// those sit far from the channel's mean the shifted sums would cancel, so the kernel redoes the
// channel with two passes: bit for bit the two-pass result. Channel 1's first 16 values are 1e4
// away from the rest (a cancellation factor of 18 or more, over the limit of 16); the other
// channels are ordinary and stay on the one-pass path. All match the long-double reference.
// `shifted` runs the one-pass kernel of the layout over all channels and images.
template <class T, class F>
void expect_fallback_to_two_passes(const Shape& s, Layout layout, const F& shifted_moments) {
  const auto channels = static_cast<std::size_t>(s[1]);
  auto x = random_values<T>(s, 31);
  const index_t plane = s[2] * s[3];
  for (index_t i = 0; i < 16; ++i) x[static_cast<std::size_t>(plane + i)] += static_cast<T>(1e4);
  Buffer<T> xb(s, layout);
  xb.set(x);
  std::vector<bnorm::detail::baseline::Moments> shifted(channels), two_pass(channels);
  shifted_moments(xb.cview(), shifted.data());
  bnorm::detail::baseline::two_pass_moments<T>(xb.cview(), 0, s[1], 0, s[0], two_pass.data());
  EXPECT_EQ(shifted[1].mean, two_pass[1].mean);
  EXPECT_EQ(shifted[1].m2, two_pass[1].m2);
  const Array<T> w = Array<T>::Ones(s[1]), b = Array<T>::Zero(s[1]);
  const Reference ref = reference(s, x, x, w, b, 1e-5);
  for (std::size_t c = 0; c < channels; ++c) {
    const double n = shifted[c].count;
    EXPECT_EQ(n, static_cast<double>(s[0] * plane));
    const auto mean = static_cast<double>(ref.mean[c]), var = static_cast<double>(ref.var[c]);
    EXPECT_LE(std::abs(shifted[c].mean - mean), 1e-14 * (std::abs(mean) + std::sqrt(var)))
        << "channel " << c;
    EXPECT_LE(std::abs(shifted[c].m2 / n - var), 1e-13 * var) << "channel " << c;
  }
}

// NCHW planes of at least 16 values.
TYPED_TEST(Fused, ShiftedStatisticsFallBackToTwoPasses) {
  using T = TypeParam;
  const Shape s{32, 3, 6, 6};
  expect_fallback_to_two_passes<T>(s, Layout::nchw, [&](const auto& x, auto* out) {
    bnorm::detail::baseline::chunk_moments<T>(x, 0, s[1], 0, s[0], out);
  });
}

// Channels-last with at least 16 channels, vectorised along C.
TYPED_TEST(Fused, ChannelsLastShiftedStatisticsFallBackToTwoPasses) {
  using T = TypeParam;
  const Shape s{8, 20, 6, 6};
  expect_fallback_to_two_passes<T>(s, Layout::channels_last, [&](const auto& x, auto* out) {
    ASSERT_TRUE(bnorm::detail::baseline::by_pixels(x));
    bnorm::detail::baseline::pixel_moments<T>(x, bnorm::detail::baseline::Plan(x, sizeof(T)), out);
  });
}

// In training, per channel: sum dx = 0, and sum dx * xhat = k * eps / (var + eps) * sum dy * xhat
// with k = weight * invstd (it would be 0 but for eps, since sum xhat^2 = M * var / (var + eps)).
TYPED_TEST(Fused, TrainingGradientSumsPerChannel) {
  using T = TypeParam;
  const Shape s{4, 6, 3, 5};
  const double eps = 1e-5;
  const auto x = random_values<T>(s, 11, 1.0, 2.0), dy = random_values<T>(s, 12);
  const Array<T> w = random_array<T>(s[1], 13, 0.5, 1.5), b = random_array<T>(s[1], 14, -1, 1);
  const auto r = train_step(s, x, dy, w, b);
  const index_t plane = s[2] * s[3];
  for (index_t c = 0; c < s[1]; ++c) {
    double sum = 0, sum_xhat = 0, sum_dy_xhat = 0, scale = 0;
    for (index_t n = 0; n < s[0]; ++n)
      for (index_t i = 0; i < plane; ++i) {
        const auto k = static_cast<std::size_t>((n * s[1] + c) * plane + i);
        const double xhat = (static_cast<double>(x[k]) - r.stats.mean[c]) * r.stats.invstd[c];
        sum += r.dx[k];
        sum_xhat += r.dx[k] * xhat;
        sum_dy_xhat += dy[k] * xhat;
        scale += std::abs(static_cast<double>(r.dx[k]));
      }
    ASSERT_GT(scale, 0);
    const double var = r.stats.var[c];
    const double expected = w[c] * r.stats.invstd[c] * eps / (var + eps) * sum_dy_xhat;
    EXPECT_LE(std::abs(sum) / scale, 1e3 * std::numeric_limits<T>::epsilon()) << "channel " << c;
    EXPECT_LE(std::abs(sum_xhat - expected) / scale, 1e3 * std::numeric_limits<T>::epsilon())
        << "channel " << c;
  }
}

// The seed notebook's check, dout = ones: analytically dx = 0 and dweight = 0, dbias = M.
TYPED_TEST(Fused, OnesUpstreamGivesZeroInputGradient) {
  using T = TypeParam;
  const Shape s{2, 3, 2, 5};
  const auto x = random_values<T>(s, 15, 4.0);
  const std::vector<T> ones(x.size(), T(1));
  const Array<T> w = random_array<T>(s[1], 16, 0.5, 1.5), b = random_array<T>(s[1], 17, -1, 1);
  const auto r = train_step(s, x, ones, w, b);
  const double eps = 64 * std::numeric_limits<T>::epsilon();
  for (const T v : r.dx) EXPECT_LE(std::abs(static_cast<double>(v)), eps);
  for (index_t c = 0; c < s[1]; ++c) {
    EXPECT_LE(std::abs(static_cast<double>(r.dweight[c])), 20 * eps);
    EXPECT_EQ(r.dbias[c], static_cast<T>(s[0] * s[2] * s[3]));
  }
}

TYPED_TEST(Fused, OutputHasZeroMeanAndUnitVarianceBeforeAffine) {
  using T = TypeParam;
  const Shape s{3, 5, 4, 3};
  const auto x = random_values<T>(s, 18, -7.0, 5.0);
  const auto r = train_step(s, x, x, Array<T>(), Array<T>());  // affine = false
  EXPECT_EQ(r.dweight.size(), 0);
  EXPECT_EQ(r.dbias.size(), 0);
  const index_t plane = s[2] * s[3], m = s[0] * plane;
  for (index_t c = 0; c < s[1]; ++c) {
    double sum = 0, sq = 0;
    for (index_t n = 0; n < s[0]; ++n)
      for (index_t i = 0; i < plane; ++i) {
        const double y = r.y[static_cast<std::size_t>((n * s[1] + c) * plane + i)];
        sum += y;
        sq += y * y;
      }
    EXPECT_NEAR(sum / m, 0.0, 1e2 * std::numeric_limits<T>::epsilon());
    // var / (var + eps) of the unit-scale data, not exactly 1 because of eps
    EXPECT_NEAR(sq / m, r.stats.var[c] / (r.stats.var[c] + 1e-5),
                1e2 * std::numeric_limits<T>::epsilon());
  }
}

TYPED_TEST(Fused, EmptyBatchWritesNothingAndGivesZeroGradients) {
  using T = TypeParam;
  Array<T> w = Array<T>::Ones(3), b = Array<T>::Zero(3), dw, db;
  const bnorm::NCHWView<T> empty(nullptr, 0, 3, 4, 5);
  const auto stats = bnorm::fused::forward_training<T>(empty, w, b, 1e-5, empty);
  EXPECT_EQ(stats.count, 0);
  bnorm::fused::backward<T>(empty, empty, w, stats, empty, dw, db);
  EXPECT_TRUE((dw == 0).all());
  EXPECT_TRUE((db == 0).all());
  EXPECT_EQ(dw.size(), 3);
}

TYPED_TEST(Fused, NanAndInfPropagateWithoutCrashing) {
  using T = TypeParam;
  const Shape s{2, 2, 3, 3};
  auto x = random_values<T>(s, 19);
  x[0] = std::numeric_limits<T>::quiet_NaN();     // channel 0
  x[9 + 1] = std::numeric_limits<T>::infinity();  // channel 1
  const auto dy = random_values<T>(s, 20);
  const auto r = train_step<T>(s, x, dy, Array<T>::Ones(2), Array<T>::Zero(2));
  EXPECT_TRUE(std::isnan(r.stats.mean[0]));
  EXPECT_TRUE(std::isnan(static_cast<double>(r.y[1])));
  EXPECT_TRUE(std::isnan(static_cast<double>(r.dx[1])));
  EXPECT_FALSE(std::isfinite(r.stats.mean[1]));
}

}  // namespace
}  // namespace bnorm_test
