/// @file detail/per_isa/plane_kernels.hpp
/// @brief Walks views whose (n, c) planes are contiguous runs (NCHW and its sub-views) in
/// 16-lane packs: the elementwise driver of the fused kernels.
///
/// It walks a block of channels [c0, c1) over images [n0, n1) in (n, c) order, which is memory
/// order in NCHW, and takes per-channel work as a factory: value(c) returns the function applied
/// to the packs of channel c, so per-channel constants are set up once per plane, not per
/// element. The same function is applied to the scalars of a plane's tail.

#if defined(BNORM_HAVE_PACKS)

/// The (n, c) planes of a view whose planes are contiguous runs of H*W elements.
template <class T>
struct Planes {
  T* data;
  index_t image_stride, channel_stride, len;

  template <class V>
  explicit Planes(const V& v)
      : data(v.data()),
        image_stride(v.stride(0)),
        channel_stride(v.stride(1)),
        len(v.h() * v.w()) {}
  T* operator()(index_t n, index_t c) const { return data + n * image_stride + c * channel_stride; }
};

/// True when every view stores each (n, c) plane as one contiguous run.
template <class... V>
bool planes_contiguous(const V&... v) {
  const RowLayout layout(v...);
  return layout.unit && layout.rows == 1;
}

/// Prefetch of the planes one image ahead, a cache line at a time as the current planes are
/// walked. A block narrower than the tensor makes the walk jump from image n's planes to image
/// n + 1's; the hardware prefetchers, which follow runs within a page, would start cold after
/// every jump (measured: the statistics of 32x256x56x56 ran at half the speed of a plain sum).
/// Prefetching a whole plane at once instead floods the miss buffers and gained nothing.
template <class T, std::size_t K>
class NextPlanes {
 public:
  static constexpr index_t kMaxRunBytes = 65536;

  /// On when the block [c0, c1) does not span all `channels` (else NCHW memory is one run) and
  /// its planes of one image, of `len` values each, make a run of at most kMaxRunBytes: longer
  /// runs train the hardware prefetchers, and the extra instructions then cost more than the
  /// jumps (normalising 32x2048x7x7 in blocks of 512 channels: 0.81 ms with, 0.59 without).
  NextPlanes(index_t c0, index_t c1, index_t channels, index_t len)
      : on_(c1 - c0 < channels && (c1 - c0) * len * index_t{sizeof(T)} <= kMaxRunBytes) {}

  /// Aims at plane (n + 1, c) of each input, or at nothing when n + 1 is past the range.
  template <class... P>
  void aim(index_t n, index_t n1, index_t c, const P&... in) {
    active_ = on_ && n + 1 < n1;
    if (active_) next_ = {in(n + 1, c)...};
  }
  /// Prefetches the lines of the pack at element i of the aimed planes.
  BNORM_PREFETCHING void at(index_t i) const {
    if (!active_) return;
    for (const T* q : next_)
      for (std::size_t b = 0; b < kPackLanes * sizeof(T); b += 64)
        __builtin_prefetch(reinterpret_cast<const char*>(q + i) + b, 0, 2);
  }

 private:
  bool on_, active_ = false;
  std::array<const T*, K> next_{};
};

/// True when every plane of v starts on a cache line and holds whole packs, so that its packs
/// are whole lines.
template <class T>
bool lines_aligned(const Planes<T>& v) {
  constexpr index_t kLine = 64 / static_cast<index_t>(sizeof(T));
  return reinterpret_cast<std::uintptr_t>(v.data) % 64 == 0 && v.image_stride % kLine == 0 &&
         v.channel_stride % kLine == 0 && v.len % kPackLanes == 0;
}

/// Collects a contiguous output run in a small L1 buffer laid over the run's cache lines, and
/// writes each full buffer out with non-temporal stores. A run made of many short planes (a
/// block's planes in one image) is streamed in whole lines, not plane by plane with partial
/// lines at every plane boundary.
template <class T>
class StreamedRun {
 public:
  static constexpr index_t kBuffer = 1024;  // a multiple of a cache line's values

  /// Starts a run at dst (flush the previous one first).
  void start(T* dst) {
    const auto offset = reinterpret_cast<std::uintptr_t>(dst) % 64;
    const index_t lead = offset % sizeof(T) == 0 ? static_cast<index_t>(offset / sizeof(T)) : 0;
    dst_ = dst;
    base_ = -lead;
    fill_ = lead;
  }
  /// Room for up to `want` next values of the run: returns where to put them and how many fit.
  T* room(index_t want, index_t& got) {
    if (fill_ == kBuffer) flush();
    got = std::min(want, kBuffer - fill_);
    T* p = buffer_ + fill_;
    fill_ += got;
    return p;
  }
  /// Writes out what the buffer holds.
  void flush() {
    const index_t skip = base_ < 0 ? -base_ : 0;  // slots before the run's start
    if (fill_ > skip) copy_streaming(dst_ + base_ + skip, buffer_ + skip, fill_ - skip);
    base_ += fill_;
    fill_ = 0;
  }

 private:
  alignas(64) T buffer_[kBuffer];
  T* dst_ = nullptr;
  index_t base_ = 0, fill_ = 0;
};

/// For channels [c0, c1) of `channels` and images [n0, n1): every element of out is
/// value(c)(v...), v the same element of each input view. value(c) must accept packs and
/// scalars. With `stream`, outputs go through an L1 buffer and out with non-temporal stores, a
/// block's planes of one image as one run when they are adjacent in memory. An output may be
/// one of the inputs (every element is read before it is written).
template <class T, class Value, class... P>
void map_planes(index_t channels, index_t c0, index_t c1, index_t n0, index_t n1, bool stream,
                const Planes<T>& out, const Value& value, const P&... in) {
  const index_t len = out.len;
  NextPlanes<std::remove_const_t<T>, sizeof...(P)> next(c0, c1, channels, len);
  // o[i] = f(in[i]...) for i in [0, m): packs written by put, then the tail
  const auto compute = [&next](const auto& put, T* o, index_t i0, index_t m, const auto& f,
                               const auto*... src) {
    index_t i = 0;
    for (; i + kPackLanes <= m; i += kPackLanes) {
      next.at(i0 + i);
      put(o + i, f(load_pack(src + i)...));
    }
    for (; i < m; ++i) o[i] = from_compute<T>(f(to_compute(src[i])...));
  };
  // Every plane straight into the output, each pack by put.
  const auto walk = [&](const auto& put) {
    for (index_t n = n0; n < n1; ++n)
      for (index_t c = c0; c < c1; ++c) {
        next.aim(n, n1, c, in...);
        compute(put, out(n, c), 0, len, value(c), in(n, c)...);
      }
  };
  if (!stream || lines_aligned(out)) {  // streamed: every pack is whole lines, stream it
    walk_storing<T>(stream, walk);
    return;
  }
  const auto store = [](T* p, const auto& a) { store_pack(p, a); };
  const bool adjacent = out.channel_stride == len;  // a block's planes in one image: one run
  StreamedRun<T> run;
  for (index_t n = n0; n < n1; ++n)
    for (index_t c = c0; c < c1; ++c) {
      next.aim(n, n1, c, in...);
      if (!adjacent || c == c0) {
        if (n != n0 || c != c0) run.flush();
        run.start(out(n, c));
      }
      const auto f = value(c);
      for (index_t i0 = 0, m = 0; i0 < len; i0 += m) {
        T* o = run.room(len - i0, m);
        compute(store, o, i0, m, f, (in(n, c) + i0)...);
      }
    }
  run.flush();
  streaming_fence();
}

/// to = from, an accumulator of packs (a multiple of a register's size), copied one register at
/// a time: GCC copies one of 400 bytes with `rep movsq` through the stack under the AVX2 target
/// region, which on 7x7 planes cost more than the plane's arithmetic.
template <class Acc>
void copy_registers(Acc& to, const Acc& from) {
  static_assert(sizeof(Acc) % sizeof(WideVec) == 0, "an accumulator of whole registers");
  auto* t = reinterpret_cast<char*>(&to);
  const auto* f = reinterpret_cast<const char*>(&from);
  for (std::size_t b = 0; b < sizeof(Acc); b += sizeof(WideVec)) {
    WideVec r;
    std::memcpy(&r, f + b, sizeof r);
    std::memcpy(t + b, &r, sizeof r);
  }
}

/// An accumulator to work on in registers: a copy of its slot.
template <class Acc>
Acc in_registers(const Acc& slot) {
  Acc a;
  copy_registers(a, slot);
  return a;
}

/// An accumulator worked on in registers, back into its slot: all of it by default; an
/// accumulator with constants of its own overloads this (found by ADL) to store its sums only.
template <class Acc>
void put_back(Acc& to, const Acc& from) {
  copy_registers(to, from);
}

/// Runs f(a) on the accumulator of `slot`: a copy in registers (in_registers, put_back) when it
/// fits in 16 of the widest ones, the slot itself otherwise. A larger one cannot stay in
/// registers anyway, and its whole copies cost more than its work (GatedGradSums, 608 bytes
/// under AVX2, copied in and out of the stack for each 7x7 plane: ReLU's backward 2.5x the time
/// of BatchNorm's alone); GatedGradSums overloads this to copy its sums alone (grad_sums.hpp).
template <class Acc, class F>
void with_accumulator(Acc& slot, const F& f) {
  if constexpr (sizeof(Acc) <= 16 * sizeof(WideVec)) {
    Acc a = in_registers(slot);
    f(a);
    put_back(slot, a);
  } else {
    f(slot);
  }
}

/// Lanes of a plane's last pack that are new: a plane of len >= kPackLanes whose length is not a
/// multiple of kPackLanes ends with a pack loaded at len - kPackLanes, overlapping the last full
/// pack; keep[j] is 1 for its lanes past the full packs and 0 for those already added.
inline Wide tail_keep(index_t len) {
  double keep[kPackLanes];
  const index_t full = len / kPackLanes * kPackLanes;
  for (index_t j = 0; j < kPackLanes; ++j) keep[j] = len - kPackLanes + j >= full ? 1.0 : 0.0;
  return load_wide(keep);
}

/// A plane's last len % kPackLanes values go one by one into an accumulator's scalar sums when
/// they are at most this many: an overlapping last pack costs as much as a full one (on 7x7
/// planes the statistics ran 20% faster without it), while a few scalar operations cost less.
inline constexpr index_t kScalarTail = 4;

/// For channels [c0, c1) of `channels` and images [n0, n1), planes at least kPackLanes long, in
/// (n, c) order: acc[c - c0].add(p...) for every full pack of plane (n, c), p pointing at the
/// same element of each input view; then the plane's last len % kPackLanes values, when there
/// are any: one by one by acc[c - c0].add_scalar(p...) when at most kScalarTail, else as one
/// overlapping last pack by acc[c - c0].add(keep, p...) (see tail_keep). The accumulator is
/// copied into registers for the plane and back once where it fits (with_accumulator). Which lane
/// of which accumulator receives which element depends on the plane length alone.
template <class Acc, class T, class... P>
void reduce_planes(index_t channels, index_t c0, index_t c1, index_t n0, index_t n1, Acc* acc,
                   const Planes<const T>& first, const P&... rest) {
  const index_t len = first.len;
  const index_t last = len - kPackLanes;  // >= 0
  const index_t left = len % kPackLanes;  // values after the full packs
  const bool scalar_tail = left > 0 && left <= kScalarTail, pack_tail = left > kScalarTail;
  const Wide keep = tail_keep(len);
  NextPlanes<T, 1 + sizeof...(P)> next(c0, c1, channels, len);
  for (index_t n = n0; n < n1; ++n)
    for (index_t c = c0; c < c1; ++c) {
      next.aim(n, n1, c, first, rest...);
      [&](const T* p, const auto*... q) {
        with_accumulator(acc[c - c0], [&](auto& a) {
          for (index_t i = 0; i <= last; i += kPackLanes) {
            next.at(i);
            a.add(p + i, (q + i)...);
          }
          if (pack_tail) a.add(keep, p + last, (q + last)...);
        });
        // The scalar sums in the slot, not in the copy: through the copy, GCC moved the
        // accumulator's scalar words through general registers on every plane (7x7 planes:
        // 1.7x the time of the loop without them, in a microbenchmark).
        if (scalar_tail)
          for (index_t i = len - left; i < len; ++i) acc[c - c0].add_scalar(p + i, (q + i)...);
      }(first(n, c), rest(n, c)...);
    }
}

/// reduce_planes over channels [r0, r0 + width) and map_planes over channels [m0, m0 + width) of
/// the same images [n0, n1) in one sweep, for planes of whole packs: plane (n, r0 + j) is
/// reduced into acc[j] while plane (n, m0 + j) is mapped into out, pack by pack. The reduction
/// adds what reduce_planes adds, in the same order, and the map writes what map_planes writes:
/// only the timing changes. A core then has the reduction's reads and the map's writes in
/// flight together (measured: one core reads about 19 GB/s from DRAM whether or not it also
/// writes 19 GB/s, so a pass that reads in one sweep and writes in the next takes the sum of
/// the two). With `stream`, every plane of out must start a cache line.
template <class Acc, class T, class Value, class... P>
void reduce_and_map_planes(index_t channels, index_t r0, index_t m0, index_t width, index_t n0,
                           index_t n1, Acc* acc, bool stream, const Planes<T>& out,
                           const Value& value, const P&... in) {
  const index_t len = out.len;  // a multiple of kPackLanes
  NextPlanes<std::remove_const_t<T>, sizeof...(P)> next(r0, r0 + width, channels, len);
  const auto walk = [&](const auto& put) {
    for (index_t n = n0; n < n1; ++n)
      for (index_t j = 0; j < width; ++j) {
        next.aim(n, n1, r0 + j, in...);
        const auto f = value(m0 + j);
        T* o = out(n, m0 + j);
        with_accumulator(acc[j], [&](auto& a) {
          [&](const auto*... r) {
            [&](const auto*... m) {
              // acc += reduction terms of (r...); o = f(m...)
              for (index_t i = 0; i < len; i += kPackLanes) {
                next.at(i);
                a.add((r + i)...);
                put(o + i, f(load_pack(m + i)...));
              }
            }(in(n, m0 + j)...);
          }(in(n, r0 + j)...);
        });
      }
  };
  walk_storing<T>(stream, walk);
}

#endif
