/// @file config.hpp
/// @brief Version, index type, the library's error type and the precondition helper.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#define BNORM_VERSION_MAJOR 0  ///< bnorm's version: major
#define BNORM_VERSION_MINOR 1  ///< bnorm's version: minor
#define BNORM_VERSION_PATCH 0  ///< bnorm's version: patch

namespace bnorm {

/// Signed 64-bit type of every extent, stride and element offset.
using index_t = std::ptrdiff_t;

/// Thrown for every caller mistake. Messages start with "bnorm: ", name the argument and give
/// the expected and the actual value. A throw leaves all outputs and all module state unchanged.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Which implementation computes a BatchNorm2d.
enum class Variant {
  staged,  ///< the nine-step graph, each step materialised: the executable specification
  fused,   ///< closed-form backward and one sweep per channel: the fast one
};

/// Writes "staged" or "fused".
inline std::ostream& operator<<(std::ostream& out, Variant v) {
  return out << (v == Variant::staged ? "staged" : "fused");
}

/// The activation a BatchNorm module applies to its output (fused into the same sweep).
enum class Activation {
  none,  ///< y = BN(x) (+ residual)
  relu,  ///< y = max(BN(x) (+ residual), 0); NaN stays NaN
};

/// Writes "none" or "relu".
inline std::ostream& operator<<(std::ostream& out, Activation a) {
  return out << (a == Activation::relu ? "relu" : "none");
}

/// Options of BatchNorm2d, named and defaulted as in torch.nn.BatchNorm2d.
struct Options {
  /// Added to the variance before the square root: invstd = 1 / sqrt(var + eps).
  double eps = 1e-5;
  /// running = (1 - momentum) * running + momentum * batch; nullopt: cumulative moving average,
  /// momentum = 1 / num_batches_tracked (PyTorch's momentum=None).
  std::optional<double> momentum = 0.1;
  /// false: no weight and bias (they and their gradients have size 0), y = xhat.
  bool affine = true;
  /// false: batch statistics in eval too; running buffers have size 0.
  bool track_running_stats = true;
  /// Implementation used by the module.
  Variant variant = Variant::fused;
  /// Applied to the output: y = act(BN(x)), or act(BN(x) + residual) with forward(x, residual,
  /// y). Not an option of torch.nn.BatchNorm2d: F.relu after it, fused here.
  Activation activation = Activation::none;
};

namespace detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  out.precision(17);
  (out << ... << args);
  return out.str();
}

/// Sets `product` to a * b, for a, b >= 0, and returns false if that overflows index_t. Views and
/// checks run this on every call: the builtin is a multiply and a flag, the portable test a
/// 64-bit division (tens of cycles).
inline bool multiply_fits(index_t a, index_t b, index_t& product) {
#if defined(__GNUC__) || defined(__clang__)
  return !__builtin_mul_overflow(a, b, &product);
#else
  if (b != 0 && a > std::numeric_limits<index_t>::max() / b) return false;
  product = a * b;
  return true;
#endif
}

/// Throws bnorm::invalid_argument("bnorm: " + args...) unless `ok`.
template <class... Args>
void require(bool ok, const Args&... args) {
  if (!ok) throw invalid_argument(concat("bnorm: ", args...));
}

/// eps must be a finite number >= 0.
inline void check_eps(double eps) {
  require(eps >= 0 && std::isfinite(eps), "eps must be finite and >= 0, got ", eps);
}

/// momentum, when given, must lie in [0, 1].
inline void check_momentum(const std::optional<double>& momentum) {
  if (momentum)
    require(*momentum >= 0 && *momentum <= 1, "momentum must be in [0, 1], got ", *momentum);
}

}  // namespace detail
}  // namespace bnorm
