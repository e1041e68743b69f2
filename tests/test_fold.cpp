// fold_into (fold.hpp): an eval BatchNorm2d (a BatchNorm1d after a linear layer) folded into the
// convolution or linear layer before it. The folded layer against double loops of the layer
// followed by eval batch norm (and against the module's own eval forward); every error, with
// weight and bias left unchanged; folding in place through an Eigen::Map over the layer's own
// memory.
#include <bnorm/fold.hpp>

#include <cstdio>
#include <functional>
#include <utility>

#include "test_support.hpp"

namespace bnorm_test {
namespace fold_test {
namespace {

using Eigen::Dynamic;
template <class T>
using Mat = Eigen::Matrix<T, Dynamic, Dynamic, Eigen::RowMajor>;
template <class T>
using Array = Eigen::Array<T, Dynamic, 1>;

// The same shape and bits (a Matrix has no operator[] for same_bits).
template <class T>
bool same_matrix_bits(const Mat<T>& a, const Mat<T>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         same_bits(std::vector<T>(a.data(), a.data() + a.size()),
                   std::vector<T>(b.data(), b.data() + b.size()));
}

// The folded layer against the reference: relative to the largest |reference|.
template <class T>
double fold_tolerance() {
  return std::is_same_v<T, double> ? 1e-13 : 1e-5;
}

template <class T>
std::vector<T> uniform_values(std::size_t n, unsigned seed, double lo, double hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> uni(lo, hi);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(uni(gen));
  return v;
}
template <class T>
Array<T> uniform_array(index_t n, unsigned seed, double lo, double hi) {
  const std::vector<T> v = uniform_values<T>(static_cast<std::size_t>(n), seed, lo, hi);
  return Eigen::Map<const Array<T>>(v.data(), n);
}
template <class T>
Mat<T> uniform_matrix(index_t rows, index_t cols, unsigned seed) {
  const std::vector<T> v = uniform_values<T>(static_cast<std::size_t>(rows * cols), seed, -1, 1);
  return Eigen::Map<const Mat<T>>(v.data(), rows, cols);
}

// A module in eval with random parameters and running statistics, then trained on one random
// batch (offset 3, spread 2) so the running statistics mix both.
template <class T>
bnorm::BatchNorm2d<T> make_bn(index_t c, bnorm::Options options, unsigned seed) {
  bnorm::BatchNorm2d<T> bn(c, options);
  if (options.affine) {
    bn.weight() =
        uniform_array<T>(c, seed + 1, 0.5, 2.0) * uniform_array<T>(c, seed + 2, -1, 1).sign();
    bn.bias() = uniform_array<T>(c, seed + 3, -1, 1);
  }
  if (options.track_running_stats) {
    bn.running_mean() = uniform_array<T>(c, seed + 4, -2, 2);
    bn.running_var() = uniform_array<T>(c, seed + 5, 0.2, 3);
    const Shape s{3, c, 4, 5};
    std::vector<T> x = uniform_values<T>(static_cast<std::size_t>(count(s)), seed + 6, 1, 5);
    std::vector<T> y(x.size());
    bn.train();
    bn.forward(bnorm::NCHWView<const T>(x.data(), s[0], s[1], s[2], s[3]),
               bnorm::NCHWView<T>(y.data(), s[0], s[1], s[2], s[3]));
  }
  bn.eval();
  return bn;
}

// Direct 2-d convolution in double: x (N, C_in, H, W), weight C_out x (C_in * kh * kw) with row
// co holding w[co][ci][i][j] at ci * kh * kw + i * kw + j, stride 1, no padding, plus bias (none
// when empty). Returns (N, C_out, H - kh + 1, W - kw + 1) in NCHW order.
template <class T>
std::vector<double> conv2d(const std::vector<T>& x, const Shape& s, const Mat<T>& weight,
                           const Array<T>& bias, index_t kh, index_t kw) {
  const auto [n, cin, h, w] = s;
  const index_t cout = weight.rows(), oh = h - kh + 1, ow = w - kw + 1;
  std::vector<double> z(static_cast<std::size_t>(n * cout * oh * ow));
  for (index_t b = 0; b < n; ++b)
    for (index_t co = 0; co < cout; ++co)
      for (index_t p = 0; p < oh; ++p)
        for (index_t q = 0; q < ow; ++q) {
          double sum = bias.size() ? static_cast<double>(bias[co]) : 0.0;
          for (index_t ci = 0; ci < cin; ++ci)
            for (index_t i = 0; i < kh; ++i)
              for (index_t j = 0; j < kw; ++j)
                sum += static_cast<double>(weight(co, (ci * kh + i) * kw + j)) *
                       static_cast<double>(
                           x[static_cast<std::size_t>(((b * cin + ci) * h + p + i) * w + q + j)]);
          z[static_cast<std::size_t>(((b * cout + co) * oh + p) * ow + q)] = sum;
        }
  return z;
}

// Eval batch norm in double, straight from the definition, on z of `c` channels with `plane`
// values per channel and image (NCHW order).
template <class Module>
std::vector<double> eval_bn(const Module& bn, std::vector<double> z, index_t plane) {
  const index_t c = bn.num_features();
  const bool affine = bn.options().affine;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const index_t ch = (static_cast<index_t>(i) / plane) % c;
    const double w = affine ? static_cast<double>(bn.weight()[ch]) : 1.0;
    const double b = affine ? static_cast<double>(bn.bias()[ch]) : 0.0;
    const double mean = static_cast<double>(bn.running_mean()[ch]);
    const double var = static_cast<double>(bn.running_var()[ch]);
    z[i] = (z[i] - mean) / std::sqrt(var + bn.options().eps) * w + b;
  }
  return z;
}

// bn's own eval forward of the layer's output z (rounded to T), shaped (n, c, oh, ow).
template <class T>
std::vector<T> module_forward(bnorm::BatchNorm2d<T>& bn, const std::vector<double>& z,
                              const Shape& s) {
  std::vector<T> x(z.begin(), z.end()), y(z.size());
  bn.eval();
  bn.forward(bnorm::NCHWView<const T>(x.data(), s[0], s[1], s[2], s[3]),
             bnorm::NCHWView<T>(y.data(), s[0], s[1], s[2], s[3]));
  return y;
}

void report(const char* what, const char* type, double to_reference, double to_module) {
  std::printf("[ fold     ] %-24s %-6s rel. error vs double loops %.3g, vs module forward %.3g\n",
              what, type, to_reference, to_module);
}

template <class T>
const char* type_name() {
  return std::is_same_v<T, double> ? "double" : "float";
}

// C = 5 output channels, C_in = 4, a 3 x 2 kernel over 2 images of 8 x 7: K = 24 columns.
template <class T>
void check_convolution(bnorm::Options options, unsigned seed, const char* what) {
  const index_t c = 5, kh = 3, kw = 2;
  const Shape xs{2, 4, 8, 7};
  const Shape zs{xs[0], c, xs[2] - kh + 1, xs[3] - kw + 1};
  bnorm::BatchNorm2d<T> bn = make_bn<T>(c, options, seed);
  const std::vector<T> x = uniform_values<T>(static_cast<std::size_t>(count(xs)), seed + 10, -2, 2);
  const Mat<T> weight0 = uniform_matrix<T>(c, xs[1] * kh * kw, seed + 11);
  const Array<T> bias0 = uniform_array<T>(c, seed + 12, -1, 1);

  const std::vector<double> z = conv2d(x, xs, weight0, bias0, kh, kw);
  const std::vector<double> reference = eval_bn(bn, z, zs[2] * zs[3]);

  Mat<T> weight = weight0;
  Array<T> bias = bias0;
  bnorm::fold_into(bn, weight, bias);
  ASSERT_EQ(bias.size(), c);
  const std::vector<double> folded = conv2d(x, xs, weight, bias, kh, kw);

  const double to_reference = rel_error(folded, reference);
  const double to_module = rel_error(folded, module_forward(bn, z, zs));
  report(what, type_name<T>(), to_reference, to_module);
  EXPECT_LE(to_reference, fold_tolerance<T>());
  EXPECT_LE(to_module, fold_tolerance<T>());
}

template <class T>
class Fold : public ::testing::Test {};
TYPED_TEST_SUITE(Fold, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(Fold, ConvolutionComputesConvolutionThenEvalBatchNorm) {
  check_convolution<TypeParam>(bnorm::Options{}, 100, "convolution");
}

TYPED_TEST(Fold, ConvolutionWithoutAffine) {
  bnorm::Options options;
  options.affine = false;
  options.eps = 0.01;  // large enough to matter in float too
  check_convolution<TypeParam>(options, 200, "convolution, no affine");
}

// C = 5 outputs of 11 features over a batch of 6 into a BatchNorm1d (its (N, C) input), and a
// layer without bias: bias becomes C.
TYPED_TEST(Fold, LinearLayerWithoutBiasGetsOne) {
  using T = TypeParam;
  const index_t c = 5, in = 11, n = 6;
  const bnorm::BatchNorm2d<T> bn2 = make_bn<T>(c, bnorm::Options{}, 300);
  bnorm::BatchNorm1d<T> bn(c);  // the same parameters and running statistics
  bn.weight() = bn2.weight();
  bn.bias() = bn2.bias();
  bn.running_mean() = bn2.running_mean();
  bn.running_var() = bn2.running_var();
  const Mat<T> x = uniform_matrix<T>(n, in, 310);
  const Mat<T> weight0 = uniform_matrix<T>(c, in, 311);

  // z[b][co] = sum_k weight0(co, k) x(b, k): NCHW with H = W = 1.
  auto linear = [&](const Mat<T>& w, const Array<T>& b) {
    std::vector<double> z(static_cast<std::size_t>(n * c));
    for (index_t i = 0; i < n; ++i)
      for (index_t co = 0; co < c; ++co) {
        double sum = b.size() ? static_cast<double>(b[co]) : 0.0;
        for (index_t k = 0; k < in; ++k)
          sum += static_cast<double>(w(co, k)) * static_cast<double>(x(i, k));
        z[static_cast<std::size_t>(i * c + co)] = sum;
      }
    return z;
  };
  const std::vector<double> z = linear(weight0, Array<T>());
  const std::vector<double> reference = eval_bn(bn, z, 1);

  Mat<T> weight = weight0;
  Array<T> bias;
  bnorm::fold_into(bn, weight, bias);
  ASSERT_EQ(bias.size(), c);
  const std::vector<double> folded = linear(weight, bias);

  const double to_reference = rel_error(folded, reference);
  std::vector<T> zt(z.begin(), z.end()), y(z.size());
  bn.eval();
  bn.forward(bnorm::NCLView<const T>(zt.data(), n, c), bnorm::NCLView<T>(y.data(), n, c));
  const double to_module = rel_error(folded, y);
  report("linear, no bias", type_name<T>(), to_reference, to_module);
  EXPECT_LE(to_reference, fold_tolerance<T>());
  EXPECT_LE(to_module, fold_tolerance<T>());
}

// BatchNorm3d (after a 3-d convolution, C x C_in*kd*kh*kw) folds as BatchNorm2d does: the same
// bits from the same parameters and running statistics.
TYPED_TEST(Fold, BatchNorm3dFoldsAsBatchNorm2d) {
  using T = TypeParam;
  const index_t c = 4, k = 2 * 3 * 3 * 3;
  const bnorm::BatchNorm2d<T> bn2 = make_bn<T>(c, bnorm::Options{}, 350);
  bnorm::BatchNorm3d<T> bn3(c);
  bn3.weight() = bn2.weight();
  bn3.bias() = bn2.bias();
  bn3.running_mean() = bn2.running_mean();
  bn3.running_var() = bn2.running_var();
  const Mat<T> weight0 = uniform_matrix<T>(c, k, 351);
  const Array<T> bias0 = uniform_array<T>(c, 352, -1, 1);
  Mat<T> w2 = weight0, w3 = weight0;
  Array<T> b2 = bias0, b3 = bias0;
  bnorm::fold_into(bn2, w2, b2);
  bnorm::fold_into(bn3, w3, b3);
  ASSERT_FALSE(same_matrix_bits(w2, weight0));
  EXPECT_TRUE(same_matrix_bits(w3, w2));
  EXPECT_TRUE(same_bits(b3, b2));
}

// A Map over the layer's own memory is folded in place, with the bits of folding a Matrix; a
// Map with padded rows leaves the padding alone.
TYPED_TEST(Fold, MapOverTheLayersMemoryIsFoldedInPlace) {
  using T = TypeParam;
  const index_t c = 5, k = 7, pad = 3;
  const bnorm::BatchNorm2d<T> bn = make_bn<T>(c, bnorm::Options{}, 400);
  const Mat<T> weight0 = uniform_matrix<T>(c, k, 410);
  const Array<T> bias0 = uniform_array<T>(c, 411, -1, 1);
  Mat<T> expected_weight = weight0;
  Array<T> expected_bias = bias0;
  bnorm::fold_into(bn, expected_weight, expected_bias);
  ASSERT_FALSE(same_matrix_bits(expected_weight, weight0));

  std::vector<T> memory(weight0.data(), weight0.data() + c * k);
  Eigen::Map<Mat<T>> map(memory.data(), c, k);
  Array<T> bias = bias0;
  const T* const bias_data = bias.data();
  bnorm::fold_into(bn, map, bias);
  EXPECT_TRUE(
      same_bits(memory, std::vector<T>(expected_weight.data(), expected_weight.data() + c * k)));
  EXPECT_TRUE(same_bits(bias, expected_bias));
  EXPECT_EQ(bias.data(), bias_data) << "a bias of C elements is written in its own buffer";

  // Rows of k values k + pad apart; the padding holds a sentinel.
  const T sentinel = T(-777);
  std::vector<T> padded(static_cast<std::size_t>(c * (k + pad)), sentinel);
  for (index_t r = 0; r < c; ++r)
    for (index_t j = 0; j < k; ++j)
      padded[static_cast<std::size_t>(r * (k + pad) + j)] = weight0(r, j);
  Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>> strided(padded.data(), c, k,
                                                      Eigen::OuterStride<>(k + pad));
  Array<T> bias2 = bias0;
  bnorm::fold_into(bn, strided, bias2);
  for (index_t r = 0; r < c; ++r)
    for (index_t j = 0; j < k + pad; ++j) {
      const T got = padded[static_cast<std::size_t>(r * (k + pad) + j)];
      const T want = j < k ? expected_weight(r, j) : sentinel;
      EXPECT_EQ(std::memcmp(&got, &want, sizeof(T)), 0) << "row " << r << ", column " << j;
    }
  EXPECT_TRUE(same_bits(bias2, expected_bias));
}

// Each mistake throws bnorm::invalid_argument saying what is wrong, and weight and bias (and
// the module) are bitwise unchanged.
template <class T>
void expect_fold_rejected(const bnorm::BatchNorm2d<T>& bn, Mat<T> weight, Array<T> bias,
                          const std::string& message) {
  const Mat<T> weight_before = weight;
  const Array<T> bias_before = bias;
  const ModuleState<T> bn_before(bn);
  EXPECT_EQ(message_of([&] { bnorm::fold_into(bn, weight, bias); }), message);
  EXPECT_TRUE(same_matrix_bits(weight, weight_before)) << "weight changed";
  EXPECT_TRUE(same_bits(bias, bias_before)) << "bias changed";
  EXPECT_TRUE(ModuleState<T>(bn) == bn_before) << "bn changed";
}

TYPED_TEST(Fold, EveryErrorSaysWhatAndChangesNothing) {
  using T = TypeParam;
  const index_t c = 5, k = 7;
  const Mat<T> weight = uniform_matrix<T>(c, k, 510);
  const Array<T> bias = uniform_array<T>(c, 511, -1, 1);

  {
    bnorm::Options options;
    options.track_running_stats = false;
    expect_fold_rejected(make_bn<T>(c, options, 500), weight, bias,
                         "bnorm: fold_into needs bn's running statistics: expected "
                         "track_running_stats true, got false");
  }
  const bnorm::BatchNorm2d<T> bn = make_bn<T>(c, bnorm::Options{}, 520);
  expect_fold_rejected(bn, uniform_matrix<T>(c + 1, k, 512), bias,
                       "bnorm: weight has 6 rows, expected 5 (bn's num_features: one row per "
                       "output channel)");
  expect_fold_rejected(bn, uniform_matrix<T>(k, c, 513), Array<T>(),
                       "bnorm: weight has 7 rows, expected 5 (bn's num_features: one row per "
                       "output channel)");
  for (index_t wrong : {c - 1, c + 1, index_t{1}})
    expect_fold_rejected(bn, weight, uniform_array<T>(wrong, 514, -1, 1),
                         "bnorm: bias has " + std::to_string(wrong) +
                             " elements, expected 5 (bn's num_features), or 0 for a layer "
                             "without bias");

  // The module's public arrays resized by the user: each named.
  using Member = std::function<Array<T>&(bnorm::BatchNorm2d<T>&)>;
  const std::pair<const char*, Member> members[] = {
      {"weight", [](bnorm::BatchNorm2d<T>& m) -> Array<T>& { return m.weight(); }},
      {"bias", [](bnorm::BatchNorm2d<T>& m) -> Array<T>& { return m.bias(); }},
      {"running_mean", [](bnorm::BatchNorm2d<T>& m) -> Array<T>& { return m.running_mean(); }},
      {"running_var", [](bnorm::BatchNorm2d<T>& m) -> Array<T>& { return m.running_var(); }}};
  for (const auto& [name, member] : members) {
    bnorm::BatchNorm2d<T> resized = bn;
    member(resized).conservativeResize(c - 1);
    expect_fold_rejected(
        resized, weight, bias,
        std::string("bnorm: bn.") + name + "() has 4 elements, expected 5 (bn's num_features)");
  }
  bnorm::Options no_affine;
  no_affine.affine = false;
  bnorm::BatchNorm2d<T> grown = make_bn<T>(c, no_affine, 530);
  grown.weight() = Array<T>::Ones(c);
  expect_fold_rejected(grown, weight, bias,
                       "bnorm: bn.weight() has 5 elements, expected 0 (bn's affine is false)");
}

}  // namespace
}  // namespace fold_test
}  // namespace bnorm_test
