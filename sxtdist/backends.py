"""Where a block is solved: the CPU (sparse matrices) or a GPU (ASTRA's CUDA projector on cupy).

* :func:`probe_gpu` finds out whether this machine has a usable GPU — cupy, a CUDA
  device, ASTRA's CUDA build — in a child process, because the client must not
  create a CUDA context (dask-cuda workers are started afterwards and each needs
  its GPU's memory; ``astra.use_cuda()`` alone creates one).
* :func:`select_backend` turns ``auto | cpu | gpu`` into a choice and the reason
  for it; ``gpu`` without a usable GPU is an error, ``auto`` falls back to the CPU.
* :func:`estimate_gpu_block_bytes` and :func:`gpu_block_size` size blocks from a
  GPU's free memory; ASTRA's CUDA-array copy of its input sits outside cupy's pool
  and is counted here.
* The local GPU cluster is ``sxtdist.distributed.make_cluster("local-cuda")``: one
  worker per GPU, each offering the resource ``GPU=1`` that block tasks ask for.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ParameterError, SxtdistError, option
from .execution import BACKENDS
from .geometry import VolumeGrid
from .operators.gpu import ASTRA_HEADROOM, texture_nbytes
from .operators.projector import default_supersampling
from .operators.scan import ScanModel

#: The resource name block tasks ask for and GPU workers offer.
GPU_RESOURCE = "GPU"
#: Fraction of a GPU's free memory a block may plan for.
GPU_MEMORY_FRACTION = 0.85
#: CUDA context, cuSPARSE/cuFFT workspaces, cupy kernels: kept free beyond the plan.
GPU_CONTEXT_BYTES = 768 * 1024**2

_PROBE = r"""
import json, sys
out = {"usable": False, "reason": "", "devices": []}
try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:
    out["reason"] = f"cupy cannot use CUDA ({type(exc).__name__}: {exc})".splitlines()[0]
    print(json.dumps(out)); sys.exit(0)
if n < 1:
    out["reason"] = "no CUDA device"
    print(json.dumps(out)); sys.exit(0)
try:
    import astra, astra.experimental
    cuda = astra.use_cuda()
except Exception as exc:
    out["reason"] = f"ASTRA cannot be imported ({type(exc).__name__})"
    print(json.dumps(out)); sys.exit(0)
if not cuda:
    out["reason"] = "the installed astra-toolbox has no CUDA support (a CPU build)"
    print(json.dumps(out)); sys.exit(0)
if not hasattr(astra.experimental, "do_composite"):
    out["reason"] = "ASTRA lacks experimental.do_composite (needs astra-toolbox >= 2.5)"
    print(json.dumps(out)); sys.exit(0)
for i in range(n):
    with cupy.cuda.Device(i):
        free, total = cupy.cuda.runtime.memGetInfo()
    name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    out["devices"].append({"index": i, "name": name, "free": int(free), "total": int(total)})
out["usable"] = True
print(json.dumps(out))
"""


@dataclass(frozen=True)
class GpuInfo:
    """The result of :func:`probe_gpu`."""

    usable: bool
    reason: str = ""
    devices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def min_free_bytes(self) -> int:
        return min((d["free"] for d in self.devices), default=0)

    def describe(self) -> str:
        if not self.usable:
            return f"no usable GPU: {self.reason}"
        names = ", ".join(
            f"{d['name']} ({d['free'] / 2**30:.0f} of {d['total'] / 2**30:.0f} GiB free)"
            for d in self.devices
        )
        return f"{len(self.devices)} GPU(s): {names}"


_PROBED: GpuInfo | None = None


def probe_gpu(refresh: bool = False, timeout_s: float = 180.0) -> GpuInfo:
    """Whether cupy, a CUDA device and ASTRA's CUDA build are usable here (cached).

    Missing packages are found without starting anything; otherwise a child
    Python process imports them and asks the devices, so this process creates no
    CUDA context.
    """
    global _PROBED
    if _PROBED is not None and not refresh:
        return _PROBED
    missing = [m for m in ("cupy", "astra") if importlib.util.find_spec(m) is None]
    if missing:
        info = GpuInfo(
            False,
            f"{' and '.join(missing)} not installed (pip install 'sxtdist[gpu]' with cupy "
            "for your CUDA and ASTRA's CUDA build)",
        )
    else:
        info = _run_probe(timeout_s)
    _PROBED = info
    return info


def _run_probe(timeout_s: float) -> GpuInfo:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=os.environ.copy(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return GpuInfo(False, f"the GPU probe did not answer within {timeout_s:.0f} s")
    return parse_probe(done.returncode, done.stdout, done.stderr)


def parse_probe(returncode: int, stdout: str, stderr: str) -> GpuInfo:
    """A :class:`GpuInfo` from the probe child's exit code and output."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    if returncode != 0 or not lines:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return GpuInfo(False, f"the GPU probe failed (exit {returncode}: {last})")
    d = json.loads(lines[-1])
    return GpuInfo(bool(d["usable"]), str(d.get("reason", "")), list(d.get("devices", [])))


def have_dask_cuda() -> bool:
    """Whether ``dask_cuda`` (the local GPU cluster) is installed."""
    return importlib.util.find_spec("dask_cuda") is not None


def gpu_workers(client: Any) -> list[str]:
    """Addresses of the cluster's workers that offer the ``GPU`` resource."""
    import inspect

    takes_n = "n_workers" in inspect.signature(client.scheduler_info).parameters
    info = client.scheduler_info(n_workers=-1) if takes_n else client.scheduler_info()
    return [
        addr
        for addr, w in info.get("workers", {}).items()
        if (w.get("resources") or {}).get(GPU_RESOURCE, 0) >= 1
    ]


def select_backend(requested: str, client: Any = None) -> tuple[str, str]:
    """``("cpu" | "gpu", reason)`` for a requested ``auto | cpu | gpu``.

    Parameters
    ----------
    requested
        ``"auto"``: the GPU when one is usable, else the CPU; ``"gpu"``: the GPU or
        an error; ``"cpu"``: the CPU.
    client
        A connected ``distributed.Client`` of a cluster given by the user: then the
        GPU counts as usable when some worker offers the ``GPU`` resource (the
        client machine itself is not probed). ``None``: probe this machine for a
        local cluster.

    Raises
    ------
    SxtdistError
        ``"no usable GPU: <reason>"`` for ``"gpu"`` when there is none.
    """
    if requested not in BACKENDS:
        raise ParameterError(f"unknown backend {requested!r} (choose from {', '.join(BACKENDS)})")
    if requested == "cpu":
        return "cpu", "requested"
    if client is not None:
        workers = gpu_workers(client)
        ok = bool(workers)
        why = (
            f"{len(workers)} worker(s) offer the {GPU_RESOURCE} resource"
            if ok
            else f"no worker of the cluster offers the {GPU_RESOURCE} resource "
            "(start them with 'dask cuda worker ... --resources GPU=1')"
        )
    else:
        info = probe_gpu()
        ok = info.usable and have_dask_cuda()
        why = info.describe() if info.usable else info.reason
        if info.usable and not ok:
            why = "dask-cuda is not installed (pip install 'sxtdist[gpu]')"
    if ok:
        return "gpu", why if requested == "gpu" else f"auto: {why}"
    if requested == "gpu":
        raise SxtdistError(f"no usable GPU: {why}")
    return "cpu", f"auto: no usable GPU: {why}"


# -- memory ----------------------------------------------------------------------------------


def estimate_gpu_block_bytes(
    models: Sequence[ScanModel], grid: VolumeGrid, slab_len: int, oracle: bool = False
) -> int:
    """Device bytes one block's CGNE holds at its peak, ASTRA's CUDA arrays included.

    Volume-sized arrays: ``x``, ``p``, ``s`` and the new ``s`` being summed, one
    scan's adjoint term, a transposed copy (the default ``zyx`` layout) and
    ASTRA's CUDA-array copy of the input in the forward projection: 7, and one more
    for what cupy's pool holds between the halves of an iteration (measured on an
    H100: 1024³ with 92 + 19 views peaked at 32.0 GiB, 8 volumes; 7 had estimated
    30.2 GiB); +2 with the oracle's truth and best ``x``. Per scan the data ``y``, ``r``, ``q`` and a
    restart's fresh residual (4 × coarse data) stay; the largest scan's
    supersampled projections, their CUDA-array copy for the back projection and
    three padded intermediates (row sampling, blur, crop) come and go.
    """
    ny, nx = grid.slice_shape
    slab = int(slab_len)
    vol = 4 * ny * nx * slab
    n_vol = 10 if oracle else 8
    total = n_vol * vol
    transient = 0
    for m in models:
        g = m.geometry
        s = default_supersampling(g, grid) if m.supersampling is None else int(m.supersampling)
        cols = g.detector_shape[1] + 2 * m.pad
        rows = math.ceil(slab * grid.voxel_size_nm / g.pixel_size_nm) + 2 * m.pad + 2
        total += 4 * 4 * g.n_angles * g.detector_shape[1] * rows
        fine = (slab, g.n_angles, cols * s)
        padded = 4 * g.n_angles * cols * max(slab, rows)
        transient = max(transient, 4 * math.prod(fine) + texture_nbytes(fine) + 3 * padded)
    return int(total + transient + ASTRA_HEADROOM)


def gpu_block_size(
    models: Sequence[ScanModel],
    grid: VolumeGrid,
    free_bytes: int,
    halo: int = 0,
    oracle: bool = False,
    fraction: float = GPU_MEMORY_FRACTION,
) -> int:
    """The most core slices per block whose slab (core + 2 halo) fits a GPU with ``free_bytes``.

    Raises
    ------
    SxtdistError
        When not even one slice fits.
    """
    budget = int(free_bytes * fraction) - GPU_CONTEXT_BYTES
    nz = grid.nz

    def fits(b: int) -> bool:
        slab = min(nz, b + 2 * halo)
        return estimate_gpu_block_bytes(models, grid, slab, oracle) <= budget

    if not fits(1):
        need = estimate_gpu_block_bytes(models, grid, min(nz, 1 + 2 * halo), oracle)
        raise SxtdistError(
            f"a block of one slice needs about {need / 2**30:.1f} GiB of GPU memory, "
            f"{free_bytes / 2**30:.1f} GiB are free; use {option('--backend cpu', 'backend="cpu"')} "
            f"or a coarser {option('--voxel-size-nm', 'voxel_size_nm')}"
        )
    lo, hi = 1, nz
    while lo < hi:  # the estimate grows with the slab: bisect for the largest fit
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# -- cluster ---------------------------------------------------------------------------------


def worker_gpu_free_bytes() -> int:
    """Free memory of this process's current GPU (run on a GPU worker)."""
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    free, _ = cupy.cuda.runtime.memGetInfo()
    return int(free)


def cluster_gpu_free_bytes(client: Any) -> int:
    """The least free GPU memory over the cluster's GPU workers."""
    workers = gpu_workers(client)
    if not workers:
        raise SxtdistError(f"no usable GPU: no worker offers the {GPU_RESOURCE} resource")
    free = client.run(worker_gpu_free_bytes, workers=workers)
    return int(min(free.values()))


__all__ = [
    "BACKENDS",
    "GPU_RESOURCE",
    "GpuInfo",
    "cluster_gpu_free_bytes",
    "estimate_gpu_block_bytes",
    "gpu_block_size",
    "gpu_workers",
    "parse_probe",
    "probe_gpu",
    "select_backend",
]
