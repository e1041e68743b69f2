/// @file nchw_view.hpp
/// @brief The views of the library, non-owning and indexed in logical order: NCHWView
/// (n, c, h, w) for BatchNorm2d, NCLView (n, c, l) for BatchNorm1d, NCDHWView (n, c, d, h, w)
/// for BatchNorm3d.
#pragma once

#include <array>
#include <type_traits>

#include "config.hpp"
#include "detail/basic_view.hpp"

namespace bnorm {

namespace detail {
struct NCLNames {
  static constexpr const char* view = "NCLView";
  static constexpr const char* axes = "NCL";
};
struct NCHWNames {
  static constexpr const char* view = "NCHWView";
  static constexpr const char* axes = "NCHW";
};
struct NCDHWNames {
  static constexpr const char* view = "NCDHWView";
  static constexpr const char* axes = "NCDHW";
};
}  // namespace detail

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
class NCHWView : public detail::BasicView<T, 4, detail::NCHWNames> {
  using Base = detail::BasicView<T, 4, detail::NCHWNames>;

 public:
  using typename Base::extents_type;  ///< extents or strides in N, C, H, W order

  /// An empty 0x0x0x0 view.
  NCHWView() = default;

  /// A contiguous NCHW tensor: strides (C*H*W, H*W, W, 1).
  NCHWView(T* data, index_t n, index_t c, index_t h, index_t w)
      : Base(data, {n, c, h, w}, Base::contiguous_strides({n, c, h, w})) {}

  /// Any layout: extents in logical N, C, H, W order, strides in elements.
  NCHWView(T* data, extents_type extents, extents_type strides) : Base(data, extents, strides) {}

  /// A tensor whose memory is NHWC ("channels last"), indexed as NCHW: strides (H*W*C, 1, W*C, C).
  static NCHWView channels_last(T* data, index_t n, index_t c, index_t h, index_t w) {
    return NCHWView(data, {n, c, h, w}, Base::channels_last_strides({n, c, h, w}));
  }

  /// Implicit conversion of a mutable view to a const view.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_const_v<U>>>
  NCHWView(const NCHWView<U>& other)  // NOLINT(google-explicit-constructor): like T* -> const T*
      : Base(typename Base::Trusted{}, other.data(), other.extents(), other.strides()) {}

  index_t h() const { return this->extent(2); }  ///< extent(2), the height H
  index_t w() const { return this->extent(3); }  ///< extent(3), the width W
};

/// A non-owning view of a 3-d tensor in logical NCL order (BatchNorm1d's input), with any
/// non-negative strides: element (n, c, l) at `data()[n*stride(0) + c*stride(1) + l*stride(2)]`.
/// BatchNorm1d's (N, C) input is the view with l = 1. Same checks and rules as NCHWView.
template <class T>
class NCLView : public detail::BasicView<T, 3, detail::NCLNames> {
  using Base = detail::BasicView<T, 3, detail::NCLNames>;

 public:
  using typename Base::extents_type;  ///< extents or strides in N, C, L order

  /// An empty 0x0x0 view.
  NCLView() = default;
  /// A contiguous NCL tensor: strides (C*L, L, 1).
  NCLView(T* data, index_t n, index_t c, index_t l)
      : Base(data, {n, c, l}, Base::contiguous_strides({n, c, l})) {}
  /// An (N, C) matrix in row-major order, as BatchNorm1d takes it: (n, c, 1).
  NCLView(T* data, index_t n, index_t c) : NCLView(data, n, c, 1) {}
  /// Any layout: extents in logical N, C, L order, strides in elements.
  NCLView(T* data, extents_type extents, extents_type strides) : Base(data, extents, strides) {}
  /// A tensor whose memory is NLC ("channels last"): strides (L*C, 1, C).
  static NCLView channels_last(T* data, index_t n, index_t c, index_t l) {
    return NCLView(data, {n, c, l}, Base::channels_last_strides({n, c, l}));
  }
  /// Implicit conversion of a mutable view to a const view.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_const_v<U>>>
  NCLView(const NCLView<U>& other)  // NOLINT(google-explicit-constructor): like T* -> const T*
      : Base(typename Base::Trusted{}, other.data(), other.extents(), other.strides()) {}

  index_t l() const { return this->extent(2); }  ///< extent(2), the length L
};

/// A non-owning view of a 5-d tensor in logical NCDHW order (BatchNorm3d's input), with any
/// non-negative strides: element (n, c, d, h, w) at the sum of index times stride over the five
/// axes. Same checks and rules as NCHWView.
template <class T>
class NCDHWView : public detail::BasicView<T, 5, detail::NCDHWNames> {
  using Base = detail::BasicView<T, 5, detail::NCDHWNames>;

 public:
  using typename Base::extents_type;  ///< extents or strides in N, C, D, H, W order

  /// An empty view.
  NCDHWView() = default;
  /// A contiguous NCDHW tensor: strides (C*D*H*W, D*H*W, H*W, W, 1).
  NCDHWView(T* data, index_t n, index_t c, index_t d, index_t h, index_t w)
      : Base(data, {n, c, d, h, w}, Base::contiguous_strides({n, c, d, h, w})) {}
  /// Any layout: extents in logical N, C, D, H, W order, strides in elements.
  NCDHWView(T* data, extents_type extents, extents_type strides) : Base(data, extents, strides) {}
  /// A tensor whose memory is NDHWC ("channels last"): strides (D*H*W*C, 1, H*W*C, W*C, C).
  static NCDHWView channels_last(T* data, index_t n, index_t c, index_t d, index_t h, index_t w) {
    return NCDHWView(data, {n, c, d, h, w}, Base::channels_last_strides({n, c, d, h, w}));
  }
  /// Implicit conversion of a mutable view to a const view.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_const_v<U>>>
  NCDHWView(const NCDHWView<U>& other)  // NOLINT(google-explicit-constructor)
      : Base(typename Base::Trusted{}, other.data(), other.extents(), other.strides()) {}

  index_t d() const { return this->extent(2); }  ///< extent(2), the depth D
  index_t h() const { return this->extent(3); }  ///< extent(3), the height H
  index_t w() const { return this->extent(4); }  ///< extent(4), the width W
};

/// True when two views of the same kind have the same extents.
template <class A, class B, std::size_t R, class Names>
bool same_extents(const detail::BasicView<A, R, Names>& a,
                  const detail::BasicView<B, R, Names>& b) {
  return a.extents() == b.extents();
}

}  // namespace bnorm
