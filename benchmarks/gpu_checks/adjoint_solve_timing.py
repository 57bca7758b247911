# ruff: noqa: B007, E402
# A one-off check as it ran on an H100 (2026-11-25) for docs/gpu.md, kept as it ran
# (lambdas timed inside loops, imports after sys.path edits); see README.md here.
"""One-off device diagnostics: adjointness, GPU vs CPU solve, per-stage timing."""

import functools
import sys
import time

sys.path[:0] = ["tests", "benchmarks"]
import cupy as cp
import numpy as np
import test_gpu as T

import sxtdist
from sxtdist.geometry import VolumeGrid
from sxtdist.operators import SliceProjector, scan_operator
from sxtdist.operators import base as basemod
from sxtdist.operators import psf as psfmod
from sxtdist.operators.gpu import GpuSliceProjector
from sxtdist.operators.rows import RowSampling

print("== A. projector BP vs CPU transpose")
for case in sorted(T.CASES):
    g = T._geom(**T.CASES[case])
    grid = VolumeGrid((5, 24, 26), 10.0)
    cpu = SliceProjector(g, grid, 5, pad=2)
    gpu = GpuSliceProjector(g, grid, 5, pad=2)
    y = T._smooth(cpu.range_shape, 1)
    at, bt = cpu.T(y), cp.asnumpy(gpu.T(cp.asarray(y)))
    d = np.abs(at - bt) / np.abs(at).max()
    inner = d[3:-3, 3:-3]
    idx = np.unravel_index(np.argmax(d), d.shape)
    print(
        f"{case}: max {d.max():.3f} at {idx} of {d.shape}; interior(3) max {inner.max():.4f}; "
        f"relL2 {np.linalg.norm(at - bt) / np.linalg.norm(at):.4f}; per-slice max {np.round(d.max(axis=(0, 1)), 3)}"
    )

print("== B. tiny solve GPU vs CPU")
import pathlib
import tempfile

tmp = pathlib.Path(tempfile.mkdtemp())
acq_path = tmp / "t.zarr"
sxtdist.simulate(acq_path, preset="tiny", seed=1)
from sxtdist.metrics import psnr
from sxtdist.recon import solve_slab
from sxtdist.runner import build_problem

acq = sxtdist.open_acquisition(acq_path, "r")
truth = np.asarray(acq.truth[:].compute(), np.float32)
nz = truth.shape[0]
for psf in (False, True):
    for its in (8, 20):
        problem = build_problem(acq, iterations=its, psf=psf)
        rows = problem.rows((0, nz))
        data = {
            n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items() if r.size
        }
        out = {}
        for b in ("cpu", "gpu"):
            x, res = solve_slab(problem, (0, nz), data, backend=b)
            out[b] = (x, res)
        a, g_ = out["cpu"][0], out["gpu"][0]
        rng = float(a.max() - a.min())
        print(
            f"psf={psf} its={its}: max|d|/range {np.abs(a - g_).max() / rng:.3f}, relL2 {np.linalg.norm(a - g_) / np.linalg.norm(a):.4f}, "
            f"PSNR cpu {psnr(a, truth):.2f} gpu {psnr(g_, truth):.2f}; restarts cpu {getattr(out['cpu'][1], 'restarts', None)} gpu {getattr(out['gpu'][1], 'restarts', None)}"
        )

print("== C. per-stage timing 512^3")
import bench_gpu as B

from sxtdist.recon import Problem

stats = {}


def timed(cls, meth):
    orig = getattr(cls, meth)

    @functools.wraps(orig)
    def w(self, *a, **k):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        r = orig(self, *a, **k)
        cp.cuda.Device().synchronize()
        key = f"{cls.__name__}.{meth}"
        stats[key] = stats.get(key, 0) + time.perf_counter() - t0
        return r

    setattr(cls, meth, w)


from sxtdist.operators.gpu import AstraCudaEngine

for cls, meths in (
    (AstraCudaEngine, ("fp", "bp")),
    (GpuSliceProjector, ("_apply", "_adjoint")),
    (RowSampling, ("_apply", "_adjoint")),
    (psfmod.GaussianBlur, ("_apply", "_adjoint")),
    (psfmod.Crop, ("_apply", "_adjoint")),
    (basemod.Scaled, ("_apply", "_adjoint")),
):
    for m in meths:
        timed(cls, m)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 512
for layout in ("yxz", "zyx"):
    grid, models = B.models_for(n, 1.0)
    slab = (0, n)
    x = B.phantom_slab(cp, n, slab)
    ops = []
    for name, m in models.items():
        rows = m.rows_for_slab(grid, slab)
        proj = GpuSliceProjector(
            m.geometry, grid, n, pad=m.pad, supersampling=m.supersampling, layout=layout
        )
        ops.append(scan_operator(m, grid, slab, rows, backend="gpu", projector=proj))
        print(name, "supersampling", proj.supersampling, "range", ops[-1].range_shape, "pad", m.pad)
    for rep in range(3):
        stats.clear()
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        ys = [op(x) for op in ops]
        xs = [op.T(y) for op, y in zip(ops, ys)]
        cp.cuda.Device().synchronize()
        tt = time.perf_counter() - t0
    print(
        f"layout {layout}: one FP+BP of both scans {tt:.4f} s; "
        + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in sorted(stats.items()))
    )
    del ys, xs, ops
    cp.get_default_memory_pool().free_all_blocks()
    problem = Problem(grid, models, "cgne", 1)
    print(f"raw astra (zyx, direct_FP3D/BP3D) {B.raw_astra_seconds(cp, problem, slab):.4f} s")
    # CGNE vector work alone: time 10 iterations' worth of axpy + group reductions
    from sxtdist.solvers import SliceGroups, _Reducer

    p = x.copy()
    s = x.copy()
    red = _Reducer(SliceGroups.single(n, [n, n]), cp)
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        g2 = red.domain_sumsq(s)
        x += red.on_domain(g2 * 0 + 1e-9)[None, None, :] * p
        p *= 0.5
        p += s
    cp.cuda.Device().synchronize()
    print(f"vector ops per iteration ~{(time.perf_counter() - t0) / 10 * 1e3:.1f} ms")
    del x, p, s
    cp.get_default_memory_pool().free_all_blocks()
