"""What a stopped write left beside an output is named by ``info`` and ``verify``, and
nothing of a user's is taken for one, or removed with one."""

from __future__ import annotations

import os
import shlex

from sxtdist.geometry import VolumeGrid
from sxtdist.outputs import aside_path, new_path, partial_path, writing
from sxtdist.volume import create_volume, open_volume

GRID = VolumeGrid((8, 16, 16), 20.0)


def _stopped_creation(out) -> str:
    """What a reconstruction killed as it created ``out`` leaves: a volume at new_path."""
    create_volume(f"{out}.tmp", GRID, shard_z=4, chunk_z=4)
    os.rename(f"{out}.tmp", new_path(out))
    return new_path(out)


def test_info_and_verify_name_a_stopped_creation(tmp_path, run_cli):
    """A reconstruction killed as it created v.zarr leaves only .v.zarr.sxtdist-new: info
    and verify said "no such file or directory" of v.zarr and "not a Zarr group" of its
    folder, and never named the hidden folder (checked failing without leftovers())."""
    out = tmp_path / "v.zarr"
    new = _stopped_creation(out)
    for args in (("info", out), ("info", tmp_path), ("verify", out), ("info", out, "--json")):
        code, stdout, err = run_cli(*args)
        said = err if "--json" in args else stdout
        assert code == 2 and err.strip().endswith(("no such file or directory", "Zarr group"))
        (line,) = [x for x in said.splitlines() if x and not x.startswith("sxtdist: error")]
        assert line.startswith(("leftover: ", "note: ")), line
        assert f"{new}: the start of {out}, left by a reconstruction stopped" in line, line
        assert f"the next reconstruction into {out} removes it" in line, line
        assert shlex.split(line.split("or remove it: ")[1]) == ["rm", "-r", new]
    code, stdout, _ = run_cli("info", new)  # the hidden folder itself: not "run it again"
    assert code == 0 and "status unfinished (left by a stopped run" in stdout, stdout
    assert "run the same command again" not in stdout and f"leftover: {new}" in stdout
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(new)]  # nothing removed


def test_info_names_a_stopped_replacement_and_an_only_copy_set_aside(
    tmp_path, run_cli, lock_held_elsewhere
):
    """Beside an existing volume: an unfinished --overwrite (.v.zarr.sxtdist-partial), said
    to be a run's work while a run holds v.zarr's lock, and the old volume set aside by a
    swap (its only copy while v.zarr is gone)."""
    out = tmp_path / "v.zarr"
    create_volume(out, GRID, shard_z=4, chunk_z=4)
    create_volume(partial_path(out), GRID, shard_z=4, chunk_z=4)
    with lock_held_elsewhere(out) as pid:  # an --overwrite running
        code, stdout, _ = run_cli("info", out)
    assert code == 0 and f"{partial_path(out)}: {out} is being written by pid {pid}" in stdout
    assert "unfinished replacement" not in stdout
    code, stdout, _ = run_cli("info", out)
    assert code == 0
    assert f"leftover: {partial_path(out)}: an unfinished replacement of {out}" in stdout
    code, stdout, _ = run_cli("verify", out)
    assert code == 0 and f"note: {partial_path(out)}: an unfinished replacement" in stdout
    os.rename(out, aside_path(partial_path(out)))  # killed between the swap's renames
    code, stdout, _ = run_cli("info", tmp_path)
    assert code == 2
    assert f"{aside_path(partial_path(out))}: the only copy of {out}" in stdout
    assert "do not remove it" in stdout


def test_a_write_clears_a_stopped_creation_and_nothing_else(tmp_path):
    """.v.zarr.sxtdist-new is sxtdist's by its name: a write of v.zarr clears it under the
    lock (as info says) even when v.zarr exists, and leaves a user's names beside alone
    (checked failing without the clearing in outputs.writing)."""
    out = tmp_path / "v.zarr"
    create_volume(out, GRID, shard_z=4, chunk_z=4)
    new = _stopped_creation(out)
    (tmp_path / ".v.zarr.notes").write_text("mine")
    (tmp_path / "v.zarr.sxtdist-new").mkdir()  # not hidden: a user's
    with writing(out, "volume", resume=True, beside=False):
        pass
    assert not os.path.lexists(new)
    assert sorted(os.listdir(tmp_path)) == [".v.zarr.notes", "v.zarr", "v.zarr.sxtdist-new"]
    assert open_volume(out).status == "running"


def test_a_killed_probe_leaves_an_empty_folder_usable_and_is_named(tmp_path, run_cli, tiny_acq):
    """A run killed between check_can_write's create and remove leaves .sxtdist-probe-HEX in
    the empty folder given as the output: the next reconstruction refused it as a folder
    "which sxtdist did not write" (checked failing with is_empty_folder as a plain
    listdir), and the rename over it failed as not empty (checked failing without
    _clear_probes). info names the probe; a user's file beside it stays."""
    out = tmp_path / "v.zarr"
    out.mkdir()
    probe = out / f".sxtdist-probe-{'0' * 32}"
    probe.touch()
    code, stdout, _ = run_cli("info", out)
    assert code == 2, stdout
    assert f"{probe}: an empty file sxtdist made to check that {out} can be written" in stdout
    assert "a reconstruction into it removes it" in stdout
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--workers", "1", "--iterations", "1")
    assert code == 0, err
    assert not probe.exists() and open_volume(out).status == "complete"
    (tmp_path / "notes.txt").write_text("mine")
    beside = tmp_path / f".sxtdist-probe-{'1' * 32}"
    beside.touch()
    code, stdout, _ = run_cli("info", tmp_path)
    assert f"{beside}: an empty file" in stdout and "removes it" not in stdout.split(str(beside))[1]
    assert (tmp_path / "notes.txt").read_text() == "mine" and beside.exists()


def test_a_folder_or_link_named_like_a_probe_is_the_users(tmp_path, run_cli, tiny_acq):
    """Only a file is a writability probe: a folder named .sxtdist-probe-HEX holding a
    user's notes, or a link of that name to a user's file, leaves the output folder one
    sxtdist did not write (refused, exit 2, both whole) and is named by no info line
    (checked failing with probes() matching names alone: the reconstruction into the
    folder went on)."""
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    for make in ("folder", "link"):
        out = tmp_path / f"{make}.zarr"
        out.mkdir()
        fake = out / f".sxtdist-probe-{'2' * 32}"
        if make == "folder":
            fake.mkdir()
            (fake / "notes.txt").write_text("mine")
        else:
            fake.symlink_to(mine)
        code, _, err = run_cli("reconstruct", tiny_acq, out, "--workers", "1", "--iterations", "1")
        assert code == 2 and "was not written by sxtdist" in err, err
        assert fake.is_symlink() if make == "link" else (fake / "notes.txt").read_text() == "mine"
        _, stdout, _ = run_cli("info", out)
        assert "an empty file sxtdist made" not in stdout, stdout
    assert mine.read_text() == "mine"


def test_info_leaves_a_users_files_of_sxtdists_hidden_names_alone(tmp_path, run_cli):
    """A user's file at .v.zarr.sxtdist-partial and one at .v.zarr.sxtdist-lock: info told
    to "rm -r" the first (sxtdist's by its name alone) and removed the second as a stale
    lock. Now the first is said to be left alone, with no command to remove it, and both
    stay as they were."""
    out = tmp_path / "v.zarr"
    create_volume(out, GRID, shard_z=4, chunk_z=4)
    (tmp_path / ".v.zarr.sxtdist-partial").write_text("my draft\n")
    (tmp_path / ".v.zarr.sxtdist-lock").write_text("my notes\n")
    code, stdout, _ = run_cli("info", out)
    assert code == 0, stdout
    said = [x for x in stdout.splitlines() if ".v.zarr.sxtdist-partial" in x]
    assert len(said) == 1 and "sxtdist did not write it (a file sxtdist did not write)" in said[0]
    assert "left alone" in said[0] and "rm " not in said[0], said
    assert (tmp_path / ".v.zarr.sxtdist-partial").read_text() == "my draft\n"
    assert (tmp_path / ".v.zarr.sxtdist-lock").read_text() == "my notes\n"


def _png(text: bytes) -> bytes:
    """A 1x1 grey PNG carrying the text chunk ``text`` (``key\\0value``)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    head = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"tEXt", text)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def test_files_of_every_kind_are_sxtdists_whatever_a_python_user_imported(tmp_path, tiny_acq):
    """A file kind was known only once the module that writes it was imported (report,
    preview, batch, export registered theirs), and so was what sxtdist puts inside a volume
    (a level being built) or an acquisition (a stopped import's scan): from plain Python,
    ``leftovers`` said a report's unfinished write, or a replacement's holding such a
    level or scan, "sxtdist did not write it", and ``recognise`` knew no file. Asked in a
    fresh process that imports only ``sxtdist.leftovers`` (checked failing with the kinds
    and members registered by their writers, as before)."""
    import shutil
    import subprocess
    import sys

    import mrcfile
    import numpy as np

    files = {
        "r.report.csv": b"metric,value,unit,note\npsnr,30,dB,\n",
        "r.report.curves.csv": b"curve,x,x_unit,y\n",
        "r.report.png": _png(b"Software\x00sxtdist report"),
        "p.png": _png(b'Description\x00{"kind": "sxtdist preview", "panels": []}'),
        "batch-summary.csv": b"cell,status,seconds,psnr\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with mrcfile.new(tmp_path / "e.mrc") as m:
        m.set_data(np.zeros((2, 3, 3), np.float32))
        m.header.label[0] = b"sxtdist 0.1.0 export 2026-12-06"
        m.header.nlabl = 1
    kinds = {**dict.fromkeys(files, ""), "e.mrc": "export"}
    kinds.update({"r.report.csv": "report", "r.report.curves.csv": "report"})
    kinds.update({"r.report.png": "report", "p.png": "preview", "batch-summary.csv": "summary"})
    partial = tmp_path / ".r.report.csv.sxtdist-partial"  # a report's write killed
    partial.write_bytes(files["r.report.csv"])
    vol = tmp_path / ".v.zarr.sxtdist-partial"  # a replacement stopped as it built level 7
    create_volume(vol, GRID, shard_z=4, chunk_z=4)
    shutil.copytree(vol / "0", vol / "7")
    acq = tmp_path / ".a.zarr.sxtdist-partial"  # one holding a stopped import's scan
    shutil.copytree(tiny_acq, acq)
    shutil.copytree(acq / "roi", acq / "_partial_roi")
    script = (
        "import json, sys\n"
        "from sxtdist.leftovers import leftovers\n"
        "from sxtdist.outputs import recognise\n"
        "folder, names = sys.argv[1], sys.argv[2:]\n"
        "found = {n: recognise(f'{folder}/{n}') for n in names}\n"
        "said = [x for o in ('r.report.csv', 'v.zarr', 'a.zarr') for x in leftovers(f'{folder}/{o}')]\n"
        "print(json.dumps([found, said]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *kinds],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    import json

    found, said = json.loads(done.stdout)
    assert found == kinds
    assert len(said) == 3, said
    for line in said:
        assert "an unfinished replacement of" in line and "did not write" not in line, line
    assert partial.read_bytes() == files["r.report.csv"]


def test_a_users_link_at_a_hidden_name_is_refused_never_unlinked(tmp_path, run_cli, tiny_acq):
    """sxtdist makes no symbolic link at its hidden names, yet a link found there was taken
    for its own: unlinked at .v.zarr.sxtdist-partial by an --overwrite, renamed onto the
    output from .v.zarr.sxtdist-partial.old, unlinked at an acquisition's _partial_roi by
    an import. A user's link is the user's: each write is refused (exit 2) naming the link,
    the link and what it points to kept, and info says it is left alone (seen failing with
    links taken as sxtdist's: the three links gone)."""
    import shutil

    import numpy as np
    import pytest

    from sxtdist.dataset import ScanData, add_scan
    from sxtdist.errors import InputError

    out = tmp_path / "v.zarr"
    create_volume(out, GRID, shard_z=4, chunk_z=4)
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    partial = partial_path(out)
    os.symlink(mine, partial)
    code, stdout, _ = run_cli("info", out)
    said = [x for x in stdout.splitlines() if ".v.zarr.sxtdist-partial:" in x]
    assert len(said) == 1 and "a symbolic link to" in said[0] and "left alone" in said[0], said
    with pytest.raises(InputError, match=r"sxtdist-partial: has the hidden name"):
        with writing(out, "volume", overwrite=True):
            pass
    assert os.readlink(partial) == str(mine)
    os.remove(partial)
    os.rename(out, tmp_path / "kept.zarr")  # stopped between a swap's renames: out absent
    aside = aside_path(partial)
    os.symlink(tmp_path / "kept.zarr", aside)
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--iterations", "2", "--workers", "1")
    assert code == 2 and "sxtdist-partial.old: has the hidden name" in err, err
    assert os.readlink(aside) == str(tmp_path / "kept.zarr") and not out.exists()
    os.remove(aside)
    acq = tmp_path / "a.zarr"
    shutil.copytree(tiny_acq, acq)
    os.symlink(tmp_path / "kept.zarr", acq / "_partial_roi")
    roi = ScanData(np.zeros((3, 4, 4), np.float32), [0.0, 60.0, 120.0], 10.0)
    with pytest.raises(InputError, match=r"_partial_roi: has the hidden name"):
        add_scan(acq, "roi", roi, overwrite=True)
    assert os.readlink(acq / "_partial_roi") == str(tmp_path / "kept.zarr")
    assert mine.read_text() == "mine" and open_volume(tmp_path / "kept.zarr").status == "running"


def test_info_tells_an_old_output_left_at_the_partial_name_from_an_unfinished_one(
    tmp_path, run_cli
):
    """An exchange that swapped the new volume in and then failed to remove the old one left
    it at .v.zarr.sxtdist-partial (as sxtdist did before it set the old one aside under its
    own name, bugs.md R14-6): info called it "an unfinished replacement of v.zarr ... v.zarr
    is as it was", the opposite of what happened. Told by when each was created: the old
    one before its replacement (seen failing on main's leftovers.py: "an unfinished
    replacement"); a replacement created after v.zarr is still one."""
    out = tmp_path / "v.zarr"
    old = create_volume(partial_path(out), GRID, shard_z=4, chunk_z=4)
    old.update_meta(status="complete", created="2026-12-01T09:00:00+00:00")
    create_volume(out, GRID, shard_z=4, chunk_z=4).update_meta(status="complete")
    code, stdout, _ = run_cli("info", out)
    assert code == 0
    assert f"leftover: {partial_path(out)}: the old {out} (the previous version" in stdout
    assert "unfinished replacement" not in stdout and "as it was" not in stdout
    open_volume(partial_path(out), mode="r+").update_meta(created="2099-01-01T00:00:00+00:00")
    code, stdout, _ = run_cli("info", out)
    assert code == 0
    assert f"leftover: {partial_path(out)}: an unfinished replacement of {out}" in stdout
