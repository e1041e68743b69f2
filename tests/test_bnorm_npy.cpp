// bnorm_npy end to end: every PyTorch golden case (tests/golden/golden.txt) is written as .npy
// files, the tool runs on them as a user would run it (a train step with default buffers, and
// an eval step with the running statistics torch had by then), and its .npy outputs must match
// torch's y, dx, dweight, dbias and running statistics, and BatchNorm2d called directly on the
// same data. Then the tool's rejections: exit status and message for each kind of bad input.
#include <sys/wait.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../examples/npy.hpp"
#include "golden_file.hpp"
#include "test_support.hpp"

namespace bnorm_test {
namespace {

namespace fs = std::filesystem;

struct Result {
  int status = -1;     // the tool's exit status
  std::string output;  // its stdout and stderr
};

/// Runs bnorm_npy with `args` (already quoted where needed) in `dir`.
Result run_tool(const fs::path& dir, const std::string& args) {
  const fs::path log = dir / "log.txt";
  const std::string cmd =
      std::string("\"") + BNORM_NPY_EXE + "\" " + args + " > \"" + log.string() + "\" 2>&1";
  const int raw = std::system(cmd.c_str());
  Result r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(log);
  std::ostringstream s;
  s << in.rdbuf();
  r.output = s.str();
  return r;
}

/// A fresh directory for one test.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("bnorm_npy_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string shell_quoted(const fs::path& p) {
  return "\"" + p.string() + "\"";
}

template <class T>
void save(const fs::path& path, const std::vector<std::int64_t>& shape,
          const std::vector<double>& values) {
  const std::vector<T> v(values.begin(), values.end());
  npy::save<T>(path.string(), shape, v.data());
}

std::vector<std::int64_t> dims(const Shape& s) {
  return {s[0], s[1], s[2], s[3]};
}

template <class T>
std::vector<T> load(const fs::path& path, const std::vector<std::int64_t>& shape) {
  npy::Array<T> a = npy::load<T>(path.string());
  EXPECT_EQ(a.shape, shape) << path;
  return a.data;
}

/// Runs one golden step through the tool and checks its outputs. `before` is the step whose
/// running statistics the eval step starts from (nullptr: torch's defaults).
template <class T>
void check_step(const GoldenCase& gc, const GoldenStep& step, const GoldenStep* before,
                const fs::path& dir, double tol) {
  const auto& o = gc.options;
  const auto c = static_cast<std::int64_t>(gc.features);
  std::ostringstream args;
  args.precision(17);
  args << "--eps " << o.eps << " --momentum ";
  if (o.momentum)
    args << *o.momentum;
  else
    args << "none";
  if (!o.affine) args << " --no-affine";
  if (!o.track_running_stats) args << " --no-track";
  if (!step.train) args << " --eval";
  save<T>(dir / "x.npy", dims(step.shape), step.data.at("x"));
  save<T>(dir / "dy.npy", dims(step.shape), step.data.at("dy"));
  args << " --dy " << shell_quoted(dir / "dy.npy");
  if (o.affine) {
    save<T>(dir / "weight.npy", {c}, gc.weight);
    save<T>(dir / "bias.npy", {c}, gc.bias);
    args << " --weight " << shell_quoted(dir / "weight.npy") << " --bias "
         << shell_quoted(dir / "bias.npy");
  }
  if (before && o.track_running_stats) {
    save<T>(dir / "rm.npy", {c}, before->data.at("running_mean"));
    save<T>(dir / "rv.npy", {c}, before->data.at("running_var"));
    args << " --running-mean " << shell_quoted(dir / "rm.npy") << " --running-var "
         << shell_quoted(dir / "rv.npy");
  }
  const fs::path out = dir / (step.train ? "out_train" : "out_eval");
  args << " " << shell_quoted(dir / "x.npy") << " " << shell_quoted(out);
  const Result r = run_tool(dir, args.str());
  ASSERT_EQ(r.status, 0) << args.str() << "\n" << r.output;

  // Against torch.
  EXPECT_LE(rel_error(load<T>(out / "y.npy", dims(step.shape)), step.data.at("y")), tol);
  EXPECT_LE(rel_error(load<T>(out / "dx.npy", dims(step.shape)), step.data.at("dx")), tol);
  EXPECT_EQ(fs::exists(out / "dweight.npy"), o.affine);
  if (o.affine) {
    EXPECT_LE(rel_error(load<T>(out / "dweight.npy", {c}), step.data.at("dweight")), tol);
    EXPECT_LE(rel_error(load<T>(out / "dbias.npy", {c}), step.data.at("dbias")), tol);
  }
  const bool updates = step.train && o.track_running_stats;
  EXPECT_EQ(fs::exists(out / "running_mean.npy"), updates);
  if (updates) {
    EXPECT_LE(rel_error(load<T>(out / "running_mean.npy", {c}), step.data.at("running_mean")), tol);
    EXPECT_LE(rel_error(load<T>(out / "running_var.npy", {c}), step.data.at("running_var")), tol);
  }

  // Against BatchNorm2d called directly: the same bits.
  bnorm::BatchNorm2d<T> bn(gc.features, o);
  if (o.affine) {
    for (index_t i = 0; i < c; ++i) bn.weight()[i] = static_cast<T>(gc.weight[i]);
    for (index_t i = 0; i < c; ++i) bn.bias()[i] = static_cast<T>(gc.bias[i]);
  }
  if (before && o.track_running_stats)
    for (index_t i = 0; i < c; ++i) {
      bn.running_mean()[i] = static_cast<T>(before->data.at("running_mean")[i]);
      bn.running_var()[i] = static_cast<T>(before->data.at("running_var")[i]);
    }
  bn.train(step.train);
  Buffer<T> x(step.shape), y(step.shape);
  x.set(std::vector<T>(step.data.at("x").begin(), step.data.at("x").end()));
  const auto saved = bn.forward(x.cview(), y.view());
  EXPECT_EQ(load<T>(out / "y.npy", dims(step.shape)), y.values());
  const std::vector<T> mean(saved.mean().data(), saved.mean().data() + c);
  const std::vector<T> invstd(saved.invstd().data(), saved.invstd().data() + c);
  EXPECT_EQ(load<T>(out / "mean.npy", {c}), mean);
  EXPECT_EQ(load<T>(out / "invstd.npy", {c}), invstd);
}

class BnormNpyGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(BnormNpyGolden, MatchesTorch) {
  const GoldenCase& gc = GetParam();
  ASSERT_GE(gc.steps.size(), 4u);
  ASSERT_TRUE(gc.steps[0].train);
  std::size_t eval = 1;
  while (eval < gc.steps.size() && gc.steps[eval].train) ++eval;
  ASSERT_LT(eval, gc.steps.size()) << "the case has no eval step";
  const fs::path dir = scratch(gc.name);
  for (const auto& [index, before] :
       {std::pair{std::size_t{0}, static_cast<const GoldenStep*>(nullptr)},
        std::pair{eval, &gc.steps[eval - 1]}}) {
    SCOPED_TRACE(::testing::Message() << "step " << index);
    if (gc.dtype == "float32")
      check_step<float>(gc, gc.steps[index], before, dir, 1e-5);
    else
      check_step<double>(gc, gc.steps[index], before, dir, 1e-12);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, BnormNpyGolden,
                         ::testing::ValuesIn(load_golden(BNORM_GOLDEN_FILE)),
                         [](const auto& info) {  // gtest names: letters, digits and _
                           std::string name = info.param.name;
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

// Rejected inputs: exit status 1 (bad data) or 2 (bad command line), and a message that says why.
TEST(BnormNpy, RejectsBadInputsWithAMessage) {
  const fs::path dir = scratch("errors");
  const std::string npy_dir = BNORM_NPY_DIR;
  const Shape s{2, 3, 4, 5};
  save<float>(dir / "x.npy", dims(s), std::vector<double>(120, 1.5));
  save<double>(dir / "x64.npy", dims(s), std::vector<double>(120, 1.5));
  save<float>(dir / "w4.npy", {4}, {1, 2, 3, 4});
  save<double>(dir / "w64.npy", {3}, {1, 2, 3});
  save<float>(dir / "dy_bad.npy", {2, 3, 4, 6}, std::vector<double>(144, 0.5));
  const std::string x = shell_quoted(dir / "x.npy"), out = shell_quoted(dir / "out");
  struct Case {
    std::string args;
    int status;
    std::string message;
  };
  const Case cases[] = {
      {shell_quoted(fs::path(npy_dir + "/f32_fortran_2x3.npy")) + " " + out, 1, "Fortran order"},
      {shell_quoted(fs::path(npy_dir + "/i32_vec4.npy")) + " " + out, 1,
       "dtype '<i4' is not supported"},
      {shell_quoted(fs::path(npy_dir + "/f64_vec3.npy")) + " " + out, 1,
       "shape (3,), expected 4 dimensions (N, C, H, W)"},
      {shell_quoted(dir / "missing.npy") + " " + out, 1, "missing.npy: cannot open for reading"},
      {"--weight " + shell_quoted(dir / "w4.npy") + " " + x + " " + out, 1,
       "w4.npy: shape (4,), expected (3,) (the channels of x)"},
      {"--weight " + shell_quoted(dir / "w64.npy") + " " + x + " " + out, 1,
       "w64.npy: expected float32, the file has float64"},
      {"--dy " + shell_quoted(dir / "dy_bad.npy") + " " + x + " " + out, 1,
       "dy_bad.npy: shape (2, 3, 4, 6), expected (2, 3, 4, 5) (the shape of x)"},
      {"--momentum 2 " + x + " " + out, 1, "bnorm: momentum must be in [0, 1], got 2"},
      {"--eps -1 " + x + " " + out, 1, "bnorm: eps must be finite and >= 0, got -1"},
      {"--eps abc " + x + " " + out, 2, "--eps expects a number, got 'abc'"},
      {"--variant slow " + x + " " + out, 2, "--variant expects fused or staged, got 'slow'"},
      {"--frobnicate " + x + " " + out, 2, "unknown option --frobnicate"},
      {x, 2, "expected X.npy and OUT_DIR"},
      {"--no-affine --weight " + shell_quoted(dir / "w4.npy") + " " + x + " " + out, 2,
       "--weight and --bias cannot go with --no-affine"},
      {"--help", 0, "usage: bnorm_npy [options] X.npy OUT_DIR"},
  };
  for (const Case& c : cases) {
    const Result r = run_tool(dir, c.args);
    EXPECT_EQ(r.status, c.status) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(dir / "out")) << "a rejected run wrote outputs";

  // And the same files accepted: float64 and the staged variant give a y of x's dtype.
  const Result ok = run_tool(dir, "--variant staged " + shell_quoted(dir / "x64.npy") + " " + out);
  ASSERT_EQ(ok.status, 0) << ok.output;
  EXPECT_EQ(npy::peek_header((dir / "out" / "y.npy").string()).dtype_name(), "float64");
}

}  // namespace
}  // namespace bnorm_test
