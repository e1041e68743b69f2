// PyTorch golden cases of BatchNorm2d with the activation and residual options
// (tests/golden/golden_activation.txt, made by `tests/golden/generate_golden.py activation`):
// y = F.relu(bn(x)) ("relu"), F.relu(bn(x) + r) ("add_relu") and bn(x) + r ("add"), two training
// steps then an eval step, float32 and float64. Both variants replay every case through
// BatchNorm2d with Options::activation and forward(x, residual, y) / backward(..., dresidual),
// and must match torch's outputs, gradients (dx, dresidual, dweight, dbias) and running
// statistics.
#include <cstdio>
#include <map>
#include <string>

#include "golden_file.hpp"
#include "test_support.hpp"

namespace bnorm_test {
namespace {
namespace golden_activation {

// What `generate_golden.py activation` writes: each kind in float64 and float32, on three shapes
// with affine=1 and one with affine=0, three steps each.
constexpr std::size_t kCases = 24;
constexpr std::size_t kStepsPerCase = 3;
constexpr int kCasesPerKindAndDtype = 4;

template <class T>
std::vector<T> values_as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
Eigen::Array<T, Eigen::Dynamic, 1> array_as(const std::vector<double>& v) {
  Eigen::Array<T, Eigen::Dynamic, 1> a(static_cast<index_t>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) a[static_cast<index_t>(i)] = static_cast<T>(v[i]);
  return a;
}

std::string kind_of(const GoldenCase& gc) {
  if (gc.activation == "relu") return gc.residual ? "add_relu" : "relu";
  return gc.residual ? "add" : "none";
}

// "kind dtype variant quantity" -> the worst difference to torch over the cases.
using Worst = std::map<std::string, double>;

// golden_activation.txt, beside golden.txt (BNORM_GOLDEN_FILE).
std::string activation_file() {
  std::string path = BNORM_GOLDEN_FILE;
  const std::string name = "golden.txt";
  EXPECT_EQ(path.substr(path.size() - name.size()), name);
  return path.replace(path.size() - name.size(), name.size(), "golden_activation.txt");
}

// Replays one case; the difference of a tensor to torch's is max |ours - torch| / max(1, max
// |torch|), as the golden test of BatchNorm1d and 3d measures it.
template <class T>
void replay(const GoldenCase& gc, bnorm::Variant variant, double tol, Worst& worst_of) {
  const std::string kind = kind_of(gc);
  ASSERT_TRUE(kind == "relu" || kind == "add_relu" || kind == "add") << kind;
  const bool relu = gc.activation == "relu";
  bnorm::Options options = gc.options;
  options.variant = variant;
  options.activation = relu ? bnorm::Activation::relu : bnorm::Activation::none;
  bnorm::BatchNorm2d<T> bn(gc.features, options);
  if (options.affine) {
    bn.weight() = array_as<T>(gc.weight);
    bn.bias() = array_as<T>(gc.bias);
  }
  const std::string prefix = kind + (std::is_same_v<T, float> ? " float " : " double ") +
                             (variant == bnorm::Variant::staged ? "staged " : "fused ");
  auto compare = [&](const char* what, const auto& got, const std::vector<double>& want) {
    double ref = 0;
    for (double v : want) ref = std::max(ref, std::abs(v));
    const double e = rel_error(got, want) * (ref > 0 ? ref : 1) / std::max(1.0, ref);
    EXPECT_LE(e, tol) << what;
    double& worst = worst_of[prefix + what];
    worst = std::max(worst, e);
  };
  int index = 0;
  for (const GoldenStep& step : gc.steps) {
    SCOPED_TRACE(::testing::Message() << "step " << index++ << (step.train ? " train" : " eval"));
    ASSERT_EQ(step.data.count("residual"), gc.residual ? 1u : 0u);
    ASSERT_EQ(step.data.count("dresidual"), gc.residual ? 1u : 0u);
    bn.train(step.train);
    Buffer<T> x(step.shape), y(step.shape), dy(step.shape), dx(step.shape), r(step.shape),
        dr(step.shape);
    x.set(values_as<T>(step.data.at("x")));
    dy.set(values_as<T>(step.data.at("dy")));
    if (gc.residual) {
      r.set(values_as<T>(step.data.at("residual")));
      const auto saved = bn.forward(x.cview(), r.cview(), y.view());
      bn.backward(saved, dy.cview(), dx.view(), dr.view());
    } else {
      const auto saved = bn.forward(x.cview(), y.view());
      bn.backward(saved, dy.cview(), dx.view());
    }
    const std::vector<T> ours = y.values();
    const std::vector<double>& torch_y = step.data.at("y");
    compare("y", ours, torch_y);
    compare("dx", dx.values(), step.data.at("dx"));
    if (gc.residual) {
      compare("dresidual", dr.values(), step.data.at("dresidual"));
      // dresidual is dy where the output is not clipped and 0 where it is, exactly.
      const std::vector<T> got = dr.values(), dyv = dy.values();
      index_t wrong = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        wrong += got[i] != (relu && !(ours[i] > 0) ? T(0) : dyv[i]);
      EXPECT_EQ(wrong, 0) << "dresidual values other than dy * (y > 0)";
    }
    // The mask: relu clipped the same values as torch's, and something on both sides; without
    // the activation some outputs are negative.
    index_t zeros_ours = 0, zeros_torch = 0, negative = 0;
    for (std::size_t i = 0; i < ours.size(); ++i) {
      zeros_ours += ours[i] == T(0);
      zeros_torch += torch_y[i] == 0.0;
      negative += ours[i] < T(0);
    }
    if (relu) {
      EXPECT_EQ(zeros_ours, zeros_torch) << "relu clipped other values than torch's";
      EXPECT_EQ(negative, 0) << "negative outputs after relu";
      EXPECT_GT(zeros_torch, 0);
      EXPECT_LT(zeros_torch, static_cast<index_t>(ours.size()));
    } else {
      EXPECT_GT(negative, 0) << "no negative output without an activation";
    }
    if (options.affine) {
      compare("dweight", bn.weight_grad(), step.data.at("dweight"));
      compare("dbias", bn.bias_grad(), step.data.at("dbias"));
    } else {
      EXPECT_EQ(bn.weight_grad().size(), 0);
    }
    compare("running_mean", bn.running_mean(), step.data.at("running_mean"));
    compare("running_var", bn.running_var(), step.data.at("running_var"));
    EXPECT_EQ(bn.num_batches_tracked(), step.batches);
  }
}

TEST(GoldenActivation, EveryCaseMatchesPyTorch) {
  const auto cases = load_golden(activation_file());
  ASSERT_EQ(cases.size(), kCases);
  std::map<std::string, int> per_kind;
  std::size_t steps = 0;
  long long relu_values = 0, relu_clipped = 0;
  Worst worst;
  for (const GoldenCase& gc : cases) {
    SCOPED_TRACE(gc.name);
    ASSERT_EQ(gc.module, "2d");
    ASSERT_TRUE(gc.options.track_running_stats);
    ASSERT_EQ(gc.steps.size(), kStepsPerCase);
    ASSERT_TRUE(gc.steps.front().train);
    ASSERT_FALSE(gc.steps.back().train);
    ++per_kind[kind_of(gc) + " " + gc.dtype + (gc.options.affine ? "" : " affine0")];
    steps += gc.steps.size();
    if (gc.activation == "relu")
      for (const GoldenStep& step : gc.steps)
        for (double v : step.data.at("y")) {
          ++relu_values;
          relu_clipped += v == 0.0;
        }
    for (const auto variant : kVariants) {
      SCOPED_TRACE(variant == bnorm::Variant::staged ? "staged" : "fused");
      if (gc.dtype == "float32")
        replay<float>(gc, variant, 2e-5, worst);
      else
        replay<double>(gc, variant, 1e-10, worst);
    }
  }
  for (const char* kind : {"relu", "add_relu", "add"})
    for (const char* dtype : {"float32", "float64"}) {
      const std::string key = std::string(kind) + " " + dtype;
      EXPECT_EQ(per_kind[key] + per_kind[key + " affine0"], kCasesPerKindAndDtype) << key;
      EXPECT_EQ(per_kind[key + " affine0"], 1) << key;
    }
  // Every new quantity was compared for each kind, dtype and variant.
  for (const char* kind : {"relu", "add_relu", "add"})
    for (const char* dtype : {"float", "double"})
      for (const char* variant : {"staged", "fused"})
        for (const char* what : {"y", "dx", "dresidual", "dweight", "dbias", "running_mean"}) {
          if (std::string(kind) == "relu" && std::string(what) == "dresidual") continue;
          const std::string key = std::string(kind) + " " + dtype + " " + variant + " " + what;
          EXPECT_EQ(worst.count(key), 1u) << key << " never compared";
        }
  // The generator keeps each step's clipped share within 20-80 %.
  EXPECT_GT(relu_clipped, relu_values / 5);
  EXPECT_LT(relu_clipped, relu_values - relu_values / 5);
  std::printf("[ golden activation: %zu cases, %zu steps; relu clipped %lld of %lld outputs ]\n",
              cases.size(), steps, relu_clipped, relu_values);
  for (const auto& [key, e] : worst) std::printf("[ worst    ] %s %.2g\n", key.c_str(), e);
}

}  // namespace golden_activation
}  // namespace
}  // namespace bnorm_test
