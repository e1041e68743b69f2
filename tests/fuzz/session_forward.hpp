// Session's forward step: both modules' forward on placed views, their outcome against the
// oracle, and y and the running statistics against the long-double reference.
#pragma once

#include <bnorm/bnorm.hpp>

#include "reference.hpp"
#include "session.hpp"

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace {

template <class T>
void Session<T>::forward_step() {
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

template <class T>
void Session<T>::check_forward_values(const Forward& f, const std::vector<T>& y,
                                      const char* variant, const BN& bn,
                                      const ModuleState<T>& st0) {
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
      const bool ok =
          s.checkable && finite(w) && finite(b) && std::fabs(w) * s.kappa + std::fabs(b) <= TT::big;
      if (ok) {
        const LD scale = std::fabs(w) * s.kappa + std::fabs(b);
        for (std::size_t i = 0; i < at.size(); ++i) {
          const LD ref = (xc[i] - s.mean) * s.invstd * w + b;
          const LD tol = (TT::C * TT::u + 4 * m * TT::ud) * scale + TT::C * TT::u * std::fabs(ref);
          expect_close(y[at[i]], ref, tol, variant, static_cast<index_t>(at[i]));
        }
      }
      if (updates) {
        const LD rm = static_cast<LD>(st0.running_mean[c]),
                 rv = static_cast<LD>(st0.running_var[c]);
        const LD fct =
            opt_.momentum ? static_cast<LD>(*opt_.momentum) : 1 / static_cast<LD>(st0.batches + 1);
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
      if (!(finite(rm) && finite(rv) && finite(w) && finite(b) && ve >= TT::tiny && ve <= TT::big &&
            static_cast<LD>(f.eps) <= TT::big))
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

}  // namespace
