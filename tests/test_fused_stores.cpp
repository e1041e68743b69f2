// How the fused passes write their outputs: non-temporal stores through an L1 buffer or pack by
// pack, pipelined sweeps of long channels, groups of adjacent planes. Each path gives the bits
// of the others and matches plain loops. The plans are this machine's or not as the cache
// sizes say, so the tests set the sizes these shapes were chosen for (a 32 MiB L3, 1 MiB L2).
#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

// The tests ask the baseline kernels whether outputs are line-aligned (bnorm::detail::baseline).
#define BNORM_DETAIL_COMPILE_KERNELS 1
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

// In place, y over x and dx over dy, a training forward and backward give the bits y and dx of
// the same passes out of place.
void expect_in_place_same_bits(const Shape& s, Layout layout, const std::vector<float>& x,
                               const std::vector<float>& dy, const Array<float>& w,
                               const Array<float>& b, const std::vector<float>& y,
                               const std::vector<float>& dx) {
  Buffer<float> ib(s, layout), gb(s, layout);
  Array<float> dw, db;
  ib.set(x);
  const auto again = bnorm::fused::forward_training<float>(ib.cview(), w, b, 1e-5, ib.view());
  EXPECT_TRUE(ib.values() == y);
  ib.set(x);
  gb.set(dy);
  bnorm::fused::backward<float>(ib.cview(), gb.cview(), w, again, gb.view(), dw, db);
  EXPECT_TRUE(gb.values() == dx);
}

// Passes moving 32 MiB (the L3 here) and more write with non-temporal stores through an L1 buffer
// that collects a block's planes of one image as one run. On such shapes (short planes in blocks,
// long odd planes) every pass matches plain double loops over the returned statistics, and in
// place gives the same bits as out of place.
TEST(FusedStreaming, LargeOutputsMatchDoubleLoops) {
  const CacheSizesScope caches(bnorm::detail::kAssumedCacheSizes);
  const Shape shapes[] = {{64, 820, 9, 9}, {16, 300, 33, 29}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(to_string(s));
    ASSERT_GE(2 * count(s) * static_cast<index_t>(sizeof(float)), index_t{32} << 20);
    const auto x = random_values<float>(s, 41, 3.0), dy = random_values<float>(s, 42);
    const Array<float> w = random_array<float>(s[1], 43, 0.5, 1.5);
    const Array<float> b = random_array<float>(s[1], 44, -1, 1);
    Buffer<float> xb(s), yb(s), dyb(s), dxb(s);
    xb.set(x);
    dyb.set(dy);
    Array<float> dw, db;
    const auto stats = bnorm::fused::forward_training<float>(xb.cview(), w, b, 1e-5, yb.view());
    bnorm::fused::backward<float>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
    const auto y = yb.values(), dx = dxb.values();
    const index_t plane = s[2] * s[3], m = s[0] * plane;
    auto at = [&](index_t n, index_t c, index_t i) {
      return static_cast<std::size_t>((n * s[1] + c) * plane + i);
    };
    double err_y = 0, err_dx = 0, max_dx = 0;
    for (index_t c = 0; c < s[1]; ++c) {
      const double mean = stats.mean[c], invstd = stats.invstd[c];
      double sum_dy = 0, sum_dy_xhat = 0;
      for (index_t n = 0; n < s[0]; ++n)
        for (index_t i = 0; i < plane; ++i) {
          const double xhat = (x[at(n, c, i)] - mean) * invstd;
          err_y = std::max(err_y, std::abs(y[at(n, c, i)] - (xhat * w[c] + b[c])));
          sum_dy += dy[at(n, c, i)];
          sum_dy_xhat += dy[at(n, c, i)] * xhat;
        }
      for (index_t n = 0; n < s[0]; ++n)
        for (index_t i = 0; i < plane; ++i) {
          const double xhat = (x[at(n, c, i)] - mean) * invstd;
          const double ref =
              w[c] * invstd * (dy[at(n, c, i)] - sum_dy / m - xhat * sum_dy_xhat / m);
          err_dx = std::max(err_dx, std::abs(dx[at(n, c, i)] - ref));
          max_dx = std::max(max_dx, std::abs(ref));
        }
    }
    EXPECT_LE(err_y, 1e-5);
    EXPECT_LE(err_dx, 1e-5 * max_dx);

    expect_in_place_same_bits(s, Layout::nchw, x, dy, w, b, y, dx);

    // Inference with the batch statistics as running ones: the same y up to rounding.
    const Array<float> mean = stats.mean.cast<float>(), var = stats.var.cast<float>();
    bnorm::fused::forward_inference<float>(xb.cview(), w, b, mean, var, 1e-5, yb.view());
    double err_eval = 0;
    const auto ye = yb.values();
    for (std::size_t i = 0; i < y.size(); ++i)
      err_eval = std::max(err_eval, static_cast<double>(std::abs(ye[i] - y[i])));
    EXPECT_LE(err_eval, 1e-5);
  }
}

#if defined(BNORM_HAVE_PACKS)
// Every output of a training forward, backward and inference forward.
struct StreamedOutputs {
  std::vector<float> y, dx, y_eval;
  Eigen::ArrayXd mean, var;
  Array<float> dw, db;
  bool operator==(const StreamedOutputs& o) const {
    return y == o.y && dx == o.dx && y_eval == o.y_eval && (mean == o.mean).all() &&
           (var == o.var).all() && (dw == o.dw).all() && (db == o.db).all();
  }
};

// Where the outputs go: their own tensors, over the inputs (y over x, dx over dy), or dx over x.
enum class Place { apart, over_inputs, dx_over_x };

// The passes on x and dy with every tensor `offset` floats past a 64-byte boundary.
StreamedOutputs run_streamed(const Shape& s, bool channels_last, std::size_t offset, Place place,
                             const std::vector<float>& x, const std::vector<float>& dy,
                             const Array<float>& w, const Array<float>& b) {
  const std::size_t size = static_cast<std::size_t>(count(s));
  const std::size_t stride = (size + 32) / 16 * 16;
  std::vector<float> storage(4 * stride + 16);
  float* base = storage.data();
  base += (64 - reinterpret_cast<std::uintptr_t>(base) % 64) % 64 / sizeof(float) + offset;
  float *px = base, *py = base + stride, *pdy = base + 2 * stride, *pdx = base + 3 * stride;
  if (place == Place::over_inputs) {
    py = px;
    pdx = pdy;
  }
  if (place == Place::dx_over_x) pdx = px;
  auto view = [&](auto* p) {
    using V = bnorm::NCHWView<std::remove_pointer_t<decltype(p)>>;
    return channels_last ? V::channels_last(p, s[0], s[1], s[2], s[3])
                         : V(p, s[0], s[1], s[2], s[3]);
  };
  const auto xv = view(static_cast<const float*>(px)), dyv = view(static_cast<const float*>(pdy));
  const auto yv = view(py), dxv = view(pdx);
  EXPECT_EQ(channels_last ? bnorm::detail::baseline::pixel_lines_aligned(yv, 0, s[1])
                          : bnorm::detail::baseline::lines_aligned(
                                bnorm::detail::baseline::Planes<float>(yv)),
            offset == 0);
  StreamedOutputs o;
  std::copy(x.begin(), x.end(), px);
  const auto stats = bnorm::fused::forward_training<float>(xv, w, b, 1e-5, yv);
  o.y.assign(py, py + size);
  o.mean = stats.mean;
  o.var = stats.var;
  std::copy(x.begin(), x.end(), px);  // in place, y took x's place
  std::copy(dy.begin(), dy.end(), pdy);
  bnorm::fused::backward<float>(xv, dyv, w, stats, dxv, o.dw, o.db);
  o.dx.assign(pdx, pdx + size);
  std::copy(x.begin(), x.end(), px);  // dx may have taken x's place
  const Array<float> mean = stats.mean.cast<float>(), var = stats.var.cast<float>();
  bnorm::fused::forward_inference<float>(xv, w, b, mean, var, 1e-5, yv);
  o.y_eval.assign(py, py + size);
  return o;
}

// Streamed outputs whose packs are whole cache lines are streamed pack by pack; others go
// through an L1 buffer (NCHW) or regular stores (channels-last). The same tensors at a 64-byte
// boundary and 16 bytes past one give the same bits in every pass.
void expect_aligned_streaming_matches_unaligned(bool channels_last) {
  const Shape s{8, 64, 96, 96};
  ASSERT_GE(2 * count(s) * index_t{sizeof(float)}, index_t{32} << 20);  // the passes stream
  const auto x = random_values<float>(s, 45, 2.0), dy = random_values<float>(s, 46);
  const Array<float> w = random_array<float>(s[1], 47, 0.5, 1.5);
  const Array<float> b = random_array<float>(s[1], 48, -1, 1);
  EXPECT_TRUE(run_streamed(s, channels_last, 0, Place::apart, x, dy, w, b) ==
              run_streamed(s, channels_last, 4, Place::apart, x, dy, w, b));
}

TEST(FusedStreaming, LineAlignedPlanesMatchTheBufferedPath) {
  const CacheSizesScope caches(bnorm::detail::kAssumedCacheSizes);
  expect_aligned_streaming_matches_unaligned(false);
}

TEST(FusedStreaming, LineAlignedPixelsMatchRegularStores) {
  const CacheSizesScope caches(bnorm::detail::kAssumedCacheSizes);
  expect_aligned_streaming_matches_unaligned(true);
}

// Streamed NCHW passes over channels of more than a megabyte run pipelined when their output
// planes are whole cache lines: each channel's reduction shares its sweeps with the previous
// channel's map (sweep_blocks). They give the bits of the unpipelined passes (the same tensors
// 16 bytes past a line), with 1, 2 and 3 threads (which pair different channels; with 2
// channels and 2 threads, each thread has a single channel) and in place.
TEST(FusedStreaming, PipelinedSweepsMatchUnpipelined) {
  const CacheSizesScope caches(bnorm::detail::kAssumedCacheSizes);
  const Shape shapes[] = {{4, 12, 320, 320}, {3, 8, 400, 464}, {16, 2, 400, 400}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(to_string(s));
    const auto x = random_values<float>(s, 55, 3.0), dy = random_values<float>(s, 56);
    const bnorm::detail::baseline::Plan plan(
        bnorm::NCHWView<const float>(x.data(), s[0], s[1], s[2], s[3]), sizeof(float));
    ASSERT_TRUE(plan.pipelined);
    const Array<float> w = random_array<float>(s[1], 57, 0.5, 1.5);
    const Array<float> b = random_array<float>(s[1], 58, -1, 1);
    const StreamedOutputs unpipelined = run_streamed(s, false, 4, Place::apart, x, dy, w, b);
#if defined(_OPENMP)
    const int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 3; ++threads) {
      SCOPED_TRACE(threads);
      omp_set_num_threads(threads);
#endif
      for (Place place : {Place::apart, Place::over_inputs, Place::dx_over_x})
        EXPECT_TRUE(run_streamed(s, false, 0, place, x, dy, w, b) == unpipelined)
            << "place " << static_cast<int>(place);
#if defined(_OPENMP)
    }
    omp_set_num_threads(saved);
#endif
  }
}
#endif

// Planes of one image adjacent in memory (dense NCHW) against the same planes apart (3 spare
// values after each): with AVX-512 the dense ones go through runs of 16 planes whose packs span
// plane boundaries (map_plane_groups), the apart ones plane by plane; with the remainder of
// channels past the last group of 16 and a shape whose passes stream, all give the same bits.
TEST(FusedPlaneGroups, AdjacentPlanesMatchPlanesApart) {
  const CacheSizesScope caches(bnorm::detail::kAssumedCacheSizes);
  const Shape shapes[] = {{3, 40, 7, 7}, {2, 37, 14, 14}, {64, 1400, 7, 7}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(to_string(s));
    const index_t len = s[2] * s[3], gap = 3, size = count(s);
    const auto x = random_values<float>(s, 51, 4.0), dy = random_values<float>(s, 52);
    const Array<float> w = random_array<float>(s[1], 53, 0.5, 1.5);
    const Array<float> b = random_array<float>(s[1], 54, -1, 1);
    struct Out {
      std::vector<float> y, dx, y_eval;
    };
    auto run = [&](index_t apart) {
      const index_t plane = len + apart, image = s[1] * plane;
      std::vector<float> xs(static_cast<std::size_t>(s[0] * image)), ys(xs.size()), dys(xs.size()),
          dxs(xs.size());
      const std::array<index_t, 4> strides{image, plane, s[3], 1};
      const bnorm::NCHWView<float> xv(xs.data(), s, strides), yv(ys.data(), s, strides),
          dyv(dys.data(), s, strides), dxv(dxs.data(), s, strides);
      std::size_t i = 0;
      for (index_t n = 0; n < s[0]; ++n)
        for (index_t c = 0; c < s[1]; ++c)
          for (index_t h = 0; h < s[2]; ++h)
            for (index_t v = 0; v < s[3]; ++v, ++i) {
              xv(n, c, h, v) = x[i];
              dyv(n, c, h, v) = dy[i];
            }
      Array<float> dw, db;
      const auto stats = bnorm::fused::forward_training<float>(xv, w, b, 1e-5, yv);
      bnorm::fused::backward<float>(xv, dyv, w, stats, dxv, dw, db);
      const auto values = [&](const bnorm::NCHWView<float>& v) {
        std::vector<float> out;
        out.reserve(static_cast<std::size_t>(size));
        for (index_t n = 0; n < s[0]; ++n)
          for (index_t c = 0; c < s[1]; ++c)
            for (index_t h = 0; h < s[2]; ++h)
              for (index_t q = 0; q < s[3]; ++q) out.push_back(v(n, c, h, q));
        return out;
      };
      Out o{values(yv), values(dxv), {}};
      const Array<float> mean = stats.mean.cast<float>(), var = stats.var.cast<float>();
      bnorm::fused::forward_inference<float>(xv, w, b, mean, var, 1e-5, yv);
      o.y_eval = values(yv);
      return o;
    };
    const Out adjacent = run(0), apart = run(gap);
    EXPECT_TRUE(adjacent.y == apart.y);
    EXPECT_TRUE(adjacent.dx == apart.dx);
    EXPECT_TRUE(adjacent.y_eval == apart.y_eval);
  }
}

// Channels-last tensors of over a thousand channels and (N, C) matrices of as many: a pixel's
// channels outgrow L1, and the last group of 16 overlaps the one before when C is not a multiple
// of 16. Every pass matches long-double loops, in place gives the same bits as out of place, and
// nothing outside the views is written (the strided layout: the row loops, for comparison).
TEST(FusedWideChannels, PixelsMatchLongDoubleLoops) {
  const Shape shapes[] = {{37, 1030, 1, 1}, {24, 1024, 1, 1}, {3, 1030, 3, 5}, {2, 2056, 2, 2}};
  for (const Shape& s : shapes)
    for (const Layout layout : {Layout::channels_last, Layout::strided}) {
      SCOPED_TRACE(to_string(s) + " " + name(layout));
      const auto x = random_values<float>(s, 61, 2.0), dy = random_values<float>(s, 62);
      const Array<float> w = random_array<float>(s[1], 63, 0.5, 1.5);
      const Array<float> b = random_array<float>(s[1], 64, -1, 1);
      const Reference r = reference(s, x, dy, w, b, 1e-5);
      Buffer<float> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
      xb.set(x);
      dyb.set(dy);
      Array<float> dw, db;
      const auto stats = bnorm::fused::forward_training<float>(xb.cview(), w, b, 1e-5, yb.view());
      bnorm::fused::backward<float>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
      const auto y = yb.values(), dx = dxb.values();
      long double err_y = 0, err_dx = 0, max_dx = 0;
      for (std::size_t i = 0; i < y.size(); ++i) {
        err_y = std::max(err_y, std::abs(y[i] - r.y[i]));
        err_dx = std::max(err_dx, std::abs(dx[i] - r.dx[i]));
        max_dx = std::max(max_dx, std::abs(r.dx[i]));
      }
      EXPECT_LE(err_y, 1e-5L);
      EXPECT_LE(err_dx, 1e-5L * max_dx);
      EXPECT_EQ(yb.padding_changed(), 0);
      EXPECT_EQ(dxb.padding_changed(), 0);

      expect_in_place_same_bits(s, layout, x, dy, w, b, y, dx);

      // Inference with the batch statistics as running ones: y again up to rounding.
      const Array<float> mean = stats.mean.cast<float>(), var = stats.var.cast<float>();
      bnorm::fused::forward_inference<float>(xb.cview(), w, b, mean, var, 1e-5, yb.view());
      const auto ye = yb.values();
      long double err_eval = 0;
      for (std::size_t i = 0; i < ye.size(); ++i)
        err_eval = std::max(err_eval, std::abs(ye[i] - r.y[i]));
      EXPECT_LE(err_eval, 1e-5L);
    }
}

}  // namespace
}  // namespace bnorm_test
