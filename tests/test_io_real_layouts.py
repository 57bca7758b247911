"""Valid files laid out as real instruments and programs write them, not as our own writers do:
each imports with the angles, order, pixel size and values that were written, or is refused
in one line naming the file."""

from __future__ import annotations

import os
import struct
import warnings

import h5py
import mrcfile
import numpy as np
import pytest
import tifffile
from _cfb import write_cfb
from _cli_in_a_process import run_script

import sxtdist
from sxtdist.errors import SxtdistWarning
from sxtdist.io.importer import import_scan, open_source
from sxtdist.io.txrm import image_stream

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
    np.testing.assert_allclose(scan.data.compute(), -np.log(raw / 1000.0), rtol=1e-5, atol=1e-6)


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


def _mode0(path, values, *, imod_flags=None, stats=None):
    """A mode 0 MRC stack of ``values`` (0..255) as bytes; ``imod_flags``: IMOD's stamp and
    these flags in header bytes 152-159; ``stats``: the header's (dmin, dmax)."""
    with mrcfile.new(path) as m:
        m.set_data(np.asarray(values, np.uint8).view(np.int8))
        m.voxel_size = 200.0
        if stats is not None:
            m.header.dmin, m.header.dmax = stats
    if imod_flags is not None:
        with open(path, "r+b") as f:
            f.seek(152)
            f.write(struct.pack("<ii", 1146047817, imod_flags))


def test_imod_byte_stacks_are_read_unsigned_as_imod_writes_them(tmp_path):
    raw = RNG.integers(100, 250, (3, 5, 6)).astype(np.uint8)
    _mode0(tmp_path / "flat.mrc", np.full((1, 5, 6), 250), imod_flags=0)
    expected = -np.log(raw / 250.0)
    for name, kw in {"imod.st": {"imod_flags": 0}, "old.st": {"stats": (100.0, 249.0)}}.items():
        _mode0(tmp_path / name, raw, **kw)
        acq = import_scan(
            tmp_path / name, tmp_path / f"{name}.zarr", "roi", angle_range=(-60, 60),
            flat=tmp_path / "flat.mrc",
        )  # fmt: skip
        np.testing.assert_allclose(acq["roi"].data.compute(), expected, rtol=1e-5, err_msg=name)
        assert acq["roi"].pixel_size_nm == pytest.approx(20.0)
    # IMOD's flag "signed bytes", and a file without the stamp whose range is signed: MRC2014
    signed = RNG.integers(-100, 100, (3, 5, 6)).astype(np.int8)
    for name, kw in {"signed.st": {"imod_flags": 1}, "plain.st": {"stats": (-100.0, 99.0)}}.items():
        _mode0(tmp_path / name, signed.view(np.uint8), **kw)
        with open_source(tmp_path / name) as src:
            assert src.dtype == np.int8, name
            np.testing.assert_array_equal(src.read(0, 3), signed)


def test_an_mrc_header_with_no_sampling_has_no_pixel_size(tmp_path, run_cli):
    with mrcfile.new(tmp_path / "s.mrc") as m:  # mx = 0: mrcfile's voxel size is infinite
        m.set_data(RNG.uniform(0.2, 0.9, (3, 5, 6)).astype(np.float32))
        m.header.mx, m.header.cella = 0, (1200.0, 1000.0, 3.0)
    args = [tmp_path / "s.mrc", "--angle-range", "-60:60"]
    _expect_refused(run_cli, args, tmp_path / "a.zarr", ["s.mrc", "has no pixel size"])


def test_three_or_four_frames_written_by_tifffile_are_frames_not_colour(tmp_path, run_cli):
    raw = RNG.integers(100, 3000, (5, 4, 6)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "proj.tif", raw, photometric="minisblack")
    with warnings.catch_warnings():  # tifffile's notice that such a stack becomes RGB planes
        warnings.simplefilter("ignore", DeprecationWarning)
        # three flats and four darks as a script saves them: one planar RGB(A) page each
        flats = np.stack([np.full((4, 6), v, np.uint16) for v in (3000, 3100, 2900)])
        tifffile.imwrite(tmp_path / "flats.tif", flats)
        darks = np.stack([np.full((4, 6), v, np.float32) for v in (8, 10, 12, 10)])
        tifffile.imwrite(tmp_path / "darks.tif", darks)
    flat, dark = 3000.0, 10.0
    code, _, err = run_cli(
        "import", tmp_path / "proj.tif", tmp_path / "a.zarr", "--scan", "roi", "--angle-range",
        "-60:60", "--pixel-size-nm", "20", "--flat", tmp_path / "flats.tif", "--dark",
        tmp_path / "darks.tif",
    )  # fmt: skip
    assert code == 0, err
    scan = sxtdist.open_acquisition(tmp_path / "a.zarr")["roi"]
    expected = -np.log(np.clip((raw - dark) / (flat - dark), 1e-6, None))
    np.testing.assert_allclose(scan.data.compute(), expected, rtol=1e-5, atol=1e-6)
    # a colour picture (samples contiguous, as a screenshot) is still no projection
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 6, 3), np.uint8))
    args = [
        tmp_path / "proj.tif",
        "--angle-range",
        "-60:60",
        "--pixel-size-nm",
        "20",
        "--flat",
        tmp_path / "rgb.tif",
    ]
    _expect_refused(run_cli, args, tmp_path / "b.zarr", ["rgb.tif", "colour"])


def test_a_txrm_reference_taken_with_a_longer_exposure_is_scaled_to_the_images(tmp_path):
    n, h, w = 4, 5, 7  # not square: rows are ImageHeight
    raw = RNG.integers(500, 3000, (n, h, w)).astype(np.uint16)
    angles = np.array([-45.0, -15.0, 15.0, 45.0])
    ref = np.full((h, w), 6000.0)  # 2 s: twice the counts of the 1 s images' open beam
    streams = {
        "ImageInfo/NoOfImages": struct.pack("<I", n),
        "ImageInfo/ImageWidth": struct.pack("<I", w),
        "ImageInfo/ImageHeight": struct.pack("<I", h),
        "ImageInfo/DataType": struct.pack("<I", 5),
        "ImageInfo/Angles": angles.astype("<f4").tobytes(),
        "ImageInfo/PixelSize": struct.pack("<f", 0.025),
        "ImageInfo/ExpTimes": np.full(n, 1.0, "<f4").tobytes(),
        "ReferenceData/Image": ref.astype("<f4").tobytes(),
        "ReferenceData/DataType": struct.pack("<I", 10),
        "ReferenceData/ExpTime": struct.pack("<f", 2.0),
    }
    streams.update({image_stream(i): raw[i].astype("<u2").tobytes() for i in range(n)})
    write_cfb(str(tmp_path / "tomo.txrm"), streams)
    scan = import_scan(tmp_path / "tomo.txrm", tmp_path / "a.zarr", "roi")["roi"]
    np.testing.assert_allclose(scan.data.compute(), -np.log(raw / 3000.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scan.geometry.angles_deg, angles)
    assert scan.pixel_size_nm == pytest.approx(25.0) and scan.data.shape == (n, h, w)
    assert scan.meta["source"]["reference_scaled_by"] == pytest.approx(0.5)


def test_an_hdf5_compression_this_installation_cannot_decode_is_named(tmp_path):
    """Detector writers compress with filters HDF5 loads as plugins (bitshuffle, LZ4, Blosc);
    one missing is named with what to install. LZF, which h5py registers itself and can take
    back, stands for them in a process of its own. (Its chunks must compress: HDF5 stores a
    chunk the optional LZF filter cannot shrink as it is, readable without it.)"""
    nx, acq = tmp_path / "scan.nx", tmp_path / "a.zarr"
    script = (
        "import sys, h5py, numpy as np\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    f['entry0000/definition'] = 'NXtomo'\n"
        "    frames = np.full((4, 16, 16), 500, np.uint16)  # compressible: LZF kept\n"
        "    f.create_dataset('entry0000/instrument/detector/data', data=frames,\n"
        "                     chunks=(1, 16, 16), compression='lzf')\n"
        "    f['entry0000/sample/rotation_angle'] = [0.0, 60.0, 120.0, 180.0]\n"
        "assert h5py.h5z.unregister_filter(h5py.h5z.FILTER_LZF)\n"
        "from sxtdist.cli import main\n"
        "sys.exit(main(['import', *sys.argv[1:], '--scan', 'roi', '--pixel-size-nm', '20',\n"
        "               '--flat', sys.argv[1]]))\n"
    )
    code, lines = run_script(script, nx, acq)
    assert code == 2 and len(lines) == 1, lines
    assert "scan.nx" in lines[0] and "filter lzf (id 32000)" in lines[0], lines
    assert "hdf5plugin" in lines[0] and not acq.exists()
    assert 'pip install "sxtdist[codecs]"' in lines[0]


def test_an_nxtomo_file_of_several_scans_says_which_it_imports(tmp_path, run_cli):
    """nxtomomill writes a z-series as entries of one file; the first is imported, and the
    others are named (a stack reached by two links, as NXdata links the detector's, is one)."""
    raw = [RNG.uniform(0.1, 2.0, (3, 4, 5)).astype(np.float32) for _ in range(2)]  # OD
    with h5py.File(tmp_path / "zseries.nx", "w") as f:
        for k, frames in enumerate(raw):
            e = f.create_group(f"entry000{k}")
            e["definition"] = "NXtomo"
            e["instrument/detector/data"] = frames
            e["data/data"] = h5py.SoftLink(f"/entry000{k}/instrument/detector/data")
            e["sample/rotation_angle"] = [-50.0, 0.0, 50.0 + k]
    args = ["zseries.nx", "--pixel-size-nm", "20", "--values", "od"]
    code, _, err = run_cli("import", *[tmp_path / a if a.endswith(".nx") else a for a in args],
                           tmp_path / "a.zarr", "--scan", "roi")  # fmt: skip
    assert code == 0, err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "/entry0001/instrument/detector/data" in warned[0], err
    assert "importing /entry0000/instrument/detector/data" in warned[0]
    assert "--data-path" in warned[0] and "/entry0000/data/data" not in warned[0]
    scan = sxtdist.open_acquisition(tmp_path / "a.zarr")["roi"]
    np.testing.assert_allclose(scan.geometry.angles_deg, [-50.0, 0.0, 50.0])
    np.testing.assert_allclose(scan.data.compute(), raw[0])


@pytest.mark.parametrize(
    ("angle_units", "energy", "energy_units"),
    [
        (np.array([b"degree"]), 0.52, np.array([b"keV"])),  # one-string arrays (IDL, LabVIEW)
        ("°", 520.0, "electron_volt"),  # a degree sign; pint's names, as ESRF's nxtomo writes
        ("degree", 0.52, "kiloelectron_volt"),
    ],
)
def test_nxtomo_units_as_other_programs_write_them(tmp_path, angle_units, energy, energy_units):
    od = RNG.uniform(0.1, 2.0, (3, 4, 5)).astype(np.float32)
    with h5py.File(tmp_path / "scan.nx", "w") as f:
        e = f.create_group("entry")
        e["definition"] = "NXtomo"
        e["instrument/detector/data"] = od
        e["instrument/detector/x_pixel_size"] = 2e-8
        e["sample/rotation_angle"] = [-45.0, 0.0, 45.0]
        e["sample/rotation_angle"].attrs["units"] = angle_units
        e["beam/incident_energy"] = energy
        e["beam/incident_energy"].attrs["units"] = energy_units
    scan = import_scan(tmp_path / "scan.nx", tmp_path / "a.zarr", "roi", values="od")["roi"]
    np.testing.assert_allclose(scan.geometry.angles_deg, [-45.0, 0.0, 45.0])
    assert scan.energy_ev == pytest.approx(520.0)
    assert scan.pixel_size_nm == pytest.approx(20.0)


def test_a_txrm_scan_stopped_early_imports_the_images_taken(tmp_path, run_cli):
    """Xradia keeps the images planned (NoOfImages) and taken (ImagesTaken): a scan stopped
    early (a beam loss, a drifting cell) holds only those taken, as dxchange reads it."""
    planned, taken, h, w = 7, 4, 5, 6
    raw = RNG.integers(500, 3000, (taken, h, w)).astype(np.uint16)
    angles = np.linspace(-60, 60, planned)
    streams = {
        "ImageInfo/NoOfImages": struct.pack("<I", planned),
        "ImageInfo/ImagesTaken": struct.pack("<I", taken),
        "ImageInfo/ImageWidth": struct.pack("<I", w),
        "ImageInfo/ImageHeight": struct.pack("<I", h),
        "ImageInfo/DataType": struct.pack("<I", 5),
        "ImageInfo/Angles": angles.astype("<f4").tobytes(),
        "ImageInfo/PixelSize": struct.pack("<f", 0.02),
        "ReferenceData/Image": np.full((h, w), 3000.0, "<f4").tobytes(),
        "ReferenceData/DataType": struct.pack("<I", 10),
    }
    streams.update({image_stream(i): raw[i].astype("<u2").tobytes() for i in range(taken)})
    write_cfb(str(tmp_path / "stopped.txrm"), streams)
    code, _, err = run_cli(
        "import", tmp_path / "stopped.txrm", tmp_path / "a.zarr", "--scan", "roi"
    )
    assert code == 0, err
    assert "stopped after 4 of 7 planned images" in err
    scan = sxtdist.open_acquisition(tmp_path / "a.zarr")["roi"]
    np.testing.assert_allclose(scan.geometry.angles_deg, angles[:taken], rtol=1e-6)
    np.testing.assert_allclose(scan.data.compute(), -np.log(raw / 3000.0), rtol=1e-5, atol=1e-6)


def test_alba_mistral_raw_and_normalised_files_are_found(tmp_path):
    """ALBA MISTRAL's hdf5: raw frames in /NXtomo/instrument/sample/data, angles in
    /NXtomo/data/rotation_angle, flats in /NXtomo/instrument/bright_field/data (here taken
    twice as long), exposures in ExpTimes beside each; and the normalised stack its pipeline
    writes, /TomoNormalized/TomoNormalized with rotation_angle beside it."""
    raw = RNG.integers(300, 1400, (5, 4, 6)).astype(np.uint16)
    angles = np.array([-70.0, -35.0, 0.0, 35.0, 70.0])
    with h5py.File(tmp_path / "tomo.hdf5", "w") as f:
        f["NXtomo/instrument/sample/data"] = raw
        f["NXtomo/instrument/sample/ExpTimes"] = np.full(5, 1.0)
        f["NXtomo/instrument/bright_field/data"] = np.full((3, 4, 6), 3000, np.uint16)
        f["NXtomo/instrument/bright_field/ExpTimes"] = np.full(3, 2.0)
        f["NXtomo/data/rotation_angle"] = angles
    scan = import_scan(tmp_path / "tomo.hdf5", tmp_path / "a.zarr", "roi", pixel_size_nm=10)["roi"]
    np.testing.assert_allclose(scan.geometry.angles_deg, angles)
    np.testing.assert_allclose(scan.data.compute(), -np.log(raw / 1500.0), rtol=1e-5, atol=1e-6)
    assert scan.meta["source"]["flat_scaled_by"] == pytest.approx(0.5)

    t = RNG.uniform(0.2, 0.9, (5, 4, 6)).astype(np.float32)
    with h5py.File(tmp_path / "tomo_norm.hdf5", "w") as f:
        f["TomoNormalized/TomoNormalized"] = t
        f["TomoNormalized/rotation_angle"] = angles
    scan = import_scan(tmp_path / "tomo_norm.hdf5", tmp_path / "b.zarr", "roi", pixel_size_nm=10)
    np.testing.assert_allclose(scan["roi"].geometry.angles_deg, angles)
    np.testing.assert_allclose(scan["roi"].data.compute(), -np.log(t), rtol=1e-5, atol=1e-6)


def _as_lzw(path):
    """Mark every page of an uncompressed TIFF as LZW (Compression = 5), as Fiji, Photoshop and
    many microscopes save: tifffile decodes it only with imagecodecs."""
    with tifffile.TiffFile(path) as t:
        at = [p.tags["Compression"].valueoffset for p in t.pages]
    with open(path, "r+b") as f:
        for offset in at:
            f.seek(offset)
            f.write((5).to_bytes(2, "little"))


def test_a_tiff_compression_needing_imagecodecs_is_named_before_anything_is_written(
    tmp_path, run_cli
):
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("imagecodecs is installed: LZW is read")
    raw = RNG.integers(100, 4000, (3, 5, 6)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", raw, photometric="minisblack")
    _as_lzw(tmp_path / "stack.tif")
    (tmp_path / "frames").mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "frames" / f"p_{i}.tif", raw[i])
    _as_lzw(tmp_path / "frames" / "p_1.tif")
    tifffile.imwrite(tmp_path / "flat.tif", np.full((5, 6), 4000, np.uint16))
    for source, name in ((tmp_path / "stack.tif", "stack.tif"), (tmp_path / "frames", "p_1.tif")):
        args = [
            source,
            "--angle-range",
            "0:90",
            "--pixel-size-nm",
            "10",
            "--flat",
            tmp_path / "flat.tif",
        ]
        words = [name, "compressed with LZW", 'pip install "sxtdist[codecs]"', "imagecodecs"]
        _expect_refused(run_cli, args, tmp_path / "a.zarr", words)


@pytest.mark.parametrize(("value", "expected_ev"), [(520.0, 520.0), (0.52, 520.0), (17.5, 17500.0)])
def test_nxtomo_energy_without_units_in_kev_or_ev_by_its_size(tmp_path, value, expected_ev):
    """tomoscan writes keV without units; soft X-ray writers eV (520, the water window):
    no tomography runs at 200 keV, so a unitless value from 200 up is eV."""
    with h5py.File(tmp_path / "scan.nx", "w") as f:
        e = f.create_group("entry")
        e["instrument/detector/data"] = RNG.uniform(0.1, 2.0, (3, 4, 5)).astype(np.float32)
        e["sample/rotation_angle"] = [-45.0, 0.0, 45.0]
        e["instrument/source/energy"] = value
    acq = import_scan(
        tmp_path / "scan.nx", tmp_path / "a.zarr", "roi", values="od", pixel_size_nm=9
    )
    assert acq["roi"].energy_ev == pytest.approx(expected_ev)


def test_pixels_taller_than_wide_are_warned_of_in_every_format(tmp_path):
    od = RNG.uniform(0.1, 2.0, (3, 4, 5)).astype(np.float32)
    with mrcfile.new(tmp_path / "s.mrc") as m:
        m.set_data(od)
        m.voxel_size = (200.0, 400.0, 200.0)  # Å: 20 nm wide, 40 nm tall
    tifffile.imwrite(
        tmp_path / "s.ome.tif", od,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.04},
    )  # fmt: skip
    with h5py.File(tmp_path / "s.nx", "w") as f:
        f["entry/instrument/detector/data"] = od
        f["entry/instrument/detector/x_pixel_size"] = 2e-8
        f["entry/instrument/detector/y_pixel_size"] = 4e-8
    for name in ("s.mrc", "s.ome.tif", "s.nx"):
        with pytest.warns(SxtdistWarning, match="20 nm wide and 40 nm tall") as w:
            with open_source(tmp_path / name) as src:
                assert src.pixel_size_nm == pytest.approx(20.0), name
        assert name in str(w[0].message)
    with mrcfile.new(tmp_path / "square.mrc") as m:  # within 1 %: no word
        m.set_data(od)
        m.voxel_size = (200.0, 200.5, 200.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SxtdistWarning)
        with open_source(tmp_path / "square.mrc") as src:
            assert src.pixel_size_nm == pytest.approx(20.0)


def _txrm_float(path, t, ref):
    """A TXRM whose images are float32 (DataType 10), as XMController saves them with the
    reference already applied, and the reference still in the file."""
    n, h, w = t.shape
    streams = {
        "ImageInfo/NoOfImages": struct.pack("<I", n),
        "ImageInfo/ImageWidth": struct.pack("<I", w),
        "ImageInfo/ImageHeight": struct.pack("<I", h),
        "ImageInfo/DataType": struct.pack("<I", 10),
        "ImageInfo/Angles": np.linspace(-60, 60, n).astype("<f4").tobytes(),
        "ImageInfo/PixelSize": struct.pack("<f", 0.02),
        "ReferenceData/Image": ref.astype("<f4").tobytes(),
        "ReferenceData/DataType": struct.pack("<I", 10),
    }
    streams.update({image_stream(i): t[i].astype("<f4").tobytes() for i in range(n)})
    write_cfb(str(path), streams)


def test_a_txrm_already_divided_by_its_reference_is_read_as_transmission(tmp_path, run_cli):
    t = RNG.uniform(0.2, 0.95, (4, 5, 6)).astype(np.float32)
    _txrm_float(tmp_path / "norm.txrm", t, np.full((5, 6), 3000.0))
    code, _, err = run_cli("import", tmp_path / "norm.txrm", tmp_path / "a.zarr", "--scan", "roi")
    assert code == 0, err
    assert "already divided by its reference" in err
    scan = sxtdist.open_acquisition(tmp_path / "a.zarr")["roi"]
    np.testing.assert_allclose(scan.data.compute(), -np.log(t), rtol=1e-5, atol=1e-6)

    def as_transmission(name, out):  # --values transmission said outright
        code, _, err = run_cli(
            "import", tmp_path / name, tmp_path / out, "--scan", "roi", "--values", "transmission"
        )  # fmt: skip
        assert code == 0, err
        return sxtdist.open_acquisition(tmp_path / out)["roi"]

    # said outright, the file's own reference is left out, not an error
    b = as_transmission("norm.txrm", "b.zarr")
    np.testing.assert_allclose(b.data.compute(), -np.log(t), rtol=1e-5, atol=1e-6)
    # a reference not far above the images is not judged applied: said outright, it is unused
    _txrm_float(tmp_path / "dim.txrm", t, np.full((5, 6), 1.5))
    d = as_transmission("dim.txrm", "d.zarr")
    np.testing.assert_allclose(d.data.compute(), -np.log(t), rtol=1e-5, atol=1e-6)
    # float counts (not divided) are still divided by the reference
    counts = (t * 3000.0).astype(np.float32)
    _txrm_float(tmp_path / "counts.txrm", counts, np.full((5, 6), 3000.0))
    c = import_scan(tmp_path / "counts.txrm", tmp_path / "c.zarr", "roi")["roi"]
    np.testing.assert_allclose(c.data.compute(), -np.log(t), rtol=1e-5, atol=1e-6)


def test_an_angle_list_pasted_from_a_document_reads(tmp_path):
    """IMOD writes .tlt with CRLF on Windows, descending when the tilt ran from + to -, and a
    blank line at the end; a list copied from a paper has '−' (U+2212) and degree signs."""
    od = RNG.uniform(0.1, 2.0, (4, 5, 6)).astype(np.float32)
    with mrcfile.new(tmp_path / "tilt.st") as m:
        m.set_data(od)
        m.voxel_size = 150.0
    (tmp_path / "tilt.tlt").write_bytes(b"  60.00\r\n  20.00\r\n -20.00\r\n -60.00\r\n\r\n")
    (tmp_path / "pasted.txt").write_text("−60°\n−20°\n20°\n60°\n", encoding="utf-8")
    for angles, expected in ((None, [60, 20, -20, -60]), ("pasted.txt", [-60, -20, 20, 60])):
        acq = import_scan(
            tmp_path / "tilt.st", tmp_path / f"{angles}.zarr", "roi", values="od",
            angles=None if angles is None else tmp_path / angles,
        )  # fmt: skip
        scan = acq["roi"]
        np.testing.assert_allclose(scan.geometry.angles_deg, expected)
        np.testing.assert_allclose(scan.data.compute(), od)  # frames kept in the file's order
        assert scan.pixel_size_nm == pytest.approx(15.0)


def test_nxtomo_flats_exposed_longer_than_the_projections_are_scaled(tmp_path):
    """nxtomomill keeps each frame's count_time: flats of 0.4 s under projections of 0.2 s
    hold twice the signal above the dark."""
    raw = RNG.integers(300, 1400, (4, 5, 6)).astype(np.uint16)
    dark, flat_signal = 100.0, 3000.0  # the flats: dark + 2 x the 1500 counts of 0.2 s
    keys = np.array([2, 1, 1, 0, 0, 0, 0])
    frames = np.concatenate(
        [np.full((1, 5, 6), dark), np.full((2, 5, 6), dark + flat_signal), raw]
    ).astype(np.uint16)
    with h5py.File(tmp_path / "scan.nx", "w") as f:
        det = f.create_group("entry0000/instrument/detector")
        f["entry0000/definition"] = "NXtomo"
        det["data"] = frames
        det["image_key"] = keys
        det["count_time"] = np.where(keys == 0, 0.2, 0.4)
        det["count_time"].attrs["units"] = "s"
        f["entry0000/sample/rotation_angle"] = np.r_[0.0, 0.0, 0.0, -60.0, -20.0, 20.0, 60.0]
    scan = import_scan(tmp_path / "scan.nx", tmp_path / "a.zarr", "roi", pixel_size_nm=10)["roi"]
    expected = -np.log((raw - dark) / (flat_signal / 2))
    np.testing.assert_allclose(scan.data.compute(), expected, rtol=1e-5, atol=1e-6)
    assert scan.meta["source"]["flat_scaled_by"] == pytest.approx(0.5)
    assert scan.meta["exposure_s"] == pytest.approx(0.2)
