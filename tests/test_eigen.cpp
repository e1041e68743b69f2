// bnorm::nchw_view over Eigen::Tensor and Eigen::TensorMap: the view aliases the tensor's memory
// element for element, constness follows the tensor, temporaries are refused, and BatchNorm2d
// over the views matches the long-double reference. ColMajor and wrong ranks are compile errors,
// checked by the ctests eigen.compile_error.* (tests/compile_fail/eigen_layout.cpp).
#include <bnorm/eigen.hpp>

#include <type_traits>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using RowMajor4 = Eigen::Tensor<T, 4, Eigen::RowMajor>;

/// Whether bnorm::nchw_view accepts an argument of type A.
template <class A, class = void>
struct accepts : std::false_type {};
template <class A>
struct accepts<A, std::void_t<decltype(bnorm::nchw_view(std::declval<A>()))>> : std::true_type {};

static_assert(accepts<RowMajor4<float>&>::value);
static_assert(accepts<const RowMajor4<float>&>::value);
static_assert(!accepts<RowMajor4<float>>::value, "a temporary tensor would dangle");
static_assert(!accepts<const RowMajor4<float>&&>::value, "a temporary tensor would dangle");
static_assert(accepts<Eigen::TensorMap<RowMajor4<float>>>::value, "a map is a pointer: fine");
static_assert(std::is_same_v<decltype(bnorm::nchw_view(std::declval<RowMajor4<float>&>())),
                             bnorm::NCHWView<float>>);
static_assert(std::is_same_v<decltype(bnorm::nchw_view(std::declval<const RowMajor4<float>&>())),
                             bnorm::NCHWView<const float>>);
static_assert(
    std::is_same_v<decltype(bnorm::nchw_view(std::declval<Eigen::TensorMap<RowMajor4<double>>>())),
                   bnorm::NCHWView<double>>);
static_assert(std::is_same_v<
              decltype(bnorm::nchw_view(std::declval<Eigen::TensorMap<const RowMajor4<double>>>())),
              bnorm::NCHWView<const double>>);

template <class T>
RowMajor4<T> random_tensor(const Shape& s, std::uint64_t seed) {
  RowMajor4<T> t(s[0], s[1], s[2], s[3]);
  const std::vector<T> v = random_values<T>(s, seed, 3.0, 2.0);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

/// Every element of the view is the tensor's element with the same indices, at the same address.
template <class V, class Tensor>
void expect_aliases(const V& view, Tensor& t) {
  ASSERT_EQ(view.n(), t.dimension(0));
  ASSERT_EQ(view.c(), t.dimension(1));
  ASSERT_EQ(view.h(), t.dimension(2));
  ASSERT_EQ(view.w(), t.dimension(3));
  EXPECT_TRUE(view.is_contiguous());
  EXPECT_EQ(view.data(), t.data());
  for (index_t n = 0; n < view.n(); ++n)
    for (index_t c = 0; c < view.c(); ++c)
      for (index_t h = 0; h < view.h(); ++h)
        for (index_t w = 0; w < view.w(); ++w) ASSERT_EQ(&view(n, c, h, w), &t(n, c, h, w));
}

template <class T>
class EigenInterop : public ::testing::Test {};
TYPED_TEST_SUITE(EigenInterop, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(EigenInterop, TensorViewAliasesTheTensor) {
  using T = TypeParam;
  RowMajor4<T> t = random_tensor<T>({2, 3, 4, 5}, 11);
  const bnorm::NCHWView<T> v = bnorm::nchw_view(t);
  expect_aliases(v, t);
  EXPECT_EQ(v.strides(), (Shape{60, 20, 5, 1}));
  v(1, 2, 3, 4) = T(7.5);  // writes through to the tensor
  EXPECT_EQ(t(1, 2, 3, 4), T(7.5));

  const RowMajor4<T>& ct = t;
  expect_aliases(bnorm::nchw_view(ct), ct);
}

TYPED_TEST(EigenInterop, TensorMapViewsMutableAndConst) {
  using T = TypeParam;
  std::vector<T> storage = random_values<T>({3, 2, 5, 4}, 12);
  Eigen::TensorMap<RowMajor4<T>> map(storage.data(), 3, 2, 5, 4);
  expect_aliases(bnorm::nchw_view(map), map);
  bnorm::nchw_view(map)(2, 1, 4, 3) = T(-1.25);
  EXPECT_EQ(storage.back(), T(-1.25));

  Eigen::TensorMap<const RowMajor4<T>> cmap(storage.data(), 3, 2, 5, 4);
  const bnorm::NCHWView<const T> cv = bnorm::nchw_view(cmap);
  EXPECT_EQ(cv.data(), storage.data());
  EXPECT_EQ(cv.extents(), (Shape{3, 2, 5, 4}));
}

TYPED_TEST(EigenInterop, AnyIndexTypeAndEmptyTensors) {
  using T = TypeParam;
  Eigen::Tensor<T, 4, Eigen::RowMajor, int> small(1, 2, 3, 4);
  small.setConstant(T(2));
  expect_aliases(bnorm::nchw_view(small), small);

  RowMajor4<T> empty(0, 3, 4, 5);
  const bnorm::NCHWView<T> v = bnorm::nchw_view(empty);
  EXPECT_EQ(v.extents(), (Shape{0, 3, 4, 5}));
  EXPECT_TRUE(v.empty());
}

// BatchNorm2d run on the tensors through the adapters: y, dx and the parameter gradients match
// the long-double reference computed from the same values.
TYPED_TEST(EigenInterop, BatchNormOverTensorsMatchesTheReference) {
  using T = TypeParam;
  const Shape s{4, 3, 5, 6};
  const RowMajor4<T> x = random_tensor<T>(s, 21), dy = random_tensor<T>(s, 22);
  RowMajor4<T> y(s[0], s[1], s[2], s[3]), dx(s[0], s[1], s[2], s[3]);
  const std::vector<T> xv(x.data(), x.data() + x.size()), dyv(dy.data(), dy.data() + dy.size());
  for (const auto variant : {bnorm::Variant::fused, bnorm::Variant::staged}) {
    bnorm::Options options;
    options.variant = variant;
    bnorm::BatchNorm2d<T> bn(s[1], options);
    bn.weight() = random_array<T>(s[1], 23, 0.5, 2.0);
    bn.bias() = random_array<T>(s[1], 24, -1.0, 1.0);
    const auto saved = bn.forward(bnorm::nchw_view(x), bnorm::nchw_view(y));
    bn.backward(saved, bnorm::nchw_view(dy), bnorm::nchw_view(dx));
    const Reference r = reference<T>(s, xv, dyv, bn.weight(), bn.bias(), options.eps);
    const std::vector<T> yv(y.data(), y.data() + y.size()), dxv(dx.data(), dx.data() + dx.size());
    EXPECT_LE(rel_error(yv, r.y), tolerance<T>()) << variant;
    EXPECT_LE(rel_error(dxv, r.dx), tolerance<T>()) << variant;
    EXPECT_LE(rel_error(bn.weight_grad(), r.dweight), tolerance<T>()) << variant;
    EXPECT_LE(rel_error(bn.bias_grad(), r.dbias), tolerance<T>()) << variant;
  }
}

}  // namespace
}  // namespace bnorm_test
