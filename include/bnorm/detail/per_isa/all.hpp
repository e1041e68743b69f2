/// @file detail/per_isa/all.hpp
/// @brief The kernel files in dependency order. dispatch.hpp includes this once per instruction
/// set, inside that set's namespace and target region, with BNORM_KERNEL_ISA naming the set.
///
/// Rules for the files of this folder: no include guard (each is included once per ISA), no
/// #include (dispatch.hpp includes what they use first), no namespace (they are inside
/// bnorm::detail::{anonymous}::<isa>), and intrinsics chosen by BNORM_KERNEL_ISA, never by
/// __AVX512F__ and the like, which describe the command line, not the region.

// The dependency order (not sorted):
// clang-format off
#include "rows.hpp"
#include "lane_sum.hpp"
#include "prefetch.hpp"
#include "parallel.hpp"
#include "stream.hpp"
#include "pack.hpp"
#include "float16_packs.hpp"
#include "plane_kernels.hpp"
#include "plane_runs.hpp"
#include "pixel_kernels.hpp"
#include "interleaved.hpp"
#include "plan.hpp"
#include "moments.hpp"
#include "activation.hpp"
#include "normalise.hpp"
#include "grad_sums.hpp"
#include "grad_input.hpp"
#include "passes.hpp"
#include "split_passes.hpp"
// clang-format on
