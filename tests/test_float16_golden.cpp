// torch's own bfloat16 BatchNorm (golden_bfloat16.txt: torch 1.13's mixed type) replayed by
// both variants, with each one's error against float64 beside torch's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "float16_support.hpp"
#include "golden_file.hpp"

namespace bnorm_test {
namespace {

/// The module's view of kind View over a contiguous NCHW face buffer of a golden step.
template <template <class> class View, class U>
View<U> golden_view(const bnorm::NCHWView<U>& v, const std::vector<index_t>& e) {
  if constexpr (std::is_same_v<View<U>, bnorm::NCLView<U>>)
    return View<U>(v.data(), e[0], e[1], e.size() == 3 ? e[2] : 1);
  else if constexpr (std::is_same_v<View<U>, bnorm::NCDHWView<U>>)
    return View<U>(v.data(), e[0], e[1], e[2], e[3], e[4]);
  else
    return v;
}

/// A golden record of bfloat16 values, written as float32 with 9 digits: each value's float
/// (which the 9 digits name exactly), which must be a bfloat16.
std::vector<Eigen::bfloat16> golden_bfloat16(const std::vector<double>& v) {
  std::vector<Eigen::bfloat16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto f = static_cast<float>(v[i]);
    out[i] = bnorm::detail::from_compute<Eigen::bfloat16>(f);
    EXPECT_EQ(to_compute(out[i]), f) << "golden value " << i << " is not a bfloat16";
  }
  return out;
}

/// The worst errors against float64 of bnorm's fused and staged variants and of torch, over a
/// golden file's steps.
struct GoldenErrors {
  double fused_y = 0, fused_dx = 0, staged_y = 0, staged_dx = 0, torch_y = 0, torch_dx = 0;
};

/// Replays a bfloat16 golden case (torch's mixed type) through the module of rank View with
/// `variant`: y and dx against a float64 reference from the step's own bfloat16 inputs (bnorm's
/// and torch's, into `errors`); running buffers, parameter gradients and counts against torch's.
template <template <class> class View>
void replay_bfloat16(const GoldenCase& gc, bnorm::Variant variant, GoldenErrors& errors) {
  using H = Eigen::bfloat16;
  bnorm::Options options = gc.options;
  options.variant = variant;
  bnorm::BatchNorm<H, View> bn(gc.features, options);
  if (options.affine) {
    bn.weight() = Eigen::Map<const Eigen::ArrayXd>(gc.weight.data(), gc.features).cast<float>();
    bn.bias() = Eigen::Map<const Eigen::ArrayXd>(gc.bias.data(), gc.features).cast<float>();
  }
  const bool fused = variant == bnorm::Variant::fused;
  int index = 0;
  for (const GoldenStep& step : gc.steps) {
    SCOPED_TRACE(::testing::Message() << "step " << index++ << (step.train ? " train" : " eval"));
    const std::vector<H> x = golden_bfloat16(step.data.at("x"));
    const std::vector<H> dy = golden_bfloat16(step.data.at("dy"));
    const Shape& s = step.shape;
    const Eigen::ArrayXd w = options.affine ? bn.weight().template cast<double>().eval()
                                            : Eigen::ArrayXd::Ones(gc.features);
    const Eigen::ArrayXd b = options.affine ? bn.bias().template cast<double>().eval()
                                            : Eigen::ArrayXd::Zero(gc.features);
    // the float64 reference: batch statistics, or eval with the buffers as they are now
    Reference r = reference<double>(s, widened(x), widened(dy), w, b, options.eps);
    if (!step.train && options.track_running_stats) {
      const index_t plane = s[2] * s[3];
      for (std::size_t i = 0; i < x.size(); ++i) {
        const auto c = static_cast<index_t>(i) / plane % s[1];
        const long double k =
            w[c] / std::sqrt(static_cast<long double>(bn.running_var()[c]) + options.eps);
        r.y[i] = (to_compute(x[i]) - static_cast<long double>(bn.running_mean()[c])) * k + b[c];
        r.dx[i] = to_compute(dy[i]) * k;
      }
    }
    bn.train(step.train);
    Buffer<H> xb(s), yb(s), dyb(s), dxb(s);
    xb.set(x);
    dyb.set(dy);
    const auto& e = step.extents;
    const auto saved =
        bn.forward(golden_view<View>(xb.cview(), e), golden_view<View>(yb.view(), e));
    bn.backward(saved, golden_view<View>(dyb.cview(), e), golden_view<View>(dxb.view(), e));
    const double ey = max_ulps(yb.values(), r.y), edx = max_ulps(dxb.values(), r.dx);
    EXPECT_LE(ey, fused ? 1.0 : 0.5 + 1e-6);
    EXPECT_LE(edx, fused ? 1.0 : 0.5 + 1e-6);
    (fused ? errors.fused_y : errors.staged_y) =
        std::max(fused ? errors.fused_y : errors.staged_y, ey);
    (fused ? errors.fused_dx : errors.staged_dx) =
        std::max(fused ? errors.fused_dx : errors.staged_dx, edx);
    errors.torch_y = std::max(errors.torch_y, max_ulps(golden_bfloat16(step.data.at("y")), r.y));
    errors.torch_dx =
        std::max(errors.torch_dx, max_ulps(golden_bfloat16(step.data.at("dx")), r.dx));
    if (options.affine) {
      EXPECT_LT(rel_error(bn.weight_grad(), step.data.at("dweight")), 1e-3);
      EXPECT_LT(rel_error(bn.bias_grad(), step.data.at("dbias")), 1e-5);
    }
    if (options.track_running_stats) {
      EXPECT_LT(rel_error(bn.running_mean(), step.data.at("running_mean")), 1e-6);
      EXPECT_LT(rel_error(bn.running_var(), step.data.at("running_var")), 1e-6);
      EXPECT_EQ(bn.num_batches_tracked(), step.batches);
    }
  }
}

// torch's own bfloat16 BatchNorm (golden_bfloat16.txt, torch 1.13's mixed type: bfloat16 data,
// float32 module) replayed by both variants: the same semantics (running buffers, gradients,
// counts), and the error of each against float64 beside torch's.
TEST(Float16Golden, BfloatCasesOfTorch) {
  const auto cases = load_golden(BNORM_GOLDEN_BFLOAT16_FILE);
  ASSERT_GE(cases.size(), 7u);
  GoldenErrors errors;
  std::size_t steps = 0;
  for (const GoldenCase& gc : cases) {
    SCOPED_TRACE(gc.name);
    ASSERT_EQ(gc.dtype, "bfloat16");
    steps += gc.steps.size();
    for (const auto variant : {bnorm::Variant::staged, bnorm::Variant::fused}) {
      SCOPED_TRACE(variant == bnorm::Variant::staged ? "staged" : "fused");
      if (gc.module == "1d")
        replay_bfloat16<bnorm::NCLView>(gc, variant, errors);
      else if (gc.module == "3d")
        replay_bfloat16<bnorm::NCDHWView>(gc, variant, errors);
      else
        replay_bfloat16<bnorm::NCHWView>(gc, variant, errors);
    }
  }
  std::printf(
      "bfloat16 golden, %zu cases, %zu steps, worst error against float64 in ulp:\n"
      "  y:  bnorm fused %.3f, bnorm staged %.3f, torch %.3f\n"
      "  dx: bnorm fused %.3f, bnorm staged %.3f, torch %.3f\n",
      cases.size(), steps, errors.fused_y, errors.staged_y, errors.torch_y, errors.fused_dx,
      errors.staged_dx, errors.torch_dx);
}

}  // namespace
}  // namespace bnorm_test
