// Data: the values of views and of per-channel arrays, from seeds and regimes the input picks.
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_input.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

/// Per-channel offset and scale regimes, and rare special values (NaN, Inf, extremes).
template <class T>
std::vector<T> make_values(Input& in, const Shape& e) {
  const index_t count = e[0] * e[1] * e[2] * e[3];
  Rng rng{in.u32()};
  const std::uint8_t regime = in.byte(), special_rate = in.byte();
  if (count == 0) return {};  // (an empty view may have huge extents)
  const bool dbl = std::is_same_v<T, double>;
  static const double offsets[] = {0, 1, -3, 10, -250, 1e3, 1e6, -1e9, 1e12, 1e15};
  static const double scales[] = {1, 0.5, 2, 1e-3, 0, 1e3, 1e-20, 1e20, 1e30};
  std::vector<double> off(static_cast<std::size_t>(std::max<index_t>(e[1], 0))), scale(off.size());
  for (std::size_t c = 0; c < off.size(); ++c) {
    switch (regime % 6) {
      case 0:  // standard
        off[c] = 0, scale[c] = 1;
        break;
      case 1:  // moderate offsets and scales
        off[c] = offsets[rng.next() % 5], scale[c] = scales[rng.next() % 3];
        break;
      case 2:  // large offsets, small spread: the centring must keep its accuracy
        off[c] = offsets[5 + rng.next() % (dbl ? 5 : 2)], scale[c] = scales[rng.next() % 4];
        break;
      default:  // anything, constant channels and extremes included
        off[c] = offsets[rng.next() % std::size(offsets)];
        scale[c] = scales[rng.next() % std::size(scales)];
    }
  }
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             -0.0,
                             static_cast<double>(std::numeric_limits<T>::denorm_min()),
                             static_cast<double>(std::numeric_limits<T>::max()),
                             static_cast<double>(std::numeric_limits<T>::lowest()),
                             1e30};
  std::vector<T> v(static_cast<std::size_t>(count));
  const index_t plane = e[2] * e[3];
  for (index_t i = 0; i < count; ++i) {
    const auto c = static_cast<std::size_t>((i / plane) % e[1]);
    double x = off[c] + scale[c] * (static_cast<double>(rng.next() % 2001) - 1000.0) / 250.0;
    if (special_rate > 200 && rng.next() % 256 < static_cast<std::uint64_t>(special_rate - 200))
      x = specials[rng.next() % std::size(specials)];
    v[static_cast<std::size_t>(i)] = static_cast<T>(x);
  }
  return v;
}

template <class T>
Eigen::Array<T, Eigen::Dynamic, 1> make_array(Input& in, index_t size, double lo, double hi) {
  Rng rng{in.u32()};
  const std::uint8_t special = in.byte();
  Eigen::Array<T, Eigen::Dynamic, 1> a(size);
  for (index_t i = 0; i < size; ++i) a[i] = static_cast<T>(lo + (hi - lo) * rng.uniform());
  if (size > 0 && special >= 240) {  // a zero, negative, NaN or infinite entry
    const double odd[] = {0.0,
                          -1.5,
                          std::numeric_limits<double>::quiet_NaN(),
                          std::numeric_limits<double>::infinity(),
                          1e30,
                          -0.0};
    a[static_cast<index_t>(rng.next() % static_cast<std::uint64_t>(size))] =
        static_cast<T>(odd[special % std::size(odd)]);
  }
  return a;
}

}  // namespace
