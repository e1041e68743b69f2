// The module pair: a staged and a fused BatchNorm2d with the options the input picks, driven
// through its steps (Session). The big steps are defined in session_forward.hpp,
// session_backward.hpp and session_free_functions.hpp.
#pragma once

#include <bnorm/bnorm.hpp>

#include "arena.hpp"
#include "fuzz_activation.hpp"  // op 8: activation, residual, relu_backward (ActivationStep)
#include "fuzz_data.hpp"
#include "fuzz_input.hpp"
#include "module_pair.hpp"
#include "view_oracle.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace {

template <class T>
class Session {
  friend class ActivationStep<T, Session>;

 public:
  using BN = bnorm::BatchNorm2d<T>;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;

  explicit Session(Input& in) : in_(in) {}

  void run() {
    if (!make_modules()) return;
    for (int step = 0; step < kMaxSteps && !in_.exhausted(); ++step) {
      switch (in_.byte() % 9) {
        case 0:
        case 1:
        case 2:
          forward_step();
          break;
        case 3:
          staged_->train(in_.byte() & 1);
          fused_->train(staged_->is_training());
          trace(fused_->is_training() ? "train()" : "eval()");
          break;
        case 4:
          set_parameters();
          break;
        case 5:
          if (last_) backward_step(*last_);
          break;
        case 6:
          free_functions();
          break;
        case 8:
          ActivationStep<T, Session>(*this).run();
          break;
        default:
          view_construction();
      }
    }
  }

 private:
  struct Forward {
    Placed x, y;
    std::vector<T> xv;  // the forward's x, logical order
    typename BN::Saved saved_staged, saved_fused;
    bool batch = true, in_place = false;
    Array running_mean, running_var;  // as the forward used them (eval)
    double eps = 0;
  };

  // --- options and modules -------------------------------------------------------------------

  bool make_modules() {
    static const index_t features[] = {1, 2, 3, 4, 5, 7, 8, 16, 0, -1, kMaxChannels};
    static const double epses[] = {1e-5,
                                   0,
                                   1e-3,
                                   1,
                                   1e-12,
                                   1e-40,
                                   1e30,
                                   0.1,
                                   -1e-5,
                                   std::numeric_limits<double>::quiet_NaN(),
                                   std::numeric_limits<double>::infinity()};
    static const double momenta[] = {
        0.1, -2 /* nullopt */, 0, 1, 0.5, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()};
    const index_t c = in_.pick(features);
    const double eps = in_.pick(epses), mom = in_.pick(momenta);
    const std::uint8_t flags = in_.byte();
    opt_.eps = eps;
    opt_.momentum = mom == -2 ? std::nullopt : std::optional<double>(mom);
    opt_.affine = !(flags & 1);
    opt_.track_running_stats = !(flags & 2);
    const bool valid = c > 0 && eps >= 0 && std::isfinite(eps) &&
                       (!opt_.momentum || (*opt_.momentum >= 0 && *opt_.momentum <= 1));
    bnorm::Options so = opt_, fo = opt_;
    so.variant = bnorm::Variant::staged;
    fo.variant = bnorm::Variant::fused;
    const Outcome os = attempt([&] { staged_.emplace(c, so); });
    const Outcome of = attempt([&] { fused_.emplace(c, fo); });
    FUZZ_CHECK(os.threw == !valid && of.threw == !valid, "constructor validity, C ", c, " eps ",
               eps, " momentum ", mom, ": ", os.message);
    FUZZ_CHECK(os.message == of.message, os.message, " vs ", of.message);
    trace(sizeof(T) == 4 ? "float" : "double", " C ", c, " eps ", eps, " momentum ", mom,
          " affine ", opt_.affine, " track ", opt_.track_running_stats, valid ? "" : " (invalid)");
    if (!valid) return false;
    channels_ = c;
    return true;
  }

  bool state_ok() const {
    const index_t p = opt_.affine ? channels_ : 0, r = opt_.track_running_stats ? channels_ : 0;
    return fused_->weight().size() == p && fused_->bias().size() == p &&
           fused_->running_mean().size() == r && fused_->running_var().size() == r;
  }

  /// New weight and bias (or running statistics), the same in both modules; sometimes a wrong
  /// size, which every later call must reject until it is fixed.
  void set_parameters() {
    const std::uint8_t what = in_.byte();
    const index_t p = opt_.affine ? channels_ : 0, r = opt_.track_running_stats ? channels_ : 0;
    index_t size = (what & 4) ? std::min<index_t>(in_.byte() % 9, kMaxChannels) : -1;
    switch (what % 4) {
      case 0:
        fused_->weight() = make_array<T>(in_, size < 0 ? p : size, -2, 2);
        break;
      case 1:
        fused_->bias() = make_array<T>(in_, size < 0 ? p : size, -2, 2);
        break;
      case 2:
        fused_->running_mean() = make_array<T>(in_, size < 0 ? r : size, -5, 5);
        break;
      default:
        fused_->running_var() = make_array<T>(in_, size < 0 ? r : size, 0, 4);
    }
    trace("set parameter ", what % 4, " size ", size);
    sync();
  }
  void sync() {
    staged_->weight() = fused_->weight();
    staged_->bias() = fused_->bias();
    staged_->running_mean() = fused_->running_mean();
    staged_->running_var() = fused_->running_var();
  }

  // --- placing views ------------------------------------------------------------------------

  /// Extents and strides for a new view; nullopt when the view cannot be built (the
  /// constructor's rejection is checked here) or would be too large to allocate.
  std::optional<Placed> layout(const Shape& e, Form form) {
    Placed p;
    p.extents = e;
    p.strides = strides_from(in_, form, e, p.known_unique);
    const ViewOracle o = view_oracle(e, p.strides, false);
    static T dummy{};
    FUZZ_CHECK(constructor_accepts(&dummy, e, p.strides) == o.ok, "NCHWView(", str(e), ", ",
               str(p.strides), ") validity, expected ", o.ok);
    if (o.count > 0)
      FUZZ_CHECK(!constructor_accepts<T>(nullptr, e, p.strides), "null data with elements");
    if (!o.ok || o.count > kMaxElements || o.span > kMaxSpan) return std::nullopt;
    return p;
  }
  static index_t span(const Placed& p) { return view_oracle(p.extents, p.strides, false).span; }

  Shape shape_from(index_t c_default) {
    const std::uint8_t b = in_.byte();
    const index_t n = extent_from(in_), c = (b & 7) ? c_default : extent_from(in_),
                  h = extent_from(in_), w = extent_from(in_);
    return {n, c, h, w};
  }
  Form form() { return static_cast<Form>(in_.byte() % kForms); }
  /// Another shape of the same kind: one axis changed, for shape mismatches.
  Shape mutate(Shape s) {
    const std::uint8_t b = in_.byte();
    if (b < 224) return s;
    s[b % 4] = sat_add(s[b % 4], 1 + (b >> 4) % 2);
    return s;
  }

  /// An input's own buffer, with room behind it for outputs placed inside it.
  int input_buffer(const Placed& p) { return arena_.add(2 * span(p) + 32); }

  /// Places an output of extents e: in its own buffer, or exactly as one of the inputs (in
  /// place), or inside an input's buffer at a small offset with the input's strides
  /// (interleaved or overlapping) or its own. Buffers never move (Saved objects point in them).
  std::optional<Placed> place_output(const Shape& e, const std::vector<const Placed*>& inputs) {
    const std::uint8_t how = in_.byte();
    const Placed* in = inputs.empty() ? nullptr : inputs[in_.byte() % inputs.size()];
    auto fits = [&](const Placed& p) { return p.offset + span(p) <= arena_.elements(p.buffer); };
    if (in && in->extents == e && how % 8 == 5) return *in;  // exactly the input: in place
    if (in && in->extents == e && how % 8 >= 6) {
      Placed p = *in;  // the input's strides, shifted
      p.offset += in_.byte() % 16;
      if (how % 8 == 7) p.offset += in_.byte() % 4 * span(*in) / 4;
      if (fits(p)) return p;
    }
    auto p = layout(e, form());
    if (!p) return std::nullopt;
    p->buffer = -1;
    if (in && how % 8 == 4) {  // its own layout inside the input's buffer
      p->buffer = in->buffer;
      p->offset = in->offset + in_.byte() % 32;
      if (!fits(*p)) p->buffer = -1;
    }
    if (p->buffer < 0) {
      p->offset = 0;
      p->buffer = arena_.add(span(*p) + in_.byte() % 8);
    }
    return p;
  }

  // --- forward ------------------------------------------------------------------------------

  void forward_step();
  void check_forward_values(const Forward& f, const std::vector<T>& y, const char* variant,
                            const BN& bn, const ModuleState<T>& st0);

  // --- backward -----------------------------------------------------------------------------

  void backward_step(Forward& f);
  void check_backward_values(const Forward& f, const std::vector<T>& dyv, const std::vector<T>& dx,
                             const BN& bn, const char* variant);

  // --- the free functions -------------------------------------------------------------------

  /// fused:: and staged:: forward_training / forward_inference and their backwards with arrays
  /// and eps from the input (wrong sizes and invalid eps included): the two variants must
  /// accept and reject alike, and agree with each other where both accept.
  void free_functions();

  /// Views straight from the input, any extents and strides: the constructor must accept
  /// exactly what the oracle accepts, and never overflow doing so.
  void view_construction() {
    Shape e{extent_from(in_), extent_from(in_), extent_from(in_), extent_from(in_)};
    bool known;
    const Shape s = strides_from(in_, form(), e, known);
    const ViewOracle o = view_oracle(e, s, false);
    static T dummy{};
    FUZZ_CHECK(constructor_accepts(&dummy, e, s) == o.ok, "NCHWView(", str(e), ", ", str(s), ")");
    const ViewOracle on = view_oracle(e, s, true);
    FUZZ_CHECK(constructor_accepts<T>(nullptr, e, s) == on.ok, "NCHWView(null, ", str(e), ")");
    // The contiguous and channels-last constructors accept exactly the valid extents (their
    // strides then always fit).
    const bool extents_ok = view_oracle(e, {0, 0, 0, 0}, false).ok;
    const Outcome contiguous =
        attempt([&] { (void)bnorm::NCHWView<T>(&dummy, e[0], e[1], e[2], e[3]); });
    const Outcome last =
        attempt([&] { (void)bnorm::NCHWView<T>::channels_last(&dummy, e[0], e[1], e[2], e[3]); });
    FUZZ_CHECK(contiguous.threw == !extents_ok && last.threw == !extents_ok, "NCHWView of ", str(e),
               ": ", contiguous.message, last.message);
    trace("views ", str(e), " strides ", str(s), o.ok ? " ok" : " rejected");
  }

  Input& in_;
  bnorm::Options opt_;
  index_t channels_ = 0;
  std::optional<BN> staged_, fused_;
  Arena<T> arena_;
  std::optional<Forward> last_;
};

}  // namespace
