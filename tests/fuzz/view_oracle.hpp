// Views: extents, layouts, and an independent oracle of what NCHWView's constructor accepts.
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_input.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <vector>

namespace {

index_t extent_from(Input& in) {
  const std::uint8_t b = in.byte();
  if (b < 200) return b % 6;  // 0..5 most of the time
  static const index_t special[] = {0,
                                    1,
                                    2,
                                    7,
                                    17,
                                    64,
                                    index_t{1} << 31,
                                    (index_t{1} << 32) + 1,
                                    index_t{1} << 40,
                                    index_t{1} << 62,
                                    kIndexMax,
                                    -1,
                                    -7,
                                    std::numeric_limits<index_t>::min()};
  return special[b % std::size(special)];
}

index_t sat_mul(index_t a, index_t b) {
  index_t r;
  return __builtin_mul_overflow(a, b, &r) ? kIndexMax : r;
}
index_t sat_add(index_t a, index_t b) {
  index_t r;
  return __builtin_add_overflow(a, b, &r) ? kIndexMax : r;
}

enum Form : std::uint8_t { kNCHW, kNHWC, kPermuted, kRaw, kBroadcast, kWild, kForms };

/// Strides for extents e in a form read from the input. known_unique: the form guarantees a
/// unique layout (the library must accept it as an output).
Shape strides_from(Input& in, Form form, const Shape& e, bool& known_unique) {
  auto ext = [&](int r) { return std::max<index_t>(e[static_cast<std::size_t>(r)], 0); };
  known_unique = false;
  switch (form) {
    case kNCHW:
      known_unique = true;
      return {sat_mul(ext(1), sat_mul(ext(2), ext(3))), sat_mul(ext(2), ext(3)), ext(3), 1};
    case kNHWC:
      known_unique = true;
      return {sat_mul(ext(2), sat_mul(ext(3), ext(1))), 1, sat_mul(ext(3), ext(1)), ext(1)};
    case kPermuted: {
      // A permutation of the axes, innermost first, with padding after each axis.
      std::array<int, 4> order{0, 1, 2, 3};
      for (std::size_t i = 3; i > 0; --i) std::swap(order[i], order[in.byte() % (i + 1)]);
      Shape s{};
      index_t next = 1 + in.byte() % 3;
      for (const int r : order) {
        s[static_cast<std::size_t>(r)] = next;
        next = sat_add(sat_mul(next, ext(r)), in.byte() % 4);
      }
      known_unique = true;
      return s;
    }
    case kRaw:
      return {in.byte() % 9, in.byte() % 9, in.byte() % 9, in.byte() % 9};
    case kBroadcast: {
      Shape s{sat_mul(ext(1), sat_mul(ext(2), ext(3))), sat_mul(ext(2), ext(3)), ext(3), 1};
      s[in.byte() % 4] = 0;
      return s;
    }
    default: {
      static const index_t wild[] = {0,
                                     1,
                                     2,
                                     5,
                                     60,
                                     index_t{1} << 31,
                                     index_t{1} << 40,
                                     kIndexMax / 2 + 1,
                                     kIndexMax,
                                     -1,
                                     -5,
                                     std::numeric_limits<index_t>::min()};
      return {in.pick(wild), in.pick(wild), in.pick(wild), in.pick(wild)};
    }
  }
}

/// What NCHWView's constructor must do with these extents and strides, worked out
/// independently: ok, and the span (largest offset + 1, 0 when empty).
struct ViewOracle {
  bool ok = true;
  index_t count = 0, span = 0;
};
ViewOracle view_oracle(const Shape& e, const Shape& s, bool null_data) {
  ViewOracle o;
  for (std::size_t r = 0; r < 4; ++r)
    if (e[r] < 0 || s[r] < 0) o.ok = false;
  if (!o.ok) return o;
  i128 nonzero = 1;
  for (std::size_t r = 0; r < 4; ++r) {
    nonzero *= std::max<index_t>(e[r], 1);
    if (nonzero > kIndexMax) o.ok = false;
    if (!o.ok) return o;
  }
  o.count = e[0] * e[1] * e[2] * e[3];
  if (o.count == 0) return o;
  i128 last = 0;
  for (std::size_t r = 0; r < 4; ++r) {
    last += static_cast<i128>(e[r] - 1) * s[r];
    if (last > kIndexMax) o.ok = false;
    if (!o.ok) return o;
  }
  if (null_data) o.ok = false;
  o.span = last == kIndexMax ? kIndexMax : static_cast<index_t>(last) + 1;  // (saturated)
  return o;
}

template <class T>
bool constructor_accepts(T* data, const Shape& e, const Shape& s) {
  try {
    bnorm::NCHWView<T> v(data, e, s);
    FUZZ_CHECK(v.extents() == e && v.strides() == s, "view keeps its extents and strides");
    return true;
  } catch (const std::invalid_argument& ex) {
    FUZZ_CHECK(std::strncmp(ex.what(), "bnorm: ", 7) == 0, ex.what());
    return false;
  }
}

/// Sorted offsets of every element of a view.
std::vector<index_t> offsets(const Shape& e, const Shape& s, index_t base) {
  std::vector<index_t> out;
  if (e[0] * e[1] * e[2] * e[3] == 0) return out;  // (an empty view may have huge extents)
  for (index_t n = 0; n < e[0]; ++n)
    for (index_t c = 0; c < e[1]; ++c)
      for (index_t h = 0; h < e[2]; ++h)
        for (index_t w = 0; w < e[3]; ++w)
          out.push_back(base + n * s[0] + c * s[1] + h * s[2] + w * s[3]);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace
