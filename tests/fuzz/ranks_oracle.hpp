// The oracle of fuzz_ranks.cpp, worked out independently of the library: which calls over views
// of any rank it must reject (brute force over the views' element offsets), and the long-double
// reference of BatchNorm over every axis but C, with bounds on the errors of T and double.
#pragma once

#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

namespace bnorm_fuzz {

using bnorm::index_t;
using bnorm::detail::concat;
using LD = long double;

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\nbnorm fuzz_ranks failure: %s\n", what.c_str());
  std::abort();
}
#define FUZZ_CHECK(cond, ...) \
  ((cond) ? (void)0 : bnorm_fuzz::fail(concat(__LINE__, ": ", #cond, ": ", __VA_ARGS__)))

using Outcome = std::optional<std::string>;  // the message of a bnorm::invalid_argument
template <class F>
Outcome attempt(const F& f) {  // any other exception escapes: a crash
  try {
    f();
  } catch (const bnorm::invalid_argument& e) {
    FUZZ_CHECK(std::strncmp(e.what(), "bnorm: ", 7) == 0, "message prefix: ", e.what());
    return e.what();
  }
  return {};
}
struct Verdict {  // the call must be rejected; else, whether it must be accepted
  bool reject = false, sure = true;
};
inline void check_verdict(const Verdict& v, const Outcome& o, const std::string& what) {
  if (v.reject) FUZZ_CHECK(o, what, ": accepted, expected a rejection");
  if (!v.reject && v.sure) FUZZ_CHECK(!o, what, ": rejected a valid call: ", *o);
}

inline index_t product(const index_t* b, const index_t* e) {
  return std::accumulate(b, e, index_t{1}, std::multiplies<>());
}

/// A view of rank R in the target's memory: element 0 is element `at` of it, `room` elements
/// are left in its buffer from there.
template <std::size_t R>
struct Placed {
  index_t at = 0, room = 0;
  std::array<index_t, R> e{}, s{};  // extents and strides
  bool known_unique = false;        // by its form: the library must accept it as an output
  index_t count() const { return product(e.data(), e.data() + R); }
  std::vector<index_t> offsets() const {  // of every element, in logical order
    std::vector<index_t> out(static_cast<std::size_t>(count()));
    for (std::size_t i = 0; i < out.size(); ++i) {
      index_t rest = static_cast<index_t>(i), o = at;
      for (std::size_t r = R; r-- > 0; rest /= e[r]) o += rest % e[r] * s[r];
      out[i] = o;
    }
    return out;
  }
  index_t span() const {  // largest offset + 1
    const auto o = offsets();
    return o.empty() ? 0 : *std::max_element(o.begin(), o.end()) - at + 1;
  }
  bool same_strides(const Placed& o) const {
    for (std::size_t r = 0; r < R; ++r)
      if (e[r] > 1 && s[r] != o.s[r]) return false;
    return e == o.e;
  }
  bool same_as(const Placed& o) const { return count() > 0 && at == o.at && same_strides(o); }
  std::string str(const char* name) const {  // for messages
    using bnorm::detail::shape_text;
    return concat(" ", name, " ", shape_text(e), " strides ", shape_text(s), " at ", at);
  }
};

/// verdict(v, out): an output must have a unique layout (the library's test is only
/// sufficient: raw strides of a unique layout may be rejected). verdict(v, out, &in): and share
/// no element with an input unless it is exactly that input (in place); different strides whose
/// address ranges meet are rejected too.
template <std::size_t R>
void verdict(Verdict& v, const Placed<R>& out, const Placed<R>* in = nullptr) {
  auto a = out.offsets(), b = in ? in->offsets() : a;
  std::sort(a.begin(), a.end()), std::sort(b.begin(), b.end());
  if (!in) v.reject |= std::adjacent_find(a.begin(), a.end()) != a.end();
  if (!in) v.sure &= out.known_unique || a.empty();
  if (!in || a.empty() || b.empty() || out.same_as(*in)) return;
  std::vector<index_t> common;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
  const bool meet = !(a.back() < b.front() || b.back() < a.front());
  v.reject |= !common.empty() || (meet && !out.same_strides(*in));
}

/// The arguments of a forward and its backward.
template <class T>
struct Args {
  Eigen::Array<T, Eigen::Dynamic, 1> w, b, rm, rv;
  double eps;
  bool batch;  // batch statistics, else the running ones rm and rv
};

template <std::size_t R>
index_t spatial(const std::array<index_t, R>& e) {
  return product(e.data() + 2, e.data() + R);
}
/// Channel c of values in logical order, and where each sits.
template <class T, std::size_t R>
std::vector<LD> channel(const std::vector<T>& v, const std::array<index_t, R>& e, index_t c,
                        std::vector<std::size_t>* at = nullptr) {
  std::vector<LD> out;
  const auto s = static_cast<std::size_t>(spatial(e));
  for (index_t n = 0; n < e[0]; ++n)
    for (std::size_t j = 0, k = static_cast<std::size_t>(n * e[1] + c) * s; j < s; ++j) {
      out.push_back(v[k + j]);
      if (at) at->push_back(k + j);
    }
  return out;
}

/// Unit roundoffs of T and of double, the bounds' constant, the smallest var + eps compared.
template <class T>
struct Tol {
  static constexpr LD u = std::numeric_limits<T>::epsilon() / 2, K = 64,
                      ud = std::numeric_limits<double>::epsilon() / 2,
                      tiny = sizeof(T) == 4 ? 1e-30L : 1e-290L;
};

struct Stats {  // of a channel: mean and var of the batch, or the running ones
  LD mean = 0, var = 0, invstd = 0, amax = 0, kappa = 0;
  bool finite = true, ok = false;  // ok: var + eps is large enough to compare T on
  bool nan_stats = false;          // a NaN mean or var: every y of the channel is NaN
};
template <class T>
Stats stats(const std::vector<LD>& x, const Args<T>& a, index_t c) {
  Stats s;
  const auto m = static_cast<LD>(x.size());
  for (const LD v : x) s.finite &= std::isfinite(v), s.mean += v;
  s.mean /= m;  // (a sum, then one division: a constant channel has exactly its mean)
  for (const LD v : x)
    s.var += (v - s.mean) * (v - s.mean) / m, s.amax = std::max(s.amax, std::fabs(v));
  if (!a.batch) s.mean = a.rm[c], s.var = a.rv[c];  // (NaN after a training on NaN or Inf)
  s.nan_stats = std::isnan(s.mean) || std::isnan(s.var);
  s.finite &= std::isfinite(s.mean) && std::isfinite(s.var);
  s.invstd = 1 / std::sqrt(s.var + static_cast<LD>(a.eps));
  s.kappa = (s.amax + std::fabs(s.mean)) * s.invstd + 1;  // bounds |xhat| + 1
  s.ok = s.finite && s.var + static_cast<LD>(a.eps) >= Tol<T>::tiny;
  return s;
}

template <class T>
void check_close(T got, LD ref, LD tol, const std::string& what, index_t i) {
  tol = std::max(tol, 64 * static_cast<LD>(std::numeric_limits<T>::min()));
  if (!(std::fabs(got - ref) <= tol))
    fail(concat(what, "[", i, "] = ", got, ", reference ", ref, ", tolerance ", tol));
}

/// y (out) of a forward of x, or with dy, dx (out) and the gradients of its backward, against
/// the reference channel by channel: a NaN or Inf in a channel of x (or a NaN running statistic)
/// makes its y NaN; the bounds are T's rounding (K u) and double's in sums of m terms (4 m ud)
/// times the magnitudes that carry them (kappa bounds |xhat| + 1).
template <class T, std::size_t R, class A = Eigen::Array<T, Eigen::Dynamic, 1>>
void check(const std::vector<T>& xv, const std::vector<T>& out, const std::array<index_t, R>& e,
           const Args<T>& a, const std::string& what, const std::vector<T>* dyv = nullptr,
           const A& dw = {}, const A& db = {}) {
  using Q = Tol<T>;
  const index_t m = e[0] * spatial(e);
  if (dyv) FUZZ_CHECK(dw.size() == (a.w.size() ? e[1] : 0) && db.size() == dw.size(), what);
  for (index_t c = 0; c < e[1] && m > 0; ++c) {
    std::vector<std::size_t> at;
    const auto x = channel(xv, e, c, &at), g = dyv ? channel(*dyv, e, c) : x;
    const LD w = a.w.size() ? a.w[c] : 1, b = a.b.size() ? a.b[c] : 0;
    const LD k = Q::K * Q::u + 4 * m * Q::ud;
    const Stats s = stats(x, a, c);
    LD gmax = 0, gsum = 0, sg = 0, sgx = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const LD ref = (x[i] - s.mean) * s.invstd * w + b;
      gmax = std::max(gmax, std::fabs(g[i])), gsum += std::fabs(g[i]);
      sg += g[i], sgx += g[i] * (x[i] - s.mean) * s.invstd;
      if (!dyv && ((a.batch && !s.finite) || s.nan_stats))
        FUZZ_CHECK(std::isnan(out[at[i]]), what, ": not NaN");
      const LD tol = k * (std::fabs(w) * s.kappa + std::fabs(b)) + Q::K * Q::u * std::fabs(ref);
      if (!dyv && s.ok) check_close(out[at[i]], ref, tol, what + " y", index_t(at[i]));
    }
    if (!dyv || !s.ok || !std::isfinite(gsum)) continue;
    const LD q = std::fabs(w) * s.invstd * gmax * (a.batch ? 3 * s.kappa * s.kappa + 1 : 1);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const LD xh = (x[i] - s.mean) * s.invstd;
      const LD ref = w * s.invstd * (a.batch ? g[i] - sg / m - xh * sgx / m : g[i]);
      const LD tol = k * q + Q::K * Q::u * std::fabs(ref);
      check_close(out[at[i]], ref, tol, what + " dx", index_t(at[i]));
    }
    if (dw.size()) check_close(dw[c], sgx, 2 * k * gsum * s.kappa, what + " dweight", c);
    if (dw.size()) check_close(db[c], sg, k * gsum, what + " dbias", c);
  }
}

/// A training forward's batch statistics (mean, biased var in double) against the reference.
template <class T, std::size_t R>
void check_statistics(const std::vector<T>& xv, const std::array<index_t, R>& e, const Args<T>& a,
                      const Eigen::ArrayXd& mean, const Eigen::ArrayXd& var,
                      const std::string& what) {
  const index_t m = e[0] * spatial(e);
  const LD ud = Tol<T>::ud;
  for (index_t c = 0; c < e[1] && m > 0; ++c) {
    const Stats s = stats(channel(xv, e, c), a, c);
    const LD big = (s.amax + std::fabs(s.mean)) * (s.amax + std::fabs(s.mean));
    if (!s.finite) continue;
    check_close<double>(mean[c], s.mean, 8 * m * ud * s.amax, what + " mean", c);
    check_close<double>(var[c], s.var, 8 * m * ud * big, what + " var", c);
  }
}

}  // namespace bnorm_fuzz
