"""How far each solved shift can be trusted, without a truth.

Two readings of the joint solve (:func:`sxtdist.alignment.shifts.solve_joint`):

- **Each view's standard error**: the least-squares covariance of the weighted system
  (pairs and the full views' own estimates, at the weights the robust rules left them),
  scaled by the system's own misfit. A view that only a few, far or weighted-down
  pairs tie has a large one.
- **The pairs alone against the whole**: the same pairs solved with the full views'
  own estimates reduced to a gauge (what fixes the object's position), the difference
  from the whole solution less the best object translation. The pairs determine every
  shift but that translation; where the full scan's own estimate pulled the solution
  away from what the pairs say (a cell out of the field biases it), the difference shows
  it, with the pairs-only solution's own standard error beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from .shifts import JointSystem

#: The weight a full view's own estimate keeps in the pairs-only solve: a gauge (it fixes
#: the object's position, which nothing else does, and nothing more).
GAUGE_WEIGHT = 0.01


def standard_errors(a: sparse.spmatrix, rhs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each unknown's standard error in the least squares ``a x = rhs`` (``x`` its
    solution): ``sqrt(diag((a^T a)^-1))`` times the root mean square residual per degree
    of freedom (the rows' weights are relative)."""
    a = sparse.csr_matrix(a)
    resid = a @ x - rhs
    dof = max(a.shape[0] - a.shape[1], 1)
    scale = float(np.sqrt(np.sum(resid**2) / dof))
    cov = np.linalg.pinv((a.T @ a).toarray(), hermitian=True)
    return scale * np.sqrt(np.clip(np.diag(cov), 0.0, None))


def view_uncertainty(
    system: JointSystem,
    prior_w: np.ndarray,
    pair_w: np.ndarray,
    sy: np.ndarray,
    sx: np.ndarray,
    angles: tuple[np.ndarray, np.ndarray],
) -> dict:
    """The record of both readings for the solution ``sy, sx`` of ``system`` at these
    weights: ``roi_sigma_px`` ``(n, 2)`` and ``full_sigma_px`` ``(n_full, 2)`` (standard
    errors, each scan's pixels); ``roi_pairs_only_px`` ``(n,)`` and
    ``full_pairs_only_px`` ``(n_full,)``, the length of each view's difference from the
    pairs-only solution (interior px, less the best object translation), and
    ``roi_pairs_only_sigma_px`` ``(n,)``, the pairs-only solution's standard error
    (length of the two components')."""
    n, n_full = system.n, system.n_full
    py, px, rhs = system.matrices(prior_w, pair_w)
    ey, ex = standard_errors(py, rhs[:, 0], sy), standard_errors(px, rhs[:, 1], sx)
    gauge = np.full_like(np.asarray(prior_w, float), GAUGE_WEIGHT)
    qy, qx, rhs0 = system.matrices(gauge, pair_w)
    sy0, sx0 = system.solve(gauge, pair_w)
    e0 = np.hypot(
        standard_errors(qy, rhs0[:, 0], sy0)[:n], standard_errors(qx, rhs0[:, 1], sx0)[:n]
    )
    diff = np.stack([sy - sy0, sx[: n + n_full] - sx0[: n + n_full]], 1)
    diff[n:] *= system.scale  # full views in interior px
    diff = _without_translation(diff, *angles)
    length = np.hypot(diff[:, 0], diff[:, 1])
    return {
        "roi_sigma_px": np.stack([ey[:n], ex[:n]], 1),
        "full_sigma_px": np.stack([ey[n:], ex[n : n + n_full]], 1),
        "roi_pairs_only_px": length[:n],
        "full_pairs_only_px": length[n:],
        "roi_pairs_only_sigma_px": e0,
    }


def _without_translation(
    diff: np.ndarray, roi_angles: np.ndarray, full_angles: np.ndarray
) -> np.ndarray:
    """``diff`` ``(n + n_full, 2)`` (interior px) less the object translation that best
    explains it: ``dy`` a constant, ``dx`` ``a cos + b sin`` of each view's angle."""
    theta = np.deg2rad(np.r_[np.asarray(roi_angles, float), np.asarray(full_angles, float)])
    out = diff.copy()
    out[:, 0] -= out[:, 0].mean()
    basis = np.stack([np.cos(theta), np.sin(theta)], 1)
    out[:, 1] -= basis @ np.linalg.lstsq(basis, out[:, 1], rcond=None)[0]
    return out
