"""Valid files laid out as real instruments and programs write them, not as our own writers do:
each imports with the angles, order, pixel size and values that were written, or is refused
in one line naming the file."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import tifffile

from sxtdist.io.importer import import_scan

RNG = np.random.default_rng(11)


def _nxtomo_with_both_pixel_sizes(path, raw, angles_deg):
    """An NXtomo as ESRF's ``nxtomo`` writes it: the detector's own 6.5 µm pixel in the
    detector group, the 15 nm object-plane pixel under ``sample``."""
    with h5py.File(path, "w") as f:
        e = f.create_group("entry0000")
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det["data"] = np.concatenate([np.full((1, *raw.shape[1:]), 1000, np.uint16), raw])
        det["image_key"] = np.r_[1, np.zeros(len(raw), int)].astype(np.uint8)
        det["x_pixel_size"] = 6.5e-6
        det["x_pixel_size"].attrs["units"] = "m"
        e["sample/x_pixel_size"] = 15e-9
        e["sample/x_pixel_size"].attrs["units"] = "m"
        e["sample/rotation_angle"] = np.r_[0.0, angles_deg]
        e["sample/rotation_angle"].attrs["units"] = "degree"


def test_nxtomo_object_plane_pixel_size_is_the_samples_not_the_detectors(tmp_path):
    raw = RNG.integers(200, 900, (4, 5, 6)).astype(np.uint16)
    angles = np.array([-60.0, -20.0, 20.0, 60.0])
    _nxtomo_with_both_pixel_sizes(tmp_path / "scan.nx", raw, angles)
    scan = import_scan(tmp_path / "scan.nx", tmp_path / "a.zarr", "roi")["roi"]
    assert scan.pixel_size_nm == pytest.approx(15.0)  # not 6500 nm, the camera's pixel
    np.testing.assert_allclose(scan.geometry.angles_deg, angles)
    np.testing.assert_allclose(scan.data.compute(), -np.log(raw / 1000.0), rtol=1e-5)


def _expect_refused(run_cli, args, acq, words):
    code, _, err = run_cli("import", *args, acq, "--scan", "roi")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sxtdist: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    assert not os.path.exists(acq)


def test_a_folder_holding_multi_page_tiffs_is_refused_not_read_one_frame_each(tmp_path, run_cli):
    raw = RNG.integers(100, 4095, (6, 5, 7)).astype(np.uint16)  # 12-bit counts
    folder = tmp_path / "parts"
    folder.mkdir()
    # a long scan saved in two parts (as ImageJ or a camera splits files): 3 frames each
    tifffile.imwrite(folder / "scan_1.tif", raw[:3], photometric="minisblack")
    tifffile.imwrite(folder / "scan_2.tif", raw[3:], photometric="minisblack")
    tifffile.imwrite(tmp_path / "flat.tif", np.full((5, 7), 4095, np.uint16))
    args = [
        folder,
        "--angle-range",
        "-60:60",
        "--pixel-size-nm",
        "20",
        "--flat",
        tmp_path / "flat.tif",
    ]
    _expect_refused(run_cli, args, tmp_path / "a.zarr", ["scan_1.tif", "holds 3 frames"])
