// BNORM_NO_STAGED: a translation unit that leaves the staged variant out. It is linked into the
// same test binary as the others, which use the full BatchNorm2d, so it also shows that the two
// kinds of translation unit coexist in one program.
#define BNORM_NO_STAGED

#include <type_traits>

#include "test_support.hpp"

#ifdef EIGEN_CXX11_TENSOR_TENSOR_H
#error "BNORM_NO_STAGED: bnorm.hpp must not include Eigen's Tensor module"
#endif

namespace bnorm_test {
namespace {

static_assert(std::is_same_v<bnorm::BatchNorm2d<float>, bnorm::no_staged::BatchNorm2d<float>>,
              "without the staged variant BatchNorm2d lives in the inline namespace no_staged");
static_assert(!bnorm::detail::StagedBackend<double>::available);
static_assert(std::is_same_v<bnorm::detail::StagedBackend<double>,
                             bnorm::detail::no_staged::StagedBackend<double>>,
              "the stub has a name of its own too");

template <class T>
class NoStaged : public ::testing::Test {};
TYPED_TEST_SUITE(NoStaged, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(NoStaged, FusedMatchesTheReference) {
  using T = TypeParam;
  const Shape s{3, 4, 5, 7};
  const std::vector<T> xv = random_values<T>(s, 31, 2.0), dyv = random_values<T>(s, 32);
  Buffer<T> x(s), dy(s), y(s, Layout::channels_last), dx(s, Layout::padded_rows);
  x.set(xv);
  dy.set(dyv);
  bnorm::BatchNorm2d<T> bn(s[1]);
  bn.weight() = random_array<T>(s[1], 33, 0.5, 2.0);
  bn.bias() = random_array<T>(s[1], 34, -1.0, 1.0);
  const auto saved = bn.forward(x.cview(), y.view());
  bn.backward(saved, dy.cview(), dx.view());
  const Reference r = reference<T>(s, xv, dyv, bn.weight(), bn.bias(), bn.options().eps);
  EXPECT_LE(rel_error(y.values(), r.y), tolerance<T>());
  EXPECT_LE(rel_error(dx.values(), r.dx), tolerance<T>());
  EXPECT_LE(rel_error(bn.weight_grad(), r.dweight), tolerance<T>());
  EXPECT_LE(rel_error(bn.bias_grad(), r.dbias), tolerance<T>());
  EXPECT_EQ(bn.num_batches_tracked(), 1);

  bn.eval();  // the eval path too
  bn.forward(x.cview(), y.view());
  EXPECT_EQ(dx.padding_changed(), 0);
}

TYPED_TEST(NoStaged, StagedVariantIsRejectedAtConstruction) {
  bnorm::Options options;
  options.variant = bnorm::Variant::staged;
  try {
    bnorm::BatchNorm2d<TypeParam> bn(3, options);
    FAIL() << "expected bnorm::invalid_argument";
  } catch (const bnorm::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "bnorm: options.variant is staged, but this translation unit was compiled with "
                 "BNORM_NO_STAGED, which leaves the staged variant out (expected "
                 "Variant::fused)");
  }
}

}  // namespace
}  // namespace bnorm_test
