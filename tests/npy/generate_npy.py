#!/usr/bin/env python3
"""Writes the small .npy files that tests/test_npy.cpp reads, with NumPy's own writer.

The files are committed, so the tests need no NumPy; rerun this (Debian: python3-numpy) only
to change them:  /usr/bin/python3 tests/npy/generate_npy.py
Values are exact in binary (multiples of 1/4), so the test can state them.
"""
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def save(name, array, version=None):
    with open(os.path.join(here, name), "wb") as f:
        np.lib.format.write_array(f, array, version=version, allow_pickle=False)


grid = np.arange(120).reshape(2, 3, 4, 5) * 0.25 - 7  # x[n, c, h, w] = (60n + 20c + 5h + w)/4 - 7
save("f32_2x3x4x5.npy", grid.astype(np.float32))
save("f64_2x3x4x5_v2.npy", grid.astype(np.float64), version=(2, 0))
save("f64_be_1x2x3x1.npy", (np.arange(6).reshape(1, 2, 3, 1) * 0.5).astype(">f8"))
save("f64_vec3.npy", np.array([1.5, -2.25, 1e-300]))
save("f64_scalar.npy", np.array(2.5))
save("f32_fortran_2x3.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
save("i32_vec4.npy", np.arange(4, dtype=np.int32))
save("f16_vec4.npy", np.arange(4, dtype=np.float16))
