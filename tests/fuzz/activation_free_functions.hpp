// ActivationStep's free functions: staged:: and fused:: forward and backward with an activation
// and maybe a residual, side by side; and fused::relu_backward.
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_activation.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

template <class T, class S>
void ActivationStep<T, S>::free_step() {
  static const double epses[] = {1e-5, 0, 1e-3, -1, std::numeric_limits<double>::quiet_NaN()};
  const std::uint8_t flags = in_.byte();
  const bnorm::Activation act = flags % 4 == 3 ? bnorm::Activation::none : bnorm::Activation::relu;
  const bool relu = act == bnorm::Activation::relu, training = !(flags & 8);
  const Shape e = s_.shape_from(1 + in_.byte() % 4);
  if (e[1] < 0 || e[1] > kMaxChannels) return;
  Placed x;
  std::optional<Placed> r;
  if (!place_inputs(e, flags & 4, x, r)) return;
  std::vector<const Placed*> inputs{&x};
  if (r) inputs.push_back(&*r);
  auto yp = s_.place_output(s_.mutate(e), inputs);
  if (!yp) return;
  const Placed y = *yp;
  fill(x, r);
  const std::vector<T> xv = arena_.read(x), rv = r ? arena_.read(*r) : std::vector<T>();
  const std::uint8_t sizes = in_.byte();
  const index_t c = std::max<index_t>(e[1], 0), m = e[0] * e[2] * e[3];
  auto size = [&](int bit) { return (sizes >> bit & 1) ? (sizes >> 4) % 5 : c; };
  const Array w = make_array<T>(in_, (sizes & 64) ? 0 : size(0), -2, 2);
  const Array b = make_array<T>(in_, (sizes & 64) ? 0 : size(1), -2, 2);
  const Array rm = make_array<T>(in_, size(2), -3, 3), rvar = make_array<T>(in_, size(3), 0, 3);
  const double eps = in_.pick(epses);

  Verdict v;
  if (y.extents != e || !(eps >= 0) || !(w.size() == b.size() && (w.size() == 0 || w.size() == c)))
    v.reject();
  if (training && m == 1) v.reject();
  if (!training && (rm.size() != c || rvar.size() != c)) v.reject();
  if (r && r->extents != e) v.reject();
  v.merge(output_unique(y));
  v.merge(output_vs_input(y, x));
  if (r) v.merge(output_vs_input(y, *r));

  namespace F = bnorm::fused;
  using View = bnorm::NCHWView<const T>;
  bnorm::staged::Cache<T> cache;
  F::BatchStatistics stats;
  const std::string what =
      concat("free ", relu ? "relu" : "none", training ? " training" : " inference", where("x", x),
             r ? where("residual", *r) : "", where("y", y), " w ", w.size(), " b ", b.size(),
             " rm ", rm.size(), " rv ", rvar.size(), " eps ", eps);
  const auto staged = [&] {
    const View xc = arena_.cview(x), rc = r ? arena_.cview(*r) : xc;
    const View* rp = r ? &rc : nullptr;
    if (training)
      cache = bnorm::staged::forward_training<T, bnorm::NCHWView>(xc, rp, w, b, eps, arena_.view(y),
                                                                  act);
    else
      cache = bnorm::staged::forward_inference<T, bnorm::NCHWView>(xc, rp, w, b, rm, rvar, eps,
                                                                   arena_.view(y), act);
  };
  const auto fused = [&] {
    const View xc = arena_.cview(x);
    if (training && r)
      stats = F::forward_training<T>(xc, arena_.cview(*r), w, b, eps, arena_.view(y), act);
    if (training && !r) stats = F::forward_training<T>(xc, w, b, eps, arena_.view(y), act);
    if (!training && r)
      F::forward_inference<T>(xc, arena_.cview(*r), w, b, rm, rvar, eps, arena_.view(y), act);
    if (!training && !r) F::forward_inference<T>(xc, w, b, rm, rvar, eps, arena_.view(y), act);
  };
  const auto none = [] { return std::make_tuple(0, 0); };
  const auto [after_staged, s_threw, f_threw] =
      run_pair(v, v, {&y}, none, staged, fused, what, true);
  if (f_threw) return;
  (void)s_threw;
  const std::vector<T> ys = read(y, after_staged), yf = arena_.read(y);
  check_epilogue_forward(xv, r ? &rv : nullptr, e, w, b, training, rm, rvar, eps, relu, ys,
                         what + " staged");
  check_epilogue_forward(xv, r ? &rv : nullptr, e, w, b, training, rm, rvar, eps, relu, yf,
                         what + " fused");
  const bool in_place = y.count() > 0 && y.buffer == x.buffer && y.offset == x.offset;
  if ((flags & 16) || in_place) return;

  // Backward over the same x, with the forward's w.
  const std::uint8_t bb = in_.byte();
  const Shape ge = s_.mutate(e);
  auto dyp = s_.layout(ge, s_.form());
  if (!dyp) return;
  dyp->buffer = s_.input_buffer(*dyp);
  const Placed dy = *dyp;
  arena_.write(dy, make_values<T>(in_, ge));
  const std::vector<T> dyv = arena_.read(dy);
  auto dxp = s_.place_output(s_.mutate(ge), {&dy, &x, &y});
  if (!dxp) return;
  const Placed dx = *dxp;
  std::optional<Placed> dr;
  if ((r && (bb & 1)) || (!r && bb % 8 == 7)) {  // without a residual: must be rejected
    dr = s_.place_output(s_.mutate(ge), {&dy, &dx});
    if (!dr) return;
  }
  // The fused backward's ReLU: the forward's arrays, or arrays of a wrong size, or its weight
  // also given as dweight.
  const int relu_how = (bb >> 3) % 8;  // 6: wrong size, 7: dweight is relu.weight
  Array rw = relu_how == 6 ? Array::Zero(c + 1) : w;
  Verdict vs, vf;
  if (ge != e || dx.extents != ge) vs.reject();
  vs.merge(output_unique(dx));
  vs.merge(output_vs_input(dx, dy));
  vf = vs;
  vf.merge(output_vs_input(dx, x));
  if (relu && relu_how >= 6) vf.reject();
  if (dr) {
    if (!r || dr->extents != ge) vs.reject();
    vs.merge(output_unique(*dr));
    vs.merge(output_vs_input(*dr, dy));
    vs.merge(disjoint(*dr, dx));
  }
  Array dws = Array::Constant(3, 7), dbs = dws, dwf = dws, dbf = dws;
  Array& dweight_f = relu && relu_how == 7 ? rw : dwf;
  const Array rw0 = rw;
  const std::string bwhat =
      concat(what, "; backward", where("dy", dy), where("dx", dx),
             dr ? where("dresidual", *dr) : "", relu ? concat(" relu ", relu_how) : "");
  const F::Relu<T> gate_arrays{rw, b};
  const auto staged_b = [&] {
    bnorm::NCHWView<T> drv = dr ? arena_.view(*dr) : arena_.view(dx);
    bnorm::staged::backward<T, bnorm::NCHWView>(cache, w, arena_.cview(dy), arena_.view(dx),
                                                dr ? &drv : nullptr, dws, dbs);
  };
  const auto fused_b = [&] {
    const View xc = arena_.cview(x), dyc = arena_.cview(dy);
    if (training && relu)
      F::backward<T>(xc, dyc, w, stats, arena_.view(dx), dweight_f, dbf, gate_arrays);
    if (training && !relu) F::backward<T>(xc, dyc, w, stats, arena_.view(dx), dwf, dbf);
    if (!training && relu)
      F::backward_inference<T>(xc, dyc, w, rm, rvar, eps, arena_.view(dx), dweight_f, dbf,
                               gate_arrays);
    if (!training && !relu)
      F::backward_inference<T>(xc, dyc, w, rm, rvar, eps, arena_.view(dx), dwf, dbf);
  };
  const auto do_fused = [&] {
    if (!r) fused_b();
  };
  const auto [after_bs, bs_threw, bf_threw] = run_pair(
      vs, r ? Verdict{} : vf, {&dx, dr ? &*dr : nullptr}, none, staged_b, do_fused, bwhat, false);
  // Gradients are written only on success; the ReLU's arrays never.
  FUZZ_CHECK(same_bits(rw, rw0) || (!bf_threw && &dweight_f == &rw), bwhat, ": relu.weight");
  if (bs_threw) FUZZ_CHECK((dws == 7).all() && (dbs == 7).all(), bwhat, ": staged gradients");
  if (bf_threw) FUZZ_CHECK((dwf == 7).all() && (dbf == 7).all(), bwhat, ": fused gradients");
  const index_t p = w.size() ? c : 0;
  if (!bs_threw) {
    const std::vector<T> g = gate(ys, dyv, relu);
    if (dr) check_dresidual(read(*dr, after_bs), g, bwhat + " staged");
    check_bn_backward(xv, g, e, w, p, training, rm, rvar, eps, read(dx, after_bs), dws, dbs,
                      bwhat + " staged");
  }
  if (!r && !bf_threw)
    check_bn_backward(xv, gate(yf, dyv, relu), e, w, p, training, rm, rvar, eps, arena_.read(dx),
                      dwf, dbf, bwhat + " fused");
}

template <class T, class S>
void ActivationStep<T, S>::relu_backward_step() {
  const Shape e = s_.shape_from(1 + in_.byte() % 4);
  auto yp = s_.layout(e, s_.form());
  if (!yp) return;
  yp->buffer = s_.input_buffer(*yp);
  const Placed y = *yp;
  const std::uint8_t how = in_.byte();
  Placed dy = y;
  if (how % 4 == 2 && y.count() > 0) {
    dy.offset += 1 + in_.byte() % 8;
    if (dy.offset + S::span(dy) > arena_.elements(dy.buffer)) return;
  } else if (how % 4 != 1) {
    const Shape de = s_.mutate(e);
    auto p = s_.layout(de, s_.form());
    if (!p) return;
    p->buffer = s_.input_buffer(*p);
    dy = *p;
  }
  auto gp = s_.place_output(s_.mutate(dy.extents), {&y, &dy});
  if (!gp) return;
  const Placed g = *gp;
  arena_.write(dy, make_values<T>(in_, dy.extents));
  arena_.write(y, make_values<T>(in_, e));
  const std::vector<T> yv = arena_.read(y), dyv = arena_.read(dy);

  Verdict v;
  if (dy.extents != e || g.extents != e) v.reject();
  v.merge(output_unique(g));
  v.merge(output_vs_input(g, dy));
  v.merge(output_vs_input(g, y));
  const auto before = arena_.snapshot();
  const Outcome o = attempt(
      [&] { bnorm::fused::relu_backward<T>(arena_.cview(y), arena_.cview(dy), arena_.view(g)); });
  const std::string what = concat("relu_backward", where("y", y), where("dy", dy), where("g", g));
  trace(what, " -> ", o.threw ? o.message : "ok");
  check_verdict(v, o, what);
  if (o.threw) return FUZZ_CHECK(arena_.snapshot() == before, what, ": wrote on throw");
  arena_.expect_unchanged_except(before, {&g}, what.c_str());
  const std::vector<T> gv = arena_.read(g);
  for (std::size_t k = 0; k < gv.size(); ++k) {
    const T want = passes(yv[k]) ? dyv[k] : T(0);
    FUZZ_CHECK(std::memcmp(&gv[k], &want, sizeof(T)) == 0, what, " g[", k, "] = ", gv[k],
               ", expected ", want, " (y ", yv[k], ", dy ", dyv[k], ")");
  }
}

}  // namespace
