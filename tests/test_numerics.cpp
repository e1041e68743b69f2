// Numerics of the fused variant: float32 against the long-double reference for inputs with a
// mean far larger than their spread, and bitwise identical results for any thread count.
#include <cstring>

#include "repro_cases.hpp"
#include "test_support.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

// N(0, 1) + offset in float32: max |y - y_ref| <= 2e-6 and max |dx - dx_ref| <= 2e-6 max |dy|,
// the reference computed in long double from the same float inputs. PyTorch 1.13's
// x * alpha + beta form reaches 9e-4 at offset 1e4 and 6e-2 at 1e6 (DESIGN.md).
TEST(Accuracy, Float32AgainstLongDoubleWithLargeOffsets) {
  const Shape shapes[] = {{8, 16, 14, 14}, {4, 3, 56, 56}, {32, 64, 7, 7}, {2, 2, 200, 200}};
  for (const double offset : {0.0, 1e2, 1e4, 1e6})
    for (const Shape& s : shapes)
      for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
        SCOPED_TRACE(::testing::Message()
                     << "offset " << offset << " " << to_string(s) << " " << name(layout));
        const auto x = random_values<float>(s, 7, offset);
        const auto dy = random_values<float>(s, 8);
        const Array<float> w = random_array<float>(s[1], 9, 0.5, 1.5);
        const Array<float> b = random_array<float>(s[1], 10, -1, 1);
        Buffer<float> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
        xb.set(x);
        dyb.set(dy);
        Array<float> dw, db;
        const auto stats = bnorm::fused::forward_training<float>(xb.cview(), w, b, 1e-5, yb.view());
        bnorm::fused::backward<float>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
        const Reference ref = reference(s, x, dy, w, b, 1e-5);
        double err_y = 0, err_dx = 0, max_dy = 0;
        const auto y = yb.values(), dx = dxb.values();
        for (std::size_t i = 0; i < x.size(); ++i) {
          err_y = std::max(err_y, static_cast<double>(std::abs(y[i] - ref.y[i])));
          err_dx = std::max(err_dx, static_cast<double>(std::abs(dx[i] - ref.dx[i])));
          max_dy = std::max(max_dy, static_cast<double>(std::abs(dy[i])));
        }
        EXPECT_LE(err_y, 2e-6);
        EXPECT_LE(err_dx, 2e-6 * max_dy);
        if (layout == Layout::nchw && s == shapes[0])
          std::printf(
              "[ float32 offset %.0e: max |y - ref| %.3g, max |dx - ref| / max |dy| %.3g ]\n",
              offset, err_y, err_dx / max_dy);
      }
}

// Float data whose sums, squares or products would overflow float (values near FLT_MAX,
// deviations whose squares exceed it, dy * (x - mean) near it) and tiny spreads: every term is
// accumulated in double, so both layouts still match the long-double reference.
TEST(Accuracy, Float32ExtremeMagnitudes) {
  struct Case {
    double offset, scale, dy_scale;
    bool check_dx;
  };
  // dx is not checked for spreads of 3e19: its x term's factor, about w |dy| / (var sqrt(M)),
  // underflows float there (a known limit, docs/numerics.md).
  const Case cases[] = {{1e38, 1.0, 1.0, true},   // sums of x overflow float
                        {0.0, 3e19, 1.0, false},  // (x - mean)^2 overflows float
                        {0.0, 1e10, 1e28, true},  // dy * (x - mean) ~ 1e38
                        {1.0, 1e-12, 1.0, true}};
  const Shape shapes[] = {{8, 3, 14, 14}, {2, 2, 60, 60}};
  for (const Case& k : cases)
    for (const Shape& s : shapes)
      for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
        SCOPED_TRACE(::testing::Message()
                     << "offset " << k.offset << " scale " << k.scale << " dy scale " << k.dy_scale
                     << " " << to_string(s) << " " << name(layout));
        const auto x = random_values<float>(s, 21, k.offset, k.scale);
        const auto dy = random_values<float>(s, 22, 0.0, k.dy_scale);
        const Array<float> w = random_array<float>(s[1], 23, 0.5, 1.5);
        const Array<float> b = random_array<float>(s[1], 24, -1, 1);
        Buffer<float> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
        xb.set(x);
        dyb.set(dy);
        Array<float> dw, db;
        const double eps = 1e-5 * k.scale * k.scale;  // eps in proportion to the variance
        const auto stats = bnorm::fused::forward_training<float>(xb.cview(), w, b, eps, yb.view());
        bnorm::fused::backward<float>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
        const Reference ref = reference(s, x, dy, w, b, eps);
        EXPECT_LE(rel_error(yb.values(), ref.y), 2e-6);
        if (k.check_dx) {
          EXPECT_LE(rel_error(dxb.values(), ref.dx), 2e-6);
        }
        EXPECT_LE(rel_error(stats.mean, ref.mean), 1e-6);
        EXPECT_LE(rel_error(stats.var, ref.var), 1e-6);
        EXPECT_LE(rel_error(dw, ref.dweight), 1e-5);
        EXPECT_LE(rel_error(db, ref.dbias), 1e-5);
      }
}

#if defined(_OPENMP)
// Every pass of every reproducibility case gives the same bits with 1, 2 and 3 threads: the
// reduction order depends on the shape only. Cases include C < threads and C > threads.
TEST(Reproducibility, SameBitsForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  std::vector<std::string> digests[3];
  for (int threads = 1; threads <= 3; ++threads) {
    omp_set_num_threads(threads);
    for (const auto& c : repro_cases()) digests[threads - 1].push_back(run_repro_case(c));
  }
  omp_set_num_threads(saved);
  ASSERT_FALSE(digests[0].empty());
  EXPECT_EQ(digests[0], digests[1]);
  EXPECT_EQ(digests[0], digests[2]);
}
#endif

}  // namespace
}  // namespace bnorm_test
