"""The rigid-translation gauge of per-view shifts (sxtdist.geometry)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sxtdist.geometry import (
    ScanGeometry,
    rigid_translation_nm,
    scan_angles,
    translation_shifts_px,
    without_rigid_translation,
)

GEOMS = {
    "full": ScanGeometry(scan_angles(9), 120.0, (64, 64)),
    "roi": ScanGeometry(scan_angles(90), 60.0, (64, 60)),
}


def test_translation_moves_views_as_projection_says():
    # a translation along x shows as +t/p columns at 0 deg, along y at 90 deg; z as rows
    g = ScanGeometry(np.array([0.0, 90.0]), 50.0, (8, 8))
    d = translation_shifts_px((100.0, 200.0, -50.0), g)
    np.testing.assert_allclose(d, [[2.0, 4.0], [2.0, -1.0]], atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    t=st.lists(st.floats(-500, 500), min_size=3, max_size=3),
    seed=st.integers(0, 2**31 - 1),
)
def test_rigid_part_is_found_and_removing_it_ignores_any_translation(t, seed):
    rng = np.random.default_rng(seed)
    pure = {n: translation_shifts_px(t, g) for n, g in GEOMS.items()}
    np.testing.assert_allclose(rigid_translation_nm(pure, GEOMS), t, atol=1e-8)
    jitter = {n: rng.normal(0, 2, (g.n_angles, 2)) for n, g in GEOMS.items()}
    moved = {n: jitter[n] + pure[n] for n in GEOMS}
    a, _ = without_rigid_translation(jitter, GEOMS)
    b, _ = without_rigid_translation(moved, GEOMS)
    for n in GEOMS:
        np.testing.assert_allclose(a[n], b[n], atol=1e-8)
    # what remains has no rigid part, and the axis (a constant dx) is kept
    np.testing.assert_allclose(rigid_translation_nm(a, GEOMS), 0.0, atol=1e-8)
    axis = {
        n: np.c_[np.zeros(g.n_angles), np.full(g.n_angles, 60.0 / g.pixel_size_nm)]
        for n, g in GEOMS.items()
    }
    c, _ = without_rigid_translation(axis, GEOMS)
    assert all(np.abs(c[n][:, 1]).max() > 0.2 for n in GEOMS)
