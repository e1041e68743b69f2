// PyTorch golden cases (tests/golden/golden.txt, made by tests/golden/generate_golden.py with
// torch.nn.BatchNorm2d): every option combination, several training steps, then eval steps.
// Both variants replay every case through BatchNorm2d and must match torch's outputs,
// gradients and running statistics.
#include <sstream>

#include "golden_file.hpp"
#include "test_support.hpp"

namespace bnorm_test {
namespace {

template <class T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
Eigen::Array<T, Eigen::Dynamic, 1> as_array(const std::vector<double>& v) {
  Eigen::Array<T, Eigen::Dynamic, 1> a(static_cast<index_t>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) a[static_cast<index_t>(i)] = static_cast<T>(v[i]);
  return a;
}

// Replays one case; returns the worst relative difference to torch over all compared values.
template <class T>
double replay(const GoldenCase& gc, bnorm::Variant variant, double tol) {
  bnorm::Options options = gc.options;
  options.variant = variant;
  bnorm::BatchNorm2d<T> bn(gc.features, options);
  if (options.affine) {
    bn.weight() = as_array<T>(gc.weight);
    bn.bias() = as_array<T>(gc.bias);
  }
  double worst = 0;
  auto compare = [&](const char* what, const auto& got, const std::vector<double>& want) {
    const double e = rel_error(got, want);
    EXPECT_LE(e, tol) << what;
    worst = std::max(worst, e);
  };
  int index = 0;
  for (const GoldenStep& step : gc.steps) {
    SCOPED_TRACE(::testing::Message() << "step " << index++ << (step.train ? " train" : " eval"));
    bn.train(step.train);
    Buffer<T> x(step.shape), y(step.shape), dy(step.shape), dx(step.shape);
    x.set(as<T>(step.data.at("x")));
    dy.set(as<T>(step.data.at("dy")));
    const auto saved = bn.forward(x.cview(), y.view());
    bn.backward(saved, dy.cview(), dx.view());
    compare("y", y.values(), step.data.at("y"));
    compare("dx", dx.values(), step.data.at("dx"));
    if (options.affine) {
      compare("dweight", bn.weight_grad(), step.data.at("dweight"));
      compare("dbias", bn.bias_grad(), step.data.at("dbias"));
    } else {
      EXPECT_EQ(bn.weight_grad().size(), 0);
    }
    if (options.track_running_stats) {
      compare("running_mean", bn.running_mean(), step.data.at("running_mean"));
      compare("running_var", bn.running_var(), step.data.at("running_var"));
      EXPECT_EQ(bn.num_batches_tracked(), step.batches);
    } else {
      EXPECT_EQ(bn.running_mean().size(), 0);
    }
  }
  return worst;
}

TEST(Golden, EveryCaseMatchesPyTorch) {
  const auto cases = load_golden(BNORM_GOLDEN_FILE);
  ASSERT_GE(cases.size(), 11u);
  std::map<std::string, double> worst;
  std::size_t steps = 0;
  for (const GoldenCase& gc : cases) {
    SCOPED_TRACE(gc.name);
    ASSERT_FALSE(gc.steps.empty());
    steps += gc.steps.size();
    for (const auto variant : {bnorm::Variant::staged, bnorm::Variant::fused}) {
      SCOPED_TRACE(variant == bnorm::Variant::staged ? "staged" : "fused");
      const std::string key = gc.dtype + (variant == bnorm::Variant::staged ? " staged" : " fused");
      const double e = gc.dtype == "float32" ? replay<float>(gc, variant, 1e-5)
                                             : replay<double>(gc, variant, 1e-12);
      worst[key] = std::max(worst[key], e);
    }
  }
  std::printf("[ golden: %zu cases, %zu steps ]\n", cases.size(), steps);
  for (const auto& [key, e] : worst)
    std::printf("[ worst relative difference to PyTorch, %s: %.3g ]\n", key.c_str(), e);
}

}  // namespace
}  // namespace bnorm_test
