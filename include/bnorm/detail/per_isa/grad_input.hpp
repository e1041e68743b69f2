/// @file detail/per_isa/grad_input.hpp
/// @brief The backward pass's maps: the input gradient dx = k * (g - shift) - kc * (x - mean) (or
/// g * k in eval), g = dy or dy gated by the forward's ReLU (grad_sums.hpp), and the ReLU's gate
/// over y.

#if defined(BNORM_HAVE_PACKS)
/// The constants of grad_input's pack paths on channels [c0, c1): hi, k, -kc and e, from
///   dx = (dy - shift) * k - ((x - hi) - lo) * kc = dy * k + (x - hi) * (-kc) + e,
/// e = lo * kc - shift * k: the small terms folded into one offset, in double.
template <class T>
ChannelConstants<T, 4> grad_input_constants(index_t c0, index_t c1, const double* mean,
                                            const double* k, const double* shift,
                                            const double* kc) {
  ChannelConstants<T, 4> t;
  for (auto& v : t) v.resize(static_cast<std::size_t>(c1 - c0));
  for (index_t c = c0; c < c1; ++c) {
    const auto i = static_cast<std::size_t>(c - c0);
    t[0][i] = static_cast<T>(mean[c]);
    const double lo = mean[c] - static_cast<double>(t[0][i]);
    t[1][i] = static_cast<T>(k[c]);
    t[2][i] = static_cast<T>(-kc[c]);
    t[3][i] = static_cast<T>(lo * kc[c] - shift[c] * k[c]);
  }
  return t;
}

/// grad_input's formula on packs and scalars, with the constants of grad_input_constants (and,
/// gated, the gate's a and b: its hi is grad_input's).
struct GradInputFormula {
  // dx = dy * k + ((x - hi) * (-kc) + e)
  template <class V, class S>
  V operator()(const V& x, const V& dy, const S& hi, const S& k, const S& nkc, const S& e) const {
    return dy * k + ((x - hi) * nkc + e);
  }
  // dx = g * k + ((x - hi) * (-kc) + e),  g = (x - hi) * a + b <= 0 ? 0 : dy
  template <class V, class S>
  V operator()(const V& x, const V& dy, const S& hi, const S& k, const S& nkc, const S& e,
               const S& a, const S& b) const {
    return gated(x, dy, hi, a, b) * k + ((x - hi) * nkc + e);
  }
};

/// grad_input_constants, followed by the gate's a and b when it is on.
template <class T, class F>
void with_grad_input_constants(index_t c0, index_t c1, const double* mean, const double* k,
                               const double* shift, const double* kc, const Gate& gate,
                               const F& f) {
  const ChannelConstants<T, 4> t = grad_input_constants<T>(c0, c1, mean, k, shift, kc);
  if (!gate.on()) {
    f(t);
    return;
  }
  const ChannelConstants<T, 3> g = gate_constants<T>(c0, c1, mean, gate);
  f(ChannelConstants<T, 6>{t[0], t[1], t[2], t[3], g[1], g[2]});
}
#endif

/// dx = (g - shift) * k - ((x - hi) - lo) * kc on channels [c0, c1), images [n0, n1), g = dy
/// or gated.
template <class T>
void grad_input(const NCHWView<const T>& x, const NCHWView<const T>& dy, const NCHWView<T>& dx,
                index_t c0, index_t c1, index_t n0, index_t n1, const double* mean, const double* k,
                const double* shift, const double* kc, bool stream, const Gate& gate = {}) {
  using C = compute_t<T>;
#if defined(BNORM_HAVE_PACKS)
  bool done = false;
  with_grad_input_constants<C>(c0, c1, mean, k, shift, kc, gate, [&](const auto& t) {
    done = map_channels(c0, c1, n0, n1, stream, dx, t, GradInputFormula{}, x, dy);
  });
  if (done) return;
#endif
  const ChannelConstants<C, 3> g = gate_constants<C>(c0, c1, mean, gate);
  const RowLayout layout(x, dy, dx);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, auto dyr, auto dxr, index_t len) {
          const Centre<C> centre(mean[c]);
          const C tk = static_cast<C>(k[c]), ts = static_cast<C>(shift[c]),
                  tkc = static_cast<C>(kc[c]);
          write_row(dxr, len, stream, [&](index_t i0, index_t n, T* out) {
            // dx = (g - shift) * k - ((x - hi) - lo) * kc
            const auto j = static_cast<std::size_t>(c - c0);
            for (index_t i = 0; i < n; ++i) {
              const C xv = to_compute(xr[i0 + i]);
              out[i] =
                  from_compute<T>((gradient_of(gate, g, j, xv, to_compute(dyr[i0 + i])) - ts) * tk -
                                  centre(xv) * tkc);
            }
          });
        },
        x, dy, dx);
  });
  if (stream) streaming_fence();
}

/// Where sweeps_fuse(dx, stream, x, dy): chunk_grad_sums of channels
/// [r0, r0 + width) over images [n0, n1) into sum_dy[j] and sum_dy_xmu[j], and in the same sweep
/// grad_input of channels [m0, m0 + width) over the same images (reduce_and_map_planes), with
/// the same results as the two calls.
template <class T>
void grad_sums_and_input(const NCHWView<const T>& x, const NCHWView<const T>& dy,
                         const NCHWView<T>& dx, index_t r0, index_t m0, index_t width, index_t n0,
                         index_t n1, double* sum_dy, double* sum_dy_xmu, const double* mean,
                         const double* k, const double* shift, const double* kc, bool stream,
                         const Gate& gate = {}) {
#if defined(BNORM_HAVE_PACKS)
  with_grad_input_constants<compute_t<T>>(
      m0, m0 + width, mean, k, shift, kc, gate, [&](const auto& t) {
        // the gated accumulator with the gate's constants (6), the plain one without (4): two
        // instances, not one for each pairing of the two choices
        using Acc = std::conditional_t<std::tuple_size_v<std::decay_t<decltype(t)>> == 6,
                                       GatedGradSums<T>, GradSums>;
        std::vector<Acc> acc = plane_grad_sums_start<Acc, T>(r0, r0 + width, mean, gate);
        reduce_and_map_planes(x.c(), r0, m0, width, n0, n1, acc.data(), stream, Planes<T>(dx),
                              plane_value(m0, t, GradInputFormula{}), Planes<const T>(x),
                              Planes<const T>(dy));
        grad_sums_finish(acc, sum_dy, sum_dy_xmu);
      });
#else  // unreachable: sweeps_fuse is false without packs
  chunk_grad_sums(x, dy, r0, r0 + width, n0, n1, mean, sum_dy, sum_dy_xmu, gate);
  grad_input(x, dy, dx, m0, m0 + width, n0, n1, mean, k, shift, kc, stream, gate);
#endif
}

/// dx = g * k on channels [c0, c1), images [n0, n1) (eval backward): g = dy, or gated by the
/// forward's ReLU recomputed from x (x enters only then; mean is the gate's centre).
template <class T>
void scale_rows(const NCHWView<const T>& x, const NCHWView<const T>& dy, const NCHWView<T>& dx,
                index_t c0, index_t c1, index_t n0, index_t n1, const double* k, bool stream,
                const double* mean = nullptr, const Gate& gate = {}) {
  using C = compute_t<T>;
  ChannelConstants<C, 1> t;
  t[0].resize(static_cast<std::size_t>(c1 - c0));
  for (index_t c = c0; c < c1; ++c) t[0][static_cast<std::size_t>(c - c0)] = static_cast<C>(k[c]);
  const ChannelConstants<C, 3> g = gate_constants<C>(c0, c1, mean, gate);
#if defined(BNORM_HAVE_PACKS)
  if (gate.on()) {
    // dx = ((x - hi) * a + b <= 0 ? 0 : dy) * k
    const auto dx_of = [](const auto& xv, const auto& dyv, const auto& tk, const auto& hi,
                          const auto& a, const auto& b) { return gated(xv, dyv, hi, a, b) * tk; };
    if (map_channels(c0, c1, n0, n1, stream, dx, ChannelConstants<C, 4>{t[0], g[0], g[1], g[2]},
                     dx_of, x, dy))
      return;
  } else {
    // dx = dy * k
    const auto dx_of = [](const auto& dyv, const auto& tk) { return dyv * tk; };
    if (map_channels(c0, c1, n0, n1, stream, dx, t, dx_of, dy)) return;
  }
#endif
  const RowLayout layout(x, dy, dx);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, auto dyr, auto dxr, index_t len) {
          const auto j = static_cast<std::size_t>(c - c0);
          write_row(dxr, len, stream, [&](index_t i0, index_t n, T* out) {
            // dx = g * k
            for (index_t i = 0; i < n; ++i)
              out[i] = from_compute<T>(
                  gradient_of(gate, g, j, to_compute(xr[i0 + i]), to_compute(dyr[i0 + i])) *
                  t[0][j]);
          });
        },
        x, dy, dx);
  });
  if (stream) streaming_fence();
}

/// g = y <= 0 ? 0 : dy on channels [c0, c1), images [n0, n1): the backward of relu over its
/// output y.
template <class T>
void relu_gate_rows(const NCHWView<const T>& y, const NCHWView<const T>& dy, const NCHWView<T>& g,
                    index_t c0, index_t c1, index_t n0, index_t n1, bool stream) {
#if defined(BNORM_HAVE_PACKS)
  {
    const ChannelConstants<compute_t<T>, 0> none;  // (loops over the constants test j != K: K is 0)
    // g = y <= 0 ? 0 : dy
    const auto gate = [](const auto& yv, const auto& dyv) { return passed(yv, dyv); };
    if (map_channels(c0, c1, n0, n1, stream, g, none, gate, y, dy)) return;
  }
#endif
  const RowLayout layout(y, dy, g);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t, auto yr, auto dyr, auto gr, index_t len) {
          write_row(gr, len, stream, [&](index_t i0, index_t n, T* out) {
            // g = y <= 0 ? 0 : dy
            for (index_t i = 0; i < n; ++i)
              out[i] = from_compute<T>(passed(to_compute(yr[i0 + i]), to_compute(dyr[i0 + i])));
          });
        },
        y, dy, g);
  });
  if (stream) streaming_fence();
}
