// SyncBatchNorm2d on the ranks of MPI_COMM_WORLD against one single-process BatchNorm2d on the
// concatenated batch, which every rank computes in full from the same seeds. Run by ctest under
// mpiexec on 1, 2 and 3 ranks (mpi.sync_batch_norm.npP); each rank holds an uneven part of the
// batch (some ranks none), in its own memory layout.
//
// This binary has its own main: MPI_Init, gtest output from rank 0 only (the other ranks print
// their failures, prefixed with their rank), and one exit code for all ranks. Tests use EXPECT,
// never ASSERT, around the module's calls: a rank that left a test early would leave the others
// waiting in a collective.
#include <mpi.h>

#include <bnorm/mpi.hpp>
#include <cstdio>
#include <cstring>

#include "mpi_support.hpp"

// Counting the collectives through MPI's profiling interface: these definitions take the place
// of the library's, which stay reachable as PMPI_*.
namespace bnorm_test {
long g_allgathers = 0, g_allgather_doubles = 0, g_other_collectives = 0;
}
extern "C" int MPI_Allgather(const void* send, int send_count, MPI_Datatype send_type, void* recv,
                             int recv_count, MPI_Datatype recv_type, MPI_Comm comm) {
  ++bnorm_test::g_allgathers;
  bnorm_test::g_allgather_doubles += send_type == MPI_DOUBLE ? send_count : 0;
  return PMPI_Allgather(send, send_count, send_type, recv, recv_count, recv_type, comm);
}
extern "C" int MPI_Bcast(void* buffer, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  ++bnorm_test::g_other_collectives;
  return PMPI_Bcast(buffer, count, type, root, comm);
}
extern "C" int MPI_Allreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op op,
                             MPI_Comm comm) {
  ++bnorm_test::g_other_collectives;
  return PMPI_Allreduce(send, recv, count, type, op, comm);
}

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using Sync = bnorm::mpi::SyncBatchNorm2d<T>;

/// The rank's slice [offset, offset + n) along N of a contiguous NCHW vector.
template <class T>
std::vector<T> part_of(const std::vector<T>& whole, const Shape& s, index_t offset, index_t n) {
  const index_t per_sample = s[1] * s[2] * s[3];
  return std::vector<T>(whole.begin() + static_cast<std::ptrdiff_t>(offset * per_sample),
                        whole.begin() + static_cast<std::ptrdiff_t>((offset + n) * per_sample));
}

/// One rank's part of a global batch of shape s split as `split`, and the reference on the whole.
struct Part {
  Shape whole, mine;
  index_t offset = 0;
  Layout layout = Layout::nchw;
  Part(const Shape& s, const std::vector<index_t>& split) : whole(s), mine(s) {
    const int r = world_rank();
    for (int i = 0; i < r; ++i) offset += split[static_cast<std::size_t>(i)];
    mine[0] = split[static_cast<std::size_t>(r)];
    whole[0] = 0;
    for (const index_t n : split) whole[0] += n;
    layout = kAllLayouts[static_cast<std::size_t>(r) % 4];
  }
};

template <class T>
class SyncBatchNorm : public ::testing::Test {};
TYPED_TEST_SUITE(SyncBatchNorm, FloatTypes, );  // the empty argument: -Wpedantic

/// Three training steps then two eval steps of SyncBatchNorm2d on this rank's part and of
/// BatchNorm2d on the whole batch, with new data, weight and bias at every step; compares y,
/// dx, the saved statistics, running statistics, num_batches_tracked and the gradients, checks
/// that the global statistics are the same bits on every rank, and counts the collectives.
template <class T>
void run_steps(const bnorm::Options& options, index_t channels, index_t h, index_t w,
               const std::vector<index_t>& split, std::uint64_t seed) {
  const Part part({0, channels, h, w}, split);
  SCOPED_TRACE(::testing::Message()
               << "rank " << world_rank() << " split " << to_string(split) << " shape "
               << bnorm_test::to_string(part.whole) << " affine " << options.affine << " track "
               << options.track_running_stats << " momentum "
               << (options.momentum ? *options.momentum : -1.0));
  const Shape& s = part.whole;
  const index_t c = channels, width = 2 * c + 1;
  Sync<T> sync(c, MPI_COMM_WORLD, options);
  bnorm::BatchNorm2d<T> ref(c, options);
  for (int step = 0; step < 5; ++step) {
    const bool training = step < 3;
    SCOPED_TRACE(::testing::Message() << "step " << step << (training ? " train" : " eval"));
    sync.train(training);
    ref.train(training);
    const auto k = seed + 10 * static_cast<std::uint64_t>(step);
    if (options.affine) {
      sync.weight() = ref.weight() = random_array<T>(c, k + 1, 0.5, 1.5);
      sync.bias() = ref.bias() = random_array<T>(c, k + 2, -1, 1);
    }
    const auto x = random_values<T>(s, k + 3, 2.0 * step, 1.0 + step);
    const auto dy = random_values<T>(s, k + 4);
    Buffer<T> xr(s), yr(s), dyr(s), dxr(s);
    xr.set(x);
    dyr.set(dy);
    const auto ref_saved = ref.forward(xr.cview(), yr.view());
    ref.backward(ref_saved, dyr.cview(), dxr.view());

    Buffer<T> xb(part.mine, part.layout), yb(part.mine, part.layout), dyb(part.mine, part.layout),
        dxb(part.mine, part.layout);
    xb.set(part_of(x, s, part.offset, part.mine[0]));
    dyb.set(part_of(dy, s, part.offset, part.mine[0]));
    typename Sync<T>::Saved saved;
    const Traffic fwd = traffic_of([&] { saved = sync.forward(xb.cview(), yb.view()); });
    const Traffic bwd = traffic_of([&] { sync.backward(saved, dyb.cview(), dxb.view()); });

    const bool global = training;  // statistics over every rank, communicated
    EXPECT_EQ(saved.synchronized(), global);
    EXPECT_EQ(fwd.allgathers, global ? 1 : 0);
    EXPECT_EQ(fwd.doubles, global ? width : 0);
    EXPECT_EQ(bwd.allgathers, global ? 1 : 0);
    EXPECT_EQ(bwd.doubles, global ? width : 0);
    EXPECT_EQ(fwd.other + bwd.other, 0);

    if (training || options.track_running_stats) {
      // Global batch statistics (training) or the running buffers (eval): the reference's.
      EXPECT_LE(rel_error(yb.values(), part_of(yr.values(), s, part.offset, part.mine[0])),
                tolerance<T>());
      EXPECT_LE(rel_error(dxb.values(), part_of(dxr.values(), s, part.offset, part.mine[0])),
                tolerance<T>());
      if (training || part.mine[0] > 0) {  // BatchNorm2d saves no statistics for N == 0
        EXPECT_LE(rel_error(saved.mean(), ref_saved.mean()), tolerance<T>());
        EXPECT_LE(rel_error(saved.invstd(), ref_saved.invstd()), tolerance<T>());
      }
      // This rank's gradient contribution: sums over its part with the global statistics...
      Eigen::ArrayXd dw = Eigen::ArrayXd::Zero(c), db = Eigen::ArrayXd::Zero(c);
      const auto xv = xb.values(), dyv = dyb.values();
      const index_t plane = h * w;
      for (std::size_t i = 0; i < xv.size(); ++i) {
        const auto ch = static_cast<Eigen::Index>((static_cast<index_t>(i) / plane) % c);
        dw[ch] += static_cast<double>(dyv[i]) *
                  (static_cast<double>(xv[i]) - static_cast<double>(ref_saved.mean()[ch])) *
                  static_cast<double>(ref_saved.invstd()[ch]);
        db[ch] += static_cast<double>(dyv[i]);
      }
      if (options.affine) {
        EXPECT_LE(rel_error(sync.weight_grad(), dw), 10 * tolerance<T>());
        EXPECT_LE(rel_error(sync.bias_grad(), db), tolerance<T>());
        // ...which add up over the ranks to the whole batch's gradients.
        EXPECT_LE(rel_error(sum_over_ranks(sync.weight_grad()), ref.weight_grad()), tolerance<T>());
        EXPECT_LE(rel_error(sum_over_ranks(sync.bias_grad()), ref.bias_grad()), tolerance<T>());
      } else {
        EXPECT_EQ(sync.weight_grad().size() + sync.bias_grad().size(), 0);
      }
    } else {
      // Untracked eval: this rank's own batch statistics, as PyTorch's SyncBatchNorm in eval.
      bnorm::BatchNorm2d<T> local(c, options);
      local.eval();
      local.weight() = sync.weight();
      local.bias() = sync.bias();
      Buffer<T> yl(part.mine, part.layout), dxl(part.mine, part.layout);
      const auto local_saved = local.forward(xb.cview(), yl.view());
      local.backward(local_saved, dyb.cview(), dxl.view());
      EXPECT_TRUE(yb.values() == yl.values());
      EXPECT_TRUE(dxb.values() == dxl.values());
      EXPECT_TRUE((sync.weight_grad() == local.weight_grad()).all());
    }
    EXPECT_EQ(sync.num_batches_tracked(), ref.num_batches_tracked());
    EXPECT_EQ(sync.running_mean().size(), ref.running_mean().size());
    EXPECT_LE(rel_error(sync.running_mean(), ref.running_mean()), tolerance<T>());
    EXPECT_LE(rel_error(sync.running_var(), ref.running_var()), tolerance<T>());
    EXPECT_TRUE(same_on_all_ranks(sync.running_mean()));
    EXPECT_TRUE(same_on_all_ranks(sync.running_var()));
    if (training) {
      EXPECT_TRUE(same_on_all_ranks(saved.mean()));
      EXPECT_TRUE(same_on_all_ranks(saved.invstd()));
      EXPECT_EQ(saved.count(), s[0] * h * w);
    }
    EXPECT_EQ(xb.padding_changed() + yb.padding_changed() + dxb.padding_changed(), 0);
  }
}

TYPED_TEST(SyncBatchNorm, UnevenSplitsEqualOneProcessOnTheWholeBatch) {
  std::uint64_t seed = 1000;
  for (const auto& split : splits(world_size())) {
    run_steps<TypeParam>({}, 3, 4, 5, split, seed += 100);
    run_steps<TypeParam>({}, 17, 3, 2, split, seed += 100);
  }
}

TYPED_TEST(SyncBatchNorm, OptionsFollowBatchNorm2d) {
  const std::optional<double> cumulative;
  const bnorm::Options variants[] = {
      {1e-3, cumulative, true, true, bnorm::Variant::fused},  // momentum = None
      {1e-5, 0.3, false, true, bnorm::Variant::fused},        // no weight or bias
      {1e-5, 0.1, true, false, bnorm::Variant::fused},        // no running buffers
  };
  std::uint64_t seed = 5000;
  for (const auto& options : variants)
    for (const auto& split : splits(world_size()))
      run_steps<TypeParam>(options, 3, 4, 5, split, seed += 100);
}

// H = W = 1 and one sample on every rank but the last: one value per channel on a rank is fine
// once the ranks together have more than one. (Not 1 + 1: with M = 2, dx is 0 up to eps terms
// and its relative error measures only rounding.)
TYPED_TEST(SyncBatchNorm, OneValueOnARankIsFine) {
  const int p = world_size();
  if (p == 1) GTEST_SKIP() << "needs two ranks";
  std::vector<index_t> split(static_cast<std::size_t>(p), 1);
  split.back() = 4;
  run_steps<TypeParam>({}, 4, 1, 1, split, 7000);
}

// In place as BatchNorm2d: forward with y = x gives the same bits as out of place and a Saved
// that backward rejects; backward with dx = dy gives the same bits as out of place.
TYPED_TEST(SyncBatchNorm, InPlaceAsBatchNorm2d) {
  using T = TypeParam;
  const Shape s{2, 3, 4, 5};
  Sync<T> a(3, MPI_COMM_WORLD), b(3, MPI_COMM_WORLD);
  Buffer<T> x(s), y(s), z(s), dy(s), dx(s), dz(s);
  const auto values = random_values<T>(s, 81 + static_cast<std::uint64_t>(world_rank()));
  x.set(values);
  z.set(values);
  dy.set(random_values<T>(s, 91 + static_cast<std::uint64_t>(world_rank())));
  dz.set(dy.values());
  const auto out = a.forward(x.cview(), y.view());
  const auto in = b.forward(z.cview(), z.view());
  EXPECT_TRUE(in.in_place());
  EXPECT_FALSE(out.in_place());
  EXPECT_TRUE(z.values() == y.values());
  EXPECT_TRUE((a.running_var() == b.running_var()).all());
  EXPECT_EQ(message_of([&] { b.backward(in, dy.cview(), dx.view()); }),
            "bnorm: saved comes from a forward that ran in place (y was x) and overwrote the x "
            "that backward needs: expected the Saved of a forward with a separate y");
  a.backward(out, dy.cview(), dx.view());
  a.backward(out, dz.cview(), dz.view());
  EXPECT_TRUE(dz.values() == dx.values());
}

// SyncBatchNorm2d of 16-bit tensors (float parameters) against BatchNorm2d<bfloat16> on the whole
// batch: y and dx within one bfloat16 ulp (the statistics merge over the ranks in another order,
// so a float result may round the other way), float buffers and gradients within float rounding.
TEST(SyncBatchNormBfloat16, EqualsOneProcessOnTheWholeBatch) {
  using H = Eigen::bfloat16;
  for (const auto& split : splits(world_size())) {
    const Part part({0, 5, 3, 4}, split);
    const Shape& s = part.whole;
    Sync<H> sync(5, MPI_COMM_WORLD);
    bnorm::BatchNorm2d<H> ref(5);
    sync.weight() = ref.weight() = random_array<float>(5, 11, 0.5, 1.5);
    sync.bias() = ref.bias() = random_array<float>(5, 12, -1, 1);
    std::vector<H> x, dy;
    for (const double v : random_values<double>(s, 13, 3.0)) x.push_back(H(static_cast<float>(v)));
    for (const double v : random_values<double>(s, 14)) dy.push_back(H(static_cast<float>(v)));
    Buffer<H> xr(s), yr(s), dyr(s), dxr(s), xb(part.mine, part.layout), yb(part.mine, part.layout),
        dyb(part.mine, part.layout), dxb(part.mine, part.layout);
    xr.set(x);
    dyr.set(dy);
    xb.set(part_of(x, s, part.offset, part.mine[0]));
    dyb.set(part_of(dy, s, part.offset, part.mine[0]));
    ref.backward(ref.forward(xr.cview(), yr.view()), dyr.cview(), dxr.view());
    sync.backward(sync.forward(xb.cview(), yb.view()), dyb.cview(), dxb.view());
    // |a - b| <= one ulp of the larger: 2^-7 relative for bfloat16, at least 2^-7 * 1e-3
    const auto within_an_ulp = [](const std::vector<H>& a, const std::vector<H>& b) {
      for (std::size_t i = 0; i < a.size(); ++i) {
        const float u = static_cast<float>(a[i]), v = static_cast<float>(b[i]);
        if (std::abs(u - v) > std::max({std::abs(u), std::abs(v), 1e-3f}) * 0x1p-7f) return false;
      }
      return a.size() == b.size();
    };
    EXPECT_TRUE(within_an_ulp(yb.values(), part_of(yr.values(), s, part.offset, part.mine[0])));
    EXPECT_TRUE(within_an_ulp(dxb.values(), part_of(dxr.values(), s, part.offset, part.mine[0])));
    EXPECT_LE(rel_error(sync.running_mean(), ref.running_mean()), 1e-6);
    EXPECT_LE(rel_error(sync.running_var(), ref.running_var()), 1e-6);
    EXPECT_LE(rel_error(sum_over_ranks(sync.bias_grad()), ref.bias_grad()), 1e-6);
  }
}

}  // namespace
}  // namespace bnorm_test
