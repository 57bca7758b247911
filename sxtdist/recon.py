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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .blocks import coupling_links
from .errors import ParameterError
from .geometry import VolumeGrid
from .operators.base import Scaled
from .operators.scan import ScanModel, scan_operator
from .solvers import OracleStop, SliceGroups, SolveResult, cgne, sirt

METHODS = ("cgne", "sirt")
#: CGNE on noisy SXT data semi-converges: on the paper-like ``small`` preset (the paper's
#: fluence) the ROI's PSNR peaks near 20 iterations; at a 30x lower dose near 6-10
#: (docs/reconstruction.md).
DEFAULT_ITERATIONS = 20
#: More iterations than anyone runs: a typo (``10**20``) is refused, not started.
MAX_ITERATIONS = 100_000


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
    """

    grid: VolumeGrid
    models: Mapping[str, ScanModel]
    method: str = "cgne"
    iterations: int = DEFAULT_ITERATIONS
    weights: Mapping[str, float] = field(default_factory=dict)
    nonneg_every: int | None = None
    rtol: float | None = None

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
            raise ParameterError("--nonneg-every must be at least 1")
        if self.rtol is not None and not 0 < self.rtol < 1:
            raise ParameterError(f"--rtol must be a number between 0 and 1, got {self.rtol}")
        for name, w in self.weights.items():
            if not 0 < w < math.inf:
                raise ParameterError(f"weight of scan {name!r} must be positive, got {w}")

    def rows(self, slab: tuple[int, int]) -> dict[str, np.ndarray]:
        """Detector rows each scan contributes to ``slab``."""
        return {name: m.rows_for_slab(self.grid, slab) for name, m in self.models.items()}


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
    if backend == "gpu":
        import cupy as xp
    elif backend == "cpu":
        xp = np
    else:
        raise ParameterError(f"unknown backend {backend!r} (cpu or gpu)")
    rows = problem.rows(slab)
    ops, ys = [], []
    for name, m in problem.models.items():
        r = rows[name]
        if r.size == 0:
            continue
        d = np.asarray(data[name], dtype=np.float32)
        if d.shape != (m.geometry.n_angles, r.size, m.geometry.detector_shape[1]):
            raise ValueError(f"scan {name}: data {d.shape} do not match rows {r.size}")
        op = scan_operator(m, problem.grid, slab, r, backend=backend)
        y = np.ascontiguousarray(d.transpose(0, 2, 1))
        w = float(problem.weights.get(name, 1.0))
        if w != 1.0:  # min Σ w_i ||A_i x − y_i||²: scale operator and data by √w_i
            op = Scaled(op, np.sqrt(w))
            y *= np.float32(np.sqrt(w))
        ops.append(op)
        ys.append(xp.asarray(y))
    if not ops:
        raise ParameterError(f"no detector rows of any scan fall in slices {slab}")
    callback = None
    if truth is not None:
        callback = OracleStop(
            xp.asarray(np.ascontiguousarray(np.moveaxis(truth, 0, -1))),
            None
            if truth_mask is None
            else xp.asarray(np.ascontiguousarray(np.moveaxis(truth_mask, 0, -1))),
        )
    if problem.method == "cgne":
        used = {n: rows[n] for n in problem.models if rows[n].size}
        groups = slab_groups(_subset(problem, used), slab, used)
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


def _subset(problem: Problem, names: Mapping[str, Any]) -> Problem:
    if len(names) == len(problem.models):
        return problem
    return Problem(
        problem.grid,
        {n: problem.models[n] for n in names},
        problem.method,
        problem.iterations,
        problem.weights,
        problem.nonneg_every,
        problem.rtol,
    )


def roi_cylinder_mask(
    grid: VolumeGrid, radius_nm: float, center_nm: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """``(ny, nx)`` mask of the interior cylinder about the rotation axis (the ROI)."""
    ny, nx = grid.slice_shape
    v = grid.voxel_size_nm
    y = (np.arange(ny) - (ny - 1) / 2.0) * v - center_nm[0]
    x = (np.arange(nx) - (nx - 1) / 2.0) * v - center_nm[1]
    return (y[:, None] ** 2 + x[None, :] ** 2) <= radius_nm**2


__all__: Sequence[str] = ["METHODS", "Problem", "roi_cylinder_mask", "slab_groups", "solve_slab"]
