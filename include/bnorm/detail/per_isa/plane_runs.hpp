/// @file detail/per_isa/plane_runs.hpp
/// @brief Elementwise walks of a block's adjacent NCHW planes as one run: packs that span two
/// planes take each lane's constants from its own plane, so short planes need no per-plane
/// set-up (groups of 16 planes under 64 values, AVX-512) and streamed outputs need no L1
/// buffer (packs on the output's cache lines).

#if defined(BNORM_HAVE_PACKS)

/// A pack whose lanes [0, n) hold `first` and the others `second`: the constants of a pack that
/// spans the end of one plane and the start of the next.
template <class T>
Pack<T> split_pack(T first, T second, index_t n) {
  using Native = typename Pack<T>::Native;
  Native lane{};
  for (index_t j = 0; j < Pack<T>::kPartLanes; ++j) lane[j] = static_cast<T>(j);
  const Native zero{}, a = first - zero, b = second - zero, bound = static_cast<T>(n) - zero;
  Pack<T> r;
  for (std::size_t q = 0; q < Pack<T>::kParts; ++q)
    r.part[q] = lane + static_cast<T>(q * Pack<T>::kPartLanes) < bound ? a : b;
  return r;
}

/// True when map_plane_lines applies: streamed output planes of at least a pack that are not
/// whole lines (map_planes streams those directly), each image's planes adjacent in every view.
template <class T, class... P>
bool plane_lines_apply(bool stream, const Planes<T>& out, const P&... in) {
  const index_t len = out.len;
  return stream && len >= kPackLanes && !lines_aligned(out) && out.channel_stride == len &&
         ((in.channel_stride == len) && ...);
}

/// For channels [c0, c1) and images [n0, n1) where plane_lines_apply: each image's run of the
/// block's planes is walked in packs that start on the output's cache lines and go out with
/// non-temporal stores, without map_planes' L1 buffer. A pack within plane c is value(c)(v...);
/// one that spans planes c and c + 1, with b of its values in c, is split(c, b)(v...), whose
/// constants are c's in lanes [0, b) and c + 1's in the others. The run's partial first and
/// last lines go value by value with regular stores. An output may be one of the inputs.
template <class T, class Value, class Split, class... P>
void map_plane_lines(index_t channels, index_t c0, index_t c1, index_t n0, index_t n1,
                     const Planes<T>& out, const Value& value, const Split& split, const P&... in) {
  const index_t len = out.len, run = (c1 - c0) * len;
  NextPlanes<std::remove_const_t<T>, sizeof...(P)> next(c0, c1, channels, len);
  for (index_t n = n0; n < n1; ++n) {
    T* o = out(n, c0);
    const auto misaligned = reinterpret_cast<std::uintptr_t>(o) % 64;
    // values before the first line (fewer than a pack, all in plane c0)
    const index_t head = std::min(run, static_cast<index_t>((64 - misaligned) % 64 / sizeof(T)));
    next.aim(n, n1, c0, in...);
    [&](const auto*... src) {
      const auto f0 = value(c0);
      // o[i] = f(src[i]...) with plane c's constants f
      for (index_t i = 0; i < head; ++i) o[i] = from_compute<T>(f0(to_compute(src[i])...));
      index_t i = head;
      for (index_t c = c0; c < c1; ++c) {
        const index_t end = (c - c0 + 1) * len;  // plane c ends here in the run
        const auto f = value(c);
        for (; i + kPackLanes <= end; i += kPackLanes) {
          next.at(i);
          stream_pack(o + i, f(load_pack(src + i)...));
        }
        if (i < end && i + kPackLanes <= run) {  // a pack across planes c and c + 1
          next.at(i);
          stream_pack(o + i, split(c, end - i)(load_pack(src + i)...));
          i += kPackLanes;
        }
      }
      for (; i < run; ++i)  // the last partial line
        o[i] = from_compute<T>(value(c0 + i / len)(to_compute(src[i])...));
    }(in(n, c0)...);
  }
  streaming_fence();
}

#if BNORM_KERNEL_ISA >= BNORM_ISA_AVX512
/// The plane of each lane of a pack: index vectors for a lane permutation.
struct PackPlanes {
  alignas(64) std::int32_t lane[kPackLanes];
};

/// Sixteen adjacent planes of len values each (a group of channels of one image in NCHW) make
/// a run of len whole packs; lane j of the run's pack p lies in plane (16 p + j) / len. Returns
/// those plane indices for every pack of the run.
inline std::vector<PackPlanes> group_lanes(index_t len) {
  std::vector<PackPlanes> lanes(static_cast<std::size_t>(len));
  for (index_t p = 0, at = 0; p < len; ++p)
    for (index_t j = 0; j < kPackLanes; ++j, ++at)
      lanes[static_cast<std::size_t>(p)].lane[j] = static_cast<std::int32_t>(at / len);
  return lanes;
}

/// Planes shorter than this go through map_plane_groups where it applies. Measured against the
/// plane-by-plane walk (2 threads, 32x256xHxH, normalisation / input gradient): 5x5 26 -> 12 and
/// 40 -> 17 us, 7x7 27 -> 22 and 38 -> 31 us, 9x9 and 10x10 even, 11x11 to 14x14 slower (the
/// lane table and the permutations cost more than the per-plane set-up they save).
inline constexpr index_t kMaxGroupedPlane = 64;

/// True when map_plane_groups applies to these float views over channels [c0, c1): planes of
/// more than a pack, fewer than kMaxGroupedPlane values and not a multiple of a pack (else
/// every plane is whole packs already), each image's planes adjacent, at least one group of 16
/// channels, and, for non-temporal stores, every group's run starting on a cache line.
template <class... P>
bool plane_groups_apply(index_t c0, index_t c1, bool stream, const Planes<float>& out,
                        const P&... in) {
  const index_t len = out.len;
  const bool adjacent = out.channel_stride == len && ((in.channel_stride == len) && ...);
  const bool lines = reinterpret_cast<std::uintptr_t>(out.data) % 64 == 0 &&
                     out.image_stride % kPackLanes == 0 && c0 * len % kPackLanes == 0;
  return len > kPackLanes && len < kMaxGroupedPlane && len % kPackLanes != 0 && adjacent &&
         c1 - c0 >= kPackLanes && (!stream || lines);
}

/// For float channels [c0, c1) and images [n0, n1) where plane_groups_apply: each group of 16
/// channels of an image is one run of whole packs, computed as group(cg)(lanes, v...) with
/// lanes = group_lanes(len)[p] for the run's pack p, so a pack that spans two planes takes each
/// lane's constants from its own channel (no per-plane set-up, no scalar tails). The channels
/// past the last whole group go through map_planes with value. With `stream`, non-temporal
/// stores. An output may be one of the inputs.
template <class Group, class Value, class... P>
void map_plane_groups(index_t channels, index_t c0, index_t c1, index_t n0, index_t n1, bool stream,
                      const Planes<float>& out, const Group& group, const Value& value,
                      const P&... in) {
  const index_t len = out.len;
  const index_t whole = c0 + (c1 - c0) / kPackLanes * kPackLanes;  // end of the whole groups
  const std::vector<PackPlanes> lanes = group_lanes(len);
  NextPlanes<float, sizeof...(P)> next(c0, c1, channels, len);
  const auto walk = [&](const auto& put) {
    for (index_t n = n0; n < n1; ++n)
      for (index_t cg = c0; cg < whole; cg += kPackLanes) {
        next.aim(n, n1, cg, in...);
        const auto g = group(cg);
        float* o = out(n, cg);
        [&](const auto*... src) {
          // o[i] = f(src[i]..., constants of the channel of element i) for the run's 16 * len
          for (index_t p = 0; p < len; ++p) {
            next.at(p * kPackLanes);
            put(o + p * kPackLanes,
                g(lanes[static_cast<std::size_t>(p)], load_pack(src + p * kPackLanes)...));
          }
        }(in(n, cg)...);
      }
  };
  walk_storing<float>(stream, walk);
  if (whole < c1) map_planes(channels, whole, c1, n0, n1, stream, out, value, in...);
}
#endif

#endif
