#!/usr/bin/env python3
"""Tables from bnorm_bench's JSON output (--benchmark_out_format=json), one per layout.

Per shape and pass: bnorm's time, its ratio to the bandwidth floor, and bnorm's speedup over each
peer (peer time / bnorm time; blank where the peer was not built, "error" where it failed).
bnorm's benchmarks time the floor of their traffic (the faster of its regular- and non-temporal-
store versions) in turn with bnorm, sample by sample, and report it in the counters floor_ms and
floor_nt; the ratio to the floor is the median over the repetitions of bnorm's time over the
floor's in the same repetition. Times are one statistic of the repetitions, the same for every
benchmark: the minimum by default, or --stat median.

Benchmark ids are "<pass>/<implementation>/<NxCxHxW>[/real_time|/manual_time...]"; the
implementations of the channels-last table end in "_nhwc". Then the activation table
(bench_activation.cpp: act_fwd/act_bwd rows, each with its references timed in turn in its
counters) and the BatchNorm1d/3d rows (implementations bnorm1d, bnorm3d). After the tables, the
targets of issues 14 and 15, each met or missed. Standard library only.
"""

import argparse
import json
import math
import statistics
import sys
from collections import OrderedDict

import report_activation

PASSES = [("fwd_train", "train fwd"),
          ("fwd_infer", "infer fwd"),
          ("bwd", "backward")]
# Per layout: bnorm's implementation name, and the peers' columns (implementation, label). A
# peer given as a list of (implementation, tag) is the fastest of them on the row, shown with
# its tag: oneDNN's layouts, one of which is its fastest on a given machine.
TABLES = [
    ("NCHW", "bnorm",
     [([("onednn_nChw16c", "16c"), ("onednn_nChw8c", "8c"), ("onednn_nhwc", "nhwc")],
       "oneDNN best"),
      ("onednn_nchw", "oneDNN NCHW"),
      ("torch", "PyTorch"),
      ("torch_warm", "PyTorch warm")]),
    ("channels-last (NHWC memory)", "bnorm_nhwc",
     [("onednn_nhwc", "oneDNN nhwc"),
      ("torch_nhwc", "PyTorch"),
      ("torch_warm_nhwc", "PyTorch warm")]),
]
# The targets of issue 14: (what, passes, the column, bound, which rows). A bound below 1 is an
# upper bound on bnorm/floor; above, a lower bound on peer/bnorm.
BIG_TENSOR = 64e6  # bytes of one tensor


def is_resnet(shape):
    return shape.startswith("32x")


def tensor_bytes(shape):
    return math.prod(int(d) for d in shape.split("x")) * 4


TARGETS = [
    ("tensors over 64 MB: /floor <= 1.25", ["fwd_train", "bwd"], "floor", 1.25,
     lambda sh: tensor_bytes(sh) > BIG_TENSOR),
    ("tensors over 64 MB: /floor <= 1.10", ["fwd_infer"], "floor", 1.10,
     lambda sh: tensor_bytes(sh) > BIG_TENSOR),
    ("every shape: /floor <= 2.0", ["fwd_train", "bwd"], "floor", 2.0, lambda sh: True),
    ("every shape: /floor <= 1.3", ["fwd_infer"], "floor", 1.3, lambda sh: True),
    ("ResNet-50: >= 1.3x oneDNN's fastest layout", ["fwd_train", "bwd"], 0, 1.3, is_resnet),
    ("ResNet-50: >= 1.3x PyTorch as users call it", ["fwd_train", "fwd_infer", "bwd"], -2, 1.3,
     is_resnet),
    ("ResNet-50: >= 1.3x PyTorch warm", ["fwd_train", "bwd"], -1, 1.3, is_resnet),
    ("ResNet-50: >= 1.0x PyTorch warm", ["fwd_infer"], -1, 1.0, is_resnet),
]
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load(path, stat):
    """Returns (context, times, floors, bytes, failed, shapes, repetitions, runs).

    times[(pass, impl, shape)] in ms; floors[(pass, "bnorm", shape)] = (floor ms, its stores
    "reg" or "nt", median paired ratio); bytes per call by the same key; failed: keys whose runs reported an
    error (shown as "error" rather than blank); runs[key]: (ms, the run's JSON object) per
    repetition."""
    with open(path) as f:
        doc = json.load(f)
    samples = OrderedDict()
    paired = {}  # key -> [(bnorm ms, floor ms, floor_nt)] per repetition
    runs = {}  # key -> [(ms, the run's counters)] per repetition, for the activation table
    traffic = {}
    failed = set()
    for b in doc.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue  # aggregates: recomputed below from the repetitions
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) < 3:
            continue
        key = tuple(parts[:3])
        samples.setdefault(key, [])
        if b.get("error_occurred"):
            failed.add(key)
            continue
        ms = b["real_time"] * TO_MS[b.get("time_unit", "ns")]
        samples[key].append(ms)
        if "floor_ms" in b:
            paired.setdefault(key, []).append((ms, b["floor_ms"], b.get("floor_nt", 0)))
        runs.setdefault(key, []).append((ms, b))
        if "bytes" in b:
            traffic[key] = b["bytes"]
    pick = min if stat == "min" else statistics.median
    times = {k: pick(v) for k, v in samples.items() if v}
    floors = {k: (pick(f for _, f, _ in v),
                  "nt" if 2 * sum(nt for _, _, nt in v) > len(v) else "reg",
                  statistics.median(ms / f for ms, f, _ in v))
              for k, v in paired.items()}
    shapes = list(OrderedDict((k[2], None) for k in samples))
    reps = max((len(v) for v in samples.values()), default=0)
    return doc.get("context", {}), times, floors, traffic, failed, shapes, reps, runs


def fmt_ms(ms):
    if ms is None:
        return ""
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.2f}"


def fmt_rate(gbps):
    return f"{gbps:.1f}" if gbps >= 1 else f"{gbps:.3f}"


def fmt_x(x):
    return "" if x is None else f"{x:.2f}x"


def caches(ctx):
    """", L2 1 MiB, L3 32 MiB": the unified caches of Google Benchmark's context (per instance)."""
    def size(b):
        return f"{b >> 20} MiB" if b >= 1 << 20 and b % (1 << 20) == 0 else f"{b >> 10} KiB"
    return "".join(f", L{c['level']} {size(c['size'])}" for c in ctx.get("caches", [])
                   if c.get("type") == "Unified")


def gmean(v):
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None


def print_table(rows, summary):
    width = [max(len(str(r[i])) for r in rows + summary) for i in range(len(rows[0]))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, width))).rstrip()
    rule = "  ".join("-" * w for w in width)
    print(line(rows[0]))
    print(rule)
    for r in rows[1:]:
        print(line(r))
    if summary:
        print(rule)
        for r in summary:
            print(line(r))


def layout_table(title, bnorm, peers, data):
    """Prints one layout's table; returns {(pass, shape): {"floor": x, column index: x}}."""
    times, floors, traffic, failed, shapes = data
    head = ["shape", "pass", "bnorm ms", "GB/s", "floor ms", "/floor"] + \
           [f"vs {label}" for _, label in peers]
    rows, values = [head], {}
    for shape in shapes:
        for pas, label in PASSES:
            bn = times.get((pas, bnorm, shape))
            if bn is None:
                continue
            fl, kind, ratio = floors.get((pas, bnorm, shape), (None, "", None))
            nbytes = traffic.get((pas, bnorm, shape))
            row = [shape, label, fmt_ms(bn),
                   fmt_rate(nbytes / (bn * 1e-3) / 1e9) if nbytes else "",
                   f"{fmt_ms(fl)} {kind}" if fl else "", fmt_x(ratio)]
            v = values.setdefault((pas, shape), {})
            if ratio:
                v["floor"] = ratio
            for i, (impl, _) in enumerate(peers):
                tried = [(times[(pas, k, shape)], t) for k, t in
                         (impl if isinstance(impl, list) else [(impl, "")])
                         if (pas, k, shape) in times]
                peer, tag = min(tried) if tried else (None, "")
                names = [k for k, _ in impl] if isinstance(impl, list) else [impl]
                row.append(f"{fmt_x(peer / bn)} {tag}".rstrip() if peer else
                           "error" if any((pas, k, shape) in failed for k in names) else "")
                if peer:
                    v[i] = peer / bn
            rows.append(row)
    if len(rows) == 1:
        return {}
    # Geometric means over the shapes that have the value.
    summary = []
    for pas, label in PASSES:
        cols = ["floor"] + list(range(len(peers)))
        g = [gmean([v[c] for (p, _), v in values.items() if p == pas and c in v]) for c in cols]
        if any(g):
            summary.append(["geomean", label, "", "", "", fmt_x(g[0])] + [fmt_x(x) for x in g[1:]])
    print(f"\n{title}")
    print_table(rows, summary)
    return values


def check_targets(values, ncols):
    """One line per target of issue 14: met, or the rows that miss it and the worst figure."""
    for what, passes, col, bound, which in TARGETS:
        c = col if col == "floor" else col % ncols
        got = [(v[c], pas, shape) for (pas, shape), v in values.items()
               if pas in passes and which(shape) and c in v]
        if not got:
            continue
        upper = col == "floor"
        miss = [g for g in got if (g[0] > bound if upper else g[0] < bound)]
        names = "/".join(dict(PASSES)[p] for p in passes)
        if not miss:
            print(f"  met     {what} ({names}, {len(got)} rows)")
        else:
            worst = max(miss) if upper else min(miss)
            print(f"  MISSED  {what} ({names}): {len(miss)} of {len(got)} rows, worst "
                  f"{worst[0]:.2f}x ({worst[2]} {dict(PASSES)[worst[1]]})")


def floor_rate(times, floors, traffic, shapes):
    """"floor 24.1 GB/s forward, 26.0 GB/s backward on 32x64x112x112": the floors' bandwidth on
    the largest tensor (of bnorm's NCHW rows, else of the BatchNorm3d or 1d rows)."""
    impl = next((i for i in ("bnorm", "bnorm3d", "bnorm1d")
                 if any(k[0] == "fwd_train" and k[1] == i for k in floors)), "bnorm")
    big = max((sh for sh in shapes if ("fwd_train", impl, sh) in floors), key=tensor_bytes,
              default=None)
    rates = []
    for pas, label in [("fwd_train", "forward"), ("bwd", "backward")]:
        key = (pas, impl, big)
        if key in floors and key in traffic:
            rates.append(f"{fmt_rate(traffic[key] / (floors[key][0] * 1e-3) / 1e9)} GB/s {label}")
    return f"floor {', '.join(rates)} on {big}" if rates else "floor ?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="bnorm_bench --benchmark_out file")
    ap.add_argument("--stat", choices=["min", "median"], default="min",
                    help="statistic of the times over repetitions (default: min, since "
                         "contention from other processes only ever adds time); ratios to the "
                         "floor are always the median of the per-repetition ratios")
    args = ap.parse_args()

    ctx, times, floors, traffic, failed, shapes, reps, runs = load(args.json, args.stat)
    if not times:
        sys.exit(f"{args.json}: no benchmark results")

    peers = ", ".join(
        f"{label} {ctx[key + '_version']}" if key + "_version" in ctx else f"{label} not built"
        for key, label in [("onednn", "oneDNN"), ("torch", "PyTorch")])
    print(f"bnorm_bench {ctx.get('date', '?')} | kernels {ctx.get('bnorm_isa', '?')}, floors "
          f"{ctx.get('floor_simd', '?')}, {ctx.get('build', '?')} | "
          f"{ctx.get('omp_threads', '?')} threads | {ctx.get('cpu_model', '?')} "
          f"({ctx.get('num_cpus', '?')} CPUs{caches(ctx)}; kernels plan for "
          f"{ctx.get('bnorm_caches', '?')}) | {floor_rate(times, floors, traffic, shapes)} | "
          f"{peers} | float32 | times: {args.stat} of {reps} repetition"
          f"{'s' if reps != 1 else ''}, /floor: median of the paired ratios")

    data = (times, floors, traffic, failed, shapes)
    checks = []
    for title, bnorm, peer_columns in TABLES:
        values = layout_table(title, bnorm, peer_columns, data)
        if values:
            checks.append((title, values, len(peer_columns)))
    act = report_activation.activation_table(ctx, runs, args.stat)
    other = report_activation.other_ranks_table(ctx, times, floors, traffic, shapes)
    print("\n/floor: bnorm time over the faster floor of the same traffic (reg/nt: regular or "
          "non-temporal stores), timed in turn with it (1.00x = at the floor); vs X: X time over "
          "bnorm time (>1 = bnorm faster); oneDNN best: its fastest of nChw16c, nChw8c and nhwc "
          "on the row (which one after the ratio); PyTorch: as users call it, allocating its "
          "outputs with glibc; PyTorch warm: each allocation reuses a freed block; GB/s of the "
          "minimal traffic.")
    if act or other:
        print("\nActivation table: BN ms, +ReLU ms: fused::forward_training without and with "
              "Activation::relu (train fwd), fused::backward and BatchNorm2d's backward after a "
              "forward with ReLU (backward); +add+ReLU ms: forward(x, residual, y) with ReLU, "
              "and the module's backward with dresidual; all timed in turn, and ReLU/BN is the "
              "median of the paired ratios; /floor: +add+ReLU over the floor of its traffic "
              "(forward: y = a*x + r, read x, r, write y; backward: dx = a*x + dy, "
              "dr = a*y + dy, read x, dy, y, write dx, dr); ReLU/sep, add+ReLU/sep: over BN "
              "followed by a separate pass (forward: y = max(y, 0) or max(y + r, 0) in place "
              "over BN's y; backward: g = y > 0 ? dy : 0 into a tensor of its own, then "
              "fused::backward with dy = g), blank where not timed; GB/s of +add+ReLU's "
              "minimal traffic (3 tensors forward, 5 backward).")
    for title, values, ncols in checks:
        print(f"\ntargets, {title}:")
        check_targets(values, ncols)
    if act or other:
        print("\ntargets, activation table:")
        report_activation.check_activation_targets(act, other)


if __name__ == "__main__":
    main()
