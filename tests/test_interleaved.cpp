// Channels-last tensors with fewer than 16 channels (C = 3 as for an input layer), or a count
// that packs of 16 fit badly (C = 24), go through the interleaved pack path
// (detail/per_isa/interleaved.hpp): each image one run of values whose channel is the index mod C.
// Here: which views take it, and every pass on it against the long-double reference, with and
// without a tail of values after the whole periods, in place, and against the row loops of a
// strided view of the same values.
#define BNORM_DETAIL_COMPILE_KERNELS 1  // the predicate is the kernels' own (detail::baseline)
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

// C from 2 to 15: images of whole periods (2x8x4x4: 128 values, 8 periods of 16) and with a
// tail (3x7x2x9: one period of 112 and 14 values; 1x15x6x5: one of 240 and 210 values);
// 4x9x2x2 holds 36 values an image, under one period (144), and keeps the row loops. C = 24 and
// 20 waste a third and a half of the pixel kernels' lanes and take the periods too (48 and 80
// values); C = 40 wastes a fifth and C = 32 none: they keep the pixel kernels.
struct Case {
  Shape shape;
  bool interleaved;
};
const Case kCases[] = {{{2, 3, 28, 28}, true},  {{2, 8, 4, 4}, true},   {{3, 7, 2, 9}, true},
                       {{1, 15, 6, 5}, true},   {{5, 5, 9, 7}, true},   {{4, 6, 3, 11}, true},
                       {{2, 12, 10, 10}, true}, {{4, 9, 2, 2}, false},  {{3, 24, 5, 7}, true},
                       {{2, 20, 3, 3}, true},   {{2, 40, 6, 6}, false}, {{2, 32, 4, 5}, false}};

template <class T>
class Interleaved : public ::testing::Test {};
TYPED_TEST_SUITE(Interleaved, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(Interleaved, TakesThePeriodsWhereTheyPay) {
  using T = TypeParam;
  for (const Case& k : kCases) {
    const Shape& s = k.shape;
    const Buffer<T> cl(s, Layout::channels_last), nchw(s, Layout::nchw),
        strided(s, Layout::strided);
    EXPECT_EQ(bnorm::detail::baseline::interleaved(cl.cview()), k.interleaved) << to_string(s);
    EXPECT_FALSE(bnorm::detail::baseline::interleaved(nchw.cview())) << to_string(s);
    EXPECT_FALSE(bnorm::detail::baseline::interleaved(strided.cview())) << to_string(s);
  }
  EXPECT_EQ(bnorm::detail::baseline::Interleave(3, 1).period, 48);
  EXPECT_EQ(bnorm::detail::baseline::Interleave(12, 1).period, 48);
  EXPECT_EQ(bnorm::detail::baseline::Interleave(8, 1).period, 16);
  EXPECT_EQ(bnorm::detail::baseline::Interleave(24, 1).period, 48);
}

TYPED_TEST(Interleaved, EveryPassMatchesTheReference) {
  using T = TypeParam;
  std::uint64_t seed = 3000;
  for (const Case& k : kCases) {
    const Shape& s = k.shape;
    SCOPED_TRACE(to_string(s));
    const auto x = random_values<T>(s, ++seed, 50.0, 2.0), dy = random_values<T>(s, ++seed);
    const Array<T> w = random_array<T>(s[1], ++seed, 0.5, 1.5),
                   b = random_array<T>(s[1], ++seed, -1, 1),
                   rm = random_array<T>(s[1], ++seed, 49, 51),
                   rv = random_array<T>(s[1], ++seed, 2, 6);
    const Reference ref = reference(s, x, dy, w, b, 1e-5);
    Buffer<T> xb(s, Layout::channels_last), yb(s, Layout::channels_last),
        dyb(s, Layout::channels_last), dxb(s, Layout::channels_last);
    xb.set(x);
    dyb.set(dy);
    Array<T> dw, db;
    const auto stats = bnorm::fused::forward_training<T>(xb.cview(), w, b, 1e-5, yb.view());
    bnorm::fused::backward<T>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
    EXPECT_LE(rel_error(stats.mean, ref.mean), 1e-14);
    EXPECT_LE(rel_error(stats.var, ref.var), 1e-13);
    EXPECT_LE(rel_error(yb.values(), ref.y), tolerance<T>());
    EXPECT_LE(rel_error(dxb.values(), ref.dx), tolerance<T>());
    EXPECT_LE(rel_error(dw, ref.dweight), tolerance<T>());
    EXPECT_LE(rel_error(db, ref.dbias), tolerance<T>());

    // Inference and eval backward against the same passes over a strided view of the same
    // values, which runs the row loops (a different code path, the same formulas).
    Buffer<T> xs(s, Layout::strided), ys(s, Layout::strided), dys(s, Layout::strided),
        dxs(s, Layout::strided);
    xs.set(x);
    dys.set(dy);
    bnorm::fused::forward_inference<T>(xb.cview(), w, b, rm, rv, 1e-5, yb.view());
    bnorm::fused::forward_inference<T>(xs.cview(), w, b, rm, rv, 1e-5, ys.view());
    EXPECT_LE(rel_error(yb.values(), ys.values()), tolerance<T>());
    Array<T> dws, dbs;
    bnorm::fused::backward_inference<T>(xb.cview(), dyb.cview(), w, rm, rv, 1e-5, dxb.view(), dw,
                                        db);
    bnorm::fused::backward_inference<T>(xs.cview(), dys.cview(), w, rm, rv, 1e-5, dxs.view(), dws,
                                        dbs);
    EXPECT_LE(rel_error(dxb.values(), dxs.values()), tolerance<T>());
    EXPECT_LE(rel_error(dw, dws), tolerance<T>());
    EXPECT_LE(rel_error(db, dbs), tolerance<T>());

    // In place (y over x): the same bits as out of place.
    const std::vector<T> out_of_place = yb.values();
    bnorm::fused::forward_inference<T>(xb.cview(), w, b, rm, rv, 1e-5, xb.view());
    EXPECT_TRUE(same_bits(xb.values(), out_of_place));
  }
}

// Images apart in memory (a gap of 5 values after each, left untouched) are interleaved too: each
// image's run starts at its own stride. The training step against the dense view of the same
// values, bit for bit (the same walk over each image), and the gaps unchanged.
TYPED_TEST(Interleaved, ImagesApartGiveTheDenseBits) {
  using T = TypeParam;
  const Shape s{3, 5, 7, 6};
  const index_t run = s[1] * s[2] * s[3], gap = 5;
  const auto x = random_values<T>(s, 4000, 3.0, 2.0), dy = random_values<T>(s, 4001);
  const Array<T> w = random_array<T>(s[1], 4002, 0.5, 1.5), b = random_array<T>(s[1], 4003, -1, 1);
  const T sentinel = static_cast<T>(-7.5);
  std::vector<T> xa(static_cast<std::size_t>(s[0] * (run + gap)), sentinel), ya(xa), dya(xa),
      dxa(xa);
  const auto apart = [&](std::vector<T>& v) {
    return bnorm::NCHWView<T>(v.data(), {s[0], s[1], s[2], s[3]},
                              {run + gap, 1, s[3] * s[1], s[1]});
  };
  Buffer<T> xb(s, Layout::channels_last), yb(s, Layout::channels_last),
      dyb(s, Layout::channels_last), dxb(s, Layout::channels_last);
  xb.set(x);
  dyb.set(dy);
  for (index_t n = 0; n < s[0]; ++n)
    for (index_t c = 0; c < s[1]; ++c)
      for (index_t h = 0; h < s[2]; ++h)
        for (index_t v = 0; v < s[3]; ++v) {
          apart(xa)(n, c, h, v) = xb.view()(n, c, h, v);
          apart(dya)(n, c, h, v) = dyb.view()(n, c, h, v);
        }
  ASSERT_TRUE(bnorm::detail::baseline::interleaved(apart(xa)));
  Array<T> dw, db, dwa, dba;
  const auto st = bnorm::fused::forward_training<T>(xb.cview(), w, b, 1e-5, yb.view());
  bnorm::fused::backward<T>(xb.cview(), dyb.cview(), w, st, dxb.view(), dw, db);
  const auto sta = bnorm::fused::forward_training<T>(apart(xa), w, b, 1e-5, apart(ya));
  bnorm::fused::backward<T>(apart(xa), apart(dya), w, sta, apart(dxa), dwa, dba);
  std::vector<T> y_apart, dx_apart;
  for (index_t n = 0; n < s[0]; ++n)
    for (index_t c = 0; c < s[1]; ++c)
      for (index_t h = 0; h < s[2]; ++h)
        for (index_t v = 0; v < s[3]; ++v) {
          y_apart.push_back(apart(ya)(n, c, h, v));
          dx_apart.push_back(apart(dxa)(n, c, h, v));
        }
  EXPECT_TRUE(same_bits(y_apart, yb.values()));
  EXPECT_TRUE(same_bits(dx_apart, dxb.values()));
  EXPECT_TRUE(same_bits(std::vector<T>(dwa.data(), dwa.data() + dwa.size()),
                        std::vector<T>(dw.data(), dw.data() + dw.size())));
  for (index_t n = 0; n < s[0]; ++n)
    for (index_t i = run; i < run + gap; ++i) {
      EXPECT_EQ(ya[static_cast<std::size_t>(n * (run + gap) + i)], sentinel);
      EXPECT_EQ(dxa[static_cast<std::size_t>(n * (run + gap) + i)], sentinel);
    }
}

}  // namespace
}  // namespace bnorm_test
