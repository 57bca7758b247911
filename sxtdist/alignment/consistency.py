"""A check of the joint solve that needs no truth and sees errors the pairs share: each
full view's own estimate left out in turn.

The pairs' misfit (:mod:`sxtdist.alignment.verdict`) misses an error that a stretch of
the interior shares: a full view whose own estimate is off pulls the interior views it
anchors with it, and the neighbour pairs along them agree with each other all the same
(0.54 px on a stretch of one control run with 19 full views, its largest pair misfit
a tenth of that). What the rest of the data says about that stretch shows only when the
full view's own say is taken away. For each full view ``j``, the row of its own estimate
is left out of the weighted joint system (in closed form, from the least-squares
covariance: no new solve; its anchors stay, they tie the stretch to the rest), and two
things are read:

- how far every interior view moves without it (less the object's translation, which
  no alignment determines);
- whether the rest contradicts it more than the noise allows: the externally
  studentised residual ``r_g^T (I - H_gg)^-1 r_g / s^2`` (``H`` the hat matrix, ``s``
  each axis's residual scale per degree of freedom), a chi-square of 2 degrees of
  freedom (``dy``, ``dx``) under the noise model, tested at :data:`SIGNIFICANCE` over
  all full views together (Bonferroni). The move is that residual carried through the
  design (``cov a_g^T (I - H_gg)^-1 r_g``), so this is also the test of the move against
  its own standard error: one statistic per full view and axis, whichever interior view
  is read.

The pairs' own systematic errors (an anchor's rotation bias, in ``dx`` above all) are not
in the noise model, so each axis's statistic is first divided by its median over the
full views, taken against the chi-square's own median (0.455 for one degree of freedom;
at least 1): :func:`axis_inflation`. (Dividing by the median of both axes together, and
against 1, gave chances of 10^-5 to 10^-9 on development runs whose every view was
within 0.3 px: the ``dx`` statistics are in most runs the larger, and the median of a
chi-square of 2 degrees of freedom is 1.39, not 2.)

A view that moves more than :data:`MOVE_FLAG_PX` without a full view's estimate that the
rest significantly contradicts is named by the verdict, and one that moves more than
:data:`MOVE_ALWAYS_PX` whatever the test says (it hangs on that one estimate). The figures
are kept per view in the scan's record (``leave_one_out_move_px``,
``leave_one_out_full_view``, ``leave_one_out_p``).

One full view at a time cannot show an error that several full views' own estimates
share: each is then about as far off as the rest, and the calibration takes their common
error for noise. :func:`pairs_alone_dy` leaves every full view's own estimate out at once,
in ``dy`` only: a rotation about the vertical axis moves nothing along it, so there the
pairs alone place the interior to their own noise (on the control motion, development
seeds 1-12 with 9 and 19 full views, within 0.15 px of the alignment), while in ``dx``
features at other depths move otherwise and the pairs alone wandered up to 0.61 px from
alignments right to 0.23 px (seeds 1-6). An interior view whose ``dy`` moves more than
:data:`MOVE_FLAG_PX` is named, with the full views whose own ``dy`` the pairs alone put
more than that off (``align_motion.py --families drift --motion-scale 3 --full 9 --seeds
1``: the interior 0.61 px off in ``dy``, the largest move 0.42 px; docs/dev/alignment-history.md).

Leaving a full view's anchors out too was tried: it opens the
interior's chain of neighbours at the scan's ends, where the rest then extrapolates, and
it moved views by 0.3-0.5 px on sub-pixel jitter (development seeds) whose error was 0.1 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .confidence import AxisFit

#: The chance, under the noise alone, that any one full view of a scan is called
#: contradicted (split over the full views).
SIGNIFICANCE = 1e-3
#: An interior view that moves more than this (interior px) when a contradicted full
#: view's measurements are left out is named: half the 0.5 px the verdict must catch,
#: since the rest's own answer carries its noise too.
MOVE_FLAG_PX = 0.25
#: A move (interior px) named whether or not the full view is significantly
#: contradicted: the view then hangs on that one full view's estimate.
MOVE_ALWAYS_PX = 1.0


@dataclass
class LeaveOneOut:
    """Per full view ``j``: ``move_px[j]`` ``(n,)``, how far each interior view moves
    without ``j``'s rows (interior px), and ``p[j]``, the chance of a contradiction at
    least as large from noise alone."""

    move_px: np.ndarray
    p: np.ndarray
    chi2_per_dof: np.ndarray
    #: ``(2,)``: :func:`axis_inflation` of ``dy`` and ``dx``.
    inflation: np.ndarray = field(default_factory=lambda: np.ones(2))

    def flagged(self, n_full: int | None = None) -> dict[int, tuple[int, float]]:
        """``{interior view: (full view, move px)}`` for the views that move more than
        :data:`MOVE_FLAG_PX` without a significantly contradicted full view, or more than
        :data:`MOVE_ALWAYS_PX` without any one (the largest such move)."""
        contradicted = self.contradicted(n_full)[:, None]
        named = (contradicted & (self.move_px > MOVE_FLAG_PX)) | (self.move_px > MOVE_ALWAYS_PX)
        out: dict[int, tuple[int, float]] = {}
        for j, i in zip(*np.nonzero(named), strict=True):
            if i not in out or self.move_px[j, i] > out[int(i)][1]:
                out[int(i)] = (int(j), float(self.move_px[j, i]))
        return out

    def contradicted(self, n_full: int | None = None) -> np.ndarray:
        """``(full views,)``: whether the rest contradicts each full view's own estimate
        more than the noise allows (:data:`SIGNIFICANCE` split over ``n_full``)."""
        n_full = len(self.p) if n_full is None else n_full
        return self.p < SIGNIFICANCE / max(n_full, 1)

    def per_view(self) -> dict:
        """The record kept per interior view: the largest move over all full views, and
        the smallest chance of the full view that caused it."""
        if not self.move_px.size:
            return {}
        worst = np.argmax(self.move_px, axis=0)
        return {
            "leave_one_out_move_px": self.move_px.max(axis=0).round(4).tolist(),
            "leave_one_out_full_view": worst.tolist(),
            "leave_one_out_p": [float(f"{self.p[j]:.3g}") for j in worst],
            "leave_one_out_chi2_per_dof": np.round(self.chi2_per_dof, 2).tolist(),
            "leave_one_out_axis_inflation": np.round(self.inflation, 3).tolist(),
        }


def leave_full_views_out(
    fits: Sequence[AxisFit], groups: Sequence[np.ndarray], n: int
) -> LeaveOneOut:
    """:class:`LeaveOneOut` of the weighted joint system at its solution, one
    :class:`~sxtdist.alignment.confidence.AxisFit` per axis (``dy``, ``dx``:
    :func:`~sxtdist.alignment.confidence.axis_fits`, whose inverse the standard errors
    share); ``groups[j]``: the rows of full view ``j`` (its own estimate, its anchors), the
    same in both axes; ``n``: the interior views (the first unknowns)."""
    moves = np.zeros((len(groups), n))
    chi2 = np.zeros((len(groups), 2))  # per full view, per axis
    dof = np.zeros((len(groups), 2))
    for j, rows in enumerate(groups):
        move2 = np.zeros(n)
        for axis, fit in enumerate(fits):
            delta, chi2[j, axis], dof[j, axis] = without_rows(fit, rows)
            move2 += delta[:n] ** 2
        moves[j] = np.sqrt(move2)
    per_dof = np.where(dof.sum(1) > 0, chi2.sum(1) / np.maximum(dof.sum(1), 1), np.nan)
    # scipy.stats (0.2-0.4 s of imports) only here and in axis_inflation: a worker that
    # imports the alignment's tasks, and a command that never solves, skip it
    from scipy import stats

    inflation = axis_inflation(chi2, dof)
    total_dof = dof.sum(1)
    p = np.where(
        total_dof > 0, stats.chi2.sf((chi2 / inflation).sum(1), np.maximum(total_dof, 1)), 1.0
    )
    return LeaveOneOut(moves, p, per_dof, inflation)


@dataclass
class PairsAlone:
    """The joint solve's ``dy`` without every full view's own estimate (the pairs alone):
    ``move_px`` ``(n,)``, how far each interior view's ``dy`` moves (interior px), and
    ``full_px`` ``(n_full,)``, how far the pairs alone put each full view's ``dy`` from its
    own estimate (interior px, signed)."""

    move_px: np.ndarray
    full_px: np.ndarray

    def flagged(self) -> dict[str, list[int]]:
        """``{"roi": [...], "full": [...]}``: the interior views whose ``dy`` moves more than
        :data:`MOVE_FLAG_PX`, and, where there are any, the full views whose own ``dy`` the
        pairs alone put more than :data:`MOVE_FLAG_PX` off."""
        roi = np.flatnonzero(self.move_px > MOVE_FLAG_PX)
        full = np.flatnonzero(np.abs(self.full_px) > MOVE_FLAG_PX) if roi.size else roi
        return {"roi": roi.tolist(), "full": full.tolist()}

    def record(self) -> dict:
        """What the scan's record keeps."""
        return {
            "pairs_alone_dy_move_px": self.move_px.round(4).tolist(),
            "pairs_alone_dy_full_px": self.full_px.round(4).tolist(),
            "pairs_alone_flagged": self.flagged(),
        }


def pairs_alone_dy(fit: AxisFit, groups: Sequence[np.ndarray], n: int, scale: float) -> PairsAlone:
    """:class:`PairsAlone` of the joint solve's ``dy`` axis (its
    :class:`~sxtdist.alignment.confidence.AxisFit`): every full view's own-estimate row
    (``groups[j][0]``, :func:`~sxtdist.alignment.shifts.full_view_rows`) left out at once;
    ``n`` interior views, ``scale`` full pixel over interior pixel."""
    own = np.array([np.asarray(g, int)[0] for g in groups], int)
    if not own.size:
        return PairsAlone(np.zeros(n), np.zeros(0))
    delta, _, _ = without_rows(fit, own)
    n_full = len(own)
    # a full view's own-estimate row reads coef * D_j = coef * target_j (coef: its weight
    # times scale), so its residual is coef * (target_j - D_j)
    coef = np.array([fit.a[r, n + j] for j, r in enumerate(own)])
    off = -fit.resid[own] / np.where(coef != 0, coef, np.inf)
    full_px = scale * (off - delta[n : n + n_full])
    return PairsAlone(np.abs(delta[:n]), np.where(coef != 0, full_px, 0.0))


def without_rows(fit: AxisFit, rows: np.ndarray) -> tuple[np.ndarray, float, int]:
    """How far the solution of one axis's weighted least squares moves when ``rows`` are
    left out, in closed form (no new solve): ``(delta, chi2, dof)``, ``delta`` ``(unknowns,)``
    the solution less the one without them, the object's position projected out, and the
    externally studentised residual of those rows ``r_g^T (I - H_gg)^-1 r_g / s^2`` with
    its degrees of freedom. Rows weighted to nothing say nothing; a direction that those
    rows alone determine (a full view's own correction ``D_j``, or the object's position
    when every full view's estimate is left out) is undetermined without them: left out."""
    rows = np.asarray(rows, int)
    delta = np.zeros(fit.a.shape[1])
    if not rows.size:
        return delta, 0.0, 0
    a_g = fit.a[rows].toarray()
    keep = np.abs(a_g).sum(axis=1) > 0
    a_g, r_g = a_g[keep], fit.resid[rows][keep]
    if not len(r_g):
        return delta, 0.0, 0
    w, v = np.linalg.eigh(np.eye(len(r_g)) - a_g @ fit.cov @ a_g.T)
    kept = w > 1e-8
    z = v[:, kept] @ ((v[:, kept].T @ r_g) / w[kept])
    # the solution without the rows: x - cov a_g^T (I - H_gg)^-1 r_g
    delta = fit.project @ (fit.cov @ (a_g.T @ z))
    return delta, float(r_g @ z) / fit.scale2, int(kept.sum())


def axis_inflation(chi2: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """``(2,)``: how far the pairs' systematic errors (an anchor's rotation bias, in ``dx``
    above all) inflate each axis's statistic beyond the noise model: the median over the
    full views of ``chi2`` over the median of its chi-square law (0.455 for one degree of
    freedom: the noise alone gives a median ratio of 1), at least 1. Per axis, since the
    full scan's ``dy`` (row profiles) and ``dx`` (centroids, anchors across angles) err
    differently; ``chi2``, ``dof``: ``(full views, 2)``."""
    from scipy import stats  # on first use: see leave_full_views_out

    out = np.ones(2)
    for axis in range(2):
        ok = dof[:, axis] > 0
        if ok.any():
            ratio = chi2[ok, axis] / stats.chi2.median(dof[ok, axis])
            out[axis] = max(float(np.median(ratio)), 1.0)
    return out
