/// @file detail/checks.hpp
/// @brief Argument checks shared by the variants and the module. Each throws
/// bnorm::invalid_argument with the argument's name, the expected and the actual value.
#pragma once

#include <Eigen/Core>
#include <string>

#include "../nchw_view.hpp"

namespace bnorm::detail {

inline std::string shape_string(const std::array<index_t, 4>& e) {
  return concat("[", e[0], ", ", e[1], ", ", e[2], ", ", e[3], "]");
}

/// View `name` must have the extents `expected`, described by `why`.
template <class A>
void check_shape(const char* name, const NCHWView<A>& v, const std::array<index_t, 4>& expected,
                 const char* why) {
  require(v.extents() == expected, name, " has shape ", shape_string(v.extents()), ", expected ",
          shape_string(expected), " (", why, ")");
}

/// View `name` must have the shape of view `ref_name`.
template <class A, class B>
void check_same_shape(const char* name, const NCHWView<A>& v, const char* ref_name,
                      const NCHWView<B>& ref) {
  require(same_extents(v, ref), name, " has shape ", shape_string(v.extents()), ", expected ",
          shape_string(ref.extents()), " (the shape of ", ref_name, ")");
}

/// A per-channel array `name` must have `expected` elements.
inline void check_size(const char* name, index_t actual, index_t expected, const char* why) {
  require(actual == expected, name, " has ", actual, " elements, expected ", expected, " (", why,
          ")");
}

/// weight and bias: both of size C (affine), or both empty (not affine).
inline void check_affine(index_t weight_size, index_t bias_size, index_t channels) {
  if (weight_size == 0 && bias_size == 0) return;
  check_size("weight", weight_size, channels, "the channels of x, or 0 for no affine transform");
  check_size("bias", bias_size, channels, "the channels of x, as weight");
}

/// Training needs more than one value per channel: the variance of one value is 0 and its
/// unbiased estimate divides by zero. Same rule and words as PyTorch.
template <class T>
void check_training_count(const NCHWView<T>& x) {
  const index_t m = x.n() * x.h() * x.w();
  require(m != 1, "Expected more than 1 value per channel when training, got input of shape ",
          shape_string(x.extents()));
}

template <class T>
void check_forward_args(const NCHWView<const T>& x, const Eigen::Array<T, Eigen::Dynamic, 1>& w,
                        const Eigen::Array<T, Eigen::Dynamic, 1>& b, double eps,
                        const NCHWView<T>& y) {
  check_same_shape("y", y, "x", x);
  check_affine(w.size(), b.size(), x.c());
  check_eps(eps);
}

template <class T>
void check_backward_args(const NCHWView<const T>& x, const NCHWView<const T>& dy,
                         const Eigen::Array<T, Eigen::Dynamic, 1>& w, const NCHWView<T>& dx) {
  check_same_shape("dy", dy, "x", x);
  check_same_shape("dx", dx, "x", x);
  if (w.size() != 0) check_size("weight", w.size(), x.c(), "the channels of x");
}
}  // namespace bnorm::detail
