"""The CPU cost of a CGNE iteration per nonzero and slice, against the slice's size.

The capacity planner (:mod:`sxtdist.capacity`) models an iteration as ``nnz × (fixed +
per_slice × slices)``. This measures ``per_slice`` (CPU seconds of this process, one
thread, the median of three 2-iteration block solves) on the calibration's geometry (92
interior views on a 0.39 n detector, 19 full views at twice the pixel) for several slice
sizes ``n`` and slab widths ``k``: the figure grows with ``n`` once the products' reads
leave the caches, which is why :func:`sxtdist.calibration.measure_rates` measures it at a
small and a large slice.

Usage: ``python benchmarks/slice_rate.py [192:16,64 512:16,64 ...]`` (``n:k,k``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from sxtdist.calibration import slab_solve_seconds
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators.projector import system_matrix
from sxtdist.operators.scan import ScanModel
from sxtdist.recon import Problem

ITERATIONS = 2


def rate(n: int, k: int) -> tuple[float, int]:
    """CPU seconds per nonzero, slice and iteration of a ``k``-slice block of ``n``² slices."""
    grid = VolumeGrid((k, n, n), 30.0)
    geoms = {
        "roi": ScanGeometry(np.arange(92) * 180 / 92, 30.0, (k, int(0.39 * n))),
        "full": ScanGeometry(np.arange(19) * 180 / 19, 60.0, (k, n // 2)),
    }
    problem = Problem(grid, {name: ScanModel(g) for name, g in geoms.items()}, "cgne", ITERATIONS)
    nnz = sum(
        system_matrix(m.geometry, grid, m.pad, m.supersampling)[0].nnz
        for m in problem.models.values()
    )
    seconds = slab_solve_seconds(problem, k, np.random.default_rng(0))
    return seconds / ((ITERATIONS + 1) * nnz * k), nnz


def main(argv=None) -> int:
    specs = (argv if argv is not None else sys.argv[1:]) or ["128:32,64", "192:16,64,128",
                                                            "256:32,64", "384:32,64",
                                                            "512:16,64,128", "768:32,64"]  # fmt: skip
    print(f"# slice_rate: CPU s per nonzero, slice and iteration; {os.cpu_count()} cpus")
    print("| n | k | nonzeros | CPU s per nnz·slice·iteration | load (1 min) |")
    print("|---|---|---|---|---|")
    for spec in specs:
        n, ks = spec.split(":")
        for k in ks.split(","):
            r, nnz = rate(int(n), int(k))
            print(f"| {n}² | {k} | {nnz:,} | {r:.2e} | {os.getloadavg()[0]:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
