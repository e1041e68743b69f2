// Session's backward step: both modules' backward with the last forward's Saved, their
// outcome against the oracle, and dx and the gradients against the long-double reference.
#pragma once

#include <bnorm/bnorm.hpp>

#include "reference.hpp"
#include "session.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

namespace {

template <class T>
void Session<T>::backward_step(Forward& f) {
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
  const std::string what = concat(
      "backward ", f.batch ? "batch" : "running", " x ", str(f.x.extents), " ", str(f.x.strides),
      " dy ", str(dy.extents), " ", str(dy.strides), " dx ", str(dx.extents), " ", str(dx.strides),
      " dx-dy +", dx.offset - dy.offset, dx.buffer == dy.buffer ? " same buffer" : "", " dx-x +",
      dx.offset - f.x.offset, dx.buffer == f.x.buffer ? " same buffer" : "");
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

template <class T>
void Session<T>::check_backward_values(const Forward& f, const std::vector<T>& dyv,
                                       const std::vector<T>& dx, const BN& bn,
                                       const char* variant) {
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

}  // namespace
