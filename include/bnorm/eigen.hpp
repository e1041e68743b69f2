/// @file eigen.hpp
/// @brief NCHWView adapters for Eigen's Tensor module: Eigen::Tensor<T, 4, Eigen::RowMajor> and
/// Eigen::TensorMap of it, without copying.
///
/// A row-major Eigen tensor with dimensions (N, C, H, W) stores W contiguously, then H, C and N:
/// exactly NCHW memory. bnorm::nchw_view() wraps it as an NCHWView, mutable or const as the
/// tensor is:
/// @code
/// Eigen::Tensor<float, 4, Eigen::RowMajor> x(8, 16, 7, 7), y(8, 16, 7, 7);
/// x.setRandom();
/// bnorm::BatchNorm2d<float> bn(16);
/// auto saved = bn.forward(bnorm::nchw_view(x), bnorm::nchw_view(y));
/// @endcode
/// A column-major tensor (Eigen's default) indexed (n, c, h, w) keeps n contiguous, which is not
/// NCHW; nchw_view() refuses it at compile time.
#pragma once

#include <Eigen/Core>
#include <type_traits>
#include <unsupported/Eigen/CXX11/Tensor>

#include "config.hpp"
#include "nchw_view.hpp"

namespace bnorm {

namespace detail {

template <int Layout, int Rank>
constexpr void check_eigen_tensor() {
  static_assert(Rank == 4,
                "bnorm::nchw_view: the Eigen tensor must have rank 4, dimensions (N, C, H, W)");
  static_assert(Layout == Eigen::RowMajor,
                "bnorm::nchw_view: the Eigen tensor is ColMajor (Eigen's default), which keeps "
                "dimension 0 contiguous, not W. Declare it Eigen::Tensor<T, 4, Eigen::RowMajor> "
                "with dimensions (N, C, H, W), or wrap its memory in an NCHWView with explicit "
                "strides.");
}

/// A view of row-major (N, C, H, W) memory at `data`, whatever the tensor's index type.
template <class T, class Dimensions>
NCHWView<T> row_major_nchw(T* data, const Dimensions& d) {
  return NCHWView<T>(data, static_cast<index_t>(d[0]), static_cast<index_t>(d[1]),
                     static_cast<index_t>(d[2]), static_cast<index_t>(d[3]));
}

}  // namespace detail

/// A mutable view of a row-major tensor with dimensions (N, C, H, W).
/// Fails to compile, with a message, for a ColMajor tensor or a rank other than 4.
template <class Scalar, int Rank, int Options, class IndexType>
NCHWView<Scalar> nchw_view(Eigen::Tensor<Scalar, Rank, Options, IndexType>& tensor) {
  detail::check_eigen_tensor<Options & Eigen::RowMajor ? Eigen::RowMajor : Eigen::ColMajor, Rank>();
  return detail::row_major_nchw(tensor.data(), tensor.dimensions());
}

/// A const view of a row-major tensor with dimensions (N, C, H, W).
template <class Scalar, int Rank, int Options, class IndexType>
NCHWView<const Scalar> nchw_view(const Eigen::Tensor<Scalar, Rank, Options, IndexType>& tensor) {
  detail::check_eigen_tensor<Options & Eigen::RowMajor ? Eigen::RowMajor : Eigen::ColMajor, Rank>();
  return detail::row_major_nchw(tensor.data(), tensor.dimensions());
}

/// A temporary tensor would leave the view dangling: refused.
template <class Scalar, int Rank, int Options, class IndexType>
void nchw_view(const Eigen::Tensor<Scalar, Rank, Options, IndexType>&& tensor) = delete;

/// A view of the memory a TensorMap points to: mutable for a TensorMap of a Tensor, const for a
/// TensorMap of a const Tensor. Like the map itself, the view does not own the memory.
template <class Plain, int MapOptions, template <class> class MakePointer>
auto nchw_view(const Eigen::TensorMap<Plain, MapOptions, MakePointer>& map) {
  using Map = Eigen::TensorMap<Plain, MapOptions, MakePointer>;
  detail::check_eigen_tensor<Map::Layout, Map::NumIndices>();
  using Element = std::remove_pointer_t<decltype(map.data())>;
  static_assert(std::is_pointer_v<decltype(map.data())>,
                "bnorm::nchw_view: the TensorMap must hold a plain host pointer");
  return detail::row_major_nchw<Element>(map.data(), map.dimensions());
}

}  // namespace bnorm
