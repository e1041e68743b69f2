/// @file detail/per_isa/pixel_kernels.hpp
/// @brief Walks views whose channels are contiguous (channels_last and its sub-views) in packs
/// of 16 channels: the fused kernels' path vectorised along C.
///
/// A pixel (n, h, w) holds the channels [0, C) at unit stride. Channels [c0, c1) are cut into
/// groups of kPackLanes starting at c0, c0 + 16, ...; when c1 - c0 is not a multiple of 16 the
/// last group starts at c1 - 16 and overlaps the one before it. Lane j of group g is one
/// channel, so per-channel parameters and accumulators are packs too.

#if defined(BNORM_HAVE_PACKS)

/// True when every view stores a pixel's channels at unit stride and there are at least
/// kPackLanes channels (fewer go through the row loops).
template <class V0, class... V>
bool pixels_contiguous(const V0& v0, const V&... v) {
  return v0.c() >= kPackLanes && v0.stride(1) == 1 && ((v.stride(1) == 1) && ...);
}

/// The channel groups of [c0, c1), c1 - c0 >= kPackLanes.
inline index_t pixel_groups(index_t c0, index_t c1) {
  return (c1 - c0 + kPackLanes - 1) / kPackLanes;
}
/// First channel of group g of [c0, c1).
inline index_t group_start(index_t c0, index_t c1, index_t g) {
  return std::min(c0 + g * kPackLanes, c1 - kPackLanes);
}
/// The group whose lane holds channel c's first (and only counted) occurrence, and that lane.
inline index_t group_of(index_t c0, index_t c1, index_t c) {
  return std::min((c - c0) / kPackLanes, pixel_groups(c0, c1) - 1);
}

/// The lanes of the groups of channels [c0, c1) (pixel_groups) to out[c - c0], lane j of group g
/// for channel group_start(g) + j: lanes(g) of every group.
template <class Lanes>
void store_group_lanes(index_t c0, index_t c1, double* out, const Lanes& lanes) {
  // an overlapping last group stores its first lanes again, with the same values
  for (index_t g = 0; g < pixel_groups(c0, c1); ++g)
    std::memcpy(out + (group_start(c0, c1, g) - c0), lanes(g).part, sizeof(Wide::part));
}

/// A view's pixels along one row of RowLayout (a whole H*W plane or one W-line), from a channel.
template <class T>
struct PixelRun {
  T* p;
  index_t s;  // elements from one pixel to the next
  T* at(index_t i) const { return p + i * s; }
  /// The run from pixel i on.
  PixelRun from(index_t i) const { return {at(i), s}; }
};
template <class V>
PixelRun<typename V::element_type> pixel_run(const V& v, index_t n, index_t c, index_t r) {
  return {v.data() + n * v.stride(0) + c * v.stride(1) + r * v.stride(2), v.stride(3)};
}

/// Bytes of x (and dy) in a tile of reduce_pixels: the tile is walked once per channel group,
/// so it should stay in L1, which is at least 32 KiB on x86-64 cores of the last decade.
inline constexpr index_t kPixelTileBytes = 32768;

/// The lines of a run of pixels of K views in memory order, a line of each view per step: the
/// packs of `groups` groups of one pixel, then the next pixel's.
template <class T, std::size_t K>
class PixelLines {
 public:
  PixelLines(std::array<PixelRun<T>, K> runs, index_t pixels, index_t groups)
      : runs_(runs), left_(pixels * groups), groups_(groups) {}

  /// Prefetches the next line of each view into L1, if any is left.
  BNORM_PREFETCHING void prefetch_next() {
    if (left_ == 0) return;
    --left_;
    for (const PixelRun<T>& run : runs_) __builtin_prefetch(run.at(pixel_) + offset_, 0, 3);
    offset_ += kPackLanes;
    if (offset_ == groups_ * kPackLanes) {
      offset_ = 0;
      ++pixel_;
    }
  }

 private:
  std::array<PixelRun<T>, K> runs_;
  index_t left_, groups_, pixel_ = 0, offset_ = 0;
};

/// Pixels of reduce_pixels' tiles at least: a tile's accumulators go into registers and back
/// once per group, which costs more than a few pixels' additions (an (N, C) tensor of 4096
/// channels, one pixel an image, had tiles of 2 pixels from the L1 budget alone).
inline constexpr index_t kMinPixelTile = 8;
/// Pixels of the tiles that exceed the L1 budget, at most.
inline constexpr index_t kMaxPixelTile = 16;

/// Pixels of a reduce_pixels tile of `bytes` per pixel (groups x packs of each view): within
/// kPixelTileBytes (L1) where that gives kMaxPixelTile or more; otherwise as many as fit an
/// eighth of the L2, between kMinPixelTile and kMaxPixelTile: the tile being reduced and the
/// next one, prefetched meanwhile, then take at most a quarter of it. With tiles of 16 on a
/// 512 KiB L2, channels-last backward of 32x2048x7x7 (16 KiB a pixel) took 3.5-4.2 ms, with 8
/// 2.9 ms (2 threads, Zen 3).
inline index_t pixel_tile(index_t bytes) {
  const index_t in_l1 = kPixelTileBytes / bytes;
  if (in_l1 >= kMaxPixelTile) return in_l1;
  const auto in_l2 = static_cast<index_t>(cache_sizes().l2 / 8) / bytes;
  return std::clamp(in_l2, kMinPixelTile, kMaxPixelTile);
}

/// For channels [c0, c1) and images [n0, n1): acc[g].add(p...) for every pixel in (n, h, w)
/// order and every channel group g, p pointing at the group's first channel in each view.
/// Pixels go in tiles, group by group within a tile, so that a group's accumulator is worked on
/// in registers for a tile where it fits (with_accumulator). Each lane sums its channel's values in
/// pixel order: the order of every addition depends on the shape alone. Images of one pixel each
/// (BatchNorm1d's (N, C)) make one run of n1 - n0 pixels, so that tiles span images.
///
/// A tile's walk reads one line of each pixel in turn, a stride the hardware prefetchers do not
/// follow. So the walk prefetches the next tile of its row into L1 in memory order, a line per
/// pack it reads. Measured on 2 threads (AVX-512, Zen 4), the statistics of channels-last
/// 32x256x56x56 went from 10.5 to 28.9 GB/s (NCHW planes: 32.8 GB/s) and 32x512x28x28 from
/// 10.1 to 29.2 GB/s.
template <class Acc, class V0, class... V>
void reduce_pixels(index_t c0, index_t c1, index_t n0, index_t n1, Acc* acc, const V0& v0,
                   const V&... v) {
  using T = typename V0::element_type;
  const RowLayout rows(v0, v...);
  const index_t groups = pixel_groups(c0, c1);
  const auto pack_bytes = static_cast<index_t>(kPackLanes * sizeof(T));
  const index_t tile = pixel_tile(groups * pack_bytes * static_cast<index_t>(1 + sizeof...(V)));
  // the pixels [0, len) of a run, run(view, c) giving each view's run from channel c
  const auto reduce_run = [&](index_t len, const auto& run) {
    for (index_t i0 = 0; i0 < len; i0 += tile) {
      const index_t m = std::min(tile, len - i0);
      const index_t next = i0 + m, next_m = std::min(tile, len - next);
      PixelLines<T, 1 + sizeof...(V)> ahead({run(v0, c0).from(next), run(v, c0).from(next)...},
                                            next_m, groups);
      for (index_t g = 0; g < groups; ++g) {
        const index_t cg = group_start(c0, c1, g);
        const auto run0 = run(v0, cg);
        with_accumulator(acc[g], [&](auto& a) {
          [&](const auto&... runs) {
            for (index_t i = i0; i < i0 + m; ++i) {
              ahead.prefetch_next();
              a.add(run0.at(i), runs.at(i)...);
            }
          }(run(v, cg)...);
        });
      }
    }
  };
  if (rows.rows == 1 && rows.len == 1) {
    reduce_run(n1 - n0, [&](const auto& view, index_t c) {
      return PixelRun<T>{view.data() + n0 * view.stride(0) + c * view.stride(1), view.stride(0)};
    });
    return;
  }
  for (index_t n = n0; n < n1; ++n)
    for (index_t r = 0; r < rows.rows; ++r)
      reduce_run(rows.len, [&](const auto& view, index_t c) { return pixel_run(view, n, c, r); });
}

/// True when every group of channels [c0, c1) of every pixel of v starts on a cache line and
/// there is no overlapping last group, so that each group's pack is whole lines.
template <class T>
bool pixel_lines_aligned(const NCHWView<T>& v, index_t c0, index_t c1) {
  constexpr index_t kLine = 64 / static_cast<index_t>(sizeof(T));
  return reinterpret_cast<std::uintptr_t>(v.data() + c0) % 64 == 0 && v.stride(0) % kLine == 0 &&
         v.stride(2) % kLine == 0 && v.stride(3) % kLine == 0 && (c1 - c0) % kPackLanes == 0;
}

/// For channels [c0, c1) and images [n0, n1): every element of out is value(cg)(v...), v the
/// packs of group cg (its first channel) of each input at the same pixel; value(cg) must accept
/// packs. With `stream`, and when out's groups are whole cache lines (pixel_lines_aligned), the
/// packs go out with non-temporal stores; otherwise with regular ones. An output may be one of
/// the inputs: at each pixel an overlapping last group is computed before any store and stored
/// last (its overlapped lanes get the same values again).
template <class T, class Value, class... V>
void map_pixels(index_t c0, index_t c1, index_t n0, index_t n1, bool stream, const NCHWView<T>& out,
                const Value& value, const V&... in) {
  const RowLayout rows(out, in...);
  const index_t full = (c1 - c0) / kPackLanes, last = c1 - kPackLanes;
  const bool overlap = (c1 - c0) % kPackLanes != 0;
  const auto walk = [&](const auto& put_ref) {
    // Copies, whose captures can live in registers: read through the references, every
    // capture (the constants' pointers, the store kind) was loaded again after each store.
    const auto put = put_ref;
    const Value value_of = value;
    for (index_t n = n0; n < n1; ++n)
      for (index_t r = 0; r < rows.rows; ++r) {
        const auto o = pixel_run(out, n, c0, r);
        [&](const auto&... src) {
          for (index_t i = 0; i < rows.len; ++i) {
            Pack<compute_t<T>> tail{};
            if (overlap) tail = value_of(last)(load_pack(src.at(i) + (last - c0))...);
            for (index_t g = 0; g < full; ++g)
              put(o.at(i) + g * kPackLanes,
                  value_of(c0 + g * kPackLanes)(load_pack(src.at(i) + g * kPackLanes)...));
            if (overlap) put(o.at(i) + (last - c0), tail);
          }
        }(pixel_run(in, n, c0, r)...);
      }
  };
  walk_storing<T>(stream && pixel_lines_aligned(out, c0, c1), walk);
}

#endif
