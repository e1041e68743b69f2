// Output-view safety and aliasing, and failures that leave nothing half-done:
// - the output-view rules of detail/checks.hpp against brute force (every element enumerated);
// - in-place calls (y is x, dx is dy, dx is the forward's x) against the same calls out of place;
// - partial overlaps, non-unique outputs and aliased gradient arrays rejected with exact
//   messages at every entry point;
// - every validation failure of the module, training and eval, forward and backward, and of the
//   free functions: the message, and every byte of every buffer and all module state unchanged.
#include <cstring>
#include <functional>
#include <set>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
using bnorm::NCHWView;
using bnorm::Variant;

const Variant kVariants[] = {Variant::staged, Variant::fused};

template <class F>
std::string message_of(const F& f) {
  try {
    f();
  } catch (const bnorm::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "(no exception)";
}

/// Raw storage filled with seeded random values everywhere (padding too), so that any write,
/// inside or outside a view, changes its bytes.
template <class T>
struct Storage {
  std::vector<T> data;
  Storage(index_t size, std::uint64_t seed) : data(static_cast<std::size_t>(size)) { refill(seed); }
  /// New random values, in place (views into the storage stay valid).
  void refill(std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& v : data) v = static_cast<T>(normal(gen));
  }
  NCHWView<T> view(index_t offset, const Shape& e, const Shape& s) {
    return NCHWView<T>(data.data() + offset, e, s);
  }
  bool operator==(const Storage& o) const {
    return data.size() == o.data.size() &&
           std::memcmp(data.data(), o.data.data(), data.size() * sizeof(T)) == 0;
  }
};

template <class T>
bool same_bits(const Array<T>& a, const Array<T>& b) {
  return a.size() == b.size() &&
         (a.size() == 0 ||  // (an empty array's data() may be null)
          std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0);
}

/// Values of a view in logical NCHW order.
template <class T>
std::vector<std::remove_const_t<T>> values(const NCHWView<T>& v) {
  std::vector<std::remove_const_t<T>> out;
  for (index_t n = 0; n < v.n(); ++n)
    for (index_t c = 0; c < v.c(); ++c)
      for (index_t h = 0; h < v.h(); ++h)
        for (index_t w = 0; w < v.w(); ++w) out.push_back(v(n, c, h, w));
  return out;
}
template <class T>
void set_values(const NCHWView<T>& v, const std::vector<T>& vals) {
  std::size_t i = 0;
  for (index_t n = 0; n < v.n(); ++n)
    for (index_t c = 0; c < v.c(); ++c)
      for (index_t h = 0; h < v.h(); ++h)
        for (index_t w = 0; w < v.w(); ++w) v(n, c, h, w) = vals[i++];
}

/// Offsets of every element of a view with these extents and strides, sorted.
std::vector<index_t> offsets(const Shape& e, const Shape& s, index_t base = 0) {
  std::vector<index_t> out;
  for (index_t n = 0; n < e[0]; ++n)
    for (index_t c = 0; c < e[1]; ++c)
      for (index_t h = 0; h < e[2]; ++h)
        for (index_t w = 0; w < e[3]; ++w)
          out.push_back(base + n * s[0] + c * s[1] + h * s[2] + w * s[3]);
  std::sort(out.begin(), out.end());
  return out;
}
bool brute_unique(const Shape& e, const Shape& s) {
  const auto o = offsets(e, s);
  return std::adjacent_find(o.begin(), o.end()) == o.end();
}
bool brute_share(const Shape& e, const Shape& sa, index_t a, const Shape& sb, index_t b) {
  const auto oa = offsets(e, sa, a), ob = offsets(e, sb, b);
  std::vector<index_t> common;
  std::set_intersection(oa.begin(), oa.end(), ob.begin(), ob.end(), std::back_inserter(common));
  return !common.empty();
}

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

// ----------------------------------------------------------------------------------------------
// Non-unique outputs and broadcast inputs
// ----------------------------------------------------------------------------------------------

const Shape kShape{2, 3, 4, 5};
const Shape kContiguous{60, 20, 5, 1};

const char* const kMsgZeroStride =
    " is an output and needs a unique layout (no element reached by two indices), got extents "
    "[2, 3, 4, 5] with strides [60, 0, 5, 1]: axis C (extent 3) has stride 0, expected >= 1";
const char* const kMsgRowsOverlap =
    " is an output and needs a unique layout (no element reached by two indices), got extents "
    "[2, 3, 4, 5] with strides [60, 20, 4, 1]: axis H (extent 4) has stride 4, expected >= 5 = "
    "stride 1 * extent 5 of axis W";
const char* const kMsgTiedStrides =
    " is an output and needs a unique layout (no element reached by two indices), got extents "
    "[2, 3, 4, 5] with strides [60, 5, 5, 1]: axis H (extent 4) has stride 5, expected >= 15 = "
    "stride 5 * extent 3 of axis C";

struct BadLayout {
  Shape strides;
  const char* message;
};
const BadLayout kBadLayouts[] = {{{60, 0, 5, 1}, kMsgZeroStride},
                                 {{60, 20, 4, 1}, kMsgRowsOverlap},
                                 {{60, 5, 5, 1}, kMsgTiedStrides}};

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
INSTANTIATE_TYPED_TEST_SUITE_P(Hardening, FreeFunctionsReject, FloatTypes);

// ----------------------------------------------------------------------------------------------
// The module: in place, and every validation failure leaves everything as it was
// ----------------------------------------------------------------------------------------------

template <class T>
class ModuleHardening : public ::testing::Test {};
TYPED_TEST_SUITE(ModuleHardening, FloatTypes);

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

// Everything a failed call could have changed: module state and every byte of the buffers.
template <class T>
struct State {
  Array<T> weight, bias, running_mean, running_var, weight_grad, bias_grad;
  std::int64_t batches;
  bool training;
  explicit State(const bnorm::BatchNorm2d<T>& bn)
      : weight(bn.weight()),
        bias(bn.bias()),
        running_mean(bn.running_mean()),
        running_var(bn.running_var()),
        weight_grad(bn.weight_grad()),
        bias_grad(bn.bias_grad()),
        batches(bn.num_batches_tracked()),
        training(bn.is_training()) {}
  bool operator==(const State& o) const {
    return same_bits(weight, o.weight) && same_bits(bias, o.bias) &&
           same_bits(running_mean, o.running_mean) && same_bits(running_var, o.running_var) &&
           same_bits(weight_grad, o.weight_grad) && same_bits(bias_grad, o.bias_grad) &&
           batches == o.batches && training == o.training;
  }
};

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
    const State<T> state(bn);
    const Storage<T> xs0 = xs, ys0 = ys, dys0 = dys, dxs0 = dxs;
    EXPECT_EQ(message_of(f), message);
    EXPECT_TRUE(State<T>(bn) == state) << "module state changed";
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
