"""What a registration leaves out of an interior view: its detector's outermost rows and
columns, and strips along its edges that replicate the edge (as shifting a recorded view
with ``nearest`` edges leaves them). Either, compared, is the same pattern at the same
place on the detector in every view and pulls each pair towards no shift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import sxtdist.alignment.tasks as tasks
from sxtdist.alignment.ncc import rectangle_spectrum
from sxtdist.alignment.pairs import (
    MIN_VIEW_OVERLAP,
    Pair,
    views_overlap,
)
from sxtdist.alignment.resample import (
    DETECTOR_EDGE_PX,
    PADDING_MAX_SHARE,
    compared_box,
    gaussian_blur,
)
from sxtdist.geometry import ScanGeometry

SHAPE = (96, 48)
MARGIN = (20, 14)


def _settings() -> tasks.PairSettings:
    g = ScanGeometry(np.zeros(2), 60.0, SHAPE)
    return tasks.PairSettings(
        roi_array="", full_array=None, roi=g, full=None, margin=MARGIN, roi_blur_px=1.0,
        anchor_blur_px=1.0, intensity_window_deg=1.0, search_range=MARGIN,
    )  # fmt: skip


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A smooth random field, a view and its margin, as a cell's optical depth."""
    shape = (SHAPE[0] + 2 * MARGIN[0], SHAPE[1] + 2 * MARGIN[1])
    return ndimage.gaussian_filter(rng.normal(size=shape), 2.0) * 2


def _errors(make_pair, n: int = 12, seed: int = 0) -> np.ndarray:
    """Registration errors (px) of ``n`` pairs from ``make_pair(rng) -> (a, b, truth)``:
    ``b`` an interior view (its own padding found) or a prepared anchor."""
    rng = np.random.default_rng(seed)
    s = _settings()
    out = []
    for _ in range(n):
        a, b, truth = make_pair(rng)
        if isinstance(b, tuple):
            pair, other = Pair("anchor", 0, 0, False, 90.0), b
        else:
            pair, other = Pair("neighbour", 0, 1), tasks.prepared_view(b, s)
        shift = tasks._register(pair, tasks.prepared_view(a, s), other, s.margin, s, None).shift
        out.append(np.hypot(*(shift - truth)))
    return np.asarray(out)


def _replicated(rng):
    """A noisy interior view moved by a known shift (σ 3 px) with ``nearest`` edges, as
    software that pre-aligns recorded views leaves them, and its anchor: the same field
    with its own noise, whole, around it."""
    field = _texture(rng)
    m = MARGIN
    view = field[m[0] : m[0] + SHAPE[0], m[1] : m[1] + SHAPE[1]] + rng.normal(0, 0.1, SHAPE)
    s = rng.normal(0, 3.0, 2)
    moved = ndimage.shift(view, s, order=3, mode="nearest")
    ref = gaussian_blur(field + rng.normal(0, 0.1, field.shape), 1.0)
    mask = np.ones(ref.shape, bool)
    return moved, (ref, mask, rectangle_spectrum(ref, mask, SHAPE)), -s  # the anchor at -s


def test_edge_replicated_borders_do_not_pull_pairs_to_zero(monkeypatch):
    """With the padding left out the pairs are within 0.05 px (RMS); compared whole, the
    replicated strips pull each towards no shift (about 0.03 against 0.16 px)."""
    err = _errors(_replicated)
    rms = np.sqrt(np.mean(err**2))
    assert rms < 0.05, err
    whole = lambda v: (0, v.shape[0], 0, v.shape[1])  # noqa: E731
    monkeypatch.setattr(tasks, "compared_box", whole)
    assert np.sqrt(np.mean(_errors(_replicated) ** 2)) > 3 * rms


def _bad_edges(rng):
    """Two noisy views of one texture moved by a known shift (σ 3 px, cut from the larger
    field: no padding), each with a dead first column and a hot last one."""
    field = _texture(rng)
    s = rng.normal(0, 3.0, 2)
    shifted = ndimage.shift(field, s, order=3, mode="nearest")
    views = []
    for f in (field, shifted):
        v = f[MARGIN[0] : MARGIN[0] + SHAPE[0], MARGIN[1] : MARGIN[1] + SHAPE[1]]
        v = v + rng.normal(0, 0.1, SHAPE)
        v[:, 0] = 0.0
        v[:, -1] += 30.0
        views.append(v)
    return views[0], views[1], s


def test_the_detector_edge_columns_are_not_compared():
    """A dead first and a hot last column in every view: left out, the pairs are within
    0.05 px; compared (``DETECTOR_EDGE_PX = 0``), they hold every pair near zero."""
    assert np.sqrt(np.mean(_errors(_bad_edges) ** 2)) < 0.05


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
def test_compared_box_leaves_out_padding_and_the_edge(side):
    rng = np.random.default_rng(3)
    h, w = 96, 80
    v = rng.normal(size=(h, w))
    e = DETECTOR_EDGE_PX
    assert compared_box(v) == (e, h - e, e, w - e)  # no padding: only the edge

    def left_out(padded: np.ndarray) -> dict[str, int]:
        y0, y1, x0, x1 = compared_box(np.rot90(padded, -turn))
        return {"top": y0, "bottom": h - y1, "left": x0, "right": w - x1}

    turn = {"top": 0, "right": 1, "bottom": 2, "left": 3}[side]
    p = np.rot90(v, turn).copy()  # the padded side at the top, then turned back
    p[:5] = p[5]  # 5 rows that repeat the sixth: the edge replicated
    assert left_out(p)[side] == 5 + e  # the 5 rows left out, and the edge beyond them
    assert sum(left_out(p).values()) == 5 + 4 * e
    p[:20] = p[20]  # replicated over more of the view: at most PADDING_MAX_SHARE left out
    assert left_out(p)[side] == int(PADDING_MAX_SHARE * p.shape[0]) + e
    p = np.rot90(v, turn).copy()
    p[:8] = 0.0  # a constant strip (a damaged frame's part, for the verdict): compared
    assert left_out(p)[side] == e


def test_a_neighbour_pairs_shifts_are_limited_by_its_views_overlap_not_its_rectangles():
    """Leaving out strips does not narrow the shifts a neighbour pair can find: its map is
    ``-1`` exactly where the two views, as recorded, overlap by less than half a view
    (judged on the compared rectangles alone, 9 % more of this map was cut)."""
    rng = np.random.default_rng(5)
    a, b, _ = _bad_edges(rng)
    a[:6] = a[6]  # replicated strips: each view's rectangle smaller than the view
    b[:, -5:] = b[:, [-6]]
    s = _settings()
    margin = (24, 30)
    pa, pb = tasks.prepared_view(a, s, margin), tasks.prepared_view(b, s, margin)
    assert pa[2] != (0, SHAPE[0], 0, SHAPE[1]) and pb[2][3] < SHAPE[1] - 5
    result = tasks._register(Pair("neighbour", 0, 1), pa, pb, margin, s, None)
    ncc = result.ncc
    limit = views_overlap(SHAPE, margin) < MIN_VIEW_OVERLAP
    assert limit.any() and not limit.all()
    sy, sx = np.abs(result.shift)  # the overlap at the peak, which weighs the pair
    assert result.overlap == pytest.approx((1 - sy / SHAPE[0]) * (1 - sx / SHAPE[1]))
    np.testing.assert_array_equal(ncc == -1.0, limit)


def test_a_shift_with_few_compared_pixels_is_not_compared():
    """Strips as wide as they may be, on opposite sides of the two views: at some shifts
    the views overlap by half but their rectangles by less than a quarter of the
    template's (``MIN_COMPARED_OVERLAP``): those are ``-1`` too."""
    rng = np.random.default_rng(5)
    a, b, _ = _bad_edges(rng)
    a[:12] = a[12]
    a[:, :6] = a[:, [6]]
    b[-12:] = b[-13]
    b[:, -6:] = b[:, [-7]]
    s = _settings()
    margin = (30, 30)
    pa, pb = tasks.prepared_view(a, s, margin), tasks.prepared_view(b, s, margin)
    ncc = tasks._register(Pair("neighbour", 0, 1), pa, pb, margin, s, None).ncc
    limit = views_overlap(SHAPE, margin) < MIN_VIEW_OVERLAP
    assert np.all(ncc[limit] == -1.0)
    assert 0 < np.sum((ncc == -1.0) & ~limit) < 0.05 * limit.sum()


def test_what_is_left_out_is_not_blurred_in_and_a_ramp_continues():
    """The view is blurred as if the pixels outside its compared rectangle continued a
    linear ramp: on a ramp whose outermost columns are dead and hot, the blurred
    rectangle is the clean ramp's blur (its edge repeated instead is off by the slope)."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(float)
    clean = 0.05 * y - 0.2 * x
    view = clean.copy()
    view[:, 0], view[:, -1] = 0.0, 30.0
    y0, y1, x0, x1 = compared_box(view)
    assert (x0, x1) == (DETECTOR_EDGE_PX, SHAPE[1] - DETECTOR_EDGE_PX)
    blurred = tasks.prepared_view(view, _settings())[0]
    expected = gaussian_blur(clean, _settings().roi_blur_px)
    np.testing.assert_allclose(blurred[y0:y1, x0:x1], expected[y0:y1, x0:x1], atol=1e-9)
