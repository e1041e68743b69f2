// A module's whole state, compared bitwise: for the tests (test_support.hpp) and the fuzz target,
// which does not link GoogleTest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <Eigen/Core>

#include <bnorm/detail/element_types.hpp>

namespace bnorm_test {

/// The same bits, sizes included (NaN equals itself; an empty container's data() may be null).
template <class C>
bool same_bits(const C& a, const C& b) {
  return a.size() == b.size() &&
         (a.size() == 0 ||
          std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(a[0])) == 0);
}

/// Everything a module call (BatchNorm2d, SyncBatchNorm2d) may change in the module: parameters,
/// running buffers, gradients, the batch count and the mode, compared bitwise.
template <class T>
struct ModuleState {
  using Array = bnorm::detail::ParameterArray<T>;  // float for the 16-bit types
  Array weight, bias, running_mean, running_var, weight_grad, bias_grad;
  std::int64_t batches;
  bool training;
  template <class Module>
  explicit ModuleState(const Module& bn)
      : weight(bn.weight()),
        bias(bn.bias()),
        running_mean(bn.running_mean()),
        running_var(bn.running_var()),
        weight_grad(bn.weight_grad()),
        bias_grad(bn.bias_grad()),
        batches(bn.num_batches_tracked()),
        training(bn.is_training()) {}
  /// Parameters, running statistics, counters and mode (what SyncBatchNorm2d's sync() makes
  /// equal): all but the gradients.
  bool same_state(const ModuleState& o) const {
    return same_bits(weight, o.weight) && same_bits(bias, o.bias) &&
           same_bits(running_mean, o.running_mean) && same_bits(running_var, o.running_var) &&
           batches == o.batches && training == o.training;
  }
  bool operator==(const ModuleState& o) const {
    return same_state(o) && same_bits(weight_grad, o.weight_grad) &&
           same_bits(bias_grad, o.bias_grad);
  }
};

}  // namespace bnorm_test
