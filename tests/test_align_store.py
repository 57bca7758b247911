"""align's final store: it waits for another writer's lock, and shifts it cannot store are
saved to a file that ``sxtdist align ACQ --apply FILE`` stores later (never lost)."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import sxtdist
from sxtdist.alignment import store
from sxtdist.lock import write_lock


@contextmanager
def held(path, seconds):
    """Another writer (an import, say) holding ``path``'s lock for ``seconds`` in a thread
    (``flock`` locks of two open files conflict within one process too)."""
    taken, done = threading.Event(), threading.Event()

    def hold():
        with write_lock(path):
            taken.set()
            done.wait(seconds)

    t = threading.Thread(target=hold)
    t.start()
    taken.wait(5)
    try:
        yield
    finally:
        done.set()
        t.join()


def _shifts(acq):
    return {name: acq[name].meta.get("shifts_px") for name in acq.scans}


def test_the_store_waits_for_a_lock_held_for_a_while(tiny_copy, monkeypatch, caplog):
    monkeypatch.setattr(store, "STORE_WAIT_S", 20.0)
    acq = sxtdist.open_acquisition(tiny_copy)
    d = np.full((acq["roi"].geometry.n_angles, 2), 0.25)
    taken, done = threading.Event(), threading.Event()

    def hold():
        with write_lock(tiny_copy):
            taken.set()
            time.sleep(1.0)
        done.set()

    t = threading.Thread(target=hold)
    t.start()
    taken.wait(5)
    with caplog.at_level(logging.INFO, logger="sxtdist.lock"):
        store.store(acq, {"roi": {"shifts_px": d}})
    t.join()
    assert done.is_set()
    assert "waiting up to 20 s" in caplog.text
    np.testing.assert_array_equal(sxtdist.open_acquisition(tiny_copy)["roi"].meta["shifts_px"], d)


def test_cli_align_saves_what_it_cannot_store_and_apply_stores_it(
    run_cli, tiny_copy, tmp_path, monkeypatch
):
    monkeypatch.setattr(store, "STORE_WAIT_S", 0.5)
    before = _shifts(sxtdist.open_acquisition(tiny_copy))
    with held(tiny_copy, 120):
        code, out, err = run_cli("align", tiny_copy, "--workers", "1", "--report", "", "-q")
    assert code == 2
    # one line for the failure (tiny's verdict warns before it: its full views' own shifts
    # only fix the gauge)
    problems = [x for x in err.strip().splitlines() if not x.startswith("sxtdist: warning: ")]
    assert len(problems) == 1, err
    assert "the alignment could not be stored (" in err and "is being written by" in err
    saved = err.split("saved in ")[1].split(":")[0]
    assert f"'sxtdist align {tiny_copy} --apply {saved}'" in err
    assert _shifts(sxtdist.open_acquisition(tiny_copy)) == before  # nothing stored
    record = json.loads(open(saved).read())
    assert set(record["scans"]) == {"full", "roi"}
    assert "intensity_transform" in record["scans"]["roi"]["changes"]

    code, out, err = run_cli("align", tiny_copy, "--apply", saved)
    assert code == 0, err
    assert "stored the alignment of full, roi" in out
    acq = sxtdist.open_acquisition(tiny_copy)
    for name in ("full", "roi"):
        np.testing.assert_array_equal(
            acq[name].meta["shifts_px"], record["scans"][name]["changes"]["shifts_px"]
        )
        assert acq[name].aligned
    assert (
        acq["roi"].meta["intensity_transform"]
        == record["scans"]["roi"]["changes"]["intensity_transform"]
    )


def test_apply_refuses_shifts_solved_for_projections_since_replaced(run_cli, tiny_copy, tmp_path):
    acq = sxtdist.open_acquisition(tiny_copy)
    n = acq["roi"].geometry.n_angles
    saved = store.save(acq, {"roi": {"shifts_px": np.zeros((n, 2))}})
    assert saved.startswith(str(tmp_path))  # beside the acquisition
    record = json.loads(open(saved).read())
    record["scans"]["roi"]["data_id"] = "another"
    with open(saved, "w") as f:
        json.dump(record, f)
    code, out, err = run_cli("align", tiny_copy, "--apply", saved)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "was solved for other projections of scan 'roi'" in err


def test_apply_reads_a_saved_alignment_with_a_byte_order_mark(run_cli, tiny_copy):
    """A saved alignment kept with an editor that adds a UTF-8 byte-order mark (Notepad) was
    refused as 'cannot be read ... (Unexpected UTF-8 BOM ...)'; other text inputs read one."""
    acq = sxtdist.open_acquisition(tiny_copy)
    d = np.full((acq["roi"].geometry.n_angles, 2), 0.25)
    saved = store.save(acq, {"roi": {"shifts_px": d}})
    text = open(saved, encoding="utf-8").read()
    with open(saved, "w", encoding="utf-8-sig") as f:
        f.write(text)
    code, out, err = run_cli("align", tiny_copy, "--apply", saved)
    assert code == 0, err
    np.testing.assert_array_equal(sxtdist.open_acquisition(tiny_copy)["roi"].meta["shifts_px"], d)


@pytest.mark.parametrize("text", ["not json", '{"kind": "volume"}', '["x"]'])
def test_apply_refuses_a_file_that_is_no_saved_alignment(run_cli, tiny_copy, tmp_path, text):
    (tmp_path / "x.json").write_text(text)
    code, out, err = run_cli("align", tiny_copy, "--apply", tmp_path / "x.json")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "x.json: " in err


def test_save_never_replaces_a_file(tiny_copy, monkeypatch):
    acq = sxtdist.open_acquisition(tiny_copy)
    monkeypatch.setattr(store.time, "strftime", lambda fmt, *a: "same")
    first = store.save(acq, {"roi": {"x": 1}})
    second = store.save(acq, {"roi": {"x": 2}})
    assert first != second
    assert json.loads(open(first).read())["scans"]["roi"]["changes"] == {"x": 1}


def test_a_report_that_fails_too_does_not_hide_the_saved_alignment(
    run_cli, tiny_copy, tmp_path, monkeypatch
):
    import importlib

    report = importlib.import_module("sxtdist.alignment.report")

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "r"))

    monkeypatch.setattr(store, "STORE_WAIT_S", 0.2)
    monkeypatch.setattr(report, "write_report", fails)
    with held(tiny_copy, 120):
        code, out, err = run_cli("align", tiny_copy, "--workers", "1", "--report", tmp_path / "r")
    assert code == 2
    lines = err.strip().splitlines()
    assert f"the alignment report {tmp_path / 'r'} was not written: {tmp_path / 'r'}: No space" in (
        out + err
    )
    assert "the alignment could not be stored" in lines[-1] and "--apply" in lines[-1]


def test_save_goes_to_the_temporary_folder_when_the_acquisitions_cannot_be_written(
    tiny_copy, tmp_path, monkeypatch
):
    import builtins
    import os

    beside = os.path.dirname(tiny_copy)
    (tmp_path / "tmp").mkdir()

    def read_only_beside(path, *args, **kwargs):
        if os.path.dirname(path) == beside:
            raise PermissionError(13, "Permission denied", path)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(store, "open", read_only_beside, raising=False)
    monkeypatch.setattr(store.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    saved = store.save(sxtdist.open_acquisition(tiny_copy), {"roi": {"x": 1}})
    assert os.path.dirname(saved) == str(tmp_path / "tmp")
    assert json.loads(open(saved).read())["scans"]["roi"]["changes"] == {"x": 1}


def test_shifts_measured_on_a_scan_replaced_meanwhile_are_not_stored(tiny_copy):
    """An import --overwrite replaced the scan while align read it (review5 finding 5): the
    shifts belong to projections that are gone; refused, nothing stored or saved."""
    from sxtdist.dataset import ScanReplacedError

    acq = sxtdist.open_acquisition(tiny_copy)  # as align opened it
    n = acq["roi"].geometry.n_angles
    other = sxtdist.open_acquisition(tiny_copy)
    other.update_scan("roi", data_id="new-projections")  # as the import leaves it
    before = _shifts(sxtdist.open_acquisition(tiny_copy))
    with pytest.raises(ScanReplacedError, match="scan 'roi' was replaced"):
        store.store(acq, {"roi": {"shifts_px": np.ones((n, 2))}})
    assert _shifts(sxtdist.open_acquisition(tiny_copy)) == before
    assert not list(Path(tiny_copy).parent.glob("*unstored*"))


@pytest.mark.parametrize(
    ("scan", "edit", "said"),
    [
        ("roi", {"pixel_size_nm": 12.0}, "scan 'roi' was edited (pixel_size_nm "),
        ("roi", {"roi_center_px": [0.0, 3.0]}, "scan 'roi' was edited (roi_center_px "),
        ("roi", {"axis_tilt_deg": 0.5}, "scan 'roi' was edited (axis_tilt_deg "),
        ("full", {"pixel_size_nm": 33.0}, "scan 'full' was edited (pixel_size_nm "),  # anchors
    ],
)
def test_shifts_measured_with_a_geometry_edited_meanwhile_are_not_stored(
    tiny_copy, run_cli, scan, edit, said
):
    """Edit during align (review6 'Edit during align: shifts measured with the old pixel
    size stored as trusted, no warning'): an edit of the pixel size, centre or tilt that
    came while align measured was merged under its shifts. Refused, nothing stored or
    saved; a saved alignment is refused the same way by --apply; an edit of a value the
    shifts do not depend on (the energy) is kept beside them."""
    from sxtdist.dataset import ScanEditedError

    acq = sxtdist.open_acquisition(tiny_copy)  # as align opened it
    n = acq["roi"].geometry.n_angles
    saved = store.save(acq, {"roi": {"shifts_px": np.ones((n, 2))}})
    sxtdist.open_acquisition(tiny_copy).update_scan(scan, **edit)  # the edit, meanwhile
    before = _shifts(sxtdist.open_acquisition(tiny_copy))
    with pytest.raises(ScanEditedError, match=re.escape(said)):
        store.store(acq, {"roi": {"shifts_px": np.ones((n, 2))}})
    assert _shifts(sxtdist.open_acquisition(tiny_copy)) == before
    assert len(list(Path(tiny_copy).parent.glob("*unstored*"))) == 1  # only the one saved
    code, out, err = run_cli("align", tiny_copy, "--apply", saved)
    assert code == 2 and len(err.strip().splitlines()) == 1 and said in err, err
    assert "align again" in err and _shifts(sxtdist.open_acquisition(tiny_copy)) == before

    acq = sxtdist.open_acquisition(tiny_copy)
    sxtdist.open_acquisition(tiny_copy).update_scan("roi", energy_ev=700.0)
    store.store(acq, {"roi": {"shifts_px": np.ones((n, 2))}})
    stored = sxtdist.open_acquisition(tiny_copy)["roi"]
    assert stored.meta["energy_ev"] == 700.0 and np.all(stored.geometry.shifts_px == 1)


def test_align_on_a_read_only_acquisition_fails_before_the_work(
    run_cli, tiny_copy, monkeypatch, deny_writes
):
    """review5 finding 9: told at once, not after every pair is done; review6 'Read-only
    acquisition: align/edit/import name a hidden lock file and advise "write the output
    elsewhere"': one line naming the acquisition, the folder that cannot be written, what to
    do; exit 1 (the environment's failure, bugs.md R14-2; edit exited 2)."""
    import errno

    from sxtdist import lock

    for read_only in (os.fspath(tiny_copy), os.path.dirname(tiny_copy)):  # shifts; lock
        with deny_writes(read_only, errno.EROFS):  # that folder on a read-only file system
            code, out, err = run_cli("align", tiny_copy, "--workers", "1", "--report", "")
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        said = f"{tiny_copy}: cannot be written ({read_only}: Read-only file system): align"
        assert said in err, err
        assert "--dry-run" in err and "sxtdist-lock" not in err and "aligning" not in out + err

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(lock, "_take", read_only)
    code, out, err = run_cli("edit", tiny_copy, "--scan", "roi", "--energy-ev", "520")
    assert code == 1 and f"error: {tiny_copy}: cannot be written (Read-only file system)" in err
    assert "edit the copy" in err and "write the output elsewhere" not in err


def test_a_second_align_is_refused_and_a_report_failing_after_the_store_is_a_warning(
    run_cli, tiny_copy, tmp_path, monkeypatch, deny_writes
):
    """review6 'Two aligns of one acquisition at once: the one that exits with an error is
    the one stored, and the report folder shows the other's shifts' and '`align --report
    DIR` on a read-only place: all the work, the shifts stored, then an error exit that
    says nothing was stored': a second align is refused at its start; a report folder that
    cannot be written is told before the work; a report failing after the store is a
    warning that says the shifts are stored (exit 0)."""
    import errno

    from sxtdist.alignment import report as report_module
    from sxtdist.lock import activity_lock

    args = ("align", tiny_copy, "--workers", "1", "-q")
    with activity_lock(tiny_copy, "aligned"):  # another align running
        code, out, err = run_cli(*args, "--report", "")
    assert code == 2 and f"{tiny_copy}: is being aligned by pid {os.getpid()}" in err, err
    assert not sxtdist.open_acquisition(tiny_copy)["roi"].aligned
    link = tmp_path / "link.zarr"  # the same acquisition by another name: the same lock
    os.symlink(tiny_copy, link)
    with activity_lock(tiny_copy, "aligned"):
        code, out, err = run_cli("align", link, "--workers", "1", "-q", "--report", "")
    assert code == 2 and "is being aligned by pid" in err, err
    assert not sxtdist.open_acquisition(tiny_copy)["roi"].aligned
    (tmp_path / "ro").mkdir()
    with deny_writes(tmp_path / "ro"):  # a place for the report where no file can be made
        code, out, err = run_cli(*args, "--report", tmp_path / "ro" / "rep")
    assert code == 1 and f"{tmp_path / 'ro'}: Permission denied (no permission" in err, err
    assert "aligning" not in out + err, err
    assert not sxtdist.open_acquisition(tiny_copy)["roi"].aligned  # told before the work

    def cannot(*a, **k):
        raise OSError(errno.EACCES, "Permission denied", str(tmp_path / "rep"))

    monkeypatch.setattr(report_module, "write_report", cannot)
    code, out, err = run_cli(*args, "--report", tmp_path / "rep")
    assert code == 0, err
    assert f"the shifts are stored in {tiny_copy}; the alignment report {tmp_path / 'rep'}" in err
    assert sxtdist.open_acquisition(tiny_copy)["roi"].aligned
    code, out, err = run_cli(*args, "--report", "")  # the lock went with the run
    assert code == 0, err


def test_aligning_full_alone_warns_that_an_anchored_roi_goes_stale(run_cli, tiny_copy):
    """review5 finding 7: the interior's shifts were measured against the earlier full ones."""
    code, _, err = run_cli("align", tiny_copy, "--workers", "1", "--report", "", "-q")
    assert code == 0, err
    code, out, err = run_cli("align", tiny_copy, "--scans", "full", "--report", "", "-q")
    assert code == 0, err
    assert "'roi' was aligned to the earlier shifts of 'full'; align it again (--scans roi" in err
    code, out, err = run_cli("align", tiny_copy, "--workers", "1", "--report", "", "-q")
    assert code == 0 and "earlier shifts" not in err  # both scans: no warning


def test_align_on_a_full_disk_names_the_acquisition_and_both_failures(tiny_copy):
    """A file-size limit (as a full disk): the shifts can be neither stored in the
    acquisition nor saved in a file. One line naming the acquisition, the first failure
    and the second (exit 1, the environment's), not only the side file's failure with no
    name (it escaped through the lock as 'ACQ.aligned', a path that does not exist)."""
    import resource
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = _shifts(sxtdist.open_acquisition(tiny_copy))
    limit = 8 * 1024  # the stored shifts' zarr.json is ~25 kB, the saved file ~15 kB
    p = subprocess.run(
        [sys.executable, "-m", "sxtdist", "align", tiny_copy, "--workers", "1", "--report", ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    problems = [x for x in p.stderr.splitlines() if x.startswith("sxtdist: error")]
    assert p.returncode == 1, p.stderr
    assert len(problems) == 1 and "Traceback" not in p.stderr, p.stderr
    assert problems[0].startswith(f"sxtdist: error: {tiny_copy}: File too large"), p.stderr
    assert "could not be stored, nor saved in a file beside it or in the temporary" in problems[0]
    assert "then align again" in problems[0]
    assert ".aligned" not in problems[0]
    assert _shifts(sxtdist.open_acquisition(tiny_copy)) == before  # nothing half-stored
    left = [n for n in os.listdir(os.path.dirname(tiny_copy)) if "unstored-alignment" in n]
    assert left == []  # no half-written side file
