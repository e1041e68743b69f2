// bnorm_bench: the fused kernels against the bandwidth floors and the peer libraries, float32,
// NCHW and channels-last. Benchmark ids are "<pass>/<implementation>/<NxCxHxW>" (the
// implementation "bnorm_nhwc" for channels-last views); bench/report.py turns the JSON output
// into one table of ratios per layout.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_activation.hpp"
#include "bnorm_passes.hpp"
#include "paired.hpp"
#include "pass_floor.hpp"
#include "passes.hpp"
#include "peers.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "views.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

// bnorm's pass on shape s in a layout, timed in turn with the floor of its traffic (paired.hpp):
// the benchmark's time is bnorm's, the counters floor_ms (per call, the same iterations) and
// floor_nt (1 when the floor's stores are non-temporal). The floor's stores are those of the
// faster floor, found by timing each a few times in turn.
void bnorm_against_floor(benchmark::State& state, const Shape& s, Pass pass, Layout layout) {
  Workspace& ws = workspace(s);
  const BnormPass bnorm_pass(ws, pass, layout);
  const bool backward = pass == Pass::bwd;
  const Store store = faster_floor_store(ws, backward);
  time_in_turn(state, bnorm_pass, "floor_ms", [&] { pass_floor(ws, backward, store); });
  state.counters["floor_nt"] = store == Store::nontemporal ? 1 : 0;
  set_traffic_counters(state, minimal_bytes(pass, s, sizeof(float)));
}

// Per shape: the bnorm passes in both layouts, each timed against its floor, then the peers.
void register_shape(const Shape& s, const std::vector<Peer>& peers) {
  for (Layout layout : {Layout::nchw, Layout::nhwc})
    for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd})
      add_benchmark(
          bench_name(pass_name(pass), impl_name("bnorm", layout), s), s,
          [s, pass, layout](benchmark::State& state) {
            bnorm_against_floor(state, s, pass, layout);
          },
          Timing::manual);
  for (const Peer& p : peers) p.register_shape(s);
}

}  // namespace

int main(int argc, char** argv) {
  // glibc serves a block of more than its mmap threshold with fresh pages (a page fault per
  // 4 KiB), and raises the threshold (to at most 32 MiB) whenever such a block is freed. So a
  // peer that allocates its outputs on every call (PyTorch as users call it) paid page faults
  // or not depending on what had run before in the process: 0.45 or 2.5-3.0 ms for the same
  // backward of 32x256x14x14. Freeing one block of just under 32 MiB first (a larger one
  // leaves the threshold alone) puts glibc where any program that has freed a large tensor is,
  // whatever the order of the benchmarks. volatile: the pair must not be optimised away.
  void* volatile block = std::malloc((std::size_t{32} << 20) - (std::size_t{64} << 10));
  std::free(block);
  return run_benchmarks(argc, argv, [] {
    const std::vector<Peer> peers = available_peers();
    benchmark::AddCustomContext("floor_simd", floor_simd());
    for (const Peer& p : peers) benchmark::AddCustomContext(p.name + "_version", p.version);
    for (const Shape& s : bench_shapes()) register_shape(s, peers);
    register_activation_benchmarks();  // the activation table (bench_activation.cpp)
  });
}
