"""The combined reconstruction of one slab: operators, data layout, slice groups, solve.

Numerical core: numpy arrays in, numpy arrays out; no Dask, no Zarr. The runner
(:mod:`sxtdist.runner`) reads each block's rows from the acquisition, calls
:func:`solve_slab` in a worker and writes the result.

Data arrive as stored, ``(angles, rows, cols)`` per scan, and are laid out
slices-last ``(angles, cols, rows)`` for the sparse products; the slab comes back
``(slices, y, x)`` as the volume stores it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .blocks import coupling_links
from .errors import ParameterError, option
from .geometry import VolumeGrid
from .operators.base import LinearOperator, Scaled
from .operators.scan import ScanModel, scan_operator
from .solvers import (
    Callback,
    HeldOutMisfit,
    OracleStop,
    SliceGroups,
    SolveResult,
    cgne,
    chain,
    sirt,
)

METHODS = ("cgne", "sirt")
#: CGNE on noisy SXT data semi-converges: on the paper-like ``small`` preset (the paper's
#: fluence) the ROI's PSNR peaks near 20 iterations; at a 30x lower dose near 6-10
#: (docs/reconstruction.md).
DEFAULT_ITERATIONS = 20
#: More iterations than anyone runs: a typo (``10**20``) is refused, not started.
MAX_ITERATIONS = 100_000
#: ``iterations="auto"``: the count is chosen by hold-out cross-validation (:func:`holdout_misfit`).
AUTO = "auto"
#: Cross-validation holds out every ``HOLDOUT_EVERY``-th view of the scan with the most views.
HOLDOUT_EVERY = 10


@dataclass(frozen=True)
class Problem:
    """Everything a block solve needs, picklable for the workers.

    Parameters
    ----------
    grid
        The volume grid.
    models
        ``{scan name: ScanModel}``, in the order the scans are stacked.
    method
        ``"cgne"`` or ``"sirt"``.
    iterations
        Iteration cap.
    weights
        Optional least-squares weight per scan (default 1).
    nonneg_every
        CGNE: clamp at 0 every ``k`` iterations. SIRT: any value clamps every iteration.
    rtol
        CGNE: stop a slice group at this relative residual.
    views
        Per scan, the stored views the models' geometries are (default: all of them);
        see :func:`view_subset`.
    """

    grid: VolumeGrid
    models: Mapping[str, ScanModel]
    method: str = "cgne"
    iterations: int = DEFAULT_ITERATIONS
    weights: Mapping[str, float] = field(default_factory=dict)
    nonneg_every: int | None = None
    rtol: float | None = None
    views: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ParameterError(
                f"unknown method {self.method!r} (choose from {', '.join(METHODS)})"
            )
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise ParameterError(
                f"iterations must be from 1 to {MAX_ITERATIONS}, got {self.iterations}"
            )
        if not self.models:
            raise ParameterError("no scans to reconstruct from")
        if self.nonneg_every is not None and self.nonneg_every < 1:
            raise ParameterError(f"{option('--nonneg-every', 'nonneg_every')} must be at least 1")
        if self.rtol is not None and not 0 < self.rtol < 1:
            raise ParameterError(
                f"{option('--rtol', 'rtol')} must be between 0 and 1, got {self.rtol}"
            )
        for name, w in self.weights.items():
            if not 0 < w < math.inf:
                raise ParameterError(f"weight of scan {name!r} must be positive, got {w}")

    def rows(self, slab: tuple[int, int]) -> dict[str, np.ndarray]:
        """Detector rows each scan contributes to ``slab``."""
        return {name: m.rows_for_slab(self.grid, slab) for name, m in self.models.items()}


def parse_iterations(value: Any) -> int | str:
    """A positive iteration count or :data:`AUTO`, from a number or text (CLI, manifests)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ParameterError(
            f"iterations must be a positive number or 'auto', got {value!r}"
        ) from None
    if n < 1 or n != float(value):
        raise ParameterError(f"iterations must be a positive number or 'auto', got {value!r}")
    return n


def holdout_views(problem: Problem) -> dict[str, np.ndarray]:
    """The views cross-validation holds out: every :data:`HOLDOUT_EVERY`-th of the scan with
    the most views (the interior scan of the combined problem), at least one.

    Only that scan: a few sparse full views carry the low frequencies, and holding out
    theirs changes the problem more than it tests it (docs/reconstruction.md).
    """
    name = max(problem.models, key=lambda n: problem.models[n].geometry.n_angles)
    n = problem.models[name].geometry.n_angles
    return {name: np.arange(min(HOLDOUT_EVERY // 2, n - 1), n, HOLDOUT_EVERY)}


def slab_groups(
    problem: Problem, slab: tuple[int, int], rows: Mapping[str, np.ndarray]
) -> SliceGroups:
    """The slice groups inside ``slab`` and the group of each data row.

    Slices past the volume's ends (a slab may reach there) count as coupled.
    """
    s0, s1 = slab
    models = list(problem.models.values())
    inside = coupling_links(models, problem.grid)
    k = np.arange(s0, s1 - 1)
    ok = (k >= 0) & (k < inside.size)
    links = np.ones(k.size, bool)
    links[ok] = inside[k[ok]]
    firsts = []
    for m, r in zip(models, rows.values()):
        lo, _ = m.row_footprints(problem.grid)
        firsts.append(np.clip(lo[r], s0, s1 - 1) - s0)
    return SliceGroups.from_links(links, firsts)


def solve_slab(
    problem: Problem,
    slab: tuple[int, int],
    data: Mapping[str, np.ndarray],
    truth: np.ndarray | None = None,
    truth_mask: np.ndarray | None = None,
    backend: str = "cpu",
) -> tuple[np.ndarray, SolveResult]:
    """Reconstruct the slices ``slab`` from each scan's rows ``problem.rows(slab)``.

    Parameters
    ----------
    data
        ``{scan: (angles, n_rows, cols)}`` optical depth for exactly those rows.
    truth, truth_mask
        ``(slices, y, x)``: stop by the oracle rule (best PSNR inside the mask).
    backend
        ``"cpu"`` or ``"gpu"``: on the GPU the same solver runs on cupy arrays with
        ASTRA's CUDA projector; the data go to the device once and the slab comes
        back once (numpy in, numpy out either way).

    Returns
    -------
    slab, result
        ``(slices, y, x)`` float32 and the solver's record.
    """
    ops, ys, groups, xp = slab_system(problem, slab, data, backend)
    callback = None
    if truth is not None:
        callback = OracleStop(
            xp.asarray(np.ascontiguousarray(np.moveaxis(truth, 0, -1))),
            None
            if truth_mask is None
            else xp.asarray(np.ascontiguousarray(np.moveaxis(truth_mask, 0, -1))),
        )
    if problem.method == "cgne":
        result = cgne(
            ops,
            ys,
            problem.iterations,
            groups=groups,
            nonneg_every=problem.nonneg_every,
            rtol=problem.rtol,
            callback=callback,
        )
    else:
        result = sirt(ops, ys, problem.iterations, nonneg=True, callback=callback)
    x = result.x
    if callback is not None and callback.best_x is not None:
        x = callback.best_x
        result.stopped_by = f"oracle (best at iteration {callback.best_iteration})"
    out = xp.ascontiguousarray(xp.moveaxis(x, -1, 0))
    if xp is not np:  # the one copy back; release the device memory for the next block
        out = xp.asnumpy(out)
        result.x = np.moveaxis(out, 0, -1)  # a host view, in the CPU path's layout
        del x, ops, ys, callback
        xp.get_default_memory_pool().free_all_blocks()
    return out, result


def _array_module(backend: str):
    if backend == "gpu":
        import cupy

        return cupy
    if backend == "cpu":
        return np
    raise ParameterError(f"unknown backend {backend!r} (cpu or gpu)")


def slab_system(
    problem: Problem,
    slab: tuple[int, int],
    data: Mapping[str, np.ndarray],
    backend: str = "cpu",
    rows: Mapping[str, np.ndarray] | None = None,
) -> tuple[list[LinearOperator], list[Any], SliceGroups, Any]:
    """The weighted least-squares system of a slab: operators, data, slice groups.

    ``min Σ_i w_i ||A_i x − y_i||²`` is stacked as ``√w_i A_i`` and ``√w_i y_i``. ``data``
    holds each scan's ``rows`` (default ``problem.rows(slab)``) of the problem's views,
    as stored ``(angles, rows, cols)``; scans with no rows in the slab are left out.

    Returns
    -------
    ops, data, groups, xp
        Per-scan operators and slices-last data on the backend's array module ``xp``.
    """
    xp = _array_module(backend)
    rows = problem.rows(slab) if rows is None else rows
    ops, ys = [], []
    used = {}
    for name, m in problem.models.items():
        r = rows[name]
        if r.size == 0:
            continue
        d = np.asarray(data[name], dtype=np.float32)
        if d.shape != (m.geometry.n_angles, r.size, m.geometry.detector_shape[1]):
            raise ValueError(f"scan {name}: data {d.shape} do not match rows {r.size}")
        op = scan_operator(m, problem.grid, slab, r, backend=backend)
        y = d.transpose(0, 2, 1)
        w = float(problem.weights.get(name, 1.0))
        if w != 1.0:  # min Σ w_i ||A_i x − y_i||²: scale operator and data by √w_i
            op = Scaled(op, np.sqrt(w))
            # a new array (never the caller's, which the transpose of one row is a view of)
            y = np.multiply(y, np.float32(np.sqrt(w)), order="C")
        ops.append(op)
        ys.append(xp.asarray(np.ascontiguousarray(y)))
        used[name] = r
    if not ops:
        raise ParameterError(f"no detector rows of any scan fall in slices {slab}")
    sub = replace(problem, models={n: problem.models[n] for n in used})
    return ops, ys, slab_groups(sub, slab, used), xp


def view_subset(problem: Problem, views: Mapping[str, Sequence[int]]) -> Problem:
    """The problem seen through some of the views of each scan named in ``views``.

    Indices are into the problem's own views; :attr:`Problem.views` keeps them as indices
    of the stored scan, so a reader knows which projections to pass. Scans given no view
    are left out.
    """
    models, kept = {}, {}
    for name, m in problem.models.items():
        if name not in views:
            models[name], kept[name] = m, problem.views.get(name)
            continue
        idx = np.asarray(views[name], dtype=int)
        if idx.size == 0:
            continue
        models[name] = replace(m, geometry=m.geometry.subset(idx))
        stored = np.asarray(problem.views.get(name, np.arange(m.geometry.n_angles)))
        kept[name] = tuple(int(i) for i in stored[idx])
    if not models:
        raise ParameterError("no views left to reconstruct from")
    return replace(problem, models=models, views={n: v for n, v in kept.items() if v is not None})


def holdout_misfit(
    problem: Problem,
    slab: tuple[int, int],
    data: Mapping[str, np.ndarray],
    held: Mapping[str, Sequence[int]],
    backend: str = "cpu",
    callback: Callback | None = None,
    patience: int | None = None,
) -> np.ndarray:
    """Cross-validation of the iteration count on one slab.

    CGNE runs up to ``problem.iterations`` iterations on the data without the ``held``
    views (indices per scan) and records, after each, the weighted misfit of the held
    views ``Σ_i w_i ||A_i x − y_i||²`` over the slab's rows. ``data`` is as for
    :func:`solve_slab` (every view). ``callback`` also sees each iterate; ``patience``
    stops early past the minimum (:class:`~sxtdist.solvers.HeldOutMisfit`).

    Returns
    -------
    numpy.ndarray
        The misfit per iteration.
    """
    rows = problem.rows(slab)
    keep = {
        n: np.setdiff1d(np.arange(m.geometry.n_angles), np.asarray(held[n], int))
        for n, m in problem.models.items()
        if n in held
    }
    fit = view_subset(problem, keep)
    test = view_subset(replace(problem, models={n: problem.models[n] for n in held}), held)

    def pick(p: Problem, idx: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {
            n: np.asarray(data[n])[np.asarray(idx[n])] if n in idx else data[n] for n in p.models
        }

    ops, ys, groups, _ = slab_system(fit, slab, pick(fit, keep), backend, rows)
    hops, hys, _, _ = slab_system(test, slab, pick(test, held), backend, rows)
    monitor = HeldOutMisfit(hops, hys, patience)
    cgne(
        ops,
        ys,
        problem.iterations,
        groups=groups,
        nonneg_every=problem.nonneg_every,
        callback=chain(monitor, callback),
    )
    return np.asarray(monitor.misfit)


__all__: Sequence[str] = [
    "AUTO",
    "METHODS",
    "Problem",
    "holdout_misfit",
    "holdout_views",
    "parse_iterations",
    "slab_groups",
    "slab_system",
    "solve_slab",
    "view_subset",
]
