// Session's free-functions step: staged:: and fused:: forward_training, forward_inference and
// backward side by side, on views and arrays from the input.
#pragma once

#include <bnorm/bnorm.hpp>

#include "reference.hpp"
#include "session.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace {

template <class T>
void Session<T>::free_functions() {
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
  if (y.extents != e || !(eps >= 0) || !(w.size() == b.size() && (w.size() == 0 || w.size() == c)))
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
    const LD wc = w.size() ? static_cast<LD>(w[ch]) : 1, bc = b.size() ? static_cast<LD>(b[ch]) : 0;
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
      std::string line = concat("channel ", ch, " q ", static_cast<double>(q), " kappa ",
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

}  // namespace
