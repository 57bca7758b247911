"""Alignment: NCC registration, pairs, eq. 14 solve, full scan, intensity transform, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import sxtdist
from sxtdist.alignment.diagnostics import peak_loss_ratio, views_without_weight
from sxtdist.alignment.fullscan import (
    CUT_SIGMA,
    MIN_SLICE_WEIGHT_CONTRAST,
    _weighted_columns,
    center_of_mass_dx,
    edge_significance,
    moment_dx,
    row_profile_dy,
    slice_weight_contrast,
    weighted_centroid_dx,
    weighted_centroid_noise_px,
)
from sxtdist.alignment.gauge import remove_gauge, rms, shift_errors, sinusoid_basis
from sxtdist.alignment.intensity import (
    apply_intensity_transform,
    describe_intensity_transform,
    dual_energy,
    fit_intensity_transform,
)
from sxtdist.alignment.ncc import NccSurface, ncc_map, register
from sxtdist.alignment.pairs import Pair, PairResult, describe_pair, plan_pairs
from sxtdist.alignment.resample import anchor_on_roi_grid, pad_with_mask, shift_image
from sxtdist.alignment.shifts import robust_pair_weights, solve_joint, solve_shifts
from sxtdist.errors import SxtdistWarning
from sxtdist.geometry import ScanGeometry, rigid_translation_nm, translation_shifts_px


def _smooth_image(shape, seed=0, sigma=2.0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma)


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        yield c


# -- registration primitives ------------------------------------------------------------------


@pytest.mark.parametrize("d", [(0.0, 0.0), (2.0, -3.0), (1.3, -2.6), (-0.45, 0.8)])
def test_register_recovers_displacement_with_sign(d):
    """A template displaced by d (content at x shows at x + d) peaks at s = -d."""
    m = 6
    big = _smooth_image((40 + 2 * m, 36 + 2 * m), seed=1)
    aligned = big[m:-m, m:-m]
    moved = shift_image(big, d)[m:-m, m:-m]  # the displaced image, same frame
    ncc, s, peak, quality = register(moved, big)
    assert ncc.shape == (2 * m + 1, 2 * m + 1)
    np.testing.assert_allclose(-s, d, atol=0.06)
    assert peak > 0.99 and quality > 0
    # the unmoved template peaks at zero exactly, NCC 1
    ncc0 = ncc_map(aligned, big)
    assert ncc0[m, m] == pytest.approx(1.0, abs=1e-9)


def test_ncc_uses_only_the_valid_overlap():
    """Garbage outside the reference mask must not move the peak."""
    m = 5
    img = _smooth_image((30, 30), seed=2)
    ref, mask = pad_with_mask(img, (m, m))
    ref = ref + np.where(mask, 0.0, 1e3 * np.random.default_rng(0).normal(size=ref.shape))
    ncc = ncc_map(img, ref, None, mask)
    assert np.unravel_index(np.argmax(ncc), ncc.shape) == (m, m)
    assert ncc.max() == pytest.approx(1.0, abs=1e-9)
    assert ncc.min() >= -1.0


def test_ncc_surface_peak_is_subpixel_and_inside_map():
    y, x = np.mgrid[-4:5, -4:5]
    true = np.array([0.3, -0.7])
    ncc = np.exp(-((y - true[0]) ** 2 + (x - true[1]) ** 2) / (2 * 1.5**2))
    s, v = NccSurface(ncc).peak()
    np.testing.assert_allclose(s, true, atol=0.03)
    assert v == pytest.approx(1.0, abs=0.01)


# -- pairs and the eq. 14 solve ---------------------------------------------------------------


def test_plan_pairs_anchor_window_mirror_and_chain():
    roi = np.arange(0, 180, 5.0)
    full = np.arange(0, 180, 20.0)
    pairs = plan_pairs(roi, full)
    anchors = {p.i: p for p in pairs if p.kind == "anchor"}
    assert len(anchors) == len(roi)  # every view is within 10 deg of a full view
    assert anchors[4].j == 1 and anchors[4].delta_deg == 0 and not anchors[4].mirrored
    # 175 deg: the nearest anchor is full view 0 seen from 180 deg, mirrored
    assert anchors[35].j == 0 and anchors[35].mirrored and anchors[35].delta_deg == 5
    nbrs = [(p.i, p.j) for p in pairs if p.kind == "neighbour"]
    assert nbrs == [(k, k + 1) for k in range(len(roi) - 1)]
    strict = plan_pairs(roi, full, anchor_window_deg=1.0)
    assert sum(p.kind == "anchor" for p in strict) == 9
    assert not [p for p in plan_pairs(roi, None) if p.kind == "anchor"]


def _gauss_map(s, m=6, width=1.5):
    y, x = np.mgrid[-m : m + 1, -m : m + 1]
    return np.exp(-((y - s[0]) ** 2 + (x - s[1]) ** 2) / (2 * width**2))


@pytest.mark.parametrize("refine", [False, True])
def test_solve_shifts_recovers_shifts_and_rotation_point(refine):
    """Synthetic pair maps peaked where the model puts them: the solve returns the truth."""
    rng = np.random.default_rng(4)
    roi = np.arange(0, 180, 6.0)
    full = np.arange(0, 180, 30.0)
    n = roi.size
    d = rng.normal(0, 2, size=(n, 2))
    c = np.array([0.8, -1.1])  # the point whose motion biases pairs at different angles
    results = []
    for p in plan_pairs(roi, full):
        ti = math.radians(roi[p.i])
        tj = math.radians(roi[p.j] if p.kind == "neighbour" else full[p.j] + 180 * p.mirrored)
        motion = c[0] * (math.cos(ti) - math.cos(tj)) + c[1] * (math.sin(ti) - math.sin(tj))
        rel = d[p.i] - (d[p.j] if p.kind == "neighbour" else 0.0)
        s = -(rel - np.array([0.0, motion]))
        results.append(PairResult(p, _gauss_map(s), s, 1.0, 0.5))
    est, info = solve_shifts(n, results, roi, full, rotation_model=True, refine=refine)
    np.testing.assert_allclose(est, d, atol=0.05)
    np.testing.assert_allclose(info["rotation_point_px"], c, atol=0.05)
    plain, _ = solve_shifts(n, results, roi, full, rotation_model=False)
    assert rms(plain - d) > 5 * rms(est - d)  # the model is what removes the bias


def test_solve_joint_corrects_the_full_shifts_from_the_interior_chain():
    """Anchors registered with wrong full shifts: the joint solve finds both scans' truth
    up to the rigid translation, the rotation axis (constant dx) included."""
    rng = np.random.default_rng(7)
    roi = np.arange(0, 180, 5.0)
    full = np.arange(0, 180, 20.0)
    n, m, scale = roi.size, full.size, 2.0
    d = rng.normal(0, 2, size=(n, 2))
    delta = rng.normal(0, 0.7, size=(m, 2))
    delta[:, 1] += 0.4  # a wrong rotation axis in the full scan's starting shifts
    c = np.array([0.5, -0.9])
    results = []
    for p in plan_pairs(roi, full):
        ti = math.radians(roi[p.i])
        tj = math.radians(roi[p.j] if p.kind == "neighbour" else full[p.j] + 180 * p.mirrored)
        motion = c[0] * (math.cos(ti) - math.cos(tj)) + c[1] * (math.sin(ti) - math.sin(tj))
        if p.kind == "neighbour":
            rel = d[p.i] - d[p.j]
        else:
            sign = np.array([1.0, -1.0 if p.mirrored else 1.0])
            rel = d[p.i] - scale * sign * delta[p.j]
        s = -(rel - np.array([0.0, motion]))
        results.append(PairResult(p, _gauss_map(s, m=9), s, 1.0, 0.5))
    # a weak prior: the full scan's starting shifts only fix the gauge
    est_d, est_delta, info = solve_joint(scale, results, roi, full, prior_weight=0.01)
    assert rms(remove_gauge(est_d - d, roi)) < 0.05
    assert rms(remove_gauge(est_delta - delta, full)) < 0.03
    assert info["pairs_used"] == len(results)


def _joint_pairs(rng, roi, full, scale, mirrored_bias=0.0, noise_px=0.0, full_error_px=0.5):
    """Full-shift errors ``delta`` (σ ``full_error_px``) and the pair results that they and
    random interior shifts (σ 2 px) give without rotation: mirrored anchors off by
    ``mirrored_bias`` px in ``dx``, every peak with Gaussian noise of ``noise_px``."""
    d = rng.normal(0, 2, size=(roi.size, 2))
    # errors of the full shifts the anchors use
    delta = rng.normal(0, full_error_px, size=(full.size, 2))
    results = []
    for p in plan_pairs(roi, full):
        if p.kind == "neighbour":
            rel = d[p.i] - d[p.j]
        else:
            sign = np.array([1.0, -1.0 if p.mirrored else 1.0])
            rel = d[p.i] - scale * sign * delta[p.j]
            if p.mirrored:
                rel = rel + np.array([0.0, mirrored_bias])
        s = -rel + (rng.normal(0, noise_px, 2) if noise_px else 0.0)
        results.append(PairResult(p, _gauss_map(s, m=9), s, 1.0, 0.5))
    return delta, results


def test_solve_joint_prior_brings_the_full_scans_own_axis():
    """The rotation axis rests on the mirrored anchors' closure over 180°, which the object's
    rotation biases; with a good estimate of the full scan's own shifts as the prior target
    (the default weights) the axis follows that estimate, with a weak prior the biased
    closure."""
    rng = np.random.default_rng(3)
    roi = np.arange(0, 180, 2.0)
    full = np.arange(0, 180, 20.0)
    m, scale = full.size, 2.0
    delta, results = _joint_pairs(rng, roi, full, scale, mirrored_bias=0.4)
    own = delta + rng.normal(0, 0.03, size=(m, 2))  # the full scan's own estimate of delta

    def axis_error(est):
        return abs(remove_gauge(est - delta, full)[:, 1].mean())

    _, weak, _ = solve_joint(scale, results, roi, full, prior_weight=0.01)
    _, good, _ = solve_joint(scale, results, roi, full, prior_target=own)
    assert axis_error(weak) > 0.05
    assert axis_error(good) < 0.3 * axis_error(weak)
    assert rms(remove_gauge(good - delta, full)) < 0.06


def test_solve_joint_weighs_down_a_full_view_the_pairs_contradict():
    """One full view's own estimate far off (as when the object leaves its field): the
    robust joint solve follows the pairs there; plain least squares keeps much of the
    error and spreads it to the neighbouring views."""
    rng = np.random.default_rng(11)
    roi = np.arange(0, 180, 2.0)
    full = np.arange(0, 180, 10.0)
    m, scale = full.size, 2.0
    delta, results = _joint_pairs(rng, roi, full, scale, noise_px=0.02)
    own = delta + rng.normal(0, 0.03, size=(m, 2))  # the full scan's own estimate of delta
    own[12, 1] += 1.2  # one view's moments badly biased

    _, plain, _ = solve_joint(scale, results, roi, full, prior_target=own, robust=None)
    _, fixed, info = solve_joint(scale, results, roi, full, prior_target=own)
    assert info["full_views_downweighted"] == [12]
    # beyond twice the robust threshold: rejected outright (no weight at all)
    assert info["full_views_downweighted_weights"][0] == 0.0
    err_plain = remove_gauge(plain - delta, full)
    err_fixed = remove_gauge(fixed - delta, full)
    assert abs(err_plain[12, 1]) > 0.4
    assert abs(err_fixed[12, 1]) < 0.1
    assert rms(err_fixed) < 0.5 * rms(err_plain)
    # without an outlier nothing is weighted down, and the answer is least squares'
    own[12, 1] -= 1.2
    _, a, info = solve_joint(scale, results, roi, full, prior_target=own)
    _, b, _ = solve_joint(scale, results, roi, full, prior_target=own, robust=None)
    assert info["full_views_downweighted"] == []
    np.testing.assert_array_equal(a, b)


def test_solve_joint_keeps_a_full_view_whose_residual_is_within_the_pairs_misfit():
    """Own estimates good to 0.01 px, pairs noisy (0.05 px), one view 0.06 px off: its
    prior residual is 4.5 robust standard deviations of the full views' residuals (whose
    median is small when the prior is good), but no more than the pairs' own misfit, so
    nothing is weighted down and the answer is least squares'."""
    rng = np.random.default_rng(6)
    roi = np.arange(0, 180, 2.0)
    full = np.arange(0, 180, 10.0)
    m, scale = full.size, 2.0
    weight = np.array([0.3, 1.0])
    delta, results = _joint_pairs(rng, roi, full, scale, noise_px=0.05)
    own = delta + rng.normal(0, 0.01, size=(m, 2))
    own[7, 1] += 0.06

    _, plain, info = solve_joint(
        scale, results, roi, full, prior_weight=weight, prior_target=own, robust=None
    )
    r = np.abs(weight * scale * (plain - own))  # the prior rows' residuals
    assert (r / (1.4826 * np.median(r, axis=0))).max() > 3.0  # beyond 3 robust SDs alone
    assert r.max() < 3.0 * info["residual_rms_px"]  # within 3 times the pairs' misfit
    _, robust, info = solve_joint(scale, results, roi, full, prior_weight=weight, prior_target=own)
    assert info["full_views_downweighted"] == []
    assert info["full_views_downweighted_weights"] == []
    np.testing.assert_array_equal(robust, plain)


def test_solve_shifts_neighbours_only_has_zero_mean_and_drops_edge_peaks():
    roi = np.arange(0, 30, 3.0)
    d = np.linspace(-1, 1, roi.size)[:, None] * [1.0, -2.0]
    results = []
    for p in plan_pairs(roi, None):
        s = -(d[p.i] - d[p.j])
        results.append(PairResult(p, _gauss_map(s), s, 1.0, 0.5))
    bad = Pair("neighbour", 0, 1)
    results.append(PairResult(bad, _gauss_map((6.0, 6.0)), np.array([6.0, 6.0]), 1.0, 0.5))
    est, info = solve_shifts(roi.size, results, roi, None, rotation_model=False)
    assert info["pairs_used"] == len(results) - 1
    np.testing.assert_allclose(est, d - d.mean(0), atol=0.02)


def _pairs_with_one_bad(rng):
    """Consistent pairs (no full-view error, 0.01 px noise) but the neighbour pair 40-41
    1 px off in ``dx``, and one more pair whose peak is on the edge of its map (last)."""
    roi = np.arange(0, 180, 2.0)
    full = np.arange(0, 180, 20.0)
    _, results = _joint_pairs(rng, roi, full, 2.0, noise_px=0.01, full_error_px=0.0)
    bad = next(k for k, r in enumerate(results) if r.pair.kind == "neighbour" and r.pair.i == 40)
    r = results[bad]
    results[bad] = PairResult(r.pair, r.ncc, r.shift + np.array([0.0, 1.0]), r.peak, r.quality)
    edge = np.array([9.0, 0.0])  # the maps are 19 x 19: a peak 9 px out is on the edge
    results.append(PairResult(Pair("neighbour", 3, 2), _gauss_map(edge, m=9), edge, 1.0, 0.5))
    return roi, full, results, bad


def _solve_info(solver, roi, full, results, **kw):
    if solver == "joint":
        return solve_joint(2.0, results, roi, full, robust=None, **kw)[2]
    info = solve_shifts(roi.size, results, roi, full, refine=solver == "shifts_refined", **kw)[1]
    assert solver != "shifts_refined" or info["refine"] == "ncc_sum"
    return info


@pytest.mark.parametrize("solver", ["shifts", "shifts_refined", "joint"])
def test_pair_misfit_in_plain_least_squares_says_where_not_which(solver):
    """Without the robust rule, least squares shares the bad pair's conflict with the
    anchors around it: the misfit is large only near the bad pair (so it says where, not
    which), NaN at the dropped pair, and its RMS over the used pairs is
    ``residual_rms_px``."""
    roi, full, results, bad = _pairs_with_one_bad(np.random.default_rng(11))
    info = _solve_info(solver, roi, full, results, robust_pairs=None)
    misfit = info["pair_misfit_px"]
    assert misfit.shape == (len(results), 2)
    assert np.isnan(misfit[-1]).all() and np.isfinite(misfit[:-1]).all()
    length = np.hypot(misfit[:-1, 0], misfit[:-1, 1])
    assert bad in np.argsort(-length)[:2] and length[bad] > 0.3
    assert np.median(length) < 0.03
    large = [results[k].pair.i for k in np.flatnonzero(length > 0.1)]
    assert large and all(35 <= i <= 46 for i in large)  # within 5 views of the bad pair
    assert np.sqrt(np.mean(misfit[:-1] ** 2)) == pytest.approx(info["residual_rms_px"])
    np.testing.assert_array_equal(info["pair_robust_weights"][:-1], 1.0)


@pytest.mark.parametrize("solver", ["shifts", "shifts_refined", "joint"])
def test_robust_pairs_weight_down_the_pair_the_others_contradict(solver):
    """The robust rule (the default) takes the bad pair out: it keeps under 5 % of its
    weight, its misfit is its whole error (1 px), and every other pair is met to its
    noise; at most one other pair loses any weight."""
    roi, full, results, bad = _pairs_with_one_bad(np.random.default_rng(11))
    info = _solve_info(solver, roi, full, results)
    kept = info["pair_robust_weights"]
    assert np.isnan(kept[-1]) and kept[bad] < 0.05
    assert np.sum(kept[:-1] < 1) <= 2 and np.sort(kept[:-1])[1] > 0.5
    length = np.hypot(*info["pair_misfit_px"][:-1].T)
    assert length[bad] == pytest.approx(1.0, abs=0.06)
    assert np.delete(length, bad).max() < 0.08


def test_robust_pair_weights_known_answer():
    """Nine pairs missing by 0.01 px, one by 1 px in ``dx``: sigma is 1.4826 x 0.01 per
    component, and the outlier keeps ``5 sigma / 1`` of its weight; a pair's weight
    scales its misfit first (one counting a quarter is judged on half its misfit)."""
    misfit = np.full((10, 2), 0.01)
    misfit[3, 1] = 1.0
    kept = robust_pair_weights(misfit, np.ones(10), 5.0)
    assert kept.shape == (10, 1)
    np.testing.assert_allclose(np.delete(kept[:, 0], 3), 1.0)
    assert kept[3, 0] == pytest.approx(5 * 1.4826 * 0.01)
    sqrt_w = np.ones(10)
    sqrt_w[3] = 0.5
    assert robust_pair_weights(misfit, sqrt_w, 5.0)[3, 0] == pytest.approx(2 * 5 * 1.4826 * 0.01)


def test_describe_pair_names_views_and_angle():
    roi = np.arange(0, 180, 2.0)
    assert describe_pair(Pair("neighbour", 33, 34), roi) == "neighbour 33-34 at 66°"
    assert describe_pair(Pair("anchor", 5, 1, True), roi) == (
        "anchor 5 to full view 1 mirrored at 10°"
    )


def test_remove_gauge_removes_rigid_translation_keeps_axis():
    angles = np.arange(0, 180, 10.0)
    t = np.deg2rad(angles)
    rigid = np.stack([np.full_like(t, 0.7), 1.3 * np.cos(t) - 0.4 * np.sin(t)], axis=1)
    assert rms(remove_gauge(rigid, angles)) < 1e-12
    axis = np.stack([np.zeros_like(t), np.full_like(t, 0.5)], axis=1)
    assert rms(remove_gauge(axis, angles)) > 0.3


def test_shift_errors_remove_one_translation_for_all_scans():
    rng = np.random.default_rng(3)
    geoms = {
        "full": ScanGeometry(np.arange(0, 180, 20.0), 120.0, (64, 64)),
        "roi": ScanGeometry(np.arange(0, 180, 2.0), 60.0, (64, 32)),
    }
    truth = {n: rng.normal(0, 3, (g.n_angles, 2)) for n, g in geoms.items()}
    t = np.array([40.0, -75.0, 130.0])  # nm
    moved = {n: truth[n] + translation_shifts_px(t, g) for n, g in geoms.items()}
    for e in shift_errors(moved, truth, geoms).values():
        assert rms(e) < 1e-12
    # one scan translated against the other: per scan that is gauge, jointly an error
    same = {"a": geoms["roi"], "b": geoms["roi"]}
    zero = np.zeros((90, 2))
    step = translation_shifts_px(t, geoms["roi"])
    errs = shift_errors({"a": step, "b": zero}, {"a": zero, "b": zero}, same)
    assert rms(remove_gauge(step, geoms["roi"].angles_deg)) < 1e-12
    # equal views on both: the best translation is half of it, each scan keeps the other half
    for e in errs.values():
        np.testing.assert_allclose(rms(e), rms(step) / 2, rtol=1e-9)


def test_shift_errors_of_an_axis_error_over_180_degrees():
    # a constant dx error c over a half circle: the best translation (b sin) takes all but
    # c * sqrt(1 - 8 / pi^2) = 0.435 c RMS of it; remove_gauge keeps all of c
    g = ScanGeometry(np.arange(0, 180, 1.0), 60.0, (64, 64))
    est = np.zeros((g.n_angles, 2))
    est[:, 1] = 0.5
    e = shift_errors({"roi": est}, {"roi": np.zeros_like(est)}, {"roi": g})["roi"]
    assert rms(e) == pytest.approx(0.5 * math.sqrt(1 - 8 / math.pi**2), rel=1e-3)
    assert rms(remove_gauge(est, g.angles_deg)) == pytest.approx(0.5)


# -- geometry of anchors on simulated data ----------------------------------------------------


@pytest.fixture(scope="module")
def clean_acq(tmp_path_factory):
    """Noise-free tiny acquisition without shifts."""
    path = tmp_path_factory.mktemp("clean") / "clean.zarr"
    return sxtdist.simulate(path, preset="tiny", seed=5, photons=0, shifts_px=0)


def test_anchor_resampling_matches_the_roi_view(clean_acq):
    full, roi = clean_acq["full"], clean_acq["roi"]
    gf, gr = full.geometry, roi.geometry
    j = 2
    i = int(np.flatnonzero(gr.angles_deg == gf.angles_deg[j])[0])
    ref, mask = anchor_on_roi_grid(full.read()[j], gf, j, gr, (4, 4))
    assert ref.shape == (gr.detector_shape[0] + 8, gr.detector_shape[1] + 8)
    tpl = ndimage.gaussian_filter(roi.read()[i].astype(float), 0.8)
    ncc, s, peak, _ = register(tpl, ref, None, mask)
    assert peak > 0.99
    np.testing.assert_allclose(s, 0.0, atol=0.15)
    # the mirrored view of a centred detector is the same image flipped left-right
    mir, _ = anchor_on_roi_grid(full.read()[j], gf, j, gr, (4, 4), mirrored=True)
    np.testing.assert_allclose(mir, ref[:, ::-1], atol=1e-9)


def test_anchor_resampling_honours_offsets_and_shifts():
    """A full view that is a ramp in u: the resampled anchor must read u at every ROI pixel,
    for an off-centre ROI detector and a shifted full view (bicubic is exact on ramps)."""
    from sxtdist.geometry import ScanGeometry

    full = ScanGeometry([0.0, 90.0], 120.0, (20, 60), (0.0, 0.0), [[0, 0], [0.7, -1.3]])
    roi = ScanGeometry([0.0], 60.0, (16, 30), (2.0, 7.5))
    hf, wf = full.detector_shape
    rows, cols = np.mgrid[:hf, :wf].astype(float)
    dyf, dxf = full.shifts_px[1]
    z_f = (rows - (hf - 1) / 2 - dyf) * 120.0  # what the shifted full view shows where
    u_f = (cols - (wf - 1) / 2 - dxf) * 120.0
    img, mask = anchor_on_roi_grid(u_f + 1e-3 * z_f, full, 1, roi, (2, 3))
    hr, wr = roi.detector_shape
    r, c = np.mgrid[-2 : hr + 2, -3 : wr + 3].astype(float)
    u_r = (c - (wr - 1) / 2 + 7.5) * 60.0
    z_r = (r - (hr - 1) / 2 + 2.0) * 60.0
    inside = mask & (np.abs(u_r) < 0.45 * wf * 120.0) & (np.abs(z_r) < 0.4 * hf * 120.0)
    assert inside.sum() > 0.5 * inside.size
    # (nm; the spline boundary costs ~1e-4 nm; an offset or sign slip costs >= 60 nm)
    np.testing.assert_allclose(img[inside], (u_r + 1e-3 * z_r)[inside], atol=0.01)
    mir, _ = anchor_on_roi_grid(u_f, full, 1, roi, (2, 3), mirrored=True)
    np.testing.assert_allclose(mir[inside], -u_r[inside], atol=0.01)


def test_full_scan_start_row_profiles_and_centre_of_mass(tmp_path):
    acq = sxtdist.simulate(
        tmp_path / "f.zarr", preset="tiny", seed=6, photons=0, shifts_px={"full": 0.3}
    )
    full = acq["full"]
    views = full.read()
    truth = np.asarray(acq.truth_meta["shifts_px"]["full"])
    dy = row_profile_dy(views, 3)
    dx, axis = center_of_mass_dx(views, full.geometry)
    err = remove_gauge(np.stack([dy, dx], axis=1) - truth, full.geometry.angles_deg)
    assert np.sqrt(np.mean(err[:, 0] ** 2)) < 0.1
    # the capillary wall sits one pixel inside the field: shifted views lose a little of it
    assert np.sqrt(np.mean(err[:, 1] ** 2)) < 0.25
    # the axis offset is the constant of the [1, cos, sin] fit of the displacements
    const = np.linalg.lstsq(sinusoid_basis(full.geometry.angles_deg), truth[:, 1], rcond=None)[0][0]
    assert axis == pytest.approx(const, abs=0.2)


def test_row_profile_dy_is_not_locked_to_whole_pixels(tmp_path):
    """Noise-free, 3 px shifts: registering each row profile to the median of the unaligned
    ones (a blurred reference) through a spline of the NCC map is 0.12 px off on this
    seed; the least-squares refinement against the re-aligned reference is not."""
    acq = sxtdist.simulate(
        tmp_path / "p.zarr", preset="small", seed=1, n_full=9, photons=0,
        shifts_px={"full": 3.0, "roi": 0},
    )  # fmt: skip
    views = acq["full"].read()
    truth = np.asarray(acq.truth_meta["shifts_px"]["full"])[:, 0]
    truth = truth - truth.mean()
    assert np.sqrt(np.mean((row_profile_dy(views, 10, refinements=0) - truth) ** 2)) > 0.08
    assert np.sqrt(np.mean((row_profile_dy(views, 10) - truth) ** 2)) < 0.01


def test_weighted_centroid_ignores_what_is_uniform_along_the_axis(tmp_path):
    """Shifts of 3 px cut the capillary and the ice at the detector's edges: the plain
    centroid is off by a pixel, the axially weighted one is not (noise-free)."""
    acq = sxtdist.simulate(
        tmp_path / "w.zarr", preset="small", seed=1, n_full=9, photons=0,
        shifts_px={"full": 3.0, "roi": 0},
    )  # fmt: skip
    full = acq["full"]
    views = full.read()
    truth = np.asarray(acq.truth_meta["shifts_px"]["full"])
    dy = row_profile_dy(views, 10)
    assert slice_weight_contrast(views, dy, 4) > MIN_SLICE_WEIGHT_CONTRAST
    dx_w, axis_w = weighted_centroid_dx(views, full.geometry, dy, 4)
    dx_c, _ = center_of_mass_dx(views, full.geometry)
    err_w = remove_gauge(np.stack([dy, dx_w], axis=1) - truth, full.geometry.angles_deg)
    err_c = remove_gauge(np.stack([dy, dx_c], axis=1) - truth, full.geometry.angles_deg)
    assert rms(err_w[:, 1:]) < 0.05 and rms(err_c[:, 1:]) > 0.3
    const = np.linalg.lstsq(sinusoid_basis(full.geometry.angles_deg), truth[:, 1], rcond=None)[0][0]
    assert axis_w == pytest.approx(const, abs=0.05)
    # a z-invariant background added to every view changes nothing
    ramp = np.linspace(0, 0.5, views.shape[2])[None, None, :] * np.ones_like(views)
    dx_b, _ = weighted_centroid_dx(views + ramp, full.geometry, dy, 4)
    np.testing.assert_allclose(dx_b, dx_w, atol=1e-6)


def test_weighted_centroid_noise_at_the_papers_dose(tmp_path):
    """The slice weights are the matched filter (the slices' mass less its mean), tapered
    over two rows only: over 12 noise realisations at the paper's dose (9 views, 3 px
    shifts) ``dx`` is right to 0.049 px RMS, each view to 0.029 px about their common
    offset. The ``cos²`` taper over the whole axis used before gave 0.069 and 0.049 px
    (docs/dev/alignment-history.md). The noise each view reports is its weighted centroid's scatter
    over the draws to within -20 % / +40 % (the one noise level per view from the rows'
    second difference used before read 1.68 times it here)."""
    from sxtdist.simulation.presets import get_preset

    acq = sxtdist.simulate(
        tmp_path / "n.zarr", preset="small", seed=2, n_full=9, photons=0,
        shifts_px={"full": 3.0, "roi": 0},
    )  # fmt: skip
    full = acq["full"]
    clean = np.asarray(full.read(), np.float64)
    truth = np.asarray(acq.truth_meta["shifts_px"]["full"])
    i0 = get_preset("small").full.photons_per_pixel
    rng = np.random.default_rng(100)
    errors, sigmas, centroids = [], [], []
    for _ in range(12):
        views = -np.log(np.maximum(rng.poisson(i0 * np.exp(-clean)), 1) / i0)
        dy = row_profile_dy(views.astype(np.float32), 10)
        dx, _ = weighted_centroid_dx(views, full.geometry, dy, 4)
        errors.append(remove_gauge(np.stack([dy, dx], axis=1) - truth, full.geometry.angles_deg))
        sigmas.append(weighted_centroid_noise_px(views, dy, 4))
        # the centroids themselves, with the weights placed at the true dy (as measured)
        _, q = _weighted_columns(views, truth[:, 0], 4)
        centroids.append(q @ np.arange(views.shape[2]) / q.sum(axis=1))
    err_dx = np.array(errors)[:, :, 1]
    assert np.sqrt(np.mean(err_dx**2)) < 0.058
    per_view = (err_dx - err_dx.mean(axis=1, keepdims=True)).std(axis=0).mean()
    assert per_view < 0.035
    scatter = np.array(centroids).std(axis=0, ddof=1)
    ratio = np.median(np.array(sigmas), axis=0) / scatter
    assert 0.8 < np.median(ratio) < 1.4, ratio


def _full_scan_with_view_3_moved(tmp_path, sigma: float, move: tuple[float, float]):
    """A noise-free ``small`` full scan of 9 views moving by ``sigma`` px, view 3 by
    ``move`` instead: the scan, its clean optical depths, its true shifts and the paper's
    fluence per pixel (to draw the photon noise)."""
    from sxtdist.simulation.presets import get_preset

    motion = np.random.default_rng(7).normal(0.0, sigma, (9, 2))
    motion[3] = move
    acq = sxtdist.simulate(
        tmp_path / "c.zarr", preset="small", seed=2, n_full=9, photons=0,
        shifts_px={"roi": 0}, motion={"full": motion},
    )  # fmt: skip
    full = acq["full"]
    truth = np.asarray(acq.truth_meta["shifts_px"]["full"])
    i0 = get_preset("small").full.photons_per_pixel
    return full, np.asarray(full.read(), np.float64), truth, i0


def test_a_full_view_whose_cell_the_detector_cuts(tmp_path):
    """Full view 3 of 9 moved 14 px sideways (the outlier-full motion): its cell leaves the
    64-px field. At the paper's dose (8 draws) its weighted columns at the edge read far
    beyond their noise and the other views' stay under :data:`CUT_SIGMA`; the record names
    it, its centroid weighs little in the sinusoid's fit (weighing as much as the others
    it moved the rotation axis by 1.6 px) and its own ``dx`` little in the joint solve."""
    from sxtdist.alignment.shifts import GAUGE_WEIGHT, full_prior_weights

    full, clean, truth, i0 = _full_scan_with_view_3_moved(tmp_path, 1.0, (0.5, 14.0))
    rng = np.random.default_rng(101)
    others = np.arange(9) != 3
    for _ in range(8):
        views = -np.log(np.maximum(rng.poisson(i0 * np.exp(-clean)), 1) / i0)
        dy = row_profile_dy(views.astype(np.float32), 10)
        z = edge_significance(views, dy, 4)
        assert z[3] > 4 * CUT_SIGMA and z[others].max() < CUT_SIGMA, z
        dx, axis, record = moment_dx(views, full.geometry, dy, 4)
        assert record["cut_views"] == [3]
        err = remove_gauge(
            np.stack([dy, dx], 1)[others] - truth[others], full.geometry.angles_deg[others]
        )
        assert np.abs(err[:, 1]).max() < 0.15
        assert abs(axis) < 0.2  # the simulated axis is the detector's centre
        _, axis_all = weighted_centroid_dx(views, full.geometry, dy, 4)
        assert abs(axis_all) > 1.0
    weights = full_prior_weights({**record, "iterations": 0}, 9)
    assert record["truncation_bias_px"][3] > 0.5  # the view's dx keeps a few % of its weight
    assert weights[3, 1] < 0.1 * weights[others, 1].min() and weights[3, 0] > GAUGE_WEIGHT
    assert max(record["truncation_bias_px"][k] for k in np.flatnonzero(others)) == 0


def test_a_full_view_far_off_along_the_axis_does_not_shorten_the_others_weights(tmp_path):
    """Full view 3 of 9 moved 12 rows along the axis (the outlier-full motion): the rows
    left out at the ends are set by the other views (all within 2 rows), not by it, so
    their weighted centroids keep the cell's rows; the far view's weights would leave
    the detector, and it is named as cut (its ``dx`` weighs nothing in the sinusoid's
    fit, and its ``dy`` only fixes the gauge in the joint solve: the detector cut its row
    profile too; the anchors place it). At the paper's dose the others' ``dx`` are within
    0.04 px RMS; making room for the far view too, 0.08 px (8 draws)."""
    from sxtdist.alignment import fullscan
    from sxtdist.alignment.shifts import GAUGE_WEIGHT, full_prior_weights

    full, clean, truth, i0 = _full_scan_with_view_3_moved(tmp_path, 0.5, (12.0, 0.5))
    others = np.arange(9) != 3
    rows = clean.shape[1]

    def others_dx_rms(draws: int = 4) -> float:
        rng = np.random.default_rng(5)
        errs = []
        for _ in range(draws):
            views = -np.log(np.maximum(rng.poisson(i0 * np.exp(-clean)), 1) / i0)
            dy = row_profile_dy(views.astype(np.float32), 16)
            dx, _, record = moment_dx(views, full.geometry, dy, 4)
            assert record["cut_views"] == record["rows_cut_views"] == [3]
            weights = full_prior_weights({**record, "iterations": 0}, 9)
            assert weights[3, 0] == GAUGE_WEIGHT < weights[others, 0].min()
            err = remove_gauge(
                np.stack([dy, dx], 1)[others] - truth[others], full.geometry.angles_deg[others]
            )
            errs.append(err[:, 1])
        return float(np.sqrt(np.mean(np.square(errs))))

    dy = truth[:, 0] - truth[:, 0].mean()
    assert fullscan.far_off_rows(dy).tolist() == (~others).tolist()
    assert fullscan.weight_margin(rows, dy, 4) == fullscan.weight_margin(rows, dy[others], 4) < 8
    assert others_dx_rms() < 0.06


def test_centre_of_mass_is_exact_without_truncation(clean_acq):
    full = clean_acq["full"]
    dx, axis = center_of_mass_dx(full.read(), full.geometry)
    assert np.abs(dx).max() < 0.01 and abs(axis) < 0.01


# -- intensity transform ----------------------------------------------------------------------


def test_describe_intensity_transform_for_people():
    """What ``sxtdist align`` and ``sxtdist info`` print: the chosen model, its misfit and
    pairs, the alternative; a phi0 of about 1 says that c means nothing."""
    fitted = {
        "model": "dual_energy", "phi0": 0.81234, "c": 1.6617, "rms": 0.00153, "pairs": 12,
        "reference_scan": "full",
        "alternative": {"model": "affine", "a": 0.93881, "b": -0.012574, "rms": 0.0015},
    }  # fmt: skip
    assert describe_intensity_transform(fitted) == (
        "dual_energy (eq. 16): phi0 0.8123, c 1.66, rms 0.0015 over 12 pairs, relative to "
        "scan 'full'; alternative affine: a 0.9388, b -0.0126, rms 0.0015"
    )
    assert "c undetermined" in describe_intensity_transform({**fitted, "phi0": 0.9996})
    assert "c undetermined" not in describe_intensity_transform(fitted)
    assert describe_intensity_transform(None) == "none"
    assert describe_intensity_transform({"model": "identity"}) == "identity"


def test_intensity_transform_fit_and_inverse():
    rng = np.random.default_rng(0)
    ta = rng.uniform(0.05, 1.0, 5000)
    tb = dual_energy(ta, 0.8, 1.6)
    fit = fit_intensity_transform(ta, tb + rng.normal(0, 1e-3, ta.size))
    assert fit["phi0"] == pytest.approx(0.8, abs=0.01)
    assert fit["c"] == pytest.approx(1.6, abs=0.03)
    back = apply_intensity_transform((-np.log(tb)).astype(np.float32), fit)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, -np.log(ta), atol=0.01)
    aff = fit_intensity_transform(ta, 0.9 * ta + 0.05, "affine")
    assert (aff["a"], aff["b"]) == pytest.approx((0.9, 0.05), abs=1e-9)
    np.testing.assert_allclose(
        apply_intensity_transform(-np.log(0.9 * ta + 0.05), aff), -np.log(ta), atol=1e-9
    )
    x = np.ones(3, np.float32)
    assert apply_intensity_transform(x, None) is x
    with pytest.raises(ValueError):
        fit_intensity_transform(ta, tb, "cubic")


# -- end to end (Dask tasks, metadata, report) ------------------------------------------------


def test_align_recovers_simulated_shifts_and_stores_them(tmp_path, client):
    """The sign convention end to end: simulate with known shifts, align, compare."""
    path = tmp_path / "s.zarr"
    acq = sxtdist.simulate(path, preset="tiny", seed=1, shifts_px={"full": 0, "roi": 1.5})
    res = sxtdist.align(path, client=client, report=tmp_path / "rep")
    truth = np.asarray(acq.truth_meta["shifts_px"]["roi"])
    err = remove_gauge(res.shifts["roi"] - truth, acq["roi"].geometry.angles_deg)
    assert rms(err) < 0.3  # a sign error would give ~2 x 1.5 px
    assert rms(res.shifts["roi"]) > 1.0
    # centred: no rigid translation left (the simulated truth has none either), so the
    # estimate matches the truth without removing one
    geoms = {n: acq[n].geometry for n in ("full", "roi")}
    np.testing.assert_allclose(rigid_translation_nm(res.shifts, geoms), 0.0, atol=1e-6)
    assert len(res.info["roi"]["rigid_translation_removed_nm"]) == 3
    assert rms(res.shifts["roi"] - truth) < 0.4
    assert res.errors(acq)["full"] < 0.2
    again = sxtdist.open_acquisition(path, mode="r")
    assert again["roi"].aligned and again["full"].aligned
    np.testing.assert_allclose(again["roi"].geometry.shifts_px, res.shifts["roi"])
    meta = again["roi"].meta
    assert meta["alignment"]["method"] == "anchor"
    assert meta["intensity_transform"]["model"] == "dual_energy"
    assert len(res.pairs) == meta["alignment"]["pairs"]
    with open(tmp_path / "rep" / "shifts.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 36 + 9 and rows[0]["err_dx_px"] != ""
    for name, value in res.errors(acq).items():  # the report's errors are the same reading
        e = [[float(r["err_dy_px"]), float(r["err_dx_px"])] for r in rows if r["scan"] == name]
        assert rms(np.asarray(e)) == pytest.approx(value, abs=2e-4)
    assert os.path.getsize(tmp_path / "rep" / "alignment.png") > 1000
    with open(tmp_path / "rep" / "pairs.csv") as fh:
        pair_rows = list(csv.DictReader(fh))
    assert len(pair_rows) == len(res.pairs)
    # the misfit of every used pair, whose RMS is the one the solve recorded
    used = [r for r in pair_rows if r["used"] == "1"]
    assert len(used) == meta["alignment"]["pairs_used"]
    misfit = np.array([[float(r["misfit_dy_px"]), float(r["misfit_dx_px"])] for r in used])
    per_component = np.sqrt(np.mean(misfit**2))
    assert per_component == pytest.approx(meta["alignment"]["residual_rms_px"], abs=2e-4)
    largest = np.hypot(misfit[:, 0], misfit[:, 1]).max()
    assert largest == pytest.approx(meta["alignment"]["residual_largest_px"], abs=2e-4)
    kept = np.array([float(r["kept_weight"]) for r in used])
    np.testing.assert_allclose(
        kept, res.pair_kept_weight[np.isfinite(res.pair_kept_weight)], atol=1e-4
    )
    assert meta["alignment"]["pairs_downweighted"] == int(np.sum(kept < 1))
    # why a pair counted little: its overlap and the weight the solve gave it
    from sxtdist.alignment.shifts import pair_weights

    weight = pair_weights(res.pairs, acq["roi"].geometry.angles_deg)
    for row, r, w in zip(pair_rows, res.pairs, weight, strict=True):
        assert float(row["overlap"]) == pytest.approx(r.overlap, abs=1e-4)
        assert float(row["weight"]) == pytest.approx(w, abs=1e-4)
    assert any(
        r.pair.kind == "anchor" and float(x["weight"]) < 1 for x, r in zip(pair_rows, res.pairs)
    )
    # full views weighted down in the joint solve are circled in the plot
    from sxtdist.alignment.report import write_report

    res.info["full"]["joint_downweighted_views"] = [2, 5]
    write_report(str(tmp_path / "rep2"), acq, res)
    assert os.path.getsize(tmp_path / "rep2" / "alignment.png") > 1000


def test_align_fits_a_simulated_intensity_mismatch(tmp_path, client):
    path = tmp_path / "m.zarr"
    sxtdist.simulate(
        path,
        preset="tiny",
        seed=2,
        shifts_px=0,
        photons=0,
        intensity_mismatch=(0.8, 1.6),
    )
    res = sxtdist.align(path, scans=["roi"], client=client, report="", dry_run=True)
    it = res.intensity_transform
    assert it["phi0"] == pytest.approx(0.8, abs=0.08)
    assert it["alternative"]["model"] == "affine"
    assert not sxtdist.open_acquisition(path, mode="r")["roi"].aligned  # dry run


@pytest.mark.parametrize("coarse", [True, False, "binned"], ids=["coarse", "no-coarse", "binned"])
def test_prepared_views_graph_registers_exactly_like_one_task_per_pair(
    tmp_path, client, monkeypatch, coarse
):
    """Large views are prepared once each, in stretches of consecutive views (run_graph);
    the pairs come out bit for bit as when every pair task prepares its own views, on one
    worker and on two. With the coarse pass at no binning (tiny's views) an anchor pair's
    coarse registration is its registration, and no anchor view is prepared apart;
    binned, the coarse pass bins the interior views the fine pass prepared and each
    anchor view is prepared binned too, from the same read, its coarse registrations the
    same as each pair's own preparation gives. One stretch on one worker whatever
    PREPARED_STRETCHES_PER_WORKER (a second evens nothing out there); that many per
    worker on two."""
    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks
    import sxtdist.distributed as distributed

    binned = coarse == "binned"
    if binned:
        monkeypatch.setattr(runner, "COARSE_PIXELS", 7)  # tiny's 28 px wide views: binned 4x
    path = tmp_path / "g.zarr"
    sxtdist.simulate(path, preset="tiny", seed=4, shifts_px=1.5)
    kw = dict(client=client, report="", dry_run=True, coarse=bool(coarse))
    per_pair = sxtdist.align(path, **kw)
    graphs = []

    def recording_run_graph(client, graph, keys, *args, **kwargs):
        graphs.append((graph, keys))
        return run_graph(client, graph, keys, *args, **kwargs)

    run_graph = distributed.run_graph
    monkeypatch.setattr(distributed, "run_graph", recording_run_graph)
    monkeypatch.setattr(tasks, "PREPARED_VIEW_PIXELS", 1)
    monkeypatch.setattr(tasks, "PREPARED_STRETCHES_PER_WORKER", 4)  # from two workers
    binnings = []
    prepare_anchors = tasks.prepare_anchors

    def recording_prepare_anchors(*args, **kwargs):
        out = prepare_anchors(*args, **kwargs)
        binnings.append(sorted(out))
        return out

    monkeypatch.setattr(tasks, "prepare_anchors", recording_prepare_anchors)
    prepared = sxtdist.align(path, **kw)
    ((graph, keys),) = graphs
    assert list(keys) == list(graph) and len(keys) == 1  # one worker: one stretch
    for a, b in zip(per_pair.pairs, prepared.pairs, strict=True):
        assert a.pair == b.pair
        assert (a.window is None) == (b.window is None)  # the coarse predictions agree
        if a.window is not None:
            np.testing.assert_array_equal(a.window.centre, b.window.centre)
        np.testing.assert_array_equal(a.ncc, b.ncc)
        np.testing.assert_array_equal(a.shift, b.shift)
        if a.intensity_samples is None:
            assert b.intensity_samples is None
        else:
            np.testing.assert_array_equal(a.intensity_samples, b.intensity_samples)
    for name in per_pair.shifts:
        np.testing.assert_array_equal(per_pair.shifts[name], prepared.shifts[name])
    # on two workers: where the tasks run changes nothing in the results
    from distributed import Client

    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as c2:
        on_two = sxtdist.align(path, **{**kw, "client": c2})
    assert len(graphs) == 2
    for name in per_pair.shifts:
        np.testing.assert_array_equal(per_pair.shifts[name], on_two.shifts[name])
    # one task per stretch, each preparing its views and anchor views: none waits
    graph, keys = graphs[1]
    n_roi = sxtdist.open_acquisition(path)["roi"].shape[0]
    assert sorted(keys) == sorted(graph)
    assert all("-stretch-" in k for k in keys)
    assert len(keys) == min(2 * tasks.PREPARED_STRETCHES_PER_WORKER, n_roi) > 2
    for task in graph.values():
        assert not any(isinstance(a, str) and a in graph for a in task[1:])
    anchors = {(r.pair.j, r.pair.mirrored) for r in per_pair.pairs if r.pair.kind == "anchor"}
    if binned:  # each anchor view prepared binned too, from the same read
        assert prepared.info["roi"]["coarse_bin"] == 4
        assert [False, True] in binnings and len(binnings) >= len(anchors)
    elif coarse:  # the coarse pass is the anchor pair's own registration
        assert binnings == []
    else:
        assert binnings and all(b == [False] for b in binnings)


@pytest.mark.parametrize("coarse", [True, False, "binned"], ids=["coarse", "no-coarse", "binned"])
def test_stretch_graph_registers_exactly_like_one_task_per_pair(tmp_path, monkeypatch, coarse):
    """Views below PREPARED_VIEW_PIXELS are registered in stretches of consecutive views:
    however many stretches, the pairs come out bit for bit as from the graph of one task
    per pair (views prepared apart), neighbour pairs across two stretches with the coarse
    predictions of both (the first stretch's task makes the second's again). No task
    waits for another, and each pair is registered once."""
    import dask.local

    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks

    if coarse == "binned":
        monkeypatch.setattr(runner, "COARSE_PIXELS", 7)  # tiny's 28 px wide views: binned 4x
    path = tmp_path / "g.zarr"
    sxtdist.simulate(path, preset="tiny", seed=6, shifts_px=1.5)
    acq = sxtdist.open_acquisition(path)
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    settings = runner.pair_settings(acq, acq["full"].geometry)
    assert settings.coarse_bin == (4 if coarse == "binned" else 1)

    def run(graph: tasks.PairGraph) -> list:
        return graph.results(dask.local.get_sync(graph.graph, graph.keys))[0]

    monkeypatch.setattr(tasks, "PREPARED_VIEW_PIXELS", 1)
    reference = run(tasks.pair_graph(pairs, settings, "r", coarse=bool(coarse)))
    monkeypatch.undo()
    if coarse == "binned":
        monkeypatch.setattr(runner, "COARSE_PIXELS", 7)
    n_views = acq["roi"].shape[0]
    for workers in (1, 2, n_views):  # one stretch per worker, one view each at most
        graph = tasks.pair_graph(pairs, settings, "s", coarse=bool(coarse), workers=workers)
        stretch = [k for k in graph.keys if "-stretch-" in k]
        assert len(stretch) == min(tasks.STRETCHES_PER_WORKER * workers, n_views)
        assert len(graph.keys) == len(graph.graph) == len(stretch)
        for key in stretch:  # nothing to wait for: no argument is a key
            assert not any(isinstance(a, str) and a in graph.graph for a in graph.graph[key][1:])
        registered = [n for key in stretch for n, _ in graph.graph[key][1]]
        assert sorted(registered) == list(range(len(pairs)))
        for a, b in zip(reference, run(graph), strict=True):
            assert a.pair == b.pair
            assert (a.window is None) == (b.window is None)
            if a.window is not None:
                np.testing.assert_array_equal(a.window.centre, b.window.centre)
            np.testing.assert_array_equal(a.ncc, b.ncc)
            np.testing.assert_array_equal(a.shift, b.shift)
    # the neighbour pairs searched around their coarse predictions
    n_neighbour = sum(p.kind == "neighbour" for p in pairs)
    assert sum(r.window is not None for r in reference) >= (0.9 * n_neighbour if coarse else 0)


def test_pair_settings_are_what_align_submits(tmp_path, client, monkeypatch):
    """``pair_settings`` and ``search_margin`` give the settings ``align`` hands its pair
    tasks (what ``benchmarks/bench_align.py`` rebuilds the task graph from): the arrays,
    the anchors' geometry with the full scan's stored shifts, the margin, the blurs."""
    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks
    import sxtdist.distributed as distributed
    from sxtdist.alignment import AlignOptions

    path = tmp_path / "s.zarr"
    acq = sxtdist.simulate(path, preset="tiny", seed=3, shifts_px=1.5)
    sxtdist.align(path, scans=["full"], client=client, report="")
    submitted = []

    def recording_run_graph(client, graph, keys, *args, **kwargs):
        stretches = [v for k, v in graph.items() if k.startswith("align-stretch-")]
        (settings,) = {id(task[2]): task[2] for task in stretches}.values()  # one for all
        submitted.append(settings)
        return run_graph(client, graph, keys, *args, **kwargs)

    run_graph = distributed.run_graph
    monkeypatch.setattr(distributed, "run_graph", recording_run_graph)
    monkeypatch.setattr(tasks, "PREPARED_VIEW_PIXELS", 1)
    kw = dict(scans=["roi"], client=client, report="", dry_run=True)
    sxtdist.align(path, smooth_px=1.5, **kw)
    acq = sxtdist.open_acquisition(path)
    ours = runner.pair_settings(acq, acq["full"].geometry, AlignOptions(smooth_px=1.5))
    (theirs,) = submitted
    for name in ("roi_array", "full_array", "margin", "roi_blur_px", "anchor_blur_px",
                 "search_range", "coarse_bin"):  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.intensity_window_deg == theirs.intensity_window_deg
    assert ours.roi_blur_px > ours.anchor_blur_px == 1.5  # the resolution match adds to it
    np.testing.assert_array_equal(ours.full.shifts_px, theirs.full.shifts_px)
    np.testing.assert_array_equal(ours.full.shifts_px, acq["full"].geometry.shifts_px)
    assert not ours.roi.shifts_px.any() and not theirs.roi.shifts_px.any()  # views as read
    sxtdist.align(path, max_shift_px=2.5, **kw)
    assert submitted[-1].margin == runner.search_margin((64, 64), 2.5) == (3, 3)
    assert submitted[-1].search_range == runner.search_range((64, 64), 2.5) == (3, 3)


@pytest.mark.parametrize("prepared", [False, True], ids=["per-pair", "prepared-views"])
def test_align_names_a_view_it_cannot_read(tmp_path, client, monkeypatch, prepared):
    """A damaged chunk fails the alignment with one InputError naming the array and the
    view, whichever task reads it, and nothing is stored."""
    import sxtdist.alignment.tasks as tasks
    from sxtdist.errors import InputError

    path = tmp_path / "d.zarr"
    acq = sxtdist.simulate(path, preset="tiny", seed=5)
    chunk = os.path.join(acq["roi"].path, "c", "7", "0", "0")
    with open(chunk, "wb") as fh:
        fh.write(b"not a compressed chunk")
    if prepared:
        monkeypatch.setattr(tasks, "PREPARED_VIEW_PIXELS", 1)
    with pytest.raises(InputError, match=r"roi/0.*cannot read projection 7"):
        sxtdist.align(path, scans=["roi"], client=client, report="")
    assert not sxtdist.open_acquisition(path, mode="r")["roi"].aligned


def test_align_neighbour_method_leaves_no_undetermined_part(tmp_path, client, tiny_copy):
    # relative shifts only: no mean dy, and no constant or sinusoid in dx (axis, translation)
    res = sxtdist.align(tiny_copy, scans=["roi"], method="neighbour", client=client, report="")
    d = res.shifts["roi"]
    assert abs(d[:, 0].mean()) < 1e-9
    basis = sinusoid_basis(sxtdist.open_acquisition(tiny_copy)["roi"].geometry.angles_deg)
    assert np.abs(np.linalg.lstsq(basis, d[:, 1], rcond=None)[0]).max() < 1e-9
    assert res.intensity_transform is None


# -- CLI --------------------------------------------------------------------------------------


def test_cli_align_dry_run_then_store_and_info(run_cli, tiny_copy, tmp_path):
    rep = tmp_path / "r"
    code, out, err = run_cli(
        "align", tiny_copy, "--dry-run", "--workers", "1", "--report", rep, "--no-progress"
    )
    assert code == 0, err
    assert "not stored (dry run)" in out and (rep / "alignment.png").exists()
    code, out, _ = run_cli("info", tiny_copy)
    assert "alignment: unaligned" in out
    code, out, err = run_cli("align", tiny_copy, "--workers", "1", "--report", "", "-q")
    assert code == 0, err
    assert "stored in" in out and "intensity transform" in out
    code, out, _ = run_cli("info", tiny_copy)
    assert "alignment: aligned (anchor" in out and "moments" in out
    assert "intensity transform: dual_energy (eq. 16): phi0" in out and "{" not in out
    assert "weighted centroids" not in out  # tiny's 16 rows: the plain centre of mass


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scans", "roi", "--method", "projection-matching"], "projection matching needs"),
        (["--max-shift", "100"], "too large"),
        (["--scans", "side"], "unknown scan"),
        (["--smooth", "-1"], "must not be negative"),
        (["--robust-pairs", "-1"], "robust pairs: a number of standard deviations"),
    ],
)
def test_cli_align_bad_options_exit_2(run_cli, tiny_acq, args, message):
    code, out, err = run_cli("align", tiny_acq, "--dry-run", "--report", "", *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_align_warns_of_pairs_left_out_and_logs_the_misfit(run_cli, tiny_acq):
    """A search too small for the shifts leaves pairs out of the solve: said, with how
    many; the misfit line names the largest and its pair."""
    code, _, err = run_cli("align", tiny_acq, "--dry-run", "--report", "", "--workers", "1")
    assert code == 0, err
    assert "left out" not in err
    assert re.search(r"pairs' misfit after the solve: RMS \d\.\d{3} px per component, "
                     r"largest \d\.\d{3} px \((anchor|neighbour) \d+", err)  # fmt: skip
    code, _, err = run_cli(
        "align", tiny_acq, "--dry-run", "--report", "", "--workers", "1", "--max-shift", "1"
    )
    assert code == 0, err
    m = re.search(r"warning: (\d+) of (\d+) pairs left out: their NCC peak lay on the edge", err)
    assert m and 0 < int(m[1]) <= int(m[2])


def test_cli_align_names_a_damaged_frame_in_its_verdict(run_cli, tiny_copy, tmp_path):
    """Half of interior frame 12 lost (set to its median, as a beam drop leaves it): its
    three pairs agree with each other on a shift 0.6 px off, so no misfit shows it, but
    they all correlate far worse than the others (5.6-9.3 times the median's loss, the
    others at most 2): the verdict names the frame, alone for that reason (``tiny``'s full
    views' own shifts tie nothing: every other view is named for that), a one-line warning
    on the command line; ``pairs.csv`` shows the other pairs kept their whole weight."""
    import zarr

    arr = zarr.open_array(sxtdist.open_acquisition(tiny_copy)["roi"].path, mode="r+")
    frame = arr[12]
    frame[:, : frame.shape[1] // 2] = np.median(frame)
    arr[12] = frame
    rep = tmp_path / "rep"
    code, _, err = run_cli("align", tiny_copy, "--dry-run", "--report", rep, "--workers", "1")
    assert code == 0, err
    line = next(x for x in err.splitlines() if "sxtdist: warning: alignment: check views" in x)
    assert "(no full view's own shift ties it); 12 (pairs correlate poorly); full " in line
    with open(rep / "pairs.csv") as fh:
        rows = list(csv.DictReader(fh))
    others = [float(r["kept_weight"]) for r in rows if "12" not in (r["i"], r["j"])]
    assert min(others) == 1.0


def test_cli_robust_pairs_default_is_the_library_s():
    from sxtdist.alignment.shifts import ROBUST_PAIRS
    from sxtdist.cli.align import command

    option = next(p for p in command.params if p.name == "robust_pairs")
    assert option.default == ROBUST_PAIRS


def test_align_robust_pairs_zero_is_plain_least_squares(tiny_acq, client):
    """``robust_pairs=0`` turns the rule off: every used pair keeps its whole weight."""
    kw = {"client": client, "report": "", "dry_run": True}
    plain = sxtdist.align(tiny_acq, robust_pairs=0, **kw)
    kept = plain.pair_kept_weight
    np.testing.assert_array_equal(kept[np.isfinite(kept)], 1.0)
    assert "pairs_downweighted" in plain.info["roi"]
    assert plain.info["roi"]["pairs_downweighted"] == 0


def test_align_names_the_frame_whose_pairs_all_correlate_poorly(tmp_path, client):
    """Noise-free ``tiny`` data, three quarters of interior frame 12 lost: its three pairs'
    ``1 - peak NCC`` are 39-53 times their kind's median (the others' at most 4.7), so
    the frame is named; the clean data name none."""
    import zarr

    acq = sxtdist.simulate(tmp_path / "t.zarr", preset="tiny", seed=3, photons=0)
    kw = {"client": client, "report": "", "dry_run": True}
    clean = sxtdist.align(acq, **kw)
    assert clean.info["roi"]["pairs_poor_peak"] == 0
    assert "views_poor_peak" not in clean.info["roi"]
    arr = zarr.open_array(acq["roi"].path, mode="r+")
    frame = arr[12]
    frame[:, : 3 * frame.shape[1] // 4] = np.median(frame)
    arr[12] = frame
    damaged = sxtdist.align(acq, **kw)
    assert damaged.info["roi"]["pairs_poor_peak"] == 3
    assert damaged.info["roi"]["views_poor_peak"] == [12]


def test_peak_loss_ratio_per_kind_known_answer():
    """``1 - peak`` over its kind's median: anchors and neighbours are judged apart."""
    pairs = [Pair("anchor", 0, 0), Pair("anchor", 1, 0), Pair("anchor", 2, 0),
             Pair("neighbour", 0, 1), Pair("neighbour", 1, 2)]  # fmt: skip
    peaks = [0.99, 0.98, 0.5, 0.999, 0.997]
    results = [PairResult(p, np.zeros((3, 3)), np.zeros(2), q, 0.5) for p, q in zip(pairs, peaks)]
    np.testing.assert_allclose(peak_loss_ratio(results), [0.5, 1.0, 25.0, 0.5, 1.5])


def test_views_without_weight_are_those_whose_every_pair_lost_it():
    pairs = [Pair("anchor", 0, 0), Pair("neighbour", 0, 1), Pair("anchor", 1, 0),
             Pair("neighbour", 1, 2), Pair("anchor", 2, 1), Pair("anchor", 3, 1)]  # fmt: skip
    results = [PairResult(p, np.zeros((3, 3)), np.zeros(2), 1.0, 0.5) for p in pairs]
    kept = np.array([1.0, 0.2, 0.3, 0.1, 1.0, np.nan])  # view 1: all its pairs below half
    assert views_without_weight(results, kept, 5) == [1]  # 3: left out; 4: no pair
    assert views_without_weight(results, np.ones(6), 5) == []


def test_info_line_of_an_interior_alignment():
    """The pair residual with its largest misfit and pair; records from before the misfit
    per pair show the residual alone."""
    from sxtdist.cli.info import _alignment_details

    recorded = {"date": "2026-12-02", "pairs": 179, "pairs_used": 179, "anchors": 90,
                "residual_rms_px": 0.0291}  # fmt: skip
    assert _alignment_details(recorded) == (
        "date 2026-12-02; 179/179 pairs (90 anchors); pair residual 0.029 px"
    )
    recorded.update(residual_largest_px=0.1594, residual_largest_pair="neighbour 8-9 at 16°")
    assert _alignment_details(recorded).endswith(
        "pair residual 0.029 px (largest 0.159 px, neighbour 8-9 at 16°)"
    )
    recorded.update(pairs_downweighted=0, views_without_weight=[])
    assert _alignment_details(recorded).endswith("neighbour 8-9 at 16°)")
    recorded.update(pairs_downweighted=3, views_without_weight=[30])
    assert _alignment_details(recorded).endswith(
        "at 16°); 3 pairs weighted down; views whose every pair lost its weight: 30"
    )
    recorded.update(views_poor_peak=[30, 31])
    assert "; views whose pairs all correlate poorly: 30, 31; " in _alignment_details(recorded)


def test_cli_align_missing_dataset_exit_2(run_cli, tmp_path):
    code, _, err = run_cli("align", tmp_path / "nope.zarr")
    assert code == 2 and "no such file" in err


#: Small pairs for the NCC property tests: template ``h x w``, search margin ``(my, mx)``.
_SMALL_PAIRS = {
    "h": st.integers(3, 9),
    "w": st.integers(3, 9),
    "my": st.integers(0, 3),
    "mx": st.integers(0, 3),
    "seed": st.integers(0, 2**31 - 1),
}


def _random_rectangle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A mask whose valid pixels are a random, non-empty rectangle."""
    y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    y1, x1 = rng.integers(y0 + 1, shape[0] + 1), rng.integers(x0 + 1, shape[1] + 1)
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


@settings(max_examples=60, deadline=None)
@given(
    **_SMALL_PAIRS,
    all_valid_template=st.booleans(),
    box=st.booleans(),
    no_reference_mask=st.booleans(),
)
def test_ncc_map_matches_a_direct_computation(
    h, w, my, mx, seed, all_valid_template, box, no_reference_mask
):
    """Every entry is the Pearson correlation over the pixels valid in both images."""
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(h, w))
    r = rng.normal(size=(h + 2 * my, w + 2 * mx)) + 3.0
    mt = rng.random((h, w)) > 0.2
    if all_valid_template:  # the window-sum path (template_mask=None)
        mt[:] = True
    mr = rng.random(r.shape) > 0.2
    if box:  # a rectangle of valid pixels: with an all-valid template, the rectangle-sum path
        mr = _random_rectangle(rng, r.shape)
    if no_reference_mask:  # every reference pixel valid (reference_mask=None)
        mr[:] = True
    got = ncc_map(
        t, r, None if all_valid_template else mt, None if no_reference_mask else mr, min_overlap=0.0
    )
    assert got.shape == (2 * my + 1, 2 * mx + 1)
    for sy in range(2 * my + 1):
        for sx in range(2 * mx + 1):
            both = mt & mr[sy : sy + h, sx : sx + w]
            a, b = t[both], r[sy : sy + h, sx : sx + w][both]
            if both.sum() < 3 or a.std() == 0 or b.std() == 0:
                continue
            assert got[sy, sx] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(3, 40),
    w=st.integers(3, 40),
    my=st.integers(0, 6),
    mx=st.integers(0, 6),
    seed=st.integers(0, 2**31 - 1),
    padded=st.booleans(),
)
def test_ncc_map_takes_spectra_computed_once_and_gives_the_same_map(h, w, my, mx, seed, padded):
    """The spectra a pair's views share (centred_spectrum, rectangle_spectrum) give the map
    ncc_map computes by itself, bit for bit: the template's, and the reference's valid
    rectangle's wherever it sits (a padded view, or an anchor's rectangle)."""
    from sxtdist.alignment.ncc import centred_spectrum, rectangle_spectrum

    rng = np.random.default_rng(seed)
    t = rng.normal(size=(h, w)) + 2.0
    if padded:  # a neighbour: the other view, zero-padded by the margin
        other = rng.normal(size=(h, w)) - 1.0
        r, mr = pad_with_mask(other, (my, mx))
        reference_spectrum = centred_spectrum(other, t.shape, r.shape)
    else:  # an anchor: a valid rectangle somewhere in the reference
        r = rng.normal(size=(h + 2 * my, w + 2 * mx))
        mr = _random_rectangle(rng, r.shape)
        reference_spectrum = rectangle_spectrum(r, mr, t.shape)
    spectra = {
        "template_spectrum": centred_spectrum(t, t.shape, r.shape),
        "reference_spectrum": reference_spectrum,
    }
    alone = ncc_map(t, r, None, mr)
    for given_ in ({}, *({k: v} for k, v in spectra.items()), spectra):
        np.testing.assert_array_equal(ncc_map(t, r, None, mr, **given_), alone)


@settings(max_examples=40, deadline=None)
@given(**_SMALL_PAIRS)
def test_ncc_map_in_rectangle_is_ncc_map_on_the_frame(h, w, my, mx, seed):
    """A valid rectangle anywhere in a frame (a view padded by the margin, an anchor's
    field): the map equals ncc_map's general path (the mask as numbers, correlated by
    FFTs) on the frame made of it, without the frame ever being made; a rectangle that
    does not fit is refused."""
    from sxtdist.alignment.ncc import centred, centred_spectrum, ncc_map_in_rectangle

    rng = np.random.default_rng(seed)
    t = rng.normal(size=(h, w)) + 2.0
    frame = (h + 2 * my, w + 2 * mx)
    mask = _random_rectangle(rng, frame)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    valid = rng.normal(size=(rows.size, cols.size)) - 1.0
    r = np.zeros(frame)
    r[mask] = valid.ravel()
    offset = (int(rows[0]), int(cols[0]))
    np.testing.assert_allclose(
        ncc_map_in_rectangle(t, valid, offset, frame),
        ncc_map(t, r, None, mask.astype(np.float64)),
        atol=1e-9,
    )
    spectra = {
        "template_spectrum": centred_spectrum(t, t.shape, frame),
        "reference_spectrum": centred_spectrum(valid, t.shape, frame),
    }
    np.testing.assert_array_equal(
        ncc_map_in_rectangle(t, valid, offset, frame, **spectra),
        ncc_map_in_rectangle(t, valid, offset, frame),
    )
    # the images less their means given (a stretch's, for all the pairs of a view)
    sums = {"template_centred": centred(t), "valid_centred": centred(valid)}
    np.testing.assert_array_equal(sums["valid_centred"][0], valid - valid.sum() / valid.size)
    np.testing.assert_array_equal(
        ncc_map_in_rectangle(t, valid, offset, frame, **spectra, **sums),
        ncc_map_in_rectangle(t, valid, offset, frame),
    )
    with pytest.raises(ValueError, match="another shape"):
        ncc_map_in_rectangle(t, valid, offset, frame, valid_centred=centred(valid[:, :0]))
    with pytest.raises(ValueError, match="must fit in the frame"):
        ncc_map_in_rectangle(t, valid, (frame[0] - rows.size + 1, 0), frame)


def test_ncc_map_takes_spectra_in_single_precision_frames_too():
    from sxtdist.alignment.ncc import SINGLE_PRECISION_FFT_SIZE, centred_spectrum

    rng = np.random.default_rng(1)
    t, other = rng.normal(size=(2, 300, 300))
    r, mr = pad_with_mask(other, (8, 8))
    assert math.prod(r.shape) >= SINGLE_PRECISION_FFT_SIZE
    f_t, f_r = (centred_spectrum(a, t.shape, r.shape) for a in (t, other))
    assert f_t.dtype == np.complex64
    got = ncc_map(t, r, None, mr, template_spectrum=f_t, reference_spectrum=f_r)
    np.testing.assert_array_equal(got, ncc_map(t, r, None, mr))


def test_ncc_map_refuses_spectra_it_cannot_use():
    from sxtdist.alignment.ncc import centred_spectrum, rectangle_spectrum

    rng = np.random.default_rng(0)
    t = rng.normal(size=(6, 5))
    r, mr = pad_with_mask(rng.normal(size=(6, 5)), (2, 2))
    spectrum = centred_spectrum(t, t.shape, r.shape)
    with pytest.raises(ValueError, match="spectrum of shape"):  # another frame's
        ncc_map(t, r, None, mr, template_spectrum=centred_spectrum(t, t.shape, (20, 20)))
    with pytest.raises(ValueError, match="all-valid template"):
        ncc_map(t, r, np.ones(t.shape, bool), mr, template_spectrum=spectrum)
    l_shape = mr.copy()
    l_shape[0, 0] = True  # not a rectangle: no spectrum for it
    assert rectangle_spectrum(r, l_shape, t.shape) is None
    with pytest.raises(ValueError, match="rectangle"):
        ncc_map(t, r, None, l_shape, reference_spectrum=spectrum)


def test_ncc_map_finds_the_rectangles_of_valid_pixels_it_can_sum_fast():
    from sxtdist.alignment.ncc import _box

    m = np.zeros((6, 7), bool)
    assert _box(m) is None
    m[1:4, 2:6] = True
    assert _box(m) == (1, 4, 2, 6)
    m[4, 2] = True  # an L: not a rectangle
    assert _box(m) is None
    assert _box(np.ones((3, 2), bool)) == (0, 3, 0, 2)


def test_ncc_surface_peak_is_subpixel_on_a_broad_flat_peak():
    # large smooth images give peaks within 1e-4 of each other across pixels; the
    # refinement must still move off the integer start (it did not, with default tolerances)
    y, x = np.mgrid[-4:5, -4:5]
    true = np.array([0.27, -0.3])
    ncc = 0.9987 - 2e-5 * ((y - true[0]) ** 2 + (x - true[1]) ** 2)
    s, _ = NccSurface(ncc).peak()
    np.testing.assert_allclose(s, true, atol=0.02)


def test_full_scan_moments_by_default_projection_matching_on_request(client, tiny_copy):
    kw = dict(client=client, report="", dry_run=True, progress=False)
    res = sxtdist.align(tiny_copy, scans=["full"], **kw)
    assert res.info["full"]["method"] == "moments" and res.info["full"]["iterations"] == 0
    res = sxtdist.align(tiny_copy, scans=["full"], method="projection-matching", **kw)
    assert res.info["full"]["method"] == "moments+projection_matching"
    assert 1 <= res.info["full"]["iterations"] <= 10
    res = sxtdist.align(tiny_copy, scans=["full"], full_iterations=2, tol_px=1e-9, **kw)
    assert res.info["full"]["iterations"] == 2


def test_ncc_map_in_single_precision_on_large_frames_keeps_the_peak():
    """Frames from SINGLE_PRECISION_FFT_SIZE on correlate in float32: the map stays within
    1e-5 of double precision and the sub-pixel peak within 1e-4 px."""
    import sxtdist.alignment.ncc as alignment
    from sxtdist.alignment.resample import pad_with_mask

    rng = np.random.default_rng(3)
    base = ndimage.gaussian_filter(rng.normal(size=(340, 340)), 3) * 5 + 2.0
    inner = (slice(20, 320), slice(20, 320))  # away from the edges the shift fills
    tpl = base[inner] + 0.02 * rng.normal(size=(300, 300))
    moved = ndimage.shift(base, (1.3, -0.7), order=3)[inner] + 0.02 * rng.normal(size=(300, 300))
    ref, mask = pad_with_mask(moved, (8, 8))
    assert alignment._ValidCorrelator(tpl.shape, ref.shape).dtype == np.float32
    single = alignment.ncc_map(tpl, ref, None, mask)
    original = alignment.SINGLE_PRECISION_FFT_SIZE
    try:
        alignment.SINGLE_PRECISION_FFT_SIZE = 10**12
        double = alignment.ncc_map(tpl, ref, None, mask)
    finally:
        alignment.SINGLE_PRECISION_FFT_SIZE = original
    assert 0 < np.abs(single - double).max() < 1e-5
    s1, _ = alignment.NccSurface(single).peak()
    s2, _ = alignment.NccSurface(double).peak()
    np.testing.assert_allclose(s1, s2, atol=1e-4)
    np.testing.assert_allclose(s2, [1.3, -0.7], atol=0.05)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), reversed_cols=st.booleans())
def test_bicubic_on_grid_is_ndimage_order_3_nearest(seed, reversed_cols):
    """Separable, but the same spline as ndimage's, edges included."""
    from sxtdist.alignment.resample import bicubic_on_grid

    rng = np.random.default_rng(seed)
    h, w = rng.integers(4, 30, 2)
    img = ndimage.gaussian_filter(rng.random((h, w)), 1.0) + 0.1 * rng.random((h, w))
    rows = np.sort(rng.uniform(-20, h + 20, rng.integers(1, 25)))
    cols = np.sort(rng.uniform(-20, w + 20, rng.integers(1, 25)))
    if reversed_cols:  # a mirrored anchor samples its columns backwards
        cols = cols[::-1]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    want = ndimage.map_coordinates(img, [rr, cc], order=3, mode="nearest")
    got = bicubic_on_grid(img, rows, cols)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), step=st.sampled_from([0.0, 0.5, 1.0]))
def test_nearest_on_grid_is_ndimage_order_0(seed, step):
    """The intensity samples' mask lookup by indexing: ndimage's order-0 rounding (half
    up) and edges (off outside [0, n - 1]), at whole, half and any sub-pixel offsets."""
    from sxtdist.alignment.tasks import _nearest_on_grid

    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 20, 2)
    mask = rng.random((h, w)) > 0.4
    off = rng.uniform(-4, 4, 2)
    if step:  # offsets on a whole or half pixel: the rounding's ties
        off = np.round(off / step) * step
    rows = np.arange(rng.integers(1, 25), dtype=float) + off[0]
    cols = np.arange(rng.integers(1, 25), dtype=float) + off[1]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    want = ndimage.map_coordinates(mask.astype(float), [rr, cc], order=0) > 0.5
    np.testing.assert_array_equal(_nearest_on_grid(mask, rows, cols), want)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), mirrored=st.booleans())
def test_anchor_on_roi_grid_equals_bicubic_interpolation_of_the_whole_view(seed, mirrored):
    """The crop it interpolates on changes nothing: same as map_coordinates on the whole
    full view at the ROI pixels' positions (geometry.py's convention), mask included (the
    detector's edge pixels left out)."""
    from sxtdist.alignment.resample import DETECTOR_EDGE_PX, anchor_on_roi_grid
    from sxtdist.geometry import ScanGeometry

    rng = np.random.default_rng(seed)
    hr, wr, hf, wf = (int(v) for v in rng.integers(8, 120, 4))
    pr = float(rng.uniform(5, 60))
    pf = pr * float(rng.uniform(0.5, 4))
    roi = ScanGeometry(np.zeros(1), pr, (hr, wr), center_offset_px=tuple(rng.normal(0, 10, 2)))
    full = ScanGeometry(
        np.zeros(1),
        pf,
        (hf, wf),
        shifts_px=rng.normal(0, 3, (1, 2)),
        center_offset_px=tuple(rng.normal(0, 3, 2)),
    )
    view = rng.normal(size=(hf, wf))
    my, mx = (int(v) for v in rng.integers(0, 12, 2))
    got, mask = anchor_on_roi_grid(view, full, 0, roi, (my, mx), mirrored)
    z = (np.arange(-my, hr + my) - (hr - 1) / 2 + roi.center_offset_px[0]) * pr
    u = (np.arange(-mx, wr + mx) - (wr - 1) / 2 + roi.center_offset_px[1]) * pr
    u = -u if mirrored else u
    rf = z / pf + (hf - 1) / 2 - full.center_offset_px[0] + full.shifts_px[0, 0]
    cf = u / pf + (wf - 1) / 2 - full.center_offset_px[1] + full.shifts_px[0, 1]
    rr, cc = np.meshgrid(rf, cf, indexing="ij")
    want = ndimage.map_coordinates(view, [rr, cc], order=3, mode="nearest")
    np.testing.assert_allclose(got, want, atol=1e-8)
    # valid: inside the full detector less its DETECTOR_EDGE_PX outermost pixels
    e = DETECTOR_EDGE_PX
    inside = (rr >= e) & (rr <= hf - 1 - e) & (cc >= e) & (cc <= wf - 1 - e)
    np.testing.assert_array_equal(mask, inside)


def test_info_line_of_a_full_scan_alignment():
    """``sxtdist info``'s line for a full scan aligned by its moments and with the pairs."""
    from sxtdist.cli.info import _alignment_details

    recorded = {
        "date": "2026-12-02", "start": "row_profiles+weighted_centroid",
        "weighted_centroid_sigma_px": [0.05, 0.041, 0.062], "axis_offset_px": -0.0312,
        "joint_with_roi": True,
    }  # fmt: skip
    assert _alignment_details(recorded) == (
        "date 2026-12-02; row profiles and weighted centroids (centroid noise median "
        "0.050 px); rotation axis offset -0.03 px; refined jointly with the interior pairs"
    )
    recorded["joint_downweighted_views"] = [4, 12]  # as recorded before the weights were
    assert _alignment_details(recorded).endswith(
        "refined jointly with the interior pairs; own shifts weighted down for views [4, 12]"
    )
    recorded["joint_downweighted_weights"] = [0.225, 0.49]
    assert _alignment_details(recorded).endswith(
        "own shifts weighted down for views 4 (to 22%), 12 (to 49%)"
    )
    recorded["cut_views"] = [3, 7]  # their centroid misses what lies beyond the edge
    cut = "0.050 px); cell cut by the detector's edges in views [3, 7]; rotation axis"
    assert cut in _alignment_details(recorded)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    sigma=st.one_of(
        st.floats(0, 5), st.tuples(st.sampled_from([0.0, 1e-300, 0.7, 3.0]), st.floats(0, 5))
    ),
)
def test_gaussian_blur_is_ndimages(seed, shape, sigma):
    """The blur every compared image gets is ``ndimage.gaussian_filter`` (double precision,
    ``nearest`` edges), whatever order it filters the axes in; to the last bit, ndimage's
    pass along the rows, then across them (what the alignment's shifts are pinned to,
    ``tests/test_align_graph.py``), whatever the strides it works on."""
    from sxtdist.alignment.resample import gaussian_blur

    img = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    want = ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="nearest")
    got = gaussian_blur(img, sigma)
    assert got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    sy, sx = np.broadcast_to(np.asarray(sigma, float), (2,))
    passes = img.astype(np.float64)
    for axis, s in ((1, sx), (0, sy)):
        if s > 1e-15:
            passes = ndimage.gaussian_filter1d(passes, s, axis=axis, mode="nearest")
    np.testing.assert_array_equal(got, passes)


def test_a_neighbour_pair_weighs_by_its_views_overlap():
    """A neighbour pair whose views overlap by 55 % at its peak, 0.6 px off (what the
    ``large`` family's did at that overlap): weighted by its overlap (a tenth) it moves
    its views by 0.03 px; weighted as a whole overlap it moved them by 0.17."""
    from sxtdist.alignment.shifts import overlap_weight, pair_weights

    assert overlap_weight(1.0) == 1.0 and overlap_weight(0.75) == pytest.approx(0.5)
    assert overlap_weight(0.5) == overlap_weight(0.3) > 0  # never nothing: a misfit to read
    n = 12
    angles = np.arange(n) * 2.0
    flat = np.zeros((21, 21))

    def solved(bias: float) -> np.ndarray:
        results = []
        for i in range(n):
            results.append(PairResult(Pair("anchor", i, 0), flat, np.zeros(2), 0.99, 0.1))
            if i + 1 < n:
                r = PairResult(Pair("neighbour", i, i + 1), flat, np.zeros(2), 0.99, 0.1)
                if i == 5:
                    r.shift, r.overlap = np.array([0.0, bias]), 0.55
                results.append(r)
        w = pair_weights(results, angles)
        assert w[next(k for k, r in enumerate(results) if r.overlap < 1)] == pytest.approx(0.1)
        return solve_shifts(n, results, angles, np.zeros(1), False, robust_pairs=None)[0]

    moved = np.abs(solved(0.6) - solved(0.0))
    assert moved[:, 0].max() < 1e-9 and 0.01 < moved[5:7, 1].max() < 0.05, moved[:, 1]


def test_a_pair_whose_peak_overshoots_weighs_nothing():
    """A neighbour pair whose spline peak passes 1 (:data:`OVERSHOOT_PEAK`), 1 px off (as
    on the ``large`` family) with its views overlapping whole: it weighs
    :data:`MIN_OVERLAP_WEIGHT` and moves its views by under 0.01 px; one at 1.004 weighs
    as any."""
    from sxtdist.alignment.pairs import OVERSHOOT_PEAK
    from sxtdist.alignment.shifts import MIN_OVERLAP_WEIGHT, pair_weights

    n = 12
    angles = np.arange(n) * 2.0
    flat = np.zeros((21, 21))

    def chain(bias: float, peak: float) -> list[PairResult]:
        out = []
        for i in range(n):
            out.append(PairResult(Pair("anchor", i, 0), flat, np.zeros(2), 0.99, 0.1))
            if i + 1 < n:
                s = np.array([0.0, bias if i == 5 else 0.0])
                out.append(PairResult(Pair("neighbour", i, i + 1), flat, s, 0.99, 0.1))
                out[-1].peak = peak if i == 5 else 0.99
        return out

    def moved(peak: float) -> float:
        d = [solve_shifts(n, chain(b, peak), angles, np.zeros(1), False, robust_pairs=None)[0]
             for b in (1.0, 0.0)]  # fmt: skip
        return float(np.abs(d[0] - d[1]).max())

    w = pair_weights(chain(1.0, 1.01), angles)
    assert sorted(set(w)) == [MIN_OVERLAP_WEIGHT, 1.0] and 1.01 > OVERSHOOT_PEAK
    assert moved(1.01) < 0.01 < 0.2 < moved(1.004)


def test_aligning_the_full_scan_alone_marks_the_anchored_interior_stale(tmp_path, client, run_cli):
    """Re-aligning the full scan alone re-centres it: the interior anchored to it no longer
    fits, and align, info and reconstruct say so until it is aligned again; a joint
    alignment and an interior aligned to the stored full scan are not stale
    (review 5 finding 8)."""
    from sxtdist.alignment.anchoring import ANCHORED_TO, stale_anchoring
    from sxtdist.cli.info import describe
    from sxtdist.io.metadata import edit_scan
    from sxtdist.runner import build_problem

    path = tmp_path / "s.zarr"
    sxtdist.simulate(path, preset="tiny", seed=14, shifts_px=1.5)
    kw = dict(client=client, report="", progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*alignment stale", SxtdistWarning)
        sxtdist.align(path, **kw)  # jointly
        assert stale_anchoring(sxtdist.open_acquisition(path)) is None
        assert "stale" not in describe(str(path))
        build_problem(sxtdist.open_acquisition(path), iterations=1)
    with pytest.warns(SxtdistWarning, match=r"'roi' was aligned to the earlier shifts of 'full'"):
        sxtdist.align(path, scans=["full"], **kw)
    acq = sxtdist.open_acquisition(path)
    assert "the full scan changed since" in stale_anchoring(acq)
    text = describe(str(path))
    assert "verdict: stale (was " in text and "warning: scan 'roi'" in text, text
    with pytest.warns(SxtdistWarning, match="alignment stale"):
        build_problem(acq, iterations=1)  # what reconstruct, --dry-run and batch build
    build_problem(acq, iterations=1, scans=["full"])  # the full scan alone: no warning
    code, out, err = run_cli("info", path, "--json")
    assert code == 0 and "alignment stale" in err and json.loads(out)["kind"] == "acquisition"
    sxtdist.align(path, scans=["roi"], **kw)  # anchored to the stored full scan: fits again
    assert stale_anchoring(sxtdist.open_acquisition(path)) is None
    edit_scan(path, "full", center_offset_px=(0.0, 0.5))  # what the anchors saw moved
    assert stale_anchoring(sxtdist.open_acquisition(path)) is not None
    # an alignment stored before the digest was recorded: judged by the dates
    acq = sxtdist.open_acquisition(path, mode="r+")
    al = {k: v for k, v in acq["roi"].meta["alignment"].items() if k != ANCHORED_TO}
    acq.update_scan("roi", alignment={**al, "date": "2026-01-01T00:00:00+00:00"})
    assert "was aligned again on" in stale_anchoring(sxtdist.open_acquisition(path))
    acq.update_scan("roi", alignment={**al, "date": "2999-01-01T00:00:00+00:00"})
    assert stale_anchoring(sxtdist.open_acquisition(path)) is None
