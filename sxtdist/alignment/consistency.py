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
  all full views together (Bonferroni). The pairs' own systematic errors are not in
  that model, so the statistic is first divided by its median over the full views
  (when above 1).

A view that moves more than :data:`MOVE_FLAG_PX` without a full view's estimate that the
rest significantly contradicts is named by the verdict. The figures are kept per view
in the scan's record (``leave_one_out_move_px``, ``leave_one_out_full_view``,
``leave_one_out_p``). Leaving a full view's anchors out too was tried: it opens the
interior's chain of neighbours at the scan's ends, where the rest then extrapolates, and
it moved views by 0.3-0.5 px on sub-pixel jitter (development seeds) whose error was 0.1 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .confidence import AxisFit

#: The chance, under the noise alone, that any one full view of a scan is called
#: contradicted (split over the full views).
SIGNIFICANCE = 1e-3
#: An interior view that moves more than this (interior px) when a contradicted full
#: view's measurements are left out is named: half the 0.5 px the verdict must catch,
#: since the rest's own answer carries its noise too.
MOVE_FLAG_PX = 0.25


@dataclass
class LeaveOneOut:
    """Per full view ``j``: ``move_px[j]`` ``(n,)``, how far each interior view moves
    without ``j``'s rows (interior px), and ``p[j]``, the chance of a contradiction at
    least as large from noise alone."""

    move_px: np.ndarray
    p: np.ndarray
    chi2_per_dof: np.ndarray

    def flagged(self, n_full: int | None = None) -> dict[int, tuple[int, float]]:
        """``{interior view: (full view, move px)}`` for the views that move more than
        :data:`MOVE_FLAG_PX` without a significantly contradicted full view (the
        largest such move)."""
        n_full = len(self.p) if n_full is None else n_full
        out: dict[int, tuple[int, float]] = {}
        for j in np.flatnonzero(self.p < SIGNIFICANCE / max(n_full, 1)):
            for i in np.flatnonzero(self.move_px[j] > MOVE_FLAG_PX):
                if i not in out or self.move_px[j, i] > out[int(i)][1]:
                    out[int(i)] = (int(j), float(self.move_px[j, i]))
        return out

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
        }


def leave_full_views_out(
    fits: Sequence[AxisFit], groups: Sequence[np.ndarray], n: int
) -> LeaveOneOut:
    """:class:`LeaveOneOut` of the weighted joint system at its solution, one
    :class:`~sxtdist.alignment.confidence.AxisFit` per axis (``dy``, ``dx``:
    :func:`~sxtdist.alignment.confidence.axis_fits`, whose inverse the standard errors
    share); ``groups[j]``: the rows of full view ``j`` (its own estimate, its anchors), the
    same in both axes; ``n``: the interior views (the first unknowns)."""
    per_axis = [(f.a, f.resid, f.scale2, f.cov, f.project) for f in fits]
    moves = np.zeros((len(groups), n))
    chi2 = np.zeros(len(groups))
    dof = np.zeros(len(groups))
    for j, rows in enumerate(groups):
        rows = np.asarray(rows, int)
        if not rows.size:
            continue
        move2 = np.zeros(n)
        for a, resid, scale2, cov, project in per_axis:
            a_g = a[rows].toarray()
            keep = np.abs(a_g).sum(axis=1) > 0  # rows weighted to nothing say nothing
            a_g, r_g = a_g[keep], resid[rows][keep]
            if not len(r_g):
                continue
            # I - H_gg; a direction the group alone determines (its own correction D_j)
            # has none left and is undetermined without it: left out
            w, v = np.linalg.eigh(np.eye(len(r_g)) - a_g @ cov @ a_g.T)
            kept = w > 1e-8
            z = v[:, kept] @ ((v[:, kept].T @ r_g) / w[kept])
            # the solution without the group: x - cov a_g^T (I - H_gg)^-1 r_g
            delta = project @ (cov @ (a_g.T @ z))
            move2 += delta[:n] ** 2
            chi2[j] += float(r_g @ z) / scale2
            dof[j] += kept.sum()
        moves[j] = np.sqrt(move2)
    per_dof = np.where(dof > 0, chi2 / np.maximum(dof, 1), np.nan)
    # the pairs' systematic errors (an anchor's rotation bias) are not in the noise
    # model: the full views' own median says how far they inflate it
    inflation = max(float(np.nanmedian(per_dof)), 1.0) if np.isfinite(per_dof).any() else 1.0
    p = np.where(dof > 0, stats.chi2.sf(chi2 / inflation, np.maximum(dof, 1)), 1.0)
    return LeaveOneOut(moves, p, per_dof)
