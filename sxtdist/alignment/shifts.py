"""The shifts from the pairs' peaks: eq. 14 as sparse linear least squares, with robust
weights for pairs (and full views' own estimates) that the others contradict.

Conventions (see :mod:`sxtdist.geometry`): a shift ``d = (dy, dx)`` is the measured
displacement of an image in its scan's pixels; an image displaced by ``d`` shows at
pixel ``x`` what the aligned image shows at ``x - d``. A pair's peak ``s`` measures
``-(d_i - d_j)`` (neighbours) or ``-d_i`` (anchors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize

from .ncc import NccSurface
from .pairs import PairResult, _pair_angles, peak_inside_map, per_pair


def pair_weights(
    results: Sequence[PairResult], roi_angles: np.ndarray, anchor_scale_deg: float | None = None
) -> np.ndarray:
    """Least-squares weight of each pair: 1 for neighbours, ``1 / (1 + (delta / s)^2)``
    for an anchor ``delta`` degrees away (``s``: the interior angular step by default),
    because the farther the anchor the more the object's rotation biases the peak."""
    if anchor_scale_deg is None:
        a = np.sort(np.asarray(roi_angles, float))
        anchor_scale_deg = float(np.median(np.diff(a))) if a.size > 1 else 1.0
    s = max(float(anchor_scale_deg), 1e-6)
    return np.array(
        [
            1.0 if r.pair.kind == "neighbour" else 1.0 / (1.0 + (r.pair.delta_deg / s) ** 2)
            for r in results
        ]
    )


#: Reweighting rounds at most, and the smallest robust standard deviation of the prior
#: residuals or the pairs' misfits (interior px times the weight) that :func:`solve_joint`
#: reads as one: below it they are met to rounding and nothing is an outlier.
ROBUST_ITERATIONS = 30


ROBUST_SCALE_FLOOR_PX = 1e-3


#: :func:`solve_joint`'s and :func:`solve_shifts`' rule for pairs that the others contradict:
#: a pair whose misfit, in the solve's own units (times the square root of its weight),
#: is beyond this many robust standard deviations of all pairs' loses weight by Huber's
#: rule. Chosen on the ``small`` preset (docs/alignment.md): at 5 it weighted down 1
#: pair in 48 clean alignments (seeds 1-24, 9 and 19 full views, paper dose) and left
#: every figure as it was, and with half of one interior frame lost it kept the other
#: views within 0.1 px on 12 of 12 seeds with 19 full views (0.131 -> 0.075 px).
ROBUST_PAIRS = 5.0


def robust_pair_weights(misfit: np.ndarray, sqrt_weight: np.ndarray, k: float) -> np.ndarray:
    """``(m, 1)`` Huber weights of pairs from their misfit ``(m, 2)`` (px) and the square
    roots of their least-squares weights: ``min(1, k sigma / |r|)`` per component, in
    robust standard deviations ``sigma`` (1.4826 times the median) of the weighted misfit,
    the smaller of a pair's two (one registration: a bad frame spoils both parts)."""
    r = np.abs(np.asarray(misfit, float)) * np.asarray(sqrt_weight, float)[:, None]
    sigma = np.maximum(1.4826 * np.median(r, axis=0), ROBUST_SCALE_FLOOR_PX)
    return np.minimum(1.0, k * sigma / np.maximum(r, 1e-300)).min(axis=1, keepdims=True)


def solve_shifts(
    n: int,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    full_angles: np.ndarray | None = None,
    rotation_model: bool = True,
    refine: bool = False,
    anchor_scale_deg: float | None = None,
    robust_pairs: float | None = ROBUST_PAIRS,
) -> tuple[np.ndarray, dict]:
    """The interior shifts ``(n, 2)`` from the pair registrations (eq. 14).

    Each pair's peak ``s`` measures ``-(d_i - d_j)`` (neighbours) or ``-d_i``
    (anchors). Views at different angles also differ by the object's rotation:
    features at depth ``w`` along the beam move by ``w * delta``, and NCC follows
    their contrast-weighted mean, which for a rigid object is the motion of one
    point ``(c_x, c_y)``: ``c_x (cos t_i - cos t_j) + c_y (sin t_i - sin t_j)``
    columns. With ``rotation_model`` that point is solved for with the shifts
    (two more unknowns), which removes the bias that otherwise builds up along
    neighbour chains. The solution is the linear least-squares one; ``refine``
    then maximises the sum of the pairs' NCC splines (eq. 14 as written, by
    L-BFGS) from it. Pairs whose peak sits on the edge of their map are dropped;
    the others are weighted by :func:`pair_weights` (near anchors count most).

    ``robust_pairs``: a pair the others contradict (a damaged frame, a peak on the wrong
    feature) loses weight by Huber's rule beyond ``robust_pairs`` robust standard
    deviations of the pairs' misfits (:func:`robust_pair_weights`), repeated until the
    weights settle; ``None``: plain least squares.

    The record ``info`` holds ``pair_misfit_px``, ``(len(results), 2)``: each pair's
    measured peak less the one the solution predicts (``dy, dx``, interior px; NaN for
    a dropped pair), ``residual_rms_px``, its RMS over the used pairs, and
    ``pair_robust_weights``, the share of its weight each pair kept (NaN if dropped).
    """
    roi_angles = np.asarray(roi_angles, float)
    used = [r for r in results if peak_inside_map(r)]
    info: dict = {"pairs": len(results), "pairs_used": len(used), "rotation_model": rotation_model}
    if not used:
        info["pair_misfit_px"] = per_pair(results, np.zeros((0, 2)))
        info["pair_robust_weights"] = per_pair(results, np.zeros(0))
        return np.zeros((n, 2)), info
    k = n + 2
    a = np.zeros((len(used), k))
    b = np.zeros((len(used), 2))
    for row, r in enumerate(used):
        a[row, r.pair.i] = 1.0
        if r.pair.kind == "neighbour":
            a[row, r.pair.j] = -1.0
        ti, tj = _pair_angles(r.pair, roi_angles, full_angles)
        a[row, n] = -(math.cos(ti) - math.cos(tj))
        a[row, n + 1] = -(math.sin(ti) - math.sin(tj))
        b[row] = -np.asarray(r.shift, float)
    w = np.sqrt(pair_weights(used, roi_angles, anchor_scale_deg))
    a *= w[:, None]
    b *= w[:, None]
    has_anchor = any(r.pair.kind == "anchor" for r in used)
    extra_rows = []
    if not has_anchor:  # relative only: pin the mean shift to zero
        extra_rows.append(np.r_[np.full(n, 1.0 / n), 0.0, 0.0])
    # views not reached by any pair: keep them at zero
    touched = np.zeros(n, bool)
    for r in used:
        touched[r.pair.i] = True
        if r.pair.kind == "neighbour":
            touched[r.pair.j] = True
    for i in np.flatnonzero(~touched):
        e = np.zeros(k)
        e[i] = 1.0
        extra_rows.append(e)
    if extra_rows:
        a = np.vstack([a, extra_rows])
        b = np.vstack([b, np.zeros((len(extra_rows), 2))])
    cols = k if rotation_model else n
    m = len(used)

    def solve(pair_w: np.ndarray) -> np.ndarray:
        aw, bw = a.copy(), b.copy()
        aw[:m] *= pair_w
        bw[:m] *= pair_w
        sol = np.zeros((k, 2))
        # dy: rotation about the vertical axis does not move features vertically
        sol[:n, 0] = np.linalg.lstsq(aw[:, :n], bw[:, 0], rcond=None)[0]
        sol[:cols, 1] = np.linalg.lstsq(aw[:, :cols], bw[:, 1], rcond=None)[0]
        return sol

    def misfit(sol: np.ndarray) -> np.ndarray:
        return (a[:m] @ sol - b[:m]) / w[:, None]

    pair_huber = np.ones((m, 1))
    sol = solve(pair_huber)
    for _ in range(ROBUST_ITERATIONS if robust_pairs else 0):
        # iteratively reweighted: a pair the others contradict (a damaged frame) loses
        # weight by Huber's rule (:func:`robust_pair_weights`)
        new = robust_pair_weights(misfit(sol), w, robust_pairs)
        if np.abs(new - pair_huber).max() < 1e-3:
            break
        pair_huber = new
        sol = solve(np.sqrt(pair_huber))
    info["pair_robust_weights"] = per_pair(results, pair_huber[:, 0])
    d0, c0 = sol[:n], sol[n:, 1]
    info["rotation_point_px"] = c0.tolist()
    resid = misfit(sol)
    info["residual_rms_px"] = float(np.sqrt(np.mean(resid**2)))
    info["pair_misfit_px"] = per_pair(results, resid)
    if not refine:
        return d0, info
    surfaces = [NccSurface(r.ncc) for r in used]
    rows = a[:m] / w[:, None]
    wts = w**2 * pair_huber[:, 0]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x[: 2 * n].reshape(n, 2)
        c = x[2 * n :] if rotation_model else np.zeros(2)
        full = np.vstack([np.c_[d[:, 0], d[:, 1]], np.c_[np.zeros(2), c]])
        s = -(rows @ full)  # predicted peak of every pair
        f, g = 0.0, np.zeros_like(full)
        for p, surf in enumerate(surfaces):
            f -= wts[p] * float(surf.value(s[p]))
            g -= wts[p] * np.outer(rows[p], -surf.gradient(s[p]))
        grad = g[:n].ravel()
        if rotation_model:
            grad = np.r_[grad, g[n:, 1]]
        return f, grad

    x0 = np.r_[d0.ravel(), c0] if rotation_model else d0.ravel()
    res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")
    d = res.x[: 2 * n].reshape(n, 2)
    if res.fun > fun(x0)[0] or np.abs(d - d0).max() > 2.0:
        info["refine"] = "rejected"
        return d0, info
    info["refine"] = "ncc_sum"
    full = np.vstack([d, np.c_[np.zeros(2), res.x[2 * n :] if rotation_model else np.zeros(2)]])
    resid = rows @ full - b[:m] / w[:, None]
    info["residual_rms_px"] = float(np.sqrt(np.mean(resid**2)))
    info["pair_misfit_px"] = per_pair(results, resid)
    return d, info


def solve_joint(
    n: int,
    n_full: int,
    scale: float,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    full_angles: np.ndarray,
    prior_weight: float | Sequence[float] = (0.3, 1.0),
    anchor_scale_deg: float | None = None,
    prior_target: np.ndarray | None = None,
    robust: float | None = 3.0,
    robust_pairs: float | None = ROBUST_PAIRS,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Interior shifts and corrections to the full scan's shifts, from the same pairs.

    An anchor registered with full-view shift ``f_j`` whose truth is
    ``f_j + D_j`` is displaced by ``scale * D_j`` on the interior grid
    (``scale`` = full pixel / interior pixel; the mirrored view flips the sign
    of the ``dx`` part), so each anchor pair measures ``d_i - scale * D_j`` and
    the dense interior neighbour chain ties the sparse full views to each
    other. Unknowns: ``d`` (``n x 2``), ``D`` (``n_full x 2``) and the rotation
    point of :func:`solve_shifts`; a prior ``D = prior_target`` (default 0: the
    full scan's own estimate; weight ``prior_weight`` for ``(dy, dx)``, or per
    full view ``(n_full, 2)``, against a pair's weight 1, in interior pixels)
    brings in what the pairs cannot know: the
    rigid translation, any full view no interior view reaches, and the slow
    errors of the chain (its drift over many steps and the closure over 180°,
    i.e. the rotation axis), which the full scan's moments measure directly.
    The default weights were chosen on the ``small`` preset (docs/alignment.md):
    the weighted centroids (``dx``) are as good as a pair; ``dy`` weighs less,
    which was still best (against 1, 3 and 10 times more) after the row profiles
    were refined to 0.02 px.

    ``robust``: the prior is not trusted where the pairs contradict it far more than
    elsewhere. After the least-squares solution, each full view's prior residual is
    compared with ``robust`` times their robust standard deviation (1.4826 times the
    median, per component, but never less than the RMS misfit of the pairs
    themselves), and a view beyond it gets Huber's weight ``robust * sigma / |r|``;
    repeated until the weights settle. A full view moved so
    far that the object leaves its field has biased moments (1.2 px on one of 19 views
    of seed 14 in docs/alignment.md), and its prior, worth about a pair, would
    otherwise pull its anchors' stretch of the interior with it. ``None``: plain
    least squares.

    ``robust_pairs``: as in :func:`solve_shifts`, the pairs that the others contradict
    lose weight, but only once the full views' weights have settled: a full view's bad
    prior first shows as the misfit of the pairs around it, and weighting those down
    first would keep the bad prior (seed 14 with 19 full views in docs/alignment.md:
    0.53 px instead of 0.07).

    Returns
    -------
    d, delta_full, info
        Interior shifts (interior px), corrections to add to the full shifts
        (full px), and a record (``full_views_downweighted``: the full views whose
        prior lost weight; ``full_views_downweighted_weights``: the share of its weight
        each kept, the smaller of ``dy``'s and ``dx``'s; ``pair_misfit_px``,
        ``residual_rms_px`` and ``pair_robust_weights`` as in :func:`solve_shifts`).
    """
    roi_angles = np.asarray(roi_angles, float)
    used = [r for r in results if peak_inside_map(r)]
    k = n + n_full + 2
    ay = np.zeros((len(used), k))
    ax = np.zeros((len(used), k))
    b = np.zeros((len(used), 2))
    for row, r in enumerate(used):
        p = r.pair
        ay[row, p.i] = ax[row, p.i] = 1.0
        if p.kind == "neighbour":
            ay[row, p.j] = ax[row, p.j] = -1.0
        else:
            ay[row, n + p.j] = -scale
            ax[row, n + p.j] = scale if p.mirrored else -scale
        ti, tj = _pair_angles(p, roi_angles, full_angles)
        ax[row, n + n_full] = -(math.cos(ti) - math.cos(tj))
        ax[row, n + n_full + 1] = -(math.sin(ti) - math.sin(tj))
        b[row] = -np.asarray(r.shift, float)
    w = np.sqrt(pair_weights(used, roi_angles, anchor_scale_deg))
    ay *= w[:, None]
    ax *= w[:, None]
    b *= w[:, None]
    pw = np.broadcast_to(np.asarray(prior_weight, float), (n_full, 2))
    target = np.zeros((n_full, 2)) if prior_target is None else np.asarray(prior_target, float)
    eye = np.zeros((n_full, k))
    eye[np.arange(n_full), n + np.arange(n_full)] = scale

    def solve(weights: np.ndarray, pair_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        py = np.vstack([ay * pair_w, weights[:, :1] * eye])
        px = np.vstack([ax * pair_w, weights[:, 1:] * eye])
        rhs = np.vstack([b * pair_w, scale * weights * target])
        sy = np.linalg.lstsq(py[:, : n + n_full], rhs[:, 0], rcond=None)[0]
        return sy, np.linalg.lstsq(px, rhs[:, 1], rcond=None)[0]

    def pair_residuals(sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        # the pairs' own misfit, unweighted, dy then dx (interior px)
        return np.concatenate([(ay[:, : n + n_full] @ sy - b[:, 0]) / w, (ax @ sx - b[:, 1]) / w])

    huber = np.ones((n_full, 2))
    pair_huber = np.ones((len(used), 1))
    sy, sx = solve(pw, pair_huber)
    for _ in range(ROBUST_ITERATIONS if robust or robust_pairs else 0):
        # iteratively reweighted: a full view whose own estimate the pairs contradict far
        # more than the others' (an object pushed out of the field biases its moments)
        # loses weight by Huber's rule, in robust standard deviations of those residuals;
        # never below the pairs' own misfit: with few full views the median of their
        # residuals can be a third of it, and a view then lost weight for a residual the
        # pairs have anyway
        r = np.abs(pw * scale * (np.stack([sy[n:], sx[n : n + n_full]], 1) - target))
        misfit = pair_residuals(sy, sx)
        misfit_pairs = misfit.reshape(2, -1).T
        rule = (
            robust_pair_weights(misfit_pairs, w, robust_pairs)
            if robust_pairs and misfit.size
            else np.ones((len(misfit_pairs), 1))
        )
        # the floor is the misfit of the pairs the robust rule would keep whole: a damaged
        # frame's pairs (2 px) would otherwise raise it and hide a bad full view
        kept = rule[:, 0] >= 1.0
        floor = max(
            float(np.sqrt(np.mean(misfit_pairs[kept] ** 2))) if kept.any() else 0.0,
            ROBUST_SCALE_FLOOR_PX,
        )
        sigma = np.maximum(1.4826 * np.median(r, axis=0), floor)
        new = np.minimum(1.0, robust * sigma / np.maximum(r, 1e-300)) if robust else huber
        new_pairs = pair_huber
        settled = np.abs(new - huber).max() < 1e-3
        # pairs only once the prior's weights have settled: a full view's bad prior shows
        # first as the misfit of the pairs around it, which would otherwise lose weight
        if settled:
            new_pairs = rule
        if settled and np.abs(new_pairs - pair_huber).max() < 1e-3:
            break
        huber, pair_huber = new, new_pairs
        sy, sx = solve(pw * np.sqrt(huber), np.sqrt(pair_huber))
    d = np.stack([sy[:n], sx[:n]], axis=1)
    delta = np.stack([sy[n : n + n_full], sx[n : n + n_full]], axis=1)
    m = len(used)
    resid = pair_residuals(sy, sx)
    down = np.flatnonzero((huber < 1).any(axis=1))
    info = {
        "pairs": len(results),
        "pairs_used": m,
        "rotation_model": True,
        "joint_full": True,
        "full_views_downweighted": down.tolist(),
        "full_views_downweighted_weights": [round(float(huber[j].min()), 3) for j in down],
        "rotation_point_px": sx[n + n_full :].tolist(),
        "residual_rms_px": float(np.sqrt(np.mean(resid**2))),
        "pair_misfit_px": per_pair(results, resid.reshape(2, m).T),
        "pair_robust_weights": per_pair(results, pair_huber[:, 0]),
        "full_correction_rms_px": float(np.sqrt(np.mean(delta**2))),
    }
    return d, delta, info


#: Prior weights ``(dy, dx)`` of the full scan's own estimate in the joint solve, for a
#: weighted-centroid noise of :data:`REFERENCE_SIGMA_PX`; each view's are scaled by
#: ``REFERENCE_SIGMA_PX / its noise`` (0.01-10). The ``small`` preset's views report
#: 0.04-0.06 px at the paper's fluence, so about 1.1-1.6 pairs each; doubling or halving
#: that was worse on most rows (docs/alignment.md). (0.1 px when the noise was read 1.4
#: times as high, see :func:`~sxtdist.alignment.fullscan.weighted_centroid_noise_px`: the same
#: weights at the paper's fluence.)
FULL_PRIOR_WEIGHTS = (0.3, 1.0)


REFERENCE_SIGMA_PX = 0.07


def full_prior_weights(full_info: dict, n_full: int) -> np.ndarray:
    """``(n_full, 2)`` weights of the full scan's own shifts in :func:`solve_joint`.

    Worth about a pair when they come from the weighted moments alone, scaled by the
    inverse of each view's estimated centroid noise (between 0.01 and 10 times
    :data:`FULL_PRIOR_WEIGHTS`); only a gauge (0.01) otherwise (the plain centroid is
    biased by truncation, projection matching by the few views).
    """
    sigma = full_info.get("weighted_centroid_sigma_px")
    if full_info.get("iterations") or sigma is None:
        return np.full((n_full, 2), 0.01)
    factor = np.clip(REFERENCE_SIGMA_PX / np.maximum(np.asarray(sigma, float), 1e-6), 0.01, 10.0)
    return np.maximum(np.outer(factor, FULL_PRIOR_WEIGHTS), 0.01)
