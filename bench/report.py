#!/usr/bin/env python3
"""One table from bnorm_bench's JSON output (--benchmark_out_format=json).

Per shape and pass: bnorm's time, its ratio to the bandwidth floor, and bnorm's speedup over each
peer (peer time / bnorm time; blank where the peer was not built, "error" where it failed).
bnorm's benchmarks time the floor of their traffic (the faster of its regular- and non-temporal-
store versions) in turn with bnorm, sample by sample, and report it in the counters floor_ms and
floor_nt; the ratio to the floor is the median over the repetitions of bnorm's time over the
floor's in the same repetition. Times are one statistic of the repetitions, the same for every
benchmark: the minimum by default, or --stat median.

Benchmark ids are "<pass>/<implementation>/<NxCxHxW>[/real_time|/manual_time...]". Standard
library only.
"""

import argparse
import json
import math
import statistics
import sys
from collections import OrderedDict

PASSES = [("fwd_train", "train fwd"),
          ("fwd_infer", "infer fwd"),
          ("bwd", "backward")]
PEERS = [("onednn_best", "oneDNN best"),
         ("onednn_nchw", "oneDNN NCHW"),
         ("torch", "PyTorch")]
# oneDNN's layouts of which the fastest on each row is its "best" (and the tag shown with it).
ONEDNN_LAYOUTS = [("onednn_nChw16c", "16c"), ("onednn_nChw8c", "8c"), ("onednn_nhwc", "nhwc")]
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load(path, stat):
    """Returns (context, times, floors, bytes, failed, shapes, repetitions).

    times[(pass, impl, shape)] in ms; floors[(pass, "bnorm", shape)] = (floor ms, its stores
    "reg" or "nt", median paired ratio); bytes per call by the same key; failed: keys whose runs reported an
    error (shown as "error" rather than blank)."""
    with open(path) as f:
        doc = json.load(f)
    samples = OrderedDict()
    paired = {}  # key -> [(bnorm ms, floor ms, floor_nt)] per repetition
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
    return doc.get("context", {}), times, floors, traffic, failed, shapes, reps


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="bnorm_bench --benchmark_out file")
    ap.add_argument("--stat", choices=["min", "median"], default="min",
                    help="statistic of the times over repetitions (default: min, since "
                         "contention from other processes only ever adds time); ratios to the "
                         "floor are always the median of the per-repetition ratios")
    args = ap.parse_args()

    ctx, times, floors, traffic, failed, shapes, reps = load(args.json, args.stat)
    if not times:
        sys.exit(f"{args.json}: no benchmark results")

    peers = ", ".join(
        f"{label} {ctx[key + '_version']}" if key + "_version" in ctx else f"{label} not built"
        for key, label in [("onednn", "oneDNN"), ("torch", "PyTorch")])
    print(f"bnorm_bench {ctx.get('date', '?')} | kernels {ctx.get('bnorm_isa', '?')}, floors "
          f"{ctx.get('floor_simd', '?')}, {ctx.get('build', '?')} | "
          f"{ctx.get('omp_threads', '?')} threads | {ctx.get('cpu_model', '?')} "
          f"({ctx.get('num_cpus', '?')} CPUs{caches(ctx)}; kernels plan for "
          f"{ctx.get('bnorm_caches', '?')}) | {peers} | float32 NCHW | "
          f"times: {args.stat} of {reps} repetition{'s' if reps != 1 else ''}, "
          f"/floor: median of the paired ratios")

    head = ["shape", "pass", "bnorm ms", "GB/s", "floor ms", "/floor"] + \
           [f"vs {label}" for _, label in PEERS]
    rows = []
    ratios = {p: dict([("floor", [])] + [(k, []) for k, _ in PEERS]) for p, _ in PASSES}
    for shape in shapes:
        for pas, label in PASSES:
            bn = times.get((pas, "bnorm", shape))
            if bn is None:
                continue
            fl, kind, ratio = floors.get((pas, "bnorm", shape), (None, "", None))
            nbytes = traffic.get((pas, "bnorm", shape))
            row = [shape, label, fmt_ms(bn),
                   fmt_rate(nbytes / (bn * 1e-3) / 1e9) if nbytes else "",
                   f"{fmt_ms(fl)} {kind}" if fl else "",
                   fmt_x(ratio)]
            if ratio:
                ratios[pas]["floor"].append(ratio)
            for key, _ in PEERS:
                peer, tag = times.get((pas, key, shape)), ""
                if key == "onednn_best":
                    tried = [(times[(pas, k, shape)], t) for k, t in ONEDNN_LAYOUTS
                             if (pas, k, shape) in times]
                    peer, tag = min(tried) if tried else (None, "")
                    failed_here = any((pas, k, shape) in failed for k, _ in ONEDNN_LAYOUTS)
                else:
                    failed_here = (pas, key, shape) in failed
                row.append(f"{fmt_x(peer / bn)} {tag}".rstrip() if peer else
                           "error" if failed_here else "")
                if peer:
                    ratios[pas][key].append(peer / bn)
            rows.append(row)

    # Geometric means over the shapes that have the value.
    def gmean(v):
        return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None
    summary = []
    for pas, label in PASSES:
        r = ratios[pas]
        if not r["floor"] and not any(r[k] for k, _ in PEERS):
            continue
        summary.append(["geomean", label, "", "", "", fmt_x(gmean(r["floor"]))] +
                       [fmt_x(gmean(r[k])) for k, _ in PEERS])

    width = [max(len(str(r[i])) for r in [head] + rows + summary) for i in range(len(head))]
    left = {0, 1}

    def line(r):
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, width))).rstrip()
    print(line(head))
    print("  ".join("-" * w for w in width))
    for r in rows:
        print(line(r))
    if summary:
        print("  ".join("-" * w for w in width))
        for r in summary:
            print(line(r))
    print("/floor: bnorm time over the faster floor of the same traffic (reg/nt: regular or "
          "non-temporal stores), timed in turn with it (1.00x = at the floor); vs X: X time over "
          "bnorm time (>1 = bnorm faster); oneDNN best: its fastest of nChw16c, nChw8c and nhwc "
          "on the row (which one after the ratio); GB/s of the minimal traffic.")


if __name__ == "__main__":
    main()
