"""Reconstruction speed and memory, as ratios against baselines measured in the same run.

Prints:

(a) sxtdist CGNE time / time of the same FP+BP work, against two baselines:
    the raw sparse products (the projector's own cost: what the solver adds is
    overhead) and ASTRA's own per-slice CPU FP+BP calls (the usual ASTRA script).
(b) sxtdist CGNE with 2 workers (through ``reconstruct``: Zarr in, Zarr out) /
    ASTRA's CPU ``CGLS`` looped over the same slices serially (interior scan only,
    the one geometry ASTRA's CGLS can take).
(c) 1-worker time / 2-worker time for the same reconstruction.
(d) peak RSS of a worker for a volume and for one twice as tall (fixed block size).

Usage: ``python benchmarks/bench_reconstruct.py [--size 256] [--slices 32] [--iterations 10]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
import psutil

import sxtdist
from sxtdist.dataset import ScanData
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import ScanModel, SliceProjector
from sxtdist.recon import Problem, solve_slab
from sxtdist.runner import reconstruct


def geometries(n: int, voxel: float) -> dict[str, ScanGeometry]:
    """The design's benchmark shape scaled to n: 92 interior views on a ~0.6 n detector,
    19 full views at 3x the pixel size covering the slice."""
    roi_cols = int(0.586 * n)
    full_cols = int(np.ceil(n / 3))
    return {
        "full": ScanGeometry(np.arange(19) * 180 / 19, 3 * voxel, (1, full_cols)),
        "roi": ScanGeometry(np.arange(92) * 180 / 92, voxel, (1, roi_cols)),
    }


def phantom(n: int, nz: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    vol = np.zeros((nz, n, n), np.float32)
    cell = (yy**2 + xx**2) < (0.45 * n) ** 2
    for k in range(nz):
        vol[k] = 0.2 * cell
        for _ in range(6):
            cy, cx, r = (
                rng.uniform(-0.3, 0.3) * n,
                rng.uniform(-0.3, 0.3) * n,
                rng.uniform(0.03, 0.1) * n,
            )
            vol[k] += 0.15 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
    return vol


def make_acquisition(path: str, n: int, nz: int, voxel: float, rng) -> None:
    grid = VolumeGrid((nz, n, n), voxel)
    truth = phantom(n, nz, rng)
    scans = {}
    for name, g1 in geometries(n, voxel).items():
        rows = int(round(nz * voxel / g1.pixel_size_nm))
        g = ScanGeometry(g1.angles_deg, g1.pixel_size_nm, (rows, g1.detector_shape[1]))
        model = ScanModel(g)
        from sxtdist.operators import scan_operator

        op = scan_operator(model, grid, (0, nz), np.arange(rows))
        y = op(np.ascontiguousarray(np.moveaxis(truth, 0, -1)))  # (A, C, R)
        y += rng.normal(scale=0.01, size=y.shape).astype(np.float32)
        scans[name] = ScanData(
            data=np.ascontiguousarray(y.transpose(0, 2, 1)),
            angles_deg=g.angles_deg,
            pixel_size_nm=g.pixel_size_nm,
        )
    sxtdist.create_acquisition(path, scans, overwrite=True)


class PeakRSS:
    """Poll the peak RSS of this process's children (the Dask workers)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for ch in me.children(recursive=True):
                try:
                    self.peak = max(self.peak, ch.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def timed(fn, repeat: int = 1) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=255, help="slice size n (n x n voxels)")
    ap.add_argument("--slices", type=int, default=48)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--voxel-nm", type=float, default=30.0)
    args = ap.parse_args(argv)
    # multiples of 3: the full scan's 3x pixels then tile the grid exactly (default_grid
    # would otherwise round the volume up and the data would not match it)
    n, nz = 3 * (args.size // 3), 3 * (args.slices // 3)
    its, v = args.iterations, args.voxel_nm
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(prefix="bench_recon_")
    print(
        f"# bench_reconstruct: {n}x{n} slices, {nz} slices, {its} iterations, {os.cpu_count()} cpus"
    )
    try:
        acq_path = os.path.join(tmp, "acq.zarr")
        make_acquisition(acq_path, n, nz, v, rng)
        acq = sxtdist.open_acquisition(acq_path, "r")
        grid = VolumeGrid((nz, n, n), v)
        models = {k: ScanModel(acq[k].geometry) for k in acq.scans}

        # (a) in-process: solver vs the same number of FP + BP
        problem = Problem(grid, models, "cgne", its)
        rows = problem.rows((0, nz))
        data = {k: acq[k].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for k, r in rows.items()}
        solve_slab(problem, (0, nz), data)  # builds and caches the matrices
        t_cgne = timed(lambda: solve_slab(problem, (0, nz), data), repeat=2)
        projs = [SliceProjector(m.geometry, grid, nz) for m in models.values()]
        xs = np.ones((n, n, nz), np.float32)
        ys = [P(xs) for P in projs]
        # CGNE does its+1 FP and its+1 BP (the initial residual and gradient included)
        t_raw = timed(
            lambda: [(P(xs), P.T(y)) for _ in range(its + 1) for P, y in zip(projs, ys)], repeat=2
        )
        t_astra_fpbp = astra_fp_bp_time(models, grid, nz, its + 1)
        print(
            f"(a) sxtdist CGNE {t_cgne:.2f} s; raw sparse FP+BP {t_raw:.2f} s -> ratio "
            f"{t_cgne / t_raw:.3f} (target <= 1.10)"
        )
        print(
            f"    ASTRA per-slice CPU FP+BP for the same work {t_astra_fpbp:.2f} s -> ratio "
            f"{t_cgne / t_astra_fpbp:.3f}"
        )

        # (b) and (c): through reconstruct(), interior only, 1 and 2 workers
        out = os.path.join(tmp, "vol.zarr")
        kw = dict(
            iterations=its,
            scans=["roi"],
            psf=False,
            progress=False,
            overwrite=True,
            block_size=-(-nz // 4),  # 4 blocks: 2 per worker
        )
        from sxtdist.distributed import get_client

        times = {}
        for w in (1, 2):
            with get_client(workers=w, keep_cluster=False) as c:
                reconstruct(acq_path, out, client=c, **kw)  # warm: imports, matrices
                times[w] = timed(lambda c=c: reconstruct(acq_path, out, client=c, **kw))
        t_astra_cgls = astra_cgls_time(models["roi"], grid, acq["roi"].read(), its)
        print(
            f"(b) sxtdist CGNE 2 workers {times[2]:.2f} s; ASTRA CGLS serial over slices "
            f"{t_astra_cgls:.2f} s -> ratio {times[2] / t_astra_cgls:.3f} (target <= 0.6)"
        )
        print(
            f"(c) 1 worker {times[1]:.2f} s / 2 workers {times[2]:.2f} s -> "
            f"{times[1] / times[2]:.2f} (target >= 1.8)"
        )

        # (d) memory: same block size, volume twice as tall
        peaks = {}
        for tall in (1, 2):
            p = os.path.join(tmp, f"acq{tall}.zarr")
            make_acquisition(p, n, nz * tall, v, np.random.default_rng(1))
            with get_client(workers=1, keep_cluster=False) as c, PeakRSS() as mon:
                reconstruct(
                    p,
                    os.path.join(tmp, f"v{tall}.zarr"),
                    client=c,
                    iterations=its,
                    block_size=-(-nz // 4),  # 4 blocks: 2 per worker
                    progress=False,
                    overwrite=True,
                )
            peaks[tall] = mon.peak
        print(
            f"(d) peak worker RSS {peaks[1] / 2**20:.0f} MiB ({nz} slices) vs {peaks[2] / 2**20:.0f} "
            f"MiB ({2 * nz} slices) -> ratio {peaks[2] / peaks[1]:.3f} (target <= 1.2)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def astra_fp_bp_time(models, grid, nz, repeats) -> float:
    """ASTRA's own 2D CPU projector, slice by slice, the same FP+BP count."""
    import astra

    n = grid.slice_shape[0]
    vol_geom = astra.create_vol_geom(n, n)
    ids = []
    for m in models.values():
        g = m.geometry
        s = max(1, round(g.pixel_size_nm / grid.voxel_size_nm))
        pg = astra.create_proj_geom(
            "parallel_vec", g.detector_shape[1] * s, g.astra_vectors_2d(grid.voxel_size_nm, s, 0)
        )
        ids.append(astra.create_projector("linear", pg, vol_geom))
    img = np.ones((n, n), np.float32)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for pid in ids:
            for _k in range(nz):
                i, sino = astra.create_sino(img, pid)
                astra.data2d.delete(i)
                j, _ = astra.create_backprojection(sino, pid)
                astra.data2d.delete(j)
    t = time.perf_counter() - t0
    for pid in ids:
        astra.projector.delete(pid)
    return t


def astra_cgls_time(model, grid, stack, its) -> float:
    """ASTRA's CPU CGLS, one slice after another (stack: (A, rows, cols))."""
    import astra

    n = grid.slice_shape[0]
    g = model.geometry
    vol_geom = astra.create_vol_geom(n, n)
    pg = astra.create_proj_geom(
        "parallel_vec", g.detector_shape[1], g.astra_vectors_2d(grid.voxel_size_nm)
    )
    pid = astra.create_projector("linear", pg, vol_geom)
    t0 = time.perf_counter()
    for k in range(stack.shape[1]):
        sid = astra.data2d.create("-sino", pg, np.ascontiguousarray(stack[:, k, :]))
        rid = astra.data2d.create("-vol", vol_geom, 0.0)
        cfg = astra.astra_dict("CGLS")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg, its)
        astra.data2d.get(rid)
        astra.algorithm.delete(alg)
        astra.data2d.delete([sid, rid])
    t = time.perf_counter() - t0
    astra.projector.delete(pid)
    return t


if __name__ == "__main__":
    sys.exit(main())
