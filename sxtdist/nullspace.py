"""The null space of a scan's operator: how much of a phantom no data can see.

The paper's figure 2h: CGLS on zero data started at the phantom ``x₀`` only moves ``x``
inside ``range(Aᵀ)``, so it converges to ``x₀``'s component in the null space of ``A``
(interior only, sparse only, or both scans: the combined operator). Its size against
``x₀``'s, whole and inside the ROI, says how much the full views remove. The CGLS is
:func:`sxtdist.solvers.cgne` (in float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .operators.base import LinearOperator
from .solvers import cgne


def _as_list(y: Any) -> list:
    return y if isinstance(y, list) else [y]


def _norm2(v: Any) -> float:
    return float(sum(float(np.vdot(p.ravel(), p.ravel()).real) for p in _as_list(v)))


class _Float64View(LinearOperator):
    """An operator applied in float32, as it is built, with float64 results: the solver's
    vectors and sums over scans stay float64 (a null-space estimate runs to 200 CG
    iterations, where float32 vectors lose the small components it measures)."""

    def __init__(self, op: Any) -> None:
        self.op = op
        self.domain_shape, self.range_shape = op.domain_shape, op.range_shape

    def _apply(self, x, out):
        return np.asarray(self.op(x.astype(np.float32)), dtype=np.float64)

    def _adjoint(self, y, out):
        return np.asarray(self.op.T(y.astype(np.float32)), dtype=np.float64)


def cgls_zero_data(operators: Sequence[Any], x0: np.ndarray, iterations: int) -> np.ndarray:
    """CGLS on ``min Σ‖A_i x‖²`` from ``x0``: converges to ``x0``'s null-space component.

    ``operators`` is a list of per-scan operators (``A(x)``, ``A.T(y)``), the
    combined operator of the paper's eq. 7 without materialising it. The same iterates
    as :func:`sxtdist.solvers.cgne` from zero on the data ``−A_i x₀`` (the correction
    ``e`` with ``x = x₀ + e``), which is how it is computed, in float64.
    """
    ops = [_Float64View(op) for op in operators]
    x0 = np.asarray(x0, dtype=np.float64)
    shifted = [-op(x0) for op in ops]
    return x0 + cgne(ops, shifted, int(iterations)).x


@dataclass
class NullSpace:
    """The null-space component of a phantom and its size.

    ``ratio`` and ``ratio_mask`` are ``‖x_null‖² / ‖x₀‖²`` (whole, inside the mask),
    the quantity the paper's figure 2h plots ×100; ``norm_ratio*`` are their
    square roots, the true length ratio.
    """

    x_null: np.ndarray
    ratio: float
    ratio_mask: float | None

    @property
    def norm_ratio(self) -> float:
        return math.sqrt(self.ratio)

    @property
    def norm_ratio_mask(self) -> float | None:
        return None if self.ratio_mask is None else math.sqrt(self.ratio_mask)


def null_space(
    operators: Any,
    phantom: np.ndarray,
    iterations: int = 200,
    mask: np.ndarray | None = None,
    solver: Callable[[Sequence[Any], np.ndarray, int], np.ndarray] | None = None,
) -> NullSpace:
    """Estimate the null-space component of ``phantom`` for one or several operators.

    Parameters
    ----------
    operators
        An operator or a list of per-scan operators (interior only, sparse only, or
        both: the combined operator).
    phantom
        ``x₀``, in the operators' domain layout.
    iterations
        CGLS iterations (the reference used 200).
    mask
        Voxels for the masked ratio (e.g. the ROI cylinder), broadcastable to ``x₀``.
    solver
        ``solver(operators, x0, iterations) -> x``: any least-squares solver that
        with zero data started at ``x0`` returns ``x0``'s null-space part;
        default :func:`cgls_zero_data`.
    """
    ops = list(operators) if isinstance(operators, (list, tuple)) else [operators]
    x0 = np.asarray(phantom, dtype=np.float64)
    x = (solver or cgls_zero_data)(ops, x0, iterations)
    x = np.asarray(x, dtype=np.float64)
    n0 = _norm2(x0)
    if n0 == 0:
        raise ValueError("the phantom is zero: its null-space ratio is undefined")
    ratio = _norm2(x) / n0
    ratio_mask = None
    if mask is not None:
        m = np.broadcast_to(mask, x0.shape)
        d = _norm2(x0[m])
        ratio_mask = _norm2(x[m]) / d if d > 0 else None
    return NullSpace(x.astype(np.float32), ratio, ratio_mask)


__all__ = ["NullSpace", "cgls_zero_data", "null_space"]
