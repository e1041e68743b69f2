// libFuzzer target for the rank-3 and rank-5 entry points (fuzz_bnorm.cpp covers the 2-d API):
// BatchNorm1d and BatchNorm3d (staged and fused modules side by side), the staged and fused free
// functions over NCLView and NCDHWView, and fold_into, on views from the input: small extents;
// contiguous, channels-last, cropped (D and H do not merge: a copied face) or raw strides
// (broadcasts, non-unique layouts), huge ones on empty views; outputs in their own buffer,
// exactly an input (y = x, dx = dy, dx = x) or shifted inside an input's buffer. Each call must
// throw bnorm::invalid_argument ("bnorm: ...") having changed nothing (module state, every byte
// of memory, guards included), or agree with the long-double reference of ranks_oracle.hpp and
// write nothing outside its output; its brute-force oracle says which calls must be rejected and
// which accepted, and staged and fused must agree. fold_into: a rejection that changed nothing,
// or the layer of long-double loops.
//
// Input: bytes front to back, zeros once exhausted (seeds: make_corpus.py, corpus_ranks/).
// Byte 0: float or double (bit 0), rank 3 or 5 (bit 1), kernel set (bits 2-3); then C, eps,
// momentum and flags of the modules; then steps, each an op byte and its arguments.
#include <bnorm/bnorm.hpp>

#include "../module_state.hpp"
#include "ranks_activation.hpp"  // op 6: activation, residual, relu_backward
#include "ranks_oracle.hpp"

#include <random>
#include <tuple>

namespace {

using namespace bnorm_fuzz;  // the oracle, the reference and FUZZ_CHECK
using bnorm_test::ModuleState;
constexpr index_t kMaxElements = 1 << 10, kMaxSpan = 1 << 12;  // per view: bounded allocation
constexpr index_t kMax = std::numeric_limits<index_t>::max();
constexpr std::size_t kGuard = 32, kMemory = std::size_t{1} << 20;  // guard bytes, all memory

struct Input {  // read front to back; zeros once exhausted
  const std::uint8_t* p;
  std::size_t n, i = 0;
  std::uint8_t byte() { return i < n ? p[i++] : 0; }
  std::uint64_t seed() {
    const std::uint64_t hi = byte();
    return hi << 8 | byte();
  }
};

template <class T, template <class> class V>
class Session {
  using E = typename V<T>::extents_type;
  static constexpr std::size_t R = V<T>::rank;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using BN = std::conditional_t<R == 3, bnorm::BatchNorm1d<T>, bnorm::BatchNorm3d<T>>;
  using Bytes = std::vector<unsigned char>;
  using Placed = bnorm_fuzz::Placed<R>;
  static constexpr LD u = Tol<T>::u, ud = Tol<T>::ud;
  friend class RanksActivation<T, V, Session>;

 public:
  explicit Session(Input& in) : in_(in) { mem_.reserve(kMemory); }

  void run() {
    static const index_t features[] = {1, 2, 3, 4, 5, 8, 17, 0, -1};
    static const double momenta[] = {0.1, -2 /* nullopt */, 0, 1, -0.5, 1.5};
    const index_t c = features[in_.byte() % std::size(features)];
    const double mom = momenta[in_.byte() % std::size(momenta)];
    const std::uint8_t flags = in_.byte();
    bnorm::Options o;
    o.eps = eps(), o.momentum = mom == -2 ? std::nullopt : std::optional<double>(mom);
    o.affine = !(flags & 1), o.track_running_stats = !(flags & 2);
    const bool valid = c > 0 && o.eps >= 0 && (mom == -2 || (mom >= 0 && mom <= 1));
    const Outcome of = attempt([&] { fused_.emplace(c, o); });
    o.variant = bnorm::Variant::staged;
    const Outcome os = attempt([&] { staged_.emplace(c, o); });
    FUZZ_CHECK(!os == valid && os == of, "C ", c, " eps ", o.eps, " momentum ", mom);
    for (int step = 0; valid && step < 12 && in_.i < in_.n; ++step) {
      const std::uint8_t op = in_.byte() % 7;
      if (op < 2) call(op == 1);  // the modules, or the free functions
      if (op == 2) staged_->train(in_.byte() & 1), fused_->train(staged_->is_training());
      if (op == 3) set_parameter();
      if (op == 4 || op == 5) fold();
      if (op == 6) RanksActivation<T, V, Session>(*this).run();
    }
  }

 private:
  double eps() {
    static const double epses[] = {1e-5, 1e-3, 0, 1, -1, std::numeric_limits<double>::quiet_NaN()};
    return epses[in_.byte() % std::size(epses)];
  }
  Array array(index_t size, double lo, double hi) {
    std::mt19937_64 g(in_.seed());
    Array a(size);
    for (index_t i = 0; i < size; ++i)
      a[i] = static_cast<T>(lo + (hi - lo) * static_cast<double>(g() >> 11) * 0x1p-53);
    return a;
  }
  static std::array<Array*, 4> arrays(BN& bn) {
    return {&bn.weight(), &bn.bias(), &bn.running_mean(), &bn.running_var()};
  }
  index_t right_size(std::size_t k) const {  // of arrays()[k]
    const auto& o = fused_->options();
    return (k < 2 ? o.affine : o.track_running_stats) ? fused_->num_features() : 0;
  }
  bool state_ok() {  // the user may resize the module's arrays
    bool ok = true;
    for (std::size_t k = 0; k < 4; ++k) ok &= arrays(*fused_)[k]->size() == right_size(k);
    return ok;
  }
  // A new weight, bias or running statistic in both modules, sometimes of a wrong size: every
  // later call must then be rejected until it is set right.
  void set_parameter() {
    const std::uint8_t what = in_.byte(), k = what % 4, wrong = in_.byte() % 5;
    *arrays(*fused_)[k] = array((what & 4) ? wrong : right_size(k), k == 3 ? 0.1 : -2, 2);
    sync();
  }
  void sync() {  // the fused module's parameters and running statistics, in both
    for (std::size_t k = 0; k < 4; ++k) *arrays(*staged_)[k] = *arrays(*fused_)[k];
  }

  // --- views and memory ---------------------------------------------------------------------
  E extents(index_t c) {  // small; sometimes another C, or BatchNorm1d's (N, C) as L = 1
    const std::uint8_t b = in_.byte();
    E e{};
    for (std::size_t r = 0; r < R; ++r) e[r] = in_.byte() % (r == 0 ? 5 : R == 3 ? 8 : 4);
    e[1] = (b & 7) ? c : in_.byte() % 6;
    if (R == 3 && (b & 0x18) == 0x18) e[2] = 1;
    return e;
  }
  E mutate(E e) {  // sometimes another shape: a mismatch
    const std::uint8_t b = in_.byte();
    if (b >= 232) e[b % R] += 1;
    return e;
  }
  // Extents e packed in N, C, spatial order (channels-last: C innermost; cropped: each spatial
  // axis of a tensor 1 or 2 larger), or raw strides, huge ones when the view is empty.
  std::optional<Placed> layout(const E& e) {
    static const index_t huge[] = {index_t{1} << 40, kMax / 2 + 1, kMax};
    const std::uint8_t form = in_.byte() % 4;
    Placed p{0, 0, e, {}, form < 3};
    const index_t pad = form == 2 ? 1 + in_.byte() % 2 : 0;
    index_t step = 1;
    auto put = [&](std::size_t r) { p.s[r] = step, step *= e[r] + (r >= 2 ? pad : 0); };
    if (form == 1) put(1);
    for (std::size_t r = R; r-- > 2;) put(r);
    if (form != 1) put(1);
    put(0);
    for (std::size_t r = 0; r < R && form == 3; ++r) {
      const std::uint8_t b = in_.byte();
      p.s[r] = p.count() == 0 && b >= 240 ? huge[b % 3] : b % 8;
    }
    if (p.count() > kMaxElements || p.span() > kMaxSpan) return {};
    return p;
  }
  // A new buffer of n elements and kGuard bytes each side, all a pattern; mem_ never moves.
  std::optional<index_t> buffer(index_t n) {
    const std::size_t at = mem_.size() + kGuard, end = at + kGuard + sizeof(T) * std::size_t(n);
    if (end > kMemory) return {};
    while (mem_.size() < end) mem_.push_back(static_cast<unsigned char>(mem_.size() * 131 >> 3));
    return static_cast<index_t>(at / sizeof(T));
  }
  // An input (no `inputs`: in a buffer with room for outputs placed inside), or an output:
  // exactly one of the inputs (in place), an input's strides shifted inside its buffer, a
  // layout of its own inside an input's buffer, or a buffer of its own.
  std::optional<Placed> place(const E& e, const std::vector<const Placed*>& inputs = {}) {
    const std::uint8_t how = inputs.empty() ? 0 : in_.byte() % 8;
    const Placed* in = inputs.empty() ? nullptr : inputs[in_.byte() % inputs.size()];
    const index_t shift = 1 + in_.byte() % 12;
    if (in && in->e == e && how == 5) return *in;
    auto p = in && in->e == e && how >= 6 ? std::optional<Placed>(*in) : layout(e);
    if (p && in && (how == 4 || how >= 6) && shift + p->span() <= in->room) {
      p->at = in->at + shift, p->room = in->room - shift;
      return p;
    }
    const auto at = p ? buffer(p->room = in ? p->span() : 2 * p->span() + 16) : std::nullopt;
    if (at) p->at = *at;
    return at ? p : std::nullopt;
  }
  T* data(const Placed& p) { return reinterpret_cast<T*>(mem_.data()) + p.at; }
  V<T> view(const Placed& p) { return V<T>(data(p), p.e, p.s); }
  std::vector<T> read(const Placed& p, const Bytes& from) const {
    std::vector<T> out;
    for (const index_t o : p.offsets())
      std::memcpy(&out.emplace_back(), from.data() + sizeof(T) * std::size_t(o), sizeof(T));
    return out;
  }
  // Every byte of `now` is the byte of `before` but the elements of `out`.
  void unchanged_except(const Bytes& before, const Bytes& now, const Placed& out,
                        const std::string& what) const {
    Bytes expect = before;
    for (const std::size_t o : out.offsets())
      std::memcpy(expect.data() + o * sizeof(T), now.data() + o * sizeof(T), sizeof(T));
    FUZZ_CHECK(expect == now, what, ": wrote outside its output");
  }
  std::vector<T> values(const Placed& p) {  // written into p; per-channel offset and scale
    std::mt19937_64 g(in_.seed());
    const std::uint8_t regime = in_.byte();
    static const double offs[] = {0, 1, -3, 10, -250, 1e3, 1e6}, scales[] = {1, 0.5, 2, 1e-2, 0};
    std::vector<double> off(static_cast<std::size_t>(p.e[1])), scale(off.size());
    for (std::size_t c = 0; c < off.size(); ++c)
      off[c] = regime & 1 ? offs[g() % 7] : 0, scale[c] = regime & 2 ? scales[g() % 5] : 1;
    const auto o = p.offsets();
    for (std::size_t i = 0; i < o.size(); ++i) {
      const auto c = static_cast<std::size_t>(static_cast<index_t>(i) / spatial(p.e) % p.e[1]);
      double x = off[c] + scale[c] * (static_cast<double>(g() % 2001) - 1000) / 250;
      if (regime >= 0xF0 && g() % 16 == 0) x = g() % 2 ? std::nan("") : HUGE_VAL;  // propagate
      data(p)[o[i] - p.at] = static_cast<T>(x);
    }
    return read(p, mem_);  // (a broadcast view holds fewer values than written)
  }
  // Runs the staged call, then, on the same memory, the fused one. Each must meet its verdict;
  // a throw must leave memory and both modules as they were, a success write only `out`; they
  // must agree on throwing (agree >= 1) and on the message (agree == 2). Returns the memory
  // after the staged call and whether each threw.
  template <class S, class F>
  std::tuple<Bytes, bool, bool> run_pair(const Verdict& vs, const Verdict& vf, const Placed& out,
                                         const S& staged, const F& fused, const std::string& what,
                                         int agree) {
    const Bytes before = mem_;
    const ModuleState<T> ms(*staged_), mf(*fused_);
    const Outcome os = attempt(staged);
    Bytes after = mem_;
    std::copy(before.begin(), before.end(), mem_.begin());
    const Outcome of = attempt(fused);
    FUZZ_CHECK(agree < 1 || (!os == !of && (agree < 2 || os == of)), what, ": staged ",
               os.value_or("ok"), ", fused ", of.value_or("ok"));
    check_verdict(vs, os, what + " (staged)"), check_verdict(vf, of, what + " (fused)");
    FUZZ_CHECK(!os || (after == before && ModuleState<T>(*staged_) == ms), what, ": staged");
    FUZZ_CHECK(!of || (mem_ == before && ModuleState<T>(*fused_) == mf), what, ": fused");
    if (!os) unchanged_except(before, after, out, what + " (staged)");
    if (!of) unchanged_except(before, mem_, out, what + " (fused)");
    return {std::move(after), os.has_value(), of.has_value()};
  }

  // A forward, and maybe a backward, of the staged and the fused module (free false), or of
  // the staged:: and fused:: free functions (forward_training or forward_inference, backward or
  // backward_inference) with arrays and eps from the input.
  void call(bool free) {
    namespace S = bnorm::staged;
    namespace F = bnorm::fused;
    const index_t channels = fused_->num_features();
    const E e = extents(free ? 1 + in_.byte() % 5 : channels);
    auto x = place(e);
    auto y = x ? place(mutate(e), {&*x}) : std::nullopt;
    if (!y) return;
    const std::vector<T> xv = values(*x);
    const std::uint8_t sizes = in_.byte();
    const index_t c = e[1], m = e[0] * spatial(e);
    auto size = [&](int bit) { return (sizes >> bit & 1) ? index_t{sizes >> 5} : c; };
    const bool training = fused_->is_training(), then_backward = in_.byte() & 1;
    Args<T> a{fused_->weight(),       fused_->bias(),
              fused_->running_mean(), fused_->running_var(),
              fused_->options().eps,  training || !fused_->options().track_running_stats};
    if (free) {
      a.w = array((sizes & 16) ? 0 : size(0), -2, 2), a.b = array(a.w.size() ? size(1) : 0, -2, 2);
      a.rm = array(size(2), -3, 3), a.rv = array(size(3), 0.1, 3);
      a.eps = eps(), a.batch = in_.byte() & 1;
    }
    Verdict v;
    v.reject =
        y->e != e || (a.batch && m == 1) ||
        (free ? !(a.eps >= 0) || a.w.size() != a.b.size() || (a.w.size() && a.w.size() != c) ||
                    (!a.batch && (a.rm.size() != c || a.rv.size() != c))
              : c != channels || !state_ok());
    verdict(v, *y), verdict(v, *y, &*x);
    typename BN::Saved ss, sf;
    S::Cache<T> cache;
    F::BatchStatistics st;
    const std::int64_t batches = fused_->num_batches_tracked();
    const std::string what = concat(free ? "free" : "module", a.batch ? " batch" : " running",
                                    x->str("x"), y->str("y"), " w ", a.w.size(), " b ", a.b.size(),
                                    " rm ", a.rm.size(), " rv ", a.rv.size(), " eps ", a.eps);
    const auto [staged_y, s_threw, f_threw] = run_pair(
        v, v, *y,
        [&] {
          if (!free) ss = staged_->forward(view(*x), view(*y));
          if (free && a.batch) cache = S::forward_training<T>(view(*x), a.w, a.b, a.eps, view(*y));
          if (free && !a.batch)
            cache = S::forward_inference<T>(view(*x), a.w, a.b, a.rm, a.rv, a.eps, view(*y));
        },
        [&] {
          if (!free) sf = fused_->forward(view(*x), view(*y));
          if (free && a.batch) st = F::forward_training<T>(view(*x), a.w, a.b, a.eps, view(*y));
          if (free && !a.batch)
            F::forward_inference<T>(view(*x), a.w, a.b, a.rm, a.rv, a.eps, view(*y));
        },
        what, 2);
    if (f_threw) return;
    check(xv, read(*y, staged_y), e, a, what + " staged");
    check(xv, read(*y, mem_), e, a, what + " fused");
    if (free && a.batch) check_statistics(xv, e, a, st.mean, st.var, what + " fused");
    const bool updates = !free && training && fused_->options().track_running_stats && m > 0;
    const std::int64_t now = batches + updates;
    FUZZ_CHECK(staged_->num_batches_tracked() == now && fused_->num_batches_tracked() == now, what);
    sync();
    const bool in_place = y->same_as(*x);
    FUZZ_CHECK(free || (ss.in_place() == in_place && sf.in_place() == in_place), what);
    if (!then_backward || (free && in_place)) return;  // (a free forward in place: x is gone)

    const E ge = mutate(e);
    auto dy = place(ge);
    const std::vector<T> dyv = dy ? values(*dy) : std::vector<T>();
    auto dx = dy ? place(mutate(ge), {&*dy, &*x}) : std::nullopt;
    if (!dx) return;
    Verdict vs, vx;  // vx: dx against x, which the free staged backward does not read
    vs.reject = ge != e || dx->e != ge || (!free && (in_place || !state_ok()));
    verdict(vs, *dx), verdict(vs, *dx, &*dy), verdict(vx, *dx, &*x);
    Verdict vf = vs;
    vf.reject |= vx.reject;
    if (!free) vs = vf;
    Array dws = Array::Constant(3, 7), dbs = dws, dwf = dws, dbf = dws;
    const std::string bwhat = what + "; backward" + dy->str("dy") + dx->str("dx");
    const auto [staged_dx, bs_threw, bf_threw] = run_pair(
        vs, vf, *dx,
        [&] {
          if (!free) staged_->backward(ss, view(*dy), view(*dx));
          if (free) S::backward<T>(cache, view(*dy), view(*dx), dws, dbs);
        },
        [&] {
          if (!free) fused_->backward(sf, view(*dy), view(*dx));
          if (free && a.batch) F::backward<T>(view(*x), view(*dy), a.w, st, view(*dx), dwf, dbf);
          if (free && !a.batch)
            F::backward_inference<T>(view(*x), view(*dy), a.w, a.rm, a.rv, a.eps, view(*dx), dwf,
                                     dbf);
        },
        bwhat, free ? !vx.reject : 2);
    // The free functions write their gradients only when they succeed.
    FUZZ_CHECK(!free || ((!bs_threw || ((dws == 7).all() && (dbs == 7).all())) &&
                         (!bf_threw || ((dwf == 7).all() && (dbf == 7).all()))),
               bwhat);
    if (!bs_threw)
      check(xv, read(*dx, staged_dx), e, a, bwhat + " staged", &dyv,
            free ? dws : staged_->weight_grad(), free ? dbs : staged_->bias_grad());
    if (!bf_threw)
      check(xv, read(*dx, mem_), e, a, bwhat + " fused", &dyv, free ? dwf : fused_->weight_grad(),
            free ? dbf : fused_->bias_grad());
  }

  // fold_into: a module with random state (arrays sometimes resized), a row-major weight with
  // padded rows (rows == C or not) and a bias of 0, C or another size.
  void fold() {
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const std::uint8_t f = in_.byte(), wrong = in_.byte();  // wrong, bit k: array k resized
    bnorm::Options o;
    o.affine = !(f & 1), o.track_running_stats = !(f & 2), o.eps = f & 4 ? 1e-3 : 0;
    const index_t c = 1 + in_.byte() % 6, p = o.affine ? c : 0, r = o.track_running_stats ? c : 0;
    BN bn(c, o);
    for (int k = 0; k < 4; ++k)
      *arrays(bn)[k] = array((wrong >> k & 1) ? wrong >> 5 : k < 2 ? p : r, k == 3 ? 0.1 : -2, 2);
    const index_t rows = (f & 8) ? in_.byte() % 7 : c, cols = in_.byte() % 5, pad = f >> 6;
    const index_t nb = (f >> 4 & 3) == 0 ? 0 : (f >> 4 & 3) == 1 ? c : 1 + in_.byte() % 7;
    const Array w0 = array(rows * (cols + pad), -2, 2), b0 = array(nb, -2, 2);
    Array storage = w0, bias = b0;
    const ModuleState<T> state(bn);
    Eigen::Map<Matrix, 0, Eigen::OuterStride<>> weight(storage.data(), rows, cols,
                                                       Eigen::OuterStride<>(cols + pad));
    bool valid = o.track_running_stats && rows == c && (nb == 0 || nb == c);
    for (int k = 0; k < 4; ++k) valid &= arrays(bn)[k]->size() == (k < 2 ? p : c);
    const Outcome out = attempt([&] { bnorm::fold_into(bn, weight, bias); });
    const std::string what =
        concat("fold_into C ", c, " affine ", o.affine, " track ", o.track_running_stats, " wrong ",
               int{wrong}, " weight ", rows, "x", cols, "+", pad, " bias ", nb);
    FUZZ_CHECK(!out == valid && ModuleState<T>(bn) == state, what, ": ", out.value_or("ok"));
    for (index_t i = 0; i < storage.size(); ++i)  // the padding, and everything after a throw
      if (out || i % (cols + pad) >= cols) FUZZ_CHECK(storage[i] == w0[i], what, " at ", i);
    if (out) return FUZZ_CHECK(bnorm_test::same_bits(bias, b0), what, ": bias changed");
    FUZZ_CHECK(bias.size() == c, what, ": bias size ", bias.size());
    for (index_t k = 0; k < c; ++k) {
      const LD scale = (p ? bn.weight()[k] : 1) / std::sqrt(bn.running_var()[k] + LD(o.eps));
      const LD lb = nb ? b0[k] * scale : 0, rs = bn.running_mean()[k] * scale,
               shift = (p ? bn.bias()[k] : 0) - rs;
      check_close(bias[k], lb + shift,
                  8 * u * (std::fabs(lb) + std::fabs(shift) + std::fabs(lb + shift)) +
                      8 * ud * std::fabs(rs),
                  what + " bias", k);
      for (index_t j = 0; j < cols; ++j) {
        const LD ref = w0[k * (cols + pad) + j] * scale;
        check_close(weight(k, j), ref, 8 * u * std::fabs(ref), what + " weight", k * cols + j);
      }
    }
  }

  Input& in_;
  std::optional<BN> staged_, fused_;
  Bytes mem_;  // every buffer, between guard bytes; reserved once, so views never dangle
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  const std::uint8_t head = in.byte();
  std::vector<const char*> isas;  // the kernel sets this CPU runs (the same bits from each)
  for (const char* isa : {"sse2", "avx2", "avx512", "generic"})
    if (bnorm::isa_supported(isa)) isas.push_back(isa);
  bnorm::set_isa(isas[static_cast<std::size_t>(head >> 2 & 3) % isas.size()]);
  if ((head & 3) == 0) Session<float, bnorm::NCLView>(in).run();
  if ((head & 3) == 1) Session<double, bnorm::NCLView>(in).run();
  if ((head & 3) == 2) Session<float, bnorm::NCDHWView>(in).run();
  if ((head & 3) == 3) Session<double, bnorm::NCDHWView>(in).run();
  return 0;
}
