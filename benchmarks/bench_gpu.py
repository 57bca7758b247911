"""GPU backend: whole-cell CGNE time, overhead over raw ASTRA, peak GPU memory, speed-up over the CPU.

For each size ``n`` (default 512 and 1024): an ``n³`` grid, 92 interior views on a
``0.586 n`` detector at the voxel pitch and 19 full views at 3x the pixel (the design's
benchmark shape, as ``bench_reconstruct.py``), a Gaussian PSF of ``--psf`` pixels,
data made in memory by the GPU forward model of a phantom (no Zarr). Prints:

(a) total time of the whole volume's CGNE (``--iterations``, default 50) through
    :func:`sxtdist.recon.solve_slab` on the GPU, block by block (block size from the
    free GPU memory), data host→device and slab device→host included;
(b) time per iteration / raw ASTRA ``direct_FP3D`` + ``direct_BP3D`` time of the same
    work (each scan's FP and BP on the same block shapes, preallocated cupy arrays in
    ASTRA's layout, nothing else) — the solver's and the model's overhead (target ≤ 1.15);
(c) peak GPU memory in use (device-wide, so ASTRA's CUDA arrays and the CUDA context
    are counted), next to the planner's estimate;
(d) the CPU backend on the same block (``--cpu-slices`` slices, ``--cpu-iterations``)
    against the GPU on that block: seconds per iteration and their ratio (one CPU
    worker = one core; a CPU cluster divides its time by its workers at best).

Exits 2 with ``no usable GPU: <reason>`` where there is none.

Usage: ``python benchmarks/bench_gpu.py [--sizes 512 1024] [--iterations 50] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time

import numpy as np

import sxtdist.recon as recon
from sxtdist import backends
from sxtdist.blocks import plan_blocks
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import ScanModel, scan_operator
from sxtdist.operators.projector import default_supersampling
from sxtdist.recon import Problem, solve_slab

VOXEL_NM = 30.0


def models_for(n: int, psf: float) -> tuple[VolumeGrid, dict[str, ScanModel]]:
    """92 interior views on a 0.586 n detector, 19 full views at 3x the pixel covering the slice."""
    roi_cols = int(0.586 * n)
    full = math.ceil(n / 3)
    geoms = {
        "full": ScanGeometry(np.arange(19) * 180 / 19, 3 * VOXEL_NM, (full, full)),
        "roi": ScanGeometry(np.arange(92) * 180 / 92, VOXEL_NM, (n, roi_cols)),
    }
    return VolumeGrid((n, n, n), VOXEL_NM), {k: ScanModel(g, psf) for k, g in geoms.items()}


def phantom_slab(cp, n: int, slab: tuple[int, int], seed: int = 0):
    """A cell (ellipsoid) with 40 spherical organelles, ``(ny, nx, slab)`` on the device, µm⁻¹."""
    rng = np.random.default_rng(seed)
    z = cp.arange(slab[0], slab[1], dtype=cp.float32) - (n - 1) / 2
    y = cp.arange(n, dtype=cp.float32) - (n - 1) / 2
    zz, yy, xx = z[None, None, :], y[:, None, None], y[None, :, None]
    vol = 0.3 * ((yy / (0.44 * n)) ** 2 + (xx / (0.40 * n)) ** 2 + (zz / (0.46 * n)) ** 2 < 1)
    vol = vol.astype(cp.float32)
    for _ in range(40):
        c = rng.uniform(-0.25, 0.25, 3) * n
        r = rng.uniform(0.02, 0.07) * n
        inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
        vol += cp.float32(rng.uniform(0.2, 0.8)) * inside
    return vol


def make_data(cp, problem: Problem, slab, seed: int = 0) -> dict[str, np.ndarray]:
    """Each scan's rows of ``slab``, stored layout ``(angles, rows, cols)``, host memory."""
    n = problem.grid.nz
    x = phantom_slab(cp, n, slab, seed)
    rng = cp.random.default_rng(seed)
    data = {}
    for name, m in problem.models.items():
        rows = m.rows_for_slab(problem.grid, slab)
        if rows.size == 0:
            continue
        y = scan_operator(m, problem.grid, slab, rows, backend="gpu")(x)
        y += cp.float32(0.01) * rng.standard_normal(y.shape, dtype=cp.float32)
        data[name] = cp.asnumpy(y.transpose(0, 2, 1))
    del x
    cp.get_default_memory_pool().free_all_blocks()
    return data


class IterationClock:
    """Wraps :func:`sxtdist.solvers.cgne` as seen by :mod:`sxtdist.recon` to time each iteration."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.stamps: list[list[float]] = []
        self._orig = recon.cgne

    def __enter__(self):
        def timed(*args, **kwargs):
            inner = kwargs.get("callback")
            stamps: list[float] = []
            self.stamps.append(stamps)

            def cb(it, x):
                self.sync()
                stamps.append(time.perf_counter())
                return inner(it, x) if inner is not None else None

            kwargs["callback"] = cb
            self.sync()
            stamps.append(time.perf_counter())
            return self._orig(*args, **kwargs)

        recon.cgne = timed
        return self

    def __exit__(self, *exc):
        recon.cgne = self._orig

    def per_iteration(self) -> float:
        """Seconds per iteration summed over the timed solves (blocks): each solve's median
        step, leaving out its first, which includes CGNE's set-up."""
        total = 0.0
        for s in self.stamps:
            steps = np.diff(s[1:]) if len(s) > 2 else np.diff(s)
            total += float(np.median(steps))
        return total


class PeakMemory:
    """Polls the device's used memory (all allocations) from a thread."""

    def __init__(self, cp, interval_s: float = 0.005) -> None:
        self.cp, self.interval = cp, interval_s
        self.peak = 0
        self._stop = threading.Event()

    def used(self) -> int:
        free, total = self.cp.cuda.runtime.memGetInfo()
        return int(total - free)

    def __enter__(self):
        self.baseline = self.used()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        with self.cp.cuda.Device(0):
            while not self._stop.is_set():
                self.peak = max(self.peak, self.used())
                time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.used())


def raw_astra_seconds(cp, problem: Problem, slab, repeats: int = 3) -> float:
    """Median time of one FP + one BP per scan on the block's shapes: bare ASTRA calls."""
    import astra
    import astra.experimental

    grid = problem.grid
    nz = slab[1] - slab[0]
    ny, nx = grid.slice_shape
    vol = cp.asarray(phantom_slab(cp, grid.nz, slab).transpose(2, 0, 1), order="C")
    setups = []
    for m in problem.models.values():
        g = m.geometry
        s = default_supersampling(g, grid) if m.supersampling is None else m.supersampling
        cols = (g.detector_shape[1] + 2 * m.pad) * s
        vg = astra.create_vol_geom(ny, nx, nz, -nx / 2, nx / 2, -ny / 2, ny / 2, -nz / 2, nz / 2)
        pg = astra.create_proj_geom(
            "parallel3d_vec", nz, cols, g.astra_vectors_3d(grid.voxel_size_nm, s, m.pad)
        )
        pid = astra.create_projector("cuda3d", pg, vg)
        setups.append((pid, cp.empty((nz, g.n_angles, cols), cp.float32)))
    out = cp.empty_like(vol)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        for pid, proj in setups:
            astra.experimental.direct_FP3D(pid, vol, proj)
            astra.experimental.direct_BP3D(pid, out, proj)
        cp.cuda.Device().synchronize()
        times.append(time.perf_counter() - t0)
    for pid, _ in setups:
        astra.projector3d.delete(pid)
    del vol, out, setups
    cp.get_default_memory_pool().free_all_blocks()
    return float(np.median(times[1:]))


def run_size(cp, n: int, args) -> dict:
    grid, models = models_for(n, args.psf)
    mlist = list(models.values())
    first = plan_blocks(mlist, grid, block_size=grid.nz)
    cp.get_default_memory_pool().free_all_blocks()
    free, total = cp.cuda.runtime.memGetInfo()
    b = args.block_size or backends.gpu_block_size(mlist, grid, free, first.halo)
    plan = plan_blocks(mlist, grid, block_size=b)
    problem = Problem(grid, models, "cgne", args.iterations)
    slab_len = max(bl.slab[1] - bl.slab[0] for bl in plan.blocks)
    estimate = backends.estimate_gpu_block_bytes(mlist, grid, slab_len)
    print(
        f"\n== {n}³: 92 interior + 19 full views, {args.iterations} iterations, PSF σ {args.psf} px; "
        f"{plan.n_blocks} block(s) of {plan.block_size} slices, halo {plan.halo} "
        f"({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)",
        flush=True,
    )
    t_data = time.perf_counter()
    data = [make_data(cp, problem, bl.slab, seed=bl.index) for bl in plan.blocks]
    print(f"   (data made in {time.perf_counter() - t_data:.1f} s, not counted)", flush=True)

    sync = cp.cuda.Device().synchronize
    with PeakMemory(cp) as mem, IterationClock(sync) as clock:
        t0 = time.perf_counter()
        for bl, d in zip(plan.blocks, data):
            x, _ = solve_slab(problem, bl.slab, d, backend="gpu")
        total_s = time.perf_counter() - t0
    per_it = clock.per_iteration()  # one iteration of the whole volume, all blocks
    raw = sum(raw_astra_seconds(cp, problem, bl.slab) for bl in plan.blocks)
    print(f"(a) total time                     {total_s:8.1f} s" + _target(n, total_s), flush=True)
    print(f"(b) per iteration                  {per_it:8.3f} s")
    print(f"    raw ASTRA FP+BP, same work     {raw:8.3f} s")
    print(f"    ratio                          {per_it / raw:8.3f}   (target <= 1.15)")
    print(
        f"(c) peak GPU memory                {(mem.peak - mem.baseline) / 2**30:8.2f} GiB above "
        f"the {mem.baseline / 2**30:.2f} GiB in use before (planner's estimate "
        f"{estimate / 2**30:.2f} GiB)",
        flush=True,
    )
    result = {
        "n": n,
        "iterations": args.iterations,
        "blocks": plan.n_blocks,
        "block_size": plan.block_size,
        "total_s": total_s,
        "per_iteration_s": per_it,
        "raw_astra_fp_bp_s": raw,
        "ratio": per_it / raw,
        "peak_gpu_bytes": mem.peak - mem.baseline,
        "estimate_bytes": estimate,
    }
    if args.cpu_slices:
        halo = plan_blocks(mlist, grid, block_size=args.cpu_slices).halo
        result.update(cpu_comparison(cp, problem, n, halo, args))
    return result


def _target(n: int, total_s: float) -> str:
    return f"   (target <= 120 s: {'met' if total_s <= 120 else 'NOT met'})" if n == 1024 else ""


def cpu_comparison(cp, problem: Problem, n: int, halo: int, args) -> dict:
    """CPU and GPU backends on the same central block, seconds per iteration.

    The block is ``--cpu-slices`` slices plus the plan's halo on each side, as a block of
    that size would be solved (fewer slices than a row's footprint would model no row).
    """
    k = args.cpu_slices
    z0 = (n - k) // 2
    slab = (z0 - halo, z0 + k + halo)
    small = Problem(problem.grid, problem.models, "cgne", args.cpu_iterations)
    data = make_data(cp, small, slab, seed=7)
    sync_gpu = cp.cuda.Device().synchronize
    times = {}
    for backend, sync in (("gpu", sync_gpu), ("cpu", lambda: None)):
        solve_slab(small, slab, data, backend=backend)  # warm-up: matrices, projectors, kernels
        with IterationClock(sync) as clock:
            solve_slab(small, slab, data, backend=backend)
        times[backend] = clock.per_iteration()
    ratio = times["cpu"] / times["gpu"]
    print(
        f"(d) same block ({k} slices + halo {halo}, {args.cpu_iterations} iterations): CPU backend "
        f"{times['cpu']:.3f} s/iteration (one worker), GPU {times['gpu']:.4f} s/iteration: "
        f"speed-up {ratio:.0f}x",
        flush=True,
    )
    return {"cpu_s_per_it": times["cpu"], "gpu_s_per_it_same_block": times["gpu"], "speedup": ratio}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--psf", type=float, default=1.0, help="PSF sigma in pixels (0: none)")
    ap.add_argument("--block-size", type=int, help="slices per block (default: from free memory)")
    ap.add_argument(
        "--cpu-slices", type=int, default=6, help="slices of the CPU comparison (0: skip)"
    )
    ap.add_argument("--cpu-iterations", type=int, default=3)
    ap.add_argument(
        "--layout",
        choices=["yxz", "zyx"],
        default="zyx",
        help="how the slab is handed to ASTRA (GpuSliceProjector's layout)",
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    info = backends.probe_gpu()
    if not info.usable:
        print(f"no usable GPU: {info.reason}", file=sys.stderr)
        return 2
    import cupy as cp

    import sxtdist.operators.gpu as gpu_ops

    if args.layout != "zyx":  # the operator's default; the benchmark can compare both
        base = gpu_ops.GpuSliceProjector

        class WithLayout(base):
            def __init__(self, *a, **kw):
                kw.setdefault("layout", args.layout)
                super().__init__(*a, **kw)

        gpu_ops.GpuSliceProjector = WithLayout
    print(f"GPU: {info.describe()}; layout {args.layout}")
    results = [run_size(cp, n, args) for n in args.sizes]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": info.devices, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
