"""The solvers' per-slice vector operations and the slab transpose: numpy against a known
answer here, the fused cupy kernels against numpy on the device (``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from sxtdist.slice_kernels import axpy_last, sumsq_last, transpose_2d, xpby_last

SHAPES = [(7, 5, 3), (64, 64, 1), (3, 33, 65), (1, 1, 300), (40, 50, 257)]


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    v, p = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    a = rng.standard_normal(shape[-1]).astype(np.float32)
    return v, p, a


def test_numpy_path_known_answers():
    v = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    np.testing.assert_array_equal(
        sumsq_last(v), [0 + 9 + 36 + 81, 1 + 16 + 49 + 100, 4 + 25 + 64 + 121]
    )
    x = np.ones((2, 2, 3), np.float32)
    axpy_last(x, np.array([0, 1, 2], np.float32), v)
    np.testing.assert_array_equal(x[1, 1], [1 + 0, 1 + 10, 1 + 22])
    p = np.ones((2, 2, 3), np.float32)
    xpby_last(p, np.array([0, 1, 2], np.float32), v)
    np.testing.assert_array_equal(p[1, 1], [9, 10 + 1, 11 + 2])


def test_sums_of_squares_are_float64_products():
    """CG's per-slice scalars: squares and sums in float64, so neither underflow (1e-23² is
    0 in float32) nor rounding of 2²⁴ + 1 float32 terms loses them."""
    v = np.full((4, 2, 2), 1e-23, np.float32)
    v[..., 1] = 3.0
    got = sumsq_last(v)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [8 * float(np.float32(1e-23)) ** 2, 72.0], rtol=1e-12)
    big = np.full((2**12, 2**12 + 1, 1), 1.0, np.float32)
    assert sumsq_last(big)[0] == 2**24 + 2**12


def test_numpy_transpose_turns_a_slab_between_layouts():
    x = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)  # (ny, nx, nz)
    t = transpose_2d(x, 20, 6, 2.0).reshape(6, 4, 5)
    np.testing.assert_array_equal(t, 2 * x.transpose(2, 0, 1))
    assert t.flags.c_contiguous
    out = np.empty((4, 5, 6), np.float32)
    assert transpose_2d(t, 6, 20, 0.5, out=out) is out
    np.testing.assert_array_equal(out, x)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_device_kernels_match_numpy(shape):
    import cupy as cp

    v, p, a = _arrays(shape)
    ref = (v.astype(np.float64) ** 2).sum(axis=(0, 1))
    got = cp.asnumpy(sumsq_last(cp.asarray(v)))
    assert np.abs(got - ref).max() <= 1e-12 * max(ref.max(), 1.0)
    for fn in (axpy_last, xpby_last):
        want, dev = v.copy(), cp.asarray(v)
        fn(want, a, p)
        fn(dev, cp.asarray(a), cp.asarray(p))
        np.testing.assert_allclose(cp.asnumpy(dev), want, rtol=1e-6, atol=1e-6)
    rows, cols = shape[0] * shape[1], shape[2]
    t = transpose_2d(cp.asarray(v), rows, cols, 3.0)
    np.testing.assert_array_equal(cp.asnumpy(t), transpose_2d(v, rows, cols, 3.0))
    out = cp.full(shape, cp.nan, cp.float32)
    assert transpose_2d(t, cols, rows, 1 / 3.0, out=out) is out
    np.testing.assert_allclose(cp.asnumpy(out), v, rtol=1e-6)
