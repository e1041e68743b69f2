// Fused activation and residual (Options::activation, forward(x, residual, y), backward with
// dresidual): both variants in every layout against long-double loops; the fused bits against
// plain BatchNorm followed by the activation written out here; the staged Add and ReLU nodes
// and the whole composition by finite differences; in-place calls; other ranks; the errors.
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

// Finite differences of the staged nodes' local backward (step 10 Add, step 11 ReLU), and of
// the whole staged composition L = sum(w * y) in x and r, away from ReLU's kink.
TEST(ActivationStaged, NodesAndCompositionMatchFiniteDifferences) {
  using bnorm::staged::Tensor4;
  namespace nodes = bnorm::staged::nodes;
  const Shape s{2, 3, 4, 5};
  const auto tv = random_values<double>(s, 51), dv = random_values<double>(s, 52);
  Tensor4<double> t(2, 3, 4, 5), dout(2, 3, 4, 5);
  std::copy(tv.begin(), tv.end(), t.data());
  std::copy(dv.begin(), dv.end(), dout.data());
  const Tensor4<double> din = nodes::Relu::backward<double>(t, dout);
  const double h = 1e-6;
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    if (std::abs(t.data()[i]) < 1e-3) continue;
    Tensor4<double> up = t, down = t;
    up.data()[i] += h;
    down.data()[i] -= h;
    const Tensor4<double> fu = nodes::Relu::forward<double>(up),
                          fd = nodes::Relu::forward<double>(down);
    const double fdiff = (fu.data()[i] - fd.data()[i]) / (2 * h) * dout.data()[i];
    EXPECT_NEAR(din.data()[i], fdiff, 1e-8);
  }
  const auto [da, db] = nodes::Add::backward<double>(dout);
  for (Eigen::Index i = 0; i < t.size(); ++i) {
    EXPECT_EQ(da.data()[i], dout.data()[i]);  // d(t + r)/dt = d(t + r)/dr = 1
    EXPECT_EQ(db.data()[i], dout.data()[i]);
  }

  // the whole op: L(x, r) = sum dy * relu(BN(x) + r)
  const auto xv = random_values<double>(s, 53), rv = random_values<double>(s, 54),
             dyv = random_values<double>(s, 55);
  const Eigen::ArrayXd w = random_array<double>(3, 56, -2, 2),
                       b = random_array<double>(3, 57, -1, 1);
  auto loss = [&](const std::vector<double>& xs, const std::vector<double>& rs) {
    std::vector<double> y(xs.size());
    const bnorm::NCHWView<const double> xview(xs.data(), 2, 3, 4, 5), rview(rs.data(), 2, 3, 4, 5);
    bnorm::staged::forward_training<double, bnorm::NCHWView>(
        xview, &rview, w, b, 1e-5, bnorm::NCHWView<double>(y.data(), 2, 3, 4, 5), Activation::relu);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += dyv[i] * y[i];
    return l;
  };
  std::vector<double> y(xv.size()), dx(xv.size()), dr(xv.size());
  const bnorm::NCHWView<const double> xview(xv.data(), 2, 3, 4, 5), rview(rv.data(), 2, 3, 4, 5);
  const auto k = bnorm::staged::forward_training<double, bnorm::NCHWView>(
      xview, &rview, w, b, 1e-5, bnorm::NCHWView<double>(y.data(), 2, 3, 4, 5), Activation::relu);
  Eigen::ArrayXd dw, dbias;
  const bnorm::NCHWView<double> drv(dr.data(), 2, 3, 4, 5);
  bnorm::staged::backward<double, bnorm::NCHWView>(
      k, w, bnorm::NCHWView<const double>(dyv.data(), 2, 3, 4, 5),
      bnorm::NCHWView<double>(dx.data(), 2, 3, 4, 5), &drv, dw, dbias);
  const Tensor4<double>& z = k.pre_activation();
  double min_abs_z = 1e300;
  for (Eigen::Index i = 0; i < z.size(); ++i)
    min_abs_z = std::min(min_abs_z, std::abs(z.data()[i]));
  ASSERT_GT(min_abs_z, 1e-4) << "a value at the kink: pick another seed";
  for (std::size_t i = 0; i < xv.size(); ++i) {
    auto xu = xv, xd = xv, ru = rv, rd = rv;
    xu[i] += h;
    xd[i] -= h;
    ru[i] += h;
    rd[i] -= h;
    EXPECT_NEAR(dx[i], (loss(xu, rv) - loss(xd, rv)) / (2 * h), 1e-6) << i;
    EXPECT_NEAR(dr[i], (loss(xv, ru) - loss(xv, rd)) / (2 * h), 1e-6) << i;
  }
}

// BatchNorm1d and BatchNorm3d with ReLU and a residual, contiguous and channels-last: the bits
// of BatchNorm2d on the NCHW face of the same memory; a cropped rank-5 view (a copied face): the
// bits of the contiguous tensor.
TEST(ActivationRanks, OtherRanksGiveTheBitsOfTheNchwFace) {
  const index_t n = 2, c = 20, d = 3, h = 4, w = 5, l = d * h * w;
  const Shape face{n, c, d * h, w};
  const auto xv = random_values<float>(face, 61), rv = random_values<float>(face, 62),
             dyv = random_values<float>(face, 63);
  bnorm::Options o;
  o.activation = Activation::relu;
  using Out = std::array<std::vector<float>, 3>;  // y, dx, dresidual in memory order
  // forward(x, r, y) and backward(dy, dx, dr) of module m on views made by view(pointer)
  const auto run = [&](auto& m, const auto& view) {
    Out out{std::vector<float>(xv.size()), std::vector<float>(xv.size()),
            std::vector<float>(xv.size())};
    const auto cview = [&](const float* p) { return view(const_cast<float*>(p)); };
    const auto s = m.forward(cview(xv.data()), cview(rv.data()), view(out[0].data()));
    m.backward(s, cview(dyv.data()), view(out[1].data()), view(out[2].data()));
    return out;
  };
  for (bool last : {false, true}) {
    SCOPED_TRACE(last ? "channels-last" : "contiguous");
    bnorm::BatchNorm3d<float> bn3(c, o);
    bnorm::BatchNorm2d<float> bn2(c, o), flat(c, o);
    bnorm::BatchNorm1d<float> bn1(c, o);
    const Out r3 = run(bn3, [&](float* p) {
      return last ? bnorm::NCDHWView<float>::channels_last(p, n, c, d, h, w)
                  : bnorm::NCDHWView<float>(p, n, c, d, h, w);
    });
    const Out r2 = run(bn2, [&](float* p) {
      return last ? bnorm::NCHWView<float>::channels_last(p, n, c, d * h, w)
                  : bnorm::NCHWView<float>(p, n, c, d * h, w);
    });
    const Out r1 = run(bn1, [&](float* p) {
      return last ? bnorm::NCLView<float>::channels_last(p, n, c, l)
                  : bnorm::NCLView<float>(p, n, c, l);
    });
    const Out rf = run(flat, [&](float* p) {
      return last ? bnorm::NCHWView<float>::channels_last(p, n, c, 1, l)
                  : bnorm::NCHWView<float>(p, n, c, 1, l);
    });
    for (std::size_t k = 0; k < 3; ++k) {
      EXPECT_TRUE(same_bits(r3[k], r2[k])) << k;
      EXPECT_TRUE(same_bits(r1[k], rf[k])) << k;
    }
  }

  // A crop of a (d + 1, h + 1, w + 1) volume: D and H do not merge, the face is a copy.
  const std::array<index_t, 5> ext{n, c, d, h, w},
      strides = bnorm::NCDHWView<float>::contiguous_strides({n, c, d + 1, h + 1, w + 1});
  const auto big = static_cast<std::size_t>(n * c * (d + 1) * (h + 1) * (w + 1));
  std::vector<float> xb(big, 0.f), rb(big, 0.f), dyb(big, 0.f), yb(big), dxb(big), drb(big);
  const auto cropped = [&](float* p) { return bnorm::NCDHWView<float>(p, ext, strides); };
  // logical element i of the contiguous tensor in a cropped view, and back
  const auto each = [&](const bnorm::NCDHWView<float>& v, const auto& f) {
    std::size_t i = 0;
    for (index_t a = 0; a < n; ++a)
      for (index_t b = 0; b < c; ++b)
        for (index_t e = 0; e < d; ++e)
          for (index_t g = 0; g < h; ++g)
            for (index_t k = 0; k < w; ++k) f(v(a, b, e, g, k), i++);
  };
  each(cropped(xb.data()), [&](float& to, std::size_t i) { to = xv[i]; });
  each(cropped(rb.data()), [&](float& to, std::size_t i) { to = rv[i]; });
  each(cropped(dyb.data()), [&](float& to, std::size_t i) { to = dyv[i]; });
  bnorm::BatchNorm3d<float> crop(c, o), plain(c, o);
  const auto sc =
      crop.forward(bnorm::NCDHWView<const float>(cropped(xb.data())),
                   bnorm::NCDHWView<const float>(cropped(rb.data())), cropped(yb.data()));
  crop.backward(sc, bnorm::NCDHWView<const float>(cropped(dyb.data())), cropped(dxb.data()),
                cropped(drb.data()));
  const Out rp = run(plain, [&](float* p) { return bnorm::NCDHWView<float>(p, n, c, d, h, w); });
  std::array<std::vector<float>, 3> got;
  for (std::size_t k = 0; k < 3; ++k) {
    got[k].resize(xv.size());
    each(cropped((k == 0   ? yb
                  : k == 1 ? dxb
                           : drb)
                     .data()),
         [&](float& from, std::size_t i) { got[k][i] = from; });
    EXPECT_TRUE(same_bits(got[k], rp[k])) << "cropped " << k;
  }
}

TEST(ActivationErrors, ClearMessagesAndNothingChanged) {
  const Shape s{2, 3, 4, 5};
  Buffer<float> x(s), r(s), y(s), dy(s), dx(s), dr(s), other({2, 3, 4, 6});
  x.set(random_values<float>(s, 71));
  r.set(random_values<float>(s, 72));
  dy.set(random_values<float>(s, 73));
  for (bnorm::Variant variant : kVariants) {
    SCOPED_TRACE(variant);
    bnorm::Options o;
    o.activation = Activation::relu;
    o.variant = variant;
    bnorm::BatchNorm2d<float> bn(3, o);
    expect_rejected<float>(
        bn, y, dx, [&] { bn.forward(x.cview(), other.cview(), y.view()); },
        "bnorm: residual has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of x)");
    const auto plain = bn.forward(x.cview(), y.view());
    expect_rejected<float>(
        bn, y, dx, [&] { bn.backward(plain, dy.cview(), dx.view(), dr.view()); },
        "bnorm: dresidual given, but the forward had no residual: expected the Saved of "
        "forward(x, residual, y)");
    const auto saved = bn.forward(x.cview(), r.cview(), y.view());
    expect_rejected<float>(
        bn, y, dx, [&] { bn.backward(saved, dy.cview(), dx.view(), dx.view()); },
        "bnorm: dresidual and dx are the same view, expected two outputs that share no element");
    expect_rejected<float>(
        bn, y, dx,
        [&] {
          bn.backward(saved, dy.cview(), dx.view(),
                      bnorm::NCHWView<float>(const_cast<float*>(x.cview().data()), 2, 3, 4, 5));
        },
        "bnorm: dresidual is the forward's x or y, which backward reads: expected a view of its "
        "own");
    expect_rejected<float>(
        bn, y, dx, [&] { bn.backward(saved, dy.cview(), dx.view(), other.view()); },
        "bnorm: dresidual has shape [2, 3, 4, 6], expected [2, 3, 4, 5] (the shape of dy)");
  }
}

}  // namespace
}  // namespace bnorm_test

namespace bnorm_test {
namespace {

// An empty view with huge extents (W = 0, N = 2^40): nothing to store, so every staged forward
// returns at once (a loop over N * C * H would not finish).
TEST(ActivationStaged, EmptyViewsWithHugeExtentsReturnAtOnce) {
  double d = 0;
  const index_t n = index_t{1} << 40;
  const bnorm::NCHWView<const double> x(&d, n, 4, 2, 0), r(&d, n, 4, 2, 0);
  const bnorm::NCHWView<double> y(&d, n, 4, 2, 0);
  const Eigen::ArrayXd w = Eigen::ArrayXd::Ones(4), b = Eigen::ArrayXd::Zero(4);
  const auto k1 = bnorm::staged::forward_inference(x, w, b, b, w, 1e-5, y);
  const auto k2 = bnorm::staged::forward_training<double, bnorm::NCHWView>(x, &r, w, b, 1e-5, y,
                                                                           Activation::relu);
  const auto k3 = bnorm::staged::forward_inference<double, bnorm::NCHWView>(x, &r, w, b, b, w, 1e-5,
                                                                            y, Activation::relu);
  EXPECT_EQ(k1.out.size() + k2.output().size() + k3.output().size(), 0);
  EXPECT_TRUE(k2.residual && k3.activation == Activation::relu);
}

}  // namespace
}  // namespace bnorm_test
