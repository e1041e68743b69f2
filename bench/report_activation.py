"""The activation and BatchNorm1d/3d tables of bnorm_bench's report (report.py prints them
after the layout tables)."""
import statistics
from collections import OrderedDict

from report import (BIG_TENSOR, PASSES, TARGETS, caches, fmt_ms, fmt_rate, fmt_x, gmean,
                    print_table, tensor_bytes)


# --- the activation table (bench_activation.cpp) ---------------------------------------------
# act_fwd/bnorm/<shape>, act_bwd/bnorm/<shape>: the benchmark's time is BN + residual + ReLU's;
# the counters are the references timed in turn with it, ms per call: bn_ms (BN alone), relu_ms
# (BN + ReLU), floor_ms (the floor of BN + residual + ReLU's traffic) and on some shapes the
# separate passes, sep_relu_ms and sep_add_relu_ms (forward), sep_ms (backward, both).
ACT_PASSES = [("act_fwd", "train fwd"), ("act_bwd", "backward")]
# The BatchNorm1d and BatchNorm3d rows: their implementations, and their view for the table.
OTHER_RANKS = [("bnorm1d", "NCLView"), ("bnorm3d", "NCDHWView")]


def act_values(key, rows, stat):
    """Times (the statistic) and paired ratios (median over repetitions) of one act_ benchmark."""
    pick = min if stat == "min" else statistics.median

    def t(counter):
        v = [b[counter] for _, b in rows if counter in b]
        return pick(v) if v else None

    def ratio(num, den):
        v = [(ms if num is None else b[num]) / b[den] for ms, b in rows
             if den in b and (num is None or num in b) and b[den] > 0]
        return statistics.median(v) if v else None

    forward = key[0] == "act_fwd"
    return {
        "ms": pick(ms for ms, _ in rows),
        "bn": t("bn_ms"), "relu": t("relu_ms"), "floor": t("floor_ms"),
        "nt": "nt" if 2 * sum(b.get("floor_nt", 0) for _, b in rows) > len(rows) else "reg",
        "bytes": rows[0][1].get("bytes"),
        "relu/bn": ratio("relu_ms", "bn_ms"),
        "/floor": ratio(None, "floor_ms"),
        "relu/sep": ratio("relu_ms", "sep_relu_ms" if forward else "sep_ms"),
        "add/sep": ratio(None, "sep_add_relu_ms" if forward else "sep_ms"),
    }


def machine(ctx):
    """"kernels avx2, default flags, 2 threads, AMD EPYC (2 CPUs, L2 512 KiB, L3 32 MiB)"."""
    return (f"kernels {ctx.get('bnorm_isa', '?')}, {ctx.get('build', '?')}, "
            f"{ctx.get('omp_threads', '?')} threads, {ctx.get('cpu_model', '?')} "
            f"({ctx.get('num_cpus', '?')} CPUs{caches(ctx)})")


def activation_table(ctx, runs, stat):
    """Prints the activation table; returns its values {(pass, shape): {column: x}}."""
    shapes = list(OrderedDict((k[2], None) for k in runs
                              if k[0] in dict(ACT_PASSES) and k[1] == "bnorm"))
    if not shapes:
        return {}
    head = ["shape", "pass", "BN ms", "+ReLU ms", "ReLU/BN", "+add+ReLU ms", "GB/s", "floor ms",
            "/floor", "ReLU/sep", "add+ReLU/sep"]
    cols = ["relu/bn", "/floor", "relu/sep", "add/sep"]
    rows, values = [head], {}
    for shape in shapes:
        for pas, label in ACT_PASSES:
            key = (pas, "bnorm", shape)
            if not runs.get(key):
                continue
            v = act_values(key, runs[key], stat)
            values[(pas, shape)] = {c: v[c] for c in cols if v[c] is not None}
            rows.append([shape, label, fmt_ms(v["bn"]), fmt_ms(v["relu"]), fmt_x(v["relu/bn"]),
                         fmt_ms(v["ms"]),
                         fmt_rate(v["bytes"] / (v["ms"] * 1e-3) / 1e9) if v["bytes"] else "",
                         f"{fmt_ms(v['floor'])} {v['nt']}" if v["floor"] else "",
                         fmt_x(v["/floor"]), fmt_x(v["relu/sep"]), fmt_x(v["add/sep"])])
    summary = []
    for pas, label in ACT_PASSES:
        g = {c: gmean([v[c] for (p, _), v in values.items() if p == pas and c in v]) for c in cols}
        if any(g.values()):
            summary.append(["geomean", label, "", "", fmt_x(g["relu/bn"]), "", "", "",
                            fmt_x(g["/floor"]), fmt_x(g["relu/sep"]), fmt_x(g["add/sep"])])
    print(f"\nBatchNorm2d + ReLU, BatchNorm2d + residual + ReLU: NCHW, float32 | {machine(ctx)}")
    print_table(rows, summary)
    return values


def other_ranks_table(ctx, times, floors, traffic, shapes):
    """Prints the BatchNorm1d/3d table; returns {(pass, shape): {"floor": x}}."""
    head = ["shape", "view", "pass", "bnorm ms", "GB/s", "floor ms", "/floor"]
    rows, values = [head], {}
    for impl, view in OTHER_RANKS:
        for shape in shapes:
            for pas, label in PASSES:
                key = (pas, impl, shape)
                if key not in times:
                    continue
                bn = times[key]
                fl, kind, ratio = floors.get(key, (None, "", None))
                nbytes = traffic.get(key)
                rows.append([shape, view, label, fmt_ms(bn),
                             fmt_rate(nbytes / (bn * 1e-3) / 1e9) if nbytes else "",
                             f"{fmt_ms(fl)} {kind}" if fl else "", fmt_x(ratio)])
                if ratio:
                    values[(pas, shape)] = {"floor": ratio}
    if len(rows) == 1:
        return {}
    # print_table left-aligns the first two columns only
    width = [max(len(str(r[i])) for r in rows) for i in range(len(head))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, width))).rstrip()
    print(f"\nBatchNorm1d and BatchNorm3d, no activation: float32 | {machine(ctx)}")
    print(line(rows[0]))
    print("  ".join("-" * w for w in width))
    for r in rows[1:]:
        print(line(r))
    return values


def check_bounds(what, got, bound, label):
    """One target line: got = [(value, pass label, shape)], each to be <= bound."""
    if not got:
        return
    miss = [g for g in got if g[0] > bound]
    if not miss:
        print(f"  met     {what} ({label}, {len(got)} rows)")
    else:
        worst = max(miss)
        print(f"  MISSED  {what} ({label}): {len(miss)} of {len(got)} rows, worst "
              f"{worst[0]:.2f}x ({worst[2]} {worst[1]})")


def check_activation_targets(act, other):
    """The targets of issue 15 for the activation table, and BN's /floor targets (issue 14) for
    the residual + ReLU rows and the BatchNorm1d/3d rows."""
    names = dict(ACT_PASSES)

    def got(values, passes, col, which=lambda sh: True, labels=names):
        return [(v[col], labels[p], sh) for (p, sh), v in values.items()
                if p in passes and col in v and which(sh)]
    def big(sh):
        return tensor_bytes(sh) > BIG_TENSOR
    check_bounds("BN + ReLU over BN alone <= 1.05", got(act, ["act_fwd"], "relu/bn"), 1.05,
                 "train fwd")
    check_bounds("BN + ReLU over BN alone <= 1.10", got(act, ["act_bwd"], "relu/bn"), 1.10,
                 "backward")
    check_bounds("BN + residual + ReLU, every shape: /floor <= 2.0",
                 got(act, ["act_fwd", "act_bwd"], "/floor"), 2.0, "train fwd/backward")
    check_bounds("BN + residual + ReLU, tensors over 64 MB: /floor <= 1.25",
                 got(act, ["act_fwd", "act_bwd"], "/floor", big), 1.25, "train fwd/backward")
    labels = dict(PASSES)
    for what, passes, col, bound, which in TARGETS:
        if col == "floor":
            check_bounds(f"BatchNorm1d/3d, {what}", got(other, passes, "floor", which, labels),
                         bound, "/".join(labels[p] for p in passes))
