# ruff: noqa: B023, E402, F821
# A one-off check as it ran on an H100 (2026-11-25) for docs/gpu.md, kept as it ran
# (lambdas timed inside loops, imports after sys.path edits); see README.md here.
"""Device micro-benchmarks: fused slice kernels vs numpy-style cupy; ASTRA engine call overheads."""

import sys
import time

sys.path[:0] = ["benchmarks"]
import cupy as cp
import numpy as np

from sxtdist import slice_kernels as K


def t(f, reps=5):
    f()
    cp.cuda.Device().synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        cp.cuda.Device().synchronize()
        ts.append(time.perf_counter() - t0)
    return np.median(ts) * 1e3


rng = cp.random.default_rng(0)
for shape in [(512, 512, 512), (92, 300, 504), (7, 5, 3), (64, 64, 1)]:
    v = rng.standard_normal(shape, dtype=cp.float32)
    p = rng.standard_normal(shape, dtype=cp.float32)
    a = rng.standard_normal(shape[-1], dtype=cp.float32)
    ref = (cp.asnumpy(v).astype(np.float64) ** 2).sum(axis=(0, 1))
    got = cp.asnumpy(K.sumsq_last(v))
    x1 = v.copy()
    x1 += a[None, None, :] * p
    x2 = v.copy()
    K.axpy_last(x2, a, p)
    y1 = v.copy()
    y1 *= a[None, None, :]
    y1 += p
    y2 = v.copy()
    K.xpby_last(y2, a, p)
    print(
        f"{shape}: sumsq rel err {np.abs(got - ref).max() / ref.max():.1e}; axpy max diff {float(cp.abs(x1 - x2).max()):.1e}; xpby {float(cp.abs(y1 - y2).max()):.1e}"
    )
    if v.size > 1e6:
        print(
            f"   sumsq old {t(lambda: (v * v).sum(axis=(0, 1), dtype=cp.float64)):.2f} ms new {t(lambda: K.sumsq_last(v)):.2f} ms; "
            f"axpy old {t(lambda: v.__iadd__(a[None, None, :] * p)):.2f} new {t(lambda: K.axpy_last(v, a, p)):.2f}; "
            f"xpby old {t(lambda: (v.__imul__(a[None, None, :]), v.__iadd__(p))):.2f} new {t(lambda: K.xpby_last(v, a, p)):.2f}; "
            f"copy {t(lambda: v.copy()):.2f} ms"
        )
    del v, p

import astra
import astra.experimental
import bench_gpu as B

from sxtdist.operators.gpu import AstraCudaEngine, vectors_for_layout

n = 512
grid, models = B.models_for(n, 1.0)
m = models["roi"]
g = m.geometry
s = 1
cols = (g.detector_shape[1] + 2 * m.pad) * s
for layout in ("yxz", "zyx"):
    vec = vectors_for_layout(g.astra_vectors_3d(grid.voxel_size_nm, s, m.pad), layout)
    vs = (n, n, n)
    for check in (True, False):
        e = AstraCudaEngine(vec, vs, (n, cols), check=check)
        vol = B.phantom_slab(cp, n, (0, n))
        vol = cp.ascontiguousarray(vol if layout == "yxz" else vol.transpose(2, 0, 1))
        proj = cp.empty(e.proj_shape, cp.float32)
        out = cp.empty_like(vol)
        print(
            f"engine {layout} check={check}: fp {t(lambda: e.fp(vol, proj)):.2f} ms, bp {t(lambda: e.bp(proj, out)):.2f} ms"
        )
    print(
        f"   direct_FP3D {t(lambda: astra.experimental.direct_FP3D(e.pid, vol, proj)):.2f} ms, direct_BP3D {t(lambda: astra.experimental.direct_BP3D(e.pid, out, proj)):.2f} ms"
    )
    del vol, proj, out, e
    cp.get_default_memory_pool().free_all_blocks()
