/// @file bnorm.hpp
/// @brief The one header users include: BatchNorm1d, 2d and 3d forward and backward over views.
///
/// - bnorm::NCHWView, NCLView, NCDHWView: non-owning views in logical order with any strides.
/// - bnorm::staged: the nine-step graph, the executable specification.
/// - bnorm::fused: the fast variant with the closed-form backward.
/// - bnorm::BatchNorm1d, BatchNorm2d, BatchNorm3d: the torch.nn modules over either variant
///   (other_ranks.hpp: the free functions over NCLView and NCDHWView).
/// - bnorm::nchw_view: NCHWView adapters for Eigen::Tensor and Eigen::TensorMap (eigen.hpp).
/// - bnorm::fold_into: an eval BatchNorm folded into the conv or linear layer before it.
/// MPI's SyncBatchNorm1d, 2d and 3d live in <bnorm/mpi.hpp>, which this header does not include.
///
/// Defining BNORM_NO_STAGED before including leaves out staged.hpp and eigen.hpp, the two
/// headers that need Eigen's Tensor module, and BatchNorm2d is then fused only: most of the
/// compile time of a translation unit that uses it is the staged variant (docs/compile_cost.md).
///
/// Defining BNORM_EXTERN_TEMPLATES declares the float, double, bfloat16 and half instances of
/// the fused and staged free functions `extern template`: the unit then does not compile the
/// kernels, and exactly one unit of the program must include <bnorm/instantiate.hpp> (see there).
#pragma once

#include "activation.hpp"
#include "batch_norm.hpp"
#include "config.hpp"
#include "fold.hpp"
#include "fused.hpp"
#include "nchw_view.hpp"
#include "other_ranks.hpp"
#ifndef BNORM_NO_STAGED
#include "eigen.hpp"
#include "staged.hpp"
#include "staged_activation.hpp"
#endif
#ifdef BNORM_EXTERN_TEMPLATES
#include "detail/instances.hpp"
BNORM_DETAIL_INSTANCES(extern template, float)
BNORM_DETAIL_INSTANCES(extern template, double)
BNORM_DETAIL_INSTANCES_16BIT(extern template, Eigen::bfloat16)
BNORM_DETAIL_INSTANCES_16BIT(extern template, Eigen::half)
#endif
