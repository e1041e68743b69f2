// Shared by the hardening suites (test_hardening.cpp, test_module_hardening.cpp): raw storage
// that shows any write, bitwise comparisons, and the non-unique output layouts with their
// messages.
#pragma once

#include <algorithm>
#include <cstring>
#include <iterator>
#include <set>

#include "test_support.hpp"

namespace bnorm_test {
namespace hardening {

template <class T>
using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
using bnorm::NCHWView;
using bnorm::Variant;

/// Raw storage filled with seeded random values everywhere (padding too), so that any write,
/// inside or outside a view, changes its bytes.
template <class T>
struct Storage {
  std::vector<T> data;
  Storage(index_t size, std::uint64_t seed) : data(static_cast<std::size_t>(size)) { refill(seed); }
  /// New random values, in place (views into the storage stay valid).
  void refill(std::uint64_t seed) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (auto& v : data) v = static_cast<T>(normal(gen));
  }
  NCHWView<T> view(index_t offset, const Shape& e, const Shape& s) {
    return NCHWView<T>(data.data() + offset, e, s);
  }
  bool operator==(const Storage& o) const {
    return data.size() == o.data.size() &&
           std::memcmp(data.data(), o.data.data(), data.size() * sizeof(T)) == 0;
  }
};

/// Values of a view in logical NCHW order.
template <class T>
std::vector<std::remove_const_t<T>> values(const NCHWView<T>& v) {
  std::vector<std::remove_const_t<T>> out;
  for (index_t n = 0; n < v.n(); ++n)
    for (index_t c = 0; c < v.c(); ++c)
      for (index_t h = 0; h < v.h(); ++h)
        for (index_t w = 0; w < v.w(); ++w) out.push_back(v(n, c, h, w));
  return out;
}
template <class T>
void set_values(const NCHWView<T>& v, const std::vector<T>& vals) {
  std::size_t i = 0;
  for (index_t n = 0; n < v.n(); ++n)
    for (index_t c = 0; c < v.c(); ++c)
      for (index_t h = 0; h < v.h(); ++h)
        for (index_t w = 0; w < v.w(); ++w) v(n, c, h, w) = vals[i++];
}

/// Offsets of every element of a view with these extents and strides, sorted.
inline std::vector<index_t> offsets(const Shape& e, const Shape& s, index_t base = 0) {
  std::vector<index_t> out;
  for (index_t n = 0; n < e[0]; ++n)
    for (index_t c = 0; c < e[1]; ++c)
      for (index_t h = 0; h < e[2]; ++h)
        for (index_t w = 0; w < e[3]; ++w)
          out.push_back(base + n * s[0] + c * s[1] + h * s[2] + w * s[3]);
  std::sort(out.begin(), out.end());
  return out;
}
inline bool brute_unique(const Shape& e, const Shape& s) {
  const auto o = offsets(e, s);
  return std::adjacent_find(o.begin(), o.end()) == o.end();
}
inline bool brute_share(const Shape& e, const Shape& sa, index_t a, const Shape& sb, index_t b) {
  const auto oa = offsets(e, sa, a), ob = offsets(e, sb, b);
  std::vector<index_t> common;
  std::set_intersection(oa.begin(), oa.end(), ob.begin(), ob.end(), std::back_inserter(common));
  return !common.empty();
}

const Shape kShape{2, 3, 4, 5};
const Shape kContiguous{60, 20, 5, 1};

const char* const kMsgZeroStride =
    " is an output and needs a unique layout (no element reached by two indices), got extents "
    "[2, 3, 4, 5] with strides [60, 0, 5, 1]: axis C (extent 3) has stride 0, expected >= 1";
const char* const kMsgRowsOverlap =
    " is an output and needs a unique layout (no element reached by two indices), got extents "
    "[2, 3, 4, 5] with strides [60, 20, 4, 1]: axis H (extent 4) has stride 4, expected >= 5 = "
    "stride 1 * extent 5 of axis W";
const char* const kMsgTiedStrides =
    " is an output and needs a unique layout (no element reached by two indices), got extents "
    "[2, 3, 4, 5] with strides [60, 5, 5, 1]: axis H (extent 4) has stride 5, expected >= 15 = "
    "stride 5 * extent 3 of axis C";

struct BadLayout {
  Shape strides;
  const char* message;
};
const BadLayout kBadLayouts[] = {{{60, 0, 5, 1}, kMsgZeroStride},
                                 {{60, 20, 4, 1}, kMsgRowsOverlap},
                                 {{60, 5, 5, 1}, kMsgTiedStrides}};

}  // namespace hardening
}  // namespace bnorm_test
