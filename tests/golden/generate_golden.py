#!/usr/bin/env python3
"""Generate tests/golden/golden.txt: reference BatchNorm2d results from PyTorch, and
tests/golden/golden_ranks.txt: BatchNorm1d and BatchNorm3d ones, and
tests/golden/golden_activation.txt: BatchNorm2d followed by ReLU, by a residual add, or both.

Run with Debian's python, where python3-torch is installed:

    /usr/bin/python3 tests/golden/generate_golden.py             # golden.txt
    /usr/bin/python3 tests/golden/generate_golden.py ranks       # golden_ranks.txt
    /usr/bin/python3 tests/golden/generate_golden.py activation  # golden_activation.txt
    /usr/bin/python3 tests/golden/generate_golden.py bfloat16    # golden_bfloat16.txt

The output is a whitespace-token text file (format in tests/golden/README.md).
Inputs come from seeded NumPy generators (one per case), so the file is
reproducible for a given torch build; torch runs single-threaded so its
reductions are summed in a fixed order.
"""
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as exc:  # pragma: no cover
    sys.exit(
        "generate_golden.py needs PyTorch and NumPy (%s).\n"
        "Install them with `apt-get install -y python3-torch` and run with "
        "/usr/bin/python3 tests/golden/generate_golden.py" % exc
    )

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden.txt")
OUT_RANKS = os.path.join(HERE, "golden_ranks.txt")  # `generate_golden.py ranks`
OUT_ACTIVATION = os.path.join(HERE, "golden_activation.txt")  # `generate_golden.py activation`
OUT_BFLOAT16 = os.path.join(HERE, "golden_bfloat16.txt")  # `generate_golden.py bfloat16`
FORMAT_VERSION = 1

TRAIN_STEPS = 3
EVAL_STEPS = 2


def fmt(values, dtype):
    """float64 with 17 digits, float32 and bfloat16 (exact in float32) with 9."""
    spec = "%.17g" if dtype == "float64" else "%.9g"
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().float().numpy() if values.dtype == torch.bfloat16 \
            else values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64 if dtype == "float64" else np.float32)
    return " ".join(spec % float(v) for v in arr.reshape(-1))


def face(shape):
    """The NCHW face of a BatchNorm1d/2d/3d input shape: (N, C, 1, L), (N, C, H, W),
    (N, C, D*H, W); the values keep their contiguous order."""
    if len(shape) == 2:
        return (shape[0], shape[1], 1, 1)
    if len(shape) == 3:
        return (shape[0], shape[1], 1, shape[2])
    if len(shape) == 5:
        return (shape[0], shape[1], shape[2] * shape[3], shape[4])
    return tuple(shape)


def tensor_record(key, t, dtype):
    a = t.detach().cpu().float().numpy() if t.dtype == torch.bfloat16 else t.detach().cpu().numpy()
    n, c, h, w = face(a.shape)
    return "%s %d %d %d %d %s" % (key, n, c, h, w, fmt(a, dtype))


def vector_record(key, t, dtype):
    return "%s %s" % (key, fmt(t, dtype))


MODULES = {"1d": torch.nn.BatchNorm1d, "2d": torch.nn.BatchNorm2d, "3d": torch.nn.BatchNorm3d}


def run_case(lines, name, shape, dtype="float64", eps=1e-5, momentum=0.1,
             affine=True, track=True, seed=0,
             steps=("train",) * TRAIN_STEPS + ("eval",) * EVAL_STEPS, module="2d"):
    c = shape[1]
    # bfloat16: torch's mixed type, bfloat16 data with a float32 module (weight, bias, buffers)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    npdtype = np.float64 if dtype == "float64" else np.float32
    data_type = torch.bfloat16 if dtype == "bfloat16" else tdtype
    rng = np.random.RandomState(seed)
    torch.manual_seed(seed)

    bn = MODULES[module](c, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track).to(tdtype)
    lines.append("case %s" % name)
    if module != "2d":
        lines.append("module %s" % module)
    lines.append("dtype %s" % dtype)
    lines.append("options eps %s momentum %s affine %d track %d" % (
        "%.17g" % eps, "none" if momentum is None else "%.17g" % momentum,
        int(affine), int(track)))
    lines.append("features %d" % c)
    if affine:
        wv = rng.uniform(0.5, 1.5, size=c).astype(npdtype)
        bv = rng.standard_normal(size=c).astype(npdtype)
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(wv))
            bn.bias.copy_(torch.from_numpy(bv))
        lines.append(vector_record("weight", bn.weight, dtype))
        lines.append(vector_record("bias", bn.bias, dtype))

    # Per-channel offset and scale, fixed for the case, so running stats converge
    # towards something recognisable and channels differ from each other.
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    offset = rng.uniform(-5.0, 5.0, size=per_channel)
    scale = rng.uniform(0.5, 3.0, size=per_channel)

    for mode in steps:
        bn.train(mode == "train")
        xv = (scale * rng.standard_normal(size=shape) + offset).astype(npdtype)
        dyv = rng.standard_normal(size=shape).astype(npdtype)
        x = torch.from_numpy(xv).to(data_type).requires_grad_(True)
        dy = torch.from_numpy(dyv).to(data_type)
        if affine:
            bn.weight.grad = None
            bn.bias.grad = None
        y = bn(x)
        y.backward(dy)

        lines.append("step %s" % mode)
        if module != "2d":
            lines.append("extents %d %s" % (len(shape), " ".join(str(e) for e in shape)))
        lines.append(tensor_record("x", x, dtype))
        lines.append(tensor_record("dy", dy, dtype))
        lines.append(tensor_record("y", y, dtype))
        lines.append(tensor_record("dx", x.grad, dtype))
        if affine:
            lines.append(vector_record("dweight", bn.weight.grad, dtype))
            lines.append(vector_record("dbias", bn.bias.grad, dtype))
        if track:
            lines.append(vector_record("running_mean", bn.running_mean, dtype))
            lines.append(vector_record("running_var", bn.running_var, dtype))
            lines.append("num_batches_tracked %d" % int(bn.num_batches_tracked))
        lines.append("endstep")
    lines.append("endcase")


def other_ranks(lines):
    """BatchNorm1d on (N, C) and (N, C, L) inputs, BatchNorm3d on (N, C, D, H, W)."""
    seed = 2000
    cases = [("1d", (6, 3)), ("1d", (4, 3, 5)), ("1d", (2, 5, 1)), ("3d", (2, 3, 2, 3, 4)),
             ("3d", (1, 2, 3, 1, 5))]
    for i, (module, shape) in enumerate(cases):
        for affine, track, momentum, eps, tag in ((True, True, 0.1, 1e-5, "m01"),
                                                  (False, True, None, 1e-3, "mnone_eps1e-3"),
                                                  (True, False, 0.1, 1e-5, "m01")):
            seed += 1
            name = "bn%s_affine%d_track%d_%s_%s" % (module, int(affine), int(track), tag,
                                                    "x".join(str(e) for e in shape))
            run_case(lines, name, shape, eps=eps, momentum=momentum, affine=affine,
                     track=track, seed=seed, module=module)
    seed += 1
    run_case(lines, "bn1d_float32_affine1_track1_m01_8x4x3", (8, 4, 3), dtype="float32",
             seed=seed, module="1d")
    seed += 1
    run_case(lines, "bn3d_float32_affine1_track1_m01_2x3x2x3x4", (2, 3, 2, 3, 4),
             dtype="float32", seed=seed, module="3d")


# The kinds of golden_activation.txt: (activation, residual) of
# y = act(bn(x) + r) (r only with residual).
ACTIVATION_KINDS = {"relu": ("relu", False), "add_relu": ("relu", True), "add": ("none", True)}
ACTIVATION_STEPS = ("train", "train", "eval")


def run_activation_case(lines, name, kind, shape, dtype="float64", eps=1e-5, momentum=0.1,
                        affine=True, seed=0, steps=ACTIVATION_STEPS):
    """y = F.relu(bn(x)), F.relu(bn(x) + r) or bn(x) + r: the records of run_case, the
    `activation` record after `options`, and `residual` (r) and `dresidual` (its gradient)
    in each step of the residual kinds. BatchNorm2d with tracked running statistics."""
    activation, residual = ACTIVATION_KINDS[kind]
    c = shape[1]
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    npdtype = np.float64 if dtype == "float64" else np.float32
    rng = np.random.RandomState(seed)
    torch.manual_seed(seed)

    bn = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=affine,
                              track_running_stats=True).to(tdtype)
    lines.append("case %s" % name)
    lines.append("dtype %s" % dtype)
    lines.append("options eps %s momentum %s affine %d track %d" % (
        "%.17g" % eps, "none" if momentum is None else "%.17g" % momentum, int(affine), 1))
    lines.append("activation %s residual %d" % (activation, int(residual)))
    lines.append("features %d" % c)
    if affine:
        # Random magnitudes and signs: with a negative weight relu clips where x is above
        # the mean, so the mask is not a function of x_hat's sign.
        sign = np.where(rng.uniform(size=c) < 0.3, -1.0, 1.0)
        wv = (sign * rng.uniform(0.5, 1.5, size=c)).astype(npdtype)
        bv = (0.5 * rng.standard_normal(size=c)).astype(npdtype)
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(wv))
            bn.bias.copy_(torch.from_numpy(bv))
        lines.append(vector_record("weight", bn.weight, dtype))
        lines.append(vector_record("bias", bn.bias, dtype))

    per_channel = (1, c, 1, 1)
    offset = rng.uniform(-5.0, 5.0, size=per_channel)
    scale = rng.uniform(0.5, 3.0, size=per_channel)

    for mode in steps:
        bn.train(mode == "train")
        xv = (scale * rng.standard_normal(size=shape) + offset).astype(npdtype)
        dyv = rng.standard_normal(size=shape).astype(npdtype)
        x = torch.from_numpy(xv).requires_grad_(True)
        dy = torch.from_numpy(dyv)
        r = None
        if residual:
            r = torch.from_numpy(rng.standard_normal(size=shape).astype(npdtype))
            r.requires_grad_(True)
        if affine:
            bn.weight.grad = None
            bn.bias.grad = None
        z = bn(x)
        if residual:
            z = z + r
        y = torch.nn.functional.relu(z) if activation == "relu" else z
        if activation == "relu":
            # No pre-activation value within rounding of 0: there a one-ulp difference between
            # two correct implementations would flip the mask, and the gradients with it.
            margin = 1e-5 if dtype == "float32" else 1e-9
            closest = float(z.detach().abs().min())
            if closest < margin:
                sys.exit("case %s: a pre-activation value %.3g is within %g of 0; "
                         "change the seed" % (name, closest, margin))
            clipped = float((y == 0).double().mean())
            if not 0.2 <= clipped <= 0.8:
                sys.exit("case %s: relu clips %.0f%% of the values" % (name, 100 * clipped))
        y.backward(dy)

        lines.append("step %s" % mode)
        lines.append(tensor_record("x", x, dtype))
        if residual:
            lines.append(tensor_record("residual", r, dtype))
        lines.append(tensor_record("dy", dy, dtype))
        lines.append(tensor_record("y", y, dtype))
        lines.append(tensor_record("dx", x.grad, dtype))
        if residual:
            lines.append(tensor_record("dresidual", r.grad, dtype))
        if affine:
            lines.append(vector_record("dweight", bn.weight.grad, dtype))
            lines.append(vector_record("dbias", bn.bias.grad, dtype))
        lines.append(vector_record("running_mean", bn.running_mean, dtype))
        lines.append(vector_record("running_var", bn.running_var, dtype))
        lines.append("num_batches_tracked %d" % int(bn.num_batches_tracked))
        lines.append("endstep")
    lines.append("endcase")


def activation_cases(lines):
    """Each kind (relu, add_relu, add) in float64 and float32 on three shapes with
    affine=1, momentum 0.1, eps 1e-5, and once with affine=0, cumulative average, eps 1e-3."""
    seed = 3000
    shapes = [(2, 3, 5, 7), (2, 16, 3, 2), (8, 5, 1, 1)]
    for kind in ACTIVATION_KINDS:
        for dtype in ("float64", "float32"):
            for shape in shapes:
                seed += 1
                name = "%s_%s_affine1_m01_%s" % (kind, dtype, "x".join(str(e) for e in shape))
                run_activation_case(lines, name, kind, shape, dtype=dtype, seed=seed)
            seed += 1
            shape = (3, 4, 2, 5)
            name = "%s_%s_affine0_mnone_eps1e-3_%s" % (kind, dtype,
                                                       "x".join(str(e) for e in shape))
            run_activation_case(lines, name, kind, shape, dtype=dtype, eps=1e-3,
                                momentum=None, affine=False, seed=seed)


def bfloat16_cases(lines):
    """torch's mixed-type batch norm: bfloat16 x, dy, y and dx, float32 weight, bias, running
    buffers and parameter gradients; BatchNorm2d, 1d and 3d. (torch 1.13 has no CPU batch norm
    for float16.)"""
    seed = 4000
    cases = [("2d", (4, 3, 5, 7), True, True, 0.1, 1e-5, "m01"),
             ("2d", (2, 16, 4, 4), True, True, None, 1e-5, "mnone"),
             ("2d", (3, 5, 6, 2), False, True, 0.1, 1e-3, "m01_eps1e-3"),
             ("2d", (8, 4, 1, 1), True, False, 0.1, 1e-5, "m01"),
             ("1d", (16, 6), True, True, 0.1, 1e-5, "m01"),
             ("1d", (4, 5, 9), True, True, 0.1, 1e-5, "m01"),
             ("3d", (2, 3, 2, 3, 4), True, True, 0.1, 1e-5, "m01")]
    for module, shape, affine, track, momentum, eps, tag in cases:
        seed += 1
        name = "bf16_bn%s_affine%d_track%d_%s_%s" % (module, int(affine), int(track), tag,
                                                     "x".join(str(e) for e in shape))
        run_case(lines, name, shape, dtype="bfloat16", eps=eps, momentum=momentum,
                 affine=affine, track=track, seed=seed, module=module)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    lines = ["bnorm-golden %d" % FORMAT_VERSION, "torch %s" % torch.__version__]
    if sys.argv[1:] == ["ranks"]:
        other_ranks(lines)
        write(lines, OUT_RANKS)
        return
    if sys.argv[1:] == ["activation"]:
        activation_cases(lines)
        write(lines, OUT_ACTIVATION)
        return
    if sys.argv[1:] == ["bfloat16"]:
        bfloat16_cases(lines)
        write(lines, OUT_BFLOAT16)
        return
    if sys.argv[1:]:
        sys.exit("usage: generate_golden.py [ranks|activation|bfloat16]")

    seed = 1000
    shapes = [(2, 3, 4, 5), (3, 2, 3, 1), (1, 4, 2, 3), (2, 3, 4, 5)]
    # Every (affine, track) pair; with track=1 every momentum kind. Without
    # tracked statistics momentum has no effect, so one case per affine value.
    combos = []
    for affine in (False, True):
        combos.append(dict(affine=affine, track=False, momentum=0.1, eps=1e-5, tag="m01"))
        combos.append(dict(affine=affine, track=True, momentum=0.1, eps=1e-5, tag="m01"))
        combos.append(dict(affine=affine, track=True, momentum=None, eps=1e-5, tag="mnone"))
        combos.append(dict(affine=affine, track=True, momentum=0.3, eps=1e-3, tag="m03_eps1e-3"))
    for i, cb in enumerate(combos):
        shape = shapes[i % len(shapes)]
        name = "affine%d_track%d_%s_%dx%dx%dx%d" % ((int(cb["affine"]), int(cb["track"]), cb["tag"]) + shape)
        seed += 1
        run_case(lines, name, shape, eps=cb["eps"], momentum=cb["momentum"],
                 affine=cb["affine"], track=cb["track"], seed=seed)

    # Spatial extent 1: M = N = 4 values per channel.
    seed += 1
    run_case(lines, "hw1_n4_affine1_track1_m01_4x3x1x1", (4, 3, 1, 1),
             momentum=0.1, affine=True, track=True, seed=seed)
    # Single sample, H*W > 1: M = H*W.
    seed += 1
    run_case(lines, "n1_affine1_track1_mnone_1x3x2x4", (1, 3, 2, 4),
             momentum=None, affine=True, track=True, seed=seed)
    # float32 (values written with 9 significant digits, exact for float32).
    seed += 1
    run_case(lines, "float32_affine1_track1_m01_2x3x4x5", (2, 3, 4, 5), dtype="float32",
             momentum=0.1, affine=True, track=True, seed=seed)

    write(lines, OUT)


def write(lines, out):
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    size = os.path.getsize(out)
    ncases = sum(1 for l in lines if l.startswith("case "))
    nsteps = sum(1 for l in lines if l.startswith("step "))
    print("wrote %s: %d bytes, %d cases, %d steps, torch %s" % (out, size, ncases, nsteps, torch.__version__))
    if size >= 1 << 20:
        sys.exit("%s is larger than 1 MB" % os.path.basename(out))


if __name__ == "__main__":
    main()
