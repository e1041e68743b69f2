/// @file nchw_view.hpp
/// @brief NCHWView<T>: a non-owning 4-d view indexed in logical (n, c, h, w) order.
#pragma once

#include <array>
#include <limits>
#include <type_traits>

#include "config.hpp"

namespace bnorm {

/// A non-owning view of a 4-d tensor in logical NCHW order, with any non-negative strides.
///
/// Element (n, c, h, w) lives at `data()[n*stride(0) + c*stride(1) + h*stride(2) + w*stride(3)]`;
/// extents and strides count elements, not bytes. `T` may be const-qualified, and a view of `T`
/// converts implicitly to a view of `const T`. Construction checks that extents are >= 0, that
/// strides are >= 0, that data is non-null when the view is non-empty, and that neither the
/// product of the nonzero extents (so no partial product such as N*H*W, even in an empty view)
/// nor the largest offset overflows index_t.
///
/// A view passed as an output (y, dx) must moreover have a unique layout, no element reached by
/// two indices, and must not partially overlap an input; inputs may repeat elements (a zero
/// stride broadcasts). The rules are in detail/checks.hpp and the README's "Aliasing".
template <class T>
class NCHWView {
 public:
  using element_type = T;                       ///< T, possibly const
  using value_type = std::remove_cv_t<T>;       ///< T without const
  using extents_type = std::array<index_t, 4>;  ///< extents or strides in N, C, H, W order

  /// An empty 0x0x0x0 view.
  NCHWView() = default;

  /// A contiguous NCHW tensor: strides (C*H*W, H*W, W, 1).
  NCHWView(T* data, index_t n, index_t c, index_t h, index_t w)
      : NCHWView(data, extents_type{n, c, h, w}, contiguous_strides({n, c, h, w})) {}

  /// Any layout: extents in logical N, C, H, W order, strides in elements.
  NCHWView(T* data, extents_type extents, extents_type strides)
      : data_(data), extents_(extents), strides_(strides) {
    validate();
  }

  /// A tensor whose memory is NHWC ("channels last"), indexed as NCHW: strides (H*W*C, 1, W*C, C).
  static NCHWView channels_last(T* data, index_t n, index_t c, index_t h, index_t w) {
    check_extents({n, c, h, w});
    // Overflow is checked by the constructor through the element count; the strides are bounded
    // by it, so computing them first cannot overflow once the count fits.
    const index_t wc = checked_mul(w, c), hwc = checked_mul(h, wc);
    return NCHWView(data, {n, c, h, w}, {hwc, 1, wc, c});
  }

  /// Implicit conversion of a mutable view to a const view.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_const_v<U>>>
  NCHWView(const NCHWView<U>& other)  // NOLINT(google-explicit-constructor): like T* -> const T*
      : data_(other.data()),
        extents_{other.extent(0), other.extent(1), other.extent(2), other.extent(3)},
        strides_{other.stride(0), other.stride(1), other.stride(2), other.stride(3)} {}

  /// Pointer to element (0, 0, 0, 0).
  T* data() const { return data_; }
  /// Extent of rank r: 0 N, 1 C, 2 H, 3 W.
  index_t extent(int r) const { return extents_[static_cast<std::size_t>(r)]; }
  /// Stride of rank r in elements: 0 N, 1 C, 2 H, 3 W.
  index_t stride(int r) const { return strides_[static_cast<std::size_t>(r)]; }
  /// All four extents.
  const extents_type& extents() const { return extents_; }
  /// All four strides.
  const extents_type& strides() const { return strides_; }
  index_t n() const { return extents_[0]; }  ///< extent(0), the batch size N
  index_t c() const { return extents_[1]; }  ///< extent(1), the channels C
  index_t h() const { return extents_[2]; }  ///< extent(2), the height H
  index_t w() const { return extents_[3]; }  ///< extent(3), the width W
  /// Number of elements, N*C*H*W.
  index_t size() const { return extents_[0] * extents_[1] * extents_[2] * extents_[3]; }
  /// True when some extent is 0.
  bool empty() const { return size() == 0; }

  /// Offset of (n, c, h, w) from data(), in elements.
  index_t offset(index_t n, index_t c, index_t h, index_t w) const {
    return n * strides_[0] + c * strides_[1] + h * strides_[2] + w * strides_[3];
  }
  /// Element (n, c, h, w); no bounds check.
  T& operator()(index_t n, index_t c, index_t h, index_t w) const {
    return data_[offset(n, c, h, w)];
  }

  /// True when the strides are those of a contiguous NCHW tensor (ignoring extents of 1).
  bool is_contiguous() const { return same_layout(contiguous_strides(extents_)); }
  /// True when the strides are those of a contiguous NHWC tensor (ignoring extents of 1).
  bool is_channels_last() const {
    const index_t c = extents_[1], w = extents_[3];
    return same_layout({extents_[2] * w * c, 1, w * c, c});
  }

  /// Strides of a contiguous NCHW tensor with these extents.
  static extents_type contiguous_strides(const extents_type& e) {
    check_extents(e);
    const index_t hw = checked_mul(e[2], e[3]), chw = checked_mul(e[1], hw);
    return {chw, hw, e[3], 1};
  }

 private:
  static constexpr const char* kAxis = "NCHW";

  static index_t checked_mul(index_t a, index_t b) {
    // Both are >= 0 here; the product overflows exactly when a > max / b.
    detail::require(b == 0 || a <= std::numeric_limits<index_t>::max() / b,
                    "NCHWView extents overflow index_t: ", a, " * ", b);
    return a * b;
  }

  static void check_extents(const extents_type& e) {
    for (int r = 0; r < 4; ++r)
      detail::require(e[static_cast<std::size_t>(r)] >= 0, "NCHWView extent ", r, " (", kAxis[r],
                      ") must be >= 0, got ", e[static_cast<std::size_t>(r)]);
  }

  void validate() const {
    check_extents(extents_);
    // The product of the nonzero extents must fit, so that every partial product (N*H*W,
    // H*W, ...) does too, even in an empty view.
    index_t count = 1, nonzero = 1, last = 0;
    for (int r = 0; r < 4; ++r) {
      const auto i = static_cast<std::size_t>(r);
      detail::require(strides_[i] >= 0, "NCHWView stride ", r, " (", kAxis[r],
                      ") must be >= 0, got ", strides_[i]);
      nonzero = checked_mul(nonzero, extents_[i] == 0 ? 1 : extents_[i]);
      count *= extents_[i];  // 0 or equal to nonzero, so it fits
    }
    if (count == 0) return;
    // last = sum (extent - 1) * stride, the largest offset, must fit index_t too.
    for (std::size_t i = 0; i < 4; ++i) {
      const index_t e = extents_[i] - 1, s = strides_[i];
      detail::require(s == 0 || e <= (std::numeric_limits<index_t>::max() - last) / s,
                      "NCHWView largest offset overflows index_t");
      last += e * s;
    }
    detail::require(data_ != nullptr, "NCHWView data is null but the view has ", count,
                    " elements");
  }

  bool same_layout(const extents_type& s) const {
    for (std::size_t r = 0; r < 4; ++r)
      if (extents_[r] > 1 && strides_[r] != s[r]) return false;
    return true;
  }

  T* data_ = nullptr;
  extents_type extents_{0, 0, 0, 0};
  extents_type strides_{0, 0, 0, 0};
};

/// True when two views have the same extents.
template <class A, class B>
bool same_extents(const NCHWView<A>& a, const NCHWView<B>& b) {
  return a.extents() == b.extents();
}

}  // namespace bnorm
