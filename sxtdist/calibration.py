"""Rates of this installation for the capacity planner: a short calibration run, cached per machine.

:func:`measure_rates` times, on interior-plus-sparse problems of 192² and 512² slices
(about 15 s of CPU and 1 GB): building the system matrices, CGNE block solves at two
slab widths and two slice sizes (the fixed and per-slice parts of an iteration's cost,
:class:`~sxtdist.capacity.Rates`), writing and reading Zarr, and starting a one-worker
cluster. :func:`load_rates` returns the cached figures of this machine, measuring them
the first time. GPU rates are not measured here (no GPU in the calibration):
they come from the H100 run recorded in docs/gpu.md (:data:`GPU_FIGURE`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import tempfile
import time
from typing import TYPE_CHECKING

import numpy as np

from . import _version
from .capacity import Rates, matrix_nnz
from .geometry import ScanGeometry, VolumeGrid
from .outputs import replacing_file

if TYPE_CHECKING:
    from .recon import Problem

logger = logging.getLogger(__name__)

#: docs/gpu.md, bench_gpu.py on an NVIDIA H100 (2026-11-25): 1024³, 92 interior views on a
#: 600-column detector at the voxel pitch and 19 full views at 3x the pixel, PSF σ 1 px,
#: 0.523 s per CGNE iteration over one block of 1050 slices.
GPU_FIGURE = {"size": 1024, "slices": 1050, "s_per_iteration": 0.523}


#: Bumped when what :func:`measure_rates` measures changes: older caches are measured again
#: (2: CPU seconds, a large slice, the load recorded).
CALIBRATION_VERSION = 2


def _gpu_rate() -> float:
    n = GPU_FIGURE["size"]
    grid = VolumeGrid((1, n, n), 1.0)
    roi = ScanGeometry(np.arange(92) * 180 / 92, 1.0, (1, int(0.586 * n)))
    full = ScanGeometry(np.arange(19) * 180 / 19, 3.0, (1, int(np.ceil(n / 3))))
    nnz = matrix_nnz(roi, grid, 3) + matrix_nnz(full, grid, 1)
    return GPU_FIGURE["s_per_iteration"] / (nnz * GPU_FIGURE["slices"])


def cache_path() -> str:
    """The per-machine cache file (``$XDG_CACHE_HOME/sxtdist`` or ``~/.cache/sxtdist``)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "sxtdist", f"rates-{socket.gethostname()}.json")


def _is_cache(path: str) -> bool:
    """Whether ``path`` is a plain file holding a calibration cache (any version's: a JSON
    object of ``machine`` and ``rates``), which :func:`load_rates` may replace."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(cached, dict) and {"machine", "rates"} <= set(cached)


def _machine() -> dict:
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "sxtdist": _version.__version__,
        "calibration": CALIBRATION_VERSION,
    }


def load_rates(recalibrate: bool = False) -> Rates:
    """This machine's rates: from the cache, or measured now (and cached) when missing or stale.

    A cache written by another sxtdist version or for another CPU count is measured again.
    """
    path = cache_path()
    if not recalibrate:
        try:
            with open(path) as f:
                cached = json.load(f)
            if cached.get("machine") == _machine():
                return Rates(**cached["rates"])
        except (OSError, ValueError, TypeError, KeyError):
            pass
    rates = measure_rates()
    if os.path.lexists(path) and not _is_cache(path):  # a user's file of that name: kept
        logger.warning(
            "%s: not a calibration cache of sxtdist's: left alone, and the rates measured "
            "now are not kept (move it to have them kept)",
            path,
        )
        return rates
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with replacing_file(path) as tmp, open(tmp, "w") as f:
            json.dump({"machine": _machine(), "rates": rates.to_dict()}, f, indent=1)
    except OSError as exc:  # a read-only home: use the figures, say they were not kept
        logger.warning("could not cache the calibration in %s (%s)", path, exc)
    return rates


def measure_rates(n: int = 192, startup: bool = True, n_large: int = 512) -> Rates:
    """Measure the CPU rates on an ``n``² and an ``n_large``² problem in this process (one thread).

    The CGNE rates are fitted to whole block solves (projections, row sampling and
    vector work together): at two slab widths on the ``n``² slice (the fixed and the
    per-slice parts), and at one on the ``n_large``² slice (the per-slice part once the
    products leave the caches, :func:`sxtdist.capacity.per_slice_rate`); the median of
    three each. Building and solving are timed in CPU seconds of this process, so other
    work on a shared machine slows them less than the clock (its caches it still
    shares: the load is recorded with the figures).
    """
    t_start = time.perf_counter()
    load = os.getloadavg()[0]
    small = _solve_rates(n, (16, 64))
    large = _solve_rates(n_large, (32,), fixed=small["fixed"])
    read_rate, write_rate = _zarr_rates(n)
    rates = Rates(
        build_s_per_nnz=small["build"],
        iteration_s_per_nnz=small["fixed"],
        iteration_s_per_nnz_slice=small["per_slice"],
        read_bytes_per_s=read_rate,
        write_bytes_per_s=write_rate,
        startup_s=_startup_s() if startup else 0.0,
        gpu_s_per_nnz_slice=_gpu_rate(),
        source=(
            f"CPU: calibrated on {socket.gethostname()} "
            f"({time.strftime('%Y-%m-%d %H:%M')}, load {load:.1f} on {os.cpu_count()} cores, "
            f"{time.perf_counter() - t_start:.0f} s); GPU: H100 figure of docs/gpu.md "
            f"({GPU_FIGURE['s_per_iteration']} s per iteration at 1024³), not measured here"
        ),
        iteration_s_per_nnz_slice_large=large["per_slice"],
        calibration_pixels=(n * n, n_large * n_large),
        load=round(max(load, os.getloadavg()[0]), 2),
        cpus=os.cpu_count(),
    )
    logger.info("calibration: %s", rates)
    return rates


def _solve_rates(n: int, widths: tuple[int, ...], fixed: float | None = None) -> dict[str, float]:
    """CPU seconds per nonzero: building the matrices (timed when ``fixed`` is not
    given), and an iteration's fixed and per-slice parts fitted to block solves of
    ``widths`` slices (or, for one width, the per-slice part given the ``fixed`` one)."""
    from .operators.projector import build_system_matrix, system_matrix
    from .operators.scan import ScanModel
    from .recon import Problem

    grid = VolumeGrid((max(64, *widths), n, n), 30.0)
    geoms = {
        "roi": ScanGeometry(np.arange(92) * 180 / 92, 30.0, (grid.nz, int(0.39 * n))),
        "full": ScanGeometry(np.arange(19) * 180 / 19, 60.0, (grid.nz // 2, n // 2)),
    }
    its = 2
    problem = Problem(grid, {name: ScanModel(g) for name, g in geoms.items()}, "cgne", its)
    build = 0.0
    if fixed is None:  # timed once, uncached (a second calibration in a process rebuilds)
        t0 = time.process_time()
        for m in problem.models.values():
            build_system_matrix(m.geometry, grid, m.pad, m.supersampling).T.tocsr()
        build = time.process_time() - t0
    nnz = sum(  # cached for the solves
        system_matrix(m.geometry, grid, m.pad, m.supersampling)[0].nnz
        for m in problem.models.values()
    )
    rng = np.random.default_rng(0)
    t = [slab_solve_seconds(problem, k, rng) for k in widths]
    per_solve = (its + 1) * nnz
    if fixed is None:
        (k1, k2), (t1, t2) = widths, t
        per_slice = max(0.0, (t2 - t1) / (k2 - k1)) / per_solve
        fixed = max(0.0, t1 / per_solve - per_slice * k1)
    else:
        per_slice = max(0.0, t[0] / per_solve - fixed) / widths[0]
    return {"build": build / nnz, "fixed": fixed, "per_slice": per_slice}


def slab_solve_seconds(problem: Problem, k: int, rng: np.random.Generator) -> float:
    """Median CPU seconds (``process_time``, of 3) of solving the first ``k`` slices of
    ``problem`` on random data (what the calibration and ``benchmarks/slice_rate.py`` time)."""
    from .recon import solve_slab

    rows = problem.rows((0, k))
    data = {
        name: rng.random(
            (m.geometry.n_angles, rows[name].size, m.geometry.detector_shape[1]), np.float32
        )
        for name, m in problem.models.items()
    }
    times = []
    for _ in range(3):
        t = time.process_time()
        solve_slab(problem, (0, k), data)
        times.append(time.process_time() - t)
    return float(np.median(times))


def _zarr_rates(n: int) -> tuple[float, float]:
    """Bytes per second writing and reading noisy float32 slabs through Zarr (zstd)."""
    import zarr

    rng = np.random.default_rng(1)
    slab = (0.2 + 0.01 * rng.standard_normal((32, n, n))).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="sxtdist-calibrate-") as tmp:
        arr = zarr.create_array(
            os.path.join(tmp, "a.zarr"), shape=slab.shape, chunks=(32, 64, 64), dtype="float32"
        )
        t = time.perf_counter()
        arr[...] = slab
        write = time.perf_counter() - t
        t = time.perf_counter()
        arr[...]
        read = time.perf_counter() - t
    return slab.nbytes / read, slab.nbytes / write


def _startup_s() -> float:
    """Seconds from asking for a one-worker local cluster to a first task's result."""
    from .distributed import get_client

    t = time.perf_counter()
    with get_client(workers=1, keep_cluster=False) as client:
        client.submit(_import_core, pure=False).result()
        return time.perf_counter() - t  # closing the cluster is not counted


def _import_core() -> bool:
    import sxtdist.recon  # noqa: F401  (what a block task imports first)

    return True
