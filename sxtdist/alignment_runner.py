"""Align an acquisition: read it, run the registrations on Dask, store shifts and the report.

The maths is in :mod:`sxtdist.alignment`; this module plans the work (one Dask task
per projection pair of the interior scan, one for the full scan; for large views also
one per view that prepares it once for all its pairs), collects the
results, solves eq. 14, fits the intensity transform and writes everything into
the acquisition's metadata (unless ``dry_run``) and a report directory.

>>> import sxtdist
>>> result = sxtdist.align("cell.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._progress import log
from .alignment import (
    ROBUST_PAIRS,
    Pair,
    PairResult,
    align_full_scan,
    anchor_on_roi_grid,
    axis_offset_px,
    centred_spectrum,
    fit_intensity_transform,
    gaussian_blur,
    locate_peak,
    matching_blur_px,
    ncc_map,
    ncc_map_in_rectangle,
    plan_pairs,
    rectangle_spectrum,
    rms,
    shift_errors,
    sinusoid_basis,
    solve_joint,
    solve_shifts,
)
from .dataset import Acquisition, open_acquisition, open_projections, read_projection
from .distributed import reuse_freed_memory
from .errors import InputError, ParameterError
from .geometry import ScanGeometry, angular_spacing_deg, without_rigid_translation

METHODS = ("anchor", "neighbour", "projection-matching")
INTENSITY_MODELS = ("dual_energy", "affine", "none")


@dataclass(frozen=True)
class PairSettings:
    """What every pair task needs besides its pair (small: sent with each task)."""

    roi_array: str
    full_array: str | None
    roi: ScanGeometry
    full: ScanGeometry | None
    margin: tuple[int, int]
    roi_blur_px: float
    anchor_blur_px: float
    intensity_window_deg: float
    max_samples: int = 400


@dataclass
class AlignmentResult:
    """What :func:`align` found: per scan shifts, a record of how, and the pair results."""

    shifts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    pairs: list[PairResult] = field(default_factory=list)
    #: ``(len(pairs), 2)``: each pair's measured peak less the one the solved shifts
    #: predict (``dy, dx``, interior px; NaN for a pair whose peak lay on the edge of its
    #: search and was left out). Large where the solution disagrees with a registration.
    pair_misfit: np.ndarray | None = None
    #: ``(len(pairs),)``: the share of its weight each pair kept in the solve (1 for most;
    #: less for a pair the others contradict; NaN for one left out).
    pair_kept_weight: np.ndarray | None = None
    intensity_transform: dict | None = None
    report_dir: str | None = None
    stored: bool = False

    def error_arrays(self, acq: Acquisition) -> dict[str, np.ndarray]:
        """``(n_angles, 2)`` errors (px) of each scan's shifts that the simulation has true
        shifts for, less the one object translation that best explains them all
        (:func:`~sxtdist.alignment.shift_errors`); empty without a truth."""
        truth = (acq.truth_meta or {}).get("shifts_px") or {}
        found = {name: d for name, d in self.shifts.items() if name in truth}
        if not found:
            return {}
        return shift_errors(found, truth, {name: acq[name].geometry for name in found})

    def errors(self, acq: Acquisition) -> dict[str, float]:
        """RMS of :meth:`error_arrays` per scan (px)."""
        return {name: rms(e) for name, e in self.error_arrays(acq).items()}


#: Interior views of at least this many pixels are prepared in tasks of their own (an
#: interior view read, blurred and transformed, a full view resampled onto the interior
#: grid and transformed), once each, and handed to the pair tasks; smaller ones inside
#: each pair task, where a task of its own would cost more than it saves. Each interior
#: view enters up to three pairs and each full view every pair it anchors. With one
#: transform per view, 256² views took 35-40 % less time on 1 worker and 15-25 % less
#: on 2 this way, 128² views about the same on 2 workers (a ``/tmp`` script,
#: docs/alignment.md); the ``small`` preset's 128 x 60 views were slower with the extra
#: tasks before the shared transforms.
PREPARED_VIEW_PIXELS = 256 * 256


def prepares_views_apart(view_shape: Sequence[int]) -> bool:
    """Whether interior views of this shape are prepared in tasks of their own
    (:data:`PREPARED_VIEW_PIXELS`)."""
    return math.prod(view_shape) >= PREPARED_VIEW_PIXELS


#: A prepared interior view: the view, blurred, and its :func:`centred_spectrum` in the
#: pairs' frame, which its neighbour pairs and its anchor pair share.
PreparedView = tuple[np.ndarray, np.ndarray]
#: A prepared anchor: the full view on the interior grid plus the margin, its validity
#: mask, and the spectrum of its valid rectangle (``None`` if it is not one).
PreparedAnchor = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _padded_shape(view_shape: Sequence[int], margin: tuple[int, int]) -> tuple[int, int]:
    return (view_shape[0] + 2 * margin[0], view_shape[1] + 2 * margin[1])


def prepare_roi_view(index: int, settings: PairSettings) -> PreparedView:
    """Interior view ``index`` as the pairs compare it: blurred to the full scan's
    resolution, with its transform for the correlations (one for all its pairs)."""
    reuse_freed_memory()
    view = gaussian_blur(read_projection(settings.roi_array, index), settings.roi_blur_px)
    return view, centred_spectrum(view, view.shape, _padded_shape(view.shape, settings.margin))


def prepare_anchor(full_index: int, mirrored: bool, settings: PairSettings) -> PreparedAnchor:
    """Full view ``full_index`` (its mirror image for ``mirrored``) resampled onto the interior
    grid plus the search margin and blurred by ``--smooth``, with its validity mask and
    the transform of its valid rectangle (one for all the pairs it anchors)."""
    reuse_freed_memory()
    s = settings
    view = read_projection(s.full_array, full_index)
    ref, mask = anchor_on_roi_grid(view, s.full, full_index, s.roi, s.margin, mirrored)
    ref = gaussian_blur(ref, s.anchor_blur_px)
    return ref, mask, rectangle_spectrum(ref, mask, s.roi.detector_shape)


def register_prepared(
    pair: Pair, template: PreparedView, other: PreparedView | PreparedAnchor, settings: PairSettings
) -> PairResult:
    """Register one pair from its prepared views (:func:`prepare_roi_view`,
    :func:`prepare_anchor`): ``template`` is interior view ``pair.i``, ``other`` interior
    view ``pair.j`` for a neighbour pair or the anchor.

    Anchor pairs near the same angle also return paired transmissions
    ``(T_full, T_roi)`` over the overlap for the intensity-transform fit.
    """
    reuse_freed_memory()
    t0 = time.perf_counter()
    s = settings
    tpl, tpl_spectrum = template
    spectra = {"template_spectrum": tpl_spectrum}
    if pair.kind == "anchor":
        ref, mask, spectra["reference_spectrum"] = other
        ncc = ncc_map(tpl, ref, None, mask, **spectra)
    else:  # the other view padded by the margin, without making the padded frame
        view, spectra["reference_spectrum"] = other
        frame = _padded_shape(view.shape, s.margin)
        ncc = ncc_map_in_rectangle(tpl, view, s.margin, frame, **spectra)
    shift, peak, quality = locate_peak(ncc)
    samples = None
    if pair.kind == "anchor" and pair.delta_deg <= s.intensity_window_deg:
        samples = _intensity_samples(tpl, ref, mask, shift, s.margin, s.max_samples, pair.i)
    return PairResult(
        pair, ncc.astype(np.float32), shift, peak, quality, time.perf_counter() - t0, samples
    )


def register_pair(pair: Pair, settings: PairSettings) -> PairResult:
    """One Dask task: prepare the pair's two views and register them (views smaller than
    :data:`PREPARED_VIEW_PIXELS`). ``seconds`` includes the preparation."""
    t0 = time.perf_counter()
    template = prepare_roi_view(pair.i, settings)
    if pair.kind == "anchor":
        other = prepare_anchor(pair.j, pair.mirrored, settings)
    else:
        other = prepare_roi_view(pair.j, settings)
    result = register_prepared(pair, template, other, settings)
    result.seconds = time.perf_counter() - t0
    return result


def pair_graph(
    pairs: Sequence[Pair], settings: PairSettings, token: str, roi_angles: Sequence[float]
) -> tuple[dict[str, Any], list[str], dict[str, float]]:
    """The task graph that prepares every view once and registers each pair in a task of
    its own (for :func:`sxtdist.distributed.run_graph`).

    Returns the graph, the pairs' keys, and each task's place along the interior scan in
    ``[0, 1)``: interior view ``i``'s rank in angle, for the view, the pairs it is the
    template of, and the anchors it is the first to need; by it ``run_graph`` keeps a
    stretch of consecutive views, their pairs and anchors on one worker. ``token`` makes
    the keys unique to this run (a cluster may align several datasets).
    """
    s_key = f"align-settings-{token}"
    graph: dict[str, Any] = {s_key: settings}
    position: dict[str, float] = {}
    rank = np.argsort(np.argsort(np.asarray(roi_angles, float), kind="stable"), kind="stable")

    def at(key: str, view: int) -> str:
        position.setdefault(key, (rank[view] + 0.5) / len(rank))
        return key

    def roi_view(i: int) -> str:
        key = at(f"align-roi-view-{token}-{i}", i)
        graph.setdefault(key, (prepare_roi_view, i, s_key))
        return key

    keys = []
    for n, p in enumerate(pairs):
        if p.kind == "anchor":
            side = "mirrored" if p.mirrored else "direct"
            other = at(f"align-anchor-view-{token}-{p.j}-{side}", p.i)
            graph.setdefault(other, (prepare_anchor, p.j, p.mirrored, s_key))
        else:
            other = roi_view(p.j)
        key = at(f"align-pair-{token}-{n}", p.i)
        graph[key] = (register_prepared, p, roi_view(p.i), other, s_key)
        keys.append(key)
    return graph, keys, position


def _intensity_samples(tpl, ref, mask, shift, margin, k, seed) -> np.ndarray | None:
    """``(2, k)`` transmissions (full, roi) at matching pixels after registration."""
    from scipy import ndimage

    h, w = tpl.shape
    ys = np.arange(h, dtype=float) + margin[0] + shift[0]
    xs = np.arange(w, dtype=float) + margin[1] + shift[1]
    ok = (_nearest_on_grid(mask, ys, xs) & np.isfinite(tpl)).ravel()
    ref_on = None
    if not np.isfinite(ref).all():  # only then can its spline be too: interpolate everywhere
        coords = np.stack(np.meshgrid(ys, xs, indexing="ij")).reshape(2, -1)
        ref_on = ndimage.map_coordinates(ref, coords, order=3, mode="nearest")
        ok &= np.isfinite(ref_on)
    idx = np.flatnonzero(ok)
    if idx.size < 10:
        return None
    pick = np.random.default_rng(seed).choice(idx, size=min(k, idx.size), replace=False)
    if ref_on is None:  # only the k picked pixels (a whole 1024² frame: ~0.1 s)
        at = np.stack([ys[pick // w], xs[pick % w]])
        ref_picked = ndimage.map_coordinates(ref, at, order=3, mode="nearest")
    else:
        ref_picked = ref_on[pick]
    return np.exp(-np.stack([ref_picked, tpl.ravel()[pick]])).astype(np.float32)


def _nearest_on_grid(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mask`` at the nearest pixel to every ``(rows[i], cols[j])``, False off the array.

    What ``ndimage.map_coordinates(mask, meshgrid(rows, cols), order=0) > 0.5`` gives
    (its rounding, ``floor(c + 0.5)``, and its ``constant`` edge: outside ``[0, n - 1]``),
    by indexing: the whole frame's spline-free lookup took 0.1 s at 1024².
    """

    def axis(c: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        inside = (c >= 0) & (c <= n - 1)
        return np.where(inside, np.floor(c + 0.5), 0).astype(np.intp), inside

    (iy, vy), (ix, vx) = axis(rows, mask.shape[0]), axis(cols, mask.shape[1])
    return np.asarray(mask, bool)[np.ix_(iy, ix)] & vy[:, None] & vx[None, :]


def _full_task(_: int, array_path: str, geometry: ScanGeometry, **kw: Any) -> tuple:
    views = np.asarray(open_projections(array_path)[:], dtype=np.float32)
    t0 = time.perf_counter()
    d, info = align_full_scan(views, geometry, **kw)
    info["seconds"] = time.perf_counter() - t0
    return d, info


def search_margin(shape: tuple[int, int], max_shift_px: float | None = None) -> tuple[int, int]:
    """The pairs' search range ``(my, mx)`` in interior pixels for views of ``shape``:
    ``ceil(max_shift_px)``, or by default 30 % of the view, at least 2 and at most 32."""
    if max_shift_px is not None:
        if max_shift_px < 1:
            raise ParameterError(f"--max-shift must be at least 1 px, got {max_shift_px}")
        m = int(math.ceil(max_shift_px))
        if m > 0.45 * min(shape):
            raise ParameterError(
                f"--max-shift {max_shift_px} px is too large for {shape[0]} x {shape[1]} px views"
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
    client: Any = None,
    scheduler: str | None = None,
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
        See :func:`sxtdist.alignment.solve_shifts`.
    joint
        When both scans are aligned by anchors, also correct the full scan's
        shifts from the interior pairs (:func:`sxtdist.alignment.solve_joint`);
        not combined with ``refine``.
    robust_pairs
        A pair whose misfit is beyond this many robust standard deviations of all
        pairs' loses weight (a damaged frame; :func:`sxtdist.alignment.robust_pair_weights`).
        ``None`` or 0: plain least squares.
    intensity
        Intensity transform fitted between the scans and stored (``"none"``: skip).
    full_iterations, tol_px
        Projection-matching iterations after the full scan's moments and their
        stopping tolerance (px). Default: none (on sparse scans it made the moments'
        estimate worse; see :func:`sxtdist.alignment.align_full_scan`), unless
        ``method="projection-matching"`` asks for it (then 10).
    dry_run
        Compute and report, but leave the dataset unchanged.
    report
        Directory for ``shifts.csv``, ``pairs.csv`` and ``alignment.png``
        (default ``<dataset>_alignment`` next to the dataset; ``""``: none).
    client, scheduler, workers
        Where the tasks run (see :func:`sxtdist.distributed.get_client`).

    Returns
    -------
    AlignmentResult
    """
    from .distributed import get_client, run_tasks

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
    if method == "projection-matching" and "roi" in scans:
        raise ParameterError(
            "projection matching needs the whole sample in view: use it for the full scan "
            "(--scans full); align the interior scan with anchor or neighbour"
        )
    if method in ("anchor", "neighbour") and scans == ["full"]:
        method = "projection-matching"
    result = AlignmentResult()
    plan_info = plan(acq, scans, method, anchor_window_deg)
    margin = (
        search_margin(acq["roi"].geometry.detector_shape, max_shift_px) if "roi" in scans else None
    )
    t_start = time.perf_counter()
    with get_client(client=client, scheduler=scheduler, workers=workers) as c:
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
    if report is None:
        report = os.fspath(acq.path).rstrip("/")
        report = (report[:-5] if report.endswith(".zarr") else report) + "_alignment"
    if report:
        from .alignment_report import write_report

        result.report_dir = write_report(os.fspath(report), acq, result)
    for name, d in result.shifts.items():
        log(
            f"{name}: {len(d)} shifts, rms {np.sqrt((d**2).mean()):.2f} px"
            + ("" if dry_run else " (stored)"),
            quiet,
        )
    return result


#: Prior weights ``(dy, dx)`` of the full scan's own estimate in the joint solve, for a
#: weighted-centroid noise of :data:`REFERENCE_SIGMA_PX`; each view's are scaled by
#: ``REFERENCE_SIGMA_PX / its noise`` (0.01-10). The ``small`` preset's views report
#: 0.04-0.06 px at the paper's fluence, so about 1.1-1.6 pairs each; doubling or halving
#: that was worse on most rows (docs/alignment.md). (0.1 px when the noise was read 1.4
#: times as high, see :func:`~sxtdist.alignment.weighted_centroid_noise_px`: the same
#: weights at the paper's fluence.)
FULL_PRIOR_WEIGHTS = (0.3, 1.0)
REFERENCE_SIGMA_PX = 0.07


def full_prior_weights(full_info: dict, n_full: int) -> np.ndarray:
    """``(n_full, 2)`` weights of the full scan's own shifts in :func:`solve_joint`.

    Worth about a pair when they come from the weighted moments alone, scaled by the
    inverse of each view's estimated centroid noise (between 0.01 and 10 times
    :data:`FULL_PRIOR_WEIGHTS`); only a gauge (0.01) otherwise (the plain centroid is
    biased by truncation, projection matching by the few views).
    """
    sigma = full_info.get("weighted_centroid_sigma_px")
    if full_info.get("iterations") or sigma is None:
        return np.full((n_full, 2), 0.01)
    factor = np.clip(REFERENCE_SIGMA_PX / np.maximum(np.asarray(sigma, float), 1e-6), 0.01, 10.0)
    return np.maximum(np.outer(factor, FULL_PRIOR_WEIGHTS), 0.01)


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
    from .distributed import run_graph, run_tasks

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
        graph, keys, position = pair_graph(pairs, settings, uuid.uuid4().hex, g_roi.angles_deg)
        views = f" (and {len(graph) - len(keys) - 1} tasks preparing the views once)"
    log(
        f"aligning 'roi' ({g_roi.n_angles} views): {n_anchor} anchor and "
        f"{len(pairs) - n_anchor} neighbour pairs, one task each{views}, search ±{margin} px",
        kw["quiet"],
    )
    if prepared:
        results = run_graph(client, graph, keys, "align roi pairs", kw["progress"], position)
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
    _log_pair_misfit(info, results, result.pair_misfit, g_roi.angles_deg, margin, kw["quiet"])
    _log_pairs_weighted_down(
        info, results, result.pair_kept_weight, g_roi.angles_deg, g_roi.n_angles, kw["quiet"]
    )
    _log_poor_peaks(info, results, g_roi.angles_deg, kw["quiet"])
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


def describe_pair(pair: Pair, roi_angles: np.ndarray) -> str:
    """A pair in words, for logs and ``sxtdist info``: "neighbour 33-34 at 66°"."""
    at = f"at {roi_angles[pair.i]:g}°"
    if pair.kind == "neighbour":
        return f"neighbour {pair.i}-{pair.j} {at}"
    return f"anchor {pair.i} to full view {pair.j}{' mirrored' if pair.mirrored else ''} {at}"


def _log_pair_misfit(
    info: dict,
    results: Sequence[PairResult],
    misfit: np.ndarray | None,
    roi_angles: np.ndarray,
    margin: Sequence[int],
    quiet: bool,
) -> None:
    """Record and log how far the solution is from the pairs: the largest misfit and its
    pair (on real data, with no truth, where a registration and the rest disagree), and
    how many pairs were left out for a peak on the edge of the search."""
    dropped = len(results) - info.get("pairs_used", len(results))
    if dropped:
        log(
            f"warning: {dropped} of {len(results)} pairs left out: their NCC peak lay on "
            f"the edge of the ±{margin[0]}×{margin[1]} px search (raise --max-shift if the "
            "views moved further)",
            quiet,
        )
    if misfit is None or not np.isfinite(misfit).any():
        return
    length = np.hypot(misfit[:, 0], misfit[:, 1])
    worst = int(np.nanargmax(length))
    if length[worst] < 1e-6:  # a chain without anchors: no loop, every pair met exactly
        log("pairs' misfit after the solve: none to see (the pairs form no loop)", quiet)
        return
    info["residual_largest_px"] = float(length[worst])
    info["residual_largest_pair"] = describe_pair(results[worst].pair, roi_angles)
    log(
        f"pairs' misfit after the solve: RMS {info['residual_rms_px']:.3f} px per "
        f"component, largest {length[worst]:.3f} px ({info['residual_largest_pair']})",
        quiet,
    )


#: Pairs named one by one in the log when weighted down or correlating poorly; beyond, a count.
PAIRS_NAMED = 5
#: A pair "lost its weight" for :func:`views_without_weight` below this share.
LOST_WEIGHT = 0.5


#: A pair whose ``1 - peak NCC`` is more than this many times the median of its kind
#: (anchors, neighbours) correlates far worse than the others. On the ``small`` preset
#: (seeds 1-24, 9 and 19 full views, paper dose and 3000 photons) one clean pair in 96
#: alignments passed 20 (45 times: an anchor 10° from its full view), and with half of
#: one frame lost every pair of that frame was 68-926 times (docs/alignment.md).
POOR_PEAK_FACTOR = 20.0


def peak_loss_ratio(results: Sequence[PairResult]) -> np.ndarray:
    """``(len(results),)``: each pair's ``1 - peak NCC`` over the median of its kind's
    (anchors, neighbours); beyond :data:`POOR_PEAK_FACTOR` a pair correlates poorly."""
    kinds = np.array([r.pair.kind for r in results])
    loss = np.array([1.0 - r.peak for r in results], float)
    ratio = np.full(len(results), np.nan)
    for kind in set(kinds.tolist()):
        k = kinds == kind
        ratio[k] = loss[k] / max(float(np.median(loss[k])), 1e-12)
    return ratio


def views_of(pair: Pair) -> tuple[int, ...]:
    """The interior views a pair registers."""
    return (pair.i, pair.j) if pair.kind == "neighbour" else (pair.i,)


def _log_poor_peaks(
    info: dict, results: Sequence[PairResult], roi_angles: np.ndarray, quiet: bool
) -> None:
    """Warn of the pairs that correlate far worse than the others (a damaged frame whose
    pairs all agree on a wrong shift shows in no misfit, but in its peaks), and of the
    interior views all of whose pairs do."""
    if not results:
        return
    ratio = peak_loss_ratio(results)
    poor = np.flatnonzero(ratio > POOR_PEAK_FACTOR)
    info["pairs_poor_peak"] = int(poor.size)
    if not poor.size:
        return
    named = _name_pairs(
        poor[np.argsort(-ratio[poor])], results, roi_angles, lambda k: f"{ratio[k]:.0f}×"
    )
    log(
        f"warning: pairs whose peak NCC is far below the others' (1 - peak over "
        f"{POOR_PEAK_FACTOR:g} times their kind's median): {named}",
        quiet,
    )
    views = views_whose_pairs_all(
        results, ratio > POOR_PEAK_FACTOR, np.ones(len(results), bool), len(roi_angles)
    )
    info["views_poor_peak"] = views
    if views:
        log(
            f"warning: interior views all of whose pairs correlate poorly (check these "
            f"frames): {', '.join(map(str, views))}",
            quiet,
        )


def views_whose_pairs_all(
    results: Sequence[PairResult], flagged: np.ndarray, counted: np.ndarray, n_views: int
) -> list[int]:
    """Interior views that have ``counted`` pairs, all of them ``flagged``."""
    bad = np.zeros(n_views, bool)
    good = np.zeros(n_views, bool)
    for r, f, c in zip(results, flagged, counted, strict=True):
        if c:
            for v in views_of(r.pair):
                (bad if f else good)[v] = True
    return [int(v) for v in np.flatnonzero(bad & ~good)]


def views_without_weight(
    results: Sequence[PairResult], kept: np.ndarray, n_views: int
) -> list[int]:
    """Interior views all of whose used pairs kept less than :data:`LOST_WEIGHT` of their
    weight: nothing the solve trusts ties them (a damaged frame, most likely)."""
    return views_whose_pairs_all(results, kept < LOST_WEIGHT, np.isfinite(kept), n_views)


def _name_pairs(
    order: np.ndarray,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    note: Callable[[int], str],
) -> str:
    """The first :data:`PAIRS_NAMED` pairs of ``order`` in words, each with ``note(k)``,
    and how many more."""
    named = ", ".join(
        f"{describe_pair(results[k].pair, roi_angles)} ({note(k)})" for k in order[:PAIRS_NAMED]
    )
    return named + (f" and {len(order) - PAIRS_NAMED} more" if len(order) > PAIRS_NAMED else "")


def _log_pairs_weighted_down(
    info: dict,
    results: Sequence[PairResult],
    kept: np.ndarray | None,
    roi_angles: np.ndarray,
    n_views: int,
    quiet: bool,
) -> None:
    """Record and log the pairs the others contradicted (weighted down by the robust rule)
    and the interior views left with no trusted pair."""
    if kept is None:
        return
    down = np.flatnonzero(kept < 1)  # NaN (left out) compares False
    info["pairs_downweighted"] = int(down.size)
    if not down.size:
        return
    named = _name_pairs(
        down[np.argsort(kept[down])], results, roi_angles, lambda k: f"to {kept[k]:.0%}"
    )
    log(f"pairs the others contradict, weighted down in the solve: {named}", quiet)
    lost = views_without_weight(results, kept, n_views)
    info["views_without_weight"] = lost
    if lost:
        log(
            f"warning: interior views whose every pair lost its weight (check these "
            f"frames): {', '.join(map(str, lost))}",
            quiet,
        )


def _jsonable_info(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
