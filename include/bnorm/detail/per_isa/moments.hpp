/// @file detail/per_isa/moments.hpp
/// @brief The statistics of the fused variant: per-channel count, mean and M2 in double, by
/// a guarded shifted pass over NCHW planes or two passes, merged in a fixed order.

/// x - mean in T with the mean carried in more than T's precision: mean = hi + lo with
/// hi = T(mean) and lo = T(mean - hi), and (x - hi) - lo. For x near the mean, x - hi is exact
/// (Sterbenz), so the centred value keeps its accuracy however large the mean is; the form
/// x * alpha + beta with beta = -mean * alpha would cancel catastrophically instead.
template <class T>
struct Centre {
  T hi, lo;
  explicit Centre(double mean)
      : hi(static_cast<T>(mean)), lo(static_cast<T>(mean - static_cast<double>(hi))) {}
  T operator()(T x) const { return (x - hi) - lo; }
};

/// Count, mean and M2 = sum (x - mean)^2 of some values of one channel.
struct Moments {
  double count = 0, mean = 0, m2 = 0;

  /// Chan et al.'s pairwise update: *this becomes the moments of the union with b.
  ///   delta = mean_b - mean_a,  mean = mean_a + delta * n_b / n,
  ///   M2 = M2_a + M2_b + delta^2 * n_a * n_b / n.
  void merge(const Moments& b) {
    if (b.count == 0) return;
    const double n = count + b.count, delta = b.mean - mean;
    mean += delta * (b.count / n);
    m2 += b.m2 + delta * delta * (count * b.count / n);
    count = n;
  }
};

template <class T>
void two_pass_moments(const NCHWView<const T>& x, index_t c0, index_t c1, index_t n0, index_t n1,
                      Moments* out) {
  const RowLayout layout(x);
  const double count = static_cast<double>((n1 - n0) * x.h() * x.w());
  const auto width = static_cast<std::size_t>(c1 - c0);
  std::vector<LaneSum> sum(width), sq(width);
  std::vector<double> mean(width);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, index_t len) {
          // sum += x
          sum[c - c0].add(len, [&](index_t i) { return static_cast<double>(xr[i]); });
        },
        x);
    for (index_t c = c0; c < c1; ++c) mean[c - c0] = count > 0 ? sum[c - c0].total() / count : 0;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, index_t len) {
          const double m = mean[c - c0];
          // sq += (x - mean)^2
          sq[c - c0].add(len, [&](index_t i) {
            const double d = static_cast<double>(xr[i]) - m;
            return d * d;
          });
        },
        x);
  });
  for (index_t c = c0; c < c1; ++c) out[c - c0] = {count, mean[c - c0], sq[c - c0].total()};
}

#if defined(BNORM_HAVE_PACKS)
/// S1 = sum d and S2 = sum d^2 of one channel, d = x - shift, in 16 double lanes and, for the
/// last values of NCHW planes (reduce_planes), in the scalars t1 and t2.
struct ShiftedSums {
  Wide s1{}, s2{}, shift{};  // shift: one per lane (NHWC) or the same in all (NCHW)
  double t1 = 0, t2 = 0;

  // d = x - shift; t1 += d; t2 += d * d   (NCHW: lane 0's shift is every lane's)
  template <class T>
  void add_scalar(const T* x) {
    const double d = static_cast<double>(*x) - shift.part[0][0];
    t1 += d;
    t2 += d * d;
  }

  // d = x - shift; s1 += d; s2 += d * d
  template <class T>
  void add(const T* x) {
    accumulate(load_wide(x) - shift);
  }
  // the same on the new lanes of a plane's last pack
  template <class T>
  void add(const Wide& keep, const T* x) {
    accumulate((load_wide(x) - shift) * keep);
  }
  void accumulate(const Wide& d) {
    s1 = s1 + d;
    s2 = s2 + d * d;
  }
};

/// Moments of channel c over images [n0, n1) from its shifted sums s1 = sum (x - shift) and
/// s2 = sum (x - shift)^2 over `count` values: mean = shift + s1 / n, M2 = s2 - s1^2 / n. The
/// subtraction loses log2(s2 / M2) bits; over 4 (the shift more than about 3.9 standard
/// deviations from the mean) the channel is redone with the two-pass rows instead.
template <class T>
void finish_shifted(const NCHWView<const T>& x, index_t c, index_t n0, index_t n1, double count,
                    double shift, double s1, double s2, Moments* out) {
  const double d = s1 / count;
  // Written so that NaN also takes the fallback.
  if (s1 * d <= s2 * (15.0 / 16.0))
    *out = {count, shift + d, s2 - s1 * d};
  else
    two_pass_moments(x, c, c + 1, n0, n1, out);
}

/// Shifted sums of channels [c0, c1) for a one-pass reduction over images starting at n0, each
/// with its shift K: the mean of the first kPackLanes values of plane (n0, c).
template <class T>
std::vector<ShiftedSums> shifted_start(const Planes<const T>& planes, index_t c0, index_t c1,
                                       index_t n0) {
  std::vector<ShiftedSums> acc(static_cast<std::size_t>(c1 - c0));
  for (index_t c = c0; c < c1; ++c)
    acc[c - c0].shift = broadcast(lane_total(load_wide(planes(n0, c))) / kPackLanes);
  return acc;
}

/// Moments of channels [c0, c1) over images [n0, n1) into out[c - c0] from their shifted sums
/// (finish_shifted).
template <class T>
void shifted_finish(const NCHWView<const T>& x, index_t c0, index_t c1, index_t n0, index_t n1,
                    const std::vector<ShiftedSums>& acc, Moments* out) {
  const double count = static_cast<double>((n1 - n0) * x.h() * x.w());
  for (index_t c = c0; c < c1; ++c) {
    const ShiftedSums& a = acc[c - c0];
    finish_shifted(x, c, n0, n1, count, lane(a.shift, 0), lane_total(a.s1) + a.t1,
                   lane_total(a.s2) + a.t2, out + (c - c0));
  }
}

/// One-pass moments of channels [c0, c1) over images [n0, n1), for views whose planes are
/// contiguous runs of at least kPackLanes values: S1 = sum d and S2 = sum d^2 with d = x - K in
/// double, K the mean of the first kPackLanes values of the chunk's first plane, turned into
/// moments by finish_shifted (a 16-value sample mean of one chunk falls back to two passes only
/// for strongly structured data). The choice depends on the data and the shape, never on threads.
template <class T>
void shifted_moments(const NCHWView<const T>& x, index_t c0, index_t c1, index_t n0, index_t n1,
                     Moments* out) {
  const Planes<const T> planes(x);
  std::vector<ShiftedSums> acc = shifted_start(planes, c0, c1, n0);
  reduce_planes(x.c(), c0, c1, n0, n1, acc.data(), planes);
  shifted_finish(x, c0, c1, n0, n1, acc, out);
}

/// Channels-last: the moments of every channel of x over images [n0, n1) into out[c], in one
/// shifted pass vectorised along C (see shifted_moments; K of a channel is the mean of its
/// first min(16, pixels) values in (n, h, w) order).
template <class T>
void pixel_moments(const NCHWView<const T>& x, index_t n0, index_t n1, Moments* out) {
  const index_t channels = x.c(), plane = x.h() * x.w();
  const index_t pixels = (n1 - n0) * plane, sample = std::min<index_t>(kPackLanes, pixels);
  std::vector<double> shift(static_cast<std::size_t>(channels), 0.0);
  for (index_t i = 0; i < sample; ++i) {
    const index_t n = n0 + i / plane, h = i % plane / x.w(), w = i % x.w();
    for (index_t c = 0; c < channels; ++c) shift[c] += static_cast<double>(x(n, c, h, w));
  }
  const index_t groups = pixel_groups(0, channels);
  std::vector<ShiftedSums> acc(static_cast<std::size_t>(groups));
  for (index_t g = 0; g < groups; ++g) {
    double k[kPackLanes];
    for (index_t j = 0; j < kPackLanes; ++j) k[j] = shift[group_start(0, channels, g) + j] / sample;
    acc[g].shift = load_wide(k);
  }
  reduce_pixels(0, channels, n0, n1, acc.data(), x);
  for (index_t c = 0; c < channels; ++c) {
    const index_t g = group_of(0, channels, c), j = c - group_start(0, channels, g);
    const ShiftedSums& a = acc[g];
    finish_shifted(x, c, n0, n1, static_cast<double>(pixels), lane(a.shift, j), lane(a.s1, j),
                   lane(a.s2, j), out + c);
  }
}
#endif

/// True when reductions over x and the other views go through the NCHW pack kernels: every
/// view stores its planes contiguously, and they hold at least a pack.
template <class T, class... V>
bool by_planes(const NCHWView<T>& x, const V&... v) {
#if defined(BNORM_HAVE_PACKS)
  return planes_contiguous(x, v...) && x.h() * x.w() >= kPackLanes;
#else
  (void)x;
  ((void)v, ...);
  return false;
#endif
}

/// True when reductions over x (and the other views) go through the channels-last kernels:
/// their channels are contiguous and x's planes do not go through the NCHW ones (as when
/// H = W = 1).
template <class T, class... V>
bool by_pixels(const NCHWView<T>& x, const V&... v) {
#if defined(BNORM_HAVE_PACKS)
  return pixels_contiguous(x, v...) && !by_planes(x);
#else
  (void)x;
  ((void)v, ...);
  return false;
#endif
}

/// Moments of channels [c0, c1) over images [n0, n1) into out[c - c0]: one shifted pass over
/// NCHW planes of at least kPackLanes values, two passes over rows otherwise.
template <class T>
void chunk_moments(const NCHWView<const T>& x, index_t c0, index_t c1, index_t n0, index_t n1,
                   Moments* out) {
#if defined(BNORM_HAVE_PACKS)
  if (by_planes(x)) {
    shifted_moments(x, c0, c1, n0, n1, out);
    return;
  }
#endif
  two_pass_moments(x, c0, c1, n0, n1, out);
}

/// Moments of every channel of x, chunk results merged left to right. Work is spread over
/// blocks, or over (block, chunk) items when blocks are fewer than threads.
template <class T>
void channel_moments(const NCHWView<const T>& x, const Plan& p, Moments* out) {
  if (p.chunks == 0) return;
#if defined(BNORM_HAVE_PACKS)
  if (by_pixels(x)) {  // channels-last: items of whole images, merged in image order
    const auto channels = static_cast<std::size_t>(p.channels);
    std::vector<Moments> parts(channels * static_cast<std::size_t>(p.items()));
    parallel_for(
        p.items(),
        [&](index_t k) {
          pixel_moments(x, p.item_begin(k), p.item_end(k),
                        &parts[static_cast<std::size_t>(k) * channels]);
        },
        p.threads);
    for (std::size_t c = 0; c < channels; ++c) {
      out[c] = Moments{};
      for (std::size_t k = 0; k < parts.size(); k += channels) out[c].merge(parts[k + c]);
    }
    return;
  }
#endif
  std::vector<Moments> parts(static_cast<std::size_t>(p.channels * p.chunks));
  auto part = [&](index_t c, index_t k) {
    return &parts[static_cast<std::size_t>(k * p.channels + c)];
  };
  parallel_for(
      p.blocks * p.chunks,
      [&](index_t item) {
        const index_t b = item / p.chunks, k = item % p.chunks;
        chunk_moments(x, p.block_begin(b), p.block_end(b), p.chunk_begin(k), p.chunk_end(k),
                      part(p.block_begin(b), k));
      },
      p.threads);
  for (index_t c = 0; c < p.channels; ++c) {
    out[c] = Moments{};
    for (index_t k = 0; k < p.chunks; ++k) out[c].merge(*part(c, k));
  }
}
