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

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from .shifts import JointSystem


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
    system: JointSystem, prior_w: np.ndarray, pair_w: np.ndarray, sy: np.ndarray, sx: np.ndarray
) -> dict:
    """The standard errors of the solution ``sy, sx`` of ``system`` at these weights:
    ``roi_sigma_px`` ``(n, 2)`` (interior px) and ``full_sigma_px`` ``(n_full, 2)`` (full
    px)."""
    n, n_full = system.n, system.n_full
    py, px, rhs = system.matrices(prior_w, pair_w)
    ey, ex = standard_errors(py, rhs[:, 0], sy), standard_errors(px, rhs[:, 1], sx)
    return {
        "roi_sigma_px": np.stack([ey[:n], ex[:n]], 1),
        "full_sigma_px": np.stack([ey[n:], ex[n : n + n_full]], 1),
    }
