"""Beamline layouts and the metadata their files lack: NXtomo as found in the wild (dataset
paths, external links, flats and darks in their own files, virtual datasets), TIFF folders
with angles in the names, frame crops, the physics options, and ``sxtdist edit``.

Every layout is written here by the test, in the shape the beamline writes it, and each
has a wrong-path case that must exit 2 with one line naming the path."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import tifffile

import sxtdist
from sxtdist.errors import InputError, ParameterError
from sxtdist.io.importer import ImportOptions, import_scan
from sxtdist.io.metadata import ScanPhysics, edit_scan

RNG = np.random.default_rng(11)
FLAT, DARK = 1000.0, 20.0


def _counts(n, rows, cols):
    t = RNG.uniform(0.1, 0.95, (n, rows, cols))
    return np.round(DARK + t * (FLAT - DARK))


def _od(raw):
    return -np.log((raw - DARK) / (FLAT - DARK))


def _expect_error(run_cli, args, words):
    """Exit 2, one line on stderr that names ``words``, and no output written."""
    acq = [a for a in args if str(a).endswith(".zarr")]
    before = {a: sorted(os.listdir(a)) for a in acq if os.path.exists(a)}
    code, _, err = run_cli(*args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sxtdist: error: "), err
    for w in words:
        assert w in err, err
    for a in acq:
        if a in before:
            assert sorted(os.listdir(a)) == before[a]
        else:
            assert not os.path.exists(a), a
    return err


# -- NXtomo: Diamond-like master file with the frames in an external file ---------------------


def _diamond_master(tmp_path, raw, angles_rad, keys):
    """``/entry1/tomo_entry`` (an NXsubentry defined as NXtomo) whose ``data/data`` links to
    the detector's own file, the image key under ``instrument/detector``, the angles both
    under a motor's name (radians) and in the NXdata group (degrees)."""
    with h5py.File(tmp_path / "pco1-42.hdf", "w") as f:
        f["entry/instrument/detector/data"] = raw.astype(np.uint16)
    with h5py.File(tmp_path / "42.nxs", "w") as f:
        t = f.create_group("entry1/tomo_entry")
        t.attrs["NX_class"] = "NXsubentry"
        t["definition"] = "NXtomo"
        t["data/data"] = h5py.ExternalLink("pco1-42.hdf", "/entry/instrument/detector/data")
        t["instrument/detector/image_key"] = np.asarray(keys, np.int8)
        t["data/rotation_angle"] = np.degrees(angles_rad)
        t["data/rotation_angle"].attrs["units"] = "degrees"
        f["entry1/instrument/t1_theta/t1_theta"] = angles_rad
        f["entry1/instrument/t1_theta/t1_theta"].attrs["units"] = "rad"
        t["instrument/detector/x_pixel_size"] = 2.5e-8  # metres (NeXus' default)
        t["instrument/detector/count_time"] = np.full(len(keys), 0.25)
    return tmp_path / "42.nxs"


def _frames(n, keys, rows=6, cols=7):
    """Frames in ``keys`` order: flats and darks at their level, projections random."""
    proj = _counts(n, rows, cols)
    it = iter(proj)
    out = [next(it) if k == 0 else np.full((rows, cols), FLAT if k == 1 else DARK) for k in keys]
    return np.asarray(out), proj


def test_nxtomo_master_with_external_link_found_and_named(tmp_path, run_cli):
    keys = [2, 1, 0, 0, 0, 0, 0, 1, 2]
    raw, proj = _frames(5, keys)
    angles = np.radians(np.linspace(0, 180, 9))
    master = _diamond_master(tmp_path, raw, angles, keys)
    os.chdir(tmp_path.parent)  # the link is found beside the master, not in the working dir
    acq = import_scan(master, tmp_path / "a.zarr", "roi")  # found by search
    scan = acq["roi"]
    np.testing.assert_allclose(scan.data.compute(), _od(proj), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scan.geometry.angles_deg, np.linspace(0, 180, 9)[2:7])
    assert scan.pixel_size_nm == pytest.approx(25.0)
    assert scan.meta["exposure_s"] == pytest.approx(0.25)
    assert scan.meta["source"]["data_path"] == "/entry1/tomo_entry/data/data"

    code, _, err = run_cli(
        "import", master, tmp_path / "b.zarr", "--scan", "roi",
        "--data-path", "/entry1/tomo_entry/data/data",
        "--angles-path", "/entry1/instrument/t1_theta/t1_theta",
        "--image-key-path", "/entry1/tomo_entry/instrument/detector/image_key", "-q",
    )  # fmt: skip
    assert code == 0, err
    scan = sxtdist.open_acquisition(tmp_path / "b.zarr")["roi"]
    np.testing.assert_allclose(scan.data.compute(), _od(proj), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scan.geometry.angles_deg, np.linspace(0, 180, 9)[2:7], atol=1e-9)

    for option, wrong in (
        ("--data-path", "/entry1/tomo_entry/data/frames"),
        ("--angles-path", "/entry1/instrument/theta"),
        ("--image-key-path", "/entry1/tomo_entry/instrument/image_key"),
    ):
        _expect_error(
            run_cli,
            ["import", master, tmp_path / "c.zarr", "--scan", "roi", option, wrong],
            [str(master), wrong, option],
        )
    # the linked file gone: the link and its file are named
    os.rename(tmp_path / "pco1-42.hdf", tmp_path / "moved.hdf")
    _expect_error(
        run_cli,
        ["import", master, tmp_path / "c.zarr", "--scan", "roi"],
        ["/entry1/tomo_entry/data/data", "external link", "pco1-42.hdf"],
    )


def test_nxtomo_angle_units(tmp_path, run_cli):
    raw = _counts(4, 5, 5)
    for unit, values, expect in (
        ("rad", np.radians([0, 30, 60, 90]), [0, 30, 60, 90]),
        ("degree", [0, 30, 60, 90], [0, 30, 60, 90]),
        (None, [0, 45, 90, 135], [0, 45, 90, 135]),
    ):
        with h5py.File(tmp_path / "u.nx", "w") as f:
            f["entry/definition"] = "NXtomo"
            f["entry/instrument/detector/data"] = raw
            f["entry/sample/rotation_angle"] = np.asarray(values, float)
            if unit:
                f["entry/sample/rotation_angle"].attrs["units"] = unit
        acq = import_scan(
            tmp_path / "u.nx", tmp_path / f"{unit}.zarr", "roi", values="od", pixel_size_nm=10
        )
        np.testing.assert_allclose(acq["roi"].geometry.angles_deg, expect, atol=1e-9)
    with h5py.File(tmp_path / "u.nx", "a") as f:
        f["entry/sample/rotation_angle"].attrs["units"] = "furlong"
    _expect_error(
        run_cli,
        ["import", tmp_path / "u.nx", tmp_path / "x.zarr", "--scan=roi", "--values=od"],
        ["/entry/sample/rotation_angle", "furlong"],
    )


def test_nxtomo_flats_and_darks_in_their_own_files(tmp_path, run_cli):
    """Diamond I12: projections, flats and darks as three scans, each its own file."""
    proj = _counts(4, 6, 8)
    with h5py.File(tmp_path / "proj.nxs", "w") as f:
        f["entry1/pco1/data"] = proj.astype(np.uint16)
        f["entry1/pco1/rotation_angle"] = np.array([0.0, 45, 90, 135])
    with h5py.File(tmp_path / "flats.nxs", "w") as f:
        f["entry1/pco1/data"] = np.full((3, 6, 8), FLAT, np.uint16)
    with h5py.File(tmp_path / "darks.nxs", "w") as f:
        det = f.create_group("entry/instrument/detector")  # another layout, keyed as darks
        det["data"] = np.full((2, 6, 8), DARK, np.uint16)
        det["image_key"] = np.array([2, 2])
    acq = tmp_path / "a.zarr"
    args = ["import", tmp_path / "proj.nxs", acq, "--scan", "full", "--pixel-size-nm", "40",
            "--data-path", "/entry1/pco1/data", "--flat", tmp_path / "flats.nxs",
            "--dark", tmp_path / "darks.nxs"]  # fmt: skip
    # the flats file is read at --data-path; the darks file has another layout
    err = _expect_error(run_cli, [*args], [str(tmp_path / "darks.nxs"), "--dark-data-path"])
    assert "/entry1/pco1/data" in err
    _expect_error(
        run_cli,
        [*args, "--dark-data-path", "/entry/instrument/detector/dark"],
        [str(tmp_path / "darks.nxs"), "/entry/instrument/detector/dark", "--dark-data-path"],
    )
    code, _, err = run_cli(*args, "--dark-data-path", "/entry/instrument/detector/data", "-q")
    assert code == 0, err
    scan = sxtdist.open_acquisition(acq)["full"]
    np.testing.assert_allclose(scan.data.compute(), _od(proj), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scan.geometry.angles_deg, [0, 45, 90, 135])
    assert scan.meta["source"]["flat"].endswith("flats.nxs")


def test_nxtomo_virtual_dataset_with_a_missing_source(tmp_path, run_cli):
    raw = _counts(3, 4, 4)
    with h5py.File(tmp_path / "frames.h5", "w") as f:
        f["d"] = raw
    with h5py.File(tmp_path / "vds.nxs", "w") as f:
        layout = h5py.VirtualLayout(shape=raw.shape, dtype=raw.dtype)
        layout[:] = h5py.VirtualSource("frames.h5", "d", shape=raw.shape)
        f.create_virtual_dataset("entry/instrument/detector/data", layout, fillvalue=0)
    acq = import_scan(
        tmp_path / "vds.nxs", tmp_path / "a.zarr", "roi", angle_range=(0, 90),
        pixel_size_nm=10, values="od",
    )  # fmt: skip
    np.testing.assert_allclose(acq["roi"].data.compute(), raw, rtol=1e-6)
    os.remove(tmp_path / "frames.h5")  # h5py would now read zeros
    _expect_error(
        run_cli,
        [
            "import",
            tmp_path / "vds.nxs",
            tmp_path / "b.zarr",
            "--scan=roi",
            "--values=od",
            "--angle-range=0:90",
            "--pixel-size-nm=10",
        ],
        ["/entry/instrument/detector/data", "virtual dataset", "frames.h5"],
    )


def test_nxtomo_nothing_where_expected(tmp_path, run_cli):
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["scan/camera/frames"] = np.ones((2, 3, 3))
    _expect_error(
        run_cli,
        ["import", tmp_path / "odd.h5", tmp_path / "a.zarr", "--scan=roi"],
        ["no projections found", "--data-path"],
    )
    _expect_error(
        run_cli,
        ["import", tmp_path / "odd.h5", tmp_path / "a.zarr", "--scan=roi", "--data-path=/scan"],
        ["/scan", "is a group"],
    )
    # an NXtomo option on a TIFF is refused, not ignored
    tifffile.imwrite(tmp_path / "t.tif", np.ones((2, 3, 3), np.float32) * 0.5)
    _expect_error(
        run_cli,
        ["import", tmp_path / "t.tif", tmp_path / "a.zarr", "--scan=roi", "--data-path=/x"],
        ["--data-path", "nxtomo"],
    )


# -- TIFF folder: one file per angle -----------------------------------------------------------


def test_tiff_folder_with_angles_in_the_names(tmp_path, run_cli):
    folder = tmp_path / "frames"
    folder.mkdir()
    angles = [-60.0, -30.5, 0.0, 29.5, 60.0]
    t = RNG.uniform(0.2, 0.9, (5, 6, 7)).astype(np.float32)
    for i, a in enumerate(angles):
        tifffile.imwrite(folder / f"tomo_{i:04d}_{a:+.1f}deg.tif", t[i])
    tifffile.imwrite(folder / "flat_0000.tif", np.ones((6, 7), np.float32))  # not a projection
    acq = tmp_path / "a.zarr"
    pattern = r"tomo_\d+_(?P<angle>[-+0-9.]+)deg"
    code, _, err = run_cli(
        "import", folder, acq, "--scan", "roi", "--angles-from-names", pattern,
        "--pixel-size-nm", "30", "-q",
    )  # fmt: skip
    assert code == 0, err
    scan = sxtdist.open_acquisition(acq)["roi"]
    np.testing.assert_allclose(scan.geometry.angles_deg, angles)
    np.testing.assert_allclose(scan.data.compute(), -np.log(t), rtol=1e-6)
    for bad, words in (
        ("nomatch_(\\d+)", ["no file name matches", str(folder)]),
        ("tomo_(", ["not a regular expression"]),
        ("tomo_", ["has no group"]),
    ):
        _expect_error(
            run_cli,
            [
                "import",
                folder,
                tmp_path / "b.zarr",
                "--scan=roi",
                "--pixel-size-nm=30",
                "--angles-from-names",
                bad,
            ],
            words,
        )
    # angles from a text file instead; a missing list is named
    (folder / "flat_0000.tif").unlink()  # (with it there, a warning says it is no projection)
    np.savetxt(tmp_path / "angles.txt", angles)
    acq = import_scan(
        tmp_path / "frames" / "tomo_0000_-60.0deg.tif", tmp_path / "c.zarr", "full",
        angles=[12.0], pixel_size_nm=30,
    )  # fmt: skip
    assert acq["full"].geometry.angles_deg.tolist() == [12.0]
    _expect_error(
        run_cli,
        [
            "import",
            folder,
            tmp_path / "d.zarr",
            "--scan=roi",
            "--pixel-size-nm=30",
            "--angles",
            tmp_path / "missing.txt",
        ],
        ["missing.txt"],
    )


# -- crops -----------------------------------------------------------------------------------


def test_crop_rows_and_cols_and_the_centre_they_move(tmp_path, run_cli):
    keys = [1, 0, 0, 0, 2]
    raw, proj = _frames(3, keys, rows=8, cols=10)
    with h5py.File(tmp_path / "s.nx", "w") as f:
        f["entry/definition"] = "NXtomo"
        f["entry/instrument/detector/data"] = raw
        f["entry/instrument/detector/image_key"] = keys
        f["entry/sample/rotation_angle"] = [0.0, 0, 60, 120, 0]
    code, _, err = run_cli(
        "import", tmp_path / "s.nx", tmp_path / "a.zarr", "--scan=roi", "--pixel-size-nm=10",
        "--crop-rows=2:7", "--crop-cols=1:5", "--center-offset-px=0.5,-1", "-q",
    )  # fmt: skip
    assert code == 0, err
    scan = sxtdist.open_acquisition(tmp_path / "a.zarr")["roi"]
    np.testing.assert_allclose(scan.data.compute(), _od(proj)[:, 2:7, 1:5], rtol=1e-5, atol=1e-6)
    # rows 2..6 of 8: centre 4 against 3.5; columns 1..4 of 10: centre 2.5 against 4.5
    assert scan.geometry.center_offset_px == pytest.approx((0.5 + 0.5, -1.0 - 2.0))
    assert scan.meta["source"]["crop"] == [[2, 7], [1, 5]]
    for crop, words in (("--crop-cols=4:12", ["--crop-cols 4:12", "0:10"]),
                        ("--crop-rows=5:5", ["--crop-rows 5:5"]),
                        ("--crop-rows=1.5:4", ["--crop-rows", "whole pixels"])):  # fmt: skip
        _expect_error(
            run_cli,
            [
                "import",
                tmp_path / "s.nx",
                tmp_path / "b.zarr",
                "--scan=roi",
                "--pixel-size-nm=10",
                crop,
            ],
            words,
        )


# -- the physics a file lacks ----------------------------------------------------------------


def test_physics_options_at_import(tmp_path, run_cli):
    t = RNG.uniform(0.2, 0.9, (3, 4, 5)).astype(np.float32)
    tifffile.imwrite(tmp_path / "t.tif", t, photometric="minisblack")
    acq = tmp_path / "a.zarr"
    code, _, err = run_cli(
        "import", tmp_path / "t.tif", acq, "--scan=full", "--angle-range=0:90",
        "--pixel-size-nm=60", "--energy-ev=517", "--zone-plate-ozw-nm=60", "--photons=1500",
        "--exposure-s=0.2", "-q",
    )  # fmt: skip
    assert code == 0, err
    m = sxtdist.open_acquisition(acq)["full"].meta
    assert (m["pixel_size_nm"], m["energy_ev"], m["zone_plate_ozw_nm"]) == (60, 517, 60)
    assert (m["photons_per_pixel"], m["exposure_s"]) == (1500, 0.2)
    for option in ("--zone-plate-ozw-nm", "--energy-ev", "--pixel-size-nm", "--photons",
                   "--exposure-s"):  # fmt: skip
        _expect_error(
            run_cli,
            [
                "import",
                tmp_path / "t.tif",
                tmp_path / "b.zarr",
                "--scan=roi",
                "--angle-range=0:90",
                "--pixel-size-nm=60",
                f"{option}=-3",
            ],
            [option, "positive"],
        )
    with pytest.raises(ParameterError, match="unknown import option"):
        import_scan(tmp_path / "t.tif", tmp_path / "b.zarr", "roi", zone_plate_nm=35)
    # from Python the message names the Python spelling, not the flag (no flags in a notebook)
    with pytest.raises(ParameterError, match=r"^ScanPhysics\(zone_plate_ozw_nm=\.\.\.\)"):
        ImportOptions(physics=ScanPhysics(zone_plate_ozw_nm=float("nan")))
    with pytest.raises(InputError, match=r"give angles= .* or angle_range=") as err:
        import_scan(tmp_path / "t.tif", tmp_path / "c.zarr", "roi", pixel_size_nm=60)
    assert "--" not in str(err.value)
    _expect_error(  # the same failure from the command line names the flags
        run_cli,
        ["import", tmp_path / "t.tif", tmp_path / "c.zarr", "--scan=roi", "--pixel-size-nm=60"],
        ["--angles", "--angle-range"],
    )
    with pytest.raises(ParameterError, match=r"^values=: 'counts'"):
        ImportOptions(values="counts")


def test_file_physics_read_and_overridden(tmp_path):
    """NXtomo's x_pixel_size and energy are read, and a stated value wins."""
    raw = _counts(2, 3, 3)
    with h5py.File(tmp_path / "s.nx", "w") as f:
        f["entry/definition"] = "NXtomo"
        f["entry/instrument/detector/data"] = raw
        f["entry/instrument/detector/x_pixel_size"] = 0.03
        f["entry/instrument/detector/x_pixel_size"].attrs["units"] = "um"
        f["entry/beam/incident_energy"] = 0.52
        f["entry/sample/rotation_angle"] = [0.0, 90.0]
    acq = import_scan(tmp_path / "s.nx", tmp_path / "a.zarr", "roi", values="od")
    assert acq["roi"].pixel_size_nm == pytest.approx(30.0)
    assert acq["roi"].energy_ev == pytest.approx(520.0)
    assert acq["roi"].zone_plate_ozw_nm is None
    acq = import_scan(
        tmp_path / "s.nx", tmp_path / "b.zarr", "roi", values="od", pixel_size_nm=31.5,
        energy_ev=510, zone_plate_ozw_nm=25,
    )  # fmt: skip
    assert (acq["roi"].pixel_size_nm, acq["roi"].energy_ev) == (31.5, 510.0)
    assert acq["roi"].zone_plate_ozw_nm == 25.0


def test_txrm_physics_read(tmp_path):
    """TXRM: pixel size (µm), energy (eV per image, averaged), exposure (s per image)."""
    import struct

    from _cfb import write_cfb

    from sxtdist.io.txrm import image_stream

    raw = np.round(_counts(3, 4, 5))
    streams = {
        "ImageInfo/NoOfImages": struct.pack("<I", 3),
        "ImageInfo/ImageWidth": struct.pack("<I", 5),
        "ImageInfo/ImageHeight": struct.pack("<I", 4),
        "ImageInfo/DataType": struct.pack("<I", 5),
        "ImageInfo/Angles": np.array([0, 60, 120], "<f4").tobytes(),
        "ImageInfo/PixelSize": struct.pack("<f", 0.0125),
        "ImageInfo/Energy": np.array([519, 520, 521], "<f4").tobytes(),
        "ImageInfo/ExpTimes": np.array([1.0, 1.5, 1.0], "<f4").tobytes(),
        "ReferenceData/Image": np.full((4, 5), FLAT, "<f4").tobytes(),
        "ReferenceData/DataType": struct.pack("<I", 10),
        **{image_stream(i): raw[i].astype("<u2").tobytes() for i in range(3)},
    }
    write_cfb(str(tmp_path / "s.txrm"), streams)
    acq = import_scan(tmp_path / "s.txrm", tmp_path / "a.zarr", "roi", zone_plate_ozw_nm=25)
    m = acq["roi"].meta
    assert m["pixel_size_nm"] == pytest.approx(12.5) and m["energy_ev"] == pytest.approx(520)
    assert m["exposure_s"] == pytest.approx(1.0) and m["zone_plate_ozw_nm"] == 25.0
    np.testing.assert_allclose(acq["roi"].data.compute(), -np.log(raw / FLAT), rtol=1e-5)


# -- sxtdist edit ------------------------------------------------------------------------------


def _zarr_json(acq):
    with open(os.path.join(acq, "zarr.json")) as f:
        return json.load(f)


def _chunk_bytes(acq):
    out = {}
    for root, _, files in os.walk(acq):
        for name in files:
            if name != "zarr.json":
                p = os.path.join(root, name)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, acq)] = f.read()
    return out


def test_edit_changes_metadata_only_and_keeps_history(tiny_copy, run_cli):
    chunks = _chunk_bytes(tiny_copy)
    code, out, err = run_cli("edit", tiny_copy, "--scan", "roi", "--zone-plate-ozw-nm", "25")
    assert code == 0, err
    assert "zone_plate_ozw_nm 35.0 -> 25.0" in out
    acq = sxtdist.open_acquisition(tiny_copy)
    assert acq["roi"].zone_plate_ozw_nm == 25.0
    assert acq["full"].zone_plate_ozw_nm == 60.0
    (edit,) = acq["roi"].meta["edits"]
    assert edit["changes"] == {"zone_plate_ozw_nm": {"from": 35.0, "to": 25.0}}
    assert _chunk_bytes(tiny_copy) == chunks  # not one projection byte changed

    # a new pixel size reaches the NGFF scale too
    assert run_cli("edit", tiny_copy, "--scan", "full", "--pixel-size-nm", "210")[0] == 0
    acq = sxtdist.open_acquisition(tiny_copy)
    assert acq["full"].pixel_size_nm == 210.0
    scale = acq.group["full"].attrs["ome"]["multiscales"][0]["datasets"][0]
    assert scale["coordinateTransformations"][0]["scale"] == [1.0, 210.0, 210.0]

    # bad values, no values, an unknown scan: exit 2 and the metadata unchanged
    before = _zarr_json(tiny_copy)
    for args, words in (
        (["--scan", "roi", "--zone-plate-ozw-nm", "0"], ["--zone-plate-ozw-nm", "positive"]),
        (["--scan", "roi", "--energy-ev", "nan"], ["--energy-ev"]),
        (["--scan", "roi"], ["nothing to change", "--zone-plate-ozw-nm"]),
        (["--scan", "roi", "--center-offset-px", "1"], ["--center-offset-px"]),
    ):
        _expect_error(run_cli, ["edit", tiny_copy, *args], words)
    assert _zarr_json(tiny_copy) == before
    _expect_error(
        run_cli, ["edit", tiny_copy + "x", "--scan", "roi", "--photons", "5"], ["no such file"]
    )


def test_edit_of_an_aligned_scan_warns(tiny_copy):
    acq = sxtdist.open_acquisition(tiny_copy)
    acq.set_shifts("roi", np.zeros((acq["roi"].geometry.n_angles, 2)), method="test")
    with pytest.warns(sxtdist.errors.SxtdistWarning, match="align again"):
        edit_scan(tiny_copy, "roi", center_offset_px=(0.0, 1.5))
    assert sxtdist.open_acquisition(tiny_copy)["roi"].geometry.center_offset_px == (0.0, 1.5)
    # the same value again: nothing to record
    assert edit_scan(tiny_copy, "roi", center_offset_px=(0.0, 1.5)) == {}


# -- reconstruct --psf needs the zone plate --------------------------------------------------


def test_psf_on_imported_data_needs_the_zone_plate(tiny_acq, tmp_path, run_cli):
    src = sxtdist.open_acquisition(tiny_acq)["roi"]
    tifffile.imwrite(tmp_path / "roi.tif", np.exp(-src.data.compute()).astype(np.float32))
    np.savetxt(tmp_path / "roi.tlt", src.geometry.angles_deg)
    acq = str(tmp_path / "a.zarr")
    code, _, err = run_cli(
        "import", tmp_path / "roi.tif", acq, "--scan=roi", "--angles", tmp_path / "roi.tlt",
        "--pixel-size-nm", str(src.pixel_size_nm), "-q",
    )  # fmt: skip
    assert code == 0, err
    recon = ["reconstruct", acq, tmp_path / "v.zarr", "--psf", "--iterations=2", "--workers=1",
             "-q"]  # fmt: skip
    _expect_error(run_cli, recon, [acq, "'roi'", "--zone-plate-ozw-nm", "sxtdist edit"])
    assert not (tmp_path / "v.zarr").exists()
    assert run_cli("edit", acq, "--scan=roi", "--zone-plate-ozw-nm=35")[0] == 0
    code, _, err = run_cli(*recon)
    assert code == 0, err
    prov = sxtdist.open_volume(tmp_path / "v.zarr").meta["provenance"]
    from sxtdist.operators.psf import fwhm_to_sigma_px
    from sxtdist.physics import psf_fwhm_nm

    sigma = fwhm_to_sigma_px(psf_fwhm_nm(35.0), src.pixel_size_nm)
    assert prov["psf"] == {"roi": pytest.approx(sigma, abs=1e-4)} and sigma > 0.1
    # given at the import instead: the same PSF
    acq2 = str(tmp_path / "b.zarr")
    code, _, err = run_cli(
        "import", tmp_path / "roi.tif", acq2, "--scan=roi", "--angles", tmp_path / "roi.tlt",
        "--pixel-size-nm", str(src.pixel_size_nm), "--zone-plate-ozw-nm=35", "-q",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(*recon[:1], acq2, tmp_path / "w.zarr", *recon[3:])
    assert code == 0, err
    prov = sxtdist.open_volume(tmp_path / "w.zarr").meta["provenance"]
    assert prov["psf"] == {"roi": pytest.approx(sigma, abs=1e-4)}
