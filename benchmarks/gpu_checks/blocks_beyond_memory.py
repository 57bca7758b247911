"""GPU at scale: a volume larger than one GPU's memory, solved in blocks; each block's time
against the single-block figure and the planner's estimate.

An ``n³`` grid (default 2048³: CGNE's eight volume-sized arrays alone are 256 GiB,
beyond an 80 GB H100 or a 141 GB H200), 92 interior views on a ``0.586 n``
detector at the voxel pitch and 19 full views at 3x the pixel (``bench_gpu.py``'s
shape), PSF σ ``--psf`` px. The block size comes from the GPU's free memory
(:func:`sxtdist.backends.gpu_block_size`), as ``reconstruct --backend gpu`` sizes it.
Each block's data are made on the GPU by the forward model of a phantom (not timed),
then the block is solved with :func:`sxtdist.recon.solve_slab` and its slab copied back.

Prints the plan, then per block: slices, solve seconds, seconds per slice, peak GPU
memory above the start against ``estimate_gpu_block_bytes``; then the first block's
seconds per slice (the single-block figure) against the median and worst of the others
(target: within 10 %), the total against the first block's rate times all slices, and
the planner's estimate of the solves (:func:`sxtdist.capacity.estimate` with the H100
rate of docs/gpu.md). ``--json FILE`` writes the figures. Exits 2 without a usable GPU.

Usage (on the device, repository root, after ``. deploy/gpu-device/setup.sh``)::

    python benchmarks/gpu_checks/blocks_beyond_memory.py [--size 2048] [--iterations 10]
        [--max-blocks K] [--json gpu_blocks.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_gpu import PeakMemory, make_data, models_for

from sxtdist import backends
from sxtdist.blocks import plan_blocks
from sxtdist.calibration import GPU_FIGURE, _gpu_rate
from sxtdist.capacity import Rates, estimate
from sxtdist.recon import Problem, solve_slab


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="the grid is n³")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--psf", type=float, default=1.0)
    ap.add_argument("--block-size", type=int, default=None, help="default: from free memory")
    ap.add_argument("--max-blocks", type=int, default=None, help="solve only the first K")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    backend, why = backends.select_backend("auto")
    if backend != "gpu":
        print(why, file=sys.stderr)
        return 2
    import cupy as cp

    n = nz = args.size
    grid, models = models_for(n, args.psf)
    mlist = list(models.values())
    first = plan_blocks(mlist, grid, block_size=nz)
    cp.get_default_memory_pool().free_all_blocks()
    free, total = cp.cuda.runtime.memGetInfo()
    b = args.block_size or backends.gpu_block_size(mlist, grid, free, first.halo)
    plan = plan_blocks(mlist, grid, block_size=b)
    problem = Problem(grid, models, "cgne", args.iterations)
    whole = backends.estimate_gpu_block_bytes(mlist, grid, nz + 2 * plan.halo)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} {cp.cuda.runtime.getDeviceProperties(0)['name']!r}"
        f" commit {commit}: {nz} x {n}² ({grid.nz * n * n * 4 / 2**30:.1f} GiB float32; one "
        f"block would need {whole / 2**30:.0f} GiB, {free / 2**30:.0f} of {total / 2**30:.0f} "
        f"GiB free); {plan.n_blocks} block(s) of {plan.block_size} slices, halo {plan.halo}; "
        f"{args.iterations} iterations, PSF σ {args.psf} px",
        flush=True,
    )
    blocks = plan.blocks[: args.max_blocks] if args.max_blocks else plan.blocks
    rows = []
    sync = cp.cuda.Device().synchronize
    for bl in blocks:
        t = time.perf_counter()
        data = make_data(cp, problem, bl.slab, seed=bl.index)
        t_data = time.perf_counter() - t
        slab = bl.slab[1] - bl.slab[0]
        with PeakMemory(cp) as mem:
            sync()
            t = time.perf_counter()
            solve_slab(problem, bl.slab, data, backend="gpu")
            sync()
            solve_s = time.perf_counter() - t
        est = backends.estimate_gpu_block_bytes(mlist, grid, slab)
        rows.append(
            {
                "block": bl.index,
                "slab": list(bl.slab),
                "slices": slab,
                "data_s": t_data,
                "solve_s": solve_s,
                "s_per_slice": solve_s / slab,
                "peak_gpu_bytes": mem.peak - mem.baseline,
                "estimate_bytes": est,
            }
        )
        print(
            f"block {bl.index:3d}: {slab:5d} slices, solve {solve_s:7.1f} s "
            f"({solve_s / slab * 1e3:6.1f} ms/slice), peak {(mem.peak - mem.baseline) / 2**30:6.1f} "
            f"GiB (estimate {est / 2**30:.1f}); data {t_data:.1f} s, not counted",
            flush=True,
        )
    single = rows[0]["s_per_slice"]
    others = [r["s_per_slice"] for r in rows[1:]] or [single]
    solved = sum(r["solve_s"] for r in rows)
    slices = sum(r["slices"] for r in rows)
    rates = Rates(  # the solves only: no matrices, reads, writes or start on the GPU path here
        build_s_per_nnz=0.0,
        iteration_s_per_nnz=0.0,
        iteration_s_per_nnz_slice=0.0,
        read_bytes_per_s=1e15,
        write_bytes_per_s=1e15,
        startup_s=0.0,
        gpu_s_per_nnz_slice=_gpu_rate(),
        source="docs/gpu.md H100",
    )
    planned = estimate(problem, plan, rates, 1, "gpu").block_s * len(blocks)
    print(
        f"single block {single * 1e3:.1f} ms/slice; others median "
        f"{np.median(others) * 1e3:.1f}, worst {max(others) * 1e3:.1f} ms/slice -> worst/single "
        f"{max(others) / single:.2f} (target <= 1.10)\n"
        f"total solve {solved:.1f} s for {slices} slices; single-block rate x slices "
        f"{single * slices:.1f} s; planner ({GPU_FIGURE['s_per_iteration']} s/it at 1024³ on "
        f"the H100) {planned:.1f} s",
        flush=True,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"plan": plan.to_dict(), "blocks": rows, "planner_s": planned}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
