"""Resuming an unfinished reconstruction: only the same run on the same data, with the
same count; what stopped it never costs its finished blocks; the disk check counts them."""

from __future__ import annotations

import errno
import math
import shutil

import numpy as np
import pytest

import sxtdist
import sxtdist.resources
from sxtdist import runner
from sxtdist.errors import InputError, OutputExistsError, ParameterError
from sxtdist.outputs import partial_path
from sxtdist.runner import (
    AUTO_CAP,
    ORACLE_CAP,
    Reconstruction,
    build_problem,
    half_paths,
    reconstruct,
)
from sxtdist.volume import open_volume


def _run(acq, out, client, **kw):
    return reconstruct(acq, out, client=client, progress=False, block_size=8, **kw)


def _interrupt(vol, done):
    """As if the run had stopped with ``done`` blocks finished."""
    vol.update_meta(status="running", blocks_done=list(done))


def test_auto_does_not_resume_a_fixed_count_run(tiny_acq, tmp_path, client):
    """The review's case: a fixed count equal to the pilot's cap, half its blocks
    unfinished, run again with ``auto``: refused in one line saying how it was started
    (it used to resume at auto's count and keep the record 'fixed')."""
    out = tmp_path / "o60.zarr"
    vol = _run(tiny_acq, out, client, iterations=AUTO_CAP)
    n = vol.meta["plan"]["n_blocks"]
    _interrupt(vol, range(n // 2))
    before = vol.level(0).compute()
    with pytest.raises(OutputExistsError, match=f"started as cgne, iterations {AUTO_CAP}, "):
        _run(tiny_acq, out, client)  # iterations auto (the default)
    after = open_volume(out)
    assert after.blocks_done == set(range(n // 2)) and after.status == "running"
    np.testing.assert_array_equal(after.level(0).compute(), before)


def test_a_resumed_auto_run_keeps_its_count(tiny_acq, tmp_path, client, monkeypatch):
    """Resumed (here: an interrupted --overwrite, written beside the old output), an
    ``auto`` run reuses the count it chose and records it; no second pilot."""
    out = tmp_path / "auto.zarr"
    vol = _run(tiny_acq, tmp_path / "first.zarr", client)
    count = vol.meta["provenance"]["iterations"]
    _interrupt(vol, [0])
    _run(tiny_acq, out, client, iterations=3)  # the complete output being replaced
    shutil.move(vol.path, partial_path(str(out)))

    def another_pilot(*args, **kwargs):
        return count + 1, {"rule": "split-half cross-validation"}

    monkeypatch.setattr(runner, "_auto_iterations", another_pilot)
    resumed = _run(tiny_acq, out, client, overwrite=True)
    assert resumed.meta["provenance"]["iterations"] == count
    assert resumed.meta["provenance"]["iterations_rule"]["rule"] == "split-half cross-validation"
    stopping = resumed.meta["stopping"]
    assert stopping["blocks_run"] == resumed.meta["plan"]["n_blocks"] - 1
    assert stopping["iterations_min"] == stopping["iterations_max"] == count


def test_re_simulated_data_are_not_resumed(tmp_path, client):
    """The same path and seed simulated again without the capillary: other projections,
    the same scan metadata but for the data's id; the old blocks are not resumed."""
    acq = tmp_path / "tiny.zarr"
    sxtdist.simulate(acq, "tiny", 3, progress=False)
    first = sxtdist.open_acquisition(acq, "r")
    meta, data = first.meta["scans"], first["roi"].read()
    out = tmp_path / "rec.zarr"
    _interrupt(_run(acq, out, client, iterations=3), [0])
    sxtdist.simulate(acq, "tiny", 3, capillary=False, overwrite=True, progress=False)
    second = sxtdist.open_acquisition(acq, "r")
    assert np.abs(second["roi"].read() - data).max() > 0.01
    for name, m in second.meta["scans"].items():
        assert {k: v for k, v in m.items() if k != "data_id"} == {
            k: v for k, v in meta[name].items() if k != "data_id"
        }
        assert m["data_id"] != meta[name]["data_id"]
    with pytest.raises(OutputExistsError, match="other data or with other parameters"):
        _run(acq, out, client, iterations=3)
    assert open_volume(out).blocks_done == {0}


def test_an_interrupted_split_halves_run_resumes(tiny_acq, tmp_path, client):
    """Interrupted while half 2 was written: the same command finishes it (half 1, complete
    with the same fingerprint, is kept as it is)."""
    out = tmp_path / "sh.zarr"
    vol = _run(tiny_acq, out, client, iterations=4, split_halves=True)
    h1, h2 = half_paths(str(out))
    ref = open_volume(h2).level(0).compute()
    _interrupt(vol, vol.blocks_done)
    _interrupt(open_volume(h2), [0])
    took = open_volume(h1).meta["elapsed_s"]
    again = _run(tiny_acq, out, client, iterations=4, split_halves=True)
    assert again.status == "complete" and again.meta["stopping"]["blocks_run"] == 0
    assert open_volume(h1).meta["elapsed_s"] == took  # not redone
    half2 = open_volume(h2)
    assert half2.status == "complete"
    assert half2.meta["stopping"]["blocks_run"] == half2.meta["plan"]["n_blocks"] - 1
    np.testing.assert_array_equal(half2.level(0).compute(), ref)


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_half_of_another_run_is_refused_before_any_block(
    tiny_acq, tmp_path, client, monkeypatch, interrupted
):
    """A split half left by a run with another count (complete, or unfinished) is refused
    before a block of the volume is solved, not after: nothing is solved or written, the
    halves are as they were."""
    out = tmp_path / "sh.zarr"
    vol = _run(tiny_acq, out, client, iterations=3, split_halves=True)
    h1, _ = half_paths(str(out))
    if interrupted:
        _interrupt(open_volume(h1), [0])
    shutil.rmtree(vol.path)
    before = open_volume(h1).meta

    def no_block(*args, **kwargs):
        raise AssertionError("a block was solved")

    monkeypatch.setattr(runner, "run_tasks", no_block)
    what = "an unfinished" if interrupted else "a complete"
    with pytest.raises(OutputExistsError, match=f"sh.half1.zarr: holds {what} split half of "):
        _run(tiny_acq, out, client, iterations=4, split_halves=True)
    assert not out.exists() and open_volume(h1).meta == before


def test_a_failing_half_keeps_the_solved_volume(tiny_acq, tmp_path, client, monkeypatch):
    out = tmp_path / "sh.zarr"

    def damaged(*args, **kwargs):
        raise InputError("somewhere.zarr", "chunk 3 is damaged")

    monkeypatch.setattr(runner, "_reconstruct_halves", damaged)
    with pytest.raises(InputError, match="damaged"):
        _run(tiny_acq, out, client, iterations=4, split_halves=True)
    vol = open_volume(out)
    assert vol.status == "running" and len(vol.blocks_done) == vol.meta["plan"]["n_blocks"]
    monkeypatch.undo()
    again = _run(tiny_acq, out, client, iterations=4, split_halves=True)
    assert again.status == "complete" and again.meta["stopping"]["blocks_run"] == 0


def test_an_error_keeps_finished_blocks_only(tiny_acq, tmp_path, client):
    """What stopped it does not matter (a worker's input error included): a volume is kept
    when a block of it is finished, removed when none is."""
    vol = _run(tiny_acq, tmp_path / "v.zarr", client, iterations=2)
    error = InputError(tiny_acq, "chunk roi/c/3/0/0 is damaged")
    _interrupt(vol, [1])
    assert runner._worth_resuming(error, vol.path)
    assert runner._worth_resuming(KeyboardInterrupt(), vol.path)
    _interrupt(vol, [])
    assert not runner._worth_resuming(error, vol.path)
    assert not runner._worth_resuming(error, str(tmp_path / "absent.zarr"))


def _fake_disk(monkeypatch, total, free):
    monkeypatch.setattr(sxtdist.resources, "disk_bytes", lambda path: (int(total), int(free)))


def test_a_resume_needs_room_for_the_blocks_left_only(tiny_acq, tmp_path, client, monkeypatch):
    out = tmp_path / "v.zarr"
    vol = _run(tiny_acq, out, client, iterations=2)
    n = vol.meta["plan"]["n_blocks"]
    assert n >= 4
    level0 = 4 * math.prod(vol.level(0).shape)
    _interrupt(vol, range(n - 1))
    # room for one block and the pyramid, not for the whole volume again
    _fake_disk(monkeypatch, 2**40, level0 * (1 / n + 1 / 7) * 1.01)
    resumed = _run(tiny_acq, out, client, iterations=2)
    assert resumed.status == "complete" and resumed.meta["stopping"]["blocks_run"] == 1
    _interrupt(resumed, range(n - 1))
    _fake_disk(monkeypatch, 2**40, level0 * (1 / n + 1 / 7) * 0.9)
    with pytest.raises(OSError, match=r"needs .* on disk") as e:
        _run(tiny_acq, out, client, iterations=2)
    assert e.value.errno == errno.ENOSPC
    assert open_volume(out).blocks_done == set(range(n - 1))


def test_too_little_disk_is_told_as_the_readme_says(tiny_acq, tmp_path, monkeypatch, run_cli):
    """Free space short: a full disk, exit code 1 (free some and run it again); a volume
    larger than the whole file system: a bad parameter, exit code 2. Nothing written."""
    out = tmp_path / "v.zarr"
    args = ("reconstruct", tiny_acq, out, "--iterations", "2", "--workers", "1")
    _fake_disk(monkeypatch, 2**40, 1000)
    code, _, err = run_cli(*args)
    assert code == 1, err
    assert "needs" in err and "the disk is full: free space" in err and len(err.splitlines()) == 1
    _fake_disk(monkeypatch, 2000, 1000)
    code, _, err = run_cli(*args)
    assert code == 2 and "1000 B free of 1.953 KiB" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sirt_needs_a_count(tiny_acq, run_cli, tmp_path):
    """The pilot is CGNE's: ``auto`` would give SIRT a count far too small."""
    with pytest.raises(ParameterError, match=r"iterations auto .* not for SIRT.*iterations=N"):
        Reconstruction(method="sirt")
    assert Reconstruction(method="sirt", iterations=50).iterations == 50
    assert Reconstruction(method="sirt", oracle=True).iterations == "auto"  # a cap
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "s.zarr", "--method", "sirt")
    assert code == 2 and "give --method sirt a count (--iterations N)" in err, err
    assert not (tmp_path / "s.zarr").exists()


def test_the_oracle_has_its_own_cap(tiny_acq):
    acq = sxtdist.open_acquisition(tiny_acq, "r")
    assert build_problem(acq, Reconstruction(oracle=True)).iterations == ORACLE_CAP > AUTO_CAP
    assert build_problem(acq, Reconstruction()).iterations == AUTO_CAP
    assert build_problem(acq, Reconstruction(oracle=True, iterations=7)).iterations == 7


@pytest.mark.parametrize("when", ["before", "while"])
def test_a_block_refuses_a_scan_replaced_since_the_run_began(tiny_copy, monkeypatch, when):
    """review5 finding 4: an import --overwrite into the acquisition while a reconstruction
    runs used to mix old and new projections into one 'complete' volume. A block reads the
    projections the run began with (their data_id), checked before and after its read."""
    from sxtdist.dataset import Scan, ScanReplacedError, data_ids

    acq = sxtdist.open_acquisition(tiny_copy, "r")
    began = data_ids(acq)
    problem = build_problem(acq, Reconstruction(iterations=1))

    def replace():  # what the import leaves: the scan's entry with another data_id
        sxtdist.open_acquisition(tiny_copy).update_scan("roi", data_id="new")

    if when == "before":
        replace()
    else:
        read = Scan.read

        def read_then_replaced(self, *args, **kwargs):
            out = read(self, *args, **kwargs)
            replace()
            return out

        monkeypatch.setattr(Scan, "read", read_then_replaced)
    block = runner.plan_blocks(list(problem.models.values()), problem.grid, 8).blocks[0]
    with pytest.raises(ScanReplacedError, match="scan 'roi' was replaced") as e:
        runner._read_block(sxtdist.open_acquisition(tiny_copy, "r"), problem, block.slab, began)
    # review6 'After a scan is replaced under a reconstruction, "nothing measured on it is
    # stored; run again" is wrong twice': its finished blocks hold the old projections
    assert "the blocks it finished hold the old projections: reconstruct again with" in str(e.value)
    assert "nothing measured" not in str(e.value)


def test_an_output_through_link_dotdot_is_written_where_the_kernel_puts_it(
    tiny_acq, tmp_path, client
):
    """review5 finding 10: ``link/../v.zarr`` is ``real/v.zarr`` to the kernel (and the
    lock), not ``./v.zarr``; the workers were given the lexical path."""
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub")
    vol = _run(tiny_acq, tmp_path / "link" / ".." / "v.zarr", client, iterations=1)
    assert vol.status == "complete" and (tmp_path / "real" / "v.zarr").is_dir()
    assert not (tmp_path / "v.zarr").exists()


def test_an_oracle_run_records_its_rule_and_resumes_as_one(tiny_acq, tmp_path, client):
    """``--oracle`` is recorded as the rule it is (``oracle``, what was asked and its cap),
    not ``fixed``; the same oracle run resumes, and a run without the oracle is refused in
    words that say the volume was an oracle run of ``auto`` (not a count of 200)."""
    out = tmp_path / "oracle.zarr"
    vol = _run(tiny_acq, out, client, oracle=True)
    prov = vol.meta["provenance"]
    assert prov["iterations_rule"] == {"rule": "oracle", "asked": "auto", "cap": ORACLE_CAP}
    assert prov["iterations"] == ORACLE_CAP and runner.asked_iterations(prov) == "auto"
    n = vol.meta["plan"]["n_blocks"]
    _interrupt(vol, [0])
    with pytest.raises(
        OutputExistsError, match="started as cgne, iterations auto with the oracle stop, "
    ):
        _run(tiny_acq, out, client)  # auto, no oracle: another run
    assert open_volume(out).blocks_done == {0}
    resumed = _run(tiny_acq, out, client, oracle=True)
    assert resumed.meta["stopping"]["blocks_run"] == n - 1
    assert resumed.meta["provenance"]["iterations_rule"]["rule"] == "oracle"
    seven = _run(tiny_acq, tmp_path / "seven.zarr", client, oracle=True, iterations=7)
    assert seven.meta["provenance"]["iterations_rule"] == {"rule": "oracle", "asked": 7, "cap": 7}


def test_the_fingerprint_holds_shifts_and_geometry_not_the_alignment_records(
    tiny_acq, tmp_path, client
):
    """An unfinished run resumes after a change of how the scans were aligned or edited
    that changes no value (dates, timings, verdict, history), and is refused after a
    change of its shifts, geometry or intensity transform (review 5 finding 9)."""
    acq_path = tmp_path / "a.zarr"
    shutil.copytree(tiny_acq, acq_path)
    out = tmp_path / "o.zarr"
    vol = _run(acq_path, out, client, iterations=3)
    acq = sxtdist.open_acquisition(acq_path, mode="r+")
    roi = acq["roi"].meta
    records = {
        "alignment": {**(roi.get("alignment") or {}), "date": "2031-01-01T00:00:00+00:00",
                      "elapsed_s": 12.5, "verdict": "trusted"},
        "edits": [*roi.get("edits", []), {"date": "2031-01-01T00:00:00+00:00", "changes": {}}],
    }  # fmt: skip
    _interrupt(vol, [0])
    acq.update_scan("roi", **records)
    assert _run(acq_path, out, client, iterations=3).status == "complete"  # resumed
    shifts = np.asarray(roi["shifts_px"], float)
    for change in (
        {"shifts_px": (shifts + 0.25).tolist()},
        {"roi_center_px": [0.0, 0.5]},
        {"intensity_transform": {"model": "affine", "a": 1.1, "b": 0.0}},
    ):
        _interrupt(open_volume(out, mode="r+"), [0])
        saved = {k: roi.get(k) for k in change}
        acq.update_scan("roi", **change)
        with pytest.raises(OutputExistsError, match="other data or with other parameters"):
            _run(acq_path, out, client, iterations=3)
        acq.update_scan("roi", **{k: v for k, v in saved.items() if v is not None})


@pytest.mark.parametrize("iterations", [2, "auto"])
def test_a_running_reconstruction_keeps_the_intensity_transform_it_began_with(
    tiny_copy, tmp_path, client, monkeypatch, iterations
):
    """An ``align`` storing another intensity transform while a reconstruction runs (another
    batch cell, another shell) changed it under the running blocks: each read the transform
    as stored at its own start, so one volume mixed two. The run keeps the transform it
    began with, as it keeps its shifts (the problem's)."""
    ref = _run(tiny_copy, tmp_path / "ref.zarr", client, iterations=iterations).level(0).compute()
    run_tasks = runner.run_tasks

    def aligned_meanwhile(client, fn, *args, **kwargs):  # once the run has begun
        sxtdist.open_acquisition(tiny_copy).update_scan(
            "full", intensity_transform={"model": "affine", "a": 0.5, "b": 0.1}
        )
        return run_tasks(client, fn, *args, **kwargs)

    monkeypatch.setattr(runner, "run_tasks", aligned_meanwhile)
    vol = _run(tiny_copy, tmp_path / "v.zarr", client, iterations=iterations)
    np.testing.assert_array_equal(vol.level(0).compute(), ref)


def test_a_resumed_split_halves_run_warns_of_a_stale_alignment_once(
    tiny_acq, tmp_path, client, monkeypatch
):
    """A stale interior alignment is told once per run: resuming a split-halves run, the
    checks of the halves already written and the run of the unfinished one build their
    problems again, and used to repeat the warning for each (six times in all)."""
    out = tmp_path / "stale.zarr"
    vol = _run(tiny_acq, out, client, iterations=2, split_halves=True)
    _interrupt(vol, vol.blocks_done)
    _interrupt(open_volume(half_paths(str(out))[1]), [0])  # half 2 left to finish
    monkeypatch.setattr(runner, "stale_anchoring", lambda acq: "STALE-ALIGNMENT")
    with pytest.warns(sxtdist.errors.SxtdistWarning) as record:
        again = _run(tiny_acq, out, client, iterations=2, split_halves=True)
    assert again.status == "complete"
    stale = [w for w in record if "STALE-ALIGNMENT" in str(w.message)]
    assert len(stale) == 1, [str(w.message) for w in stale]
