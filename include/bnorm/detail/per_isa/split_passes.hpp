/// @file detail/per_isa/split_passes.hpp
/// @brief The pieces of the split API after validation (local statistics, their merge, the
/// normalisation and the backward with given statistics), and the running buffers' update.

template <class T>
BNORM_DETAIL_ENTRY fused::LocalStatistics local_statistics(NCHWView<const T> x) {
  const index_t channels = x.c();
  fused::LocalStatistics s{x.n() * x.h() * x.w(), Eigen::ArrayXd::Zero(channels),
                           Eigen::ArrayXd::Zero(channels)};
  if (s.count == 0) return s;
  const Plan plan(x, sizeof(T));
  std::vector<Moments> moments(static_cast<std::size_t>(channels));
  channel_moments(x, plan, moments.data());
  for (index_t c = 0; c < channels; ++c) {
    s.mean[c] = moments[static_cast<std::size_t>(c)].mean;
    s.m2[c] = moments[static_cast<std::size_t>(c)].m2;
  }
  return s;
}

BNORM_DETAIL_ENTRY fused::LocalStatistics merge_statistics(
    const std::vector<fused::LocalStatistics>& parts) {
  const Eigen::Index channels = parts.front().mean.size();
  fused::LocalStatistics total{0, Eigen::ArrayXd::Zero(channels), Eigen::ArrayXd::Zero(channels)};
  for (Eigen::Index c = 0; c < channels; ++c) {
    Moments m;
    for (const fused::LocalStatistics& b : parts)
      m.merge({static_cast<double>(b.count), b.mean[c], b.m2[c]});
    total.mean[c] = m.mean;
    total.m2[c] = m.m2;
  }
  for (const fused::LocalStatistics& b : parts) total.count += b.count;
  return total;
}

BNORM_DETAIL_ENTRY fused::BatchStatistics finalize(const fused::LocalStatistics& s, double eps) {
  fused::BatchStatistics b{s.count, s.mean, Eigen::ArrayXd(s.mean.size()),
                           Eigen::ArrayXd(s.mean.size())};
  for (Eigen::Index c = 0; c < s.mean.size(); ++c) {
    b.var[c] = s.m2[c] / static_cast<double>(s.count);
    b.invstd[c] = 1.0 / std::sqrt(b.var[c] + eps);
  }
  return b;
}

template <class T>
BNORM_DETAIL_ENTRY void normalize(NCHWView<const T> x, const fused::BatchStatistics& stats,
                                  const ParameterArray<T>& weight, const ParameterArray<T>& bias,
                                  NCHWView<T> y) {
  const Plan plan(x, sizeof(T));
  Scratch k(x.c());  // a: scale = invstd * weight, b: shift = bias
  for (index_t c = 0; c < x.c(); ++c) {
    k.a[c] = stats.invstd[c] * weight_at(weight, c);
    k.b[c] = bias_at(bias, c);
  }
  for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
    normalise(x, y, c0, c1, n0, n1, stats.mean.data(), k.a.data(), k.b.data(), plan.stream_to(y));
  });
}

template <class T>
BNORM_DETAIL_ENTRY fused::GradientSums local_gradient_sums(NCHWView<const T> x,
                                                           NCHWView<const T> dy,
                                                           const fused::BatchStatistics& stats) {
  fused::GradientSums g{Eigen::ArrayXd::Zero(x.c()), Eigen::ArrayXd::Zero(x.c())};
  if (x.size() == 0) return g;
  const Plan plan(x, sizeof(T));
  channel_grad_sums(x, dy, plan, stats.mean.data(), g.sum_dy.data(), g.sum_dy_xmu.data());
  return g;
}

template <class T>
BNORM_DETAIL_ENTRY void backward_input(NCHWView<const T> x, NCHWView<const T> dy,
                                       const ParameterArray<T>& weight,
                                       const fused::BatchStatistics& stats,
                                       const fused::GradientSums& sums, NCHWView<T> dx) {
  if (x.size() == 0) return;
  const Plan plan(x, sizeof(T), 3);
  Scratch k(x.c());  // a: k, b: shift, c: kc
  for (index_t c = 0; c < x.c(); ++c)
    backward_constants(stats.invstd[c], weight_at(weight, c), sums.sum_dy[c], sums.sum_dy_xmu[c],
                       stats.count, k.a[c], k.b[c], k.c[c]);
  for_each_elementwise_piece(plan, [&](index_t c0, index_t c1, index_t n0, index_t n1) {
    grad_input(x, dy, dx, c0, c1, n0, n1, stats.mean.data(), k.a.data(), k.b.data(), k.c.data(),
               plan.stream_to(dx));
  });
}

template <class T>
BNORM_DETAIL_ENTRY void parameter_gradients(const fused::BatchStatistics& stats,
                                            const fused::GradientSums& sums, bool affine,
                                            Eigen::Array<T, Eigen::Dynamic, 1>& dweight,
                                            Eigen::Array<T, Eigen::Dynamic, 1>& dbias) {
  if (!affine) {
    dweight.resize(0);
    dbias.resize(0);
    return;
  }
  gradients_of_parameters(sums.sum_dy.size(), sums.sum_dy.data(), sums.sum_dy_xmu.data(),
                          stats.invstd.data(), dweight, dbias);
}

/// running = (1 - f) * running + f * batch, the variance made unbiased with `unbias` = M / (M - 1),
/// in double, rounded to T.
template <class T>
BNORM_DETAIL_ENTRY void update_running(Eigen::Array<T, Eigen::Dynamic, 1>& running_mean,
                                       Eigen::Array<T, Eigen::Dynamic, 1>& running_var,
                                       const Eigen::ArrayXd& mean, const Eigen::ArrayXd& var,
                                       double f, double unbias) {
  for (Eigen::Index c = 0; c < mean.size(); ++c) {
    running_mean[c] = static_cast<T>((1 - f) * static_cast<double>(running_mean[c]) + f * mean[c]);
    running_var[c] =
        static_cast<T>((1 - f) * static_cast<double>(running_var[c]) + f * unbias * var[c]);
  }
}

/// This ISA's entry points, for the dispatch tables.
template <class T>
inline constexpr Passes<T> kPasses{
    &forward_training<T>,   &forward_inference<T>,         &backward<T>,
    &backward_inference<T>, &update_running<compute_t<T>>, &relu_gate<T>};
template <class T>
inline constexpr SplitPasses<T> kSplitPasses{&local_statistics<T>, &normalize<T>,
                                             &local_gradient_sums<T>, &backward_input<T>,
                                             &parameter_gradients<compute_t<T>>};
inline constexpr CommonPasses kCommonPasses{&merge_statistics, &finalize};
