"""Align an acquisition: read it, run the registrations on Dask, store shifts and the report.

The maths is in the package's other modules; this module plans the work (one Dask
task per projection pair of the interior scan, one for the full scan; for large views
also one per view that prepares it once for all its pairs, :mod:`.tasks`), collects
the results, solves eq. 14 (:mod:`.shifts`), fits the intensity transform
(:mod:`.intensity`) and writes everything into the acquisition's metadata (unless
``dry_run``) and a report directory (:mod:`.report`).

>>> import sxtdist
>>> result = sxtdist.align("cell.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._progress import log
from ..dataset import Acquisition, open_acquisition
from ..errors import InputError, ParameterError, option
from ..execution import Execution
from ..geometry import ScanGeometry, angular_spacing_deg, without_rigid_translation
from ..outputs import check_output
from .diagnostics import log_pair_misfit, log_pairs_weighted_down, log_poor_peaks
from .gauge import axis_offset_px, sinusoid_basis
from .intensity import fit_intensity_transform
from .pairs import plan_pairs
from .resample import matching_blur_px
from .result import AlignmentResult
from .shifts import ROBUST_PAIRS, full_prior_weights, solve_joint, solve_shifts
from .tasks import (
    PairSettings,
    _full_task,
    pair_graph,
    prepares_views_apart,
    register_pair,
)

METHODS = ("anchor", "neighbour", "projection-matching")


INTENSITY_MODELS = ("dual_energy", "affine", "none")


def search_margin(shape: tuple[int, int], max_shift_px: float | None = None) -> tuple[int, int]:
    """The pairs' search range ``(my, mx)`` in interior pixels for views of ``shape``:
    ``ceil(max_shift_px)``, or by default 30 % of the view, at least 2 and at most 32."""
    if max_shift_px is not None:
        if max_shift_px < 1:
            raise ParameterError(
                f"{option('--max-shift', 'max_shift_px')} must be at least 1 px, got {max_shift_px}"
            )
        m = int(math.ceil(max_shift_px))
        if m > 0.45 * min(shape):
            raise ParameterError(
                f"{option('--max-shift', 'max_shift_px=')} {max_shift_px} px is too large for "
                f"{shape[0]} x {shape[1]} px views"
            )
        return m, m
    return tuple(max(2, min(32, int(0.3 * n))) for n in shape)  # type: ignore[return-value]


def plan(
    acq: Acquisition,
    scans: Sequence[str],
    method: str,
    anchor_window_deg: float | None = None,
) -> dict[str, Any]:
    """What :func:`align` will do: scans, methods and the interior pairs."""
    out: dict[str, Any] = {"scans": list(scans), "method": method}
    if "roi" in scans:
        roi = acq["roi"].geometry
        full_angles = None
        if method == "anchor":
            if "full" not in acq.scans:
                raise InputError(acq.path, "anchor alignment needs a 'full' scan (use neighbour)")
            full_angles = acq["full"].geometry.angles_deg
        out["pairs"] = plan_pairs(roi.angles_deg, full_angles, anchor_window_deg)
    return out


def align(
    acq: str | os.PathLike[str] | Acquisition,
    scans: Sequence[str] | None = None,
    method: str = "anchor",
    *,
    max_shift_px: float | None = None,
    smooth_px: float = 1.0,
    anchor_window_deg: float | None = None,
    rotation_model: bool = True,
    refine: bool = False,
    joint: bool = True,
    robust_pairs: float | None = ROBUST_PAIRS,
    intensity: str = "dual_energy",
    full_iterations: int | None = None,
    tol_px: float = 0.05,
    dry_run: bool = False,
    report: str | os.PathLike[str] | None = None,
    execution: Execution | None = None,
    client: Any = None,
    workers: int | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> AlignmentResult:
    """Align the scans of an acquisition and store the shifts in its metadata.

    Parameters
    ----------
    acq
        Path of the acquisition dataset (or an opened one).
    scans
        Which scans (default: all it has). The full scan is aligned first, by its
        row profiles and weighted centroids (and projection matching when
        ``full_iterations`` asks for it); the interior scan is then registered to it.
    method
        Interior scan: ``"anchor"`` (anchors plus neighbour chain, eq. 14) or
        ``"neighbour"`` (neighbour chain only, relative shifts with mean zero).
        ``"projection-matching"`` aligns only full-field scans (their own method).
    max_shift_px
        Largest shift searched, interior pixels (default 30 % of the view, ≤ 32).
    smooth_px
        Gaussian sigma (ROI px) added to every compared image against noise.
    anchor_window_deg
        Largest angle between an interior view and its anchor (default: half the
        full scan's angular step).
    rotation_model, refine
        See :func:`sxtdist.alignment.shifts.solve_shifts`.
    joint
        When both scans are aligned by anchors, also correct the full scan's
        shifts from the interior pairs (:func:`sxtdist.alignment.shifts.solve_joint`);
        not combined with ``refine``.
    robust_pairs
        A pair whose misfit is beyond this many robust standard deviations of all
        pairs' loses weight (a damaged frame; :func:`sxtdist.alignment.shifts.robust_pair_weights`).
        ``None`` or 0: plain least squares.
    intensity
        Intensity transform fitted between the scans and stored (``"none"``: skip).
    full_iterations, tol_px
        Projection-matching iterations after the full scan's moments and their
        stopping tolerance (px). Default: none (on sparse scans it made the moments'
        estimate worse; see :func:`sxtdist.alignment.fullscan.align_full_scan`), unless
        ``method="projection-matching"`` asks for it (then 10).
    dry_run
        Compute and report, but leave the dataset unchanged.
    report
        Directory for ``shifts.csv``, ``pairs.csv`` and ``alignment.png``
        (default ``<dataset>_alignment`` next to the dataset; ``""``: none).
    execution
        Where and how the tasks run (:class:`~sxtdist.execution.Execution`; default: a
        local cluster shared with the other calls of this process).
    client, workers, progress
        Shortcuts for those fields of ``execution``.

    Returns
    -------
    AlignmentResult
    """
    from ..distributed import get_client, run_tasks

    if method not in METHODS:
        raise ParameterError(f"unknown alignment method {method!r} (choose from {METHODS})")
    if intensity not in INTENSITY_MODELS:
        raise ParameterError(f"unknown intensity model {intensity!r} ({INTENSITY_MODELS})")
    if smooth_px < 0:
        raise ParameterError(f"smoothing must not be negative, got {smooth_px}")
    if robust_pairs is not None and not robust_pairs >= 0:
        raise ParameterError(
            f"robust pairs: a number of standard deviations >= 0 (0: off), got {robust_pairs}"
        )
    if full_iterations is None:
        full_iterations = 10 if method == "projection-matching" else 0
    if full_iterations < 0 or tol_px <= 0:
        raise ParameterError("projection matching needs iterations >= 0 and a positive tolerance")
    if not isinstance(acq, Acquisition):
        acq = open_acquisition(acq, mode="r" if dry_run else "r+")
    scans = list(scans or [s for s in ("full", "roi") if s in acq.scans])
    for name in scans:
        acq[name]
    if report is None:
        report = os.fspath(acq.path).rstrip("/")
        report = (report[:-5] if report.endswith(".zarr") else report) + "_alignment"
    if report:  # before the work: a report may replace only an earlier report
        check_output(report, "alignment-report", inputs=[acq.path], overwrite=True)
    if method == "projection-matching" and "roi" in scans:
        raise ParameterError(
            "projection matching needs the whole sample in view: use it for the full scan "
            f"({option('--scans full', 'scans=["full"]')}); align the interior scan with anchor or neighbour"
        )
    if method in ("anchor", "neighbour") and scans == ["full"]:
        method = "projection-matching"
    result = AlignmentResult()
    plan_info = plan(acq, scans, method, anchor_window_deg)
    margin = (
        search_margin(acq["roi"].geometry.detector_shape, max_shift_px) if "roi" in scans else None
    )
    ex = Execution.of(execution, client=client, workers=workers, progress=progress)
    progress = ex.progress
    t_start = time.perf_counter()
    with get_client(ex) as c:
        if "full" in scans:
            full = acq["full"]
            how = "row profiles and weighted centroids" + (
                f", then up to {full_iterations} projection-matching iterations"
                if full_iterations
                else ""
            )
            log(f"aligning 'full' ({full.geometry.n_angles} views): {how}", quiet)
            ((d, info),) = run_tasks(
                c,
                _full_task,
                [0],
                "align full",
                progress,
                array_path=full.path,
                geometry=full.geometry,
                max_iterations=full_iterations,
                tol_px=tol_px,
            )
            info["method"] = "moments" + ("+projection_matching" if full_iterations else "")
            result.shifts["full"], result.info["full"] = d, info
        if "roi" in scans:
            _align_roi(
                acq,
                result,
                plan_info["pairs"],
                method,
                c,
                margin=margin,
                smooth_px=smooth_px,
                robust_pairs=robust_pairs or None,
                rotation_model=rotation_model,
                refine=refine,
                joint=joint,
                intensity=intensity,
                progress=progress,
                quiet=quiet,
            )
    _center(acq, result, method)
    elapsed = time.perf_counter() - t_start
    for info in result.info.values():
        info["elapsed_s"] = elapsed
    if not dry_run:
        for name, d in result.shifts.items():
            acq.set_shifts(name, d, **_jsonable_info(result.info[name]))
        if result.intensity_transform is not None:
            acq.update_scan("roi", intensity_transform=result.intensity_transform)
        result.stored = True
    if report:
        from .report import write_report

        result.report_dir = write_report(os.fspath(report), acq, result)
    for name, d in result.shifts.items():
        log(
            f"{name}: {len(d)} shifts, rms {np.sqrt((d**2).mean()):.2f} px"
            + ("" if dry_run else " (stored)"),
            quiet,
        )
    return result


def _center(acq: Acquisition, result: AlignmentResult, method: str) -> None:
    """Take the rigid translation out of the new shifts, so the reconstruction stays centred.

    No alignment can determine it (it is the object's position); left in, it moves
    the reconstructed cell in its grid, by a few pixels for random jitter on a
    sparse scan. Scans tied by anchors lose their translation jointly. An interior
    scan anchored to a full scan aligned earlier keeps that scan's gauge.
    """
    tied = method == "anchor" and "full" in result.shifts and "roi" in result.shifts
    if tied:
        groups = [["full", "roi"]]
    else:
        anchored_to_stored = method == "anchor" and "full" in acq.scans
        groups = [
            [name]
            for name in result.shifts
            if not (name == "roi" and anchored_to_stored and "full" not in result.shifts)
        ]
    for names in groups:
        geoms = {n: acq[n].geometry for n in names}
        centred, t = without_rigid_translation({n: result.shifts[n] for n in names}, geoms)
        for n in names:
            result.shifts[n] = centred[n]
            result.info[n]["rigid_translation_removed_nm"] = [float(v) for v in t]
    if method == "neighbour" and "roi" in result.shifts:
        # relative shifts only: the axis is unknown too, so dx keeps no constant either
        d, angles = result.shifts["roi"], acq["roi"].geometry.angles_deg
        basis = sinusoid_basis(angles)
        d[:, 1] -= basis @ np.linalg.lstsq(basis, d[:, 1], rcond=None)[0]


def pair_settings(
    acq: Acquisition,
    full_geometry: ScanGeometry | None,
    margin: tuple[int, int],
    smooth_px: float = 1.0,
) -> PairSettings:
    """What every pair task of ``acq``'s interior scan needs (:func:`register_pair`,
    :func:`pair_graph`): where the views are, both geometries, the search margin and
    the blurs that bring the interior views to the full scan's resolution.

    ``full_geometry``: the full scan's geometry with the shifts the anchors should
    honour (``None``: neighbour pairs only).
    """
    roi = acq["roi"]
    full_scan = acq.scans.get("full")
    match = 0.0
    if full_geometry is not None:
        match = matching_blur_px(
            roi.geometry, full_geometry, roi.zone_plate_ozw_nm, full_scan.zone_plate_ozw_nm
        )
    return PairSettings(
        roi_array=roi.path,
        full_array=None if full_scan is None else full_scan.path,
        roi=roi.geometry.with_shifts(None),
        full=full_geometry,
        margin=margin,
        roi_blur_px=float(math.hypot(match, smooth_px)),
        anchor_blur_px=float(smooth_px),
        intensity_window_deg=0.5 * angular_spacing_deg(roi.geometry.angles_deg) + 1e-6,
    )


def _align_roi(acq, result, pairs, method, client, **kw) -> None:
    from ..distributed import run_graph, run_tasks

    g_roi = acq["roi"].geometry
    full_scan = acq.scans.get("full")
    use_anchors = method == "anchor"
    if not use_anchors:
        pairs = [p for p in pairs if p.kind == "neighbour"]
    g_full = None
    if full_scan is not None and use_anchors:
        g_full = full_scan.geometry
        if "full" in result.shifts:
            g_full = g_full.with_shifts(result.shifts["full"])
        elif not full_scan.aligned:
            log("warning: the full scan is not aligned; anchoring to its raw views", kw["quiet"])
    margin = kw["margin"]
    settings = pair_settings(acq, g_full, margin, kw["smooth_px"])
    n_anchor = sum(p.kind == "anchor" for p in pairs)
    prepared = prepares_views_apart(g_roi.detector_shape)
    views = ""
    if prepared:
        graph, keys = pair_graph(pairs, settings, uuid.uuid4().hex)
        views = f" (and {len(graph) - len(keys) - 1} tasks preparing the views once)"
    log(
        f"aligning 'roi' ({g_roi.n_angles} views): {n_anchor} anchor and "
        f"{len(pairs) - n_anchor} neighbour pairs, one task each{views}, search ±{margin} px",
        kw["quiet"],
    )
    if prepared:
        results = run_graph(client, graph, keys, "align roi pairs", kw["progress"])
    else:
        results = run_tasks(
            client, register_pair, pairs, "align roi pairs", kw["progress"], settings=settings
        )
    full_angles = None if g_full is None else g_full.angles_deg
    joint = kw["joint"] and use_anchors and "full" in result.shifts and not kw["refine"]
    if joint:
        # the interior chain also aligns the full views to each other (eq. 14 with the
        # full shifts as unknowns too)
        # the full scan's own estimate is worth a pair when it came from the weighted moments
        # alone; otherwise (plain centroid, or projection matching) it only fixes the gauge
        prior = full_prior_weights(result.info["full"], g_full.n_angles)
        d, delta, info = solve_joint(
            g_roi.n_angles,
            g_full.n_angles,
            g_full.pixel_size_nm / g_roi.pixel_size_nm,
            results,
            g_roi.angles_deg,
            full_angles,
            prior_weight=prior,
            robust_pairs=kw["robust_pairs"],
        )
        info["full_prior_weight_median"] = np.median(prior, axis=0).tolist()
        outliers = info["full_views_downweighted"]
        kept = info["full_views_downweighted_weights"]
        if outliers:
            angles = ", ".join(
                f"{g_full.angles_deg[j]:g}° (to {k:.0%})"
                for j, k in zip(outliers, kept, strict=True)
            )
            log(
                f"full views whose own shifts the interior pairs contradict, weighted down in "
                f"the joint solve (to the share of their weight shown): {angles}",
                kw["quiet"],
            )
        result.shifts["full"] = result.shifts["full"] + delta
        result.info["full"]["joint_with_roi"] = True
        result.info["full"]["joint_correction_rms_px"] = info["full_correction_rms_px"]
        result.info["full"]["joint_downweighted_views"] = outliers
        result.info["full"]["joint_downweighted_weights"] = kept
        result.info["full"]["axis_offset_px"] = axis_offset_px(
            result.shifts["full"][:, 1], g_full.angles_deg
        )
    else:
        d, info = solve_shifts(
            g_roi.n_angles,
            results,
            g_roi.angles_deg,
            full_angles,
            rotation_model=kw["rotation_model"] and use_anchors,
            refine=kw["refine"],
            robust_pairs=kw["robust_pairs"],
        )
    info.update(
        method=method,
        anchors=n_anchor,
        search_px=list(margin),
        mean_pair_seconds=float(np.mean([r.seconds for r in results])) if results else 0.0,
        peak_ncc_median=float(np.median([r.peak for r in results])) if results else None,
    )
    result.pair_misfit = info.pop("pair_misfit_px", None)
    result.pair_kept_weight = info.pop("pair_robust_weights", None)
    log_pair_misfit(info, results, result.pair_misfit, g_roi.angles_deg, margin, kw["quiet"])
    log_pairs_weighted_down(
        info, results, result.pair_kept_weight, g_roi.angles_deg, g_roi.n_angles, kw["quiet"]
    )
    log_poor_peaks(info, results, g_roi.angles_deg, kw["quiet"])
    result.shifts["roi"], result.info["roi"] = d, info
    result.pairs = results
    if kw["intensity"] != "none" and use_anchors:
        samples = [r.intensity_samples for r in results if r.intensity_samples is not None]
        if samples:
            ta, tb = np.concatenate(samples, axis=1)
            fits = {m: fit_intensity_transform(ta, tb, m) for m in ("dual_energy", "affine")}
            chosen = dict(fits[kw["intensity"]])
            chosen["alternative"] = fits[
                "affine" if kw["intensity"] == "dual_energy" else "dual_energy"
            ]
            chosen["pairs"] = len(samples)
            chosen["reference_scan"] = "full"
            result.intensity_transform = chosen


def _jsonable_info(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
