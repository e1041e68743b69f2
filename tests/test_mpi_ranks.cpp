// SyncBatchNorm1d and SyncBatchNorm3d on the ranks of MPI_COMM_WORLD against one single-process
// BatchNorm1d / BatchNorm3d on the concatenated batch, as test_mpi.cpp does for SyncBatchNorm2d:
// (N, C), (N, C, L) and (N, C, D, H, W) parts, uneven (some ranks hold none), each rank's part in
// a layout that changes from step to step: contiguous, channels-last, or a crop of a larger
// tensor (strides whose D and H do not merge, which the library runs on a copy). Run by ctest
// under mpiexec on 1, 2 and 3 ranks (mpi.sync_batch_norm_ranks.npP).
//
// Own main as test_mpi.cpp's: gtest output from rank 0 only, one exit code for all ranks; EXPECT,
// never ASSERT, around collective calls (a rank leaving early would leave the others waiting).
#include <mpi.h>

#include <bnorm/mpi.hpp>
#include <cstdio>
#include <functional>
#include <numeric>

#include "mpi_support.hpp"

namespace bnorm_test {
namespace {

using bnorm::NCDHWView;
using bnorm::NCLView;

enum class Layout { contiguous, channels_last, cropped };
constexpr const char* kLayoutNames[] = {"contiguous", "channels-last", "cropped"};

/// A tensor of view kind V in one layout, read and written in logical (N, C, spatial) order.
/// "cropped" is the leading corner of a tensor one larger in every spatial axis. Storage outside
/// the view holds a sentinel, to check that nothing outside the view is written.
template <class T, template <class> class V>
class Tensor {
 public:
  using Extents = typename V<T>::extents_type;
  static constexpr std::size_t R = V<T>::rank;

  Tensor(const Extents& e, Layout layout) {
    Extents outer = e;
    if (layout == Layout::cropped)
      for (std::size_t r = 2; r < R; ++r) outer[r] += 1;
    const Extents strides = layout == Layout::channels_last ? V<T>::channels_last_strides(outer)
                                                            : V<T>::contiguous_strides(outer);
    const index_t size =
        std::accumulate(outer.begin(), outer.end(), index_t{1}, std::multiplies<>());
    storage_.assign(static_cast<std::size_t>(std::max<index_t>(size, 1)), kSentinel);
    view_ = V<T>(storage_.data(), e, strides);
  }
  V<T> view() const { return view_; }
  V<const T> cview() const { return view_; }
  std::vector<T> values() const {
    std::vector<T> out(static_cast<std::size_t>(view_.size()));
    for_each([&](std::size_t i, std::size_t at) { out[i] = storage_[at]; });
    return out;
  }
  void set(const std::vector<T>& v) {
    for_each([&](std::size_t i, std::size_t at) { storage_[at] = v[i]; });
  }
  /// Storage elements outside the view that no longer hold the sentinel (the random values
  /// inside never equal it).
  index_t outside_changed() const {
    return static_cast<index_t>(storage_.size()) - view_.size() -
           std::count(storage_.begin(), storage_.end(), kSentinel);
  }

 private:
  static constexpr T kSentinel = T(-12345.25);
  // f(logical index, storage offset) over every element.
  template <class F>
  void for_each(F f) const {
    for (std::size_t i = 0; i < static_cast<std::size_t>(view_.size()); ++i) {
      index_t rest = static_cast<index_t>(i), at = 0;
      for (std::size_t r = R; r-- > 0;) {
        at += rest % view_.extent(static_cast<int>(r)) * view_.stride(static_cast<int>(r));
        rest /= view_.extent(static_cast<int>(r));
      }
      f(i, static_cast<std::size_t>(at));
    }
  }
  std::vector<T> storage_;
  V<T> view_;
};

/// Values per sample and channel: the product of the spatial extents.
template <class Extents>
index_t spatial(const Extents& e) {
  index_t p = 1;
  for (std::size_t r = 2; r < e.size(); ++r) p *= e[r];
  return p;
}

template <class T>
class SyncOtherRanks : public ::testing::Test {};
TYPED_TEST_SUITE(SyncOtherRanks, FloatTypes, );  // the empty argument: -Wpedantic

/// Three training steps then two eval steps of Sync on this rank's part of a batch of extents e
/// (e[0] is ignored: the split gives N) and of Ref on the whole batch, laid out contiguously,
/// with new data, weight and bias at every step: y, dx, the running statistics,
/// num_batches_tracked, and the gradients summed over the ranks.
template <class T, template <class> class V, class Sync, class Ref>
void run_steps(typename V<T>::extents_type e, const std::vector<index_t>& split,
               const bnorm::Options& options, bnorm::Variant ref_variant, std::uint64_t seed) {
  const int rank = world_rank();
  auto whole = e, mine = e;
  whole[0] = std::accumulate(split.begin(), split.end(), index_t{0});
  mine[0] = split[static_cast<std::size_t>(rank)];
  const index_t offset = std::accumulate(split.begin(), split.begin() + rank, index_t{0});
  const index_t c = e[1], per_sample = c * spatial(e);
  const Shape flat{whole[0], c, 1, spatial(e)};  // the same values as NCHW, for random_values
  auto slice = [&](const std::vector<T>& v) {    // this rank's samples of the whole batch
    return std::vector<T>(v.begin() + offset * per_sample,
                          v.begin() + (offset + mine[0]) * per_sample);
  };
  SCOPED_TRACE(::testing::Message()
               << "rank " << rank << " of " << world_size() << ", whole batch "
               << bnorm::detail::shape_text(whole) << ", mine " << mine[0] << ", reference "
               << ref_variant << ", momentum " << (options.momentum ? *options.momentum : -1.0));
  const double tol = tolerance<T>();
  Sync sync(c, MPI_COMM_WORLD, options);
  bnorm::Options ref_options = options;
  ref_options.variant = ref_variant;
  Ref ref(c, ref_options);
  for (int step = 0; step < 5; ++step) {
    const bool training = step < 3;
    const auto layout = static_cast<Layout>((rank + step) % 3);  // (the enum's order)
    SCOPED_TRACE(::testing::Message()
                 << "step " << step << " " << kLayoutNames[static_cast<int>(layout)]);
    sync.train(training);
    ref.train(training);
    const auto k = seed + 10 * static_cast<std::uint64_t>(step);
    sync.weight() = ref.weight() = random_array<T>(c, k + 1, 0.5, 1.5);
    sync.bias() = ref.bias() = random_array<T>(c, k + 2, -1, 1);
    const auto x = random_values<T>(flat, k + 3, 2.0 * step, 1.0 + step);
    const auto dy = random_values<T>(flat, k + 4);

    Tensor<T, V> xr(whole, Layout::contiguous), yr(whole, Layout::contiguous),
        dyr(whole, Layout::contiguous), dxr(whole, Layout::contiguous);
    xr.set(x);
    dyr.set(dy);
    const auto ref_saved = ref.forward(xr.cview(), yr.view());
    ref.backward(ref_saved, dyr.cview(), dxr.view());

    Tensor<T, V> xb(mine, layout), yb(mine, layout), dyb(mine, layout), dxb(mine, layout);
    xb.set(slice(x));
    dyb.set(slice(dy));
    const auto saved = sync.forward(xb.cview(), yb.view());
    sync.backward(saved, dyb.cview(), dxb.view());

    EXPECT_EQ(saved.synchronized(), training);
    EXPECT_LE(rel_error(yb.values(), slice(yr.values())), tol);
    EXPECT_LE(rel_error(dxb.values(), slice(dxr.values())), tol);
    if (training) {
      EXPECT_LE(rel_error(saved.mean(), ref_saved.mean()), tol);
    }
    EXPECT_LE(rel_error(sum_over_ranks(sync.weight_grad()), ref.weight_grad()), tol);
    EXPECT_LE(rel_error(sum_over_ranks(sync.bias_grad()), ref.bias_grad()), tol);
    EXPECT_EQ(sync.num_batches_tracked(), ref.num_batches_tracked());
    EXPECT_LE(rel_error(sync.running_mean(), ref.running_mean()), tol);
    EXPECT_LE(rel_error(sync.running_var(), ref.running_var()), tol);
    EXPECT_EQ(xb.outside_changed() + yb.outside_changed() + dxb.outside_changed(), 0);
  }
}

/// Every split of the batch for every shape, with PyTorch's default momentum and with the
/// cumulative average (momentum None), against the reference module in each variant.
template <class T, template <class> class V, class Sync, class Ref>
void run_all(const std::vector<typename V<T>::extents_type>& shapes, std::uint64_t seed) {
  bnorm::Options cumulative;
  cumulative.eps = 1e-3;
  cumulative.momentum = std::nullopt;
  for (const auto& e : shapes)
    for (const auto& split : splits(world_size()))
      for (const bnorm::Options& options : {bnorm::Options{}, cumulative})
        for (const bnorm::Variant variant : kVariants)
          run_steps<T, V, Sync, Ref>(e, split, options, variant, seed += 100);
}

// (N, C) parts are the NCL views with L = 1.
TYPED_TEST(SyncOtherRanks, BatchNorm1dOnNCAndNCLPartsEqualsOneProcess) {
  using T = TypeParam;
  run_all<T, NCLView, bnorm::mpi::SyncBatchNorm1d<T>, bnorm::BatchNorm1d<T>>(
      {{0, 5, 1}, {0, 17, 1}, {0, 3, 6}, {0, 17, 4}}, 1000);
}

TYPED_TEST(SyncOtherRanks, BatchNorm3dOnNCDHWPartsEqualsOneProcess) {
  using T = TypeParam;
  run_all<T, NCDHWView, bnorm::mpi::SyncBatchNorm3d<T>, bnorm::BatchNorm3d<T>>(
      {{0, 3, 2, 3, 4}, {0, 5, 3, 2, 2}}, 3000);
}

/// After one training step, the last rank passes an x with one channel too many: it throws the
/// module's own message, every other rank one naming it; nothing changes on any rank, and the
/// next training step runs on every rank.
template <class T, template <class> class V, class Sync>
void wrong_channels_on_one_rank(typename V<T>::extents_type e) {
  const int rank = world_rank(), bad = world_size() - 1;
  const index_t c = e[1];
  auto wide = e;
  wide[1] = c + 1;
  const Shape flat{e[0], c, 1, spatial(e)};
  Tensor<T, V> x(e, Layout::cropped), y(e, Layout::cropped), dy(e, Layout::channels_last),
      dx(e, Layout::contiguous), xw(wide, Layout::contiguous), yw(wide, Layout::contiguous);
  x.set(random_values<T>(flat, 11 + static_cast<std::uint64_t>(rank)));
  dy.set(random_values<T>(flat, 21 + static_cast<std::uint64_t>(rank)));
  xw.set(random_values<T>({e[0], c + 1, 1, flat[3]}, 31));
  Sync bn(c, MPI_COMM_WORLD);
  bn.backward(bn.forward(x.cview(), y.view()), dy.cview(), dx.view());
  Tensor<T, V>& out = rank == bad ? yw : y;                           // the y this rank passes
  out.set(random_values<T>({e[0], out.view().c(), 1, flat[3]}, 41));  // values to keep
  const ModuleState<T> before(bn);
  const std::vector<T> out_before = out.values();

  const std::string own = bnorm::detail::concat("x has ", c + 1, " channels, module has ", c);
  EXPECT_EQ(message_of([&] {
              rank == bad ? bn.forward(xw.cview(), yw.view()) : bn.forward(x.cview(), y.view());
            }),
            rank == bad ? "bnorm: " + own
                        : bnorm::detail::concat("bnorm: rank ", bad, " of ", world_size(),
                                                " rejected forward: ", own));
  EXPECT_TRUE(ModuleState<T>(bn) == before);
  EXPECT_TRUE(same_bits(out.values(), out_before));
  EXPECT_EQ(out.outside_changed(), 0);

  bn.backward(bn.forward(x.cview(), y.view()), dy.cview(), dx.view());
  EXPECT_EQ(bn.num_batches_tracked(), before.batches + 1);
}

TYPED_TEST(SyncOtherRanks, OneRanksWrongChannelCountIsEveryRanksError) {
  using T = TypeParam;
  wrong_channels_on_one_rank<T, NCLView, bnorm::mpi::SyncBatchNorm1d<T>>({4, 3, 5});
  wrong_channels_on_one_rank<T, NCDHWView, bnorm::mpi::SyncBatchNorm3d<T>>({2, 3, 2, 3, 4});
}

}  // namespace
}  // namespace bnorm_test
