"""The capacity planner's table for docs/cluster.md: 512³, 1024³, 2048³ cells on CPU workers and GPUs.

The problems are the ``cell`` preset's geometry at three resolutions (``cell``: 512³ at
30 nm; ``cell-1k``: 1024³ at 15 nm; the same cell at 7.5 nm for 2048³): 92 interior
views over 6 µm and 19 full views at twice the pixel, aligned shifts of about 1.5 px
(so blocks carry a halo), 20 CGNE iterations. No acquisition is made: the estimate
needs only the geometry (:func:`sxtdist.capacity.estimate`). CPU workers are
single-threaded with ``--worker-memory`` each (16 GiB: a 2048² slice's system
matrices alone take about 6 GiB); GPUs are 80 GB H100s. Rates: this machine's cached calibration
(:func:`sxtdist.calibration.load_rates`), printed with the table; GPU rates are the
H100 figure of docs/gpu.md.

Usage: ``python benchmarks/capacity_table.py [--worker-memory 16GiB] [--recalibrate]``
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
from dask.utils import parse_bytes

from sxtdist.backends import estimate_gpu_block_bytes, gpu_block_size
from sxtdist.blocks import MEMORY_FRACTION, plan_blocks
from sxtdist.calibration import load_rates
from sxtdist.capacity import estimate
from sxtdist.dataset import ROW_BAND
from sxtdist.estimate import DEFAULT_GPU_BYTES
from sxtdist.geometry import default_grid
from sxtdist.operators.scan import ScanModel
from sxtdist.recon import Problem
from sxtdist.simulation import simulation_geometries
from sxtdist.simulation.presets import PRESETS, Preset

CPU_WORKERS = (1, 8, 64)
GPUS = (1, 4, 8)


def preset(size: int) -> Preset:
    base = PRESETS["cell"]
    if size == 512:
        return base
    if size == 1024:
        return PRESETS["cell-1k"]
    f = size / 512
    return replace(
        base,
        name=f"cell-{size}",
        voxel_nm=base.voxel_nm / f,
        fov_px=size,
        height_px=size,
        full=replace(base.full, pixel_size_nm=base.full.pixel_size_nm / f),
        roi=replace(base.roi, pixel_size_nm=base.roi.pixel_size_nm / f),
    )


def problem(size: int, iterations: int) -> Problem:
    p = preset(size)
    geoms = simulation_geometries(p, p.full, p.roi)
    rng = np.random.default_rng(0)
    geoms = {n: g.with_shifts(rng.normal(0, 1.5, (g.n_angles, 2))) for n, g in geoms.items()}
    grid = default_grid(list(geoms.values()))
    return Problem(grid, {n: ScanModel(g) for n, g in geoms.items()}, "cgne", iterations)


def row(size, backend, n, est) -> str:
    p = est.plan
    who = "GPU" if backend == "gpu" else "CPU worker"
    return (
        f"| {size}³ | {n} {who}{'s' if n > 1 else ''} | "
        f"{p.n_blocks} × {p.block_size} (halo {p.halo}) | {est.bytes_read / 2**30:.1f} GiB | "
        f"{est.bytes_written / 2**30:.1f} GiB | {est.peak_bytes / 2**30:.1f} GiB | "
        f"{_h(est.wall_s)} | {est.worker_hours:.1f} |"
    )


def _h(s: float) -> str:
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker-memory", default="16GiB", help="memory of one CPU worker")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--recalibrate", action="store_true")
    args = ap.parse_args(argv)
    rates = load_rates(recalibrate=args.recalibrate)
    budget = int(parse_bytes(args.worker_memory) * MEMORY_FRACTION)
    print(
        "| cell | where | blocks × slices | read | written | peak per worker/GPU "
        "| wall | worker/GPU-hours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in (512, 1024, 2048):
        prob = problem(size, args.iterations)
        models = list(prob.models.values())
        bands = dict.fromkeys(prob.models, ROW_BAND)
        for n in CPU_WORKERS:
            plan = plan_blocks(models, prob.grid, None, budget, n)
            print(row(size, "cpu", n, estimate(prob, plan, rates, n, "cpu", bands)))
        for n in GPUS:
            first = plan_blocks(models, prob.grid, None, budget, n)
            b = gpu_block_size(models, prob.grid, DEFAULT_GPU_BYTES, first.halo)
            plan = plan_blocks(models, prob.grid, b, budget, n)
            slab = max(bl.slab[1] - bl.slab[0] for bl in plan.blocks)
            peak = estimate_gpu_block_bytes(models, prob.grid, slab)
            print(row(size, "gpu", n, estimate(prob, plan, rates, n, "gpu", bands, peak)))
    print(f"\nrates: {rates.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
