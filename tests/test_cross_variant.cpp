// Staged vs fused on many shapes and every layout: outputs, saved statistics, running
// statistics and all three gradients, in training and in eval. Both are also held against the
// plain long-double reference in test_support.hpp.
#include "test_support.hpp"

namespace bnorm_test {
namespace {

// C != W everywhere; odd sizes; N = 1; H = W = 1 with N > 1; C >= 64.
const Shape kShapes[] = {
    {2, 3, 4, 5},   {1, 3, 5, 7}, {4, 5, 1, 1},   {3, 7, 2, 9},    {2, 64, 3, 5},  {1, 65, 7, 7},
    {5, 2, 3, 1},   {2, 4, 1, 3}, {8, 3, 7, 7},   {2, 16, 14, 14}, {1, 2, 9, 11},  {3, 1, 4, 6},
    {2, 128, 2, 3}, {4, 9, 5, 6}, {2, 3, 28, 28}, {1, 6, 13, 17},  {7, 5, 3, 2},   {2, 70, 1, 1},
    {16, 3, 1, 1},  {1, 3, 1, 8}, {3, 100, 2, 2}, {2, 2, 33, 1},   {1, 256, 2, 3},
};

template <class T>
struct Result {
  std::vector<T> y, dx;
  Eigen::Array<T, Eigen::Dynamic, 1> mean, invstd, dweight, dbias, running_mean, running_var;
};

// One training step (forward + backward), then one eval step, on module `bn` with x and dy
// laid out as `layout`. Returns the training step's results; `eval` gets the eval step's.
template <class T>
Result<T> run(bnorm::BatchNorm2d<T>& bn, const Shape& s, Layout layout, const std::vector<T>& x,
              const std::vector<T>& dy, Result<T>* eval) {
  Buffer<T> xb(s, layout), yb(s, layout), dyb(s, layout), dxb(s, layout);
  xb.set(x);
  dyb.set(dy);
  auto step = [&](Result<T>& r) {
    const auto saved = bn.forward(xb.cview(), yb.view());
    bn.backward(saved, dyb.cview(), dxb.view());
    r = {yb.values(),      dxb.values(),   saved.mean(),      saved.invstd(),
         bn.weight_grad(), bn.bias_grad(), bn.running_mean(), bn.running_var()};
    EXPECT_EQ(yb.padding_changed(), 0);
    EXPECT_EQ(dxb.padding_changed(), 0);
  };
  Result<T> train;
  bn.train();
  step(train);
  if (eval) {
    bn.eval();
    step(*eval);
  }
  return train;
}

template <class T>
void expect_close(const Result<T>& a, const Result<T>& b, double tol) {
  EXPECT_LE(rel_error(a.y, b.y), tol) << "y";
  EXPECT_LE(rel_error(a.dx, b.dx), tol) << "dx";
  EXPECT_LE(rel_error(a.mean, b.mean), tol) << "saved mean";
  EXPECT_LE(rel_error(a.invstd, b.invstd), tol) << "saved invstd";
  EXPECT_LE(rel_error(a.dweight, b.dweight), tol) << "dweight";
  EXPECT_LE(rel_error(a.dbias, b.dbias), tol) << "dbias";
  EXPECT_LE(rel_error(a.running_mean, b.running_mean), tol) << "running_mean";
  EXPECT_LE(rel_error(a.running_var, b.running_var), tol) << "running_var";
}

template <class T>
class CrossVariant : public ::testing::Test {};
TYPED_TEST_SUITE(CrossVariant, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(CrossVariant, StagedEqualsFusedOnEveryShapeAndLayout) {
  using T = TypeParam;
  std::uint64_t seed = 1000;
  double worst = 0;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(to_string(s));
    const auto x = random_values<T>(s, ++seed, 3.0, 2.0);
    const auto dy = random_values<T>(s, ++seed);
    const auto w = random_array<T>(s[1], ++seed, 0.5, 1.5),
               b = random_array<T>(s[1], ++seed, -1, 1);
    auto make = [&](bnorm::Variant v) {
      bnorm::BatchNorm2d<T> bn(s[1], {1e-5, 0.1, true, true, v});
      bn.weight() = w;
      bn.bias() = b;
      return bn;
    };
    auto staged_bn = make(bnorm::Variant::staged);
    Result<T> staged_eval;
    const Result<T> staged = run(staged_bn, s, Layout::nchw, x, dy, &staged_eval);
    for (Layout layout : kAllLayouts) {
      SCOPED_TRACE(name(layout));
      auto fused_bn = make(bnorm::Variant::fused);
      Result<T> fused_eval;
      const Result<T> fused = run(fused_bn, s, layout, x, dy, &fused_eval);
      {
        SCOPED_TRACE("train");
        expect_close(fused, staged, tolerance<T>());
      }
      {
        SCOPED_TRACE("eval");
        expect_close(fused_eval, staged_eval, tolerance<T>());
      }
      worst = std::max({worst, rel_error(fused.y, staged.y), rel_error(fused.dx, staged.dx),
                        rel_error(fused.dweight, staged.dweight),
                        rel_error(fused.dbias, staged.dbias)});
    }
  }
  std::printf("[ worst staged-vs-fused relative difference, %s: %.3g ]\n",
              std::is_same_v<T, float> ? "float" : "double", worst);
}

TYPED_TEST(CrossVariant, BothVariantsMatchTheLongDoubleReference) {
  using T = TypeParam;
  std::uint64_t seed = 2000;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(to_string(s));
    const auto x = random_values<T>(s, ++seed, 3.0, 2.0);
    const auto dy = random_values<T>(s, ++seed);
    const auto w = random_array<T>(s[1], ++seed, 0.5, 1.5),
               b = random_array<T>(s[1], ++seed, -1, 1);
    const Reference ref = reference(s, x, dy, w, b, 1e-5);
    for (auto variant : {bnorm::Variant::staged, bnorm::Variant::fused}) {
      SCOPED_TRACE(variant == bnorm::Variant::staged ? "staged" : "fused");
      bnorm::BatchNorm2d<T> bn(s[1], {1e-5, 0.1, true, true, variant});
      bn.weight() = w;
      bn.bias() = b;
      const Result<T> r = run<T>(bn, s, Layout::nchw, x, dy, nullptr);
      EXPECT_LE(rel_error(r.y, ref.y), tolerance<T>());
      EXPECT_LE(rel_error(r.dx, ref.dx), tolerance<T>());
      EXPECT_LE(rel_error(r.dweight, ref.dweight), tolerance<T>());
      EXPECT_LE(rel_error(r.dbias, ref.dbias), tolerance<T>());
      EXPECT_LE(rel_error(r.mean, ref.mean), tolerance<T>());
    }
  }
}

TYPED_TEST(CrossVariant, AffineFalseAndUntrackedAgree) {
  using T = TypeParam;
  const Shape s{3, 5, 4, 6};
  const auto x = random_values<T>(s, 31, -2.0, 0.5);
  const auto dy = random_values<T>(s, 32);
  for (bool affine : {false, true})
    for (bool track : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "affine " << affine << " track " << track);
      bnorm::BatchNorm2d<T> staged_bn(s[1],
                                      {1e-3, std::nullopt, affine, track, bnorm::Variant::staged});
      bnorm::BatchNorm2d<T> fused_bn(s[1],
                                     {1e-3, std::nullopt, affine, track, bnorm::Variant::fused});
      Result<T> se, fe;
      const Result<T> st = run(staged_bn, s, Layout::nchw, x, dy, &se);
      const Result<T> fu = run(fused_bn, s, Layout::channels_last, x, dy, &fe);
      expect_close(fu, st, tolerance<T>());
      expect_close(fe, se, tolerance<T>());
      EXPECT_EQ(fu.dweight.size(), affine ? s[1] : 0);
      EXPECT_EQ(fu.running_mean.size(), track ? s[1] : 0);
    }
}

}  // namespace
}  // namespace bnorm_test
