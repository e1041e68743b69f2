// bnorm_bench: the fused kernels against the bandwidth floors and the peer libraries, float32 NCHW.
// Benchmark ids are "<pass>/<implementation>/<NxCxHxW>"; bench/report.py turns the JSON output
// into one table of ratios.

#include <benchmark/benchmark.h>
#include <bnorm/bnorm.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bnorm_passes.hpp"
#include "paired.hpp"
#include "pass_floor.hpp"
#include "passes.hpp"
#include "peers.hpp"
#include "registration.hpp"
#include "shapes.hpp"
#include "workspace.hpp"

namespace {

using namespace bnorm_bench;

// bnorm's pass on shape s, timed in turn with the floor of its traffic (paired.hpp): the
// benchmark's time is bnorm's, the counters floor_ms (per call, the same iterations) and
// floor_nt (1 when the floor's stores are non-temporal). The floor's stores are those of the
// faster floor, found by timing each a few times in turn.
void bnorm_against_floor(benchmark::State& state, const Shape& s, Pass pass) {
  Workspace& ws = workspace(s);
  const BnormPass bnorm_pass(ws, pass);
  const bool backward = pass == Pass::bwd;
  const Store store = faster_floor_store(ws, backward);
  time_in_turn(state, bnorm_pass, "floor_ms", [&] { pass_floor(ws, backward, store); });
  state.counters["floor_nt"] = store == Store::nontemporal ? 1 : 0;
  set_traffic_counters(state, minimal_bytes(pass, s, sizeof(float)));
}

// Per shape: the bnorm passes, each timed against its floor, then the peers.
void register_shape(const Shape& s, const std::vector<Peer>& peers) {
  for (Pass pass : {Pass::fwd_train, Pass::fwd_infer, Pass::bwd})
    add_benchmark(
        bench_name(pass_name(pass), "bnorm", s), s,
        [s, pass](benchmark::State& state) { bnorm_against_floor(state, s, pass); },
        Timing::manual);
  for (const Peer& p : peers) p.register_shape(s);
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // glibc serves large blocks with fresh mmaps, or from its heap once a large block has been
  // freed (its threshold adapts), so a peer that allocates its outputs on every call (PyTorch)
  // paid page faults or not depending on what ran before in the process: 0.45 or 2.5-3.0 ms for
  // the same backward of 32x256x14x14. Serve every block from the heap and never trim it, so
  // that every kernel runs on warm memory whatever the order.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
  return run_benchmarks(argc, argv, [] {
    const std::vector<Peer> peers = available_peers();
    benchmark::AddCustomContext("floor_simd", floor_simd());
    for (const Peer& p : peers) benchmark::AddCustomContext(p.name + "_version", p.version);
    for (const Shape& s : resnet_shapes()) register_shape(s, peers);
  });
}
