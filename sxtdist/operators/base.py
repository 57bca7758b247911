"""Linear operators with exact adjoints, in the spirit of tomosipo's ``ts.operator``.

An operator maps arrays of ``domain_shape`` to arrays of ``range_shape``;
``A(x)`` applies it, ``A.T(y)`` applies the adjoint, ``A @ B`` composes and
:class:`Stack` puts operators sharing a domain on top of each other (its range
is a list of arrays). Operators work on numpy or cupy arrays alike where they
only use array methods; the array module comes from the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def array_module(x: Any):
    """numpy or cupy, whichever ``x`` belongs to (no cupy import unless it is cupy)."""
    mod = type(x).__module__
    if mod.startswith("cupy"):
        import cupy

        return cupy
    return np


class LinearOperator:
    """Base class: subclasses set ``domain_shape``/``range_shape`` and implement
    ``_apply(x, out)`` and ``_adjoint(y, out)``."""

    domain_shape: Shape
    range_shape: Shape
    dtype = np.float32

    def __call__(self, x, out=None):
        return self._apply(x, out)

    def _apply(self, x, out):  # pragma: no cover - abstract
        raise NotImplementedError

    def _adjoint(self, y, out):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def T(self) -> LinearOperator:
        return _Adjoint(self)

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        return Composition(self, other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.domain_shape} -> {self.range_shape})"


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator) -> None:
        self.op = op
        self.domain_shape = op.range_shape
        self.range_shape = op.domain_shape

    def _apply(self, x, out):
        return self.op._adjoint(x, out)

    def _adjoint(self, y, out):
        return self.op._apply(y, out)

    @property
    def T(self) -> LinearOperator:
        return self.op


class Composition(LinearOperator):
    """``A @ B``: first ``B``, then ``A``."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if tuple(outer.domain_shape) != tuple(inner.range_shape):
            raise ValueError(
                f"cannot compose: {outer!r} takes {outer.domain_shape}, {inner!r} gives {inner.range_shape}"
            )
        self.outer, self.inner = outer, inner
        self.domain_shape = inner.domain_shape
        self.range_shape = outer.range_shape

    def _apply(self, x, out):
        return self.outer(self.inner(x), out)

    def _adjoint(self, y, out):
        return self.inner.T(self.outer.T(y), out)


class SparseOperator(LinearOperator):
    """An operator given by a sparse matrix and its transpose, both CSR (``matrix``,
    ``matrix_t``, set by the subclass): :meth:`_map` says how one is applied to an array.

    On cupy input the matrices are copied to the device once (cuSPARSE) and the same
    code runs there. A result is a new C-contiguous array, or written into ``out``.
    """

    matrix: Any
    matrix_t: Any

    def _map(self, matrix, x, shape_out):  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_device(self, matrix, xp):
        if xp is np:
            return matrix
        device = self.__dict__.setdefault("_device_matrices", {})
        if id(matrix) not in device:
            import cupyx.scipy.sparse as csp

            device[id(matrix)] = csp.csr_matrix(matrix)
        return device[id(matrix)]

    def _apply(self, x, out):
        y = self._map(self._on_device(self.matrix, array_module(x)), x, self.range_shape)
        return _into(y, out)

    def _adjoint(self, y, out):
        x = self._map(self._on_device(self.matrix_t, array_module(y)), y, self.domain_shape)
        return _into(x, out)


def _into(y, out):
    """``y`` as a C-contiguous array, or copied into ``out``."""
    if out is None:
        return array_module(y).ascontiguousarray(y)
    out[...] = y
    return out


class Identity(LinearOperator):
    """The identity on arrays of ``shape``."""

    def __init__(self, shape: Shape) -> None:
        self.domain_shape = self.range_shape = tuple(shape)

    def _apply(self, x, out):
        if out is None:
            return x.copy()
        out[...] = x
        return out

    _adjoint = _apply


class Scaled(LinearOperator):
    """``c · A`` for a scalar ``c``.

    The adjoint scales its input, not its result (the range, a scan's data, is smaller
    than the domain, a volume), into a buffer kept between calls: a solver applies it
    every iteration. So one ``Scaled`` must not be applied from two threads at once.
    """

    def __init__(self, op: LinearOperator, factor: float) -> None:
        self.op, self.factor = op, float(factor)
        self.domain_shape, self.range_shape = op.domain_shape, op.range_shape
        self._scaled = None

    def _apply(self, x, out):
        y = self.op(x, out)
        y *= self.factor
        return y

    def _adjoint(self, y, out):
        buf = self._scaled
        if buf is None or buf.shape != y.shape or buf.dtype != y.dtype or type(buf) is not type(y):
            buf = self._scaled = array_module(y).empty_like(y)
        array_module(y).multiply(y, self.factor, out=buf)
        x = self.op.T(buf, out)
        return x.copy() if x is buf else x


class Diagonal(LinearOperator):
    """Multiplication by fixed ``weights`` (a mask, per-datum weights), broadcast to
    ``shape``; its own adjoint."""

    def __init__(self, weights: Any, shape: Shape) -> None:
        self.domain_shape = self.range_shape = tuple(shape)
        self.weights = weights

    def _apply(self, x, out):
        if out is None:
            return x * self.weights
        array_module(x).multiply(x, self.weights, out=out)
        return out

    _adjoint = _apply


class Stack(LinearOperator):
    """Operators with a common domain, stacked: ``[w_1 A_1; w_2 A_2; ...]``.

    The range is a list of arrays, one per operator. ``weights`` multiply each
    block (use ``sqrt`` of a least-squares weight); default 1.

    The adjoint sums ``w_i A_i^T y_i`` into one domain array, with no temporary
    beyond what each ``A_i^T`` needs.
    """

    def __init__(self, operators: Sequence[LinearOperator], weights: Sequence[float] | None = None):
        if not operators:
            raise ValueError("a stack needs at least one operator")
        shapes = {tuple(op.domain_shape) for op in operators}
        if len(shapes) != 1:
            raise ValueError(f"stacked operators must share a domain, got {sorted(shapes)}")
        self.operators = list(operators)
        self.weights = [1.0] * len(operators) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.operators):
            raise ValueError("one weight per operator")
        self.domain_shape = tuple(operators[0].domain_shape)
        self.range_shape = tuple(tuple(op.range_shape) for op in operators)

    def __len__(self) -> int:
        return len(self.operators)

    def _apply(self, x, out):
        res = []
        for i, (op, w) in enumerate(zip(self.operators, self.weights)):
            y = op(x, None if out is None else out[i])
            if w != 1.0:
                y *= w
            res.append(y)
        return res

    def _adjoint(self, ys, out):
        acc = out
        for op, w, y in zip(self.operators, self.weights, ys):
            part = op.T(y)
            if w != 1.0:
                part *= w
            if acc is None:
                acc = part
            else:
                acc += part
        return acc


# -- helpers for testing ---------------------------------------------------------------------------


def random_like(shape, rng: np.random.Generator, xp=np):
    """Standard-normal float32 array(s) of ``shape`` (a shape or a tuple of shapes)."""
    if shape and isinstance(shape[0], tuple):
        return [random_like(s, rng, xp) for s in shape]
    return xp.asarray(rng.standard_normal(shape).astype(np.float32))


def inner(a, b) -> float:
    """Sum of elementwise products of arrays or lists of arrays (float64 accumulation)."""
    if isinstance(a, list):
        return sum(inner(x, y) for x, y in zip(a, b))
    xp = array_module(a)
    return float(xp.vdot(a.astype(np.float64).ravel(), b.astype(np.float64).ravel()))


def dot_test(op: LinearOperator, rng: np.random.Generator | None = None, xp=np) -> float:
    """Relative mismatch ``|<Ax, y> - <x, A^T y>| / max(|<Ax, y>|, |<x, A^T y>|)``.

    For random ``x`` and ``y``; an exact adjoint gives float32 round-off (< 1e-5).
    """
    rng = rng or np.random.default_rng(0)
    x = random_like(op.domain_shape, rng, xp)
    y = random_like(op.range_shape, rng, xp)
    lhs = inner(op(x), y)
    rhs = inner(x, op.T(y))
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs), 1e-30)
