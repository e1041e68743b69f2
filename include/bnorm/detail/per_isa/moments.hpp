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
  SmallBuffer<LaneSum> sum(width), sq(width);
  SmallBuffer<double> mean(width);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, index_t len) {
          // sum += x
          sum[c - c0].add(len, [&](index_t i) { return static_cast<double>(to_compute(xr[i])); });
        },
        x);
    for (index_t c = c0; c < c1; ++c) mean[c - c0] = count > 0 ? sum[c - c0].total() / count : 0;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, index_t len) {
          const double m = mean[c - c0];
          // sq += (x - mean)^2
          sq[c - c0].add(len, [&](index_t i) {
            const double d = static_cast<double>(to_compute(xr[i])) - m;
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
    const double d = static_cast<double>(to_compute(*x)) - shift.part[0][0];
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

/// Channels-last: per group of 16 channels, the shifts of a one-pass reduction over all of x,
/// K of a channel the mean of its first min(16, pixels) values in (n, h, w) order.
template <class T>
std::vector<ShiftedSums> pixel_shifts(const NCHWView<const T>& x) {
  const index_t channels = x.c(), plane = x.h() * x.w();
  const index_t sample = std::min<index_t>(kPackLanes, x.n() * plane);
  std::vector<ShiftedSums> acc(static_cast<std::size_t>(pixel_groups(0, channels)));
  for (index_t i = 0; i < sample; ++i) {
    const T* px = &x(i / plane, 0, i % plane / x.w(), i % x.w());
    // K += x(pixel i), in pixel order for each channel
    for (std::size_t g = 0; g < acc.size(); ++g)
      acc[g].shift = acc[g].shift + load_wide(px + group_start(0, channels, g));
  }
  const Wide inv_sample = broadcast(1.0 / static_cast<double>(sample));
  for (ShiftedSums& a : acc) a.shift = a.shift * inv_sample;
  return acc;
}

/// Interleaved channels-last (interleaved.hpp: fewer than 16 channels, or a count the pixel
/// kernels' packs fit badly): the moments of every
/// channel in one shifted pass over the pseudo-channels and each image's last values, K of a
/// channel the mean of its first min(16, pixels) values in (n, h, w) order. The plan's items
/// (whole images) are reduced in parallel and their sums added in item order.
template <class T>
void interleaved_moments(const NCHWView<const T>& x, const Plan& p, Moments* out) {
  const Interleave il(x);
  const index_t channels = x.c(), plane = x.h() * x.w();
  const auto width = static_cast<std::size_t>(channels);
  const index_t sample = std::min<index_t>(kPackLanes, x.n() * plane);
  std::vector<double> shift(width);
  for (index_t i = 0; i < sample; ++i)
    for (index_t c = 0; c < channels; ++c)  // K += x(pixel i), in pixel order
      shift[c] += static_cast<double>(
          to_compute(x.data()[i / plane * x.stride(0) + i % plane * channels + c]));
  for (double& k : shift) k /= static_cast<double>(sample);
  const std::vector<ShiftedSums> start = group_accumulators<ShiftedSums>(
      il, shift.data(), [](ShiftedSums& a, const Wide& k) { a.shift = k; });
  const NCHWView<const T> pseudo = il.pseudo(x);
  std::vector<double> parts(2 * width * static_cast<std::size_t>(p.items()));
  parallel_for(
      p.items(),
      [&](index_t k) {
        std::vector<ShiftedSums> acc = start;
        reduce_pixels(0, il.period, p.item_begin(k), p.item_end(k), acc.data(), pseudo);
        double* s1 = &parts[2 * width * static_cast<std::size_t>(k)];
        double* s2 = s1 + width;
        fold_lanes(
            il, acc, [](const ShiftedSums& a) { return a.s1; }, s1);
        fold_lanes(
            il, acc, [](const ShiftedSums& a) { return a.s2; }, s2);
        for_each_tail_value(
            il, p.item_begin(k), p.item_end(k),
            [&](index_t c, const T* v) {
              // d = x - K; s1 += d; s2 += d * d
              const double d = static_cast<double>(to_compute(*v)) - shift[c];
              s1[c] += d;
              s2[c] += d * d;
            },
            x);
      },
      p.threads);
  const double count = static_cast<double>(x.n() * plane);
  for (index_t c = 0; c < channels; ++c) {
    double s1 = 0, s2 = 0;
    for (std::size_t k = 0; k < parts.size(); k += 2 * width) {
      s1 += parts[k + static_cast<std::size_t>(c)];
      s2 += parts[k + width + static_cast<std::size_t>(c)];
    }
    finish_shifted(x, c, 0, x.n(), count, shift[c], s1, s2, out + c);
  }
}

/// Channels-last: the moments of every channel of x in one shifted pass vectorised along C
/// (see shifted_moments), the shifts of pixel_shifts. The plan's items (whole images) are
/// reduced in parallel; each channel's sums S1, S2 over the items are added in item order, so
/// the items need no merging of moments.
template <class T>
void pixel_moments(const NCHWView<const T>& x, const Plan& p, Moments* out) {
  if (interleaved(x)) {
    interleaved_moments(x, p, out);
    return;
  }
  const index_t channels = x.c();
  const auto width = static_cast<std::size_t>(channels);
  const std::vector<ShiftedSums> start = pixel_shifts(x);
  std::vector<double> parts(2 * width * static_cast<std::size_t>(p.items()));
  parallel_for(
      p.items(),
      [&](index_t k) {
        std::vector<ShiftedSums> acc = start;
        reduce_pixels(0, channels, p.item_begin(k), p.item_end(k), acc.data(), x);
        double* part = &parts[2 * width * static_cast<std::size_t>(k)];
        store_group_lanes(0, channels, part, [&](index_t g) { return acc[g].s1; });
        store_group_lanes(0, channels, part + channels, [&](index_t g) { return acc[g].s2; });
      },
      p.threads);
  const double count = static_cast<double>(x.n() * x.h() * x.w());
  // each channel's parts added in item order, the channels split over the threads: a fallback
  // to two passes (finish_shifted) costs a sweep over x
  parallel_for(
      p.threads,
      [&](index_t t) {
        const index_t begin = channels * t / p.threads, end = channels * (t + 1) / p.threads;
        std::vector<double> s1(static_cast<std::size_t>(end - begin)), s2(s1.size());
        for (std::size_t k = 0; k < parts.size(); k += 2 * width)
          for (index_t c = begin; c < end; ++c) {
            s1[c - begin] += parts[k + static_cast<std::size_t>(c)];
            s2[c - begin] += parts[k + width + static_cast<std::size_t>(c)];
          }
        for (index_t c = begin; c < end; ++c) {
          const index_t g = group_of(0, channels, c), j = c - group_start(0, channels, g);
          finish_shifted(x, c, 0, x.n(), count, lane(start[g].shift, j), s1[c - begin],
                         s2[c - begin], out + c);
        }
      },
      p.threads);
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
/// their channels are contiguous (at least 16, or interleaved: interleaved.hpp) and x's planes
/// do not go through the NCHW ones (as when H = W = 1).
template <class T, class... V>
bool by_pixels(const NCHWView<T>& x, const V&... v) {
#if defined(BNORM_HAVE_PACKS)
  return (pixels_contiguous(x, v...) || interleaved(x, v...)) && !by_planes(x);
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
  if (by_pixels(x)) {
    pixel_moments(x, p, out);
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
