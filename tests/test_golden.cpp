// PyTorch golden cases (tests/golden/golden.txt, made by tests/golden/generate_golden.py with
// torch.nn.BatchNorm2d): every option combination, several training steps, then eval steps.
// Both variants replay every case through BatchNorm2d and must match torch's outputs,
// gradients and running statistics.
#include <fstream>
#include <map>
#include <sstream>

#include "test_support.hpp"

namespace bnorm_test {
namespace {

struct GoldenStep {
  bool train = true;
  Shape shape{};
  std::map<std::string, std::vector<double>> data;  // x, dy, y, dx, dweight, ...
  long long batches = 0;
};

struct GoldenCase {
  std::string name, dtype;
  bnorm::Options options;
  index_t features = 0;
  std::vector<double> weight, bias;
  std::vector<GoldenStep> steps;
};

std::vector<double> read_values(std::istream& in, index_t n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& d : v) {
    std::string token;
    in >> token;
    d = std::strtod(token.c_str(), nullptr);  // strtod reads nan and inf too
  }
  return v;
}

std::vector<GoldenCase> load_golden(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::string key;
  int version = 0;
  in >> key >> version;
  EXPECT_EQ(key, "bnorm-golden");
  EXPECT_EQ(version, 1);
  std::vector<GoldenCase> cases;
  while (in >> key) {
    if (key == "torch") {
      in >> key;
    } else if (key == "case") {
      cases.emplace_back();
      in >> cases.back().name;
    } else if (key == "dtype") {
      in >> cases.back().dtype;
    } else if (key == "options") {
      std::string k, momentum;
      int affine = 0, track = 0;
      auto& o = cases.back().options;
      in >> k >> o.eps >> k >> momentum >> k >> affine >> k >> track;
      o.momentum = momentum == "none" ? std::nullopt : std::optional<double>(std::stod(momentum));
      o.affine = affine != 0;
      o.track_running_stats = track != 0;
    } else if (key == "features") {
      in >> cases.back().features;
    } else if (key == "weight" || key == "bias") {
      (key == "weight" ? cases.back().weight : cases.back().bias) =
          read_values(in, cases.back().features);
    } else if (key == "step") {
      std::string mode;
      in >> mode;
      cases.back().steps.emplace_back();
      cases.back().steps.back().train = mode == "train";
    } else if (key == "x" || key == "dy" || key == "y" || key == "dx") {
      auto& step = cases.back().steps.back();
      in >> step.shape[0] >> step.shape[1] >> step.shape[2] >> step.shape[3];
      step.data[key] = read_values(in, count(step.shape));
    } else if (key == "dweight" || key == "dbias" || key == "running_mean" ||
               key == "running_var") {
      cases.back().steps.back().data[key] = read_values(in, cases.back().features);
    } else if (key == "num_batches_tracked") {
      in >> cases.back().steps.back().batches;
    } else if (key != "endstep" && key != "endcase") {
      ADD_FAILURE() << "unknown golden record " << key;
      break;
    }
  }
  return cases;
}

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
