"""Inputs from beamlines that no one here made: flats taken during the scan, decimal commas
in angle lists, MRC tilt angles in the extended header, compressed inputs without codecs."""

from __future__ import annotations

import h5py
import numpy as np

from sxtdist.io.importer import import_scan

# -- flats taken in sets during the scan -------------------------------------------------------


def _decaying_nxtomo(path, keys, transmission, beam0=4000.0, decay=0.004, dark=100.0):
    """An NXtomo whose beam falls linearly with the frame index i: ``beam0 (1 - decay i)``.

    Flats read ``dark + beam(i)``, projections ``dark + T beam(i)``, darks ``dark``
    (float32: no rounding). Returns the flats' average, as the import took it before.
    """
    keys = np.asarray(keys)
    beam = beam0 * (1.0 - decay * np.arange(keys.size))
    frames = np.full((keys.size, *transmission.shape[1:]), dark, np.float32)
    frames[keys == 0] += transmission * beam[keys == 0, None, None]
    frames[keys == 1] += beam[keys == 1, None, None]
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det["data"] = frames
        det["image_key"] = keys.astype(np.int32)
        det["x_pixel_size"] = 30e-9
        angles = np.zeros(keys.size)
        angles[keys == 0] = np.linspace(-60, 60, int(np.sum(keys == 0)))
        e["sample/rotation_angle"] = angles
    return frames[keys == 1].mean(axis=0)


def _keys(*parts):
    return np.concatenate([np.full(n, k) for k, n in parts])


def test_flats_before_and_after_a_decaying_beam_are_interpolated(tmp_path):
    """NXtomo image_key 1 at the start and the end, a beam falling 0.4 % a frame (a
    synchrotron's decay, exaggerated): the flat of each projection is interpolated between
    the two sets, so a sample of constant transmission comes out constant; the average of
    the flats (the import before) tilts it by +-ln(beam/average)."""
    n = 40
    keys = _keys((2, 3), (1, 5), (0, n), (1, 5))
    t = np.full((n, 6, 8), 0.5, np.float32)
    mean_flat = _decaying_nxtomo(tmp_path / "decay.nx", keys, t)
    acq = import_scan(tmp_path / "decay.nx", tmp_path / "a.zarr", "roi", crop_cols=(1, 7))
    od = acq["roi"].data.compute()
    error_after = float(np.abs(od - np.log(2)).max())
    raw = 100.0 + t * 4000.0 * (1 - 0.004 * np.flatnonzero(keys == 0))[:, None, None]
    averaged = -np.log((raw - 100.0) / (mean_flat - 100.0))
    error_before = float(np.abs(averaged - np.log(2)).max())
    assert error_before > 0.05  # the average flat: 8 % too bright at the start
    assert error_after < 1e-5, (error_before, error_after)
    source = acq["roi"].meta["source"]
    assert source["flat_interpolated"] and source["flat_sets"] == 2


def test_flats_inside_the_series_weight_the_nearest_sets(tmp_path):
    """Flats inside the series (as BESSY U41 takes them every N projections): each projection
    uses the sets just before and after it, not the first and the last."""
    keys = _keys((1, 2), (0, 10), (1, 2), (0, 10), (2, 2), (1, 2), (0, 10))  # ends in projections
    t = np.random.default_rng(3).uniform(0.2, 0.9, (30, 5, 5)).astype(np.float32)
    _decaying_nxtomo(tmp_path / "mid.nx", keys, t, decay=0.01)
    od = import_scan(tmp_path / "mid.nx", tmp_path / "a.zarr", "roi")["roi"].data.compute()
    inside = slice(0, 20)  # between sets: exact for a linear beam
    np.testing.assert_allclose(od[inside], -np.log(t[inside]), atol=2e-5)
    # after the last set: its flat, as the nearest (the beam fell on by up to 10 frames)
    beam = 1 - 0.01 * np.flatnonzero(keys == 0)[20:]
    last = 1 - 0.01 * np.flatnonzero(keys == 1)[-2:].mean()
    np.testing.assert_allclose(od[20:], -np.log(t[20:] * beam[:, None, None] / last), atol=2e-5)


def test_one_set_of_flats_is_averaged_as_before(tmp_path):
    keys = _keys((2, 2), (1, 4), (0, 6))
    t = np.full((6, 4, 4), 0.25, np.float32)
    mean_flat = _decaying_nxtomo(tmp_path / "one.nx", keys, t)
    acq = import_scan(tmp_path / "one.nx", tmp_path / "a.zarr", "roi")
    raw = 100.0 + t * 4000.0 * (1 - 0.004 * np.arange(6, 12))[:, None, None]
    expected = -np.log((raw - 100.0) / (mean_flat - 100.0))
    np.testing.assert_allclose(acq["roi"].data.compute(), expected, rtol=1e-5)
    assert acq["roi"].meta["source"]["flat_interpolated"] is False
