"""Detector binning: the mean over ``b x b`` pixel cells, with an exact adjoint.

Layout ``(angles, cols, rows)``; the fine detector is ``(angles, cols * bc, rows * br)``.
The adjoint spreads each binned value evenly back over its cell.
"""

from __future__ import annotations

from .base import LinearOperator, array_module


class Binning(LinearOperator):
    """Mean over ``(bc, br)`` cells of the last two axes."""

    def __init__(self, fine_shape: tuple[int, int, int], factors: tuple[int, int]) -> None:
        n_a, c, r = (int(s) for s in fine_shape)
        bc, br = (int(f) for f in factors)
        if bc < 1 or br < 1 or c % bc or r % br:
            raise ValueError(f"binning {factors} does not divide the detector {(c, r)}")
        self.factors = (bc, br)
        self.domain_shape = (n_a, c, r)
        self.range_shape = (n_a, c // bc, r // br)

    def _apply(self, x, out):
        n_a, c, r = self.range_shape
        bc, br = self.factors
        y = x.reshape(n_a, c, bc, r, br).mean(axis=(2, 4), dtype=x.dtype)
        if out is None:
            return y
        out[...] = y
        return out

    def _adjoint(self, y, out):
        xp = array_module(y)
        bc, br = self.factors
        x = xp.repeat(xp.repeat(y, bc, axis=1), br, axis=2) / (bc * br)
        x = x.astype(y.dtype, copy=False)
        if out is None:
            return x
        out[...] = x
        return out
