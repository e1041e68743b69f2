/// @file detail/per_isa/rows.hpp
/// @brief Walks the (n, c) planes of several same-shape views as strided rows.

/// A row of `len` elements at p[0], p[s], p[2s], ...; with Unit the stride is the constant 1,
/// so loops over it compile to contiguous (vectorisable) accesses.
template <class T, bool Unit>
struct Row {
  T* p;
  index_t s;
  T& operator[](index_t i) const { return Unit ? p[i] : p[i * s]; }
};

/// How each (n, c) plane of a set of same-shape views splits into rows: the whole H*W plane is
/// one row when every view stores its planes contiguously (NCHW), otherwise each W-line is a
/// row. `unit` when every row has stride 1.
struct RowLayout {
  index_t len = 0, rows = 0;
  bool unit = true;

  template <class V0, class... V>
  explicit RowLayout(const V0& v0, const V&... v) {
    const index_t h = v0.h(), w = v0.w();
    const bool whole_plane = (h == 1 || v0.stride(2) == w * v0.stride(3)) &&
                             ((h == 1 || v.stride(2) == w * v.stride(3)) && ...);
    len = whole_plane ? h * w : w;
    rows = whole_plane ? (len > 0 ? 1 : 0) : h;
    unit = len <= 1 || (v0.stride(3) == 1 && ((v.stride(3) == 1) && ...));
  }
};

/// Calls f(std::true_type{}) when the layout has unit rows, else f(std::false_type{}), so a
/// kernel is compiled once for contiguous rows and once for strided ones.
template <class F>
void with_unit_rows(const RowLayout& layout, const F& f) {
  if (layout.unit)
    f(std::true_type{});
  else
    f(std::false_type{});
}

/// Calls f(row_of_view0, row_of_view1, ..., len) for each row of plane (n, c), in h order.
template <bool Unit, class F, class V0, class... V>
void for_each_row(const RowLayout& layout, index_t n, index_t c, const F& f, const V0& v0,
                  const V&... v) {
  for (index_t r = 0; r < layout.rows; ++r)
    f(Row<typename V0::element_type, Unit>{&v0(n, c, r, 0), v0.stride(3)},
      Row<typename V::element_type, Unit>{&v(n, c, r, 0), v.stride(3)}..., layout.len);
}
