"""Bad input and bad places to write, as a table: every case ends in one line and an exit code.

Each case builds its inputs in a fresh folder, runs one ``sxtdist`` command (in
process, or a Python function), and asserts: the exit code (2 bad input, 1 the
environment), a single ``sxtdist: error:`` line on standard error that says what
is wrong, and that every file and folder under the case's folder is byte for byte
what it was before: no input touched, nothing left behind. The categories
(issue 24): who may write where (every writing command), truncated and
ill-typed inputs, malformed metadata, parameter ranges, plans beyond the machine,
batch manifests, damaged outputs, environment failures.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest
import tifffile

import sxtdist
import sxtdist.batch
import sxtdist.io.importer
from sxtdist.errors import SxtdistError, SxtdistWarning

REPO = Path(__file__).resolve().parent.parent


# -- the cases' building blocks --------------------------------------------------------------


@dataclass
class Templates:
    """Inputs made once per session and copied into each case's folder."""

    acq: Path
    vol: Path


@pytest.fixture(scope="module")
def templates(tiny_acq, tmp_path_factory) -> Templates:
    from sxtdist.runner import reconstruct

    vol = tmp_path_factory.mktemp("tpl") / "vol.zarr"
    reconstruct(tiny_acq, vol, iterations=2, workers=1, progress=False)
    return Templates(Path(tiny_acq), vol)


class Workspace:
    """A case's folder and helpers that put inputs into it."""

    def __init__(self, root: Path, tpl: Templates) -> None:
        self.root = root
        self.tpl = tpl

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def acq(self, name: str = "cell.zarr") -> Path:
        dst = self.root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.tpl.acq, dst)
        return dst

    def vol(self, name: str = "vol.zarr") -> Path:
        dst = self.root / name
        shutil.copytree(self.tpl.vol, dst)
        return dst

    def tif(self, name: str, data: np.ndarray, **kw) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, data, photometric="minisblack", **kw)
        return path

    def text(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def png(self, name: str) -> Path:
        """A PNG of a user's (written by matplotlib, not by sxtdist)."""
        import matplotlib.pyplot as plt

        path = self.root / name
        plt.imsave(path, np.zeros((4, 4)))
        return path

    def folder(self, name: str, **files: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True)
        for f, text in files.items():
            (path / f.replace("_", ".")).write_text(text)
        return path

    def meta(self, acq: Path, change: Callable[[dict], None]) -> Path:
        """Change an acquisition's ``sxtdist`` metadata in its zarr.json (as a user might)."""
        f = acq / "zarr.json"
        doc = json.loads(f.read_text())
        change(doc["attributes"]["sxtdist"])
        f.write_text(json.dumps(doc))
        return acq


def truncate(path: Path, keep: float = 0.5) -> Path:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return path


FRAMES = np.full((10, 16, 16), 0.6, np.float32)  # a transmission stack
IMPORT = ["--scan", "roi", "--angle-range", "0:90", "--pixel-size-nm", "20"]


def _chunk_files(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())


# -- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """``make(ws)`` builds the inputs and returns the command's arguments (or a callable).

    A ``bounded`` case runs as its own process limited to :data:`BOUND` bytes of
    address space: a plan too big must be refused before anything of its size is
    allocated (were it not, the test fails with exit code 1 instead of taking the
    machine's memory: --n-roi 10**9 once allocated 15 GB of angles).
    """

    id: str
    make: Callable[[Workspace], list | Callable[[], object]]
    code: int
    message: str
    bounded: bool = False


#: Address space a ``bounded`` case may use (the interpreter and its imports need ~1.5 GiB).
BOUND = 4 << 30


def _reconstruct(ws, *extra):
    return ["reconstruct", ws.acq(), ws / "out.zarr", "--workers", "1", *extra]


def _manifest(ws, text: str) -> Path:
    ws.acq("a.zarr")
    ws.acq("b.zarr")
    return ws.text("cells.yaml", text)


def _batch_over_a_users_file(ws):
    """A batch run before (two complete outputs), then a user's notes put in one of them:
    ``--overwrite`` must replace neither, not the other cell's before refusing this one."""
    manifest = _manifest(ws, "- a.zarr\n- b.zarr\n")
    (ws / "out").mkdir()
    ws.vol("out/a.zarr")
    _with_mine(ws.vol("out/b.zarr"), "notes.txt")
    return [
        "batch",
        manifest,
        "--out",
        ws / "out",
        "--overwrite",
        "--workers",
        "1",
        "--iterations",
        "1",
        "--align",
        "never",
        "--no-metrics",
    ]


def _symlink(ws):
    acq = ws.acq()
    os.symlink(acq, ws / "link.zarr")
    return ["reconstruct", acq, ws / "link.zarr", "--overwrite"]


def _inside_through_a_linked_folder(ws):
    """``lnk/v.zarr`` where ``lnk`` is a link to the acquisition: inside the input."""
    acq = ws.acq()
    os.symlink(acq, ws / "lnk")
    return ["reconstruct", acq, ws / "lnk" / "v.zarr", "--iterations", "1"]


def _batch_into_an_acquisition_through_a_link(ws):
    """``batch --out lnk/res`` where ``lnk`` is a link to a cell's acquisition."""
    manifest = _manifest(ws, "- a.zarr\n")
    os.symlink(ws / "a.zarr", ws / "lnk")
    return ["batch", manifest, "--out", ws / "lnk" / "res", "--workers", "1", "--no-metrics"]


def _hard_link_to(ws, name, to):
    """``name``, a second name (hard link) of the file ``to``: the same file, the user's."""
    os.link(to, ws / name)
    return ws / name


def _preview_over_link(ws):
    """``--out`` a symbolic link to a user's PNG: neither the link nor its target is replaced."""
    os.symlink(ws.png("photo.png"), ws / "shown.png")
    return ["preview", ws.acq(), "--out", ws / "shown.png", "--overwrite"]


def _link_to(ws, target, name):
    os.symlink(target, ws / name)
    return ws / name


def _report_with_notes(ws):
    """An earlier alignment report (marked) where the user put a file of their own."""
    folder = ws.folder("r", shifts_csv="x\n")
    (folder / "my_notes.txt").write_text("mine\n")
    (folder / "sxtdist-report.json").write_text('{"kind": "alignment-report"}')
    return folder


def _with_mine(output, *names):
    """An sxtdist output into which a user put folders (``name/``, holding a file) and files
    whose names look like sxtdist's own (a level ``7``, a scan being written ``_partial_*``,
    ``truth``): they are the user's, so ``--overwrite`` must leave the output alone."""
    for name in names:
        if name.endswith("/"):
            (output / name).mkdir()
            (output / name / "notes.txt").write_text("mine\n")
        else:
            (output / name).write_text("mine\n")
    return output


def _named_like_litter(ws, output, *names):
    """A user's things in an sxtdist output, named as a desktop's or Zarr's litter is but not
    of its form: ``name/`` a folder holding notes, ``name@`` a link to a user's file beside
    the output, ``name+`` a plain file bigger than litter ever is that begins as it does,
    ``name`` a small file of the user's text. ``--overwrite`` must leave the output alone
    (litter was once told by its name alone, and deleted with the output)."""
    from sxtdist.outputs import LITTER_MAGIC, LITTER_MAX_BYTES

    mine = ws / "mine.txt"
    mine.write_text("mine\n")
    for spec in names:
        name = spec.rstrip("/@+")
        if spec.endswith("/"):
            (output / name).mkdir()
            (output / name / "notes.txt").write_text("mine\n")
        elif spec.endswith("@"):
            os.symlink(mine, output / name)
        elif spec.endswith("+"):
            magic = LITTER_MAGIC["._" if name.startswith("._") else name]
            (output / name).write_bytes(magic + b"m" * LITTER_MAX_BYTES)
        else:
            (output / name).write_text("mine\n")
    return output


def _mine_at(ws, *names, out):
    """The output ``out`` (a name in the case's folder, or a path), after a user's things
    were put at names sxtdist gives its own hidden files (``name/`` a folder holding notes,
    ``name@`` a link to a user's file, ``name`` a file of the user's text), paths under the
    case's folder: by the name alone they were deleted or truncated."""
    mine = ws / "mine.txt"
    mine.write_text("mine\n")
    for spec in names:
        where = ws / spec.rstrip("/@")
        where.parent.mkdir(parents=True, exist_ok=True)
        if spec.endswith("/"):
            where.mkdir()
            (where / "notes.txt").write_text("mine\n")
        elif spec.endswith("@"):
            os.symlink(mine, where)
        else:
            where.write_text("mine\n")
    return ws / out


def _a_stopped_finalize_with_notes(ws):
    """A volume whose last step stopped: every block done, status ``running``, level ``1``
    built but not listed yet; a user's notes put in ``1/``, which the resume rebuilds."""
    vol = ws.vol()
    doc = json.loads((vol / "zarr.json").read_text())
    doc["attributes"]["sxtdist"]["status"] = "running"
    for m in doc["attributes"]["ome"]["multiscales"]:
        m["datasets"] = m["datasets"][:1]
    (vol / "zarr.json").write_text(json.dumps(doc))
    return _with_mine(vol, "1/notes.txt")


def _level_0_a_users_folder(ws):
    """A volume whose level ``0`` is a user's folder (its notes, no Zarr array)."""
    vol = ws.vol()
    shutil.rmtree(vol / "0")
    return _with_mine(vol, "0/")


def _linked_to_a_users_array(ws):
    """A volume holding ``7`` (a level's name), a link to a user's Zarr array beside it."""
    vol = ws.vol()
    shutil.copytree(vol / "1", ws / "mine.zarr")
    os.symlink(ws / "mine.zarr", vol / "7")
    return vol


def _scans_linked_to_a_users_folders(ws):
    """An acquisition whose scan ``roi`` and leftover ``_partial_full`` are links to a
    user's folders (the scan moved out, a copy of ``full``)."""
    acq = ws.acq()
    shutil.move(acq / "roi", ws / "my_roi")
    shutil.copytree(acq / "full", ws / "my_full")
    os.symlink(ws / "my_roi", acq / "roi")
    os.symlink(ws / "my_full", acq / "_partial_full")
    return acq


def _report_with_a_users_checkpoints(ws):
    """A marked report folder where Jupyter keeps a checkpoint of a user's notebook (perhaps
    its last copy) and ``shifts.csv`` is a user's folder."""
    folder = ws.folder("r", pairs_csv="x\n")
    (folder / "sxtdist-report.json").write_text('{"kind": "alignment-report"}')
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "notes-checkpoint.ipynb").write_text("{}")
    return _with_mine(folder, "shifts.csv/")


def _exported(ws):
    from sxtdist.io.export import export_volume

    export_volume(ws.vol("v.zarr"), ws / "e.zarr")
    return ws / "e.zarr"


def _dotdot(ws):
    acq = ws.acq()
    (ws / "sub").mkdir()
    return ["reconstruct", acq, f"{ws / 'sub'}/../cell.zarr/rec.zarr"]


def _into_a_volume_through_a_link(ws):
    """``link/..`` is where the link points, then up: a path naming a folder beside the link
    as text names one inside the volume the link leads into."""
    os.symlink(ws.vol() / "0", ws / "lk")
    return ["reconstruct", ws.acq(), f"{ws / 'lk'}/../x.zarr", "--iterations", "1"]


def _contains(ws):
    acq = ws.acq("proj/cell.zarr")
    (ws / "proj/notes.txt").write_text("mine")
    return ["reconstruct", acq, ws / "proj", "--overwrite"]


def _tampered(change, command="info"):
    def make(ws):
        acq = ws.meta(ws.acq(), change)
        return [command, acq] if command == "info" else [command, acq, ws / "out.zarr"]

    return make


def _scan(meta, **values):
    meta["scans"]["roi"].update(values)


def _damaged_volume(ws):
    vol = ws.vol()
    _chunk_files(vol / "0")[-1].unlink()
    return vol


def _garbage_chunk(ws):
    acq = ws.acq()
    chunk = _chunk_files(acq / "roi" / "0")[3]
    chunk.write_bytes(np.random.default_rng(0).bytes(chunk.stat().st_size))
    return acq


def _inf_projection(ws):
    import zarr

    acq = ws.acq()
    arr = zarr.open_array(acq / "roi" / "0", mode="r+")
    arr[2, 3, 4] = np.inf
    return acq


def _inf_in_the_last_row(ws):
    import zarr

    acq = ws.acq()
    arr = zarr.open_array(acq / "roi" / "0", mode="r+")
    arr[5, -1, 7] = np.inf  # read only by the last block: the first one finishes before
    return acq


def _hdf5(ws, name, n_written=None, truncated=False):
    path = ws / name
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["definition"] = "NXtomo"
        d = e.create_dataset(
            "instrument/detector/data", shape=(6, 64, 64), dtype="f4", chunks=(1, 64, 64)
        )
        for i in range(6 if n_written is None else n_written):
            d[i] = 0.5
    return truncate(path) if truncated else path


def _mrc(ws, name, data):
    path = ws / name
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.voxel_size = 100.0
    return path


def _existing_acq_with_good_roi(ws):
    acq = ws / "good.zarr"
    sxtdist.io.importer.import_scan(
        ws.tif("ok.tif", FRAMES), acq, "roi", angle_range=(0, 90), pixel_size_nm=20
    )
    return acq


def _tiff_folder(ws, names):
    """A folder of single-frame TIFFs with these names."""
    for n in names:
        ws.tif(f"frames/{n}", FRAMES[0])
    return ws / "frames"


def _api(fn, *args, **kw):
    return lambda: fn(*(os.fspath(a) if isinstance(a, Path) else a for a in args), **kw)


# fmt: off
CASES = [
    # -- who may write where: reconstruct -------------------------------------------------
    Case("reconstruct: output is the input", lambda ws: ["reconstruct", ws.acq(), ws / "cell.zarr"], 2, r"is the input"),
    Case("reconstruct: output inside the input", lambda ws: ["reconstruct", ws.acq(), ws / "cell.zarr/rec.zarr"], 2, r"lies inside the input"),
    Case("reconstruct: inside the input, --overwrite", lambda ws: ["reconstruct", ws.acq(), ws / "cell.zarr/rec.zarr", "--overwrite"], 2, r"lies inside the input"),
    Case("reconstruct: a scan of the input, --overwrite", lambda ws: ["reconstruct", ws.acq(), ws / "cell.zarr/full", "--overwrite"], 2, r"lies inside the input"),
    Case("reconstruct: the folder holding the input, --overwrite", _contains, 2, r"contains the input"),
    Case("reconstruct: a symlink to the input, --overwrite", _symlink, 2, r"is the input"),
    Case("reconstruct: a link to a user's folder, --overwrite", lambda ws: ["reconstruct", ws.acq(), _link_to(ws, ws.folder("mine", a_txt="x"), "out.zarr"), "--overwrite"], 2, r"out\.zarr: is a symbolic link to \S+mine, which sxtdist did not write"),
    Case("simulate: a link to nothing", lambda ws: ["simulate", _link_to(ws, ws / "elsewhere.zarr", "sim.zarr"), "--preset", "tiny"], 2, r"sim\.zarr: is a symbolic link to \S+elsewhere\.zarr, which does not exist"),
    Case("export: a link to an acquisition, --overwrite", lambda ws: ["export", ws.vol(), _link_to(ws, ws.acq("x.zarr"), "e.zarr"), "--overwrite"], 2, r"e\.zarr: is a symbolic link to \S+x\.zarr, an sxtdist acquisition"),
    Case("reconstruct: into the input through a linked folder", _inside_through_a_linked_folder, 2, r"lnk/v\.zarr: lies inside the input \S+cell\.zarr"),
    Case("batch: --out into an acquisition through a linked folder", _batch_into_an_acquisition_through_a_link, 2, r"lnk/res: lies inside the input \S+a\.zarr"),
    Case("export: an MRC that is a hard link to a user's file, --overwrite", lambda ws: ["export", ws.vol(), _hard_link_to(ws, "v.mrc", ws.text("notes.txt", "mine")), "--overwrite"], 2, r"v\.mrc: already exists and was not written by sxtdist"),
    Case("reconstruct: '..' into the input", _dotdot, 2, r"lies inside the input"),
    Case("reconstruct: 'link/..' into a volume", _into_a_volume_through_a_link, 2, r"lk/\.\./x\.zarr: lies inside the sxtdist volume \S+vol\.zarr: write it elsewhere"),
    Case("reconstruct: a user's folder, --overwrite", lambda ws: ["reconstruct", ws.acq(), ws.folder("thesis", thesis_tex="x"), "--overwrite"], 2, r"was not written by sxtdist"),
    Case("reconstruct: output is an existing file", lambda ws: ["reconstruct", ws.acq(), ws.text("out.zarr", "x")], 2, r"was not written by sxtdist"),
    Case("reconstruct: another acquisition, --overwrite", lambda ws: ["reconstruct", ws.acq(), ws.acq("other.zarr"), "--overwrite"], 2, r"is an sxtdist acquisition, not an sxtdist volume"),
    Case("reconstruct: a complete volume, no --overwrite", lambda ws: ["reconstruct", ws.acq(), ws.vol()], 2, r"complete volume already"),
    Case("reconstruct: a split half over a user's folder (before any cluster)", lambda ws: ["reconstruct", ws.acq(), ws / "out.zarr", "--split-halves", "--scheduler", "tcp://127.0.0.1:9", ws.folder("out.half1.zarr", a_txt="x") and "-q"], 2, r"out\.half1\.zarr: already exists and was not written by sxtdist"),
    Case("reconstruct: a volume holding a user's folder 7 and file 2024, --overwrite", lambda ws: ["reconstruct", ws.acq(), _with_mine(ws.vol(), "7/", "2024"), "--overwrite"], 2, r"vol\.zarr: is an sxtdist volume holding files it did not write \(2024, 7\): it is left alone"),
    Case("reconstruct: a volume holding a user's truth folder, --overwrite", lambda ws: ["reconstruct", ws.acq(), _with_mine(ws.vol(), "truth/"), "--overwrite"], 2, r"holding files it did not write \(truth\)"),
    Case("reconstruct (Python): output inside the input", lambda ws: _api(sxtdist.reconstruct, ws.acq(), ws / "cell.zarr/x.zarr", workers=1), 2, r"lies inside the input"),
    # -- simulate ---------------------------------------------------------------------------
    Case("simulate: a user's folder, --overwrite", lambda ws: ["simulate", ws.folder("data", notes_txt="x"), "--preset", "tiny", "--overwrite"], 2, r"was not written by sxtdist"),
    Case("simulate: a volume, --overwrite", lambda ws: ["simulate", ws.vol(), "--preset", "tiny", "--overwrite"], 2, r"is an sxtdist volume, not an sxtdist acquisition"),
    Case("simulate: an acquisition holding a user's _partial_notes folder and 7 file, --overwrite", lambda ws: ["simulate", _with_mine(ws.acq(), "_partial_notes/", "7", "_partial_roi"), "--preset", "tiny", "--overwrite"], 2, r"cell\.zarr: is an sxtdist acquisition holding files it did not write \(7, _partial_notes, _partial_roi\)"),
    Case("simulate: an acquisition holding a user's folder ._notes, folder .DS_Store and link Thumbs.db, --overwrite", lambda ws: ["simulate", _named_like_litter(ws, ws.acq(), "._notes/", ".DS_Store/", "Thumbs.db@"), "--preset", "tiny", "--overwrite"], 2, r"cell\.zarr: is an sxtdist acquisition holding files it did not write \(\.DS_Store, \._notes, Thumbs\.db\): it is left alone"),
    Case("reconstruct: a volume holding a user's big .DS_Store and text ._notes, --overwrite", lambda ws: ["reconstruct", ws.acq(), _named_like_litter(ws, ws.vol(), ".DS_Store+", "._notes"), "--overwrite"], 2, r"vol\.zarr: is an sxtdist volume holding files it did not write \(\.DS_Store, \._notes\)"),
    Case("reconstruct: a volume holding a user's folder zarr.HEX.partial and link .zattrs, --overwrite", lambda ws: ["reconstruct", ws.acq(), _named_like_litter(ws, ws.vol(), f"zarr.{'a' * 32}.partial/", ".zattrs@"), "--overwrite"], 2, r"holding files it did not write \(\.zattrs, zarr\.a{32}\.partial\)"),
    Case("reconstruct: a volume whose level 0 is a user's folder, --overwrite", lambda ws: ["reconstruct", ws.acq(), _level_0_a_users_folder(ws), "--overwrite"], 2, r"vol\.zarr: is an sxtdist volume holding files it did not write \(0\)"),
    Case("reconstruct: a volume holding 7, a link to a user's Zarr array, --overwrite", lambda ws: ["reconstruct", ws.acq(), _linked_to_a_users_array(ws), "--overwrite"], 2, r"holding files it did not write \(7\)"),
    Case("simulate: an acquisition whose roi and _partial_full are links to a user's folders, --overwrite", lambda ws: ["simulate", _scans_linked_to_a_users_folders(ws), "--preset", "tiny", "--overwrite"], 2, r"holding files it did not write \(_partial_full, roi\)"),
    Case("simulate: an acquisition with a user's notes in roi/ and a folder in full/0/, --overwrite", lambda ws: ["simulate", _with_mine(ws.acq(), "roi/notes.txt", "full/0/mine/"), "--preset", "tiny", "--overwrite"], 2, r"cell\.zarr: is an sxtdist acquisition holding files it did not write \(full/0/mine, roi/notes\.txt\): it is left alone"),
    Case("reconstruct --overwrite: a user's file at .vol.zarr.sxtdist-partial", lambda ws: ["reconstruct", ws.acq(), _mine_at(ws, ".vol.zarr.sxtdist-partial", out=ws.vol()), "--overwrite"], 2, r"\.vol\.zarr\.sxtdist-partial: has the hidden name sxtdist gives its unfinished writes of \S+vol\.zarr, but sxtdist did not write it \(a file sxtdist did not write\): it is left alone; move or rename it"),
    Case("reconstruct: a user's folder at .v.zarr.sxtdist-new", lambda ws: ["reconstruct", ws.acq(), _mine_at(ws, ".v.zarr.sxtdist-new/", out="v.zarr")], 2, r"\.v\.zarr\.sxtdist-new: has the hidden name sxtdist gives its unfinished writes of \S+v\.zarr, but sxtdist did not write it \(holding files sxtdist did not write \(notes\.txt\)\)"),
    Case("export: a user's file at .e.mrc.sxtdist-partial.old, no e.mrc", lambda ws: ["export", ws.vol(), _mine_at(ws, ".e.mrc.sxtdist-partial.old", out="e.mrc")], 2, r"\.e\.mrc\.sxtdist-partial\.old: has the hidden name sxtdist gives its unfinished writes of \S+e\.mrc, but sxtdist did not write it"),
    Case("import --overwrite: a user's folder _partial_roi in the acquisition", lambda ws: ["import", ws.tif("t.tif", FRAMES), _mine_at(ws, "cell.zarr/_partial_roi/", out=ws.acq()), *IMPORT, "--overwrite"], 2, r"cell\.zarr/_partial_roi: has the hidden name sxtdist gives its unfinished writes of \S+roi, but sxtdist did not write it \(holding files sxtdist did not write \(notes\.txt\)\)"),
    Case("reconstruct: a user's file at .v.zarr.sxtdist-lock", lambda ws: ["reconstruct", ws.acq(), _mine_at(ws, ".v.zarr.sxtdist-lock", out="v.zarr")], 2, r"\.v\.zarr\.sxtdist-lock: has the name of sxtdist's lock of \S+v\.zarr but is a file sxtdist did not write: it is left alone"),
    Case("reconstruct: a link to a user's file at .v.zarr.sxtdist-lock", lambda ws: ["reconstruct", ws.acq(), _mine_at(ws, ".v.zarr.sxtdist-lock@", out="v.zarr")], 2, r"\.v\.zarr\.sxtdist-lock: has the name of sxtdist's lock of \S+v\.zarr but is a symbolic link"),
    Case("align: a user's file at .cell.zarr.aligned.sxtdist-lock, its lock", lambda ws: ["align", _mine_at(ws, ".cell.zarr.aligned.sxtdist-lock", out=ws.acq()), "--report", ""], 2, r"error: \S+/cell\.zarr: cannot be aligned: \S+/\.cell\.zarr\.aligned\.sxtdist-lock, the lock sxtdist holds while it is aligned, is a file sxtdist did not write: it is left alone"),
    Case("align (Python): a user's folder at .cell.zarr.aligned.sxtdist-lock, its lock", lambda ws: _api(sxtdist.align, _mine_at(ws, ".cell.zarr.aligned.sxtdist-lock/", out=ws.acq())), 2, r"error: \S+/cell\.zarr: cannot be aligned: \S+/\.cell\.zarr\.aligned\.sxtdist-lock, the lock sxtdist holds while it is aligned, is a folder: it is left alone"),
    Case("summary (Python): a user's file at .s.csv.sxtdist-partial", lambda ws: _api(sxtdist.batch.write_summary, [], _mine_at(ws, ".s.csv.sxtdist-partial", out="s.csv")), 2, r"\.s\.csv\.sxtdist-partial: has the hidden name sxtdist gives its unfinished writes of \S+s\.csv, but sxtdist did not write it \(a file sxtdist did not write\)"),
    Case("reconstruct: resuming a volume with a user's notes in 1/, a level its last step rebuilds", lambda ws: ["reconstruct", ws.tpl.acq, _a_stopped_finalize_with_notes(ws), "--iterations", "2", "--workers", "1"], 2, r"vol\.zarr: is an sxtdist volume holding files it did not write \(1/notes\.txt\)"),
    Case("reconstruct: into a folder holding only a user's file named as a probe", lambda ws: ["reconstruct", ws.acq(), _mine_at(ws, f"v.zarr/.sxtdist-probe-{'0' * 32}", out="v.zarr")], 2, r"v\.zarr: already exists and was not written by sxtdist"),
    Case("reconstruct: a volume with a user's notes in its level's chunk folder 0/c/, --overwrite", lambda ws: ["reconstruct", ws.acq(), _with_mine(ws.vol(), "0/c/notes.txt", "0/c/0/mine/"), "--overwrite"], 2, r"vol\.zarr: is an sxtdist volume holding files it did not write \(0/c/0/mine, 0/c/notes\.txt\): it is left alone"),
    Case("simulate: an acquisition with a user's notes in roi/0/c/ and a link in full/0/c/, --overwrite", lambda ws: ["simulate", _named_like_litter(ws, _with_mine(ws.acq(), "roi/0/c/notes.txt"), "full/0/c/123456@"), "--preset", "tiny", "--overwrite"], 2, r"cell\.zarr: is an sxtdist acquisition holding files it did not write \(full/0/c/123456, roi/0/c/notes\.txt\): it is left alone"),
    Case("reconstruct: a volume with a user's link in its level 0/, --overwrite", lambda ws: ["reconstruct", ws.acq(), _named_like_litter(ws, ws.vol(), "0/zarr.json.bak@"), "--overwrite"], 2, r"vol\.zarr: is an sxtdist volume holding files it did not write \(0/zarr\.json\.bak\)"),
    Case("export: an export holding a user's folder 3, --overwrite", lambda ws: ["export", ws.vol(), _with_mine(_exported(ws), "3/"), "--overwrite"], 2, r"e\.zarr: is an sxtdist export holding files it did not write \(3\)"),
    Case("simulate: an acquisition, no --overwrite", lambda ws: ["simulate", ws.acq(), "--preset", "tiny"], 2, r"already exists \(use --overwrite"),
    Case("simulate (Python): a user's folder, overwrite=True", lambda ws: _api(sxtdist.simulate, ws.folder("data", a_txt="x"), preset="tiny", overwrite=True), 2, r"was not written by sxtdist"),
    Case("create_acquisition (Python): complex data", lambda ws: _api(sxtdist.create_acquisition, ws / "c.zarr", {"roi": sxtdist.ScanData(np.ones((3, 4, 4), complex), [0, 60, 120], 10.0)}), 2, r"complex"),
    Case("create_acquisition (Python): int16 data", lambda ws: _api(sxtdist.create_acquisition, ws / "c.zarr", {"roi": sxtdist.ScanData(np.ones((3, 4, 4), np.int16), [0, 60, 120], 10.0)}), 2, r"integers \(int16\)"),
    Case("create_acquisition (Python): a NaN", lambda ws: _api(sxtdist.create_acquisition, ws / "c.zarr", {"roi": sxtdist.ScanData(np.where(np.arange(48).reshape(3, 4, 4) == 20, np.nan, 0.5), [0, 60, 120], 10.0)}), 2, r"frame 1 contains NaN"),
    # -- export -----------------------------------------------------------------------------
    Case("export: onto its own volume, --overwrite", lambda ws: ["export", ws.vol(), ws / "vol.zarr", "--overwrite"], 2, r"is the input"),
    Case("export: into its own volume", lambda ws: ["export", ws.vol(), ws / "vol.zarr/0.zarr"], 2, r"lies inside the input"),
    Case("export: a user's MRC, --overwrite", lambda ws: ["export", ws.vol(), _mrc(ws, "mine.mrc", np.zeros((2, 2, 2), np.float32)), "--overwrite"], 2, r"was not written by sxtdist"),
    Case("export: a user's TIFF, --overwrite", lambda ws: ["export", ws.vol(), ws.tif("mine.tif", FRAMES), "--overwrite"], 2, r"was not written by sxtdist"),
    Case("export: an acquisition, --overwrite", lambda ws: ["export", ws.vol(), ws.acq("x.zarr"), "--overwrite"], 2, r"is an sxtdist acquisition, not an sxtdist export"),
    Case("export: a damaged volume", lambda ws: ["export", _damaged_volume(ws), ws / "v.mrc"], 2, r"is damaged \(level 0 lacks 1 of"),
    Case("export: an MRC over an empty folder", lambda ws: ["export", ws.vol(), ws.folder("empty.mrc")], 2, r"empty\.mrc: is a folder: name the file to write"),
    Case("preview: --out an empty folder", lambda ws: ["preview", ws.acq(), "--out", ws.folder("pv")], 2, r"pv: is a folder: name the file to write"),
    Case("edit: a centre offset a billion pixels off", lambda ws: ["edit", ws.acq(), "--scan", "full", "--center-offset-px=1e9,0"], 2, r"roi_center_px \[1e\+09, 0\] is more than 20 detector sizes"),
    Case("export: --level 99", lambda ws: ["export", ws.vol(), ws / "v.mrc", "--level", "99"], 2, r"has levels 0\.\.\d, not 99"),
    Case("export: --crop garbage", lambda ws: ["export", ws.vol(), ws / "v.mrc", "--crop", "a:b"], 2, r"--crop"),
    # -- import: files that lie -----------------------------------------------------------------
    Case("import: a TIFF folder with a flat among the projections", lambda ws: ["import", _tiff_folder(ws, ["p_1.tif", "p_2.tif", "p_3.tif", "flat.tif"]), ws / "a.zarr", *IMPORT], 2, r"frames: names of another pattern than p_1\.tif \(flat\.tif\): --angle-range gives every later file a wrong angle"),
    Case("import: a TIFF folder with a gap, --angle-range", lambda ws: ["import", _tiff_folder(ws, ["p_1.tif", "p_2.tif", "p_5.tif"]), ws / "a.zarr", *IMPORT], 2, r"frames: gaps in the numbering \(no 3, 4\)"),
    Case("import: a TIFF folder whose names differ only in extension clash", lambda ws: ["import", _tiff_folder(ws, ["p_1.tif", "p_2.TIF", "p_2.tiff", "p_3.TIFF"]), ws / "a.zarr", *IMPORT], 2, r"frames: p_2\.TIF and p_2\.tiff number the same view: keep one of them"),
    Case("import: TIFF cut in half", lambda ws: ["import", truncate(ws.tif("t.tif", FRAMES)), ws / "a.zarr", *IMPORT], 2, r"t\.tif: truncated: frame 5 of 10"),
    Case("import: ImageJ TIFF cut in half", lambda ws: ["import", truncate(ws.tif("t.tif", FRAMES, imagej=True)), ws / "a.zarr", *IMPORT], 2, r"truncated or damaged TIFF"),
    Case("import: over a scan where a user put notes, --overwrite", lambda ws: ["import", ws.tif("t.tif", FRAMES), _with_mine(_existing_acq_with_good_roi(ws), "roi/notes.txt"), *IMPORT, "--overwrite"], 2, r"good\.zarr/roi: is a scan holding files sxtdist did not write \(notes\.txt\): it is left alone; move them, or import into another acquisition"),
    Case("import: truncated TIFF over a good scan, --overwrite", lambda ws: ["import", truncate(ws.tif("t.tif", FRAMES)), _existing_acq_with_good_roi(ws), *IMPORT, "--overwrite"], 2, r"truncated: frame 5"),
    Case("import: MRC cut in half", lambda ws: ["import", truncate(_mrc(ws, "t.mrc", FRAMES)), ws / "a.zarr", *IMPORT[:-2]], 2, r"truncated: frame 4 of 10"),
    Case("import: HDF5 cut in half", lambda ws: ["import", _hdf5(ws, "t.nx", truncated=True), ws / "a.zarr", *IMPORT], 2, r"t\.nx: truncated"),
    Case("import: HDF5 frames never written", lambda ws: ["import", _hdf5(ws, "t.nx", n_written=4), ws / "a.zarr", *IMPORT], 2, r"never written \(frame 4"),
    Case("import: complex TIFF", lambda ws: ["import", ws.tif("c.tif", FRAMES.astype(np.complex64)), ws / "a.zarr", *IMPORT], 2, r"complex|not a real number"),
    Case("import: int16 as optical depth", lambda ws: ["import", ws.tif("i.tif", FRAMES.astype(np.int16)), ws / "a.zarr", *IMPORT, "--values", "od"], 2, r"integers \(int16\)"),
    Case("import: a NaN in frame 2", lambda ws: ["import", ws.tif("n.tif", np.where(np.arange(10)[:, None, None] == 2, np.nan, FRAMES)), ws / "a.zarr", *IMPORT], 2, r"frame 2 contains NaN"),
    Case("import: an all-zero TIFF stack names frame 0 (not the first thread to fail)", lambda ws: ["import", ws.tif("zero.tif", np.zeros((40, 16, 16), np.float32)), ws / "a.zarr", *IMPORT], 2, r"zero\.tif: frame 0 has no pixel with a transmission above 0"),
    Case("import: a NaN in frame 3 of 40 and every later frame", lambda ws: ["import", ws.tif("n.tif", np.where(np.arange(40)[:, None, None] >= 3, np.nan, np.full((40, 16, 16), 0.6, np.float32))), ws / "a.zarr", *IMPORT], 2, r"frame 3 contains NaN"),
    Case("import: optical depth all negative", lambda ws: ["import", ws.tif("neg.tif", -FRAMES), ws / "a.zarr", *IMPORT, "--values", "od"], 2, r"every optical depth value is negative"),
    Case("import: all angles equal", lambda ws: ["import", ws.tif("t.tif", FRAMES), ws / "a.zarr", *IMPORT[:2], "--angles", ws.text("a.tlt", "5\n" * 10), *IMPORT[4:]], 2, r"all 10 angles are equal"),
    Case("import: text in the angle file", lambda ws: ["import", ws.tif("t.tif", FRAMES), ws / "a.zarr", *IMPORT[:2], "--angles", ws.text("a.tlt", "0\nten\n"), *IMPORT[4:]], 2, r"'ten' is not a number"),
    Case("import: pixel size 1e30", lambda ws: ["import", ws.tif("t.tif", FRAMES), ws / "a.zarr", *IMPORT[:4], "--pixel-size-nm", "1e30"], 2, r"pixel_size_nm must be a number in"),
    Case("import: into a user's folder", lambda ws: ["import", ws.tif("t.tif", FRAMES), ws.folder("mine", a_txt="x"), *IMPORT], 2, r"was not written by sxtdist"),
    Case("import: a folder of frames into itself", lambda ws: ["import", ws.folder("frames"), ws / "frames/a.zarr", *IMPORT], 2, r"lies inside the input"),
    Case("import: onto its own source file", lambda ws: ["import", ws.tif("t.tif", FRAMES), ws / "t.tif", *IMPORT], 2, r"is the input"),
    # -- malformed metadata in an acquisition ---------------------------------------------------------
    Case("metadata: ragged shifts_px", _tampered(lambda m: _scan(m, shifts_px=[[0, 0], [1]])), 2, r"shifts_px must be numbers in a regular list"),
    Case("metadata: text for the pixel size", _tampered(lambda m: _scan(m, pixel_size_nm="fifty")), 2, r"pixel_size_nm must be a number"),
    Case("metadata: detector_shape: 5", _tampered(lambda m: _scan(m, detector_shape=5)), 2, r"detector_shape 5 does not match"),
    Case('metadata: truth: "yes"', _tampered(lambda m: m.update(truth="yes")), 2, r"truth metadata must be a mapping"),
    Case("metadata: pixel size 1e30", _tampered(lambda m: _scan(m, pixel_size_nm=1e30)), 2, r"pixel_size_nm must be a number in"),
    Case("metadata: text for the angles", _tampered(lambda m: _scan(m, angles_deg="0..180")), 2, r"angles_deg must be numbers"),
    Case("metadata: all angles equal", _tampered(lambda m: _scan(m, angles_deg=[3.0] * len(m["scans"]["roi"]["angles_deg"]))), 2, r"angles are equal"),
    Case("metadata: text for the centre", _tampered(lambda m: _scan(m, roi_center_px="middle")), 2, r"roi_center_px must be numbers"),
    Case("metadata: schema version 99", _tampered(lambda m: m.update(version=99)), 2, r"schema version 99 is not supported"),
    Case("metadata: an unknown scan", _tampered(lambda m: m["scans"].update({"../x": m["scans"]["roi"]})), 2, r"unknown scan '\.\./x'"),
    Case("metadata: reconstruct refuses it too", _tampered(lambda m: _scan(m, shifts_px="none"), "reconstruct"), 2, r"shifts_px must be numbers"),
    # -- parameters out of range -------------------------------------------------------------------
    Case("reconstruct: --halo -3", lambda ws: _reconstruct(ws, "--halo", "-3"), 2, r"halo must be a whole number >= 0, got -3"),
    Case("reconstruct: --rtol nan", lambda ws: _reconstruct(ws, "--rtol", "nan"), 2, r"rtol must be positive, got nan"),
    Case("reconstruct: --iterations 10**20", lambda ws: _reconstruct(ws, "--iterations", str(10**20)), 2, r"iterations must be from 1 to"),
    Case("reconstruct: --iterations 0", lambda ws: _reconstruct(ws, "--iterations", "0"), 2, r"iterations must be a positive number or 'auto', got '0'"),
    Case("reconstruct: --block-size 0", lambda ws: _reconstruct(ws, "--block-size", "0"), 2, r"block_size must be a whole number >= 1, got 0"),
    Case("reconstruct: --nonneg-every -1", lambda ws: _reconstruct(ws, "--nonneg-every", "-1"), 2, r"--nonneg-every must be at least 1"),
    Case("reconstruct: --voxel-size-nm -1", lambda ws: _reconstruct(ws, "--voxel-size-nm", "-1"), 2, r"voxel_size_nm must be positive, got -1"),
    Case("reconstruct: --weights full=inf", lambda ws: _reconstruct(ws, "--weights", "full=inf,roi=1"), 2, r"weight of scan 'full' must be positive"),
    Case("reconstruct: --halo text", lambda ws: _reconstruct(ws, "--halo", "x"), 2, r"'x' is not a valid integer"),
    Case("simulate: --pixel-size-nm nan", lambda ws: ["simulate", ws / "s.zarr", "--preset", "tiny", "--pixel-size-nm", "nan"], 2, r"pixel size must be in"),
    Case("simulate: --seed -1", lambda ws: ["simulate", ws / "s.zarr", "--preset", "tiny", "--seed", "-1"], 2, r"seed must be a whole number"),
    # -- plans the machine cannot hold ---------------------------------------------------------------
    Case("reconstruct: --voxel-size-nm 0.001", lambda ws: _reconstruct(ws, "--voxel-size-nm", "0.001"), 2, r"volume grid would be \(\d+, \d+, \d+\) voxels, beyond 65536 a side .*: the voxel size 0.001 nm is too fine", bounded=True),
    Case("reconstruct --dry-run: --voxel-size-nm 0.001", lambda ws: _reconstruct(ws, "--voxel-size-nm", "0.001", "--dry-run"), 2, r"the voxel size 0.001 nm is too fine", bounded=True),
    Case("simulate: --pixel-size-nm 0.001", lambda ws: ["simulate", ws / "s.zarr", "--preset", "tiny", "--pixel-size-nm", "0.001"], 2, r"needs [\d.]+ EiB on disk; .* free", bounded=True),
    Case("simulate: --n-roi 10**9", lambda ws: ["simulate", ws / "s.zarr", "--preset", "tiny", "--n-roi", str(10**9)], 2, r"needs [\d.]+ [TP]iB on disk", bounded=True),
    # -- batch manifests ---------------------------------------------------------------------------
    Case("batch: two cells named alike", lambda ws: ["batch", _manifest(ws, "- {name: x, acquisition: a.zarr}\n- {name: x, acquisition: b.zarr}\n"), "--out", ws / "out"], 2, r"two cells are named 'x'"),
    Case("batch: a name that is a path", lambda ws: ["batch", _manifest(ws, "- {name: ../../x, acquisition: a.zarr}\n"), "--out", ws / "out"], 2, r"name '\.\./\.\./x' must be a name"),
    Case("batch: a name '..'", lambda ws: ["batch", _manifest(ws, "- {name: '..', acquisition: a.zarr}\n"), "--out", ws / "out"], 2, r"name '\.\.' must be a name"),
    Case("batch: out: above --out", lambda ws: ["batch", _manifest(ws, "- {acquisition: a.zarr, out: ../escape.zarr}\n"), "--out", ws / "out"], 2, r"is not under --out"),
    Case("batch: out: elsewhere", lambda ws: ["batch", _manifest(ws, f"- {{acquisition: a.zarr, out: {ws / 'x.zarr'}}}\n"), "--out", ws / "out"], 2, r"is not under --out"),
    Case("batch: out: the acquisition", lambda ws: ["batch", _manifest(ws, "- {acquisition: a.zarr, out: a.zarr}\n"), "--out", ws.root], 2, r"output .* is the input"),
    Case("batch: --out inside an acquisition", lambda ws: ["batch", _manifest(ws, "- a.zarr\n"), "--out", ws / "a.zarr/out"], 2, r"lies inside the input"),
    Case("batch --overwrite: one cell's output holds a user's file (no cell replaced)", _batch_over_a_users_file, 2, r"out/b\.zarr: is an sxtdist volume holding files it did not write \(notes\.txt\): it is left alone; move them, or write the volume elsewhere; no cell was run \(refused at cell 'b'\)"),
    Case("batch: --summary over a user's file", lambda ws: ["batch", _manifest(ws, "- a.zarr\n"), "--out", ws / "out", "--summary", ws.text("notes.csv", "mine\n")], 2, r"was not written by sxtdist"),
    # -- rechunk's copy --------------------------------------------------------------------------------
    Case("rechunk: into its own acquisition", lambda ws: ["rechunk", ws.acq(), ws / "cell.zarr/new.zarr"], 2, r"lies inside the input"),
    Case("rechunk: a user's folder, --overwrite", lambda ws: ["rechunk", ws.acq(), ws.folder("mine", a_txt="x"), "--overwrite"], 2, r"was not written by sxtdist"),
    Case("rechunk: a volume, --overwrite", lambda ws: ["rechunk", ws.acq(), ws.vol(), "--overwrite"], 2, r"is an sxtdist volume, not an sxtdist acquisition"),
    # -- align's report ------------------------------------------------------------------------------
    Case("align: --report a user's folder", lambda ws: ["align", ws.acq(), "--report", ws.folder("results", paper_tex="x")], 2, r"was not written by sxtdist"),
    Case("align: --report inside the acquisition", lambda ws: ["align", ws.acq(), "--report", ws / "cell.zarr/report"], 2, r"lies inside the input"),
    Case("align: --report a folder of a user's shifts.csv", lambda ws: ["align", ws.acq(), "--report", ws.folder("mine", shifts_csv="scan,index\n")], 2, r"mine: already exists and was not written by sxtdist"),
    Case("align: the default report folder holds a user's shifts.csv", lambda ws: ["align", ws.acq(), ws.folder("cell_alignment", shifts_csv="scan,index\n") and "-q"], 2, r"cell_alignment: already exists and was not written by sxtdist"),
    Case("align: a report folder where a user put notes", lambda ws: ["align", ws.acq(), "--report", _report_with_notes(ws)], 2, r"r: is an alignment report holding files it did not write \(my_notes\.txt\): it is left alone"),
    Case("align: a report folder holding a user's notebook checkpoint and shifts.csv folder", lambda ws: ["align", ws.acq(), "--report", _report_with_a_users_checkpoints(ws)], 2, r"r: is an alignment report holding files it did not write \(\.ipynb_checkpoints, shifts\.csv\): it is left alone"),
    Case("simulate --overwrite: into a report folder where a user put notes", lambda ws: ["simulate", _report_with_notes(ws), "--preset", "tiny", "--overwrite"], 2, r"r: is an alignment report holding files it did not write \(my_notes\.txt\): it is left alone; move them, or write the acquisition elsewhere"),
    Case("align (Python): report= a folder of a user's shifts.csv", lambda ws: _api(sxtdist.align, ws.acq(), report=ws.folder("mine", shifts_csv="x\n")), 2, r"mine: already exists and was not written by sxtdist"),
    # -- preview's PNG and volume ------------------------------------------------------------
    Case("preview: --out a user's file, --overwrite", lambda ws: ["preview", ws.acq(), "--out", ws.text("notes.txt", "mine\n"), "--overwrite"], 2, r"notes\.txt: already exists and was not written by sxtdist"),
    Case("preview: --out a user's PNG, --overwrite", lambda ws: ["preview", ws.acq(), "--out", ws.png("photo.png"), "--overwrite"], 2, r"photo\.png: already exists and was not written by sxtdist"),
    Case("preview: --out a link to a user's PNG, --overwrite", _preview_over_link, 2, r"shown\.png: is a symbolic link to \S+photo\.png, which sxtdist did not write"),
    Case("preview: --volume an acquisition, --overwrite", lambda ws: ["preview", ws.acq(), "--volume", ws.acq("other.zarr"), "--overwrite"], 2, r"is an sxtdist acquisition, not an sxtdist volume"),
    # -- sxtdist report's files, the demo's folder ---------------------------------------------
    Case("report: --out over a user's CSV, --overwrite", lambda ws: ["report", ws.vol(), "--out", ws / "mine", "--overwrite", ws.text("mine.csv", "a,b\n") and "--max-slices=4"], 2, r"mine\.csv: already exists and was not written by sxtdist"),
    Case("report: --out inside the volume", lambda ws: ["report", ws.vol(), "--out", ws / "vol.zarr/rep"], 2, r"lies inside the input"),
    Case("demo: --out holds a user's tiny.zarr, --overwrite", lambda ws: ["demo", "--out", ws.root, "--preset", "tiny", "--overwrite", ws.folder("tiny.zarr", a_txt="x") and "-q"], 2, r"tiny\.zarr: already exists and was not written by sxtdist"),
    # -- damage found in a worker (a Dask cluster runs) -------------------------------------------
    Case("reconstruct: a chunk of garbage bytes", lambda ws: ["reconstruct", _garbage_chunk(ws), ws / "out.zarr", "--workers", "1"], 2, r"roi/0: cannot read projections"),
    Case("reconstruct: an inf the last block finds", lambda ws: ["reconstruct", _inf_in_the_last_row(ws), ws / "out.zarr", "--workers", "1"], 2, r"roi/0: projections contain NaN or inf"),
    Case("align: an inf in a projection", lambda ws: ["align", _inf_projection(ws), "--workers", "1", "--report", ""], 2, r"roi/0: projection \d+ contains NaN or inf"),
    # -- damaged outputs -------------------------------------------------------------------------------
    Case("verify: a volume missing a chunk", lambda ws: ["verify", _damaged_volume(ws)], 2, r"damaged: \d+ problem"),
    Case("verify: an acquisition with a garbage chunk", lambda ws: ["verify", _garbage_chunk(ws)], 2, r"damaged: \d+ problem"),
    Case("verify: a user's folder", lambda ws: ["verify", ws.folder("mine", a_txt="x")], 2, r"not a Zarr group|without sxtdist metadata"),
    # -- the environment fails (exit 1) ----------------------------------------------------------------
    Case("simulate: name too long", lambda ws: ["simulate", ws / ("x" * 300 + ".zarr"), "--preset", "tiny"], 1, r"File name too long \(the name is too long"),
    Case("simulate: a name that is not UTF-8", lambda ws: ["simulate", os.fsdecode(bytes(ws / "caf") + b"\xe9.zarr"), "--preset", "tiny"], 1, r"caf\\xe9\.zarr: the name is not valid UTF-8"),
    Case("import: no permission (sysfs)", lambda ws: ["import", ws.tif("t.tif", FRAMES), "/sys/sxtdist-test.zarr", *IMPORT], 1, r"Permission denied \(no permission"),
    Case("reconstruct: output under a file", lambda ws: ["reconstruct", ws.acq(), ws.text("f.txt", "x") / "out.zarr"], 2, r"out\.zarr: cannot be made: .*f\.txt is a file, not a folder"),
    Case("info: an input name that is not UTF-8", lambda ws: ["info", os.fsdecode(bytes(ws / "b") + b"\xff.zarr")], 2, r"b\\xff\.zarr: no such file"),
]
# fmt: on


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it is: a folder, a link's target, a file's SHA-256."""
    out = {}
    for top, dirs, files in os.walk(root):
        for d in dirs:
            p = os.path.join(top, d)
            out[os.path.relpath(p, root)] = (
                f"link {os.readlink(p)}" if os.path.islink(p) else "folder"
            )
        for f in files:
            p = os.path.join(top, f)
            if os.path.islink(p):
                out[os.path.relpath(p, root)] = f"link {os.readlink(p)}"
                continue
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def one_line(err: str) -> str:
    """The one error line (the last; any lines before it are status lines, not errors)."""
    *status, last = err.strip().splitlines()
    assert last.startswith("sxtdist: error: "), err
    assert not [s for s in status if re.search(r"Error|error:|Traceback|^\s", s)], err
    return last


@pytest.fixture(scope="module")
def matrix(request):
    """Rows ``{case id: (command, code, line)}`` of the cases run, written as Markdown to
    ``--matrix FILE`` after the module (the closing note's table, from the table itself)."""
    rows: dict[str, tuple[str, int, str]] = {}
    yield rows
    path = request.config.getoption("--matrix")
    if path and rows:
        Path(path).write_text(matrix_markdown(rows))


def matrix_markdown(rows: dict[str, tuple[str, int, str]]) -> str:
    """The cases in table order: case, command, exit code, message; then the counts."""
    lines = ["| case | command | exit | message |", "|---|---|---|---|"]
    for c in CASES:
        if c.id in rows:
            command, code, line = rows[c.id]
            lines.append(f"| {c.id} | {command} | {code} | `{line}` |".replace("\n", " "))
    codes = Counter(code for _, code, _ in rows.values())
    commands = Counter(command for command, _, _ in rows.values())
    lines += [
        "",
        f"{len(rows)} of {len(CASES)} cases run; exit code "
        + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))
        + "; by command: "
        + ", ".join(f"{k} {v}" for k, v in sorted(commands.items())),
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, templates, tmp_path, run_cli, matrix):
    ws = Workspace(tmp_path / "case", templates)
    ws.root.mkdir()
    made = case.make(ws)
    before = tree(tmp_path)
    if callable(made):
        with pytest.raises(SxtdistError) as info:
            made()
        code, line = info.value.exit_code, f"sxtdist: error: {info.value}"
        assert "\n" not in line
    elif case.bounded:
        r = _run(made, limits={resource.RLIMIT_AS: BOUND})
        code, line = r.returncode, one_line(r.stderr)
    else:
        code, _, err = run_cli(*made)
        line = one_line(err)
    command = made[0] if isinstance(made, list) else case.id.split(" ")[0] + " (Python)"
    matrix[case.id] = (command, code, line.replace(f"{ws.root}/", ""))
    assert code == case.code, line
    assert re.search(case.message, line), line
    after = tree(tmp_path)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"changed or left behind: {changed}"


def test_the_table_covers_every_category_and_writer():
    assert len(CASES) >= 50
    commands = {c.id.split(":")[0].split(" ")[0] for c in CASES}
    for writer in (
        "reconstruct",
        "simulate",
        "export",
        "import",
        "batch",
        "align",
        "rechunk",
        "preview",
    ):
        assert writer in commands
    assert {c.code for c in CASES} == {1, 2}


# -- cases that need their own machinery ---------------------------------------------------------


def _run(args, limits=None, cwd=None):
    """Run ``python -m sxtdist ARGS`` with resource ``limits`` ({RLIMIT_*: bytes})."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def limit():
        for which, n in limits.items():
            resource.setrlimit(which, (n, n))

    return subprocess.run(
        [sys.executable, "-m", "sxtdist", *map(os.fspath, args)],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit if limits else None,
        cwd=cwd,
        timeout=300,
    )


def test_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    before = tree(tmp_path)
    r = _run(
        ["simulate", tmp_path / "s.zarr", "--preset", "tiny"], limits={resource.RLIMIT_FSIZE: 4096}
    )
    line = one_line(r.stderr)
    assert r.returncode == 1, r.stderr
    assert "File too large" in line and "a file grew past the size allowed" in line
    assert tree(tmp_path) == before


def mount_tmpfs(where: Path, options: str) -> None:
    """Mount a small tmpfs at ``where`` (root only; skips the test where it cannot)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the file-size-limit tests cover the rest)")
    where.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", where]).returncode:
        pytest.skip("this container may not mount a tmpfs")


@pytest.fixture
def small_mount(tmp_path):
    """A tmpfs of 4 MiB and 12 files (a tiny acquisition needs more), unmounted after."""
    where = tmp_path / "mnt"
    mount_tmpfs(where, "size=4m,nr_inodes=12")
    yield where
    subprocess.run(["umount", "-l", where], check=False)


def test_full_and_read_only_disks_are_one_line(small_mount, tmp_path, run_cli):
    code, _, err = run_cli("simulate", small_mount / "s.zarr", "--preset", "small")
    line = one_line(err)
    assert code == 2 and re.search(r"needs [\d.]+ MiB on disk; .* has [\d.]+ MiB free", line)
    code, _, err = run_cli("simulate", small_mount / "s.zarr", "--preset", "tiny")
    line = one_line(err)
    assert code == 1 and "No space left on device (the disk is full" in line, line
    assert os.listdir(small_mount) == []  # the partial acquisition and the lock are gone
    with pytest.raises(OSError) as e:  # from Python: the OSError, not zarrs' RuntimeError
        sxtdist.simulate(small_mount / "s.zarr", "tiny", 1, progress=False)
    assert e.value.errno == errno.ENOSPC and os.listdir(small_mount) == []
    subprocess.run(["mount", "-o", "remount,ro", small_mount], check=True)
    code, _, err = run_cli("simulate", small_mount / "s.zarr", "--preset", "tiny")
    line = one_line(err)
    assert code == 1 and "Read-only file system (the file system is read-only" in line, line


def test_writability_is_proved_by_a_file_not_by_os_access(tmp_path, monkeypatch):
    """os.access says yes where a write then fails (root on an NFS export that maps root to
    nobody, ACLs, some read-only bind mounts): check_can_write trusted it, and an export
    read the whole volume before failing. A file is created and removed instead: on a
    read-only mount with os.access saying yes, refused naming the folder (checked failing
    with os.access back); nothing is left behind, even when the probe's close fails."""
    from sxtdist.outputs import PROBE, check_can_write, strangers

    check_can_write(tmp_path / "a" / "out.zarr")  # a writable place: nothing left in it
    assert os.listdir(tmp_path) == []
    real_close = os.close

    def close_fails(fd):
        real_close(fd)
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "close", close_fails)
        with pytest.raises(OSError) as e:
            check_can_write(tmp_path / "out.zarr")
    assert e.value.errno == errno.EIO and e.value.filename == str(tmp_path)
    assert os.listdir(tmp_path) == []  # the probe removed all the same
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    create_volume(tmp_path / "v.zarr", VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    left = ".sxtdist-probe-" + "0" * 32  # a probe a kill left in an output: nobody's
    assert PROBE.fullmatch(left)
    (tmp_path / "v.zarr" / left).touch()
    assert strangers(str(tmp_path / "v.zarr")) == []
    where = tmp_path / "ro"
    mount_tmpfs(where, "size=1m,ro")
    try:
        monkeypatch.setattr(os, "access", lambda *a, **k: True)  # as it says there
        with pytest.raises(OSError) as e:
            check_can_write(where / "out.zarr")
        assert e.value.errno == errno.EROFS and e.value.filename == str(where)
    finally:
        subprocess.run(["umount", "-l", where], check=False)


def test_a_volume_is_created_whole_or_not_at_all(tmp_path, monkeypatch):
    """A volume is built beside and renamed in (a run killed half-way left a folder that
    no run could tell from a user's, test_faults): a failure leaves nothing, an empty
    folder is still written into, and so is a mount point (renamed over: EBUSY)."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.io import ngff
    from sxtdist.volume import create_volume, open_volume

    grid = VolumeGrid((8, 16, 16), 20.0)
    (tmp_path / "empty.zarr").mkdir()
    create_volume(tmp_path / "empty.zarr", grid, shard_z=4, chunk_z=4)
    assert open_volume(tmp_path / "empty.zarr").status == "running"
    with monkeypatch.context() as m:
        m.setattr(ngff, "create_multiscale", _fails(errno.ENOSPC))
        with pytest.raises(OSError):
            create_volume(tmp_path / "v.zarr", grid, shard_z=4, chunk_z=4)
    assert os.listdir(tmp_path) == ["empty.zarr"]
    mount_tmpfs(tmp_path / "mnt.zarr", "size=4m")
    try:
        create_volume(tmp_path / "mnt.zarr", grid, shard_z=4, chunk_z=4)
        assert open_volume(tmp_path / "mnt.zarr").status == "running"
    finally:
        subprocess.run(["umount", "-l", tmp_path / "mnt.zarr"], check=False)
    assert sorted(os.listdir(tmp_path)) == ["empty.zarr", "mnt.zarr"]


def test_a_link_at_the_hidden_creation_name_is_refused_and_kept(tmp_path):
    """A volume is built at .v.zarr.sxtdist-new, which the creation first clears: a link
    found there (into a user's folder) was unlinked, the user's link lost. sxtdist makes no
    link there: it is refused (exit 2) naming the link, kept, the folder it points to whole
    (seen failing with the link unlinked)."""
    from sxtdist.errors import InputError
    from sxtdist.geometry import VolumeGrid
    from sxtdist.outputs import new_path
    from sxtdist.volume import create_volume

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    link = new_path(tmp_path / "v.zarr")
    os.symlink(user, link)
    with pytest.raises(InputError, match=r"sxtdist-new: has the hidden name .*\(a symbolic link"):
        create_volume(tmp_path / "v.zarr", VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    assert os.readlink(link) == str(user) and not (tmp_path / "v.zarr").exists()
    assert os.listdir(user) == ["notes.txt"] and (user / "notes.txt").read_text() == "keep"


def test_links_at_the_hidden_names_a_write_clears_are_refused_and_kept(tmp_path):
    """Every write of an output clears, under its lock, a stopped creation of it and of its
    replacement (.v.zarr.sxtdist-new, ..v.zarr.sxtdist-partial.sxtdist-new): links found
    there (into a user's folder, to a user's file) were unlinked. Now each is refused
    naming it, kept, what it points to whole, the output as it was (seen failing with the
    links unlinked)."""
    from sxtdist.errors import InputError
    from sxtdist.geometry import VolumeGrid
    from sxtdist.outputs import new_path, partial_path, writing
    from sxtdist.volume import create_volume, open_volume

    out = tmp_path / "v.zarr"
    create_volume(out, VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    (tmp_path / "mine.txt").write_text("mine")
    links = (new_path(out), new_path(partial_path(out)))
    targets = (user, tmp_path / "mine.txt")
    for link, target in zip(links, targets):
        os.symlink(target, link)
        with pytest.raises(InputError, match=re.escape(os.path.basename(link)) + ": has the"):
            with writing(out, "volume", resume=True, beside=False):
                pass
        assert os.readlink(link) == str(target)
        os.remove(link)
    assert os.listdir(user) == ["notes.txt"] and (user / "notes.txt").read_text() == "keep"
    assert (tmp_path / "mine.txt").read_text() == "mine"
    assert open_volume(out).status == "running"


def test_a_disk_too_small_names_the_output_folder_not_a_hidden_partial(tmp_path):
    """A replacement is written beside (.v.zarr.sxtdist-partial): the disk check said that
    hidden name "has 164 KiB free", a path the user never gave."""
    from sxtdist.errors import ParameterError
    from sxtdist.geometry import VolumeGrid
    from sxtdist.outputs import partial_path
    from sxtdist.runner import _check_capacity

    with pytest.raises(ParameterError) as e:  # more than any disk: told at once
        _check_capacity(VolumeGrid((10**5,) * 3, 10.0), partial_path(tmp_path / "v.zarr"), False)
    assert f"; {tmp_path} has " in str(e.value) and "partial" not in str(e.value), e.value


def test_overwrite_refused_for_room_says_what_stays_and_what_to_do(
    tiny_acq, tmp_path, run_cli, monkeypatch
):
    """The disk check of a replacement ended with "; an unfinished reconstruction resumes",
    of no use to --overwrite: the old volume stays whole, its replacement is written beside
    it (both must fit), and removing it first needs only the new one's room."""
    import sxtdist.resources as resources
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    out = tmp_path / "v.zarr"
    create_volume(out, VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    before = tree(tmp_path)
    monkeypatch.setattr(resources, "disk_bytes", lambda path: (1 << 40, 1024))
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--overwrite", "--workers", "1")
    line = one_line(err)
    assert code == 1 and line.startswith(f"sxtdist: error: {out}: a volume of "), line
    assert line.endswith(
        f"({out} is left as it was: its replacement is written beside it and swapped in "
        "when complete, so both must fit; free space, write elsewhere, or remove "
        f"{out} and run without --overwrite)"
    ), line
    assert "resumes" not in line
    assert tree(tmp_path) == before  # nothing written, the old volume whole


def _fails(code: int) -> Callable[..., None]:
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def test_a_full_disk_names_the_output_and_speaks_of_resuming_only_where_it_resumes(
    templates, tmp_path, run_cli, monkeypatch
):
    """review6 'Disk-full message of export names no file and import/export say "an
    unfinished reconstruction resumes"': a write to a full disk raises an OSError that
    names no file; the line named none, and its advice was reconstruct's."""
    import sxtdist.io.export as export
    from sxtdist.cli._failures import describe

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it

    vol = Workspace(tmp_path, templates).vol()
    monkeypatch.setattr(export, "_write_mrc", full)
    code, _, err = run_cli("export", vol, tmp_path / "v.mrc", "--format", "mrc")
    assert code == 1 and one_line(err) == (
        f"sxtdist: error: {tmp_path / 'v.mrc'}: No space left on device (the disk is full: "
        "free space (or write elsewhere) and run the same command again)"
    )
    assert not os.path.exists(tmp_path / "v.mrc")
    failed = OSError(errno.ENOSPC, "No space left on device", "v.zarr")
    assert describe(failed, "reconstruct")[1].endswith("; an unfinished reconstruction resumes)")
    assert describe(failed, "batch")[1].endswith("; an unfinished reconstruction resumes)")
    assert describe(failed, "import")[1].endswith("and run the same command again)")


def test_suggested_commands_quote_their_paths(tiny_acq, tmp_path):
    """review6 'Suggested commands not quoted: the stale advice breaks on a path with a
    space': a command a message suggests, pasted into a shell, names the path."""
    import shlex

    from sxtdist.alignment.anchoring import ANCHORED_TO, stale_anchoring
    from sxtdist.runner import build_problem

    path = tmp_path / "out ß" / "a b.zarr"
    shutil.copytree(tiny_acq, path)
    acq = sxtdist.open_acquisition(path)
    anchored = {"state": "aligned", "method": "anchor", "date": "2026-12-05", ANCHORED_TO: "x"}
    acq.update_scans({"roi": {"alignment": anchored, "zone_plate_ozw_nm": None}})
    said = stale_anchoring(sxtdist.open_acquisition(path, "r"))
    command = shlex.split(said.split("align it again: ", 1)[1])
    assert command == ["sxtdist", "align", str(path), "--scans", "roi"]
    with pytest.raises(SxtdistError) as e:
        build_problem(sxtdist.open_acquisition(path, "r"), scans=["roi"], psf=True)
    command = shlex.split(str(e.value).split("set it with: ", 1)[1])
    assert command == ["sxtdist", "edit", str(path), "--scan", "roi", "--zone-plate-ozw-nm", "NM"]


def test_debug_shows_the_traceback(tmp_path):
    r = _run(["--debug", "simulate", tmp_path / ("x" * 300), "--preset", "tiny"])
    assert r.returncode == 1 and "Traceback" in r.stderr and "OSError" in r.stderr


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ValueError("\n  first\nsecond\n"), "first"),
        (KeyError(), "KeyError"),
        (RuntimeError("   "), "RuntimeError"),
        ("\n\nusage: x\n  hint", "usage: x"),
        ("", ""),
    ],
)
def test_one_line_of_an_error(error, line):
    from sxtdist.errors import one_line

    assert one_line(error) == line


def test_a_bug_is_one_line_without_debug(monkeypatch, run_cli):
    from sxtdist.cli import info

    def boom(path):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(info, "describe", boom)
    code, _, err = run_cli("info", "x")
    line = one_line(err)
    assert code == 1 and "internal error (ZeroDivisionError: division by zero)" in line
    assert "--debug" in line


def test_radians_angles_warn_naming_the_scan(tmp_path, templates):
    angles = np.linspace(-1.5, 1.5, 10)
    src = Workspace(tmp_path, templates).tif("t.tif", FRAMES)
    with pytest.warns(SxtdistWarning, match=r"scan 'roi': the 10 angles span"):
        sxtdist.io.importer.import_scan(
            src, tmp_path / "a.zarr", "roi", angles=angles, pixel_size_nm=20
        )
    assert sxtdist.open_acquisition(tmp_path / "a.zarr")["roi"].shape == (10, 16, 16)


def test_damage_is_reported_and_a_whole_volume_verifies(templates, tmp_path, run_cli):
    ws = Workspace(tmp_path, templates)
    vol = ws.vol()
    code, out, _ = run_cli("verify", vol)
    assert code == 0 and "volume whole:" in out
    code, out, _ = run_cli("info", vol)
    assert code == 0 and "DAMAGED" not in out
    _chunk_files(vol / "0")[0].unlink()
    code, out, _ = run_cli("info", vol)
    assert code == 0 and "DAMAGED: level 0 lacks 1 of" in out
    code, out, err = run_cli("verify", vol)
    assert code == 2 and "is missing" in out and "damaged" in one_line(err)


def test_verify_tells_an_interrupted_replacement_and_skips_its_leftover(tmp_path, run_cli):
    """review6 'verify calls an acquisition "whole" that every other command refuses,
    counting the leftover _partial_roi': an import killed once it had marked the scan's
    replacement left the mark (every other command refuses the acquisition) and the scan
    it was writing, ``_partial_roi``, which verify read as one of its arrays."""
    import zarr

    from sxtdist.dataset import KEY, REPLACING, REPLACING_FROM

    path = tmp_path / "a.zarr"
    scan = sxtdist.ScanData(np.full((3, 8, 16), 0.5, np.float32), [0, 60, 120], 20.0)
    sxtdist.create_acquisition(path, {"roi": scan})
    code, out, _ = run_cli("verify", path)
    whole = out.strip().splitlines()[-1]
    assert code == 0 and whole.endswith("acquisition whole: 3 chunks of 1 arrays read"), out
    shutil.copytree(path / "roi", path / "_partial_roi")  # as the killed import left it
    code, out, _ = run_cli("verify", path)
    assert code == 0 and out.strip().splitlines()[-1] == whole, out  # not counted
    assert f"note: {path / '_partial_roi'}: left by an import of scan 'roi' that stopped" in out
    root = zarr.open_group(path, mode="r+")
    root.attrs[KEY] = {**root.attrs[KEY], REPLACING: "roi", REPLACING_FROM: "/data/roi.mrc"}
    code, out, err = run_cli("verify", path)
    _, _, info = run_cli("info", path)
    assert code == 2 and "whole" not in out and "damaged: 1 problem(s)" in one_line(err)
    said = "scan 'roi' was being replaced when a write stopped"
    assert f"{path}: {said}" in out and said in info


def test_a_swap_stopped_with_the_old_output_set_aside_gets_it_back(templates, tmp_path, run_cli):
    """Where folders cannot be exchanged, a replacement renames the old output (or scan)
    aside, .old, then the new one in: killed between the two, the .old is the only copy.
    The next write puts it back instead of deleting it, even when that write then fails."""
    ws = Workspace(tmp_path, templates)
    vol = ws.vol()
    assert run_cli("export", vol, ws / "e.mrc")[0] == 0
    before = (ws / "e.mrc").read_bytes()
    os.replace(ws / "e.mrc", ws / ".e.mrc.sxtdist-partial.old")  # killed mid-swap
    code, _, err = run_cli("export", vol, ws / "e.mrc")
    assert code == 2 and "already exists" in err, err
    assert (ws / "e.mrc").read_bytes() == before
    assert not (ws / ".e.mrc.sxtdist-partial.old").exists()
    acq = ws.acq()
    roi = tree(acq / "roi")
    os.replace(acq / "roi", acq / "_partial_roi.old")  # an import --overwrite killed mid-swap
    ws.meta(acq, lambda m: m.update(replacing_scan="roi"))
    for command in ("info", "verify"):  # the only copy of the scan: never 'delete it'
        code, out, err = run_cli(command, acq)
        assert "or delete it" not in out + err, (command, out, err)
    assert "the only copy of scan 'roi'" in out, out  # verify's note
    closed = ws.tif("z.tif", np.zeros_like(FRAMES))  # refused as it is written
    code, _, err = run_cli("import", closed, acq, *IMPORT, "--overwrite")
    assert code == 2 and "no pixel with a transmission" in err, err
    assert tree(acq / "roi") == roi and not (acq / "_partial_roi.old").exists()


def test_a_tiff_folder_mixing_extension_spellings_is_one_series(templates, tmp_path, run_cli):
    """p_1.tif, p_2.TIF, p_3.tiff, p_4.TIFF (one camera's files copied by two tools) are one
    numbered series: refused as 'names of another pattern' before."""
    ws = Workspace(tmp_path, templates)
    names = ["p_1.tif", "p_2.TIF", "p_3.tiff", "p_4.TIFF"]
    for i, n in enumerate(names):
        ws.tif(f"frames/{n}", np.full((16, 16), 0.1 * (i + 1), np.float32))
    code, _, err = run_cli("import", ws / "frames", ws / "a.zarr", *IMPORT)
    assert code == 0, err
    od = sxtdist.open_acquisition(ws / "a.zarr")["roi"].data.compute()
    np.testing.assert_allclose(od[:, 0, 0], -np.log(0.1 * np.arange(1, 5)), rtol=1e-6)


def test_what_a_stopped_import_left_is_told_in_words_and_removed_by_the_next(
    templates, tmp_path, run_cli, monkeypatch
):
    """An import stopped mid-way leaves _partial_roi (perhaps before its own zarr.json) or,
    where folders cannot be swapped, the old scan set aside as _partial_full.old. verify
    printed Zarr's 'Object at _partial_roi is not recognized' warning and called the latter
    scan 'full.old', info said nothing, and no import ever removed a .old (on such a file
    system the next replacement failed on it). Now both say what each is, a user's folder
    is named as not sxtdist's, and the next import of the scan removes its leftovers."""
    ws = Workspace(tmp_path, templates)
    acq = ws.acq()
    shutil.copytree(acq / "roi" / "0", acq / "_partial_roi" / "0")  # no group zarr.json yet
    shutil.copytree(acq / "full", acq / "_partial_full.old")
    ws.folder("cell.zarr/_partial_notes", a_txt="mine")
    code, out, err = run_cli("verify", acq)
    assert code == 0 and "warning" not in err, err
    assert f"note: {acq / '_partial_roi'}: left by an import of scan 'roi' that stopped" in out
    old = f"{acq / '_partial_full.old'}: the old scan 'full', set aside by an import that stopped"
    assert f"note: {old}" in out
    assert f"note: {acq / '_partial_notes'}: not written by sxtdist: not checked" in out
    code, out, err = run_cli("info", acq)
    assert code == 0 and "warning" not in err, err
    assert f"  leftover: {old}" in out
    monkeypatch.setattr(sxtdist.outputs, "_exchange", lambda a, b: False)  # NFS and the like
    for scan in ("full", "roi"):
        sxtdist.io.importer.import_scan(
            ws.tif("t.tif", FRAMES),
            acq,
            scan,
            angle_range=(0, 90),
            pixel_size_nm=20,
            overwrite=True,
        )
    assert sorted(os.listdir(acq)) == ["_partial_notes", "full", "roi", "truth", "zarr.json"]


def test_verify_counts_what_it_does_not_list(tmp_path, run_cli, monkeypatch):
    """At most SHOWN problems and SHOWN notes are listed: the rest are counted, problems
    first, so no problem hides behind the cap or behind the notes."""
    import sxtdist.cli.verify as cli_verify
    from sxtdist.integrity import VerifyReport

    n = cli_verify.SHOWN + 5
    report = VerifyReport("v.zarr", "volume", 1, 2 * n)
    report.problems = [f"problem {i}" for i in range(n)]
    report.notes = [f"remark {i}" for i in range(n)]
    monkeypatch.setattr(cli_verify, "verify", lambda path: report)
    code, out, err = run_cli("verify", tmp_path / "v.zarr")
    lines = out.splitlines()
    shown = cli_verify.SHOWN
    assert code == 2
    assert lines[:shown] == [f"problem {i}" for i in range(shown)]
    assert lines[shown] == "... and 5 more problem(s)"
    assert lines[shown + 1 : 2 * shown + 1] == [f"note: remark {i}" for i in range(shown)]
    assert lines[-1] == "note: ... and 5 more"
    assert f"damaged: {n} problem(s)" in one_line(err) and f"the first {shown}" in err


def test_all_zero_chunks_written_through_a_reopened_array_verify(tmp_path, run_cli):
    """Zarr keeps ``write_empty_chunks`` with the array object, not in the file: a worker's
    handle (a volume opened again) and a truth volume's level 0 must still store an
    all-zero chunk, written or rewritten, or ``verify`` calls it missing (review finding 8)."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume, open_volume

    path = tmp_path / "v.zarr"
    vol = create_volume(path, VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    worker = open_volume(path, mode="r+")  # as a block task opens it
    worker.write_slices(0, np.zeros((4, 16, 16), np.float32))
    worker.write_slices(4, np.ones((4, 16, 16), np.float32))
    worker.write_slices(4, np.zeros((4, 16, 16), np.float32))  # a block written again
    vol.mark_blocks_done([0, 1])
    vol.finalize()
    code, out, err = run_cli("verify", path)
    assert code == 0 and "volume whole:" in out, out + err
    truth = np.zeros((2, 4, 300), np.float32)  # chunks of 256 columns
    truth[:, :, 256:] = 0.5  # the first chunk of the truth volume all zero (outside a cell)
    scan = sxtdist.ScanData(np.full((3, 8, 16), 0.5, np.float32), [0, 60, 120], 20.0)
    acq = tmp_path / "a.zarr"
    sxtdist.create_acquisition(acq, {"full": scan}, truth=truth, truth_meta={"voxel_size_nm": 20.0})
    code, out, err = run_cli("verify", acq)
    assert code == 0, out + err


@pytest.mark.parametrize(
    ("software", "counted_missing", "damaged"),
    [
        ("sxtdist 0.2.0", True, False),  # written before 3ef91e6: an all-zero chunk skipped
        ("sxtdist 0.2.0", False, True),  # finished with the chunk, lost since: damage
        ("sxtdist 0.2.1", True, True),  # later versions write every chunk: damage
    ],
)
def test_a_chunk_an_old_volume_never_wrote_is_noted_not_damage(
    tmp_path, run_cli, software, counted_missing, damaged
):
    """sxtdist 0.2.0 before 3ef91e6 did not write the all-zero chunks of a volume; it counted
    the chunks it had when it finished. A chunk missing then and now is a note (it reads as
    zeros), not damage: verify exits 0 and info says no DAMAGED. One lost after finishing,
    or from a version that writes every chunk, is damage."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    path = tmp_path / "v.zarr"
    vol = create_volume(path, VolumeGrid((8, 16, 16), 20.0), shard_z=4, chunk_z=4)
    vol.write_slices(0, np.zeros((4, 16, 16), np.float32))
    vol.write_slices(4, np.ones((4, 16, 16), np.float32))
    vol.mark_blocks_done([0, 1])
    vol.finalize()
    zero_shard = path / "0" / "c" / "0" / "0" / "0"
    zero_shard.unlink()  # as the old writer left it
    contents = dict(vol.meta["contents"])
    if counted_missing:
        contents["0"] -= 1
    vol.update_meta(software=software, contents=contents)
    code, out, err = run_cli("verify", path)
    _, info, _ = run_cli("info", path)
    if damaged:
        assert code == 2 and "chunk [0:4, 0:16, 0:16] is missing\n" in out, out + err
    else:
        assert code == 0, out + err
        assert (
            "note: " + str(path / "0") + ": chunk [0:4, 0:16, 0:16] is missing (possibly an "
            "all-zero chunk, which sxtdist 0.2.0 before 3ef91e6 did not write; it reads as zeros)"
        ) in out
        assert "volume whole:" in out and "DAMAGED" not in info


def test_overwrite_replaces_what_sxtdist_wrote(templates, tmp_path, run_cli):
    ws = Workspace(tmp_path, templates)
    vol = ws.vol()
    for name in ("v.mrc", "v.tif", "v.zarr"):
        assert run_cli("export", vol, tmp_path / name)[0] == 0
        code, _, err = run_cli("export", vol, tmp_path / name, "--overwrite")
        assert code == 0, err
    acq = ws.acq("sim.zarr")
    code, _, err = run_cli("simulate", acq, "--preset", "tiny", "--seed", "5", "--overwrite")
    assert code == 0, err
    assert sxtdist.open_acquisition(acq).truth_meta["seed"] == 5
    for _ in range(2):  # align's report folder (marked) is replaced without --overwrite
        code, _, err = run_cli("align", acq, "--dry-run", "--workers", "1", "--report", ws / "r")
        assert code == 0 and (ws / "r" / "sxtdist-report.json").is_file(), err
    (ws / "r" / "notes.txt").write_text("mine")  # then a user's file in it: left alone
    code, _, err = run_cli("align", acq, "--dry-run", "--workers", "1", "--report", ws / "r")
    assert code == 2 and "holding files it did not write (notes.txt)" in err
    assert (ws / "r" / "notes.txt").read_text() == "mine"
    leftovers = [p for p in os.listdir(tmp_path) if "sxtdist" in p]
    assert leftovers == [], leftovers  # no lock, no partial


def test_an_output_inside_another_is_refused_and_overwrite_keeps_what_was_put_inside(
    templates, tmp_path, run_cli
):
    """review6 'An output written inside another sxtdist output is deleted without a word
    by --overwrite of the outer one': a volume and an export written into an acquisition
    were taken, and `simulate --overwrite` of the acquisition deleted them. An output inside
    an sxtdist output is refused; an output holding what sxtdist did not put there is not
    replaced; a desktop's litter (.DS_Store) is no reason to refuse."""
    ws = Workspace(tmp_path, templates)
    acq, vol = ws.acq("a.zarr"), ws.vol()
    for args in (
        ["export", vol, acq / "x.mrc", "--format", "mrc"],
        ["reconstruct", ws.acq("b.zarr"), acq / "v.zarr", "--iterations", "1", "--workers", "1"],
        ["simulate", vol / "deeper" / "s.zarr", "--preset", "tiny"],
    ):
        code, _, err = run_cli(*args)
        assert code == 2 and "lies inside the sxtdist " in one_line(err), err
        assert "write it elsewhere" in err
    assert sorted(os.listdir(acq)) == ["full", "roi", "truth", "zarr.json"]
    (acq / "mine.txt").write_text("notes")  # put there by hand
    (acq / ".DS_Store").write_bytes(FINDER_STORE)
    code, _, err = run_cli("simulate", acq, "--preset", "tiny", "--seed", "4", "--overwrite")
    assert (
        code == 2 and "is an sxtdist acquisition holding files it did not write (mine.txt)" in err
    )
    assert (acq / "mine.txt").read_text() == "notes"
    os.remove(acq / "mine.txt")
    code, _, err = run_cli("simulate", acq, "--preset", "tiny", "--seed", "4", "--overwrite")
    assert code == 0, err
    (vol / ".DS_Store").write_bytes(FINDER_STORE)  # a volume's folder opened in Finder
    code, _, err = run_cli("export", vol, tmp_path / "e.zarr")
    assert code == 0, err


def test_overwrite_takes_what_a_stopped_run_left_inside_its_own_output(
    templates, tmp_path, run_cli
):
    """What sxtdist itself leaves inside an output when stopped is no user's file: a level
    a volume's last step was building (a Zarr array its attributes do not list yet) and a
    scan an import was writing (``_partial_roi``, with or without its own zarr.json; the old
    scan set aside, ``_partial_full.old``). ``--overwrite`` replaces such outputs; the same
    names holding a user's files are refused (the table's cases)."""
    import zarr

    ws = Workspace(tmp_path, templates)
    vol = ws.vol()
    zarr.create_array(vol / "5", shape=(2, 2, 2), dtype="f4")  # a level being built
    code, _, err = run_cli(
        "reconstruct", ws.acq("b.zarr"), vol, "--iterations", "1", "--workers", "1", "--overwrite"
    )
    assert code == 0, err
    assert not (vol / "5").exists()
    acq = ws.acq()
    shutil.copytree(acq / "roi", acq / "_partial_roi")
    shutil.copytree(acq / "full" / "0", acq / "_partial_full.old" / "0")  # no zarr.json above
    code, _, err = run_cli("simulate", acq, "--preset", "tiny", "--seed", "4", "--overwrite")
    assert code == 0, err
    assert sorted(os.listdir(acq)) == ["full", "roi", "truth", "zarr.json"]


#: What Finder writes as ``.DS_Store`` (its ``Bud1`` store; 6 KiB is usual).
FINDER_STORE = b"\0\0\0\1Bud1" + bytes(6 << 10)


def test_litter_of_its_own_form_is_no_stranger(templates, tmp_path):
    """A desktop's, Jupyter's, Zarr's and a probe's litter as they are made (plain files of
    a few KiB that begin as their formats do; Jupyter's folder of checkpoints of sxtdist's
    own files; empty files) leaves a volume one ``--overwrite`` replaces: litter is told by
    its form, and this is its form."""
    from sxtdist.outputs import strangers

    vol = Workspace(tmp_path, templates).vol()
    (vol / ".DS_Store").write_bytes(FINDER_STORE)
    (vol / "._zarr.json").write_bytes(b"\0\5\x16\x07\0\2\0\0" + bytes(4088))  # AppleDouble
    (vol / "._0").write_bytes(b"")
    (vol / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    (vol / "desktop.ini").write_text("[.ShellClassInfo]\nIconResource=x\n")
    (vol / f"zarr.{'b' * 32}.partial").write_text('{"zarr_format": 3')  # a kill's
    (vol / f".sxtdist-probe-{'c' * 32}").write_bytes(b"")
    (vol / ".ipynb_checkpoints").mkdir()
    (vol / ".ipynb_checkpoints" / "zarr-checkpoint.json").write_text("{}")
    assert strangers(str(vol)) == []
    (vol / ".ipynb_checkpoints" / "notes-checkpoint.ipynb").write_text("{}")  # of a user's
    assert strangers(str(vol)) == [".ipynb_checkpoints"]


def test_a_desktops_litter_in_a_report_folder_does_not_block_align(templates, tmp_path, run_cli):
    """review6 'A .DS_Store (or .ipynb_checkpoints) in the report folder blocks every later
    align': Finder's .DS_Store counted as a user's file, and the report was never replaced."""
    ws = Workspace(tmp_path, templates)
    acq = ws.acq()
    args = ("align", acq, "--dry-run", "--workers", "1", "--report", ws / "r")
    assert run_cli(*args)[0] == 0
    for litter in (".DS_Store", "._shifts.csv", "Thumbs.db", ".ipynb_checkpoints"):
        (ws / "r" / litter).mkdir() if litter.startswith(".ipynb") else (
            ws / "r" / litter
        ).write_text("")
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert sorted(os.listdir(ws / "r")) == [
        "alignment.png",
        "pairs.csv",
        "shifts.csv",
        "sxtdist-report.json",
    ]


def test_a_file_written_beside_and_renamed_names_itself_when_it_fails(tmp_path):
    """review6 '(Finding 7 wider) Read-only failures name sxtdist's hidden files for report
    and export too': a report's CSV failing named .v.zarr.report.csv.sxtdist-partial."""
    from sxtdist.outputs import replacing_file

    (tmp_path / "ro").mkdir()
    target = tmp_path / "ro" / "v.zarr.report.csv"
    with pytest.raises(OSError) as e, replacing_file(target) as tmp:
        shutil.rmtree(tmp_path / "ro")  # the folder gone (read-only alike: the write fails)
        open(tmp, "w").close()
    assert e.value.filename == str(target) and "partial" not in str(e.value)


def test_a_report_into_a_read_only_place_is_refused_before_reading(
    templates, tmp_path, run_cli, monkeypatch, deny_writes
):
    """review6 '(Finding 7 wider) ... report alone does all its reading first': refused
    before the volume is read, naming the file, the folder and --out; exit 1, the
    environment's failure, as README says of a permission (was 2: bugs.md R14-2)."""
    from sxtdist.volume import Volume

    vol = Workspace(tmp_path, templates).vol()
    monkeypatch.setattr(Volume, "level", lambda *a: pytest.fail("the volume was read"))
    with deny_writes(tmp_path):
        code, _, err = run_cli("report", vol)
    line = one_line(err)
    assert code == 1 and line.startswith(
        f"sxtdist: error: {vol}.report.csv: cannot be written ({tmp_path}: Permission denied)"
    ), line
    assert line.endswith("): write the report elsewhere with --out PREFIX"), line


@pytest.mark.parametrize("fmt", ["mrc", "zarr"])
def test_an_export_into_a_read_only_place_is_refused_before_reading(
    templates, tmp_path, run_cli, monkeypatch, deny_writes, fmt
):
    """review6 '(Finding 7 wider) ...': export into a read-only folder read the whole volume,
    then failed with exit 1; now refused first, naming the output and the folder, exit 1
    (the environment's failure, as README says of a permission; bugs.md R14-2)."""
    from sxtdist.volume import Volume

    vol = Workspace(tmp_path, templates).vol()
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(Volume, "level", lambda *a: pytest.fail("the volume was read"))
    out = tmp_path / "ro" / f"v.{fmt}"
    with deny_writes(tmp_path / "ro"):
        code, _, err = run_cli("export", vol, out)
    line = one_line(err)
    assert code == 1 and line == (
        f"sxtdist: error: {out}: cannot be written ({tmp_path / 'ro'}: Permission denied): "
        "export elsewhere"
    ), line
    assert os.listdir(tmp_path / "ro") == []


def test_an_export_onto_a_folder_is_refused_before_reading(
    templates, tmp_path, run_cli, monkeypatch
):
    """A file export (MRC) onto an existing folder, empty or not, is refused before the
    volume is read (it was refused only when the writing began), and the folder is kept."""
    from sxtdist.volume import Volume

    vol = Workspace(tmp_path, templates).vol()
    (tmp_path / "v.mrc").mkdir()
    monkeypatch.setattr(Volume, "level", lambda *a: pytest.fail("the volume was read"))
    code, _, err = run_cli("export", vol, tmp_path / "v.mrc", "--overwrite")
    assert code == 2 and str(tmp_path / "v.mrc") in one_line(err), err
    assert (tmp_path / "v.mrc").is_dir()


def test_a_preview_onto_a_folder_is_refused_before_the_work(
    templates, tmp_path, run_cli, monkeypatch
):
    """The preview PNG onto an existing folder is refused before any slice is computed,
    and the folder is kept."""
    import sxtdist.preview as preview

    acq = Workspace(tmp_path, templates).acq()
    (tmp_path / "pv").mkdir()
    monkeypatch.setattr(preview, "_scan_slice", lambda *a: pytest.fail("a slice was computed"))
    code, _, err = run_cli("preview", acq, "--out", tmp_path / "pv", "--overwrite")
    assert code == 2 and "pv: is a folder" in one_line(err), err
    assert (tmp_path / "pv").is_dir()


def test_info_tells_a_running_volume_from_a_stopped_one(templates, tmp_path, run_cli):
    """review6 'info calls a killed reconstruction "status running"': running only while a
    run holds the volume's lock; else stopped, and what to do."""
    import subprocess

    from sxtdist.volume import open_volume

    vol = Workspace(tmp_path, templates).vol()
    open_volume(vol).update_meta(status="running")  # as a killed run left it
    code, out, _ = run_cli("info", vol)
    assert code == 0 and "status unfinished, stopped (no run holds it: run the same" in out, out
    hold = "import sys, time\nfrom sxtdist.lock import write_lock\nwith write_lock(sys.argv[1]):\n"
    hold += "    print('held', flush=True)\n    time.sleep(60)\n"
    run = subprocess.Popen(
        [sys.executable, "-c", hold, str(vol)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert run.stdout.readline().strip() == "held"
        code, out, _ = run_cli("info", vol)
        assert code == 0 and f"status running (pid {run.pid} on " in out, out
    finally:
        run.kill()
        run.wait()


def test_info_says_a_report_beside_a_volume_is_older_than_the_volume(templates, tmp_path, run_cli):
    """review6 'A report left beside a volume describes an older state after the volume is
    resumed or replaced': info says which report files describe the volume before it was
    finished, and the command that writes them again."""
    from sxtdist.volume import open_volume

    vol = Workspace(tmp_path, templates).vol()
    code, _, err = run_cli("report", vol)
    assert code == 0, err
    code, out, _ = run_cli("info", vol)
    assert code == 0 and "report:" not in out
    open_volume(vol).update_meta(finished="2099-01-01T00:00:00+00:00")  # finished again since
    code, out, _ = run_cli("info", vol)
    assert (
        code == 0
        and (
            "  report: vol.zarr.report.png, vol.zarr.report.csv, vol.zarr.report.curves.csv describe "
            f"the volume before it was finished on 2099-01-01T00:00:00+00:00: run sxtdist report {vol} "
            "--overwrite"
        )
        in out
    ), out
    open_volume(vol).update_meta(finished="2000-01-01T00:00:00+00:00")  # the report is later
    code, out, _ = run_cli("info", vol)
    assert code == 0 and "report:" not in out


def test_overwrite_through_a_link_replaces_its_target_and_keeps_the_link(
    templates, tmp_path, run_cli
):
    """An output given as a symbolic link to an output of sxtdist's of the same kind is
    replaced where the link points; the link stays and shows the new output (a rename over
    the link used to replace the link and leave the old output at its target)."""
    ws = Workspace(tmp_path, templates)
    vol = ws.vol()
    (tmp_path / "runs").mkdir()
    acq = ws.acq("runs/sim.zarr")
    os.symlink("runs/sim.zarr", tmp_path / "latest.zarr")
    code, _, err = run_cli(
        "simulate", tmp_path / "latest.zarr", "--preset", "tiny", "--seed", "5", "--overwrite"
    )
    assert code == 0, err
    assert os.readlink(tmp_path / "latest.zarr") == "runs/sim.zarr"
    assert sxtdist.open_acquisition(acq).truth_meta["seed"] == 5
    assert run_cli("export", vol, tmp_path / "runs" / "v.mrc")[0] == 0
    os.symlink("runs/v.mrc", tmp_path / "v.mrc")
    before = os.stat(tmp_path / "runs" / "v.mrc").st_ino
    code, _, err = run_cli("export", vol, tmp_path / "v.mrc", "--overwrite", "--level", "1")
    assert code == 0, err
    assert os.path.islink(tmp_path / "v.mrc")
    assert os.stat(tmp_path / "runs" / "v.mrc").st_ino != before  # the target replaced
    leftovers = [p for d in (tmp_path, tmp_path / "runs") for p in os.listdir(d) if "sxtdist" in p]
    assert leftovers == [], leftovers


def test_an_error_in_a_worker_is_one_line_without_its_traceback(templates, tmp_path):
    """The workers' own log of a failed task (a traceback) is not shown: the client says
    it once, in one line (run as a command, so the workers' standard error is seen)."""
    acq = _garbage_chunk(Workspace(tmp_path, templates))
    before = tree(tmp_path)
    r = _run(["reconstruct", acq, tmp_path / "out.zarr", "--workers", "1", "-q"])
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == r.stderr.strip()
    assert "cannot read projections" in r.stderr
    assert tree(tmp_path) == before


@pytest.mark.timeout(30)
def test_folders_made_for_a_relative_output_are_removed_after(tmp_path, monkeypatch):
    """``batch --out new/dir`` (relative) made its folders, and a failed run removes them
    (a relative path's parents end at '', where the search for the first one once spun)."""
    from sxtdist.outputs import make_folders, remove_empty_folders

    monkeypatch.chdir(tmp_path)
    top = make_folders(os.path.join("new", "dir"))
    assert top == str(tmp_path / "new") and (tmp_path / "new" / "dir").is_dir()
    remove_empty_folders(top)
    assert os.listdir(tmp_path) == []
    assert make_folders(".") is None


def test_overwrite_of_a_hard_linked_output_leaves_its_other_name_whole(
    templates, tmp_path, run_cli, monkeypatch
):
    """An export the user keeps a second name of (a hard link, backup.mrc, no copy made):
    --overwrite writes the new file beside and renames it in, a new file, so backup.mrc
    stays the old export. Written into the old file, both names would be the new one
    (checked failing with the export written at its own path)."""
    vol = Workspace(tmp_path, templates).vol()
    out, backup = tmp_path / "v.mrc", tmp_path / "backup.mrc"
    assert run_cli("export", vol, out)[0] == 0
    os.link(out, backup)
    old = backup.read_bytes()
    with open(out, "r+b") as f:  # the user's mark in their backup, through either name
        f.seek(len(old) - 1)
        f.write(b"\x01")
    kept = backup.read_bytes()
    code, _, err = run_cli("export", vol, out, "--overwrite")
    assert code == 0, err
    assert backup.read_bytes() == kept and out.read_bytes() != kept  # each its own file
    assert out.read_bytes()[-1:] != b"\x01" and len(out.read_bytes()) == len(old)
    assert os.stat(out).st_ino != os.stat(backup).st_ino


def test_a_file_never_replaces_a_folder_and_a_failed_swap_leaves_no_partial(tmp_path):
    """review5 finding 2: a writer that did not say it writes a file, finishing one where a
    folder is: refused at the swap; the folder stays and the partial file goes."""
    from sxtdist.errors import InputError
    from sxtdist.outputs import writing

    (tmp_path / "out.mrc").mkdir()
    with pytest.raises(InputError, match=r"out\.mrc: is a folder: name the file to write"):
        with writing(tmp_path / "out.mrc", "export") as target:
            Path(target.write_path).write_text("data")
    assert (tmp_path / "out.mrc").is_dir() and sorted(os.listdir(tmp_path)) == ["out.mrc"]


# -- what a write deletes when it ends, and what a resume writes through ------------------------


def test_a_failed_reconstruction_keeps_its_new_volume_where_a_user_put_files(
    templates, tmp_path, run_cli, monkeypatch
):
    """A failed write removes what it made: a reconstruction stopped before its first block
    (Ctrl-C, a worker's error) removed its new volume, in sight at its path, with the notes a
    user had put in it meanwhile. Such a folder is kept, the notes whole, and a warning
    names them."""
    import sxtdist.runner

    out = tmp_path / "v.zarr"

    def stopped(*args, **kwargs):
        (out / "notes.txt").write_text("mine\n")  # the user, while it runs
        raise KeyboardInterrupt

    monkeypatch.setattr(sxtdist.runner, "run_tasks", stopped)
    code, _, err = run_cli("reconstruct", templates.acq, out, "--workers", "1", "--iterations", "1")
    assert code == 130 and "sxtdist: interrupted" in err and "Traceback" not in err, err
    assert (out / "notes.txt").read_text() == "mine\n"
    assert f"{out}: kept, unfinished, as it holds files sxtdist did not write (notes.txt)" in err


def test_a_user_file_put_in_an_output_while_it_is_replaced_is_kept(
    templates, tmp_path, run_cli, monkeypatch
):
    """``--overwrite`` checked the old output for a user's files when it began, and deleted
    it when the new one was done: notes put in it meanwhile went with it. It is checked
    again as it is swapped: refused (exit 2, one line naming it), the old output and the
    notes whole, the new one not left beside."""
    import sxtdist.dataset
    from sxtdist.outputs import partial_path

    acq = Workspace(tmp_path, templates).acq()
    before = tree(acq)
    write_scan = sxtdist.dataset._write_scan

    def meanwhile(*args, **kwargs):
        (acq / "notes.txt").write_text("mine\n")  # the user, as the new one is written
        return write_scan(*args, **kwargs)

    monkeypatch.setattr(sxtdist.dataset, "_write_scan", meanwhile)
    code, _, err = run_cli("simulate", acq, "--preset", "tiny", "--seed", "4", "--overwrite")
    line = one_line(err)
    assert code == 2 and line == (
        f"sxtdist: error: {acq}: is an sxtdist acquisition holding files it did not write "
        "(notes.txt): it is left alone; move them, or write the acquisition elsewhere"
    ), line
    assert (acq / "notes.txt").read_text() == "mine\n"
    os.remove(acq / "notes.txt")
    assert tree(acq) == before and not os.path.lexists(partial_path(acq))


def test_a_resume_does_not_write_through_a_link_at_a_level(templates, tmp_path, run_cli):
    """An unfinished volume whose level ``0`` is a link to a user's Zarr array: the resume
    wrote the blocks left through it, over the user's values. A listed level that is not one
    (a link, a user's folder) is refused on resume too (exit 2, naming it); all whole."""
    import zarr

    vol = Workspace(tmp_path, templates).vol()
    doc = json.loads((vol / "zarr.json").read_text())
    doc["attributes"]["sxtdist"].update(status="running", blocks_done=[0])  # interrupted
    (vol / "zarr.json").write_text(json.dumps(doc))
    shutil.move(vol / "0", tmp_path / "mine.zarr")
    mine = zarr.open_array(tmp_path / "mine.zarr", mode="r+")
    mine[...] = 7.0  # the user's own values
    os.symlink(tmp_path / "mine.zarr", vol / "0")
    before = tree(tmp_path)
    code, _, err = run_cli("reconstruct", templates.acq, vol, "--iterations", "2", "--workers", "1")
    line = one_line(err)
    assert code == 2 and line == (
        f"sxtdist: error: {vol}: is an sxtdist volume holding files it did not write (0): it "
        "is left alone; move them, or write the volume elsewhere"
    ), line
    assert tree(tmp_path) == before


def test_a_users_file_put_where_a_report_is_written_is_kept(
    templates, tmp_path, run_cli, monkeypatch
):
    """``report`` checks its files' paths when it begins, holds no lock and writes them once
    computed (minutes for a large volume): a user's CSV saved at ``VOLUME.report.csv``
    meanwhile was renamed over. Checked again as each file is renamed in: refused (exit 2,
    one line naming it), the user's file whole, no partial left."""
    import sxtdist.report

    vol = Workspace(tmp_path, templates).vol()
    mine = tmp_path / "vol.zarr.report.csv"
    halves = sxtdist.report._halves

    def meanwhile(*args, **kwargs):
        mine.write_text("my,table\n")  # the user, while the report is computed
        return halves(*args, **kwargs)

    monkeypatch.setattr(sxtdist.report, "_halves", meanwhile)
    code, _, err = run_cli("report", vol)
    line = one_line(err)
    assert code == 2 and line.startswith(
        f"sxtdist: error: {mine}: already exists and was not written by sxtdist"
    ), line
    assert mine.read_text() == "my,table\n"
    assert sorted(os.listdir(tmp_path)) == ["vol.zarr", "vol.zarr.report.csv"]


def test_notes_put_in_a_scan_while_it_is_replaced_are_kept(templates, tmp_path, monkeypatch):
    """``import --overwrite`` swaps the new scan in and removes the old one: notes a user
    put in the old scan's folder while the new one was written went with it. Checked again
    before the swap: refused (exit 2, naming the scan and the notes), the old scan and the
    notes whole, nothing left beside."""
    import sxtdist.dataset
    from sxtdist.errors import OutputExistsError

    ws = Workspace(tmp_path, templates)
    acq = _existing_acq_with_good_roi(ws)
    before = tree(acq)
    write_scan = sxtdist.dataset._write_scan

    def meanwhile(*args, **kwargs):
        (acq / "roi" / "notes.txt").write_text("mine\n")  # the user, during the import
        return write_scan(*args, **kwargs)

    monkeypatch.setattr(sxtdist.dataset, "_write_scan", meanwhile)
    with pytest.raises(OutputExistsError) as info:
        sxtdist.io.importer.import_scan(
            ws.tif("t.tif", FRAMES), acq, "roi", angle_range=(0, 90), pixel_size_nm=20,
            overwrite=True,
        )  # fmt: skip
    assert info.value.exit_code == 2
    assert str(info.value).startswith(
        f"{acq / 'roi'}: is a scan holding files sxtdist did not write (notes.txt)"
    ), info.value
    assert (acq / "roi" / "notes.txt").read_text() == "mine\n"
    os.remove(acq / "roi" / "notes.txt")
    assert tree(acq) == before


def test_an_interrupt_as_the_cluster_closes_is_one_line(templates, run_cli, monkeypatch):
    """Ctrl-C (or SIGTERM) while a command closes the cluster it started, after its work:
    the interrupt escaped ``main`` as a traceback and the process died of SIGINT (exit
    -2, seen at the end of an interrupted batch). It is one line and exit code 130."""
    import sxtdist.distributed

    def interrupted(since=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(sxtdist.distributed, "close_kept_clusters", interrupted)
    try:
        code, _, err = run_cli("info", templates.acq)
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped sxtdist's main()")
    assert code == 130 and err.strip().splitlines()[-1] == "sxtdist: interrupted", err
    assert "Traceback" not in err


def test_a_users_file_link_or_folder_at_a_temporary_file_name_is_kept(tmp_path, run_cli):
    """A file output is written under ``.NAME.sxtdist-tmp-HEX`` and each write clears those
    that killed runs left, when it can tell them for its own (empty, or a file of its kind).
    A user's file, a link to a user's file and a user's folder at such names are left alone,
    byte for byte, each named in a warning; the export itself is written."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    vol = tmp_path / "v.zarr"
    create_volume(vol, VolumeGrid((8, 16, 16), 20.0), shard_z=8, chunk_z=8).finalize()
    out = tmp_path / "e.mrc"
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's notes")
    text = tmp_path / ".e.mrc.sxtdist-tmp-0123456789abcdef0123456789abcdef"
    text.write_text("a user's file")
    link = tmp_path / ".e.mrc.sxtdist-tmp-fedcba9876543210fedcba9876543210"
    os.symlink(mine, link)
    folder = tmp_path / ".e.mrc.sxtdist-tmp-00000000000000000000000000000000"
    folder.mkdir()
    (folder / "data.bin").write_bytes(b"\x00\x01")
    code, _, err = run_cli("export", vol, out)
    assert code == 0, err
    assert out.is_file()
    assert text.read_text() == "a user's file"
    assert os.readlink(link) == str(mine) and mine.read_text() == "the user's notes"
    assert (folder / "data.bin").read_bytes() == b"\x00\x01"
    for kept in (text, link, folder):
        assert kept.name in err, err
