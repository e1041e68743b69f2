// The tensor shapes the benchmarks sweep, and their names in benchmark ids.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace bnorm_bench {

using index_t = std::ptrdiff_t;

struct Shape {
  index_t n, c, h, w;

  index_t size() const { return n * c * h * w; }
  // "32x64x112x112": the last component of every benchmark name.
  std::string name() const {
    return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" +
           std::to_string(w);
  }
  bool operator==(const Shape& o) const { return n == o.n && c == o.c && h == o.h && w == o.w; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
};

// The BatchNorm2d inputs of ResNet-50 at batch 32, largest first, then a mid-size batch, two
// channel counts that are not multiples of 16 (an input layer's 3 channels at 224x224, and
// MobileNetV2's 24 at 56x56), and the 2x2x2x2 case of the notebook the library started from
// (pure call overhead). report.py holds the "32x" rows to the ResNet-50 targets.
inline std::vector<Shape> bench_shapes() {
  return {{32, 64, 112, 112}, {32, 256, 56, 56},  {32, 64, 56, 56},  {32, 512, 28, 28},
          {32, 128, 28, 28},  {32, 1024, 14, 14}, {32, 256, 14, 14}, {32, 2048, 7, 7},
          {32, 512, 7, 7},    {8, 64, 56, 56},    {8, 3, 224, 224},  {8, 24, 56, 56},
          {2, 2, 2, 2}};
}

// The shapes on which staged and fused are compared.
inline std::vector<Shape> variant_shapes() {
  return {{2, 2, 2, 2}, {8, 64, 56, 56}, {32, 64, 28, 28}};
}

}  // namespace bnorm_bench
