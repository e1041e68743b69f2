// The float32 tensors and parameters of one shape, shared by every benchmark of that shape.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <memory>

#include "buffers.hpp"
#include "shapes.hpp"

namespace bnorm_bench {

struct Workspace {
  explicit Workspace(const Shape& s, std::uint64_t gen)
      : shape(s),
        generation(gen),
        x(s.size()),
        y(s.size()),
        dy(s.size()),
        dx(s.size()),
        weight(s.c),
        bias(s.c),
        running_mean(s.c),
        running_var(s.c) {
    // Centred off zero and not unit-scaled, so no kernel sees a trivially normalised input.
    fill_uniform(x.data(), s.size(), 1, -1.5, 2.5);
    fill_uniform(dy.data(), s.size(), 2, -1.0, 1.0);
    // The outputs are written once here so no timed call pays for first-touch page faults.
    fill_uniform(y.data(), s.size(), 3, 0.0, 0.0);
    fill_uniform(dx.data(), s.size(), 4, 0.0, 0.0);
    fill_uniform(weight.data(), s.c, 5, 0.5, 1.5);
    fill_uniform(bias.data(), s.c, 6, -0.5, 0.5);
    fill_uniform(running_mean.data(), s.c, 7, -0.5, 0.5);
    fill_uniform(running_var.data(), s.c, 8, 0.5, 2.0);
  }

  Shape shape;
  std::uint64_t generation;  // lets peers that cache views of these buffers notice a rebuild
  AlignedBuffer<float> x, y, dy, dx;
  Eigen::ArrayXf weight, bias, running_mean, running_var;
};

// The workspace of shape s. Google Benchmark calls a benchmark function several times (to size
// the iteration count, then once per repetition); benchmarks are registered shape by shape, so
// keeping only the current shape's data fills each shape once and bounds memory to one shape.
inline Workspace& workspace(const Shape& s) {
  static std::unique_ptr<Workspace> current;
  static std::uint64_t generations = 0;
  if (!current || current->shape != s) {
    current.reset();  // free the old shape first: the largest needs ~400 MB
    current = std::make_unique<Workspace>(s, ++generations);
  }
  return *current;
}

}  // namespace bnorm_bench
