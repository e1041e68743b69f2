// The activation and residual entry points in fuzz_bnorm.cpp's op 8 (ActivationStep), on the
// Session's views, memory, options and module state:
// - modules with Options::activation (relu or none), staged and fused side by side:
//   forward(x, y) and forward(x, residual, y), the residual in a buffer of its own, exactly x,
//   or x's strides shifted in x's buffer (overlapping inputs), y anywhere place_output puts it
//   (exactly x or the residual, interleaved, partly overlapping); then up to two backwards, with
//   or without dresidual (exactly dy, dx, x or y, interleaved or partly overlapping), sometimes
//   after a new weight (the mask keeps the forward's);
// - the free functions with an activation: staged:: and fused:: forward_training and
//   forward_inference with and without a residual, then staged::backward (dresidual included)
//   beside fused::backward and backward_inference with a fused::Relu;
// - fused::relu_backward with its output anywhere.
// Each call must throw bnorm::invalid_argument having changed nothing, or agree with the long-
// double reference and write only its outputs; the oracle (fuzz_bnorm.cpp's) says which calls
// must be rejected. y is checked against act(BN(x) + residual) (relu is 1-Lipschitz, so BN's
// bound holds); where the reference's pre-activation value lies farther than that bound from 0
// the ReLU's decision is known, and y must be exactly 0 below. A backward's gate is each
// variant's own forward's (y > 0 or NaN): dresidual must be exactly that gate applied to dy,
// and dx and the gradients BN's backward of it, with the weight of the backward. Statistics
// and running buffers must have the bits of the same module without an activation.
//
// Included by fuzz_bnorm.cpp after its helpers (Input, Arena, Placed, Verdict, the reference's
// tolerances), whose anonymous namespace this reopens; Session befriends ActivationStep.
#pragma once

#include <bnorm/bnorm.hpp>

#include <cstring>
#include <optional>
#include <string>
#include <tuple>
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
/// (batch) or with rm and rv; residual null: none. BN's bound is fuzz_bnorm.cpp's; adding the
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
/// `weight` (C elements, or 0 for ones); the gradients have p elements. fuzz_bnorm.cpp's bounds.
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

template <class T, class S>
class ActivationStep {
 public:
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using BN = bnorm::BatchNorm2d<T>;

  explicit ActivationStep(S& s) : s_(s), in_(s.in_), arena_(s.arena_) {}

  void run() {
    switch (in_.byte() % 4) {
      case 0:
      case 1:
        module_step();
        break;
      case 2:
        free_step();
        break;
      default:
        relu_backward_step();
    }
  }

 private:
  using Saved = typename BN::Saved;
  using Snapshot = typename Arena<T>::Snapshot;

  /// One forward of the module pair, what the backwards need of it.
  struct Forward {
    Placed x, y;
    std::optional<Placed> r;
    std::vector<T> xv, ys, yf;  // x; y of the staged and of the fused forward
    bool batch = true, relu = true, in_place = false;
    Array running_mean, running_var;  // as the forward used them
    Saved ss, sf;
  };

  // --- placing views ------------------------------------------------------------------------

  /// An input x's residual: in a buffer of its own (sometimes of another shape), exactly x, or
  /// x's strides shifted inside x's buffer (inputs may overlap).
  std::optional<Placed> place_residual(const Placed& x) {
    const std::uint8_t how = in_.byte();
    if (how % 4 == 1) return x;
    if (how % 4 == 2 && x.count() > 0) {
      Placed p = x;
      p.offset += 1 + in_.byte() % 8;
      if (p.offset + S::span(p) <= arena_.elements(p.buffer)) return p;
    }
    const Shape e = s_.mutate(x.extents);  // (before the form: the input's order)
    auto p = s_.layout(e, s_.form());
    if (!p) return std::nullopt;
    p->buffer = s_.input_buffer(*p);
    return p;
  }
  /// x (and its residual) placed and filled; nullopt when a view cannot be had.
  bool place_inputs(const Shape& e, bool with_residual, Placed& x, std::optional<Placed>& r) {
    auto xp = s_.layout(e, s_.form());
    if (!xp) return false;
    xp->buffer = s_.input_buffer(*xp);
    x = *xp;
    if (with_residual && !(r = place_residual(x))) return false;
    return true;
  }
  /// Values into the residual, then into x (x's own where they overlap).
  void fill(const Placed& x, const std::optional<Placed>& r) {
    if (r) arena_.write(*r, make_values<T>(in_, r->extents));
    arena_.write(x, make_values<T>(in_, x.extents));
  }
  bool state_ok(const BN& bn) const {
    const index_t p = bn.options().affine ? bn.num_features() : 0;
    const index_t q = bn.options().track_running_stats ? bn.num_features() : 0;
    return bn.weight().size() == p && bn.bias().size() == p && bn.running_mean().size() == q &&
           bn.running_var().size() == q;
  }
  std::vector<T> read(const Placed& p, const Snapshot& from) const { return arena_.read(p, &from); }
  std::string where(const char* name, const Placed& p) const {
    return concat(" ", name, " ", str(p.extents), " ", str(p.strides), " buffer ", p.buffer, " +",
                  p.offset);
  }

  /// Runs `staged` and, on the same memory, `fused`; both must throw alike (the same message
  /// when `same_message`) and meet their verdicts; a throw changes nothing in memory and in
  /// `state()`, a success writes only `outs`. Returns the memory after the staged call and
  /// whether each threw.
  template <class State, class A, class B>
  std::tuple<Snapshot, bool, bool> run_pair(const Verdict& vs, const Verdict& vf,
                                            const std::vector<const Placed*>& outs,
                                            const State& state, const A& staged, const B& fused,
                                            const std::string& what, bool same_message) {
    const Snapshot before = arena_.snapshot();
    const auto st0 = state();
    const Outcome os = attempt(staged);
    const Snapshot after_staged = arena_.snapshot();
    const auto st_s = state();
    arena_.restore(before);
    const Outcome of = attempt(fused);
    trace(what, " -> staged ", os.threw ? os.message : "ok", ", fused ",
          of.threw ? of.message : "ok");
    if (same_message)
      FUZZ_CHECK(os.threw == of.threw && os.message == of.message, what, ": staged '", os.message,
                 "' vs fused '", of.message, "'");
    check_verdict(vs, os, what + " (staged)");
    check_verdict(vf, of, what + " (fused)");
    if (os.threw) {
      FUZZ_CHECK(after_staged == before, what, ": staged wrote on throw");
      FUZZ_CHECK(std::get<0>(st_s) == std::get<0>(st0), what, ": staged state changed on throw");
    }
    if (of.threw) {
      FUZZ_CHECK(arena_.snapshot() == before, what, ": fused wrote on throw");
      FUZZ_CHECK(std::get<1>(state()) == std::get<1>(st0), what, ": fused state changed on throw");
    }
    if (!of.threw) arena_.expect_unchanged_except(before, outs, (what + " (fused)").c_str());
    if (!os.threw) {
      Arena<T> staged_view = arena_;
      staged_view.restore(after_staged);
      staged_view.expect_unchanged_except(before, outs, (what + " (staged)").c_str());
    }
    return {after_staged, os.threw, of.threw};
  }

  // --- the modules --------------------------------------------------------------------------

  /// A staged and a fused module with the Session's options and state and an activation, a
  /// forward, then up to two backwards with its Saved.
  void module_step() {
    const std::uint8_t flags = in_.byte();
    bnorm::Options o = s_.opt_;
    o.activation = flags % 4 == 3 ? bnorm::Activation::none : bnorm::Activation::relu;
    o.variant = bnorm::Variant::staged;
    BN ms(s_.channels_, o);
    o.variant = bnorm::Variant::fused;
    BN mf(s_.channels_, o);
    for (BN* bn : {&ms, &mf}) {
      bn->weight() = s_.fused_->weight();
      bn->bias() = s_.fused_->bias();
      bn->running_mean() = s_.fused_->running_mean();
      bn->running_var() = s_.fused_->running_var();
      bn->train(s_.fused_->is_training());
    }
    const Shape e = s_.shape_from(s_.channels_);
    Forward f;
    if (!place_inputs(e, flags & 4, f.x, f.r)) return;
    std::vector<const Placed*> inputs{&f.x};
    if (f.r) inputs.push_back(&*f.r);
    auto yp = s_.place_output(s_.mutate(e), inputs);
    if (!yp) return;
    f.y = *yp;
    fill(f.x, f.r);
    f.xv = arena_.read(f.x);
    const std::vector<T> rv = f.r ? arena_.read(*f.r) : std::vector<T>();
    const int backwards = in_.byte() % 3;  // read up front: the input's layout is fixed
    f.relu = o.activation == bnorm::Activation::relu;
    f.batch = mf.is_training() || !o.track_running_stats;
    f.running_mean = mf.running_mean();
    f.running_var = mf.running_var();
    const index_t m = e[0] * e[2] * e[3];

    Verdict v;
    if (e[1] != s_.channels_ || f.y.extents != e || !state_ok(mf) || (f.batch && m == 1) ||
        (f.r && f.r->extents != e))
      v.reject();
    v.merge(output_unique(f.y));
    v.merge(output_vs_input(f.y, f.x));
    if (f.r) v.merge(output_vs_input(f.y, *f.r));
    const ModuleState<T> s0(ms), f0(mf);
    // The same modules without an activation, on a copy of the memory: the statistics, running
    // buffers and Saved must come out with the same bits.
    const Arena<T> plain_before = arena_;
    const std::string what =
        concat("module ", f.relu ? "relu" : "none", " ", f.batch ? "batch" : "running",
               where("x", f.x), f.r ? where("residual", *f.r) : "", where("y", f.y));
    const auto forward = [&](BN& bn, Saved& saved) {
      saved = f.r ? bn.forward(arena_.cview(f.x), arena_.cview(*f.r), arena_.view(f.y))
                  : bn.forward(arena_.cview(f.x), arena_.view(f.y));
    };
    const auto state = [&] { return std::make_tuple(ModuleState<T>(ms), ModuleState<T>(mf)); };
    const auto [after_staged, s_threw, f_threw] = run_pair(
        v, v, {&f.y}, state, [&] { forward(ms, f.ss); }, [&] { forward(mf, f.sf); }, what, true);
    if (f_threw) return;
    (void)s_threw;
    f.in_place = f.y.count() > 0 && f.y.buffer == f.x.buffer && f.y.offset == f.x.offset;
    for (const Saved* saved : {&f.ss, &f.sf})
      FUZZ_CHECK(saved->in_place() == f.in_place && saved->has_residual() == f.r.has_value() &&
                     saved->activation() == o.activation && saved->batch_statistics() == f.batch,
                 what, ": Saved");
    f.ys = read(f.y, after_staged);
    f.yf = arena_.read(f.y);
    for (const bool staged : {true, false}) {
      const ModuleState<T>& st = staged ? s0 : f0;
      check_epilogue_forward(f.xv, f.r ? &rv : nullptr, e, st.weight, st.bias, f.batch,
                             f.running_mean, f.running_var, o.eps, f.relu, staged ? f.ys : f.yf,
                             what + (staged ? " staged" : " fused"));
      bnorm::Options po = o;
      po.activation = bnorm::Activation::none;
      po.variant = staged ? bnorm::Variant::staged : bnorm::Variant::fused;
      BN plain(s_.channels_, po);
      plain.weight() = st.weight;
      plain.bias() = st.bias;
      plain.running_mean() = st.running_mean;
      plain.running_var() = st.running_var;
      plain.train(st.training);
      Saved ps;
      Arena<T> plain_memory = plain_before;  // (a forward in place writes over x)
      const Outcome o2 =
          attempt([&] { ps = plain.forward(plain_memory.cview(f.x), plain_memory.view(f.y)); });
      FUZZ_CHECK(!o2.threw, what, ": the module without an activation threw ", o2.message);
      const BN& bn = staged ? ms : mf;
      const Saved& saved = staged ? f.ss : f.sf;
      FUZZ_CHECK(same_bits(bn.running_mean(), plain.running_mean()) &&
                     same_bits(bn.running_var(), plain.running_var()) &&
                     bn.num_batches_tracked() == plain.num_batches_tracked() &&
                     same_bits(saved.mean(), ps.mean()) && same_bits(saved.invstd(), ps.invstd()),
                 what, staged ? " staged" : " fused",
                 ": statistics differ from the module's without an activation: running_mean ",
                 bn.running_mean().transpose(), " vs ", plain.running_mean().transpose(),
                 ", running_var ", bn.running_var().transpose(), " vs ",
                 plain.running_var().transpose(), ", mean ", saved.mean().transpose(), " vs ",
                 ps.mean().transpose(), ", invstd ", saved.invstd().transpose(), " vs ",
                 ps.invstd().transpose());
    }
    for (int k = 0; k < backwards; ++k)
      if (!module_backward(f, ms, mf, what)) break;
  }

  /// A backward of both modules with the forward's Saved; false when the Saved cannot serve
  /// another (dx over x, or over the y a residual's ReLU reads), or no view could be placed.
  bool module_backward(const Forward& f, BN& ms, BN& mf, const std::string& fwhat) {
    const std::uint8_t b = in_.byte();
    const index_t channels = s_.channels_;
    if (b & 1) {  // a new weight (sometimes of a wrong size): BN's backward uses it, the mask not
      const index_t p = mf.options().affine ? channels : 0;
      mf.weight() = make_array<T>(in_, (b & 2) ? in_.byte() % 4 : p, -2, 2);
      ms.weight() = mf.weight();
    }
    const bool y_read = f.relu && f.r;  // the fused backward reads the mask from y
    const Shape ge = s_.mutate(f.x.extents);
    Placed dy;
    if ((b & 0x1C) == 0x1C && !y_read && !f.in_place && ge == f.y.extents && f.y.count() > 0) {
      dy = f.y;  // dy written over the forward's y, which no one reads
    } else {
      auto p = s_.layout(ge, s_.form());
      if (!p) return false;
      p->buffer = s_.input_buffer(*p);
      dy = *p;
    }
    arena_.write(dy, make_values<T>(in_, ge));
    const std::vector<T> dyv = arena_.read(dy);
    auto dxp = s_.place_output(s_.mutate(ge), {&dy, &f.x, &f.y});
    if (!dxp) return false;
    const Placed dx = *dxp;
    std::optional<Placed> dr;
    if (b & 0x20) {
      dr = s_.place_output(s_.mutate(ge), {&dy, &dx, &f.x, &f.y});
      if (!dr) return false;
    }
    if (!f.in_place && f.x.count() > 0) {
      const auto now = arena_.read(f.x);
      FUZZ_CHECK(std::memcmp(now.data(), f.xv.data(), now.size() * sizeof(T)) == 0,
                 "the forward's x changed before backward");
    }

    Verdict v;
    if (f.in_place || ge[1] != channels || ge != f.x.extents || dx.extents != ge || !state_ok(mf))
      v.reject();
    v.merge(output_unique(dx));
    v.merge(output_vs_input(dx, dy));
    v.merge(output_vs_input(dx, f.x));
    if (y_read) v.merge(output_vs_input(dx, f.y));
    if (dr) {
      if (!f.r || dr->extents != ge) v.reject();
      v.merge(output_unique(*dr));
      v.merge(output_vs_input(*dr, dy));
      v.merge(disjoint(*dr, dx));
      v.merge(disjoint(*dr, f.x));
      v.merge(disjoint(*dr, f.y));
    }
    const std::string what = concat(fwhat, "; backward", where("dy", dy), where("dx", dx),
                                    dr ? where("dresidual", *dr) : "");
    const auto backward = [&](BN& bn, const Saved& saved) {
      if (dr)
        bn.backward(saved, arena_.cview(dy), arena_.view(dx), arena_.view(*dr));
      else
        bn.backward(saved, arena_.cview(dy), arena_.view(dx));
    };
    const auto state = [&] { return std::make_tuple(ModuleState<T>(ms), ModuleState<T>(mf)); };
    const auto [after_staged, s_threw, f_threw] = run_pair(
        v, v, {&dx, dr ? &*dr : nullptr}, state, [&] { backward(ms, f.ss); },
        [&] { backward(mf, f.sf); }, what, true);
    if (f_threw || s_threw) return true;  // nothing changed: the Saved serves on
    const index_t p = mf.options().affine ? channels : 0;
    for (const bool staged : {true, false}) {
      const std::vector<T> g = gate(staged ? f.ys : f.yf, dyv, f.relu);
      const std::string vwhat = what + (staged ? " staged" : " fused");
      const BN& bn = staged ? ms : mf;
      if (dr) check_dresidual(staged ? read(*dr, after_staged) : arena_.read(*dr), g, vwhat);
      check_bn_backward(f.xv, g, f.x.extents, bn.weight(), p, f.batch, f.running_mean,
                        f.running_var, bn.options().eps,
                        staged ? read(dx, after_staged) : arena_.read(dx), bn.weight_grad(),
                        bn.bias_grad(), vwhat);
    }
    const auto same = [&](const Placed& a, const Placed& c) {
      return a.count() > 0 && a.buffer == c.buffer && a.offset == c.offset;
    };
    return !same(dx, f.x) && !(y_read && same(dx, f.y));
  }

  // --- the free functions -------------------------------------------------------------------

  /// staged:: and fused:: forward_training or forward_inference with an activation and maybe a
  /// residual, arrays and eps from the input; then staged::backward (dresidual too) and, without
  /// a residual, fused::backward or backward_inference with a fused::Relu.
  void free_step() {
    static const double epses[] = {1e-5, 0, 1e-3, -1, std::numeric_limits<double>::quiet_NaN()};
    const std::uint8_t flags = in_.byte();
    const bnorm::Activation act =
        flags % 4 == 3 ? bnorm::Activation::none : bnorm::Activation::relu;
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
    if (y.extents != e || !(eps >= 0) ||
        !(w.size() == b.size() && (w.size() == 0 || w.size() == c)))
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
        concat("free ", relu ? "relu" : "none", training ? " training" : " inference",
               where("x", x), r ? where("residual", *r) : "", where("y", y), " w ", w.size(), " b ",
               b.size(), " rm ", rm.size(), " rv ", rvar.size(), " eps ", eps);
    const auto staged = [&] {
      const View xc = arena_.cview(x), rc = r ? arena_.cview(*r) : xc;
      const View* rp = r ? &rc : nullptr;
      if (training)
        cache = bnorm::staged::forward_training<T, bnorm::NCHWView>(xc, rp, w, b, eps,
                                                                    arena_.view(y), act);
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

  /// fused::relu_backward(y, dy, g): dy of y's shape or not, exactly y or shifted in y's buffer;
  /// g anywhere place_output puts it. g must be dy where y > 0 or NaN, else +0, bit for bit.
  void relu_backward_step() {
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

  S& s_;
  Input& in_;
  Arena<T>& arena_;
};

}  // namespace
