/// @file detail/fused_kernels.hpp
/// @brief The fused variant's per-block kernels and the plan that cuts a shape into work.
///
/// Arithmetic is fixed by the shape alone: a channel's values are cut into chunks of whole
/// images (Plan::images_per_chunk); each chunk is reduced with LaneSum in (n, h, w) order; chunk
/// results are combined left to right. Which thread does which block or chunk, and whether a
/// block's passes run back to back, changes only the order of independent work, never a bit.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../nchw_view.hpp"
#include "lane_sum.hpp"
#include "parallel.hpp"
#include "pixel_kernels.hpp"
#include "plane_kernels.hpp"
#include "prefetch.hpp"
#include "rows.hpp"
#include "stream.hpp"

namespace bnorm::detail {

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

/// How a shape is cut into work.
struct Plan {
  /// Values per chunk: a chunk's x (and dy) stays in L2 between the passes of the two-pass
  /// statistics (the fallback of the shifted one-pass statistics and of other layouts).
  static constexpr index_t kChunkValues = 65536;
  /// Values per block of short channels (4 MiB of float): a block's x is read again by its
  /// normalisation right after its statistics, from L3 at the latest. Measured on 7x7 to 28x28
  /// planes, blocks of 64K values (so that they stay in L2) ran 1.3-1.6x slower than blocks of
  /// 1M: each block's walk jumps from image to image, and the jumps cost more than L3 reads.
  static constexpr index_t kBlockValues = index_t{1} << 20;

  index_t images = 0, channels = 0;
  index_t images_per_chunk = 1, chunks = 0;  // the arithmetic: chunks of whole images
  index_t block = 1, blocks = 0;             // channels processed together: locality only
  index_t images_per_item = 1;               // channels-last reductions: images per item
  index_t threads = 1;                       // threads to use: 1 for tiny tensors
  bool stream = false;                       // non-temporal output stores
  bool pipelined = false;                    // long channels: see sweep_blocks

  /// Channels of more bytes than this (of x) are swept pipelined when the tensor streams: about
  /// the size of a core's L2.
  static constexpr std::size_t kPipelineBytes = std::size_t{1} << 20;

  /// Tensors of fewer values run on one thread: starting a parallel region costs more than the
  /// work (2x2x2x2 training forward: 4.9 us against a 0.6 us floor).
  static constexpr index_t kThreadedValues = 32768;

  /// `tensors`: how many tensors of x's shape the pass reads or writes (2 forward, 3 backward).
  template <class T>
  Plan(const NCHWView<T>& x, std::size_t element_size, index_t tensors = 2)
      : images(x.n()), channels(x.c()), threads(x.size() < kThreadedValues ? 1 : max_threads()) {
    const index_t plane = std::max<index_t>(x.h() * x.w(), 1);
    images_per_chunk = std::clamp<index_t>(kChunkValues / plane, 1, std::max<index_t>(images, 1));
    chunks = (images + images_per_chunk - 1) / images_per_chunk;
    // Short channels: walk several at once in (n, c) order, so memory is read in runs of a
    // block's planes instead of one short plane per image. The blocks come in a multiple of the
    // thread count, so that the threads get equal shares. Only locality depends on this.
    if (chunks == 1 && channels > 0) {
      const index_t per_block = kBlockValues / std::max<index_t>(images * plane, 1);
      index_t want =
          std::max<index_t>(1, (channels + per_block - 1) / std::max<index_t>(per_block, 1));
      want = (want + threads - 1) / threads * threads;
      block = std::max<index_t>(1, (channels + want - 1) / want);
    }
    blocks = (channels + block - 1) / block;
    // Channels-last items hold all channels of whole images, about kChunkValues values.
    images_per_item = std::clamp<index_t>(kChunkValues / std::max<index_t>(plane * channels, 1), 1,
                                          std::max<index_t>(images, 1));
    stream =
        static_cast<std::size_t>(x.size()) * element_size * static_cast<std::size_t>(tensors) >=
        kStreamingBytes;
    // Pipelined sweeps pay only for long channels (one channel a block, over several chunks),
    // which the map would read from L3 anyway. Paired with the floor, 2 threads, medians of 5
    // alternating rounds, unpipelined -> pipelined: 32x64x112x112 (1.6 MB channels) training
    // forward 1.43x -> 1.34x, backward 1.62x -> 1.47x; 32x512x28x28 (blocks of 37 channels,
    // 3.7 MB) training forward 1.67x -> 1.65x, backward 1.69x -> 1.83x; 32x256x56x56 (400 KB
    // channels, 4 rounds) training forward 1.50x -> 1.59x.
    pipelined = stream && chunks > 1 &&
                static_cast<std::size_t>(images * plane) * element_size > kPipelineBytes;
  }

  index_t block_begin(index_t b) const { return b * block; }
  index_t block_end(index_t b) const { return std::min(channels, (b + 1) * block); }
  index_t chunk_begin(index_t k) const { return k * images_per_chunk; }
  index_t chunk_end(index_t k) const { return std::min(images, (k + 1) * images_per_chunk); }
  index_t items() const { return (images + images_per_item - 1) / images_per_item; }
  index_t item_begin(index_t k) const { return k * images_per_item; }
  index_t item_end(index_t k) const { return std::min(images, (k + 1) * images_per_item); }
  /// Enough blocks to keep every thread busy: each thread runs the passes of its own blocks
  /// (sweep_blocks). Otherwise the caller spreads (block, chunk) items over the threads pass by
  /// pass.
  bool blocks_fill_threads() const { return blocks >= threads; }
};

/// Asks for plane (n, c) of v ahead of its use, when the plane is one short contiguous row: the
/// hardware prefetchers do not follow the jump from one image's planes to the next image's.
template <class V>
BNORM_PREFETCHING void prefetch_plane(const RowLayout& layout, const V& v, index_t n, index_t c) {
  prefetch_run(&v(n, c, 0, 0), layout.len);
}

/// Calls f(c, rows..., len) for every row of channels [c0, c1) and images [n0, n1), in
/// (n, c, h) order: consecutive channels of an image are adjacent in NCHW memory. When planes
/// are short contiguous rows it prefetches the same planes a few images ahead.
template <bool Unit, class F, class V0, class... V>
void for_each_block_row(const RowLayout& layout, index_t c0, index_t c1, index_t n0, index_t n1,
                        const F& f, const V0& v0, const V&... v) {
  constexpr index_t kShort = 4096;
  const index_t plane_bytes = layout.len * static_cast<index_t>(sizeof(typename V0::element_type));
  // Whole images in NCHW are one sequential run, which the hardware prefetchers follow.
  const bool prefetch = Unit && layout.rows == 1 && plane_bytes <= kShort && c1 - c0 < v0.c();
  const index_t ahead = prefetch_distance((c1 - c0) * plane_bytes);
  for (index_t n = n0; n < n1; ++n)
    for (index_t c = c0; c < c1; ++c) {
      if (prefetch)
        prefetch_images(n, n0, n1, ahead, [&](index_t m) {
          prefetch_plane(layout, v0, m, c);
          (prefetch_plane(layout, v, m, c), ...);
        });
      for_each_row<Unit>(
          layout, n, c, [&](auto... rows) { f(c, rows...); }, v0, v...);
    }
}

/// Two-pass moments of channels [c0, c1) over images [n0, n1): the mean, then the sum of
/// squared deviations from it, both in double. out[c - c0] receives them.
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

#if defined(BNORM_HAVE_PACKS)
/// Per-channel constants of an elementwise pass: k[j][c - c0] is constant j of channel c.
template <class T, std::size_t K>
using ChannelConstants = std::array<std::vector<T>, K>;

/// f with the constants kc appended to its arguments: with_constants(f, kc)(v...) = f(v..., kc...).
template <class F, class KC>
auto with_constants(const F& f, const KC& kc) {
  return [kc, &f](const auto&... v) {
    return std::apply([&](const auto&... s) { return f(v..., s...); }, kc);
  };
}

/// value(c) of the plane walks: f with channel c's constants k[j][c - c0] as scalars.
template <class T, std::size_t K, class F>
auto plane_value(index_t c0, const ChannelConstants<T, K>& k, const F& f) {
  return [c0, &k, f](index_t c) {  // f by value: callers may pass a temporary formula
    std::array<T, K> kc;
    for (std::size_t j = 0; j < K; ++j) kc[j] = k[j][static_cast<std::size_t>(c - c0)];
    return with_constants(f, kc);
  };
}

/// out = f(in..., k...) on channels [c0, c1), images [n0, n1), on a pack path: over NCHW planes
/// with the constants k of each channel as scalars, or over channels-last pixels with them as
/// packs of 16 channels. f is one formula for scalars and packs. False when neither path
/// applies (the caller runs its row loops).
template <class T, std::size_t K, class F, class... V>
bool map_channels(index_t c0, index_t c1, index_t n0, index_t n1, bool stream,
                  const NCHWView<T>& out, const ChannelConstants<T, K>& k, const F& f,
                  const V&... in) {
  if (planes_contiguous(out, in...)) {
    const auto value = plane_value(c0, k, f);
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (plane_groups_apply(c0, c1, stream, Planes<T>(out), Planes<const T>(in)...)) {
        // A group's constants, lane j for channel cg + j; each pack permutes them to its lanes.
        const auto group = [&](index_t cg) {
          std::array<Pack<float>, K> kg;
          for (std::size_t j = 0; j < K; ++j) kg[j] = load_pack(k[j].data() + (cg - c0));
          return [kg, &f](const PackPlanes& planes, const auto&... v) {
            const __m512i lanes = _mm512_load_si512(planes.lane);
            std::array<Pack<float>, K> kc;
            for (std::size_t j = 0; j < K; ++j) {
              __m512 group_k;
              std::memcpy(&group_k, &kg[j].v, sizeof group_k);
              // the zero-masked form: the plain one trips a false GCC 12 -Wmaybe-uninitialized
              const __m512 lane_k = _mm512_maskz_permutexvar_ps(0xFFFF, lanes, group_k);
              std::memcpy(&kc[j].v, &lane_k, sizeof lane_k);
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
    map_planes(out.c(), c0, c1, n0, n1, stream, Planes<T>(out), value, Planes<const T>(in)...);
    return true;
  }
  if (c1 - c0 >= kPackLanes && pixels_contiguous(out, in...)) {
    map_pixels(
        c0, c1, n0, n1, stream, out,
        [&](index_t cg) {
          std::array<Pack<T>, K> kc;
          for (std::size_t j = 0; j < K; ++j) kc[j] = load_pack(k[j].data() + (cg - c0));
          return with_constants(f, kc);
        },
        in...);
    return true;
  }
  return false;
}
#endif

#if defined(BNORM_HAVE_PACKS)
/// The constants of normalise's pack paths on channels [c0, c1): hi, a and b - lo * a, from
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

/// normalise's formula on packs and scalars, with the constants of normalise_constants.
struct NormaliseFormula {
  // y = (x - hi) * a + b
  template <class V, class S>
  V operator()(const V& x, const S& hi, const S& a, const S& b) const {
    return (x - hi) * a + b;
  }
};
#endif

/// y = ((x - hi) - lo) * scale + shift on channels [c0, c1), images [n0, n1).
template <class T>
void normalise(const NCHWView<const T>& x, const NCHWView<T>& y, index_t c0, index_t c1, index_t n0,
               index_t n1, const double* mean, const double* scale, const double* shift,
               bool stream) {
#if defined(BNORM_HAVE_PACKS)
  if (map_channels(c0, c1, n0, n1, stream, y, normalise_constants<T>(c0, c1, mean, scale, shift),
                   NormaliseFormula{}, x))
    return;
#endif
  const RowLayout layout(x, y);
  with_unit_rows(layout, [&](auto unit) {
    constexpr bool U = decltype(unit)::value;
    for_each_block_row<U>(
        layout, c0, c1, n0, n1,
        [&](index_t c, auto xr, auto yr, index_t len) {
          const Centre<T> centre(mean[c]);
          const T a = static_cast<T>(scale[c]), b = static_cast<T>(shift[c]);
          write_row(yr, len, stream, [&](index_t i0, index_t n, T* out) {
            // y = ((x - hi) - lo) * a + b
            for (index_t i = 0; i < n; ++i) out[i] = centre(xr[i0 + i]) * a + b;
          });
        },
        x, y);
  });
  if (stream) streaming_fence();
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
/// (reduce_and_map_planes), with the same results as the two calls.
template <class T>
void moments_and_normalise(const NCHWView<const T>& x, const NCHWView<T>& y, index_t r0, index_t m0,
                           index_t width, index_t n0, index_t n1, Moments* out, const double* mean,
                           const double* scale, const double* shift, bool stream) {
#if defined(BNORM_HAVE_PACKS)
  const Planes<const T> planes(x);
  std::vector<ShiftedSums> acc = shifted_start(planes, r0, r0 + width, n0);
  const ChannelConstants<T, 3> k = normalise_constants<T>(m0, m0 + width, mean, scale, shift);
  reduce_and_map_planes(x.c(), r0, m0, width, n0, n1, acc.data(), stream, Planes<T>(y),
                        plane_value(m0, k, NormaliseFormula{}), planes);
  shifted_finish(x, r0, r0 + width, n0, n1, acc, out);
#else  // unreachable: sweeps_fuse is false without packs
  chunk_moments(x, r0, r0 + width, n0, n1, out);
  normalise(x, y, m0, m0 + width, n0, n1, mean, scale, shift, stream);
#endif
}

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
/// sum_dy[c] and sum_dy_xmu[c], vectorised along C.
template <class T>
void pixel_grad_sums(const NCHWView<const T>& x, const NCHWView<const T>& dy, index_t n0,
                     index_t n1, const double* mean, double* sum_dy, double* sum_dy_xmu) {
  const index_t channels = x.c(), groups = pixel_groups(0, channels);
  std::vector<GradSums> acc(static_cast<std::size_t>(groups));
  for (index_t g = 0; g < groups; ++g) acc[g].mean = load_wide(mean + group_start(0, channels, g));
  reduce_pixels(0, channels, n0, n1, acc.data(), x, dy);
  for (index_t c = 0; c < channels; ++c) {
    const index_t g = group_of(0, channels, c), j = c - group_start(0, channels, g);
    sum_dy[c] = lane(acc[g].dy, j);
    sum_dy_xmu[c] = lane(acc[g].dy_xmu, j);
  }
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

/// Runs a pass of two sweeps per block over the plan's blocks, each thread over its own run of
/// consecutive blocks: a reduction of the block chunk by chunk, then a map of the block that
/// needs the whole reduction.
///   reduce(c0, c1, n0, n1): the reduction of channels [c0, c1) over images [n0, n1), a chunk;
///   finish(c0, c1): once channels [c0, c1) are reduced over every chunk;
///   map(c0, c1, n0, n1): the map of finished channels [c0, c1) over images [n0, n1);
///   both(r0, m0, width, n0, n1): reduce(r0, r0 + width, n0, n1) and map(m0, m0 + width, n0, n1)
///   in one sweep.
/// Unpipelined, each block's map follows its reduction, while its x is in cache. Pipelined
/// (`pipelined`: p.pipelined where the views allow it, see sweeps_fuse), block b's reduction shares
/// each chunk's sweep with block b - 1's map, so a core reads from memory while it writes.
template <class Reduce, class Finish, class Map, class Both>
void sweep_blocks(const Plan& p, bool pipelined, const Reduce& reduce, const Finish& finish,
                  const Map& map, const Both& both) {
  parallel_for(
      p.threads,
      [&](index_t t) {
        const index_t b0 = p.blocks * t / p.threads, b1 = p.blocks * (t + 1) / p.threads;
        for (index_t b = b0; b <= b1; ++b) {
          // this block's reduction (none past the last), the previous block's map
          const index_t c0 = b < b1 ? p.block_begin(b) : 0, c1 = b < b1 ? p.block_end(b) : 0;
          const index_t m0 = b > b0 ? p.block_begin(b - 1) : 0,
                        m1 = pipelined && b > b0 ? p.block_end(b - 1) : m0;
          const index_t width = std::min(c1 - c0, m1 - m0);  // the rest alone
          for (index_t ch = 0; ch < p.chunks; ++ch) {
            const index_t n0 = p.chunk_begin(ch), n1 = p.chunk_end(ch);
            if (width > 0) both(c0, m0, width, n0, n1);
            if (c0 + width < c1) reduce(c0 + width, c1, n0, n1);
            if (m0 + width < m1) map(m0 + width, m1, n0, n1);
          }
          if (c1 > c0) finish(c0, c1);
          if (!pipelined && c1 > c0) map(c0, c1, index_t{0}, p.images);
        }
      },
      p.threads);
}

/// Runs f(c0, c1, n0, n1) over every (block, chunk) of the plan, spread over the threads.
template <class F>
void for_each_piece(const Plan& p, const F& f) {
  parallel_for(
      p.blocks * p.chunks,
      [&](index_t item) {
        const index_t b = item / p.chunks, k = item % p.chunks;
        f(p.block_begin(b), p.block_end(b), p.chunk_begin(k), p.chunk_end(k));
      },
      p.threads);
}

/// For elementwise passes (no reduction, so any split gives the same bits): runs
/// f(0, C, n0, n1) over image ranges, one per thread, so each thread streams through a
/// contiguous part of NCHW memory; with fewer images than threads, f(c0, c1, n0, n1) over the
/// plan's (block, chunk) pieces instead.
template <class F>
void for_each_elementwise_piece(const Plan& p, const F& f) {
  const index_t threads = p.threads;
  if (p.images >= threads) {
    parallel_for(
        threads,
        [&](index_t t) {
          f(index_t{0}, p.channels, p.images * t / threads, p.images * (t + 1) / threads);
        },
        threads);
  } else {
    for_each_piece(p, f);
  }
}

}  // namespace bnorm::detail
