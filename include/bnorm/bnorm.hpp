/// @file bnorm.hpp
/// @brief The one header users include: BatchNorm2d forward and backward over NCHW views.
///
/// - bnorm::NCHWView: a non-owning 4-d view in logical NCHW order with any strides.
/// - bnorm::staged: the nine-step graph, the executable specification.
/// - bnorm::fused: the fast variant with the closed-form backward.
/// - bnorm::BatchNorm2d: the torch.nn.BatchNorm2d module over either variant.
/// - bnorm::nchw_view: NCHWView adapters for Eigen::Tensor and Eigen::TensorMap (eigen.hpp).
/// MPI's SyncBatchNorm2d lives in <bnorm/mpi.hpp>, which this header does not include.
///
/// Defining BNORM_NO_STAGED before including leaves out staged.hpp and eigen.hpp, the two
/// headers that need Eigen's Tensor module, and BatchNorm2d is then fused only: most of the
/// compile time of a translation unit that uses it is the staged variant (docs/compile_cost.md).
#pragma once

#include "batch_norm.hpp"
#include "config.hpp"
#include "fused.hpp"
#include "nchw_view.hpp"
#ifndef BNORM_NO_STAGED
#include "eigen.hpp"
#include "staged.hpp"
#endif
