// Op 8's reference: the ReLU's gate, y = act(BN(x) + residual) and BN's backward against the
// long double reference, dresidual bit for bit, and the rule that two outputs share nothing.
#pragma once

#include <bnorm/bnorm.hpp>

#include "arena.hpp"
#include "fuzz_input.hpp"
#include "reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

/// Whether ReLU lets the gradient through where its output is v: v > 0, or NaN.
template <class T>
bool passes(T v) {
  return !(v <= T(0));
}

/// g = dy where the forward's ReLU passed (its y > 0 or NaN), else 0; dy itself without one.
template <class T>
std::vector<T> gate(const std::vector<T>& y, const std::vector<T>& dy, bool relu) {
  std::vector<T> g = dy;
  for (std::size_t k = 0; relu && k < g.size(); ++k)
    if (!passes(y[k])) g[k] = T(0);
  return g;
}

/// y = act(BN(x) + residual) against the long-double reference, BN with batch statistics of x
/// (batch) or with rm and rv; residual null: none. BN's bound is session_forward.hpp's; adding the
/// residual rounds once more. A channel of x holding NaN or Inf is NaN throughout (batch); a
/// NaN or infinite residual where BN is finite gives act of the residual.
template <class T>
void check_epilogue_forward(const std::vector<T>& xv, const std::vector<T>* residual,
                            const Shape& e, const Eigen::Array<T, Eigen::Dynamic, 1>& weight,
                            const Eigen::Array<T, Eigen::Dynamic, 1>& bias, bool batch,
                            const Eigen::Array<T, Eigen::Dynamic, 1>& rm,
                            const Eigen::Array<T, Eigen::Dynamic, 1>& rv, double eps, bool relu,
                            const std::vector<T>& y, const std::string& what) {
  using TT = Tol<T>;
  const index_t m = e[0] * e[2] * e[3];
  const LD floor = 64 * static_cast<LD>(std::numeric_limits<T>::min());
  // Element k, BN's reference bn within tol: y, and the ReLU's decision where it is sure.
  const auto expect = [&](std::size_t k, LD bn, LD tol) {
    LD z = bn;
    if (residual) {
      const LD r = static_cast<LD>((*residual)[k]);
      if (std::isnan(r)) return FUZZ_CHECK(std::isnan(y[k]), what, " y[", k, "] = ", y[k]);
      if (std::isinf(r)) {
        const LD want = relu && r < 0 ? 0 : r;
        return FUZZ_CHECK(static_cast<LD>(y[k]) == want, what, " y[", k, "] = ", y[k],
                          ", residual ", r);
      }
      if (std::fabs(r) > TT::big) return;
      z = bn + r;
      tol += TT::C * TT::u * (std::fabs(r) + std::fabs(z));
    }
    expect_close(y[k], relu ? std::max<LD>(z, 0) : z, tol, (what + " y").c_str(),
                 static_cast<index_t>(k));
    if (relu && z < -std::max(tol, floor))
      FUZZ_CHECK(y[k] == T(0), what, " y[", k, "] = ", y[k], ", expected 0: reference ", z);
  };
  for (index_t c = 0; c < e[1] && m > 0; ++c) {
    const LD w = weight.size() ? static_cast<LD>(weight[c]) : 1,
             b = bias.size() ? static_cast<LD>(bias[c]) : 0;
    std::vector<std::size_t> at;
    const std::vector<LD> xc = channel(xv, e, c, &at);
    if (batch) {
      const ChannelStats<T> s(xc, eps);
      if (!s.finite_values) {
        for (const std::size_t k : at)
          FUZZ_CHECK(std::isnan(y[k]), what, " y[", k, "] = ", y[k], ", expected NaN");
        continue;
      }
      const LD scale = std::fabs(w) * s.kappa + std::fabs(b);
      if (!s.checkable || !finite(w) || !finite(b) || scale > TT::big) continue;
      for (std::size_t i = 0; i < at.size(); ++i) {
        const LD bn = (xc[i] - s.mean) * s.invstd * w + b;
        expect(at[i], bn, (TT::C * TT::u + 4 * m * TT::ud) * scale + TT::C * TT::u * std::fabs(bn));
      }
    } else {
      const LD rmc = static_cast<LD>(rm[c]), rvc = static_cast<LD>(rv[c]);
      const LD ve = rvc + static_cast<LD>(eps);
      if (!(finite(rmc) && finite(rvc) && finite(w) && finite(b) && ve >= TT::tiny &&
            ve <= TT::big && static_cast<LD>(eps) <= TT::big))
        continue;
      const LD ist = 1 / std::sqrt(ve);
      for (std::size_t i = 0; i < at.size(); ++i) {
        if (!finite(xc[i])) continue;
        const LD kappa = (std::fabs(xc[i]) + std::fabs(rmc)) * ist + 1;
        if (kappa > TT::big || std::fabs(w) * kappa > TT::big) continue;
        const LD bn = (xc[i] - rmc) * ist * w + b;
        expect(at[i], bn, TT::C * TT::u * (std::fabs(w) * kappa + std::fabs(b) + std::fabs(bn)));
      }
    }
  }
}

/// dx, dweight and dbias of BN's backward of g (dL/dz) against the long-double reference, with
/// `weight` (C elements, or 0 for ones); the gradients have p elements. session_backward.hpp's
/// bounds.
template <class T>
void check_bn_backward(const std::vector<T>& xv, const std::vector<T>& g, const Shape& e,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& weight, index_t p, bool batch,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& rm,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& rv, double eps,
                       const std::vector<T>& dx, const Eigen::Array<T, Eigen::Dynamic, 1>& dw,
                       const Eigen::Array<T, Eigen::Dynamic, 1>& db, const std::string& what) {
  using TT = Tol<T>;
  const index_t m = e[0] * e[2] * e[3];
  FUZZ_CHECK(dw.size() == p && db.size() == p, what, ": gradients of ", dw.size(), " and ",
             db.size(), " elements, expected ", p);
  if (xv.empty()) {
    FUZZ_CHECK((dw == 0).all() && (db == 0).all(), what, ": gradients of an empty batch");
    return;
  }
  const LD k = TT::C * TT::u + 4 * m * TT::ud;
  for (index_t c = 0; c < e[1]; ++c) {
    const LD w = weight.size() ? static_cast<LD>(weight[c]) : 1;
    std::vector<std::size_t> at;
    const std::vector<LD> xc = channel(xv, e, c, &at), gc = channel(g, e, c);
    bool g_finite = true;
    LD gmax = 0, gsum_abs = 0, sg = 0, sgx = 0;
    for (const LD v : gc) {
      g_finite &= finite(v);
      gmax = std::max(gmax, std::fabs(v));
      gsum_abs += std::fabs(v);
    }
    if (!finite(w) || !g_finite || gsum_abs > TT::big) continue;
    if (batch) {
      const ChannelStats<T> s(xc, eps);
      if (!s.checkable) continue;
      LD xmax = 0;
      for (std::size_t i = 0; i < xc.size(); ++i) {
        const LD xh = (xc[i] - s.mean) * s.invstd;
        sg += gc[i];
        sgx += gc[i] * xh;
        xmax = std::max(xmax, std::fabs(xh));
      }
      const LD q = std::fabs(w) * s.invstd * gmax * (1 + xmax * xmax + xmax * s.kappa + s.kappa);
      if (q * m > TT::big || gmax * (s.amax + std::fabs(s.mean)) * m > TT::big) continue;
      const LD uf = underflow_dx<T>(s.invstd, s.amax + std::fabs(s.mean), m);
      for (std::size_t i = 0; i < xc.size(); ++i) {
        const LD xh = (xc[i] - s.mean) * s.invstd;
        const LD ref = w * s.invstd * (gc[i] - sg / m - xh * sgx / m);
        expect_close(dx[at[i]], ref, k * q + TT::C * TT::u * std::fabs(ref) + uf,
                     (what + " dx").c_str(), static_cast<index_t>(at[i]));
      }
      if (p) {
        expect_close(dw[c], sgx, k * gsum_abs * (s.kappa + xmax) + 4 * (m + 1) * TT::D,
                     (what + " dweight").c_str(), c);
        expect_close(db[c], sg, k * gsum_abs, (what + " dbias").c_str(), c);
      }
    } else {
      const LD rmc = static_cast<LD>(rm[c]), rvc = static_cast<LD>(rv[c]);
      const LD ve = rvc + static_cast<LD>(eps);
      if (!(finite(rmc) && finite(rvc) && ve >= TT::tiny && ve <= TT::big &&
            static_cast<LD>(eps) <= TT::big))
        continue;
      const LD ist = 1 / std::sqrt(ve);
      if (std::fabs(w) * ist * gmax > TT::big) continue;
      LD bound = 0;
      bool x_ok = true;
      for (std::size_t i = 0; i < xc.size(); ++i) {
        const LD ref = gc[i] * w * ist;
        expect_close(dx[at[i]], ref, TT::C * TT::u * std::fabs(ref) + 4 * TT::D * (ist + 2),
                     (what + " dx").c_str(), static_cast<index_t>(at[i]));
        x_ok &= finite(xc[i]) && std::fabs(xc[i]) + std::fabs(rmc) <= TT::big;
        sg += gc[i];
        sgx += gc[i] * (xc[i] - rmc) * ist;
        bound += std::fabs(gc[i]) * ((std::fabs(xc[i]) + std::fabs(rmc)) * ist + 1);
      }
      if (p && x_ok && bound <= TT::big) {
        expect_close(dw[c], sgx, k * bound + 4 * (m + 1) * TT::D, (what + " dweight").c_str(), c);
        expect_close(db[c], sg, k * gsum_abs, (what + " dbias").c_str(), c);
      }
    }
  }
}

/// dresidual must be exactly g: the gate applied to dy (NaN where dy is NaN).
template <class T>
void check_dresidual(const std::vector<T>& got, const std::vector<T>& g, const std::string& what) {
  FUZZ_CHECK(got.size() == g.size(), what);
  for (std::size_t k = 0; k < g.size(); ++k)
    FUZZ_CHECK(
        std::memcmp(&got[k], &g[k], sizeof(T)) == 0 || (std::isnan(got[k]) && std::isnan(g[k])),
        what, " dresidual[", k, "] = ", got[k], ", expected ", g[k]);
}

/// out shares no element with in, not even as exactly the same view (two outputs, or an output
/// and an input the call reads after writing it).
Verdict disjoint(const Placed& out, const Placed& in) {
  Verdict v = output_vs_input(out, in);
  if (out.count() > 0 && in.count() > 0 && out.buffer == in.buffer && out.offset == in.offset &&
      out.same_strides(in))
    v.reject();
  return v;
}

}  // namespace
