/// @file detail/per_isa/plan.hpp
/// @brief How a shape is cut into work (Plan) and how the work is walked: the rows of a block,
/// and the schedule of a pass over blocks, chunks and threads.
///
/// Arithmetic is fixed by the shape alone: a channel's values are cut into chunks of whole
/// images (Plan::images_per_chunk); each chunk is reduced with LaneSum in (n, h, w) order; chunk
/// results are combined left to right. Which thread does which block or chunk, and whether a
/// block's passes run back to back, changes only the order of independent work, never a bit.

/// How a shape is cut into work.
struct Plan {
  /// Values per chunk: a chunk's x (and dy) stays in L2 between the passes of the two-pass
  /// statistics (the fallback of the shifted one-pass statistics and of other layouts).
  static constexpr index_t kChunkValues = 65536;
  /// Pixels per item of a channels-last reduction at least (see images_per_item).
  static constexpr index_t kMinItemPixels = 64;
  /// Values per block of short channels: a block's x (and dy) is read again by its map right
  /// after its reduction. Where the last level serves as a cache, an eighth of it in float (1M
  /// values of a 32 MiB L3), the second read from L3 at the latest: measured on 7x7 to 28x28
  /// planes with a 32 MiB L3, blocks of 64K values (so that they stay in L2) ran 1.3-1.6x
  /// slower than blocks of 1M, as each block's walk jumps from image to image and the jumps cost
  /// more than L3 reads. Where it does not, half an L2 of the reduction's inputs
  /// (`input_bytes` per value): on an Intel Xeon with 2 MiB L2s whose L3 read at about memory's
  /// speed, training forward went from 1.69x to 1.54x the floor (geomean of 10 NCHW shapes) and
  /// backward from 1.82x to 1.59x with blocks of 256K and 128K values against 15M.
  static index_t block_values(const CacheSizes& caches, bool last_level_fast,
                              std::size_t input_bytes) {
    if (last_level_fast) return std::max<index_t>(static_cast<index_t>(caches.last_level / 32), 1);
    return std::max<index_t>(static_cast<index_t>(caches.l2 / 2 / input_bytes), 1);
  }

  index_t images = 0, channels = 0;
  index_t images_per_chunk = 1, chunks = 0;  // the arithmetic: chunks of whole images
  index_t block = 1, blocks = 0;             // channels processed together: locality only
  index_t images_per_item = 1;               // channels-last reductions: images per item
  index_t threads = 1;                       // threads to use: 1 for tiny tensors
  bool stream = false;                       // non-temporal output stores
  bool stream_lines = false;                 // the same for outputs of whole lines (stream_to)
  bool pipelined = false;                    // long channels: see sweep_blocks

  /// Channels over several chunks are swept pipelined when the tensor streams and they hold
  /// more bytes (of x) than a core's L2, or the last level is no faster than memory.

  /// Tensors of fewer values run on one thread: starting a parallel region costs more than the
  /// work (2x2x2x2 training forward: 4.9 us against a 0.6 us floor).
  static constexpr index_t kThreadedValues = 32768;

  /// `tensors`: how many tensors of x's shape the pass reads or writes (2 forward, 3 backward).
  template <class T>
  Plan(const NCHWView<T>& x, std::size_t element_size, index_t tensors = 2)
      : images(x.n()), channels(x.c()), threads(x.size() < kThreadedValues ? 1 : max_threads()) {
    const CacheSizes caches = cache_sizes();  // locality only: blocks, stores, pipelining
    const std::size_t traffic =
        static_cast<std::size_t>(x.size()) * element_size * static_cast<std::size_t>(tensors);
    // The L2s of the threads: what fits needs no more of the cache hierarchy; past them the
    // plan needs to know whether the last level serves as a cache (probed once).
    const std::size_t l2s = caches.l2 * static_cast<std::size_t>(threads);
    const bool last_fast = traffic <= l2s || last_level_fast(caches);
    const index_t plane = std::max<index_t>(x.h() * x.w(), 1);
    images_per_chunk = std::clamp<index_t>(kChunkValues / plane, 1, std::max<index_t>(images, 1));
    chunks = (images + images_per_chunk - 1) / images_per_chunk;
    // Short channels: walk several at once in (n, c) order, so memory is read in runs of a
    // block's planes instead of one short plane per image. The blocks come in a multiple of the
    // thread count, so that the threads get equal shares. Only locality depends on this.
    if (chunks == 1 && channels > 0) {
      const index_t per_block =
          block_values(caches, last_fast, element_size * static_cast<std::size_t>(tensors - 1)) /
          std::max<index_t>(images * plane, 1);
      index_t want =
          std::max<index_t>(1, (channels + per_block - 1) / std::max<index_t>(per_block, 1));
      want = (want + threads - 1) / threads * threads;
      block = std::max<index_t>(1, (channels + want - 1) / want);
    }
    blocks = (channels + block - 1) / block;
    // Channels-last items hold all channels of whole images, about kChunkValues values, and at
    // least kMinItemPixels pixels: an item starts from a copy of every channel's accumulators
    // and ends with their sums, about 30 bytes a channel each way, which for an (N, C) tensor
    // of 4096 channels and items of 16 one-pixel images was half of the item's own x.
    images_per_item =
        std::clamp<index_t>(std::max(kChunkValues / std::max<index_t>(plane * channels, 1),
                                     (kMinItemPixels + plane - 1) / std::max<index_t>(plane, 1)),
                            1, std::max<index_t>(images, 1));
    // Non-temporal stores once the traffic overflows the caches that hold outputs: the last
    // level, or the L2s where it serves no better than memory (there, regular stores took
    // 1.5-1.9x the time of non-temporal ones from 4 MB of traffic up).
    stream = traffic >= (last_fast ? caches.last_level : l2s);
    // Outputs the kernels write in whole cache lines stream from three quarters of a last level
    // that is a cache. There the floors' two kinds of store tied on an AMD EPYC Zen 4 (26 MB of
    // traffic, 32 MiB L3), and on a Zen 3 under KVM, whose L3 other machines share, non-temporal
    // ones won (2 threads, min of 7 alternating runs, 25.7 MB, regular -> non-temporal:
    // 32x128x28x28 training forward 1.35 -> 1.02 ms, channels-last 1.48 -> 0.99; channels-last
    // 32x2048x7x7 inference 0.66 -> 0.54; NCHW 32x2048x7x7 through map_plane_lines, inference
    // 1.00 -> 0.65, 32x512x14x14 training forward 1.45 -> 0.86). Outputs through stream.hpp's
    // L1 buffer keep regular stores up to the last level's size: the buffer cost more than
    // streaming saved there (NCHW 32x2048x7x7 inference 0.74 -> 1.09 ms before map_plane_lines).
    stream_lines = stream || (last_fast && traffic >= caches.last_level / 4 * 3);
    // Pipelined sweeps pay only for long channels (one channel a block, over several chunks),
    // which the map would read from L3 anyway. Paired with the floor, 2 threads, medians of 5
    // alternating rounds, unpipelined -> pipelined: 32x64x112x112 (1.6 MB channels) training
    // forward 1.43x -> 1.34x, backward 1.62x -> 1.47x; 32x512x28x28 (blocks of 37 channels,
    // 3.7 MB) training forward 1.67x -> 1.65x, backward 1.69x -> 1.83x; 32x256x56x56 (400 KB
    // channels, 4 rounds) training forward 1.50x -> 1.59x (AMD EPYC, 32 MiB L3). Where the last
    // level is no faster than memory, a core's reads from memory are what the pass waits for
    // on any long channel (Intel Xeon, 2 MiB L2s, 2 rounds of 5): 32x256x56x56 training forward
    // 1.34x/1.38x -> 1.25x/1.18x, 32x64x56x56 1.28x/1.20x -> 1.12x/1.12x, backward
    // 32x64x112x112 1.96x/1.93x -> 1.84x/1.79x, the others even.
    pipelined = stream && chunks > 1 &&
                (!last_fast || static_cast<std::size_t>(images * plane) * element_size > caches.l2);
  }

  index_t block_begin(index_t b) const { return b * block; }
  index_t block_end(index_t b) const { return std::min(channels, (b + 1) * block); }
  index_t chunk_begin(index_t k) const { return k * images_per_chunk; }
  index_t chunk_end(index_t k) const { return std::min(images, (k + 1) * images_per_chunk); }
  index_t items() const { return (images + images_per_item - 1) / images_per_item; }
  index_t item_begin(index_t k) const { return k * images_per_item; }
  index_t item_end(index_t k) const { return std::min(images, (k + 1) * images_per_item); }
  /// Enough blocks to keep every thread busy: each thread runs the passes of its own blocks
  /// (sweep_blocks), the blocks a multiple of the threads or at least 4 a thread (at most 25%
  /// more for the busiest). Otherwise the caller spreads (block, chunk) items over the threads
  /// pass by pass: with 3 channels of 32 chunks on 2 threads (32x3x224x224) training forward
  /// took 1.17 ms that way against 1.55 ms with one thread running two channels, backward 1.77
  /// against 2.46 ms.
  bool blocks_fill_threads() const {
    return blocks >= threads && (blocks % threads == 0 || blocks >= 4 * threads);
  }

  /// Whether a pass writes `out` with non-temporal stores: `stream`, or `stream_lines` where the
  /// kernels store out in whole cache lines: NCHW planes of whole lines, or of at least a pack
  /// and adjacent in each image (map_plane_lines), or channels-last pixels whose groups of 16
  /// channels are whole lines.
  template <class T>
  bool stream_to(const NCHWView<T>& out) const {
#if defined(BNORM_HAVE_PACKS)
    if (stream || !stream_lines) return stream;
    if (planes_contiguous(out))
      return lines_aligned(Planes<T>(out)) || plane_lines_apply(true, Planes<T>(out));
    return pixels_contiguous(out) && pixel_lines_aligned(out, 0, out.c());
#else
    (void)out;
    return stream;
#endif
  }
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

/// f(c) for every channel of the plan, split over its threads when the channels are many: a
/// channel's constants cost a square root and divisions, some 15-20 cycles, and starting a
/// parallel region about as much as a few hundred of them. (An (N, C) tensor of 4096 channels
/// spent a tenth of its training forward on them, the other thread waiting.)
template <class F>
void for_each_channel(const Plan& p, const F& f) {
  constexpr index_t kParallelChannels = 1024;
  const index_t threads = p.channels >= kParallelChannels ? p.threads : 1;
  parallel_for(
      threads,
      [&](index_t t) {
        for (index_t c = p.channels * t / threads; c < p.channels * (t + 1) / threads; ++c) f(c);
      },
      threads);
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
