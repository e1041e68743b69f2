/// @file detail/plane_kernels.hpp
/// @brief Walks views whose (n, c) planes are contiguous runs (NCHW and its sub-views) in
/// 16-lane packs: the elementwise driver of the fused kernels.
///
/// It walks a block of channels [c0, c1) over images [n0, n1) in (n, c) order, which is memory
/// order in NCHW, and takes per-channel work as a factory: value(c) returns the function applied
/// to the packs of channel c, so per-channel constants are set up once per plane, not per
/// element. The same function is applied to the scalars of a plane's tail.
#pragma once

#include "pack.hpp"

#if defined(BNORM_HAVE_PACKS)
#include <algorithm>
#include <array>
#include <cstddef>

#include "../nchw_view.hpp"
#include "prefetch.hpp"
#include "rows.hpp"
#include "stream.hpp"

namespace bnorm::detail {

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

/// Prefetches plane (m, c) of each view while the walk is at image n, when planes are short
/// (at most 4 KiB) and the block does not span all channels: a block's planes in the next image
/// are then a jump away that the hardware prefetchers do not follow.
template <class P0, class... P>
struct PlanePrefetch {
  bool on;
  index_t ahead;
  PlanePrefetch(index_t block, index_t channels, const P0& p0, const P&...) {
    const index_t bytes = p0.len * static_cast<index_t>(sizeof(*p0.data));
    on = bytes <= 4096 && block < channels;
    ahead = prefetch_distance(block * bytes);
  }
  void operator()(index_t n, index_t n0, index_t n1, index_t c, const P0& p0, const P&... p) const {
    if (on)
      prefetch_images(n, n0, n1, ahead, [&](index_t m) {
        prefetch_run(p0(m, c), p0.len);
        (prefetch_run(p(m, c), p.len), ...);
      });
  }
};

/// For channels [c0, c1) of `channels` and images [n0, n1): every element of out is
/// value(c)(v...), v the same element of each input view. value(c) must accept packs and
/// scalars. With `stream`, planes are computed into a buffer in L1 and copied out with
/// non-temporal stores. An output may be one of the inputs (every element is read before it is
/// written).
template <class T, class Value, class... P>
void map_planes(index_t channels, index_t c0, index_t c1, index_t n0, index_t n1, bool stream,
                const Planes<T>& out, const Value& value, const P&... in) {
  const index_t len = out.len;
  constexpr index_t kBuffer = 512;  // multiple of kPackLanes
  const PlanePrefetch<P...> prefetch(c1 - c0, channels, in...);
  // o[i] = f(in[i]...) for i in [0, m): packs, then the tail
  const auto compute = [](T* o, index_t m, const auto& f, const auto*... src) {
    index_t i = 0;
    for (; i + kPackLanes <= m; i += kPackLanes) store_pack(o + i, f(load_pack(src + i)...));
    for (; i < m; ++i) o[i] = f(src[i]...);
  };
  for (index_t n = n0; n < n1; ++n)
    for (index_t c = c0; c < c1; ++c) {
      prefetch(n, n0, n1, c, in...);
      const auto f = value(c);
      T* o = out(n, c);
      if (!stream) {
        compute(o, len, f, in(n, c)...);
        continue;
      }
      alignas(64) T buffer[kBuffer];
      for (index_t i0 = 0; i0 < len; i0 += kBuffer) {
        const index_t m = std::min(kBuffer, len - i0);
        compute(buffer, m, f, (in(n, c) + i0)...);
        copy_streaming(o + i0, buffer, m);
      }
    }
  if (stream) streaming_fence();
}

}  // namespace bnorm::detail

#endif
