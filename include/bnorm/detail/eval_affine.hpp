/// @file detail/eval_affine.hpp
/// @brief 1 / sqrt(var + eps) outside the kernels, and eval mode's per-channel affine map built
/// from it: one formula for the module's Saved, scale_shift() and fold_into.
#pragma once

#include <Eigen/Core>
#include <cmath>

namespace bnorm::detail {

/// 1 / sqrt(var + eps) in double, a correctly rounded square root and division (Eigen's rsqrt()
/// may use an approximation, whose bits depend on the flags).
inline double inverse_std(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}

/// inverse_std of every channel, rounded once to T.
template <class T>
Eigen::Array<T, Eigen::Dynamic, 1> inverse_std(const Eigen::ArrayXd& var, double eps) {
  Eigen::Array<T, Eigen::Dynamic, 1> out(var.size());
  for (Eigen::Index c = 0; c < var.size(); ++c) out[c] = static_cast<T>(inverse_std(var[c], eps));
  return out;
}

/// Eval mode's y = scale * x + shift for one channel, in double:
///   scale = weight / sqrt(running_var + eps),   shift = bias - running_mean * scale.
struct EvalAffine {
  double scale, shift;
};
inline EvalAffine eval_affine(double weight, double bias, double running_mean, double running_var,
                              double eps) {
  const double scale = weight * inverse_std(running_var, eps);
  return {scale, bias - running_mean * scale};
}

}  // namespace bnorm::detail
