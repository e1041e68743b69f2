// bnorm on PyTorch tensors, zero-copy: each torch::Tensor's memory is wrapped as an NCHWView
// with the tensor's own sizes and strides, so contiguous, channels_last and sliced tensors all
// work as they are. bnorm's BatchNorm2d and torch::nn::BatchNorm2d then run on the same data
// (two training steps, then an eval step; forward and backward each), and the program prints
// the largest relative difference of each result over the three steps: y, dx, dweight, dbias
// and the running statistics. Exits 1 if any exceeds the tolerance (1e-5 in float32, 1e-12 in
// float64).
//
// Built when libtorch is found (Debian: libtorch-dev); scripts/interop installs it and runs this.
#include <torch/torch.h>

#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

namespace {

/// A view of a CPU tensor's memory in its own layout (sizes and strides in elements).
/// Throws std::invalid_argument for a tensor that is not 4-d, on another device, or of a
/// dtype other than T.
template <class T>
bnorm::NCHWView<T> nchw_view(const torch::Tensor& t) {
  if (t.dim() != 4) throw std::invalid_argument("nchw_view: tensor is not 4-d");
  if (!t.device().is_cpu()) throw std::invalid_argument("nchw_view: tensor is not on the CPU");
  using U = std::remove_const_t<T>;
  if (t.scalar_type() != c10::CppTypeToScalarType<U>::value)
    throw std::invalid_argument("nchw_view: tensor's dtype differs from the view's");
  return bnorm::NCHWView<T>(t.data_ptr<U>(), {t.size(0), t.size(1), t.size(2), t.size(3)},
                            {t.stride(0), t.stride(1), t.stride(2), t.stride(3)});
}

/// max |a - b| / max |b| over all elements (absolute when b is all zero).
double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (b.numel() == 0) return a.numel() == 0 ? 0.0 : 1.0;
  const double diff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  const double ref = b.to(torch::kFloat64).abs().max().item<double>();
  return ref > 0 ? diff / ref : diff;
}

template <class T>
torch::Tensor as_tensor(const Eigen::Array<T, Eigen::Dynamic, 1>& a) {
  return torch::from_blob(const_cast<T*>(a.data()), {a.size()},
                          torch::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value))
      .clone();
}

enum class Layout { contiguous, channels_last, sliced };
const char* name(Layout l) {
  return l == Layout::contiguous      ? "contiguous"
         : l == Layout::channels_last ? "channels_last"
                                      : "sliced";
}

/// `base` (N, C, H, W) in the requested memory layout, same values.
torch::Tensor in_layout(const torch::Tensor& base, Layout layout) {
  switch (layout) {
    case Layout::contiguous:
      return base.contiguous();
    case Layout::channels_last:
      return base.contiguous(torch::MemoryFormat::ChannelsLast);
    case Layout::sliced: {  // every other column of a tensor twice as wide: W stride 2
      auto wide = torch::zeros({base.size(0), base.size(1), base.size(2), 2 * base.size(3)},
                               base.options());
      auto view = wide.slice(3, 0, 2 * base.size(3), 2);
      view.copy_(base);
      return view;
    }
  }
  return base;
}

struct Config {
  const char* name;
  c10::optional<double> momentum;
  bool affine, track;
};

template <class T>
double run(const Config& config, Layout layout, double tol) {
  constexpr auto dtype = c10::CppTypeToScalarType<T>::value;
  const std::int64_t N = 4, C = 3, H = 5, W = 6;
  const double eps = 1e-5;
  torch::manual_seed(20240611);

  auto options = torch::nn::BatchNorm2dOptions(C)
                     .eps(eps)
                     .momentum(config.momentum)
                     .affine(config.affine)
                     .track_running_stats(config.track);
  torch::nn::BatchNorm2d torch_bn(options);
  torch_bn->to(dtype);
  bnorm::Options bopt;
  bopt.eps = eps;
  bopt.momentum = config.momentum ? std::optional<double>(*config.momentum) : std::nullopt;
  bopt.affine = config.affine;
  bopt.track_running_stats = config.track;
  bnorm::BatchNorm2d<T> bn(C, bopt);
  if (config.affine) {  // random weight and bias, the same in both
    torch::NoGradGuard no_grad;
    torch_bn->weight.uniform_(0.5, 2.0);
    torch_bn->bias.uniform_(-1.0, 1.0);
    std::copy_n(torch_bn->weight.data_ptr<T>(), C, bn.weight().data());
    std::copy_n(torch_bn->bias.data_ptr<T>(), C, bn.bias().data());
  }

  struct Row {
    const char* what;
    double diff;
  };
  std::vector<Row> rows{{"y", 0}, {"dx", 0}};
  if (config.affine) rows.insert(rows.end(), {{"dweight", 0}, {"dbias", 0}});
  if (config.track) rows.insert(rows.end(), {{"running_mean", 0}, {"running_var", 0}});
  auto record = [&](const char* what, double diff) {
    for (Row& r : rows)
      if (std::string(r.what) == what) r.diff = std::max(r.diff, diff);
  };
  for (int step = 0; step < 3; ++step) {
    const bool train = step < 2;
    torch_bn->train(train);
    bn.train(train);
    // x: per-channel offsets and scales plus noise; dy: noise (never ones).
    const auto offset = torch::randn({1, C, 1, 1}, torch::dtype(dtype)) * 3;
    const auto scale = torch::rand({1, C, 1, 1}, torch::dtype(dtype)) + 0.5;
    const auto x =
        in_layout(torch::randn({N, C, H, W}, torch::dtype(dtype)) * scale + offset, layout);
    const auto dy = in_layout(torch::randn({N, C, H, W}, torch::dtype(dtype)), layout);

    // torch: autograd through its own module.
    const auto x_leaf = x.detach().requires_grad_(true);
    torch_bn->zero_grad();
    const auto y_torch = torch_bn->forward(x_leaf);
    y_torch.backward(dy);

    // bnorm: views of the same tensors' memory; y and dx in x's layout.
    auto y = torch::empty_like(x), dx = torch::empty_like(x);
    const auto saved = bn.forward(nchw_view<const T>(x), nchw_view<T>(y));
    bn.backward(saved, nchw_view<const T>(dy), nchw_view<T>(dx));

    record("y", rel_diff(y, y_torch));
    record("dx", rel_diff(dx, x_leaf.grad()));
    if (config.affine) {
      record("dweight", rel_diff(as_tensor(bn.weight_grad()), torch_bn->weight.grad()));
      record("dbias", rel_diff(as_tensor(bn.bias_grad()), torch_bn->bias.grad()));
    }
    if (config.track) {
      record("running_mean", rel_diff(as_tensor(bn.running_mean()), torch_bn->running_mean));
      record("running_var", rel_diff(as_tensor(bn.running_var()), torch_bn->running_var));
    }
  }
  double worst = 0;
  std::printf("%-7s %-13s %-22s", sizeof(T) == 4 ? "float32" : "float64", name(layout),
              config.name);
  for (const Row& r : rows) {
    std::printf("  %s %.1e", r.what, r.diff);
    worst = std::max(worst, r.diff);
  }
  std::printf("%s\n", worst <= tol ? "" : "  <- exceeds tolerance");
  return worst;
}

}  // namespace

int main() {
  torch::set_num_threads(1);
  const Config configs[] = {
      {"affine,track,m=0.1", 0.1, true, true},
      {"no-affine,track,m=None", c10::nullopt, false, true},
      {"affine,no-track", 0.1, true, false},
  };
  const double tol32 = 1e-5, tol64 = 1e-12;
  std::printf(
      "bnorm vs torch::nn::BatchNorm2d (libtorch %s), N=4 C=3 H=5 W=6, steps train, "
      "train, eval:\nlargest relative difference of each result\n",
      TORCH_VERSION);
  bool ok = true;
  double worst32 = 0, worst64 = 0;
  for (const Config& config : configs)
    for (Layout layout : {Layout::contiguous, Layout::channels_last, Layout::sliced}) {
      const double w32 = run<float>(config, layout, tol32),
                   w64 = run<double>(config, layout, tol64);
      worst32 = std::max(worst32, w32);
      worst64 = std::max(worst64, w64);
      ok = ok && w32 <= tol32 && w64 <= tol64;
    }
  std::printf("worst: float32 %.2e (tolerance %.0e), float64 %.2e (tolerance %.0e): %s\n", worst32,
              tol32, worst64, tol64, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
