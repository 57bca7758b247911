"""Operators: the geometry convention, exact adjoints (dot tests), known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import (
    Binning,
    Crop,
    GaussianBlur,
    KernelBlur,
    RowSampling,
    Scaled,
    ScanModel,
    SliceProjector,
    Stack,
    dot_test,
    scan_operator,
)

TOL = 1e-5  # an exact adjoint: float32 round-off, accumulated in float64


def _geom(n=12, cols=20, rows=10, pixel=20.0, offset=(0.0, 0.0), shifts=None, arc=180.0):
    angles = np.arange(n) * arc / n
    return ScanGeometry(angles, pixel, (rows, cols), offset, shifts)


@pytest.mark.parametrize("theta", [0.0, 30.0, 90.0, 135.0])
def test_point_projects_to_u(theta):
    """A voxel at (x, y) lands on the column whose centre is u = x cos θ + y sin θ."""
    grid = VolumeGrid((1, 41, 41), 10.0)
    g = ScanGeometry(np.array([theta]), 10.0, (1, 61))
    P = SliceProjector(g, grid, 1, supersampling=4)
    iy, ix = 30, 12  # y grows with the row index
    x_nm = (ix - 20) * 10.0
    y_nm = (iy - 20) * 10.0
    vol = np.zeros((41, 41, 1), np.float32)
    vol[iy, ix, 0] = 1.0
    proj = P(vol)[0, :, 0]
    c = np.arange(61)
    u_cols = (c - 30) * 10.0
    centre = (proj * u_cols).sum() / proj.sum()
    t = np.deg2rad(theta)
    # within a third of a pixel: ASTRA's linear kernel samples the voxel's footprint
    assert centre == pytest.approx(x_nm * np.cos(t) + y_nm * np.sin(t), abs=3.5)
    assert proj.sum() == pytest.approx(0.01, rel=0.03)  # one voxel of 10 nm = 0.01 µm


def test_shift_sign_convention():
    """A measured image displacement dx moves the modelled projection by +dx pixels."""
    grid = VolumeGrid((1, 31, 31), 10.0)
    vol = np.zeros((31, 31, 1), np.float32)
    vol[15, 18, 0] = 1.0
    base = ScanGeometry(np.array([0.0]), 10.0, (1, 41))
    moved = base.with_shifts(np.array([[0.0, 2.0]]))
    p0 = SliceProjector(base, grid, 1, supersampling=1)(vol)[0, :, 0]
    p1 = SliceProjector(moved, grid, 1, supersampling=1)(vol)[0, :, 0]
    c = np.arange(41)
    assert (p1 * c).sum() / p1.sum() - (p0 * c).sum() / p0.sum() == pytest.approx(2.0, abs=1e-3)


def test_projector_dot_and_truncated_offset_detector():
    grid = VolumeGrid((3, 24, 24), 10.0)
    g = _geom(
        cols=9, pixel=15.0, offset=(0.0, 3.5), shifts=np.random.default_rng(0).normal(size=(12, 2))
    )
    P = SliceProjector(g, grid, 3)
    assert P.range_shape == (12, 9, 3)
    assert dot_test(P) < TOL


def test_row_sampling_dot_and_averaging():
    grid = VolumeGrid((12, 8, 8), 10.0)
    rng = np.random.default_rng(1)
    g = _geom(rows=5, pixel=20.0, shifts=rng.normal(scale=0.7, size=(12, 2)))
    R = RowSampling(g, grid, np.arange(1, 4), (2, 10), n_cols=7)
    assert dot_test(R) < TOL
    # without shifts, a 2x pixel averages two slices
    g0 = _geom(rows=6, pixel=20.0)
    R0 = RowSampling(g0, grid, np.arange(6), (0, 12), n_cols=1)
    x = np.broadcast_to(np.arange(12, dtype=np.float32), (12, 1, 12)).copy()
    np.testing.assert_allclose(R0(x)[0, 0], [0.5, 2.5, 4.5, 6.5, 8.5, 10.5], atol=1e-6)


def test_diagonal_dot_and_known_answer():
    """Multiplication by broadcast weights: self-adjoint, and a mask composed around an
    operator leaves what it masks out (SIRT with data weights and a support)."""
    from sxtdist.operators.base import Diagonal

    rng = np.random.default_rng(3)
    w = rng.random((4, 5, 1))
    D = Diagonal(w, (4, 5, 3))
    assert dot_test(D) < TOL
    x = rng.random((4, 5, 3))
    np.testing.assert_array_equal(D(x), x * w)
    out = np.empty_like(x)
    assert D.T(x, out) is out
    np.testing.assert_array_equal(out, x * w)


def test_blur_crop_binning_dot():
    rng = np.random.default_rng(2)
    shape = (4, 15, 11)
    assert dot_test(GaussianBlur(shape, (1.3, 0.8))) < TOL
    assert dot_test(KernelBlur(shape, rng.random((5, 3)))) < TOL
    assert dot_test(Crop(shape, ((0, 4), (2, 13), (1, 10)))) < TOL
    assert dot_test(Binning((4, 16, 12), (2, 3))) < TOL
    b = Binning((1, 4, 2), (2, 2))(np.arange(8, dtype=np.float32).reshape(1, 4, 2))
    np.testing.assert_allclose(b[0, :, 0], [1.5, 5.5])


def test_blur_conserves_interior_mass():
    y = np.zeros((1, 31, 31), np.float32)
    y[0, 15, 15] = 1.0
    out = GaussianBlur(y.shape, (2.0, 2.0))(y)
    assert out.sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("psf", [0.0, 0.6])
def test_scan_operator_and_stack_dot(psf):
    rng = np.random.default_rng(3)
    grid = VolumeGrid((16, 20, 20), 10.0)
    full = ScanModel(
        _geom(n=5, cols=10, rows=12, pixel=20.0, shifts=rng.normal(scale=0.3, size=(5, 2))), psf
    )
    roi = ScanModel(
        _geom(
            n=15,
            cols=12,
            rows=24,
            pixel=10.0,
            offset=(0.0, 2.0),
            shifts=rng.normal(scale=0.5, size=(15, 2)),
        ),
        psf,
    )
    grid = VolumeGrid((24, 20, 20), 10.0)
    slab = (0, 20)
    ops = []
    for m in (full, roi):
        rows = m.rows_for_slab(grid, slab)
        assert rows.size > 0
        op = scan_operator(m, grid, slab, rows)
        assert dot_test(op) < TOL
        ops.append(op)
    assert dot_test(Stack(ops, weights=[0.5, 2.0])) < TOL
    scaled = Scaled(ops[0], 3.0)
    assert dot_test(scaled) < TOL


def test_scaled_adjoint_is_c_times_the_adjoint_and_leaves_its_input():
    """Its adjoint scales the data into a buffer it keeps: each result is its own array
    and the input is not touched."""
    rng = np.random.default_rng(4)
    op = RowSampling(_geom(n=3, rows=6), VolumeGrid((6, 4, 4), 10.0), np.arange(6), (0, 6), 5)
    scaled = Scaled(op, 2.5)
    y1, y2 = (rng.standard_normal(op.range_shape).astype(np.float32) for _ in range(2))
    kept = y1.copy()
    a1 = scaled.T(y1)
    a2 = scaled.T(y2)
    np.testing.assert_array_equal(y1, kept)
    np.testing.assert_allclose(a1, 2.5 * op.T(y1), rtol=1e-6)
    np.testing.assert_allclose(a2, 2.5 * op.T(y2), rtol=1e-6)
    np.testing.assert_allclose(scaled(a1), 2.5 * op(a1), rtol=1e-6)


def test_rows_for_slab_cover_each_row_once():
    """Rows are assigned to exactly the slabs that contain their footprint."""
    grid = VolumeGrid((16, 8, 8), 10.0)
    m = ScanModel(_geom(rows=8, pixel=20.0))
    got = np.concatenate([m.rows_for_slab(grid, (z, z + 4)) for z in range(0, 16, 4)])
    np.testing.assert_array_equal(np.sort(got), np.arange(8))
