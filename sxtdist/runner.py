"""``sxtdist.reconstruct``: plan the blocks, solve them on Dask workers, write the volume.

The client never holds a stack or the volume: each task opens the acquisition,
reads its block's rows of every scan, solves (:func:`sxtdist.recon.solve_slab`)
and writes its core slices, whole shards, into level 0. The client records a
block in ``blocks_done`` only after its task returned, so a re-run after an
interruption (or a killed worker, whose task Dask re-runs elsewhere) skips exactly
the blocks that are on disk, and the result is the same as an uninterrupted run.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _version
from .alignment.anchoring import stale_anchoring
from .alignment.intensity import apply_intensity_transform
from .backends import (
    GPU_RESOURCE,
    cluster_gpu_free_bytes,
    gpu_block_size,
    gpu_workers,
    select_backend,
)
from .blocks import Block, BlockPlan, plan_blocks
from .dataset import Acquisition, check_data_ids, data_ids, open_acquisition
from .distributed import current_client, get_client, run_tasks, worker_memory_limit
from .errors import (
    InputError,
    OutputExistsError,
    ParameterError,
    SxtdistError,
    SxtdistWarning,
    option,
    printable,
    quoted,
    use_overwrite,
    with_hint,
)
from .execution import Execution, execution_fields
from .geometry import VolumeGrid, angular_spacing_deg, default_grid
from .io.checks import MAX_PIXEL_NM
from .metrics import cylinder_mask, roi_diameter_px
from .operators.psf import fwhm_to_sigma_px
from .operators.scan import ScanModel
from .outputs import check_output, is_empty_folder, real_parent, recognise, remove, writing
from .physics import psf_fwhm_nm
from .recon import (
    AUTO,
    Problem,
    half_views,
    parse_iterations,
    roi_region,
    sample_voxels,
    solve_slab,
    split_half_curves,
    view_subset,
)
from .resources import require_disk, require_memory
from .solvers import (
    BETWEEN_GROWTH,
    DIP_CORRECTION,
    DIP_RISE,
    DIP_STALL,
    EARLY_SIGNATURE,
    LATE_FACTOR,
    LATEST_CORRECTION,
    cross_validated_count,
    far_minimum,
    far_vertex,
)
from .volume import Volume, create_volume, open_volume

logger = logging.getLogger(__name__)


def scan_models(acq: Acquisition, scans: Sequence[str], psf: bool = False) -> dict[str, ScanModel]:
    """A :class:`ScanModel` per scan: its geometry (with stored shifts) and zone-plate PSF.

    With ``psf``, a scan whose zone plate is unknown is an error (it would be modelled
    without a PSF, silently).
    """
    models = {}
    for name in scans:
        scan = acq[name]
        sigma = 0.0
        if psf and not scan.zone_plate_ozw_nm:
            raise InputError(
                acq.path,
                f"scan {name!r} has no zone-plate OZW, so {option('--psf', 'psf=True')} cannot "
                f"model its PSF; set it with: "
                f"sxtdist edit {quoted(acq.path)} --scan {name} --zone-plate-ozw-nm NM",
            )
        if psf:
            sigma = fwhm_to_sigma_px(psf_fwhm_nm(scan.zone_plate_ozw_nm), scan.pixel_size_nm)
        models[name] = ScanModel(scan.geometry, sigma)
    return models


@dataclass(frozen=True)
class Reconstruction:
    """What a reconstruction solves (how it runs is an :class:`~sxtdist.execution.Execution`).

    Parameters
    ----------
    method
        ``"cgne"`` (default) or ``"sirt"``.
    iterations
        Iterations (the cap when ``rtol`` or ``oracle`` stop earlier), or ``"auto"``
        (default): one count for the volume, chosen by split-half cross-validation on a
        pilot of a quarter of the blocks (the even and the odd views reconstructed apart
        and compared in the ROI; :func:`_auto_iterations`) and recorded in the
        provenance (docs/reconstruction.md). The pilot is CGNE's: with ``method="sirt"``
        give a count (``"auto"`` is refused). With ``oracle``, ``"auto"`` is a cap of
        :data:`ORACLE_CAP`.
    scans
        Scans to use: all (default, the combined problem), ``("roi",)`` (interior only)
        or ``("full",)`` (sparse only).
    views
        Per scan, the indices of the stored views to use (default: all).
    exclude_untrusted
        Leave out the views the stored alignment verdict names (``check views ...``,
        :mod:`sxtdist.alignment.verdict`; of ``views`` where given), logged and recorded
        in the provenance. An :class:`~sxtdist.errors.InputError` where a scan used has
        no verdict stored or would lose all its views.
    split_halves
        Also reconstruct two half volumes from the even and the odd views of every scan
        (in angular order) with the same count, next to the output (:func:`half_paths`),
        for ``sxtdist report``'s split-half FSC: a resolution without a truth.
    psf
        Model each scan's zone-plate PSF (from ``zone_plate_ozw_nm``): a deconvolving
        reconstruction. Off by default: on the paper-like preset it changes the PSNR by
        +0.03 dB while it couples all slices and costs a padded detector and two blurs
        per iteration (docs/reconstruction.md).
    voxel_size_nm
        Voxel size (default: the finest pixel).
    weights
        ``"quadrature"`` (default: pixel area × angular step per scan,
        :func:`quadrature_weights`), ``"equal"`` (the paper's code) or a weight per scan.
    nonneg_every
        CGNE: clamp at zero every ``k`` iterations.
    rtol
        CGNE: stop each slice group at this relative residual.
    oracle
        Simulated data only: stop each block at its best PSNR against the truth
        inside the ROI (the paper's oracle rule); for studies, not for real data.
    oracle_radius_nm
        Radius of the cylinder about the axis where the oracle scores (default: the
        interior scan's field). Give the ROI's when reconstructing a full-width
        reference that is to be compared inside an ROI: scored over its whole field,
        the oracle stops where the whole slice is best, not the ROI.
    block_size, halo
        Slices per block and halo slices per side; default from the memory budget and
        the row coupling (an unfinished output keeps the layout it was started with).
    """

    method: str = "cgne"
    iterations: int | str = AUTO
    scans: Sequence[str] | None = None
    views: Mapping[str, Sequence[int]] | None = None
    exclude_untrusted: bool = False
    split_halves: bool = False
    psf: bool = False
    voxel_size_nm: float | None = None
    weights: Mapping[str, float] | str | None = None
    nonneg_every: int | None = None
    rtol: float | None = None
    oracle: bool = False
    oracle_radius_nm: float | None = None
    block_size: int | None = None
    halo: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "iterations", parse_iterations(self.iterations))
        if self.iterations == AUTO and self.method == "sirt" and not self.oracle:
            # the pilot runs CGNE, which converges far faster: its count would under-iterate
            sirt = option("--method sirt", 'method="sirt"')
            raise ParameterError(
                f"iterations auto is chosen by a CGNE pilot, not for SIRT: give {sirt} a "
                f"count ({option('--iterations N', 'iterations=N')})"
            )
        if self.scans is not None:
            object.__setattr__(self, "scans", tuple(str(n) for n in self.scans))
        for name, least in (("block_size", 1), ("halo", 0)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= least):
                raise ParameterError(f"{name} must be a whole number >= {least}, got {value!r}")
        for name in ("voxel_size_nm", "oracle_radius_nm", "rtol"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ParameterError(f"{name} must be positive, got {value!r}")
        if self.voxel_size_nm is not None and float(self.voxel_size_nm) > MAX_PIXEL_NM:
            raise ParameterError(f"voxel_size_nm must be at most {MAX_PIXEL_NM:g} nm")

    def replace(self, **changes: Any) -> Reconstruction:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


def split_options(
    recipe: Reconstruction | None, execution: Execution | None, options: Mapping[str, Any]
) -> tuple[Reconstruction, Execution]:
    """``recipe`` and ``execution`` with the keyword ``options`` (fields of either) applied.

    An option that is ``None`` is left at the object's value; a name that is a field of
    neither is a ``TypeError``, as for any unknown keyword argument.
    """
    mine = {f.name for f in dataclasses.fields(Reconstruction)}
    theirs = set(execution_fields())
    unknown = sorted(set(options) - mine - theirs)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    changes = {k: v for k, v in options.items() if k in mine and v is not None}
    recipe = recipe if recipe is not None else Reconstruction()
    if changes:
        recipe = recipe.replace(**changes)
    return recipe, Execution.of(execution, **{k: v for k, v in options.items() if k in theirs})


#: True while a run works after :func:`build_problem` told it that its interior alignment is
#: stale: the problems built again for its split halves (their checks, their runs) are of the
#: same data, and the warning is told once per run, not once per half and check (so are the
#: scans it reconstructs unaligned, :func:`_tell_unaligned`).
_STALE_TOLD: contextvars.ContextVar[bool] = contextvars.ContextVar("stale_told", default=False)


@contextmanager
def _stale_told() -> Iterator[None]:
    token = _STALE_TOLD.set(True)
    try:
        yield
    finally:
        _STALE_TOLD.reset(token)


def build_problem(acq: Acquisition, recipe: Reconstruction | None = None, **fields: Any) -> Problem:
    """The reconstruction problem of ``recipe`` (or of its ``fields``) for an acquisition.

    The grid is :func:`sxtdist.geometry.default_grid` of *all* scans, so an
    interior-only or sparse-only reconstruction lands on the same grid as the
    combined one (and as a simulation's truth).
    """
    if recipe is not None and not isinstance(recipe, Reconstruction):
        raise TypeError(f"recipe must be a Reconstruction, got {recipe!r} (scans=... is a keyword)")
    r = (recipe or Reconstruction()).replace(**fields) if fields else recipe or Reconstruction()
    names = list(r.scans or acq.scans)
    for n in names:
        if n not in acq.scans:
            raise InputError(acq.path, f"has no scan {n!r} (it has {', '.join(acq.scans)})")
    grid = default_grid([acq[n].geometry for n in acq.scans], r.voxel_size_nm)
    stale = stale_anchoring(acq) if "roi" in names and not _STALE_TOLD.get() else None
    if stale:
        warnings.warn(f"{printable(acq.path)}: {stale}", SxtdistWarning, stacklevel=2)
    problem = Problem(
        grid,
        scan_models(acq, names, r.psf),
        r.method,
        _cap(r) if r.iterations == AUTO else int(r.iterations),
        resolve_weights(acq, names, r.weights),
        r.nonneg_every,
        r.rtol,
    )
    if r.views:
        unknown = set(r.views) - set(names)
        if unknown:
            raise ParameterError(f"views for scans not used: {', '.join(sorted(unknown))}")
        problem = view_subset(problem, r.views)
    if r.exclude_untrusted:
        untrusted = untrusted_views(acq, problem)
        if untrusted:
            logger.info(
                "leaving out the views the alignment verdict does not trust (stored view "
                "indices): %s",
                "; ".join(f"{n} {', '.join(map(str, v))}" for n, v in untrusted.items()),
            )
            keep = {
                n: [k for k, v in enumerate(_stored_views(problem, n)) if v not in bad]
                for n, bad in untrusted.items()
            }
            problem = view_subset(problem, keep)
    return problem


def _stored_views(problem: Problem, name: str) -> Sequence[int]:
    """The stored views a problem uses of scan ``name``, in its order."""
    return problem.views.get(name, range(problem.models[name].geometry.n_angles))


def untrusted_views(acq: Acquisition, problem: Problem) -> dict[str, list[int]]:
    """Per scan of ``problem``, its views (indices of the stored views) that the stored
    alignment verdict names; scans with none are left out. An
    :class:`~sxtdist.errors.InputError` where a scan has no verdict stored, or where the
    verdict names every view the problem uses of it."""
    out = {}
    for name in problem.models:
        alignment = acq[name].meta.get("alignment") or {}
        if "verdict" not in alignment:
            raise InputError(
                acq.path,
                f"scan {name!r} has no alignment verdict to exclude untrusted views by "
                "(align it with `sxtdist align`, which stores one)",
            )
        named = {int(v) for v in alignment.get("check_views") or ()}
        used = [int(v) for v in _stored_views(problem, name)]
        if named.issuperset(used):
            raise InputError(
                acq.path,
                f"the alignment verdict names every view of scan {name!r} used: excluding "
                f"the untrusted views leaves none ({alignment['verdict']})",
            )
        if named.intersection(used):
            out[name] = sorted(named.intersection(used))
    return out


WEIGHTINGS = ("quadrature", "equal")


def quadrature_weights(acq: Acquisition, names: Sequence[str]) -> dict[str, float]:
    """Least-squares weights that make ``Σ_i w_i ||A_i x − y_i||²`` a quadrature of one integral.

    Each datum stands for a detector area ``p_i²`` and an angular step ``Δθ_i``;
    weighting by ``p_i² Δθ_i`` (relative to the smallest) makes the misfit of every
    scan count per unit of detector area and angle, so a few coarse full views are
    not drowned by many fine interior ones. Measured on the ``small`` preset
    (20 iterations, no PSF): 28.13 dB in the ROI against 22.60 dB with equal weights
    (docs/reconstruction.md). The paper's code weighs scans equally (``"equal"``).
    """
    raw = {}
    for n in names:
        g = acq[n].geometry
        step = angular_spacing_deg(g.angles_deg) or 180.0
        raw[n] = g.pixel_size_nm**2 * step
    low = min(raw.values())
    return {n: w / low for n, w in raw.items()}


def resolve_weights(
    acq: Acquisition, names: Sequence[str], weights: Mapping[str, float] | str | None
) -> dict[str, float]:
    """Per-scan weights from a mapping or a weighting name."""
    if weights is None or weights == "quadrature":
        return quadrature_weights(acq, names)
    if weights == "equal":
        return {}
    if isinstance(weights, str):
        raise ParameterError(f"unknown weighting {weights!r} (choose from {', '.join(WEIGHTINGS)})")
    unknown = set(weights) - set(names)
    if unknown:
        raise ParameterError(f"weights for scans not used: {', '.join(sorted(unknown))}")
    return {n: float(w) for n, w in weights.items()}


def late_factor(weights: Mapping[str, float] | str | None) -> float:
    """``--iterations auto``'s ``factor`` (:func:`~sxtdist.solvers.cross_validated_count`)
    for a weighting: :data:`~sxtdist.solvers.LATE_FACTOR` with quadrature weights (the
    default), where it was fitted and measured; 1 (``far``'s minimum) with any other, where
    the halves' disagreement grows slowly without the full data's best being later (equal
    weights on ``small``: up to 2.8 dB lost with the factor, 0.26 dB without;
    docs/dev/stopping-rule.md)."""
    return LATE_FACTOR if weights is None or weights == "quadrature" else 1.0


def early_signature(
    weights: Mapping[str, float] | str | None,
) -> tuple[float, float, float] | None:
    """``--iterations auto``'s ``early`` (:func:`~sxtdist.solvers.cross_validated_count`)
    for a weighting: :data:`~sxtdist.solvers.EARLY_SIGNATURE` with quadrature weights, where
    it was fitted and measured, like :func:`late_factor`; ``None`` (off) with any other."""
    return EARLY_SIGNATURE if weights is None or weights == "quadrature" else None


def auto_count(
    far: Sequence[float], between: Sequence[float], weights: Mapping[str, float] | str | None
) -> int:
    """``--iterations auto``'s count from the pilot's split-half curves for a weighting
    (:func:`~sxtdist.solvers.cross_validated_count` with :func:`late_factor`,
    :data:`~sxtdist.solvers.BETWEEN_GROWTH` and :func:`early_signature`)."""
    return cross_validated_count(
        far, between, late_factor(weights), BETWEEN_GROWTH, early_signature(weights)
    )


def _solve_block(
    block: Block,
    acquisition: str,
    volume: str,
    problem: Problem,
    oracle: bool,
    roi_radius_nm: float | None,
    backend: str = "cpu",
    data_ids: Mapping[str, str | None] | None = None,
    transforms: Mapping[str, dict | None] | None = None,
) -> dict[str, Any]:
    """One task: read the block's rows, solve the slab, write the core slices."""
    t0 = time.perf_counter()
    acq = open_acquisition(acquisition, mode="r")
    data = _read_block(acq, problem, block.slab, data_ids, transforms)
    truth = mask = None
    if oracle and acq.truth is not None:
        s0, s1 = block.slab
        nz = problem.grid.nz
        truth = np.zeros((s1 - s0, *problem.grid.slice_shape), np.float32)
        # the slab may reach past the volume's ends: no truth there, not scored
        a, b = max(s0, 0), min(s1, nz)
        truth[a - s0 : b - s0] = np.asarray(acq.truth[a:b].compute(), np.float32)
        # score the core only: it is what is kept, and the halo's outer slices (seen by few
        # rows) stay noisy; scored with them, the rule stopped blocks far from their best
        c0, c1 = block.core
        inside = ((np.arange(s0, s1) >= c0) & (np.arange(s0, s1) < c1))[:, None, None]
        m2 = (
            cylinder_mask(problem.grid.slice_shape, 2 * roi_radius_nm / problem.grid.voxel_size_nm)
            if roi_radius_nm
            else np.ones(problem.grid.slice_shape, bool)
        )
        mask = inside & m2[None]
    t_read = time.perf_counter() - t0
    x, result = solve_slab(problem, block.slab, data, truth, mask, backend=backend)
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


def _read_block(
    acq: Acquisition,
    problem: Problem,
    slab: tuple[int, int],
    data_ids: Mapping[str, str | None] | None = None,
    transforms: Mapping[str, dict | None] | None = None,
) -> dict[str, np.ndarray]:
    """Each scan's rows of ``slab`` (of the problem's views), as the solve takes them.

    ``data_ids``: the projections the run started with (:func:`~sxtdist.dataset.data_ids`);
    a scan replaced before or while it was read (an ``import --overwrite`` meanwhile) is
    refused, never mixed into the volume. ``transforms``: the intensity transforms the
    run started with (:func:`intensity_transforms`; default: as stored now), as its
    shifts are the problem's: an ``align`` meanwhile changes neither under a running
    reconstruction.
    """
    if transforms is None:
        transforms = intensity_transforms(acq)
    if data_ids is not None:
        check_data_ids(acq.path, data_ids, volume=True)
    data = {}
    for name, r in problem.rows(slab).items():
        if r.size:
            stack = acq[name].read(rows=slice(int(r[0]), int(r[-1]) + 1))
            if name in problem.views:
                stack = stack[list(problem.views[name])]
            # eq. 16: bring a scan taken at another energy/optics into the reference's model
            data[name] = apply_intensity_transform(stack, transforms.get(name))
    if data_ids is not None:
        check_data_ids(acq.path, data_ids, volume=True)
    return data


def intensity_transforms(acq: Acquisition) -> dict[str, dict | None]:
    """Each scan's stored intensity transform (None where it has none)."""
    return {name: scan.meta.get("intensity_transform") for name, scan in acq.scans.items()}


#: ``iterations="auto"``: the split-half pilot's iterations and the share of the blocks it
#: solves (at least one).
AUTO_CAP = 60
AUTO_PILOT_SHARE = 0.25
#: ``iterations="auto"`` with ``oracle``: the cap of each block's oracle stop, the cap
#: ``auto`` had before its pilot's was lowered to 60 (the oracle stops a block 5
#: iterations after its best, so the cap only bounds a block whose PSNR keeps rising).
ORACLE_CAP = 200


def _cap(recipe: Reconstruction) -> int:
    """The iterations a problem is built with for ``iterations="auto"`` (chosen later,
    or the oracle's cap)."""
    return ORACLE_CAP if recipe.oracle else AUTO_CAP


def _pilot_block(
    block: Block,
    acquisition: str,
    problem: Problem,
    backend: str = "cpu",
    data_ids: Mapping[str, str | None] | None = None,
    transforms: Mapping[str, dict | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One cross-validation task: the split-half curves of one block's core ROI voxels."""
    acq = open_acquisition(acquisition, mode="r")
    data = _read_block(acq, problem, block.slab, data_ids, transforms)
    s0 = block.slab[0]
    shape = (*problem.grid.slice_shape, block.slab[1] - s0)
    core = slice(block.core[0] - s0, block.core[1] - s0)
    voxels = sample_voxels(shape, roi_region(problem), core, seed=block.index)
    return split_half_curves(problem, block.slab, data, voxels, backend)


def pilot_blocks(blocks: Sequence[Block], share: float = AUTO_PILOT_SHARE) -> list[Block]:
    """``share`` of the blocks (at least one), spread evenly along the volume."""
    n = max(1, min(len(blocks), int(round(share * len(blocks)))))
    return [blocks[int((i + 0.5) * len(blocks) / n)] for i in range(n)]


def _auto_iterations(
    client: Any, plan: BlockPlan, job: _Job, ex: Execution, backend: str
) -> tuple[int, dict]:
    """The iteration count by split-half cross-validation, global over the volume.

    A pilot reconstructs :func:`pilot_blocks` from the even and from the odd views apart,
    :data:`AUTO_CAP` iterations each, and compares the halves' iterates in the ROI
    (:func:`sxtdist.recon.split_half_curves`): ``far`` (each half's iterate against the
    other half's last one) and ``between`` (the halves apart), summed over the pilot
    blocks, give the count (:func:`~sxtdist.solvers.cross_validated_count`: ``far``'s
    minimum, later where the halves' disagreement grows slowly after it; with quadrature
    weights, :func:`late_factor`; never past where that disagreement has grown
    :data:`~sxtdist.solvers.BETWEEN_GROWTH` times; earlier than the minimum where the curves
    show :data:`~sxtdist.solvers.EARLY_SIGNATURE`, and in the noise regime above it the
    first count at or after ``far``'s vertex, :func:`~sxtdist.solvers.far_vertex`; where
    the noise grows fast and ``far``'s minimum is a dip of the bias, the minimum after it of
    ``far - between / 8``, :func:`~sxtdist.solvers.past_a_dip`; in the noise regime never past
    the minimum of ``far - between / 4``; :func:`auto_count`), used for every
    block (one count for the volume: blocks with counts of their own would show seams). ``benchmarks/stopping_rules.py`` measures it against the oracle
    (docs/reconstruction.md).
    """
    pilot = pilot_blocks(plan.blocks)
    logger.info(
        "iterations auto: split-half cross-validation on %d of %d block(s), %d iterations",
        len(pilot),
        plan.n_blocks,
        AUTO_CAP,
    )
    curves = run_tasks(
        client,
        _pilot_block,
        pilot,
        "cross-validation",
        ex.progress,
        acquisition=os.path.realpath(job.acq.path),
        problem=dataclasses.replace(job.problem, iterations=AUTO_CAP),
        backend=backend,
        data_ids=data_ids(job.acq),
        transforms=intensity_transforms(job.acq),
        resources={GPU_RESOURCE: 1} if backend == "gpu" else None,
    )
    error = sum(c[0] for c in curves)
    between = sum(c[1] for c in curves)
    lowest = int(np.argmin(error)) + 1
    weights = job.recipe.weights
    early = early_signature(weights)
    count = auto_count(error, between, weights)
    if lowest > 0.8 * AUTO_CAP:
        warnings.warn(
            f"iterations auto: the estimated error was still falling near the pilot's "
            f"{AUTO_CAP} iterations; using {count} "
            f"(pass {option('--iterations N', 'iterations=N')} for more)",
            SxtdistWarning,
            stacklevel=3,
        )
    logger.info(
        "iterations auto: %d (the halves' estimated error is smallest at %d)", count, lowest
    )
    rule = {
        "rule": "split-half cross-validation",
        "pilot_blocks": [b.index for b in pilot],
        "pilot_iterations": AUTO_CAP,
        "estimated_error": [float(e) for e in error],
        "between": [float(e) for e in between],
        "error_lowest_at": lowest,
        "error_vertex": far_vertex(error),
        # where far's minimum is a dip of the bias, far's own minimum past it (the count is
        # that of far - dip_correction * between there)
        "error_lowest_past_a_dip": far_minimum(error, between, early)[0] + 1,
        "dip_correction": DIP_CORRECTION if early else None,
        # the dip test: a rise past far's minimum of more than dip_rise of between/2's growth,
        # then less than dip_stall of its growth over two counts (or a fall within them)
        "dip_rise": DIP_RISE if early else None,
        "dip_stall": DIP_STALL if early else None,
        # the noise regime's count is never past the minimum of far - latest_correction * between
        "latest_correction": LATEST_CORRECTION if early else None,
        "late_factor": late_factor(weights),
        "between_growth": BETWEEN_GROWTH,
        "early_signature": early,
    }
    return count, rule


def _stored_count(out: str) -> tuple[int, dict]:
    """``(count, rule)`` recorded by the unfinished volume at ``out``, to be resumed."""
    prov = open_volume(out, mode="r").meta["provenance"]
    return int(prov["iterations"]), dict(prov["iterations_rule"])


def half_paths(out: str | os.PathLike[str]) -> tuple[str, str]:
    """Where ``split_halves`` writes the two half volumes of ``out``."""
    base = os.fspath(out).rstrip("/\\")
    stem, ext = (base[:-5], ".zarr") if base.endswith(".zarr") else (base, "")
    return f"{stem}.half1{ext}", f"{stem}.half2{ext}"


#: Scan metadata that record how a scan was aligned or edited, not what is reconstructed:
#: left out of the resume fingerprint (every other key, known or not, is in it).
SCAN_RECORDS = ("alignment", "edits")


def _fingerprint(
    acq: Acquisition, problem: Problem, iterations: int | str, oracle: tuple[bool, float | None]
) -> str:
    """What an unfinished volume must have been started with to be resumed.

    The input: its path and every scan's metadata, which holds the ``data_id`` drawn
    when the scan was written (a re-simulation or re-import into the same path has
    other projections, and another id), the shifts, the geometry and the intensity
    transform, but not the records of how it was aligned and edited (dates, timings,
    verdict: an alignment or edit that changed no value changes nothing solved), and
    with the oracle the truth's metadata. The
    parameters: ``iterations`` as asked (``"auto"`` or a count, not the count auto
    chooses: a volume begun with a fixed count is not resumed by ``"auto"``, nor the
    reverse), method, scans and views, weights, grid, PSF and the stopping rules
    (``oracle``: whether, and the radius it scores in).
    """
    import hashlib
    import json

    h = hashlib.sha1()
    h.update(os.path.abspath(acq.path).encode())
    scans = {
        name: {k: v for k, v in entry.items() if k not in SCAN_RECORDS}
        for name, entry in acq.group.attrs["sxtdist"]["scans"].items()
    }
    h.update(json.dumps(scans, sort_keys=True).encode())
    if oracle[0]:
        h.update(json.dumps(acq.truth_meta, sort_keys=True).encode())
    h.update(
        repr(
            (
                sorted(problem.models),
                problem.method,
                iterations,
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
    if problem.views:  # some views only (without: the fingerprint as before they counted)
        h.update(repr(sorted((k, list(v)) for k, v in problem.views.items())).encode())
    return h.hexdigest()


def reconstruct(
    acquisition: str | os.PathLike[str] | Acquisition,
    out: str | os.PathLike[str],
    recipe: Reconstruction | None = None,
    execution: Execution | None = None,
    *,
    iterations: int | None = None,
    method: str | None = None,
    scans: Sequence[str] | None = None,
    workers: int | None = None,
    **options: Any,
) -> Volume:
    """Reconstruct an acquisition into a multiscale OME-Zarr volume.

    Parameters
    ----------
    acquisition
        Path of (or an opened) acquisition dataset.
    out
        Output volume directory. An unfinished output from the same command is
        resumed; a complete one is refused unless ``execution.overwrite``.
    recipe
        What is solved (:class:`Reconstruction`: method, iterations, scans, weights,
        PSF, grid, stopping rules, block layout); default: its defaults.
    execution
        How and where it runs (:class:`~sxtdist.execution.Execution`: cluster,
        workers, memory, backend, progress, overwrite); default: a local cluster
        shared with the other calls of this process. On the GPU each block is solved
        on one GPU (a local ``dask_cuda`` cluster unless the execution names a
        cluster whose workers offer the resource ``GPU=1``) and the block size comes
        from the GPU's free memory; the choice and its reason are logged and recorded
        in the provenance.
    iterations, method, scans, workers, **options
        Shortcuts: any field of :class:`Reconstruction` or of
        :class:`~sxtdist.execution.Execution` (``block_size=``, ``client=``,
        ``overwrite=`` ...) given as a keyword replaces the one in ``recipe`` or
        ``execution``.

    Returns
    -------
    Volume
        The finished volume.
    """
    t_start = time.perf_counter()
    recipe, ex = split_options(
        recipe,
        execution,
        dict(options, iterations=iterations, method=method, scans=scans, workers=workers),
    )
    job = _prepare(acquisition, out, recipe)
    told = _STALE_TOLD.get()  # a split half: its run said what its input lacks
    ex, backend, why = _local_backend(ex)
    claim = writing(
        job.out, "volume", inputs=[job.acq.path], overwrite=ex.overwrite, resume=True,
        beside=False, keep=_worth_resuming,
    )  # fmt: skip
    with claim as target, _stale_told():
        # a replacement is written beside the output, and resumed there if interrupted
        work = dataclasses.replace(job, out=target.write_path)
        recipe, resume = _resume_layout(work, restart=target.beside)
        work = dataclasses.replace(work, recipe=recipe)
        _check_capacity(work.problem.grid, work.out, resume, target.path if target.beside else None)
        if not told:  # once nothing refuses the run: a refusal stays one line
            _tell_unaligned(job)
        with _connect(ex, backend, why) as (client, backend, why):
            logger.info("backend: %s (%s)", backend, why)
            vol, plan, stats = _run_blocks(client, work, ex, backend, resume)
            if recipe.split_halves:
                half_ex = ex.replace(client=client, cluster=None, scheduler=None, backend=backend)
                _reconstruct_halves(job, vol, plan, half_ex)
        elapsed = time.perf_counter() - t_start
        n_levels = vol.finalize(elapsed_s=elapsed, stopping=_summarise(stats))
    logger.info(
        "wrote %s: %d levels, %d blocks in %.1f s", job.out, n_levels, plan.n_blocks, elapsed
    )
    return open_volume(job.out, mode="r+")


def _run_blocks(
    client: Any, job: _Job, ex: Execution, backend: str, resume: bool
) -> tuple[Volume, BlockPlan, list[dict]]:
    """Plan, choose the count (``"auto"``), open (``resume``) or create the output and
    solve the blocks not done yet."""
    plan = _plan(client, job, ex, backend)
    if job.recipe.iterations == AUTO and not job.recipe.oracle:
        # resumed: the count it chose (same fingerprint: it was an "auto" run too)
        stored = _stored_count(job.out) if resume else None
        count, rule = stored or _auto_iterations(client, plan, job, ex, backend)
        job = dataclasses.replace(
            job,
            problem=dataclasses.replace(job.problem, iterations=count),
            provenance=dict(job.provenance, iterations=count, iterations_rule=rule),
        )
        logger.info("%d iterations for every block", count)
    if job.recipe.split_halves and not ex.overwrite:  # then job.out is the output itself
        _check_halves(job, plan)
    provenance = dict(job.provenance, backend=backend)
    vol = _open_or_create(job.out, job.problem.grid, plan, provenance, resume)
    done = vol.blocks_done
    todo = [b for b in plan.blocks if b.index not in done]
    if done:
        logger.info("resuming: %d of %d blocks already done", len(done), plan.n_blocks)
    stats: list[dict] = []

    def record(block: Block, result: dict) -> None:
        vol.mark_blocks_done([block.index])
        stats.append(result)

    run_tasks(
        client,
        _solve_block,
        todo,
        "blocks",
        ex.progress,
        on_result=record,
        # resolved as the kernel and the lock resolve them (``link/..`` is not lexical)
        acquisition=os.path.realpath(job.acq.path),
        volume=os.path.realpath(job.out),
        problem=job.problem,
        oracle=job.recipe.oracle,
        roi_radius_nm=job.roi_radius_nm,
        backend=backend,
        data_ids=data_ids(job.acq),
        transforms=intensity_transforms(job.acq),
        resources={GPU_RESOURCE: 1} if backend == "gpu" else None,
    )
    return vol, plan, stats


def _reconstruct_halves(job: _Job, vol: Volume, plan: BlockPlan, ex: Execution) -> None:
    """The two split halves of ``job``'s volume, with its count and block layout.

    A half that is complete with the same fingerprint (an interrupted run finished it)
    is kept as it is, unless ``ex.overwrite``: the same command resumes.
    """
    count = int(vol.meta["provenance"]["iterations"])
    for path, recipe in zip(half_paths(job.out), _half_recipes(job, count, plan)):
        if not ex.overwrite and _complete_as(job.acq, path, recipe):
            logger.info("split half %s: complete already", path)
            continue
        logger.info("split half %s", path)
        reconstruct(job.acq, path, recipe, ex)


def _half_recipes(job: _Job, count: int, plan: BlockPlan) -> list[Reconstruction]:
    """The recipes of ``job``'s two split halves: its ``count``, its block layout, the even
    and the odd views."""
    recipes = []
    for half in half_views(job.problem):
        views = view_subset(job.problem, half).views  # as indices of the stored views
        recipes.append(
            job.recipe.replace(
                iterations=count,
                views={n: list(v) for n, v in views.items()},
                split_halves=False,
                oracle=False,
                block_size=plan.block_size,
                halo=plan.halo,
            )
        )
    return recipes


def _complete_as(acq: Acquisition, path: str, recipe: Reconstruction) -> bool:
    """Whether ``path`` is a complete volume of ``recipe`` (no oracle) on ``acq``."""
    from .volume import is_volume

    if not is_volume(path):
        return False
    vol = open_volume(path, mode="r")
    want = _fingerprint(acq, build_problem(acq, recipe), recipe.iterations, (False, None))
    return vol.status == "complete" and vol.meta["provenance"].get("fingerprint") == want


def _check_halves(job: _Job, plan: BlockPlan) -> None:
    """Refuse, before any block of the volume is solved, a split half at its path that the
    halves' run could not keep or resume: one of other data or parameters, or an
    unfinished one of another block layout (found only after hours of work otherwise)."""
    from .volume import is_volume

    for path, recipe in zip(half_paths(job.out), _half_recipes(job, job.problem.iterations, plan)):
        if not _has_content(path):
            continue
        meta = open_volume(path, mode="r").meta if is_volume(path) else {}
        prov, stored = meta.get("provenance") or {}, meta.get("plan") or {}
        want = _fingerprint(
            job.acq, build_problem(job.acq, recipe), recipe.iterations, (False, None)
        )
        complete = meta.get("status") == "complete"
        layout = (stored.get("block_size"), stored.get("halo")) == (plan.block_size, plan.halo)
        if prov.get("fingerprint") == want and (complete or layout):
            continue
        what = "a complete" if complete else "an unfinished"
        raise OutputExistsError(
            path,
            f"holds {what} split half of other data or with other parameters "
            f"({_started_with(prov)}; this run's halves: {recipe.method}, iterations "
            f"{recipe.iterations}); {use_overwrite('replace it')}",
        )


@dataclass(frozen=True)
class _Job:
    """One reconstruction, resolved and checked before any cluster starts."""

    acq: Acquisition
    out: str
    recipe: Reconstruction
    problem: Problem
    roi_radius_nm: float | None
    provenance: dict[str, Any]


def _prepare(
    acquisition: str | os.PathLike[str] | Acquisition,
    out: str | os.PathLike[str],
    recipe: Reconstruction,
) -> _Job:
    """Open the input, build the problem, check the output may be written and can be held."""
    acq = (
        acquisition if isinstance(acquisition, Acquisition) else open_acquisition(acquisition, "r")
    )
    out = os.fspath(out)
    halves = half_paths(out) if recipe.split_halves else ()
    for path in (out, *halves):  # no input, nothing foreign (the halves too, before hours of work)
        check_output(path, "volume", inputs=[acq.path], resume=True)
    problem = build_problem(acq, recipe)
    if recipe.oracle and acq.truth is None:
        raise InputError(
            acq.path,
            f"has no truth volume: {option('--oracle', 'oracle=True')} needs simulated data",
        )
    if recipe.oracle and tuple(acq.truth.shape) != problem.grid.shape:
        raise ParameterError(
            f"{option('--oracle', 'oracle=True')} needs the reconstruction on the truth's grid "
            f"(no {option('--voxel-size-nm', 'voxel_size_nm=')})"
        )
    roi_radius = (
        _roi_radius_nm(acq) if recipe.oracle_radius_nm is None else float(recipe.oracle_radius_nm)
    )
    oracle_key = (recipe.oracle, roi_radius if recipe.oracle else None)
    provenance = {
        "input": os.path.abspath(acq.path),
        "method": problem.method,
        "iterations": problem.iterations,
        "iterations_rule": _rule_asked(recipe, problem),
        "scans": list(problem.models),
        "views": {k: list(v) for k, v in problem.views.items()},
        "alignment": _alignment_used(acq, problem.models),
        "excluded_untrusted": _excluded(acq, recipe, problem) if recipe.exclude_untrusted else None,
        "nonneg_every": problem.nonneg_every,
        "rtol": problem.rtol,
        "psf": {n: round(m.psf_sigma_px, 4) for n, m in problem.models.items()},
        "weights": dict(problem.weights),
        "oracle": bool(recipe.oracle),
        "oracle_radius_nm": float(roi_radius) if recipe.oracle and roi_radius else None,
        "software": f"sxtdist {_version.__version__}",
        "fingerprint": _fingerprint(acq, problem, recipe.iterations, oracle_key),
        "split_halves": [os.path.abspath(p) for p in half_paths(out)]
        if recipe.split_halves
        else None,
    }
    return _Job(acq, out, recipe, problem, roi_radius, provenance)


def _excluded(acq: Acquisition, recipe: Reconstruction, problem: Problem) -> dict[str, list[int]]:
    """Per scan, the stored views ``exclude_untrusted`` left out: those of ``recipe.views``
    (default all) that the problem does not use."""
    out = {}
    for name in problem.models:
        given = (recipe.views or {}).get(name)
        before = set(range(acq[name].geometry.n_angles) if given is None else map(int, given))
        dropped = sorted(before - set(problem.views.get(name, before)))
        if dropped:
            out[name] = dropped
    return out


def _resume_layout(job: _Job, restart: bool) -> tuple[Reconstruction, bool]:
    """``(recipe, resume)``: whether to resume the unfinished volume at ``job.out``.

    A complete volume is refused, and so is an unfinished one made otherwise, unless
    ``restart`` (the partial volume of a replacement: it is started over). The recipe
    takes the unfinished volume's block layout where it leaves it open: its finished
    blocks only count with the same layout, and the default layout follows the
    workers, which may differ on a resume. A layout asked for counts as the one it
    plans to (a block size is rounded to whole slice groups). Runs under the output's
    lock, before any cluster starts.
    """
    out, recipe = job.out, job.recipe
    if not _has_content(out):
        return recipe, False
    if restart and recognise(out) != "volume":  # a partial left half made (outputs.writing: ours)
        remove(out)
        return recipe, False
    vol = open_volume(out, mode="r")
    if vol.status == "complete" and not restart:
        raise OutputExistsError(out, f"is a complete volume already ({use_overwrite()})")
    meta = vol.meta
    stored = meta.get("plan") or {}
    layout = {
        k: getattr(recipe, k) if getattr(recipe, k) is not None else stored.get(k)
        for k in ("block_size", "halo")
    }
    same = (
        meta.get("provenance", {}).get("fingerprint") == job.provenance["fingerprint"]
        and tuple(stored.get("grid_shape", ())) == tuple(job.problem.grid.shape)
        and layout["block_size"] is not None
        and _planned_layout(job.problem, layout) == (stored.get("block_size"), stored.get("halo"))
    )
    if not same:
        if restart:
            return recipe, False
        raise OutputExistsError(
            out,
            "holds an unfinished reconstruction of other data or with other parameters "
            f"({_started_with(meta.get('provenance') or {})}); " + use_overwrite("start over"),
        )
    return recipe.replace(**layout), True


def _rule_asked(recipe: Reconstruction, problem: Problem) -> dict[str, Any]:
    """The provenance's ``iterations_rule`` before any count is chosen: ``fixed``, or
    ``oracle`` (each block stops at its best against the truth, ``iterations`` its cap)
    with the iterations asked for (``"auto"`` or a count); ``auto`` replaces it with
    the pilot's rule once the count is chosen (:func:`_auto_iterations`)."""
    if recipe.oracle:
        return {"rule": "oracle", "asked": recipe.iterations, "cap": problem.iterations}
    return {"rule": "fixed"}


def asked_iterations(prov: Mapping[str, Any]) -> int | str:
    """The iterations a volume's provenance says were asked for: the count of a fixed
    one, ``"auto"`` where a rule chose it, what was given with the oracle."""
    rule = prov.get("iterations_rule") or {}
    name = rule.get("rule", "fixed")
    if name == "fixed":
        return prov.get("iterations")
    if name == "oracle":
        return rule.get("asked", prov.get("iterations"))
    return AUTO


def check_resumable(
    acquisition: str | os.PathLike[str] | Acquisition,
    out: str | os.PathLike[str],
    recipe: Reconstruction | None = None,
    **options: Any,
) -> None:
    """Raise now what :func:`reconstruct` (same arguments) would raise of the output
    ``out`` before any work: a path it may not write, or an unfinished volume it would not
    resume (begun on other data, with other parameters or another block layout). Nothing
    is written; a batch checks every cell so before any cell runs."""
    recipe, _ = split_options(recipe, None, options)
    _resume_layout(_prepare(acquisition, out, recipe), restart=False)


def _alignment_used(acq: Acquisition, names: Iterable[str]) -> dict[str, str]:
    """How each scan of ``names`` was aligned, for the provenance: the method its alignment
    records (``anchor``, ``moments``, ``imod xf`` ...), or ``unaligned``."""
    return {
        n: str((acq[n].meta.get("alignment") or {}).get("method") or "aligned")
        if acq[n].aligned
        else "unaligned"
        for n in names
    }


def _tell_unaligned(job: _Job) -> None:
    """Name the scans reconstructed without shifts because they were never aligned: a
    forgotten ``sxtdist align`` otherwise shows only as a blurred volume."""
    names = [n for n, how in job.provenance["alignment"].items() if how == "unaligned"]
    if names:
        path = job.acq.path
        logger.info(
            "%s: %s %s not aligned: reconstructed without shifts (%s measures and stores them)",
            printable(path),
            "scans" if len(names) > 1 else "scan",
            ", ".join(names),
            option(f"sxtdist align {quoted(path)}", "sxtdist.align(acq)"),
        )


def _started_with(prov: Mapping[str, Any]) -> str:
    """What an unfinished volume's provenance says it was asked for, in a few words."""
    oracle = " with the oracle stop" if prov.get("oracle") else ""
    scans = ",".join(prov.get("scans") or ())
    return (
        f"started as {prov.get('method')}, iterations {asked_iterations(prov)}{oracle}, "
        f"scans {scans}"
    )


def _check_capacity(grid: VolumeGrid, out: str, resume: bool, replaces: str | None = None) -> None:
    """Refuse a volume the disk at ``out`` cannot hold (:func:`require_disk`).

    What is still to be written, uncompressed: level 0's blocks not done yet (by their
    share of the blocks, of the unfinished volume being resumed) and the pyramid
    (1/7 of level 0), written at the end. ``replaces``: the volume that ``out`` (written
    beside it) replaces, which stays until then: what the refusal advises is said of it.
    """
    level0 = 4 * math.prod(grid.shape)
    left = 1.0
    if resume:
        vol = open_volume(out, mode="r")
        left -= len(vol.blocks_done) / max(1, int(vol.meta["plan"]["n_blocks"]))
    what = f"a volume of {grid.shape} voxels of {grid.voxel_size_nm:g} nm"
    if left < 1:
        what += f" ({1 - left:.0%} of its blocks written)"
    try:
        require_disk(real_parent(out), level0 * (left + 1 / 7), what)  # not a hidden partial
    except OSError as exc:
        if replaces is None:
            raise  # "free space and run the same command again": it resumes
        kept = "; the unfinished replacement is kept to resume" if resume else ""
        raise with_hint(
            exc,
            replaces,
            f"{printable(replaces)} is left as it was: its replacement is written beside it "
            f"and swapped in when complete, so both must fit{kept}; free space, write "
            f"elsewhere, or remove {quoted(replaces)} and run without "
            f"{option('--overwrite', 'overwrite=True')}",
        ) from None


def _worth_resuming(exc: BaseException, path: str) -> bool:
    """Keep an unfinished volume that holds a finished block, whatever stopped it.

    An interruption (Ctrl-C, a cancelled batch), a full disk, a lost worker or a
    failing split half leave it marked running: the same command resumes it. Bad input
    found by a worker too: the finished blocks are kept (corrected in place, the same
    command resumes; re-imported, the data's id changes and the resume is refused). A
    volume without a finished block is removed.
    """
    from .volume import is_volume

    try:
        return is_volume(path) and bool(open_volume(path, mode="r").blocks_done)
    except SxtdistError:  # unreadable: not resumable (and the first error is the one told)
        return False


def _planned_layout(problem: Problem, layout: Mapping[str, int | None]) -> tuple[int, int]:
    """``(block size, halo)`` that :func:`plan_blocks` makes of a given block size."""
    models = list(problem.models.values())
    plan = plan_blocks(models, problem.grid, layout["block_size"], halo=layout["halo"])
    return plan.block_size, plan.halo


def _local_backend(ex: Execution) -> tuple[Execution, str | None, str]:
    """``(execution, backend, why)`` chosen on this machine, before any cluster starts.

    A local run picks the backend from this machine (a GPU needs a dask-cuda cluster,
    which the returned execution then asks for); a cluster given by the user (or
    distributed's current client) says by its workers' resources whether a GPU is there:
    then ``backend`` is ``None`` until :func:`_connect` asks it.
    """
    if ex.external or (ex.workers is None and current_client() is not None):
        return ex, None, ""
    backend, why = select_backend(ex.backend)
    return (ex.replace(cluster="local-cuda") if backend == "gpu" else ex), backend, why


@contextmanager
def _connect(ex: Execution, backend: str | None, why: str) -> Iterator[tuple[Any, str, str]]:
    """Yield ``(client, backend, why)``, the backend asked of the cluster if not chosen yet."""
    with get_client(ex) as c:
        if backend is None:
            backend, why = select_backend(ex.backend, client=c)
        yield c, backend, why


def _plan(client: Any, job: _Job, ex: Execution, backend: str) -> BlockPlan:
    """The block plan for the cluster's workers (and GPUs), said in the log."""
    problem, recipe = job.problem, job.recipe
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = worker_memory_limit(client)
    budget = ex.memory_budget or (int(limit * 0.6) if limit else None)
    models = list(problem.models.values())
    grid = problem.grid
    plan = plan_blocks(models, grid, recipe.block_size, budget, n_workers, recipe.halo)
    if backend == "gpu" and recipe.block_size is None:  # size blocks from the GPU's free memory
        n_workers = len(gpu_workers(client))
        free = cluster_gpu_free_bytes(client)
        b = gpu_block_size(models, grid, free, plan.halo, recipe.oracle)
        plan = plan_blocks(models, grid, b, budget, n_workers, recipe.halo)
        logger.info("GPU blocks of %d slices (%.1f GiB free per GPU)", b, free / 2**30)
    # with auto or an oracle the count is a cap; the chosen one is said when it is known
    capped = recipe.iterations == AUTO or recipe.oracle or recipe.rtol
    logger.info(
        "volume %s at %g nm from scans %s; %s, %s%d iterations",
        grid.shape,
        grid.voxel_size_nm,
        ", ".join(problem.models),
        problem.method,
        "at most " if capped else "",
        problem.iterations,
    )
    logger.info("%s", plan.describe())
    if limit:  # refused before anything is written
        hint = "pass a smaller --block-size" if plan.block_size > 1 else "use bigger workers"
        require_memory(plan.peak_bytes, f"the block plan ({hint})", limit)
    return plan


def _roi_radius_nm(acq: Acquisition) -> float | None:
    if "roi" not in acq.scans:
        return None
    return roi_diameter_px(acq["roi"].geometry, 1.0) / 2.0  # a 1 nm "voxel": the radius in nm


def _has_content(out: str) -> bool:
    return os.path.isdir(out) and not is_empty_folder(out)


def _open_or_create(
    out: str, grid: VolumeGrid, plan: BlockPlan, provenance: dict, resume: bool
) -> Volume:
    """The unfinished output to resume (checked by :func:`_resume_layout`), or a new one."""
    if resume:
        vol = open_volume(out)
        vol.update_meta(status="running")
        return vol
    attrs = {"provenance": provenance, "plan": plan.to_dict()}
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
