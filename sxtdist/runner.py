"""``sxtdist.reconstruct``: plan the blocks, solve them on Dask workers, write the volume.

The client never holds a stack or the volume: each task opens the acquisition,
reads its block's rows of every scan, solves (:func:`sxtdist.recon.solve_slab`)
and writes its core slices, whole shards, into level 0. The client records a
block in ``blocks_done`` only after its task returned, so a re-run after an
interruption (or a killed worker, whose task Dask re-runs elsewhere) skips exactly
the blocks that are on disk, and the result is the same as an uninterrupted run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _version
from ._progress import log
from .blocks import Block, BlockPlan, plan_blocks
from .dataset import Acquisition, open_acquisition
from .distributed import get_client, run_tasks, worker_memory_limit
from .errors import InputError, OutputExistsError, ParameterError
from .geometry import VolumeGrid, default_grid
from .operators.psf import fwhm_to_sigma_px
from .operators.scan import ScanModel
from .physics import psf_fwhm_nm
from .recon import DEFAULT_ITERATIONS, Problem, roi_cylinder_mask, solve_slab
from .volume import Volume, create_volume, open_volume, write_lock


def scan_models(acq: Acquisition, scans: Sequence[str], psf: bool = True) -> dict[str, ScanModel]:
    """A :class:`ScanModel` per scan: its geometry (with stored shifts) and zone-plate PSF."""
    models = {}
    for name in scans:
        scan = acq[name]
        sigma = 0.0
        if psf and scan.zone_plate_ozw_nm:
            sigma = fwhm_to_sigma_px(psf_fwhm_nm(scan.zone_plate_ozw_nm), scan.pixel_size_nm)
        models[name] = ScanModel(scan.geometry, sigma)
    return models


def build_problem(
    acq: Acquisition,
    scans: Sequence[str] | None = None,
    method: str = "cgne",
    iterations: int = DEFAULT_ITERATIONS,
    psf: bool = True,
    voxel_size_nm: float | None = None,
    nonneg_every: int | None = None,
    rtol: float | None = None,
    weights: Mapping[str, float] | None = None,
) -> Problem:
    """The reconstruction problem for an acquisition (all scans by default).

    The grid is :func:`sxtdist.geometry.default_grid` of *all* scans, so an
    interior-only or sparse-only reconstruction lands on the same grid as the
    combined one (and as a simulation's truth).
    """
    names = list(scans or acq.scans)
    for n in names:
        if n not in acq.scans:
            raise InputError(acq.path, f"has no scan {n!r} (it has {', '.join(acq.scans)})")
    grid = default_grid([acq[n].geometry for n in acq.scans], voxel_size_nm)
    return Problem(
        grid,
        scan_models(acq, names, psf),
        method,
        int(iterations),
        dict(weights or {}),
        nonneg_every,
        rtol,
    )


def _solve_block(
    block: Block,
    acquisition: str,
    volume: str,
    problem: Problem,
    oracle: bool,
    roi_radius_nm: float | None,
) -> dict[str, Any]:
    """One task: read the block's rows, solve the slab, write the core slices."""
    t0 = time.perf_counter()
    acq = open_acquisition(acquisition, mode="r")
    rows = problem.rows(block.slab)
    data = {}
    for name, r in rows.items():
        if r.size:
            data[name] = acq[name].read(rows=slice(int(r[0]), int(r[-1]) + 1))
    truth = mask = None
    if oracle and acq.truth is not None:
        s0, s1 = block.slab
        truth = np.asarray(acq.truth[s0:s1].compute(), np.float32)
        if roi_radius_nm:
            m2 = roi_cylinder_mask(problem.grid, roi_radius_nm)
            mask = np.broadcast_to(m2, truth.shape)
    t_read = time.perf_counter() - t0
    x, result = solve_slab(problem, block.slab, data, truth, mask)
    t_solve = time.perf_counter() - t0 - t_read
    c0, c1 = block.core
    s0 = block.slab[0]
    vol = open_volume(volume, mode="r+")
    vol.write_slices(c0, x[c0 - s0 : c1 - s0])
    last = result.residuals[-1] if result.residuals else np.zeros(1)
    return {
        "block": block.index,
        "iterations": result.iterations,
        "stopped_by": result.stopped_by,
        "restarts": result.restarts,
        "residual": float(np.sum(last)),
        "read_s": t_read,
        "solve_s": t_solve,
        "total_s": time.perf_counter() - t0,
    }


def _check_resumable(vol: Volume, provenance: dict, plan: BlockPlan) -> None:
    old = vol.meta
    same = (
        old.get("provenance", {}).get("fingerprint") == provenance["fingerprint"]
        and old.get("plan", {}).get("block_size") == plan.block_size
        and old.get("plan", {}).get("halo") == plan.halo
        and tuple(old.get("plan", {}).get("grid_shape", ())) == tuple(plan.grid_shape)
    )
    if not same:
        raise OutputExistsError(
            vol.path,
            "holds an unfinished reconstruction with different parameters; "
            "use --overwrite to start over",
        )


def _fingerprint(acq: Acquisition, problem: Problem, oracle: bool) -> str:
    import hashlib
    import json

    h = hashlib.sha1()
    h.update(os.path.abspath(acq.path).encode())
    h.update(json.dumps(acq.group.attrs["sxtdist"]["scans"], sort_keys=True).encode())
    h.update(
        repr(
            (
                sorted(problem.models),
                problem.method,
                problem.iterations,
                problem.nonneg_every,
                problem.rtol,
                sorted(problem.weights.items()),
                problem.grid.shape,
                problem.grid.voxel_size_nm,
                oracle,
                [m.psf_sigma_px for m in problem.models.values()],
            )
        ).encode()
    )
    return h.hexdigest()


def reconstruct(
    acquisition: str | os.PathLike[str] | Acquisition,
    out: str | os.PathLike[str],
    *,
    method: str = "cgne",
    iterations: int = DEFAULT_ITERATIONS,
    scans: Sequence[str] | None = None,
    block_size: int | None = None,
    halo: int | None = None,
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    nonneg_every: int | None = None,
    rtol: float | None = None,
    psf: bool = True,
    voxel_size_nm: float | None = None,
    weights: Mapping[str, float] | None = None,
    oracle: bool = False,
    memory_budget: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
) -> Volume:
    """Reconstruct an acquisition into a multiscale OME-Zarr volume.

    Parameters
    ----------
    acquisition
        Path of (or an opened) acquisition dataset.
    out
        Output volume directory. An unfinished output from the same command is
        resumed; a complete one is refused unless ``overwrite``.
    method
        ``"cgne"`` (default) or ``"sirt"``.
    iterations
        Iterations per block (the cap when ``rtol`` or ``oracle`` stop earlier).
    scans
        Scans to use: both (default, the combined problem), ``["roi"]`` (interior
        only) or ``["full"]`` (sparse only).
    block_size, halo
        Slices per block and halo; default from the memory budget and the row coupling.
    workers, client, scheduler
        Where to run: a new local cluster of ``workers`` processes (default), a
        ``distributed.Client`` or cluster object, or a scheduler address.
    nonneg_every
        CGNE: clamp at zero every ``k`` iterations.
    rtol
        CGNE: stop each slice group at this relative residual.
    psf
        Model each scan's zone-plate PSF (from ``zone_plate_ozw_nm``).
    voxel_size_nm
        Voxel size (default: the finest pixel).
    weights
        Least-squares weight per scan.
    oracle
        Simulated data only: stop each block at its best PSNR against the truth
        inside the ROI (the paper's oracle rule); for studies, not for real data.
    memory_budget
        Bytes per worker for the block plan (default: from the workers' limit).
    overwrite
        Start over, replacing ``out``.
    progress, quiet
        Progress bar (default: on a terminal) and status lines.

    Returns
    -------
    Volume
        The finished volume.
    """
    t_start = time.perf_counter()
    acq = (
        acquisition if isinstance(acquisition, Acquisition) else open_acquisition(acquisition, "r")
    )
    out = os.fspath(out)
    if os.path.abspath(out) == os.path.abspath(acq.path):
        raise ParameterError("the output must not be the acquisition itself")
    problem = build_problem(
        acq, scans, method, iterations, psf, voxel_size_nm, nonneg_every, rtol, weights
    )
    if oracle and acq.truth is None:
        raise InputError(acq.path, "has no truth volume: --oracle needs simulated data")
    if oracle and tuple(acq.truth.shape) != problem.grid.shape:
        raise ParameterError(
            "--oracle needs the reconstruction on the truth's grid (no --voxel-size-nm)"
        )
    roi_radius = _roi_radius_nm(acq)

    with write_lock(out), get_client(client, scheduler, workers, quiet=quiet) as c:
        n_workers = max(1, len(c.scheduler_info().get("workers", {})))
        limit = worker_memory_limit(c)
        budget = memory_budget or (int(limit * 0.6) if limit else None)
        plan = plan_blocks(
            list(problem.models.values()), problem.grid, block_size, budget, n_workers, halo
        )
        log(
            f"volume {problem.grid.shape} at {problem.grid.voxel_size_nm:g} nm from scans "
            f"{', '.join(problem.models)}; {method}, {iterations} iterations",
            quiet,
        )
        log(plan.describe(), quiet)
        if limit and plan.peak_bytes > limit:
            log(
                f"warning: the plan's {plan.peak_bytes / 2**20:.0f} MiB exceeds the worker limit "
                f"{limit / 2**20:.0f} MiB; pass --block-size smaller",
                quiet,
            )
        provenance = {
            "input": os.path.abspath(acq.path),
            "method": method,
            "iterations": int(iterations),
            "scans": list(problem.models),
            "nonneg_every": nonneg_every,
            "rtol": rtol,
            "psf": {n: round(m.psf_sigma_px, 4) for n, m in problem.models.items()},
            "weights": dict(weights or {}),
            "oracle": bool(oracle),
            "backend": "cpu",
            "software": f"sxtdist {_version.__version__}",
            "fingerprint": _fingerprint(acq, problem, oracle),
        }
        vol = _open_or_create(out, problem.grid, plan, provenance, overwrite)
        done = vol.blocks_done
        todo = [b for b in plan.blocks if b.index not in done]
        if done:
            log(f"resuming: {len(done)} of {plan.n_blocks} blocks already done", quiet)
        stats: list[dict] = []

        def record(block: Block, result: dict) -> None:
            vol.mark_blocks_done([block.index])
            stats.append(result)

        run_tasks(
            c,
            _solve_block,
            todo,
            "blocks",
            progress,
            on_result=record,
            acquisition=os.path.abspath(acq.path),
            volume=os.path.abspath(out),
            problem=problem,
            oracle=oracle,
            roi_radius_nm=roi_radius,
        )
    elapsed = time.perf_counter() - t_start
    stopping = _summarise(stats)
    n_levels = vol.finalize(elapsed_s=elapsed, stopping=stopping)
    log(f"wrote {out}: {n_levels} levels, {plan.n_blocks} blocks in {elapsed:.1f} s", quiet)
    return vol


def _roi_radius_nm(acq: Acquisition) -> float | None:
    if "roi" not in acq.scans:
        return None
    g = acq["roi"].geometry
    return (g.detector_shape[1] / 2.0 - abs(g.center_offset_px[1])) * g.pixel_size_nm


def _open_or_create(
    out: str, grid: VolumeGrid, plan: BlockPlan, provenance: dict, overwrite: bool
) -> Volume:
    attrs = {"provenance": provenance, "plan": plan.to_dict()}
    has_content = os.path.isdir(out) and any(
        not e.startswith(".sxtdist.lock") for e in os.listdir(out)
    )
    if has_content and not overwrite:
        vol = open_volume(out)
        if vol.status == "complete":
            raise OutputExistsError(
                out, "is a complete volume already (use --overwrite to replace it)"
            )
        _check_resumable(vol, provenance, plan)
        vol.update_meta(status="running")
        return vol
    return create_volume(out, grid, plan.shard_z, plan.chunk_z, attrs, overwrite=True)


def _summarise(stats: list[dict]) -> dict:
    if not stats:
        return {"blocks_run": 0}
    its = [s["iterations"] for s in stats]
    return {
        "blocks_run": len(stats),
        "iterations_min": min(its),
        "iterations_max": max(its),
        "stopped_by": sorted({s["stopped_by"].split(" (")[0] for s in stats}),
        "restarts": int(sum(s["restarts"] for s in stats)),
        "solve_s_total": float(sum(s["solve_s"] for s in stats)),
    }
