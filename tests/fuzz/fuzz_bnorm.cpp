// libFuzzer target: views, options and modules built from the fuzz input, driven through
// sequences of training and eval steps, forward and backward, on the staged and the fused
// variant side by side, and through the free functions.
//
// Every call must either throw bnorm::invalid_argument ("bnorm: ...") having written nothing, or
// return results that agree with a long-double reference within a tolerance derived from the
// data's conditioning, and must not change any byte outside its output views: every buffer has
// guard bytes on both sides, and the padding inside a buffer holds a pattern. An independent
// oracle (brute-force enumeration of elements) says which calls must be rejected (a non-unique
// output, a partial overlap, a mismatched shape, ...) and which must be accepted; the staged
// and the fused module must agree on both, with the same message.
//
// Input format (see make_corpus.py): a reader takes bytes front to back (zeros once the input
// is exhausted); a header picks the type, the module's options and num_features; then steps,
// each an op byte followed by its arguments. Allocation is bounded: views of at most
// kMaxElements elements spread over at most kMaxSpan elements, at most kMaxChannels channels.
#include <bnorm/bnorm.hpp>

#include "../module_state.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using bnorm::index_t;
using Shape = std::array<index_t, 4>;
using bnorm::detail::concat;

constexpr index_t kMaxSpan = index_t{1} << 14;      // elements of memory behind one view
constexpr index_t kMaxElements = index_t{1} << 11;  // elements of one view
constexpr index_t kMaxChannels = 64;                // per-channel arrays
constexpr int kMaxSteps = 10;
constexpr std::size_t kGuard = 64;  // guard bytes on each side of every buffer
constexpr index_t kIndexMax = std::numeric_limits<index_t>::max();
__extension__ typedef __int128 i128;  // exact products of two index_t (GCC and clang)

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\nbnorm fuzz failure: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond, ...) \
  ((cond) ? (void)0 : fail(concat(__LINE__, ": ", #cond, ": ", __VA_ARGS__)))

/// BNORM_FUZZ_TRACE=1 prints every step and its outcome (to read what an input does).
bool tracing() {
  static const bool on = std::getenv("BNORM_FUZZ_TRACE") != nullptr;
  return on;
}
template <class... A>
void trace(const A&... a) {
  if (tracing()) std::fprintf(stderr, "%s\n", concat(a...).c_str());
}

std::string str(const Shape& s) {
  return concat("[", s[0], ", ", s[1], ", ", s[2], ", ", s[3], "]");
}

/// The fuzz input, read front to back; zeros once exhausted.
class Input {
 public:
  Input(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  std::uint8_t byte() { return i_ < n_ ? p_[i_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = v << 8 | byte();
    return v;
  }
  template <class V, std::size_t N>
  V pick(const V (&table)[N]) {
    return table[byte() % N];
  }
  bool exhausted() const { return i_ >= n_; }

 private:
  const std::uint8_t* p_;
  std::size_t n_, i_ = 0;
};

/// splitmix64: the data behind a seed.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }  // [0, 1)
};

// ---------------------------------------------------------------------------------------------
// Views: extents, layouts, and an independent oracle of what NCHWView's constructor accepts
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Memory: buffers with guard bytes, views placed in them, snapshots
// ---------------------------------------------------------------------------------------------

/// A view placed in a buffer: offset (elements from the buffer's first element) and layout.
struct Placed {
  int buffer = -1;
  index_t offset = 0;
  Shape extents{}, strides{};
  bool known_unique = false;
  index_t count() const { return extents[0] * extents[1] * extents[2] * extents[3]; }
  std::vector<index_t> elements() const { return offsets(extents, strides, offset); }
  bool same_strides(const Placed& o) const {
    if (extents != o.extents) return false;
    for (std::size_t r = 0; r < 4; ++r)
      if (extents[r] > 1 && strides[r] != o.strides[r]) return false;
    return true;
  }
};

template <class T>
class Arena {
 public:
  using Snapshot = std::vector<std::vector<unsigned char>>;

  int add(index_t elements) {
    std::vector<unsigned char> b(2 * kGuard + static_cast<std::size_t>(elements) * sizeof(T));
    const auto salt = static_cast<unsigned char>(buffers_.size() * 37 + 11);
    for (std::size_t j = 0; j < b.size(); ++j)
      b[j] = static_cast<unsigned char>((j * 131 + 17) ^ salt);
    buffers_.push_back(std::move(b));
    return static_cast<int>(buffers_.size()) - 1;
  }
  T* base(int b) {
    return reinterpret_cast<T*>(buffers_[static_cast<std::size_t>(b)].data() + kGuard);
  }
  index_t elements(int b) const {
    return static_cast<index_t>((buffers_[static_cast<std::size_t>(b)].size() - 2 * kGuard) /
                                sizeof(T));
  }
  template <class U = T>
  bnorm::NCHWView<U> view(const Placed& p) {
    T* data = p.count() == 0 && p.buffer < 0 ? nullptr : base(p.buffer) + p.offset;
    return bnorm::NCHWView<U>(data, p.extents, p.strides);
  }
  bnorm::NCHWView<const T> cview(const Placed& p) { return view<const T>(p); }
  Snapshot snapshot() const { return buffers_; }
  void restore(const Snapshot& s) { buffers_ = s; }

  /// Logical values of a view, from the live buffers or from a snapshot.
  std::vector<T> read(const Placed& p, const Snapshot* from = nullptr) const {
    std::vector<T> out;
    if (p.count() == 0) return out;
    const auto& bytes = from ? (*from)[static_cast<std::size_t>(p.buffer)]
                             : buffers_[static_cast<std::size_t>(p.buffer)];
    for (index_t n = 0; n < p.extents[0]; ++n)
      for (index_t c = 0; c < p.extents[1]; ++c)
        for (index_t h = 0; h < p.extents[2]; ++h)
          for (index_t w = 0; w < p.extents[3]; ++w) {
            const index_t o = p.offset + n * p.strides[0] + c * p.strides[1] + h * p.strides[2] +
                              w * p.strides[3];
            T v;
            std::memcpy(&v, bytes.data() + kGuard + static_cast<std::size_t>(o) * sizeof(T),
                        sizeof(T));
            out.push_back(v);
          }
    return out;
  }
  void write(const Placed& p, const std::vector<T>& values) {
    if (p.count() == 0) return;
    std::size_t i = 0;
    for (index_t n = 0; n < p.extents[0]; ++n)
      for (index_t c = 0; c < p.extents[1]; ++c)
        for (index_t h = 0; h < p.extents[2]; ++h)
          for (index_t w = 0; w < p.extents[3]; ++w)
            base(p.buffer)[p.offset + n * p.strides[0] + c * p.strides[1] + h * p.strides[2] +
                           w * p.strides[3]] = values[i++];
  }

  /// Every byte of every buffer equals `s`, except the elements of the output views `outs`.
  void expect_unchanged_except(const Snapshot& s, const std::vector<const Placed*>& outs,
                               const char* what) const {
    FUZZ_CHECK(s.size() == buffers_.size(), what);
    for (std::size_t b = 0; b < buffers_.size(); ++b) {
      std::vector<char> written(buffers_[b].size(), 0);
      for (const Placed* p : outs)
        if (p && p->buffer == static_cast<int>(b))
          for (const index_t o : p->elements())
            std::fill_n(written.begin() + static_cast<std::ptrdiff_t>(kGuard) +
                            static_cast<std::ptrdiff_t>(o) * static_cast<std::ptrdiff_t>(sizeof(T)),
                        sizeof(T), 1);
      for (std::size_t j = 0; j < buffers_[b].size(); ++j)
        if (!written[j] && buffers_[b][j] != s[b][j])
          fail(concat(what, ": byte ", j, " of buffer ", b, " changed (guard ", kGuard,
                      " bytes, then elements of ", sizeof(T), " bytes)"));
    }
  }

 private:
  Snapshot buffers_;
};

/// Output rules, worked out by brute force: whether the library must reject `out` as an output
/// beside the input `in` (a non-unique layout, or a partial overlap), and whether it must accept.
struct Verdict {
  bool must_reject = false, sure = true;
  void reject() { must_reject = true; }
  void unsure() { sure = false; }
  void merge(const Verdict& o) {
    must_reject |= o.must_reject;
    sure &= o.sure;
  }
};
Verdict output_unique(const Placed& out) {
  Verdict v;
  if (out.count() == 0) return v;
  const auto o = out.elements();
  if (std::adjacent_find(o.begin(), o.end()) != o.end())
    v.reject();
  else if (!out.known_unique)
    v.unsure();  // unique, but the library's test is only sufficient
  return v;
}
Verdict output_vs_input(const Placed& out, const Placed& in) {
  Verdict v;
  if (out.count() == 0 || in.count() == 0 || out.buffer != in.buffer) return v;
  const bool same = out.offset == in.offset && out.same_strides(in);
  if (same) return v;  // in place
  const auto a = out.elements(), b = in.elements();
  std::vector<index_t> common;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
  const bool ranges_meet = !(a.back() < b.front() || b.back() < a.front());
  if (!common.empty() || (ranges_meet && !out.same_strides(in))) v.reject();
  return v;
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Reference and tolerances
// ---------------------------------------------------------------------------------------------

using LD = long double;

template <class T>
struct Tol {
  static constexpr LD u = std::numeric_limits<T>::epsilon() / 2;  // unit roundoff of T
  static constexpr LD ud = std::numeric_limits<double>::epsilon() / 2;
  static constexpr LD C = 64;
  // Magnitudes past which T overflows somewhere in either variant, and variances below which T
  // loses them to underflow: channels outside are not compared.
  static constexpr LD big = static_cast<LD>(std::numeric_limits<T>::max()) / 1024;
  static constexpr LD tiny = std::is_same_v<T, float> ? 1e-30L : 1e-290L;
  // Gradual underflow: an operation whose result is subnormal errs by up to D absolutely.
  static constexpr LD D = static_cast<LD>(std::numeric_limits<T>::denorm_min());
};

/// The absolute error that gradual underflow in T can add to the staged backward's dx, each
/// step erring by at most D (Tol::D) plus what the earlier errors become through the later
/// steps: ist = invstd, a = max |x| + |mean| (bounds |x - mean|), m = M.
template <class T>
LD underflow_dx(LD ist, LD a, index_t m) {
  const LD D = Tol<T>::D, M = static_cast<LD>(m);
  const LD dxmu1 = D * ist + D;               // step 7: dxhat * ivar
  const LD divar = M * D * (a + 1) + D;       // step 7: sum dxhat * xmu
  const LD dsqrtvar = ist * ist * divar + D;  // step 6
  const LD dvar = ist * dsqrtvar / 2 + D;     // step 5
  const LD dsq = dvar / M + D;                // step 4
  const LD dxmu2 = 2 * a * dsq + D;           // step 3
  const LD dx1 = dxmu1 + dxmu2 + D;           // step 2
  return 4 * (2 * dx1 + 3 * D);               // steps 1 and 0, and a margin of 4
}

bool finite(LD v) {
  return std::isfinite(v);
}

/// |got - ref| <= tol, where tol never goes below a few of T's smallest normal numbers: results
/// down there have no relative precision left (gradual underflow).
template <class T>
void expect_close(T got, LD ref, LD tol, const char* what, index_t i) {
  const LD g = static_cast<LD>(got);
  tol = std::max(tol, 64 * static_cast<LD>(std::numeric_limits<T>::min()));
  if (!(std::fabs(g - ref) <= tol))
    fail(concat(what, "[", i, "] = ", g, ", reference ", ref, ", tolerance ", tol));
}

/// One channel's values in logical order, gathered from an NCHW-ordered vector.
template <class T>
std::vector<LD> channel(const std::vector<T>& v, const Shape& e, index_t c,
                        std::vector<std::size_t>* at = nullptr) {
  std::vector<LD> out;
  for (index_t n = 0; n < e[0]; ++n)
    for (index_t i = 0; i < e[2] * e[3]; ++i) {
      const auto k = static_cast<std::size_t>((n * e[1] + c) * e[2] * e[3] + i);
      out.push_back(static_cast<LD>(v[k]));
      if (at) at->push_back(k);
    }
  return out;
}

/// A channel's batch statistics in long double and whether T can be compared on it.
template <class T>
struct ChannelStats {
  LD mean = 0, var = 0, invstd = 0, amax = 0, kappa = 0;
  bool finite_values = true, checkable = false;
  ChannelStats(const std::vector<LD>& x, double eps) {
    const auto m = static_cast<LD>(x.size());
    LD sum = 0;
    for (const LD v : x) {
      finite_values &= finite(v);
      sum += v;
      amax = std::max(amax, std::fabs(v));
    }
    if (!finite_values || x.empty()) return;
    mean = sum / m;
    LD sq = 0;
    for (const LD v : x) sq += (v - mean) * (v - mean);
    var = sq / m;
    const LD ve = var + static_cast<LD>(eps);
    invstd = 1 / std::sqrt(ve);
    kappa = (amax + std::fabs(mean)) * invstd + 1;
    const LD span = 2 * amax + std::fabs(mean);
    checkable = ve >= Tol<T>::tiny && static_cast<LD>(eps) <= Tol<T>::big &&
                span * span * m <= Tol<T>::big && kappa <= Tol<T>::big;
  }
};

// ---------------------------------------------------------------------------------------------
// The module pair
// ---------------------------------------------------------------------------------------------

using bnorm_test::ModuleState;
using bnorm_test::same_bits;

struct Outcome {
  bool threw = false;
  std::string message;
};
template <class F>
Outcome attempt(const F& f) {
  try {
    f();
    return {};
  } catch (const bnorm::invalid_argument& e) {
    FUZZ_CHECK(std::strncmp(e.what(), "bnorm: ", 7) == 0, "message prefix: ", e.what());
    return {true, e.what()};
  }
  // Anything else (std::bad_alloc, another std::invalid_argument, ...) escapes: a crash.
}

void check_verdict(const Verdict& v, const Outcome& o, const std::string& what) {
  if (v.must_reject) FUZZ_CHECK(o.threw, what, ": accepted, expected a rejection");
  if (!v.must_reject && v.sure) FUZZ_CHECK(!o.threw, what, ": rejected a valid call: ", o.message);
}

}  // namespace
#include "fuzz_activation.hpp"  // op 8: activation, residual, relu_backward (ActivationStep)
namespace {

template <class T>
class Session {
  friend class ActivationStep<T, Session>;

 public:
  using BN = bnorm::BatchNorm2d<T>;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

  explicit Session(Input& in) : in_(in) {}

  void run() {
    if (!make_modules()) return;
    for (int step = 0; step < kMaxSteps && !in_.exhausted(); ++step) {
      switch (in_.byte() % 9) {
        case 0:
        case 1:
        case 2:
          forward_step();
          break;
        case 3:
          staged_->train(in_.byte() & 1);
          fused_->train(staged_->is_training());
          trace(fused_->is_training() ? "train()" : "eval()");
          break;
        case 4:
          set_parameters();
          break;
        case 5:
          if (last_) backward_step(*last_);
          break;
        case 6:
          free_functions();
          break;
        case 8:
          ActivationStep<T, Session>(*this).run();
          break;
        default:
          view_construction();
      }
    }
  }

 private:
  struct Forward {
    Placed x, y;
    std::vector<T> xv;  // the forward's x, logical order
    typename BN::Saved saved_staged, saved_fused;
    bool batch = true, in_place = false;
    Array running_mean, running_var;  // as the forward used them (eval)
    double eps = 0;
  };

  // --- options and modules -------------------------------------------------------------------

  bool make_modules() {
    static const index_t features[] = {1, 2, 3, 4, 5, 7, 8, 16, 0, -1, kMaxChannels};
    static const double epses[] = {1e-5,
                                   0,
                                   1e-3,
                                   1,
                                   1e-12,
                                   1e-40,
                                   1e30,
                                   0.1,
                                   -1e-5,
                                   std::numeric_limits<double>::quiet_NaN(),
                                   std::numeric_limits<double>::infinity()};
    static const double momenta[] = {
        0.1, -2 /* nullopt */, 0, 1, 0.5, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()};
    const index_t c = in_.pick(features);
    const double eps = in_.pick(epses), mom = in_.pick(momenta);
    const std::uint8_t flags = in_.byte();
    opt_.eps = eps;
    opt_.momentum = mom == -2 ? std::nullopt : std::optional<double>(mom);
    opt_.affine = !(flags & 1);
    opt_.track_running_stats = !(flags & 2);
    const bool valid = c > 0 && eps >= 0 && std::isfinite(eps) &&
                       (!opt_.momentum || (*opt_.momentum >= 0 && *opt_.momentum <= 1));
    bnorm::Options so = opt_, fo = opt_;
    so.variant = bnorm::Variant::staged;
    fo.variant = bnorm::Variant::fused;
    const Outcome os = attempt([&] { staged_.emplace(c, so); });
    const Outcome of = attempt([&] { fused_.emplace(c, fo); });
    FUZZ_CHECK(os.threw == !valid && of.threw == !valid, "constructor validity, C ", c, " eps ",
               eps, " momentum ", mom, ": ", os.message);
    FUZZ_CHECK(os.message == of.message, os.message, " vs ", of.message);
    trace(sizeof(T) == 4 ? "float" : "double", " C ", c, " eps ", eps, " momentum ", mom,
          " affine ", opt_.affine, " track ", opt_.track_running_stats, valid ? "" : " (invalid)");
    if (!valid) return false;
    channels_ = c;
    return true;
  }

  bool state_ok() const {
    const index_t p = opt_.affine ? channels_ : 0, r = opt_.track_running_stats ? channels_ : 0;
    return fused_->weight().size() == p && fused_->bias().size() == p &&
           fused_->running_mean().size() == r && fused_->running_var().size() == r;
  }

  /// New weight and bias (or running statistics), the same in both modules; sometimes a wrong
  /// size, which every later call must reject until it is fixed.
  void set_parameters() {
    const std::uint8_t what = in_.byte();
    const index_t p = opt_.affine ? channels_ : 0, r = opt_.track_running_stats ? channels_ : 0;
    index_t size = (what & 4) ? std::min<index_t>(in_.byte() % 9, kMaxChannels) : -1;
    switch (what % 4) {
      case 0:
        fused_->weight() = make_array<T>(in_, size < 0 ? p : size, -2, 2);
        break;
      case 1:
        fused_->bias() = make_array<T>(in_, size < 0 ? p : size, -2, 2);
        break;
      case 2:
        fused_->running_mean() = make_array<T>(in_, size < 0 ? r : size, -5, 5);
        break;
      default:
        fused_->running_var() = make_array<T>(in_, size < 0 ? r : size, 0, 4);
    }
    trace("set parameter ", what % 4, " size ", size);
    sync();
  }
  void sync() {
    staged_->weight() = fused_->weight();
    staged_->bias() = fused_->bias();
    staged_->running_mean() = fused_->running_mean();
    staged_->running_var() = fused_->running_var();
  }

  // --- placing views ------------------------------------------------------------------------

  /// Extents and strides for a new view; nullopt when the view cannot be built (the
  /// constructor's rejection is checked here) or would be too large to allocate.
  std::optional<Placed> layout(const Shape& e, Form form) {
    Placed p;
    p.extents = e;
    p.strides = strides_from(in_, form, e, p.known_unique);
    const ViewOracle o = view_oracle(e, p.strides, false);
    static T dummy{};
    FUZZ_CHECK(constructor_accepts(&dummy, e, p.strides) == o.ok, "NCHWView(", str(e), ", ",
               str(p.strides), ") validity, expected ", o.ok);
    if (o.count > 0)
      FUZZ_CHECK(!constructor_accepts<T>(nullptr, e, p.strides), "null data with elements");
    if (!o.ok || o.count > kMaxElements || o.span > kMaxSpan) return std::nullopt;
    return p;
  }
  static index_t span(const Placed& p) { return view_oracle(p.extents, p.strides, false).span; }

  Shape shape_from(index_t c_default) {
    const std::uint8_t b = in_.byte();
    const index_t n = extent_from(in_), c = (b & 7) ? c_default : extent_from(in_),
                  h = extent_from(in_), w = extent_from(in_);
    return {n, c, h, w};
  }
  Form form() { return static_cast<Form>(in_.byte() % kForms); }
  /// Another shape of the same kind: one axis changed, for shape mismatches.
  Shape mutate(Shape s) {
    const std::uint8_t b = in_.byte();
    if (b < 224) return s;
    s[b % 4] = sat_add(s[b % 4], 1 + (b >> 4) % 2);
    return s;
  }

  /// Places an output of extents e: in its own buffer, or as exactly `in` (in place), or
  /// inside in's buffer at a small offset with its own or in's strides.
  /// An input's own buffer, with room behind it for outputs placed inside it.
  int input_buffer(const Placed& p) { return arena_.add(2 * span(p) + 32); }

  /// Places an output of extents e: in its own buffer, or exactly as one of the inputs (in
  /// place), or inside an input's buffer at a small offset with the input's strides
  /// (interleaved or overlapping) or its own. Buffers never move (Saved objects point in them).
  std::optional<Placed> place_output(const Shape& e, const std::vector<const Placed*>& inputs) {
    const std::uint8_t how = in_.byte();
    const Placed* in = inputs.empty() ? nullptr : inputs[in_.byte() % inputs.size()];
    auto fits = [&](const Placed& p) { return p.offset + span(p) <= arena_.elements(p.buffer); };
    if (in && in->extents == e && how % 8 == 5) return *in;  // exactly the input: in place
    if (in && in->extents == e && how % 8 >= 6) {
      Placed p = *in;  // the input's strides, shifted
      p.offset += in_.byte() % 16;
      if (how % 8 == 7) p.offset += in_.byte() % 4 * span(*in) / 4;
      if (fits(p)) return p;
    }
    auto p = layout(e, form());
    if (!p) return std::nullopt;
    p->buffer = -1;
    if (in && how % 8 == 4) {  // its own layout inside the input's buffer
      p->buffer = in->buffer;
      p->offset = in->offset + in_.byte() % 32;
      if (!fits(*p)) p->buffer = -1;
    }
    if (p->buffer < 0) {
      p->offset = 0;
      p->buffer = arena_.add(span(*p) + in_.byte() % 8);
    }
    return p;
  }

  // --- forward ------------------------------------------------------------------------------

  void forward_step() {
    Forward f;
    const Shape e = shape_from(channels_);
    auto x = layout(e, form());
    if (!x) return;
    x->buffer = input_buffer(*x);
    f.x = *x;
    auto y = place_output(mutate(e), {&f.x});
    if (!y) return;
    f.y = *y;
    arena_.write(f.x, make_values<T>(in_, e));
    f.xv = arena_.read(f.x);  // what x holds (a broadcast x repeats some of the values written)
    const bool then_backward = in_.byte() & 1;  // read up front: the input's layout is fixed

    const bool training = fused_->is_training();
    f.batch = training || !opt_.track_running_stats;
    f.eps = opt_.eps;
    f.running_mean = fused_->running_mean();
    f.running_var = fused_->running_var();
    const index_t m = e[0] * e[2] * e[3];

    Verdict v;
    if (e[1] != channels_ || f.y.extents != e || !state_ok() || (f.batch && m == 1)) v.reject();
    v.merge(output_unique(f.y));
    v.merge(output_vs_input(f.y, f.x));

    const auto before = arena_.snapshot();
    const ModuleState<T> st0(*fused_), st0s(*staged_);
    FUZZ_CHECK(st0s.same_state(st0), "modules out of step before the forward");
    const Outcome os =
        attempt([&] { f.saved_staged = staged_->forward(arena_.cview(f.x), arena_.view(f.y)); });
    const auto after_staged = arena_.snapshot();
    arena_.restore(before);
    const Outcome of =
        attempt([&] { f.saved_fused = fused_->forward(arena_.cview(f.x), arena_.view(f.y)); });
    const std::string what =
        concat("forward ", training ? "train" : "eval", " x ", str(e), " ", str(f.x.strides), " y ",
               str(f.y.extents), " ", str(f.y.strides), " +", f.y.offset - f.x.offset,
               f.y.buffer == f.x.buffer ? " same buffer" : "");
    trace(what, " -> ", of.threw ? of.message : "ok");
    FUZZ_CHECK(os.threw == of.threw && os.message == of.message, what, ": staged '", os.message,
               "' vs fused '", of.message, "'");
    check_verdict(v, of, what);
    if (of.threw) {
      FUZZ_CHECK(after_staged == before && arena_.snapshot() == before, what, ": wrote on throw");
      FUZZ_CHECK(ModuleState<T>(*staged_) == st0s && ModuleState<T>(*fused_) == st0, what,
                 ": state changed on throw");
      return;
    }
    arena_.expect_unchanged_except(before, {&f.y}, (what + " (fused)").c_str());
    Arena<T> staged_view = arena_;
    staged_view.restore(after_staged);
    staged_view.expect_unchanged_except(before, {&f.y}, (what + " (staged)").c_str());
    f.in_place = f.y.count() > 0 && f.y.buffer == f.x.buffer && f.y.offset == f.x.offset;
    FUZZ_CHECK(f.saved_fused.in_place() == f.in_place && f.saved_staged.in_place() == f.in_place,
               what, ": in_place()");

    check_forward_values(f, staged_view.read(f.y), "staged", *staged_, st0);
    check_forward_values(f, arena_.read(f.y), "fused", *fused_, st0);
    FUZZ_CHECK(staged_->num_batches_tracked() == fused_->num_batches_tracked(), what);
    sync();  // running statistics: the fused module's, for both
    last_ = std::move(f);
    if (then_backward) backward_step(*last_);
  }

  void check_forward_values(const Forward& f, const std::vector<T>& y, const char* variant,
                            const BN& bn, const ModuleState<T>& st0) {
    const Shape& e = f.x.extents;
    const index_t m = e[0] * e[2] * e[3];
    const bool updates = fused_->is_training() && opt_.track_running_stats && f.x.count() > 0;
    FUZZ_CHECK(bn.num_batches_tracked() == st0.batches + (updates ? 1 : 0), variant,
               " num_batches_tracked");
    if (!updates) {
      FUZZ_CHECK(same_bits(bn.running_mean(), st0.running_mean) &&
                     same_bits(bn.running_var(), st0.running_var),
                 variant, ": running statistics changed without a training step");
    }
    if (f.x.count() == 0) return;
    using TT = Tol<T>;
    for (index_t c = 0; c < e[1]; ++c) {
      const LD w = st0.weight.size() ? static_cast<LD>(st0.weight[c]) : 1,
               b = st0.bias.size() ? static_cast<LD>(st0.bias[c]) : 0;
      std::vector<std::size_t> at;
      const std::vector<LD> xc = channel(f.xv, e, c, &at);
      if (f.batch) {
        const ChannelStats<T> s(xc, f.eps);
        if (!s.finite_values) {  // NaN or Inf in x: the whole channel is NaN
          for (const std::size_t k : at)
            FUZZ_CHECK(std::isnan(y[k]), variant, " y[", k, "] = ", y[k],
                       ", expected NaN (non-finite x in channel ", c, ")");
          continue;
        }
        const bool ok = s.checkable && finite(w) && finite(b) &&
                        std::fabs(w) * s.kappa + std::fabs(b) <= TT::big;
        if (ok) {
          const LD scale = std::fabs(w) * s.kappa + std::fabs(b);
          for (std::size_t i = 0; i < at.size(); ++i) {
            const LD ref = (xc[i] - s.mean) * s.invstd * w + b;
            const LD tol =
                (TT::C * TT::u + 4 * m * TT::ud) * scale + TT::C * TT::u * std::fabs(ref);
            expect_close(y[at[i]], ref, tol, variant, static_cast<index_t>(at[i]));
          }
        }
        if (updates) {
          const LD rm = static_cast<LD>(st0.running_mean[c]),
                   rv = static_cast<LD>(st0.running_var[c]);
          const LD fct = opt_.momentum ? static_cast<LD>(*opt_.momentum)
                                       : 1 / static_cast<LD>(st0.batches + 1);
          const LD unbias = static_cast<LD>(m) / static_cast<LD>(m - 1);
          const LD nrm = (1 - fct) * rm + fct * s.mean, nrv = (1 - fct) * rv + fct * s.var * unbias;
          const LD big = s.amax + std::fabs(s.mean);
          if (s.checkable && finite(rm) && finite(rv) && std::fabs(rv) + big * big <= TT::big) {
            expect_close(bn.running_mean()[c], nrm,
                         TT::C * TT::u * (std::fabs(rm) + s.amax) + 4 * m * TT::ud * s.amax,
                         "running_mean", c);
            expect_close(bn.running_var()[c], nrv,
                         TT::C * TT::u * (std::fabs(rv) + unbias * s.var) +
                             TT::C * unbias * (TT::u * TT::u + m * TT::ud) * big * big,
                         "running_var", c);
          }
        }
      } else {  // eval with running statistics
        const LD rm = static_cast<LD>(f.running_mean[c]), rv = static_cast<LD>(f.running_var[c]);
        const LD ve = rv + static_cast<LD>(f.eps);
        if (!(finite(rm) && finite(rv) && finite(w) && finite(b) && ve >= TT::tiny &&
              ve <= TT::big && static_cast<LD>(f.eps) <= TT::big))
          continue;
        const LD ist = 1 / std::sqrt(ve);
        for (std::size_t i = 0; i < at.size(); ++i) {
          if (!finite(xc[i])) continue;
          const LD kappa = (std::fabs(xc[i]) + std::fabs(rm)) * ist + 1;
          if (kappa > TT::big || std::fabs(w) * kappa > TT::big) continue;  // xhat overflows
          const LD ref = (xc[i] - rm) * ist * w + b;
          expect_close(y[at[i]], ref,
                       TT::C * TT::u * (std::fabs(w) * kappa + std::fabs(b) + std::fabs(ref)),
                       variant, static_cast<index_t>(at[i]));
        }
      }
    }
  }

  // --- backward -----------------------------------------------------------------------------

  void backward_step(Forward& f) {
    const Shape e = mutate(f.x.extents);
    const std::uint8_t dy_how = in_.byte();
    Placed dy;
    if (dy_how % 8 == 7 && e == f.y.extents && !f.in_place) {
      dy = f.y;  // dy in the forward's y (an input now)
    } else {
      auto p = layout(e, form());
      if (!p) return;
      p->buffer = input_buffer(*p);
      dy = *p;
    }
    arena_.write(dy, make_values<T>(in_, e));
    const std::vector<T> dyv = arena_.read(dy);
    auto dxp = place_output(mutate(e), {&dy, &f.x});
    if (!dxp) return;
    const Placed dx = *dxp;

    Verdict v;
    if (f.in_place || e[1] != channels_ || e != f.x.extents || dx.extents != e || !state_ok())
      v.reject();
    v.merge(output_unique(dx));
    v.merge(output_vs_input(dx, dy));
    v.merge(output_vs_input(dx, f.x));

    // The forward's x must still hold its values (fused reads it), unless it ran in place.
    if (!f.in_place && f.x.count() > 0) {
      const auto now = arena_.read(f.x);
      FUZZ_CHECK(now.size() == f.xv.size() &&
                     std::memcmp(now.data(), f.xv.data(), now.size() * sizeof(T)) == 0,
                 "the forward's x changed before backward");
    }
    const auto before = arena_.snapshot();
    const ModuleState<T> st0(*fused_);
    const ModuleState<T> st0s(*staged_);
    const Outcome os =
        attempt([&] { staged_->backward(f.saved_staged, arena_.cview(dy), arena_.view(dx)); });
    const auto after_staged = arena_.snapshot();
    const ModuleState<T> st_s(*staged_);
    arena_.restore(before);
    const Outcome of =
        attempt([&] { fused_->backward(f.saved_fused, arena_.cview(dy), arena_.view(dx)); });
    const std::string what =
        concat("backward ", f.batch ? "batch" : "running", " x ", str(f.x.extents), " ",
               str(f.x.strides), " dy ", str(dy.extents), " ", str(dy.strides), " dx ",
               str(dx.extents), " ", str(dx.strides), " dx-dy +", dx.offset - dy.offset,
               dx.buffer == dy.buffer ? " same buffer" : "", " dx-x +", dx.offset - f.x.offset,
               dx.buffer == f.x.buffer ? " same buffer" : "");
    trace(what, " -> ", of.threw ? of.message : "ok");
    FUZZ_CHECK(os.threw == of.threw && os.message == of.message, what, ": staged '", os.message,
               "' vs fused '", of.message, "'");
    check_verdict(v, of, what);
    if (of.threw) {
      FUZZ_CHECK(after_staged == before && arena_.snapshot() == before, what, ": wrote on throw");
      FUZZ_CHECK(st_s == st0s && ModuleState<T>(*fused_) == st0, what, ": state changed on throw");
      return;
    }
    arena_.expect_unchanged_except(before, {&dx}, (what + " (fused)").c_str());
    Arena<T> staged_view = arena_;
    staged_view.restore(after_staged);
    staged_view.expect_unchanged_except(before, {&dx}, (what + " (staged)").c_str());
    check_backward_values(f, dyv, staged_view.read(dx), *staged_, "staged");
    check_backward_values(f, dyv, arena_.read(dx), *fused_, "fused");
    if (dx.buffer == f.x.buffer && dx.offset == f.x.offset && dx.count() > 0)
      last_.reset();  // dx over the forward's x: its Saved has served
  }

  void check_backward_values(const Forward& f, const std::vector<T>& dyv, const std::vector<T>& dx,
                             const BN& bn, const char* variant) {
    const Shape& e = f.x.extents;
    const index_t m = e[0] * e[2] * e[3];
    const index_t p = opt_.affine ? channels_ : 0;
    FUZZ_CHECK(bn.weight_grad().size() == p && bn.bias_grad().size() == p, variant,
               " gradient sizes");
    if (f.x.count() == 0) {
      FUZZ_CHECK((bn.weight_grad() == 0).all() && (bn.bias_grad() == 0).all(), variant,
                 " gradients of an empty batch");
      return;
    }
    using TT = Tol<T>;
    const LD k = TT::C * TT::u + 4 * m * TT::ud;
    for (index_t c = 0; c < e[1]; ++c) {
      const LD w = bn.weight().size() ? static_cast<LD>(bn.weight()[c]) : 1;
      std::vector<std::size_t> at;
      const std::vector<LD> xc = channel(f.xv, e, c, &at), g = channel(dyv, e, c);
      bool g_finite = true;
      LD gmax = 0, gsum_abs = 0;
      for (const LD v : g) {
        g_finite &= finite(v);
        gmax = std::max(gmax, std::fabs(v));
        gsum_abs += std::fabs(v);
      }
      if (!finite(w) || !g_finite || gsum_abs > TT::big) continue;
      if (f.batch) {
        const ChannelStats<T> s(xc, f.eps);
        if (!s.checkable) continue;
        LD sg = 0, sgx = 0, xmax = 0;
        for (std::size_t i = 0; i < xc.size(); ++i) {
          const LD xh = (xc[i] - s.mean) * s.invstd;
          sg += g[i];
          sgx += g[i] * xh;
          xmax = std::max(xmax, std::fabs(xh));
        }
        const LD q = std::fabs(w) * s.invstd * gmax * (1 + xmax * xmax + xmax * s.kappa + s.kappa);
        if (q * m > TT::big || gmax * (s.amax + std::fabs(s.mean)) * m > TT::big) continue;
        if (tracing()) {
          std::string line =
              concat(variant, " channel ", c, " w ", static_cast<double>(w), " mean ",
                     static_cast<double>(s.mean), " var ", static_cast<double>(s.var), " kappa ",
                     static_cast<double>(s.kappa), " q ", static_cast<double>(q), "\n  x");
          for (const LD v : xc) line += concat(" ", static_cast<double>(v));
          line += "\n  dy";
          for (const LD v : g) line += concat(" ", static_cast<double>(v));
          line += "\n  dx";
          for (const std::size_t i : at) line += concat(" ", dx[i]);
          trace(line);
        }
        const LD uf = underflow_dx<T>(s.invstd, s.amax + std::fabs(s.mean), m);
        for (std::size_t i = 0; i < xc.size(); ++i) {
          const LD xh = (xc[i] - s.mean) * s.invstd;
          const LD ref = w * s.invstd * (g[i] - sg / m - xh * sgx / m);
          expect_close(dx[at[i]], ref, k * q + TT::C * TT::u * std::fabs(ref) + uf, variant,
                       static_cast<index_t>(at[i]));
        }
        if (p) {
          expect_close(bn.weight_grad()[c], sgx,
                       k * gsum_abs * (s.kappa + xmax) + 4 * (m + 1) * TT::D, "weight_grad", c);
          expect_close(bn.bias_grad()[c], sg, k * gsum_abs, "bias_grad", c);
        }
      } else {
        const LD rm = static_cast<LD>(f.running_mean[c]), rv = static_cast<LD>(f.running_var[c]);
        const LD ve = rv + static_cast<LD>(f.eps);
        if (!(finite(rm) && finite(rv) && ve >= TT::tiny && ve <= TT::big &&
              static_cast<LD>(f.eps) <= TT::big))
          continue;
        const LD ist = 1 / std::sqrt(ve);
        if (std::fabs(w) * ist * gmax > TT::big) continue;
        LD sg = 0, sgx = 0, bound = 0;
        bool x_ok = true;
        for (std::size_t i = 0; i < xc.size(); ++i) {
          const LD ref = g[i] * w * ist;
          expect_close(dx[at[i]], ref, TT::C * TT::u * std::fabs(ref) + 4 * TT::D * (ist + 2),
                       variant, static_cast<index_t>(at[i]));
          x_ok &= finite(xc[i]) && std::fabs(xc[i]) + std::fabs(rm) <= TT::big;
          sg += g[i];
          sgx += g[i] * (xc[i] - rm) * ist;
          bound += std::fabs(g[i]) * ((std::fabs(xc[i]) + std::fabs(rm)) * ist + 1);
        }
        if (p && x_ok && bound <= TT::big) {
          expect_close(bn.weight_grad()[c], sgx, k * bound + 4 * (m + 1) * TT::D, "weight_grad", c);
          expect_close(bn.bias_grad()[c], sg, k * gsum_abs, "bias_grad", c);
        }
      }
    }
  }

  // --- the free functions -------------------------------------------------------------------

  /// fused:: and staged:: forward_training / forward_inference and their backwards with arrays
  /// and eps from the input (wrong sizes and invalid eps included): the two variants must
  /// accept and reject alike, and agree with each other where both accept.
  void free_functions() {
    static const double epses[] = {1e-5, 0, 1e-3, -1, std::numeric_limits<double>::quiet_NaN()};
    const Shape e = shape_from(1 + in_.byte() % 4);
    if (e[1] < 0 || e[1] > kMaxChannels) return;
    auto xp = layout(e, form());
    if (!xp) return;
    xp->buffer = input_buffer(*xp);
    const Placed x = *xp;
    auto yp = place_output(mutate(e), {&x});
    if (!yp) return;
    const Placed y = *yp;
    arena_.write(x, make_values<T>(in_, e));
    const std::uint8_t sizes = in_.byte();
    const index_t c = std::max<index_t>(e[1], 0);
    auto size = [&](int bit) { return (sizes >> bit & 1) ? (sizes >> 4) % 5 : c; };
    const Array w = make_array<T>(in_, (sizes & 64) ? 0 : size(0), -2, 2);
    const Array b = make_array<T>(in_, (sizes & 64) ? 0 : size(1), -2, 2);
    const Array rm = make_array<T>(in_, size(2), -3, 3), rv = make_array<T>(in_, size(3), 0, 3);
    const double eps = in_.pick(epses);
    const bool training = in_.byte() & 1, then_backward = !(in_.byte() & 1);
    const index_t m = e[0] * e[2] * e[3];

    Verdict v;
    if (y.extents != e || !(eps >= 0) ||
        !(w.size() == b.size() && (w.size() == 0 || w.size() == c)))
      v.reject();
    if (training && m == 1) v.reject();
    if (!training && (rm.size() != c || rv.size() != c)) v.reject();
    v.merge(output_unique(y));
    v.merge(output_vs_input(y, x));

    const auto before = arena_.snapshot();
    bnorm::fused::BatchStatistics stats;
    bnorm::staged::Cache<T> cache;
    const auto xv = arena_.cview(x);
    const auto yv = arena_.view(y);
    const Outcome os = attempt([&] {
      if (training)
        cache = bnorm::staged::forward_training<T>(xv, w, b, eps, yv);
      else
        cache = bnorm::staged::forward_inference<T>(xv, w, b, rm, rv, eps, yv);
    });
    const auto ys = arena_.read(y);
    const auto after_staged = arena_.snapshot();
    arena_.restore(before);
    const Outcome of = attempt([&] {
      if (training)
        stats = bnorm::fused::forward_training<T>(xv, w, b, eps, yv);
      else
        bnorm::fused::forward_inference<T>(xv, w, b, rm, rv, eps, yv);
    });
    const std::string what =
        concat("free forward ", training ? "training" : "inference", " x ", str(e), " y ",
               str(y.extents), " ", str(y.strides), " w ", w.size(), " b ", b.size(), " eps ", eps);
    trace(what, " -> ", of.threw ? of.message : "ok");
    FUZZ_CHECK(os.threw == of.threw && os.message == of.message, what, ": staged '", os.message,
               "' vs fused '", of.message, "'");
    check_verdict(v, of, what);
    if (of.threw) {
      FUZZ_CHECK(after_staged == before && arena_.snapshot() == before, what, ": wrote on throw");
      return;
    }
    arena_.expect_unchanged_except(before, {&y}, what.c_str());
    // Staged against fused, where the data is well conditioned for T.
    const auto yf = arena_.read(y);
    const std::vector<T> xvals = [&] {
      Arena<T> a = arena_;
      a.restore(before);
      return a.read(x);
    }();
    using TT = Tol<T>;
    for (index_t ch = 0; ch < c && m > 0; ++ch) {
      std::vector<std::size_t> at;
      const std::vector<LD> xc = channel(xvals, e, ch, &at);
      const LD wc = w.size() ? static_cast<LD>(w[ch]) : 1,
               bc = b.size() ? static_cast<LD>(b[ch]) : 0;
      LD scale;
      if (training) {
        const ChannelStats<T> s(xc, eps);
        if (!s.checkable || !finite(wc) || !finite(bc)) continue;
        scale = std::fabs(wc) * s.kappa + std::fabs(bc);
      } else {
        const LD rmc = static_cast<LD>(rm[ch]), ve = static_cast<LD>(rv[ch]) + static_cast<LD>(eps);
        LD amax = 0;
        bool ok = finite(rmc) && finite(ve) && ve >= TT::tiny && finite(wc) && finite(bc);
        for (const LD xi : xc) ok &= finite(xi), amax = std::max(amax, std::fabs(xi));
        if (!ok) continue;
        const LD kappa = (amax + std::fabs(rmc)) / std::sqrt(ve) + 1;
        if (kappa > TT::big) continue;  // xhat overflows
        scale = std::fabs(wc) * kappa + std::fabs(bc);
      }
      if (scale > TT::big) continue;
      if (tracing()) {
        std::string line =
            concat("channel ", ch, " w ", static_cast<double>(wc), " b ", static_cast<double>(bc));
        if (!training)
          line += concat(" rm ", static_cast<double>(rm[ch]), " rv ", static_cast<double>(rv[ch]));
        line += "\n  x";
        for (const LD v : xc) line += concat(" ", static_cast<double>(v));
        line += "\n  y staged";
        for (const std::size_t k : at) line += concat(" ", ys[k]);
        line += "\n  y fused";
        for (const std::size_t k : at) line += concat(" ", yf[k]);
        trace(line);
      }
      for (const std::size_t k : at)
        expect_close(ys[k], static_cast<LD>(yf[k]), 2 * (TT::C * TT::u + 4 * m * TT::ud) * scale,
                     "staged vs fused y", static_cast<index_t>(k));
    }
    if (!training || !then_backward) return;

    // Backward over the same x (y must not have been written over it).
    if (y.buffer == x.buffer && y.offset == x.offset) return;
    const Shape ge = mutate(e);
    auto dyp = layout(ge, form());
    if (!dyp) return;
    dyp->buffer = input_buffer(*dyp);
    const Placed dy = *dyp;
    arena_.write(dy, make_values<T>(in_, ge));
    auto dxp = place_output(mutate(ge), {&dy, &x});
    if (!dxp) return;
    const Placed dx = *dxp;
    Array dws = Array::Constant(3, 7), dbs = dws, dwf = dws, dbf = dws;
    const auto before_b = arena_.snapshot();
    const Outcome bs = attempt(
        [&] { bnorm::staged::backward<T>(cache, arena_.cview(dy), arena_.view(dx), dws, dbs); });
    const auto dx_staged = arena_.read(dx);
    const auto after_bs = arena_.snapshot();
    arena_.restore(before_b);
    const Outcome bf = attempt([&] {
      bnorm::fused::backward<T>(arena_.cview(x), arena_.cview(dy), w, stats, arena_.view(dx), dwf,
                                dbf);
    });
    Verdict vs, vf;
    if (ge != e || dx.extents != ge) vs.reject(), vf.reject();
    vs.merge(output_unique(dx));
    vs.merge(output_vs_input(dx, dy));
    vf.merge(vs);
    vf.merge(output_vs_input(dx, x));
    const std::string bwhat = concat("free backward dy ", str(ge), " dx ", str(dx.extents), " ",
                                     str(dx.strides), " +", dx.offset - dy.offset);
    trace(bwhat, " -> staged ", bs.threw ? bs.message : "ok", ", fused ",
          bf.threw ? bf.message : "ok");
    check_verdict(vs, bs, bwhat + " (staged)");
    check_verdict(vf, bf, bwhat + " (fused)");
    if (bs.threw) {
      FUZZ_CHECK(after_bs == before_b && (dws == 7).all() && (dbs == 7).all(), bwhat,
                 ": staged wrote on throw");
    }
    if (bf.threw) {
      FUZZ_CHECK(arena_.snapshot() == before_b && (dwf == 7).all() && (dbf == 7).all(), bwhat,
                 ": fused wrote on throw");
    }
    if (bs.threw || bf.threw) return;
    arena_.expect_unchanged_except(before_b, {&dx}, bwhat.c_str());
    const auto dx_fused = arena_.read(dx);
    const auto gv = arena_.read(dy, &before_b);  // (dx may have been written over dy)
    for (index_t ch = 0; ch < c && m > 0; ++ch) {
      std::vector<std::size_t> at;
      const std::vector<LD> xc = channel(xvals, e, ch, &at), g = channel(gv, e, ch);
      const ChannelStats<T> s(xc, eps);
      const LD wc = w.size() ? static_cast<LD>(w[ch]) : 1;
      LD gmax = 0;
      bool ok = s.checkable && finite(wc);
      for (const LD gi : g) ok &= finite(gi), gmax = std::max(gmax, std::fabs(gi));
      const LD q = std::fabs(wc) * s.invstd * gmax * (1 + s.kappa) * (1 + s.kappa);
      if (!ok || q * m > TT::big || gmax * (s.amax + std::fabs(s.mean)) * m > TT::big) continue;
      if (tracing()) {
        std::string line =
            concat("channel ", ch, " q ", static_cast<double>(q), " kappa ",
                   static_cast<double>(s.kappa), " w ", static_cast<double>(wc), " x");
        for (const LD v : xc) line += concat(" ", static_cast<double>(v));
        line += " dy";
        for (const LD v : g) line += concat(" ", static_cast<double>(v));
        line += " dx staged";
        for (const std::size_t k : at) line += concat(" ", dx_staged[k]);
        line += " fused";
        for (const std::size_t k : at) line += concat(" ", dx_fused[k]);
        trace(line);
      }
      for (const std::size_t k : at)
        expect_close(dx_staged[k], static_cast<LD>(dx_fused[k]),
                     2 * (TT::C * TT::u + 4 * m * TT::ud) * q +
                         underflow_dx<T>(s.invstd, s.amax + std::fabs(s.mean), m),
                     "staged vs fused dx", static_cast<index_t>(k));
    }
  }

  /// Views straight from the input, any extents and strides: the constructor must accept
  /// exactly what the oracle accepts, and never overflow doing so.
  void view_construction() {
    Shape e{extent_from(in_), extent_from(in_), extent_from(in_), extent_from(in_)};
    bool known;
    const Shape s = strides_from(in_, form(), e, known);
    const ViewOracle o = view_oracle(e, s, false);
    static T dummy{};
    FUZZ_CHECK(constructor_accepts(&dummy, e, s) == o.ok, "NCHWView(", str(e), ", ", str(s), ")");
    const ViewOracle on = view_oracle(e, s, true);
    FUZZ_CHECK(constructor_accepts<T>(nullptr, e, s) == on.ok, "NCHWView(null, ", str(e), ")");
    // The contiguous and channels-last constructors accept exactly the valid extents (their
    // strides then always fit).
    const bool extents_ok = view_oracle(e, {0, 0, 0, 0}, false).ok;
    const Outcome contiguous =
        attempt([&] { (void)bnorm::NCHWView<T>(&dummy, e[0], e[1], e[2], e[3]); });
    const Outcome last =
        attempt([&] { (void)bnorm::NCHWView<T>::channels_last(&dummy, e[0], e[1], e[2], e[3]); });
    FUZZ_CHECK(contiguous.threw == !extents_ok && last.threw == !extents_ok, "NCHWView of ", str(e),
               ": ", contiguous.message, last.message);
    trace("views ", str(e), " strides ", str(s), o.ok ? " ok" : " rejected");
  }

  Input& in_;
  bnorm::Options opt_;
  index_t channels_ = 0;
  std::optional<BN> staged_, fused_;
  Arena<T> arena_;
  std::optional<Forward> last_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  const std::uint8_t head = in.byte();
  // Bits 1-2 of the first byte pick the kernel set among those this CPU runs (the same bits are
  // expected from each; the digest tests compare them).
  std::vector<const char*> isas;
  for (const char* isa : {"sse2", "avx2", "avx512", "generic"})
    if (bnorm::isa_supported(isa)) isas.push_back(isa);
  bnorm::set_isa(isas[static_cast<std::size_t>(head >> 1 & 3) % isas.size()]);
  if (head & 1) {
    Session<double>(in).run();
  } else {
    Session<float>(in).run();
  }
  return 0;
}
