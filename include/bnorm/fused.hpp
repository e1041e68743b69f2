/// @file fused.hpp
/// @brief The fused variant: per-channel statistics and normalisation in consecutive sweeps,
/// and the closed-form backward.
///
/// Notation, per channel c, over the M = N*H*W values x_i of that channel:
///   mean = (1/M) sum_i x_i,   var = (1/M) sum_i (x_i - mean)^2   (biased),
///   invstd = 1 / sqrt(var + eps),   xhat_i = (x_i - mean) * invstd,
///   y_i = weight * xhat_i + bias.
/// With weight and bias of size 0 (affine = false), y_i = xhat_i and there are no parameter
/// gradients.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>

#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/lane_sum.hpp"
#include "detail/parallel.hpp"
#include "detail/rows.hpp"
#include "nchw_view.hpp"

namespace bnorm::fused {

/// Per-channel statistics of a batch, in double whatever T is.
struct BatchStatistics {
  index_t count = 0;      ///< M = N*H*W, values per channel
  Eigen::ArrayXd mean;    ///< (1/M) sum x
  Eigen::ArrayXd var;     ///< biased variance (1/M) sum (x - mean)^2; 0 when M == 0
  Eigen::ArrayXd invstd;  ///< 1 / sqrt(var + eps)
};

namespace detail {
using bnorm::detail::LaneSum;
using bnorm::detail::Row;

/// x - mean in T with the mean carried in more than T's precision: mean = hi + lo with
/// hi = T(mean) and lo = T(mean - hi), and (x - hi) - lo. For x near the mean, x - hi is exact
/// (Sterbenz), so the centred value keeps its accuracy however large the mean is.
template <class T>
struct Centre {
  T hi, lo;
  explicit Centre(double mean)
      : hi(static_cast<T>(mean)), lo(static_cast<T>(mean - static_cast<double>(hi))) {}
  T operator()(T x) const { return (x - hi) - lo; }
};

template <class T>
T weight_at(const Eigen::Array<T, Eigen::Dynamic, 1>& weight, index_t c) {
  return weight.size() == 0 ? T(1) : weight[c];
}
template <class T>
T bias_at(const Eigen::Array<T, Eigen::Dynamic, 1>& bias, index_t c) {
  return bias.size() == 0 ? T(0) : bias[c];
}

/// Two-pass statistics of channel c: the mean, then the sum of squared deviations from it.
template <class T>
void channel_statistics(const NCHWView<const T>& x, index_t c, double& mean, double& m2) {
  const auto m = static_cast<double>(x.n() * x.h() * x.w());
  LaneSum sum;
  bnorm::detail::for_each_row(
      c,
      [&](auto xr, index_t len) {
        sum.add(len, [&](index_t i) { return static_cast<double>(xr[i]); });
      },
      x);
  mean = m > 0 ? sum.total() / m : 0.0;
  LaneSum sq;
  bnorm::detail::for_each_row(
      c,
      [&](auto xr, index_t len) {
        // sq += (x - mean)^2, in double
        sq.add(len, [&](index_t i) {
          const double d = static_cast<double>(xr[i]) - mean;
          return d * d;
        });
      },
      x);
  m2 = sq.total();
}

/// y = (x - mean) * scale + shift on channel c, centred in more than T's precision.
template <class T>
void channel_normalise(const NCHWView<const T>& x, index_t c, double mean, double scale,
                       double shift, const NCHWView<T>& y) {
  const Centre<T> centre(mean);
  const T a = static_cast<T>(scale), b = static_cast<T>(shift);
  bnorm::detail::for_each_row(
      c,
      [&](auto xr, auto yr, index_t len) {
        // y = ((x - hi) - lo) * a + b
        for (index_t i = 0; i < len; ++i) yr[i] = centre(xr[i]) * a + b;
      },
      x, y);
}

/// sum dy and sum dy * (x - mean) over channel c, in double.
template <class T>
void channel_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t c,
                       double mean, double& sum_dy, double& sum_dy_xmu) {
  LaneSum s_dy, s_dy_xmu;
  bnorm::detail::for_each_row(
      c,
      [&](auto xr, auto dyr, index_t len) {
        // sum_dy += dy;  sum_dy_xmu += dy * (x - mean), in double
        s_dy.add(len, [&](index_t i) { return static_cast<double>(dyr[i]); });
        s_dy_xmu.add(len, [&](index_t i) {
          return static_cast<double>(dyr[i]) * (static_cast<double>(xr[i]) - mean);
        });
      },
      x, dy);
  sum_dy = s_dy.total();
  sum_dy_xmu = s_dy_xmu.total();
}

/// dx = (dy - dy_shift) * k - (x - mean) * kc on channel c.
template <class T>
void channel_grad_input(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t c,
                        double mean, double k, double dy_shift, double kc, const NCHWView<T>& dx) {
  const Centre<T> centre(mean);
  const T tk = static_cast<T>(k), tshift = static_cast<T>(dy_shift), tkc = static_cast<T>(kc);
  bnorm::detail::for_each_row(
      c,
      [&](auto xr, auto dyr, auto dxr, index_t len) {
        // dx = (dy - dy_shift) * k - ((x - hi) - lo) * kc
        for (index_t i = 0; i < len; ++i) dxr[i] = (dyr[i] - tshift) * tk - centre(xr[i]) * tkc;
      },
      x, dy, dx);
}

/// dx = k * (dy - sum_dy / M - (x - mean) * invstd^2 * sum_dy_xmu / M), k = weight * invstd,
/// on channel c, given the channel's sums over the whole batch of `count` values.
template <class T>
void channel_backward_input(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t c,
                            double mean, double invstd, double weight, double sum_dy,
                            double sum_dy_xmu, index_t count, const NCHWView<T>& dx) {
  const double k = invstd * weight, inv_m = 1.0 / static_cast<double>(count);
  channel_grad_input(x, dy, c, mean, k, sum_dy * inv_m, k * invstd * invstd * sum_dy_xmu * inv_m,
                     dx);
}

/// dx = dy * k on channel c (eval backward: x does not enter, so a NaN in x stays out of dx).
template <class T>
void channel_scale(const NCHWView<const T>& dy, index_t c, double k, const NCHWView<T>& dx) {
  const T tk = static_cast<T>(k);
  bnorm::detail::for_each_row(
      c,
      [&](auto dyr, auto dxr, index_t len) {
        // dx = dy * k
        for (index_t i = 0; i < len; ++i) dxr[i] = dyr[i] * tk;
      },
      dy, dx);
}

}  // namespace detail

/// Training forward: batch statistics of x and y = (x - mean) * invstd * weight + bias.
///
/// Each channel's statistics (two passes: mean, then sum (x - mean)^2, accumulated in double)
/// and its normalisation run back to back, so the later passes read x from cache. weight and
/// bias have C elements, or both 0 for affine = false. Throws bnorm::invalid_argument, before
/// writing anything, when shapes or sizes disagree, eps is negative or NaN, or M == 1.
/// M == 0 writes nothing and returns zero statistics.
template <class T>
BatchStatistics forward_training(NCHWView<const T> x,
                                 const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                                 const Eigen::Array<T, Eigen::Dynamic, 1>& bias, double eps,
                                 NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_training_count(x);
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  BatchStatistics s{m, Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels),
                    Eigen::ArrayXd::Constant(channels, 1.0 / std::sqrt(eps))};
  if (m == 0) return s;
  bnorm::detail::parallel_for(channels, [&](index_t c) {
    double mean, m2;
    detail::channel_statistics(x, c, mean, m2);
    const double var = m2 / static_cast<double>(m), invstd = 1.0 / std::sqrt(var + eps);
    s.mean[c] = mean;
    s.var[c] = var;
    s.invstd[c] = invstd;
    detail::channel_normalise(x, c, mean, invstd * detail::weight_at(weight, c),
                              detail::bias_at(bias, c), y);
  });
  return s;
}

/// Inference forward: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
///
/// Throws bnorm::invalid_argument, before writing anything, when shapes or sizes disagree or eps
/// is negative or NaN.
template <class T>
void forward_inference(NCHWView<const T> x, const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& bias,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& running_mean,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& running_var, double eps,
                       NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  bnorm::detail::parallel_for(x.c(), [&](index_t c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    detail::channel_normalise(x, c, static_cast<double>(running_mean[c]),
                              invstd * detail::weight_at(weight, c), detail::bias_at(bias, c), y);
  });
}

/// Training backward, closed form. With g = dy, per channel:
///   dbias = sum g,   dweight = sum g * xhat,
///   dx = weight * invstd / M * (M * g - sum g - xhat * sum(g * xhat)).
/// `stats` are those forward_training returned for the same x. dweight and dbias are resized
/// to C, or to 0 when weight is empty (affine = false). Throws bnorm::invalid_argument, before
/// writing anything, when shapes or sizes disagree.
template <class T>
void backward(NCHWView<const T> x, NCHWView<const T> dy,
              const Eigen::Array<T, Eigen::Dynamic, 1>& weight, const BatchStatistics& stats,
              NCHWView<T> dx, Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
              Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  bnorm::detail::check_size("stats.mean", stats.mean.size(), channels, "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), channels, "the channels of x");
  bnorm::detail::require(stats.count == m, "stats.count is ", stats.count, ", expected ", m,
                         " (N*H*W of x)");
  const bool affine = weight.size() != 0;
  dweight.setZero(affine ? channels : 0);
  dbias.setZero(affine ? channels : 0);
  if (m == 0) return;
  bnorm::detail::parallel_for(channels, [&](index_t c) {
    const double mean = stats.mean[c], invstd = stats.invstd[c];
    double sum_dy, sum_dy_xmu;
    detail::channel_grad_sums(x, dy, c, mean, sum_dy, sum_dy_xmu);
    detail::channel_backward_input(x, dy, c, mean, invstd, detail::weight_at(weight, c), sum_dy,
                                   sum_dy_xmu, m, dx);
    if (affine) {
      dweight[c] = static_cast<T>(sum_dy_xmu * invstd);
      dbias[c] = static_cast<T>(sum_dy);
    }
  });
}

/// Eval backward with running statistics, which are constants of the forward:
///   dx = dy * weight * invstd,  dweight = sum dy * (x - running_mean) * invstd,  dbias = sum dy,
/// with invstd = 1 / sqrt(running_var + eps). Throws bnorm::invalid_argument, before writing
/// anything, when shapes or sizes disagree or eps is negative or NaN.
template <class T>
void backward_inference(NCHWView<const T> x, NCHWView<const T> dy,
                        const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                        const Eigen::Array<T, Eigen::Dynamic, 1>& running_mean,
                        const Eigen::Array<T, Eigen::Dynamic, 1>& running_var, double eps,
                        NCHWView<T> dx, Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
                        Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  bnorm::detail::check_eps(eps);
  const index_t channels = x.c();
  const bool affine = weight.size() != 0;
  dweight.setZero(affine ? channels : 0);
  dbias.setZero(affine ? channels : 0);
  bnorm::detail::parallel_for(channels, [&](index_t c) {
    const double mean = static_cast<double>(running_mean[c]);
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    if (affine) {
      double sum_dy, sum_dy_xmu;
      detail::channel_grad_sums(x, dy, c, mean, sum_dy, sum_dy_xmu);
      dweight[c] = static_cast<T>(sum_dy_xmu * invstd);
      dbias[c] = static_cast<T>(sum_dy);
    }
    detail::channel_scale(dy, c, invstd * detail::weight_at(weight, c), dx);
  });
}

// ---------------------------------------------------------------------------------------------
// Split API: the pieces of training forward and backward for a batch spread over several
// processes, usable with any communication layer. One step on each part of the batch:
//   local = local_statistics(x_part)                    -> exchange (count, mean, m2) per channel
//   global = merge_statistics(all parts, in a fixed order), stats = finalize(global, eps)
//   normalize(x_part, stats, weight, bias, y_part)
//   sums = local_gradient_sums(x_part, dy_part, stats)  -> all-reduce (sum_dy, sum_dy_xmu)
//   backward_input(x_part, dy_part, weight, stats, global sums, dx_part)
//   dweight = parameter_gradients(...) from the global (or local) sums
// forward_training and backward above run the same per-channel kernels on one process.
// ---------------------------------------------------------------------------------------------

/// Per-channel statistics of one part of a batch: count, mean and M2 = sum (x - mean)^2.
struct LocalStatistics {
  index_t count = 0;    ///< values per channel in this part, N*H*W
  Eigen::ArrayXd mean;  ///< (1/count) sum x; 0 when count == 0
  Eigen::ArrayXd m2;    ///< sum (x - mean)^2, two-pass; 0 when count == 0
};

/// Two-pass (mean, then M2) statistics of x, per channel, accumulated in double.
template <class T>
LocalStatistics local_statistics(NCHWView<const T> x) {
  const index_t channels = x.c();
  LocalStatistics s{x.n() * x.h() * x.w(), Eigen::ArrayXd::Zero(channels),
                    Eigen::ArrayXd::Zero(channels)};
  if (s.count == 0) return s;
  bnorm::detail::parallel_for(
      channels, [&](index_t c) { detail::channel_statistics(x, c, s.mean[c], s.m2[c]); });
  return s;
}

/// Merges parts' statistics into those of their union, left to right, by Chan et al.'s
/// pairwise formula: with delta = mean_b - mean_a and n = n_a + n_b,
///   mean = mean_a + delta * n_b / n,   M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.
/// Parts with count 0 are skipped. The fixed order makes the result the same bits wherever it
/// is computed. All parts must have the same number of channels.
inline LocalStatistics merge_statistics(const std::vector<LocalStatistics>& parts) {
  bnorm::detail::require(!parts.empty(), "merge_statistics needs at least one part, got 0");
  const Eigen::Index channels = parts.front().mean.size();
  LocalStatistics total{0, Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels)};
  for (std::size_t p = 0; p < parts.size(); ++p) {
    const LocalStatistics& b = parts[p];
    bnorm::detail::require(b.mean.size() == channels && b.m2.size() == channels, "part ", p,
                           " has ", b.mean.size(), " channels, expected ", channels);
    bnorm::detail::require(b.count >= 0, "part ", p, " has count ", b.count, ", expected >= 0");
    if (b.count == 0) continue;
    const double na = static_cast<double>(total.count), nb = static_cast<double>(b.count);
    const double n = na + nb;
    const Eigen::ArrayXd delta = b.mean - total.mean;
    total.mean += delta * (nb / n);
    total.m2 += b.m2 + delta.square() * (na * nb / n);
    total.count += b.count;
  }
  return total;
}

/// Batch statistics from merged ones: var = M2 / count (biased), invstd = 1 / sqrt(var + eps).
/// count must be > 1, as in training.
inline BatchStatistics finalize(const LocalStatistics& s, double eps) {
  bnorm::detail::check_eps(eps);
  bnorm::detail::require(s.count > 1,
                         "Expected more than 1 value per channel when training, got a total of ",
                         s.count);
  const Eigen::ArrayXd var = s.m2 / static_cast<double>(s.count);
  return {s.count, s.mean, var, (var + eps).rsqrt()};
}

/// y = (x - stats.mean) * stats.invstd * weight + bias with given (e.g. global) statistics.
template <class T>
void normalize(NCHWView<const T> x, const BatchStatistics& stats,
               const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
               const Eigen::Array<T, Eigen::Dynamic, 1>& bias, NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, 0.0, y);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), x.c(), "the channels of x");
  bnorm::detail::parallel_for(x.c(), [&](index_t c) {
    detail::channel_normalise(x, c, stats.mean[c], stats.invstd[c] * detail::weight_at(weight, c),
                              detail::bias_at(bias, c), y);
  });
}

/// Per-channel backward reductions of one part: sum dy and sum dy * (x - mean), in double.
struct GradientSums {
  Eigen::ArrayXd sum_dy;      ///< sum dy
  Eigen::ArrayXd sum_dy_xmu;  ///< sum dy * (x - mean), mean the (global) batch mean
};

/// The backward reductions of a part of the batch, centred on stats.mean.
template <class T>
GradientSums local_gradient_sums(NCHWView<const T> x, NCHWView<const T> dy,
                                 const BatchStatistics& stats) {
  bnorm::detail::check_same_shape("dy", dy, "x", x);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  GradientSums g{Eigen::ArrayXd::Zero(x.c()), Eigen::ArrayXd::Zero(x.c())};
  if (x.size() == 0) return g;
  bnorm::detail::parallel_for(x.c(), [&](index_t c) {
    detail::channel_grad_sums(x, dy, c, stats.mean[c], g.sum_dy[c], g.sum_dy_xmu[c]);
  });
  return g;
}

/// dx of a part of the batch from the whole batch's statistics and sums:
///   dx = weight * invstd * (dy - sum_dy / M - (x - mean) * invstd^2 * sum_dy_xmu / M),
/// with M = stats.count, the whole batch's values per channel.
template <class T>
void backward_input(NCHWView<const T> x, NCHWView<const T> dy,
                    const Eigen::Array<T, Eigen::Dynamic, 1>& weight, const BatchStatistics& stats,
                    const GradientSums& sums, NCHWView<T> dx) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("sums.sum_dy", sums.sum_dy.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("sums.sum_dy_xmu", sums.sum_dy_xmu.size(), x.c(), "the channels of x");
  bnorm::detail::require(stats.count > 0 || x.size() == 0, "stats.count is ", stats.count,
                         ", expected > 0");
  if (x.size() == 0) return;
  bnorm::detail::parallel_for(x.c(), [&](index_t c) {
    detail::channel_backward_input(x, dy, c, stats.mean[c], stats.invstd[c],
                                   detail::weight_at(weight, c), sums.sum_dy[c], sums.sum_dy_xmu[c],
                                   stats.count, dx);
  });
}

/// dweight = sum_dy_xmu * invstd and dbias = sum_dy (size 0 when `affine` is false).
template <class T>
void parameter_gradients(const BatchStatistics& stats, const GradientSums& sums, bool affine,
                         Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
                         Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  if (!affine) {
    dweight.resize(0);
    dbias.resize(0);
    return;
  }
  dweight = (sums.sum_dy_xmu * stats.invstd).template cast<T>();
  dbias = sums.sum_dy.template cast<T>();
}

}  // namespace bnorm::fused
