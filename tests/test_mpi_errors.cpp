// SyncBatchNorm2d when the ranks differ: one rank's bad call or argument is every rank's error
// (the others name it), an empty global batch, eval steps that differ in number between ranks.
// Linked into test_mpi.cpp's binary (its own main, mpi_test_main.cpp; the collectives counted
// there); the same rules: EXPECT, never ASSERT, around the module's calls.
#include <mpi.h>

#include <bnorm/mpi.hpp>
#include <optional>
#include <string>

#include "mpi_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using Sync = bnorm::mpi::SyncBatchNorm2d<T>;

template <class T>
class SyncErrors : public ::testing::Test {};
TYPED_TEST_SUITE(SyncErrors, FloatTypes, );  // the empty argument: -Wpedantic

// A module on this rank that trained one step, with random data in y and dx.
template <class T>
struct Trained {
  Shape s{2, 3, 4, 5};
  Sync<T> bn{3, MPI_COMM_WORLD};
  Buffer<T> x{s}, y{s}, dy{s}, dx{s};
  typename Sync<T>::Saved saved;
  Trained() {
    x.set(random_values<T>(s, 11 + static_cast<std::uint64_t>(world_rank())));
    dy.set(random_values<T>(s, 21 + static_cast<std::uint64_t>(world_rank())));
    saved = bn.forward(x.cview(), y.view());
    bn.backward(saved, dy.cview(), dx.view());
    y.set(random_values<T>(s, 31));
    dx.set(random_values<T>(s, 41));
  }
  // Runs f, expects this rank's `message`, and nothing changed here.
  template <class F>
  void expect_rejected(const F& f, const std::string& message) {
    bnorm_test::expect_rejected<T>(bn, y, dx, f, message);
  }
  // A valid training step afterwards: the ranks' collectives are still in step.
  void expect_usable() {
    const auto batches = bn.num_batches_tracked();
    const auto again = bn.forward(x.cview(), y.view());
    bn.backward(again, dy.cview(), dx.view());
    EXPECT_EQ(bn.num_batches_tracked(), batches + 1);
    EXPECT_TRUE(same_on_all_ranks(bn.running_var()));
  }
};

std::string rejected_by(int rank, const char* call, const std::string& message) {
  return "bnorm: rank " + std::to_string(rank) + " of " + std::to_string(world_size()) +
         " rejected " + call + ": " + message;
}

// The last rank passes an x with the wrong channel count: it throws BatchNorm2d's exception,
// the others one naming it, no rank writes anything, and the module stays usable.
TYPED_TEST(SyncErrors, OneRanksBadForwardIsEveryRanksError) {
  using T = TypeParam;
  Trained<T> t;
  const int bad = world_size() - 1;
  Buffer<T> x4({2, 4, 4, 5}), y4({2, 4, 4, 5});
  x4.set(random_values<T>({2, 4, 4, 5}, 51));
  const std::string own = "bnorm: x has 4 channels, module has 3";
  t.expect_rejected(
      [&] {
        if (world_rank() == bad)
          t.bn.forward(x4.cview(), y4.view());
        else
          t.bn.forward(t.x.cview(), t.y.view());
      },
      world_rank() == bad ? own : rejected_by(bad, "forward", "x has 4 channels, module has 3"));
  t.expect_usable();
}

TYPED_TEST(SyncErrors, OneRanksBadBackwardIsEveryRanksError) {
  using T = TypeParam;
  Trained<T> t;
  Buffer<T> dy_short({1, 3, 4, 5});
  dy_short.set(random_values<T>({1, 3, 4, 5}, 61));
  const std::string own =
      "bnorm: dy has shape [1, 3, 4, 5], expected [2, 3, 4, 5] (the shape of the forward's x)";
  t.expect_rejected(
      [&] {
        if (world_rank() == 0)
          t.bn.backward(t.saved, dy_short.cview(), t.dx.view());
        else
          t.bn.backward(t.saved, t.dy.cview(), t.dx.view());
      },
      world_rank() == 0
          ? own
          : rejected_by(0, "backward",
                        "dy has shape [1, 3, 4, 5], expected [2, 3, 4, 5] (the shape of the "
                        "forward's x)"));
  t.expect_usable();
}

// A weight resized on one rank only is caught on that rank, and so on every rank.
TYPED_TEST(SyncErrors, ResizedWeightOnOneRank) {
  using T = TypeParam;
  Trained<T> t;
  const int bad = world_size() - 1;
  const Array<T> kept = t.bn.weight();
  if (world_rank() == bad) t.bn.weight() = kept.head(2);  // (resize would leave garbage)
  const std::string message = "weight has 2 elements, expected 3 (num_features)";
  t.expect_rejected(
      [&] { t.bn.forward(t.x.cview(), t.y.view()); },
      world_rank() == bad ? "bnorm: " + message : rejected_by(bad, "forward", message));
  t.bn.weight() = kept;
  t.expect_usable();
}

// The global batch has one value per channel: every rank throws, whatever its own part.
TYPED_TEST(SyncErrors, OneValueOverAllRanksIsAnError) {
  using T = TypeParam;
  Trained<T> t;
  const Shape mine{world_rank() == 0 ? 1 : 0, 3, 1, 1};
  Buffer<T> x(mine), y(mine);
  x.set(random_values<T>(mine, 71));
  const std::string shape = world_rank() == 0 ? "[1, 3, 1, 1]" : "[0, 3, 1, 1]";
  const std::string message =
      world_size() == 1
          ? "bnorm: Expected more than 1 value per channel when training, got input of shape " +
                shape
          : "bnorm: Expected more than 1 value per channel when training, got input of shape " +
                shape + " on rank " + std::to_string(world_rank()) +
                " and 1 value per channel over the " + std::to_string(world_size()) +
                " ranks of comm";
  const Snapshot<T> before(t.bn, y);
  EXPECT_EQ(message_of([&] { t.bn.forward(x.cview(), y.view()); }), message);
  EXPECT_TRUE(Snapshot<T>(t.bn, y) == before);
  t.expect_usable();
}

// Every rank's part is empty: a no-op everywhere (as BatchNorm2d with N == 0); backward
// communicates nothing and gives zero gradients.
TYPED_TEST(SyncErrors, EmptyGlobalBatchChangesNothing) {
  using T = TypeParam;
  Trained<T> t;
  const Shape empty{0, 3, 4, 5};
  Buffer<T> x(empty), y(empty), dy(empty), dx(empty);
  const Snapshot<T> before(t.bn, t.y);
  typename Sync<T>::Saved saved;
  const Traffic fwd = traffic_of([&] { saved = t.bn.forward(x.cview(), y.view()); });
  EXPECT_EQ(fwd.allgathers, 1);
  EXPECT_TRUE(Snapshot<T>(t.bn, t.y) == before);
  EXPECT_EQ(saved.count(), 0);
  const Traffic bwd = traffic_of([&] { t.bn.backward(saved, dy.cview(), dx.view()); });
  EXPECT_EQ(bwd.allgathers + bwd.other, 0);
  EXPECT_TRUE((t.bn.weight_grad() == 0).all());
  EXPECT_TRUE((t.bn.bias_grad() == 0).all());
  t.expect_usable();
}

TYPED_TEST(SyncErrors, ConstructorChecksEveryRanksArguments) {
  using T = TypeParam;
  const int p = world_size(), last = p - 1, r = world_rank();
  // A rank's invalid option: BatchNorm2d's message there, the rank's on the others.
  const std::string eps_message = "eps must be finite and >= 0, got -1";
  EXPECT_EQ(
      message_of([&] {
        Sync<T>(3, MPI_COMM_WORLD, {r == 0 ? -1.0 : 1e-5, 0.1, true, true, bnorm::Variant::fused});
      }),
      r == 0 ? "bnorm: " + eps_message : rejected_by(0, "the constructor", eps_message));
  EXPECT_EQ(message_of([&] { Sync<T>(r == last ? 0 : 3, MPI_COMM_WORLD); }),
            r == last ? "bnorm: num_features must be > 0, got 0"
                      : rejected_by(last, "the constructor", "num_features must be > 0, got 0"));
  // Invalid on every rank: each rank throws its own exception.
  EXPECT_EQ(message_of([&] {
              Sync<T>(3, MPI_COMM_WORLD, {1e-5, 0.1, true, true, bnorm::Variant::staged});
            }),
            "bnorm: options.variant is staged, SyncBatchNorm2d needs fused");
  if (p == 1) return;
  // Valid on every rank, but different: every rank throws the same message.
  EXPECT_EQ(message_of([&] { Sync<T>(r == last ? 4 : 3, MPI_COMM_WORLD); }),
            "bnorm: SyncBatchNorm2d arguments differ across the ranks of comm: rank " +
                std::to_string(last) + " has num_features 4, rank 0 has 3");
  const std::optional<double> cumulative;
  EXPECT_EQ(message_of([&] {
              Sync<T>(3, MPI_COMM_WORLD,
                      {1e-5, r == last ? cumulative : std::optional<double>(0.1), true, true,
                       bnorm::Variant::fused});
            }),
            "bnorm: SyncBatchNorm2d arguments differ across the ranks of comm: rank " +
                std::to_string(last) + " has momentum nullopt, rank 0 has 0.10000000000000001");
  EXPECT_EQ(message_of([&] {
              Sync<T>(3, MPI_COMM_WORLD, {1e-5, 0.1, r != last, true, bnorm::Variant::fused});
            }),
            "bnorm: SyncBatchNorm2d arguments differ across the ranks of comm: rank " +
                std::to_string(last) + " has affine false, rank 0 has true");
}

// Eval with tracked statistics is local: ranks may run different numbers of eval steps.
TYPED_TEST(SyncErrors, EvalIsLocal) {
  using T = TypeParam;
  Trained<T> t;
  t.bn.eval();
  const Traffic traffic = traffic_of([&] {
    for (int i = 0; i <= world_rank(); ++i) {
      const auto saved = t.bn.forward(t.x.cview(), t.y.view());
      EXPECT_FALSE(saved.synchronized());
      t.bn.backward(saved, t.dy.cview(), t.dx.view());
    }
  });
  EXPECT_EQ(traffic.allgathers + traffic.other, 0);
  t.bn.train();
  t.expect_usable();
}

}  // namespace
}  // namespace bnorm_test
