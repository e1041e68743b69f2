/// @file detail/staged_backend.hpp
/// @brief How BatchNorm2d reaches the staged variant, or learns that it is left out.
///
/// BatchNorm2d chooses its variant at run time, so every translation unit that instantiates it
/// would compile the staged variant, Eigen's Tensor module and all, even when only the fused one
/// runs. Defining BNORM_NO_STAGED before the first bnorm include leaves the staged variant out:
/// this header then provides a stub whose Cache is empty, and BatchNorm2d's constructor rejects
/// Variant::staged. BatchNorm2d is then declared in the inline namespace bnorm::no_staged, so a
/// program may mix translation units with and without the macro: each sees its own class (still
/// spelled bnorm::BatchNorm2d), and handing one across such a boundary is a link error rather
/// than a silent difference in layout.
#pragma once

#include <Eigen/Core>

#include "../config.hpp"
#include "../nchw_view.hpp"

#include "../other_ranks.hpp"  // staged.hpp and its functions over NCLView and NCDHWView
#ifndef BNORM_NO_STAGED
#include "../staged_activation.hpp"
#endif

/// Open and close the inline namespace bnorm::no_staged (or nothing without BNORM_NO_STAGED)
/// around every class whose layout depends on the macro: BatchNorm2d, SyncBatchNorm2d and the
/// stub below.
#ifdef BNORM_NO_STAGED
#define BNORM_DETAIL_BEGIN_NO_STAGED inline namespace no_staged {
#define BNORM_DETAIL_END_NO_STAGED }
#else
#define BNORM_DETAIL_BEGIN_NO_STAGED
#define BNORM_DETAIL_END_NO_STAGED
#endif

namespace bnorm::detail {

#ifndef BNORM_NO_STAGED

/// The staged variant as BatchNorm calls it, for every view kind.
template <class T>
struct StagedBackend {
  static constexpr bool available = true;
  using Array = ParameterArray<T>;
  using Cache = staged::Cache<T>;

  /// y = act(BN(x) + residual) (no residual when nullptr).
  template <template <class> class V>
  static Cache forward_training(V<const T> x, const V<const T>* residual, const Array& weight,
                                const Array& bias, double eps, V<T> y, Activation act) {
    return staged::forward_training<T, V>(x, residual, weight, bias, eps, y, act);
  }
  template <template <class> class V>
  static Cache forward_inference(V<const T> x, const V<const T>* residual, const Array& weight,
                                 const Array& bias, const Array& running_mean,
                                 const Array& running_var, double eps, V<T> y, Activation act) {
    return staged::forward_inference<T, V>(x, residual, weight, bias, running_mean, running_var,
                                           eps, y, act);
  }
  /// Backward with the module's weight as it is now (not the forward's), as fused does; dL/d
  /// residual into *dresidual when given.
  template <template <class> class V>
  static void backward(const Cache& k, const Array& weight, V<const T> dy, V<T> dx,
                       const V<T>* dresidual, Array& dweight, Array& dbias) {
    staged::backward<T, V>(k, weight, dy, dx, dresidual, dweight, dbias);
  }
  /// The batch mean (step 1) and biased variance (step 4) of a training forward, in double.
  static Eigen::ArrayXd mean(const Cache& k) { return to_double(k.mu); }
  static Eigen::ArrayXd var(const Cache& k) { return to_double(k.var); }

 private:
  static Eigen::ArrayXd to_double(const staged::Tensor1<staged_t<T>>& t) {
    Eigen::ArrayXd a(t.size());
    for (Eigen::Index i = 0; i < t.size(); ++i) a[i] = static_cast<double>(t(i));
    return a;
  }
};

#else

/// BNORM_NO_STAGED: no staged variant. BatchNorm2d's constructor rejects Variant::staged, so
/// none of these functions is ever called; they throw if one is. Like BatchNorm2d, the stub has
/// its own inline namespace, so the linker never takes one class's functions for the other's.
BNORM_DETAIL_BEGIN_NO_STAGED
template <class T>
struct StagedBackend {
  static constexpr bool available = false;
  using Array = ParameterArray<T>;
  struct Cache {};

  template <class X, class R, class Y>
  [[noreturn]] static Cache forward_training(const X&, const R*, const Array&, const Array&, double,
                                             const Y&, Activation) {
    unavailable();
  }
  template <class X, class R, class Y>
  [[noreturn]] static Cache forward_inference(const X&, const R*, const Array&, const Array&,
                                              const Array&, const Array&, double, const Y&,
                                              Activation) {
    unavailable();
  }
  template <class X, class Y>
  [[noreturn]] static void backward(const Cache&, const Array&, const X&, const Y&, const Y*,
                                    Array&, Array&) {
    unavailable();
  }
  [[noreturn]] static Eigen::ArrayXd mean(const Cache&) { unavailable(); }
  [[noreturn]] static Eigen::ArrayXd var(const Cache&) { unavailable(); }

 private:
  [[noreturn]] static void unavailable() {
    throw std::logic_error("bnorm: the staged variant was left out with BNORM_NO_STAGED");
  }
};
BNORM_DETAIL_END_NO_STAGED

#endif

/// The constructor's check: Variant::staged needs the staged variant compiled in.
inline void check_variant_available(Variant variant, bool staged_available) {
  require(variant != Variant::staged || staged_available,
          "options.variant is staged, but this translation unit was compiled with "
          "BNORM_NO_STAGED, which leaves the staged variant out (expected Variant::fused)");
}

}  // namespace bnorm::detail
