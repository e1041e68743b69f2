// bnorm views over the benchmark buffers, in either memory layout.
#pragma once

#include <bnorm/bnorm.hpp>

#include <string>

#include "shapes.hpp"

namespace bnorm_bench {

// The memory order of a benchmark's tensors: NCHW, or channels-last (NHWC memory, PyTorch's
// torch.channels_last). The buffers are the same; only the view over them changes.
enum class Layout { nchw, nhwc };

// The implementation's name in benchmark ids: "bnorm" for NCHW, "bnorm_nhwc" for channels-last.
inline std::string impl_name(const std::string& impl, Layout layout) {
  return layout == Layout::nchw ? impl : impl + "_nhwc";
}

template <class T>
bnorm::NCHWView<T> view(T* p, const Shape& s, Layout layout) {
  return layout == Layout::nchw ? bnorm::NCHWView<T>(p, s.n, s.c, s.h, s.w)
                                : bnorm::NCHWView<T>::channels_last(p, s.n, s.c, s.h, s.w);
}

inline bnorm::NCHWView<const float> input_view(const float* p, const Shape& s,
                                               Layout layout = Layout::nchw) {
  return view(p, s, layout);
}

inline bnorm::NCHWView<float> output_view(float* p, const Shape& s, Layout layout = Layout::nchw) {
  return view(p, s, layout);
}

}  // namespace bnorm_bench
