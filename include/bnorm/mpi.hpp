/// @file mpi.hpp
/// @brief SyncBatchNorm1d, SyncBatchNorm2d and SyncBatchNorm3d: BatchNorm1d, 2d and 3d whose
/// training statistics and backward reductions cover one batch spread over the ranks of an MPI
/// communicator, as torch.nn.SyncBatchNorm (one class template, SyncBatchNorm, for every rank).
///
/// The only bnorm header that needs MPI; <bnorm/bnorm.hpp> does not include it. Link the
/// program with MPI (CMake: find_package(MPI) and target_link_libraries(app PRIVATE
/// bnorm::bnorm MPI::MPI_CXX)).
#pragma once

#include <mpi.h>

#include <Eigen/Core>
#include <array>
#include <climits>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "batch_norm.hpp"
#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/mpi_exchange.hpp"
#include "fused.hpp"
#include "nchw_view.hpp"

namespace bnorm::mpi {

/// torch.nn.SyncBatchNorm over MPI, for T = float, double, Eigen::bfloat16 or Eigen::half and views
/// of kind View (NCLView, NCHWView, NCDHWView; users name the faces SyncBatchNorm1d, 2d and 3d
/// below): a BatchNorm whose training statistics and backward reductions cover the whole batch
/// spread over the ranks of `comm`, each rank holding a part of it (any sizes, including N = 0).
///
/// Per training step each rank sends, in one MPI_Allgather of doubles,
///   forward:  2C + 1 numbers, its (count, mean[C], M2[C]);
///   backward: 2C + 1 numbers, its (count, sum dy[C], sum dy * (x - mean)[C]).
/// Every rank merges the records in rank order with the same code (Chan et al.'s formula in
/// fused::merge_statistics, and sums added left to right), so the statistics, the running
/// buffers and dx's coefficients are the same bits on every rank. The count word doubles as a
/// status flag: a rank whose arguments fail validation sends -1 instead (-2 for any other
/// exception before the exchange), and then every rank throws (see "Errors" below) before
/// anything is written, instead of leaving the other ranks waiting in the collective.
///
/// Semantics, as PyTorch's SyncBatchNorm:
/// - training normalises with the global batch's mean and biased variance; running_mean and
///   running_var are updated identically on every rank with the global mean and the global
///   unbiased variance (M / (M - 1), M the global N*H*W).
/// - weight_grad() and bias_grad() are this rank's local contribution, sum over its part of
///   dy * xhat and dy; the data-parallel layer sums or averages them across ranks with the other
///   parameters' gradients. dx is exact for the global batch.
/// - eval never communicates: with tracked statistics it normalises with the running buffers;
///   without them (track_running_stats = false) it normalises with *this rank's* batch
///   statistics, as PyTorch's SyncBatchNorm does in eval ("Don't sync batchnorm stats in
///   inference mode").
/// - a global M of 1 in training is an error on every rank; a global M of 0 is a no-op on
///   every rank. A rank's own M may be anything, 0 and 1 included.
/// - the fused variant only (Options::variant staged is rejected); in place (y = x, dx = dy or
///   dx = x) as BatchNorm2d.
///
/// Collective calls: the constructor, and forward / backward whenever the forward is a training
/// one (is_training() at forward time; the backward of that forward's Saved) must be called by
/// every rank of comm in the same order, like any MPI collective; eval forward and backward are
/// local. The constructor checks that every rank passed the same num_features and options.
/// comm must stay valid while the module is used (it is not duplicated), and MPI calls are made
/// from the calling thread (MPI_THREAD_FUNNELED suffices when that is the main thread).
///
/// Errors: as BatchNorm2d, with the same messages, and everything validated on every rank before
/// anything is written on any rank. A rank whose own arguments are wrong throws BatchNorm2d's
/// exception; the other ranks throw bnorm::invalid_argument("bnorm: rank R of P rejected
/// forward: <rank R's message>"). Afterwards every rank's state is as before and the module can
/// be used again.
///
/// Like BatchNorm2d, declared in the inline namespace bnorm::mpi::no_staged under
/// BNORM_NO_STAGED (see detail/staged_backend.hpp), since it holds a BatchNorm2d.
BNORM_DETAIL_BEGIN_NO_STAGED
template <class T, template <class> class View>
class SyncBatchNorm {
  using Local = BatchNorm<T, View>;
  static constexpr std::size_t kRank = View<T>::rank;
  static constexpr const char* kName = kRank == 3   ? "SyncBatchNorm1d"
                                       : kRank == 4 ? "SyncBatchNorm2d"
                                                    : "SyncBatchNorm3d";

 public:
  /// Per-channel parameters, buffers and gradients, as in BatchNorm.
  using Array = typename Local::Array;
  /// The extents of an input, in the view's logical order.
  using Extents = typename Local::Extents;

  /// What backward needs from one forward. A synchronized (training) Saved keeps a view of the
  /// forward's x: x must outlive it and stay unchanged.
  class Saved {
   public:
    /// This rank's input shape.
    const Extents& shape() const { return synchronized_ ? shape_ : local_.shape(); }
    /// true when the forward normalised with batch statistics (global or, in eval, local).
    bool batch_statistics() const { return synchronized_ || local_.batch_statistics(); }
    /// true when the statistics cover every rank's part: a training forward; its backward is
    /// collective.
    bool synchronized() const { return synchronized_; }
    /// Per-channel mean used to normalise (global batch, running, or local batch).
    const Array& mean() const { return synchronized_ ? mean_ : local_.mean(); }
    /// Per-channel 1 / sqrt(var + eps) used to normalise.
    const Array& invstd() const { return synchronized_ ? invstd_ : local_.invstd(); }
    /// true when the forward ran in place (y was x): x is gone, so backward rejects it.
    bool in_place() const { return synchronized_ ? in_place_ : local_.in_place(); }
    /// Values per channel the statistics cover: the global M of a synchronized forward.
    index_t count() const {
      index_t m = 1;
      for (std::size_t r = 0; r < kRank; ++r)
        if (r != 1) m *= shape()[r];
      return synchronized_ ? stats_.count : m;
    }

   private:
    friend class SyncBatchNorm;
    bool synchronized_ = false;
    bool in_place_ = false;
    Extents shape_{};
    View<const T> x_;
    fused::BatchStatistics stats_;  // global
    Array mean_, invstd_;
    typename Local::Saved local_;  // eval
  };

  /// A collective call over comm: weight = 1, bias = 0, running_mean = 0, running_var = 1 as
  /// BatchNorm2d. Throws bnorm::invalid_argument, on every rank, when a rank's arguments are
  /// invalid (num_features <= 0, eps < 0 or NaN, momentum outside [0, 1], variant staged: the
  /// distributed path is the fused one) or when the ranks' num_features or options differ.
  /// Throws, on the calling rank only, when MPI is not initialised or comm is MPI_COMM_NULL.
  SyncBatchNorm(index_t num_features, MPI_Comm comm, Options options = {})
      : local_(make_local(num_features, comm, options)), comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &ranks_);
  }

  // Mode, options and communicator (as BatchNorm's, plus comm).
  /// Training mode when `mode`, else eval, on this rank (set it alike on every rank).
  void train(bool mode = true) { local_.train(mode); }
  /// Eval mode on this rank.
  void eval() { local_.eval(); }
  /// true in training mode.
  bool is_training() const { return local_.is_training(); }
  /// C.
  index_t num_features() const { return local_.num_features(); }
  /// The options the module was built with.
  const Options& options() const { return local_.options(); }
  /// The communicator whose ranks share the batch.
  MPI_Comm comm() const { return comm_; }
  /// This process's rank in comm and the number of ranks.
  int rank() const { return rank_; }
  /// The number of ranks in comm.
  int ranks() const { return ranks_; }

  // Parameters and running statistics (as BatchNorm's, kept alike on every rank).
  /// The weight: C elements, or 0 without affine.
  Array& weight() { return local_.weight(); }
  /// The weight, read-only.
  const Array& weight() const { return local_.weight(); }
  /// The bias: C elements, or 0 without affine.
  Array& bias() { return local_.bias(); }
  /// The bias, read-only.
  const Array& bias() const { return local_.bias(); }
  /// The running mean: C elements, or 0 without track_running_stats.
  Array& running_mean() { return local_.running_mean(); }
  /// The running mean, read-only.
  const Array& running_mean() const { return local_.running_mean(); }
  /// The running variance: C elements, or 0 without track_running_stats.
  Array& running_var() { return local_.running_var(); }
  /// The running variance, read-only.
  const Array& running_var() const { return local_.running_var(); }
  /// Training forwards that updated the running statistics.
  std::int64_t num_batches_tracked() const { return local_.num_batches_tracked(); }
  /// This rank's contribution to dL/dweight of the last backward (size 0 without affine).
  const Array& weight_grad() const { return local_.weight_grad(); }
  /// This rank's contribution to dL/dbias of the last backward (size 0 without affine).
  const Array& bias_grad() const { return local_.bias_grad(); }

  /// y = SyncBatchNorm2d(x) for this rank's part x of the global batch. In training a
  /// collective call (one MPI_Allgather of 2C + 1 doubles per rank); in eval a local one.
  Saved forward(View<const T> x, View<T> y) {
    Saved s;
    if (!local_.training_) {  // eval: running buffers, or this rank's batch without them
      s.local_ = local_.forward(x, y);
      return s;
    }
    const index_t channels = local_.num_features_;
    fused::LocalStatistics part;
    const detail::LocalOutcome outcome = detail::run_local([&] {
      local_.check_forward(x, y);
      part = fused::local_statistics(x);
    });
    const auto width = static_cast<std::size_t>(2 * channels + 1);
    std::vector<double> record(width, 0.0);
    record[0] = outcome.status == 0 ? static_cast<double>(part.count) : -outcome.status;
    if (outcome.status == 0) put(part.mean, part.m2, record);
    const std::vector<double> all = detail::allgather(record, comm_, ranks_);
    detail::raise_if_any_failed(outcome, detail::statuses(all, width), comm_, rank_, "forward");

    std::vector<fused::LocalStatistics> parts(static_cast<std::size_t>(ranks_));
    for (std::size_t r = 0; r < parts.size(); ++r) {
      const double* rec = all.data() + r * width;
      parts[r].count = static_cast<index_t>(rec[0]);
      parts[r].mean = Eigen::Map<const Eigen::ArrayXd>(rec + 1, channels);
      parts[r].m2 = Eigen::Map<const Eigen::ArrayXd>(rec + 1 + channels, channels);
    }
    const fused::LocalStatistics total = fused::merge_statistics(parts);  // rank order
    if (total.count == 1) {
      if (ranks_ == 1) bnorm::detail::check_training_count(x);  // BatchNorm2d's own words
      bnorm::detail::require(false,
                             "Expected more than 1 value per channel when training, got input of "
                             "shape ",
                             bnorm::detail::shape_text(x.extents()), " on rank ", rank_,
                             " and 1 value per channel over the ", ranks_, " ranks of comm");
    }
    s.synchronized_ = true;
    s.shape_ = x.extents();
    s.x_ = x;
    s.in_place_ = bnorm::detail::same_view(y, x);
    s.stats_.count = total.count;
    if (total.count == 0) return s;  // empty on every rank: no state changes anywhere

    const Options& o = local_.options_;
    s.stats_ = fused::finalize(total, o.eps);
    fused::normalize(x, s.stats_, local_.weight_, local_.bias_, y);
    s.mean_ = s.stats_.mean.template cast<bnorm::detail::compute_t<T>>();
    s.invstd_ = s.stats_.invstd.template cast<bnorm::detail::compute_t<T>>();
    if (o.track_running_stats)
      local_.update_running_stats(s.stats_.mean, s.stats_.var, total.count);
    return s;
  }

  /// dx for this rank's part; weight_grad() and bias_grad() get this rank's contribution. For a
  /// synchronized Saved a collective call (one MPI_Allgather of 2C + 1 doubles per rank), else
  /// local. Validates on every rank first: on a throw, dx and all state are unchanged on all.
  void backward(const Saved& saved, View<const T> dy, View<T> dx) {
    if (!saved.synchronized_) {
      local_.backward(saved.local_, dy, dx);
      return;
    }
    const index_t channels = local_.num_features_;
    fused::GradientSums part{Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels)};
    const detail::LocalOutcome outcome = detail::run_local([&] {
      local_.check_backward(saved.shape_, saved.in_place_, saved.x_, dy, dx);
      if (saved.stats_.count > 0) part = fused::local_gradient_sums(saved.x_, dy, saved.stats_);
    });
    const bool affine = local_.options_.affine;
    if (saved.stats_.count == 0) {  // every rank's Saved says so: none communicates
      if (outcome.status != 0) std::rethrow_exception(outcome.error);
      local_.weight_grad_.setZero(affine ? channels : 0);
      local_.bias_grad_.setZero(affine ? channels : 0);
      return;
    }
    const auto width = static_cast<std::size_t>(2 * channels + 1);
    std::vector<double> record(width, 0.0);
    record[0] = outcome.status == 0 ? static_cast<double>(dy.per_channel()) : -outcome.status;
    if (outcome.status == 0) put(part.sum_dy, part.sum_dy_xmu, record);
    const std::vector<double> all = detail::allgather(record, comm_, ranks_);
    detail::raise_if_any_failed(outcome, detail::statuses(all, width), comm_, rank_, "backward");

    fused::GradientSums total{Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels)};
    for (std::size_t r = 0; r < static_cast<std::size_t>(ranks_); ++r) {  // rank order
      const double* rec = all.data() + r * width;
      total.sum_dy += Eigen::Map<const Eigen::ArrayXd>(rec + 1, channels);
      total.sum_dy_xmu += Eigen::Map<const Eigen::ArrayXd>(rec + 1 + channels, channels);
    }
    fused::backward_input(saved.x_, dy, local_.weight_, saved.stats_, total, dx);
    fused::parameter_gradients(saved.stats_, part, affine, local_.weight_grad_, local_.bias_grad_);
  }

 private:
  /// Largest C whose 2C + 1 doubles fit MPI's int count.
  static constexpr index_t kMaxFeatures = (INT_MAX - 1) / 2;

  static void put(const Eigen::ArrayXd& a, const Eigen::ArrayXd& b, std::vector<double>& record) {
    const auto c = static_cast<std::size_t>(a.size());
    for (std::size_t i = 0; i < c; ++i) {
      record[1 + i] = a[static_cast<Eigen::Index>(i)];
      record[1 + c + i] = b[static_cast<Eigen::Index>(i)];
    }
  }

  /// The rank's BatchNorm2d state, after every rank validated its arguments and the ranks agreed
  /// on them (one MPI_Allgather of 6 doubles).
  static Local make_local(index_t num_features, MPI_Comm comm, const Options& options) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    bnorm::detail::require(initialized && !finalized, kName,
                           " needs MPI initialised and not finalised");
    bnorm::detail::require(comm != MPI_COMM_NULL, "comm is MPI_COMM_NULL");
    // The synchronized passes are the split API's, which has no epilogue.
    bnorm::detail::require(options.activation == Activation::none, kName,
                           " has no fused activation: expected options.activation none, got ",
                           options.activation, " (apply the activation after it)");
    int rank = 0, ranks = 0;
    detail::check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");

    std::optional<Local> bn;
    const detail::LocalOutcome outcome = detail::run_local([&] {
      bn.emplace(num_features, options);
      bnorm::detail::require(options.variant == Variant::fused, "options.variant is ",
                             options.variant, ", ", kName, " needs fused");
      bnorm::detail::require(num_features <= kMaxFeatures, "num_features must be <= ", kMaxFeatures,
                             " (2 * num_features + 1 doubles per message), got ", num_features);
    });
    constexpr std::size_t width = 6;
    const std::vector<double> mine{-static_cast<double>(outcome.status),
                                   static_cast<double>(num_features),
                                   options.eps,
                                   options.momentum ? *options.momentum : -1.0,
                                   options.affine ? 1.0 : 0.0,
                                   options.track_running_stats ? 1.0 : 0.0};
    const std::vector<double> all = detail::allgather(mine, comm, ranks);
    detail::raise_if_any_failed(outcome, detail::statuses(all, width), comm, rank,
                                "the constructor");
    static const char* const names[width] = {"",         "num_features", "eps",
                                             "momentum", "affine",       "track_running_stats"};
    auto text = [](std::size_t k, double v) {
      if (k == 3 && v < 0) return std::string("nullopt");
      if (k == 4 || k == 5) return std::string(v != 0 ? "true" : "false");
      return bnorm::detail::concat(v);
    };
    for (std::size_t r = 1; r < static_cast<std::size_t>(ranks); ++r)
      for (std::size_t k = 1; k < width; ++k)
        bnorm::detail::require(all[r * width + k] == all[k], kName,
                               " arguments differ across the ranks of comm: rank ", r, " has ",
                               names[k], " ", text(k, all[r * width + k]), ", rank 0 has ",
                               text(k, all[k]));
    return std::move(*bn);
  }

  Local local_;  // parameters, buffers, mode, checks, eval path
  MPI_Comm comm_;
  int rank_ = 0, ranks_ = 1;
};
/// SyncBatchNorm over NCLView: BatchNorm1d's inputs spread over the ranks of comm.
template <class T>
class SyncBatchNorm1d : public SyncBatchNorm<T, NCLView> {
 public:
  using SyncBatchNorm<T, NCLView>::SyncBatchNorm;
};

/// SyncBatchNorm over NCHWView: BatchNorm2d's inputs spread over the ranks of comm.
template <class T>
class SyncBatchNorm2d : public SyncBatchNorm<T, NCHWView> {
 public:
  using SyncBatchNorm<T, NCHWView>::SyncBatchNorm;
};

/// SyncBatchNorm over NCDHWView: BatchNorm3d's inputs spread over the ranks of comm.
template <class T>
class SyncBatchNorm3d : public SyncBatchNorm<T, NCDHWView> {
 public:
  using SyncBatchNorm<T, NCDHWView>::SyncBatchNorm;
};
BNORM_DETAIL_END_NO_STAGED
}  // namespace bnorm::mpi
