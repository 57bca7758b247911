"""Worker-side tasks of an alignment: read and prepare views, register a pair, align the
full scan. No client here; :mod:`sxtdist.alignment.runner` builds and submits the graph."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from ..dataset import open_projections, read_projection
from ..errors import InputError
from ..geometry import ScanGeometry
from .fullscan import align_full_scan
from .ncc import (
    Centred,
    SearchWindow,
    centred,
    centred_spectrum,
    locate_peak,
    ncc_map,
    ncc_map_in_rectangle,
    rectangle_spectrum,
    valid_rectangle,
)
from .pairs import (
    MIN_COMPARED_OVERLAP,
    MIN_VIEW_OVERLAP,
    Pair,
    PairResult,
    peak_inside_map,
    views_of,
    views_overlap,
)
from .resample import Box, anchor_on_roi_grid, bin_image, binned_box, compared_box, gaussian_blur


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
    #: The largest shift searched (interior px, per axis): the coarse pass's range and
    #: the bound of every widened search.
    search_range: tuple[int, int] | None = None
    #: The coarse pass's binning of the interior views (1: the coarse registration of an
    #: anchor pair is its fine one).
    coarse_bin: int = 1

    def coarse_margin(self) -> tuple[int, int]:
        """The coarse pass's search margin, in binned pixels."""
        r = self.search_range or self.margin
        return (-(-r[0] // self.coarse_bin), -(-r[1] // self.coarse_bin))


#: Interior views of at least this many pixels are prepared in tasks of their own (an
#: interior view read, blurred and transformed, a full view resampled onto the interior
#: grid and transformed), once each, and handed to the pair tasks; smaller ones inside
#: the tasks that register them (:data:`STRETCHES_PER_WORKER`), where a task of its own
#: would cost more than it saves. Each interior view enters up to three pairs and each
#: full view every pair it anchors. With one
#: transform per view, 256² views took 35-40 % less time on 1 worker and 15-25 % less
#: on 2 this way, 128² views about the same on 2 workers (a ``/tmp`` script,
#: docs/dev/alignment-history.md); the ``small`` preset's 128 x 60 views were slower with the extra
#: tasks before the shared transforms.
PREPARED_VIEW_PIXELS = 256 * 256


def prepares_views_apart(view_shape: Sequence[int]) -> bool:
    """Whether interior views of this shape are prepared in tasks of their own
    (:data:`PREPARED_VIEW_PIXELS`)."""
    return math.prod(view_shape) >= PREPARED_VIEW_PIXELS


#: A prepared interior view: the view, blurred (and binned), the :func:`centred_spectrum`
#: of the rectangle of it that is compared in the pairs' frame (which its neighbour pairs
#: and its anchor pair share), and that rectangle (:func:`compared_box`).
PreparedView = tuple[np.ndarray, np.ndarray, Box]


#: A prepared anchor: the full view on the interior grid plus the margin, its validity
#: mask, and the spectrum of its valid rectangle (``None`` if it is not one).
PreparedAnchor = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _padded_shape(view_shape: Sequence[int], margin: tuple[int, int]) -> tuple[int, int]:
    return (view_shape[0] + 2 * margin[0], view_shape[1] + 2 * margin[1])


def prepare_roi_view(
    index: int, settings: PairSettings, margin: tuple[int, int] | None = None, binning: int = 1
) -> PreparedView:
    """Interior view ``index`` as the pairs compare it: blurred to the full scan's
    resolution (and binned), with the rectangle of it that is compared
    (:func:`~sxtdist.alignment.resample.compared_box`, found on the view as read) and its
    transform for the correlations in a frame of ``margin`` (default the pairs' own: one
    for all its pairs)."""
    return prepared_view(read_projection(settings.roi_array, index), settings, margin, binning)


def prepared_view(
    raw: np.ndarray, settings: PairSettings, margin: tuple[int, int] | None = None, binning: int = 1
) -> PreparedView:
    """:func:`prepare_roi_view` of an interior view already read: what lies outside its
    compared rectangle does not enter the blur either. The rectangle is extended by its
    point reflection about its edge (``2 v[edge] - v[edge + k]``), which a linear ramp
    continues exactly: its edge repeated instead (a flat extension) biased each blurred
    edge pixel by the slope there, and the alignment lost 5-10 % RMS on every motion
    family (``small``, 19 full views, seeds 401-403), the same with this extension as
    with the true edge pixels blurred in."""
    view, box = blurred_view(raw, settings, binning)
    return view, spectrum_in_frame(view, box, margin or settings.margin), box


def blurred_view(
    raw: np.ndarray, settings: PairSettings, binning: int = 1
) -> tuple[np.ndarray, Box]:
    """:func:`prepared_view` before its transform: the interior view blurred (and binned)
    and its compared rectangle, which every map margin shares."""
    y0, y1, x0, x1 = box = compared_box(raw)
    h, w = raw.shape
    inside = np.pad(
        np.asarray(raw, np.float64)[y0:y1, x0:x1],
        ((y0, h - y1), (x0, w - x1)),
        mode="reflect",
        reflect_type="odd",
    )
    view = bin_image(gaussian_blur(inside, settings.roi_blur_px), binning)
    return view, binned_box(box, binning)


def prepare_anchor(
    full_index: int,
    mirrored: bool,
    settings: PairSettings,
    margin: tuple[int, int] | None = None,
    binning: int = 1,
) -> PreparedAnchor:
    """Full view ``full_index`` (its mirror image for ``mirrored``) resampled onto the interior
    grid (binned) plus a search margin (default the pairs' own) and blurred by
    ``--smooth``, with its validity mask and the transform of its valid rectangle (one
    for all the pairs it anchors)."""
    view = read_projection(settings.full_array, full_index)
    return prepared_anchor(view, full_index, mirrored, settings, margin, binning)


def prepared_anchor(
    view: np.ndarray,
    full_index: int,
    mirrored: bool,
    settings: PairSettings,
    margin: tuple[int, int] | None = None,
    binning: int = 1,
) -> PreparedAnchor:
    """:func:`prepare_anchor` of full view ``full_index`` already read (``view``)."""
    s = settings
    margin = margin or s.margin
    ref, mask = anchor_on_roi_grid(view, s.full, full_index, s.roi, margin, mirrored, None, binning)
    ref = gaussian_blur(ref, s.anchor_blur_px / binning)
    shape = tuple(n // binning for n in s.roi.detector_shape)
    return ref, mask, rectangle_spectrum(ref, mask, shape)


def register_prepared(
    pair: Pair,
    template: PreparedView,
    other: PreparedView | PreparedAnchor,
    settings: PairSettings,
    *coarse: PairResult | None,
    centred: tuple[Centred | None, Centred | None] = (None, None),
) -> PairResult:
    """Register one pair from its prepared views (:func:`prepare_roi_view`,
    :func:`prepare_anchor`): ``template`` is interior view ``pair.i``, ``other`` interior
    view ``pair.j`` for a neighbour pair or the anchor.

    ``coarse``: the coarse registrations of the pair's views (:func:`coarse_anchor`;
    ``None`` where a view has none): the peak is looked for within the pairs' margin of
    what they predict (:func:`predicted_window`), in a map of :func:`fine_margin` (made
    larger, and its transforms here, where the prepared ones do not reach that far).

    ``centred``: :func:`~sxtdist.alignment.ncc.centred` of the template's compared
    rectangle and of the other's (an anchor's valid rectangle), where a stretch keeps them
    for all the pairs of a view (``None``: computed here).

    Anchor pairs near the same angle also return paired transmissions
    ``(T_full, T_roi)`` over the overlap for the intensity-transform fit.
    """
    t0 = time.perf_counter()
    window = predicted_window(pair, coarse, settings)
    margin = fine_margin(window, settings)
    if margin != settings.margin:  # the prepared frame is too small: transform anew
        template = _in_frame(template, margin)
        if pair.kind == "anchor":  # the full view on a larger grid: its own rectangle
            other = prepare_anchor(pair.j, pair.mirrored, settings, margin)
            centred = (centred[0], None)
        else:
            other = _in_frame(other, margin)
    result = _register(pair, template, other, margin, settings, window, centred=centred)
    result.seconds = time.perf_counter() - t0
    return result


def fine_margin(window: SearchWindow | None, settings: PairSettings) -> tuple[int, int]:
    """The map margin of a pair's registration around the coarse pass's prediction: the
    pairs' own margin (the frame prepared views are transformed in) wherever that map
    holds the window's centre with a binned pixel of the coarse pass (at least 2 px) to
    spare, the coarse peak's own uncertainty; the window's part beyond it is left out,
    and a peak on the map's edge is widened like any other (:func:`register_widened`).
    Else :func:`map_margin`. Making every map as large as its whole window made each
    1024² pair transform its views anew: 2.7 times the time per pair."""
    if window is None:
        return settings.margin
    core = np.abs(window.centre) + max(2, settings.coarse_bin)
    if np.all(core <= np.asarray(settings.margin) - 1):
        return settings.margin
    return map_margin(window, settings)


def spectrum_in_frame(view: np.ndarray, box: Box, margin: tuple[int, int]) -> np.ndarray:
    """:func:`centred_spectrum` of the ``box`` of an interior view in the frame of the whole
    view padded by ``margin``."""
    y0, y1, x0, x1 = box
    return centred_spectrum(
        view[y0:y1, x0:x1], (y1 - y0, x1 - x0), _padded_shape(view.shape, margin)
    )


def _in_frame(prepared: PreparedView, margin: tuple[int, int]) -> PreparedView:
    view, _, box = prepared
    return view, spectrum_in_frame(view, box, margin), box


def _register(
    pair: Pair,
    template: PreparedView,
    other: PreparedView | PreparedAnchor,
    margin: tuple[int, int],
    settings: PairSettings,
    window: SearchWindow | None,
    samples: bool = True,
    centred: tuple[Centred | None, Centred | None] = (None, None),
) -> PairResult:
    """The NCC map of a pair from its prepared views (in a frame of ``margin``), its peak
    (within ``window``), and for anchors near the same angle (and ``samples``) the paired
    transmissions (``centred``: see :func:`register_prepared`).

    Only each interior view's compared rectangle enters: the template is the rectangle
    ``(y0, y1, x0, x1)`` of its view, so its map over the whole frame puts shift zero at
    ``margin + (y0, x0)``; the map kept is the ``margin`` either side of that. A neighbour
    pair's shifts are limited by the overlap of its two views (:data:`MIN_VIEW_OVERLAP`),
    not of their rectangles; an anchor's by its interior rectangle's share over the full
    view's pixels.

    The arrays are used aligned (:func:`aligned`): a prepared view from another worker
    may not be.
    """
    template, other = aligned(template), aligned(other)
    whole, tpl_spectrum, (y0, y1, x0, x1) = template
    tpl = whole[y0:y1, x0:x1]
    spectra = {"template_spectrum": tpl_spectrum}
    spectra.update(template_centred=centred[0], valid_centred=centred[1])
    if pair.kind == "anchor":
        ref, mask, spectra["reference_spectrum"] = other
        ncc = ncc_map(tpl, ref, None, mask, **spectra)
    else:  # the other view's rectangle in its view padded by the margin, without the frame
        view, spectra["reference_spectrum"], (v0, v1, u0, u1) = other
        frame = _padded_shape(view.shape, margin)
        at = (margin[0] + v0, margin[1] + u0)
        rect = view[v0:v1, u0:u1]
        ncc = ncc_map_in_rectangle(tpl, rect, at, frame, MIN_COMPARED_OVERLAP, **spectra)
    ncc = ncc[y0 : y0 + 2 * margin[0] + 1, x0 : x0 + 2 * margin[1] + 1]
    if pair.kind == "neighbour":  # the overlap limit is the views', not their rectangles'
        ncc[views_overlap(whole.shape, margin) < MIN_VIEW_OVERLAP] = -1.0
    shift, peak, quality = locate_peak(ncc, window)
    paired = None
    if samples and pair.kind == "anchor" and pair.delta_deg <= settings.intensity_window_deg:
        at = (margin[0] + y0, margin[1] + x0)
        paired = _intensity_samples(tpl, ref, mask, shift, at, settings.max_samples, pair.i)
    overlap = 1.0
    if pair.kind == "neighbour":
        h, w = whole.shape
        overlap = max(1.0 - abs(shift[0]) / h, 0.0) * max(1.0 - abs(shift[1]) / w, 0.0)
    result = PairResult(pair, ncc.astype(np.float32), shift, peak, quality, 0.0, paired, window)
    result.overlap = float(overlap)
    return result


def aligned(prepared: tuple) -> tuple:
    """A prepared view or anchor with every array aligned in memory (the same one where it
    is; a copy, in the same layout, where not). Dask may hand a task an array received
    from another worker at any byte address (a prepared 1024² anchor's image arrived at
    an odd one), and NumPy sums an unaligned array in another order: the sum of its
    compared rectangle changed in the last bits and the pair's shift by up to 5e-7 px,
    so an alignment on 2 workers differed from one on 1 (docs/dev/alignment-history.md,
    session 6)."""
    return tuple(
        np.require(a, requirements="A") if isinstance(a, np.ndarray) else a for a in prepared
    )


def predicted_window(
    pair: Pair, coarse: Sequence[PairResult | None], settings: PairSettings
) -> SearchWindow | None:
    """Where the coarse pass puts a pair's peak, ± the pairs' margin: an anchor's at its
    view's coarse peak, a neighbour's at the difference of its two views' (each measures
    ``-d`` against its anchor); ``None`` (the map around zero) where a view has no
    coarse peak inside its search."""
    if not coarse or any(c is None or not peak_inside_map(c) for c in coarse):
        return None
    centre = coarse[0].shift * settings.coarse_bin
    if pair.kind == "neighbour":
        centre = centre - coarse[1].shift * settings.coarse_bin
    return SearchWindow(np.round(centre), settings.margin)


def map_margin(window: SearchWindow, settings: PairSettings) -> tuple[int, int]:
    """The smallest map margin (never below the pairs' own, nor beyond the search range)
    that holds ``window``."""
    need = np.abs(window.centre) + window.radius
    bound = np.asarray(settings.search_range or settings.margin)
    m = np.clip(np.ceil(need), settings.margin, np.maximum(bound, settings.margin))
    return int(m[0]), int(m[1])


def coarse_anchor(
    pair: Pair, settings: PairSettings, views: StretchViews | None = None
) -> PairResult:
    """The coarse registration of an anchor pair: the interior view (binned by
    ``coarse_bin``) against its anchor over the whole search range, with no window. With
    no binning it is the pair's registration, used as is; binned, its peak (times the
    binning) predicts the pair's and its neighbours' (:func:`predicted_window`)."""
    b = settings.coarse_bin
    return _prepare_and_register(pair, settings, None, settings.coarse_margin(), b, views)


def coarse_prepared(
    pair: Pair, view: PreparedView, anchor: PreparedAnchor, settings: PairSettings
) -> PairResult:
    """:func:`coarse_anchor` from the interior view the fine pass prepared (blurred, then
    binned here: what :func:`prepare_roi_view` does with the binning) and the anchor
    prepared binned (:func:`prepare_anchor`), once for all the interior views it anchors:
    each view is read and blurred once for both passes."""
    t0 = time.perf_counter()
    margin, b = settings.coarse_margin(), settings.coarse_bin
    binned, box = bin_image(view[0], b), binned_box(view[2], b)
    template = (binned, spectrum_in_frame(binned, box, margin), box)
    result = _register(pair, template, anchor, margin, settings, None, samples=False)
    result.seconds = time.perf_counter() - t0
    return result


def register_pair(
    pair: Pair,
    settings: PairSettings,
    coarse: Sequence[PairResult | None] = (),
    views: StretchViews | None = None,
) -> PairResult:
    """Prepare the pair's two views (views smaller than :data:`PREPARED_VIEW_PIXELS`; kept
    in ``views`` when given) and register them, within the window the ``coarse``
    registrations of its views predict (:func:`predicted_window`). ``seconds`` includes
    the preparation."""
    window = predicted_window(pair, coarse, settings)
    margin = fine_margin(window, settings)
    return _prepare_and_register(pair, settings, window, margin, 1, views)


def register_widened(target: tuple[Pair, np.ndarray], settings: PairSettings) -> PairResult:
    """A pair registered again around a shift (``target``: the pair and the shift, interior
    px), the pairs' margin either side: for a peak found on the edge of its first search
    (widen, not drop)."""
    pair, centre = target
    window = SearchWindow(np.round(centre), settings.margin)
    return _prepare_and_register(pair, settings, window, map_margin(window, settings))


def _prepare_and_register(
    pair: Pair,
    settings: PairSettings,
    window: SearchWindow | None,
    margin: tuple[int, int],
    binning: int = 1,
    views: StretchViews | None = None,
) -> PairResult:
    """Prepare a pair's two views for a map of ``margin`` (binned) and register them within
    ``window`` (binned: no intensity samples); ``seconds`` includes the preparation.
    ``views``: where a stretch keeps the views it has prepared (default: none kept)."""
    t0 = time.perf_counter()
    views = views or StretchViews(settings)
    template = views.roi(pair.i, margin, binning)
    if pair.kind == "anchor":
        other = views.anchor(pair.j, pair.mirrored, margin, binning)
    else:
        other = views.roi(pair.j, margin, binning)
    result = _register(pair, template, other, margin, settings, window, binning == 1)
    result.seconds = time.perf_counter() - t0
    return result


class StretchViews:
    """The views a stretch of small views (:func:`register_stretch`) reads and prepares,
    each once for all its pairs: an interior view read once, blurred once per binning and
    transformed once per map margin; a full view read once and prepared once per
    orientation, margin and binning. The same calls on the same values as each pair
    preparing its own views, so the same bits (``tests/test_align_graph.py``); on
    ``small`` an interior view enters up to three pairs and a full view the anchor pairs
    of about five interior views. :meth:`release` lets a view go after its last pair."""

    def __init__(self, settings: PairSettings) -> None:
        self.settings = settings
        self._read: dict[tuple[str, int], np.ndarray] = {}
        self._blurred: dict[tuple[int, int], tuple[np.ndarray, Box]] = {}
        self._views: dict[tuple[int, tuple[int, int], int], PreparedView] = {}
        self._anchors: dict[tuple[int, bool, tuple[int, int], int], PreparedAnchor] = {}

    def _raw(self, scan: str, index: int) -> np.ndarray:
        if (scan, index) not in self._read:
            path = self.settings.roi_array if scan == "roi" else self.settings.full_array
            self._read[scan, index] = read_projection(path, index)
        return self._read[scan, index]

    def roi(self, index: int, margin: tuple[int, int], binning: int = 1) -> PreparedView:
        """:func:`prepare_roi_view`."""
        key = (index, tuple(margin), binning)
        if key not in self._views:
            if (index, binning) not in self._blurred:
                raw = self._raw("roi", index)
                self._blurred[index, binning] = blurred_view(raw, self.settings, binning)
            view, box = self._blurred[index, binning]
            self._views[key] = (view, spectrum_in_frame(view, box, margin), box)
        return self._views[key]

    def anchor(
        self, index: int, mirrored: bool, margin: tuple[int, int], binning: int = 1
    ) -> PreparedAnchor:
        """:func:`prepare_anchor`."""
        key = (index, mirrored, tuple(margin), binning)
        if key not in self._anchors:
            raw = self._raw("full", index)
            self._anchors[key] = prepared_anchor(raw, index, mirrored, self.settings, *key[2:])
        return self._anchors[key]

    def release(self, scan: str, index: int) -> None:
        """Forget interior (``scan == "roi"``) or full view ``index``, read and prepared."""
        self._read.pop((scan, index), None)
        for cache in (self._blurred, self._views) if scan == "roi" else (self._anchors,):
            for key in [k for k in cache if k[0] == index]:
                del cache[key]


#: Views smaller than :data:`PREPARED_VIEW_PIXELS` are registered in stretches of
#: consecutive views (in angle), this many per worker from two workers (one on one
#: worker): each stretch one task that registers its anchor pairs (the coarse pass) and
#: the neighbour pairs of its views (the one to the next stretch's first view too, whose
#: coarse registration it makes again), each view read and prepared once
#: (:class:`SmallViews`). Each stretch but the last makes a view's coarse registration
#: (on ``small`` its anchor pair's over the whole search range) again, with that view and
#: its full view read and prepared: with 8 per worker the tasks of ``small`` took 1.31x
#: and 1.16x the CPU on 2 workers that they took on 1, with one per worker 1.00x and
#: 0.82x (the tasks' CPU per run from Dask's metrics, ``bench_align.py``'s
#: ``time_workers``, medians of 3 rounds, two runs each alternated, load 9;
#: docs/dev/alignment-history.md, session 11). Before: one task per
#: pair (179 tasks of about 5 ms, 45-58 inputs moved per run), then 8 stretches per
#: worker and a task per neighbour pair across two, then no task across two (session 6).
#: As at 256² and more, Dask cannot even out workers of unequal speed then.
STRETCHES_PER_WORKER = 1


@dataclass
class Registered:
    """What a stretch task returns (:func:`register_stretch`): its pairs' results (by
    their index in the planned pairs) and its views' coarse registrations (by interior
    view; with no binning an anchor pair's result is its view's coarse registration; a
    binned one comes without its map, :func:`_without_coarse_maps`)."""

    pairs: dict[int, PairResult]
    coarse: dict[int, PairResult]


def register_stretch(
    pairs: Sequence[tuple[int, Pair]],
    settings: PairSettings,
    coarse: bool,
    order: Sequence[int] = (),
    foreign: Sequence[Pair] = (),
) -> Registered:
    """One Dask task: the pairs of a stretch of small views (``(index, pair)``: its anchor
    pairs and the neighbour pairs from its views, to the next stretch's first view too),
    the same calls as a task per pair makes (:func:`coarse_anchor`, then
    :func:`register_pair` within what the coarse pass predicts), each view read and
    prepared once (:class:`SmallViews`), along the neighbour chain's ``order``
    (:func:`run_stretch`). ``foreign``: the anchor pairs of the views of other stretches
    that its pairs reach; their coarse registrations are made again here (the same
    bits), so that no stretch waits for another, and returned by theirs only.
    """
    views = SmallViews(settings, [p for _, p in pairs], foreign, coarse)
    return run_stretch(pairs, settings, coarse, order, foreign, views, _pairs_reporter())


class StretchCache(Protocol):
    """What :func:`run_stretch` asks of a stretch's views (:class:`SmallViews`,
    :class:`PreparedViews`): each registration made from the views it keeps, and what no
    later registration needs let go."""

    def coarse(self, pair: Pair, own: bool) -> PairResult:
        """The coarse registration of anchor pair ``pair`` (``own``: of the stretch's own
        view, else a view of the next stretch's, made again here)."""
        ...

    def register(self, pair: Pair, coarse: Sequence[PairResult | None]) -> PairResult:
        """``pair``'s registration within what its views' ``coarse`` ones predict."""
        ...

    def reuse(self, pair: Pair) -> None:
        """``pair``'s registration is its coarse one (an anchor pair, no binning)."""
        ...


def run_stretch(
    pairs: Sequence[tuple[int, Pair]],
    settings: PairSettings,
    coarse: bool,
    order: Sequence[int],
    foreign: Sequence[Pair],
    views: StretchCache,
    report: Callable[[int], None] | None = None,
) -> Registered:
    """The work of a stretch task (:func:`register_stretch`, :func:`register_prepared_stretch`),
    along the neighbour chain's ``order`` of its views (:func:`chain_steps`): each view's
    coarse pass (its anchor pair's, ``own`` or ``foreign``), then every pair whose views
    have theirs, from the views ``views`` keeps and lets go; ``report(n)`` after each
    pair, ``n`` the pairs registered so far. Returns the pairs' results and the own views'
    coarse registrations."""
    out = Registered({}, {})
    own = {p.i: p for _, p in pairs if p.kind == "anchor"} if coarse else {}
    others = {p.i: p for p in foreign} if coarse else {}
    own_coarse = coarse and settings.coarse_bin == 1  # an anchor pair's coarse pass is its own
    known: dict[int, PairResult] = {}  # coarse registrations, own and foreign

    def coarse_of(v: int) -> None:
        p = own.get(v) or others.get(v)
        if p is not None and v not in known:
            known[v] = views.coarse(p, v in own)
            if v in own:
                out.coarse[v] = known[v]

    for step, ready in chain_steps([p for _, p in pairs], order):
        if step is not None:
            coarse_of(step)
        for n, p in (pairs[r] for r in ready):
            for v in views_of(p):  # the next stretch's first view: its coarse pass again
                coarse_of(v)
            if own_coarse and p.kind == "anchor":
                out.pairs[n] = known[p.i]
                views.reuse(p)
            else:
                out.pairs[n] = views.register(p, [known.get(v) for v in views_of(p)])
            if report is not None:
                report(len(out.pairs))
    return _without_coarse_maps(out)


def _without_coarse_maps(out: Registered) -> Registered:
    """``out`` with its coarse registrations that are not also a pair's result (binned)
    stripped of their maps: the client reads only their ``seconds`` (and, at no binning,
    which pair results they are), so a map is bytes gathered for nothing, 29 % of a
    stretch's result at 1024² (24 binned maps of 59² next to 48 maps of 65²)."""
    kept = {id(r) for r in out.pairs.values()}
    out.coarse = {
        v: r if id(r) in kept else replace(r, ncc=np.zeros((0, 0), r.ncc.dtype))
        for v, r in out.coarse.items()
    }
    return out


def _pairs_reporter() -> Callable[[int], None]:
    """``report(n)``: the stretch task's pairs registered so far, for the progress bar
    (:func:`sxtdist.distributed.unit_reporter`; nothing outside a Dask worker)."""
    from ..distributed import unit_reporter

    return unit_reporter()


class SmallViews:
    """The views of a stretch of small views (:func:`register_stretch`, :func:`run_stretch`),
    read and prepared once for all its registrations (:class:`StretchViews`), each let go
    after the last registration that prepares it: its anchor pairs' coarse registrations
    (own and ``foreign``) and its other pairs' registrations."""

    def __init__(
        self, settings: PairSettings, pairs: Sequence[Pair], foreign: Sequence[Pair], coarse: bool
    ) -> None:
        self.settings = settings
        self.views = StretchViews(settings)
        self._coarse = coarse
        # the registrations that prepare each view, to let it go after the last
        own = {p.i: p for p in pairs if p.kind == "anchor"} if coarse else {}
        others = {p.i: p for p in foreign} if coarse else {}
        reached = {v for p in pairs for v in views_of(p) if v in others}
        work = [own.get(v) or others[v] for v in [*own, *reached]]
        own_coarse = coarse and settings.coarse_bin == 1
        work += [p for p in pairs if not (own_coarse and p.kind == "anchor")]
        self._uses = Counter(v for p in work for v in _scan_views(p))

    def _registered(self, pair: Pair) -> None:
        for v in _scan_views(pair):
            self._uses[v] -= 1
            if self._uses[v] == 0:
                self.views.release(*v)

    def coarse(self, pair: Pair, own: bool) -> PairResult:
        """:func:`coarse_anchor` from the views kept."""
        result = coarse_anchor(pair, self.settings, self.views)
        self._registered(pair)
        return result

    def register(self, pair: Pair, coarse: Sequence[PairResult | None]) -> PairResult:
        """:func:`register_pair` from the views kept, within its views' ``coarse``
        registrations (none where the alignment makes no coarse pass)."""
        result = register_pair(pair, self.settings, coarse if self._coarse else [], self.views)
        self._registered(pair)
        return result

    def reuse(self, pair: Pair) -> None:
        """Nothing to let go: the pair's views were counted for its coarse registration."""


def chain_steps(pairs: Sequence[Pair], order: Sequence[int]) -> list[tuple[int | None, list[int]]]:
    """A stretch's work along the neighbour chain's ``order`` of its views: each view (first
    ``None``, before any), with the pairs (indices into ``pairs``, in their order) whose
    views are all reached once it is (a view outside ``order`` counts as reached at the
    start)."""
    at = {v: k for k, v in enumerate(order)}
    ready: list[list[int]] = [[] for _ in range(len(order) + 1)]
    for n, p in enumerate(pairs):
        ready[1 + max(at.get(v, -1) for v in views_of(p))].append(n)
    return list(zip([None, *order], ready, strict=True))


def _scan_views(p: Pair) -> list[tuple[str, int]]:
    """The views a pair registers, as ``(scan, index)`` (:meth:`StretchViews.release`)."""
    return [("roi", p.i), ("full" if p.kind == "anchor" else "roi", p.j)]


def view_stretches(
    pairs: Sequence[Pair], n_stretches: int, boundary: float = 0.0
) -> dict[int, int]:
    """Each interior view's stretch (``0 .. n_stretches - 1``, fewer if there are fewer
    views): stretches of consecutive views in angle order (the neighbour chain's), then
    any view off the chain, of :func:`stretch_sizes` (``boundary``: the work a stretch
    does for the next one, in views)."""
    chain = [p for p in pairs if p.kind == "neighbour"]  # in angle order, view i then j
    order = [chain[0].i, *(p.j for p in chain)] if chain else []
    # then any view off the chain (dict: ordered and unique)
    order = list(dict.fromkeys([*order, *(v for p in pairs for v in views_of(p))]))
    sizes = stretch_sizes(len(order), n_stretches, boundary)
    stretch = [k for k, size in enumerate(sizes) for _ in range(size)]
    return dict(zip(order, stretch, strict=True))


def stretch_sizes(n_views: int, n_stretches: int, boundary: float = 0.0) -> list[int]:
    """Views per stretch, in the chain's order, so that the largest stretch's work is as
    small as whole views allow: a stretch's work counted as its views plus ``boundary``
    for each stretch but the last (what it does again for the next one: that stretch's
    first view prepared, its coarse registration, the pair across). Equal view counts put
    the boundary's work on top of the first stretch's share: where the views do not
    divide evenly, its spare view goes to a later stretch instead. Each stretch holds at
    least one view (``min(n_stretches, n_views)`` stretches, one for no views)."""
    count = max(1, min(n_stretches, n_views))
    if count == 1:
        return [n_views]

    def caps(load: float) -> list[int]:  # the most views each stretch may hold
        tol = 1e-9  # 24.7 - 0.7 is 23.999...: a whole view, not one less
        return [max(1, math.floor(load - boundary + tol))] * (count - 1) + [
            max(1, math.floor(load + tol))
        ]

    # the least load that holds every view: a whole number of views, or one plus the
    # boundary's work
    loads = sorted({m + d for m in range(1, n_views + 1) for d in (0.0, boundary)})
    sizes = next(c for c in (caps(load) for load in loads) if sum(c) >= n_views)
    while sum(sizes) > n_views:  # one view less from the stretch with the most work
        work = [s + (boundary if k < count - 1 else 0.0) for k, s in enumerate(sizes)]
        k = max((k for k in range(count) if sizes[k] > 1), key=lambda k: (work[k], -k))
        sizes[k] -= 1
    return sizes


@dataclass
class PairGraph:
    """The task graph of an interior scan's registrations (:func:`pair_graph`) and how to
    read its results back."""

    #: Maps each key to a task ``(fn, *args)`` (:func:`sxtdist.distributed.run_graph`).
    graph: dict[str, Any]
    #: The keys to compute, each a :class:`Registered`: every pair's result and every
    #: coarse registration are in them.
    keys: list[str]
    n_pairs: int

    def results(self, values: Sequence[Registered]) -> tuple[list[PairResult], list[PairResult]]:
        """The pairs' results in plan order and the coarse registrations, from the values
        of :attr:`keys`."""
        found: dict[int, PairResult] = {}
        coarse = []
        for value in values:
            found.update(value.pairs)
            coarse.extend(value.coarse.values())
        return [found[n] for n in range(self.n_pairs)], coarse


def pair_graph(
    pairs: Sequence[Pair],
    settings: PairSettings,
    token: str,
    coarse: bool = True,
    workers: int = 1,
) -> PairGraph:
    """The task graph of the interior registrations (for
    :func:`sxtdist.distributed.run_graph`): with ``coarse``, first each anchor pair over the
    whole search range (:func:`coarse_anchor`; :func:`coarse_prepared` from the prepared
    views), then every pair within the pairs' margin of what those predict. Views of at
    least :data:`PREPARED_VIEW_PIXELS`: stretches of consecutive views that prepare each
    view and anchor view once (:data:`PREPARED_STRETCHES_PER_WORKER` per worker of
    ``workers`` from two workers, :func:`register_prepared_stretch`); smaller views:
    stretches that prepare their views once too (:data:`STRETCHES_PER_WORKER` per worker
    from two workers, :func:`register_stretch`); one stretch on one worker. Each registers
    the neighbour pair to the next stretch's first view.

    ``token`` makes the keys unique to this run (a cluster may align several datasets).
    """
    prepared = prepares_views_apart(settings.roi.detector_shape)
    per_worker = PREPARED_STRETCHES_PER_WORKER if prepared else STRETCHES_PER_WORKER
    # one worker: a second stretch evens nothing out and makes a view's work again
    n_stretches = per_worker * workers if workers > 1 else 1
    register = register_prepared_stretch if prepared else register_stretch
    boundary = PREPARED_BOUNDARY_VIEWS if prepared else 0.0
    return _stretch_graph(pairs, settings, token, coarse, n_stretches, register, boundary)


def _stretch_graph(
    pairs: Sequence[Pair],
    settings: PairSettings,
    token: str,
    coarse: bool,
    n_stretches: int,
    register: Callable[..., Registered] = register_stretch,
    boundary: float = 0.0,
) -> PairGraph:
    """:func:`pair_graph`: one task per stretch (``register``: :func:`register_stretch`,
    small views; :func:`register_prepared_stretch`, views prepared once each), each with the
    pairs of its views, the neighbour pair to the next stretch's first view included (whose
    preparation and coarse registration it makes again; ``boundary``: that work in views,
    :func:`stretch_sizes`): no task waits for another, and nothing moves between workers."""
    # the settings in every task rather than a key of their own: the stretches then
    # depend on nothing, and Dask hands them out as the workers free up
    stretch_of = view_stretches(pairs, n_stretches, boundary)
    anchor_of = {p.i: p for p in pairs if p.kind == "anchor"}
    groups: dict[int, list[int]] = {}
    for n, p in enumerate(pairs):
        groups.setdefault(stretch_of[p.i], []).append(n)
    graph: dict[str, Any] = {}
    keys = []
    for k in sorted(groups):
        task = [(n, pairs[n]) for n in groups[k]]
        order = [v for v, at in stretch_of.items() if at == k]  # the chain's order
        reached = sorted({v for _, p in task for v in views_of(p) if stretch_of[v] != k})
        foreign = [anchor_of[v] for v in reached if v in anchor_of]
        keys.append(f"align-stretch-{token}-{k}")
        graph[keys[-1]] = (register, task, settings, coarse, order, foreign)
    return PairGraph(graph, keys, len(pairs))


#: Views of at least :data:`PREPARED_VIEW_PIXELS` are registered in stretches of consecutive
#: views too, this many per worker from two workers (one on one worker), each one task that
#: prepares its views and its anchor views once (:func:`register_prepared_stretch`) and
#: registers its pairs, the neighbour pair to the next stretch's first view included (that
#: view prepared, and its coarse registration made, again): no task waits for another and
#: nothing moves between the workers. With a task per view and per pair the views' tasks
#: alternated between two workers and 23 prepared views (13 MB each at 1024²) moved between
#: them in a run of 24 views; with four stretches per worker, anchor views in tasks of their
#: own and a task per pair across two stretches on the views they returned, 5-8 anchors and
#: views still moved and a 2-worker run took 1.02-1.28x the tasks' CPU of a 1-worker run
#: and 0.2-0.4 s more CPU outside them (24 views of 1024², 4 full views, bench_align.py part
#: 2 under load). Each stretch but the last prepares a view, and at most an anchor view
#: binned, again (70-90 ms of CPU at 1024²); with one per worker Dask cannot even out
#: workers of unequal speed by handing the slower fewer stretches
#: (docs/dev/alignment-history.md, "speed10").
PREPARED_STRETCHES_PER_WORKER = 1

#: What a stretch of prepared views does for the next one, in views' work
#: (:func:`stretch_sizes`): that stretch's first view prepared again (read, blur,
#: transform, centred rectangle: 31 ms at 1024²), its coarse registration (5 ms) and the
#: neighbour pair across (14 ms), against a view's own 72 ms (those, plus its anchor pair,
#: 21.5 ms) -- one process, session 11's table in docs/dev/alignment-history.md; 0.75 from
#: the calls counted in each stretch of 48 views of 1024² and their median CPU (speed15).
#: The first stretch of an even split did that much more than the second (the end wait
#: of 0.08-0.10 s); with an odd number of views it also had the spare one. A full view
#: that both stretches anchor to is prepared by each: the same work on both sides. A cut
#: at the edge of a full view's views makes the first stretch prepare the next full view
#: binned too (half a view more): not counted, as no cut of 24, 48 or 90 views with 4, 7
#: or 19 full views on 2 stretches was more even for it (speed15).
PREPARED_BOUNDARY_VIEWS = 0.7


#: Which anchor view a stretch prepares (:class:`PreparedViews`): ``(full view, mirrored)``.
AnchorSide = tuple[int, bool]


def prepare_anchors(
    full_index: int, mirrored: bool, settings: PairSettings, binned: Sequence[bool]
) -> dict[bool, PreparedAnchor]:
    """Full view ``full_index`` read once and prepared (:func:`prepared_anchor`) for each
    of ``binned``: ``True`` the coarse pass's anchor (:meth:`PairSettings.coarse_margin`,
    ``coarse_bin``), ``False`` the pairs' own. Prepared per binning it was read twice (a
    1024² full view: 6-9 ms a read of its sharded array)."""
    view = read_projection(settings.full_array, full_index)
    frame = {True: (settings.coarse_margin(), settings.coarse_bin), False: (None, 1)}
    return {b: prepared_anchor(view, full_index, mirrored, settings, *frame[b]) for b in binned}


def anchor_binnings(settings: PairSettings, coarse: bool) -> list[bool]:
    """The anchors a stretch of prepared views needs (:func:`prepare_anchors`): binned for
    the coarse pass, and the pairs' own unless the coarse pass (unbinned) is the anchor
    pair's registration, which reads its own views (:func:`coarse_anchor`)."""
    unbinned = settings.coarse_bin == 1
    return ([True] if coarse and not unbinned else []) + ([] if coarse and unbinned else [False])


class PreparedViews:
    """The views one stretch of prepared views holds (:func:`register_prepared_stretch`):
    each interior view prepared once (:func:`prepare_roi_view`), each anchor view read
    once and prepared for every binning the stretch needs (:func:`prepare_anchors`; only
    binned for ``foreign``, the anchor pairs of the next stretch's views whose coarse
    registrations are made again here), and the compared rectangles centred once; each
    let go after its last pair (:meth:`done`): a stretch holds two or three interior
    views and one or two anchors at a time, however long."""

    def __init__(
        self, settings: PairSettings, pairs: Sequence[Pair], foreign: Sequence[Pair], coarse: bool
    ) -> None:
        self.settings = settings
        self._coarse = coarse
        binned = anchor_binnings(settings, coarse)
        # the foreign anchors serve only their coarse registrations, binned
        self._need = {(p.j, p.mirrored): [True] for p in foreign if True in binned}
        self._need.update({(p.j, p.mirrored): binned for p in pairs if p.kind == "anchor"})
        self._uses = Counter(v for p in pairs for v in views_of(p))
        self._uses.update((p.j, p.mirrored) for p in [*pairs, *foreign] if p.kind == "anchor")
        self._views: dict[int, PreparedView] = {}
        self._anchors: dict[AnchorSide, dict[bool, PreparedAnchor]] = {}
        self._sums: dict[Any, Centred | None] = {}  # the compared rectangles centred

    def roi(self, index: int) -> PreparedView:
        """Interior view ``index``, prepared (:func:`prepare_roi_view`)."""
        if index not in self._views:
            self._views[index] = prepare_roi_view(index, self.settings)
        return self._views[index]

    def anchor(self, pair: Pair, binned: bool) -> PreparedAnchor:
        """The anchor view of anchor pair ``pair``, binned for the coarse pass or not."""
        side = (pair.j, pair.mirrored)
        if side not in self._anchors:
            self._anchors[side] = prepare_anchors(*side, self.settings, self._need[side])
        return self._anchors[side][binned]

    def centred(self, pair: Pair) -> tuple[Centred | None, Centred | None]:
        """:func:`~sxtdist.alignment.ncc.centred` of the pair's compared rectangles (an
        anchor's valid rectangle), once for all the pairs of a view."""
        return self._centred(pair.i, None), self._centred(
            pair.j, (pair.j, pair.mirrored) if pair.kind == "anchor" else None
        )

    def _centred(self, i: int, side: AnchorSide | None) -> Centred | None:
        key = i if side is None else side
        if key not in self._sums:
            if side is None:
                whole, _, (y0, y1, x0, x1) = self.roi(i)
                self._sums[key] = centred(whole[y0:y1, x0:x1])
            else:
                ref, mask, _ = self._anchors[side][False]
                valid = valid_rectangle(ref, mask)
                self._sums[key] = None if valid is None else centred(valid)
        return self._sums[key]

    def coarse(self, pair: Pair, own: bool) -> PairResult:
        """:func:`coarse_prepared` from the views kept (:func:`coarse_anchor` at no binning:
        the anchor pair's own registration, its views its own); a foreign anchor pair's
        anchor view let go after it (it was prepared for this alone), its view kept for its
        neighbour pair."""
        if self.settings.coarse_bin == 1:
            result = coarse_anchor(pair, self.settings)
        else:
            view, anchor = self.roi(pair.i), self.anchor(pair, True)
            result = coarse_prepared(pair, view, anchor, self.settings)
        if not own:
            self.done(pair, keep=[pair.i])
        return result

    def register(self, pair: Pair, coarse: Sequence[PairResult | None]) -> PairResult:
        """:func:`register_prepared` from the views kept (no coarse pass: ``coarse`` unused),
        then :meth:`done`."""
        other = self.anchor(pair, False) if pair.kind == "anchor" else self.roi(pair.j)
        deps = coarse if self._coarse else []
        result = register_prepared(
            pair, self.roi(pair.i), other, self.settings, *deps, centred=self.centred(pair)
        )
        self.done(pair)
        return result

    def reuse(self, pair: Pair) -> None:
        """:meth:`done`: the pair's registration is its coarse one."""
        self.done(pair)

    def done(self, pair: Pair, keep: Sequence[int] = ()) -> None:
        """A registration of ``pair`` is made (for a foreign anchor pair, its coarse
        one): let go what no other pair of the stretch needs (its interior views unless
        in ``keep`` or a foreign anchor pair's)."""
        used = [(pair.j, pair.mirrored)] if pair.kind == "anchor" else []
        used += [] if pair.i in keep else list(views_of(pair))
        for key in used:
            self._uses[key] -= 1
            if self._uses[key] == 0:
                for cache in (self._views, self._anchors, self._sums):
                    cache.pop(key, None)


def register_prepared_stretch(
    pairs: Sequence[tuple[int, Pair]],
    settings: PairSettings,
    coarse: bool,
    order: Sequence[int],
    foreign: Sequence[Pair] = (),
) -> Registered:
    """One Dask task: the interior views of a stretch of views of at least
    :data:`PREPARED_VIEW_PIXELS`, in the neighbour chain's ``order``, each prepared once,
    the coarse pass of its anchor pair from it (:func:`coarse_prepared`;
    :func:`coarse_anchor` at no binning), then every pair whose views are all done,
    within what their coarse registrations predict (:func:`register_prepared`): the calls
    a task per view, per coarse registration and per pair made, so the same bits. Views
    and anchor views are prepared here, once each, and let go after their last pair
    (:class:`PreparedViews`).

    ``pairs``: ``(index, pair)``, the stretch's anchor pairs and the neighbour pairs from
    its views, to the next stretch's first view too; ``foreign``: the anchor pairs of the
    views of other stretches that its pairs reach, whose coarse registrations are made
    again here (the same bits) and returned by their own stretch only.
    """
    views = PreparedViews(settings, [p for _, p in pairs], foreign, coarse)
    return run_stretch(pairs, settings, coarse, order, foreign, views, _pairs_reporter())


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
    blank = no_signal_views(views)
    if len(blank) == len(views):  # its moments would be noise over nothing, yet look fine
        raise InputError(
            array_path,
            "every view of the full scan is constant (no signal): nothing to align it by; "
            "check the import (flat and dark fields, --values)",
        )
    t0 = time.perf_counter()
    d, info = align_full_scan(views, geometry, **kw)
    info["seconds"] = time.perf_counter() - t0
    info["no_signal_views"] = blank
    return d, info


def no_signal_views(views: np.ndarray) -> list[int]:
    """The views (indices) that carry no signal: constant, or not finite everywhere
    (a beam drop, a frame the import clipped whole)."""
    v = np.asarray(views, np.float64).reshape(len(views), -1)
    with np.errstate(invalid="ignore"):
        flat = ~np.isfinite(v).all(axis=1) | ~(np.ptp(v, axis=1) > 0)
    return np.flatnonzero(flat).tolist()
