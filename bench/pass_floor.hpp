// The floor of a pass on a shape's workspace, and the choice of its stores: what bnorm_bench and
// bnorm_bench_kernels time their kernels against.
#pragma once

#include <algorithm>

#include "floor_kernels.hpp"
#include "paired.hpp"
#include "workspace.hpp"

namespace bnorm_bench {

// One call of the floor of a forward (y = a*x + b) or backward (dx = a*x + dy) pass on the
// workspace's buffers.
inline void pass_floor(Workspace& ws, bool backward, Store store) {
  if (backward)
    floor_backward(ws.x.data(), ws.dy.data(), 0.75f, ws.dx.data(), ws.shape.size(), store);
  else
    floor_forward(ws.x.data(), 0.75f, 0.25f, ws.y.data(), ws.shape.size(), store);
}

// The faster stores for run(store), regular or non-temporal, timing each a few times in turn
// (warm_ms).
template <class Run>
Store faster_store(const Run& run) {
  double regular = 1e300, nontemporal = 1e300;
  for (int round = 0; round < 3; ++round) {
    regular = std::min(regular, warm_ms([&] { run(Store::regular); }));
    nontemporal = std::min(nontemporal, warm_ms([&] { run(Store::nontemporal); }));
  }
  return nontemporal < regular ? Store::nontemporal : Store::regular;
}

// The stores of the faster floor there, regular or non-temporal.
inline Store faster_floor_store(Workspace& ws, bool backward) {
  return faster_store([&](Store store) { pass_floor(ws, backward, store); });
}

}  // namespace bnorm_bench
