// Cases for the thread-count reproducibility checks: every fused pass on shapes with fewer and
// more channels than threads, small and large planes, several chunks, NCHW and channels_last.
// Each case runs into a digest of the exact output bits, so runs can be compared as strings:
// within one binary for 1, 2 and 3 threads, and between an OpenMP and a serial build.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <bnorm/bnorm.hpp>

namespace bnorm_test {

struct ReproCase {
  std::array<bnorm::index_t, 4> shape;
  bool channels_last;
  bool epilogue = false;  // also the activation's entry points (run_repro_case_as)
};

inline std::vector<ReproCase> repro_cases() {
  return {
      {{4, 1, 64, 64}, false},          // C < threads
      {{2, 1, 300, 300}, false},        // C < threads, several chunks per channel
      {{3, 2, 5, 7}, true, true},       // C == threads, channels_last
      {{8, 3, 7, 7}, false, true},      // span blocks
      {{32, 70, 7, 7}, false},          // several span blocks
      {{16, 9, 14, 14}, true},          // channels_last, small planes
      {{6, 40, 28, 28}, true, true},    // channels_last vectorised along C: one image per item,
                                        // 40 channels (the last group of 16 overlaps)
      {{33, 20, 1, 1}, true},           // channels_last vectorised, H = W = 1
      {{3, 5, 56, 56}, false},          // C > threads
      {{4, 3, 130, 130}, false, true},  // 3 long channels of 2 chunks: blocks on 1 thread,
                                        // (block, chunk) items on 2 (Plan::blocks_fill_threads)
  };
}

/// FNV-1a over the bytes of a sequence of values.
template <class V>
void digest(std::uint64_t& h, const V& values) {
  for (const auto& v : values) {
    unsigned char bytes[sizeof(v)];
    std::memcpy(bytes, &v, sizeof(v));
    for (unsigned char b : bytes) h = (h ^ b) * 1099511628211ull;
  }
}

template <class T>
std::uint64_t run_repro_case_as(const ReproCase& rc) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const bnorm::index_t n = rc.shape[0], c = rc.shape[1], h = rc.shape[2], w = rc.shape[3];
  const std::size_t size = static_cast<std::size_t>(n * c * h * w);
  // Inputs made by exact arithmetic only (integers scaled by powers of 2), so that every build
  // of this program, -march=native's FMA contraction included, feeds the kernels the same bits
  // (std::normal_distribution's arithmetic is compiled with the program's flags).
  std::mt19937_64 gen(99);
  const auto uniform = [&gen] {  // in [1, 5), 24 random bits
    return static_cast<T>(1.0 + static_cast<double>(gen() >> 40) / 4194304.0);
  };
  std::vector<T> x(size), dy(size), y(size), dx(size);
  for (auto& v : x) v = uniform();
  for (auto& v : dy) v = uniform() - T(3);
  Array weight(c), bias(c), mean(c), var(c), dweight, dbias;
  for (bnorm::index_t i = 0; i < c; ++i) {
    const double k = static_cast<double>(i);
    weight[i] = static_cast<T>(1 + k / 8);
    bias[i] = static_cast<T>(0.5 - k / 16);
    mean[i] = static_cast<T>(2.5 + k / 64);
    var[i] = static_cast<T>(3.0 + k / 32);
  }
  auto view = [&](T* p) {
    return rc.channels_last ? bnorm::NCHWView<T>::channels_last(p, n, c, h, w)
                            : bnorm::NCHWView<T>(p, n, c, h, w);
  };
  std::uint64_t d = 14695981039346656037ull;
  const auto stats =
      bnorm::fused::forward_training<T>(view(x.data()), weight, bias, 1e-5, view(y.data()));
  digest(d, y);
  digest(d, stats.mean);
  digest(d, stats.var);
  bnorm::fused::backward<T>(view(x.data()), view(dy.data()), weight, stats, view(dx.data()),
                            dweight, dbias);
  digest(d, dx);
  digest(d, dweight);
  digest(d, dbias);
  bnorm::fused::forward_inference<T>(view(x.data()), weight, bias, mean, var, 1e-5, view(y.data()));
  digest(d, y);
  bnorm::fused::backward_inference<T>(view(x.data()), view(dy.data()), weight, mean, var, 1e-5,
                                      view(dx.data()), dweight, dbias);
  digest(d, dx);
  digest(d, dweight);
  const auto local = bnorm::fused::local_statistics<T>(view(x.data()));
  digest(d, local.mean);
  digest(d, local.m2);
  // The split API: two parts merged, finalised, and the backward pieces.
  const auto merged = bnorm::fused::merge_statistics({local, local});
  const auto global = bnorm::fused::finalize(merged, 1e-5);
  digest(d, merged.mean);
  digest(d, global.invstd);
  bnorm::fused::normalize<T>(view(x.data()), global, weight, bias, view(y.data()));
  digest(d, y);
  const auto sums = bnorm::fused::local_gradient_sums<T>(view(x.data()), view(dy.data()), global);
  digest(d, sums.sum_dy_xmu);
  bnorm::fused::backward_input<T>(view(x.data()), view(dy.data()), weight, global, sums,
                                  view(dx.data()));
  digest(d, dx);
  bnorm::fused::parameter_gradients<T>(global, sums, true, dweight, dbias);
  digest(d, dweight);
  // The module: two training steps (running buffers, saved invstd), then eval.
  bnorm::BatchNorm2d<T> bn(c);
  bn.weight() = weight;
  for (int step = 0; step < 2; ++step) {
    const auto saved = bn.forward(view(x.data()), view(y.data()));
    digest(d, saved.invstd());
  }
  digest(d, bn.running_mean());
  digest(d, bn.running_var());
  bn.eval();
  const auto saved = bn.forward(view(x.data()), view(y.data()));
  digest(d, y);
  digest(d, saved.invstd());
  if (!rc.epilogue) return d;
  // The activation (on a few cases): a module with Options::activation = relu, in training
  // y = relu(BN(x)) and its backward (the mask recomputed from x), y = relu(BN(x) + r) and its
  // backward with dresidual (the mask read from y); in eval, y = relu(BN(x)) and its backward;
  // then fused::relu_backward over that y. Each forward's backward runs before y is written
  // again. (xhat spans about +-1.7, the bias is 0.5 - c / 16: the mask cuts part of every
  // channel.)
  std::vector<T> r(size), dr(size), g(size);
  for (auto& v : r) v = uniform() - T(3);
  bnorm::Options relu;
  relu.activation = bnorm::Activation::relu;
  bnorm::BatchNorm2d<T> act(c, relu);
  act.weight() = weight;
  act.bias() = bias;
  const auto trained = act.forward(view(x.data()), view(y.data()));
  digest(d, y);
  act.backward(trained, view(dy.data()), view(dx.data()));
  digest(d, dx);
  digest(d, act.weight_grad());
  digest(d, act.bias_grad());
  const auto added = act.forward(view(x.data()), view(r.data()), view(y.data()));
  digest(d, y);
  act.backward(added, view(dy.data()), view(dx.data()), view(dr.data()));
  digest(d, dx);
  digest(d, dr);
  digest(d, act.weight_grad());
  digest(d, act.running_var());
  act.eval();
  const auto evaluated = act.forward(view(x.data()), view(y.data()));
  digest(d, y);
  act.backward(evaluated, view(dy.data()), view(dx.data()));
  digest(d, dx);
  digest(d, act.bias_grad());
  bnorm::fused::relu_backward<T>(view(y.data()), view(dy.data()), view(g.data()));
  digest(d, g);
  return d;
}

/// "NxCxHxW layout: <float digest> <double digest>"
inline std::string run_repro_case(const ReproCase& rc) {
  std::ostringstream out;
  out << rc.shape[0] << "x" << rc.shape[1] << "x" << rc.shape[2] << "x" << rc.shape[3]
      << (rc.channels_last ? " channels_last: " : " nchw: ") << std::hex
      << run_repro_case_as<float>(rc) << " " << run_repro_case_as<double>(rc);
  return out.str();
}

inline std::string run_repro_cases() {
  std::string out;
  for (const auto& c : repro_cases()) out += run_repro_case(c) + "\n";
  return out;
}

/// What a digest program prints (compare_digests.cmake reads it): for every kernel set, "# <set>"
/// and the digests, or "# <set>: skipped ..." where this CPU or build lacks the set.
inline std::string digests_of_every_isa() {
  std::string out;
  for (const char* isa : {"sse2", "avx2", "avx512", "generic"}) {
    if (!bnorm::isa_supported(isa)) {
      if (std::string(isa) != "generic")
        out += std::string("# ") + isa + ": skipped, not on this CPU or in this build\n";
      continue;
    }
    bnorm::set_isa(isa);
    out += std::string("# ") + isa + "\n" + run_repro_cases();
  }
  return out;
}

}  // namespace bnorm_test
