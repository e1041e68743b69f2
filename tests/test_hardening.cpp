// Output-view safety and aliasing at every free function:
// - in-place calls (y is x, dx is dy, dx is the forward's x) against the same calls out of place;
// - partial overlaps, non-unique outputs and aliased gradient arrays rejected with exact
//   messages at every entry point.
// The rules themselves are checked in test_output_view_rules.cpp, the module's in-place calls and
// failures in test_module_hardening.cpp.
#include <functional>

#include "hardening_support.hpp"

namespace bnorm_test {
namespace {

using namespace hardening;

// ----------------------------------------------------------------------------------------------
// Non-unique outputs and broadcast inputs
// ----------------------------------------------------------------------------------------------

// Every free function rejects a non-unique y or dx before writing anything.
TYPED_TEST_SUITE_P(FreeFunctionsReject);
template <class T>
class FreeFunctionsReject : public ::testing::Test {};

TYPED_TEST_P(FreeFunctionsReject, NonUniqueOutputs) {
  using T = TypeParam;
  Storage<T> xs(120, 1), dys(120, 2), out(120, 3);
  const NCHWView<const T> x = xs.view(0, kShape, kContiguous),
                          dy = dys.view(0, kShape, kContiguous);
  const Array<T> w = random_array<T>(3, 4, 0.5, 1.5), b = random_array<T>(3, 5, -1, 1);
  const Array<T> rm = random_array<T>(3, 6, -1, 1), rv = random_array<T>(3, 7, 0.5, 2);
  const auto stats =
      bnorm::fused::forward_training<T>(x, w, b, 1e-5, out.view(0, kShape, kContiguous));
  const auto cache =
      bnorm::staged::forward_training<T>(x, w, b, 1e-5, out.view(0, kShape, kContiguous));
  for (const BadLayout& bad : kBadLayouts) {
    const NCHWView<T> o = out.view(0, kShape, bad.strides);
    Array<T> dw = Array<T>::Constant(3, 7), db = Array<T>::Constant(3, 8);
    const Storage<T> before = out;
    const std::string y = std::string("bnorm: y") + bad.message,
                      dx = std::string("bnorm: dx") + bad.message;
    EXPECT_EQ(message_of([&] { bnorm::fused::forward_training<T>(x, w, b, 1e-5, o); }), y);
    EXPECT_EQ(message_of([&] { bnorm::staged::forward_training<T>(x, w, b, 1e-5, o); }), y);
    EXPECT_EQ(message_of([&] { bnorm::fused::forward_inference<T>(x, w, b, rm, rv, 1e-5, o); }), y);
    EXPECT_EQ(message_of([&] { bnorm::staged::forward_inference<T>(x, w, b, rm, rv, 1e-5, o); }),
              y);
    EXPECT_EQ(message_of([&] { bnorm::fused::backward<T>(x, dy, w, stats, o, dw, db); }), dx);
    EXPECT_EQ(
        message_of([&] { bnorm::fused::backward_inference<T>(x, dy, w, rm, rv, 1e-5, o, dw, db); }),
        dx);
    EXPECT_EQ(message_of([&] { bnorm::staged::backward<T>(cache, dy, o, dw, db); }), dx);
    EXPECT_TRUE(out == before) << "an output byte changed";
    EXPECT_TRUE((dw == 7).all() && (db == 8).all()) << "gradients changed";
  }
}

// Zero strides on axes of extent 1 change nothing, and inputs may broadcast (zero strides on any
// axis): results equal those on the materialised tensor.
TYPED_TEST_P(FreeFunctionsReject, BroadcastInputsAndIrrelevantStrides) {
  using T = TypeParam;
  const Shape s{3, 2, 2, 4};
  // x: one image repeated over N, and within it one row repeated over H.
  Storage<T> xs(8, 11);
  const NCHWView<const T> xb = xs.view(0, s, {0, 4, 0, 1});
  Buffer<T> xm(s), ym(s), yb(s), dym(s), dxm(s), dxb(s);
  xm.set(values(xb));
  dym.set(random_values<T>(s, 12));
  const Array<T> w = random_array<T>(2, 13, 0.5, 1.5), b = random_array<T>(2, 14, -1, 1);
  for (const Variant v : kVariants) {
    bnorm::BatchNorm2d<T> bm(2, {1e-5, 0.1, true, true, v}), bb(2, {1e-5, 0.1, true, true, v});
    bm.weight() = bb.weight() = w;
    bm.bias() = bb.bias() = b;
    const auto sm = bm.forward(xm.cview(), ym.view());
    const auto sb = bb.forward(xb, yb.view());
    EXPECT_LE(rel_error(yb.values(), ym.values()), tolerance<T>());
    EXPECT_LE(rel_error(bb.running_mean(), bm.running_mean()), tolerance<T>());
    EXPECT_LE(rel_error(bb.running_var(), bm.running_var()), tolerance<T>());
    // dy broadcast over N only (over W too would make dweight 0: x varies only along W)
    Storage<T> dys(20, 15);
    const NCHWView<const T> dyb = dys.view(0, s, {0, 12, 4, 1});
    dym.set(values(dyb));
    bm.backward(sm, dym.cview(), dxm.view());
    bb.backward(sb, dyb, dxb.view());
    EXPECT_LE(rel_error(dxb.values(), dxm.values()), tolerance<T>());
    EXPECT_LE(rel_error(bb.weight_grad(), bm.weight_grad()), tolerance<T>());
    EXPECT_LE(rel_error(bb.bias_grad(), bm.bias_grad()), tolerance<T>());
  }
  // An output with zero strides on its axes of extent 1.
  Storage<T> ys(8, 16);
  const Shape s1{1, 2, 1, 4};
  const NCHWView<T> y1 = ys.view(0, s1, {0, 4, 0, 1});
  Buffer<T> x1(s1), y1ref(s1);
  x1.set(random_values<T>(s1, 17));
  bnorm::fused::forward_training<T>(x1.cview(), w, b, 1e-5, y1ref.view());
  bnorm::fused::forward_training<T>(x1.cview(), w, b, 1e-5, y1);
  EXPECT_LE(rel_error(values(y1), y1ref.values()), tolerance<T>());
}

// ----------------------------------------------------------------------------------------------
// Exact aliasing: in place gives the same bits as out of place
// ----------------------------------------------------------------------------------------------

TYPED_TEST_P(FreeFunctionsReject, ForwardInPlaceMatchesOutOfPlace) {
  using T = TypeParam;
  const Shape s{3, 4, 3, 5};
  const auto x = random_values<T>(s, 21, 3.0);
  const Array<T> w = random_array<T>(4, 22, 0.5, 1.5), b = random_array<T>(4, 23, -1, 1);
  const Array<T> rm = random_array<T>(4, 24, 2, 4), rv = random_array<T>(4, 25, 0.5, 2);
  using Fn = std::function<void(NCHWView<const T>, NCHWView<T>)>;
  const std::pair<const char*, Fn> calls[] = {
      {"fused::forward_training",
       [&](auto in, auto out) { bnorm::fused::forward_training<T>(in, w, b, 1e-5, out); }},
      {"staged::forward_training",
       [&](auto in, auto out) { bnorm::staged::forward_training<T>(in, w, b, 1e-5, out); }},
      {"fused::forward_inference",
       [&](auto in, auto out) { bnorm::fused::forward_inference<T>(in, w, b, rm, rv, 1e-5, out); }},
      {"staged::forward_inference",
       [&](auto in, auto out) {
         bnorm::staged::forward_inference<T>(in, w, b, rm, rv, 1e-5, out);
       }},
  };
  for (const auto& [name, call] : calls)
    for (const Layout layout : kAllLayouts) {
      SCOPED_TRACE(std::string(name) + " " + bnorm_test::name(layout));
      Buffer<T> xb(s, layout), yb(s, layout), ib(s, layout);
      xb.set(x);
      ib.set(x);
      call(xb.cview(), yb.view());
      call(ib.cview(), ib.view());  // in place
      EXPECT_EQ(ib.values(), yb.values());
      EXPECT_EQ(ib.padding_changed(), 0);
    }
}

TYPED_TEST_P(FreeFunctionsReject, BackwardInPlaceMatchesOutOfPlace) {
  using T = TypeParam;
  const Shape s{3, 4, 3, 5};
  const auto x = random_values<T>(s, 31, -2.0), dy = random_values<T>(s, 32);
  const Array<T> w = random_array<T>(4, 33, 0.5, 1.5), b = random_array<T>(4, 34, -1, 1);
  const Array<T> rm = random_array<T>(4, 35, -3, -1), rv = random_array<T>(4, 36, 0.5, 2);
  for (const Layout layout : kAllLayouts) {
    SCOPED_TRACE(name(layout));
    Buffer<T> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
    xb.set(x);
    dyb.set(dy);
    const auto stats = bnorm::fused::forward_training<T>(xb.cview(), w, b, 1e-5, yb.view());
    const auto cache = bnorm::staged::forward_training<T>(xb.cview(), w, b, 1e-5, yb.view());
    // Each call out of place, then with dx over dy, then (where x is an input) dx over x.
    using Fn = std::function<void(NCHWView<const T>, NCHWView<const T>, NCHWView<T>, Array<T>&,
                                  Array<T>&)>;
    const std::pair<const char*, Fn> calls[] = {
        {"fused::backward",
         [&](auto in, auto g, auto out, auto& dw, auto& db) {
           bnorm::fused::backward<T>(in, g, w, stats, out, dw, db);
         }},
        {"fused::backward_inference",
         [&](auto in, auto g, auto out, auto& dw, auto& db) {
           bnorm::fused::backward_inference<T>(in, g, w, rm, rv, 1e-5, out, dw, db);
         }},
        {"staged::backward", [&](auto, auto g, auto out, auto& dw, auto& db) {
           bnorm::staged::backward<T>(cache, g, out, dw, db);
         }}};
    for (const auto& [fn, call] : calls) {
      SCOPED_TRACE(fn);
      Array<T> dw0, db0, dw1, db1, dw2, db2;
      call(xb.cview(), dyb.cview(), dxb.view(), dw0, db0);
      Buffer<T> g(s, layout), xi(s, layout);
      g.set(dy);
      call(xb.cview(), g.cview(), g.view(), dw1, db1);  // dx is dy
      EXPECT_EQ(g.values(), dxb.values());
      EXPECT_TRUE(same_bits(dw1, dw0) && same_bits(db1, db0));
      EXPECT_EQ(g.padding_changed(), 0);
      xi.set(x);
      call(xi.cview(), dyb.cview(), xi.view(), dw2, db2);  // dx is x
      EXPECT_EQ(xi.values(), dxb.values());
      EXPECT_TRUE(same_bits(dw2, dw0) && same_bits(db2, db0));
    }
  }
}

// Two channel blocks of one concatenated tensor interleave in memory without sharing an
// element: an output block beside an input block is fine (DenseNet-style concatenation).
TYPED_TEST_P(FreeFunctionsReject, ChannelBlocksOfOneTensorAreDisjoint) {
  using T = TypeParam;
  const Shape s{3, 2, 3, 4};
  const Shape strides{48, 12, 4, 1};  // of the whole [3, 4, 3, 4] tensor
  Storage<T> cat(144, 41);
  const NCHWView<const T> x = cat.view(0, s, strides);  // channels 0, 1
  const NCHWView<T> y = cat.view(2 * 12, s, strides);   // channels 2, 3
  const Array<T> w = random_array<T>(2, 42, 0.5, 1.5), b = random_array<T>(2, 43, -1, 1);
  Buffer<T> xr(s), yr(s);
  xr.set(values(x));
  bnorm::fused::forward_training<T>(xr.cview(), w, b, 1e-5, yr.view());
  const auto x_before = values(x);
  bnorm::fused::forward_training<T>(x, w, b, 1e-5, y);
  EXPECT_EQ(values(y), yr.values());
  EXPECT_EQ(values(x), x_before);
  // Shifted by one channel instead, the blocks share channel 1: rejected.
  const NCHWView<T> shifted = cat.view(12, s, strides);
  EXPECT_EQ(message_of([&] { bnorm::fused::forward_training<T>(x, w, b, 1e-5, shifted); }),
            "bnorm: y partially overlaps x: expected y to share no element with x, or to be "
            "exactly x (same data, extents and strides) to run in place; got y at +12 elements "
            "from x, y strides [48, 12, 4, 1], x strides [48, 12, 4, 1]");
}

// Partial overlaps at every entry point, with the exact message and nothing written.
TYPED_TEST_P(FreeFunctionsReject, PartialOverlaps) {
  using T = TypeParam;
  Storage<T> xs(130, 51), dys(130, 52), out(120, 53);
  const NCHWView<const T> x = xs.view(0, kShape, kContiguous),
                          dy = dys.view(0, kShape, kContiguous);
  const Array<T> w = random_array<T>(3, 54, 0.5, 1.5), b = random_array<T>(3, 55, -1, 1);
  const Array<T> rm = random_array<T>(3, 56, -1, 1), rv = random_array<T>(3, 57, 0.5, 2);
  const auto stats =
      bnorm::fused::forward_training<T>(x, w, b, 1e-5, out.view(0, kShape, kContiguous));
  const auto cache =
      bnorm::staged::forward_training<T>(x, w, b, 1e-5, out.view(0, kShape, kContiguous));
  const Storage<T> xs0 = xs, dys0 = dys;
  // y one element after x (same strides: they share 119 elements).
  const NCHWView<T> y1 = xs.view(1, kShape, kContiguous);
  const std::string shifted =
      "bnorm: y partially overlaps x: expected y to share no element with x, or to be exactly x "
      "(same data, extents and strides) to run in place; got y at +1 elements from x, y strides "
      "[60, 20, 5, 1], x strides [60, 20, 5, 1]";
  EXPECT_EQ(message_of([&] { bnorm::fused::forward_training<T>(x, w, b, 1e-5, y1); }), shifted);
  EXPECT_EQ(message_of([&] { bnorm::staged::forward_training<T>(x, w, b, 1e-5, y1); }), shifted);
  EXPECT_EQ(message_of([&] { bnorm::fused::forward_inference<T>(x, w, b, rm, rv, 1e-5, y1); }),
            shifted);
  EXPECT_EQ(message_of([&] { bnorm::staged::forward_inference<T>(x, w, b, rm, rv, 1e-5, y1); }),
            shifted);
  // y over x's memory in NHWC order: different strides, intersecting ranges.
  const NCHWView<T> ycl = NCHWView<T>::channels_last(xs.data.data(), 2, 3, 4, 5);
  EXPECT_EQ(message_of([&] { bnorm::fused::forward_training<T>(x, w, b, 1e-5, ycl); }),
            "bnorm: y partially overlaps x: expected y to share no element with x, or to be "
            "exactly x (same data, extents and strides) to run in place; got y at +0 elements "
            "from x, y strides [60, 1, 15, 3], x strides [60, 20, 5, 1]");
  // dx two elements before dy, and dx overlapping x.
  const NCHWView<T> dx_dy(dys.data.data() + 2, kShape, kContiguous);
  const NCHWView<const T> dy2(dys.data.data() + 4, kShape, kContiguous);
  Array<T> dw = Array<T>::Constant(3, 7), db = Array<T>::Constant(3, 8);
  const std::string dx_on_dy =
      "bnorm: dx partially overlaps dy: expected dx to share no element with dy, or to be exactly "
      "dy (same data, extents and strides) to run in place; got dx at -2 elements from dy, dx "
      "strides [60, 20, 5, 1], dy strides [60, 20, 5, 1]";
  EXPECT_EQ(message_of([&] { bnorm::fused::backward<T>(x, dy2, w, stats, dx_dy, dw, db); }),
            dx_on_dy);
  EXPECT_EQ(message_of([&] {
              bnorm::fused::backward_inference<T>(x, dy2, w, rm, rv, 1e-5, dx_dy, dw, db);
            }),
            dx_on_dy);
  EXPECT_EQ(message_of([&] { bnorm::staged::backward<T>(cache, dy2, dx_dy, dw, db); }), dx_on_dy);
  const NCHWView<T> dx_x(xs.data.data() + 10, kShape, kContiguous);
  const std::string dx_on_x =
      "bnorm: dx partially overlaps x: expected dx to share no element with x, or to be exactly x "
      "(same data, extents and strides) to run in place; got dx at +10 elements from x, dx "
      "strides [60, 20, 5, 1], x strides [60, 20, 5, 1]";
  EXPECT_EQ(message_of([&] { bnorm::fused::backward<T>(x, dy, w, stats, dx_x, dw, db); }), dx_on_x);
  EXPECT_EQ(message_of(
                [&] { bnorm::fused::backward_inference<T>(x, dy, w, rm, rv, 1e-5, dx_x, dw, db); }),
            dx_on_x);
  EXPECT_TRUE(xs == xs0 && dys == dys0) << "a byte changed";
  EXPECT_TRUE((dw == 7).all() && (db == 8).all()) << "gradients changed";
}

// Gradient arrays that alias each other or an array the backward reads.
TYPED_TEST_P(FreeFunctionsReject, AliasedGradientArrays) {
  using T = TypeParam;
  Storage<T> xs(120, 61), dys(120, 62), dxs(120, 63);
  const NCHWView<const T> x = xs.view(0, kShape, kContiguous),
                          dy = dys.view(0, kShape, kContiguous);
  const NCHWView<T> dx = dxs.view(0, kShape, kContiguous);
  Array<T> w = random_array<T>(3, 64, 0.5, 1.5), b = random_array<T>(3, 65, -1, 1);
  Array<T> rm = random_array<T>(3, 66, -1, 1), rv = random_array<T>(3, 67, 0.5, 2);
  const auto stats = bnorm::fused::forward_training<T>(x, w, b, 1e-5, dx);
  const auto cache = bnorm::staged::forward_training<T>(x, w, b, 1e-5, dx);
  const Storage<T> dxs0 = dxs;
  const Array<T> w0 = w, rm0 = rm, rv0 = rv;
  Array<T> g = Array<T>::Constant(3, 9);
  EXPECT_EQ(message_of([&] { bnorm::fused::backward<T>(x, dy, w, stats, dx, g, g); }),
            "bnorm: dweight is the same array as dbias: expected a separate array, since backward "
            "resizes and writes dweight");
  EXPECT_EQ(message_of([&] { bnorm::fused::backward<T>(x, dy, w, stats, dx, w, g); }),
            "bnorm: dweight is the same array as weight: expected a separate array, since "
            "backward resizes and writes dweight");
  EXPECT_EQ(message_of([&] { bnorm::fused::backward<T>(x, dy, w, stats, dx, g, w); }),
            "bnorm: dbias is the same array as weight: expected a separate array, since backward "
            "resizes and writes dbias");
  EXPECT_EQ(
      message_of([&] { bnorm::fused::backward_inference<T>(x, dy, w, rm, rv, 1e-5, dx, g, rv); }),
      "bnorm: dbias is the same array as running_var: expected a separate array, since "
      "backward resizes and writes dbias");
  EXPECT_EQ(
      message_of([&] { bnorm::fused::backward_inference<T>(x, dy, w, rm, rv, 1e-5, dx, rm, g); }),
      "bnorm: dweight is the same array as running_mean: expected a separate array, since "
      "backward resizes and writes dweight");
  EXPECT_EQ(message_of([&] { bnorm::staged::backward<T>(cache, dy, dx, g, g); }),
            "bnorm: dweight is the same array as dbias: expected a separate array, since backward "
            "resizes and writes dweight");
  EXPECT_TRUE(dxs == dxs0);
  EXPECT_TRUE(same_bits(w, w0) && same_bits(rm, rm0) && same_bits(rv, rv0));
  EXPECT_TRUE((g == 9).all());
}

REGISTER_TYPED_TEST_SUITE_P(FreeFunctionsReject, NonUniqueOutputs,
                            BroadcastInputsAndIrrelevantStrides, ForwardInPlaceMatchesOutOfPlace,
                            BackwardInPlaceMatchesOutOfPlace, ChannelBlocksOfOneTensorAreDisjoint,
                            PartialOverlaps, AliasedGradientArrays);
INSTANTIATE_TYPED_TEST_SUITE_P(Hardening, FreeFunctionsReject, FloatTypes, );  // -Wpedantic

}  // namespace
}  // namespace bnorm_test
