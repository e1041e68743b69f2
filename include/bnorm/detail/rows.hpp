/// @file detail/rows.hpp
/// @brief Walks one channel of several same-shape views as a sequence of strided rows.
#pragma once

#include <tuple>
#include <type_traits>

#include "../nchw_view.hpp"

namespace bnorm::detail {

/// A row of `len` elements at p[0], p[s], p[2s], ...; with Unit the stride is the constant 1,
/// so loops over it compile to contiguous (vectorisable) accesses.
template <class T, bool Unit>
struct Row {
  T* p;
  index_t s;
  T& operator[](index_t i) const { return Unit ? p[i] : p[i * s]; }
};

/// Calls f(row_of_view0, row_of_view1, ..., len) for every row of channel c, in a fixed order
/// (n, then h). A row is a W-line, or a whole H*W plane when every view stores its planes
/// contiguously. When every row has stride 1, the rows are Row<T, true>. All views must have
/// the same extents.
template <class F, class V0, class... V>
void for_each_row(index_t c, const F& f, const V0& v0, const V&... v) {
  const index_t n_images = v0.n(), h = v0.h(), w = v0.w();
  const bool whole_plane = (h == 1 || v0.stride(2) == w * v0.stride(3)) &&
                           ((h == 1 || v.stride(2) == w * v.stride(3)) && ...);
  const index_t len = whole_plane ? h * w : w, rows = whole_plane ? 1 : h;
  const bool unit = len <= 1 || (v0.stride(3) == 1 && ((v.stride(3) == 1) && ...));
  auto walk = [&](auto unit_tag) {
    constexpr bool U = decltype(unit_tag)::value;
    for (index_t n = 0; n < n_images; ++n)
      for (index_t r = 0; r < rows; ++r)
        f(Row<typename V0::element_type, U>{&v0(n, c, r, 0), v0.stride(3)},
          Row<typename V::element_type, U>{&v(n, c, r, 0), v.stride(3)}..., len);
  };
  if (len == 0) return;
  if (unit)
    walk(std::true_type{});
  else
    walk(std::false_type{});
}

}  // namespace bnorm::detail
