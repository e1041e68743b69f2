// BatchNorm1d and BatchNorm3d: NCLView and NCDHWView in every layout (contiguous, channels-last,
// a crop of a larger tensor) through the fused and staged free functions and the modules,
// against the long-double reference loops on the same values laid out contiguously; their bits
// against BatchNorm2d on the NCHW face; the errors, with their own shapes in the messages.
#include <functional>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

using bnorm::NCDHWView;
using bnorm::NCLView;

enum class NdLayout { contiguous, channels_last, cropped };
constexpr NdLayout kNdLayouts[] = {NdLayout::contiguous, NdLayout::channels_last,
                                   NdLayout::cropped};
const char* name(NdLayout l) {
  return l == NdLayout::contiguous      ? "contiguous"
         : l == NdLayout::channels_last ? "channels-last"
                                        : "cropped";
}

// A tensor of view kind V (NCLView or NCDHWView) in one layout, read and written in logical
// (row-major N, C, spatial) order. "cropped" views the leading corner of a tensor one larger
// in every spatial axis: strides that do not merge D with H (the copied NCHW face for NCDHW).
template <class T, template <class> class V>
class NdBuffer {
 public:
  using Extents = typename V<T>::extents_type;
  static constexpr std::size_t R = std::tuple_size_v<Extents>;

  NdBuffer(const Extents& e, NdLayout layout) : extents_(e) {
    Extents outer = e;
    if (layout == NdLayout::cropped)
      for (std::size_t r = 2; r < R; ++r) outer[r] += 1;
    const Extents strides = layout == NdLayout::channels_last ? V<T>::channels_last_strides(outer)
                                                              : V<T>::contiguous_strides(outer);
    index_t size = 1;
    for (index_t x : outer) size *= x;
    storage_.assign(static_cast<std::size_t>(size), T(-7));  // the crop's margin stays -7
    view_ = V<T>(storage_.data(), e, strides);
  }

  const V<T>& view() const { return view_; }
  V<const T> cview() const { return view_; }

  void set(const std::vector<T>& logical) {
    for_each(
        [&](std::size_t i, index_t at) { storage_[static_cast<std::size_t>(at)] = logical[i]; });
  }
  std::vector<T> values() const {
    std::vector<T> out(static_cast<std::size_t>(view_.size()));
    for_each([&](std::size_t i, index_t at) { out[i] = storage_[static_cast<std::size_t>(at)]; });
    return out;
  }
  const std::vector<T>& storage() const { return storage_; }

  // The NCHW shape of the same values in logical order: (N, C, 1, spatial).
  Shape flat_shape() const {
    index_t spatial = 1;
    for (std::size_t r = 2; r < R; ++r) spatial *= extents_[r];
    return {extents_[0], extents_[1], 1, spatial};
  }

 private:
  // f(logical index, storage offset) over every element.
  template <class F>
  void for_each(F f) const {
    const auto n = static_cast<std::size_t>(view_.size());
    for (std::size_t i = 0; i < n; ++i) {
      index_t rest = static_cast<index_t>(i), at = 0;
      for (std::size_t r = R; r-- > 0;) {
        at += (rest % extents_[r]) * view_.stride(static_cast<int>(r));
        rest /= extents_[r];
      }
      f(i, at);
    }
  }

  Extents extents_;
  std::vector<T> storage_;
  V<T> view_;
};

template <class T>
class OtherRanks : public ::testing::Test {};
TYPED_TEST_SUITE(OtherRanks, FloatTypes);

// One training forward and backward of the fused and the staged functions on a view of kind V
// in every layout, against the reference on the same values.
template <class T, template <class> class V>
void check_against_reference(const typename V<T>::extents_type& e, std::uint64_t seed) {
  const double tol = tolerance<T>();
  const Shape flat = NdBuffer<T, V>(e, NdLayout::contiguous).flat_shape();
  const auto xs = random_values<T>(flat, seed, 3.0), dys = random_values<T>(flat, seed + 1);
  const auto weight = random_array<T>(e[1], seed + 2, 0.5, 1.5);
  const auto bias = random_array<T>(e[1], seed + 3, -1, 1);
  const Reference ref = reference(flat, xs, dys, weight, bias, 1e-5);
  for (NdLayout layout : kNdLayouts) {
    SCOPED_TRACE(name(layout));
    NdBuffer<T, V> x(e, layout), dy(e, layout), y(e, layout), dx(e, layout);
    x.set(xs);
    dy.set(dys);
    Eigen::Array<T, Eigen::Dynamic, 1> dweight, dbias;

    const auto stats = bnorm::fused::forward_training<T>(x.cview(), weight, bias, 1e-5, y.view());
    EXPECT_LE(rel_error(y.values(), ref.y), tol);
    EXPECT_LE(rel_error(stats.mean, ref.mean), 1e-12);
    EXPECT_LE(rel_error(stats.var, ref.var), 1e-10);
    bnorm::fused::backward<T>(x.view(), dy.view(), weight, stats, dx.view(), dweight, dbias);
    EXPECT_LE(rel_error(dx.values(), ref.dx), tol);
    EXPECT_LE(rel_error(dweight, ref.dweight), tol);
    EXPECT_LE(rel_error(dbias, ref.dbias), tol);

    NdBuffer<T, V> ys(e, layout), dxs(e, layout);
    const auto cache = bnorm::staged::forward_training<T>(x.view(), weight, bias, 1e-5, ys.view());
    bnorm::staged::backward<T>(cache, dy.view(), dxs.view(), dweight, dbias);
    EXPECT_LE(rel_error(ys.values(), ref.y), tol);
    EXPECT_LE(rel_error(dxs.values(), ref.dx), tol);
    EXPECT_LE(rel_error(dweight, ref.dweight), tol);

    // The crop's margin is never written.
    if (layout == NdLayout::cropped)
      for (const auto* b : {&y, &dx, &ys, &dxs}) {
        const auto& s = b->storage();
        EXPECT_EQ(std::count(s.begin(), s.end(), T(-7)),
                  static_cast<std::ptrdiff_t>(s.size()) - y.view().size());
      }
  }
}

TYPED_TEST(OtherRanks, NclViewsMatchTheReferenceInEveryLayout) {
  using T = TypeParam;
  check_against_reference<T, NCLView>({4, 3, 7}, 11);
  check_against_reference<T, NCLView>({16, 5, 1}, 12);  // BatchNorm1d's (N, C) input
  check_against_reference<T, NCLView>({2, 19, 33}, 13);
}

TYPED_TEST(OtherRanks, NcdhwViewsMatchTheReferenceInEveryLayout) {
  using T = TypeParam;
  check_against_reference<T, NCDHWView>({2, 3, 4, 5, 6}, 21);
  check_against_reference<T, NCDHWView>({3, 2, 1, 7, 5}, 22);  // D = 1
  check_against_reference<T, NCDHWView>({2, 17, 3, 4, 2}, 23);
}

// The fused results are the bits of BatchNorm2d on the view's NCHW face, (N, C, 1, L) and
// (N, C, D*H, W); a cropped NCDHW view, computed on a contiguous copy, the bits of the
// contiguous view.
TYPED_TEST(OtherRanks, SameBitsAsTheNchwFace) {
  using T = TypeParam;
  const std::array<index_t, 5> e{3, 4, 3, 5, 7};
  const Shape face{3, 4, 15, 7};
  const auto xs = random_values<T>(face, 31, 2.0), dys = random_values<T>(face, 32);
  const auto weight = random_array<T>(4, 33, 0.5, 1.5), bias = random_array<T>(4, 34, -1, 1);
  Buffer<T> x2(face), y2(face), dy2(face), dx2(face);
  x2.set(xs);
  dy2.set(dys);
  bnorm::BatchNorm2d<T> bn2(4);
  bn2.weight() = weight;
  bn2.bias() = bias;
  bn2.backward(bn2.forward(x2.cview(), y2.view()), dy2.cview(), dx2.view());
  for (NdLayout layout : {NdLayout::contiguous, NdLayout::cropped}) {
    SCOPED_TRACE(name(layout));
    NdBuffer<T, NCDHWView> x(e, layout), y(e, layout), dy(e, layout), dx(e, layout);
    x.set(xs);
    dy.set(dys);
    bnorm::BatchNorm3d<T> bn3(4);
    bn3.weight() = weight;
    bn3.bias() = bias;
    bn3.backward(bn3.forward(x.cview(), y.view()), dy.cview(), dx.view());
    EXPECT_TRUE(same_bits(y.values(), y2.values()));
    EXPECT_TRUE(same_bits(dx.values(), dx2.values()));
    EXPECT_TRUE(same_bits(bn3.running_var(), bn2.running_var()));
    EXPECT_TRUE(same_bits(bn3.weight_grad(), bn2.weight_grad()));
  }
  // NLC memory is the NHWC memory of (N, C, 1, L).
  const std::array<index_t, 3> l{3, 4, 105};
  NdBuffer<T, NCLView> x(l, NdLayout::channels_last), y(l, NdLayout::channels_last);
  x.set(xs);
  std::vector<T> nhwc_y(xs.size());
  const auto nhwc_x = x.storage();
  bnorm::fused::forward_training<T>(x.cview(), weight, bias, 1e-5, y.view());
  bnorm::fused::forward_training<T>(
      bnorm::NCHWView<const T>::channels_last(nhwc_x.data(), 3, 4, 1, 105), weight, bias, 1e-5,
      bnorm::NCHWView<T>::channels_last(nhwc_y.data(), 3, 4, 1, 105));
  EXPECT_TRUE(same_bits(y.storage(), nhwc_y));
}

// The modules over both variants: training steps update the running statistics with the
// unbiased variance over M = N*L or N*D*H*W values; eval normalises with them; in place on a
// cropped view (a copied face) gives the out-of-place results.
template <class T, template <class> class V, class Module>
void check_module(const typename V<T>::extents_type& e) {
  const Shape flat = NdBuffer<T, V>(e, NdLayout::contiguous).flat_shape();
  const index_t c = e[1], m = flat[0] * flat[3];
  for (bnorm::Variant variant : kVariants) {
    SCOPED_TRACE(::testing::Message() << variant);
    bnorm::Options options;
    options.variant = variant;
    Module bn(c, options);
    bn.weight() = random_array<T>(c, 41, 0.5, 1.5);
    bn.bias() = random_array<T>(c, 42, -1, 1);
    Eigen::ArrayXd mean = Eigen::ArrayXd::Zero(c), var = Eigen::ArrayXd::Ones(c);
    for (int step = 0; step < 2; ++step) {
      const auto xs = random_values<T>(flat, 43 + static_cast<std::uint64_t>(step), 1.0);
      NdBuffer<T, V> x(e, NdLayout::cropped), y(e, NdLayout::cropped);
      x.set(xs);
      const Reference ref = reference(flat, xs, xs, bn.weight(), bn.bias(), 1e-5);
      bn.forward(x.cview(), y.view());
      EXPECT_LE(rel_error(y.values(), ref.y), tolerance<T>());
      // In place on the same (copied-face) view: the same y.
      bn.forward(x.cview(), x.view());
      EXPECT_TRUE(same_bits(x.values(), y.values()));
      for (index_t k = 0; k < c; ++k) {
        const auto kk = static_cast<std::size_t>(k);
        // two forwards per step, each updating with momentum 0.1
        for (int twice = 0; twice < 2; ++twice) {
          mean[k] = 0.9 * mean[k] + 0.1 * static_cast<double>(ref.mean[kk]);
          var[k] = 0.9 * var[k] + 0.1 * static_cast<double>(ref.var[kk]) * m / (m - 1);
        }
      }
    }
    EXPECT_EQ(bn.num_batches_tracked(), 4);
    EXPECT_LE(rel_error(bn.running_mean(), mean), tolerance<T>());
    EXPECT_LE(rel_error(bn.running_var(), var), tolerance<T>());

    bn.eval();
    const auto xs = random_values<T>(flat, 47);
    NdBuffer<T, V> x(e, NdLayout::channels_last), y(e, NdLayout::channels_last);
    x.set(xs);
    bn.forward(x.cview(), y.view());
    std::vector<double> want(xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const auto k = static_cast<index_t>(i / static_cast<std::size_t>(flat[3])) % c;
      want[i] = (static_cast<double>(xs[i]) - bn.running_mean()[k]) /
                    std::sqrt(static_cast<double>(bn.running_var()[k]) + 1e-5) *
                    static_cast<double>(bn.weight()[k]) +
                static_cast<double>(bn.bias()[k]);
    }
    EXPECT_LE(rel_error(y.values(), want), tolerance<T>());
    // scale_shift() is that map: y = scale * x + shift.
    const auto map = bn.scale_shift();
    for (std::size_t i = 0; i < xs.size(); ++i) {
      const auto k = static_cast<index_t>(i / static_cast<std::size_t>(flat[3])) % c;
      ASSERT_NEAR(static_cast<double>(map.scale[k]) * static_cast<double>(xs[i]) +
                      static_cast<double>(map.shift[k]),
                  want[i], 10 * tolerance<T>() * (1 + std::abs(want[i])));
    }
  }
}

TYPED_TEST(OtherRanks, ModulesTrainAndEvaluate) {
  using T = TypeParam;
  check_module<T, NCLView, bnorm::BatchNorm1d<T>>({5, 3, 9});
  check_module<T, NCLView, bnorm::BatchNorm1d<T>>({12, 6, 1});
  check_module<T, NCDHWView, bnorm::BatchNorm3d<T>>({2, 3, 3, 4, 5});
}

// Errors speak of the views as given, and change nothing.
TEST(OtherRanks, ErrorsNameTheViewsShapes) {
  using T = float;
  EXPECT_EQ(message_of([] { NCDHWView<T>(nullptr, 1, 2, -3, 4, 5); }),
            "bnorm: NCDHWView extent 2 (D) must be >= 0, got -3");
  EXPECT_EQ(message_of([] {
              NCLView<T>(nullptr, {1, 2, 3}, {6, 3, -1});
            }),
            "bnorm: NCLView stride 2 (L) must be >= 0, got -1");
  T one = 0;
  EXPECT_EQ(message_of([&] { NCLView<T>(&one, {2, 3, 4}, {12, 4, 1}).data(); }), "(no exception)");
  EXPECT_EQ(message_of([] { NCLView<T>(nullptr, 2, 3, 4); }),
            "bnorm: NCLView data is null but the view has 24 elements");

  bnorm::BatchNorm3d<T> bn(3);
  NdBuffer<T, NCDHWView> x({2, 3, 2, 2, 2}, NdLayout::contiguous),
      y({2, 3, 2, 2, 2}, NdLayout::contiguous);
  x.set(random_values<T>({2, 3, 1, 8}, 51));
  const ModuleState<T> before(bn);
  NdBuffer<T, NCDHWView> x4({2, 4, 2, 2, 2}, NdLayout::contiguous);
  EXPECT_EQ(message_of([&] { bn.forward(x4.cview(), x4.view()); }),
            "bnorm: x has 4 channels, module has 3");
  NdBuffer<T, NCDHWView> wrong({2, 3, 2, 4, 1}, NdLayout::contiguous);
  EXPECT_EQ(message_of([&] { bn.forward(x.cview(), wrong.view()); }),
            "bnorm: y has shape [2, 3, 2, 4, 1], expected [2, 3, 2, 2, 2] (the shape of x)");
  EXPECT_TRUE(ModuleState<T>(bn) == before);
  EXPECT_TRUE(same_bits(y.values(), std::vector<T>(48, T(-7))));  // y untouched

  const auto saved = bn.forward(x.cview(), y.view());
  // dy of another 5-d shape with the same NCHW face (D*H = 4): rejected all the same.
  EXPECT_EQ(message_of([&] { bn.backward(saved, wrong.cview(), wrong.view()); }),
            "bnorm: dy has shape [2, 3, 2, 4, 1], expected [2, 3, 2, 2, 2] (the shape of the "
            "forward's x)");
  Eigen::ArrayXf dw, db;
  const auto cache =
      bnorm::staged::forward_training<T>(x.cview(), bn.weight(), bn.bias(), 1e-5, y.view());
  NdBuffer<T, NCDHWView> other({2, 3, 4, 1, 2}, NdLayout::contiguous);
  EXPECT_EQ(
      message_of([&] { bnorm::staged::backward<T>(cache, other.view(), other.view(), dw, db); }),
      "bnorm: dy has shape [2, 3, 4, 1, 2], expected [2, 3, 2, 2, 2] (the shape of the "
      "forward's x)");

  bnorm::BatchNorm1d<T> bn1(3);
  NdBuffer<T, NCLView> single({1, 3, 1}, NdLayout::contiguous);
  EXPECT_EQ(message_of([&] { bn1.forward(single.cview(), single.view()); }),
            "bnorm: Expected more than 1 value per channel when training, got input of shape "
            "[1, 3, 1]");
  bnorm::Options untracked;
  untracked.track_running_stats = false;
  EXPECT_EQ(message_of([&] { bnorm::BatchNorm1d<T>(3, untracked).scale_shift(); }),
            "bnorm: scale_shift() needs running statistics, but track_running_stats is false");
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
  o.activation = bnorm::Activation::relu;
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

}  // namespace
}  // namespace bnorm_test
