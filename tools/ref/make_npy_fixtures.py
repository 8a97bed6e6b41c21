#!/usr/bin/python3
"""Writes the small .npy fixtures of tests/test_npy.c into tests/fixtures/npy/.

Run from anywhere with Debian's python3 (numpy from python3-numpy):
    /usr/bin/python3 tools/ref/make_npy_fixtures.py

The C test computes its expectations from the same formulas, so no expected
values are stored:
    grid(r, c)   value[i, j] = i * 10 + j * 0.5 + offset (exact in float16/32/64)
    f8_2x3       F8_VALUES below, expected as (float)x in C
    f2_2x7       F2_VALUES below, every one exactly representable in float16
"""
import os
import numpy as np
from numpy.lib import format as npformat

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "..", "..", "tests", "fixtures", "npy")

F8_VALUES = [0.1, 1.0 / 3.0, -2.5, 1e-40, 3.4028234663852886e38,
             123456789.123]
F2_VALUES = [0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0,
             2.0 ** -24, 1023 * 2.0 ** -24, 2.0 ** -14, 0.333251953125,
             1.0 + 2.0 ** -10, float("inf"), float("-inf"), float("nan")]


def grid(rows, cols, dtype, offset=0.0):
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (i * 10 + j * 0.5 + offset).astype(dtype)


def save(name, arr, version=None):
    path = os.path.join(OUT, name)
    if version is None:
        np.save(path, arr, allow_pickle=False)
    else:
        with open(path, "wb") as f:
            npformat.write_array(f, arr, version=version, allow_pickle=False)
    size = os.path.getsize(path)
    assert size < 2048, (name, size)
    print(f"{name}: {arr.dtype.str} {arr.shape} {size} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    # readable
    save("f4_3x4.npy", grid(3, 4, "<f4"))
    save("f8_2x3.npy", np.array(F8_VALUES, dtype="<f8").reshape(2, 3))
    f2 = np.array(F2_VALUES, dtype="<f2").reshape(2, 7)
    assert all(float(a) == b or (a != a and b != b)
               for a, b in zip(f2.ravel(), F2_VALUES)), "F2_VALUES not exact"
    save("f2_2x7.npy", f2)
    save("f4be_2x5.npy", grid(2, 5, ">f4", -7.25))
    save("f4_1d5.npy", (np.arange(5) * 1.5).astype("<f4"))
    save("f4_v2_2x3.npy", grid(2, 3, "<f4", 1.0), version=(2, 0))
    save("f4_v3_3x2.npy", grid(3, 2, "<f4", 2.0), version=(3, 0))
    save("f4_0x4.npy", np.zeros((0, 4), dtype="<f4"))
    # refused
    save("i4_2x3.npy", np.arange(6, dtype="<i4").reshape(2, 3))
    save("b1_2x3.npy", np.arange(6).reshape(2, 3) % 2 == 0)
    save("f4_fortran_3x4.npy", np.asfortranarray(grid(3, 4, "<f4")))
    save("f4_3d.npy", np.zeros((2, 2, 2), dtype="<f4"))
    save("f4_scalar.npy", np.array(1.5, dtype="<f4"))
    # float32 -> float16 as numpy rounds it (duet_npy_write_as, DUET_DTYPE_F16)
    x = f32_to_f16_inputs()
    save("f32_to_f16_in.npy", x)
    save("f32_to_f16_out.npy", x.astype("<f2"))


def f32_to_f16_inputs():
    """256 float32 values where float16 rounding is delicate: ties at every
    scale (half-way between two float16 values, both parities), the edges of
    the subnormals, of the normals and of overflow, specials, then random
    values spread over the float16 range and beyond."""
    v = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, -65520.0, 1e30,
         2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -26,
         1023 * 2.0 ** -24 + 2.0 ** -25, 2.0 ** -14 - 2.0 ** -25, 1e-8, 1e-30,
         1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 2048 + 1, 2048 + 3, 0.1, 1 / 3,
         float("inf"), float("-inf"), float("nan")]
    rng = np.random.default_rng(16)
    for e in range(-24, 16):  # ties at exponents -24 .. 15 (ulp 2^(e-10))
        k = int(rng.integers(0, 1024))
        ulp = 2.0 ** max(e - 10, -24)
        v.append(((1024 + k) if e >= -14 else k) * ulp + ulp / 2)
    n = 256 - len(v)
    mant = rng.uniform(1, 2, n)
    expo = rng.integers(-27, 17, n)
    sign = rng.choice([-1.0, 1.0], n)
    v.extend(sign * mant * 2.0 ** expo)
    return np.array(v, dtype="<f4")


if __name__ == "__main__":
    main()
