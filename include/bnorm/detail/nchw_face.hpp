/// @file detail/nchw_face.hpp
/// @brief The NCHW face of a rank-3 or rank-5 view, through which BatchNorm1d and BatchNorm3d
/// run the kernels of BatchNorm2d: batch norm reduces every axis but C, so only the number of
/// values per channel and how they lie in memory matter, not how many axes hold them.
#pragma once

#include <array>
#include <limits>
#include <type_traits>
#include <vector>

#include "../nchw_view.hpp"

namespace bnorm::detail {

/// T itself, in a context that does not deduce T (std::type_identity_t of C++20).
template <class T>
struct identity {
  using type = T;
};
template <class T>
using identity_t = typename identity<T>::type;

/// The views of ranks other than 4, which reach the kernels through their NCHW face.
template <template <class> class V>
inline constexpr bool is_other_rank = false;
template <>
inline constexpr bool is_other_rank<NCLView> = true;
template <>
inline constexpr bool is_other_rank<NCDHWView> = true;
template <template <class> class V>
using if_other_rank = std::enable_if_t<is_other_rank<V>, int>;

/// The extents of a view's NCHW face: (N, C, 1, L) for NCL, (N, C, D*H, W) for NCDHW. The face's
/// shape depends on the view's shape only, so x, dy and dx always have faces of one shape.
template <class T>
std::array<index_t, 4> face_extents(const NCLView<T>& v) {
  return {v.n(), v.c(), 1, v.l()};
}
template <class T>
std::array<index_t, 4> face_extents(const NCDHWView<T>& v) {
  return {v.n(), v.c(), v.d() * v.h(), v.w()};
}

/// A view's NCHW face (T may be const). An NCLView always has one over its own memory, an
/// NCDHWView when D and H merge into one axis (stride_d = H * stride_h, as in NCDHW and NDHWC
/// memory, or D or H is 1). Otherwise (a crop in H and W of a larger volume, say) the face is a
/// contiguous copy: gathered from the view for an input, written back by write_back() for an
/// output. The copy has the contiguous layout, so such a view gives the bits of a contiguous
/// tensor of its shape.
template <class T>
class NchwFace {
 public:
  using value_type = std::remove_const_t<T>;

  /// An NCHW view is its own face.
  explicit NchwFace(const NCHWView<T>& v) : view_(v) {}

  explicit NchwFace(const NCLView<T>& v) {
    // H has extent 1, so its stride is never used; L * stride_l keeps the layout tests of a
    // contiguous or channels-last view true (0 if it would not fit).
    const index_t sl = v.stride(2), l = v.l();
    const index_t sh = sl != 0 && l > std::numeric_limits<index_t>::max() / sl ? 0 : l * sl;
    view_ = NCHWView<T>(v.data(), face_extents(v), {v.stride(0), v.stride(1), sh, sl});
  }

  explicit NchwFace(const NCDHWView<T>& v) {
    const auto e = face_extents(v);
    // stride_d == H * stride_h, tested without forming the product: an empty view's strides
    // are not bounded by its (zero) size, so H * stride_h could overflow.
    const index_t sh = v.stride(3);
    const bool merge =
        v.d() <= 1 || v.h() <= 1 ||
        (sh == 0 ? v.stride(2) == 0 : v.stride(2) % sh == 0 && v.stride(2) / sh == v.h());
    if (merge) {
      const index_t sdh = v.h() > 1 ? v.stride(3) : v.stride(2);
      view_ = NCHWView<T>(v.data(), e, {v.stride(0), v.stride(1), sdh, v.stride(4)});
      return;
    }
    copy_.resize(static_cast<std::size_t>(v.size()));
    source_ = v;
    if constexpr (std::is_const_v<T>) for_each(v, [](value_type& to, T& from) { to = from; });
    view_ = NCHWView<T>(copy_.data(), e[0], e[1], e[2], e[3]);
  }

  /// The face, to pass to the 2-d functions.
  const NCHWView<T>& operator*() const { return view_; }

  /// An output's copy, back into the view; nothing when the face is the view's own memory.
  void write_back() {
    static_assert(!std::is_const_v<T>, "write_back is for outputs");
    if (!copy_.empty()) for_each(source_, [](value_type& from, T& to) { to = from; });
  }

 private:
  // f(copy element, view element) over the elements of v, the copy in contiguous order.
  template <class F>
  void for_each(const NCDHWView<T>& v, F f) {
    value_type* at = copy_.data();
    for (index_t n = 0; n < v.n(); ++n)
      for (index_t c = 0; c < v.c(); ++c)
        for (index_t d = 0; d < v.d(); ++d)
          for (index_t h = 0; h < v.h(); ++h)
            for (index_t w = 0; w < v.w(); ++w) f(*at++, v(n, c, d, h, w));
  }

  std::vector<value_type> copy_;
  NCDHWView<T> source_;
  NCHWView<T> view_;
};

}  // namespace bnorm::detail
