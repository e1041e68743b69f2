// The output-view rules of detail/checks.hpp against brute force (every element enumerated), and
// the checks of a view's own strides and extents.
#include <functional>

#include "hardening_support.hpp"

namespace bnorm_test {
namespace {

using namespace hardening;

// ----------------------------------------------------------------------------------------------
// The rules against brute force
// ----------------------------------------------------------------------------------------------

// Accepted layouts are unique (the test is sound), and every permutation of the axes with
// padding is accepted (it is complete on the layouts users build).
TEST(OutputViewRules, UniqueLayoutTestIsSoundAndAcceptsPermutedPaddedLayouts) {
  std::mt19937_64 gen(2024);
  std::uniform_int_distribution<index_t> extent(0, 3), stride(0, 7), pad(0, 2);
  float dummy = 0;
  int accepted = 0, unique_but_rejected = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    const Shape e{extent(gen), extent(gen), extent(gen), extent(gen)};
    const Shape s{stride(gen), stride(gen), stride(gen), stride(gen)};
    const NCHWView<float> v(&dummy, e, s);
    const bool ok =
        message_of([&] { bnorm::detail::check_unique_layout("y", v); }) == "(no exception)";
    const bool unique = brute_unique(e, s);
    if (ok) {
      ++accepted;
      ASSERT_TRUE(unique) << to_string(e) << " strides " << to_string(s);
    } else if (unique) {
      ++unique_but_rejected;
    }
  }
  EXPECT_GT(accepted, 1000);
  // The rule is sufficient, not necessary: some unique interleaved layouts are rejected.
  EXPECT_GT(unique_but_rejected, 0);

  for (int trial = 0; trial < 5000; ++trial) {
    const Shape e{extent(gen) + 1, extent(gen) + 1, extent(gen) + 1, extent(gen) + 1};
    std::array<int, 4> order{0, 1, 2, 3};
    std::shuffle(order.begin(), order.end(), gen);
    Shape s{};
    index_t next = 1 + pad(gen);
    for (const int r : order) {
      s[static_cast<std::size_t>(r)] = next;
      next = next * e[static_cast<std::size_t>(r)] + pad(gen);
    }
    const NCHWView<float> v(&dummy, e, s);
    ASSERT_EQ(message_of([&] { bnorm::detail::check_unique_layout("y", v); }), "(no exception)")
        << to_string(e) << " strides " << to_string(s);
    ASSERT_TRUE(brute_unique(e, s));
  }
}

// Views of the same strides are accepted exactly when they share no element (or are the same
// view); views of different strides exactly when their address ranges are disjoint. Nothing
// accepted shares an element unless it is the same view.
TEST(OutputViewRules, PartialOverlapTestAgainstBruteForce) {
  std::mt19937_64 gen(77);
  std::uniform_int_distribution<index_t> extent(1, 3), offset(0, 40), pick(0, 5);
  std::vector<double> buffer(200);
  int same_stride_accepted = 0, same_stride_rejected = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    const Shape e{extent(gen), extent(gen), extent(gen), extent(gen)};
    auto layout = [&](index_t choice) {
      // Unique layouts: NCHW, NHWC, padded rows, every other W, W outermost.
      switch (choice) {
        case 0:
          return Shape{e[1] * e[2] * e[3], e[2] * e[3], e[3], 1};
        case 1:
          return Shape{e[2] * e[3] * e[1], 1, e[3] * e[1], e[1]};
        case 2:
          return Shape{e[1] * e[2] * (e[3] + 2), e[2] * (e[3] + 2), e[3] + 2, 1};
        case 3:
          return Shape{e[1] * e[2] * e[3] * 2, e[2] * e[3] * 2, e[3] * 2, 2};
        default:
          return Shape{e[1] * e[2], e[2], 1, e[0] * e[1] * e[2]};
      }
    };
    const index_t la = pick(gen) % 5, lb = pick(gen) < 3 ? la : pick(gen) % 5;
    const Shape sa = layout(la), sb = layout(lb);
    const index_t a = offset(gen), b = offset(gen);
    const NCHWView<double> out(buffer.data() + a, e, sa);
    const NCHWView<const double> in(buffer.data() + b, e, sb);
    const bool ok = message_of([&] {
                      bnorm::detail::check_no_partial_overlap("y", out, "x", in);
                    }) == "(no exception)";
    const bool share = brute_share(e, sa, a, sb, b);
    // Worked out here, not by the library: the strides that matter (extent > 1) agree.
    bool strides_agree = true;
    for (std::size_t r = 0; r < 4; ++r) strides_agree &= e[r] == 1 || sa[r] == sb[r];
    const bool same = strides_agree && a == b;
    if (share && !same) {
      ASSERT_FALSE(ok) << "accepted a partial overlap";
    }
    if (strides_agree) {
      ASSERT_EQ(ok, same || !share) << to_string(e) << " " << to_string(sa) << " " << a - b;
      (ok ? same_stride_accepted : same_stride_rejected)++;
    } else {
      const index_t last_a = offsets(e, sa, a).back(), last_b = offsets(e, sb, b).back();
      ASSERT_EQ(ok, last_a < b || last_b < a) << "different strides: ranges decide";
    }
  }
  EXPECT_GT(same_stride_accepted, 1000);
  EXPECT_GT(same_stride_rejected, 1000);
}

TEST(OutputViewRules, EmptyAndSingleElementViews) {
  float buf[8] = {};
  // Empty outputs are unique and overlap nothing, whatever their strides.
  const NCHWView<float> empty(buf, {0, 3, 2, 2}, {0, 0, 0, 0});
  EXPECT_NO_THROW(bnorm::detail::check_unique_layout("y", empty));
  EXPECT_NO_THROW(bnorm::detail::check_no_partial_overlap(
      "y", empty, "x", NCHWView<const float>(buf, {0, 3, 2, 2}, {12, 4, 2, 1})));
  // Axes of extent 1 never move: their stride does not matter, for uniqueness or sameness.
  const NCHWView<float> one(buf + 2, {1, 1, 1, 1}, {0, 0, 0, 0});
  EXPECT_NO_THROW(bnorm::detail::check_unique_layout("y", one));
  EXPECT_NO_THROW(bnorm::detail::check_no_partial_overlap(
      "y", one, "x", NCHWView<const float>(buf + 2, {1, 1, 1, 1}, {5, 6, 7, 8})));
  EXPECT_NO_THROW(bnorm::detail::check_no_partial_overlap(
      "y", one, "x", NCHWView<const float>(buf + 3, {1, 1, 1, 1}, {5, 6, 7, 8})));
  const NCHWView<float> row(buf, {1, 3, 1, 2}, {0, 2, 0, 1});
  EXPECT_NO_THROW(bnorm::detail::check_unique_layout("y", row));
}

// ----------------------------------------------------------------------------------------------
// Views
// ----------------------------------------------------------------------------------------------

TEST(ViewChecks, NegativeStridesAreRejectedOnEveryAxis) {
  float buf[64] = {};
  const char* axis[] = {"N", "C", "H", "W"};
  for (std::size_t r = 0; r < 4; ++r) {
    Shape s{8, 4, 2, 1};
    s[r] = -s[r];
    EXPECT_EQ(message_of([&] {
                NCHWView<float>(buf + 32, {2, 2, 2, 2}, s);
              }),
              "bnorm: NCHWView stride " + std::to_string(r) + " (" + axis[r] +
                  ") must be >= 0, got " + std::to_string(s[r]));
  }
}

// An empty view whose other extents multiply past index_t would overflow N*H*W in the kernels.
TEST(ViewChecks, ExtentsOfAnEmptyViewMustNotOverflow) {
  const index_t big = index_t{1} << 40;
  EXPECT_EQ(message_of([&] {
              NCHWView<float>(nullptr, {big, 0, big, 1}, {0, 0, 0, 0});
            }),
            "bnorm: NCHWView extents overflow index_t: 1099511627776 * 1099511627776");
  EXPECT_NO_THROW(NCHWView<float>(nullptr, {big, 0, 1, 1}, {0, 0, 0, 0}));
}

}  // namespace
}  // namespace bnorm_test
