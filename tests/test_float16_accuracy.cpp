// bfloat16 and half tensors with float parameters: every output of the fused variant within 1
// ulp of a float64 reference computed from the same 16-bit inputs (training, inference,
// residual and ReLU), and the staged variant, computing in double and rounding once, within half
// an ulp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "float16_support.hpp"

namespace bnorm_test {
namespace {

template <class H>
class Float16Accuracy : public ::testing::Test {};
TYPED_TEST_SUITE(Float16Accuracy, Float16Types, Float16Names);

TYPED_TEST(Float16Accuracy, TrainingWithinOneUlpOfFloat64) {
  using H = TypeParam;
  Worst worst;
  for (const double offset : {0.0, 1e3})  // 1e3: a mean of 1e3 times the spread
    for (const Shape& s : kShapes16)
      for (const Layout layout : kAllLayouts) {
        SCOPED_TRACE(to_string(s) + " " + name(layout) + " offset " + std::to_string(offset));
        const auto x = random_16bit<H>(s, 11, offset), dy = random_16bit<H>(s, 12);
        const Floats w = random_array<float>(s[1], 13, 0.5, 1.5);
        const Floats b = random_array<float>(s[1], 14, -1.0, 1.0);
        Buffer<H> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
        xb.set(x);
        dyb.set(dy);
        const auto stats = bnorm::fused::forward_training<H>(xb.cview(), w, b, kEps16, yb.view());
        Floats dw, db;
        bnorm::fused::backward<H>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);

        const Eigen::ArrayXd wd = w.cast<double>(), bd = b.cast<double>();
        const Reference r = reference<double>(s, widened(x), widened(dy), wd, bd, kEps16);
        worst.add(max_ulps(yb.values(), r.y), max_ulps(dxb.values(), r.dx));
        EXPECT_LT(rel_error(stats.mean, r.mean), 1e-12);
        EXPECT_LT(rel_error(stats.var, r.var), 1e-10);
        EXPECT_LT(rel_error(dw, r.dweight), 1e-6);
        EXPECT_LT(rel_error(db, r.dbias), 1e-6);
        EXPECT_EQ(yb.padding_changed(), 0);
        EXPECT_EQ(dxb.padding_changed(), 0);
      }
  worst.print("training forward and backward", format_name<H>());
}

TYPED_TEST(Float16Accuracy, InferenceWithinOneUlpOfFloat64) {
  using H = TypeParam;
  Worst worst;
  for (const Shape& s : kShapes16)
    for (const Layout layout : kAllLayouts) {
      SCOPED_TRACE(to_string(s) + " " + name(layout));
      const auto x = random_16bit<H>(s, 21, 3.0), dy = random_16bit<H>(s, 22);
      const Floats w = random_array<float>(s[1], 23, 0.5, 1.5);
      const Floats b = random_array<float>(s[1], 24, -1.0, 1.0);
      const Floats rm = random_array<float>(s[1], 25, 2.0, 4.0);
      const Floats rv = random_array<float>(s[1], 26, 0.5, 2.0);
      Buffer<H> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
      xb.set(x);
      dyb.set(dy);
      bnorm::fused::forward_inference<H>(xb.cview(), w, b, rm, rv, kEps16, yb.view());
      Floats dw, db;
      bnorm::fused::backward_inference<H>(xb.cview(), dyb.cview(), w, rm, rv, kEps16, dxb.view(),
                                          dw, db);
      // y = (x - running_mean) / sqrt(running_var + eps) * w + b, dx = dy * w / sqrt(...)
      const index_t plane = s[2] * s[3];
      std::vector<long double> ry(x.size()), rdx(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        const auto c = static_cast<index_t>(i) / plane % s[1];
        const long double k = w[c] / std::sqrt(static_cast<long double>(rv[c]) + kEps16);
        ry[i] = (to_compute(x[i]) - static_cast<long double>(rm[c])) * k + b[c];
        rdx[i] = to_compute(dy[i]) * k;
      }
      worst.add(max_ulps(yb.values(), ry), max_ulps(dxb.values(), rdx));
    }
  worst.print("inference and eval backward", format_name<H>());
}

// y = relu(BN(x) + r) and its backward through the module; the reference's ReLU mask is the
// fused y's (y > 0), itself checked against the reference: a value at the kink may round to
// either side.
TYPED_TEST(Float16Accuracy, ResidualAndReluWithinOneUlpOfFloat64) {
  using H = TypeParam;
  Worst worst;
  for (const Shape& s : kShapes16)
    for (const Layout layout : {Layout::nchw, Layout::channels_last, Layout::strided}) {
      SCOPED_TRACE(to_string(s) + " " + name(layout));
      bnorm::Options o;
      o.activation = bnorm::Activation::relu;
      bnorm::BatchNorm2d<H> bn(s[1], o);
      bn.weight() = random_array<float>(s[1], 31, 0.5, 1.5);
      bn.bias() = random_array<float>(s[1], 32, -1.0, 1.0);
      const auto x = random_16bit<H>(s, 33), r = random_16bit<H>(s, 34),
                 dy = random_16bit<H>(s, 35);
      Buffer<H> xb(s, layout), rb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout),
          drb(s, layout);
      xb.set(x);
      rb.set(r);
      dyb.set(dy);
      const auto saved = bn.forward(xb.cview(), rb.cview(), yb.view());
      bn.backward(saved, dyb.cview(), dxb.view(), drb.view());

      const Eigen::ArrayXd wd = bn.weight().template cast<double>(),
                           bd = bn.bias().template cast<double>();
      const std::vector<H> y = yb.values(), dres = drb.values();
      std::vector<long double> ry(x.size());
      std::vector<double> g(x.size());
      const Reference bn_ref = reference<double>(s, widened(x), widened(dy), wd, bd, kEps16);
      for (std::size_t i = 0; i < x.size(); ++i) {
        ry[i] = std::max<long double>(bn_ref.y[i] + to_compute(r[i]), 0.0L);
        const bool passed = to_compute(y[i]) > 0;
        g[i] = passed ? static_cast<double>(to_compute(dy[i])) : 0.0;
        // dresidual is dy where the ReLU passed, else 0: exact
        EXPECT_EQ(bits_of(dres[i]), bits_of(passed ? dy[i] : H(0.0f))) << i;
      }
      const Reference g_ref = reference<double>(s, widened(x), g, wd, bd, kEps16);
      worst.add(max_ulps(y, ry), max_ulps(dxb.values(), g_ref.dx));
    }
  worst.print("relu(BN(x) + r) and its backward", format_name<H>());
}

// The staged variant computes in double from the 16-bit inputs and rounds each output once: the
// float64 reference to within half an ulp, and at most an ulp from the fused variant.
TYPED_TEST(Float16Accuracy, StagedIsTheCorrectlyRoundedReference) {
  using H = TypeParam;
  Worst staged_worst;
  for (const Shape& s : kShapes16)
    for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
      SCOPED_TRACE(to_string(s) + " " + name(layout));
      const auto x = random_16bit<H>(s, 61, 1e3), dy = random_16bit<H>(s, 62);
      const Floats w = random_array<float>(s[1], 63, 0.5, 1.5);
      const Floats b = random_array<float>(s[1], 64, -1.0, 1.0);
      Buffer<H> xb(s, layout), yb(s, layout), ys(s, layout), dyb(s, layout), dxb(s, layout),
          dxs(s, layout);
      xb.set(x);
      dyb.set(dy);
      const auto stats = bnorm::fused::forward_training<H>(xb.cview(), w, b, kEps16, yb.view());
      const auto cache = bnorm::staged::forward_training<H>(xb.cview(), w, b, kEps16, ys.view());
      Floats dw, db, dws, dbs;
      bnorm::fused::backward<H>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
      bnorm::staged::backward<H>(cache, dyb.cview(), dxs.view(), dws, dbs);
      const Eigen::ArrayXd wd = w.cast<double>(), bd = b.cast<double>();
      const Reference r = reference<double>(s, widened(x), widened(dy), wd, bd, kEps16);
      staged_worst.add(max_ulps(ys.values(), r.y), max_ulps(dxs.values(), r.dx), 0.5 + 1e-6);
      const auto yf = yb.values(), ysv = ys.values(), dxf = dxb.values(), dxsv = dxs.values();
      for (std::size_t i = 0; i < yf.size(); ++i) {
        EXPECT_LE(ulps(yf[i], to_compute(ysv[i])), 1.0) << i;
        EXPECT_LE(ulps(dxf[i], to_compute(dxsv[i])), 1.0) << i;
      }
      EXPECT_LT(rel_error(dws, dw), 1e-6);
      EXPECT_LT(rel_error(dbs, db), 1e-6);
    }
  staged_worst.print("staged (double, rounded once)", format_name<H>());
}

}  // namespace
}  // namespace bnorm_test
