"""Worker-side tasks of an alignment: read and prepare views, register a pair, align the
full scan. No client here; :mod:`sxtdist.alignment.runner` builds and submits the graph."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dataset import open_projections, read_projection
from ..geometry import ScanGeometry
from .fullscan import align_full_scan
from .ncc import centred_spectrum, locate_peak, ncc_map, ncc_map_in_rectangle, rectangle_spectrum
from .pairs import Pair, PairResult
from .resample import anchor_on_roi_grid, gaussian_blur


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
    view = gaussian_blur(read_projection(settings.roi_array, index), settings.roi_blur_px)
    return view, centred_spectrum(view, view.shape, _padded_shape(view.shape, settings.margin))


def prepare_anchor(full_index: int, mirrored: bool, settings: PairSettings) -> PreparedAnchor:
    """Full view ``full_index`` (its mirror image for ``mirrored``) resampled onto the interior
    grid plus the search margin and blurred by ``--smooth``, with its validity mask and
    the transform of its valid rectangle (one for all the pairs it anchors)."""
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
    pairs: Sequence[Pair], settings: PairSettings, token: str
) -> tuple[dict[str, Any], list[str]]:
    """The task graph that prepares every view once and registers each pair in a task of
    its own (for :func:`sxtdist.distributed.run_graph`): the graph and the pairs' keys.
    ``token`` makes the keys unique to this run (a cluster may align several datasets).
    """
    s_key = f"align-settings-{token}"
    graph: dict[str, Any] = {s_key: settings}

    def roi_view(i: int) -> str:
        key = f"align-roi-view-{token}-{i}"
        graph.setdefault(key, (prepare_roi_view, i, s_key))
        return key

    keys = []
    for n, p in enumerate(pairs):
        if p.kind == "anchor":
            side = "mirrored" if p.mirrored else "direct"
            other = f"align-anchor-view-{token}-{p.j}-{side}"
            graph.setdefault(other, (prepare_anchor, p.j, p.mirrored, s_key))
        else:
            other = roi_view(p.j)
        key = f"align-pair-{token}-{n}"
        graph[key] = (register_prepared, p, roi_view(p.i), other, s_key)
        keys.append(key)
    return graph, keys


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
