/// @file detail/dispatch.hpp
/// @brief The fused kernels compiled once per instruction set, and the tables that call the set
/// in use (isa.hpp).
///
/// The files of per_isa/ are included here once per set, each time inside a namespace of its
/// own with internal linkage (bnorm::detail::{anonymous}::baseline, avx2, avx512) and inside a
/// region that compiles them for that set: GCC's `#pragma GCC target`, Clang's
/// `#pragma clang attribute push(target)`, as simdjson and Highway do. Translation units built
/// with different flags so never share a symbol compiled for a wider set.
///
/// Every region also turns floating-point contraction off (no a * b + c fused into an FMA on
/// one set and not on another), and each entry point is noinline, so it is never inlined into
/// the caller and compiled with the caller's flags: the same bits on every set, whatever flags
/// the program is built with.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../config.hpp"
#include "../nchw_view.hpp"
#include "../statistics.hpp"
#include "cache_sizes.hpp"
#include "cpu_features.hpp"
#include "element_types.hpp"
#include "float16.hpp"
#include "small_buffer.hpp"

/// The instruction sets BNORM_KERNEL_ISA names inside per_isa/ (a set includes the ones below it).
#define BNORM_ISA_GENERIC 0
#define BNORM_ISA_SSE2 1
#define BNORM_ISA_AVX2 2
#define BNORM_ISA_AVX512 3

/// 16-lane packs (GCC/Clang vector extensions); without them the kernels use their row loops.
#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 9)
#define BNORM_HAVE_PACKS 1
#endif

/// An entry point of a kernel set: never inlined into its caller (whose flags would then compile
/// it). `inline` only for linkage: no warning for a set's unused functions.
/// BNORM_PREFETCHING marks the functions that prefetch: GCC's interprocedural analysis takes a
/// function whose only effect is a prefetch for one without effects and deletes its calls;
/// forced inline, the prefetches stay in the callers' loops.
#if defined(__GNUC__)
#define BNORM_DETAIL_ENTRY inline __attribute__((noinline))
#define BNORM_PREFETCHING inline __attribute__((always_inline))
#else
#define BNORM_DETAIL_ENTRY inline
#define BNORM_PREFETCHING inline
#endif

#define BNORM_DETAIL_PRAGMA(...) _Pragma(#__VA_ARGS__)
#if defined(__clang__)
#define BNORM_DETAIL_STRICT_BEGIN \
  BNORM_DETAIL_PRAGMA(float_control(push)) BNORM_DETAIL_PRAGMA(clang fp contract(off))
#define BNORM_DETAIL_STRICT_END BNORM_DETAIL_PRAGMA(float_control(pop))
#define BNORM_DETAIL_TARGET_BEGIN(features) \
  BNORM_DETAIL_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))
#define BNORM_DETAIL_TARGET_END BNORM_DETAIL_PRAGMA(clang attribute pop)
#elif defined(__GNUC__)
// Besides fp-contract=off, the loop transforms -O3 adds to -O2 are off in the kernels (GCC 11
// and later name them all): they are written in explicit 16-lane packs and gain nothing from
// them, and three kernel sets with them took 2.3 times the compile time of one
// (docs/compile_cost.md). Flags, not optimize("O2"): a level changed inside the region made
// GCC 12 compile the AVX-512 set wrongly in -O0 and -O1 units (lanes 4 to 15 of the packs were
// lost between the kernel functions it then left out of line).
#if __GNUC__ >= 11
#define BNORM_DETAIL_STRICT_BEGIN                                                                  \
  BNORM_DETAIL_PRAGMA(GCC push_options)                                                            \
  BNORM_DETAIL_PRAGMA(GCC optimize(                                                                \
      "fp-contract=off", "vect-cost-model=very-cheap", "no-peel-loops", "no-unswitch-loops",       \
      "no-ipa-cp-clone", "no-tree-loop-distribution", "no-split-loops", "no-predictive-commoning", \
      "no-gcse-after-reload", "no-tree-partial-pre", "no-loop-interchange",                        \
      "no-loop-unroll-and-jam", "no-split-paths", "no-version-loops-for-strides"))
#else
#define BNORM_DETAIL_STRICT_BEGIN \
  BNORM_DETAIL_PRAGMA(GCC push_options) BNORM_DETAIL_PRAGMA(GCC optimize("fp-contract=off"))
#endif
#define BNORM_DETAIL_STRICT_END BNORM_DETAIL_PRAGMA(GCC pop_options)
#define BNORM_DETAIL_TARGET_BEGIN(features) \
  BNORM_DETAIL_PRAGMA(GCC push_options) BNORM_DETAIL_PRAGMA(GCC target(features))
#define BNORM_DETAIL_TARGET_END BNORM_DETAIL_PRAGMA(GCC pop_options)
#else
#define BNORM_DETAIL_STRICT_BEGIN
#define BNORM_DETAIL_STRICT_END
#endif

/// BNORM_MAX_ISA=sse2 or avx2 (a token, -DBNORM_MAX_ISA=avx2) leaves the wider kernel sets out of
/// the unit: a third (avx2) or two thirds (sse2) less compile time, for programs that never run
/// on such CPUs. Where the program chose a wider set (isa.hpp), the unit runs the widest it has:
/// the same bits, more time. Unset: every set (avx512).
#define BNORM_DETAIL_ISA_LEVEL_sse2 1  // (an unknown token is 0 in #if: the #error below)
#define BNORM_DETAIL_ISA_LEVEL_avx2 2
#define BNORM_DETAIL_ISA_LEVEL_avx512 3
#define BNORM_DETAIL_CAT2(a, b) a##b
#define BNORM_DETAIL_CAT(a, b) BNORM_DETAIL_CAT2(a, b)
#if defined(BNORM_MAX_ISA)
#define BNORM_DETAIL_MAX_ISA BNORM_DETAIL_CAT(BNORM_DETAIL_ISA_LEVEL_, BNORM_MAX_ISA)
#if !(BNORM_DETAIL_MAX_ISA >= 1 && BNORM_DETAIL_MAX_ISA <= 3)
#error "bnorm: BNORM_MAX_ISA must be sse2, avx2 or avx512 (e.g. -DBNORM_MAX_ISA=avx2)"
#endif
#else
#define BNORM_DETAIL_MAX_ISA 3
#endif
// The wider sets this unit compiles: 1 or 0, for #if.
#if defined(BNORM_DETAIL_X86_DISPATCH) && BNORM_DETAIL_MAX_ISA >= 2
#define BNORM_DETAIL_HAS_AVX2_SET 1
#else
#define BNORM_DETAIL_HAS_AVX2_SET 0
#endif
#if defined(BNORM_DETAIL_X86_DISPATCH) && BNORM_DETAIL_MAX_ISA >= 3
#define BNORM_DETAIL_HAS_AVX512_SET 1
#else
#define BNORM_DETAIL_HAS_AVX512_SET 0
#endif

// The ISA features of each set beyond the baseline (cpu_features.hpp checks the same).
#define BNORM_DETAIL_AVX2_FEATURES "avx2,fma,f16c,bmi,bmi2,lzcnt,movbe,popcnt"
#define BNORM_DETAIL_AVX512_FEATURES \
  "avx2,fma,f16c,bmi,bmi2,lzcnt,movbe,popcnt,avx512f,avx512cd,avx512bw,avx512dq,avx512vl"

namespace bnorm::detail {

/// What a forward applies to BN(x) before it writes y: y = act(BN(x) + residual), the residual
/// when given (a view of x's shape), the activation always (none: y = BN(x) + residual).
template <class T>
struct Epilogue {
  Activation activation = Activation::none;
  const NCHWView<const T>* residual = nullptr;
};

/// The ReLU a backward passes through when y = relu(BN(x)), recomputed from x: the forward's
/// weight and bias (a null weight: no ReLU, g = dy).
template <class T>
struct ReluGate {
  const ParameterArray<T>* weight = nullptr;
  const ParameterArray<T>* bias = nullptr;
};

/// One kernel set's entry points of the whole passes: the fused variant after validation
/// (fused.hpp), and the running buffers' update (batch_norm.hpp).
template <class T>
struct Passes {
  using Array = ParameterArray<T>;
  fused::BatchStatistics (*forward_training)(NCHWView<const T>, const Array&, const Array&, double,
                                             NCHWView<T>, const Epilogue<T>&);
  void (*forward_inference)(NCHWView<const T>, const Array&, const Array&, const Array&,
                            const Array&, double, NCHWView<T>, const Epilogue<T>&);
  void (*backward)(NCHWView<const T>, NCHWView<const T>, const Array&,
                   const fused::BatchStatistics&, NCHWView<T>, Array&, Array&, const ReluGate<T>&);
  void (*backward_inference)(NCHWView<const T>, NCHWView<const T>, const Array&, const Array&,
                             const Array&, double, NCHWView<T>, Array&, Array&, const ReluGate<T>&);
  void (*update_running)(Array&, Array&, const Eigen::ArrayXd&, const Eigen::ArrayXd&, double,
                         double);
  void (*relu_gate)(NCHWView<const T>, NCHWView<const T>, NCHWView<T>);
};

/// One kernel set's pieces of the split API (the distributed passes). A table of its own, so
/// that a unit that calls only the whole passes (the module) compiles none of them.
template <class T>
struct SplitPasses {
  using Array = ParameterArray<T>;
  fused::LocalStatistics (*local_statistics)(NCHWView<const T>);
  void (*normalize)(NCHWView<const T>, const fused::BatchStatistics&, const Array&, const Array&,
                    NCHWView<T>);
  fused::GradientSums (*local_gradient_sums)(NCHWView<const T>, NCHWView<const T>,
                                             const fused::BatchStatistics&);
  void (*backward_input)(NCHWView<const T>, NCHWView<const T>, const Array&,
                         const fused::BatchStatistics&, const fused::GradientSums&, NCHWView<T>);
  void (*parameter_gradients)(const fused::BatchStatistics&, const fused::GradientSums&, bool,
                              Array&, Array&);
};

/// One kernel set's pieces of the split API that do not depend on the element type.
struct CommonPasses {
  fused::LocalStatistics (*merge_statistics)(const std::vector<fused::LocalStatistics>&);
  fused::BatchStatistics (*finalize)(const fused::LocalStatistics&, double);
};

namespace {

// A unit built with BNORM_EXTERN_TEMPLATES takes the kernels from the one unit that includes
// <bnorm/instantiate.hpp> (which defines BNORM_DETAIL_COMPILE_KERNELS): it neither compiles nor
// even includes them, so editing a kernel file recompiles that unit alone.
#if !defined(BNORM_EXTERN_TEMPLATES) || defined(BNORM_DETAIL_COMPILE_KERNELS)
#define BNORM_DETAIL_HAS_KERNELS 1
#endif

#if defined(BNORM_DETAIL_HAS_KERNELS)
// The baseline: the unit's own flags (SSE2 on x86-64 by default), portable code elsewhere. A
// target region adds to the unit's flags and never narrows them (the compilers' intrinsics are
// compiled for the unit's flags and would not inline into a narrower region): in a unit built
// with -march=native every set is compiled for the native CPU, as the rest of that unit is.
#if defined(__x86_64__)
#define BNORM_KERNEL_ISA BNORM_ISA_SSE2
#else
#define BNORM_KERNEL_ISA BNORM_ISA_GENERIC
#endif
BNORM_DETAIL_STRICT_BEGIN
namespace baseline {
#include "per_isa/all.hpp"
}  // namespace baseline
BNORM_DETAIL_STRICT_END
#undef BNORM_KERNEL_ISA

#if BNORM_DETAIL_HAS_AVX2_SET
#define BNORM_KERNEL_ISA BNORM_ISA_AVX2
BNORM_DETAIL_TARGET_BEGIN(BNORM_DETAIL_AVX2_FEATURES)
BNORM_DETAIL_STRICT_BEGIN
namespace avx2 {
#include "per_isa/all.hpp"
}  // namespace avx2
BNORM_DETAIL_STRICT_END
BNORM_DETAIL_TARGET_END
#undef BNORM_KERNEL_ISA
#endif

#if BNORM_DETAIL_HAS_AVX512_SET
#define BNORM_KERNEL_ISA BNORM_ISA_AVX512
BNORM_DETAIL_TARGET_BEGIN(BNORM_DETAIL_AVX512_FEATURES)
BNORM_DETAIL_STRICT_BEGIN
namespace avx512 {
#include "per_isa/all.hpp"
}  // namespace avx512
BNORM_DETAIL_STRICT_END
BNORM_DETAIL_TARGET_END
#undef BNORM_KERNEL_ISA
#endif

#endif  // BNORM_DETAIL_HAS_KERNELS

/// Of one table per kernel set of this unit (baseline, then the wider ones in Isa order), the
/// table of the set in use, or of the widest the unit has below it (BNORM_MAX_ISA). Throws
/// bnorm::invalid_argument for a bad BNORM_ISA or BNORM_LAST_LEVEL (callers call it after their
/// checks and before writing anything; the plans read the latter later).
template <class Table, class... Wider>
const Table& in_use(const Table& baseline_table, const Wider&... wider) {
  (void)last_level_setting();
  const Table* tables[] = {&baseline_table, &wider...};
  return *tables[std::min(static_cast<int>(selected_isa()), static_cast<int>(sizeof...(wider)))];
}

#if defined(BNORM_DETAIL_HAS_KERNELS)
#if BNORM_DETAIL_HAS_AVX512_SET
#define BNORM_DETAIL_TABLES(name) baseline::name, avx2::name, avx512::name
#elif BNORM_DETAIL_HAS_AVX2_SET
#define BNORM_DETAIL_TABLES(name) baseline::name, avx2::name
#else
#define BNORM_DETAIL_TABLES(name) baseline::name
#endif

/// The whole passes of the kernel set in use.
template <class T>
const Passes<T>& passes() {
  return in_use(BNORM_DETAIL_TABLES(kPasses<T>));
}

/// The split API's pieces of the kernel set in use.
template <class T>
const SplitPasses<T>& split_passes() {
  return in_use(BNORM_DETAIL_TABLES(kSplitPasses<T>));
}

/// The element-type-free pieces of the kernel set in use.
inline const CommonPasses& common_passes() {
  return in_use(BNORM_DETAIL_TABLES(kCommonPasses));
}

#undef BNORM_DETAIL_TABLES
#else
// Declared only: their callers are the extern float and double instances.
template <class T>
const Passes<T>& passes();
template <class T>
const SplitPasses<T>& split_passes();
#endif

}  // namespace

/// The element-type-free pieces of the kernel set in use, for the units without kernels
/// (defined in <bnorm/instantiate.hpp>'s unit).
const CommonPasses& compiled_common_passes();
#if !defined(BNORM_DETAIL_HAS_KERNELS)
namespace {
inline const CommonPasses& common_passes() {
  return compiled_common_passes();
}
}  // namespace
#endif

/// The running buffers' update by the kernel set in use (for batch_norm.hpp; a function
/// template of its own so that BNORM_EXTERN_TEMPLATES can declare it extern).
template <class T>
void update_running(ParameterArray<T>& running_mean, ParameterArray<T>& running_var,
                    const Eigen::ArrayXd& mean, const Eigen::ArrayXd& var, double f,
                    double unbias) {
  passes<T>().update_running(running_mean, running_var, mean, var, f, unbias);
}

}  // namespace bnorm::detail
