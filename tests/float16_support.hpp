// Helpers of the bfloat16 and half tests: 16-bit data, exact widening, single rounding, and
// the error in units in the last place of the 16-bit format.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace bnorm_test {

using bnorm::detail::bits_of;
using bnorm::detail::round_from_staged;
using bnorm::detail::to_compute;
using Floats = Eigen::ArrayXf;

/// The epsilon of the 16-bit tests.
inline constexpr double kEps16 = 1e-5;

using Float16Types = ::testing::Types<Eigen::bfloat16, Eigen::half>;
/// gtest's names of the typed tests: bfloat16, half.
struct Float16Names {
  template <class H>
  static std::string GetName(int) {
    return std::is_same_v<H, Eigen::bfloat16> ? "bfloat16" : "half";
  }
};

template <class H>
const char* format_name() {
  return std::is_same_v<H, Eigen::bfloat16> ? "bfloat16" : "half";
}

/// The 16-bit values in double (exactly), and doubles rounded once to H.
template <class H>
std::vector<double> widened(const std::vector<H>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<double>(to_compute(v[i]));
  return out;
}
template <class H>
std::vector<float> widened_to_float(const std::vector<H>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = to_compute(v[i]);
  return out;
}
template <class H, class D>
std::vector<H> rounded(const std::vector<D>& v) {
  std::vector<H> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = round_from_staged<H>(v[i]);
  return out;
}

/// Seeded test data in H: per-channel offsets around `offset`, N(0, 1) noise (test_support.hpp).
template <class H>
std::vector<H> random_16bit(const Shape& s, std::uint64_t seed, double offset = 0.0) {
  return rounded<H>(random_values<double>(s, seed, offset));
}

/// |got - ref| in units in the last place of H at ref, at least at 1e-3 (values under 1e-3 in
/// magnitude are measured in the ulp of 1e-3). bfloat16: 8 significant bits, half: 11 and
/// subnormals below 2^-14.
template <class H>
double ulps(H got, long double ref) {
  const bool bf16 = std::is_same_v<H, Eigen::bfloat16>;
  const int digits = bf16 ? 8 : 11, min_exponent = bf16 ? -126 : -14;
  const long double a = std::max<long double>(std::fabs(ref), 1e-3L);
  const int e = std::max(std::ilogb(static_cast<double>(a)), min_exponent);
  const long double ulp = std::ldexp(1.0L, e - (digits - 1));
  return static_cast<double>(std::fabs(static_cast<long double>(to_compute(got)) - ref) / ulp);
}
template <class H>
double max_ulps(const std::vector<H>& got, const std::vector<long double>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  double worst = 0;
  for (std::size_t i = 0; i < std::min(got.size(), ref.size()); ++i)
    worst = std::max(worst, ulps(got[i], ref[i]));
  return worst;
}

/// Indices where the bits of a and b differ (the first few), for messages.
template <class A>
std::string bit_differences(const A& a, const A& b) {
  std::string out;
  int shown = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(a.size()) && shown < 3; ++i)
    if (std::memcmp(&a[i], &b[i], sizeof a[i]) != 0) {
      out += " [" + std::to_string(i) + "]";
      ++shown;
    }
  return out.empty() ? "none" : out;
}

/// The worst errors of one test, printed once at its end (the figures of the resolution).
struct Worst {
  double y = 0, dx = 0;
  /// Expects the errors ey (of y) and edx (of dx), in ulps, within `limit`, and keeps the worst.
  void add(double ey, double edx, double limit = 1.0) {
    EXPECT_LE(ey, limit);
    EXPECT_LE(edx, limit);
    y = std::max(y, ey);
    dx = std::max(dx, edx);
  }
  void print(const char* what, const char* format) const {
    std::printf("%s %s: y within %.3f ulp, dx within %.3f ulp of float64\n", format, what, y, dx);
  }
};

/// Shapes of the 16-bit tests: 7x7 and 14x14 planes, a channel count that is not a multiple of
/// 16, and H = W = 1.
inline const Shape kShapes16[] = {{3, 5, 7, 7}, {2, 16, 14, 14}, {4, 19, 4, 4}, {5, 33, 1, 1}};

}  // namespace bnorm_test
