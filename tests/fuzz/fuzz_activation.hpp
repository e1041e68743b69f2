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
// double reference and write only its outputs; the oracle (arena.hpp's Verdict) says which calls
// must be rejected. y is checked against act(BN(x) + residual) (relu is 1-Lipschitz, so BN's
// bound holds); where the reference's pre-activation value lies farther than that bound from 0
// the ReLU's decision is known, and y must be exactly 0 below. A backward's gate is each
// variant's own forward's (y > 0 or NaN): dresidual must be exactly that gate applied to dy,
// and dx and the gradients BN's backward of it, with the weight of the backward. Statistics
// and running buffers must have the bits of the same module without an activation.
//
// ActivationStep is defined here, its steps in activation_module.hpp and
// activation_free_functions.hpp, its reference in activation_reference.hpp. Session befriends
// it: it works on the Session's views, memory, options and modules.
#pragma once

#include <bnorm/bnorm.hpp>

#include "activation_reference.hpp"
#include "arena.hpp"
#include "fuzz_data.hpp"
#include "fuzz_input.hpp"
#include "module_pair.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

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
  void module_step();

  /// A backward of both modules with the forward's Saved; false when the Saved cannot serve
  /// another (dx over x, or over the y a residual's ReLU reads), or no view could be placed.
  bool module_backward(const Forward& f, BN& ms, BN& mf, const std::string& fwhat);

  // --- the free functions -------------------------------------------------------------------

  /// staged:: and fused:: forward_training or forward_inference with an activation and maybe a
  /// residual, arrays and eps from the input; then staged::backward (dresidual too) and, without
  /// a residual, fused::backward or backward_inference with a fused::Relu.
  void free_step();

  /// fused::relu_backward(y, dy, g): dy of y's shape or not, exactly y or shifted in y's buffer;
  /// g anywhere place_output puts it. g must be dy where y > 0 or NaN, else +0, bit for bit.
  void relu_backward_step();

  S& s_;
  Input& in_;
  Arena<T>& arena_;
};

}  // namespace
