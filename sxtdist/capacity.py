"""What a reconstruction will cost, before it runs: bytes, memory per worker or GPU, wall time.

Pure numerics (no Dask, no Zarr): a :class:`~sxtdist.recon.Problem`, its
:class:`~sxtdist.blocks.BlockPlan` and the :class:`Rates` of this installation give a
:class:`CapacityEstimate` for ``N`` CPU workers or GPUs. The model:

* a CGNE iteration (CGNE does ``iterations + 1`` forward and back projections)
  costs ``nnz × (fixed + per_slice × slices)``, ``nnz`` the scans' system-matrix
  nonzeros (:func:`matrix_nnz`): the fixed part streams the matrices once, the rest
  (products, row sampling, vector work) grows with the slab. ``per_slice`` grows with
  the slice's size (:func:`per_slice_rate`; ``benchmarks/slice_rate.py`` on a 2-core VM:
  4.6-5.1e-10 CPU s per nonzero, slice and iteration at 192² slices, 7.5-8.2e-10 at 512²,
  8.4e-10 at 768², as the products' reads leave the caches), so it is calibrated at a
  small and a large slice and interpolated in log(pixels), held flat outside;
* times are CPU seconds of one worker with a core of its own (a machine busy with
  other work is slower);
* each worker builds each scan's matrix once (``nnz × build``), then solves its share
  of the blocks, ``ceil(blocks / workers)`` rounds of the slowest block;
* a block reads the inner chunks (bands of rows) its rows touch, of every view, and
  writes its core slices; the pyramid is built at the end from level 0.

Rates come from :mod:`sxtdist.calibration` (a calibration run on this machine, cached);
the GPU's from the H100 figures in docs/gpu.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .blocks import Block, BlockPlan
from .geometry import ScanGeometry, VolumeGrid
from .operators.projector import default_supersampling
from .recon import Problem

#: Bytes per voxel the pyramid's coarser levels add to level 0 (1/8 + 1/64 + ...).
PYRAMID_FRACTION = 1 / 7


@dataclass(frozen=True)
class Rates:
    """Throughput of one single-threaded worker (CPU) and of one GPU.

    Parameters
    ----------
    build_s_per_nnz
        Building a scan's system matrix and its transpose, per nonzero.
    iteration_s_per_nnz, iteration_s_per_nnz_slice
        One CGNE iteration: the fixed part per nonzero and the part per nonzero and
        slice (fitted to whole block solves).
    read_bytes_per_s, write_bytes_per_s
        Decoding projections, encoding volume slices (Zarr, zstd).
    startup_s
        Starting the cluster and the first task.
    gpu_s_per_nnz_slice
        GPU: one forward plus one back projection per nonzero-equivalent and slice.
    source
        Where the figures come from (shown with every estimate).
    iteration_s_per_nnz_slice_large, calibration_pixels
        The per-slice part measured at a large slice too, and the slice pixels (small,
        large) of the two measurements (:func:`per_slice_rate`); default: one size.
    load, cpus
        The machine's 1-minute load average when the rates were measured, and its cores.
    """

    build_s_per_nnz: float
    iteration_s_per_nnz: float
    iteration_s_per_nnz_slice: float
    read_bytes_per_s: float
    write_bytes_per_s: float
    startup_s: float
    gpu_s_per_nnz_slice: float
    source: str
    iteration_s_per_nnz_slice_large: float | None = None
    calibration_pixels: tuple[int, int] = (0, 0)
    load: float | None = None
    cpus: int | None = None

    def __post_init__(self) -> None:  # JSON (the cache) gives a list
        object.__setattr__(self, "calibration_pixels", tuple(self.calibration_pixels))

    @property
    def taken_under_load(self) -> bool:
        """Measured while the machine was busier than its cores (the figures run slow)."""
        return self.load is not None and self.cpus is not None and self.load > self.cpus

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CapacityEstimate:
    """The cost of one reconstruction on ``workers`` CPU workers or GPUs."""

    backend: str
    workers: int
    plan: BlockPlan
    iterations: int
    bytes_read: int
    bytes_written: int
    peak_bytes: int
    build_s: float
    block_s: float
    wall_s: float
    worker_hours: float
    source: str
    note: str = ""

    def describe(self) -> str:
        """A few lines for a person deciding whether to submit."""
        p = self.plan
        who = "GPU" if self.backend == "gpu" else "worker"
        nz, ny, nx = p.grid_shape
        rounds = math.ceil(p.n_blocks / self.workers)
        return "\n".join(
            [
                f"volume {nz}x{ny}x{nx}, {self.iterations} iterations, backend {self.backend}, "
                f"{self.workers} {who}(s)",
                f"plan: {p.n_blocks} block(s) of {p.block_size} slices, halo {p.halo}; "
                f"{rounds} round(s) of blocks per {who}",
                f"reads {_bytes(self.bytes_read)} of projections, writes {_bytes(self.bytes_written)} "
                f"(volume and pyramid)",
                f"peak memory per {who}: {_bytes(self.peak_bytes)}",
                f"time: matrices {self.build_s:.0f} s per {who} (CPU), a block {self.block_s:.0f} s; "
                f"wall about {_duration(self.wall_s)}; {self.worker_hours:.2f} {who}-hours",
                f"rates: {self.source}",
                *([self.note] if self.note else []),
            ]
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        return d


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2**10:.0f} KiB"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def ray_chords_nm(geometry: ScanGeometry, grid: VolumeGrid, pad: int, s: int) -> np.ndarray:
    """Length (nm) inside the slice square of every ray, ``(angles, (cols + 2 pad) * s)``.

    Ray positions follow the geometry's convention (``u = x cos θ + y sin θ``, the
    detector centre offset and horizontal shifts included).
    """
    u = np.stack(
        [geometry.column_centers_nm(a, pad, s) for a in range(geometry.n_angles)]
    )  # (angles, (cols + 2 pad) * s)
    theta = geometry.angles_rad[:, None]
    c, si = np.cos(theta), np.sin(theta)
    ny, nx = grid.slice_shape
    half_y, half_x = ny * grid.voxel_size_nm / 2, nx * grid.voxel_size_nm / 2
    # points (y, x) = u (sin, cos) + t (cos, -sin): the t-interval inside |y| <= Y, |x| <= X
    lo, hi = np.full(u.shape, -np.inf), np.full(u.shape, np.inf)
    for base, step, half in ((u * si, c, half_y), (u * c, -si, half_x)):
        step = np.broadcast_to(step, u.shape)
        moving = np.abs(step) > 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.where(moving, (-half - base) / step, -np.inf)
            t2 = np.where(moving, (half - base) / step, np.inf)
        inside = moving | (np.abs(base) <= half)
        lo = np.where(inside, np.maximum(lo, np.minimum(t1, t2)), np.inf)
        hi = np.where(inside, np.minimum(hi, np.maximum(t1, t2)), -np.inf)
    return np.clip(hi - lo, 0.0, None)


def matrix_nnz(
    geometry: ScanGeometry, grid: VolumeGrid, pad: int = 0, supersampling: int | None = None
) -> int:
    """Nonzeros of a scan's 2D system matrix (ASTRA's ``linear`` kernel), from its rays.

    The kernel steps along the ray's major axis, one voxel pitch at a time, and touches
    two voxels per step; the ``s`` rays of a pixel are summed into one row, and a ray
    ``pitch`` voxels from its neighbour adds only ``pitch`` new voxels per step. Exact
    for one ray per pixel, within 5 % for 2 and 3 (tests/test_capacity.py).
    """
    s = default_supersampling(geometry, grid) if supersampling is None else int(supersampling)
    chords = ray_chords_nm(geometry, grid, pad, s)
    theta = geometry.angles_rad[:, None]
    major = np.maximum(np.abs(np.cos(theta)), np.abs(np.sin(theta)))
    per_ray = 2.0 * chords * major / grid.voxel_size_nm
    pitch = geometry.pixel_size_nm / s / grid.voxel_size_nm
    merged = (2.0 + (s - 1) * min(2.0, pitch)) / (2.0 * s)
    return int(per_ray.sum() * merged)


def block_read_bytes(
    problem: Problem, block: Block, row_bands: Mapping[str, int] | None = None
) -> int:
    """Bytes of projections a block decodes: the inner chunks its rows touch, every view."""
    total = 0
    for name, rows in problem.rows(block.slab).items():
        if rows.size == 0:
            continue
        g = problem.models[name].geometry
        n_rows = g.detector_shape[0]
        band = max(1, int((row_bands or {}).get(name, 1)))
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        touched = min(n_rows, math.ceil(r1 / band) * band) - (r0 // band) * band
        total += g.n_angles * touched * g.detector_shape[1] * 4
    return total


def estimate(
    problem: Problem,
    plan: BlockPlan,
    rates: Rates,
    workers: int = 1,
    backend: str = "cpu",
    row_bands: Mapping[str, int] | None = None,
    gpu_peak_bytes: int | None = None,
) -> CapacityEstimate:
    """The cost of solving ``plan`` on ``workers`` single-threaded CPU workers or GPUs.

    Parameters
    ----------
    row_bands
        Detector rows per inner chunk of each scan's projections (how much a block
        decodes beyond its rows); default 1 (exactly its rows).
    gpu_peak_bytes
        GPU backend: device bytes of the largest block (``backends.estimate_gpu_block_bytes``).
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    grid = problem.grid
    models = list(problem.models.values())
    nnz = [matrix_nnz(m.geometry, grid, m.pad, m.supersampling) for m in models]
    its = problem.iterations + 1  # CGNE's first residual and gradient are one more FP and BP
    ny, nx = grid.slice_shape
    reads = [block_read_bytes(problem, b, row_bands) for b in plan.blocks]

    per_slice = per_slice_rate(rates, ny * nx)

    def solve_s(slices: int) -> float:
        if backend == "gpu":
            return its * sum(nnz) * slices * rates.gpu_s_per_nnz_slice
        return its * sum(nnz) * (rates.iteration_s_per_nnz + per_slice * slices)

    written = math.prod(plan.grid_shape) * 4
    block_s = max(
        solve_s(b.slab[1] - b.slab[0])
        + r / rates.read_bytes_per_s
        + (b.core[1] - b.core[0]) * ny * nx * 4 / rates.write_bytes_per_s
        for b, r in zip(plan.blocks, reads)
    )
    build_s = 0.0 if backend == "gpu" else sum(nnz) * rates.build_s_per_nnz
    rounds = math.ceil(plan.n_blocks / workers)
    # the pyramid: level 0 read back and the coarser levels written, in the client
    finalize_s = written * (1 / rates.read_bytes_per_s + PYRAMID_FRACTION / rates.write_bytes_per_s)
    wall = rates.startup_s + build_s + rounds * block_s + finalize_s
    busy = min(workers, plan.n_blocks) * build_s + plan.n_blocks * block_s
    peak = plan.peak_bytes if backend != "gpu" else int(gpu_peak_bytes or 0)
    return CapacityEstimate(
        backend=backend,
        workers=int(workers),
        plan=plan,
        iterations=problem.iterations,
        bytes_read=int(sum(reads)),
        bytes_written=int(written * (1 + PYRAMID_FRACTION)),
        peak_bytes=int(peak),
        build_s=float(build_s),
        block_s=float(block_s),
        wall_s=float(wall),
        worker_hours=float(busy / 3600),
        source=rates.source,
    )


def per_slice_rate(rates: Rates, slice_pixels: int) -> float:
    """CPU seconds per nonzero, slice and iteration for slices of ``slice_pixels`` pixels.

    Interpolated in ``log(pixels)`` between the small and the large calibration slice,
    the end values held outside them (past the caches it grows little: 7.5-8.2e-10 at
    512², 8.4e-10 at 768², ``benchmarks/slice_rate.py`` on a 2-core VM).
    """
    small, large = (int(p) for p in rates.calibration_pixels)
    r_small = rates.iteration_s_per_nnz_slice
    r_large = rates.iteration_s_per_nnz_slice_large
    if r_large is None or not 0 < small < large:
        return r_small
    if slice_pixels <= small:
        return r_small
    if slice_pixels >= large:
        return r_large
    t = math.log(slice_pixels / small) / math.log(large / small)
    return r_small + t * (r_large - r_small)


__all__: Sequence[str] = [
    "CapacityEstimate",
    "Rates",
    "block_read_bytes",
    "estimate",
    "matrix_nnz",
    "per_slice_rate",
    "ray_chords_nm",
]
