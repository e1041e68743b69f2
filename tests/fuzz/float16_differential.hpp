// The 16-bit types against the paths that define them. A BatchNorm2d<H> (H = Eigen::bfloat16
// or Eigen::half, float parameters) and a BatchNorm2d<float> with the same options and
// parameters go through the same steps, the float module on the 16-bit values widened: the 16-bit
// module must give the float module's outputs rounded once (the same bits), the same running
// buffers, saved statistics and parameter gradients bit for bit, and reject exactly the calls the
// float module rejects, with the same message and nothing written. The staged free functions of
// H against those of double on the widened values: each output the double one rounded once.
// (The float and double paths themselves are checked against a long-double reference by the
// rest of this target.)
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_data.hpp"
#include "fuzz_input.hpp"
#include "module_pair.hpp"
#include "view_oracle.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

namespace {

/// A view's memory: `span` elements behind a guard of kGuard16 elements on each side, every
/// element first set to a pattern.
template <class T>
struct Memory16 {
  static constexpr index_t kGuard16 = 8;
  Shape extents{}, strides{};
  std::vector<T> buffer;
  T* data() { return buffer.data() + kGuard16; }
  bnorm::NCHWView<T> view() { return bnorm::NCHWView<T>(data(), extents, strides); }
  bnorm::NCHWView<const T> cview() { return bnorm::NCHWView<const T>(data(), extents, strides); }
  index_t offset(index_t i) const {  // of the element at logical index i
    const index_t w = i % extents[3], h = i / extents[3] % extents[2],
                  c = i / (extents[3] * extents[2]) % extents[1],
                  n = i / (extents[3] * extents[2] * extents[1]);
    return kGuard16 + n * strides[0] + c * strides[1] + h * strides[2] + w * strides[3];
  }
  void set(const std::vector<T>& logical) {
    for (std::size_t i = 0; i < logical.size(); ++i)
      buffer[static_cast<std::size_t>(offset(static_cast<index_t>(i)))] = logical[i];
  }
};

/// The bits of a and b are equal.
template <class A, class B>
bool same_bytes(const A& a, const B& b) {
  return a.size() == b.size() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
}
template <class T>
bool same_array(const Eigen::Array<T, Eigen::Dynamic, 1>& a,
                const Eigen::Array<T, Eigen::Dynamic, 1>& b) {
  return a.size() == b.size() &&
         (a.size() == 0 ||
          std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0);
}

template <class H>
class Float16Differential {
 public:
  explicit Float16Differential(Input& in) : in_(in) {}

  void run() {
    static const index_t features[] = {1, 2, 3, 5, 16, 17, 33};
    static const double epses[] = {1e-5, 1e-3, 0, 1};
    const index_t c = in_.pick(features);
    const std::uint8_t flags = in_.byte();
    bnorm::Options o;
    o.eps = in_.pick(epses);
    o.momentum = flags & 8 ? std::nullopt : std::optional<double>(0.1);
    o.affine = !(flags & 1);
    o.track_running_stats = !(flags & 2);
    o.activation = flags & 4 ? bnorm::Activation::relu : bnorm::Activation::none;
    h_.emplace(c, o);
    f_.emplace(c, o);
    channels_ = c;
    trace(sizeof(H) == 2 ? "16-bit" : "?", " C ", c, " eps ", o.eps, " flags ", int(flags));
    for (int step = 0; step < kMaxSteps && !in_.exhausted(); ++step) {
      switch (in_.byte() % 5) {
        case 0:
        case 1:
          module_step();
          break;
        case 2:
          h_->train(in_.byte() & 1);
          f_->train(h_->is_training());
          break;
        case 3:
          set_parameters();
          break;
        default:
          staged_step();
      }
    }
  }

 private:
  using Module16 = bnorm::BatchNorm2d<H>;
  using Module32 = bnorm::BatchNorm2d<float>;

  /// Extents and a valid layout (NCHW, NHWC or permuted) read from the input, or nullopt.
  std::optional<std::pair<Shape, Shape>> shape() {
    const std::uint8_t b = in_.byte();
    const Shape e{1 + in_.byte() % 5, (b & 7) ? channels_ : 1 + in_.byte() % 20, 1 + in_.byte() % 9,
                  1 + in_.byte() % 9};
    bool unique = false;
    const Shape s = strides_from(in_, static_cast<Form>(b >> 3 & 1 ? kNHWC : kNCHW), e, unique);
    const ViewOracle v = view_oracle(e, s, false);
    if (!v.ok || v.count > kMaxElements || v.span > kMaxSpan) return std::nullopt;
    return std::make_pair(e, s);
  }
  template <class T>
  static Memory16<T> memory(const Shape& e, const Shape& s, T fill) {
    Memory16<T> m;
    m.extents = e;
    m.strides = s;
    m.buffer.assign(static_cast<std::size_t>(view_oracle(e, s, false).span + 2 * m.kGuard16), fill);
    return m;
  }
  /// 16-bit values from the input's data regimes (specials included), rounded once.
  std::vector<H> values(const Shape& e) {
    const std::vector<double> v = make_values<double>(in_, e);
    std::vector<H> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = bnorm::detail::round_from_staged<H>(v[i]);
    return out;
  }
  /// A 16-bit memory and its float twin with the values widened.
  template <class T>
  static Memory16<T> widened(const Memory16<H>& m) {
    Memory16<T> w;
    w.extents = m.extents;
    w.strides = m.strides;
    w.buffer.resize(m.buffer.size());
    for (std::size_t i = 0; i < m.buffer.size(); ++i)
      w.buffer[i] = static_cast<T>(bnorm::detail::to_compute(m.buffer[i]));
    return w;
  }
  /// Checks that m16's whole buffer (view and guards) is m's rounded once. A NaN matches any
  /// NaN: which NaN an invalid operation or two NaN operands give (its sign and payload) may
  /// differ between two paths of the same formula, as between the float kernels' own paths.
  template <class T>
  static void check_rounds_to(const Memory16<H>& m16, const Memory16<T>& m, const char* what) {
    for (std::size_t i = 0; i < m.buffer.size(); ++i) {
      const H r = bnorm::detail::round_from_staged<H>(static_cast<double>(m.buffer[i]));
      const bool both_nan =
          std::isnan(static_cast<float>(r)) && std::isnan(static_cast<float>(m16.buffer[i]));
      FUZZ_CHECK(both_nan || bnorm::detail::bits_of(r) == bnorm::detail::bits_of(m16.buffer[i]),
                 what, ": element ", i, " of the buffer is ", static_cast<float>(m16.buffer[i]),
                 ", expected ", static_cast<double>(m.buffer[i]), " rounded once");
    }
  }

  /// Both modules compare equal bit for bit: parameters, buffers, gradients, count, mode.
  void check_states(const char* what) const {
    FUZZ_CHECK(same_array(h_->weight(), f_->weight()) && same_array(h_->bias(), f_->bias()) &&
                   same_array(h_->running_mean(), f_->running_mean()) &&
                   same_array(h_->running_var(), f_->running_var()) &&
                   same_array(h_->weight_grad(), f_->weight_grad()) &&
                   same_array(h_->bias_grad(), f_->bias_grad()) &&
                   h_->num_batches_tracked() == f_->num_batches_tracked(),
               what, ": the 16-bit module's state differs from the float module's");
  }
  /// The same outcome: both returned, or both threw the same message.
  static void check_outcomes(const Outcome& a, const Outcome& b, const char* what) {
    FUZZ_CHECK(a.threw == b.threw && a.message == b.message, what, ": 16-bit ",
               a.threw ? a.message : "returned", ", float ", b.threw ? b.message : "returned");
  }

  void set_parameters() {
    const std::uint8_t what = in_.byte();
    const index_t p = f_->weight().size(), r = f_->running_mean().size();
    const index_t size = (what & 4) ? in_.byte() % 9 : -1;  // sometimes a wrong size
    switch (what % 3) {
      case 0:
        f_->weight() = make_array<float>(in_, size < 0 ? p : size, -2, 2);
        f_->bias() = make_array<float>(in_, size < 0 ? p : size, -2, 2);
        break;
      case 1:
        f_->running_mean() = make_array<float>(in_, size < 0 ? r : size, -5, 5);
        break;
      default:
        f_->running_var() = make_array<float>(in_, size < 0 ? r : size, 0, 4);
    }
    h_->weight() = f_->weight();
    h_->bias() = f_->bias();
    h_->running_mean() = f_->running_mean();
    h_->running_var() = f_->running_var();
  }

  /// A forward (with a residual or not) and a backward of both modules.
  void module_step() {
    const auto sh = shape();
    if (!sh) return;
    const auto& [e, s] = *sh;
    const H fill = bnorm::detail::round_from_staged<H>(-7.25);
    Memory16<H> x = memory(e, s, fill), r = memory(e, s, fill), y = memory(e, s, fill),
                dy = memory(e, s, fill), dx = memory(e, s, fill), dr = memory(e, s, fill);
    x.set(values(e));
    const bool residual = in_.byte() & 1;
    if (residual) r.set(values(e));
    dy.set(values(e));  // read before the calls, so a rejected forward reads what a good one does
    Memory16<float> xf = widened<float>(x), rf = widened<float>(r), yf = widened<float>(y);
    trace("forward ", str(e), residual ? " with a residual" : "");
    typename Module16::Saved s16;
    typename Module32::Saved s32;
    const Outcome o16 = attempt([&] {
      s16 =
          residual ? h_->forward(x.cview(), r.cview(), y.view()) : h_->forward(x.cview(), y.view());
    });
    const Outcome o32 = attempt([&] {
      s32 = residual ? f_->forward(xf.cview(), rf.cview(), yf.view())
                     : f_->forward(xf.cview(), yf.view());
    });
    check_outcomes(o16, o32, "forward");
    check_rounds_to(y, yf, "forward: y against the float module's");
    check_states("forward");
    if (o16.threw) return;
    FUZZ_CHECK(same_array(s16.mean(), s32.mean()) && same_array(s16.invstd(), s32.invstd()),
               "forward: saved statistics differ");

    Memory16<float> dyf = widened<float>(dy), dxf = widened<float>(dx), drf = widened<float>(dr);
    const Outcome b16 = attempt([&] {
      if (residual)
        h_->backward(s16, dy.cview(), dx.view(), dr.view());
      else
        h_->backward(s16, dy.cview(), dx.view());
    });
    const Outcome b32 = attempt([&] {
      if (residual)
        f_->backward(s32, dyf.cview(), dxf.view(), drf.view());
      else
        f_->backward(s32, dyf.cview(), dxf.view());
    });
    check_outcomes(b16, b32, "backward");
    check_rounds_to(dx, dxf, "backward: dx against the float module's");
    check_rounds_to(dr, drf, "backward: dresidual against the float module's");
    check_states("backward");
  }

  /// The staged free functions of H against double's on the widened values.
  void staged_step() {
    const auto sh = shape();
    if (!sh) return;
    const auto& [e, s] = *sh;
    const bool train = in_.byte() & 1;
    const index_t p = f_->weight().size();
    const Eigen::ArrayXf w = make_array<float>(in_, p, -2, 2), b = make_array<float>(in_, p, -2, 2);
    const Eigen::ArrayXf rm = make_array<float>(in_, channels_, -5, 5),
                         rv = make_array<float>(in_, channels_, 0, 4);
    const Eigen::ArrayXd wd = w.cast<double>(), bd = b.cast<double>(), rmd = rm.cast<double>(),
                         rvd = rv.cast<double>();
    const double eps = f_->options().eps;
    const H fill = bnorm::detail::round_from_staged<H>(3.5);
    Memory16<H> x = memory(e, s, fill), y = memory(e, s, fill), dy = memory(e, s, fill),
                dx = memory(e, s, fill);
    x.set(values(e));
    dy.set(values(e));
    Memory16<double> xd = widened<double>(x), yd = widened<double>(y), dyd = widened<double>(dy),
                     dxd = widened<double>(dx);
    trace("staged ", train ? "training " : "eval ", str(e));
    std::optional<bnorm::staged::Cache<H>> k16;
    std::optional<bnorm::staged::Cache<double>> k64;
    const Outcome o16 = attempt([&] {
      k16 = train ? bnorm::staged::forward_training<H>(x.cview(), w, b, eps, y.view())
                  : bnorm::staged::forward_inference<H>(x.cview(), w, b, rm, rv, eps, y.view());
    });
    const Outcome o64 = attempt([&] {
      k64 = train ? bnorm::staged::forward_training<double>(xd.cview(), wd, bd, eps, yd.view())
                  : bnorm::staged::forward_inference<double>(xd.cview(), wd, bd, rmd, rvd, eps,
                                                             yd.view());
    });
    check_outcomes(o16, o64, "staged forward");
    check_rounds_to(y, yd, "staged forward: y against double's");
    if (o16.threw) return;
    Eigen::ArrayXf dw, db;
    Eigen::ArrayXd dwd, dbd;
    const Outcome b16 =
        attempt([&] { bnorm::staged::backward<H>(*k16, dy.cview(), dx.view(), dw, db); });
    const Outcome b64 =
        attempt([&] { bnorm::staged::backward<double>(*k64, dyd.cview(), dxd.view(), dwd, dbd); });
    check_outcomes(b16, b64, "staged backward");
    check_rounds_to(dx, dxd, "staged backward: dx against double's");
    const Eigen::ArrayXf dwr = dwd.cast<float>(), dbr = dbd.cast<float>();
    FUZZ_CHECK(same_array(dw, dwr) && same_array(db, dbr),
               "staged backward: parameter gradients are not double's rounded once");
  }

  Input& in_;
  std::optional<Module16> h_;
  std::optional<Module32> f_;
  index_t channels_ = 1;
};

}  // namespace
