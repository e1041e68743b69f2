/// @file bnorm.hpp
/// @brief The one header users include: BatchNorm2d forward and backward over NCHW views.
///
/// - bnorm::NCHWView: a non-owning 4-d view in logical NCHW order with any strides.
/// - bnorm::staged: the nine-step graph, the executable specification.
/// - bnorm::fused: the fast variant with the closed-form backward.
/// - bnorm::BatchNorm2d: the torch.nn.BatchNorm2d module over either variant.
/// MPI's SyncBatchNorm2d lives in <bnorm/mpi.hpp>, which this header does not include.
#pragma once

#include "batch_norm.hpp"
#include "config.hpp"
#include "fused.hpp"
#include "nchw_view.hpp"
#include "staged.hpp"
