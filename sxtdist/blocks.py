"""Slice blocks along the rotation axis: size, halo, shard alignment, memory estimate.

Vocabulary (after httomo): a *block* is the set of slices one task writes (its
*core*); the task solves a *slab*, the core plus a *halo* of slices on each side
that is solved and thrown away when detector rows couple slices (coarser pixels,
vertical shifts, a PSF).

Two regimes:

* **exact** — the slices fall into regular independent *groups* (e.g. pairs
  under a 2x-coarser full-view pixel, no vertical shifts, no PSF). Blocks are
  whole numbers of groups, no halo, and the per-group CG scalars make the result
  independent of the block size.
* **halo** — rows chain slices together. Each block gets a halo as wide as the
  longest row footprint; a seam test bounds the difference at block edges.

Either way the first and last slabs reach past the grid's ends (a halo's width, or as
far as the rows that see the grid reach): the sample goes on there (ice, a capillary),
and the detector rows that see it are modelled rather than dropped.

Blocks cover whole output shards (the shard's z size is the block size), so two
tasks never write one shard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ParameterError
from .geometry import VolumeGrid
from .operators.projector import estimate_matrix_nbytes
from .operators.scan import ScanModel

#: Fraction of a worker's memory limit the plan may use (the rest: Python, Dask, I/O buffers).
MEMORY_FRACTION = 0.6
#: Default per-worker budget when the cluster sets no limit.
DEFAULT_BUDGET = 2 * 1024**3
#: Largest inner chunk along z.
MAX_CHUNK_Z = 64


@dataclass(frozen=True)
class Block:
    """One task: write ``core`` slices, solve the ``slab``."""

    index: int
    core: tuple[int, int]
    slab: tuple[int, int]


@dataclass
class BlockPlan:
    """How the volume is cut into tasks."""

    grid_shape: tuple[int, int, int]
    block_size: int
    halo: int
    exact: bool
    period: int
    shard_z: int
    chunk_z: int
    matrix_bytes: int
    block_bytes: int
    blocks: list[Block]

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def peak_bytes(self) -> int:
        """Expected peak memory of one worker: its cached matrices plus one block."""
        return self.matrix_bytes + self.block_bytes

    def describe(self) -> str:
        mode = "exact (independent slice groups)" if self.exact else f"halo of {self.halo} slices"
        return (
            f"plan: {self.n_blocks} block(s) of {self.block_size} slices, {mode}; "
            f"expected peak memory per worker {self.peak_bytes / 2**20:.0f} MiB "
            f"(matrices {self.matrix_bytes / 2**20:.0f} MiB + block {self.block_bytes / 2**20:.0f} MiB)"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_blocks"] = self.n_blocks
        d.pop("blocks")
        return d


def coupling_links(models: Sequence[ScanModel], grid: VolumeGrid) -> np.ndarray:
    """``links[k]``: some detector row depends on both slice ``k`` and ``k + 1``."""
    nz = grid.nz
    cover = np.zeros(nz + 1, np.int64)
    for m in models:
        lo, hi = m.row_footprints(grid)
        lo = np.clip(lo, 0, nz - 1)
        hi = np.clip(hi, 0, nz - 1)
        spans = hi > lo
        # a row spanning [lo, hi] links k = lo .. hi-1
        np.add.at(cover, lo[spans], 1)
        np.add.at(cover, hi[spans], -1)
    return np.cumsum(cover)[: nz - 1] > 0


def max_footprint(models: Sequence[ScanModel], grid: VolumeGrid) -> int:
    """The most slices one detector row depends on."""
    return max(int((hi - lo).max()) + 1 for m in models for lo, hi in [m.row_footprints(grid)])


def end_reach(models: Sequence[ScanModel], grid: VolumeGrid) -> tuple[int, int]:
    """Slices below 0 and from ``nz`` up that the detector rows seeing the grid also see."""
    nz = grid.nz
    below = above = 0
    for m in models:
        lo, hi = m.row_footprints(grid)
        seen = (hi >= 0) & (lo < nz)
        if seen.any():
            below = max(below, -int(lo[seen].min()))
            above = max(above, int(hi[seen].max()) - (nz - 1))
    return below, above


def regular_period(links: np.ndarray) -> int | None:
    """``g`` if the slices form groups of exactly ``g`` starting at slice 0, else ``None``."""
    nz = links.size + 1
    starts = np.concatenate([[0], np.flatnonzero(~links) + 1])
    sizes = np.diff(np.concatenate([starts, [nz]]))
    g = int(sizes[0])
    if np.all(sizes[:-1] == g) and sizes[-1] <= g:
        return g
    return None


def estimate_block_bytes(models: Sequence[ScanModel], grid: VolumeGrid, slab_len: int) -> int:
    """Bytes one block's solve holds at its peak (vectors of CGNE and per-scan data)."""
    ny, nx = grid.slice_shape
    volume = 6 * ny * nx * slab_len * 4  # x, s, p, an adjoint term, an oracle copy, a read buffer
    data = 0
    for m in models:
        g = m.geometry
        rows = slab_len * grid.voxel_size_nm / g.pixel_size_nm + 2 * m.pad + 2
        padded = g.n_angles * (g.detector_shape[1] + 2 * m.pad) * rows * 4
        data += 8 * padded  # y, r, q, forward temporaries, row-sampling transposes
        if g.tilted:  # CPU: the tilt's sparse matrix and its transpose, 8 weights per sample
            data += 2 * 8 * 8 * g.n_angles * (g.detector_shape[1] + 2 * m.pad) * slab_len
    return int(volume + data)


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` not above ``limit``."""
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


def plan_blocks(
    models: Sequence[ScanModel],
    grid: VolumeGrid,
    block_size: int | None = None,
    memory_budget: int | None = None,
    workers: int = 1,
    halo: int | None = None,
) -> BlockPlan:
    """Cut ``grid`` into blocks for ``models``.

    Parameters
    ----------
    block_size
        Slices per block; default: the largest that fits ``memory_budget``, and
        small enough that every worker gets at least two blocks.
    memory_budget
        Bytes a worker may use (default 2 GiB x ``MEMORY_FRACTION``).
    workers
        Workers that will share the blocks.
    halo
        Force a halo (slices); default from the row footprints.
    """
    nz = grid.nz
    if block_size is not None and block_size < 1:
        raise ParameterError(f"block size must be at least 1 slice, got {block_size}")
    budget = int(memory_budget or DEFAULT_BUDGET * MEMORY_FRACTION)
    links = coupling_links(models, grid)
    period = regular_period(links) if nz > 1 else 1
    matrix_bytes = sum(
        estimate_matrix_nbytes(m.geometry, grid, m.pad, m.supersampling) for m in models
    )
    footprint = max_footprint(models, grid)

    def size_for(h: int) -> int:
        if block_size is not None:
            return min(int(block_size), nz)
        fits = [
            b for b in range(1, nz + 1) if estimate_block_bytes(models, grid, b + 2 * h) <= budget
        ]
        b_mem = max(fits) if fits else 1
        b_par = math.ceil(nz / (2 * max(1, workers)))  # at least two blocks per worker
        b = max(1, min(b_mem, max(b_par, min(16, b_mem))))
        return math.ceil(nz / math.ceil(nz / b))  # balance the blocks

    b = size_for(0)
    # exact when the slices form regular groups no larger than a block
    exact = halo in (None, 0) and period is not None and period <= b
    if exact:
        h = 0
        b = min(nz, math.ceil(b / period) * period)  # whole groups
    else:
        period = 1
        h = halo if halo is not None else footprint + 1
        b = size_for(h)
    # slabs go past the volume's ends too: the sample continues there, and rows that see
    # past an end can then be modelled (those slices are solved and dropped). A halo
    # reaches far enough; an exact plan's end blocks reach as far as the rows do.
    below, above = (h, h) if h else end_reach(models, grid)
    blocks = []
    for i, z0 in enumerate(range(0, nz, b)):
        z1 = min(nz, z0 + b)
        lo = z0 - (below if z0 == 0 else h)
        hi = z1 + (above if z1 == nz else h)
        blocks.append(Block(i, (z0, z1), (lo, hi)))
    slab_len = max(bl.slab[1] - bl.slab[0] for bl in blocks)
    return BlockPlan(
        grid_shape=tuple(grid.shape),
        block_size=b,
        halo=h,
        exact=exact,
        period=period,
        shard_z=b,
        chunk_z=largest_divisor_at_most(b, MAX_CHUNK_Z),
        matrix_bytes=matrix_bytes,
        block_bytes=estimate_block_bytes(models, grid, slab_len),
        blocks=blocks,
    )
