"""The acquisition format: round trip, validation, one-line errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr

import sxtdist
from sxtdist.dataset import ScanData, add_scan, read_projection
from sxtdist.errors import InputError, OutputExistsError


def _scans(rng):
    full = ScanData(
        data=rng.random((5, 8, 12), dtype=np.float32),
        angles_deg=np.arange(5) * 36.0,
        pixel_size_nm=40.0,
        energy_ev=517.0,
        zone_plate_ozw_nm=60.0,
        photons_per_pixel=1000.0,
        roi_center_px=(0.0, 0.0),
    )
    roi = ScanData(
        data=rng.random((7, 16, 10), dtype=np.float32),
        angles_deg=np.linspace(0, 360, 7),
        pixel_size_nm=20.0,
        roi_center_px=(1.5, -3.0),
        shifts_px=rng.normal(size=(7, 2)),
    )
    return {"full": full, "roi": roi}


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    scans = _scans(rng)
    truth = rng.random((8, 12, 12), dtype=np.float32)
    path = tmp_path / "a.zarr"
    acq = sxtdist.create_acquisition(path, scans, truth=truth, truth_meta={"voxel_size_nm": 40.0})
    again = sxtdist.open_acquisition(path)
    for name, s in scans.items():
        np.testing.assert_array_equal(again[name].data.compute(), s.data)
        g = again[name].geometry
        np.testing.assert_allclose(g.angles_deg, s.angles_deg)
        assert g.pixel_size_nm == s.pixel_size_nm
        assert g.center_offset_px == tuple(s.roi_center_px)
        expected = np.zeros((len(s.angles_deg), 2)) if s.shifts_px is None else s.shifts_px
        np.testing.assert_allclose(g.shifts_px, expected)
        assert again[name].data.chunksize[0] == 1  # one projection per dask chunk (a shard)
    assert again["full"].energy_ev == 517.0 and again["roi"].energy_ev is None
    np.testing.assert_array_equal(again.truth.compute(), truth)
    assert acq.truth_meta["voxel_size_nm"] == 40.0
    group = zarr.open_group(path, mode="r")
    for name in ("full", "roi", "truth"):
        assert type(open_ome_zarr(group[name])).__name__ == "Image"


def test_refuses_existing(tmp_path):
    path = tmp_path / "a.zarr"
    sxtdist.create_acquisition(path, _scans(np.random.default_rng(1)))
    with pytest.raises(OutputExistsError):
        sxtdist.create_acquisition(path, _scans(np.random.default_rng(1)))


def test_read_projection_sees_an_acquisition_rewritten_at_the_same_path(tmp_path):
    """The per-process cache of opened arrays must not serve a replaced dataset's metadata."""
    path = tmp_path / "a.zarr"
    rng = np.random.default_rng(2)
    first = sxtdist.create_acquisition(path, _scans(rng))
    np.testing.assert_array_equal(read_projection(first["roi"].path, 6), first["roi"].read()[6])
    shutil.rmtree(path)
    scans = _scans(rng)
    scans["roi"] = ScanData(
        data=rng.random((12, 16, 10), dtype=np.float32),
        angles_deg=np.linspace(0, 330, 12),
        pixel_size_nm=20.0,
    )
    second = sxtdist.create_acquisition(path, scans)
    assert second["roi"].path == first["roi"].path
    np.testing.assert_array_equal(read_projection(second["roi"].path, 11), scans["roi"].data[11])
    with pytest.raises(InputError, match="cannot read projection 12"):
        read_projection(second["roi"].path, 12)


def test_set_shifts_persist(tiny_copy):
    acq = sxtdist.open_acquisition(tiny_copy)
    shifts = np.full((acq["roi"].shape[0], 2), 0.25)
    acq.set_shifts("roi", shifts, method="test")
    again = sxtdist.open_acquisition(tiny_copy)
    np.testing.assert_allclose(again["roi"].geometry.shifts_px, shifts)
    assert again["roi"].aligned
    assert not again.aligned  # the full scan is not (batch's --align auto aligns it)
    again.set_shifts("full", np.zeros((again["full"].shape[0], 2)), method="test")
    assert sxtdist.open_acquisition(tiny_copy).aligned


def _edit_meta(path, fn):
    zj = os.path.join(path, "zarr.json")
    with open(zj) as f:
        doc = json.load(f)
    fn(doc["attributes"]["sxtdist"])
    with open(zj, "w") as f:
        json.dump(doc, f)


def _truncate(path):
    chunk_dir = os.path.join(path, "roi", "0", "c")
    victim = sorted(os.listdir(chunk_dir))[-1]
    import shutil

    shutil.rmtree(os.path.join(chunk_dir, victim))


BAD_CASES = {
    "missing path": (lambda p: p + ".nope", "no such file"),
    "plain zarr": (lambda p: _plain_zarr(p), "without sxtdist metadata"),
    "truncated array": (lambda p: (_truncate(p), p)[1], "missing"),
    "negative pixel": (
        lambda p: (_edit_meta(p, lambda m: m["scans"]["roi"].update(pixel_size_nm=-5.0)), p)[1],
        "pixel_size_nm",
    ),
    "angles count": (
        lambda p: (_edit_meta(p, lambda m: m["scans"]["full"]["angles_deg"].pop()), p)[1],
        "angles but",
    ),
    "nan angle": (
        lambda p: (
            _edit_meta(p, lambda m: m["scans"]["full"]["angles_deg"].__setitem__(0, "NaN")),
            p,
        )[1],
        "angles_deg",
    ),
    "schema version": (lambda p: (_edit_meta(p, lambda m: m.update(version=99)), p)[1], "version"),
}


def _plain_zarr(p):
    other = p + ".plain.zarr"
    zarr.open_group(other, mode="w").create_array("x", shape=(3,), dtype="f4")
    return other


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_inputs_exit_2_with_one_line(case, tiny_copy, run_cli):
    make, expected = BAD_CASES[case]
    path = make(tiny_copy)
    with pytest.raises(InputError):
        sxtdist.open_acquisition(path)
    code, out, err = run_cli("info", path)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert os.path.basename(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in err


def test_info_acquisition(tiny_acq, run_cli):
    code, out, _ = run_cli("info", tiny_acq)
    assert code == 0
    for word in (
        "scan 'full'",
        "scan 'roi'",
        "spacing",
        "alignment: unaligned",
        "photons/px",
        "truth",
    ):
        assert word in out


def test_update_scan_keeps_what_another_handle_stored(tmp_path):
    """An edit through a handle opened earlier (a long ``align``) keeps the other scan's
    changes and a scan an import added meanwhile (review finding 4)."""
    scans = _scans(np.random.default_rng(4))
    path = str(tmp_path / "a.zarr")
    sxtdist.create_acquisition(path, {"full": scans["full"]})
    early = sxtdist.open_acquisition(path)
    add_scan(path, "roi", scans["roi"])
    other = sxtdist.open_acquisition(path)
    other.update_scan("roi", zone_plate_ozw_nm=42.0)
    early.update_scan("full", zone_plate_ozw_nm=35.0)
    again = sxtdist.open_acquisition(path)
    assert set(again.scans) == {"full", "roi"}
    assert again["roi"].zone_plate_ozw_nm == 42.0 and again["full"].zone_plate_ozw_nm == 35.0
    other.update_scan("roi", energy_ev=520.0)  # and the other way round
    again = sxtdist.open_acquisition(path)
    assert (again["full"].zone_plate_ozw_nm, again["roi"].energy_ev) == (35.0, 520.0)
    assert other.group.attrs["sxtdist"] == again.meta == other.meta  # the handle sees it too


def test_a_replacement_stopped_after_the_swap_is_refused_until_done_again(
    tmp_path, monkeypatch, run_cli
):
    """New projections never open under the old scan's metadata (review finding 11)."""

    scans = _scans(np.random.default_rng(5))
    path = str(tmp_path / "a.zarr")
    sxtdist.create_acquisition(path, scans)
    handle = sxtdist.open_acquisition(path)
    new = ScanData(
        data=np.full((7, 16, 10), 0.25, np.float32),
        angles_deg=np.linspace(10, 190, 7),
        pixel_size_nm=25.0,
    )

    _add_scan_failing_in(monkeypatch, "_register_scan", path, new)
    with pytest.raises(InputError, match="scan 'roi' was being replaced when a write stopped"):
        sxtdist.open_acquisition(path)
    with pytest.raises(InputError, match="was being replaced"):
        handle.update_scan("full", energy_ev=500.0)
    code, _, err = run_cli("info", path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    with pytest.raises(InputError, match="was being replaced"):  # another scan: not yet
        add_scan(path, "full", scans["full"], overwrite=True)
    acq = add_scan(path, "roi", new, overwrite=True)  # the same import again
    np.testing.assert_array_equal(acq["roi"].geometry.angles_deg, new.angles_deg)
    np.testing.assert_array_equal(acq["roi"].read(), new.data)
    assert acq["full"].zone_plate_ozw_nm == 60.0


def _add_scan_failing_in(monkeypatch, step, path, scan):
    """``add_scan(... overwrite=True)`` of the roi scan, the disk failing in ``step``."""
    import errno

    import sxtdist.dataset as dataset

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(dataset, step, disk_full)
        with pytest.raises(OSError):
            add_scan(path, "roi", scan, overwrite=True)


def test_a_replacement_that_stops_before_its_swap_leaves_the_acquisition_open(
    tmp_path, monkeypatch, run_cli
):
    """review5 finding 11: a replacement that failed before its swap (the old scan whole)
    no longer locks the user out; one that stopped after it names the command to run."""

    scans = _scans(np.random.default_rng(5))
    path = str(tmp_path / "a.zarr")
    sxtdist.create_acquisition(path, scans)
    old = sxtdist.open_acquisition(path)["roi"].read()
    new = ScanData(
        data=np.full((7, 16, 10), 0.25, np.float32),
        angles_deg=np.linspace(10, 190, 7),
        pixel_size_nm=25.0,
        extra={"source": {"path": "/data/roi new.tif"}},
    )

    _add_scan_failing_in(monkeypatch, "swap_in", path, new)
    np.testing.assert_array_equal(sxtdist.open_acquisition(path)["roi"].read(), old)
    assert not any(n.startswith("_partial") for n in os.listdir(path))
    _add_scan_failing_in(monkeypatch, "_register_scan", path, new)
    code, _, err = run_cli("info", path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    # added from Python, so no command to repeat: what to do, not a command that looks whole
    assert "run the import from /data/roi new.tif again with all its options and --overwrite" in err


def test_a_path_in_the_other_unicode_form_is_named(tmp_path, run_cli):
    """review6 'A path typed or saved in decomposed Unicode (macOS) is "no such file"
    beside the folder it names': the message names the spelling that exists."""
    import unicodedata

    composed = tmp_path / unicodedata.normalize("NFC", "raw ü") / "a.zarr"
    composed.parent.mkdir()
    sxtdist.create_acquisition(composed, _scans(np.random.default_rng(5)))
    decomposed = unicodedata.normalize("NFD", str(composed))
    assert decomposed != str(composed)
    with pytest.raises(InputError, match="another Unicode form") as e:
        sxtdist.open_acquisition(decomposed, "r")
    assert f"but {composed} is" in str(e.value)
    code, _, err = run_cli("import", decomposed + ".tif", tmp_path / "b.zarr", "--scan", "roi")
    assert code == 2 and "no such file or directory" in err and "Unicode" not in err


def test_a_replacement_in_progress_is_told_as_one(tmp_path):
    """review6 'During a normal import --overwrite, every reader is told the write
    "stopped" and to import again': while the import holds the acquisition's lock its
    mark means 'being replaced by pid N: wait'; only a mark nobody holds means 'stopped'."""
    import subprocess
    import sys

    import zarr

    from sxtdist.dataset import KEY, REPLACING
    from sxtdist.errors import OutputLockedError

    path = str(tmp_path / "a.zarr")
    sxtdist.create_acquisition(path, _scans(np.random.default_rng(5)))
    root = zarr.open_group(path, mode="r+")
    root.attrs[KEY] = {**root.attrs[KEY], REPLACING: "roi"}
    hold = "import sys, time\nfrom sxtdist.lock import write_lock\nwith write_lock(sys.argv[1]):\n"
    hold += "    print('held', flush=True)\n    time.sleep(60)\n"
    importer = subprocess.Popen(
        [sys.executable, "-c", hold, path], stdout=subprocess.PIPE, text=True
    )
    try:  # the import, writing (another process)
        assert importer.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=rf"is being replaced by pid {importer.pid} "):
            sxtdist.open_acquisition(path, "r")
    finally:
        importer.kill()
        importer.wait()
    with pytest.raises(InputError, match="scan 'roi' was being replaced when a write stopped"):
        sxtdist.open_acquisition(path, "r")
    assert not [f for f in os.listdir(tmp_path) if f.endswith("sxtdist-lock")]


def _scratch_array(path):
    return zarr.create_array(
        path, shape=(16, 4, 4), chunks=(1, 4, 4), dtype="f4", fill_value=float("nan")
    )


def test_write_shards_writes_in_parallel_threads(tmp_path):
    """Each chunk one shard, written by this process's threads (was one at a time: review
    finding 15); every value arrives."""
    import threading
    import time

    import dask.array as da

    from sxtdist.dataset import write_shards

    arr = _scratch_array(tmp_path / "a.zarr")
    threads = set()

    def verified(x, first):
        threads.add(threading.get_ident())
        time.sleep(0.05)
        return x + first

    write_shards(da.zeros((16, 4, 4), chunks=(1, 4, 4), dtype="f4"), arr, verified)
    np.testing.assert_array_equal(arr[:, 0, 0], np.arange(16))
    if (os.cpu_count() or 1) > 1:
        assert len(threads) > 1


def test_write_shards_writes_nothing_after_it_raised(tmp_path):
    """After a failed check no chunk starts writing, and the call returns only when the
    running ones are written: the caller may then remove the output safely."""
    import threading
    import time

    import dask.array as da

    from sxtdist.dataset import write_shards

    arr = _scratch_array(tmp_path / "a.zarr")
    returned, late = threading.Event(), []

    def failing(x, first):
        if first == 3:
            raise InputError("x.tif", "view 3 is bad")
        time.sleep(0.1)
        if returned.is_set():
            late.append(first)
        return x

    with pytest.raises(InputError, match="view 3"):
        write_shards(da.zeros((16, 4, 4), chunks=(1, 4, 4), dtype="f4"), arr, failing)
    returned.set()
    time.sleep(1.0)  # a queued chunk would be written now
    assert late == []
