"""Faults: a worker killed mid-block, an interrupted run, two writers of one output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sxtdist
from sxtdist.batch import read_summary
from sxtdist.errors import OutputLockedError
from sxtdist.lock import lock_path, write_lock
from sxtdist.runner import reconstruct
from sxtdist.volume import open_volume

REPO = Path(__file__).resolve().parent.parent
# Small blocks and many iterations: a run lasts a few seconds, long enough to hit mid-way.
OPTS = dict(block_size=4, iterations=40)
CLI_OPTS = ["--block-size", "4", "--iterations", "40"]


@pytest.fixture(scope="module")
def acq(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "cell.zarr"
    sxtdist.simulate(path, preset="tiny", seed=21)
    return str(path)


@pytest.fixture(scope="module")
def reference(acq, tmp_path_factory):
    """The uninterrupted result every faulty run must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    vol = reconstruct(acq, out, workers=1, progress=False, **OPTS)
    return vol.level(0).compute()


def _meta(out) -> dict:
    with open(os.path.join(out, "zarr.json")) as f:
        return json.load(f)["attributes"]["sxtdist"]


def _wait_for_blocks(out, n: int = 1, proc=None, timeout: float = 120.0) -> list[int]:
    """Wait until ``out`` records at least ``n`` finished blocks."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before any block was done")
        try:
            done = _meta(out).get("blocks_done", [])
            if len(done) >= n:
                return done
        except (OSError, ValueError, KeyError):
            pass  # not created yet, or being rewritten
        time.sleep(0.02)
    raise AssertionError(f"no block recorded in {out} within {timeout} s")


def _sxtdist(*args: str, own_group: bool = False) -> subprocess.Popen:
    """``sxtdist ARGS`` as a process (``own_group``: with its workers in a process group of
    their own, for :func:`os.killpg`)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "sxtdist", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,
    )


def test_killed_worker_task_reruns_and_volume_is_identical(acq, reference, tmp_path):
    from distributed import Client, LocalCluster

    out = tmp_path / "v.zarr"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)  # worker address -> worker process id
        box: dict = {}

        def run():
            try:
                box["vol"] = reconstruct(acq, out, client=client, progress=False, **OPTS)
            except BaseException as exc:  # reported below
                box["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        _wait_for_blocks(out, 1)
        killed = None
        t0 = time.monotonic()
        while killed is None and time.monotonic() - t0 < 60:
            busy = {w: ks for w, ks in client.processing().items() if ks}
            for addr, keys in busy.items():
                if addr in pids and any("_solve_block" in str(k) for k in keys):
                    os.kill(pids[addr], signal.SIGKILL)  # mid-block
                    killed = addr
                    break
            time.sleep(0.005)
        assert killed is not None, "no worker was busy with a block"
        t.join(timeout=180)
        assert not t.is_alive() and "error" not in box, box.get("error")
        # the killed worker is gone (its nanny started a new one at another address)
        assert killed not in client.scheduler_info()["workers"]
    vol = open_volume(out)
    assert vol.status == "complete"
    assert sorted(vol.blocks_done) == list(range(vol.meta["plan"]["n_blocks"]))
    np.testing.assert_array_equal(vol.level(0).compute(), reference)


#: Run by the interrupted process in place of ``python -m sxtdist ARGS``: the client records
#: the first finished block of each volume, then holds any other (at most 120 s), so that the
#: signal always lands in a run with one block recorded and the others not. Without it, a
#: loaded machine let the test see one block and signal only after the last one (eight
#: blocks record in ~1.5 s): the run then finished (exit 0) or recorded every block. Held in
#: the main thread (reconstruct), the signal interrupts the wait; held in a batch's cell
#: thread, the batch's stopping (``cancel_tasks``) ends it as a cancelled task would.
_HELD_AFTER_ONE_BLOCK = """
import sys, threading
from concurrent.futures import CancelledError
import sxtdist.batch
from sxtdist.volume import Volume
from sxtdist.cli import main

record, recorded, stopped = Volume.mark_blocks_done, set(), threading.Event()
cancel_tasks = sxtdist.batch.cancel_tasks

def held(self, ids):
    if self.path in recorded and stopped.wait(120):
        raise CancelledError("the batch stopped")
    record(self, ids)
    recorded.add(self.path)

def stopping():
    stopped.set()
    return cancel_tasks()

Volume.mark_blocks_done = held
sxtdist.batch.cancel_tasks = stopping
sys.exit(main(sys.argv[1:]))
"""


def _held_after_one_block(*args: str) -> subprocess.Popen:
    """``sxtdist ARGS`` as a process that holds each volume at one block recorded
    (:data:`_HELD_AFTER_ONE_BLOCK`)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", _HELD_AFTER_ONE_BLOCK, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigint_reconstruct_then_rerun_is_identical(acq, reference, tmp_path):
    """Ctrl-C in a run that recorded one block: exit 130 with one line, the volume marked
    running with that block, no lock left; the same command resumes the other blocks and
    writes what an uninterrupted run writes."""
    out = tmp_path / "v.zarr"
    args = ["reconstruct", acq, out, "--workers", "1", *CLI_OPTS]
    p = _held_after_one_block(*args)
    _wait_for_blocks(out, 1, proc=p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "sxtdist: interrupted" in err and "Traceback" not in err
    meta = _meta(out)
    n_blocks = meta["plan"]["n_blocks"]
    assert meta["status"] == "running"  # visibly unfinished
    assert len(meta["blocks_done"]) == 1 < n_blocks
    assert not os.path.exists(lock_path(out))
    p = _sxtdist(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "resuming: 1 of" in err
    vol = open_volume(out)
    assert vol.status == "complete"
    assert vol.meta["stopping"]["blocks_run"] == n_blocks - 1
    np.testing.assert_array_equal(vol.level(0).compute(), reference)


def test_sigterm_batch_then_rerun_is_identical(acq, reference, tmp_path):
    manifest = tmp_path / "cells.yaml"
    manifest.write_text(f"- name: a\n  acquisition: {acq}\n- name: b\n  acquisition: {acq}\n")
    out = tmp_path / "out"
    args = ("batch", manifest, "--out", out, "--workers", "2", "--no-metrics", "--align", "never")
    args = (*args, *CLI_OPTS)
    p = _held_after_one_block(*args)  # the signal lands with a's second block unrecorded
    _wait_for_blocks(out / "a.zarr", 1, proc=p)
    p.send_signal(signal.SIGTERM)  # what a batch system sends at the time limit
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    rows = {r["cell"]: r for r in read_summary(out / "batch-summary.csv")}
    for name in ("a", "b"):
        status = rows[name]["status"]
        assert status in ("interrupted", "not run", "done"), rows[name]
        if os.path.isdir(out / f"{name}.zarr"):
            # every output is either complete or marked unfinished
            assert _meta(out / f"{name}.zarr")["status"] in ("running", "complete")
            assert (status == "done") == (_meta(out / f"{name}.zarr")["status"] == "complete")
    assert rows["a"]["status"] == "interrupted"
    assert not os.path.exists(lock_path(out))
    p = _sxtdist(*args)
    stdout, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    rows = {r["cell"]: r for r in read_summary(out / "batch-summary.csv")}
    assert rows["a"]["status"] == "done" and rows["a"]["message"] == "resumed"
    for name in ("a", "b"):
        np.testing.assert_array_equal(
            open_volume(out / f"{name}.zarr").level(0).compute(), reference
        )


def test_a_batch_killed_outright_leaves_a_summary_of_what_it_did(acq, reference, tmp_path):
    """kill -9 (or a node lost) gives a batch no last word: its summary was written only at
    the end, so nothing said which cells had finished. It is written as the cells start and
    finish: killed while b runs, it says a done, b running; the re-run says so and resumes."""
    manifest = tmp_path / "cells.yaml"
    manifest.write_text(f"- name: a\n  acquisition: {acq}\n- name: b\n  acquisition: {acq}\n")
    out, summary = tmp_path / "out", tmp_path / "out" / "batch-summary.csv"
    args = ("batch", manifest, "--out", out, "--workers", "1", "--concurrent", "1")
    args = (*args, "--no-metrics", "--align", "never", *CLI_OPTS)
    p = _sxtdist(*args, own_group=True)
    t0 = time.monotonic()
    statuses: dict[str, str] = {}
    while statuses != {"a": "done", "b": "running"}:
        assert p.poll() is None, f"the batch ended first (summary {statuses}): {p.stderr.read()}"
        assert time.monotonic() - t0 < 300
        time.sleep(0.05)
        try:
            statuses = {r["cell"]: r["status"] for r in read_summary(summary)}
        except OSError:
            pass
    # killed at once, whatever b does: even as it creates b.zarr, the re-run resumes or
    # starts b (test_killed_as_it_creates_its_volume_the_rerun_starts_it)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate(timeout=60)
    rows = {r["cell"]: r for r in read_summary(summary)}
    assert rows["a"]["status"] == "done" and _meta(out / "a.zarr")["status"] == "complete"
    assert rows["b"]["status"] == "running" and "run the batch again" in rows["b"]["message"]
    p = _sxtdist(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert f"the batch that last wrote {summary} stopped while cell b was running" in err
    rows = {r["cell"]: r["status"] for r in read_summary(summary)}
    assert rows == {"a": "skipped", "b": "done"}
    np.testing.assert_array_equal(open_volume(out / "b.zarr").level(0).compute(), reference)


def test_killed_as_it_creates_its_volume_the_rerun_starts_it(acq, reference, tmp_path):
    """A run killed (kill -9) between Zarr's first zarr.json and the attributes that say
    sxtdist wrote it left v.zarr a folder no run could tell from a user's: the re-run
    refused it ("not written by sxtdist"), to be removed by hand. Built beside and renamed
    in, nothing is at v.zarr; the re-run removes the half-built folder and starts."""
    from sxtdist.outputs import new_path

    out = tmp_path / "v.zarr"
    args = ["reconstruct", acq, out, "--workers", "1", *CLI_OPTS]
    dies = (  # the process killed as it writes the volume's levels, its group begun
        "import os, signal, sys\n"
        "from sxtdist.io import ngff\n"
        "ngff.create_multiscale = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from sxtdist.cli import main\n"
        f"sys.exit(main({[str(a) for a in args]!r}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(
        [sys.executable, "-c", dies], env=env, stderr=subprocess.PIPE, start_new_session=True
    )
    _, err = p.communicate(timeout=300)
    try:
        os.killpg(p.pid, signal.SIGKILL)  # its workers
    except ProcessLookupError:
        pass
    assert p.returncode == -signal.SIGKILL, err
    assert not os.path.exists(out) and os.path.isdir(new_path(out))  # killed mid-creation
    p = _sxtdist(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert not os.path.exists(new_path(out))
    np.testing.assert_array_equal(open_volume(out).level(0).compute(), reference)


def test_a_metadata_write_killed_leaves_no_stranger_in_the_volume(tmp_path):
    """Zarr writes zarr.json beside (``zarr.<hex>.partial``) and renames it over: a run
    killed as it recorded a block left that file in the volume, which --overwrite then
    took for a user's file and refused to replace. A user's own file stays a stranger."""
    import uuid

    from sxtdist.errors import OutputExistsError
    from sxtdist.geometry import VolumeGrid
    from sxtdist.outputs import check_output
    from sxtdist.volume import create_volume

    out = tmp_path / "v.zarr"
    create_volume(out, VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    (out / f"zarr.{uuid.uuid4().hex}.partial").write_bytes(b'{"zarr_form')
    assert check_output(out, "volume", overwrite=True) == "volume"
    (out / "zarr.notes.partial").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"did not write \(zarr\.notes\.partial\)"):
        check_output(out, "volume", overwrite=True)


def test_an_activity_lock_that_cannot_be_taken_names_the_path_given(tmp_path, monkeypatch):
    """align's lock is a marker beside the acquisition (cell.zarr.aligned): a read-only
    place named that file, which the user never gave, instead of the acquisition."""
    import errno

    from sxtdist import lock

    def read_only(path, wait_s=0.0):
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))

    monkeypatch.setattr(lock, "write_lock", read_only)
    with pytest.raises(OSError) as info:
        with lock.activity_lock(tmp_path / "cell.zarr", "aligned"):
            pass
    assert info.value.filename == os.fspath(tmp_path / "cell.zarr")
    assert info.value.errno == errno.EROFS


def test_a_file_system_without_locks_names_the_path_given(tmp_path, monkeypatch):
    """On a file system without flock (some NFS mounts), align's refusal named its lock
    file (.cell.zarr.aligned.sxtdist-lock) and told the user to "write the output"
    elsewhere, of an acquisition it only reads. Now it names the acquisition and says
    what cannot be done; a writer's names the output (checked failing with the message as
    it was)."""
    import errno

    from sxtdist import lock
    from sxtdist.errors import SxtdistError

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    acq, out = tmp_path / "cell.zarr", tmp_path / "v.zarr"
    with pytest.raises(SxtdistError) as info:
        with lock.activity_lock(acq, "aligned"):
            pass
    said = str(info.value)
    assert said.startswith(f"{acq}: cannot be aligned: its folder's file system does not "), said
    assert ".cell.zarr.aligned.sxtdist-lock" in said and "write the output" not in said
    with pytest.raises(SxtdistError, match=f"^{out}: cannot be written: its folder's file sys"):
        with write_lock(out):
            pass
    assert not acq.exists() and not out.exists()


def test_second_writer_of_the_same_output_is_refused(acq, reference, tmp_path):
    out = tmp_path / "v.zarr"
    first = _sxtdist("reconstruct", acq, out, "--workers", "1", *CLI_OPTS)
    t0 = time.monotonic()
    while not os.path.exists(lock_path(out)):
        assert first.poll() is None and time.monotonic() - t0 < 60, "first run never took the lock"
        time.sleep(0.01)
    second = _sxtdist("reconstruct", acq, out, "--workers", "1", *CLI_OPTS)
    _, err2 = second.communicate(timeout=120)
    assert second.returncode == 2
    assert err2.strip() == (
        f"sxtdist: error: {out}: is being written by pid {first.pid} on {socket.gethostname()} "
        f"(lock {lock_path(out)}); wait for it to finish"
    )
    _, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    np.testing.assert_array_equal(open_volume(out).level(0).compute(), reference)


def test_interrupted_overwrite_leaves_the_old_output(acq, reference, tmp_path):
    from sxtdist.outputs import partial_path

    out = tmp_path / "v.zarr"
    reconstruct(acq, out, workers=1, progress=False, block_size=4, iterations=2)
    old = _tree(out)
    args = ("reconstruct", acq, out, "--workers", "1", "--overwrite", *CLI_OPTS)
    p = _sxtdist(*args)
    partial = Path(partial_path(out))
    _wait_for_blocks(partial, 1, proc=p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert _tree(out) == old  # the old volume, byte for byte
    assert _meta(partial)["status"] == "running"  # the replacement, resumable
    p = _sxtdist(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "resuming:" in err
    assert not partial.exists()
    np.testing.assert_array_equal(open_volume(out).level(0).compute(), reference)


def _tree(root) -> dict:
    out = {}
    for top, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(top, f), "rb") as fh:
                out[os.path.relpath(os.path.join(top, f), root)] = fh.read()
    return out


def test_disk_full_mid_run_then_resume_on_a_larger_disk(acq, reference, tmp_path):
    from test_bad_inputs import mount_tmpfs

    disk = tmp_path / "disk"
    # room for the volume's metadata and 3 of its 8 blocks' shard files (3 inodes each)
    mount_tmpfs(disk, "size=64m,nr_inodes=17")
    try:
        out = disk / "v.zarr"
        p = _sxtdist("reconstruct", acq, out, "--workers", "1", *CLI_OPTS)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 1, err
        assert err.strip().splitlines()[-1].startswith("sxtdist: error: ")
        assert "No space left on device" in err and "Traceback" not in err
        meta = _meta(out)
        assert meta["status"] == "running"
        assert 1 <= len(meta["blocks_done"]) < meta["plan"]["n_blocks"]
        assert not os.path.exists(lock_path(out))
        subprocess.run(["mount", "-o", "remount,nr_inodes=10000", disk], check=True)
        p = _sxtdist("reconstruct", acq, out, "--workers", "1", *CLI_OPTS)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "resuming:" in err
        np.testing.assert_array_equal(open_volume(out).level(0).compute(), reference)
    finally:
        subprocess.run(["umount", "-l", disk], check=False)


def test_write_failure_mid_run_keeps_the_blocks_and_resumes(acq, reference, tmp_path, monkeypatch):
    """The same as a full disk, without root: from the third block on, writes fail (ENOSPC;
    every time, as a full disk does: a failed block task is retried)."""
    import errno

    from distributed import Client, LocalCluster

    from sxtdist.volume import Volume

    write = Volume.write_slices
    calls = []

    def failing(self, z0, data):
        calls.append(z0)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device", self.path)
        return write(self, z0, data)

    out = tmp_path / "v.zarr"
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        monkeypatch.setattr(Volume, "write_slices", failing)
        with pytest.raises(OSError, match="No space left"):
            reconstruct(acq, out, client=client, progress=False, **OPTS)
        assert _meta(out)["status"] == "running" and len(_meta(out)["blocks_done"]) == 2
        monkeypatch.setattr(Volume, "write_slices", write)
        vol = reconstruct(acq, out, client=client, progress=False, **OPTS)
    assert vol.meta["stopping"]["blocks_run"] == vol.meta["plan"]["n_blocks"] - 2
    np.testing.assert_array_equal(vol.level(0).compute(), reference)


def test_stale_lock_taken_over_by_exactly_one_of_20_processes_each_round(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = REPO / "tests" / "_lock_race.py"
    r = subprocess.run(
        [sys.executable, script, tmp_path, "20", "50"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts == [1] * 50, counts
    assert not os.path.exists(lock_path(tmp_path / "v.zarr"))


def test_asking_who_holds_a_lock_never_refuses_a_writer(tmp_path, monkeypatch, lock_held_elsewhere):
    """held_by (info, an acquisition being replaced, a batch's check) took the lock for an
    instant: a writer starting then was refused ("is being written by another run").
    A lock of this host's run is told by its pid, the lock untouched; a writer waits out
    the instant another host's probe holds it (a lock naming no live run of this host)."""
    from sxtdist import lock

    out = tmp_path / "v.zarr"
    with lock_held_elsewhere(out) as pid:
        with monkeypatch.context() as m:
            m.setattr(lock, "_take", lambda path: pytest.fail("the probe took the lock"))
            assert lock.held_by(out) == f"pid {pid} on {socket.gethostname()}"
        with pytest.raises(OutputLockedError, match=f"is being written by pid {pid}"):
            with write_lock(out):
                pass
    assert lock.held_by(out) is None
    take, probed = lock._take, []

    def a_probe_holds_it_first(path):  # another host's held_by, at the writer's instant
        if not probed:
            probed.append(path)
            return None
        return take(path)

    monkeypatch.setattr(lock, "_take", a_probe_holds_it_first)
    with write_lock(out):
        assert probed


def test_create_volume_from_python_holds_the_lock(tmp_path, lock_held_elsewhere):
    """create_volume(overwrite=True) called from Python checked and removed the volume
    without its lock: a run writing it then had it deleted under it. Now it takes the lock
    as a command does, refused while another run holds it, the volume whole (checked
    failing with create_volume as it was); the writers that hold the lock still call it."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    grid = VolumeGrid((8, 16, 16), 20.0)
    out = tmp_path / "v.zarr"
    create_volume(out, grid, shard_z=4, chunk_z=4, attributes={"mine": 1})
    with lock_held_elsewhere(out) as pid:
        with pytest.raises(OutputLockedError, match=f"v\\.zarr: is being written by pid {pid}"):
            create_volume(out, grid, shard_z=4, chunk_z=4, overwrite=True)
        assert open_volume(out, mode="r").meta["mine"] == 1
    assert create_volume(out, grid, shard_z=4, chunk_z=4, overwrite=True).meta.get("mine") is None
    assert sorted(os.listdir(tmp_path)) == ["v.zarr"]  # no lock, partial or new left beside


def test_a_lock_naming_a_pid_now_another_process_s_is_stale(tmp_path, run_cli):
    """A run killed outright leaves its lock file naming its pid; once that pid was another
    process's, held_by named it as the writer: a batch refused the output ("is being
    written by pid N") and info said "running (pid N ...)". The lock records the pid's start
    time and the host's boot: such a lock is stale, held by nobody (checked failing with
    the start time not compared)."""
    from sxtdist import lock
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    with write_lock(tmp_path / "x.zarr") as held:  # what a writer records
        me = json.loads(open(held).read())
    if lock._started(os.getpid()) is None:
        pytest.skip("no /proc: a process's start time cannot be read")
    assert me["pid"] == os.getpid() and me["started"] == lock._started(os.getpid())
    out = tmp_path / "v.zarr"
    create_volume(out, VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)  # running
    idle = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    other = subprocess.Popen(idle, stdin=subprocess.PIPE)
    try:  # the killed run's pid, now this live process's (it started later)
        started, host = lock._started(other.pid), socket.gethostname()
        for killed in (  # started before it; or before a reboot
            dict(me, pid=other.pid, started=started - 1),
            dict(me, pid=other.pid, started=started, boot="another boot"),
        ):
            Path(lock_path(out)).write_text(json.dumps(killed))
            assert lock.stale_owner(out) == f"pid {other.pid} on {host}"
            code, said, _ = run_cli("info", out)
            assert code == 0 and f"its lock names pid {other.pid} on {host}, which has " in said
            assert "running (" not in said and not os.path.exists(lock_path(out))
            Path(lock_path(out)).write_text(json.dumps(killed))
            assert lock.held_by(out) is None
        Path(lock_path(out)).write_text(json.dumps(dict(me, pid=other.pid, started=started)))
        assert lock.held_by(out) == f"pid {other.pid} on {host}"  # alive: it is the owner
    finally:
        other.communicate(b"", timeout=60)


def test_every_spelling_of_one_output_has_the_same_lock(tmp_path):
    """Through a symbolic link to its folder, or the output a link itself: one lock."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "alias.zarr").symlink_to(real / "v.zarr")
    with write_lock(real / "v.zarr"):
        for spelling in (tmp_path / "link" / "v.zarr", tmp_path / "alias.zarr"):
            with pytest.raises(OutputLockedError, match="is being written by pid"):
                with write_lock(spelling):
                    pass
    with write_lock(tmp_path / "link" / "v.zarr"):  # free again, whichever way it is named
        pass
    assert os.listdir(real) == []


def test_a_file_system_without_locks_is_an_environment_failure_that_leaves_nothing(
    tmp_path, monkeypatch, run_cli, tiny_acq
):
    """Without flock the refusal exited 2 (bad input) and left the empty lock file it had
    created beside the output. It is the environment's failure: exit 1, one line naming the
    output and the reason, no traceback, and nothing left that the run created; a lock file
    that was there before (a killed run's) stays as it was."""
    import errno

    from sxtdist import lock
    from sxtdist.lock import NoLocksError

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    out = tmp_path / "v.zarr"
    with pytest.raises(NoLocksError) as info:
        with write_lock(out):
            pass
    assert info.value.exit_code == 1
    assert sorted(os.listdir(tmp_path)) == []
    killed = tmp_path / ".old.zarr.sxtdist-lock"
    killed.write_text('{"host": "h", "pid": 7}')
    with pytest.raises(NoLocksError):
        with write_lock(tmp_path / "old.zarr"):
            pass
    assert killed.read_text() == '{"host": "h", "pid": 7}'
    killed.unlink()
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--iterations", "2", "--workers", "1")
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(out) in err and "does not support locks" in err
    assert sorted(os.listdir(tmp_path)) == []


def _stopped_after_one_block(acq, out, levels: bool = False) -> None:
    """``out``: the reconstruction of ``acq`` as a run stopped after its first block leaves
    it (status running, one block done, level 0 only: its coarser levels not built yet;
    ``levels``: built but not listed, as a run stopped in its last step leaves them)."""
    reconstruct(acq, out, workers=1, progress=False, **OPTS)
    path = os.path.join(out, "zarr.json")
    with open(path) as f:
        doc = json.load(f)
    doc["attributes"]["sxtdist"].update(status="running", blocks_done=[0])
    for m in doc["attributes"]["ome"]["multiscales"]:
        for level in m["datasets"][1:] if not levels else ():
            shutil.rmtree(os.path.join(out, level["path"]))
        m["datasets"] = m["datasets"][:1]
    with open(path, "w") as f:
        json.dump(doc, f)


def test_a_resume_keeps_a_users_files_in_level_0_and_finishes(acq, reference, tmp_path, run_cli):
    """A resume writes only level 0's chunks (c/Z/Y/X) and rebuilds the coarser levels;
    it was refused for a user's file anywhere in level 0 (0/notes.txt, 0/c/notes.txt), which
    it never touches. Now it goes ahead: the volume is the uninterrupted one and the user's
    files are there byte for byte. What the resume writes through is still refused: a link
    among the chunks (0/c/1 to a user's folder), and a user's file in a coarser level,
    which it deletes to build again (seen failing on main's outputs.py: exit 2, 'holding
    files it did not write (0/c/notes.txt, 0/mine, 0/notes.txt)')."""
    out = tmp_path / "v.zarr"
    _stopped_after_one_block(acq, out)
    mine = {
        "0/notes.txt": b"my notes\n",
        "0/c/notes.txt": b"more notes\n",
        "0/mine/data.bin": bytes(range(256)),
    }
    for name, data in mine.items():
        os.makedirs(os.path.dirname(out / name), exist_ok=True)
        (out / name).write_bytes(data)
    code, _, err = run_cli("reconstruct", acq, out, *CLI_OPTS, "--workers", "1")
    assert code == 0, err
    vol = open_volume(out)
    assert vol.status == "complete" and vol.damage() == [] and vol.meta["levels"] > 1
    np.testing.assert_array_equal(vol.level(0).compute(), reference)
    assert {n: (out / n).read_bytes() for n in mine} == mine
    code, said, _ = run_cli("verify", out)  # whole; the user's files named, not checked
    assert code == 0 and "0/notes.txt" in said, said
    # what a resume writes through or deletes: still refused, untouched
    for name in ("0/c/1", "1/notes.txt"):
        other = tmp_path / name.replace("/", "_")
        _stopped_after_one_block(acq, other, levels=True)
        theirs = tmp_path / f"theirs{len(name)}"
        theirs.mkdir()
        os.makedirs(os.path.dirname(other / name), exist_ok=True)
        if name == "0/c/1":
            shutil.rmtree(other / name, ignore_errors=True)
            os.symlink(theirs, other / name)
        else:
            (other / name).write_bytes(b"mine")
        code, _, err = run_cli("reconstruct", acq, other, *CLI_OPTS, "--workers", "1")
        assert code == 2 and f"did not write ({name})" in err, err
        assert os.listdir(theirs) == []


#: A write of the file ``out`` (``how``: outputs.writing, or replacing_file as the batch
#: summary and the report use it) killed outright (SIGKILL) at ``step``: as soon as the
#: file being written exists (``created``), once it holds bytes without sxtdist's mark yet
#: (``unmarked``: an MRC made to its size before its header is flushed), once it holds a
#: whole summary (``marked``), each before the rename over ``out``.
_KILLED_WRITE = """
import os, signal, sys
from sxtdist.outputs import replacing_file, writing
out, how, step = sys.argv[1:]
block = writing(out, "summary", overwrite=True, file=True) if how == "writing" else None
with block or replacing_file(out, "summary") as got:
    tmp = got.write_path if block else got
    with open(tmp, "r+b" if step == "created" else "wb") as f:
        if step != "created":
            f.write(bytes(4096) if step == "unmarked" else b"cell,status,seconds,psnr\\n")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["writing", "replacing_file"])
@pytest.mark.parametrize("step", ["created", "unmarked", "marked"])
def test_a_file_write_killed_at_any_step_never_blocks_the_next(tmp_path, how, step):
    """A file output was written at its known hidden name (.s.csv.sxtdist-partial): a
    SIGKILL after it was made and before sxtdist's mark was in it (an MRC's label, a CSV's
    header) left a file sxtdist could not tell from a user's, and every later write of the
    output was refused until the user removed it by hand. Now it is written under a name
    of its own (.s.csv.sxtdist-tmp-HEX, made empty by sxtdist first): killed at any step,
    the output is as it was, nothing is at the known name, and the next write goes ahead;
    it removes (outputs.writing, under the output's lock) a leftover it can tell for its
    own, keeps one it cannot, and info names what is left (seen failing on main's
    outputs.py at step 'unmarked': the next write refused, 'a file sxtdist did not write')."""
    from sxtdist.batch import write_summary
    from sxtdist.leftovers import leftovers
    from sxtdist.outputs import partial_path, writing

    out = tmp_path / "s.csv"
    before = b"cell,status,seconds,psnr\na,done,1,30\n"
    out.write_bytes(before)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITE, str(out), how, step], env=env, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert out.read_bytes() == before and not os.path.lexists(partial_path(out))
    left = sorted(set(os.listdir(tmp_path)) - {"s.csv", ".s.csv.sxtdist-lock"})
    assert len(left) == 1 and left[0].startswith(".s.csv.sxtdist-tmp-"), left
    said = leftovers(out)
    assert len(said) == 1 and left[0] in said[0] and "stopped" in said[0], said
    if step == "unmarked":
        assert "left alone" in said[0] and "mark" in said[0], said
    if how == "writing":  # the next write, under the lock: clears what it can tell
        with writing(out, "summary", overwrite=True, file=True) as target:
            with open(target.write_path, "w") as f:
                f.write("cell,status,seconds,psnr\n")
    else:
        write_summary([], out)
    assert out.read_text().startswith("cell,status,seconds,")
    kept = set(os.listdir(tmp_path)) - {"s.csv", ".s.csv.sxtdist-lock"}
    cleared = how == "writing" and step != "unmarked"
    assert kept == (set() if cleared else set(left)), kept
    if step == "unmarked":
        assert (tmp_path / left[0]).read_bytes() == bytes(4096)  # never removed unrecognised


def test_an_export_killed_before_its_header_leaves_no_obstacle(tmp_path, run_cli):
    """The case as a user met it: ``export --overwrite`` to MRC killed outright as mrcfile
    flushed its header (the file made to its size, all zeros, no label yet). The next
    ``export --overwrite`` was refused naming .e.mrc.sxtdist-partial ("a file sxtdist did
    not write") until the user removed it by hand. Now it goes ahead (exit 0), the old
    export whole until then, and info names the zeros left under their own name as not
    told for sxtdist's, left alone (seen failing on main's outputs.py: exit 2)."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.io.export import export_mark
    from sxtdist.volume import create_volume

    vol = create_volume(tmp_path / "v.zarr", VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    vol.write_slices(0, np.ones((8, 16, 16), np.float32))
    vol.finalize()
    out = tmp_path / "e.mrc"
    code, _, err = run_cli("export", vol.path, out)
    assert code == 0, err
    before = out.read_bytes()
    script = (
        "import os, signal, sys\n"
        "import mrcfile.mrcmemmap as mm\n"
        "mm.MrcMemmap.flush = lambda self: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from sxtdist.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-c", script, "export", vol.path, str(out), "--overwrite"]
    done = subprocess.run(args, env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert out.read_bytes() == before
    code, _, err = run_cli("export", vol.path, out, "--overwrite")
    assert code == 0, err
    assert export_mark(out) is not None
    code, said, _ = run_cli("info", out)
    left = [x for x in said.splitlines() if ".e.mrc.sxtdist-tmp-" in x]
    assert len(left) == 1 and "left alone" in left[0], said


def test_a_lock_file_replaced_while_held_is_left_at_release(tmp_path):
    """The lock file is removed as the lock is released, by its name: a file put at that name
    while the lock was held (a user's, renamed there) was removed with it. Now only the file
    the lock holds is removed (seen failing on main's lock.py: the user's file gone)."""
    out = tmp_path / "v.zarr"
    with write_lock(out) as lock:
        mine = tmp_path / "mine.txt"
        mine.write_text("my notes\n")
        os.replace(mine, lock)
    assert Path(lock).read_text() == "my notes\n"


def test_a_log_file_is_appended_to_only_when_it_is_a_log_of_sxtdist_s(tmp_path, run_cli):
    """--log-file appended to any file: named by a slip, a volume's zarr.json had a log line
    added and the volume no longer opened ('is not a Zarr group'); an export's MRC or a
    user's CSV got text at its end. Now an existing log file is appended to only when it is
    empty or a log sxtdist wrote (its lines begin with a time, a level and 'sxtdist');
    anything else is refused before the command runs (exit 2, naming it), as it was (seen
    failing on main: exit 0, the zarr.json changed)."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    vol = create_volume(tmp_path / "v.zarr", VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    vol.write_slices(0, np.ones((8, 16, 16), np.float32))
    vol.finalize()
    log = tmp_path / "run.log"
    for n in (1, 2):  # a new log, then the same one again: appended
        code, _, err = run_cli("export", vol.path, tmp_path / f"e{n}.mrc", "--log-file", log)
        assert code == 0, err
    assert log.read_text().count("exporting level 0") == 2
    (tmp_path / "empty.log").write_bytes(b"")
    code, _, err = run_cli(
        "export", vol.path, tmp_path / "e3.mrc", "--log-file", tmp_path / "empty.log"
    )
    assert code == 0 and "exporting" in (tmp_path / "empty.log").read_text(), err
    (tmp_path / "mine.csv").write_text("a,b\n1,2\n")
    for theirs in (tmp_path / "v.zarr" / "zarr.json", tmp_path / "e1.mrc", tmp_path / "mine.csv"):
        before = theirs.read_bytes()
        code, _, err = run_cli("export", vol.path, tmp_path / "e4.mrc", "--log-file", theirs)
        assert code == 2 and f"{theirs}: is not a log file of sxtdist's" in err, err
        assert len(err.strip().splitlines()) == 1
        assert theirs.read_bytes() == before and not (tmp_path / "e4.mrc").exists()


def test_finalize_never_deletes_a_level_holding_a_users_files(tmp_path):
    """A volume's last step deletes each coarser level to build it again: a user's file put
    in a level while the run that resumes it wrote its blocks (after the resume's check)
    went with it. Volume.finalize now checks first and refuses (OutputExistsError, naming
    it), the volume left unfinished and the file whole (seen failing on main: deleted)."""
    from sxtdist.errors import OutputExistsError
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    vol = create_volume(tmp_path / "v.zarr", VolumeGrid((32, 32, 32), 20.0), shard_z=8, chunk_z=8)
    vol.write_slices(0, np.ones((32, 32, 32), np.float32))
    assert vol.finalize() > 1
    vol.update_meta(status="running")
    (tmp_path / "v.zarr" / "1" / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputExistsError, match=r"v\.zarr: .*\(1/notes\.txt\)"):
        vol.finalize()
    assert (tmp_path / "v.zarr" / "1" / "notes.txt").read_text() == "mine\n"
    assert open_volume(tmp_path / "v.zarr").status == "running"


def test_a_failure_inside_an_activity_lock_names_the_path_given(tmp_path):
    """align on a full disk: the store's OSError named no file, and activity_lock's inner
    write_lock named it after its marker, 'cell.zarr.aligned', a path that never exists
    (bugs.md R14-4). Now it names the acquisition given; one naming a file keeps it (seen
    failing on main's lock.py: the marker named)."""
    import errno

    from sxtdist import lock

    acq = tmp_path / "cell.zarr"
    for raised in (OSError(errno.EFBIG, "File too large"), RuntimeError("disk (os error 28)")):
        with pytest.raises(OSError) as info:
            with lock.activity_lock(acq, "aligned"):
                raise raised
        assert info.value.filename == str(acq) and info.value.errno in (errno.EFBIG, 28)
    with pytest.raises(OSError) as info:
        with lock.activity_lock(acq, "aligned"):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))
    assert info.value.filename == str(tmp_path / "x.json")


#: Root passes every permission check: a read-only folder is tested as an ordinary user
#: would meet it, as root without the capabilities that bypass them (bugs.md R14-6).
_NO_BYPASS = "-dac_override,-dac_read_search,-fowner"


def as_a_user(*args: str | os.PathLike[str], code: str = "") -> subprocess.CompletedProcess:
    """``sxtdist ARGS`` in a process that permissions hold (root: run through ``setpriv``
    without the capabilities that bypass them; skipped with the reason where it is missing),
    ``code`` run before it (Python, in the process)."""
    drop = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: no permission holds for root")
        drop = ["setpriv", f"--inh-caps={_NO_BYPASS}", f"--bounding-set={_NO_BYPASS}"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = f"import sys\n{code}\nfrom sxtdist.cli import main\nsys.exit(main(sys.argv[1:]))"
    argv = [*drop, sys.executable, "-c", run, *map(os.fspath, args)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def _chmod_tree(root, writable: bool) -> None:
    """``chmod -R a-w root`` (``u+w`` where ``writable``)."""
    for top, folders, files in os.walk(root):
        for p in [top, *(os.path.join(top, n) for n in folders + files)]:
            mode = os.lstat(p).st_mode & 0o7777
            os.chmod(p, (mode | 0o200) if writable else (mode & ~0o222))


def test_overwrite_of_a_read_only_output_is_refused_before_any_work(acq, tmp_path):
    """An old volume (and an acquisition) the user made read-only, ``chmod -R a-w``, in a
    writable folder: ``--overwrite`` did all the work, swapped the new one in, then failed to
    remove the old one: exit 1 naming 'zarr.json', the new output in place and the old one
    beside it, said by info to be "an unfinished replacement" (bugs.md R14-6). Now refused
    before any work (no cluster started, nothing written), exit 1, naming the output and
    what is read-only; the old output byte for byte (seen failing on main's outputs.py:
    exit 1 after the reconstruction, "zarr.json: Permission denied")."""
    vol = tmp_path / "v.zarr"
    reconstruct(acq, vol, workers=1, progress=False, block_size=4, iterations=2)
    cell = tmp_path / "a.zarr"
    shutil.copytree(acq, cell)
    runs = {
        vol: ("reconstruct", acq, vol, "--workers", "1", "--overwrite", *CLI_OPTS),
        cell: ("simulate", cell, "--preset", "tiny", "--seed", "2", "--overwrite"),
    }
    for out, args in runs.items():
        old = _tree(out)
        _chmod_tree(out, writable=False)
        try:
            done = as_a_user(*args)
        finally:
            _chmod_tree(out, writable=True)
        (line,) = done.stderr.splitlines()  # no cluster started: one line, the refusal
        assert done.returncode == 1, done.stderr
        assert line.startswith(f"sxtdist: error: {out}: cannot be replaced: the old "), line
        assert f"no write permission for this user in {out}, {out}/" in line, line
        assert f"chmod -R u+w {out}" in line and "zarr.json" not in line, line
        assert _tree(out) == old
        assert [n for n in os.listdir(tmp_path) if "sxtdist-" in n] == []


def test_an_old_output_not_removed_after_the_swap_is_a_warning_and_named_as_the_old(acq, tmp_path):
    """The old acquisition made read-only after ``--overwrite`` checked it (the race the
    check before the work cannot see: here that check is skipped): the new one is in place,
    so exit 0 with a warning naming the old copy, where it is and why; ``info`` calls it the
    old output (the previous version), not "an unfinished replacement ... as it was"; the
    next ``--overwrite`` is refused before any work naming it (not 'zarr.json'), and once
    it is writable again removes it (bugs.md R14-6; seen failing on main's outputs.py:
    exit 1, "zarr.json: Permission denied")."""
    from sxtdist.outputs import aside_path, partial_path, recognise

    cell = tmp_path / "a.zarr"
    shutil.copytree(acq, cell)
    aside = aside_path(partial_path(cell))
    first = os.stat(cell).st_ino
    _chmod_tree(cell, writable=False)
    args = ("simulate", cell, "--preset", "tiny", "--seed", "2", "--overwrite")
    race = "import sxtdist.outputs as o\no._check_removable = lambda *a: None"
    try:
        done = as_a_user(*args, code=race)
        assert done.returncode == 0, done.stderr
        assert "zarr.json" not in done.stderr, done.stderr
        assert (
            f"{cell}: replaced; the old acquisition, set aside at {aside}, could not be removed "
            f"(Permission denied): remove it yourself: chmod -R u+w {aside} && rm -r {aside}"
        ) in done.stderr, done.stderr
        assert os.stat(aside).st_ino == first and os.stat(cell).st_ino != first
        assert recognise(cell) == "acquisition"
        said = as_a_user("info", cell)
        assert said.returncode == 0, said.stderr
        assert f"leftover: {aside}: the old {cell} (the previous version;" in said.stdout
        assert "read-only" in said.stdout and "unfinished replacement" not in said.stdout
        new = _tree(cell)
        done = as_a_user(*args)
        (line,) = done.stderr.splitlines()
        assert done.returncode == 1 and line.startswith(
            f"sxtdist: error: {cell}: cannot be replaced: the old acquisition that an earlier "
            f"replacement set aside, {aside}, cannot be removed (no write permission"
        ), done.stderr
        assert _tree(cell) == new
    finally:
        _chmod_tree(tmp_path, writable=True)
    done = as_a_user(*args)
    assert done.returncode == 0, done.stderr
    assert not os.path.lexists(aside) and recognise(cell) == "acquisition"
