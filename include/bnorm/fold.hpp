/// @file fold.hpp
/// @brief fold_into: an eval-mode BatchNorm folded into the convolution or linear layer before
/// it, so that the layer alone computes both at inference.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <type_traits>

#include "batch_norm.hpp"  // also brings detail::identity_t (detail/nchw_face.hpp)
#include "config.hpp"
#include "detail/checks.hpp"
#include "detail/eval_affine.hpp"

namespace bnorm {
namespace detail {

/// A layer's weights, one output channel a row, in T's own memory (a Matrix or a Map over it).
template <class T>
using RowMajorRef = Eigen::Ref<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

/// The body of every fold_into overload, for any module with BatchNorm's accessors (options(),
/// num_features(), weight(), bias(), running_mean(), running_var()).
template <class T, class Module>
void fold_batch_norm(const Module& bn, RowMajorRef<T> weight,
                     Eigen::Array<T, Eigen::Dynamic, 1>& bias) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "bnorm::fold_into is for float and double layers: fold a 16-bit module's "
                "scale_shift() into the layer's float master weights");
  const Options& o = bn.options();
  const index_t c = bn.num_features();
  // Without running statistics eval normalises with the batch's: no constant map to fold.
  require(o.track_running_stats,
          "fold_into needs bn's running statistics: expected track_running_stats true, got false");
  // The module's arrays are public and resizable: check them as the module's own calls do.
  const index_t p = o.affine ? c : 0;
  const char* why_p = o.affine ? "bn's num_features" : "bn's affine is false";
  check_size("bn.weight()", bn.weight().size(), p, why_p);
  check_size("bn.bias()", bn.bias().size(), p, why_p);
  check_size("bn.running_mean()", bn.running_mean().size(), c, "bn's num_features");
  check_size("bn.running_var()", bn.running_var().size(), c, "bn's num_features");
  require(weight.rows() == c, "weight has ", weight.rows(), " rows, expected ", c,
          " (bn's num_features: one row per output channel)");
  require(bias.size() == 0 || bias.size() == c, "bias has ", bias.size(), " elements, expected ", c,
          " (bn's num_features), or 0 for a layer without bias");

  // Every input is read before anything is written, so weight may even alias bias or bn's
  // arrays; and bad_alloc can only come before the first write.
  Eigen::ArrayXd scale(c);
  Eigen::Array<T, Eigen::Dynamic, 1> new_bias(c);
  for (index_t r = 0; r < c; ++r) {
    const auto [s, shift] = eval_affine(o.affine ? static_cast<double>(bn.weight()[r]) : 1.0,
                                        o.affine ? static_cast<double>(bn.bias()[r]) : 0.0,
                                        static_cast<double>(bn.running_mean()[r]),
                                        static_cast<double>(bn.running_var()[r]), o.eps);
    scale[r] = s;
    const double layer_bias = bias.size() == 0 ? 0.0 : static_cast<double>(bias[r]);
    new_bias[r] = static_cast<T>(layer_bias * s + shift);
  }
  for (index_t r = 0; r < c; ++r)
    for (index_t k = 0; k < weight.cols(); ++k)
      weight(r, k) = static_cast<T>(static_cast<double>(weight(r, k)) * scale[r]);
  bias = new_bias;  // a bias of C elements keeps its buffer (copied into, not swapped)
}

}  // namespace detail

/// Folds an eval-mode `bn` (BatchNorm1d, 2d or 3d) into the layer before it: afterwards the layer
/// alone computes what the layer followed by `bn` in eval computed. Per output channel c, in
/// double:
///   scale = bn.weight()[c] / sqrt(bn.running_var()[c] + eps)    (bn.weight() = 1 without affine)
///   shift = bn.bias()[c] - bn.running_mean()[c] * scale          (bn.bias() = 0 without affine)
///   weight(c, k) = T(weight(c, k) * scale),   bias[c] = T(bias[c] * scale + shift),
/// with bias[c] = 0 for a layer without bias.
///
/// @param bn      the BatchNorm after the layer; its training mode does not matter.
/// @param weight  row-major, row c the weights of output channel c: a convolution's
///                C x (C_in * kh * kw), a linear layer's C x in_features. An Eigen::Matrix or an
///                Eigen::Map over the layer's own memory, which is then written in place.
/// @param bias    the layer's C biases, or 0 elements for a layer without bias: it then becomes C.
/// @throws bnorm::invalid_argument when bn has no running statistics (track_running_stats
/// false), when its weight(), bias(), running_mean() or running_var() were resized to a wrong
/// size, when weight does not have C rows, or when bias has neither C nor 0 elements. Everything
/// is checked first: after a throw, weight and bias are unchanged.
///
/// One function for BatchNorm1d, BatchNorm2d and BatchNorm3d (their common base BatchNorm).
template <class T, template <class> class View>
void fold_into(const BatchNorm<T, View>& bn,
               Eigen::Ref<Eigen::Matrix<detail::identity_t<T>, Eigen::Dynamic, Eigen::Dynamic,
                                        Eigen::RowMajor>>
                   weight,
               Eigen::Array<detail::identity_t<T>, Eigen::Dynamic, 1>& bias) {
  detail::fold_batch_norm<T>(bn, weight, bias);
}

}  // namespace bnorm
