/// @file fused.hpp
/// @brief The fused variant: per-channel statistics and normalisation in consecutive sweeps,
/// and the closed-form backward. This header validates the arguments; the kernels, compiled once
/// per instruction set, are in detail/per_isa/ (dispatch: detail/dispatch.hpp, isa.hpp).
///
/// Notation, per channel c, over the M = N*H*W values x_i of that channel:
///   mean = (1/M) sum_i x_i,   var = (1/M) sum_i (x_i - mean)^2   (biased),
///   invstd = 1 / sqrt(var + eps),   xhat_i = (x_i - mean) * invstd,
///   y_i = weight * xhat_i + bias.
/// With weight and bias of size 0 (affine = false), y_i = xhat_i and there are no parameter
/// gradients.
///
/// Aliasing: an output view (y, dx) must have a unique layout and either share no element with
/// an input view or be exactly the same view (in place: y may be x, dx may be dy or x), with the
/// same results as out of place; partial overlaps throw (rules in detail/checks.hpp). After an
/// in-place forward_training x holds y, so it can no longer be passed to backward.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/dispatch.hpp"
#include "isa.hpp"
#include "nchw_view.hpp"
#include "statistics.hpp"

namespace bnorm::fused {

/// Training forward: batch statistics of x and y = (x - mean) * invstd * weight + bias.
///
/// Statistics per channel over chunks of images, accumulated in double, chunks merged by Chan et
/// al.'s formula in a fixed order. Where the layout allows vectors (NCHW planes or channels-last
/// pixels of at least 16 values) one pass with a shift K (the mean of a chunk's first 16 values):
/// mean = K + S1 / n, M2 = S2 - S1^2 / n with S1 = sum (x - K), S2 = sum (x - K)^2, redone with
/// two passes (mean, then sum (x - mean)^2) when that would lose more than 4 bits; two passes
/// otherwise. Then the normalisation, right after a block's statistics so x is read again from
/// cache, or, for long channels of large tensors, in the same loop as the next channel's
/// statistics (docs/numerics.md, docs/performance.md).
/// weight and bias have C elements, or both 0 for affine = false. Throws
/// bnorm::invalid_argument, before writing anything, when shapes or sizes disagree, eps is
/// negative or NaN, or M == 1. M == 0 writes nothing and returns zero statistics.
template <class T>
BatchStatistics forward_training(NCHWView<const T> x,
                                 const bnorm::detail::ParameterArray<T>& weight,
                                 const bnorm::detail::ParameterArray<T>& bias, double eps,
                                 NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_training_count(x);
  return bnorm::detail::passes<T>().forward_training(x, weight, bias, eps, y, {});
}

/// Inference forward: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
///
/// Throws bnorm::invalid_argument, before writing anything, when shapes or sizes disagree or eps
/// is negative or NaN.
template <class T>
void forward_inference(NCHWView<const T> x, const bnorm::detail::ParameterArray<T>& weight,
                       const bnorm::detail::ParameterArray<T>& bias,
                       const bnorm::detail::ParameterArray<T>& running_mean,
                       const bnorm::detail::ParameterArray<T>& running_var, double eps,
                       NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  bnorm::detail::passes<T>().forward_inference(x, weight, bias, running_mean, running_var, eps, y,
                                               {});
}

/// Training backward, closed form. With g = dy, per channel:
///   dbias = sum g,   dweight = sum g * xhat,
///   dx = weight * invstd / M * (M * g - sum g - xhat * sum(g * xhat)).
/// `stats` are those forward_training returned for the same x. The sums are accumulated in
/// double over chunks added in a fixed order; each block's dx pass follows its sums while x and
/// dy are in cache, or, for long channels of large tensors, runs in the same loop as the next
/// channel's sums. dweight and dbias are resized to C, or to 0 when weight is empty
/// (affine = false). Throws bnorm::invalid_argument, before writing anything, when shapes or
/// sizes disagree.
template <class T>
void backward(NCHWView<const T> x, NCHWView<const T> dy,
              const bnorm::detail::ParameterArray<T>& weight, const BatchStatistics& stats,
              NCHWView<T> dx, bnorm::detail::ParameterArray<T>& dweight,
              bnorm::detail::ParameterArray<T>& dbias) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  bnorm::detail::check_gradient_arrays(weight, dweight, dbias);
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  bnorm::detail::check_size("stats.mean", stats.mean.size(), channels, "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), channels, "the channels of x");
  bnorm::detail::require(stats.count == m, "stats.count is ", stats.count, ", expected ", m,
                         " (N*H*W of x)");
  bnorm::detail::passes<T>().backward(x, dy, weight, stats, dx, dweight, dbias, {});
}

/// Eval backward with running statistics, which are constants of the forward:
///   dx = dy * weight * invstd,  dweight = sum dy * (x - running_mean) * invstd,  dbias = sum dy,
/// with invstd = 1 / sqrt(running_var + eps). Throws bnorm::invalid_argument, before writing
/// anything, when shapes or sizes disagree or eps is negative or NaN.
template <class T>
void backward_inference(NCHWView<const T> x, NCHWView<const T> dy,
                        const bnorm::detail::ParameterArray<T>& weight,
                        const bnorm::detail::ParameterArray<T>& running_mean,
                        const bnorm::detail::ParameterArray<T>& running_var, double eps,
                        NCHWView<T> dx, bnorm::detail::ParameterArray<T>& dweight,
                        bnorm::detail::ParameterArray<T>& dbias) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  bnorm::detail::check_gradient_arrays(weight, dweight, dbias, &running_mean, &running_var);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  bnorm::detail::check_eps(eps);
  bnorm::detail::passes<T>().backward_inference(x, dy, weight, running_mean, running_var, eps, dx,
                                                dweight, dbias, {});
}

// ---------------------------------------------------------------------------------------------
// Split API: the pieces of training forward and backward for a batch spread over several
// processes, usable with any communication layer. One step on each part of the batch:
//   local = local_statistics(x_part)                    -> exchange (count, mean, m2) per channel
//   global = merge_statistics(all parts, in a fixed order), stats = finalize(global, eps)
//   normalize(x_part, stats, weight, bias, y_part)
//   sums = local_gradient_sums(x_part, dy_part, stats)  -> exchange and add (sum_dy, sum_dy_xmu)
//   backward_input(x_part, dy_part, weight, stats, global sums, dx_part)
//   parameter_gradients(stats, sums, affine, dweight, dbias)
// forward_training and backward above run the same kernels on one process.
// ---------------------------------------------------------------------------------------------

/// Statistics of x per channel, computed exactly as forward_training computes them.
template <class T>
LocalStatistics local_statistics(NCHWView<const T> x) {
  return bnorm::detail::split_passes<T>().local_statistics(x);
}

/// Merges parts' statistics into those of their union, left to right, by Chan et al.'s
/// pairwise formula: with delta = mean_b - mean_a and n = n_a + n_b,
///   mean = mean_a + delta * n_b / n,   M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.
/// Parts with count 0 are skipped. The fixed order makes the result the same bits wherever it
/// is computed. All parts must have the same number of channels.
inline LocalStatistics merge_statistics(const std::vector<LocalStatistics>& parts) {
  bnorm::detail::require(!parts.empty(), "merge_statistics needs at least one part, got 0");
  const Eigen::Index channels = parts.front().mean.size();
  for (std::size_t p = 0; p < parts.size(); ++p) {
    const LocalStatistics& b = parts[p];
    bnorm::detail::require(b.mean.size() == channels && b.m2.size() == channels, "part ", p,
                           " has ", b.mean.size(), " channels, expected ", channels);
    bnorm::detail::require(b.count >= 0, "part ", p, " has count ", b.count, ", expected >= 0");
  }
  return bnorm::detail::common_passes().merge_statistics(parts);
}

/// Batch statistics from merged ones: var = M2 / count (biased), invstd = 1 / sqrt(var + eps).
/// count must be > 1, as in training.
inline BatchStatistics finalize(const LocalStatistics& s, double eps) {
  bnorm::detail::check_eps(eps);
  bnorm::detail::require(s.count > 1,
                         "Expected more than 1 value per channel when training, got a total of ",
                         s.count);
  return bnorm::detail::common_passes().finalize(s, eps);
}

/// y = (x - stats.mean) * stats.invstd * weight + bias with given (e.g. global) statistics.
template <class T>
void normalize(NCHWView<const T> x, const BatchStatistics& stats,
               const bnorm::detail::ParameterArray<T>& weight,
               const bnorm::detail::ParameterArray<T>& bias, NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, 0.0, y);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), x.c(), "the channels of x");
  bnorm::detail::split_passes<T>().normalize(x, stats, weight, bias, y);
}

/// The backward reductions of a part of the batch, centred on stats.mean, computed exactly as
/// backward computes them.
template <class T>
GradientSums local_gradient_sums(NCHWView<const T> x, NCHWView<const T> dy,
                                 const BatchStatistics& stats) {
  bnorm::detail::check_same_shape("dy", dy, "x", x);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  return bnorm::detail::split_passes<T>().local_gradient_sums(x, dy, stats);
}

/// dx of a part of the batch from the whole batch's statistics and sums:
///   dx = weight * invstd * (dy - sum_dy / M - (x - mean) * invstd^2 * sum_dy_xmu / M),
/// with M = stats.count, the whole batch's values per channel.
template <class T>
void backward_input(NCHWView<const T> x, NCHWView<const T> dy,
                    const bnorm::detail::ParameterArray<T>& weight, const BatchStatistics& stats,
                    const GradientSums& sums, NCHWView<T> dx) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("sums.sum_dy", sums.sum_dy.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("sums.sum_dy_xmu", sums.sum_dy_xmu.size(), x.c(), "the channels of x");
  bnorm::detail::require(stats.count > 0 || x.size() == 0, "stats.count is ", stats.count,
                         ", expected > 0");
  bnorm::detail::split_passes<T>().backward_input(x, dy, weight, stats, sums, dx);
}

/// dweight = sum_dy_xmu * invstd and dbias = sum_dy (size 0 when `affine` is false).
template <class T>
void parameter_gradients(const BatchStatistics& stats, const GradientSums& sums, bool affine,
                         Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
                         Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  bnorm::detail::split_passes<T>().parameter_gradients(stats, sums, affine, dweight, dbias);
}

}  // namespace bnorm::fused
