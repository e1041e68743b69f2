/// @file detail/per_isa/normalise.hpp
/// @brief The elementwise map of a forward pass, y = ((x - hi) - lo) * scale + shift, over every
/// layout, and its fusion with the next block's statistics.

/// Per-channel constants of an elementwise pass: k[j][c - c0] is constant j of channel c.
template <class T, std::size_t K>
using ChannelConstants = std::array<SmallBuffer<T>, K>;

/// The first elements of the constants, for walks to copy: a buffer's data() read in a loop is
/// read again after every store (a vector store may alias anything), with a select between its
/// inline and heap storage each time. (An (N, C) tensor of 4096 channels, channels-last: the
/// normalisation ran at 2.2x the floor's loop.)
template <class T, std::size_t K>
std::array<const T*, K> bases(const ChannelConstants<T, K>& k) {
  std::array<const T*, K> p;
  for (std::size_t j = 0; j != K; ++j) p[j] = k[j].data();
  return p;
}

#if defined(BNORM_HAVE_PACKS)
/// f with the constants kc appended to its arguments: with_constants(f, kc)(v...) = f(v..., kc...).
/// (No std::apply: a std function compiled for the unit's flags between two of this set's
/// would pass the packs by value under another calling convention, as AVX-512's zmm registers
/// are only used in functions compiled for AVX-512.)
template <class F, class KC, std::size_t... J, class... V>
auto apply_constants(const F& f, const KC& kc, std::index_sequence<J...>, const V&... v) {
  return f(v..., kc[J]...);
}
template <class F, class KC>
auto with_constants(const F& f, const KC& kc) {
  return [kc, &f](const auto&... v) {
    return apply_constants(f, kc, std::make_index_sequence<std::tuple_size_v<KC>>{}, v...);
  };
}

/// value(c) of the plane walks: f with channel c's constants k[j][c - c0] as scalars.
template <class T, std::size_t K, class F>
auto plane_value(index_t c0, const ChannelConstants<T, K>& k, const F& f) {
  return [c0, kp = bases(k), f](index_t c) {  // f by value: callers may pass a temporary formula
    std::array<T, K> kc;
    for (std::size_t j = 0; j != K; ++j) kc[j] = kp[j][c - c0];
    return with_constants(f, kc);
  };
}

/// value(cg) of the pixel walks: f with the constants of the 16 channels from cg as packs,
/// lane i from k[j][cg + i - c0]. The channels-last and the interleaved walks both take it, so
/// they share one compiled map_pixels per formula.
template <class T, std::size_t K, class F>
auto pack_value(index_t c0, const ChannelConstants<T, K>& k, const F& f) {
  return [c0, kp = bases(k), f](index_t cg) {
    std::array<Pack<T>, K> kc;
    for (std::size_t j = 0; j != K; ++j) kc[j] = load_pack(kp[j] + (cg - c0));
    return with_constants(f, kc);
  };
}

/// out = f(in..., k...) over images [n0, n1) of interleaved views, with the constants k[j][c]
/// of each channel: the whole periods as packs of pseudo-channels (map_pixels), then the last
/// values one by one. With `stream` and line-aligned periods, the packs go out non-temporally.
/// An output may be one of the inputs.
template <class T, class C, std::size_t K, class F, class... V>
void map_interleaved(index_t n0, index_t n1, bool stream, const NCHWView<T>& out,
                     const ChannelConstants<C, K>& k, const F& f, const V&... in) {
  const Interleave il(out);
  ChannelConstants<C, K> lanes;
  for (std::size_t j = 0; j != K; ++j) lanes[j] = il.spread<C>(k[j].data());
  map_pixels(0, il.period, n0, n1, stream, il.pseudo(out), pack_value(0, lanes, f),
             il.pseudo(in)...);
  // the last values of each image: o = f(src..., k of channel c)
  for_each_tail_value(
      il, n0, n1,
      [&](index_t c, T* o, const auto*... src) {
        std::array<C, K> kc;
        for (std::size_t j = 0; j != K; ++j) kc[j] = k[j][static_cast<std::size_t>(c)];
        *o = from_compute<T>(with_constants(f, kc)(to_compute(*src)...));
      },
      out, in...);
}

/// out = f(in..., k...) on channels [c0, c1), images [n0, n1), on a pack path: over NCHW planes
/// with the constants k of each channel as scalars, or over channels-last pixels with them as
/// packs of 16 channels, or over all channels of interleaved views (map_interleaved). f is one
/// formula for scalars and packs. False when no path applies (the caller runs its row loops).
/// The constants are of T's compute type C.
template <class T, class C, std::size_t K, class F, class... V>
bool map_channels(index_t c0, index_t c1, index_t n0, index_t n1, bool stream,
                  const NCHWView<T>& out, const ChannelConstants<C, K>& k, const F& f,
                  const V&... in) {
  // Planes shorter than a pack go along C when the channels are contiguous (an (N, C) matrix
  // as (N, C, 1, 1), say): one plane of one value per (n, c) would be a call per value.
  const bool short_planes = out.h() * out.w() < kPackLanes;
  if (planes_contiguous(out, in...) &&
      !(short_planes && c1 - c0 >= kPackLanes && pixels_contiguous(out, in...))) {
    const auto value = plane_value(c0, k, f);
#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (plane_groups_apply(c0, c1, stream, Planes<T>(out), Planes<const T>(in)...)) {
        // A group's constants, lane j for channel cg + j; each pack permutes them to its lanes.
        const auto group = [c0, kp = bases(k), f](index_t cg) {
          std::array<Pack<float>, K> kg;
          for (std::size_t j = 0; j != K; ++j) kg[j] = load_pack(kp[j] + (cg - c0));
          return [kg, f](const PackPlanes& planes, const auto&... v) {
            const __m512i lanes = _mm512_load_si512(planes.lane);
            std::array<Pack<float>, K> kc;
            for (std::size_t j = 0; j != K; ++j) {
              __m512 group_k;
              std::memcpy(&group_k, &kg[j].part, sizeof group_k);
              // the zero-masked form: the plain one trips a false GCC 12 -Wmaybe-uninitialized
              const __m512 lane_k = _mm512_maskz_permutexvar_ps(0xFFFF, lanes, group_k);
              std::memcpy(&kc[j].part, &lane_k, sizeof lane_k);
            }
            return with_constants(f, kc)(v...);
          };
        };
        map_plane_groups(out.c(), c0, c1, n0, n1, stream, Planes<T>(out), group, value,
                         Planes<const T>(in)...);
        return true;
      }
    }
#endif
    if (plane_lines_apply(stream, Planes<T>(out), Planes<const T>(in)...)) {
      // a pack across two planes: lanes [0, b) with channel c's constants, the rest with c + 1's
      const auto split = [c0, kp = bases(k), f](index_t c, index_t b) {
        std::array<Pack<C>, K> kc;
        for (std::size_t j = 0; j != K; ++j)
          kc[j] = split_pack(kp[j][c - c0], kp[j][c + 1 - c0], b);
        return with_constants(f, kc);
      };
      map_plane_lines(out.c(), c0, c1, n0, n1, Planes<T>(out), value, split,
                      Planes<const T>(in)...);
      return true;
    }
    map_planes(out.c(), c0, c1, n0, n1, stream, Planes<T>(out), value, Planes<const T>(in)...);
    return true;
  }
  if (c0 == 0 && c1 == out.c() && interleaved(out, in...)) {
    map_interleaved(n0, n1, stream, out, k, f, in...);
    return true;
  }
  if (c1 - c0 >= kPackLanes && pixels_contiguous(out, in...)) {
    map_pixels(c0, c1, n0, n1, stream, out, pack_value(c0, k, f), in...);
    return true;
  }
  return false;
}
#endif

/// The constants of normalise on channels [c0, c1): hi, a and b - lo * a, from
///   y = ((x - hi) - lo) * a + b = (x - hi) * a + (b - lo * a),
/// with a = scale, b = shift: lo * a is small, so folding it into the offset (in double, rounded
/// once) keeps the accuracy of the centred form.
template <class T>
ChannelConstants<T, 3> normalise_constants(index_t c0, index_t c1, const double* mean,
                                           const double* scale, const double* shift) {
  ChannelConstants<T, 3> k;
  for (auto& v : k) v.resize(static_cast<std::size_t>(c1 - c0));
  for (index_t c = c0; c < c1; ++c) {
    const auto i = static_cast<std::size_t>(c - c0);
    k[0][i] = static_cast<T>(mean[c]);
    const double lo = mean[c] - static_cast<double>(k[0][i]);
    k[1][i] = static_cast<T>(scale[c]);
    k[2][i] = static_cast<T>(shift[c] - lo * scale[c]);
  }
  return k;
}

/// normalise's formula on packs and scalars, with the constants of normalise_constants and
/// the activation's threshold t (activation_threshold), the same for every channel: so one
/// instance serves ReLU and none, and t stays in a register, not a fourth per-channel load.
template <class T>
struct NormaliseFormula {
  T t;
  // y = act((x - hi) * a + b),  act(z) = z < t ? 0 : z
  template <class V, class S>
  V operator()(const V& x, const S& hi, const S& a, const S& b) const {
    return activated((x - hi) * a + b, t);
  }
  // y = act(((x - hi) * a + b) + r)
  template <class V, class S>
  V operator()(const V& x, const V& r, const S& hi, const S& a, const S& b) const {
    return activated(((x - hi) * a + b) + r, t);
  }
};
template <class T>
NormaliseFormula<T> normalise_formula(Activation activation) {
  return {activation_threshold<T>(activation)};
}

/// y = act(((x - hi) - lo) * scale + shift (+ r)) on channels [c0, c1), images [n0, n1), with
/// the activation and residual r of `e`; every path computes the value with the same formula
/// and constants, so a backward can recompute where the activation passed.
template <class T>
void normalise(const NCHWView<const T>& x, const NCHWView<T>& y, index_t c0, index_t c1, index_t n0,
               index_t n1, const double* mean, const double* scale, const double* shift,
               bool stream, const Epilogue<T>& e = {}) {
  using C = compute_t<T>;
  const ChannelConstants<C, 3> k = normalise_constants<C>(c0, c1, mean, scale, shift);
  const NormaliseFormula<C> f = normalise_formula<C>(e.activation);
  with_residual(e, [&](const auto&... r) {
#if defined(BNORM_HAVE_PACKS)
    if (map_channels(c0, c1, n0, n1, stream, y, k, f, x, r...)) return;
#endif
    // y[i] = value(i) along a row of y
    const auto put_row = [&](auto yr, index_t len, const auto& value) {
      write_row(yr, len, stream, [&](index_t i0, index_t n, T* out) {
        for (index_t i = 0; i < n; ++i) out[i] = from_compute<T>(value(i0 + i));
      });
    };
    const RowLayout layout(x, r..., y);
    with_unit_rows(layout, [&](auto unit) {
      constexpr bool U = decltype(unit)::value;
      if constexpr (sizeof...(r) == 0) {
        for_each_block_row<U>(
            layout, c0, c1, n0, n1,
            [&](index_t c, auto xr, auto yr, index_t len) {
              const auto j = static_cast<std::size_t>(c - c0);
              // y = act((x - hi) * a + b)
              put_row(yr, len,
                      [&](index_t i) { return f(to_compute(xr[i]), k[0][j], k[1][j], k[2][j]); });
            },
            x, y);
      } else {
        for_each_block_row<U>(
            layout, c0, c1, n0, n1,
            [&](index_t c, auto xr, auto rr, auto yr, index_t len) {
              const auto j = static_cast<std::size_t>(c - c0);
              // y = act(((x - hi) * a + b) + r)
              put_row(yr, len, [&](index_t i) {
                return f(to_compute(xr[i]), to_compute(rr[i]), k[0][j], k[1][j], k[2][j]);
              });
            },
            x, r..., y);
      }
    });
    if (stream) streaming_fence();
  });
}

/// True when a reduction over x (and the views `in`) and a map into `out` can share one sweep
/// (moments_and_normalise, grad_sums_and_input): NCHW planes of whole packs, and, with
/// `stream`, output planes of whole cache lines.
template <class T, class... V>
bool sweeps_fuse(const NCHWView<T>& out, bool stream, const V&... in) {
#if defined(BNORM_HAVE_PACKS)
  return by_planes(in...) && planes_contiguous(out, in...) && out.h() * out.w() % kPackLanes == 0 &&
         (!stream || lines_aligned(Planes<T>(out)));
#else
  (void)out;
  (void)stream;
  ((void)in, ...);
  return false;
#endif
}

/// Where sweeps_fuse(y, stream, x): chunk_moments of channels [r0, r0 + width) over images [n0, n1)
/// into out[j], and in the same sweep normalise of channels [m0, m0 + width) over the same images
/// (reduce_and_map_planes), with the same results as the two calls; the epilogue's activation
/// (not a residual: the sweep reads x alone) applied to y.
template <class T>
void moments_and_normalise(const NCHWView<const T>& x, const NCHWView<T>& y, index_t r0, index_t m0,
                           index_t width, index_t n0, index_t n1, Moments* out, const double* mean,
                           const double* scale, const double* shift, bool stream,
                           Activation activation) {
#if defined(BNORM_HAVE_PACKS)
  const Planes<const T> planes(x);
  std::vector<ShiftedSums> acc = shifted_start(planes, r0, r0 + width, n0);
  using C = compute_t<T>;
  const ChannelConstants<C, 3> k = normalise_constants<C>(m0, m0 + width, mean, scale, shift);
  reduce_and_map_planes(x.c(), r0, m0, width, n0, n1, acc.data(), stream, Planes<T>(y),
                        plane_value(m0, k, normalise_formula<C>(activation)), planes);
  shifted_finish(x, r0, r0 + width, n0, n1, acc, out);
#else  // unreachable: sweeps_fuse is false without packs
  chunk_moments(x, r0, r0 + width, n0, n1, out);
  normalise(x, y, m0, m0 + width, n0, n1, mean, scale, shift, stream, Epilogue<T>{activation});
#endif
}
