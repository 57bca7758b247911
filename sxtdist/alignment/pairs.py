"""The registrations of the interior alignment (paper appendix B.1, eq. 14): which pairs,
and what each returned.

Every interior view ``i`` is paired with its anchor (the full view at the nearest angle,
or the mirrored full view ``theta + 180`` flipped left-right) when one lies within
``anchor_window_deg``, and with its angular neighbour ``i + 1``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .ncc import SearchWindow


@dataclass(frozen=True)
class Pair:
    """One registration task.

    ``kind == "anchor"``: ROI view ``i`` against full view ``j`` (``mirrored`` for
    ``theta_j + 180``); the measurement is ``d_i = -s``.
    ``kind == "neighbour"``: ROI view ``i`` against ROI view ``j``; ``d_i - d_j = -s``.
    """

    kind: str
    i: int
    j: int
    mirrored: bool = False
    delta_deg: float = 0.0


def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    """Signed smallest difference ``a - b`` in degrees, in (-180, 180]."""
    return (np.asarray(a) - b + 180.0) % 360.0 - 180.0


def nearest_anchor(theta: float, full_angles: np.ndarray) -> tuple[int, bool, float]:
    """The full view (or its mirror at ``+180``) nearest to ``theta``: (index, mirrored, |delta|)."""
    d0 = np.abs(_angle_diff(full_angles, theta))
    d1 = np.abs(_angle_diff(full_angles + 180.0, theta))
    j0, j1 = int(np.argmin(d0)), int(np.argmin(d1))
    if d0[j0] <= d1[j1]:
        return j0, False, float(d0[j0])
    return j1, True, float(d1[j1])


def plan_pairs(
    roi_angles: np.ndarray,
    full_angles: np.ndarray | None,
    anchor_window_deg: float | None = None,
    neighbours: bool = True,
) -> list[Pair]:
    """The registrations of eq. 14 for an interior scan.

    Parameters
    ----------
    roi_angles, full_angles
        Angles (degrees) of the interior and full views (``None``: no anchors).
    anchor_window_deg
        An interior view is anchored when a full view (or its mirror) lies within
        this angle; default half the full scan's angular step.
    neighbours
        Link every interior view to the next one in angle (the chain that carries
        the alignment between anchors).
    """
    roi_angles = np.asarray(roi_angles, float)
    order = np.argsort(roi_angles, kind="stable")
    pairs: list[Pair] = []
    if full_angles is not None and len(full_angles):
        full_angles = np.asarray(full_angles, float)
        if anchor_window_deg is None:
            a = np.sort(full_angles % 180.0)
            steps = np.diff(np.concatenate([a, a[:1] + 180.0]))
            anchor_window_deg = 0.5 * float(steps.max()) + 1e-6
        for i, th in enumerate(roi_angles):
            j, mirrored, delta = nearest_anchor(th, full_angles)
            if delta <= anchor_window_deg:
                pairs.append(Pair("anchor", i, j, mirrored, delta))
    if neighbours:
        for a, b in itertools.pairwise(order):
            delta = float(abs(roi_angles[b] - roi_angles[a]))
            pairs.append(Pair("neighbour", int(a), int(b), False, delta))
    return pairs


@dataclass
class PairResult:
    """What a registration task returns: the cached map and its sub-pixel peak."""

    pair: Pair
    ncc: np.ndarray
    shift: np.ndarray  # s at the peak (template vs reference)
    peak: float
    quality: float
    seconds: float = 0.0
    intensity_samples: np.ndarray | None = field(default=None, repr=False)
    #: Where the peak was looked for (``None``: the whole map).
    window: SearchWindow | None = None
    #: The share of the template view that the other view overlaps at the peak (1 for
    #: an anchor: the full view covers the interior view and its search margin).
    overlap: float = 1.0


#: The least share of a view that a neighbour pair's two views overlap at a shift that is
#: compared (the map is ``-1`` elsewhere): the views as recorded, whatever each leaves out
#: (:func:`~sxtdist.alignment.resample.compared_box`), so that leaving out an edge does not
#: narrow the shifts a pair can find (the template's compared pixels judged alone did:
#: a ``tiny`` view 10 px off lost both its neighbour pairs).
MIN_VIEW_OVERLAP = 0.5
#: A pair whose peak NCC passes this is weighed as nothing
#: (:func:`~sxtdist.alignment.shifts.pair_weights`): no correlation passes 1, the bicubic
#: surface through the map does next to the overlap's limit, and its shift there is no
#: measurement. Clean pairs pass 1 by up to 0.0005 (development seeds 1-6, all families);
#: on the ``large`` family neighbour pairs with about half the view in common peaked at
#: 1.007-1.015, 0.3-1.0 px off. Weighed as nothing rather than left out, it still ties a
#: chain of neighbours that has no anchors.
OVERSHOOT_PEAK = 1.005
#: The least share of the template's compared rectangle that a compared shift overlaps
#: with the other view's: a floor for views whose replicated strips leave out much of them.
MIN_COMPARED_OVERLAP = 0.25


def views_overlap(view_shape: Sequence[int], margin: Sequence[int]) -> np.ndarray:
    """The share of a ``view_shape`` view that a copy of it shifted by ``s`` overlaps, at
    every shift of a map of ``margin`` (``[sy + my, sx + mx]``, as :class:`PairResult`)."""
    share = [
        np.clip(1.0 - np.abs(np.arange(-m, m + 1)) / n, 0.0, None)
        for n, m in zip(view_shape, margin, strict=True)
    ]
    return np.outer(*share)


def _pair_angles(pair: Pair, roi_angles: np.ndarray, full_angles: np.ndarray | None):
    ti = math.radians(roi_angles[pair.i])
    if pair.kind == "neighbour":
        tj = math.radians(roi_angles[pair.j])
    else:
        tj = math.radians(full_angles[pair.j] + (180.0 if pair.mirrored else 0.0))
    return ti, tj


def peak_inside_map(result: PairResult) -> bool:
    """Whether a pair's peak lies inside its NCC map and its search window, and clear of
    the shifts where the two views overlap too little to be compared (the map's ``-1``):
    on an edge it only bounds the shift, and next to the overlap's limit the spline
    through the map overshoots (peaks of 1.1-1.25, 1.2 px off, on the ``large`` motion
    family); the solvers leave such a pair out."""
    # on Python floats, not arrays of two: the solve, the checks and the widening ask
    # this of every pair four times, in the client while the workers wait (``small``:
    # 15 ms of CPU an alignment on arrays, 5 ms so; /tmp timing, busy machine)
    margin = (result.ncc.shape[0] // 2, result.ncc.shape[1] // 2)
    shift = (float(result.shift[0]), float(result.shift[1]))
    if result.window is None:
        inside = all(abs(s) < m - 0.5 for s, m in zip(shift, margin))
    else:
        inside = result.window.holds_inside(shift, margin)
    if not inside:
        return False
    iy, ix = (int(round(s + m)) for s, m in zip(shift, margin))
    near = result.ncc[max(iy - 2, 0) : iy + 3, max(ix - 2, 0) : ix + 3]
    return bool((near > -1.0).all())


def per_pair(results: Sequence[PairResult], values: np.ndarray) -> np.ndarray:
    """``values`` of the used pairs (in order, :func:`peak_inside_map`) spread over all
    ``results``: NaN for a pair left out."""
    values = np.asarray(values, float)
    out = np.full((len(results), *values.shape[1:]), np.nan)
    out[[k for k, r in enumerate(results) if peak_inside_map(r)]] = values
    return out


def describe_pair(pair: Pair, roi_angles: np.ndarray) -> str:
    """A pair in words, for logs and ``sxtdist info``: "neighbour 33-34 at 66°"."""
    at = f"at {roi_angles[pair.i]:g}°"
    if pair.kind == "neighbour":
        return f"neighbour {pair.i}-{pair.j} {at}"
    return f"anchor {pair.i} to full view {pair.j}{' mirrored' if pair.mirrored else ''} {at}"


def views_of(pair: Pair) -> tuple[int, ...]:
    """The interior views a pair registers."""
    return (pair.i, pair.j) if pair.kind == "neighbour" else (pair.i,)
