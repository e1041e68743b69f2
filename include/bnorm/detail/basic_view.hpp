/// @file detail/basic_view.hpp
/// @brief BasicView<T, R, Names>: a pointer, R extents and R strides in logical (N, C, ...)
/// order, with the construction checks every view of the library makes. NCLView, NCHWView and
/// NCDHWView (nchw_view.hpp) are its rank-3, rank-4 and rank-5 faces.
#pragma once

#include <array>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "../config.hpp"

namespace bnorm::detail {

/// Element (i_0, ..., i_{R-1}) lives at `data()[sum_r i_r * stride(r)]`; axis 0 is the batch N,
/// axis 1 the channels C, the rest are spatial. Names::view names the view in messages,
/// Names::axes holds one letter per axis.
template <class T, std::size_t R, class Names>
class BasicView {
  static_assert(R >= 3, "a view has N, C and at least one spatial axis");

 public:
  using element_type = T;                           ///< T, possibly const
  using value_type = std::remove_cv_t<T>;           ///< T without const
  using extents_type = std::array<index_t, R>;      ///< extents or strides in logical order
  static constexpr std::size_t rank = R;            ///< number of axes
  static constexpr const char* axes = Names::axes;  ///< one letter per axis, e.g. "NCHW"

  /// Pointer to element (0, ..., 0).
  T* data() const { return data_; }
  /// Extent of axis r (0 is N, 1 is C).
  index_t extent(int r) const { return extents_[static_cast<std::size_t>(r)]; }
  /// Stride of axis r, in elements.
  index_t stride(int r) const { return strides_[static_cast<std::size_t>(r)]; }
  /// All extents.
  const extents_type& extents() const { return extents_; }
  /// All strides.
  const extents_type& strides() const { return strides_; }
  index_t n() const { return extents_[0]; }  ///< extent(0), the batch size N
  index_t c() const { return extents_[1]; }  ///< extent(1), the channels C
  /// Number of elements, the product of the extents.
  index_t size() const {
    index_t count = 1;
    for (index_t e : extents_) count *= e;
    return count;
  }
  /// True when some extent is 0.
  bool empty() const { return size() == 0; }
  /// Values per channel, M: the product of every extent but C's.
  index_t per_channel() const {
    index_t count = 1;
    for (std::size_t r = 0; r < R; ++r)
      if (r != 1) count *= extents_[r];
    return count;
  }

  /// Offset of the element at `index` from data(), in elements.
  template <class... I>
  index_t offset(I... index) const {
    static_assert(sizeof...(I) == R, "one index per axis");
    const std::array<index_t, R> i{static_cast<index_t>(index)...};
    index_t at = 0;
    for (std::size_t r = 0; r < R; ++r) at += i[r] * strides_[r];
    return at;
  }
  /// The element at `index`; no bounds check.
  template <class... I>
  T& operator()(I... index) const {
    return data_[offset(index...)];
  }

  /// True when the strides are those of the contiguous tensor (ignoring extents of 1).
  bool is_contiguous() const { return same_layout(contiguous_strides(extents_)); }
  /// True when the strides are those of a contiguous channels-last tensor, C the innermost
  /// axis and the others in order (NLC, NHWC, NDHWC), ignoring extents of 1.
  bool is_channels_last() const { return same_layout(channels_last_strides(extents_)); }

  /// Strides of a contiguous tensor with these extents.
  static extents_type contiguous_strides(const extents_type& e) {
    check_extents(e);
    extents_type s{};
    index_t step = 1;
    for (std::size_t r = R; r-- > 1;) {
      s[r] = step;
      step = checked_mul(step, e[r]);
    }
    s[0] = step;
    return s;
  }
  /// Strides of a contiguous channels-last tensor with these extents: C innermost.
  static extents_type channels_last_strides(const extents_type& e) {
    check_extents(e);
    extents_type s{};
    s[1] = 1;
    index_t step = e[1];
    for (std::size_t r = R; r-- > 2;) {
      s[r] = step;
      step = checked_mul(step, e[r]);
    }
    s[0] = step;
    return s;
  }

 protected:
  BasicView() = default;
  BasicView(T* data, const extents_type& extents, const extents_type& strides)
      : data_(data), extents_(extents), strides_(strides) {
    validate();
  }
  struct Trusted {};  // a conversion of a view that already passed validate()
  BasicView(Trusted, T* data, const extents_type& extents, const extents_type& strides)
      : data_(data), extents_(extents), strides_(strides) {}

  static index_t checked_mul(index_t a, index_t b) {
    index_t product = 0;  // both are >= 0 here
    require(multiply_fits(a, b, product), Names::view, " extents overflow index_t: ", a, " * ", b);
    return product;
  }

  static void check_extents(const extents_type& e) {
    for (std::size_t r = 0; r < R; ++r)
      require(e[r] >= 0, Names::view, " extent ", r, " (", axes[r], ") must be >= 0, got ", e[r]);
  }

 private:
  void validate() const {
    check_extents(extents_);
    // The product of the nonzero extents must fit, so that every partial product (N*H*W,
    // H*W, ...) does too, even in an empty view.
    index_t count = 1, nonzero = 1, last = 0;
    for (std::size_t r = 0; r < R; ++r) {
      require(strides_[r] >= 0, Names::view, " stride ", r, " (", axes[r], ") must be >= 0, got ",
              strides_[r]);
      nonzero = checked_mul(nonzero, extents_[r] == 0 ? 1 : extents_[r]);
      count *= extents_[r];  // 0 or equal to nonzero, so it fits
    }
    if (count == 0) return;
    // last = sum (extent - 1) * stride, the largest offset, must fit index_t too.
    for (std::size_t r = 0; r < R; ++r) {
      index_t step = 0;  // (extent - 1) * stride
      require(multiply_fits(extents_[r] - 1, strides_[r], step) &&
                  step <= std::numeric_limits<index_t>::max() - last,
              Names::view, " largest offset overflows index_t");
      last += step;
    }
    require(data_ != nullptr, Names::view, " data is null but the view has ", count, " elements");
  }

  bool same_layout(const extents_type& s) const {
    for (std::size_t r = 0; r < R; ++r)
      if (extents_[r] > 1 && strides_[r] != s[r]) return false;
    return true;
  }

  T* data_ = nullptr;
  extents_type extents_{};
  extents_type strides_{};
};

}  // namespace bnorm::detail
