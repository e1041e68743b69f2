/// @file detail/per_isa/passes.hpp
/// @brief The fused passes after validation: training and inference forward, training and eval
/// backward (fused.hpp validates, then calls these through the dispatch tables).
///
/// Every floating-point operation of the fused variant happens in this folder, compiled with
/// contraction off: the per-channel constants below as much as the kernels, so their bits do
/// not depend on the flags of the program that includes bnorm.

template <class T>
double weight_at(const Eigen::Array<T, Eigen::Dynamic, 1>& weight, index_t c) {
  return weight.size() == 0 ? 1.0 : static_cast<double>(weight[c]);
}
template <class T>
double bias_at(const Eigen::Array<T, Eigen::Dynamic, 1>& bias, index_t c) {
  return bias.size() == 0 ? 0.0 : static_cast<double>(bias[c]);
}

/// Backward constants of channel c from the whole batch's statistics and sums:
///   dx = (dy - shift) * k - (x - mean) * kc,  k = weight * invstd,  shift = sum_dy / M,
///   kc = k * invstd^2 * sum_dy_xmu / M.
inline void backward_constants(double invstd, double weight, double sum_dy, double sum_dy_xmu,
                               index_t count, double& k, double& shift, double& kc) {
  const double inv_m = 1.0 / static_cast<double>(count);
  k = invstd * weight;
  shift = sum_dy * inv_m;
  kc = k * invstd * invstd * sum_dy_xmu * inv_m;
}

/// dweight = sum_dy_xmu * invstd and dbias = sum_dy, rounded to T.
template <class T>
void gradients_of_parameters(index_t channels, const double* sum_dy, const double* sum_dy_xmu,
                             const double* invstd, Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
                             Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  dweight.resize(channels);
  dbias.resize(channels);
  for (index_t c = 0; c < channels; ++c) {
    dweight[c] = static_cast<T>(sum_dy_xmu[c] * invstd[c]);
    dbias[c] = static_cast<T>(sum_dy[c]);
  }
}

/// The forward's ReLU recomputed by a backward (Gate), from the forward's weight and bias and
/// the scale its normalisation used: scale(c) = the forward's invstd * weight, or weight /
/// sqrt(running_var + eps) in eval, formed as forward_training and forward_inference form it.
template <class T, class Scale>
struct GateConstants {
  Eigen::ArrayXd scale, shift;
  GateConstants(const ReluGate<T>& g, index_t channels, const Scale& scale_of) {
    if (g.weight == nullptr) return;
    scale.resize(channels);
    shift.resize(channels);
    for (index_t c = 0; c < channels; ++c) {
      scale[c] = scale_of(c, weight_at(*g.weight, c));
      shift[c] = bias_at(*g.bias, c);
    }
  }
  Gate gate() const { return scale.size() ? Gate{scale.data(), shift.data()} : Gate{}; }
};
template <class T, class Scale>
GateConstants<T, Scale> gate_of(const ReluGate<T>& g, index_t channels, const Scale& scale_of) {
  return GateConstants<T, Scale>(g, channels, scale_of);
}

/// Per-channel scratch of one call: the constants each pass reads.
struct Scratch {
  SmallBuffer<double> a, b, c, d;
  explicit Scratch(index_t channels) : a(static_cast<std::size_t>(channels)), b(a), c(a), d(a) {}
};

template <class T>
BNORM_DETAIL_ENTRY fused::BatchStatistics forward_training(NCHWView<const T> x,
                                                           const ParameterArray<T>& weight,
                                                           const ParameterArray<T>& bias,
                                                           double eps, NCHWView<T> y,
                                                           const Epilogue<T>& e) {
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  // Left unset here, as `finish` writes every channel: zeroing them first cost a tiny call
  // (2x2x2x2) a tenth of its time, a calloc where Eigen's arrays are 16-byte aligned.
  fused::BatchStatistics s{m, Eigen::ArrayXd(channels), Eigen::ArrayXd(channels),
                           Eigen::ArrayXd(channels)};
  if (x.size() == 0) {  // M == 0 or C == 0 (N may still be huge)
    s.mean.setZero();
    s.var.setZero();
    s.invstd.setConstant(1.0 / std::sqrt(eps));
    return s;
  }
  const Plan plan(x, sizeof(T));
  Scratch k(channels);  // a: scale = invstd * weight, b: shift = bias
  SmallBuffer<Moments> moments(static_cast<std::size_t>(channels));
  auto finish = [&](index_t c) {
    const Moments& mo = moments[static_cast<std::size_t>(c)];
    s.mean[c] = mo.mean;
    s.var[c] = mo.m2 / mo.count;
    s.invstd[c] = 1.0 / std::sqrt(s.var[c] + eps);
    k.a[c] = s.invstd[c] * weight_at(weight, c);
    k.b[c] = bias_at(bias, c);
  };
  if (plan.blocks_fill_threads() && !by_pixels(x)) {
    // Each block's statistics chunk by chunk, then its normalisation while x is in cache;
    // long channels of large tensors pipelined (sweep_blocks).
    const auto normalise_block = [&](index_t c0, index_t c1, index_t n0, index_t n1) {
      normalise(x, y, c0, c1, n0, n1, s.mean.data(), k.a.data(), k.b.data(), plan.stream_to(y), e);
    };
    const auto merge = [&](index_t c0, const SmallBuffer<Moments>& part) {
      for (std::size_t j = 0; j < part.size(); ++j)
        moments[static_cast<std::size_t>(c0) + j].merge(part[j]);
    };
    // (a residual is a second input the one-input sweep does not read)
    sweep_blocks(
        plan, plan.pipelined && e.residual == nullptr && sweeps_fuse(y, plan.stream, x),
        [&](index_t c0, index_t c1, index_t n0, index_t n1) {
          SmallBuffer<Moments> part(static_cast<std::size_t>(c1 - c0));
          chunk_moments(x, c0, c1, n0, n1, part.data());
          merge(c0, part);
        },
        [&](index_t c0, index_t c1) {
          for (index_t c = c0; c < c1; ++c) finish(c);
        },
        normalise_block,
        [&](index_t r0, index_t m0, index_t width, index_t n0, index_t n1) {
          SmallBuffer<Moments> part(static_cast<std::size_t>(width));
          moments_and_normalise(x, y, r0, m0, width, n0, n1, part.data(), s.mean.data(), k.a.data(),
                                k.b.data(), plan.stream_to(y), e.activation);
          merge(r0, part);
        });
  } else {
    // Fewer blocks than threads, or channels-last: the statistics of all channels, then the
    // normalisation spread over images (same arithmetic as the blocks for NCHW).
    channel_moments(x, plan, moments.data());
    for_each_channel(plan, finish);
    for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
      normalise(x, y, c0, c1, n0, n1, s.mean.data(), k.a.data(), k.b.data(), plan.stream_to(y), e);
    });
  }
  return s;
}

template <class T>
BNORM_DETAIL_ENTRY void forward_inference(NCHWView<const T> x, const ParameterArray<T>& weight,
                                          const ParameterArray<T>& bias,
                                          const ParameterArray<T>& running_mean,
                                          const ParameterArray<T>& running_var, double eps,
                                          NCHWView<T> y, const Epilogue<T>& e) {
  if (x.size() == 0) return;  // nothing to write (and N may be huge when C or H*W is 0)
  const Plan plan(x, sizeof(T));
  Scratch k(x.c());  // a: mean, b: scale = invstd * weight, c: shift = bias
  for (index_t c = 0; c < x.c(); ++c) {
    k.a[c] = static_cast<double>(running_mean[c]);
    k.b[c] = weight_at(weight, c) / std::sqrt(static_cast<double>(running_var[c]) + eps);
    k.c[c] = bias_at(bias, c);
  }
  for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
    normalise(x, y, c0, c1, n0, n1, k.a.data(), k.b.data(), k.c.data(), plan.stream_to(y), e);
  });
}

template <class T>
BNORM_DETAIL_ENTRY void backward(NCHWView<const T> x, NCHWView<const T> dy,
                                 const ParameterArray<T>& weight,
                                 const fused::BatchStatistics& stats, NCHWView<T> dx,
                                 ParameterArray<T>& dweight, ParameterArray<T>& dbias,
                                 const ReluGate<T>& relu) {
  const index_t channels = x.c(), m = x.n() * x.h() * x.w();
  const bool affine = weight.size() != 0;
  dweight.setZero(affine ? channels : 0);
  dbias.setZero(affine ? channels : 0);
  if (x.size() == 0) return;  // M == 0 or C == 0 (N may still be huge)
  const Plan plan(x, sizeof(T), 3);
  // g = dy, or dy where the forward's relu passed: z = (x - mean) * invstd * weight + bias > 0
  const auto gc = gate_of(relu, channels, [&](index_t c, double w) { return stats.invstd[c] * w; });
  const Gate gate = gc.gate();
  Scratch k(channels);  // a: sum_dy, b: sum_dy_xmu, then a: k, c: shift, d: kc
  SmallBuffer<double> sum_dy(static_cast<std::size_t>(channels)), sum_dy_xmu(sum_dy);
  auto finish = [&](index_t c) {
    sum_dy[c] = k.a[c];
    sum_dy_xmu[c] = k.b[c];
    backward_constants(stats.invstd[c], weight_at(weight, c), sum_dy[c], sum_dy_xmu[c], m, k.a[c],
                       k.c[c], k.d[c]);
  };
  if (plan.blocks_fill_threads() && !by_pixels(x, dy)) {
    // Each block's sums chunk by chunk, then its dx while x and dy are in cache; long
    // channels of large tensors pipelined (sweep_blocks).
    const auto grad_input_block = [&](index_t c0, index_t c1, index_t n0, index_t n1) {
      grad_input(x, dy, dx, c0, c1, n0, n1, stats.mean.data(), k.a.data(), k.c.data(), k.d.data(),
                 plan.stream_to(dx), gate);
    };
    // a chunk's sums, added to the block's (k.a and k.b start at 0)
    const auto add = [&](index_t c0, const SmallBuffer<double>& part) {
      const std::size_t width = part.size() / 2;
      for (std::size_t j = 0; j < width; ++j) {
        k.a[c0 + static_cast<index_t>(j)] += part[j];
        k.b[c0 + static_cast<index_t>(j)] += part[width + j];
      }
    };
    sweep_blocks(
        plan, plan.pipelined && sweeps_fuse(dx, plan.stream, x, dy),
        [&](index_t c0, index_t c1, index_t n0, index_t n1) {
          SmallBuffer<double> part(static_cast<std::size_t>(2 * (c1 - c0)));
          chunk_grad_sums(x, dy, c0, c1, n0, n1, stats.mean.data(), part.data(),
                          part.data() + (c1 - c0), gate);
          add(c0, part);
        },
        [&](index_t c0, index_t c1) {
          for (index_t c = c0; c < c1; ++c) finish(c);
        },
        grad_input_block,
        [&](index_t r0, index_t m0, index_t width, index_t n0, index_t n1) {
          SmallBuffer<double> part(static_cast<std::size_t>(2 * width));
          grad_sums_and_input(x, dy, dx, r0, m0, width, n0, n1, part.data(), part.data() + width,
                              stats.mean.data(), k.a.data(), k.c.data(), k.d.data(),
                              plan.stream_to(dx), gate);
          add(r0, part);
        });
  } else {
    channel_grad_sums(x, dy, plan, stats.mean.data(), k.a.data(), k.b.data(), gate);
    for (index_t c = 0; c < channels; ++c) finish(c);
    for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
      grad_input(x, dy, dx, c0, c1, n0, n1, stats.mean.data(), k.a.data(), k.c.data(), k.d.data(),
                 plan.stream_to(dx), gate);
    });
  }
  if (affine)
    gradients_of_parameters(channels, sum_dy.data(), sum_dy_xmu.data(), stats.invstd.data(),
                            dweight, dbias);
}

template <class T>
BNORM_DETAIL_ENTRY void backward_inference(NCHWView<const T> x, NCHWView<const T> dy,
                                           const ParameterArray<T>& weight,
                                           const ParameterArray<T>& running_mean,
                                           const ParameterArray<T>& running_var, double eps,
                                           NCHWView<T> dx, ParameterArray<T>& dweight,
                                           ParameterArray<T>& dbias, const ReluGate<T>& relu) {
  const index_t channels = x.c();
  const bool affine = weight.size() != 0;
  dweight.setZero(affine ? channels : 0);
  dbias.setZero(affine ? channels : 0);
  if (x.size() == 0) return;  // nothing to write (and N may be huge when C or H*W is 0)
  const Plan plan(x, sizeof(T));
  Scratch k(channels);  // a: mean, b: invstd, c: k = weight * invstd
  for (index_t c = 0; c < channels; ++c) {
    k.a[c] = static_cast<double>(running_mean[c]);
    k.b[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    k.c[c] = k.b[c] * weight_at(weight, c);
  }
  // g = dy, or dy where the forward's relu passed, its scale formed as forward_inference forms it
  const auto gc = gate_of(relu, channels, [&](index_t c, double w) {
    return w / std::sqrt(static_cast<double>(running_var[c]) + eps);
  });
  const Gate gate = gc.gate();
  if (affine) {
    SmallBuffer<double> sum_dy(static_cast<std::size_t>(channels)), sum_dy_xmu(sum_dy);
    channel_grad_sums(x, dy, plan, k.a.data(), sum_dy.data(), sum_dy_xmu.data(), gate);
    gradients_of_parameters(channels, sum_dy.data(), sum_dy_xmu.data(), k.b.data(), dweight, dbias);
  }
  for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
    scale_rows(x, dy, dx, c0, c1, n0, n1, k.c.data(), plan.stream_to(dx), k.a.data(), gate);
  });
}

/// The whole gate pass, spread over the threads as the elementwise passes are.
template <class T>
BNORM_DETAIL_ENTRY void relu_gate(NCHWView<const T> y, NCHWView<const T> dy, NCHWView<T> g) {
  if (y.size() == 0) return;
  const Plan plan(y, sizeof(T));
  for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
    relu_gate_rows(y, dy, g, c0, c1, n0, n1, plan.stream_to(g));
  });
}
