"""The interior registrations' search: a coarse pass over the whole range, each pair's
window around what it predicts, and a peak on a window's edge widened, not dropped."""

from __future__ import annotations

import numpy as np
import pytest

import sxtdist
from sxtdist.alignment.ncc import NccSurface, SearchWindow
from sxtdist.alignment.pairs import Pair, PairResult, peak_inside_map
from sxtdist.alignment.runner import coarse_binning, search_margin, search_range
from sxtdist.alignment.tasks import PairSettings, map_margin, predicted_window
from sxtdist.geometry import ScanGeometry


def _two_peaks(shape=(21, 31)) -> np.ndarray:
    """An NCC-like map with its highest peak at (-7, 11) and a lower one at (2, -3)."""
    my, mx = shape[0] // 2, shape[1] // 2
    y, x = np.mgrid[-my : my + 1, -mx : mx + 1].astype(float)
    return 0.9 * np.exp(-((y + 7) ** 2 + (x - 11) ** 2) / 4) + 0.6 * np.exp(
        -((y - 2) ** 2 + (x + 3) ** 2) / 4
    )


def test_window_keeps_the_peak_a_coarse_estimate_allows():
    surf = NccSurface(_two_peaks())
    s, _ = surf.peak()
    np.testing.assert_allclose(s, [-7, 11], atol=0.05)
    s, value = surf.peak(SearchWindow([1, -2], [4, 4]))
    np.testing.assert_allclose(s, [2, -3], atol=0.05)
    assert value == pytest.approx(0.6, abs=0.01)


def test_a_peak_on_a_window_edge_is_not_inside():
    ncc = _two_peaks()
    window = SearchWindow([0, 5], [3, 3])  # the high peak lies beyond x = 8
    s, _ = NccSurface(ncc).peak(window)
    assert s[1] == pytest.approx(8.0)
    result = PairResult(Pair("neighbour", 0, 1), ncc, s, 0.5, 0.1, window=window)
    assert not peak_inside_map(result)
    inside = PairResult(Pair("neighbour", 0, 1), ncc, np.array([2.0, -3.0]), 0.6, 0.1)
    assert peak_inside_map(inside)
    # on the map's own edge (x = 15) without a window: not inside either
    edge = PairResult(Pair("neighbour", 0, 1), ncc, np.array([0.0, 15.0]), 0.6, 0.1)
    assert not peak_inside_map(edge)


def _inside_by_arrays(result: PairResult) -> bool:
    """:func:`peak_inside_map` as it was written on arrays (before it took Python floats)."""
    margin = np.asarray(result.ncc.shape) // 2
    s = np.asarray(result.shift, float)
    if result.window is None:
        inside = bool(np.all(np.abs(s) < margin - 0.5))
    else:
        w = result.window
        inner = np.minimum(w.centre + w.radius, margin) - 0.5
        outer = np.maximum(w.centre - w.radius, -margin) + 0.5
        inside = bool(np.all((s < inner) & (s > outer)))
    if not inside:
        return False
    iy, ix = (int(round(c)) for c in s + margin)
    return bool(np.all(result.ncc[max(iy - 2, 0) : iy + 3, max(ix - 2, 0) : ix + 3] > -1.0))


def test_peak_inside_map_is_what_it_was_on_arrays():
    """The same answer on every shift of a grid of half pixels and off it (the edges
    exactly), with and without windows, and beside the map's -1 (no overlap)."""
    ncc = _two_peaks()
    ncc[:3, :] = -1.0  # shifts where the views do not overlap enough
    rng = np.random.default_rng(0)
    shifts = [
        np.array([y, x]) for y in np.arange(-11, 11.5, 0.5) for x in np.arange(-16, 16.5, 0.5)
    ]
    shifts += list(rng.uniform(-11, 11, (400, 2)) * [1, 16 / 11])
    windows = [None, SearchWindow([0, 5], [3, 3]), SearchWindow([-8, -14], [4, 6])]
    windows.append(SearchWindow([9, 12], [5, 5]))  # reaching past the map
    for window in windows:
        for s in shifts:
            result = PairResult(Pair("neighbour", 0, 1), ncc, s, 0.5, 0.1, window=window)
            assert peak_inside_map(result) == _inside_by_arrays(result), (s, window)


def _settings(**kw) -> PairSettings:
    g = ScanGeometry(np.arange(4.0), 60.0, (128, 60))
    base = dict(
        roi_array="", full_array=None, roi=g, full=None, margin=(27, 18), roi_blur_px=1.0,
        anchor_blur_px=1.0, intensity_window_deg=1.0, search_range=(27, 27), coarse_bin=1,
    )  # fmt: skip
    return PairSettings(**{**base, **kw})


def test_predicted_window_and_its_map():
    """An anchor's window sits on its view's coarse peak, a neighbour's on the difference of
    its two views' (times the binning); the map reaches it but never past the range."""
    settings = _settings(coarse_bin=2)

    def coarse(shift):
        return PairResult(Pair("anchor", 0, 0), np.zeros((29, 29)), np.array(shift, float), 1, 1)

    w = predicted_window(Pair("anchor", 0, 0), [coarse([1.2, -3.0])], settings)
    np.testing.assert_array_equal(w.centre, [2, -6])
    np.testing.assert_array_equal(w.radius, settings.margin)
    w = predicted_window(Pair("neighbour", 0, 1), [coarse([1.2, -3.0]), coarse([0, 4])], settings)
    np.testing.assert_array_equal(w.centre, [2, -14])
    assert map_margin(w, settings) == (27, 27)  # 2 + 27 and 14 + 18: both capped at the range
    assert predicted_window(Pair("neighbour", 0, 1), [coarse([0, 0]), None], settings) is None
    off_edge = coarse([0, 14.0])  # on the coarse map's edge: predicts nothing
    assert predicted_window(Pair("anchor", 0, 0), [off_edge], settings) is None


def test_search_sizes():
    assert search_range((128, 60)) == (27, 27)
    assert search_margin((128, 60)) == (27, 18)
    assert search_margin((1024, 1024)) == (32, 32) and search_range((1024, 1024)) == (460, 460)
    assert coarse_binning((128, 60)) == 1 and coarse_binning((1024, 1024)) == 16
    assert search_range((64, 64), 2.5) == search_margin((64, 64), 2.5) == (3, 3)


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def one_view_far_off(tmp_path_factory):
    """Noise-free tiny data whose interior view 20 moved 10 columns (the pairs' own margin
    is 8 there, the search range 12) and view 21 back."""
    from sxtdist.simulation import simulation_geometries
    from sxtdist.simulation.presets import get_preset

    p = get_preset("tiny")
    geoms = simulation_geometries(p, p.full, p.roi)
    rng = np.random.default_rng(1)
    motion = {k: rng.normal(0, 0.5, (g.n_angles, 2)) for k, g in geoms.items()}
    motion["roi"][20] += (0.0, 10.0)
    path = tmp_path_factory.mktemp("far") / "far.zarr"
    sxtdist.simulate(path, preset="tiny", seed=2, photons=0, motion=motion)
    return str(path)


@pytest.mark.parametrize("coarse", [True, False], ids=["coarse", "widened"])
def test_a_view_beyond_the_pairs_margin_is_found_not_dropped(client, one_view_far_off, coarse):
    """Every pair used and the far view within 0.3 px: found by the coarse pass's
    prediction, or (without it) by widening the searches whose peak lay on their edge."""
    res = sxtdist.align(one_view_far_off, client=client, report="", dry_run=True, coarse=coarse)
    info = res.info["roi"]
    assert info["search_px"][1] < 10 < info["search_range_px"][1]
    assert info["pairs_used"] == info["pairs"]
    assert (info["pairs_widened"] > 0) != coarse
    err = res.error_arrays(sxtdist.open_acquisition(one_view_far_off))["roi"]
    # tiny: 0.32 px for view 20, 0.27 px RMS (0.20 and 0.21 comparing whole views: each
    # view's outermost rows and columns left out are a seventh of its 28 columns)
    assert np.hypot(*err[20]) < 0.4 and np.sqrt(np.mean(err**2)) < 0.3


def test_no_search_goes_beyond_max_shift(client, one_view_far_off):
    """``max_shift_px`` bounds every search: the far view's pairs are left out, with the
    warning that says so."""
    with pytest.warns(sxtdist.errors.SxtdistWarning, match="pairs left out"):
        res = sxtdist.align(
            one_view_far_off, client=client, report="", dry_run=True, max_shift_px=6
        )
    info = res.info["roi"]
    assert info["search_range_px"] == [6, 6] and info["pairs_used"] < info["pairs"]


def test_a_peak_next_to_the_overlap_limit_is_not_inside():
    """Where the views overlap too little the map is -1; a spline through that cliff
    overshoots, so a peak within 2 px of it is left out like one on the map's edge."""
    ncc = _two_peaks()
    result = PairResult(Pair("neighbour", 0, 1), ncc, np.array([-7.0, 11.0]), 0.9, 0.1)
    assert peak_inside_map(result)
    cut = ncc.copy()
    cut[:, 15 + 13 :] = -1.0  # shifts beyond x = 12 overlap too little
    assert not peak_inside_map(PairResult(Pair("neighbour", 0, 1), cut, result.shift, 0.9, 0.1))
    cut = ncc.copy()
    cut[:, 15 + 14 :] = -1.0  # 3 px away: clear of it
    assert peak_inside_map(PairResult(Pair("neighbour", 0, 1), cut, result.shift, 0.9, 0.1))
