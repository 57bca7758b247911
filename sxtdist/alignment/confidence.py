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

import numpy as np
from scipy import sparse


def standard_errors(
    a: sparse.spmatrix, rhs: np.ndarray, x: np.ndarray, gauge: np.ndarray | None = None
) -> np.ndarray:
    """Each unknown's standard error in the least squares ``a x = rhs`` (``x`` its
    solution): ``sqrt(diag((a^T a)^-1))`` times the root mean square residual per degree
    of freedom (the rows' weights are relative). ``gauge`` ``(unknowns, k)``: directions
    that change nothing that matters (the object's position), projected out first."""
    a = sparse.csr_matrix(a)
    resid = a @ x - rhs
    dof = max(a.shape[0] - a.shape[1], 1)
    scale = float(np.sqrt(np.sum(resid**2) / dof))
    cov = np.linalg.pinv((a.T @ a).toarray(), hermitian=True)
    if gauge is not None:
        project = np.eye(len(cov)) - gauge @ np.linalg.pinv(gauge)
        cov = project @ cov @ project.T
    return scale * np.sqrt(np.clip(np.diag(cov), 0.0, None))


def view_uncertainty(
    matrices: tuple[sparse.spmatrix, sparse.spmatrix, np.ndarray],
    solution: tuple[np.ndarray, np.ndarray],
    angles: tuple[np.ndarray, np.ndarray],
    scale: float,
) -> dict:
    """The standard errors of the joint solve's solution ``(sy, sx)`` of its weighted
    ``matrices`` (``dy``, ``dx`` and the right-hand sides:
    :meth:`sxtdist.alignment.shifts.JointSystem.matrices`), less the object's position
    (``angles``: the interior and full views', degrees; ``scale``: full pixel over interior
    pixel): ``roi_sigma_px`` ``(n, 2)`` (interior px) and ``full_sigma_px`` ``(n_full, 2)``
    (full px)."""
    py, px, rhs = matrices
    n, n_full = len(angles[0]), len(angles[1])
    gauge_y, gauge_x = object_translation(angles, scale)
    ey = standard_errors(py, rhs[:, 0], solution[0], gauge_y)
    ex = standard_errors(px, rhs[:, 1], solution[1], gauge_x)
    return {
        "roi_sigma_px": np.stack([ey[:n], ex[:n]], 1),
        "full_sigma_px": np.stack([ey[n:], ex[n : n + n_full]], 1),
    }


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
