// Reference and tolerances: a channel's statistics in long double, and how far from them T's
// results may lie.
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_input.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

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

}  // namespace
