/// @file fused.hpp
/// @brief The fused variant: per-channel statistics and normalisation in consecutive sweeps,
/// and the closed-form backward. The kernels are in detail/fused_kernels.hpp.
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
#include "detail/fused_kernels.hpp"
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
using bnorm::detail::Moments;
using bnorm::detail::Plan;

template <class T>
double weight_at(const Eigen::Array<T, Eigen::Dynamic, 1>& weight, index_t c) {
  return weight.size() == 0 ? 1.0 : static_cast<double>(weight[c]);
}
template <class T>
double bias_at(const Eigen::Array<T, Eigen::Dynamic, 1>& bias, index_t c) {
  return bias.size() == 0 ? 0.0 : static_cast<double>(bias[c]);
}

/// Backward constants of channel c from the whole batch's statistics and sums:
///   dx = (dy - shift) * k - (x - mean) * kc,  k = weight * invstd,  shift = sum_dy / M,
///   kc = k * invstd^2 * sum_dy_xmu / M.
inline void backward_constants(double invstd, double weight, double sum_dy, double sum_dy_xmu,
                               index_t count, double& k, double& shift, double& kc) {
  const double inv_m = 1.0 / static_cast<double>(count);
  k = invstd * weight;
  shift = sum_dy * inv_m;
  kc = k * invstd * invstd * sum_dy_xmu * inv_m;
}

/// Per-channel scratch of one call: the constants each pass reads.
struct Scratch {
  Eigen::ArrayXd a, b, c, d;
  explicit Scratch(index_t channels) : a(Eigen::ArrayXd::Zero(channels)), b(a), c(a), d(a) {}
};
}  // namespace detail

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
                                 const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                                 const Eigen::Array<T, Eigen::Dynamic, 1>& bias, double eps,
                                 NCHWView<T> y) {
  bnorm::detail::check_forward_args(x, weight, bias, eps, y);
  bnorm::detail::check_training_count(x);
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  BatchStatistics s{m, Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels),
                    Eigen::ArrayXd::Constant(channels, 1.0 / std::sqrt(eps))};
  if (x.size() == 0) return s;  // M == 0 or C == 0 (N may still be huge)
  const detail::Plan plan(x, sizeof(T));
  detail::Scratch k(channels);  // a: scale = invstd * weight, b: shift = bias
  std::vector<detail::Moments> moments(static_cast<std::size_t>(channels));
  auto finish = [&](index_t c) {
    const detail::Moments& mo = moments[static_cast<std::size_t>(c)];
    s.mean[c] = mo.mean;
    s.var[c] = mo.m2 / mo.count;
    s.invstd[c] = 1.0 / std::sqrt(s.var[c] + eps);
    k.a[c] = s.invstd[c] * detail::weight_at(weight, c);
    k.b[c] = detail::bias_at(bias, c);
  };
  if (plan.blocks_fill_threads() && !bnorm::detail::by_pixels(x)) {
    // Each block's statistics chunk by chunk, then its normalisation while x is in cache;
    // long channels of large tensors pipelined (sweep_blocks).
    const auto normalise = [&](index_t c0, index_t c1, index_t n0, index_t n1) {
      bnorm::detail::normalise(x, y, c0, c1, n0, n1, s.mean.data(), k.a.data(), k.b.data(),
                               plan.stream);
    };
    const auto merge = [&](index_t c0, const std::vector<detail::Moments>& part) {
      for (std::size_t j = 0; j < part.size(); ++j)
        moments[static_cast<std::size_t>(c0) + j].merge(part[j]);
    };
    bnorm::detail::sweep_blocks(
        plan, plan.pipelined && bnorm::detail::sweeps_fuse(y, plan.stream, x),
        [&](index_t c0, index_t c1, index_t n0, index_t n1) {
          std::vector<detail::Moments> part(static_cast<std::size_t>(c1 - c0));
          bnorm::detail::chunk_moments(x, c0, c1, n0, n1, part.data());
          merge(c0, part);
        },
        [&](index_t c0, index_t c1) {
          for (index_t c = c0; c < c1; ++c) finish(c);
        },
        normalise,
        [&](index_t r0, index_t m0, index_t width, index_t n0, index_t n1) {
          std::vector<detail::Moments> part(static_cast<std::size_t>(width));
          bnorm::detail::moments_and_normalise(x, y, r0, m0, width, n0, n1, part.data(),
                                               s.mean.data(), k.a.data(), k.b.data(), plan.stream);
          merge(r0, part);
        });
  } else {
    // Fewer blocks than threads, or channels-last: the statistics of all channels, then the
    // normalisation spread over images (same arithmetic as the blocks for NCHW).
    bnorm::detail::channel_moments(x, plan, moments.data());
    for (index_t c = 0; c < channels; ++c) finish(c);
    bnorm::detail::for_each_elementwise_piece(
        plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
          bnorm::detail::normalise(x, y, c0, c1, n0, n1, s.mean.data(), k.a.data(), k.b.data(),
                                   plan.stream);
        });
  }
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
  if (x.size() == 0) return;  // nothing to write (and N may be huge when C or H*W is 0)
  const detail::Plan plan(x, sizeof(T));
  detail::Scratch k(x.c());  // a: mean, b: scale = invstd * weight, c: shift = bias
  for (index_t c = 0; c < x.c(); ++c) {
    k.a[c] = static_cast<double>(running_mean[c]);
    k.b[c] = detail::weight_at(weight, c) / std::sqrt(static_cast<double>(running_var[c]) + eps);
    k.c[c] = detail::bias_at(bias, c);
  }
  bnorm::detail::for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0,
                                                      index_t n1) {
    bnorm::detail::normalise(x, y, c0, c1, n0, n1, k.a.data(), k.b.data(), k.c.data(), plan.stream);
  });
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
              const Eigen::Array<T, Eigen::Dynamic, 1>& weight, const BatchStatistics& stats,
              NCHWView<T> dx, Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
              Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  bnorm::detail::check_backward_args(x, dy, weight, dx);
  bnorm::detail::check_gradient_arrays(weight, dweight, dbias);
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  bnorm::detail::check_size("stats.mean", stats.mean.size(), channels, "the channels of x");
  bnorm::detail::check_size("stats.invstd", stats.invstd.size(), channels, "the channels of x");
  bnorm::detail::require(stats.count == m, "stats.count is ", stats.count, ", expected ", m,
                         " (N*H*W of x)");
  const bool affine = weight.size() != 0;
  dweight.setZero(affine ? channels : 0);
  dbias.setZero(affine ? channels : 0);
  if (x.size() == 0) return;  // M == 0 or C == 0 (N may still be huge)
  const detail::Plan plan(x, sizeof(T), 3);
  detail::Scratch k(channels);  // a: sum_dy, b: sum_dy_xmu, then a: k, c: shift, d: kc
  Eigen::ArrayXd sum_dy(channels), sum_dy_xmu(channels);
  auto finish = [&](index_t c) {
    sum_dy[c] = k.a[c];
    sum_dy_xmu[c] = k.b[c];
    detail::backward_constants(stats.invstd[c], detail::weight_at(weight, c), sum_dy[c],
                               sum_dy_xmu[c], m, k.a[c], k.c[c], k.d[c]);
  };
  if (plan.blocks_fill_threads() && !bnorm::detail::by_pixels(x, dy)) {
    // Each block's sums chunk by chunk, then its dx while x and dy are in cache; long
    // channels of large tensors pipelined (sweep_blocks).
    const auto grad_input = [&](index_t c0, index_t c1, index_t n0, index_t n1) {
      bnorm::detail::grad_input(x, dy, dx, c0, c1, n0, n1, stats.mean.data(), k.a.data(),
                                k.c.data(), k.d.data(), plan.stream);
    };
    // a chunk's sums, added to the block's (k.a and k.b start at 0)
    const auto add = [&](index_t c0, const std::vector<double>& part) {
      const std::size_t width = part.size() / 2;
      for (std::size_t j = 0; j < width; ++j) {
        k.a[c0 + static_cast<index_t>(j)] += part[j];
        k.b[c0 + static_cast<index_t>(j)] += part[width + j];
      }
    };
    bnorm::detail::sweep_blocks(
        plan, plan.pipelined && bnorm::detail::sweeps_fuse(dx, plan.stream, x, dy),
        [&](index_t c0, index_t c1, index_t n0, index_t n1) {
          std::vector<double> part(static_cast<std::size_t>(2 * (c1 - c0)));
          bnorm::detail::chunk_grad_sums(x, dy, c0, c1, n0, n1, stats.mean.data(), part.data(),
                                         part.data() + (c1 - c0));
          add(c0, part);
        },
        [&](index_t c0, index_t c1) {
          for (index_t c = c0; c < c1; ++c) finish(c);
        },
        grad_input,
        [&](index_t r0, index_t m0, index_t width, index_t n0, index_t n1) {
          std::vector<double> part(static_cast<std::size_t>(2 * width));
          bnorm::detail::grad_sums_and_input(x, dy, dx, r0, m0, width, n0, n1, part.data(),
                                             part.data() + width, stats.mean.data(), k.a.data(),
                                             k.c.data(), k.d.data(), plan.stream);
          add(r0, part);
        });
  } else {
    bnorm::detail::channel_grad_sums(x, dy, plan, stats.mean.data(), k.a.data(), k.b.data());
    for (index_t c = 0; c < channels; ++c) finish(c);
    bnorm::detail::for_each_elementwise_piece(
        plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
          bnorm::detail::grad_input(x, dy, dx, c0, c1, n0, n1, stats.mean.data(), k.a.data(),
                                    k.c.data(), k.d.data(), plan.stream);
        });
  }
  if (affine) {
    dweight = (sum_dy_xmu * stats.invstd).template cast<T>();
    dbias = sum_dy.template cast<T>();
  }
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
  bnorm::detail::check_gradient_arrays(weight, dweight, dbias, &running_mean, &running_var);
  bnorm::detail::check_size("running_mean", running_mean.size(), x.c(), "the channels of x");
  bnorm::detail::check_size("running_var", running_var.size(), x.c(), "the channels of x");
  bnorm::detail::check_eps(eps);
  const index_t channels = x.c();
  const bool affine = weight.size() != 0;
  dweight.setZero(affine ? channels : 0);
  dbias.setZero(affine ? channels : 0);
  if (x.size() == 0) return;  // nothing to write (and N may be huge when C or H*W is 0)
  const detail::Plan plan(x, sizeof(T));
  detail::Scratch k(channels);  // a: mean, b: invstd, c: k = weight * invstd
  for (index_t c = 0; c < channels; ++c) {
    k.a[c] = static_cast<double>(running_mean[c]);
    k.b[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    k.c[c] = k.b[c] * detail::weight_at(weight, c);
  }
  if (affine) {
    Eigen::ArrayXd sum_dy(channels), sum_dy_xmu(channels);
    bnorm::detail::channel_grad_sums(x, dy, plan, k.a.data(), sum_dy.data(), sum_dy_xmu.data());
    dweight = (sum_dy_xmu * k.b).template cast<T>();
    dbias = sum_dy.template cast<T>();
  }
  bnorm::detail::for_each_elementwise_piece(
      plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
        bnorm::detail::scale_rows(dy, dx, c0, c1, n0, n1, k.c.data(), plan.stream);
      });
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

/// Per-channel statistics of one part of a batch: count, mean and M2 = sum (x - mean)^2.
struct LocalStatistics {
  index_t count = 0;    ///< values per channel in this part, N*H*W
  Eigen::ArrayXd mean;  ///< (1/count) sum x; 0 when count == 0
  Eigen::ArrayXd m2;    ///< sum (x - mean)^2; 0 when count == 0
};

/// Statistics of x per channel, computed exactly as forward_training computes them.
template <class T>
LocalStatistics local_statistics(NCHWView<const T> x) {
  const index_t channels = x.c();
  LocalStatistics s{x.n() * x.h() * x.w(), Eigen::ArrayXd::Zero(channels),
                    Eigen::ArrayXd::Zero(channels)};
  if (s.count == 0) return s;
  const detail::Plan plan(x, sizeof(T));
  std::vector<detail::Moments> moments(static_cast<std::size_t>(channels));
  bnorm::detail::channel_moments(x, plan, moments.data());
  for (index_t c = 0; c < channels; ++c) {
    s.mean[c] = moments[static_cast<std::size_t>(c)].mean;
    s.m2[c] = moments[static_cast<std::size_t>(c)].m2;
  }
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
  for (std::size_t p = 0; p < parts.size(); ++p) {
    const LocalStatistics& b = parts[p];
    bnorm::detail::require(b.mean.size() == channels && b.m2.size() == channels, "part ", p,
                           " has ", b.mean.size(), " channels, expected ", channels);
    bnorm::detail::require(b.count >= 0, "part ", p, " has count ", b.count, ", expected >= 0");
  }
  LocalStatistics total{0, Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels)};
  for (Eigen::Index c = 0; c < channels; ++c) {
    detail::Moments m;
    for (const LocalStatistics& b : parts)
      m.merge({static_cast<double>(b.count), b.mean[c], b.m2[c]});
    total.mean[c] = m.mean;
    total.m2[c] = m.m2;
  }
  for (const LocalStatistics& b : parts) total.count += b.count;
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
  const detail::Plan plan(x, sizeof(T));
  detail::Scratch k(x.c());  // a: scale = invstd * weight, b: shift = bias
  for (index_t c = 0; c < x.c(); ++c) {
    k.a[c] = stats.invstd[c] * detail::weight_at(weight, c);
    k.b[c] = detail::bias_at(bias, c);
  }
  bnorm::detail::for_each_elementwise_piece(
      plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
        bnorm::detail::normalise(x, y, c0, c1, n0, n1, stats.mean.data(), k.a.data(), k.b.data(),
                                 plan.stream);
      });
}

/// Per-channel backward reductions of one part: sum dy and sum dy * (x - mean), in double.
struct GradientSums {
  Eigen::ArrayXd sum_dy;      ///< sum dy
  Eigen::ArrayXd sum_dy_xmu;  ///< sum dy * (x - mean), mean the (global) batch mean
};

/// The backward reductions of a part of the batch, centred on stats.mean, computed exactly as
/// backward computes them.
template <class T>
GradientSums local_gradient_sums(NCHWView<const T> x, NCHWView<const T> dy,
                                 const BatchStatistics& stats) {
  bnorm::detail::check_same_shape("dy", dy, "x", x);
  bnorm::detail::check_size("stats.mean", stats.mean.size(), x.c(), "the channels of x");
  GradientSums g{Eigen::ArrayXd::Zero(x.c()), Eigen::ArrayXd::Zero(x.c())};
  if (x.size() == 0) return g;
  const detail::Plan plan(x, sizeof(T));
  bnorm::detail::channel_grad_sums(x, dy, plan, stats.mean.data(), g.sum_dy.data(),
                                   g.sum_dy_xmu.data());
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
  const detail::Plan plan(x, sizeof(T), 3);
  detail::Scratch k(x.c());  // a: k, b: shift, c: kc
  for (index_t c = 0; c < x.c(); ++c)
    detail::backward_constants(stats.invstd[c], detail::weight_at(weight, c), sums.sum_dy[c],
                               sums.sum_dy_xmu[c], stats.count, k.a[c], k.b[c], k.c[c]);
  bnorm::detail::for_each_elementwise_piece(
      plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
        bnorm::detail::grad_input(x, dy, dx, c0, c1, n0, n1, stats.mean.data(), k.a.data(),
                                  k.b.data(), k.c.data(), plan.stream);
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
