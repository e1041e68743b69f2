/// @file detail/checks.hpp
/// @brief Argument checks shared by the variants and the module. Each throws
/// bnorm::invalid_argument with the argument's name, the expected and the actual value.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>

#include "../nchw_view.hpp"
#include "element_types.hpp"

namespace bnorm::detail {

/// Extents (a std::array or std::vector) that print as "[e0, e1, ...]". Formatted only when
/// streamed: the checks pass one to require(), which builds its message only on failure, so a
/// call that passes its checks formats nothing (an ostringstream per check cost 10x the kernels
/// of a 2x2x2x2 call).
template <class Extents>
struct ShapeText {
  const Extents& extents;
  friend std::ostream& operator<<(std::ostream& out, const ShapeText& s) {
    out << '[';
    for (std::size_t r = 0; r < s.extents.size(); ++r) out << (r ? ", " : "") << s.extents[r];
    return out << ']';
  }
};

/// The text of extents `e`, to stream or to pass to require() and concat(); it refers to `e`.
template <class Extents>
ShapeText<Extents> shape_text(const Extents& e) {
  return {e};
}

/// The letter of axis r of a view (N, C, then the spatial axes).
template <class V>
char axis_name(int r) {
  return V::axes[r];
}

/// View `name` must have the extents `expected`, described by `why`.
template <class V>
void check_shape(const char* name, const V& v, const typename V::extents_type& expected,
                 const char* why) {
  require(v.extents() == expected, name, " has shape ", shape_text(v.extents()), ", expected ",
          shape_text(expected), " (", why, ")");
}

/// View `name` must have the shape of view `ref_name`.
template <class V, class W>
void check_same_shape(const char* name, const V& v, const char* ref_name, const W& ref) {
  require(same_extents(v, ref), name, " has shape ", shape_text(v.extents()), ", expected ",
          shape_text(ref.extents()), " (the shape of ", ref_name, ")");
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
template <class V>
void check_training_count(const V& x) {
  require(x.per_channel() != 1,
          "Expected more than 1 value per channel when training, got input of shape ",
          shape_text(x.extents()));
}

// Output views: a unique layout, and no partial overlap with an input.
//
// Every entry point applies these rules to its output views (y of a forward, dx of a backward)
// before it writes anything:
// - An output's layout must be unique: no element is reached by two indices (the result would
//   depend on which write lands last, and parallel writes would race). The test is a sufficient
//   one: sort the axes of extent > 1 by stride; the smallest stride must be >= 1, and each next
//   stride >= the previous stride times the previous extent. Every permutation of the axes with
//   any padding passes (NCHW, NHWC, sub-blocks of larger tensors); unique layouts whose axes
//   interleave inside one another are rejected too. Axes of extent 1 never move, so their stride
//   does not matter.
// - An output and an input either share no element, or are exactly the same view (the same data
//   and, on every axis of extent > 1, the same stride): the call then runs in place, with the
//   same results as out of place, since every kernel reads a channel's inputs before it writes
//   that channel. Whether two views share an element is decided exactly when their address
//   ranges are disjoint or their strides are the same (as for two channel blocks of one
//   concatenated tensor, which interleave); views with different strides whose address ranges
//   intersect are rejected.
// Inputs are never written, so they may overlap each other and repeat elements (a zero stride
// broadcasts one value).

/// Output view `name` must have a unique layout (the sufficient test above).
template <class V>
void check_unique_layout(const char* name, const V& v) {
  if (v.empty()) return;  // no element at all
  // The axes of extent > 1 by stride; ties keep the N, C, H, W order, so the message is
  // deterministic. Each axis's place is the count of axes before it in that order: no swaps in
  // memory (an insertion sort's chain of stores and reloads cost 50 ns per check).
  std::array<int, V::rank> axes{};
  int k = 0;
  for (int r = 0; r < static_cast<int>(V::rank); ++r) {
    if (v.extent(r) <= 1) continue;
    int place = 0;
    for (int q = 0; q < static_cast<int>(V::rank); ++q)
      place +=
          v.extent(q) > 1 && (v.stride(q) < v.stride(r) || (v.stride(q) == v.stride(r) && q < r));
    axes[static_cast<std::size_t>(place)] = r;
    ++k;
  }
  index_t need = 1;  // the smallest stride the next axis may have
  int prev = -1;
  for (int i = 0; i < k; ++i) {
    const int r = axes[static_cast<std::size_t>(i)];
    const index_t s = v.stride(r), e = v.extent(r);
    if (s < need) {
      const std::string because = prev < 0
                                      ? std::string()
                                      : concat(" = stride ", v.stride(prev), " * extent ",
                                               v.extent(prev), " of axis ", axis_name<V>(prev));
      throw invalid_argument(concat(
          "bnorm: ", name,
          " is an output and needs a unique layout (no element reached by two indices), got "
          "extents ",
          shape_text(v.extents()), " with strides ", shape_text(v.strides()), ": axis ",
          axis_name<V>(r), " (extent ", e, ") has stride ", s, ", expected >= ", need, because));
    }
    // s * e fits index_t for any view that passed its constructor and has another axis
    // left; saturate anyway.
    if (!multiply_fits(s, e, need)) need = std::numeric_limits<index_t>::max();
    prev = r;
  }
}

/// The bytes [begin, end) between a non-empty view's first and last element.
struct AddressRange {
  std::uintptr_t begin, end;
};
template <class V>
AddressRange address_range(const V& v) {
  using T = typename V::value_type;
  index_t last = 0;  // the largest offset; fits index_t (checked by the view's constructor)
  for (int r = 0; r < static_cast<int>(V::rank); ++r) last += (v.extent(r) - 1) * v.stride(r);
  const auto begin = reinterpret_cast<std::uintptr_t>(v.data());
  const auto count = static_cast<std::uintptr_t>(last) + 1;
  const std::uintptr_t room = (std::numeric_limits<std::uintptr_t>::max() - begin) / sizeof(T);
  return {begin,
          count > room ? std::numeric_limits<std::uintptr_t>::max() : begin + count * sizeof(T)};
}

/// Same extents and, on every axis of extent > 1, the same stride.
template <class V, class W>
bool same_strides(const V& a, const W& b) {
  if (a.extents() != b.extents()) return false;
  for (int r = 0; r < static_cast<int>(V::rank); ++r)
    if (a.extent(r) > 1 && a.stride(r) != b.stride(r)) return false;
  return true;
}

/// a and b are exactly the same non-empty view: every index reaches the same element.
template <class V, class W>
bool same_view(const V& a, const W& b) {
  return !a.empty() && same_strides(a, b) &&
         reinterpret_cast<std::uintptr_t>(a.data()) == reinterpret_cast<std::uintptr_t>(b.data());
}

inline index_t floor_div(index_t a, index_t b) {  // b > 0
  const index_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
inline index_t ceil_div(index_t a, index_t b) {  // b > 0
  const index_t q = a / b;
  return (a % b != 0 && a > 0) ? q + 1 : q;
}

/// Whether d == sum_i j_i * stride[i] for integers |j_i| <= extent[i] - 1, over axes i..k-1
/// sorted by decreasing stride; rest[i] = sum over the axes after i of (extent - 1) * stride,
/// the most they can add. Two views with these strides, d elements apart, share an element
/// exactly when this holds. For a unique layout rest[i] < stride[i], so each axis leaves at most
/// two candidates.
inline constexpr std::size_t kMaxRank = 5;  // NCDHW
inline bool offset_reachable(index_t d, const std::array<index_t, kMaxRank>& stride,
                             const std::array<index_t, kMaxRank>& extent,
                             const std::array<index_t, kMaxRank>& rest, int i, int k) {
  if (i >= k || i >= static_cast<int>(kMaxRank)) return d == 0;
  const auto a = static_cast<std::size_t>(i);
  // j * stride must lie in [d - rest, d + rest]
  const index_t lo = std::max(ceil_div(d - rest[a], stride[a]), -(extent[a] - 1));
  const index_t hi = std::min(floor_div(d + rest[a], stride[a]), extent[a] - 1);
  for (index_t j = lo; j <= hi; ++j)
    if (offset_reachable(d - j * stride[a], stride, extent, rest, i + 1, k)) return true;
  return false;
}

/// For v of unique layout: whether v and the same view moved by d elements share an element.
template <class V>
bool shifted_view_shares_element(const V& v, index_t d) {
  static_assert(V::rank <= kMaxRank);
  std::array<index_t, kMaxRank> stride{}, extent{}, rest{};
  int k = 0;
  for (int r = 0; r < static_cast<int>(V::rank); ++r)
    if (v.extent(r) > 1) {
      stride[static_cast<std::size_t>(k)] = v.stride(r);
      extent[static_cast<std::size_t>(k++)] = v.extent(r);
    }
  for (int i = 1; i < k; ++i)  // sort by decreasing stride
    for (int j = i;
         j > 0 && stride[static_cast<std::size_t>(j)] > stride[static_cast<std::size_t>(j - 1)];
         --j) {
      std::swap(stride[static_cast<std::size_t>(j)], stride[static_cast<std::size_t>(j - 1)]);
      std::swap(extent[static_cast<std::size_t>(j)], extent[static_cast<std::size_t>(j - 1)]);
    }
  index_t sum = 0;
  for (int i = k - 1; i >= 0; --i) {
    rest[static_cast<std::size_t>(i)] = sum;
    sum += (extent[static_cast<std::size_t>(i)] - 1) * stride[static_cast<std::size_t>(i)];
  }
  // Keep d +- rest far from overflow; no real memory holds views this far apart.
  constexpr index_t kFar = index_t{1} << 61;
  if (sum > kFar || d > kFar || d < -kFar) return true;
  return offset_reachable(d, stride, extent, rest, 0, k);
}

/// Output `out_name` and input `in_name` (of the same extents) must share no element, or be
/// exactly the same view (in place). `out` must already have passed check_unique_layout.
template <class O, class I>
void check_no_partial_overlap(const char* out_name, const O& out, const char* in_name,
                              const I& in) {
  using T = typename O::value_type;
  static_assert(std::is_same_v<T, typename I::value_type> && O::rank == I::rank);
  if (out.empty() || in.empty()) return;
  const AddressRange a = address_range(out), b = address_range(in);
  if (a.end <= b.begin || b.end <= a.begin) return;  // disjoint address ranges
  // Byte distance from in to out, as a signed number (two's complement wrap is intended).
  const auto bytes = static_cast<std::intptr_t>(a.begin - b.begin);
  const bool whole = bytes % static_cast<std::intptr_t>(sizeof(T)) == 0;
  const index_t d = static_cast<index_t>(bytes / static_cast<std::intptr_t>(sizeof(T)));
  if (whole && same_strides(out, in) && (d == 0 || !shifted_view_shares_element(out, d))) return;
  throw invalid_argument(
      concat("bnorm: ", out_name, " partially overlaps ", in_name, ": expected ", out_name,
             " to share no element with ", in_name, ", or to be exactly ", in_name,
             " (same data, extents and strides) to run in place; got ", out_name, " at ",
             bytes >= 0 ? "+" : "", whole ? d : static_cast<index_t>(bytes),
             whole ? " elements" : " bytes", " from ", in_name, ", ", out_name, " strides ",
             shape_text(out.strides()), ", ", in_name, " strides ", shape_text(in.strides())));
}

/// Output array `out_name` must not be the same object as array `in_name`, which the call
/// still reads (or also writes) after it starts writing `out_name`.
template <class T>
void check_distinct_arrays(const char* out_name, const Eigen::Array<T, Eigen::Dynamic, 1>& out,
                           const char* in_name, const Eigen::Array<T, Eigen::Dynamic, 1>& in) {
  require(&out != &in, out_name, " is the same array as ", in_name,
          ": expected a separate array, since backward resizes and writes ", out_name);
}

/// The gradient arrays of a backward: dweight and dbias are neither each other nor an array the
/// backward reads (weight, and the running statistics when given).
template <class T>
void check_gradient_arrays(const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                           const Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
                           const Eigen::Array<T, Eigen::Dynamic, 1>& dbias,
                           const Eigen::Array<T, Eigen::Dynamic, 1>* running_mean = nullptr,
                           const Eigen::Array<T, Eigen::Dynamic, 1>* running_var = nullptr) {
  check_distinct_arrays("dweight", dweight, "dbias", dbias);
  for (const auto* out : {&dweight, &dbias}) {
    const char* name = out == &dweight ? "dweight" : "dbias";
    check_distinct_arrays(name, *out, "weight", weight);
    if (running_mean) check_distinct_arrays(name, *out, "running_mean", *running_mean);
    if (running_var) check_distinct_arrays(name, *out, "running_var", *running_var);
  }
}

/// The rules for the output dx of a backward and its input dy.
template <template <class> class View, class T>
void check_backward_output(const View<const T>& dy, const View<T>& dx) {
  check_unique_layout("dx", dx);
  check_no_partial_overlap("dx", dx, "dy", dy);
}

/// Arguments of a forward: y of x's shape, unique and not partially overlapping x; weight and
/// bias of C elements (or both empty); a valid eps.
template <template <class> class View, class T>
void check_forward_args(const View<const T>& x, const ParameterArray<T>& w,
                        const ParameterArray<T>& b, double eps, const View<T>& y) {
  check_same_shape("y", y, "x", x);
  check_unique_layout("y", y);
  check_no_partial_overlap("y", y, "x", x);
  check_affine(w.size(), b.size(), x.c());
  check_eps(eps);
}

/// Arguments of a backward: dy and dx of x's shape; dx unique and not partially overlapping dy
/// or x; weight of C elements or empty.
template <template <class> class View, class T>
void check_backward_args(const View<const T>& x, const View<const T>& dy,
                         const ParameterArray<T>& w, const View<T>& dx) {
  check_same_shape("dy", dy, "x", x);
  check_same_shape("dx", dx, "x", x);
  check_backward_output(dy, dx);
  check_no_partial_overlap("dx", dx, "x", x);
  if (w.size() != 0) check_size("weight", w.size(), x.c(), "the channels of x");
}
/// A residual has x's shape; y either shares no element with it or is exactly it.
template <template <class> class View, class T>
void check_residual(const View<const T>& x, const View<const T>& residual, const View<T>& y) {
  check_same_shape("residual", residual, "x", x);
  check_no_partial_overlap("y", y, "residual", residual);
}

/// dresidual, a second output of a backward: dy's shape, a unique layout, no element shared
/// with dx, and either none shared with dy or exactly dy.
template <template <class> class View, class T>
void check_dresidual(const View<const T>& dy, const View<T>& dx, const View<T>& dresidual) {
  check_same_shape("dresidual", dresidual, "dy", dy);
  check_unique_layout("dresidual", dresidual);
  check_no_partial_overlap("dresidual", dresidual, "dy", dy);
  check_no_partial_overlap("dresidual", dresidual, "dx", dx);
  require(!same_view(dresidual, dx) || dresidual.size() == 0,
          "dresidual and dx are the same view, expected two outputs that share no element");
}

}  // namespace bnorm::detail
