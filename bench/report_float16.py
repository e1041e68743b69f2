#!/usr/bin/env python3
"""Tables from bnorm_bench_16bit's JSON output (bench_float16.cpp): per 16-bit type and layout,
per ResNet-50 shape and pass, bnorm's time, its ratio to its own floor (the same streaming
kernels over 16-bit data) and its speedup over bnorm's float32 pass, both references timed in
turn with it in the same iterations, and over oneDNN's and PyTorch's passes on the same type
where they ran (each timed on its own: oneDNN's fastest layout for NCHW, nhwc for
channels-last; PyTorch in the table's layout, as users call it and on warm memory); then the
targets of issue 16, each met or missed.

Ratios are medians over the repetitions of the ratio within each repetition; times are the
minimum over the repetitions (--stat median for the median). Standard library only.

    python3 bench/report_float16.py build-bench/bnorm_bench_16bit.json
"""

import argparse
import json
import math
import statistics
from collections import OrderedDict

PASSES = [("fwd_train", "train fwd"), ("fwd_infer", "infer fwd"), ("bwd", "backward")]
TYPES = [("bfloat16", 2), ("half", 2)]
LAYOUTS = [("NCHW", ""), ("channels-last", "_nhwc")]
BIG = 32e6  # bytes of 16-bit data in one tensor
TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load(path, stat):
    """rows[(pass, impl, shape)] = (time ms, median floor ratio, median float32 speedup) for
    bnorm's benchmarks; peers[(pass, impl, shape)] = time ms for oneDNN's and PyTorch's (timed
    on their own; absent where they failed or do not implement the type)."""
    with open(path) as f:
        doc = json.load(f)
    runs, peer_runs = {}, {}
    for b in doc["benchmarks"]:
        if b.get("run_type") != "iteration" or "error_occurred" in b:
            continue
        name = b.get("run_name", b["name"]).split("/")
        key = (name[0], name[1], name[2])
        ms = b["real_time"] * TO_MS[b["time_unit"]]
        if "floor_ms" in b:
            runs.setdefault(key, []).append((ms, b["floor_ms"], b["float32_ms"]))
        else:
            peer_runs.setdefault(key, []).append(ms)
    pick = min if stat == "min" else statistics.median
    rows = {}
    for key, rs in runs.items():
        rows[key] = (pick([r[0] for r in rs]), statistics.median(r[0] / r[1] for r in rs),
                     statistics.median(r[2] / r[0] for r in rs))
    peers = {key: pick(ts) for key, ts in peer_runs.items()}
    return doc.get("context", {}), rows, peers


# oneDNN's layouts per table: its fastest of all for NCHW, nhwc for channels-last.
ONEDNN = {"": ["nChw16c", "nChw8c", "nhwc"], "_nhwc": ["nhwc"]}


def onednn_speedup(peers, p, type_name, suffix, shape, t):
    """(oneDNN's fastest time / bnorm's, its layout), or None where it did not run."""
    found = [(peers[(p, "onednn_%s_%s" % (type_name, lay), shape)], lay) for lay in ONEDNN[suffix]
             if (p, "onednn_%s_%s" % (type_name, lay), shape) in peers]
    if not found:
        return None
    best, lay = min(found)
    return best / t, lay


def torch_speedup(peers, p, impl, suffix, shape, t):
    """PyTorch's time / bnorm's for impl "torch" or "torch_warm" in the table's layout, or
    None where it did not run."""
    peer = peers.get((p, "%s_%s%s" % (impl[0], impl[1], suffix), shape))
    return None if peer is None else peer / t


def geomean(values):
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def tensor_bytes(shape, size):
    return math.prod(int(d) for d in shape.split("x")) * size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--stat", choices=["min", "median"], default="min")
    args = ap.parse_args()
    context, rows, peers = load(args.json, args.stat)
    print("bnorm 16-bit tensors (float parameters), %s, ISA %s, %s threads, %s; floors: %s" % (
        context.get("cpu_model", "?"), context.get("bnorm_isa", "?"),
        context.get("omp_threads", "?"), context.get("bnorm_caches", "?"),
        context.get("floor_simd", "?")))
    shapes = list(OrderedDict.fromkeys(k[2] for k in rows))
    missed = []
    checks = {"big": [], "float32": [], "onednn": [], "torch": []}
    for type_name, size in TYPES:
        for layout_name, suffix in LAYOUTS:
            impl = "bnorm_" + type_name + suffix
            print("\n%s, %s: ms | /floor | x float32 | x oneDNN (%s) | x PyTorch (as called, "
                  "warm)" % (type_name, layout_name, "fastest layout" if not suffix else "nhwc"))
            header = "| shape | " + " | ".join(
                "%s ms | /floor | x f32 | x oneDNN | x PyTorch" % label for _, label in PASSES) + " |"
            print(header)
            print("|" + " --- |" * (1 + 5 * len(PASSES)))
            per_pass = {p: ([], []) for p, _ in PASSES}
            for shape in shapes:
                cells = []
                for p, _ in PASSES:
                    r = rows.get((p, impl, shape))
                    if r is None:
                        cells += ["", "", "", "", ""]
                        continue
                    t, floor, speedup = r
                    peer = onednn_speedup(peers, p, type_name, suffix, shape, t)
                    torch = [torch_speedup(peers, p, (impl, type_name), suffix, shape, t)
                             for impl in ("torch", "torch_warm")]
                    cells += ["%.3f" % t, "%.2f" % floor, "%.2f" % speedup,
                              "" if peer is None else "%.2f %s" % peer,
                              " ".join("%.2f" % v for v in torch if v is not None)]
                    for v, how in zip(torch, ("as called", "warm")):
                        if v is not None:
                            checks["torch"].append((v > 1.0, "%s %s %s %s x PyTorch %s %.2f" % (
                                type_name, layout_name, p, shape, how, v)))
                    if peer is not None:
                        checks["onednn"].append((peer[0] > 1.0, "%s %s %s %s x oneDNN %.2f" % (
                            type_name, layout_name, p, shape, peer[0])))
                    per_pass[p][0].append(floor)
                    per_pass[p][1].append(speedup)
                    if tensor_bytes(shape, size) > BIG:
                        checks["big"].append((floor <= 1.3, "%s %s %s %s /floor %.2f" % (
                            type_name, layout_name, p, shape, floor)))
                    checks["float32"].append((speedup >= 1.6, "%s %s %s %s x float32 %.2f" % (
                        type_name, layout_name, p, shape, speedup)))
                print("| %s | %s |" % (shape, " | ".join(cells)))
            print("| geomean | " + " | ".join(
                " | %.2f | %.2f |  | " % (geomean(per_pass[p][0]), geomean(per_pass[p][1]))
                for p, _ in PASSES) + " |")
    print("\nTargets of issue 16 (2 threads, default build):")
    for what, key in (("tensors over 32 MB of 16-bit data: each pass <= 1.3x its floor", "big"),
                      ("every shape: each pass >= 1.6x faster than float32", "float32"),
                      ("faster than oneDNN's 16-bit passes where they run", "onednn"),
                      ("faster than PyTorch's 16-bit passes where they run (as called and warm)",
                       "torch")):
        bad = [m for ok, m in checks[key] if not ok]
        if not checks[key]:
            print("- %s: not measured (no rows)" % what)
            continue
        print("- %s: %s (%d of %d rows met)" % (what, "met" if not bad else "MISSED",
                                               len(checks[key]) - len(bad), len(checks[key])))
        for m in bad:
            print("    missed: " + m)


if __name__ == "__main__":
    main()
