"""Scoring against a truth: the one PSNR (peak in the cell), its regions, the resolution figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sxtdist
from sxtdist import metrics, scoring
from sxtdist.blocks import plan_blocks
from sxtdist.recon import solve_slab
from sxtdist.runner import build_problem
from sxtdist.simulation import phantom


def test_psnr_in_roi_and_cell_match_a_hand_computation():
    # ice 0.1 everywhere, a cell block of 0.2 (rows/cols 1..4) with one 0.6 voxel
    truth = np.full((2, 6, 6), 0.1)
    truth[:, 1:5, 1:5] = 0.2
    truth[0, 2, 2] = 0.6
    regions = scoring.Regions(10.0, 4.0, 0.15, None)
    # the ROI (diameter 4 about the centre 2.5, 2.5): |dy| = 0.5 with |dx| <= 1.5, and
    # |dy| = 1.5 with |dx| = 0.5: 12 voxels a slice, all inside the cell block
    x = truth.copy()
    roi = regions.roi((6, 6))
    assert roi.sum() == 12
    x[0][roi] += 0.1
    # 32 cell voxels: 31 of 0.2 and one of 0.6; 99th percentile at 0.99 * 31 = 30.69
    peak = 0.2 + 0.69 * 0.4
    s = scoring.score(x, truth, regions, slab=1)
    assert s.peak == pytest.approx(peak)
    assert s.psnr_roi == pytest.approx(10 * math.log10(peak**2 / (12 * 0.01 / 24)))
    assert s.psnr_cell == pytest.approx(10 * math.log10(peak**2 / (12 * 0.01 / 32)))
    assert s.psnr_whole == pytest.approx(10 * math.log10(peak**2 / (12 * 0.01 / 72)))
    assert s.cell_fraction == pytest.approx(32 / 72)
    # the same through metrics on whole arrays
    cell = regions.cell(truth)
    assert metrics.psnr(x, truth, roi, metrics.data_range(truth, mask=cell)) == pytest.approx(
        s.psnr_roi
    )


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=1, max_size=6),
    st.integers(0, 2**31),
    st.sampled_from([50.0, 90.0, 99.0, 100.0]),
)
def test_streamed_percentile_equals_numpy(sizes, seed, q):
    rng = np.random.default_rng(seed)
    chunks = [rng.standard_normal(n) for n in sizes]
    if sum(sizes) == 0:
        return
    top = metrics.TopPercentile(q, sum(sizes) + 5)
    for c in chunks:
        top.add(c)
    assert top.value() == pytest.approx(np.percentile(np.concatenate(chunks), q), rel=1e-12)


def test_cell_psnr_does_not_follow_the_capillary(tmp_path, monkeypatch):
    """Doubling the glass's LAC leaves the cell PSNR of the same error in the cell (< 0.5 dB).

    The error field is a real reconstruction's (10 iterations, tiny, capillary on), moved
    onto each truth, so only the metric can react to the glass. (A reconstruction itself
    gets worse with denser glass: docs/metrics.md.) The old peak, the whole truth's 99th
    percentile, is the glass: it moved the PSNR by ~6 dB.
    """
    truths = {}
    for glass in (1.2, 2.4):
        monkeypatch.setitem(phantom.LAC, "glass", glass)
        path = str(tmp_path / f"glass{glass}.zarr")
        sxtdist.simulate(path, preset="tiny", seed=3, capillary=True, photons=0)
        truths[glass] = sxtdist.open_acquisition(path, "r")
    acq = truths[1.2]
    problem = build_problem(acq, iterations=10)
    (block,) = plan_blocks(list(problem.models.values()), problem.grid, problem.grid.nz).blocks
    rows = problem.rows(block.slab)
    data = {n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items()}
    x, _ = solve_slab(problem, block.slab, data)
    c0 = block.core[0] - block.slab[0]
    error = x[c0 : c0 + problem.grid.nz] - np.asarray(acq.truth)
    cell_db, old_db = {}, {}
    for glass, a in truths.items():
        truth = np.asarray(a.truth)
        regions = scoring.Regions.of(a)
        assert (truth > 1.0).any() and not regions.cell(truth)[truth > 1.0].any()
        cell_db[glass] = scoring.score(truth + error, truth, regions).psnr_cell
        old_db[glass] = metrics.psnr(truth + error, truth, regions.cell(truth))
    assert abs(cell_db[2.4] - cell_db[1.2]) < 0.5, cell_db
    assert abs(old_db[2.4] - old_db[1.2]) > 3.0, old_db


def test_the_cell_mask_is_the_cell_not_the_ice(tiny_acq):
    acq = sxtdist.open_acquisition(tiny_acq, "r")
    truth = np.asarray(acq.truth)
    regions = scoring.Regions.of(acq)
    cell = regions.cell(truth)
    assert not cell[np.isclose(truth, phantom.LAC["ice"])].any()
    r = metrics.radial_distance(truth.shape)
    assert not cell[r >= regions.lumen_radius_px].any()  # no glass
    assert 0.2 <= truth[cell].mean() <= 0.35  # cytoplasm and organelles
    # the old "cell", above half the median of the non-zero truth, was mostly ice
    old = truth > 0.5 * float(np.median(truth[truth > 0]))
    assert cell.mean() < 0.5 * old.mean()


def test_blur_worsens_the_resolution_figure_and_noise_the_fsc(tiny_acq):
    from scipy.ndimage import gaussian_filter

    acq = sxtdist.open_acquisition(tiny_acq, "r")
    truth = np.asarray(acq.truth, np.float64)
    regions = scoring.Regions.of(acq)
    v = regions.voxel_size_nm
    sharp = scoring.resolution(truth, truth, regions)
    blurred = scoring.resolution(gaussian_filter(truth, 2.0), truth, regions)
    assert sharp.mtf50_nm is None  # the truth transfers everything: not crossed
    # a Gaussian of σ voxels: gain exp(-2π²σ²f²) = 0.5 at f = 0.0937 cycles/voxel
    assert blurred.mtf50_nm == pytest.approx(v / 0.0937, rel=0.2)
    # the FSC against the truth is blind to the blur (a per-shell gain) ...
    assert blurred.fsc_one_seventh_nm is None
    # ... and sees noise, which the transfer function does not
    rng = np.random.default_rng(0)
    noisy = scoring.resolution(truth + 0.3 * rng.standard_normal(truth.shape), truth, regions)
    assert noisy.fsc_one_seventh_nm is not None and noisy.fsc_one_seventh_nm > 2 * v
    assert noisy.mtf50_nm is None
    assert scoring.describe(None) == metrics.NOT_CROSSED
