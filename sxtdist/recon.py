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
from .metrics import cylinder_mask, roi_diameter_px, split_half_indices
from .operators.base import LinearOperator, Scaled
from .operators.scan import ScanModel, scan_operator
from .solvers import OracleStop, SliceGroups, SolveResult, cgne, sirt

METHODS = ("cgne", "sirt")
#: CGNE on noisy SXT data semi-converges: on the paper-like ``small`` preset (the paper's
#: fluence) the ROI's PSNR peaks near 20 iterations; at a 30x lower dose near 6-10
#: (docs/reconstruction.md).
DEFAULT_ITERATIONS = 20
#: More iterations than anyone runs: a typo (``10**20``) is refused, not started.
MAX_ITERATIONS = 100_000
#: ``iterations="auto"``: the count is chosen by split-half cross-validation
#: (:func:`split_half_curves`).
AUTO = "auto"
#: Voxels of a slab's ROI that split-half cross-validation compares (a random sample of them).
CV_VOXELS = 100_000


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
        check_solve_values(self.method, self.iterations, self.weights, self.nonneg_every, self.rtol)
        if not self.models:
            raise ParameterError("no scans to reconstruct from")

    def rows(self, slab: tuple[int, int]) -> dict[str, np.ndarray]:
        """Detector rows each scan contributes to ``slab``."""
        return {name: m.rows_for_slab(self.grid, slab) for name, m in self.models.items()}


def check_solve_values(
    method: str,
    iterations: int | str,
    weights: Mapping[str, float] | None = None,
    nonneg_every: int | None = None,
    rtol: float | None = None,
) -> None:
    """Refuse (:class:`~sxtdist.errors.ParameterError`) values a solve cannot take: an unknown
    method, an iteration count outside ``1 ..`` :data:`MAX_ITERATIONS` (:data:`AUTO` passes:
    it is chosen later), ``nonneg_every`` below 1, ``rtol`` outside ``(0, 1)``, a weight
    that is not positive and finite. :class:`Problem` checks its own with it, and a batch
    its manifest's cells before any runs (the same rules, said the same way)."""
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if iterations != AUTO and not 1 <= int(iterations) <= MAX_ITERATIONS:
        raise ParameterError(f"iterations must be from 1 to {MAX_ITERATIONS}, got {iterations}")
    if nonneg_every is not None and nonneg_every < 1:
        raise ParameterError(f"{option('--nonneg-every', 'nonneg_every')} must be at least 1")
    if rtol is not None and not 0 < rtol < 1:
        raise ParameterError(f"{option('--rtol', 'rtol')} must be between 0 and 1, got {rtol}")
    for name, w in (weights or {}).items():
        if not 0 < w < math.inf:
            raise ParameterError(f"weight of scan {name!r} must be positive, got {w}")


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


def half_views(problem: Problem) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The even and the odd views of every scan in angular order (positions in the
    problem's views; :func:`view_subset` maps them to the stored ones)."""
    halves: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
    for name, m in problem.models.items():
        for half, idx in zip(halves, split_half_indices(m.geometry.angles_deg)):
            half[name] = idx
    return halves


def roi_region(problem: Problem) -> np.ndarray:
    """The ``(ny, nx)`` disc the interior scan ``roi`` sees at every angle (the whole slice
    without one): where split-half cross-validation compares the halves."""
    m = problem.models.get("roi")
    if m is None:
        return np.ones(problem.grid.slice_shape, bool)
    return cylinder_mask(
        problem.grid.slice_shape, roi_diameter_px(m.geometry, problem.grid.voxel_size_nm)
    )


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


def split_half_curves(
    problem: Problem,
    slab: tuple[int, int],
    data: Mapping[str, np.ndarray],
    voxels: np.ndarray,
    backend: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Image-space split-half cross-validation of the iteration count on one slab.

    The even and the odd views (:func:`half_views`) are reconstructed apart for
    ``problem.iterations`` iterations; at the slab's flat ``voxels`` (indices into
    ``(ny, nx, slices)``, e.g. a sample of the ROI in the slab's core) every iterate is
    kept, and the halves compared: ``far[k] = ½(||a_k − b_K||² + ||b_k − a_K||²)`` and
    ``between[k] = ||a_k − b_k||²``. ``far`` is, up to a constant, the half's error
    (the other half's last iterate is an independent estimate of the object): its minimum
    is ``--iterations auto``'s count. ``data`` is as for :func:`solve_slab` (every view).

    Returns
    -------
    far, between
        ``(iterations,)`` each.
    """
    rows = problem.rows(slab)
    kept = []
    for half in half_views(problem):
        p = view_subset(problem, half)
        d = {n: np.asarray(data[n])[half[n]] for n in p.models}
        ops, ys, groups, xp = slab_system(p, slab, d, backend, rows)
        at = xp.asarray(voxels)
        seen: list[np.ndarray] = []

        def keep(iteration: int, x: Any, seen=seen, at=at, xp=xp) -> bool:
            v = x.ravel()[at]
            seen.append(xp.asnumpy(v) if xp is not np else v.copy())
            return False

        cgne(
            ops,
            ys,
            problem.iterations,
            groups=groups,
            nonneg_every=problem.nonneg_every,
            callback=keep,
        )
        kept.append(np.asarray(seen, np.float64))
    a, b = kept
    far = 0.5 * (((a - b[-1]) ** 2).sum(axis=1) + ((b - a[-1]) ** 2).sum(axis=1))
    return far, ((a - b) ** 2).sum(axis=1)


def sample_voxels(
    shape: tuple[int, int, int], region: np.ndarray, core: slice, n: int = CV_VOXELS, seed: int = 0
) -> np.ndarray:
    """Flat indices of at most ``n`` voxels of ``region`` (``(ny, nx)``) in the ``core``
    slices of a slab of ``shape`` ``(ny, nx, slices)``, drawn without replacement, sorted."""
    inside = np.zeros(shape, bool)
    inside[..., core] = region[:, :, None]
    flat = np.flatnonzero(inside)
    if flat.size > n:
        flat = np.sort(np.random.default_rng(seed).choice(flat, n, replace=False))
    return flat


__all__: Sequence[str] = [
    "AUTO",
    "METHODS",
    "Problem",
    "half_views",
    "parse_iterations",
    "roi_region",
    "sample_voxels",
    "slab_groups",
    "slab_system",
    "solve_slab",
    "split_half_curves",
    "view_subset",
]
