/// @file statistics.hpp
/// @brief The per-channel statistics and sums the fused variant returns and takes, in double
/// whatever the element type.
#pragma once

#include <Eigen/Core>

#include "config.hpp"

namespace bnorm::fused {

/// Per-channel statistics of a batch, in double whatever T is.
struct BatchStatistics {
  index_t count = 0;      ///< M = N*H*W, values per channel
  Eigen::ArrayXd mean;    ///< (1/M) sum x
  Eigen::ArrayXd var;     ///< biased variance (1/M) sum (x - mean)^2; 0 when M == 0
  Eigen::ArrayXd invstd;  ///< 1 / sqrt(var + eps)
};

/// Per-channel statistics of one part of a batch: count, mean and M2 = sum (x - mean)^2.
struct LocalStatistics {
  index_t count = 0;    ///< values per channel in this part, N*H*W
  Eigen::ArrayXd mean;  ///< (1/count) sum x; 0 when count == 0
  Eigen::ArrayXd m2;    ///< sum (x - mean)^2; 0 when count == 0
};

/// Per-channel backward reductions of one part: sum dy and sum dy * (x - mean), in double.
struct GradientSums {
  Eigen::ArrayXd sum_dy;      ///< sum dy
  Eigen::ArrayXd sum_dy_xmu;  ///< sum dy * (x - mean), mean the (global) batch mean
};

}  // namespace bnorm::fused
