"""The alignment's verdict: ``trusted`` or the views to check and why, from the pairs alone;
stored with the shifts and shown by ``sxtdist info``."""

from __future__ import annotations

import re

import numpy as np
import pytest

import sxtdist
from sxtdist.alignment.confidence import sigma_ratio, weakly_tied
from sxtdist.alignment.pairs import Pair, PairResult
from sxtdist.alignment.verdict import MISFIT_FLAG_PX, Verdict, judge


def _results(pairs, peaks=None):
    peaks = peaks or [0.99] * len(pairs)
    return [PairResult(p, np.zeros((3, 3)), np.zeros(2), q, 0.5) for p, q in zip(pairs, peaks)]


#: A chain of 5 interior views, each anchored to full view 0 or 1.
PAIRS = [Pair("anchor", i, i // 3) for i in range(5)] + [
    Pair("neighbour", i, i + 1) for i in range(4)
]


def test_clean_pairs_are_trusted():
    v = judge(_results(PAIRS), np.full((9, 2), 0.05), np.ones(9), np.ones(9), 5)
    assert v.trusted and v.line() == "trusted" and v.scan_line("roi") == "trusted"


def test_a_pair_that_does_not_close_its_loop_names_its_views():
    misfit = np.full((9, 2), 0.05)
    misfit[6] = (0.0, MISFIT_FLAG_PX + 0.05)  # neighbour 1-2
    kept = np.ones(9)
    kept[6] = 0.3  # weighted down by the robust rule: it still counts
    v = judge(_results(PAIRS), misfit, kept, np.ones(9), 5)
    assert v.roi == {1: "pair misfit over 0.25 px", 2: "pair misfit over 0.25 px"}
    assert v.line() == "check views roi 1, 2 (pair misfit over 0.25 px)"
    misfit[6] = (0.0, MISFIT_FLAG_PX - 0.05)
    assert judge(_results(PAIRS), misfit, np.ones(9), np.ones(9), 5).trusted
    # a far anchor's misfit counts as little as it weighs
    misfit[0] = (0.0, 2 * MISFIT_FLAG_PX)
    weights = np.ones(9)
    weights[0] = 0.2
    assert judge(_results(PAIRS), misfit, np.ones(9), weights, 5).trusted


def test_views_no_trusted_pair_ties_and_frames_that_correlate_poorly():
    kept = np.ones(9)
    kept[[4, 7, 8]] = [np.nan, 0.2, np.nan]  # view 4: left out, weighted down, left out
    peaks = [0.99] * 9
    peaks[0] = 0.5  # view 0's anchor
    peaks[5] = 0.4  # and its neighbour pair 0-1 ...
    v = judge(_results(PAIRS, peaks), np.zeros((9, 2)), kept, np.ones(9), 5)
    assert v.roi[4] == "no trusted pair"
    assert v.roi[0] == "pairs correlate poorly"  # all its pairs; view 1 has good ones
    assert 1 not in v.roi


def test_a_pair_whose_peak_overshoots_names_no_views():
    """A pair peaking above 1 weighs as nothing in the solve
    (:data:`~sxtdist.alignment.pairs.OVERSHOOT_PEAK`, ``test_align``): the verdict has
    nothing to name for it."""
    peaks = [0.99] * 9
    peaks[6] = 1.01  # neighbour 1-2
    misfit = np.full((9, 2), 0.05)
    assert judge(_results(PAIRS, peaks), misfit, np.ones(9), np.ones(9), 5).trusted


def test_a_rejected_full_view_with_too_few_anchors():
    kept = np.ones(9)
    kept[3] = np.nan  # full view 1 keeps one anchor (view 4)
    v = judge(_results(PAIRS), np.zeros((9, 2)), kept, np.ones(9), 5, full_rejected=[0, 1])
    assert v.full == {1: "own estimate rejected, too few anchors"}  # view 0 has 3
    assert v.line() == "check views full 1 (own estimate rejected, too few anchors)"
    assert v.scan_line("roi") == "trusted"


def test_standard_errors_of_a_mean_known_answer():
    """Four measurements of one value: the mean's standard error is their sample standard
    deviation (n - 1 degrees of freedom) over the square root of 4."""
    from scipy import sparse

    from sxtdist.alignment.confidence import standard_errors

    b = np.array([1.0, 2.0, 4.0, 5.0])
    a = sparse.csr_matrix(np.ones((4, 1)))
    se = standard_errors(a, b, np.array([b.mean()]))
    assert se[0] == pytest.approx(np.std(b, ddof=1) / 2.0)


def _mean_fits(*axes):
    """One unknown per axis, measured once by each row of that axis's values (a mean):
    each axis's :class:`~sxtdist.alignment.confidence.AxisFit` at its solution."""
    from scipy import sparse

    from sxtdist.alignment.confidence import AxisFit

    return [
        AxisFit.of(sparse.csr_matrix(np.ones((len(b), 1))), b, np.array([b.mean()]))
        for b in map(np.asarray, axes)
    ]


def test_leave_one_out_of_a_mean_known_answer():
    """40 measurements of one value per axis, the last 9 the "full views": leaving
    measurement j out moves the mean by r_j / (N - 1), and its externally studentised
    residual is r_j^2 / ((1 - 1/N) s^2), s^2 = sum r^2 / (N - 1). Each axis's scale is
    calibrated by the full views' median of it over the chi-square's median (0.455 for
    one degree of freedom), the p-value the chi-square's of 2. The full views' dx err four
    times as much as the rest: dx's calibration takes it out, dy's stays 1."""
    from scipy import stats

    from sxtdist.alignment.consistency import leave_full_views_out

    rng = np.random.default_rng(0)
    n, m = 40, 9
    dy, dx = rng.normal(0.0, 0.05, (2, n))
    dx[n - m :] *= 4.0
    loo = leave_full_views_out(_mean_fits(dy, dx), [np.array([k]) for k in range(n - m, n)], 1)
    moves, t2 = [], []
    for b in (dy, dx):
        r = b - b.mean()
        moves.append(r[n - m :] / (n - 1))
        t2.append(r[n - m :] ** 2 / ((1 - 1 / n) * np.sum(r**2) / (n - 1)))
    scale = [max(np.median(t) / stats.chi2.median(1), 1.0) for t in t2]
    assert scale[1] > 2.0 and scale[0] < 1.5
    assert loo.move_px[:, 0] == pytest.approx(np.hypot(*moves))
    assert loo.p == pytest.approx(stats.chi2.sf(t2[0] / scale[0] + t2[1] / scale[1], 2))


def test_leave_one_out_names_views_by_significance_and_size():
    """A view is named when its full view is contradicted beyond the chance
    :data:`~sxtdist.alignment.consistency.SIGNIFICANCE` split over the full views and it
    moves over :data:`~sxtdist.alignment.consistency.MOVE_FLAG_PX`; a move over
    :data:`~sxtdist.alignment.consistency.MOVE_ALWAYS_PX` whatever the significance."""
    from sxtdist.alignment.consistency import (
        MOVE_ALWAYS_PX,
        MOVE_FLAG_PX,
        SIGNIFICANCE,
        LeaveOneOut,
    )

    over, under = MOVE_FLAG_PX + 0.05, MOVE_FLAG_PX - 0.05
    move = np.array([[over, under, 0.0], [over, 0.0, MOVE_ALWAYS_PX - 0.05]])
    p = np.array([0.9 * SIGNIFICANCE / 2, 1.1 * SIGNIFICANCE / 2])  # 2 full views
    loo = LeaveOneOut(move, p, np.ones(2))
    assert loo.flagged() == {0: (0, over)}
    move[1, 2] = MOVE_ALWAYS_PX + 0.05
    assert loo.flagged() == {0: (0, over), 2: (1, MOVE_ALWAYS_PX + 0.05)}


def test_verdict_line_groups_by_reason():
    v = Verdict(roi={3: "a", 1: "a", 7: "b"}, full={2: "c"})
    assert v.line() == "check views roi 1, 3 (a); 7 (b); full 2 (c)"


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        yield c


def test_align_stores_the_verdict_and_info_shows_it(client, tmp_path, run_cli, monkeypatch):
    """Clean noise-free data, the full views' own ``dx`` from their weighted centroids
    (``tiny``'s 16 rows would give the plain centre of mass, which only fixes the gauge:
    :func:`test_the_tiny_demo_whose_full_views_own_shifts_tie_nothing_is_not_trusted`):
    trusted, stored and shown. Three quarters of interior frame 12 lost: its pairs
    correlate poorly, the verdict names it, a warning says so, and the stored record keeps
    the views to check."""
    import zarr

    import sxtdist.alignment.fullscan as fullscan

    monkeypatch.setattr(fullscan, "MIN_SLICE_WEIGHT_CONTRAST", 0.0)
    path = tmp_path / "t.zarr"
    acq = sxtdist.simulate(path, preset="tiny", seed=3, photons=0)
    res = sxtdist.align(acq, client=client, report="")
    assert res.verdict == "trusted"
    assert res.info["roi"]["verdict"] == res.info["full"]["verdict"] == "trusted"
    code, out, _ = run_cli("info", path)
    assert code == 0 and out.count("verdict: trusted") == 2
    assert re.search(
        r"views' standard error median 0\.\d{3} px \(largest 0\.\d{3} px, view \d+\)", out
    )
    assert re.search(
        r"leave-one-out: largest move \d\.\d{3} px \(view \d+, without full view \d+, p = ", out
    )
    assert re.search(r"pairs alone: largest dy move \d\.\d{3} px \(view \d+\)", out)
    assert re.search(r"largest standard error 1\.\d\d times the median \(view \d+\)", out)
    # no full view cut: no stretch without their own dx, and info says nothing of it
    n_full = acq["full"].geometry.n_angles
    assert res.info["roi"]["cut_stretch_deg"] == [0.0] * n_full
    assert res.info["roi"]["cut_stretch_flagged"] == {"roi": [], "full": []}
    assert "without their own dx" not in out
    arr = zarr.open_array(acq["roi"].path, mode="r+")
    frame = arr[12]
    frame[:, : 3 * frame.shape[1] // 4] = np.median(frame)
    arr[12] = frame
    with pytest.warns(sxtdist.errors.SxtdistWarning, match=r"alignment: check views roi .*12"):
        res = sxtdist.align(acq, client=client, report="")
    assert res.verdict.startswith("check views roi") and 12 in res.info["roi"]["check_views"]
    stored = sxtdist.open_acquisition(path)["roi"].meta["alignment"]
    assert 12 in stored["check_views"] and stored["verdict"].startswith("check views")
    code, out, _ = run_cli("info", path)
    assert "verdict: check views" in out


def test_own_estimates_unused_known_answer():
    """Every full view's own estimate only the gauge: every view of both scans named, with
    its reason (a view another check names keeps that check's); one full view's own
    estimate weighed, or no full scan: nothing."""
    from sxtdist.alignment.verdict import NAMED_REASONS, own_estimates_unused

    every = own_estimates_unused([1, 0], 5, 2)
    assert every == {"roi": [0, 1, 2, 3, 4], "full": [0, 1]}
    assert own_estimates_unused([1], 5, 2) == {"roi": [], "full": []}
    assert own_estimates_unused([], 5, 0) == {"roi": [], "full": []}
    misfit = np.zeros((9, 2))
    misfit[6] = (0.0, MISFIT_FLAG_PX + 0.05)  # neighbour 1-2
    v = judge(_results(PAIRS), misfit, np.ones(9), np.ones(9), 5, named={"own_unused": every})
    why = NAMED_REASONS["own_unused"]
    assert v.roi == {0: why["roi"], 1: "pair misfit over 0.25 px", 2: "pair misfit over 0.25 px",
                     3: why["roi"], 4: why["roi"]}  # fmt: skip
    assert v.full == {0: why["full"], 1: why["full"]}
    assert v.line() == (
        "check views roi 0, 3, 4 (no full view's own shift ties it); 1, 2 (pair misfit over "
        "0.25 px); full 0, 1 (own shift only fixes the gauge)"
    )


def test_the_tiny_demo_whose_full_views_own_shifts_tie_nothing_is_not_trusted(client, tiny_acq):
    """The ``tiny`` preset at its own dose (the demo's settings, seed 3): its 16-row full
    views look the same along the axis, their ``dx`` comes from the plain centre of mass,
    and the joint solve weighs no full view's own shift more than the gauge. The pairs alone
    place both scans, every loop closing (no pair misfit, standard errors under 0.08 px), and
    the interior ends over 0.5 px off: it was ``trusted``; now every view is named."""
    with pytest.warns(sxtdist.errors.SxtdistWarning, match="no full view's own shift ties it"):
        res = sxtdist.align(tiny_acq, client=client, report="", dry_run=True)
    n_roi, n_full = (
        sxtdist.open_acquisition(tiny_acq)[s].geometry.n_angles for s in ("roi", "full")
    )
    assert np.hypot(*res.error_arrays(sxtdist.open_acquisition(tiny_acq))["roi"].T).max() > 0.5
    assert res.info["roi"]["full_views_gauge_only"] == list(range(n_full))
    assert res.info["roi"]["check_views"] == list(range(n_roi))
    assert res.info["full"]["check_views"] == list(range(n_full))
    assert res.info["full"]["verdict"] == (
        "check views 0, 1, 2, 3, 4, 5, 6, 7, 8 (own shift only fixes the gauge)"
    )


def test_a_full_view_no_trusted_anchor_ties_is_named():
    """Full view 1's anchors (views 3 and 4) all left out or weighted down: named; full
    view 0 keeps its three."""
    kept = np.ones(9)
    kept[[3, 4]] = [np.nan, 0.2]
    v = judge(_results(PAIRS), np.zeros((9, 2)), kept, np.ones(9), 5)
    assert v.full == {1: "no trusted anchor"} and v.scan_line("roi") == "trusted"


def test_a_search_narrower_than_the_motion_is_not_trusted(client, tmp_path):
    """The interior slips 5 px in ``dx`` half-way through the scan and the search is
    narrowed to 3 px: the anchors past the slip peak on the search's edge and are left
    out, the interior ends over 0.5 px off (3.2 px) while its neighbour pairs agree; the
    full views they tied are named."""
    from sxtdist.alignment.options import AlignOptions
    from sxtdist.simulation import simulation_geometries
    from sxtdist.simulation.presets import get_preset

    preset = get_preset("tiny")
    geoms = simulation_geometries(preset, preset.full, preset.roi)
    rng = np.random.default_rng(1)
    n_roi, n_full = geoms["roi"].n_angles, geoms["full"].n_angles
    roi = rng.normal(0.0, 0.3, (n_roi, 2))
    roi[n_roi // 2 :, 1] += 5.0
    motion = {"roi": roi, "full": rng.normal(0.0, 0.5, (n_full, 2))}
    acq = sxtdist.simulate(tmp_path / "t.zarr", preset="tiny", seed=1, motion=motion)
    with pytest.warns(sxtdist.errors.SxtdistWarning, match="no trusted anchor"):
        res = sxtdist.align(
            acq, options=AlignOptions(max_shift_px=3.0), client=client, report="", dry_run=True
        )
    assert np.hypot(*res.error_arrays(acq)["roi"].T).max() > 0.5
    assert res.verdict != "trusted"


def _joint_case(
    bias_full_px: float,
    seed: int = 2,
    anchor_bias_px: float = 0.0,
    dy_full_px=None,
    lost_anchors: int = 0,
    no_own_dx=(),
    anchor_dx_px=None,
):
    """A joint solve of 90 interior views (2° apart) and 9 full views (20° apart) from
    pairs measured with 0.03 px of noise, the full views' own estimates right but full
    view 4's said to be ``bias_full_px`` off in ``dx``: its anchors then pull their
    stretch of the interior with it while every pair agrees. ``anchor_bias_px``: each
    full view's anchors share an error in ``dx`` drawn with this spread (as a rotation
    model's), which no one full view's own estimate explains. ``dy_full_px`` ``(9,)``:
    the full views' own ``dy`` estimates off by these (full px). ``lost_anchors``: the
    last interior views without an anchor (left out at the search's edge);
    ``no_own_dx``: full views whose own ``dx`` estimate weighs only the gauge (the
    detector's edges cut their cell); ``anchor_dx_px`` ``(9,)``: each full view's anchors
    off in ``dx`` by these (interior px) besides. Returns the pairs, the
    record and each interior view's error (the object's position taken out), and the
    errors per axis ``(90, 2)``."""
    from sxtdist.alignment.pairs import plan_pairs
    from sxtdist.alignment.shifts import GAUGE_WEIGHT, full_prior_weights, solve_joint

    rng = np.random.default_rng(seed)
    roi_angles, full_angles = np.arange(90) * 2.0, np.arange(9) * 20.0
    truth = rng.normal(0.0, 3.0, (90, 2))
    shared = rng.normal(0.0, anchor_bias_px, 9) if anchor_bias_px else np.zeros(9)
    if anchor_dx_px is not None:
        shared = shared + np.asarray(anchor_dx_px, float)
    results = []
    for p in plan_pairs(roi_angles, full_angles):
        if p.kind == "anchor" and p.i >= 90 - lost_anchors:
            continue
        d = truth[p.i] - (truth[p.j] if p.kind == "neighbour" else 0.0)
        shift = -d + rng.normal(0.0, 0.03, 2)
        if p.kind == "anchor":
            shift[1] += shared[p.j]
        results.append(PairResult(p, np.zeros((65, 65)), shift, 0.99, 0.5))
    info = {"weighted_centroid_sigma_px": [0.05] * 9}
    target = np.zeros((9, 2))
    target[4, 1] = bias_full_px
    if dy_full_px is not None:
        target[:, 0] = dy_full_px
    weights = full_prior_weights(info, 9)
    weights[list(no_own_dx), 1] = GAUGE_WEIGHT
    d, _, rec = solve_joint(2.0, results, roi_angles, full_angles, weights, prior_target=target)
    err = d - truth
    err -= err.mean(axis=0)
    return results, rec, np.hypot(*err.T), err


@pytest.mark.parametrize("bias", [0.0, 0.35])
def test_leave_one_out_sees_a_stretch_bent_by_one_full_view(bias):
    """A full view's own estimate 0.35 full px (0.7 interior px) off bends the interior
    views it anchors together: the pairs' misfit stays under its flag, the leave-one-out
    check names the stretch and the full view. Unbiased: nothing named."""
    from sxtdist.alignment.shifts import pair_weights

    results, rec, err, _ = _joint_case(bias)
    w = pair_weights(results, np.arange(90) * 2.0)
    misfit = np.asarray(rec["pair_misfit_px"], float)
    by_pairs = judge(results, misfit, np.ones(len(results)), w, 90)
    assert by_pairs.trusted  # the pairs alone see nothing either way
    v = judge(results, misfit, np.ones(len(results)), w, 90, (), rec["leave_one_out_flagged"])
    if bias:
        assert err.max() > 0.5
        bad = set(np.flatnonzero(err > 0.5))
        assert bad <= set(v.roi) and v.full == {4: "contradicted by the rest (leave-one-out)"}
        assert all("without full view 4" in why for why in v.roi.values())
        # the record keeps whether the rest contradicted the full view (1: it did)
        assert {tuple(e[1:2] + e[3:]) for e in rec["leave_one_out_flagged"]} == {(4, 1)}
    else:
        assert err.max() < 0.2 and v.trusted
    assert len(rec["leave_one_out_move_px"]) == 90


def test_leave_one_out_is_quiet_on_errors_the_anchors_share():
    """Every full view's anchors off in ``dx`` by their own 0.1 px (the full views' own
    estimates right): each axis's calibration takes the spread the full views share out,
    and no view is named on 12 seeds whose views are all within 0.35 px (a scale
    calibrated over both axes together, and against 1 instead of the chi-square's
    median, named views on 2 of them)."""
    errors, named = [], []
    for seed in range(12):
        _, rec, err, _ = _joint_case(0.0, seed, anchor_bias_px=0.1)
        errors.append(err.max())
        named.append(rec["leave_one_out_flagged"])
    assert max(errors) < 0.35
    assert not any(named)


def test_weakly_tied_views_known_answer():
    """A view's standard error over 3 times its axis's median, in either axis: named."""
    sigma = np.full((10, 2), 0.05)
    sigma[3, 1] = 0.151
    sigma[7, 0] = 0.149
    assert weakly_tied(sigma).tolist() == [3]
    assert sigma_ratio(sigma)[[3, 7, 0]] == pytest.approx([3.02, 2.98, 1.0])
    assert weakly_tied(np.zeros((0, 2))).size == 0


@pytest.mark.parametrize("lost", [0, 10])
def test_views_the_solve_ties_weakly_are_named(lost):
    """As on ``align_motion.py --families drift --motion-scale 3 --full 19 --seeds 6`` (a
    development seed, 0.60 px off and trusted before this check): the last interior
    views' anchors lost and the full views at the scan's ends without their own ``dx``
    (cut by the edges): those interior views hang on the chain of neighbours from one
    side (the scan's two ends meet through the mirrored full view), their standard error
    grows along it, and every pair still closes. The views
    over 3 times the median are named, whatever the noise (the ratio is the design's, at
    the weights the robust rules left: two noise draws agree to 0.02);
    every anchor kept: nothing named."""
    from sxtdist.alignment.shifts import pair_weights

    ratios = []
    for seed in (2, 3):
        results, rec, _, _ = _joint_case(0.0, seed, 0.1, lost_anchors=lost, no_own_dx=(0, 1, 7, 8))
        ratios.append(rec["sigma_ratio"])
        w = pair_weights(results, np.arange(90) * 2.0)
        misfit = np.asarray(rec["pair_misfit_px"], float)
        args = (results, misfit, np.ones(len(results)), w, 90, (), rec["leave_one_out_flagged"])
        assert judge(
            *args, named={"pairs_alone": rec["pairs_alone_flagged"]}
        ).trusted  # none sees it
        v = judge(*args, named={"weakly_tied": {"roi": rec["weakly_tied_views"]}})
        if lost:
            ends = {*range(10), *range(70, 90)}  # 0° and 180° meet: one end of the chain
            assert set(range(84, 90)) <= set(v.roi) <= ends and not v.full
            assert set(v.roi.values()) == {"standard error over 3 times the median"}
        else:
            assert v.trusted and max(rec["sigma_ratio"]) < 1.5
    assert ratios[0] == pytest.approx(ratios[1], abs=0.02)


@pytest.mark.parametrize("amplitude", [0.0, 0.4])
def test_an_error_the_full_views_own_dy_share_is_named(amplitude):
    """Every full view's own ``dy`` estimate off by ``amplitude * sin 2φ`` full px (a smooth
    error they share, as row profiles of cells the detector cuts can make), the pairs
    right: the interior follows the estimates while every pair agrees, and each full view
    is about as far off as the rest, so leaving one out at a time sees nothing. The pairs
    alone place each interior view's ``dy`` at the truth, so the check's move is the joint
    solve's ``dy`` error and each full view's distance from the pairs alone is its own
    estimate's error, the other way (known answers, to the chain's noise: 0.06-0.12 px
    on these pairs). The views over 0.25 px are named, with the full views. No shared
    error: nothing named."""
    from sxtdist.alignment.shifts import pair_weights

    full_angles = np.arange(9) * 20.0
    dy_off = amplitude * np.sin(np.deg2rad(2 * full_angles))
    results, rec, err, axes = _joint_case(0.0, seed=3, dy_full_px=dy_off)
    move = np.asarray(rec["pairs_alone_dy_move_px"])
    assert move == pytest.approx(np.abs(axes[:, 0]), abs=0.15)
    full_px = np.asarray(rec["pairs_alone_dy_full_px"])  # interior px, 2 per full px
    assert full_px == pytest.approx(-2.0 * (dy_off - dy_off.mean()), abs=0.15)
    w = pair_weights(results, np.arange(90) * 2.0)
    misfit = np.asarray(rec["pair_misfit_px"], float)
    args = (results, misfit, np.ones(len(results)), w, 90, (), rec["leave_one_out_flagged"])
    assert judge(*args).trusted  # neither the pairs nor leave-one-out see it
    v = judge(*args, named={"pairs_alone": rec["pairs_alone_flagged"]})
    if amplitude:
        assert err.max() > 0.5
        assert set(np.flatnonzero(err > 0.5)) <= set(v.roi)
        assert set(v.roi) == set(np.flatnonzero(move > 0.25))
        assert set(v.full) == set(np.flatnonzero(np.abs(full_px) > 0.25))
        assert set(v.full) >= {1, 2, 3, 6, 7, 8}  # |sin 2φ| 0.64-0.98: 0.51-0.79 interior px
        assert all(why == "own dy contradicted by the pairs alone" for why in v.full.values())
    else:
        assert err.max() < 0.2 and v.trusted


def test_a_full_view_with_no_signal_is_named():
    """A full view the full scan's step found empty (``full_no_signal``): named, whatever
    its anchors say; the interior stays trusted."""
    v = judge(_results(PAIRS), np.zeros((9, 2)), np.ones(9), np.ones(9), 5, full_no_signal=[1])
    assert v.full == {1: "no signal"} and v.scan_line("roi") == "trusted"
    assert v.line() == "check views full 1 (no signal)"


def test_no_signal_views_constant_or_not_finite():
    from sxtdist.alignment.tasks import no_signal_views

    views = np.random.default_rng(0).normal(1.0, 0.1, (5, 8, 8))
    views[1] = 13.8  # a frame clipped whole
    views[3, 2, 2] = np.nan
    assert no_signal_views(views) == [1, 3]


def test_a_blank_full_view_is_named_and_a_blank_full_scan_refused(client, tmp_path, run_cli):
    """One full view constant (a beam drop): aligned, the verdict names it ``no signal``
    (its centroid measured nothing, but its moments gave it a shift). Every full view
    constant: refused before the interior is aligned, exit 2 in one line naming the scan."""
    import zarr

    path = tmp_path / "t.zarr"
    acq = sxtdist.simulate(path, preset="tiny", seed=3, photons=0)
    arr = zarr.open_array(acq["full"].path, mode="r+")
    arr[2] = np.full(arr.shape[1:], 0.7, arr.dtype)
    # tiny's other full views: only the gauge (the plain centre of mass), named for that
    only_2 = r"full 0, 1, 3, 4, 5, 6, 7, 8 \(own shift only fixes the gauge\); 2 \(no signal\)"
    with pytest.warns(sxtdist.errors.SxtdistWarning, match=only_2):
        res = sxtdist.align(acq, client=client, report="")
    assert 2 in res.info["full"]["check_views"]
    arr[:] = np.full(arr.shape, 0.7, arr.dtype)
    before = sxtdist.open_acquisition(path)["roi"].meta["alignment"]
    code, out, err = run_cli("align", path, "--no-progress")
    assert code == 2 and "Traceback" not in err
    assert "every view of the full scan is constant (no signal)" in err
    assert sxtdist.open_acquisition(path)["roi"].meta["alignment"] == before


def test_a_view_named_by_the_size_of_its_move_alone_says_so():
    """Leave-one-out names a move over 1 px whether or not the rest contradicts the full
    view (the floor); the reasons then say so, not 'contradicted'. A record of three
    entries (before the flag was kept) reads as contradicted."""
    clean = (_results(PAIRS), np.zeros((9, 2)), np.ones(9), np.ones(9), 5, ())
    v = judge(*clean, [[2, 0, 1.3, 0], [3, 1, 0.4, 1]])
    assert v.roi == {
        2: "move over 1 px without full view 0",
        3: "move over 0.25 px without full view 1",
    }
    assert v.full == {
        0: "alone carries interior views (leave-one-out)",
        1: "contradicted by the rest (leave-one-out)",
    }
    assert judge(*clean, [[2, 0, 1.3]]).full == {0: "contradicted by the rest (leave-one-out)"}


def test_an_error_the_full_views_share_is_not_trusted(tmp_path):
    """``benchmarks/align_motion.py --families drift --motion-scale 3 --full 9 --seeds 1``
    (a development seed): the cell drifts 15-30 px, the detector's edges cut 3 of the 9
    full views, and their own ``dy`` estimates share an error of up to 0.3 full px that the
    interior follows (0.72 px largest error; 0.61 px in ``dy``), every pair agreeing and no
    one full view contradicted by the rest. Before the pairs-alone check: ``trusted``. Now
    the views it bends in ``dy`` are named, and the full views whose estimates disagree."""
    from distributed import Client

    from sxtdist.simulation import simulation_geometries
    from sxtdist.simulation.motion import motion_family
    from sxtdist.simulation.presets import get_preset, override_scan

    preset = get_preset("small")
    geoms = simulation_geometries(preset, override_scan(preset.full, n_angles=9), preset.roi)
    # align_motion's stream for drift (its index among the sorted family names), seed 1
    motion = motion_family("drift", geoms, np.random.default_rng([1, 1, 9]))
    motion = {k: 3.0 * v for k, v in motion.items()}
    acq = sxtdist.simulate(tmp_path / "d.zarr", preset="small", seed=1, n_full=9, motion=motion)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        with pytest.warns(sxtdist.errors.SxtdistWarning, match="pairs alone"):
            res = sxtdist.align(acq, client=c, report="", dry_run=True, progress=False)
    err = res.error_arrays(acq)["roi"]
    assert np.hypot(*err.T).max() > 0.5
    info = res.info["roi"]
    assert set(np.flatnonzero(np.abs(err[:, 0]) > 0.4)) <= set(info["pairs_alone_flagged"]["roi"])
    assert "own dy contradicted by the pairs alone" in res.info["full"]["verdict"]
    assert not info["leave_one_out_flagged"]  # one full view at a time sees nothing


@pytest.mark.slow  # a `small` alignment: 30-100 s on a busy 2-core machine
def test_an_axis_tilt_does_not_fire_the_pairs_alone_check(tmp_path):
    """A rotation axis tilted 1° on the detector and not measured (``small``, seed 2): a
    view's row profile moves by the tilt times its mass centroid's column, which the full
    views' own ``dy`` and the interior pairs see alike, so the pairs alone put no view's
    ``dy`` 0.25 px from the alignment's (0.17 px here; 0.08 px untilted). The tilt bends
    the shifts all the same (0.71 px): the pairs' misfit names views, and the remedy is
    ``--measure-axis-tilt``."""
    from distributed import Client

    acq = sxtdist.simulate(tmp_path / "t.zarr", preset="small", seed=2, axis_tilt_deg=1.0)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        with pytest.warns(sxtdist.errors.SxtdistWarning, match="pair misfit"):
            res = sxtdist.align(acq, client=c, report="", dry_run=True, progress=False)
    info = res.info["roi"]
    assert info["pairs_alone_flagged"] == {"roi": [], "full": []}
    assert max(info["pairs_alone_dy_move_px"]) < 0.25
    assert "pairs alone" not in res.verdict and "pair misfit" in res.verdict


def test_cut_stretch_known_answers():
    """Runs of consecutive full views without their own ``dx``, the scan's two ends
    meeting (180° apart): their span is the views times the step."""
    from sxtdist.alignment.cut_stretches import cut_stretch_deg, views_in_cut_stretches

    phi = np.arange(9) * 20.0
    assert cut_stretch_deg(phi, [0, 1, 7, 8]).tolist() == [80, 80, 0, 0, 0, 0, 0, 80, 80]
    assert cut_stretch_deg(phi, [2, 4, 5]).tolist() == [0, 0, 20, 0, 40, 40, 0, 0, 0]
    assert cut_stretch_deg(phi, []).tolist() == [0] * 9
    assert cut_stretch_deg(phi, range(9)).tolist() == [180] * 9
    # 19 views 9.47° apart: 5 in a row (47°) are not named, 6 (57°) are
    phi19 = np.arange(19) * 180.0 / 19
    roi_angles = np.arange(90) * 2.0
    five = cut_stretch_deg(phi19, [16, 17, 18, 0, 1])
    assert views_in_cut_stretches(roi_angles, phi19, five)[0].size == 0
    six = cut_stretch_deg(phi19, [16, 17, 18, 0, 1, 2])
    roi, full = views_in_cut_stretches(roi_angles, phi19, six)
    assert full.tolist() == [0, 1, 2, 16, 17, 18]
    # the interior views nearest those (modulo 180°): 147.4° to 23.7°, 0° and 178° included
    assert roi.tolist() == [*range(0, 12), *range(74, 90)]


@pytest.mark.parametrize("cut", [(0, 1, 7, 8), ()])
def test_a_wide_stretch_without_the_full_views_own_dx_is_named(cut):
    """As on ``align_motion.py --families drift --motion-scale 3 --full 9 --seeds 9`` (a
    development seed, 0.75 px off and trusted before this rule): the detector's edges cut
    full views 7, 8, 0 and 1 (80°, the scan's ends meeting), and their anchors share 0.7
    interior px of ``dx`` error (a rotation bias, say). The interior there follows them
    0.6 px off with every pair agreeing, the solve tying those views as well as the rest,
    no one full view carrying them: no other check names them; the interior views nearest
    the cut full views are named, and those full views. The same anchors with the full
    views' own ``dx`` kept: they hold the interior within 0.5 px and nothing is named."""
    from sxtdist.alignment.cut_stretches import (
        CUT_STRETCH_FLAG_DEG,
        cut_stretch_deg,
        views_in_cut_stretches,
    )
    from sxtdist.alignment.shifts import pair_weights

    bias = np.zeros(9)
    bias[[0, 1, 7, 8]] = 0.7
    roi_angles, full_angles = np.arange(90) * 2.0, np.arange(9) * 20.0
    for seed in (2, 3):
        results, rec, err, _ = _joint_case(0.0, seed, no_own_dx=cut, anchor_dx_px=bias)
        w = pair_weights(results, roi_angles)
        misfit = np.asarray(rec["pair_misfit_px"], float)
        args = (results, misfit, np.ones(len(results)), w, 90, (), rec["leave_one_out_flagged"])
        others = {
            "pairs_alone": rec["pairs_alone_flagged"],
            "weakly_tied": {"roi": rec["weakly_tied_views"]},
        }
        assert judge(*args, named=others).trusted  # no other check sees it
        roi, full = views_in_cut_stretches(
            roi_angles, full_angles, cut_stretch_deg(full_angles, cut)
        )
        v = judge(
            *args, named={**others, "cut_stretch": {"roi": roi.tolist(), "full": full.tolist()}}
        )
        if cut:
            assert err.max() > 0.55
            assert set(np.flatnonzero(err > 0.5)) <= set(v.roi)
            assert set(v.roi) == {*range(0, 16), *range(65, 90)}  # 30° and 130°: halfway
            why = f"full views' own dx cut over {CUT_STRETCH_FLAG_DEG:g}° or more"
            assert set(v.roi.values()) == {why}
            assert v.full == dict.fromkeys(
                cut, f"own dx cut, in a stretch of {CUT_STRETCH_FLAG_DEG:g}°+"
            )
        else:
            assert err.max() < 0.5 and v.trusted


def test_info_shows_the_widest_stretch_without_the_full_views_own_dx():
    from sxtdist.cli.info import _alignment_details

    line = _alignment_details({"cut_stretch_deg": [80.0, 80.0, 0.0, 0.0, 20.0]})
    assert "widest stretch of full views without their own dx 80° (full view 0)" in line
    assert "without their own dx" not in _alignment_details({"cut_stretch_deg": [0.0] * 5})
