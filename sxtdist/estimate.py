"""``sxtdist.estimate_reconstruction``: what reconstructing an acquisition will cost, before it runs.

The problem and the block plan are made as :func:`sxtdist.reconstruct` makes them
from the same :class:`~sxtdist.runner.Reconstruction` and
:class:`~sxtdist.execution.Execution` (the same grid, scans, weights, block sizes from
the workers' memory or a GPU's);
:mod:`sxtdist.capacity` turns them and this machine's rates
(:mod:`sxtdist.calibration`) into bytes, peak memory and time. Nothing is written
and no cluster is started (except once, to time its start, when the rates are first
measured).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import dask.config
import psutil
from dask.utils import parse_bytes

from .backends import estimate_gpu_block_bytes, gpu_block_size, select_backend
from .blocks import MEMORY_FRACTION, plan_blocks
from .calibration import load_rates
from .capacity import CapacityEstimate, Rates, estimate
from .dataset import Acquisition, open_acquisition
from .distributed import cluster_config, default_workers, jobqueue_options
from .execution import Execution
from .recon import AUTO, DEFAULT_ITERATIONS
from .runner import AUTO_CAP, AUTO_PILOT_SHARE, Reconstruction, build_problem, split_options

#: Free memory assumed on a GPU when none is at hand (an 80 GB H100, docs/gpu.md).
DEFAULT_GPU_BYTES = 79 * 2**30


def estimate_reconstruction(
    acquisition: str | os.PathLike[str] | Acquisition,
    recipe: Reconstruction | None = None,
    execution: Execution | None = None,
    *,
    rates: Rates | None = None,
    gpu_memory_bytes: int | None = None,
    recalibrate: bool = False,
    **options: Any,
) -> CapacityEstimate:
    """The cost of ``sxtdist.reconstruct(acquisition, out, recipe, execution)``, without running it.

    Parameters
    ----------
    acquisition
        Path of (or an opened) acquisition dataset.
    recipe, execution, **options
        As for :func:`sxtdist.reconstruct`. The workers are the execution's: a local
        cluster's ``workers`` (default: the cores here); a batch queue's
        ``maximum_jobs`` times the processes of a job (``jobqueue.<kind>.processes``);
        with ``backend="gpu"`` the GPUs (default 1). ``backend="auto"`` is what a local
        run here would choose. The memory budget per worker is the execution's, else
        60 % of its memory limit (a local cluster shares this machine's memory out, a
        batch queue's job memory is split over its processes).
    rates
        Throughputs (default: this machine's, calibrated once and cached).
    recalibrate
        Measure this machine's rates again (about 15 s of CPU) and cache them, instead
        of using the cached ones.
    gpu_memory_bytes
        Free memory of each GPU (default: an 80 GB H100's, :data:`DEFAULT_GPU_BYTES`).
    """
    recipe, ex = split_options(recipe, execution, options)
    auto = recipe.iterations == AUTO
    if auto:  # the count is chosen during the run: estimate the default one and say so
        recipe = recipe.replace(iterations=DEFAULT_ITERATIONS)
    acq = (
        acquisition if isinstance(acquisition, Acquisition) else open_acquisition(acquisition, "r")
    )
    prob = build_problem(acq, recipe)
    models = list(prob.models.values())
    backend = ex.backend if ex.backend != "auto" else select_backend("auto")[0]
    workers, memory = _workers_and_memory(ex, backend)
    budget = ex.memory_budget or int(memory * MEMORY_FRACTION)
    plan = plan_blocks(models, prob.grid, recipe.block_size, budget, workers, recipe.halo)
    gpu_peak = None
    if backend == "gpu":
        if recipe.block_size is None:
            free = int(gpu_memory_bytes or DEFAULT_GPU_BYTES)
            b = gpu_block_size(models, prob.grid, free, plan.halo, recipe.oracle)
            plan = plan_blocks(models, prob.grid, b, budget, workers, recipe.halo)
        slab = max(bl.slab[1] - bl.slab[0] for bl in plan.blocks)
        gpu_peak = estimate_gpu_block_bytes(models, prob.grid, slab, recipe.oracle)
    bands = {name: int(acq[name].array.chunks[1]) for name in prob.models}
    rates = rates or load_rates(recalibrate=recalibrate)
    result = estimate(
        prob,
        plan,
        rates,
        workers=workers,
        backend=backend,
        row_bands=bands,
        gpu_peak_bytes=gpu_peak,
    )
    notes = []
    if auto:
        notes.append(
            f"iterations auto: estimated at {DEFAULT_ITERATIONS}; the count is chosen during the "
            f"run, after a cross-validation pilot on {AUTO_PILOT_SHARE:.0%} of the blocks "
            f"(up to {AUTO_CAP} iterations each), not counted here"
        )
    notes += load_warnings(rates, backend, local=_is_local(ex))
    return dataclasses.replace(result, note="\n".join(notes)) if notes else result


def load_warnings(rates: Rates, backend: str, local: bool) -> list[str]:
    """Warnings for an estimate: CPU rates measured on a busy machine; this machine busy now.

    Times assume a core per worker: a calibration taken while the load average exceeded
    the cores measured slow figures (shared caches), and a local run on a busy machine
    takes longer than estimated.
    """
    if backend == "gpu":
        return []
    found = []
    if rates.taken_under_load:
        found.append(
            f"warning: the CPU rates were measured under load ({rates.load:.1f} on {rates.cpus} "
            f"cores): times may be too long; measure them again on a quieter machine with "
            f"--recalibrate"
        )
    cpus = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if local and load > cpus:
        found.append(
            f"warning: this machine is busy now (load {load:.1f} on {cpus} cores): a local run "
            f"will take longer than estimated (the times assume a core per worker)"
        )
    return found


def _is_local(ex: Execution) -> bool:
    kind = ex.cluster or cluster_config("kind", "local")
    return kind in ("local", "local-cuda") and ex.scheduler is None and ex.client is None


def _workers_and_memory(ex: Execution, backend: str) -> tuple[int, int]:
    """Workers (or GPUs) of the execution's cluster and the memory limit of one."""
    kind = ex.cluster or cluster_config("kind", "local")
    if backend == "gpu":
        return ex.workers or 1, int(psutil.virtual_memory().total / (ex.workers or 1))
    if _is_local(ex):
        workers = ex.workers or default_workers()
        limit = ex.memory_limit if ex.memory_limit not in (None, "auto") else None
        memory = parse_bytes(limit) if limit else psutil.virtual_memory().total / workers
        return workers, int(memory)
    opts = {**jobqueue_options(kind), **dict(dask.config.get(f"jobqueue.{kind}", {}) or {})}
    processes = int(opts.get("processes") or 1)
    jobs = ex.maximum_jobs or int(cluster_config("maximum-jobs", 1))
    memory = parse_bytes(opts.get("memory") or "4GiB") / processes
    return ex.workers or jobs * processes, int(memory)
