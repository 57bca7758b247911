"""Align an acquisition: read it, run the registrations on Dask, store shifts and the report.

The maths is in the package's other modules; this module plans the work (the full
scan's task; the interior scan's graph of coarse and fine registrations, :mod:`.tasks`),
collects the results, widens the searches whose peak lay on their edge, solves eq. 14
(:mod:`.shifts`), fits the intensity transform (:mod:`.intensity`) and writes everything
into the acquisition's metadata (unless ``dry_run``) and a report directory
(:mod:`.report`).

>>> import sxtdist
>>> result = sxtdist.align("cell.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..dataset import Acquisition, open_acquisition, shifts_change
from ..errors import (
    InputError,
    ParameterError,
    SxtdistWarning,
    describe_os_error,
    one_line,
    option,
    os_error,
    printable,
    quoted,
)
from ..execution import Execution
from ..geometry import ScanGeometry, angular_spacing_deg, without_rigid_translation
from ..lock import activity_lock
from ..outputs import check_can_write, check_output, require_writable
from .anchoring import ANCHORED_TO, full_reference
from .cut_stretches import cut_stretch_deg, views_in_cut_stretches
from .diagnostics import log_pair_misfit, log_pairs_weighted_down, log_poor_peaks
from .gauge import axis_offset_px, sinusoid_basis
from .intensity import fit_intensity_transform
from .options import AlignOptions, option_fields
from .pairs import PairResult, peak_inside_map, plan_pairs
from .resample import matching_blur_px
from .result import AlignmentResult
from .shifts import GAUGE_WEIGHT, full_prior_weights, pair_weights, solve_joint, solve_shifts
from .store import ShiftsNotStoredError, store
from .tasks import PairSettings, _full_task, pair_graph, register_widened
from .verdict import judge, own_estimates_unused

logger = logging.getLogger(__name__)

#: Views of at least this many pixels (the smaller side) per step of the coarse pass's
#: binning: 64 px, so its template is 64-127 px across.
COARSE_PIXELS = 64
#: Rounds of widened searches at most (each centred on the last edge peak).
WIDEN_ROUNDS = 3


def search_range(shape: Sequence[int], max_shift_px: float | None = None) -> tuple[int, int]:
    """The largest shift searched ``(my, mx)``, interior pixels, for views of ``shape``:
    ``ceil(max_shift_px)``, or by default 45 % of the view's smaller side (at least 2)."""
    if max_shift_px is None:
        r = max(2, int(0.45 * min(shape)))
        return r, r
    m = int(math.ceil(max_shift_px))
    if m > 0.45 * min(shape):
        raise ParameterError(
            f"{option('--max-shift', 'max_shift_px=')} {max_shift_px} px is too large for "
            f"{shape[0]} x {shape[1]} px views"
        )
    return m, m


def search_margin(shape: Sequence[int], max_shift_px: float | None = None) -> tuple[int, int]:
    """The pairs' own search margin ``(my, mx)`` (interior px) around what the coarse pass
    predicts: 30 % of the view, at least 2 and at most 32, never beyond the search range."""
    r = search_range(shape, max_shift_px)
    return tuple(min(max(2, min(32, int(0.3 * n))), rk) for n, rk in zip(shape, r))  # type: ignore[return-value]


def coarse_binning(shape: Sequence[int]) -> int:
    """The coarse pass's binning for interior views of ``shape`` (:data:`COARSE_PIXELS`)."""
    return max(1, min(shape) // COARSE_PIXELS)


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
    options: AlignOptions | None = None,
    execution: Execution | None = None,
    *,
    dry_run: bool = False,
    report: str | os.PathLike[str] | None = None,
    **shortcuts: Any,
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
    options
        How (:class:`~sxtdist.alignment.options.AlignOptions`: method, search, blur,
        robust rules, intensity model); default: its defaults.
    execution
        Where and how the tasks run (:class:`~sxtdist.execution.Execution`; default: a
        local cluster shared with the other calls of this process).
    dry_run
        Compute and report, but leave the dataset unchanged.
    report
        Directory for ``shifts.csv``, ``pairs.csv`` and ``alignment.png``
        (default ``<dataset>_alignment`` next to the dataset; ``""``: none).
    **shortcuts
        Any field of :class:`~sxtdist.alignment.options.AlignOptions` (``method=``,
        ``max_shift_px=`` ...) or of :class:`~sxtdist.execution.Execution` (``client=``,
        ``workers=``, ``progress=``) as a keyword replaces the one in ``options`` or
        ``execution``.

    Returns
    -------
    AlignmentResult
    """
    from ..distributed import get_client

    if isinstance(options, str):
        raise TypeError("align(acq, scans, options): give the method as method=...")
    mine = option_fields()
    opts = AlignOptions.of(options, **{k: v for k, v in shortcuts.items() if k in mine})
    ex = Execution.of(execution, **{k: v for k, v in shortcuts.items() if k not in mine})
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
    if not dry_run:  # a read-only acquisition is told now, not after the work
        _check_writable(acq)
        _warn_of_a_stale_interior(acq, scans)
    if report:  # and a report folder that cannot be written
        check_can_write(report)
    if opts.method == "projection-matching" and "roi" in scans:
        raise ParameterError(
            "projection matching needs the whole sample in view: use it for the full scan "
            f"({option('--scans full', 'scans=["full"]')}); align the interior scan with "
            "anchor or neighbour"
        )
    if opts.method in ("anchor", "neighbour") and scans == ["full"]:
        # the full scan's own method, with the iterations the method asked for
        opts = dataclasses.replace(
            opts, method="projection-matching", full_iterations=opts.projection_iterations
        )
    result = AlignmentResult()
    plan_info = plan(acq, scans, opts.method, opts.anchor_window_deg)
    if "roi" in scans:  # the search checked before any work
        search_range(acq["roi"].geometry.detector_shape, opts.max_shift_px)
    t_start = time.perf_counter()
    # one align of an acquisition at a time (a second one's shifts were stored over the
    # first's, the report showing the other's); a dry run stores nothing
    with nullcontext() if dry_run else activity_lock(acq.path, "aligned"):
        with get_client(ex) as client:
            if "full" in scans:
                _align_full(acq, result, opts, client, ex.progress)
            if "roi" in scans:
                _align_roi(acq, result, plan_info["pairs"], opts, client, ex.progress)
        _center(acq, result, opts.method)
        _record_anchoring(acq, result, opts.method)
        elapsed = time.perf_counter() - t_start
        for info in result.info.values():
            info["elapsed_s"] = elapsed
        _store_and_report(acq, result, dry_run, report)
    return result


def _check_writable(acq: Acquisition) -> None:
    """Refuse, before the work, an acquisition the shifts cannot be stored in."""
    require_writable(
        acq.path,
        "align stores its shifts in the acquisition; copy it somewhere writable, or align with "
        f"{option('--dry-run', 'dry_run=True')} (the shifts in the report only)",
    )


def _warn_of_a_stale_interior(acq: Acquisition, scans: Sequence[str]) -> None:
    """The full scan aligned again alone: an interior scan anchored to its earlier shifts
    keeps their gauge, which the new full shifts no longer share (review5 finding 7)."""
    roi = acq.scans.get("roi")
    if "roi" in scans or "full" not in scans or roi is None:
        return
    if (roi.meta.get("alignment") or {}).get("method") == "anchor":
        warnings.warn(
            f"{acq.path}: 'roi' was aligned to the earlier shifts of 'full'; align it again "
            f"({option('--scans roi', 'scans=["roi"]')}, or both scans) so that they "
            "keep one gauge",
            SxtdistWarning,
            stacklevel=3,
        )


def _align_full(
    acq: Acquisition, result: AlignmentResult, opts: AlignOptions, client: Any, progress: Any
) -> None:
    """The full scan's own alignment (one task): row profiles and weighted centroids, then
    projection matching if asked for."""
    from ..distributed import run_tasks

    full = acq["full"]
    iterations = opts.projection_iterations
    how = "row profiles and weighted centroids" + (
        f", then up to {iterations} projection-matching iterations" if iterations else ""
    )
    logger.info("aligning 'full' (%d views): %s", full.geometry.n_angles, how)
    ((d, info),) = run_tasks(
        client,
        _full_task,
        [0],
        "align full",
        progress,
        array_path=full.path,
        geometry=full.geometry,
        max_iterations=iterations,
        tol_px=opts.tol_px,
    )
    info["method"] = "moments" + ("+projection_matching" if iterations else "")
    result.shifts["full"], result.info["full"] = d, info


def _store_and_report(
    acq: Acquisition, result: AlignmentResult, dry_run: bool, report: Any
) -> None:
    """Store the shifts and the intensity transform (unless ``dry_run``), write the report
    and log a line per scan."""
    unstored = None
    if not dry_run:
        changes = {
            name: shifts_change(d, **_jsonable_info(result.info[name]))
            for name, d in result.shifts.items()
        }
        if result.intensity_transform is not None:
            changes.setdefault("roi", {})["intensity_transform"] = result.intensity_transform
        try:  # all scans at once, waiting for an import's lock; saved if it cannot be
            store(acq, changes)
            result.stored = True
        except ShiftsNotStoredError as exc:
            unstored = exc
    if report:
        from .report import write_report

        try:
            result.report_dir = write_report(os.fspath(report), acq, result)
        except Exception as exc:
            if unstored is None and not result.stored:
                raise  # a dry run: the report is all it makes
            failed = os_error(exc)
            why = describe_os_error(failed) if failed is not None else one_line(exc)
            stored = f"the shifts are stored in {quoted(acq.path)}; " if result.stored else ""
            warnings.warn(
                f"{stored}the alignment report {printable(report)} was not written: {why}",
                SxtdistWarning,
                stacklevel=3,
            )
    if unstored is not None:  # the one command that stores it is what the user must see
        raise unstored
    for name, d in result.shifts.items():
        logger.info(
            "%s: %d shifts, rms %.2f px%s",
            name,
            len(d),
            np.sqrt((d**2).mean()),
            "" if dry_run else " (stored)",
        )


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


def _record_anchoring(acq: Acquisition, result: AlignmentResult, method: str) -> None:
    """Record in the interior's alignment which full scan its anchors saw (:mod:`.anchoring`):
    this run's final shifts, else the stored ones."""
    if method != "anchor" or "roi" not in result.shifts or "full" not in acq.scans:
        return
    full = acq["full"]
    g = full.geometry
    if "full" in result.shifts:
        g = g.with_shifts(result.shifts["full"])
    result.info["roi"][ANCHORED_TO] = full_reference(g, full.meta.get("data_id"))


def pair_settings(
    acq: Acquisition,
    full_geometry: ScanGeometry | None,
    options: AlignOptions | None = None,
) -> PairSettings:
    """What every pair task of ``acq``'s interior scan needs (:func:`pair_graph`): where the
    views are, both geometries, the searches (:func:`search_range`, :func:`search_margin`,
    :func:`coarse_binning`) and the blurs that bring the interior views to the full scan's
    resolution.

    ``full_geometry``: the full scan's geometry with the shifts the anchors should
    honour (``None``: neighbour pairs only).
    """
    opts = options or AlignOptions()
    roi = acq["roi"]
    full_scan = acq.scans.get("full")
    match = 0.0
    if full_geometry is not None:
        match = matching_blur_px(
            roi.geometry, full_geometry, roi.zone_plate_ozw_nm, full_scan.zone_plate_ozw_nm
        )
    shape = roi.geometry.detector_shape
    return PairSettings(
        roi_array=roi.path,
        full_array=None if full_scan is None else full_scan.path,
        roi=roi.geometry.with_shifts(None),
        full=full_geometry,
        margin=search_margin(shape, opts.max_shift_px),
        roi_blur_px=float(math.hypot(match, opts.smooth_px)),
        anchor_blur_px=float(opts.smooth_px),
        intensity_window_deg=0.5 * angular_spacing_deg(roi.geometry.angles_deg) + 1e-6,
        search_range=search_range(shape, opts.max_shift_px),
        coarse_bin=coarse_binning(shape),
    )


def _full_geometry_for_anchors(acq: Acquisition, result: AlignmentResult) -> ScanGeometry:
    """The full scan's geometry with the shifts the anchors honour: this run's, else the
    stored ones (a warning if there are none)."""
    g_full = acq["full"].geometry
    if "full" in result.shifts:
        return g_full.with_shifts(result.shifts["full"])
    if not acq["full"].aligned:
        warnings.warn(
            "the full scan is not aligned; anchoring to its raw views", SxtdistWarning, stacklevel=4
        )
    return g_full


def _align_roi(
    acq: Acquisition,
    result: AlignmentResult,
    pairs: Sequence,
    opts: AlignOptions,
    client: Any,
    progress: Any,
) -> None:
    """Register the interior scan's pairs, solve its shifts (and correct the full scan's
    with them), record what the pairs say, fit the intensity transform."""
    g_roi = acq["roi"].geometry
    use_anchors = opts.method == "anchor"
    if not use_anchors:
        pairs = [p for p in pairs if p.kind == "neighbour"]
    g_full = None
    if "full" in acq.scans and use_anchors:
        g_full = _full_geometry_for_anchors(acq, result)
    settings = pair_settings(acq, g_full, opts)
    results, timing = _register_pairs(
        pairs, settings, opts.coarse and use_anchors, client, progress
    )
    d, info = _solve_roi(acq, result, results, g_full, opts)
    n_anchor = sum(p.kind == "anchor" for p in pairs)
    info.update(
        method=opts.method,
        anchors=n_anchor,
        search_px=list(settings.margin),
        search_range_px=list(settings.search_range),
        coarse_bin=settings.coarse_bin if opts.coarse and use_anchors else None,
        mean_pair_seconds=float(np.mean([r.seconds for r in results])) if results else 0.0,
        peak_ncc_median=float(np.median([r.peak for r in results])) if results else None,
        **timing,
    )
    result.pair_misfit = info.pop("pair_misfit_px", None)
    result.pair_kept_weight = info.pop("pair_robust_weights", None)
    log_pair_misfit(info, results, result.pair_misfit, g_roi.angles_deg, settings.search_range)
    log_pairs_weighted_down(
        info, results, result.pair_kept_weight, g_roi.angles_deg, g_roi.n_angles
    )
    log_poor_peaks(info, results, g_roi.angles_deg)
    full_angles = None if g_full is None else g_full.angles_deg
    _record_verdict(result, info, results, g_roi.angles_deg, full_angles)
    result.shifts["roi"], result.info["roi"] = d, info
    result.pairs = results
    if opts.intensity != "none" and use_anchors:
        result.intensity_transform = _fit_intensity(results, opts.intensity)


def _register_pairs(
    pairs: Sequence, settings: PairSettings, coarse: bool, client: Any, progress: Any
) -> tuple[list[PairResult], dict]:
    """Every pair's registration (:func:`~sxtdist.alignment.tasks.pair_graph`), then the
    searches whose peak lay on their edge widened around it (up to :data:`WIDEN_ROUNDS`
    times, never beyond the search range). Returns the results and their timing."""
    from ..distributed import run_graph, run_tasks

    g_roi = settings.roi
    workers = len(client.scheduler_info().get("workers", {})) or 1
    tasks = pair_graph(pairs, settings, uuid.uuid4().hex, coarse=coarse, workers=workers)
    n_anchor = sum(p.kind == "anchor" for p in pairs)
    logger.info(
        "aligning 'roi' (%d views): %d anchor and %d neighbour pairs (%d tasks in all), "
        "search ±%s px around %s, at most ±%s px",
        g_roi.n_angles,
        n_anchor,
        len(pairs) - n_anchor,
        len(tasks.graph) - 1,
        settings.margin,
        "the coarse pass's prediction" if coarse else "zero",
        settings.search_range,
    )
    t0 = time.perf_counter()
    # the bar counts pairs, which each stretch reports as it registers them: one task per
    # worker, a bar of tasks stood still until the end
    units = ([len(tasks.graph[k][1]) for k in tasks.keys], "pair")
    got = run_graph(client, tasks.graph, tasks.keys, "align roi pairs", progress, units)
    results, coarse_results = tasks.results(got)
    own = {id(r) for r in coarse_results}  # unbinned, the anchors' own registrations
    timing = {
        "pairs_seconds": time.perf_counter() - t0,
        "pairs_widened": 0,
        # task seconds, summed: the coarse pass (with no binning, the anchors' own) and
        # the rest of the registrations
        "coarse_task_seconds": float(sum(r.seconds for r in coarse_results)),
        "fine_task_seconds": float(sum(r.seconds for r in results if id(r) not in own)),
    }
    for _ in range(WIDEN_ROUNDS):
        edge = [k for k, r in enumerate(results) if _can_widen(r, settings)]
        if not edge:
            break
        t1 = time.perf_counter()
        targets = [(results[k].pair, results[k].shift) for k in edge]
        again = run_tasks(
            client, register_widened, targets, "widen roi pairs", progress, settings=settings
        )
        for k, r in zip(edge, again, strict=True):
            results[k] = r
        timing["pairs_widened"] += len(edge)
        timing["widen_seconds"] = timing.get("widen_seconds", 0.0) + time.perf_counter() - t1
    return results, timing


def _record_verdict(
    result: AlignmentResult,
    info: dict,
    results: list[PairResult],
    roi_angles: np.ndarray,
    full_angles: np.ndarray | None = None,
) -> None:
    """The verdict (:func:`~sxtdist.alignment.verdict.judge`) into each scan's record; a
    warning naming the views to check unless it is ``trusted``."""
    full = result.info.get("full", {})
    kept = full.get("joint_downweighted_weights") or []
    rejected = [j for j, k in zip(full.get("joint_downweighted_views") or [], kept) if k == 0]
    rejected = sorted({*rejected, *(full.get("cut_views") or [])})
    no_signal = _no_signal(full)
    cut_stretch = None
    if full_angles is not None and full.get("joint_with_roi"):
        # the full views whose own dx ties nothing: their runs, and the interior there
        t0 = time.perf_counter()
        span = cut_stretch_deg(full_angles, sorted({*rejected, *no_signal}))
        info["cut_stretch_deg"] = span.round(2).tolist()
        roi_named, full_named = views_in_cut_stretches(roi_angles, full_angles, span)
        cut_stretch = {"roi": roi_named.tolist(), "full": full_named.tolist()}
        info["cut_stretch_flagged"] = cut_stretch
        info["cut_stretch_seconds"] = time.perf_counter() - t0
    weights = pair_weights(results, roi_angles)
    verdict = judge(
        results,
        result.pair_misfit,
        result.pair_kept_weight,
        weights,
        len(roi_angles),
        rejected,
        info.get("leave_one_out_flagged") or (),
        no_signal,
        {
            "pairs_alone": info.get("pairs_alone_flagged") or {},
            "weakly_tied": {"roi": info.get("weakly_tied_views") or ()},
            "cut_stretch": cut_stretch or {},
            "own_unused": own_estimates_unused(
                info.get("full_views_gauge_only") or (),
                len(roi_angles),
                0 if full_angles is None else len(full_angles),
            ),
        },
    )
    info["verdict"], info["check_views"] = verdict.scan_line("roi"), sorted(verdict.roi)
    if "full" in result.info:
        full["verdict"], full["check_views"] = verdict.scan_line("full"), sorted(verdict.full)
    if not verdict.trusted:
        warnings.warn(f"alignment: {verdict.line()}", SxtdistWarning, stacklevel=4)
    else:
        logger.info("alignment verdict: trusted")


def _no_signal(full: dict) -> list[int]:
    """The full views with no signal: constant ones, and those whose centroid noise is
    not finite (nothing to weigh the centroid by)."""
    sigma = np.asarray(full.get("weighted_centroid_sigma_px") or [], float)
    blank = {*(full.get("no_signal_views") or []), *np.flatnonzero(~np.isfinite(sigma)).tolist()}
    return sorted(int(j) for j in blank)


def _can_widen(result: PairResult, settings: PairSettings) -> bool:
    """Whether a pair's peak lies on the edge of its search with room beyond it: inside
    the search range, on an axis where it sits on the edge."""
    if peak_inside_map(result):
        return False
    margin = np.asarray(result.ncc.shape) // 2
    edge = np.abs(result.shift) >= margin - 0.5
    if result.window is not None:
        w = result.window
        edge |= np.abs(result.shift - w.centre) >= w.radius - 0.5
    room = np.abs(result.shift) < np.asarray(settings.search_range) - 0.5
    return bool(np.any(edge & room))


def _solve_roi(
    acq: Acquisition,
    result: AlignmentResult,
    results: list[PairResult],
    g_full: ScanGeometry | None,
    opts: AlignOptions,
) -> tuple[np.ndarray, dict]:
    """The interior shifts from the pairs: jointly with corrections to the full scan's
    (stored into ``result``) when both are aligned by anchors, else on their own."""
    g_roi = acq["roi"].geometry
    use_anchors = opts.method == "anchor"
    full_angles = None if g_full is None else g_full.angles_deg
    if not (opts.joint and use_anchors and "full" in result.shifts and not opts.refine):
        return solve_shifts(
            g_roi.n_angles,
            results,
            g_roi.angles_deg,
            full_angles,
            rotation_model=opts.rotation_model and use_anchors,
            refine=opts.refine,
            robust_pairs=opts.robust_pairs or None,
        )
    # the interior chain also aligns the full views to each other (eq. 14 with the full
    # shifts as unknowns too); the full scan's own estimate is worth a pair when it came
    # from the weighted moments alone, otherwise (plain centroid, or projection
    # matching) it only fixes the gauge
    prior = full_prior_weights(result.info["full"], g_full.n_angles)
    d, delta, info = solve_joint(
        g_full.pixel_size_nm / g_roi.pixel_size_nm,
        results,
        g_roi.angles_deg,
        full_angles,
        prior_weight=prior,
        robust=opts.robust_prior or None,
        robust_pairs=opts.robust_pairs or None,
    )
    info["full_prior_weight_median"] = np.median(prior, axis=0).tolist()
    # the full views whose own shifts only fix the gauge: the verdict reads them
    info["full_views_gauge_only"] = np.flatnonzero(prior.max(axis=1) <= GAUGE_WEIGHT).tolist()
    outliers = info["full_views_downweighted"]
    kept = info["full_views_downweighted_weights"]
    if outliers:
        angles = ", ".join(
            f"{g_full.angles_deg[j]:g}° (to {k:.0%})" for j, k in zip(outliers, kept, strict=True)
        )
        logger.info(
            "full views whose own shifts the interior pairs contradict, weighted down in "
            "the joint solve (to the share of their weight shown): %s",
            angles,
        )
    result.shifts["full"] = result.shifts["full"] + delta
    full_info = result.info["full"]
    full_info["joint_with_roi"] = True
    full_info["joint_correction_rms_px"] = info["full_correction_rms_px"]
    full_info["joint_downweighted_views"] = outliers
    full_info["joint_downweighted_weights"] = kept
    full_info["axis_offset_px"] = axis_offset_px(result.shifts["full"][:, 1], g_full.angles_deg)
    return d, info


def _fit_intensity(results: list[PairResult], model: str) -> dict | None:
    """The intensity transform from the anchors' paired transmissions: ``model`` fitted,
    the other model beside it; ``None`` without samples."""
    samples = [r.intensity_samples for r in results if r.intensity_samples is not None]
    if not samples:
        return None
    ta, tb = np.concatenate(samples, axis=1)
    fits = {m: fit_intensity_transform(ta, tb, m) for m in ("dual_energy", "affine")}
    chosen = dict(fits[model])
    chosen["alternative"] = fits["affine" if model == "dual_energy" else "dual_energy"]
    chosen["pairs"] = len(samples)
    chosen["reference_scan"] = "full"
    return chosen


def _jsonable_info(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
