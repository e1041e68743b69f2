// bnorm_npy: applies BatchNorm2d to a NumPy array, so NumPy and PyTorch users can cross-check
// bnorm against their own results. Reads X.npy (float32 or float64, shape (N, C, H, W), C order)
// and optional parameter and buffer files of the same dtype, runs one training or eval step,
// and writes the results as .npy files into OUT_DIR. Run with --help for the options.
//
// In NumPy/PyTorch terms, for a torch.nn.BatchNorm2d `bn` with the same options and state:
//   y.npy            bn(x)
//   mean.npy         the per-channel mean that normalised x (the batch's, or running_mean in eval)
//   invstd.npy       the matching 1 / sqrt(var + eps)
//   running_mean.npy, running_var.npy   bn's buffers after the step (track_running_stats)
//   dx.npy, dweight.npy, dbias.npy       x.grad, bn.weight.grad, bn.bias.grad for y.backward(dy)
#include <bnorm/bnorm.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "npy.hpp"

namespace {

const char* const kUsage = R"(usage: bnorm_npy [options] X.npy OUT_DIR

Applies torch.nn.BatchNorm2d to X (float32 or float64, shape (N, C, H, W), C order) and
writes OUT_DIR/y.npy, mean.npy, invstd.npy; with tracked statistics in training also the
updated running_mean.npy and running_var.npy; with --dy also dx.npy and, when affine,
dweight.npy and dbias.npy. All outputs have X's dtype. OUT_DIR is created if needed.

options:
  --eval                 normalise with the running statistics (default: a training step)
  --eps E                added to the variance (default 1e-5)
  --momentum M|none      running-statistics momentum in [0, 1] (default 0.1);
                         none: cumulative moving average
  --no-affine            no weight and bias (affine=False)
  --no-track             no running statistics (track_running_stats=False)
  --variant fused|staged which implementation computes it (default fused)
  --weight F, --bias F   weight and bias, shape (C,) (default ones and zeros)
  --running-mean F, --running-var F
                         the buffers before the step, shape (C,) (default zeros and ones)
  --dy F                 dL/dy, X's shape: also run the backward pass
  --help                 show this and exit
Exit status: 0 on success, 1 when an input or the computation is rejected, 2 on a usage error.
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string x, out_dir, dy, weight, bias, running_mean, running_var;
  bnorm::Options options;
  bool eval = false;
};

double parse_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0')
    throw UsageError(flag + " expects a number, got '" + text + "'");
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " expects a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--eval") {
      a.eval = true;
    } else if (arg == "--eps") {
      a.options.eps = parse_number(arg, value());
    } else if (arg == "--momentum") {
      const std::string v = value();
      a.options.momentum = v == "none" ? std::nullopt : std::optional<double>(parse_number(arg, v));
    } else if (arg == "--no-affine") {
      a.options.affine = false;
    } else if (arg == "--no-track") {
      a.options.track_running_stats = false;
    } else if (arg == "--variant") {
      const std::string v = value();
      if (v != "fused" && v != "staged")
        throw UsageError("--variant expects fused or staged, got '" + v + "'");
      a.options.variant = v == "fused" ? bnorm::Variant::fused : bnorm::Variant::staged;
    } else if (arg == "--weight") {
      a.weight = value();
    } else if (arg == "--bias") {
      a.bias = value();
    } else if (arg == "--running-mean") {
      a.running_mean = value();
    } else if (arg == "--running-var") {
      a.running_var = value();
    } else if (arg == "--dy") {
      a.dy = value();
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw UsageError("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) throw UsageError("expected X.npy and OUT_DIR");
  a.x = positional[0];
  a.out_dir = positional[1];
  if (!a.options.affine && (!a.weight.empty() || !a.bias.empty()))
    throw UsageError("--weight and --bias cannot go with --no-affine");
  if (!a.options.track_running_stats && (!a.running_mean.empty() || !a.running_var.empty()))
    throw UsageError("--running-mean and --running-var cannot go with --no-track");
  return a;
}

/// Loads a per-channel file into `dest` when a path is given; it must be (C,) of type T.
template <class T>
void load_channels(const std::string& path, bnorm::index_t channels,
                   Eigen::Array<T, Eigen::Dynamic, 1>& dest) {
  if (path.empty()) return;
  const npy::Array<T> a = npy::load<T>(path);
  if (a.shape.size() != 1 || a.shape[0] != channels)
    throw npy::error(path + ": shape " + npy::shape_string(a.shape) + ", expected (" +
                     std::to_string(channels) + ",) (the channels of x)");
  dest = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(a.data.data(), channels);
}

template <class T>
void save_channels(const std::filesystem::path& path, const Eigen::Array<T, Eigen::Dynamic, 1>& a) {
  npy::save<T>(path.string(), {static_cast<std::int64_t>(a.size())}, a.data());
}

template <class T>
int run(const Args& args) {
  const npy::Array<T> x = npy::load<T>(args.x);
  if (x.shape.size() != 4)
    throw npy::error(args.x + ": shape " + npy::shape_string(x.shape) +
                     ", expected 4 dimensions (N, C, H, W)");
  const bnorm::index_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
  if (c == 0)
    throw npy::error(args.x + ": shape " + npy::shape_string(x.shape) + " has no channels");

  bnorm::BatchNorm2d<T> bn(c, args.options);
  load_channels<T>(args.weight, c, bn.weight());
  load_channels<T>(args.bias, c, bn.bias());
  load_channels<T>(args.running_mean, c, bn.running_mean());
  load_channels<T>(args.running_var, c, bn.running_var());
  bn.train(!args.eval);

  std::vector<T> dy_data;
  if (!args.dy.empty()) {
    npy::Array<T> dy = npy::load<T>(args.dy);
    if (dy.shape != x.shape)
      throw npy::error(args.dy + ": shape " + npy::shape_string(dy.shape) + ", expected " +
                       npy::shape_string(x.shape) + " (the shape of x)");
    dy_data = std::move(dy.data);
  }

  std::vector<T> y(x.data.size());
  const bnorm::NCHWView<const T> xv(x.data.data(), n, c, h, w);
  const auto saved = bn.forward(xv, {y.data(), n, c, h, w});
  std::vector<T> dx;
  if (!args.dy.empty()) {
    dx.resize(x.data.size());
    bn.backward(saved, {dy_data.data(), n, c, h, w}, {dx.data(), n, c, h, w});
  }

  const std::filesystem::path out(args.out_dir);
  std::filesystem::create_directories(out);
  npy::save<T>((out / "y.npy").string(), x.shape, y.data());
  if (saved.mean().size() == c) {  // empty when N*H*W == 0: nothing was normalised
    save_channels<T>(out / "mean.npy", saved.mean());
    save_channels<T>(out / "invstd.npy", saved.invstd());
  }
  if (!args.eval && args.options.track_running_stats) {
    save_channels<T>(out / "running_mean.npy", bn.running_mean());
    save_channels<T>(out / "running_var.npy", bn.running_var());
  }
  if (!args.dy.empty()) {
    npy::save<T>((out / "dx.npy").string(), x.shape, dx.data());
    if (args.options.affine) {
      save_channels<T>(out / "dweight.npy", bn.weight_grad());
      save_channels<T>(out / "dbias.npy", bn.bias_grad());
    }
  }
  std::printf("bnorm_npy: %s %s %s -> %s\n", args.eval ? "eval" : "train",
              sizeof(T) == 4 ? "float32" : "float64", npy::shape_string(x.shape).c_str(),
              args.out_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "bnorm_npy: %s\n\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    const npy::Header h = npy::peek_header(args.x);
    return h.itemsize == 4 ? run<float>(args) : run<double>(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bnorm_npy: %s\n", e.what());
    return 1;
  }
}
