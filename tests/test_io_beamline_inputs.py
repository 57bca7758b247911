"""Inputs from beamlines that no one here made: flats taken during the scan, decimal commas
in angle lists, MRC tilt angles in the extended header, compressed inputs without codecs."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import tifffile
from _cli_in_a_process import run_script
from _import_inputs import decaying_nxtomo, import_with_angle_lines

from sxtdist.errors import InputError
from sxtdist.io.importer import import_scan

# -- flats taken in sets during the scan -------------------------------------------------------


def _decaying_nxtomo(path, keys, transmission, **beam):
    """:func:`_import_inputs.decaying_nxtomo`; returns the flats' average, as the import took
    it before."""
    frames = decaying_nxtomo(path, keys, transmission, **beam)
    return frames[np.asarray(keys) == 1].mean(axis=0)


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


def test_a_flat_file_of_several_sets_is_averaged_and_the_log_says_so(tmp_path, caplog):
    """--flat FILE holding flats before and after its own scan: where they were taken against
    the projections of another file is not known, so they are averaged; the log line says
    so, naming the file, its frames and its sets (it said nothing of the sets)."""
    keys = _keys((2, 2), (1, 3), (0, 4), (1, 3))
    mean_flat = _decaying_nxtomo(tmp_path / "flats.nx", keys, np.full((4, 4, 4), 0.5, np.float32))
    proj = (100.0 + 0.25 * (mean_flat - 100.0))[None].repeat(5, axis=0)
    tifffile.imwrite(tmp_path / "p.tif", proj.astype(np.float32), photometric="minisblack")
    with caplog.at_level("INFO", logger="sxtdist.io.importer"):
        acq = import_scan(
            tmp_path / "p.tif", tmp_path / "a.zarr", "roi", flat=tmp_path / "flats.nx",
            dark=tmp_path / "flats.nx", angle_range=(-60, 60), pixel_size_nm=30,
        )  # fmt: skip
    np.testing.assert_allclose(acq["roi"].data.compute(), np.log(4), rtol=1e-5)
    assert (
        "the 6 frames of " in caplog.text and "flats.nx averaged (its 2 sets alike" in caplog.text
    )
    assert acq["roi"].meta["source"]["flat_interpolated"] is False


def test_one_set_of_flats_is_averaged_as_before(tmp_path):
    keys = _keys((2, 2), (1, 4), (0, 6))
    t = np.full((6, 4, 4), 0.25, np.float32)
    mean_flat = _decaying_nxtomo(tmp_path / "one.nx", keys, t)
    acq = import_scan(tmp_path / "one.nx", tmp_path / "a.zarr", "roi")
    raw = 100.0 + t * 4000.0 * (1 - 0.004 * np.arange(6, 12))[:, None, None]
    expected = -np.log((raw - 100.0) / (mean_flat - 100.0))
    np.testing.assert_allclose(acq["roi"].data.compute(), expected, rtol=1e-5)
    assert acq["roi"].meta["source"]["flat_interpolated"] is False


# -- decimal commas in angle lists ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-60,5\n0\n60,25\n", [-60.5, 0, 60.25]),  # one per line: Excel in a European locale
        ("-60,5;-59,5;-58,5\n", [-60.5, -59.5, -58.5]),  # semicolons: European CSV
        ("\u221260,5\t-59,5°\n", [-60.5, -59.5]),  # tabs, a typographic minus, a degree sign
        ("-60,-40,-20,0,20,40,60\n", [-60, -40, -20, 0, 20, 40, 60]),  # commas separate
        ("-60.5,-59.5\n-58,5\n", [-60.5, -59.5, -58, 5]),  # a point: the commas separate
        ("-60,-58\n10,20\n", [-60, -58, 10, 20]),  # a signed part after a comma: separators
    ],
)
def test_angle_lists_with_decimal_commas_where_unambiguous(tmp_path, text, expected):
    from sxtdist.io.source import read_angles_file

    (tmp_path / "a.tlt").write_text(text, encoding="utf-8")
    np.testing.assert_allclose(read_angles_file(tmp_path / "a.tlt"), expected)


def test_an_ambiguous_comma_list_is_refused_naming_the_file_and_line(tmp_path, run_cli):
    """'-60,5,-59,5' is -60.5 and -59.5, or four numbers: refused, exit 2, no traceback."""
    tifffile.imwrite(tmp_path / "p.tif", np.full((4, 5, 5), 0.5, np.float32))
    (tmp_path / "a.txt").write_text("# tilt\n-60,5,-59,5\n-58,5,-57,5\n", encoding="utf-8")
    code, out, err = run_cli(
        "import", tmp_path / "p.tif", tmp_path / "a.zarr", "--scan=roi",
        "--angles", tmp_path / "a.txt", "--pixel-size-nm=30", "-q",
    )  # fmt: skip
    assert code == 2, err
    assert "a.txt" in err and "line 2: '-60,5,-59,5' is ambiguous" in err, err
    assert "Traceback" not in err


def test_an_index_and_angle_list_is_not_read_as_decimal_commas(tmp_path):
    """'0,0' '1,2' '2,4' ...: a spreadsheet's index and angle of a 0..180 scan (no sign to
    tell), or decimals; refused, not read as 0.0, 1.2, 2.4."""
    from sxtdist.errors import InputError
    from sxtdist.io.source import read_angles_file

    (tmp_path / "a.csv").write_text("".join(f"{i},{2 * i}\n" for i in range(5)))
    with pytest.raises(InputError, match=r"a\.csv: line 1: '0,0' is ambiguous: .* index column"):
        read_angles_file(tmp_path / "a.csv")
    # decimals: 1-degree steps (the same decimals on every line), or not from 0 or 1
    for text, expected in (
        ("0,0\n1,0\n2,0\n", [0, 1, 2]),
        ("-2,5\n-1,5\n-0,5\n0,5\n", [-2.5, -1.5, -0.5, 0.5]),
    ):
        (tmp_path / "b.csv").write_text(text)
        np.testing.assert_allclose(read_angles_file(tmp_path / "b.csv"), expected)


def _signed(tenths):
    """Tenths of a degree written with a decimal comma, one decimal: -5 -> '-0,5'."""
    sign = "-" if tenths < 0 else ""
    return f"{sign}{abs(tenths) // 10},{abs(tenths) % 10}"


@pytest.mark.parametrize(
    "lines",
    [
        [f"{a},2" for a in range(-60, 61, 2)],  # an angle and its exposure (2 s), through zero
        [f"{a},2" for a in range(60, -61, -2)],  # the same, from +60 down
        [f"{a},5" for a in range(0, 181, 2)],  # a 0..180 scan at 5 s: or 0.5, 2.5, ... 180.5?
        [f"{a},25" for a in range(-60, 61, 3)],  # two digits after the comma, alike
        ["-2,5", "-1,5", "0,5"],  # -2, -1, 0 at 5 s; as decimals 0.5 would be -0.5
    ],
)
def test_an_angle_and_a_second_column_is_not_read_as_decimal_commas(tmp_path, run_cli, lines):
    """'-60,2' '-58,2' ... '60,2' (an angle and an exposure) was read as -60.2, -58.2 ...
    without a word; every list whose lines carry the same digits after the comma is refused
    (exit 2, naming the file) unless only decimals can read it (below)."""
    code, err = import_with_angle_lines(tmp_path, run_cli, lines)
    assert code == 2, err
    assert "tilt.csv" in err and "use a decimal point, or one angle per line" in err, err
    assert "Traceback" not in err and not (tmp_path / "a.zarr").exists()


@pytest.mark.parametrize(
    "tenths",
    [
        list(range(-595, 600, 10)),  # 1-degree steps through -0.5 and 0.5: the same decimals
        list(range(-595, 600, 20)),  # 2-degree steps: -1.5, 0.5 (as a column: -1, 0)
        list(range(595, -600, -10)),  # from +59.5 down
        list(range(-600, 601, 15)),  # 1.5-degree steps: ,0 and ,5 alternate
        list(range(-600, 601, 5)),  # 0.5-degree steps
        list(range(-600, 601, 20)),  # 2-degree steps written '-60,0': the same either way
        [-599987, -580012, -559993, 600004],  # an Xradia export's read-back angles, 4 decimals
    ],
)
def test_decimal_comma_lists_of_real_scans_are_read(tmp_path, tenths):
    from sxtdist.io.source import read_angles_file

    if abs(tenths[0]) > 10_000:  # ten-thousandths
        lines = [f"{t / 10_000:.4f}".replace(".", ",") for t in tenths]
        expected = np.array(tenths) / 10_000
    else:
        lines, expected = [_signed(t) for t in tenths], np.array(tenths) / 10
    (tmp_path / "a.tlt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    np.testing.assert_allclose(read_angles_file(tmp_path / "a.tlt"), expected)


def test_a_dose_symmetric_list_of_half_degrees_is_read(tmp_path):
    """The same decimals in acquisition order (0,5 -0,5 1,5 -1,5 ...): evenly spaced once sorted."""
    from sxtdist.io.source import read_angles_file

    tenths = [5, -5, 15, -15, 25, -25, 35, -35]
    (tmp_path / "a.tlt").write_text("".join(_signed(t) + "\n" for t in tenths))
    np.testing.assert_allclose(read_angles_file(tmp_path / "a.tlt"), np.array(tenths) / 10)


def test_names_and_nxtomo_text_with_a_second_column_are_refused(tmp_path):
    """'img_-60,2.tif' ... and NXtomo angles written '-60,2' ...: the same digits after every
    comma (an angle and an exposure, or decimals) refused as in a list; half degrees through
    zero read."""
    from sxtdist.io.tiff import angles_in_names

    names = [f"img_{a},2.tif" for a in range(-60, 61, 30)]
    with pytest.raises(InputError, match=r"every file name's angle .* with a decimal point"):
        angles_in_names(str(tmp_path), names, r"img_(.+)\.tif")
    names = ["img_-0,5.tif", "img_-1,5.tif", "img_0,5.tif", "img_1,5.tif"]  # sorted as text
    _, angles = angles_in_names(str(tmp_path), names, r"img_(.+)\.tif")
    np.testing.assert_allclose(angles, [-0.5, -1.5, 0.5, 1.5])
    keys = _keys((1, 2), (0, 3))
    _decaying_nxtomo(tmp_path / "s.nx", keys, np.full((3, 4, 4), 0.5, np.float32), decay=0)
    with h5py.File(tmp_path / "s.nx", "a") as f:
        del f["entry/sample/rotation_angle"]
        f["entry/sample/rotation_angle"] = ["0,2", "0,2", "-60,2", "0,2", "60,2"]
    with pytest.raises(InputError, match=r"s\.nx: every value of .*rotation_angle is one number"):
        import_scan(tmp_path / "s.nx", tmp_path / "a.zarr", "roi")


def test_angles_in_file_names_with_a_decimal_comma(tmp_path):
    from sxtdist.io.tiff import angles_in_names

    names = ["img_-60,5.tif", "img_0.tif", "img_60,25.tif", "flat.tif"]
    kept, angles = angles_in_names(str(tmp_path), names, r"img_(.+)\.tif")
    assert kept == names[:3]
    np.testing.assert_allclose(angles, [-60.5, 0, 60.25])


def test_nxtomo_angles_written_as_text_with_decimal_commas(tmp_path):
    """A metadata field of text: rotation_angle as strings '-60,5' (a spreadsheet's)."""
    keys = _keys((2, 1), (1, 2), (0, 3))
    _decaying_nxtomo(tmp_path / "s.nx", keys, np.full((3, 4, 4), 0.5, np.float32), decay=0)
    with h5py.File(tmp_path / "s.nx", "a") as f:
        del f["entry/sample/rotation_angle"]
        f["entry/sample/rotation_angle"] = ["0", "0", "0", "-60,5", "0", "60,5"]
    acq = import_scan(tmp_path / "s.nx", tmp_path / "a.zarr", "roi")
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, [-60.5, 0, 60.5])
    with h5py.File(tmp_path / "s.nx", "a") as f:
        f["entry/sample/rotation_angle"][4] = "1,2,3"
    with pytest.raises(InputError, match=r"rotation_angle\[4\] is '1,2,3', not a number"):
        import_scan(tmp_path / "s.nx", tmp_path / "b.zarr", "roi")


# -- MRC tilt angles in the extended header --------------------------------------------------


def _fei_stack(path, angles, exttyp=b"FEI1", bitmask=0xFFFFFFFF):
    """Thermo Fisher's records; ``bitmask`` their Bitmask 1 (every field valid), one a section."""
    import mrcfile
    from mrcfile.dtypes import get_ext_header_dtype

    frames = np.full((len(angles), 6, 6), 0.5, np.float32)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(frames)
        m.voxel_size = 100.0
        records = np.zeros(len(angles), get_ext_header_dtype(exttyp, m.header.mode.dtype.byteorder))
        records["Metadata size"] = records.dtype.itemsize
        records["Alpha tilt"] = angles
        records["Bitmask 1"] = bitmask
        m.set_extended_header(np.frombuffer(records.tobytes(), "V1"))
        m.header.exttyp = exttyp


@pytest.mark.parametrize("exttyp", [b"FEI1", b"FEI2"])
def test_mrc_tilts_from_an_fei_extended_header(tmp_path, exttyp):
    angles = np.array([-60.25, -30.0, 0.5, 30.0, 59.75])
    _fei_stack(tmp_path / "tomo.mrc", angles, exttyp)
    acq = import_scan(tmp_path / "tomo.mrc", tmp_path / "a.zarr", "roi", values="transmission")
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, angles)
    source = acq["roi"].meta["source"]
    assert source["angles_from"] == f"the extended header ({exttyp.decode()} Alpha tilt)"
    # a .rawtlt beside it comes first, and says so
    (tmp_path / "tomo.rawtlt").write_text("-60\n-30\n0\n30\n60\n")
    acq = import_scan(tmp_path / "tomo.mrc", tmp_path / "b.zarr", "roi", values="transmission")
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, [-60, -30, 0, 30, 60])
    assert acq["roi"].meta["source"]["angles_from"].endswith("tomo.rawtlt")


@pytest.mark.parametrize("exttyp", [b"FEI1", b"FEI2"])
def test_an_fei_alpha_tilt_marked_not_valid_is_not_read(tmp_path, caplog, exttyp):
    """Bitmask 1 bit 7 says whether Alpha tilt holds the tilt; where it does not (in every
    section, or one), the field's numbers were read as the angles."""
    angles = np.array([-60.25, -30.0, 0.5, 30.0, 59.75])
    for n, bitmask in enumerate([0xFFFFFFFF & ~(1 << 7), [0xFFFFFFFF] * 4 + [0xFFFFFF7F]]):
        _fei_stack(tmp_path / "tomo.mrc", angles, exttyp, bitmask=bitmask)
        with caplog.at_level("INFO", logger="sxtdist.io.mrc"):
            with pytest.raises(InputError, match=r"tomo\.mrc: has no rotation angles"):
                import_scan(tmp_path / "tomo.mrc", tmp_path / f"{n}.zarr", "roi", values="od")
        assert "Alpha tilt is marked not valid (Bitmask 1 bit 7)" in caplog.text
    # the angles from elsewhere
    acq = import_scan(
        tmp_path / "tomo.mrc", tmp_path / "a.zarr", "roi", values="od", angle_range=(-60, 60)
    )
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, np.linspace(-60, 60, 5))
    _fei_stack(tmp_path / "tomo.mrc", angles, exttyp, bitmask=1 << 7)  # only the tilt valid
    acq = import_scan(tmp_path / "tomo.mrc", tmp_path / "b.zarr", "roi", values="od")
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, angles)


def test_an_angle_range_not_used_for_the_files_own_angles_is_warned_of(tmp_path):
    """An FEI stack imported with --angle-range (needed before its header's tilts were read)
    took the header's angles over it without a word; a range that differs is warned of."""
    from sxtdist.errors import SxtdistWarning

    angles = np.array([-60.25, -30.0, 0.5, 30.0, 59.75])
    _fei_stack(tmp_path / "tomo.mrc", angles)
    with pytest.warns(SxtdistWarning, match=r"angle.range=? -60:60 is not used: .*Alpha tilt"):
        acq = import_scan(
            tmp_path / "tomo.mrc", tmp_path / "a.zarr", "roi", values="od", angle_range=(-60, 60)
        )
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, angles)
    _fei_stack(tmp_path / "tomo.mrc", np.linspace(-60, 60, 5))  # the same angles: no word
    with warnings.catch_warnings():
        warnings.simplefilter("error", SxtdistWarning)
        import_scan(
            tmp_path / "tomo.mrc", tmp_path / "b.zarr", "roi", values="od", angle_range=(-60, 60)
        )


def _serialem_stack(path, angles, nreal=1 | 8, exttyp=b"SERI", byteorder="<"):
    """SerialEM's extended header: per section nint bytes of shorts, tilt x 100 first."""
    import mrcfile

    nint = sum(b for bit, b in {1: 2, 2: 6, 4: 4, 8: 2, 16: 2, 32: 4}.items() if nreal & bit)
    records = np.zeros((len(angles), nint // 2), f"{byteorder}i2")
    records[:, 0] = np.round(np.asarray(angles) * 100)
    records[:, 1:] = 77  # magnification and the rest
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.full((len(angles), 6, 6), 0.5, np.float32))
        m.voxel_size = 100.0
        m.set_extended_header(np.frombuffer(records.tobytes(), "V1"))
        m.header.exttyp = exttyp
        m.header.extra1 = np.frombuffer(np.array([nint, nreal], "<i2").tobytes() + bytes(4), "V8")[
            0
        ]


@pytest.mark.parametrize("exttyp", [b"SERI", b"\0\0\0\0"])  # MRC2014's type, or an older header
def test_mrc_tilts_from_serialem_extended_header(tmp_path, exttyp):
    angles = [-45.5, -15.0, 15.0, 44.99]
    _serialem_stack(tmp_path / "s.st", angles, exttyp=exttyp)
    acq = import_scan(tmp_path / "s.st", tmp_path / "a.zarr", "roi", values="transmission")
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, angles)
    assert acq["roi"].meta["source"]["angles_from"] == (
        "the extended header (SerialEM tilt angles)"
    )


def _mdoc(angles, skip=None):
    """A SerialEM .mdoc; section ``skip`` without its TiltAngle."""
    head = "PixelSpacing = 10\nVoltage = 300\nImageFile = s.st\n\n"
    return head + "".join(
        f"[ZValue = {z}]\n"
        + (f"TiltAngle = {a}\n" if z != skip else "")
        + "Magnification = 1000\n\n"
        for z, a in enumerate(angles)
    )


def _read_angles(tmp_path, out, angles, source=None):
    """Import the SerialEM stack s.st into ``out``: its angles are ``angles``, from ``source``."""
    scan = import_scan(tmp_path / "s.st", tmp_path / out, "roi", values="transmission")["roi"]
    np.testing.assert_allclose(scan.geometry.angles_deg, angles)
    if source is not None:
        assert scan.meta["source"]["angles_from"].endswith(source)


def test_mrc_tilts_from_a_serialem_mdoc(tmp_path):
    """SerialEM's NAME.mdoc (TiltAngle per [ZValue]) before the extended header's tilts x 100."""
    angles = [-45.52, -15.01, 15.0, 44.99]
    _serialem_stack(tmp_path / "s.st", np.round(angles))
    (tmp_path / "s.st.mdoc").write_text(_mdoc(angles))
    _read_angles(tmp_path, "a.zarr", angles, "s.st.mdoc")
    (tmp_path / "s.st.mdoc").write_text(_mdoc(angles, skip=2))
    with pytest.raises(InputError, match=r"s\.st\.mdoc: has no TiltAngle for section 2"):
        import_scan(tmp_path / "s.st", tmp_path / "b.zarr", "roi", values="transmission")


def test_mrc_tilts_from_an_mdoc_named_after_the_stems(tmp_path):
    """SerialEM names it s.st.mdoc; users (and renamed stacks) s.mdoc: both are read."""
    angles = [-45.52, -15.01, 15.0, 44.99]
    _serialem_stack(tmp_path / "s.st", np.round(angles))
    (tmp_path / "s.mdoc").write_text(_mdoc(angles))
    _read_angles(tmp_path, "a.zarr", angles, "s.mdoc")
    (tmp_path / "s.st.mdoc").write_text(_mdoc(angles))  # both, saying the same: read
    _read_angles(tmp_path, "b.zarr", angles)
    (tmp_path / "s.mdoc").write_text(_mdoc([-45.52, -15.01, 18.0, 44.99]))  # both, disagreeing
    with pytest.raises(InputError, match=r"disagree: .*s\.st\.mdoc and .*s\.mdoc \(section 2"):
        import_scan(tmp_path / "s.st", tmp_path / "c.zarr", "roi", values="transmission")


@pytest.mark.parametrize("sections", [3, 5])
def test_an_mdoc_of_more_or_fewer_sections_than_the_stack_is_refused(tmp_path, run_cli, sections):
    """A log of 5 sections beside a stack of 4 was read for the first 4 without a word."""
    _serialem_stack(tmp_path / "s.st", [-45, -15, 15, 45])
    (tmp_path / "s.st.mdoc").write_text(_mdoc(np.linspace(-60, 60, sections)))
    code, out, err = run_cli(
        "import", tmp_path / "s.st", tmp_path / "a.zarr", "--scan=roi", "--values=transmission",
        "-q",
    )  # fmt: skip
    assert code == 2, err
    assert f"s.st.mdoc: has {sections} sections ([ZValue]) for the stack's 4" in err, err
    assert "Traceback" not in err and not (tmp_path / "a.zarr").exists()


def test_angles_given_replace_a_sidecar_that_cannot_be_read(tmp_path):
    """--angles replaces the stack's sidecars: one that cannot be read (an .mdoc of another
    stack, two that disagree, a .rawtlt not of numbers) no longer stops the import."""
    _serialem_stack(tmp_path / "s.st", [-45, -15, 15, 45])
    (tmp_path / "given.txt").write_text("-40\n-10\n10\n40\n")
    sidecars = [
        {"s.st.mdoc": _mdoc(np.linspace(-60, 60, 5))},
        {"s.st.mdoc": _mdoc([-1, 0, 1, 2]), "s.mdoc": _mdoc([-1, 0, 1, 3])},
        {"s.rawtlt": "-60\nminus thirty\n"},
    ]
    for n, files in enumerate(sidecars):
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=r"s\.(st\.mdoc|mdoc|rawtlt|st): "):  # not given
            import_scan(tmp_path / "s.st", tmp_path / f"no{n}.zarr", "roi", values="od")
        acq = import_scan(
            tmp_path / "s.st", tmp_path / f"{n}.zarr", "roi", values="od",
            angles=tmp_path / "given.txt",
        )  # fmt: skip
        np.testing.assert_allclose(acq["roi"].geometry.angles_deg, [-40, -10, 10, 40])
        for name in files:
            (tmp_path / name).unlink()


def test_mrc_extended_header_without_tilts_gives_no_angles(tmp_path):
    """No tilt flag (nreal without bit 1), or equal tilts: no angles, so --angle-range works."""
    _serialem_stack(tmp_path / "s.st", [0, 0, 0], nreal=8)
    with pytest.raises(InputError, match="has no rotation angles"):
        import_scan(tmp_path / "s.st", tmp_path / "a.zarr", "roi", values="transmission")
    _fei_stack(tmp_path / "f.mrc", [0.0, 0.0, 0.0])
    acq = import_scan(
        tmp_path / "f.mrc", tmp_path / "b.zarr", "roi", values="transmission", angle_range=(-60, 60)
    )
    np.testing.assert_allclose(acq["roi"].geometry.angles_deg, [-60, 0, 60])


# -- compressed inputs without their codec ---------------------------------------------------


def test_mistral_flats_compressed_with_a_filter_not_installed_are_named(tmp_path):
    """ALBA MISTRAL's flats (instrument/bright_field/data) compressed where the frames are not:
    one line naming the dataset, the filter and the extra to install, exit 2, no traceback.
    LZF, unregistered in a process of its own, stands for bitshuffle/LZ4/Blosc."""

    script = (
        "import sys, h5py, numpy as np\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    f['NXtomo/instrument/sample/data'] = np.full((3, 16, 16), 1500, np.uint16)\n"
        "    f['NXtomo/data/rotation_angle'] = [0.0, 60.0, 120.0]\n"
        "    f.create_dataset('NXtomo/instrument/bright_field/data', chunks=(1, 16, 16),\n"
        "                     data=np.full((2, 16, 16), 3000, np.uint16), compression='lzf')\n"
        "assert h5py.h5z.unregister_filter(h5py.h5z.FILTER_LZF)\n"
        "from sxtdist.cli import main\n"
        "sys.exit(main(['import', *sys.argv[1:], '--scan', 'roi', '--pixel-size-nm', '20']))\n"
    )
    nx, acq = tmp_path / "mistral.hdf5", tmp_path / "a.zarr"
    code, lines = run_script(script, nx, acq)
    assert code == 2 and len(lines) == 1, lines
    assert "mistral.hdf5" in lines[0] and "/NXtomo/instrument/bright_field/data" in lines[0]
    assert "filter lzf" in lines[0] and 'pip install "sxtdist[codecs]"' in lines[0], lines[0]
    assert not acq.exists()


def test_many_flat_sets_are_read_once_each_and_few_kept(tmp_path):
    """Flats every 3 projections (9 sets): each set is read once, in order, at most KEPT held
    (memory of a few frames however many sets); blocks of 4 projections span set changes."""
    from sxtdist.io.nxtomo import open_nxtomo
    from sxtdist.io.source import FlatSeries

    keys = np.concatenate([[2]] + [np.r_[1, 1, 0, 0, 0]] * 8 + [np.r_[1, 1]])
    t = np.random.default_rng(5).uniform(0.2, 0.9, (24, 4, 5)).astype(np.float32)
    _decaying_nxtomo(tmp_path / "many.nx", keys, t, decay=0.02)
    acq = import_scan(tmp_path / "many.nx", tmp_path / "a.zarr", "roi", frames_per_chunk=4)
    np.testing.assert_allclose(acq["roi"].data.compute(), -np.log(t), atol=2e-5)
    loads = []
    with open_nxtomo(tmp_path / "many.nx") as src:
        series = src.flat_series.mapped(lambda f: loads.append(1) or f)
        for i in range(0, 24, 4):
            series.at(i, i + 4)
            assert len(series._kept) <= FlatSeries.KEPT
    assert len(loads) == 9


def test_the_angles_source_is_what_gave_the_angles(tmp_path, caplog):
    """source.angles_from (and the log) name what gave the angles the scan has: an --angles
    file or --angle-range over the file's own, which is then named only when used."""
    import logging

    _fei_stack(tmp_path / "t.mrc", [-30.0, 0.0, 30.0])
    (tmp_path / "mine.txt").write_text("-31\n0\n31\n")
    kw = {"values": "transmission"}
    with caplog.at_level(logging.INFO, logger="sxtdist"):
        acq = import_scan(
            tmp_path / "t.mrc", tmp_path / "a.zarr", "roi", angles=tmp_path / "mine.txt", **kw
        )
    assert acq["roi"].meta["source"]["angles_from"] == str(tmp_path / "mine.txt")
    assert f"angles from {tmp_path / 'mine.txt'}" in caplog.text
    acq = import_scan(tmp_path / "t.mrc", tmp_path / "b.zarr", "roi", angles=[1, 2, 3], **kw)
    assert acq["roi"].meta["source"]["angles_from"] == "the values given (angles=)"
    tifffile.imwrite(tmp_path / "p.tif", np.full((5, 6, 7), 0.5, np.float32))
    acq = import_scan(
        tmp_path / "p.tif",
        tmp_path / "c.zarr",
        "roi",
        angle_range=(-60, 60),
        pixel_size_nm=30,
        **kw,
    )
    assert acq["roi"].meta["source"]["angles_from"] == "angle_range= -60:60"
