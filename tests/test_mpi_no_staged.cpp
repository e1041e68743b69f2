// SyncBatchNorm2d in a translation unit compiled with BNORM_NO_STAGED, linked into the same MPI
// test binary as test_mpi.cpp, which uses the full one: like BatchNorm2d, the class then lives in
// an inline namespace of its own, so the two kinds of unit coexist in one program. Every rank
// holds the same batch, so the global batch is P copies of it and its y and dx are those of the
// one copy: checked against the long-double reference.
#define BNORM_NO_STAGED

#include <mpi.h>

#include <bnorm/mpi.hpp>
#include <type_traits>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

static_assert(std::is_same_v<bnorm::mpi::SyncBatchNorm2d<float>,
                             bnorm::mpi::no_staged::SyncBatchNorm2d<float>>,
              "without the staged variant SyncBatchNorm2d lives in the inline namespace "
              "no_staged");

template <class T>
class SyncNoStaged : public ::testing::Test {};
TYPED_TEST_SUITE(SyncNoStaged, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(SyncNoStaged, CopiesOnEveryRankMatchTheReference) {
  using T = TypeParam;
  const Shape s{2, 3, 4, 5};
  const std::vector<T> xv = random_values<T>(s, 51, 1.5), dyv = random_values<T>(s, 52);
  Buffer<T> x(s), dy(s), y(s), dx(s, Layout::channels_last);
  x.set(xv);
  dy.set(dyv);
  bnorm::mpi::SyncBatchNorm2d<T> bn(s[1], MPI_COMM_WORLD);
  bn.weight() = random_array<T>(s[1], 53, 0.5, 2.0);
  bn.bias() = random_array<T>(s[1], 54, -1.0, 1.0);
  const auto saved = bn.forward(x.cview(), y.view());
  bn.backward(saved, dy.cview(), dx.view());
  const Reference r = reference<T>(s, xv, dyv, bn.weight(), bn.bias(), bn.options().eps);
  EXPECT_LE(rel_error(y.values(), r.y), tolerance<T>());
  EXPECT_LE(rel_error(dx.values(), r.dx), tolerance<T>());
  EXPECT_LE(rel_error(bn.weight_grad(), r.dweight), tolerance<T>());  // this rank's part
  EXPECT_EQ(bn.num_batches_tracked(), 1);
}

}  // namespace
}  // namespace bnorm_test
