// The contract of bfloat16 and half tensors: bit for bit the float kernels on the widened
// values, each output rounded once; the same bits on every kernel set and thread count; every
// rank's module the float module rounded once; the errors of float, with nothing written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "float16_support.hpp"

namespace bnorm_test {
namespace {

template <class H>
class Float16Contract : public ::testing::Test {};
TYPED_TEST_SUITE(Float16Contract, Float16Types, Float16Names);

// The kernels' contract for 16-bit tensors: exactly the float kernels on the widened values,
// each output rounded once (so every path, layout and set inherits their tested arithmetic).
TYPED_TEST(Float16Contract, BitsOfTheFloatKernelsRoundedOnce) {
  using H = TypeParam;
  for (const Shape& s : kShapes16)
    for (const Layout layout : kAllLayouts) {
      SCOPED_TRACE(to_string(s) + " " + name(layout));
      const auto x = random_16bit<H>(s, 41, 2.0), dy = random_16bit<H>(s, 42);
      const Floats w = random_array<float>(s[1], 43, 0.5, 1.5);
      const Floats b = random_array<float>(s[1], 44, -1.0, 1.0);
      Buffer<H> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
      Buffer<float> xf(s, layout), yf(s, layout), dyf(s, layout), dxf(s, layout);
      xb.set(x);
      dyb.set(dy);
      xf.set(widened_to_float(x));
      dyf.set(widened_to_float(dy));
      const auto stats = bnorm::fused::forward_training<H>(xb.cview(), w, b, kEps16, yb.view());
      const auto stats_f =
          bnorm::fused::forward_training<float>(xf.cview(), w, b, kEps16, yf.view());
      Floats dw, db, dwf, dbf;
      bnorm::fused::backward<H>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
      bnorm::fused::backward<float>(xf.cview(), dyf.cview(), w, stats_f, dxf.view(), dwf, dbf);
      const auto y = yb.values(), dx = dxb.values(), y_ref = rounded<H>(yf.values()),
                 dx_ref = rounded<H>(dxf.values());
      EXPECT_TRUE(same_bits(y, y_ref)) << bit_differences(y, y_ref);
      EXPECT_TRUE(same_bits(dx, dx_ref)) << bit_differences(dx, dx_ref);
      EXPECT_TRUE(same_bits(stats.mean, stats_f.mean) && same_bits(stats.var, stats_f.var));
      EXPECT_TRUE(same_bits(dw, dwf) && same_bits(db, dbf));
    }
}

/// y and dx of a training pass, as bits.
template <class H>
std::pair<std::vector<H>, std::vector<H>> training_bits(const Shape& s, Layout layout) {
  Buffer<H> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
  xb.set(random_16bit<H>(s, 51, 1.0));
  dyb.set(random_16bit<H>(s, 52));
  const Floats w = random_array<float>(s[1], 53, 0.5, 1.5), b = Floats::Zero(s[1]);
  const auto stats = bnorm::fused::forward_training<H>(xb.cview(), w, b, kEps16, yb.view());
  Floats dw, db;
  bnorm::fused::backward<H>(xb.cview(), dyb.cview(), w, stats, dxb.view(), dw, db);
  return {yb.values(), dxb.values()};
}

TYPED_TEST(Float16Contract, SameBitsOnEveryKernelSetAndThreadCount) {
  using H = TypeParam;
  const std::string before(bnorm::isa());
  std::string ran;
  for (const Shape& s : {Shape{4, 24, 10, 10}, Shape{8, 40, 7, 7}})
    for (const Layout layout : {Layout::nchw, Layout::channels_last}) {
      SCOPED_TRACE(to_string(s) + " " + name(layout));
      const auto expected = training_bits<H>(s, layout);
      ran.clear();
      for (const char* isa : {"sse2", "avx2", "avx512"}) {
        if (!bnorm::isa_supported(isa)) continue;
        bnorm::set_isa(isa);
        ran += std::string(" ") + isa;
        const auto got = training_bits<H>(s, layout);
        EXPECT_TRUE(same_bits(got.first, expected.first)) << isa;
        EXPECT_TRUE(same_bits(got.second, expected.second)) << isa;
      }
      bnorm::set_isa(before);
#if defined(_OPENMP)
      const int threads = omp_get_max_threads();
      for (const int t : {1, 3}) {
        omp_set_num_threads(t);
        const auto got = training_bits<H>(s, layout);
        EXPECT_TRUE(same_bits(got.first, expected.first)) << t << " threads";
        EXPECT_TRUE(same_bits(got.second, expected.second)) << t << " threads";
      }
      omp_set_num_threads(threads);
#endif
    }
  std::printf("%s: the same bits on the kernel sets%s\n", format_name<H>(), ran.c_str());
}

// Every rank's module of a 16-bit type: the float module on the widened values, outputs rounded
// once, with bit-identical running buffers, saved statistics and parameter gradients.
TYPED_TEST(Float16Contract, ModulesOfEveryRankAreTheFloatModulesRoundedOnce) {
  using H = TypeParam;
  const auto check = [](auto bn16, auto bn32, auto view16, auto view32, index_t size) {
    SCOPED_TRACE(std::to_string(size) + " values");
    const Shape flat{1, 1, 1, size};
    const auto x = random_16bit<H>(flat, 71, 2.0), dy = random_16bit<H>(flat, 72);
    std::vector<float> xf = widened_to_float(x), dyf = widened_to_float(dy);
    std::vector<H> y(x.size()), dx(x.size());
    std::vector<float> yf(x.size()), dxf(x.size());
    auto x16 = x, dy16 = dy;
    bn16.weight() = random_array<float>(bn16.num_features(), 73, 0.5, 1.5);
    bn16.bias() = random_array<float>(bn16.num_features(), 74, -1.0, 1.0);
    bn32.weight() = bn16.weight();
    bn32.bias() = bn16.bias();
    for (const bool training : {true, true, false}) {  // two steps: the buffers move twice
      bn16.train(training);
      bn32.train(training);
      const auto s16 = bn16.forward(view16(x16.data()), view16(y.data()));
      const auto s32 = bn32.forward(view32(xf.data()), view32(yf.data()));
      bn16.backward(s16, view16(dy16.data()), view16(dx.data()));
      bn32.backward(s32, view32(dyf.data()), view32(dxf.data()));
      EXPECT_TRUE(same_bits(y, rounded<H>(yf))) << training;
      EXPECT_TRUE(same_bits(dx, rounded<H>(dxf))) << training;
      EXPECT_TRUE(same_bits(s16.mean(), s32.mean()) && same_bits(s16.invstd(), s32.invstd()));
      EXPECT_TRUE(ModuleState<float>(bn16) == ModuleState<float>(bn32));
    }
  };
  using bnorm::NCDHWView;
  using bnorm::NCHWView;
  using bnorm::NCLView;
  check(
      bnorm::BatchNorm1d<H>(6), bnorm::BatchNorm1d<float>(6),
      [](auto* p) { return NCLView<std::remove_pointer_t<decltype(p)>>(p, 7, 6); },
      [](auto* p) { return NCLView<std::remove_pointer_t<decltype(p)>>(p, 7, 6); }, 7 * 6);
  check(
      bnorm::BatchNorm1d<H>(20), bnorm::BatchNorm1d<float>(20),
      [](auto* p) {
        return NCLView<std::remove_pointer_t<decltype(p)>>::channels_last(p, 3, 20, 9);
      },
      [](auto* p) {
        return NCLView<std::remove_pointer_t<decltype(p)>>::channels_last(p, 3, 20, 9);
      },
      3 * 20 * 9);
  check(
      bnorm::BatchNorm2d<H>(18), bnorm::BatchNorm2d<float>(18),
      [](auto* p) { return NCHWView<std::remove_pointer_t<decltype(p)>>(p, 4, 18, 5, 6); },
      [](auto* p) { return NCHWView<std::remove_pointer_t<decltype(p)>>(p, 4, 18, 5, 6); },
      4 * 18 * 5 * 6);
  check(
      bnorm::BatchNorm3d<H>(17), bnorm::BatchNorm3d<float>(17),
      [](auto* p) {
        return NCDHWView<std::remove_pointer_t<decltype(p)>>::channels_last(p, 2, 17, 3, 4, 5);
      },
      [](auto* p) {
        return NCDHWView<std::remove_pointer_t<decltype(p)>>::channels_last(p, 2, 17, 3, 4, 5);
      },
      2 * 17 * 3 * 4 * 5);
}

// Each error of the module and the free functions, for 16-bit tensors: the float types'
// messages, and nothing written.
TYPED_TEST(Float16Contract, ErrorsChangeNothing) {
  using H = TypeParam;
  const Shape s{2, 3, 4, 5};
  bnorm::BatchNorm2d<H> bn(3);
  Buffer<H> x(s), y(s), dx(s), dy(s), four({2, 4, 4, 5}), wide({2, 3, 4, 6});
  Buffer<H> single({1, 3, 1, 1}), single_y({1, 3, 1, 1});
  x.set(random_16bit<H>(s, 81));
  dy.set(random_16bit<H>(s, 82));
  single.set(random_16bit<H>({1, 3, 1, 1}, 83));
  expect_rejected(
      bn, y, dx, [&] { bn.forward(four.cview(), y.view()); },
      "bnorm: x has 4 channels, module has 3");
  expect_rejected(
      bn, y, dx, [&] { bn.forward(x.cview(), wide.view()); },
      "bnorm: y has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of x)");
  expect_rejected(
      bn, single_y, dx, [&] { bn.forward(single.cview(), single_y.view()); },
      "bnorm: Expected more than 1 value per channel when training, got input of "
      "shape [1, 3, 1, 1]");
  const auto saved = bn.forward(x.cview(), y.view());
  expect_rejected(
      bn, y, dx, [&] { bn.backward(saved, four.cview(), dx.view()); },
      "bnorm: dy has 4 channels, module has 3");
  expect_rejected(
      bn, y, dx, [&] { bn.backward(saved, dy.cview(), wide.view()); },
      "bnorm: dx has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of dy)");
  bn.weight().resize(2);
  expect_rejected(
      bn, y, dx, [&] { bn.forward(x.cview(), y.view()); },
      "bnorm: weight has 2 elements, expected 3 (num_features)");

  const Floats w3 = Floats::Ones(3), b3 = Floats::Zero(3), w2 = Floats::Ones(2);
  const auto before = y.values();
  EXPECT_EQ(
      message_of([&] { bnorm::fused::forward_training<H>(x.cview(), w2, b3, kEps16, y.view()); }),
      "bnorm: weight has 2 elements, expected 3 (the channels of x, or 0 for no affine "
      "transform)");
  EXPECT_EQ(
      message_of([&] { bnorm::staged::forward_training<H>(x.cview(), w3, w2, kEps16, y.view()); }),
      "bnorm: bias has 2 elements, expected 3 (the channels of x, as weight)");
  EXPECT_EQ(
      message_of([&] { bnorm::fused::forward_training<H>(x.cview(), w3, b3, -1.0, y.view()); }),
      "bnorm: eps must be finite and >= 0, got -1");
  EXPECT_TRUE(same_bits(y.values(), before));
  EXPECT_EQ(message_of([] { bnorm::BatchNorm2d<H>(0); }), "bnorm: num_features must be > 0, got 0");
}

}  // namespace
}  // namespace bnorm_test
