// Reader of the PyTorch golden files tests/golden/golden.txt and golden_ranks.txt (format in
// tests/golden/README.md), shared by the golden replay (test_golden.cpp) and the bnorm_npy
// end-to-end test.
#pragma once

#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace bnorm_test {

struct GoldenStep {
  bool train = true;
  Shape shape{};                 // the NCHW face: (N, C, 1, L), (N, C, D*H, W) for 1d and 3d
  std::vector<index_t> extents;  // the module's own input extents (1d and 3d cases)
  std::map<std::string, std::vector<double>> data;  // x, dy, y, dx, dweight, ...
  long long batches = 0;
};

struct GoldenCase {
  std::string name, dtype;
  std::string module = "2d";  // 1d, 2d or 3d: torch.nn.BatchNorm1d, 2d, 3d
  std::string activation = "none";  // golden_activation.txt: none or relu after BN(x) (+ r)
  bool residual = false;            // golden_activation.txt: y = act(BN(x) + residual)
  bnorm::Options options;
  index_t features = 0;
  std::vector<double> weight, bias;
  std::vector<GoldenStep> steps;
};

inline std::vector<double> read_values(std::istream& in, index_t n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& d : v) {
    std::string token;
    in >> token;
    d = std::strtod(token.c_str(), nullptr);  // strtod reads nan and inf too
  }
  return v;
}

inline std::vector<GoldenCase> load_golden(const std::string& path) {
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
    } else if (key == "module") {
      in >> cases.back().module;
    } else if (key == "extents") {
      std::size_t rank = 0;
      in >> rank;
      auto& extents = cases.back().steps.back().extents;
      extents.resize(rank);
      for (index_t& e : extents) in >> e;
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
    } else if (key == "activation") {
      int residual = 0;
      in >> cases.back().activation >> key >> residual;
      cases.back().residual = residual != 0;
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
    } else if (key == "x" || key == "dy" || key == "y" || key == "dx" || key == "residual" ||
               key == "dresidual") {
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

/// gtest prints a case parameter by its name.
inline void PrintTo(const GoldenCase& gc, std::ostream* out) {
  *out << gc.name;
}

}  // namespace bnorm_test
