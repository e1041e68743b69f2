#!/usr/bin/env python3
"""Cross-checks the bnorm_npy tool against torch.nn.BatchNorm2d, as a NumPy user would.

    python3 examples/bnorm_npy_check.py BUILD/examples/bnorm_npy

Needs NumPy and PyTorch (Debian: python3-numpy, python3-torch). For float32 and float64 and a
range of options it draws seeded random inputs, saves them with numpy.save, runs bnorm_npy on
them, loads its outputs with numpy.load and compares them with torch's: y, dx, dweight, dbias,
the running statistics and the saved mean and invstd. Prints one line per case and exits 1 if a
relative difference exceeds 1e-5 (float32) or 1e-12 (float64).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

CASES = [  # name, bnorm_npy options, train, affine, track, momentum, eps, given buffers
    ("train", [], True, True, True, 0.1, 1e-5, False),
    ("train momentum=None", ["--momentum", "none"], True, True, True, None, 1e-5, False),
    ("train no-affine eps=1e-3", ["--no-affine", "--eps", "1e-3"], True, False, True, 0.1, 1e-3,
     False),
    ("train buffers momentum=0.3", ["--momentum", "0.3"], True, True, True, 0.3, 1e-5, True),
    ("train staged", ["--variant", "staged"], True, True, True, 0.1, 1e-5, False),
    ("train no-track", ["--no-track"], True, True, False, 0.1, 1e-5, False),
    ("eval buffers", ["--eval"], False, True, True, 0.1, 1e-5, True),
    ("eval buffers staged", ["--eval", "--variant", "staged"], False, True, True, 0.1, 1e-5, True),
    ("eval no-track", ["--eval", "--no-track"], False, True, False, 0.1, 1e-5, False),
]


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ref = np.abs(b).max() if b.size else 0.0
    diff = np.abs(a - b).max() if b.size else 0.0
    return diff / ref if ref > 0 else diff


def run_case(tool, work, dtype, case, seed):
    name, flags, train, affine, track, momentum, eps, buffers = case
    rng = np.random.default_rng(seed)
    n, c, h, w = 4, 3, 5, 7
    x = (rng.normal(size=(n, c, h, w)) * rng.uniform(0.5, 2, (1, c, 1, 1))
         + rng.normal(size=(1, c, 1, 1)) * 3).astype(dtype)
    dy = rng.normal(size=(n, c, h, w)).astype(dtype)
    weight = rng.uniform(0.5, 2, c).astype(dtype)
    bias = rng.uniform(-1, 1, c).astype(dtype)
    rmean = rng.normal(size=c).astype(dtype)
    rvar = rng.uniform(0.5, 2, c).astype(dtype)

    files = {"x": x, "dy": dy, "weight": weight, "bias": bias, "rm": rmean, "rv": rvar}
    for key, value in files.items():
        np.save(os.path.join(work, key + ".npy"), value)
    args = [tool, *flags, "--dy", os.path.join(work, "dy.npy")]
    if affine:
        args += ["--weight", os.path.join(work, "weight.npy"), "--bias",
                 os.path.join(work, "bias.npy")]
    if buffers:
        args += ["--running-mean", os.path.join(work, "rm.npy"), "--running-var",
                 os.path.join(work, "rv.npy")]
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    args += [os.path.join(work, "x.npy"), out]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    got = {f[:-4]: np.load(os.path.join(out, f)) for f in os.listdir(out)}

    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    bn = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=affine,
                              track_running_stats=track).to(tdtype)
    with torch.no_grad():
        if affine:
            bn.weight.copy_(torch.from_numpy(weight))
            bn.bias.copy_(torch.from_numpy(bias))
        if buffers:
            bn.running_mean.copy_(torch.from_numpy(rmean))
            bn.running_var.copy_(torch.from_numpy(rvar))
    bn.train(train)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = bn(tx)
    ty.backward(torch.from_numpy(dy))
    want = {"y": ty.detach().numpy(), "dx": tx.grad.numpy()}
    if affine:
        want["dweight"], want["dbias"] = bn.weight.grad.numpy(), bn.bias.grad.numpy()
    batch = train or not track
    xd = x.astype(np.float64)
    mean = xd.mean(axis=(0, 2, 3)) if batch else rmean.astype(np.float64)
    var = xd.var(axis=(0, 2, 3)) if batch else rvar.astype(np.float64)
    want["mean"], want["invstd"] = mean, 1 / np.sqrt(var + eps)
    if train and track:
        want["running_mean"] = bn.running_mean.numpy()
        want["running_var"] = bn.running_var.numpy()

    if sorted(got) != sorted(want):
        raise SystemExit(f"{name}: bnorm_npy wrote {sorted(got)}, expected {sorted(want)}")
    for key, value in got.items():
        if value.dtype != dtype or value.shape != np.shape(want[key]):
            raise SystemExit(f"{name}: {key}.npy is {value.dtype} {value.shape}")
    return {key: rel(got[key], want[key]) for key in want}


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    tool = os.path.abspath(sys.argv[1])
    torch.set_num_threads(1)
    ok = True
    print(f"bnorm_npy vs torch.nn.BatchNorm2d (torch {torch.__version__}, numpy "
          f"{np.__version__}): largest relative difference per output")
    with tempfile.TemporaryDirectory() as work:
        for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
            for seed, case in enumerate(CASES):
                diffs = run_case(tool, work, dtype, case, seed)
                worst = max(diffs.values())
                ok = ok and worst <= tol
                cells = "  ".join(f"{k} {v:.1e}" for k, v in diffs.items())
                flag = "" if worst <= tol else "  <- exceeds tolerance"
                print(f"{np.dtype(dtype).name:8} {case[0]:27} {cells}{flag}")
    print("bnorm_npy check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
