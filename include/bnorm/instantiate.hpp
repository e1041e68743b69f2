/// @file instantiate.hpp
/// @brief Compiles the float and double instances of bnorm's kernels once, for programs whose
/// other translation units define BNORM_EXTERN_TEMPLATES.
///
/// bnorm is header-only: every translation unit that calls a kernel compiles it again, and at
/// -O3 that is most of the unit's compile time. A program with many such units can compile them
/// once instead:
/// - define BNORM_EXTERN_TEMPLATES for the program's units (CMake:
///   `target_compile_definitions(app PRIVATE BNORM_EXTERN_TEMPLATES)`); <bnorm/bnorm.hpp> then
///   declares the float and double instances of bnorm::fused's and bnorm::staged's functions
///   `extern template`, and leaves the kernels out: those units neither compile nor include them
///   (editing a kernel file then recompiles only the unit that compiles them);
/// - include this header in exactly one unit of the program; it defines those instances.
///
/// Results are the same bits either way. The module's inline members are still compiled where
/// they are used. Units with BNORM_EXTERN_TEMPLATES include <bnorm/bnorm.hpp> (not fused.hpp
/// alone) and call the float and double instances only. Define BNORM_NO_STAGED for this unit
/// too when the program leaves the staged variant out.
///
/// The float and double instances take about the same time to compile. To compile them side by
/// side, include this header in two units instead of one, one with `BNORM_INSTANTIATE_PART`
/// defined to 1 (float's instances and the type-free pieces) and one with it defined to 2
/// (double's). Undefined, one unit defines everything.
#pragma once

#if defined(BNORM_INSTANTIATE_PART) && BNORM_INSTANTIATE_PART != 1 && BNORM_INSTANTIATE_PART != 2
#error "bnorm: BNORM_INSTANTIATE_PART must be 1 (float) or 2 (double), or undefined (both)"
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
