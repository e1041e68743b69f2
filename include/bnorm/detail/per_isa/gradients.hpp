/// @file detail/per_isa/gradients.hpp
/// @brief The backward pass's kernels: the per-channel sums of dy and dy * (x - mean), and the
/// input gradient dx = k * (dy - shift) - kc * (x - mean) (or dy * k in eval).

#if defined(BNORM_HAVE_PACKS)
/// sum dy and sum dy * (x - mean) of one channel in 16 double lanes and, for the last values of
/// NCHW planes (reduce_planes), in the scalars t_dy and t_dy_xmu.
struct GradSums {
  Wide dy{}, dy_xmu{}, mean{};  // mean: one per lane (NHWC) or the same in all (NCHW)
  double t_dy = 0, t_dy_xmu = 0;

  // t_dy += g; t_dy_xmu += g * (x - mean)   (NCHW: lane 0's mean is every lane's)
  template <class T>
  void add_scalar(const T* x, const T* g) {
    const double gd = static_cast<double>(*g);
    t_dy += gd;
    t_dy_xmu += gd * (static_cast<double>(*x) - mean.part[0][0]);
  }

  // dy += g; dy_xmu += g * (x - mean)
  template <class T>
  void add(const T* x, const T* g) {
    accumulate(load_wide(x), load_wide(g));
  }
  // the same on the new lanes of a plane's last pack
  template <class T>
  void add(const Wide& keep, const T* x, const T* g) {
    accumulate(load_wide(x), load_wide(g) * keep);
  }
  void accumulate(const Wide& xw, const Wide& gw) {
    dy = dy + gw;
    dy_xmu = dy_xmu + gw * (xw - mean);
  }
};

/// Backward sums of channels [c0, c1) for a reduction over NCHW planes, each with its mean.
inline std::vector<GradSums> grad_sums_start(index_t c0, index_t c1, const double* mean) {
  std::vector<GradSums> acc(static_cast<std::size_t>(c1 - c0));
  for (index_t c = c0; c < c1; ++c) acc[c - c0].mean = broadcast(mean[c]);
  return acc;
}

/// sum_dy[j] and sum_dy_xmu[j] from the accumulators of grad_sums_start after the reduction.
inline void grad_sums_finish(const std::vector<GradSums>& acc, double* sum_dy, double* sum_dy_xmu) {
  for (std::size_t j = 0; j < acc.size(); ++j) {
    sum_dy[j] = lane_total(acc[j].dy) + acc[j].t_dy;
    sum_dy_xmu[j] = lane_total(acc[j].dy_xmu) + acc[j].t_dy_xmu;
  }
}

/// Channels-last: sum dy and sum dy * (x - mean) of every channel over images [n0, n1) into
/// sum_dy[c] and sum_dy_xmu[c], vectorised along C (or, for interleaved views, along the
/// pseudo-channels of interleaved.hpp).
template <class T>
void pixel_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t n0,
                     index_t n1, const double* mean, double* sum_dy, double* sum_dy_xmu) {
  if (interleaved(x, dy)) {  // over pseudo-channels (interleaved.hpp)
    const Interleave il(x);
    std::vector<GradSums> acc =
        group_accumulators<GradSums>(il, mean, [](GradSums& a, const Wide& m) { a.mean = m; });
    reduce_pixels(0, il.period, n0, n1, acc.data(), il.pseudo(x), il.pseudo(dy));
    std::fill(sum_dy, sum_dy + x.c(), 0.0);
    std::fill(sum_dy_xmu, sum_dy_xmu + x.c(), 0.0);
    fold_lanes(
        il, acc, [](const GradSums& a) { return a.dy; }, sum_dy);
    fold_lanes(
        il, acc, [](const GradSums& a) { return a.dy_xmu; }, sum_dy_xmu);
    for_each_tail_value(
        il, n0, n1,
        [&](index_t c, const T* xv, const T* g) {
          // sum_dy += g; sum_dy_xmu += g * (x - mean)
          const double gd = static_cast<double>(*g);
          sum_dy[c] += gd;
          sum_dy_xmu[c] += gd * (static_cast<double>(*xv) - mean[c]);
        },
        x, dy);
    return;
  }
  const index_t channels = x.c(), groups = pixel_groups(0, channels);
  std::vector<GradSums> acc(static_cast<std::size_t>(groups));
  for (index_t g = 0; g < groups; ++g) acc[g].mean = load_wide(mean + group_start(0, channels, g));
  reduce_pixels(0, channels, n0, n1, acc.data(), x, dy);
  store_group_lanes(0, channels, sum_dy, [&](index_t g) { return acc[g].dy; });
  store_group_lanes(0, channels, sum_dy_xmu, [&](index_t g) { return acc[g].dy_xmu; });
}
#endif

/// Per-chunk backward sums of channels [c0, c1), images [n0, n1), in double:
/// sum_dy[c - c0] = sum dy and sum_dy_xmu[c - c0] = sum dy * (x - mean[c]).
template <class T>
void chunk_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t c0,
                     index_t c1, index_t n0, index_t n1, const double* mean, double* sum_dy,
                     double* sum_dy_xmu) {
#if defined(BNORM_HAVE_PACKS)
  if (by_planes(x, dy)) {
    std::vector<GradSums> acc = grad_sums_start(c0, c1, mean);
    reduce_planes(x.c(), c0, c1, n0, n1, acc.data(), Planes<const T>(x), Planes<const T>(dy));
    grad_sums_finish(acc, sum_dy, sum_dy_xmu);
    return;
  }
#endif
  const RowLayout layout(x, dy);
  const auto width = static_cast<std::size_t>(c1 - c0);
  std::vector<LaneSum> s_dy(width), s_dy_xmu(width);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, auto dyr, index_t len) {
          const double m = mean[c];
          // sum_dy += dy
          s_dy[c - c0].add(len, [&](index_t i) { return static_cast<double>(dyr[i]); });
          // sum_dy_xmu += dy * (x - mean)
          s_dy_xmu[c - c0].add(len, [&](index_t i) {
            return static_cast<double>(dyr[i]) * (static_cast<double>(xr[i]) - m);
          });
        },
        x, dy);
  });
  for (index_t c = c0; c < c1; ++c) {
    sum_dy[c - c0] = s_dy[c - c0].total();
    sum_dy_xmu[c - c0] = s_dy_xmu[c - c0].total();
  }
}

/// Backward sums of every channel, chunk results added left to right.
template <class T>
void channel_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, const Plan& p,
                       const double* mean, double* sum_dy, double* sum_dy_xmu) {
  std::fill(sum_dy, sum_dy + p.channels, 0.0);
  std::fill(sum_dy_xmu, sum_dy_xmu + p.channels, 0.0);
  if (p.chunks == 0) return;
#if defined(BNORM_HAVE_PACKS)
  if (by_pixels(x, dy)) {  // channels-last: added in image order
    const auto channels = static_cast<std::size_t>(p.channels);
    std::vector<double> parts(2 * channels * static_cast<std::size_t>(p.items()));
    parallel_for(
        p.items(),
        [&](index_t k) {
          double* part = &parts[2 * channels * static_cast<std::size_t>(k)];
          pixel_grad_sums(x, dy, p.item_begin(k), p.item_end(k), mean, part, part + channels);
        },
        p.threads);
    for (std::size_t k = 0; k < parts.size(); k += 2 * channels)
      for (std::size_t c = 0; c < channels; ++c) {
        sum_dy[c] += parts[k + c];
        sum_dy_xmu[c] += parts[k + channels + c];
      }
    return;
  }
#endif
  std::vector<double> parts(static_cast<std::size_t>(2 * p.channels * p.chunks));
  auto part = [&](index_t k) { return parts.data() + 2 * k * p.channels; };
  parallel_for(
      p.blocks * p.chunks,
      [&](index_t item) {
        const index_t b = item / p.chunks, k = item % p.chunks;
        const index_t c0 = p.block_begin(b);
        chunk_grad_sums(x, dy, c0, p.block_end(b), p.chunk_begin(k), p.chunk_end(k), mean,
                        part(k) + c0, part(k) + p.channels + c0);
      },
      p.threads);
  for (index_t k = 0; k < p.chunks; ++k)
    for (index_t c = 0; c < p.channels; ++c) {
      sum_dy[c] += part(k)[c];
      sum_dy_xmu[c] += part(k)[p.channels + c];
    }
}

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

/// grad_input's formula on packs and scalars, with the constants of grad_input_constants.
struct GradInputFormula {
  // dx = dy * k + ((x - hi) * (-kc) + e)
  template <class V, class S>
  V operator()(const V& x, const V& dy, const S& hi, const S& k, const S& nkc, const S& e) const {
    return dy * k + ((x - hi) * nkc + e);
  }
};
#endif

/// dx = (dy - shift) * k - ((x - hi) - lo) * kc on channels [c0, c1), images [n0, n1).
template <class T>
void grad_input(const NCHWView<const T>& x, const NCHWView<const T>& dy, const NCHWView<T>& dx,
                index_t c0, index_t c1, index_t n0, index_t n1, const double* mean, const double* k,
                const double* shift, const double* kc, bool stream) {
#if defined(BNORM_HAVE_PACKS)
  if (map_channels(c0, c1, n0, n1, stream, dx, grad_input_constants<T>(c0, c1, mean, k, shift, kc),
                   GradInputFormula{}, x, dy))
    return;
#endif
  const RowLayout layout(x, dy, dx);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, auto dyr, auto dxr, index_t len) {
          const Centre<T> centre(mean[c]);
          const T tk = static_cast<T>(k[c]), ts = static_cast<T>(shift[c]),
                  tkc = static_cast<T>(kc[c]);
          write_row(dxr, len, stream, [&](index_t i0, index_t n, T* out) {
            // dx = (dy - shift) * k - ((x - hi) - lo) * kc
            for (index_t i = 0; i < n; ++i)
              out[i] = (dyr[i0 + i] - ts) * tk - centre(xr[i0 + i]) * tkc;
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
                         const double* k, const double* shift, const double* kc, bool stream) {
#if defined(BNORM_HAVE_PACKS)
  std::vector<GradSums> acc = grad_sums_start(r0, r0 + width, mean);
  const ChannelConstants<T, 4> t = grad_input_constants<T>(m0, m0 + width, mean, k, shift, kc);
  reduce_and_map_planes(x.c(), r0, m0, width, n0, n1, acc.data(), stream, Planes<T>(dx),
                        plane_value(m0, t, GradInputFormula{}), Planes<const T>(x),
                        Planes<const T>(dy));
  grad_sums_finish(acc, sum_dy, sum_dy_xmu);
#else  // unreachable: sweeps_fuse is false without packs
  chunk_grad_sums(x, dy, r0, r0 + width, n0, n1, mean, sum_dy, sum_dy_xmu);
  grad_input(x, dy, dx, m0, m0 + width, n0, n1, mean, k, shift, kc, stream);
#endif
}

/// dx = dy * k on channels [c0, c1), images [n0, n1) (eval backward: x does not enter).
template <class T>
void scale_rows(const NCHWView<const T>& dy, const NCHWView<T>& dx, index_t c0, index_t c1,
                index_t n0, index_t n1, const double* k, bool stream) {
#if defined(BNORM_HAVE_PACKS)
  {
    ChannelConstants<T, 1> t;
    t[0].resize(static_cast<std::size_t>(c1 - c0));
    for (index_t c = c0; c < c1; ++c) t[0][static_cast<std::size_t>(c - c0)] = static_cast<T>(k[c]);
    // dx = dy * k
    const auto dx_of = [](const auto& dyv, const auto& tk) { return dyv * tk; };
    if (map_channels(c0, c1, n0, n1, stream, dx, t, dx_of, dy)) return;
  }
#endif
  const RowLayout layout(dy, dx);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto dyr, auto dxr, index_t len) {
          const T tk = static_cast<T>(k[c]);
          write_row(dxr, len, stream, [&](index_t i0, index_t n, T* out) {
            // dx = dy * k
            for (index_t i = 0; i < n; ++i) out[i] = dyr[i0 + i] * tk;
          });
        },
        dy, dx);
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
    const ChannelConstants<T, 0> none;  // (loops over the constants test j != K: K is 0)
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
            for (index_t i = 0; i < n; ++i) out[i] = passed(yr[i0 + i], dyr[i0 + i]);
          });
        },
        y, dy, g);
  });
  if (stream) streaming_fence();
}
