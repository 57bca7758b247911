# ruff: noqa: B023, F821
# A one-off check as it ran on an H100 (2026-11-25) for docs/gpu.md, kept as it ran
# (lambdas timed inside loops, imports after sys.path edits); see README.md here.
import time

import cupy as cp
import numpy as np

from sxtdist.slice_kernels import transpose_2d


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


for n in (512, 1024):
    x = cp.random.default_rng(0).random((n, n, n), dtype=cp.float32)
    y = transpose_2d(x, n * n, n).reshape(n, n, n)
    assert bool((y == x.transpose(2, 0, 1)).all())
    print(
        f"{n}^3: copy {t(lambda: x.copy()):.2f} ms, cupy transpose copy {t(lambda: cp.ascontiguousarray(x.transpose(2, 0, 1))):.2f} ms, "
        f"tiled {t(lambda: transpose_2d(x, n * n, n)):.2f} ms, back tiled {t(lambda: transpose_2d(y, n, n * n, 0.5)):.2f} ms"
    )
    del x, y
    cp.get_default_memory_pool().free_all_blocks()
