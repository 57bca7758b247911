"""``sxtdist.estimate_reconstruction``: what reconstructing an acquisition will cost, before it runs.

The problem and the block plan are made as :func:`sxtdist.reconstruct` makes them
(the same grid, scans, weights, block sizes from the workers' memory or a GPU's);
:mod:`sxtdist.capacity` turns them and this machine's rates
(:mod:`sxtdist.calibration`) into bytes, peak memory and time. Nothing is written
and no cluster is started (except once, to time its start, when the rates are first
measured).
"""

from __future__ import annotations

import os
from typing import Any

import psutil

from .backends import estimate_gpu_block_bytes, gpu_block_size
from .blocks import MEMORY_FRACTION, plan_blocks
from .calibration import load_rates
from .capacity import CapacityEstimate, Rates, estimate
from .dataset import Acquisition, open_acquisition
from .errors import ParameterError
from .runner import build_problem

#: Free memory assumed on a GPU when none is at hand (an 80 GB H100, docs/gpu.md).
DEFAULT_GPU_BYTES = 79 * 2**30


def estimate_reconstruction(
    acquisition: str | os.PathLike[str] | Acquisition,
    workers: int = 1,
    backend: str = "cpu",
    *,
    block_size: int | None = None,
    halo: int | None = None,
    memory_budget: int | None = None,
    gpu_memory_bytes: int | None = None,
    rates: Rates | None = None,
    **problem: Any,
) -> CapacityEstimate:
    """The cost of ``sxtdist.reconstruct(acquisition, ...)`` on ``workers`` CPU workers or GPUs.

    Parameters
    ----------
    acquisition
        Path of (or an opened) acquisition dataset.
    workers
        Single-threaded CPU workers, or GPUs with ``backend="gpu"``.
    backend
        ``"cpu"`` or ``"gpu"``.
    block_size, halo
        As for :func:`sxtdist.reconstruct` (default: from the memory).
    memory_budget
        Bytes a CPU worker's plan may use (default: 60 % of this machine's memory
        shared out over ``workers``, as a local cluster would give them).
    gpu_memory_bytes
        Free memory of each GPU (default: an 80 GB H100's, :data:`DEFAULT_GPU_BYTES`).
    rates
        Throughputs (default: this machine's, calibrated once and cached).
    **problem
        :func:`sxtdist.runner.build_problem`'s options: ``scans``, ``method``,
        ``iterations``, ``psf``, ``voxel_size_nm``, ``weights``, ...
    """
    if backend not in ("cpu", "gpu"):
        raise ParameterError(f"the estimate is for backend cpu or gpu, not {backend!r}")
    if workers < 1:
        raise ParameterError("workers must be at least 1")
    acq = (
        acquisition if isinstance(acquisition, Acquisition) else open_acquisition(acquisition, "r")
    )
    prob = build_problem(acq, **problem)
    models = list(prob.models.values())
    if memory_budget is None:
        memory_budget = int(psutil.virtual_memory().total / workers * MEMORY_FRACTION)
    plan = plan_blocks(models, prob.grid, block_size, memory_budget, workers, halo)
    gpu_peak = None
    if backend == "gpu":
        if block_size is None:
            free = int(gpu_memory_bytes or DEFAULT_GPU_BYTES)
            b = gpu_block_size(models, prob.grid, free, plan.halo)
            plan = plan_blocks(models, prob.grid, b, memory_budget, workers, halo)
        slab = max(bl.slab[1] - bl.slab[0] for bl in plan.blocks)
        gpu_peak = estimate_gpu_block_bytes(models, prob.grid, slab)
    bands = {name: int(acq[name].array.chunks[1]) for name in prob.models}
    return estimate(
        prob,
        plan,
        rates or load_rates(),
        workers=workers,
        backend=backend,
        row_bands=bands,
        gpu_peak_bytes=gpu_peak,
    )
