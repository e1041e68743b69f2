// Peer libraries that bnorm_bench compares against. Each is compiled in only when CMake found
// it (BNORM_BENCH_HAVE_ONEDNN, BNORM_BENCH_HAVE_TORCH); the library and its tests never need them.
#pragma once

#include <string>
#include <vector>

#include "shapes.hpp"

namespace bnorm_bench {

struct Peer {
  std::string name;  // goes into the benchmark context as "<name>_version"
  std::string version;
  void (*register_shape)(const Shape&);  // registers this peer's benchmarks for one shape
};

#if defined(BNORM_BENCH_HAVE_ONEDNN)
Peer onednn_peer();        // peer_onednn.cpp
Peer onednn_16bit_peer();  // the same over bf16 and f16 data (bnorm_bench_16bit)
#endif
#if defined(BNORM_BENCH_HAVE_TORCH)
Peer torch_peer();        // peer_torch.cpp
Peer torch_16bit_peer();  // the same over bfloat16 and half data (bnorm_bench_16bit)
#endif

inline std::vector<Peer> available_peers() {
  std::vector<Peer> peers;
#if defined(BNORM_BENCH_HAVE_ONEDNN)
  peers.push_back(onednn_peer());
#endif
#if defined(BNORM_BENCH_HAVE_TORCH)
  peers.push_back(torch_peer());
#endif
  return peers;
}

}  // namespace bnorm_bench
