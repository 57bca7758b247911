"""The simulator: determinism, physics sanity, CLI."""

from __future__ import annotations

import numpy as np

import sxtdist
from sxtdist.geometry import rigid_translation_nm
from sxtdist.simulation.phantom import LAC


def test_tiny_is_small_and_deterministic(tmp_path):
    """``tiny`` is the suite's preset: its work (views x detector x volume) stays small.
    Checked by its sizes, not a clock (a timing assertion failed on a loaded machine;
    speed is the benchmarks' business)."""
    a = sxtdist.simulate(tmp_path / "a.zarr", preset="tiny", seed=7)
    for name in ("full", "roi"):
        assert a[name].shape[0] <= 64 and max(a[name].shape[1:]) <= 64, a[name].shape
    b = sxtdist.simulate(tmp_path / "b.zarr", preset="tiny", seed=7)
    c = sxtdist.simulate(tmp_path / "c.zarr", preset="tiny", seed=8)
    for name in ("full", "roi"):
        np.testing.assert_array_equal(a[name].data.compute(), b[name].data.compute())
        assert not np.array_equal(a[name].data.compute(), c[name].data.compute())
    assert a.truth.shape[0] <= 64 and max(a.truth.shape) <= 64


def test_truth_values_and_shifts(tiny_acq):
    acq = sxtdist.open_acquisition(tiny_acq, mode="r")
    truth = acq.truth.compute()
    assert truth.min() >= 0.0
    # the cell is mostly cytoplasm-like material in ice; organelles are denser
    assert LAC["ice"] * 0.5 < np.median(truth[truth > 0]) < LAC["lipid_droplet"] * 1.5
    true_shifts = np.asarray(acq.truth_meta["shifts_px"]["roi"])
    assert true_shifts.shape == (acq["roi"].shape[0], 2)
    assert np.all(acq["roi"].geometry.shifts_px == 0)  # unaligned until align runs


def test_random_shifts_carry_no_rigid_translation(tmp_path):
    # a joint translation would only move the cell away from the truth volume
    acq = sxtdist.simulate(tmp_path / "s.zarr", preset="tiny", seed=2, photons=0, shifts_px=2.0)
    shifts = {n: np.asarray(acq.truth_meta["shifts_px"][n]) for n in ("full", "roi")}
    geoms = {n: acq[n].geometry for n in shifts}
    np.testing.assert_allclose(rigid_translation_nm(shifts, geoms), 0.0, atol=1e-6)
    assert all(np.std(s) > 1.0 for s in shifts.values())
    only_roi = sxtdist.simulate(
        tmp_path / "r.zarr",
        preset="tiny",
        seed=2,
        photons=0,
        shifts_px={"roi": 2.0, "full": 0},
    )
    assert not np.any(only_roi.truth_meta["shifts_px"]["full"])  # no jitter stays none


def test_data_are_optical_depth_of_the_truth(tmp_path):
    """Noise-free, PSF-free, unshifted: the central ROI projection at 0° matches the
    truth's line integral along the beam (a different discretisation, so to ~5%)."""
    acq = sxtdist.simulate(
        tmp_path / "n.zarr", preset="tiny", seed=1, photons=0, shifts_px=0, psf=False
    )
    truth = acq.truth.compute()
    v_um = acq.truth_meta["voxel_size_nm"] * 1e-3
    roi = acq["roi"]
    assert roi.geometry.pixel_size_nm == acq.truth_meta["voxel_size_nm"]
    # at 0° the beam runs along y (u = x)
    sino = truth.sum(axis=1) * v_um  # (z, x)
    nz, nx = sino.shape
    rows, cols = roi.shape[1:]
    ox = int(round(roi.geometry.center_offset_px[1]))
    x0 = (nx - cols) // 2 + ox
    z0 = (nz - rows) // 2
    expected = sino[z0 : z0 + rows, x0 : x0 + cols]
    got = roi.data[0].compute()
    rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert rel < 0.05, rel


def test_cli_simulate_then_info(tmp_path, run_cli):
    out = tmp_path / "s.zarr"
    code, _, err = run_cli(
        "simulate",
        out,
        "--preset",
        "tiny",
        "--n-full",
        "5",
        "--shifts",
        "full=0,roi=2",
        "--range",
        "360",
        "--quiet",
    )
    assert code == 0, err
    acq = sxtdist.open_acquisition(out)
    assert acq["full"].shape[0] == 5
    assert acq["roi"].geometry.angles_deg.max() > 180
    assert np.all(np.asarray(acq.truth_meta["shifts_px"]["full"]) == 0)
    code, _, err = run_cli("simulate", out, "--preset", "tiny")
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(
        "simulate", tmp_path / "x.zarr", "--preset", "tiny", "--pixel-size-nm", "-3"
    )
    assert code == 2 and "pixel size" in err


def test_views_in_bands_and_truth_in_slabs_equal_the_whole(monkeypatch):
    """Bounded memory changes nothing: a view traced in bands of a few rows (PSF and
    intensity mismatch on, shifted) equals the view traced at once, and a truth made
    slab by slab in small pieces equals the whole volume rasterised at once."""
    from sxtdist.geometry import ScanGeometry, VolumeGrid
    from sxtdist.simulation import forward, phantom
    from sxtdist.simulation.phantom import make_cell

    cell = make_cell(np.random.default_rng(4), 4000.0, 6000.0, 3000.0, 100.0)
    g = ScanGeometry(np.array([0.0, 33.0, 121.0]), 100.0, (29, 40), (0.5, -2.0))
    g = g.with_shifts(np.array([[0.7, -1.2], [-1.5, 0.3], [0.0, 2.2]]))
    model = forward.ForwardModel(psf_fwhm_nm=150.0, intensity_mismatch=(0.8, 1.6))
    whole = [forward.view_transmission(cell, g, model, a) for a in range(3)]
    assert len(forward._Sampling.of(g, model).bands()) == 1
    sampling = forward._Sampling.of(g, model)
    monkeypatch.setattr(forward, "BAND_BYTES", 3 * 2 * sampling.c_fine.size * 12 * 8)  # 3 rows
    assert len(forward._Sampling.of(g, model).bands()) == 10
    for a in range(3):
        np.testing.assert_array_equal(forward.view_transmission(cell, g, model, a), whole[a])

    grid = VolumeGrid((30, 60, 60), 100.0)
    full = cell.rasterize(grid)
    monkeypatch.setattr(phantom, "RASTER_BYTES", 60 * 60 * phantom.RASTER_BYTES_PER_VOXEL * 2)
    slabs = [cell.rasterize(grid, z_range=(z, min(30, z + 7))) for z in range(0, 30, 7)]
    np.testing.assert_array_equal(np.concatenate(slabs), full)
    assert full.max() > 0.2  # the cell is there


def test_simulated_views_are_written_as_they_are_made(tmp_path, monkeypatch):
    """The simulator never holds a scan: each view is written before the next is made."""
    from sxtdist import dataset

    written = []
    original = dataset.write_stream

    def spy(array, stream):
        def watch(pieces):
            for piece in pieces:
                written.append(piece.shape)
                yield piece

        original(array, dataset.Stream(stream.shape, watch(stream.pieces)))

    monkeypatch.setattr(dataset, "write_stream", spy)
    acq = sxtdist.simulate(tmp_path / "t.zarr", preset="tiny", seed=1)
    n_full, n_roi = acq["full"].shape[0], acq["roi"].shape[0]
    views = [s for s in written if len(s) == 2]
    assert len(views) == n_full + n_roi and {s for s in views} == {
        acq["full"].shape[1:],
        acq["roi"].shape[1:],
    }
    assert [s for s in written if len(s) == 3] == [acq.truth.shape]  # one slab for 32 slices


def test_options_object_and_keywords_are_one_simulation(tmp_path):
    """A SimulationOptions and its fields as keywords make the same data (keywords win
    over the object); an unknown keyword and bad values are refused before anything is
    written."""
    import pytest

    from sxtdist.simulation import SimulationOptions

    opts = SimulationOptions(n_full=3, photons=500.0, psf=False)
    a = sxtdist.simulate(tmp_path / "a.zarr", "tiny", 2, opts, progress=False)
    b = sxtdist.simulate(tmp_path / "b.zarr", "tiny", 2, n_full=3, photons=500.0, psf=False)
    c = sxtdist.simulate(tmp_path / "c.zarr", "tiny", 2, opts, n_full=4)
    assert a["full"].geometry.n_angles == 3 and c["full"].geometry.n_angles == 4
    assert a.truth_meta["psf"] is False and c.truth_meta["psf"] is False
    for name in ("full", "roi"):
        np.testing.assert_array_equal(a[name].data.compute(), b[name].data.compute())
    with pytest.raises(TypeError, match="n_views"):
        sxtdist.simulate(tmp_path / "d.zarr", "tiny", n_views=3)
    with pytest.raises(sxtdist.ParameterError, match="180 or 360"):
        sxtdist.simulate(tmp_path / "e.zarr", "tiny", arc_deg=90)
    assert not (tmp_path / "d.zarr").exists() and not (tmp_path / "e.zarr").exists()
