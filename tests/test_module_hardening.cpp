// The module in place, and failures that leave nothing half-done: every validation failure of
// the module, training and eval, forward and backward, and of the free functions: the message,
// and every byte of every buffer and all module state unchanged.
#include <functional>

#include "hardening_support.hpp"

namespace bnorm_test {
namespace {

using namespace hardening;

// ----------------------------------------------------------------------------------------------
// The module: in place, and every validation failure leaves everything as it was
// ----------------------------------------------------------------------------------------------

template <class T>
class ModuleHardening : public ::testing::Test {};
TYPED_TEST_SUITE(ModuleHardening, FloatTypes, );  // the empty argument: -Wpedantic

// Module forward with y the same view as x: same y and running statistics as out of place, in
// training and eval, for both variants; the Saved is marked and backward rejects it. Backward
// with dx over dy or over the forward's x: same dx and gradients as out of place.
TYPED_TEST(ModuleHardening, InPlaceForwardAndBackward) {
  using T = TypeParam;
  const Shape s{2, 3, 4, 5};
  const auto x = random_values<T>(s, 71, 1.5), dy = random_values<T>(s, 72);
  for (const Variant v : kVariants)
    for (const bool training : {true, false})
      for (const Layout layout : {Layout::nchw, Layout::channels_last, Layout::strided}) {
        SCOPED_TRACE(::testing::Message()
                     << v << (training ? " train " : " eval ") << name(layout));
        auto make = [&] {
          bnorm::BatchNorm2d<T> bn(3, {1e-5, 0.1, true, true, v});
          bn.weight() = random_array<T>(3, 73, 0.5, 1.5);
          bn.bias() = random_array<T>(3, 74, -1, 1);
          bn.running_mean() = random_array<T>(3, 75, 1, 2);
          bn.running_var() = random_array<T>(3, 76, 0.5, 2);
          bn.train(training);
          return bn;
        };
        bnorm::BatchNorm2d<T> out = make(), in = make();
        Buffer<T> xb(s, layout), yb(s, layout), ib(s, layout), dyb(s, layout), dxb(s, layout);
        xb.set(x);
        ib.set(x);
        dyb.set(dy);
        const auto saved = out.forward(xb.cview(), yb.view());
        const auto saved_in = in.forward(ib.cview(), ib.view());
        EXPECT_FALSE(saved.in_place());
        EXPECT_TRUE(saved_in.in_place());
        EXPECT_EQ(ib.values(), yb.values());
        EXPECT_EQ(ib.padding_changed(), 0);
        EXPECT_TRUE(same_bits(in.running_mean(), out.running_mean()));
        EXPECT_TRUE(same_bits(in.running_var(), out.running_var()));
        EXPECT_EQ(in.num_batches_tracked(), out.num_batches_tracked());
        // Backward after an in-place forward: rejected, nothing written.
        Buffer<T> dx_in(s, layout);
        dx_in.set(random_values<T>(s, 77));
        const auto dx_before = dx_in.values();
        const Array<T> g0 = in.weight_grad();
        EXPECT_EQ(message_of([&] { in.backward(saved_in, dyb.cview(), dx_in.view()); }),
                  "bnorm: saved comes from a forward that ran in place (y was x) and overwrote the "
                  "x that backward needs: expected the Saved of a forward with a separate y");
        EXPECT_EQ(dx_in.values(), dx_before);
        EXPECT_TRUE(same_bits(in.weight_grad(), g0));

        out.backward(saved, dyb.cview(), dxb.view());
        const Array<T> dw = out.weight_grad(), db = out.bias_grad();
        Buffer<T> g(s, layout);
        g.set(dy);
        out.backward(saved, g.cview(), g.view());  // dx is dy
        EXPECT_EQ(g.values(), dxb.values());
        EXPECT_TRUE(same_bits(out.weight_grad(), dw) && same_bits(out.bias_grad(), db));
        out.backward(saved, dyb.cview(), xb.view());  // dx is the forward's x
        EXPECT_EQ(xb.values(), dxb.values());
        EXPECT_TRUE(same_bits(out.weight_grad(), dw) && same_bits(out.bias_grad(), db));
      }
}

// Backward uses the weight as it is when backward runs (README), whatever the variant: change it
// between forward and backward and both variants give the long-double reference's dx and
// gradients for the new weight (the staged variant used to keep the forward's).
TYPED_TEST(ModuleHardening, BackwardUsesTheWeightAtBackwardTime) {
  using T = TypeParam;
  const Shape s{3, 4, 2, 5};
  const auto x = random_values<T>(s, 111, 1.0), dy = random_values<T>(s, 112);
  for (const bool training : {true, false})
    for (const Variant v : kVariants) {
      SCOPED_TRACE(::testing::Message() << v << (training ? " train" : " eval"));
      bnorm::BatchNorm2d<T> bn(4, {1e-5, 0.1, true, true, v});
      bn.weight() = random_array<T>(4, 113, 0.5, 1.5);
      bn.running_mean() = random_array<T>(4, 114, -1, 1);
      bn.running_var() = random_array<T>(4, 115, 0.5, 2);
      const Array<T> rm = bn.running_mean(), rv = bn.running_var();
      bn.train(training);
      Buffer<T> xb(s), yb(s), dyb(s), dxb(s);
      xb.set(x);
      dyb.set(dy);
      const auto saved = bn.forward(xb.cview(), yb.view());
      bn.weight() = random_array<T>(4, 116, -2, -1);  // a new weight, of the other sign
      bn.backward(saved, dyb.cview(), dxb.view());
      if (training) {
        const Reference ref = reference(s, x, dy, bn.weight(), bn.bias(), 1e-5);
        EXPECT_LE(rel_error(dxb.values(), ref.dx), tolerance<T>());
        EXPECT_LE(rel_error(bn.weight_grad(), ref.dweight), tolerance<T>());
      } else {
        std::vector<long double> dx(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
          const auto c = static_cast<index_t>((static_cast<index_t>(i) / 10) % 4);
          dx[i] = static_cast<long double>(dy[i]) * bn.weight()[c] /
                  std::sqrt(static_cast<long double>(rv[c]) + 1e-5L);
        }
        EXPECT_LE(rel_error(dxb.values(), dx), tolerance<T>());
      }
    }
}

// A module that has trained a step and, in the mode under test, run a forward whose Saved the
// backward failures use. One storage holds x (with room for views shifted inside it), others dy,
// y and dx; all hold random bytes, so any write shows.
template <class T>
struct Case {
  bnorm::BatchNorm2d<T> bn;
  Storage<T> xs{140, 81}, ys{120, 82}, dys{140, 83}, dxs{120, 84};
  NCHWView<T> x = xs.view(0, kShape, kContiguous), y = ys.view(0, kShape, kContiguous);
  NCHWView<T> dy = dys.view(0, kShape, kContiguous), dx = dxs.view(0, kShape, kContiguous);
  typename bnorm::BatchNorm2d<T>::Saved saved;

  Case(Variant v, bool training, bool track) : bn(3, {1e-5, 0.1, true, track, v}) {
    bn.weight() = random_array<T>(3, 85, 0.5, 1.5);
    bn.bias() = random_array<T>(3, 86, -1, 1);
    bn.backward(bn.forward(x, y), dy, dx);  // a training step: state and gradients set
    bn.train(training);
    saved = bn.forward(x, y);
    ys.refill(87);  // fresh random bytes in the outputs
    dxs.refill(88);
  }

  template <class F>
  void expect_rejected(const F& f, const std::string& message) {
    const ModuleState<T> state(bn);
    const Storage<T> xs0 = xs, ys0 = ys, dys0 = dys, dxs0 = dxs;
    EXPECT_EQ(message_of(f), message);
    EXPECT_TRUE(ModuleState<T>(bn) == state) << "module state changed";
    EXPECT_TRUE(xs == xs0 && ys == ys0 && dys == dys0 && dxs == dxs0) << "a buffer changed";
  }
};

const char* const kShifted =
    " at +1 elements from x, y strides [60, 20, 5, 1], x strides [60, 20, 5, 1]";

TYPED_TEST(ModuleHardening, EveryForwardFailureLeavesEverythingUnchanged) {
  using T = TypeParam;
  for (const Variant v : kVariants)
    for (const bool training : {true, false}) {
      SCOPED_TRACE(::testing::Message() << v << (training ? " train" : " eval"));
      Case<T> k(v, training, true);
      Storage<T> other(200, 89);
      const NCHWView<T> x4 = other.view(0, {2, 4, 4, 5}, {80, 20, 5, 1});
      k.expect_rejected([&] { k.bn.forward(x4, k.y); }, "bnorm: x has 4 channels, module has 3");
      k.expect_rejected(
          [&] {
            k.bn.forward(k.x, other.view(0, {2, 3, 4, 6}, {72, 24, 6, 1}));
          },
          "bnorm: y has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of x)");
      for (const BadLayout& bad : kBadLayouts)
        k.expect_rejected([&] { k.bn.forward(k.x, k.ys.view(0, kShape, bad.strides)); },
                          std::string("bnorm: y") + bad.message);
      k.expect_rejected(
          [&] { k.bn.forward(k.x, k.xs.view(1, kShape, kContiguous)); },
          std::string("bnorm: y partially overlaps x: expected y to share no element with x, or "
                      "to be exactly x (same data, extents and strides) to run in place; got y") +
              kShifted);
      const Array<T> w = k.bn.weight(), b = k.bn.bias(), rm = k.bn.running_mean(),
                     rv = k.bn.running_var();
      k.bn.weight().resize(2);
      k.expect_rejected([&] { k.bn.forward(k.x, k.y); },
                        "bnorm: weight has 2 elements, expected 3 (num_features)");
      k.bn.weight() = w;
      k.bn.bias().resize(4);
      k.expect_rejected([&] { k.bn.forward(k.x, k.y); },
                        "bnorm: bias has 4 elements, expected 3 (num_features)");
      k.bn.bias() = b;
      k.bn.running_mean().resize(0);
      k.expect_rejected([&] { k.bn.forward(k.x, k.y); },
                        "bnorm: running_mean has 0 elements, expected 3 (num_features)");
      k.bn.running_mean() = rm;
      k.bn.running_var().resize(5);
      k.expect_rejected([&] { k.bn.forward(k.x, k.y); },
                        "bnorm: running_var has 5 elements, expected 3 (num_features)");
      k.bn.running_var() = rv;
      // One value per channel: rejected in training and in eval without tracked statistics.
      const NCHWView<T> x1 = other.view(0, {1, 3, 1, 1}, {3, 1, 1, 1}),
                        y1 = k.ys.view(0, {1, 3, 1, 1}, {3, 1, 1, 1});
      const std::string one =
          "bnorm: Expected more than 1 value per channel when training, got input of shape [1, "
          "3, 1, 1]";
      if (training) k.expect_rejected([&] { k.bn.forward(x1, y1); }, one);
      Case<T> u(v, training, false);
      u.expect_rejected([&] { u.bn.forward(x1, u.ys.view(0, {1, 3, 1, 1}, {3, 1, 1, 1})); }, one);
      u.bn.running_mean().resize(3);
      u.expect_rejected([&] { u.bn.forward(u.x, u.y); },
                        "bnorm: running_mean has 3 elements, expected 0 (track_running_stats is "
                        "false)");
    }
}

TYPED_TEST(ModuleHardening, EveryBackwardFailureLeavesEverythingUnchanged) {
  using T = TypeParam;
  for (const Variant v : kVariants)
    for (const bool training : {true, false})
      for (const bool track : {true, false}) {
        SCOPED_TRACE(::testing::Message()
                     << v << (training ? " train" : " eval") << (track ? "" : " untracked"));
        Case<T> k(v, training, track);
        Storage<T> other(200, 90);
        k.expect_rejected(
            [&] {
              k.bn.backward(k.saved, other.view(0, {2, 4, 4, 5}, {80, 20, 5, 1}), k.dx);
            },
            "bnorm: dy has 4 channels, module has 3");
        k.expect_rejected(
            [&] {
              k.bn.backward(k.saved, other.view(0, {2, 3, 4, 6}, {72, 24, 6, 1}), k.dx);
            },
            "bnorm: dy has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of the forward's "
            "x)");
        k.expect_rejected(
            [&] {
              k.bn.backward(k.saved, k.dy, other.view(0, {2, 3, 4, 6}, {72, 24, 6, 1}));
            },
            "bnorm: dx has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of dy)");
        for (const BadLayout& bad : kBadLayouts)
          k.expect_rejected(
              [&] { k.bn.backward(k.saved, k.dy, k.dxs.view(0, kShape, bad.strides)); },
              std::string("bnorm: dx") + bad.message);
        k.expect_rejected(
            [&] { k.bn.backward(k.saved, k.dy, k.dys.view(1, kShape, kContiguous)); },
            "bnorm: dx partially overlaps dy: expected dx to share no element with dy, or to be "
            "exactly dy (same data, extents and strides) to run in place; got dx at +1 elements "
            "from dy, dx strides [60, 20, 5, 1], dy strides [60, 20, 5, 1]");
        k.expect_rejected(
            [&] { k.bn.backward(k.saved, k.dy, k.xs.view(1, kShape, kContiguous)); },
            "bnorm: dx partially overlaps the forward's x: expected dx to share no element with "
            "the forward's x, or to be exactly the forward's x (same data, extents and strides) "
            "to run in place; got dx at +1 elements from the forward's x, dx strides [60, 20, 5, "
            "1], the forward's x strides [60, 20, 5, 1]");
        const Array<T> w = k.bn.weight();
        k.bn.weight().resize(4);
        k.expect_rejected([&] { k.bn.backward(k.saved, k.dy, k.dx); },
                          "bnorm: weight has 4 elements, expected 3 (num_features)");
        k.bn.weight() = w;
        // A Saved from an in-place forward.
        Storage<T> ip(120, 91);
        const auto saved_in =
            k.bn.forward(ip.view(0, kShape, kContiguous), ip.view(0, kShape, kContiguous));
        k.expect_rejected(
            [&] { k.bn.backward(saved_in, k.dy, k.dx); },
            "bnorm: saved comes from a forward that ran in place (y was x) and overwrote the x "
            "that backward needs: expected the Saved of a forward with a separate y");
      }
}

// The free functions' own argument checks (sizes, eps, stats), forward and backward, training
// and inference: message, and every output byte and gradient unchanged.
TYPED_TEST(ModuleHardening, EveryFreeFunctionFailureLeavesOutputsUnchanged) {
  using T = TypeParam;
  Storage<T> xs(120, 92), dys(120, 93), out(120, 94);
  const NCHWView<const T> x = xs.view(0, kShape, kContiguous),
                          dy = dys.view(0, kShape, kContiguous);
  const NCHWView<T> o = out.view(0, kShape, kContiguous);
  const Array<T> w = random_array<T>(3, 95, 0.5, 1.5), b = random_array<T>(3, 96, -1, 1);
  const Array<T> rm = random_array<T>(3, 97, -1, 1), rv = random_array<T>(3, 98, 0.5, 2);
  const Array<T> w2 = random_array<T>(2, 99, 0.5, 1.5), none;
  auto stats = bnorm::fused::forward_training<T>(x, w, b, 1e-5, o);
  const auto cache = bnorm::staged::forward_training<T>(x, w, b, 1e-5, o);
  out.refill(100);
  Array<T> dw = Array<T>::Constant(3, 7), db = Array<T>::Constant(3, 8);
  auto expect = [&](const auto& f, const std::string& message) {
    const Storage<T> before = out, xs0 = xs, dys0 = dys;
    EXPECT_EQ(message_of(f), message);
    EXPECT_TRUE(out == before && xs == xs0 && dys == dys0) << message;
    EXPECT_TRUE((dw == 7).all() && (db == 8).all()) << message;
  };
  const std::string wrong_y =
      "bnorm: y has shape [2, 3, 4, 4], expected [2, 3, 4, 5] (the shape of x)";
  const NCHWView<T> o4 = out.view(0, {2, 3, 4, 4}, {48, 16, 4, 1});
  const NCHWView<const T> x1 = xs.view(0, {1, 3, 1, 1}, {3, 1, 1, 1});
  const NCHWView<T> o1 = out.view(0, {1, 3, 1, 1}, {3, 1, 1, 1});
  const std::string weight2 =
      "bnorm: weight has 2 elements, expected 3 (the channels of x, or 0 for no affine "
      "transform)";
  const std::string bias0 = "bnorm: bias has 0 elements, expected 3 (the channels of x, as weight)";
  const std::string eps_neg = "bnorm: eps must be finite and >= 0, got -1";
  const std::string eps_inf = "bnorm: eps must be finite and >= 0, got inf";
  const std::string one =
      "bnorm: Expected more than 1 value per channel when training, got input of shape [1, 3, 1, "
      "1]";
  const double inf = std::numeric_limits<double>::infinity();
  // Training forward, both variants.
  expect([&] { bnorm::fused::forward_training<T>(x, w, b, 1e-5, o4); }, wrong_y);
  expect([&] { bnorm::staged::forward_training<T>(x, w, b, 1e-5, o4); }, wrong_y);
  expect([&] { bnorm::fused::forward_training<T>(x, w2, b, 1e-5, o); }, weight2);
  expect([&] { bnorm::staged::forward_training<T>(x, w, none, 1e-5, o); }, bias0);
  expect([&] { bnorm::fused::forward_training<T>(x, w, b, -1, o); }, eps_neg);
  expect([&] { bnorm::staged::forward_training<T>(x, w, b, inf, o); }, eps_inf);
  expect([&] { bnorm::fused::forward_training<T>(x1, w, b, 1e-5, o1); }, one);
  expect([&] { bnorm::staged::forward_training<T>(x1, w, b, 1e-5, o1); }, one);
  // Inference forward, both variants.
  expect([&] { bnorm::fused::forward_inference<T>(x, w, b, rm, rv, 1e-5, o4); }, wrong_y);
  expect([&] { bnorm::staged::forward_inference<T>(x, w2, b, rm, rv, 1e-5, o); }, weight2);
  expect([&] { bnorm::fused::forward_inference<T>(x, w, b, w2, rv, 1e-5, o); },
         "bnorm: running_mean has 2 elements, expected 3 (the channels of x)");
  expect([&] { bnorm::staged::forward_inference<T>(x, w, b, rm, w2, 1e-5, o); },
         "bnorm: running_var has 2 elements, expected 3 (the channels of x)");
  expect([&] { bnorm::staged::forward_inference<T>(x, w, b, rm, rv, -1, o); }, eps_neg);
  // Backward, training.
  const NCHWView<const T> dy4 = dys.view(0, {2, 3, 4, 4}, {48, 16, 4, 1});
  expect([&] { bnorm::fused::backward<T>(x, dy4, w, stats, o, dw, db); },
         "bnorm: dy has shape [2, 3, 4, 4], expected [2, 3, 4, 5] (the shape of x)");
  expect([&] { bnorm::fused::backward<T>(x, dy, w, stats, o4, dw, db); },
         "bnorm: dx has shape [2, 3, 4, 4], expected [2, 3, 4, 5] (the shape of x)");
  expect([&] { bnorm::fused::backward<T>(x, dy, w2, stats, o, dw, db); },
         "bnorm: weight has 2 elements, expected 3 (the channels of x)");
  auto bad = stats;
  bad.mean.resize(2);
  expect([&] { bnorm::fused::backward<T>(x, dy, w, bad, o, dw, db); },
         "bnorm: stats.mean has 2 elements, expected 3 (the channels of x)");
  bad = stats;
  bad.count = 41;
  expect([&] { bnorm::fused::backward<T>(x, dy, w, bad, o, dw, db); },
         "bnorm: stats.count is 41, expected 40 (N*H*W of x)");
  expect([&] { bnorm::staged::backward<T>(cache, dy4, o4, dw, db); },
         "bnorm: dy has shape [2, 3, 4, 4], expected [2, 3, 4, 5] (the shape of the forward's x)");
  expect([&] { bnorm::staged::backward<T>(cache, dy, o4, dw, db); },
         "bnorm: dx has shape [2, 3, 4, 4], expected [2, 3, 4, 5] (the shape of dy)");
  // Backward, inference.
  expect([&] { bnorm::fused::backward_inference<T>(x, dy, w, rm, w2, 1e-5, o, dw, db); },
         "bnorm: running_var has 2 elements, expected 3 (the channels of x)");
  expect([&] { bnorm::fused::backward_inference<T>(x, dy, w, rm, rv, std::nan(""), o, dw, db); },
         "bnorm: eps must be finite and >= 0, got nan");
  expect([&] { bnorm::fused::backward_inference<T>(x, dy4, w, rm, rv, 1e-5, o, dw, db); },
         "bnorm: dy has shape [2, 3, 4, 4], expected [2, 3, 4, 5] (the shape of x)");
}

}  // namespace
}  // namespace bnorm_test
