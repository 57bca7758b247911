"""The shifts from the pairs' peaks: eq. 14 as sparse linear least squares, with robust
weights for pairs (and full views' own estimates) that the others contradict.

Conventions (see :mod:`sxtdist.geometry`): a shift ``d = (dy, dx)`` is the measured
displacement of an image in its scan's pixels; an image displaced by ``d`` shows at
pixel ``x`` what the aligned image shows at ``x - d``. A pair's peak ``s`` measures
``-(d_i - d_j)`` (neighbours) or ``-d_i`` (anchors).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg  # noqa: F401  (sparse.linalg)
from scipy import optimize, sparse

from .confidence import axis_fits, sigma_ratio, view_uncertainty, weakly_tied
from .consistency import leave_full_views_out, pairs_alone_dy
from .ncc import NccSurface
from .pairs import (
    MIN_VIEW_OVERLAP,
    OVERSHOOT_PEAK,
    PairResult,
    _pair_angles,
    peak_inside_map,
    per_pair,
    views_of,
)


def pair_weights(
    results: Sequence[PairResult], roi_angles: np.ndarray, anchor_scale_deg: float | None = None
) -> np.ndarray:
    """Least-squares weight of each pair: ``1 / (1 + (delta / s)^2)`` for an anchor
    ``delta`` degrees away (``s``: the interior angular step by default), because the
    farther the anchor the more the object's rotation biases the peak; for neighbours
    their :func:`overlap_weight`; :data:`MIN_OVERLAP_WEIGHT` for a pair whose peak passes
    :data:`~sxtdist.alignment.pairs.OVERSHOOT_PEAK` (its shift is no measurement)."""
    if anchor_scale_deg is None:
        a = np.sort(np.asarray(roi_angles, float))
        anchor_scale_deg = float(np.median(np.diff(a))) if a.size > 1 else 1.0
    s = max(float(anchor_scale_deg), 1e-6)
    w = np.array(
        [
            overlap_weight(r.overlap)
            if r.pair.kind == "neighbour"
            else 1.0 / (1.0 + (r.pair.delta_deg / s) ** 2)
            for r in results
        ]
    )
    overshoot = np.array([r.peak > OVERSHOOT_PEAK for r in results], bool)
    return np.where(overshoot, np.minimum(w, MIN_OVERLAP_WEIGHT), w)


def overlap_weight(overlap: float) -> float:
    """The weight of a neighbour pair whose views overlap by ``overlap`` (a share of a
    view) at its peak: 1 for views that overlap whole, falling linearly to nothing at the
    overlap limit (:data:`~sxtdist.alignment.pairs.MIN_VIEW_OVERLAP`), but never below
    :data:`MIN_OVERLAP_WEIGHT`. Only the part in
    common is compared, and its features sit at other depths than the view's as a whole:
    the rotation between the views moves them by other amounts than the rotation point
    of :func:`solve_shifts` says. On the ``large`` motion family (19 full views, seeds
    401-406) the pairs' RMS error in ``dx`` was 0.042 px with over 90 % in common, 0.061
    at 70-80 %, 0.092 at 60-70 % and 0.24 at 50-60 % (largest 0.69 px); an anchor's
    (whose full view covers the interior view) 0.04-0.07 px at any offset."""
    share = (overlap - MIN_VIEW_OVERLAP) / (1.0 - MIN_VIEW_OVERLAP)
    return float(np.clip(share, MIN_OVERLAP_WEIGHT, 1.0))


#: The least weight of a neighbour pair (:func:`overlap_weight`): a row weighted to
#: nothing has no misfit to read.
MIN_OVERLAP_WEIGHT = 0.01


#: Reweighting rounds at most, and the smallest robust standard deviation of the prior
#: residuals or the pairs' misfits (interior px times the weight) that :func:`solve_joint`
#: reads as one: below it they are met to rounding and nothing is an outlier.
ROBUST_ITERATIONS = 30
ROBUST_SCALE_FLOOR_PX = 1e-3


#: :func:`solve_joint`'s and :func:`solve_shifts`' rule for pairs that the others contradict:
#: a pair whose misfit, in the solve's own units (times the square root of its weight),
#: is beyond this many robust standard deviations of all pairs' loses weight by Huber's
#: rule. Chosen on the ``small`` preset (docs/dev/alignment-history.md): at 5 it weighted down 1
#: pair in 48 clean alignments (seeds 1-24, 9 and 19 full views, paper dose) and left
#: every figure as it was, and with half of one interior frame lost it kept the other
#: views within 0.1 px on 12 of 12 seeds with 19 full views (0.131 -> 0.075 px).
ROBUST_PAIRS = 5.0

#: :func:`solve_joint`'s rule for the full views' own estimates: a view whose prior the
#: pairs contradict beyond this many robust standard deviations loses weight (Huber).
ROBUST_PRIOR = 3.0


def robust_pair_weights(misfit: np.ndarray, sqrt_weight: np.ndarray, k: float) -> np.ndarray:
    """``(m, 1)`` Huber weights of pairs from their misfit ``(m, 2)`` (px) and the square
    roots of their least-squares weights: ``min(1, k sigma / |r|)`` per component, in
    robust standard deviations ``sigma`` (1.4826 times the median) of the weighted misfit,
    the smaller of a pair's two (one registration: a bad frame spoils both parts)."""
    r = np.abs(np.asarray(misfit, float)) * np.asarray(sqrt_weight, float)[:, None]
    sigma = np.maximum(1.4826 * np.median(r, axis=0), ROBUST_SCALE_FLOOR_PX)
    return np.minimum(1.0, k * sigma / np.maximum(r, 1e-300)).min(axis=1, keepdims=True)


@dataclass
class PairRows:
    """Eq. 14's pairs as sparse least-squares rows, each times the square root of its
    weight (:func:`pair_weights`).

    Unknowns: the interior shifts ``d`` (``n``), corrections ``D`` to the full views'
    shifts (``n_full``, none when the full shifts are taken as they are) and, for ``dx``
    only, the rotation point ``(c_x, c_y)``: ``dy`` rows have ``n + n_full`` columns,
    ``dx`` rows two more.
    """

    used: list[PairResult]
    ay: sparse.csr_matrix
    ax: sparse.csr_matrix
    b: np.ndarray  #: ``(m, 2)``: minus each peak, times the square root of its weight
    sqrt_w: np.ndarray  #: ``(m,)``

    def misfit(self, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        """``(m, 2)``: each pair's measured peak less the one the solution predicts (px)."""
        return (
            np.stack([self.ay @ sy - self.b[:, 0], self.ax @ sx - self.b[:, 1]], 1)
            / (self.sqrt_w[:, None])
        )


def pair_rows(
    used: Sequence[PairResult],
    n: int,
    roi_angles: np.ndarray,
    full_angles: np.ndarray | None,
    n_full: int = 0,
    scale: float = 1.0,
    anchor_scale_deg: float | None = None,
) -> PairRows:
    """The rows of the pairs ``used``: a neighbour measures ``d_i - d_j``, an anchor ``d_i``
    less ``scale * D_j`` when ``n_full`` corrections are unknowns (``scale``: full pixel
    over interior pixel; the mirrored view flips the ``dx`` part's sign), and for ``dx``
    the rotation point's ``c_x (cos t_i - cos t_j) + c_y (sin t_i - sin t_j)`` too."""
    m, nd = len(used), n + n_full
    y_entries: list[tuple[int, int, float]] = []  # (row, column, value)
    x_entries: list[tuple[int, int, float]] = []
    b = np.zeros((m, 2))
    for row, r in enumerate(used):
        p = r.pair
        views = [(p.i, 1.0)]
        if p.kind == "neighbour":
            views.append((p.j, -1.0))
        elif n_full:
            views.append((n + p.j, -scale))
        ti, tj = _pair_angles(p, roi_angles, full_angles)
        y_entries += [(row, c, v) for c, v in views]
        x_entries += [(row, c, -v if c >= n and p.mirrored else v) for c, v in views]
        x_entries += [
            (row, nd, math.cos(tj) - math.cos(ti)),
            (row, nd + 1, math.sin(tj) - math.sin(ti)),
        ]
        b[row] = -np.asarray(r.shift, float)
    w = np.sqrt(pair_weights(used, roi_angles, anchor_scale_deg))

    def matrix(entries: list[tuple[int, int, float]], cols: int) -> sparse.csr_matrix:
        r, c, v = (np.array(t, dtype=d) for t, d in zip(zip(*entries), (int, int, float)))
        return sparse.csr_matrix((v * w[r], (r, c)), shape=(m, cols))

    return PairRows(list(used), matrix(y_entries, nd), matrix(x_entries, nd + 2), b * w[:, None], w)


def least_squares(a: sparse.spmatrix, rhs: np.ndarray) -> np.ndarray:
    """The minimum-norm least-squares solution of ``a x = rhs`` (LSQR, to rounding: the
    pairs' systems have a few hundred rows and columns and a condition number of a
    neighbour chain's)."""
    return sparse.linalg.lsqr(
        a, rhs, atol=1e-14, btol=1e-14, conlim=1e14, iter_lim=20 * a.shape[1]
    )[0]


def _rows_times(a: sparse.spmatrix, v: np.ndarray) -> sparse.csr_matrix:
    return (sparse.diags(np.asarray(v, float).ravel()) @ a).tocsr()


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
    rows = pair_rows(used, n, roi_angles, full_angles, anchor_scale_deg=anchor_scale_deg)
    pins = _pins(used, n)
    cols_x = n + 2 if rotation_model else n

    def solve(pair_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # dy: rotation about the vertical axis does not move features vertically
        ay = sparse.vstack([_rows_times(rows.ay, pair_w), pins]).tocsr()
        ax = sparse.vstack(
            [
                _rows_times(rows.ax, pair_w),
                sparse.hstack([pins, sparse.csr_matrix((pins.shape[0], 2))]),
            ]
        )
        pad = np.zeros(pins.shape[0])
        sy = least_squares(ay, np.r_[rows.b[:, 0] * pair_w.ravel(), pad])
        sx = np.zeros(n + 2)
        sx[:cols_x] = least_squares(
            ax.tocsr()[:, :cols_x], np.r_[rows.b[:, 1] * pair_w.ravel(), pad]
        )
        return sy, sx

    pair_huber = np.ones((len(used), 1))
    sy, sx = solve(pair_huber)
    for _ in range(ROBUST_ITERATIONS if robust_pairs else 0):
        # iteratively reweighted: a pair the others contradict (a damaged frame) loses
        # weight by Huber's rule (:func:`robust_pair_weights`)
        new = robust_pair_weights(rows.misfit(sy, sx), rows.sqrt_w, robust_pairs)
        if np.abs(new - pair_huber).max() < 1e-3:
            break
        pair_huber = new
        sy, sx = solve(np.sqrt(pair_huber))
    info["pair_robust_weights"] = per_pair(results, pair_huber[:, 0])
    d0, c0 = np.stack([sy, sx[:n]], axis=1), sx[n:]
    info["rotation_point_px"] = c0.tolist()
    _record_misfit(info, results, rows.misfit(sy, sx))
    if not refine:
        return d0, info
    return _refine_ncc_sum(d0, c0, rows, pair_huber[:, 0], rotation_model, results, info)


def _pins(used: Sequence[PairResult], n: int) -> sparse.csr_matrix:
    """Rows that fix what the pairs leave free: the mean shift (zero) when no pair is an
    anchor (relative shifts only), and each view no pair reaches (kept at zero)."""
    extra = []
    if not any(r.pair.kind == "anchor" for r in used):
        extra.append(np.full(n, 1.0 / n))
    touched = np.zeros(n, bool)
    for r in used:
        touched[list(views_of(r.pair))] = True
    extra += [np.eye(1, n, i)[0] for i in np.flatnonzero(~touched)]
    return sparse.csr_matrix(np.array(extra).reshape(-1, n))


def _record_misfit(info: dict, results: Sequence[PairResult], misfit: np.ndarray) -> None:
    """The pairs' misfit after the solve in the record: per pair and its RMS."""
    info["residual_rms_px"] = float(np.sqrt(np.mean(misfit**2)))
    info["pair_misfit_px"] = per_pair(results, misfit)


def _refine_ncc_sum(
    d0: np.ndarray,
    c0: np.ndarray,
    rows: PairRows,
    kept: np.ndarray,
    rotation_model: bool,
    results: Sequence[PairResult],
    info: dict,
) -> tuple[np.ndarray, dict]:
    """Eq. 14 as written: the shifts (and rotation point) that maximise the weighted sum
    of the used pairs' NCC surfaces, by L-BFGS from the least-squares ``d0, c0``; kept
    only if it improves the sum and stays within 2 px of ``d0``."""
    n = len(d0)
    surfaces = [NccSurface(r.ncc) for r in rows.used]
    unweighted = sparse.diags(1.0 / rows.sqrt_w)
    ay, ax = (unweighted @ rows.ay).tocsr(), (unweighted @ rows.ax).tocsr()
    wts = rows.sqrt_w**2 * kept

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = x[: 2 * n].reshape(n, 2)
        return d[:, 0], np.r_[d[:, 1], x[2 * n :] if rotation_model else np.zeros(2)]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        sy, sx = unpack(x)
        s = -np.stack([ay @ sy, ax @ sx], 1)  # predicted peak of every pair
        f = -sum(wt * float(surf.value(sp)) for wt, surf, sp in zip(wts, surfaces, s, strict=True))
        g = np.stack(
            [wt * surf.gradient(sp) for wt, surf, sp in zip(wts, surfaces, s, strict=True)]
        )
        gy, gx = ay.T @ g[:, 0], ax.T @ g[:, 1]
        grad = np.stack([gy, gx[:n]], 1).ravel()
        return f, np.r_[grad, gx[n:]] if rotation_model else grad

    x0 = np.r_[d0.ravel(), c0] if rotation_model else d0.ravel()
    res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")
    d = res.x[: 2 * n].reshape(n, 2)
    if res.fun > fun(x0)[0] or np.abs(d - d0).max() > 2.0:
        info["refine"] = "rejected"
        return d0, info
    info["refine"] = "ncc_sum"
    _record_misfit(info, results, rows.misfit(*unpack(res.x)))
    return d, info


def solve_joint(
    scale: float,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    full_angles: np.ndarray,
    prior_weight: float | Sequence[float] = (0.3, 1.0),
    anchor_scale_deg: float | None = None,
    prior_target: np.ndarray | None = None,
    robust: float | None = ROBUST_PRIOR,
    robust_pairs: float | None = ROBUST_PAIRS,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Interior shifts and corrections to the full scan's shifts, from the same pairs.

    An anchor registered with full-view shift ``f_j`` whose truth is
    ``f_j + D_j`` is displaced by ``scale * D_j`` on the interior grid
    (``scale`` = full pixel / interior pixel; the mirrored view flips the sign
    of the ``dx`` part), so each anchor pair measures ``d_i - scale * D_j`` and
    the dense interior neighbour chain ties the sparse full views to each
    other. Unknowns (``n``, ``n_full``: the numbers of ``roi_angles`` and ``full_angles``):
    ``d`` (``n x 2``), ``D`` (``n_full x 2``) and the rotation
    point of :func:`solve_shifts`; a prior ``D = prior_target`` (default 0: the
    full scan's own estimate; weight ``prior_weight`` for ``(dy, dx)``, or per
    full view ``(n_full, 2)``, against a pair's weight 1, in interior pixels)
    brings in what the pairs cannot know: the
    rigid translation, any full view no interior view reaches, and the slow
    errors of the chain (its drift over many steps and the closure over 180°,
    i.e. the rotation axis), which the full scan's moments measure directly.
    The default weights were chosen on the ``small`` preset (docs/dev/alignment-history.md):
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
    of seed 14 in docs/dev/alignment-history.md), and its prior, worth about a pair, would
    otherwise pull its anchors' stretch of the interior with it. ``None``: plain
    least squares.

    ``robust_pairs``: as in :func:`solve_shifts`, the pairs that the others contradict
    lose weight, but only once the full views' weights have settled: a full view's bad
    prior first shows as the misfit of the pairs around it, and weighting those down
    first would keep the bad prior (seed 14 with 19 full views in docs/dev/alignment-history.md:
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
    n, n_full = roi_angles.size, np.size(full_angles)
    used = [r for r in results if peak_inside_map(r)]
    rows = pair_rows(used, n, roi_angles, full_angles, n_full, scale, anchor_scale_deg)
    pw = np.broadcast_to(np.asarray(prior_weight, float), (n_full, 2))
    target = np.zeros((n_full, 2)) if prior_target is None else np.asarray(prior_target, float)
    system = JointSystem(rows, n, n_full, scale, target)
    solve = system.solve

    def prior_residual(sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        return np.abs(pw * scale * (np.stack([sy[n:], sx[n : n + n_full]], 1) - target))

    huber = np.ones((n_full, 2))
    pair_huber = np.ones((len(used), 1))
    sy, sx = solve(pw, pair_huber)
    for _ in range(ROBUST_ITERATIONS if robust or robust_pairs else 0):
        new, new_pairs = _joint_weights(
            prior_residual(sy, sx),
            rows,
            rows.misfit(sy, sx),
            huber,
            pair_huber,
            robust,
            robust_pairs,
        )
        if new is None:
            break
        huber, pair_huber = new, new_pairs
        sy, sx = solve(pw * np.sqrt(huber), np.sqrt(pair_huber))
    d = np.stack([sy[:n], sx[:n]], axis=1)
    delta = np.stack([sy[n : n + n_full], sx[n : n + n_full]], axis=1)
    misfit = rows.misfit(sy, sx)
    down = np.flatnonzero((huber < 1).any(axis=1))
    info = {
        "pairs": len(results),
        "pairs_used": len(used),
        "rotation_model": True,
        "joint_full": True,
        "full_views_downweighted": down.tolist(),
        "full_views_downweighted_weights": [round(float(huber[j].min()), 3) for j in down],
        "rotation_point_px": sx[n + n_full :].tolist(),
        "pair_robust_weights": per_pair(results, pair_huber[:, 0]),
        "full_correction_rms_px": float(np.sqrt(np.mean(delta**2))),
    }
    _record_misfit(info, results, misfit)
    weights = (pw * np.sqrt(huber), np.sqrt(pair_huber))
    t0 = time.perf_counter()
    fits = axis_fits(system.matrices(*weights), (sy, sx), (roi_angles, full_angles), scale)
    info.update(view_uncertainty(fits, n))
    # views the design ties far less than the scan's typical view (a stretch of full
    # views without their own dx, say): an error the pairs share shows there first
    info["sigma_ratio"] = sigma_ratio(info["roi_sigma_px"]).round(3).tolist()
    info["weakly_tied_views"] = weakly_tied(info["roi_sigma_px"]).tolist()
    own_rows = full_view_rows(used, n_full)
    loo = leave_full_views_out(fits, own_rows, n)
    info.update(loo.per_view())
    # an error the full views' own dy estimates share moves no one view's test
    info.update(pairs_alone_dy(fits[0], own_rows, n, scale).record())
    significant = loo.contradicted()
    info["leave_one_out_flagged"] = [
        [i, j, round(m, 3), int(significant[j])] for i, (j, m) in loo.flagged().items()
    ]
    info["check_seconds"] = time.perf_counter() - t0
    return d, delta, info


def full_view_rows(used: Sequence[PairResult], n_full: int) -> list[np.ndarray]:
    """The row of :class:`JointSystem` of each full view's own estimate (after the rows of
    the pairs ``used``)."""
    return [np.array([len(used) + j]) for j in range(n_full)]


@dataclass
class JointSystem:
    """:func:`solve_joint`'s least squares: the pairs' rows (:class:`PairRows`) and a prior
    row per full view, ``scale * D_j = scale * target_j``, each weighted."""

    rows: PairRows
    n: int
    n_full: int
    scale: float
    target: np.ndarray

    def matrices(
        self, prior_w: np.ndarray, pair_w: np.ndarray
    ) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
        """The weighted ``dy`` and ``dx`` matrices and their right-hand sides ``(rows, 2)``
        for prior weights ``(n_full, 2)`` and pair weights ``(m,)`` (square roots)."""
        n, n_full, scale = self.n, self.n_full, self.scale
        pair_w = np.asarray(pair_w, float).ravel()
        prior = sparse.hstack([sparse.csr_matrix((n_full, n)), scale * sparse.eye(n_full)])
        prior_x = sparse.hstack([prior, sparse.csr_matrix((n_full, 2))])
        py = sparse.vstack([_rows_times(self.rows.ay, pair_w), _rows_times(prior, prior_w[:, 0])])
        px = sparse.vstack([_rows_times(self.rows.ax, pair_w), _rows_times(prior_x, prior_w[:, 1])])
        rhs = np.vstack([self.rows.b * pair_w[:, None], scale * prior_w * self.target])
        return py.tocsr(), px.tocsr(), rhs

    def solve(self, prior_w: np.ndarray, pair_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``dy`` and ``dx`` unknowns for these weights."""
        py, px, rhs = self.matrices(prior_w, pair_w)
        return least_squares(py, rhs[:, 0]), least_squares(px, rhs[:, 1])


def _joint_weights(
    prior_residual: np.ndarray,
    rows: PairRows,
    misfit: np.ndarray,
    huber: np.ndarray,
    pair_huber: np.ndarray,
    robust: float | None,
    robust_pairs: float | None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """One round of :func:`solve_joint`'s reweighting: the full views' prior weights and
    the pairs' (``(None, ...)`` once neither changes).

    A full view whose own estimate the pairs contradict far more than the others' (an
    object pushed out of the field biases its moments) loses weight by Huber's rule,
    in robust standard deviations of those residuals; never below the pairs' own
    misfit: with few full views the median of their residuals can be a third of it,
    and a view then lost weight for a residual the pairs have anyway. The pairs'
    weights change only once the prior's have settled: a full view's bad prior shows
    first as the misfit of the pairs around it, which would otherwise lose weight.
    """
    rule = (
        robust_pair_weights(misfit, rows.sqrt_w, robust_pairs)
        if robust_pairs and misfit.size
        else np.ones((len(misfit), 1))
    )
    # the floor is the misfit of the pairs the robust rule would keep whole: a damaged
    # frame's pairs (2 px) would otherwise raise it and hide a bad full view
    kept = rule[:, 0] >= 1.0
    floor = max(
        float(np.sqrt(np.mean(misfit[kept] ** 2))) if kept.any() else 0.0,
        ROBUST_SCALE_FLOOR_PX,
    )
    sigma = np.maximum(1.4826 * np.median(prior_residual, axis=0), floor)
    if robust:
        # Huber's weight, and none at all beyond twice the threshold: Huber's bounded pull
        # (weight times residual) of a view its own estimate put far off is still about a
        # pair's, and bent the interior stretch it anchors by 0.5 px (a full view 15 px
        # off, 9 views)
        new = np.minimum(1.0, robust * sigma / np.maximum(prior_residual, 1e-300))
        new = np.where(prior_residual > 2 * robust * sigma, 0.0, new)
    else:
        new = huber
    settled = np.abs(new - huber).max() < 1e-3
    new_pairs = rule if settled else pair_huber
    if settled and np.abs(new_pairs - pair_huber).max() < 1e-3:
        return None, pair_huber
    return new, new_pairs


#: Prior weights ``(dy, dx)`` of the full scan's own estimate in the joint solve, for a
#: weighted-centroid noise of :data:`REFERENCE_SIGMA_PX`; each view's are scaled by
#: ``REFERENCE_SIGMA_PX / its noise`` (0.01-10). The ``small`` preset's views report
#: 0.04-0.06 px at the paper's fluence, so about 1.1-1.6 pairs each; doubling or halving
#: that was worse on most rows (docs/dev/alignment-history.md). (0.1 px when the noise was read 1.4
#: times as high, see :func:`~sxtdist.alignment.fullscan.weighted_centroid_noise_px`: the same
#: weights at the paper's fluence.)
FULL_PRIOR_WEIGHTS = (0.3, 1.0)
REFERENCE_SIGMA_PX = 0.07
#: The weight of a full view's own estimate that only fixes the gauge.
GAUGE_WEIGHT = 0.01


def full_prior_weights(full_info: dict, n_full: int) -> np.ndarray:
    """``(n_full, 2)`` weights of the full scan's own shifts in :func:`solve_joint`.

    Worth about a pair when they come from the weighted moments alone, scaled by the
    inverse of each view's estimated centroid noise (between 0.01 and 10 times
    :data:`FULL_PRIOR_WEIGHTS`); only a gauge (:data:`GAUGE_WEIGHT`) otherwise (the plain
    centroid is biased by truncation, projection matching by the few views). A view whose
    cell the detector's edges cut has its ``dx`` noise and its truncation bias
    (:func:`~sxtdist.alignment.fullscan.truncation_bias_px`) added in quadrature: one
    14 px out keeps 7 % of the weight, and the anchors place it. A view far off the rest
    along the axis (``rows_cut_views``: its weights, and its row profile, leave the
    detector) keeps only the gauge weight in ``dy`` too: its ``dy`` kept whole and no longer
    rejected by the robust rule, it pulled the interior 0.6-1.2 px off (``outlier-full``,
    9 views, seeds 402 and 403).
    """
    sigma = full_info.get("weighted_centroid_sigma_px")
    if full_info.get("iterations") or sigma is None:
        return np.full((n_full, 2), GAUGE_WEIGHT)
    sigma = np.asarray(sigma, float)
    # a view whose cell the detector's edges cut: its centroid is biased, its rows are not
    bias = np.asarray(full_info.get("truncation_bias_px") or np.zeros(n_full), float)
    factors = [
        np.clip(REFERENCE_SIGMA_PX / np.maximum(s, 1e-6), 0.01, 10.0)
        for s in (sigma, np.hypot(sigma, bias))
    ]
    weights = np.stack([f * w for f, w in zip(factors, FULL_PRIOR_WEIGHTS, strict=True)], 1)
    weights[full_info.get("rows_cut_views") or [], 0] = GAUGE_WEIGHT
    return np.maximum(weights, GAUGE_WEIGHT)
