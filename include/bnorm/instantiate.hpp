/// @file instantiate.hpp
/// @brief Compiles the instances of bnorm's kernels once, for programs whose other translation
/// units define BNORM_EXTERN_TEMPLATES.
///
/// bnorm is header-only: every translation unit that calls a kernel compiles it again, and at
/// -O3 that is most of the unit's compile time. A program with many such units can compile them
/// once instead:
/// - define BNORM_EXTERN_TEMPLATES for the program's units (CMake:
///   `target_compile_definitions(app PRIVATE BNORM_EXTERN_TEMPLATES)`); <bnorm/bnorm.hpp> then
///   declares the float, double, Eigen::bfloat16 and Eigen::half instances of bnorm::fused's and
///   bnorm::staged's functions `extern template`, and leaves the kernels out: those units neither
///   compile nor include them (editing a kernel file then recompiles only the unit that compiles
///   them);
/// - include this header in exactly one unit of the program; it defines those instances.
///
/// Results are the same bits either way. The module's inline members are still compiled where
/// they are used. Units with BNORM_EXTERN_TEMPLATES include <bnorm/bnorm.hpp> (not fused.hpp
/// alone). Define BNORM_NO_STAGED for this unit too when the program leaves the staged variant
/// out.
///
/// Each element type takes about the same time to compile. To compile them side by side, include
/// this header in several units instead of one, each with `BNORM_INSTANTIATE_PART` defined to
/// the types it compiles: 1 (float, and the type-free pieces), 2 (double), 3 (bfloat16), 4
/// (half); every part in exactly one unit. Undefined, one unit defines everything.
#pragma once

#if defined(BNORM_INSTANTIATE_PART) && !(BNORM_INSTANTIATE_PART >= 1 && BNORM_INSTANTIATE_PART <= 4)
#error "bnorm: BNORM_INSTANTIATE_PART must be 1 (float), 2 (double), 3 (bfloat16) or 4 (half)"
#endif

/// This unit includes the kernels, whatever BNORM_EXTERN_TEMPLATES says (detail/dispatch.hpp).
#define BNORM_DETAIL_COMPILE_KERNELS 1
#include "bnorm.hpp"
#include "detail/instances.hpp"

#if !defined(BNORM_INSTANTIATE_PART) || BNORM_INSTANTIATE_PART == 1
/// @cond
// The element-type-free pieces (merge_statistics, finalize) for the units without kernels.
const bnorm::detail::CommonPasses& bnorm::detail::compiled_common_passes() {
  return common_passes();
}
/// @endcond

BNORM_DETAIL_INSTANCES(template, float)
#endif
#if !defined(BNORM_INSTANTIATE_PART) || BNORM_INSTANTIATE_PART == 2
BNORM_DETAIL_INSTANCES(template, double)
#endif
#if !defined(BNORM_INSTANTIATE_PART) || BNORM_INSTANTIATE_PART == 3
BNORM_DETAIL_INSTANCES_16BIT(template, Eigen::bfloat16)
#endif
#if !defined(BNORM_INSTANTIATE_PART) || BNORM_INSTANTIATE_PART == 4
BNORM_DETAIL_INSTANCES_16BIT(template, Eigen::half)
#endif
