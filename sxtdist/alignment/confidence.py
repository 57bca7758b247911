"""How far each solved shift can be trusted, in the solve's own reading: each view's
standard error, the least-squares covariance of the weighted joint system (pairs and the
full views' own estimates, at the weights the robust rules left them) scaled by the
system's own misfit. A view that only a few, far or weighted-down pairs tie has a large
one. It reads the noise the pairs show, not their shared biases: on the ``small`` preset
at the paper's dose it is about a quarter to a half of the actual error
(``benchmarks/align_motion.py``), so it ranks views; the verdict
(:mod:`sxtdist.alignment.verdict`) is what says whether to trust them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

#: An interior view whose standard error in ``dy`` or ``dx`` is more than this many times
#: that axis's median over the scan's views is named by the verdict
#: (:func:`weakly_tied`). The ratio does not depend on the noise (the misfit scale is the
#: same for every view): it says how much less the design of the solve (which pairs, the
#: full views' own estimates, at the weights the robust rules left them) ties the view
#: than the scan's typical view. Development runs (``benchmarks/align_motion.py``, seeds
#: 1-12 of the control and of ``drift --motion-scale 3``, 1-6 of ``large``, 9 and 19 full
#: views): at most 1.28 on the control, 2.05 on any run within 0.3 px; 3.2-4.5 on 8 of the
#: 18 drift runs past 0.5 px, among them the one the other checks missed (``--full 19
#: --seeds 6``: the last interior views' anchors lost and full views 0-2 and 16-18
#: without their own ``dx``, the scan's ends hang on the chain of neighbours; 4.07, 0.60 px
#: off; docs/dev/alignment-history.md).
SIGMA_RATIO_FLAG = 3.0


@dataclass
class AxisFit:
    """One axis of a weighted least squares ``a x = rhs`` at its solution ``x``: what its
    standard errors and the leave-one-out check
    (:func:`~sxtdist.alignment.consistency.leave_full_views_out`) both read, the inverse
    normal matrix computed once."""

    a: sparse.csr_matrix
    #: ``rhs - a x``
    resid: np.ndarray
    #: The residual's mean square per degree of freedom (the rows' weights are relative).
    scale2: float
    #: ``(a^T a)^-1`` (pseudo-inverse).
    cov: np.ndarray
    #: The projection that removes the ``gauge`` directions (identity without one).
    project: np.ndarray

    @classmethod
    def of(
        cls, a: sparse.spmatrix, rhs: np.ndarray, x: np.ndarray, gauge: np.ndarray | None = None
    ) -> AxisFit:
        """``gauge`` ``(unknowns, k)``: directions that change nothing that matters (the
        object's position)."""
        a = sparse.csr_matrix(a)
        resid = rhs - a @ x
        dof = max(a.shape[0] - a.shape[1], 1)
        cov = np.linalg.pinv((a.T @ a).toarray(), hermitian=True)
        project = np.eye(len(cov))
        if gauge is not None:
            project = project - gauge @ np.linalg.pinv(gauge)
        return cls(a, resid, max(float(np.sum(resid**2) / dof), 1e-300), cov, project)

    def standard_errors(self) -> np.ndarray:
        """Each unknown's standard error, the gauge projected out first."""
        cov = self.project @ self.cov @ self.project.T
        return np.sqrt(self.scale2) * np.sqrt(np.clip(np.diag(cov), 0.0, None))


def standard_errors(
    a: sparse.spmatrix, rhs: np.ndarray, x: np.ndarray, gauge: np.ndarray | None = None
) -> np.ndarray:
    """Each unknown's standard error in the least squares ``a x = rhs`` (``x`` its
    solution): ``sqrt(diag((a^T a)^-1))`` times the root mean square residual per degree
    of freedom (the rows' weights are relative). ``gauge`` ``(unknowns, k)``: directions
    that change nothing that matters (the object's position), projected out first."""
    return AxisFit.of(a, rhs, x, gauge).standard_errors()


def axis_fits(
    matrices: tuple[sparse.spmatrix, sparse.spmatrix, np.ndarray],
    solution: tuple[np.ndarray, np.ndarray],
    angles: tuple[np.ndarray, np.ndarray],
    scale: float,
) -> tuple[AxisFit, AxisFit]:
    """The ``dy`` and ``dx`` :class:`AxisFit` of the joint solve's weighted ``matrices``
    (``dy``, ``dx`` and the right-hand sides:
    :meth:`sxtdist.alignment.shifts.JointSystem.matrices`) at its solution ``(sy, sx)``,
    the object's position as the gauge (``angles``: the interior and full views',
    degrees; ``scale``: full pixel over interior pixel)."""
    gy, gx = object_translation(angles, scale)
    (py, px, rhs), (sy, sx) = matrices, solution
    return AxisFit.of(py, rhs[:, 0], sy, gy), AxisFit.of(px, rhs[:, 1], sx, gx)


def view_uncertainty(fits: tuple[AxisFit, AxisFit], n: int) -> dict:
    """The standard errors of the joint solve (its :func:`axis_fits`; ``n`` interior views
    first, then the full views), less the object's position: ``roi_sigma_px`` ``(n, 2)``
    (interior px) and ``full_sigma_px`` ``(n_full, 2)`` (full px)."""
    ey, ex = (f.standard_errors() for f in fits)
    n_full = len(ey) - n
    return {
        "roi_sigma_px": np.stack([ey[:n], ex[:n]], 1),
        "full_sigma_px": np.stack([ey[n:], ex[n : n + n_full]], 1),
    }


def weakly_tied(sigma: np.ndarray, ratio: float = SIGMA_RATIO_FLAG) -> np.ndarray:
    """The interior views whose standard error (``sigma`` ``(n, 2)``, ``roi_sigma_px``) in
    either axis is more than ``ratio`` times that axis's median over the views."""
    sigma = np.asarray(sigma, float).reshape(-1, 2)
    if not len(sigma):
        return np.zeros(0, int)
    median = np.median(sigma, axis=0)
    return np.flatnonzero((sigma > ratio * np.maximum(median, 1e-300)).any(axis=1))


def sigma_ratio(sigma: np.ndarray) -> np.ndarray:
    """``(n,)``: each interior view's largest standard error over its axis's median (the
    statistic :func:`weakly_tied` reads)."""
    sigma = np.asarray(sigma, float).reshape(-1, 2)
    return (sigma / np.maximum(np.median(sigma, axis=0), 1e-300)).max(axis=1)


def object_translation(
    angles: tuple[np.ndarray, np.ndarray], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The directions of the joint solve's ``dy`` and ``dx`` unknowns (``(n + n_full, 1)``,
    ``(n + n_full + 2, 2)``) that only move the object, which no alignment determines:
    ``dy`` by a constant (the full views' by it over ``scale``), ``dx`` by ``a cos + b sin``
    of each view's angle and the rotation point by ``(a, b)``. ``angles``: the interior
    and full views', degrees."""
    n, n_full, s = len(angles[0]), len(angles[1]), scale
    theta, phi = (np.deg2rad(np.asarray(a, float)) for a in angles)
    gauge_y = np.r_[np.ones(n), np.ones(n_full) / s][:, None]
    gauge_x = np.stack(
        [
            np.r_[np.cos(theta), np.cos(phi) / s, 1.0, 0.0],
            np.r_[np.sin(theta), np.sin(phi) / s, 0.0, 1.0],
        ],
        axis=1,
    )
    return gauge_y, gauge_x
