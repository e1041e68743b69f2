/// @file detail/per_isa/interleaved.hpp
/// @brief Channels-last views with fewer channels than a pack (C = 3 as for an input layer), or
/// a count that packs of 16 fit badly (C = 24): each image is one run of values whose channel is
/// the value's index mod C, walked as packs.
///
/// Such a run repeats its channel pattern every L = lcm(C, 16) values, L / 16 packs. The walk
/// reads each image's first P whole periods as a channels-last view of P pixels with L
/// "pseudo-channels" (pseudo-channel q is channel q mod C) through the pixel kernels, and the
/// image's last values (fewer than L) one by one. Per-channel constants are spread over the L
/// pseudo-channels; reductions add a channel's pseudo-channel lanes in q order, then its last
/// values. Every order depends on the shape alone.

#if defined(BNORM_HAVE_PACKS)

/// How an interleaved view's images split into periods.
struct Interleave {
  index_t channels = 0, period = 0, periods = 0, run = 0;  // run: values per image

  explicit Interleave(index_t c, index_t plane) : channels(c), run(plane * c) {
    index_t a = c, b = kPackLanes;  // a = gcd(c, 16)
    while (b != 0) {
      const index_t r = a % b;
      a = b;
      b = r;
    }
    period = c / a * kPackLanes;
    periods = run / period;
  }
  template <class V>
  explicit Interleave(const V& v) : Interleave(v.c(), v.h() * v.w()) {}

  /// Values after the whole periods of an image.
  index_t tail_begin() const { return periods * period; }

  /// v's images as channels-last views of `periods` pixels of `period` pseudo-channels.
  template <class T>
  NCHWView<T> pseudo(const NCHWView<T>& v) const {
    return NCHWView<T>(v.data(), {v.n(), period, 1, periods},
                       {v.stride(0), 1, periods * period, period});
  }

  /// Per-channel values spread over the pseudo-channels: out[q] = per_channel[q mod C].
  template <class S, class U>
  SmallBuffer<S> spread(const U* per_channel) const {
    SmallBuffer<S> out(static_cast<std::size_t>(period));
    for (index_t q = 0; q < period; ++q) out[q] = static_cast<S>(per_channel[q % channels]);
    return out;
  }

  /// total[c] += lanes[q] over the pseudo-channels q of channel c, in q order.
  void fold(const double* lanes, double* total) const {
    for (index_t q = 0; q < period; ++q) total[q % channels] += lanes[q];
  }
};

/// True when every view is channels-last with dense images (a pixel's channels at unit stride,
/// pixels adjacent) of at least one whole period each, and C is under kPackLanes (the pixel
/// kernels need a pack of channels) or leaves them lanes to waste: their last group of 16
/// overlaps the one before, so they compute 16 * ceil(C / 16) lanes for C channels. Where that
/// is 25% more or worse, periods win (Intel Xeon, 2 threads, 32xCx56x56: C = 24, 33% more:
/// training forward 0.67 -> 0.55 ms, inference 0.36 -> 0.32, backward 0.97 -> 0.89; C = 40, 20%:
/// 1.03 -> 0.88, 0.59 -> 0.54, 1.41 -> 1.48; C = 100 and 200, 12% and 4%: 10-15% slower).
template <class V0, class... V>
bool interleaved(const V0& v0, const V&... v) {
  const index_t c = v0.c(), w = v0.w();
  const auto dense = [c, w](const auto& u) {
    return u.stride(1) == 1 && u.stride(3) == c && (u.h() == 1 || u.stride(2) == w * c);
  };
  const index_t lanes = (c + kPackLanes - 1) / kPackLanes * kPackLanes;
  const bool wasteful = c < kPackLanes || 4 * lanes >= 5 * c;
  return c > 1 && c % kPackLanes != 0 && wasteful && dense(v0) && (dense(v) && ...) &&
         Interleave(v0).periods > 0;
}

/// Accumulators of the pixel reductions, one per pack of pseudo-channels, with set(acc[g], w)
/// given the pack's per-channel values (per_channel spread over its lanes).
template <class Acc, class Set>
std::vector<Acc> group_accumulators(const Interleave& il, const double* per_channel,
                                    const Set& set) {
  const SmallBuffer<double> lanes = il.spread<double>(per_channel);
  std::vector<Acc> acc(static_cast<std::size_t>(il.period / kPackLanes));
  for (std::size_t g = 0; g < acc.size(); ++g)
    set(acc[g], load_wide(lanes.data() + g * kPackLanes));
  return acc;
}

/// The lanes of the pixel reductions' accumulators acc[g] (one a pack of pseudo-channels),
/// lanes(acc[g]) of each, added into total[c] per channel (Interleave::fold).
template <class Acc, class Lanes>
void fold_lanes(const Interleave& il, const std::vector<Acc>& acc, const Lanes& lanes,
                double* total) {
  std::vector<double> q(static_cast<std::size_t>(il.period));
  for (std::size_t g = 0; g < acc.size(); ++g)
    std::memcpy(&q[g * kPackLanes], lanes(acc[g]).part, sizeof(Wide::part));
  il.fold(q.data(), total);
}

/// For images [n0, n1) of interleaved views: f(c, p...) for each value after the whole periods
/// of each image, in memory order, c its channel and p pointing at it in each view.
template <class F, class V0, class... V>
void for_each_tail_value(const Interleave& il, index_t n0, index_t n1, const F& f, const V0& v0,
                         const V&... v) {
  for (index_t n = n0; n < n1; ++n)
    for (index_t i = il.tail_begin(); i < il.run; ++i)
      f(i % il.channels, v0.data() + n * v0.stride(0) + i, (v.data() + n * v.stride(0) + i)...);
}

#endif
