// The split API of bnorm::fused (local_statistics, merge_statistics, finalize, normalize,
// local_gradient_sums, backward_input, parameter_gradients), the pieces SyncBatchNorm2d runs on
// each rank, checked here on one process: merging the statistics of any split of a tensor,
// empty parts included, gives the whole tensor's; and the whole pipeline over parts of a batch
// gives what BatchNorm2d and the long-double reference give on the whole batch.
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

template <class T>
class Split : public ::testing::Test {};
TYPED_TEST_SUITE(Split, FloatTypes, );  // the empty argument: -Wpedantic

constexpr double kMergeTolerance = 1e-12;

/// The part of `v` whose index along `axis` lies in [begin, end).
template <class T>
bnorm::NCHWView<T> slice(const bnorm::NCHWView<T>& v, int axis, index_t begin, index_t end) {
  auto e = v.extents();
  e[static_cast<std::size_t>(axis)] = end - begin;
  return bnorm::NCHWView<T>(v.data() + begin * v.stride(axis), e, v.strides());
}

/// Cut points 0 = c_0 <= c_1 <= ... <= c_parts = extent, random and seeded; equal neighbours
/// give empty parts.
std::vector<index_t> random_cuts(index_t extent, int parts, std::mt19937_64& gen) {
  std::uniform_int_distribution<index_t> pick(0, extent);
  std::vector<index_t> cuts{0, extent};
  for (int i = 1; i < parts; ++i) cuts.push_back(pick(gen));
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

template <class T>
std::vector<bnorm::fused::LocalStatistics> part_statistics(const bnorm::NCHWView<const T>& x,
                                                           int axis,
                                                           const std::vector<index_t>& cuts) {
  std::vector<bnorm::fused::LocalStatistics> parts;
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i)
    parts.push_back(bnorm::fused::local_statistics(slice(x, axis, cuts[i], cuts[i + 1])));
  return parts;
}

void expect_same_bits(const bnorm::fused::LocalStatistics& a,
                      const bnorm::fused::LocalStatistics& b) {
  EXPECT_EQ(a.count, b.count);
  EXPECT_TRUE(a.mean.size() == b.mean.size() && (a.mean == b.mean).all());
  EXPECT_TRUE(a.m2.size() == b.m2.size() && (a.m2 == b.m2).all());
}

// Random splits along N, H and W (2 to 7 parts, some empty) of tensors in every layout: the
// merge equals the whole tensor's two-pass statistics, and the long-double reference's, within
// 1e-12, in any order of the parts.
TYPED_TEST(Split, MergeOfAnySplitEqualsTheWhole) {
  using T = TypeParam;
  const Shape s{9, 5, 6, 7};
  const auto values = random_values<T>(s, 301, 3.0, 2.0);
  const Reference ref = reference(s, values, values, Array<T>(), Array<T>(), 1e-5);
  const index_t m = s[0] * s[2] * s[3];
  std::mt19937_64 gen(302);
  for (const Layout layout : kAllLayouts) {
    Buffer<T> xb(s, layout);
    xb.set(values);
    const auto whole = bnorm::fused::local_statistics(xb.cview());
    for (const int axis : {0, 2, 3})
      for (int parts = 2; parts <= 7; ++parts) {
        const auto cuts = random_cuts(s[static_cast<std::size_t>(axis)], parts, gen);
        SCOPED_TRACE(::testing::Message()
                     << name(layout) << " axis " << axis << " " << parts << " parts");
        auto pieces = part_statistics(xb.cview(), axis, cuts);
        const auto merged = bnorm::fused::merge_statistics(pieces);
        EXPECT_EQ(merged.count, m);
        EXPECT_LE(rel_error(merged.mean, whole.mean), kMergeTolerance);
        EXPECT_LE(rel_error(merged.m2, whole.m2), kMergeTolerance);
        std::vector<long double> ref_m2(ref.var.size());
        for (std::size_t c = 0; c < ref_m2.size(); ++c) ref_m2[c] = ref.var[c] * m;
        EXPECT_LE(rel_error(merged.mean, ref.mean), kMergeTolerance);
        EXPECT_LE(rel_error(merged.m2, ref_m2), kMergeTolerance);

        std::reverse(pieces.begin(), pieces.end());
        const auto reversed = bnorm::fused::merge_statistics(pieces);
        EXPECT_EQ(reversed.count, m);
        EXPECT_LE(rel_error(reversed.mean, whole.mean), kMergeTolerance);
        EXPECT_LE(rel_error(reversed.m2, whole.m2), kMergeTolerance);
      }
  }
}

// One value per part, every part of one element along N with H = W = 1: the hardest split for
// the pairwise formula (each part has M2 = 0).
TYPED_TEST(Split, MergeOfSingleValues) {
  using T = TypeParam;
  const Shape s{13, 3, 1, 1};
  Buffer<T> xb(s);
  xb.set(random_values<T>(s, 311, -4.0, 0.5));
  std::vector<index_t> cuts(14);
  for (index_t i = 0; i <= 13; ++i) cuts[static_cast<std::size_t>(i)] = i;
  const auto merged = bnorm::fused::merge_statistics(part_statistics(xb.cview(), 0, cuts));
  const auto whole = bnorm::fused::local_statistics(xb.cview());
  EXPECT_EQ(merged.count, 13);
  EXPECT_LE(rel_error(merged.mean, whole.mean), kMergeTolerance);
  EXPECT_LE(rel_error(merged.m2, whole.m2), kMergeTolerance);
}

// A mean far larger than the spread (offset 1e4, spread 1): the merge's correction terms
// delta^2 * n_a * n_b / n stay accurate, unlike a merge of raw sums of squares.
TYPED_TEST(Split, MergeKeepsAccuracyUnderALargeOffset) {
  using T = TypeParam;
  const Shape s{8, 4, 5, 6};
  const auto values = random_values<T>(s, 321, 1e4, 1.0);
  const Reference ref = reference(s, values, values, Array<T>(), Array<T>(), 1e-5);
  Buffer<T> xb(s);
  xb.set(values);
  const index_t m = s[0] * s[2] * s[3];
  std::vector<long double> ref_m2(ref.var.size());
  for (std::size_t c = 0; c < ref_m2.size(); ++c) ref_m2[c] = ref.var[c] * m;
  const auto merged =
      bnorm::fused::merge_statistics(part_statistics(xb.cview(), 0, {0, 1, 3, 3, 6, 8}));
  EXPECT_LE(rel_error(merged.mean, ref.mean), kMergeTolerance);
  EXPECT_LE(rel_error(merged.m2, ref_m2), kMergeTolerance);
}

// Empty parts change nothing, bit for bit, and one part merges to itself.
TYPED_TEST(Split, EmptyPartsAndASinglePartAreExact) {
  using T = TypeParam;
  const Shape s{4, 3, 2, 5};
  Buffer<T> xb(s);
  xb.set(random_values<T>(s, 331, 1.0));
  const auto whole = bnorm::fused::local_statistics(xb.cview());
  const auto empty = bnorm::fused::local_statistics(slice(xb.cview(), 0, 2, 2));
  EXPECT_EQ(empty.count, 0);
  EXPECT_TRUE((empty.mean == 0).all() && (empty.m2 == 0).all());
  expect_same_bits(bnorm::fused::merge_statistics({whole}), whole);
  expect_same_bits(bnorm::fused::merge_statistics({empty, whole, empty, empty}), whole);
  const auto none = bnorm::fused::merge_statistics({empty, empty});
  EXPECT_EQ(none.count, 0);
  EXPECT_TRUE((none.mean == 0).all() && (none.m2 == 0).all());
}

// The whole split pipeline over uneven parts of a batch (one of them empty, each in its own
// layout), with the reductions exchanged by hand in part order, gives BatchNorm2d's y, dx,
// running statistics and (summed over parts) parameter gradients on the whole batch.
TYPED_TEST(Split, PipelineOverPartsEqualsTheWholeBatch) {
  using T = TypeParam;
  const Shape s{7, 3, 4, 5};
  const double eps = 1e-3;
  const std::vector<index_t> cuts{0, 3, 3, 4, 7};
  const auto x = random_values<T>(s, 341, 2.0, 1.5), dy = random_values<T>(s, 342);
  const Array<T> weight = random_array<T>(s[1], 343, 0.5, 1.5);
  const Array<T> bias = random_array<T>(s[1], 344, -1, 1);

  bnorm::BatchNorm2d<T> bn(s[1], {eps, 0.1, true, true, bnorm::Variant::fused});
  bn.weight() = weight;
  bn.bias() = bias;
  Buffer<T> xb(s), yb(s), dyb(s), dxb(s);
  xb.set(x);
  dyb.set(dy);
  const auto saved = bn.forward(xb.cview(), yb.view());
  bn.backward(saved, dyb.cview(), dxb.view());
  const Reference ref = reference(s, x, dy, weight, bias, eps);

  // Each part in its own buffer and layout, like a rank's.
  const index_t per_sample = s[1] * s[2] * s[3];
  std::vector<Buffer<T>> xp, yp, dyp, dxp;
  std::vector<bnorm::fused::LocalStatistics> locals;
  for (std::size_t p = 0; p + 1 < cuts.size(); ++p) {
    const Shape ps{cuts[p + 1] - cuts[p], s[1], s[2], s[3]};
    const Layout layout = kAllLayouts[p % 4];
    xp.emplace_back(ps, layout);
    yp.emplace_back(ps, layout);
    dyp.emplace_back(ps, layout);
    dxp.emplace_back(ps, layout);
    const auto begin = static_cast<std::ptrdiff_t>(cuts[p] * per_sample);
    const auto end = static_cast<std::ptrdiff_t>(cuts[p + 1] * per_sample);
    xp.back().set(std::vector<T>(x.begin() + begin, x.begin() + end));
    dyp.back().set(std::vector<T>(dy.begin() + begin, dy.begin() + end));
    locals.push_back(bnorm::fused::local_statistics(xp.back().cview()));
  }
  const auto stats = bnorm::fused::finalize(bnorm::fused::merge_statistics(locals), eps);
  EXPECT_EQ(stats.count, s[0] * s[2] * s[3]);
  EXPECT_LE(rel_error(stats.mean, ref.mean), kMergeTolerance);
  EXPECT_LE(rel_error(stats.var, ref.var), kMergeTolerance);

  bnorm::fused::GradientSums total{Eigen::ArrayXd::Zero(s[1]), Eigen::ArrayXd::Zero(s[1])};
  std::vector<bnorm::fused::GradientSums> sums;
  for (std::size_t p = 0; p < xp.size(); ++p) {
    bnorm::fused::normalize(xp[p].cview(), stats, weight, bias, yp[p].view());
    sums.push_back(bnorm::fused::local_gradient_sums(xp[p].cview(), dyp[p].cview(), stats));
    total.sum_dy += sums.back().sum_dy;
    total.sum_dy_xmu += sums.back().sum_dy_xmu;
  }
  Array<T> dweight_sum = Array<T>::Zero(s[1]), dbias_sum = Array<T>::Zero(s[1]);
  std::vector<T> y_parts, dx_parts;
  for (std::size_t p = 0; p < xp.size(); ++p) {
    bnorm::fused::backward_input(xp[p].cview(), dyp[p].cview(), weight, stats, total,
                                 dxp[p].view());
    Array<T> dw, db;
    bnorm::fused::parameter_gradients(stats, sums[p], true, dw, db);
    dweight_sum += dw;
    dbias_sum += db;
    const auto yv = yp[p].values(), dxv = dxp[p].values();
    y_parts.insert(y_parts.end(), yv.begin(), yv.end());
    dx_parts.insert(dx_parts.end(), dxv.begin(), dxv.end());
    EXPECT_EQ(xp[p].padding_changed() + yp[p].padding_changed() + dxp[p].padding_changed(), 0);
  }
  EXPECT_LE(rel_error(y_parts, yb.values()), tolerance<T>());
  EXPECT_LE(rel_error(dx_parts, dxb.values()), tolerance<T>());
  EXPECT_LE(rel_error(y_parts, ref.y), tolerance<T>());
  EXPECT_LE(rel_error(dx_parts, ref.dx), tolerance<T>());
  EXPECT_LE(rel_error(dweight_sum, bn.weight_grad()), tolerance<T>());
  EXPECT_LE(rel_error(dbias_sum, bn.bias_grad()), tolerance<T>());
  Array<T> none_w, none_b;
  bnorm::fused::parameter_gradients(stats, sums[0], false, none_w, none_b);
  EXPECT_EQ(none_w.size() + none_b.size(), 0);
}

TEST(SplitErrors, MergeAndFinalizeArguments) {
  using bnorm::fused::LocalStatistics;
  const LocalStatistics a{4, Eigen::ArrayXd::Zero(3), Eigen::ArrayXd::Zero(3)};
  const LocalStatistics b{4, Eigen::ArrayXd::Zero(2), Eigen::ArrayXd::Zero(2)};
  const LocalStatistics negative{-1, Eigen::ArrayXd::Zero(3), Eigen::ArrayXd::Zero(3)};
  EXPECT_EQ(message_of([] { bnorm::fused::merge_statistics({}); }),
            "bnorm: merge_statistics needs at least one part, got 0");
  EXPECT_EQ(message_of([&] {
              bnorm::fused::merge_statistics({a, b});
            }),
            "bnorm: part 1 has 2 channels, expected 3");
  EXPECT_EQ(message_of([&] {
              bnorm::fused::merge_statistics({a, negative});
            }),
            "bnorm: part 1 has count -1, expected >= 0");
  const LocalStatistics one{1, Eigen::ArrayXd::Zero(3), Eigen::ArrayXd::Zero(3)};
  EXPECT_EQ(message_of([&] { bnorm::fused::finalize(one, 1e-5); }),
            "bnorm: Expected more than 1 value per channel when training, got a total of 1");
  EXPECT_EQ(message_of([&] { bnorm::fused::finalize(a, -1.0); }),
            "bnorm: eps must be finite and >= 0, got -1");
}

}  // namespace
}  // namespace bnorm_test
