// NCHWView: layouts, indexing, const conversion and construction checks.
#include <type_traits>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

using bnorm::NCHWView;

TEST(NCHWView, ContiguousStridesAndIndexing) {
  std::vector<float> buf(2 * 3 * 4 * 5);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i);
  const NCHWView<float> v(buf.data(), 2, 3, 4, 5);
  EXPECT_EQ(v.stride(0), 60);
  EXPECT_EQ(v.stride(1), 20);
  EXPECT_EQ(v.stride(2), 5);
  EXPECT_EQ(v.stride(3), 1);
  EXPECT_EQ(v.extent(1), 3);
  EXPECT_EQ(v.size(), 120);
  EXPECT_TRUE(v.is_contiguous());
  EXPECT_FALSE(v.is_channels_last());
  // element (n, c, h, w) of a contiguous NCHW tensor is at ((n*C + c)*H + h)*W + w
  EXPECT_EQ(v(1, 2, 3, 4), static_cast<float>(((1 * 3 + 2) * 4 + 3) * 5 + 4));
  EXPECT_EQ(&v(0, 1, 0, 0), buf.data() + 20);
}

TEST(NCHWView, ChannelsLastIsNhwcMemory) {
  const index_t N = 2, C = 3, H = 4, W = 5;
  std::vector<double> nhwc(static_cast<std::size_t>(N * C * H * W));
  for (std::size_t i = 0; i < nhwc.size(); ++i) nhwc[i] = static_cast<double>(i);
  const auto v = NCHWView<double>::channels_last(nhwc.data(), N, C, H, W);
  EXPECT_TRUE(v.is_channels_last());
  EXPECT_FALSE(v.is_contiguous());
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c)
      for (index_t h = 0; h < H; ++h)
        for (index_t w = 0; w < W; ++w)
          ASSERT_EQ(v(n, c, h, w), nhwc[static_cast<std::size_t>(((n * H + h) * W + w) * C + c)]);
}

TEST(NCHWView, ExplicitStridesAndConstConversion) {
  std::vector<int> buf(100, 0);
  NCHWView<int> v(buf.data() + 3, {1, 2, 3, 2}, {0, 40, 10, 3});
  v(0, 1, 2, 1) = 7;
  EXPECT_EQ(buf[3 + 40 + 20 + 3], 7);
  NCHWView<const int> cv = v;  // implicit, like int* -> const int*
  EXPECT_EQ(cv(0, 1, 2, 1), 7);
  EXPECT_EQ(cv.data(), v.data());
  EXPECT_EQ(cv.strides(), v.strides());
  static_assert(std::is_convertible_v<NCHWView<int>, NCHWView<const int>>);
  static_assert(!std::is_convertible_v<NCHWView<const int>, NCHWView<int>>);
}

TEST(NCHWView, EmptyViewsMayHaveNullData) {
  const NCHWView<float> v(nullptr, 0, 3, 4, 5);
  EXPECT_TRUE(v.empty());
  const NCHWView<float> w(nullptr, {2, 3, 0, 5}, {0, 0, 0, 0});
  EXPECT_EQ(w.size(), 0);
}

TEST(NCHWView, RejectsNegativeExtents) {
  float x = 0;
  EXPECT_EQ(message_of([&] { NCHWView<float>(&x, 1, -3, 1, 1); }),
            "bnorm: NCHWView extent 1 (C) must be >= 0, got -3");
  EXPECT_EQ(message_of([&] { NCHWView<float>::channels_last(&x, 1, 1, 1, -2); }),
            "bnorm: NCHWView extent 3 (W) must be >= 0, got -2");
}

TEST(NCHWView, RejectsNegativeStrides) {
  float x[4] = {};
  EXPECT_EQ(message_of([&] {
              NCHWView<float>(x + 3, {1, 1, 1, 4}, {4, 4, 4, -1});
            }),
            "bnorm: NCHWView stride 3 (W) must be >= 0, got -1");
}

TEST(NCHWView, RejectsNullDataWithElements) {
  EXPECT_EQ(message_of([] { NCHWView<double>(nullptr, 2, 3, 4, 5); }),
            "bnorm: NCHWView data is null but the view has 120 elements");
}

TEST(NCHWView, RejectsExtentProductsThatOverflow) {
  float x = 0;
  const index_t big = index_t{1} << 32;
  EXPECT_NE(message_of([&] { NCHWView<float>(&x, big, big, 1, 1); }).find("overflow"),
            std::string::npos);
  EXPECT_NE(
      message_of([&] { NCHWView<float>::channels_last(&x, 1, big, big, 1); }).find("overflow"),
      std::string::npos);
  // Extents that fit but strides whose largest offset does not.
  const index_t max = std::numeric_limits<index_t>::max();
  EXPECT_NE(message_of([&] {
              NCHWView<float>(&x, {3, 1, 1, 1}, {max / 2 + 1, 1, 1, 1});
            }).find("largest offset overflows"),
            std::string::npos);
}

}  // namespace
}  // namespace bnorm_test
