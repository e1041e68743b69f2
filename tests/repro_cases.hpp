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
};

inline std::vector<ReproCase> repro_cases() {
  return {
      {{4, 1, 64, 64}, false},    // C < threads
      {{2, 1, 300, 300}, false},  // C < threads, several chunks per channel
      {{3, 2, 5, 7}, true},       // C == threads, channels_last
      {{8, 3, 7, 7}, false},      // span blocks
      {{32, 70, 7, 7}, false},    // several span blocks
      {{16, 9, 14, 14}, true},    // channels_last, small planes
      {{6, 40, 28, 28}, true},    // channels_last vectorised along C: one image per item,
                                  // 40 channels (the last group of 16 overlaps)
      {{33, 20, 1, 1}, true},     // channels_last vectorised, H = W = 1
      {{3, 5, 56, 56}, false},    // C > threads
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
  const auto [n, c, h, w] = rc.shape;
  const std::size_t size = static_cast<std::size_t>(n * c * h * w);
  std::mt19937_64 gen(99);
  std::normal_distribution<double> normal(3.0, 2.0);
  std::vector<T> x(size), dy(size), y(size), dx(size);
  for (auto& v : x) v = static_cast<T>(normal(gen));
  for (auto& v : dy) v = static_cast<T>(normal(gen));
  Array weight(c), bias(c), mean(c), var(c), dweight, dbias;
  for (bnorm::index_t i = 0; i < c; ++i) {
    weight[i] = static_cast<T>(1 + 0.1 * i);
    bias[i] = static_cast<T>(0.5 - 0.05 * i);
    mean[i] = static_cast<T>(2.5 + 0.01 * i);
    var[i] = static_cast<T>(3.0 + 0.02 * i);
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

}  // namespace bnorm_test
