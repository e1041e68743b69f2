// Shared helpers of the test suite: buffers in several layouts, seeded random data, error
// measures and a plain-loop long-double reference of BatchNorm2d.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <bnorm/bnorm.hpp>

#include "module_state.hpp"

namespace bnorm_test {

using bnorm::index_t;
using Shape = std::array<index_t, 4>;

using FloatTypes = ::testing::Types<float, double>;

/// Both variants, for the module tests that run each.
inline constexpr bnorm::Variant kVariants[] = {bnorm::Variant::staged, bnorm::Variant::fused};

/// Tolerance of the cross checks: relative to the largest magnitude of the reference.
template <class T>
double tolerance() {
  return std::is_same_v<T, double> ? 1e-12 : 1e-5;
}

inline std::string to_string(const Shape& s) {
  return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]) + "x" +
         std::to_string(s[3]);
}

inline index_t count(const Shape& s) {
  return s[0] * s[1] * s[2] * s[3];
}

/// Memory layouts a view can have over the same logical NCHW tensor.
enum class Layout {
  nchw,           // contiguous
  channels_last,  // NHWC memory
  padded_rows,    // a sub-block of a larger NCHW tensor: W-rows contiguous, planes not
  strided,        // a sub-block with every stride padded and a W stride of 2
};
inline const char* name(Layout l) {
  switch (l) {
    case Layout::nchw:
      return "nchw";
    case Layout::channels_last:
      return "channels_last";
    case Layout::padded_rows:
      return "padded_rows";
    case Layout::strided:
      return "strided";
  }
  return "?";
}
inline constexpr Layout kAllLayouts[] = {Layout::nchw, Layout::channels_last, Layout::padded_rows,
                                         Layout::strided};

/// Owns storage and hands out a view of it in the requested layout. Elements outside the view
/// (padding) hold a sentinel, so tests can check that nothing outside the view was written.
template <class T>
class Buffer {
 public:
  Buffer(Shape shape, Layout layout = Layout::nchw) : shape_(shape), layout_(layout) {
    const auto [n, c, h, w] = shape;
    std::array<index_t, 4> strides{};
    index_t offset = 0, total = 0;
    switch (layout) {
      case Layout::nchw:
        strides = {c * h * w, h * w, w, 1};
        total = n * c * h * w;
        break;
      case Layout::channels_last:
        strides = {h * w * c, 1, w * c, c};
        total = n * c * h * w;
        break;
      case Layout::padded_rows: {  // inside a (n, c + 1, h + 2, w + 3) tensor at (0, 1, 1, 2)
        const index_t W = w + 3, H = h + 2, C = c + 1;
        strides = {C * H * W, H * W, W, 1};
        offset = 1 * H * W + 1 * W + 2;
        total = n * C * H * W + offset;
        break;
      }
      case Layout::strided: {  // inside a (n + 1, c + 2, h + 1, 2w + 1) tensor, every other w
        const index_t W = 2 * w + 1, H = h + 1, C = c + 2;
        strides = {C * H * W, H * W, W, 2};
        offset = C * H * W + 2 * H * W + W + 1;
        total = (n + 1) * C * H * W;
        break;
      }
    }
    storage_.assign(static_cast<std::size_t>(std::max<index_t>(total, 1)), sentinel());
    view_ = bnorm::NCHWView<T>(storage_.data() + offset, shape, strides);
  }

  static T sentinel() { return static_cast<T>(-12345.25); }
  bnorm::NCHWView<T> view() const { return view_; }
  bnorm::NCHWView<const T> cview() const { return view_; }
  const Shape& shape() const { return shape_; }
  Layout layout() const { return layout_; }

  /// Values in logical NCHW order.
  std::vector<T> values() const {
    std::vector<T> out(static_cast<std::size_t>(count(shape_)));
    std::size_t i = 0;
    for_each([&](T& e) { out[i++] = e; });
    return out;
  }
  void set(const std::vector<T>& v) {
    std::size_t i = 0;
    for_each([&](T& e) { e = v[i++]; });
  }
  /// Number of storage elements outside the view that no longer hold the sentinel.
  index_t padding_changed() const {
    std::vector<char> inside(storage_.size(), 0);
    for_each([&](T& e) { inside[static_cast<std::size_t>(&e - storage_.data())] = 1; });
    index_t changed = 0;
    for (std::size_t i = 0; i < storage_.size(); ++i)
      if (!inside[i] && storage_[i] != sentinel()) ++changed;
    return changed;
  }

 private:
  // f(element) in logical NCHW order, by pointer steps (the view's operator() per element made
  // this copy most of some tests' time in unoptimised and sanitized builds)
  template <class F>
  void for_each(const F& f) const {
    const index_t sn = view_.stride(0), sc = view_.stride(1), sh = view_.stride(2),
                  sw = view_.stride(3);
    for (index_t n = 0; n < shape_[0]; ++n)
      for (index_t c = 0; c < shape_[1]; ++c)
        for (index_t h = 0; h < shape_[2]; ++h) {
          T* row = view_.data() + n * sn + c * sc + h * sh;
          for (index_t w = 0; w < shape_[3]; ++w) f(row[w * sw]);
        }
  }

  Shape shape_;
  Layout layout_;
  std::vector<T> storage_;
  bnorm::NCHWView<T> view_;
};

/// count values: per-channel offset and scale (so channels differ) plus N(0, 1) noise.
template <class T>
std::vector<T> random_values(const Shape& s, std::uint64_t seed, double offset = 0.0,
                             double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uni(0.5, 2.0);
  std::vector<double> ch_offset(static_cast<std::size_t>(s[1])), ch_scale(ch_offset.size());
  for (std::size_t c = 0; c < ch_offset.size(); ++c) {
    ch_offset[c] = offset + normal(gen);
    ch_scale[c] = scale * uni(gen);
  }
  std::vector<T> v(static_cast<std::size_t>(count(s)));
  const index_t plane = s[2] * s[3];
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto c = static_cast<std::size_t>((static_cast<index_t>(i) / plane) % s[1]);
    v[i] = static_cast<T>(ch_offset[c] + ch_scale[c] * normal(gen));
  }
  return v;
}

template <class T>
Eigen::Array<T, Eigen::Dynamic, 1> random_array(index_t n, std::uint64_t seed, double lo,
                                                double hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> uni(lo, hi);
  Eigen::Array<T, Eigen::Dynamic, 1> a(n);
  for (index_t i = 0; i < n; ++i) a[i] = static_cast<T>(uni(gen));
  return a;
}

/// max |a - b| / max |b| (the infinity-norm relative error; absolute when b is all zero).
template <class A, class B>
double rel_error(const A& a, const B& b) {
  double diff = 0, ref = 0;
  EXPECT_EQ(static_cast<std::size_t>(a.size()), static_cast<std::size_t>(b.size()));
  for (std::size_t i = 0; i < static_cast<std::size_t>(std::min<index_t>(a.size(), b.size()));
       ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    ref = std::max(ref, std::abs(static_cast<double>(b[i])));
  }
  return ref > 0 ? diff / ref : diff;
}

/// What f() throws: the message of a bnorm::invalid_argument, "wrong exception type: ..." for
/// any other exception, "(no exception)" when it returns.
template <class F>
std::string message_of(const F& f) {
  try {
    f();
  } catch (const bnorm::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "(no exception)";
}

/// A module's state and one output buffer, compared bitwise.
template <class T>
struct Snapshot {
  ModuleState<T> module;
  std::vector<T> output;
  template <class Module>
  Snapshot(const Module& bn, const Buffer<T>& out) : module(bn), output(out.values()) {}
  bool operator==(const Snapshot& o) const {
    return module == o.module && same_bits(output, o.output);
  }
};

/// Runs f, expects bnorm::invalid_argument saying `message`, and expects nothing changed in the
/// module (BatchNorm2d, SyncBatchNorm2d), y or dx.
template <class T, class Module, class F>
void expect_rejected(const Module& bn, const Buffer<T>& y, const Buffer<T>& dx, const F& f,
                     const std::string& message) {
  const Snapshot<T> before_y(bn, y), before_dx(bn, dx);
  EXPECT_EQ(message_of(f), message);
  EXPECT_TRUE(Snapshot<T>(bn, y) == before_y) << "state or y changed";
  EXPECT_TRUE(Snapshot<T>(bn, dx) == before_dx) << "state or dx changed";
}

/// Sets the cache sizes the kernels plan with (detail/cache_sizes.hpp) for one scope.
class CacheSizesScope {
 public:
  explicit CacheSizesScope(bnorm::detail::CacheSizes sizes) {
    bnorm::detail::set_cache_sizes(sizes);
  }
  ~CacheSizesScope() { bnorm::detail::set_cache_sizes(saved_); }
  CacheSizesScope(const CacheSizesScope&) = delete;
  CacheSizesScope& operator=(const CacheSizesScope&) = delete;

 private:
  bnorm::detail::CacheSizes saved_ = bnorm::detail::cache_sizes();
};

/// Plain long-double loops of BatchNorm2d with batch statistics, written straight from the
/// definition; independent of both variants.
struct Reference {
  std::vector<long double> y, dx, mean, var, dweight, dbias;
};
template <class T>
Reference reference(const Shape& s, const std::vector<T>& x, const std::vector<T>& dy,
                    const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                    const Eigen::Array<T, Eigen::Dynamic, 1>& bias, double eps) {
  const index_t N = s[0], C = s[1], H = s[2], W = s[3];  // not a structured binding: the lambda
  const index_t M = N * H * W;                           // below captures them (C++17)
  Reference r;
  r.y.resize(x.size());
  r.dx.resize(x.size());
  auto at = [&](index_t n, index_t c, index_t i) {
    return static_cast<std::size_t>((n * C + c) * H * W + i);
  };
  for (index_t c = 0; c < C; ++c) {
    const long double g = weight.size() ? weight[c] : 1, b = bias.size() ? bias[c] : 0;
    long double sum = 0, sq = 0, sdy = 0, sdyxhat = 0;
    for (index_t n = 0; n < N; ++n)
      for (index_t i = 0; i < H * W; ++i) sum += x[at(n, c, i)];
    const long double mean = sum / M;
    for (index_t n = 0; n < N; ++n)
      for (index_t i = 0; i < H * W; ++i) sq += (x[at(n, c, i)] - mean) * (x[at(n, c, i)] - mean);
    const long double var = sq / M, invstd = 1 / std::sqrt(var + static_cast<long double>(eps));
    for (index_t n = 0; n < N; ++n)
      for (index_t i = 0; i < H * W; ++i) {
        const long double xhat = (x[at(n, c, i)] - mean) * invstd;
        r.y[at(n, c, i)] = g * xhat + b;
        sdy += dy[at(n, c, i)];
        sdyxhat += dy[at(n, c, i)] * xhat;
      }
    for (index_t n = 0; n < N; ++n)
      for (index_t i = 0; i < H * W; ++i) {
        const long double xhat = (x[at(n, c, i)] - mean) * invstd;
        r.dx[at(n, c, i)] = g * invstd / M * (M * dy[at(n, c, i)] - sdy - xhat * sdyxhat);
      }
    r.mean.push_back(mean);
    r.var.push_back(var);
    r.dweight.push_back(sdyxhat);
    r.dbias.push_back(sdy);
  }
  return r;
}

}  // namespace bnorm_test
