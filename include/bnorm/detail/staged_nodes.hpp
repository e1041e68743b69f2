/// @file detail/staged_nodes.hpp
/// @brief The nodes of the staged variant's graph (staged.hpp): each step's forward and local
/// backward, over Eigen tensors, the nine steps of BatchNorm and the two of its epilogue
/// (step 10 adds a residual, step 11 applies ReLU).
#pragma once

#include <Eigen/Core>
#include <unsupported/Eigen/CXX11/Tensor>
#include <utility>

#include "../config.hpp"

namespace bnorm::staged {

/// A 4-d tensor in NCHW order (row-major, so the last index is contiguous).
template <class T>
using Tensor4 = Eigen::Tensor<T, 4, Eigen::RowMajor>;
/// A per-channel vector.
template <class T>
using Tensor1 = Eigen::Tensor<T, 1, Eigen::RowMajor>;
/// The dimensions of a Tensor4.
using Shape = Eigen::DSizes<Eigen::Index, 4>;

/// The nodes of the graph: forward and local backward of each step.
namespace nodes {

/// Sum over the axes N, H, W (0, 2, 3), accumulated in double.
template <class T>
Tensor1<T> sum_nhw(const Tensor4<T>& t) {
  const Eigen::array<Eigen::Index, 3> nhw{0, 2, 3};
  return t.template cast<double>().sum(nhw).template cast<T>();
}

/// A per-channel vector broadcast to `shape`: out(n, c, h, w) = v(c).
template <class T>
Tensor4<T> broadcast(const Tensor1<T>& v, const Shape& shape) {
  const Eigen::array<Eigen::Index, 4> as_nchw{1, shape[1], 1, 1};
  const Eigen::array<Eigen::Index, 4> repeat{shape[0], 1, shape[2], shape[3]};
  return v.reshape(as_nchw).broadcast(repeat);
}

/// M = N*H*W, the values per channel, as a T.
template <class T>
T count_nhw(const Shape& shape) {
  return static_cast<T>(shape[0] * shape[2] * shape[3]);
}

/// Steps 1 and 4: out(c) = (1/M) sum_{n,h,w} t(n, c, h, w).
struct ChannelMean {
  /// out(c) = (1/M) sum_{n,h,w} t(n, c, h, w).
  template <class T>
  static Tensor1<T> forward(const Tensor4<T>& t) {
    return sum_nhw(t) / count_nhw<T>(t.dimensions());
  }
  /// dt(n, c, h, w) = dout(c) / M.
  template <class T>
  static Tensor4<T> backward(const Tensor1<T>& dout, const Shape& shape) {
    return broadcast<T>(dout, shape) / count_nhw<T>(shape);
  }
};

/// Steps 2 (sign -1: xmu = x - mu) and 9 (sign +1: out = gammax + beta):
/// out = t + sign * v, v broadcast over C.
template <int Sign>
struct AddChannel {
  /// out = t + sign * v, v broadcast over C.
  template <class T>
  static Tensor4<T> forward(const Tensor4<T>& t, const Tensor1<T>& v) {
    return t + static_cast<T>(Sign) * broadcast<T>(v, t.dimensions());
  }
  /// dt = dout;  dv = sign * sum_{n,h,w} dout.
  template <class T>
  static std::pair<Tensor4<T>, Tensor1<T>> backward(const Tensor4<T>& dout) {
    return {dout, static_cast<T>(Sign) * sum_nhw<T>(dout)};
  }
};

/// Step 3: out = t^2.
struct Square {
  /// out = t^2.
  template <class T>
  static Tensor4<T> forward(const Tensor4<T>& t) {
    return t.square();
  }
  /// dt = 2 * t * dout.
  template <class T>
  static Tensor4<T> backward(const Tensor4<T>& t, const Tensor4<T>& dout) {
    return static_cast<T>(2) * t * dout;
  }
};

/// Step 5: out = sqrt(v + eps).
struct SqrtEps {
  /// out = sqrt(v + eps).
  template <class T>
  static Tensor1<T> forward(const Tensor1<T>& v, T eps) {
    return (v + eps).sqrt();
  }
  /// dv = 0.5 / sqrt(v + eps) * dout.
  template <class T>
  static Tensor1<T> backward(const Tensor1<T>& v, T eps, const Tensor1<T>& dout) {
    return static_cast<T>(0.5) * (v + eps).rsqrt() * dout;
  }
};

/// Step 6: out = 1 / v.
struct Reciprocal {
  /// out = 1 / v.
  template <class T>
  static Tensor1<T> forward(const Tensor1<T>& v) {
    return v.inverse();
  }
  /// dv = -1 / v^2 * dout.
  template <class T>
  static Tensor1<T> backward(const Tensor1<T>& v, const Tensor1<T>& dout) {
    return -v.square().inverse() * dout;
  }
};

/// Steps 7 (xhat = xmu * ivar) and 8 (gammax = gamma * xhat): out = t * v, v broadcast over C.
struct MulChannel {
  /// out = t * v, v broadcast over C.
  template <class T>
  static Tensor4<T> forward(const Tensor4<T>& t, const Tensor1<T>& v) {
    return t * broadcast<T>(v, t.dimensions());
  }
  /// dt = dout * v;  dv = sum_{n,h,w} dout * t.
  template <class T>
  static std::pair<Tensor4<T>, Tensor1<T>> backward(const Tensor4<T>& t, const Tensor1<T>& v,
                                                    const Tensor4<T>& dout) {
    return {dout * broadcast<T>(v, t.dimensions()), sum_nhw<T>(dout * t)};
  }
};

/// Step 10: out = t + r, the residual added to the normalised output; both inputs get dout.
struct Add {
  template <class T>
  static Tensor4<T> forward(const Tensor4<T>& t, const Tensor4<T>& r) {
    return t + r;
  }
  template <class T>
  static std::pair<Tensor4<T>, Tensor4<T>> backward(const Tensor4<T>& dout) {
    return {dout, dout};
  }
};

/// Step 11: out = relu(t) = t < 0 ? 0 : t (NaN and -0 pass, as torch.relu); din = t <= 0 ? 0 :
/// dout (as torch's threshold_backward over out).
struct Relu {
  template <class T>
  static Tensor4<T> forward(const Tensor4<T>& t) {
    return t.unaryExpr([](T v) { return v < T(0) ? T(0) : v; });
  }
  template <class T>
  static Tensor4<T> backward(const Tensor4<T>& t, const Tensor4<T>& dout) {
    Tensor4<T> din = dout;
    for (Eigen::Index i = 0; i < din.size(); ++i)
      if (t.data()[i] <= T(0)) din.data()[i] = T(0);
    return din;
  }
};

}  // namespace nodes

}  // namespace bnorm::staged
