// Fused activation and residual (Options::activation, forward(x, residual, y), backward with
// dresidual): both variants in every layout against long-double loops; the fused bits against
// plain BatchNorm followed by the activation written out here; torch.relu's special values;
// in-place calls. (The staged Add and ReLU nodes by finite differences: test_staged.cpp; other
// ranks: test_other_ranks.cpp; the errors: test_errors.cpp.)
#include "test_support.hpp"

namespace bnorm_test {
namespace {

using bnorm::Activation;

template <class T>
class ActivationTest : public ::testing::Test {};
TYPED_TEST_SUITE(ActivationTest, FloatTypes);

// relu(z) = z < 0 ? 0 : z, torch.relu's (NaN and -0 pass)
template <class T>
T relu(T z) {
  return z < T(0) ? T(0) : z;
}

// One composition: act(BN(x) + r), with or without r.
struct ActCase {
  Activation act;
  bool residual;
};
constexpr ActCase kActCases[] = {
    {Activation::relu, false}, {Activation::relu, true}, {Activation::none, true}};
std::string name(const ActCase& k) {
  return std::string(k.act == Activation::relu ? "relu" : "none") + (k.residual ? "+r" : "");
}

constexpr Shape kActShapes[] = {{3, 5, 7, 9}, {2, 20, 4, 4}, {4, 3, 1, 1}};

TYPED_TEST(ActivationTest, TrainingMatchesLongDoubleLoops) {
  using T = TypeParam;
  for (const Shape& s : kActShapes)
    for (const ActCase& k : kActCases)
      for (Layout layout : kAllLayouts)
        for (bnorm::Variant variant : kVariants) {
          SCOPED_TRACE(to_string(s) + " " + name(k) + " " + name(layout));
          const auto xv = random_values<T>(s, 11), rv = random_values<T>(s, 12),
                     dyv = random_values<T>(s, 13);
          Buffer<T> x(s, layout), r(s, layout), y(s, layout), dy(s, layout), dx(s, layout),
              dr(s, layout);
          x.set(xv);
          r.set(rv);
          dy.set(dyv);
          bnorm::Options o;
          o.activation = k.act;
          o.variant = variant;
          bnorm::BatchNorm2d<T> bn(s[1], o);
          bn.weight() = random_array<T>(s[1], 14, -2, 2);
          bn.bias() = random_array<T>(s[1], 15, -1, 1);
          const auto saved = k.residual ? bn.forward(x.cview(), r.cview(), y.view())
                                        : bn.forward(x.cview(), y.view());
          if (k.residual)
            bn.backward(saved, dy.cview(), dx.view(), dr.view());
          else
            bn.backward(saved, dy.cview(), dx.view());

          // z = BN(x) + r, y = act(z); g = dL/dz = dy where the activation passed
          const Reference bnr = reference<T>(s, xv, dyv, bn.weight(), bn.bias(), 1e-5);
          std::vector<long double> yref(xv.size());
          std::vector<T> g(xv.size());
          index_t clipped = 0;
          for (std::size_t i = 0; i < xv.size(); ++i) {
            const long double z = bnr.y[i] + (k.residual ? rv[i] : 0);
            const bool pass = k.act == Activation::none || z > 0;
            yref[i] = pass ? z : 0;
            g[i] = pass ? dyv[i] : T(0);
            clipped += !pass;
          }
          if (k.act == Activation::relu) {
            EXPECT_GT(clipped, 0);
          }
          const Reference gr = reference<T>(s, xv, g, bn.weight(), bn.bias(), 1e-5);
          EXPECT_LE(rel_error(y.values(), yref), tolerance<T>());
          EXPECT_LE(rel_error(dx.values(), gr.dx), tolerance<T>());
          EXPECT_LE(rel_error(bn.weight_grad(), gr.dweight), tolerance<T>());
          EXPECT_LE(rel_error(bn.bias_grad(), gr.dbias), tolerance<T>());
          if (k.residual) {
            EXPECT_TRUE(same_bits(dr.values(), g)) << "dresidual is the gated dy";
          }
          EXPECT_EQ(y.padding_changed() + dx.padding_changed() + dr.padding_changed(), 0);
        }
}

TYPED_TEST(ActivationTest, EvalMatchesLongDoubleLoops) {
  using T = TypeParam;
  const Shape s{3, 17, 5, 6};
  for (const ActCase& k : kActCases)
    for (Layout layout : {Layout::nchw, Layout::channels_last, Layout::strided})
      for (bnorm::Variant variant : kVariants) {
        SCOPED_TRACE(name(k) + " " + name(layout));
        const auto xv = random_values<T>(s, 21), rv = random_values<T>(s, 22),
                   dyv = random_values<T>(s, 23);
        Buffer<T> x(s, layout), r(s, layout), y(s, layout), dy(s, layout), dx(s, layout),
            dr(s, layout);
        x.set(xv);
        r.set(rv);
        dy.set(dyv);
        bnorm::Options o;
        o.activation = k.act;
        o.variant = variant;
        bnorm::BatchNorm2d<T> bn(s[1], o);
        bn.weight() = random_array<T>(s[1], 24, -2, 2);
        bn.bias() = random_array<T>(s[1], 25, -1, 1);
        bn.running_mean() = random_array<T>(s[1], 26, -1, 1);
        bn.running_var() = random_array<T>(s[1], 27, 0.5, 2);
        bn.eval();
        const auto saved = k.residual ? bn.forward(x.cview(), r.cview(), y.view())
                                      : bn.forward(x.cview(), y.view());
        if (k.residual)
          bn.backward(saved, dy.cview(), dx.view(), dr.view());
        else
          bn.backward(saved, dy.cview(), dx.view());
        std::vector<long double> yref(xv.size()), dxref(xv.size());
        const index_t plane = s[2] * s[3];
        for (std::size_t i = 0; i < xv.size(); ++i) {
          const auto c = (static_cast<index_t>(i) / plane) % s[1];
          const long double scale =
              bn.weight()[c] / std::sqrt(static_cast<long double>(bn.running_var()[c]) + 1e-5L);
          const long double z = (xv[i] - static_cast<long double>(bn.running_mean()[c])) * scale +
                                bn.bias()[c] + (k.residual ? rv[i] : 0);
          const bool pass = k.act == Activation::none || z > 0;
          yref[i] = pass ? z : 0;
          dxref[i] = pass ? dyv[i] * scale : 0;
        }
        EXPECT_LE(rel_error(y.values(), yref), tolerance<T>());
        EXPECT_LE(rel_error(dx.values(), dxref), tolerance<T>());
      }
}

// The fused epilogue is the plain forward's formula with the activation applied to its value,
// and the fused backward (mask recomputed from x without a residual, read from y with one) is
// the plain backward of the gated dy: the same bits as BatchNorm alone with the activation
// written out here, in every layout, train and eval. The weight changes between forward and
// backward: the mask is the forward's, the backward's weight the module's as it is then.
TYPED_TEST(ActivationTest, FusedBitsAreBatchNormThenActivation) {
  using T = TypeParam;
  for (const Shape& s : {Shape{2, 33, 8, 8}, Shape{3, 5, 7, 9}, Shape{2, 20, 3, 3}})
    for (Layout layout : kAllLayouts)
      for (bool train : {true, false})
        for (bool residual : {false, true}) {
          SCOPED_TRACE(to_string(s) + " " + name(layout) + (train ? " train" : " eval") +
                       (residual ? " +r" : ""));
          const auto xv = random_values<T>(s, 31), rv = random_values<T>(s, 32),
                     dyv = random_values<T>(s, 33);
          Buffer<T> x(s, layout), r(s, layout), y(s, layout), plain(s, layout), dy(s, layout),
              dx(s, layout), dx_plain(s, layout), g(s, layout), dr(s, layout);
          x.set(xv);
          r.set(rv);
          dy.set(dyv);
          bnorm::Options o;
          o.activation = Activation::relu;
          bnorm::BatchNorm2d<T> bn(s[1], o), ref(s[1]);
          for (auto* m : {&bn, &ref}) {
            m->weight() = random_array<T>(s[1], 34, -2, 2);
            m->bias() = random_array<T>(s[1], 35, -1, 1);
            m->running_mean() = random_array<T>(s[1], 36, -1, 1);
            m->running_var() = random_array<T>(s[1], 37, 0.5, 2);
            m->train(train);
          }
          const auto saved = residual ? bn.forward(x.cview(), r.cview(), y.view())
                                      : bn.forward(x.cview(), y.view());
          const auto saved_plain = ref.forward(x.cview(), plain.view());
          std::vector<T> expect = plain.values(), gate(xv.size());
          for (std::size_t i = 0; i < expect.size(); ++i) {
            expect[i] = relu(residual ? T(expect[i] + rv[i]) : expect[i]);
            gate[i] = expect[i] <= 0 ? T(0) : dyv[i];
          }
          EXPECT_TRUE(same_bits(y.values(), expect));
          for (auto* m : {&bn, &ref}) m->weight() = -m->weight();
          if (residual) {
            bn.backward(saved, dy.cview(), dx.view(), dr.view());
            EXPECT_TRUE(same_bits(dr.values(), gate));
          } else {
            bn.backward(saved, dy.cview(), dx.view());
          }
          g.set(gate);
          ref.backward(saved_plain, g.cview(), dx_plain.view());
          EXPECT_TRUE(same_bits(dx.values(), dx_plain.values()));
          EXPECT_TRUE(
              same_bits(std::vector<T>(bn.weight_grad().data(), bn.weight_grad().data() + s[1]),
                        std::vector<T>(ref.weight_grad().data(), ref.weight_grad().data() + s[1])));
          EXPECT_TRUE(
              same_bits(std::vector<T>(bn.bias_grad().data(), bn.bias_grad().data() + s[1]),
                        std::vector<T>(ref.bias_grad().data(), ref.bias_grad().data() + s[1])));
        }
}

// ReLU's special values as torch.relu gives them (libtorch 1.13.1: relu(-0.0) keeps the sign
// bit): -0 and NaN pass, -inf becomes 0; without an activation -inf stays. Eval with mean 0,
// variance 1, eps 0, weight 1 and bias -0 makes z = x + -0 = x exactly, so y = relu(x) in every
// layout, both variants. (Random data never meets -0: FusedBitsAreBatchNormThenActivation
// cannot tell z < 0 from z <= 0.)
TYPED_TEST(ActivationTest, SignedZeroNanAndInfinityAsTorchRelu) {
  using T = TypeParam;
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> special = {T(-0.0), T(0), nan, -inf, inf, T(-1.5), T(2.5)};
  const Shape s{3, 19, 2, 3};  // 19 channels: pack paths and their scalar tails
  std::vector<T> xv(static_cast<std::size_t>(count(s)));
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = special[(i * 5 + i / 7) % special.size()];
  for (auto variant : {bnorm::Variant::fused, bnorm::Variant::staged})
    for (Activation act : {Activation::relu, Activation::none})
      for (Layout layout : kAllLayouts) {
        SCOPED_TRACE(std::string(variant == bnorm::Variant::fused ? "fused " : "staged ") +
                     (act == Activation::relu ? "relu " : "none ") + name(layout));
        Buffer<T> x(s, layout), y(s, layout);
        x.set(xv);
        bnorm::Options o;
        o.eps = 0;
        o.activation = act;
        o.variant = variant;
        bnorm::BatchNorm2d<T> bn(s[1], o);
        bn.bias().setConstant(T(-0.0));
        bn.eval();
        bn.forward(x.cview(), y.view());
        std::vector<T> expect = xv;
        for (auto& v : expect)
          if (act == Activation::relu && v < T(0)) v = T(0);
        EXPECT_TRUE(same_bits(y.values(), expect));
      }
}

// In place: y over the residual, dresidual over dy, dx over dy, and dx over x (the gate then
// needs a buffer of its own): the bits of out of place.
TYPED_TEST(ActivationTest, InPlaceGivesTheSameBits) {
  using T = TypeParam;
  const Shape s{2, 18, 5, 5};
  const auto xv = random_values<T>(s, 41), rv = random_values<T>(s, 42),
             dyv = random_values<T>(s, 43);
  bnorm::Options o;
  o.activation = Activation::relu;
  auto run = [&](int mode) {
    Buffer<T> x(s), r(s), y(s), dy(s), dx(s), dr(s);
    x.set(xv);
    r.set(rv);
    dy.set(dyv);
    bnorm::BatchNorm2d<T> bn(s[1], o);
    const bnorm::NCHWView<T> yv = mode == 1 ? r.view() : y.view();
    const auto saved = bn.forward(x.cview(), r.cview(), yv);
    if (mode == 2) {  // dresidual over dy, then dx separate
      bn.backward(saved, dy.cview(), dx.view(), dy.view());
      return std::make_pair(mode == 1 ? r.values() : y.values(), dx.values());
    }
    if (mode == 3) {  // dx over dy, no dresidual
      bn.backward(saved, dy.cview(), dy.view());
      return std::make_pair(y.values(), dy.values());
    }
    if (mode == 4) {  // dx over x
      bn.backward(saved, dy.cview(), x.view());
      return std::make_pair(y.values(), x.values());
    }
    bn.backward(saved, dy.cview(), dx.view(), dr.view());
    return std::make_pair(mode == 1 ? r.values() : y.values(), dx.values());
  };
  const auto ref = run(0);
  for (int mode = 1; mode <= 4; ++mode) {
    SCOPED_TRACE(mode);
    const auto got = run(mode);
    EXPECT_TRUE(same_bits(got.first, ref.first));
    EXPECT_TRUE(same_bits(got.second, ref.second));
  }
}

}  // namespace
}  // namespace bnorm_test
