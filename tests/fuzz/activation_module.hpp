// ActivationStep's module step: a staged and a fused module with an activation, a forward with
// or without a residual, then up to two backwards with or without dresidual.
#pragma once

#include <bnorm/bnorm.hpp>

#include "fuzz_activation.hpp"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

template <class T, class S>
void ActivationStep<T, S>::module_step() {
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

template <class T, class S>
bool ActivationStep<T, S>::module_backward(const Forward& f, BN& ms, BN& mf,
                                           const std::string& fwhat) {
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
    check_bn_backward(f.xv, g, f.x.extents, bn.weight(), p, f.batch, f.running_mean, f.running_var,
                      bn.options().eps, staged ? read(dx, after_staged) : arena_.read(dx),
                      bn.weight_grad(), bn.bias_grad(), vwhat);
  }
  const auto same = [&](const Placed& a, const Placed& c) {
    return a.count() > 0 && a.buffer == c.buffer && a.offset == c.offset;
  };
  return !same(dx, f.x) && !(y_read && same(dx, f.y));
}

}  // namespace
