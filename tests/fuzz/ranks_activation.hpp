// fuzz_ranks.cpp's op 6 (RanksActivation): BatchNorm1d and BatchNorm3d with
// Options::activation (relu or none), staged and fused side by side, and fused::relu_backward,
// over NCLView and NCDHWView in the Session's memory (contiguous, channels-last, cropped faces
// and raw strides, as its other ops place them):
// - forward(x, y) and forward(x, residual, y), the residual in a buffer of its own, exactly x,
//   or x's strides shifted in x's buffer; y anywhere the Session places outputs among x and the
//   residual; then up to two backwards, with or without dresidual (exactly dy, dx, x or y, or
//   shifted), sometimes after a new weight;
// - fused::relu_backward(y, dy, g), dy exactly y or shifted in y's buffer, g anywhere.
// Each call must throw bnorm::invalid_argument having changed nothing, or write only its
// outputs and agree with ranks_oracle.hpp's reference: y with act(BN(x) + residual) (relu is
// 1-Lipschitz, so BN's bound holds; where the reference lies farther than it below 0, y is
// exactly 0); a backward's gate is each variant's own forward's (y > 0 or NaN), dresidual that
// gate applied to dy bit for bit, dx and the gradients BN's backward of it.
#pragma once

#include <bnorm/bnorm.hpp>

#include "../module_state.hpp"
#include "ranks_oracle.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bnorm_fuzz {

/// BNORM_FUZZ_TRACE=1: each call of op 6 and its outcome, on stderr.
inline void trace_call(const std::string& what, const Outcome& o) {
  static const bool on = std::getenv("BNORM_FUZZ_TRACE") != nullptr;
  if (on) std::fprintf(stderr, "%s -> %s\n", what.c_str(), o ? o->c_str() : "ok");
}

/// g = dy where the forward's ReLU passed (its y > 0, or NaN), else +0; dy without one.
template <class T>
std::vector<T> relu_gate(const std::vector<T>& y, const std::vector<T>& dy, bool relu) {
  std::vector<T> g = dy;
  for (std::size_t k = 0; relu && k < g.size(); ++k)
    if (y[k] <= T(0)) g[k] = T(0);
  return g;
}

/// y = act(BN(x) + residual) (residual null: none) against the reference: BN's bound of
/// check(), one more rounding for the addition; NaN through a channel of x holding NaN or Inf
/// (batch); act(residual) where the residual is NaN or infinite.
template <class T, std::size_t R>
void check_epilogue(const std::vector<T>& xv, const std::vector<T>* residual,
                    const std::vector<T>& y, const std::array<index_t, R>& e, const Args<T>& a,
                    bool relu, const std::string& what) {
  using Q = Tol<T>;
  const index_t m = e[0] * spatial(e);
  const LD floor = 64 * static_cast<LD>(std::numeric_limits<T>::min());
  for (index_t c = 0; c < e[1] && m > 0; ++c) {
    std::vector<std::size_t> at;
    const auto x = channel(xv, e, c, &at);
    const LD w = a.w.size() ? a.w[c] : 1, b = a.b.size() ? a.b[c] : 0;
    const Stats s = stats(x, a, c);
    if (a.batch && !s.finite) {
      for (const std::size_t k : at) FUZZ_CHECK(std::isnan(y[k]), what, " y[", k, "]: not NaN");
      continue;
    }
    if (!s.ok) continue;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::size_t k = at[i];
      const LD bn = (x[i] - s.mean) * s.invstd * w + b;
      LD z = bn, tol = (Q::K * Q::u + 4 * m * Q::ud) * (std::fabs(w) * s.kappa + std::fabs(b)) +
                       Q::K * Q::u * std::fabs(bn);
      if (residual) {
        const LD r = (*residual)[k];
        if (std::isnan(r)) FUZZ_CHECK(std::isnan(y[k]), what, " y[", k, "] = ", y[k]);
        if (std::isinf(r))
          FUZZ_CHECK(y[k] == (relu && r < 0 ? 0 : r), what, " y[", k, "] = ", y[k], ", r ", r);
        if (!std::isfinite(r)) continue;
        z = bn + r;
        tol += Q::K * Q::u * (std::fabs(r) + std::fabs(z));
      }
      check_close(y[k], relu ? std::max<LD>(z, 0) : z, tol, what + " y", index_t(k));
      if (relu && z < -std::max(tol, floor))
        FUZZ_CHECK(y[k] == T(0), what, " y[", k, "] = ", y[k], ", expected 0: reference ", z);
    }
  }
}

template <class T, template <class> class V, class S>
class RanksActivation {
  static constexpr std::size_t R = V<T>::rank;
  using E = typename V<T>::extents_type;
  using P = Placed<R>;
  using BN = std::conditional_t<R == 3, bnorm::BatchNorm1d<T>, bnorm::BatchNorm3d<T>>;
  using Saved = typename BN::Saved;
  using Bytes = std::vector<unsigned char>;
  using ModuleState = bnorm_test::ModuleState<T>;

 public:
  explicit RanksActivation(S& s) : s_(s) {}

  void run() {
    if (s_.in_.byte() & 1)
      module();
    else
      relu_backward();
  }

 private:
  /// Every byte of `now` is before's but the elements of `outs`.
  static void unchanged_except(const Bytes& before, const Bytes& now,
                               const std::vector<const P*>& outs, const std::string& what) {
    Bytes expect = before;
    for (const P* p : outs)
      for (std::size_t o : p ? p->offsets() : std::vector<index_t>())
        std::memcpy(expect.data() + o * sizeof(T), now.data() + o * sizeof(T), sizeof(T));
    FUZZ_CHECK(expect == now, what, ": wrote outside its outputs");
  }
  /// The staged call, then on the same memory the fused one: both throw alike with the same
  /// message, meet the verdict, change nothing (memory, both modules) when they throw and write
  /// only `outs` when they do not. Returns the memory after the staged call, whether they threw.
  template <class A, class B>
  std::pair<Bytes, bool> run_pair(const Verdict& v, const std::vector<const P*>& outs, BN& ms,
                                  BN& mf, const A& staged, const B& fused,
                                  const std::string& what) {
    Bytes& mem = s_.mem_;
    const Bytes before = mem;
    const ModuleState s0(ms), f0(mf);
    const Outcome os = attempt(staged);
    Bytes after = mem;
    std::copy(before.begin(), before.end(), mem.begin());
    const Outcome of = attempt(fused);
    trace_call(what, of);
    FUZZ_CHECK(os == of, what, ": staged ", os.value_or("ok"), ", fused ", of.value_or("ok"));
    check_verdict(v, of, what);
    if (of) {
      FUZZ_CHECK(after == before && mem == before, what, ": wrote on throw");
      FUZZ_CHECK(ModuleState(ms) == s0 && ModuleState(mf) == f0, what, ": state changed on throw");
    } else {
      unchanged_except(before, after, outs, what + " (staged)");
      unchanged_except(before, mem, outs, what + " (fused)");
    }
    return {std::move(after), of.has_value()};
  }
  static void disjoint(Verdict& v, const P& out, const P& in) {  // not even exactly in
    verdict(v, out, &in);
    v.reject |= out.same_as(in);
  }

  /// x's residual: in its own buffer (sometimes of another shape), exactly x, or x's strides
  /// shifted in x's buffer (inputs may overlap).
  std::optional<P> residual(const P& x) {
    const std::uint8_t how = s_.in_.byte();
    if (how % 4 == 1) return x;
    if (how % 4 == 2) {
      const index_t shift = 1 + s_.in_.byte() % 8;
      if (x.count() == 0 || shift + x.span() > x.room) return std::nullopt;
      P p = x;
      p.at += shift, p.room -= shift;
      return p;
    }
    const E re = s_.mutate(x.e);
    return s_.place(re);
  }

  /// A staged and a fused module with the Session's options, state and an activation: a forward
  /// with or without a residual, then up to two backwards with its Saved.
  void module() {
    auto& in = s_.in_;
    const std::uint8_t flags = in.byte();
    bnorm::Options o = s_.fused_->options();
    o.activation = flags % 4 == 3 ? bnorm::Activation::none : bnorm::Activation::relu;
    const index_t channels = s_.fused_->num_features();
    o.variant = bnorm::Variant::staged;
    BN ms(channels, o);
    o.variant = bnorm::Variant::fused;
    BN mf(channels, o);
    for (BN* bn : {&ms, &mf}) {
      for (std::size_t k = 0; k < 4; ++k) *S::arrays(*bn)[k] = *S::arrays(*s_.fused_)[k];
      bn->train(s_.fused_->is_training());
    }
    const bool relu = o.activation == bnorm::Activation::relu;
    const E e = s_.extents(channels);
    const auto x = s_.place(e);
    if (!x) return;
    std::optional<P> r;
    if ((flags & 4) && !(r = residual(*x))) return;
    std::vector<const P*> inputs{&*x};
    if (r) inputs.push_back(&*r);
    const auto y = s_.place(s_.mutate(e), inputs);
    if (!y) return;
    if (r) s_.values(*r);
    const std::vector<T> xv = s_.values(*x), rv = r ? s_.read(*r, s_.mem_) : std::vector<T>();
    const int backwards = in.byte() % 3;
    const index_t m = e[0] * spatial(e);
    const bool batch = mf.is_training() || !o.track_running_stats;
    Verdict v;
    v.reject =
        e[1] != channels || y->e != e || !s_.state_ok() || (batch && m == 1) || (r && r->e != e);
    verdict(v, *y), verdict(v, *y, &*x);
    if (r) verdict(v, *y, &*r);
    const ModuleState st(mf);
    const std::string what =
        concat("module ", relu ? "relu" : "none", batch ? " batch" : " running", x->str("x"),
               r ? r->str("residual") : "", y->str("y"));
    Saved ss, sf;
    const auto forward = [&](BN& bn, Saved& saved) {
      saved = r ? bn.forward(s_.view(*x), s_.view(*r), s_.view(*y))
                : bn.forward(s_.view(*x), s_.view(*y));
    };
    const auto [after, threw] = run_pair(
        v, {&*y}, ms, mf, [&] { forward(ms, ss); }, [&] { forward(mf, sf); }, what);
    if (threw) return;
    const bool in_place = y->same_as(*x);
    for (const Saved* saved : {&ss, &sf})
      FUZZ_CHECK(saved->in_place() == in_place && saved->has_residual() == r.has_value() &&
                     saved->activation() == o.activation,
                 what, ": Saved");
    FUZZ_CHECK(ms.num_batches_tracked() == mf.num_batches_tracked(), what);
    const std::vector<T> ys = s_.read(*y, after), yf = s_.read(*y, s_.mem_);
    const Args<T> a{st.weight, st.bias, st.running_mean, st.running_var, o.eps, batch};
    check_epilogue(xv, r ? &rv : nullptr, ys, e, a, relu, what + " staged");
    check_epilogue(xv, r ? &rv : nullptr, yf, e, a, relu, what + " fused");

    for (int k = 0; k < backwards; ++k) {
      const std::uint8_t b = in.byte();
      if (b & 1) {  // a new weight, sometimes of a wrong size: the mask keeps the forward's
        const index_t size = (b & 2) ? in.byte() % 4 : o.affine ? channels : 0;
        mf.weight() = s_.array(size, -2, 2);
        ms.weight() = mf.weight();
      }
      const bool y_read = relu && r;  // the fused backward reads the mask from y
      const E ge = s_.mutate(e);
      std::optional<P> dy = *y;  // dy written over y, which no one reads
      if ((b & 0x1C) != 0x1C || y_read || in_place || ge != y->e || y->count() == 0)
        dy = s_.place(ge);
      if (!dy) return;
      const std::vector<T> dyv = s_.values(*dy);
      const auto dx = s_.place(s_.mutate(ge), {&*dy, &*x, &*y});
      if (!dx) return;
      std::optional<P> dr;
      if ((b & 0x20) && !(dr = s_.place(s_.mutate(ge), {&*dy, &*dx, &*x, &*y}))) return;
      const std::vector<T> now = s_.read(*x, s_.mem_);
      FUZZ_CHECK(in_place || bnorm_test::same_bits(now, xv), what, ": x changed before backward");
      Verdict bv;
      bv.reject = in_place || ge != e || dx->e != ge || !state_ok(mf);
      verdict(bv, *dx), verdict(bv, *dx, &*dy), verdict(bv, *dx, &*x);
      if (y_read) verdict(bv, *dx, &*y);
      if (dr) {
        bv.reject |= !r || dr->e != ge;
        verdict(bv, *dr), verdict(bv, *dr, &*dy);
        disjoint(bv, *dr, *dx), disjoint(bv, *dr, *x), disjoint(bv, *dr, *y);
      }
      const std::string bwhat =
          concat(what, "; backward", dy->str("dy"), dx->str("dx"), dr ? dr->str("dresidual") : "");
      const auto backward = [&](BN& bn, const Saved& saved) {
        if (dr)
          bn.backward(saved, s_.view(*dy), s_.view(*dx), s_.view(*dr));
        else
          bn.backward(saved, s_.view(*dy), s_.view(*dx));
      };
      const auto [b_after, b_threw] = run_pair(
          bv, {&*dx, dr ? &*dr : nullptr}, ms, mf, [&] { backward(ms, ss); },
          [&] { backward(mf, sf); }, bwhat);
      if (b_threw) continue;  // nothing changed: the Saved serves on
      for (const bool staged : {true, false}) {
        const Bytes& mem = staged ? b_after : s_.mem_;
        const BN& bn = staged ? ms : mf;
        const std::vector<T> g = relu_gate(staged ? ys : yf, dyv, relu);
        const std::string vwhat = bwhat + (staged ? " staged" : " fused");
        if (dr) {
          const std::vector<T> got = s_.read(*dr, mem);
          FUZZ_CHECK(bnorm_test::same_bits(got, g), vwhat, ": dresidual is not the gated dy");
        }
        const Args<T> ba{bn.weight(), bn.bias(), st.running_mean, st.running_var, o.eps, batch};
        check(xv, s_.read(*dx, mem), e, ba, vwhat, &g, bn.weight_grad(), bn.bias_grad());
      }
      if (dx->same_as(*x) || (y_read && dx->same_as(*y))) return;  // the Saved has served
    }
  }
  static bool state_ok(const BN& bn) {
    const auto& o = bn.options();
    const index_t p = o.affine ? bn.num_features() : 0;
    const index_t q = o.track_running_stats ? bn.num_features() : 0;
    return bn.weight().size() == p && bn.bias().size() == p && bn.running_mean().size() == q &&
           bn.running_var().size() == q;
  }

  /// fused::relu_backward(y, dy, g) over rank-R views: g must be dy where y > 0 or NaN, else
  /// +0, bit for bit.
  void relu_backward() {
    auto& in = s_.in_;
    const E e = s_.extents(1 + in.byte() % 5);
    const auto y = s_.place(e);
    if (!y) return;
    const std::uint8_t how = in.byte();
    std::optional<P> dy = *y;
    if (how % 4 == 2) {
      const index_t shift = 1 + in.byte() % 8;
      if (y->count() == 0 || shift + y->span() > y->room) return;
      dy->at += shift, dy->room -= shift;
    } else if (how % 4 != 1) {
      const E de = s_.mutate(e);
      if (!(dy = s_.place(de))) return;
    }
    const auto g = s_.place(s_.mutate(dy->e), {&*y, &*dy});
    if (!g) return;
    s_.values(*dy);
    const std::vector<T> yv = s_.values(*y), dyv = s_.read(*dy, s_.mem_);
    Verdict v;
    v.reject = dy->e != e || g->e != e;
    verdict(v, *g), verdict(v, *g, &*dy), verdict(v, *g, &*y);
    const std::string what = concat("relu_backward", y->str("y"), dy->str("dy"), g->str("g"));
    const Bytes before = s_.mem_;
    const Outcome o =
        attempt([&] { bnorm::fused::relu_backward<T>(s_.view(*y), s_.view(*dy), s_.view(*g)); });
    trace_call(what, o);
    check_verdict(v, o, what);
    if (o) return FUZZ_CHECK(s_.mem_ == before, what, ": wrote on throw");
    unchanged_except(before, s_.mem_, {&*g}, what);
    const std::vector<T> want = relu_gate(yv, dyv, true), got = s_.read(*g, s_.mem_);
    FUZZ_CHECK(bnorm_test::same_bits(got, want), what, ": g is not dy gated by y");
  }

  S& s_;
};

}  // namespace bnorm_fuzz
