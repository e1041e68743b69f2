// bnorm views over the benchmark buffers.
#pragma once

#include <bnorm/bnorm.hpp>

#include "shapes.hpp"

namespace bnorm_bench {

inline bnorm::NCHWView<const float> input_view(const float* p, const Shape& s) {
  return bnorm::NCHWView<const float>(p, s.n, s.c, s.h, s.w);
}

inline bnorm::NCHWView<float> output_view(float* p, const Shape& s) {
  return bnorm::NCHWView<float>(p, s.n, s.c, s.h, s.w);
}

}  // namespace bnorm_bench
