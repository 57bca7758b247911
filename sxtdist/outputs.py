"""Which paths a command may write, and how it replaces one: the one ownership rule.

Every command that writes (``reconstruct``, ``simulate``, ``import``, ``rechunk``, ``export``,
``batch``, ``align``'s report, ``report``, ``preview``, ``demo`` and their Python functions)
goes through :func:`check_output` and :func:`writing`:

- An output is never a path that is, contains or lies inside one of the command's
  inputs. Paths are compared resolved (symbolic links, ``..``) and by identity
  (:func:`os.path.samestat`: hard links, bind mounts), whether or not the output
  exists, with or without ``overwrite``.
- An existing output is replaced only with ``overwrite``, and only when sxtdist
  wrote it and recognises it as the same kind (:func:`recognise`): a volume for
  ``reconstruct``, an acquisition for ``simulate``, a file ``export`` made, a report
  folder holding :data:`REPORT_MARK`, a PNG whose text says sxtdist wrote it. A folder
  or file that sxtdist did not write is never replaced; an empty folder may be
  written into.
- An output that is a symbolic link is written where the link points, the link kept,
  only when that is an sxtdist output of the same kind (:func:`through_link`); any other
  link (to a user's file or folder, to nothing) is refused: renaming over it would
  replace the link and leave its target as it was.
- A replacement is written beside the output (``.<name>.sxtdist-partial``) and
  swapped into place when complete (``renameat2(RENAME_EXCHANGE)`` where the file
  system has it: the old output is whole until the new one is), then the old one
  is set aside (:func:`aside_path`) and removed. An interrupted replacement leaves the
  old output as it was. An old output this user could not remove (a folder in it
  read-only: :func:`unremovable`) is refused before any work, exit 1; one that still
  cannot be removed after the swap is left set aside, with a warning: the replacement
  is done. A file
  output is written under a name of its own instead (``.<name>.sxtdist-tmp-<hex>``,
  :func:`make_temp`), so that a kill before its mark is in it leaves nothing at the
  known name that sxtdist could not tell from a user's.
- A new folder output written in place (a reconstruction, resumable there) is built
  beside (``.<name>.sxtdist-new``) and renamed into place whole (:func:`creating`): a
  run stopped as it creates one leaves nothing at the output that could be a user's; the
  next write of the output removes it (:mod:`sxtdist.leftovers` names it meanwhile).
- One writer at a time: :func:`writing` holds :func:`sxtdist.lock.write_lock`.
- A failed write removes what it created (no empty or half-written folder stays
  behind), unless the caller keeps it to resume (an interrupted reconstruction) or a
  user put files in it meanwhile (:func:`remove_made`).
- A resume writes into the output: one whose listed level is not one (a link, a user's
  folder: :func:`strangers`) is refused rather than written through.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from .errors import (
    InputError,
    OutputExistsError,
    naming,
    one_line,
    printable,
    quoted,
    use_overwrite,
)
from .file_kinds import FILE_KINDS
from .lock import lock_path, write_lock

logger = logging.getLogger(__name__)

#: Kinds of output sxtdist writes and recognises.
KINDS = (
    "volume",
    "acquisition",
    "export",
    "alignment-report",
    "report",
    "summary",
    "preview",
    "motion",
)
#: Suffix of the folder or file a replacement is written to, beside the output.
PARTIAL_SUFFIX = ".sxtdist-partial"
#: Suffix of the file a file output is written to, beside it, before it is renamed over it:
#: ``.<name>.sxtdist-tmp-<32 hex>`` (:func:`make_temp`), a name of its own for each write,
#: made empty by sxtdist first (:data:`TEMP`).
TEMP_SUFFIX = ".sxtdist-tmp-"
#: A file output's write in progress, or left by a run killed before its rename.
TEMP = re.compile(r"\.(?P<name>.+)\.sxtdist-tmp-[0-9a-f]{32}")
#: Suffix of where :func:`swap_in` sets the old output aside, beside the replacement, when
#: the file system cannot exchange two folders (:func:`aside_path`).
OLD_SUFFIX = ".old"
#: Suffix of the folder a new folder output is built in, beside it, before it is renamed
#: into place (:func:`creating`).
NEW_SUFFIX = ".sxtdist-new"
#: Zarr's own file that a metadata write goes to before its rename over ``zarr.json``
#: (zarr 3.4's atomic write): a run killed as it updated the output's attributes leaves it.
ZARR_TEMP = re.compile(r"(zarr|\.zattrs|\.zgroup|\.zmetadata)\.[0-9a-f]{32}\.partial")
#: The file that marks an alignment report folder as sxtdist's (its only sign: a folder
#: of a user's that holds a ``shifts.csv`` is the user's).
REPORT_MARK = "sxtdist-report.json"
#: What an alignment report folder holds when its mark lists no ``files`` (older reports).
REPORT_FILES = ("shifts.csv", "pairs.csv", "alignment.png")
#: The file :func:`check_can_write` creates and removes at once: sxtdist's by its name (a
#: run killed in between leaves it), so no stranger in an output.
PROBE = re.compile(r"\.sxtdist-probe-[0-9a-f]{32}")
#: What a desktop or a tool leaves in any folder it shows (Finder, Explorer, Jupyter), and
#: macOS's ``._*`` companions: nobody's work, never a reason to leave an output alone. Litter
#: by its form, not its name alone (:func:`strangers`): a plain file (not a folder, not a
#: link) of at most :data:`LITTER_MAX_BYTES` that begins as its format does
#: (:data:`LITTER_MAGIC`); Jupyter's :data:`CHECKPOINTS` a folder of checkpoints of
#: sxtdist's own files. Anything else of these names is a user's.
OS_LITTER = (".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints")
#: The folder Jupyter keeps its checkpoints in (``STEM-checkpoint.EXT`` of ``STEM.EXT``).
CHECKPOINTS = ".ipynb_checkpoints"
#: The most a litter file weighs (a ``.DS_Store`` or a ``._*`` a few KiB, Zarr's temporary
#: metadata no more than the 1 MiB :func:`recognise` reads): a bigger one is a user's.
LITTER_MAX_BYTES = 1 << 20
#: How a litter file begins, by its name (``._`` for every ``._*``): Finder's ``Bud1``
#: store, Windows' OLE compound file, AppleDouble's magic, Zarr's JSON. An empty file is
#: litter of any of these names (nothing in it to lose).
LITTER_MAGIC = {
    ".DS_Store": b"\0\0\0\1Bud1",
    "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    "._": b"\0\5\x16\x07",
    "zarr": b"{",
}
#: Zarr's own metadata files in a Zarr output (v3, and v2's for an NGFF 0.4 export).
ZARR_FILES = ("zarr.json", ".zattrs", ".zgroup", ".zmetadata")


def partial_path(path: str | os.PathLike[str]) -> str:
    """Where a replacement of ``path`` is written before it is swapped in."""
    return _beside(path, PARTIAL_SUFFIX)


def new_path(path: str | os.PathLike[str]) -> str:
    """Where a new folder output ``path`` is built before it is renamed into place."""
    return _beside(path, NEW_SUFFIX)


def aside_path(partial: str | os.PathLike[str]) -> str:
    """Where :func:`swap_in` sets aside the old output that ``partial`` replaces (where the
    file system cannot exchange two folders), and :func:`recover_swap` looks for it."""
    return f"{os.fspath(partial)}{OLD_SUFFIX}"


def make_temp(path: str | os.PathLike[str]) -> str:
    """Make the empty file that the file output ``path`` is written to before it is renamed
    over ``path``: ``.<name>.sxtdist-tmp-<hex>`` beside it (:data:`TEMP`), made exclusively
    (a name no one had; nothing of anyone's opened), and return its path.

    Why not the known :func:`partial_path`: a file is made by its writer (mrcfile, tifffile,
    matplotlib) before the mark that tells it for sxtdist's (an MRC's label, a PNG's text)
    is in it, and a run killed in between left at that name a file no later run could tell
    from a user's, refusing every write of ``path`` until the user removed it. A kill now
    leaves a file under a name of its own, in no one's way (:func:`clear_temps`,
    :mod:`sxtdist.leftovers`)."""
    tmp = _beside(path, f"{TEMP_SUFFIX}{uuid.uuid4().hex}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp


def temps(path: str | os.PathLike[str]) -> list[str]:
    """The :func:`make_temp` files of the file output ``path`` beside it (those of runs
    killed before their rename, or of a write in progress), as paths; ``[]`` where its
    folder cannot be read."""
    folder, name = real_parent(path), os.path.basename(os.path.abspath(os.fspath(path)))
    try:
        with os.scandir(folder) as entries:
            found = [e.path for e in entries if (m := TEMP.fullmatch(e.name)) and m["name"] == name]
    except OSError:
        return []
    return sorted(found)


def clear_temps(path: str | os.PathLike[str]) -> None:
    """Remove the :func:`temps` of ``path`` that killed runs left and sxtdist can tell for
    its own (:func:`not_ours`: empty, or a file of a kind it writes); the caller holds the
    output's lock, so no write of ``path`` is using one. Any other is left, with a warning:
    a run killed before its mark was written, or a user's file of that name."""
    for tmp in temps(path):
        why = not_ours(tmp)
        if why is None:
            with suppress(FileNotFoundError):
                remove(tmp)
            continue
        logger.warning(
            "%s: left by a write of %s that stopped, but sxtdist cannot tell it for its own "
            "(%s): left alone; remove it if it is nothing of yours",
            printable(tmp),
            printable(path),
            why,
        )


def _beside(path: str | os.PathLike[str], suffix: str) -> str:
    """The hidden name ``.<name><suffix>`` beside ``path``: sxtdist's, by its name."""
    name = os.path.basename(os.path.abspath(os.fspath(path)))
    return os.path.join(real_parent(path), f".{name}{suffix}")


def real_parent(path: str | os.PathLike[str]) -> str:
    """The folder that holds ``path`` as the system finds it: ``link/../out.zarr`` is beside
    where ``link`` points, not beside ``link`` (:func:`os.path.abspath` reads ``..`` as
    text). Resolved through symbolic links; ``path`` itself need not exist."""
    head = os.path.dirname(os.fspath(path).rstrip(os.sep))
    return os.path.realpath(head or os.curdir)


# -- what is at a path ------------------------------------------------------------------------


def is_zarr_array(path: str) -> bool:
    """Whether ``path`` is a Zarr array (its v3 ``zarr.json`` says so, or a v2 ``.zarray``)."""
    meta = _read_json(os.path.join(path, "zarr.json"))
    return meta.get("node_type") == "array" or os.path.isfile(os.path.join(path, ".zarray"))


def recognise(path: str | os.PathLike[str]) -> str | None:
    """The kind of sxtdist output at ``path`` (one of :data:`KINDS`), or None.

    Reads only metadata: a Zarr group's ``sxtdist`` attributes, an exported
    Zarr's ``sxtdist_export`` attributes, an alignment report's
    :data:`REPORT_MARK` file; a file is asked of the :data:`FILE_KINDS` (an
    export's mark, a batch summary's or a report's header, a report PNG's text).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _recognise_dir(path)
    if not os.path.isfile(path):
        return None
    return next((kind for kind, is_ours in FILE_KINDS.items() if is_ours(path)), None)


def _read_json(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recognise_dir(path: str) -> str | None:
    kind = _written_as(path)
    return None if kind == "alignment-report" and strangers(path) else kind


def _written_as(path: str) -> str | None:
    """The kind of output sxtdist wrote as the folder ``path``, whatever was put in it since."""
    if _read_json(os.path.join(path, REPORT_MARK)).get("kind") == "alignment-report":
        return "alignment-report"
    return _zarr_kind(path)[0]


def _zarr_kind(path: str) -> tuple[str | None, dict]:
    """The kind of sxtdist Zarr output at ``path`` (or None) and its attributes."""
    attrs = _read_json(os.path.join(path, "zarr.json")).get("attributes") or {}
    if not attrs:  # Zarr v2 (an NGFF 0.4 export)
        attrs = _read_json(os.path.join(path, ".zattrs"))
    meta = attrs.get("sxtdist")
    if isinstance(meta, dict) and meta.get("kind", "acquisition") in ("volume", "acquisition"):
        return meta.get("kind", "acquisition"), attrs
    if isinstance(attrs.get("sxtdist_export"), dict):
        return "export", attrs
    return None, {}


def created(path: str | os.PathLike[str]) -> str | None:
    """When the volume or acquisition ``path`` was created (its metadata's ``created``, ISO
    8601 in UTC, to the second), or None (another kind, or not said)."""
    meta = _zarr_kind(os.fspath(path))[1].get("sxtdist")
    when = meta.get("created") if isinstance(meta, dict) else None
    return when if isinstance(when, str) else None


def _levels(attrs: dict) -> set[str]:
    """The paths of a multiscale image's levels (NGFF 0.5 or 0.4 attributes)."""
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    try:
        return {str(d["path"]) for m in ome.get("multiscales") or () for d in m["datasets"]}
    except (TypeError, KeyError):
        return set()


#: An acquisition's scans (:mod:`sxtdist.dataset`), the name an import writes a scan at
#: before renaming it into place (``_partial_roi``), and what an import leaves inside an
#: acquisition when it stops: the scan it was writing and, where the file system cannot
#: swap two folders, the old scan it set aside.
SCAN_NAMES = ("full", "roi")
PARTIAL_SCAN = "_partial_"
LEFTOVER_SCANS = frozenset(
    f"{PARTIAL_SCAN}{name}{end}" for name in SCAN_NAMES for end in ("", OLD_SUFFIX)
)


def _acquisition_member(path: str, name: str, meta: dict) -> bool:
    """Whether sxtdist wrote ``name`` inside the acquisition ``path`` (``meta``): a scan or
    the truth volume its metadata list, or a scan an import left when it stopped."""
    where = os.path.join(path, name)
    scans = meta.get("scans")
    if (isinstance(scans, dict) and name in scans) or (name == "truth" and "truth" in meta):
        return is_zarr_node(where)  # a user's folder put in its place is the user's
    # a stopped import's by what it holds (a Zarr tree), not by its name alone
    if name not in LEFTOVER_SCANS or not os.path.isdir(where) or os.path.islink(where):
        return False
    return not_ours(where) is None


def _volume_member(path: str, name: str, meta: dict) -> bool:
    """Whether ``name`` inside the volume ``path`` is a level that
    :meth:`sxtdist.volume.Volume.finalize` was building when it stopped: a Zarr array named
    by a number, not listed yet."""
    return name.isdigit() and is_zarr_array(os.path.join(path, name))


#: What sxtdist puts inside a Zarr output of each kind besides Zarr's own files and the
#: levels its attributes list, ``is_ours(folder, name, sxtdist_attributes)``; anything else
#: inside is a user's (:func:`strangers`). Declared here, not by the modules that write
#: them, so that they are known whatever a Python user imported.
MEMBERS: dict[str, Callable[[str, str, dict], bool]] = {
    "acquisition": _acquisition_member,
    "volume": _volume_member,
}


def strangers(path: str) -> list[str]:
    """What a folder that sxtdist wrote holds that sxtdist did not put there (a user's
    notes, another output written inside it): such a folder is not replaced, whatever it
    was. Paths relative to it, found also inside its scans and levels (``roi/notes.txt``:
    :func:`node_strangers`). ``[]`` for any other path.

    Judged by form as well as name, as a replacement deletes what is not a stranger: what
    sxtdist writes is a plain file (Zarr's metadata, a report's files) or a real folder
    (a level, a scan: a Zarr node where the metadata list it), never a symbolic link; a
    desktop's litter (:data:`OS_LITTER`), Zarr's own temporary file (:data:`ZARR_TEMP`) and
    a writability probe (:data:`PROBE`) are no strangers only as the small plain files they
    are. A folder or link of any of these names, or a 2 GB ``.DS_Store``, is a user's.
    """
    mark = _read_json(os.path.join(path, REPORT_MARK))
    kind, attrs = _zarr_kind(path) if mark.get("kind") != "alignment-report" else ("", {})
    if kind is None:
        return []
    try:
        names = os.listdir(path)
    except OSError:
        return []
    forms = {n: _form(os.path.join(path, n)) for n in names}
    if not kind:  # an alignment report: the files its mark lists
        listed = mark.get("files")
        files = {*(listed if isinstance(listed, list) else REPORT_FILES), REPORT_MARK}
        ours = {n for n in names if n in files and forms[n] == "file"}
    else:  # Zarr's files, the levels listed, and what the writer of the kind says is its
        ours = {n for n in names if n in ZARR_FILES and forms[n] == "file"}
        ours |= {n for n in _levels(attrs) & set(names) if is_zarr_node(os.path.join(path, n))}
        meta = attrs.get("sxtdist") if isinstance(attrs.get("sxtdist"), dict) else {}
        is_ours = MEMBERS.get(kind)
        folders = [n for n in names if forms[n] == "folder" and n not in ours]
        ours |= {n for n in folders if is_ours and is_ours(path, n, meta)}
    foreign = set(names) - ours - _litter(path, names, ours)
    for n in sorted(ours):  # inside the scans and levels (a user's notes put in ``roi/``)
        foreign |= {f"{n}/{x}" for x in node_strangers(os.path.join(path, n))}
    return sorted(foreign)


def _form(path: str) -> str:
    """``"file"`` (a plain file), ``"folder"`` (a real one), ``"link"`` or ``"other"``
    (a socket, a device, gone): what is at ``path`` itself, links not followed."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "other"
    if stat.S_ISLNK(mode):
        return "link"
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


def is_zarr_node(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a real folder (not a link) holding a Zarr node's metadata as a
    plain file (v3 ``zarr.json``, v2 ``.zarray`` or ``.zgroup``): the form of a level or a
    scan sxtdist wrote; a user's folder put in its place is not."""
    path = os.fspath(path)
    return _form(path) == "folder" and any(
        _form(os.path.join(path, f)) == "file" for f in ("zarr.json", ".zarray", ".zgroup")
    )


#: A chunk's key inside a Zarr array's folder (v2 ``0.0.0``, or a folder ``0`` of ``0/0/0``).
CHUNK_KEY = re.compile(r"[0-9]+(\.[0-9]+)*")
#: One part of a chunk's key below ``c/`` (v3 ``c/0/1/2``) or a v2 folder ``0/1/2``.
CHUNK_PART = re.compile(r"[0-9]+")


def node_strangers(folder: str | os.PathLike[str]) -> list[str]:
    """What the Zarr node ``folder`` of an output (a scan, a level) holds that Zarr did not
    write, as paths relative to it, down through its child nodes (a scan's levels) and its
    chunk folders (``c/``, or a v2 key's folder ``0/``), where Zarr writes only chunks of
    numbered names (:func:`chunk_strangers`: a user's ``c/notes.txt`` goes with the level).

    ``[]`` where it is no Zarr node (:func:`is_zarr_node`).
    """
    folder = os.fspath(folder)
    if not is_zarr_node(folder):
        return []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    ours = set()
    for n in names:
        form = _form(os.path.join(folder, n))
        if (
            (n in (*ZARR_FILES, ".zarray") and form == "file")
            or (n == "c" and form == "folder")
            or (CHUNK_KEY.fullmatch(n) and form in ("file", "folder"))
            or is_zarr_node(os.path.join(folder, n))
        ):
            ours.add(n)
    found = sorted(set(names) - ours - _litter(folder, names, ours))
    for n in sorted(ours):
        where = os.path.join(folder, n)
        inner = node_strangers(where) if is_zarr_node(where) else chunk_strangers(where)
        found += [f"{n}/{x}" for x in inner]
    return found


def chunk_strangers(folder: str | os.PathLike[str]) -> list[str]:
    """What the chunk folder ``folder`` of a Zarr array (``c/``, or a v2 key's ``0/``) holds
    that is no chunk: anything but plain files and real folders of numbered names
    (:data:`CHUNK_PART`), all the way down, and a desktop's litter (:data:`OS_LITTER`).
    Paths relative to it; ``[]`` for a file (a chunk) or where it cannot be read."""
    folder = os.fspath(folder)
    if _form(folder) != "folder":
        return []
    try:
        with os.scandir(folder) as entries:
            forms = {e.name: _entry_form(e) for e in entries}
    except OSError:
        return []
    chunks = {n for n, f in forms.items() if CHUNK_PART.fullmatch(n) and f in ("file", "folder")}
    found = sorted(set(forms) - chunks - _litter(folder, forms, set()))
    for n in sorted(n for n in chunks if forms[n] == "folder"):
        found += [f"{n}/{x}" for x in chunk_strangers(os.path.join(folder, n))]
    return found


def _entry_form(entry: os.DirEntry) -> str:
    """:func:`_form` of a listed entry, from the listing where it can (one chunk file
    after another: no ``lstat`` of each)."""
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_file(follow_symlinks=False):
            return "file"
        return "folder" if entry.is_dir(follow_symlinks=False) else "other"
    except OSError:
        return "other"


def _litter(folder: str, names: Iterable[str], ours: set[str]) -> set[str]:
    """Which of ``names`` in ``folder`` are a desktop's, Zarr's or a probe's litter, by
    form (:data:`OS_LITTER`); ``ours``: sxtdist's own names there, whose checkpoints
    Jupyter may keep."""
    found = {os.path.basename(p) for p in probes(folder)}
    for name in names:
        where = os.path.join(folder, name)
        if name == CHECKPOINTS:
            found |= {name} if _only_checkpoints(where, ours) else set()
        elif name in OS_LITTER or name.startswith("._"):
            magic = LITTER_MAGIC.get("._" if name.startswith("._") else name, b"")
            found |= {name} if _litter_file(where, magic) else set()
        elif ZARR_TEMP.fullmatch(name):  # a kill's, as Zarr rewrote its metadata
            found |= {name} if _litter_file(where, LITTER_MAGIC["zarr"]) else set()
    return found


def _litter_file(path: str, magic: bytes) -> bool:
    """Whether ``path`` is a plain file of litter's size that is empty or begins with
    ``magic`` (any content where ``magic`` is empty)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > LITTER_MAX_BYTES:
            return False
        with open(path, "rb") as f:
            head = f.read(len(magic))
    except OSError:
        return False
    return st.st_size == 0 or head == magic


def _only_checkpoints(path: str, ours: set[str]) -> bool:
    """Whether ``path`` is a real folder holding nothing but Jupyter's checkpoints of the
    files named ``ours`` beside it (``zarr-checkpoint.json`` of ``zarr.json``): a checkpoint
    of a user's notebook, maybe its last copy, is the user's."""
    if _form(path) != "folder":
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    for name in names:
        stem, ext = os.path.splitext(name)
        if not (stem.endswith("-checkpoint") and stem.removesuffix("-checkpoint") + ext in ours):
            return False
        if not _litter_file(os.path.join(path, name), b""):
            return False
    return True


def probes(folder: str | os.PathLike[str]) -> list[str]:
    """The writability probes in ``folder`` (:data:`PROBE`: empty files of that name, as
    :func:`check_can_write` makes them; a folder, a link or a file holding anything is a
    user's), as paths; ``[]`` where it is no folder or cannot be read."""
    try:
        with os.scandir(folder) as entries:
            found = [e.path for e in entries if PROBE.fullmatch(e.name) and _empty_file(e)]
    except OSError:
        return []
    return sorted(found)


def _empty_file(entry: os.DirEntry) -> bool:
    try:
        return (
            entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0
        )
    except OSError:
        return False


def is_empty_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder that holds nothing, or only the writability probes
    (:func:`probes`) of a run killed as it checked it: those are sxtdist's, and
    :func:`creating` clears them."""
    try:
        names = os.listdir(path) if os.path.isdir(path) else None
    except OSError:  # unreadable: not known to be empty
        return False
    return names is not None and len(names) == len(probes(path))


# -- sxtdist's hidden names --------------------------------------------------------------------


def not_ours(path: str | os.PathLike[str]) -> str | None:
    """Why what is at ``path``, one of sxtdist's hidden names (a :func:`partial_path`, a
    :func:`new_path`, an :func:`aside_path`, a scan being imported), is not what sxtdist
    leaves there: None when it is (or nothing is there), and may be removed or put back.

    Told by what sxtdist always makes there, never by the name alone (a user's file or
    folder, or another tool's, may have it): an empty file or folder (nothing to lose); a
    file sxtdist recognises (:func:`recognise`: a summary's or a report's header, an
    export's mark, a preview's text), or a folder holding only what sxtdist and Zarr write
    (:func:`leftover_strangers`: an output of sxtdist's, a Zarr tree being written, an
    alignment report's files before its mark). A symbolic link is never sxtdist's: it makes
    none at these names, so one there is a user's (unlinked, it would be lost).
    """
    path = os.fspath(path)
    form = _form(path)
    if form == "link":
        return f"a symbolic link to {printable(os.readlink(path))}: sxtdist makes none there"
    if not os.path.lexists(path):
        return None
    if form == "file":
        empty = os.path.getsize(path) == 0
        return None if empty or recognise(path) else "a file sxtdist did not write"
    if form != "folder":
        return "not a file or folder sxtdist writes"
    try:
        foreign = leftover_strangers(path)
    except OSError as exc:
        return f"a folder sxtdist cannot read ({exc.strerror or one_line(exc)})"
    return f"holding files sxtdist did not write ({first_named(foreign)})" if foreign else None


def leftover_strangers(folder: str) -> list[str]:
    """What the real folder ``folder`` at a hidden name of sxtdist's holds that sxtdist or
    Zarr did not write there, as paths relative to it (:func:`strangers` of an output,
    :func:`node_strangers` of a Zarr tree, its levels and chunks; an alignment report's
    files before its mark is written). Raises :class:`OSError` where it cannot be read."""
    if _written_as(folder):
        return strangers(folder)
    if is_zarr_node(folder):  # a Zarr group or array being written, its attributes not yet
        return node_strangers(folder)
    forms = {n: _form(os.path.join(folder, n)) for n in os.listdir(folder)}
    ours = {n for n in forms if is_zarr_node(os.path.join(folder, n))}  # a scan's level
    if not ours:  # an alignment report's files, written before its mark
        ours = {n for n, form in forms.items() if n in REPORT_FILES and form == "file"}
    foreign = sorted(set(forms) - ours - _litter(folder, forms, ours))
    for n in sorted(ours):
        foreign += [f"{n}/{x}" for x in node_strangers(os.path.join(folder, n))]
    return foreign


def check_leftover(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Refuse (:class:`InputError`, naming ``path``) to remove or put back what is at the
    hidden name ``path`` of the output ``out`` unless sxtdist left it (:func:`not_ours`)."""
    why = not_ours(path)
    if why is not None:
        raise InputError(
            path,
            f"has the hidden name sxtdist gives its unfinished writes of {printable(out)}, "
            f"but sxtdist did not write it ({why}): it is left alone; move or rename it "
            "(or remove it, if it is nothing of yours), then run the command again",
        )


def remove_leftover(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Remove what a stopped write of ``out`` left at its hidden name ``path`` (nothing if
    absent): only what sxtdist left there (:func:`check_leftover`)."""
    check_leftover(path, out)
    remove(os.fspath(path))


# -- the rule ----------------------------------------------------------------------------------


def check_name(path: str | os.PathLike[str]) -> str:
    """``path`` as text; a name that is not valid UTF-8 is refused (Zarr's and JSON's
    metadata need it) as the file system's problem (``EILSEQ``, exit code 1)."""
    text = os.fsdecode(path)
    try:
        os.fsencode(text).decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EILSEQ, "the name is not valid UTF-8 (rename it)", text) from None
    return text


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _ancestors(path: str) -> list[os.stat_result]:
    """The identities of the existing folders above ``path`` (resolved)."""
    out = []
    p = os.path.realpath(path)
    while (parent := os.path.dirname(p)) != p:
        p = parent
        st = _stat(p)
        if st is not None:
            out.append(st)
    return out


def check_can_write(path: str | os.PathLike[str]) -> None:
    """Raise now the :class:`OSError` that writing ``path`` would meet (a read-only file
    system, no permission), naming the folder that cannot be written, before long work
    whose result goes there (or that is stored in it: an alignment's shifts in the
    acquisition).

    Both must be writable: the nearest folder that exists at or above ``path`` (the
    output's own files; the output itself when it is a folder) and the one that holds its
    lock (:func:`sxtdist.lock.lock_path`: beside it, once resolved). Each is proved so by
    creating a file of a unique name in it (:data:`PROBE`) and removing it at once:
    :func:`os.access` says yes where a write then fails (root on an NFS export that maps
    root to nobody, ACLs it does not read, a read-only bind mount on some kernels).
    Nothing is locked: another writer holding the lock now is no error here.
    """
    folders = (_nearest_folder(path), _nearest_folder(os.path.dirname(lock_path(path))))
    for folder in dict.fromkeys(folders):
        probe = os.path.join(folder, f".sxtdist-probe-{uuid.uuid4().hex}")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.close(fd)
            finally:  # made: removed whatever happens (left by a kill, it is nobody's)
                try:
                    os.remove(probe)
                except OSError:
                    pass
        except OSError as exc:  # the folder the user can do something about, not the probe
            raise OSError(exc.errno, exc.strerror or one_line(exc), folder) from None


class UnwritableError(InputError):
    """``path`` cannot be written (a read-only file system, no permission), told before the
    work whose result goes there (:func:`require_writable`): one line naming it, the folder
    and what to do, and exit code 1, the environment's failure, as a write that fails later
    (README: "1 when the environment fails (disk full, read-only, permission)")."""

    exit_code = 1


def require_writable(path: str | os.PathLike[str], advice: str) -> None:
    """:func:`check_can_write`, refused as :class:`UnwritableError`: "``path``: cannot be
    written (FOLDER: why): ``advice``", told before the work whose result goes there."""
    try:
        check_can_write(path)
    except OSError as exc:
        why = f"{printable(exc.filename)}: {exc.strerror or one_line(exc)}"
        raise UnwritableError(os.fspath(path), f"cannot be written ({why}): {advice}") from None


def _nearest_folder(path: str | os.PathLike[str]) -> str:
    """The folder at or above ``path`` that exists (a file's own folder)."""
    p = os.path.abspath(os.fspath(path))
    while not os.path.lexists(p):
        p = os.path.dirname(p)
    return p if os.path.isdir(p) else os.path.dirname(p)


def check_not_input(out: str, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output that is, lies inside or contains one of ``inputs``."""
    real_out = os.path.realpath(out)
    out_st = _stat(real_out)
    above_out = _ancestors(real_out)
    for given in inputs:
        if given is None:
            continue
        inp = os.fspath(given)
        real_in = os.path.realpath(inp)
        in_st = _stat(real_in)
        if real_out == real_in or (out_st and in_st and os.path.samestat(out_st, in_st)):
            raise InputError(out, f"is the input {inp}; write the output elsewhere")
        if _inside(real_out, real_in) or (
            in_st and any(os.path.samestat(in_st, a) for a in above_out)
        ):
            raise InputError(out, f"lies inside the input {inp}; write the output elsewhere")
        if _inside(real_in, real_out) or (
            out_st and any(os.path.samestat(out_st, a) for a in _ancestors(real_in))
        ):
            raise InputError(out, f"contains the input {inp}; write the output elsewhere")


def _check_folder_above(out: str) -> None:
    """Refuse an output below a file (``notes.txt/out.zarr``): its folder cannot be made;
    and one inside an output of sxtdist's (``cell.zarr/vol.zarr``): replacing that one
    would delete it without a word."""
    p = real_parent(out)  # ``link/..`` is above where the link points
    while not os.path.lexists(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p):
        raise InputError(out, f"cannot be made: {p} is a file, not a folder")
    while True:
        kind = _written_as(p)
        if kind:
            raise InputError(
                out,
                f"lies inside the sxtdist {kind} {p}: write it elsewhere (replacing "
                f"{os.path.basename(p)} would delete it)",
            )
        if os.path.dirname(p) == p:
            return
        p = os.path.dirname(p)


def _inside(child: str, parent: str) -> bool:
    return os.path.commonpath([child, parent]) == parent and child != parent


def through_link(out: str, kind: str) -> str:
    """The path to write for the output ``out``: ``out`` itself, or where it points when it
    is a symbolic link to an sxtdist output of ``kind`` (the link stays and shows the new
    output). Any other link is refused (:class:`InputError`)."""
    if not os.path.islink(out):
        return out
    real = os.path.realpath(out)
    found = recognise(real) if os.path.lexists(real) else None
    if found == kind:
        return real
    if not os.path.lexists(real):
        what = "which does not exist"
    elif found:
        what = f"an sxtdist {found}"
    else:
        what = "an empty folder" if is_empty_folder(real) else "which sxtdist did not write"
    raise InputError(
        out,
        f"is a symbolic link to {real}, {what}: sxtdist writes through a link only into "
        f"an sxtdist {kind} it replaces; give the path to write itself",
    )


def check_output(
    out: str | os.PathLike[str],
    kind: str,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    resume: bool = False,
    file: bool = False,
) -> str | None:
    """Check that ``out`` may be written as an output of ``kind``; what is there now.

    ``file``: the output is a file, so an existing folder there (even an empty one, or
    a link to one) is refused rather than replaced by it.

    Returns ``None`` when nothing (or an empty folder) is at ``out``, else ``kind``
    (an output sxtdist wrote, of that kind). Raises :class:`InputError` for an
    output that is, lies inside or contains an input, or that sxtdist did not
    write as that kind; :class:`OutputExistsError` when it exists and neither
    ``overwrite`` nor ``resume`` (the caller continues an unfinished one) is given.
    """
    return _claim(out, kind, inputs, overwrite, resume, file)[1]


#: How a message names an output kind.
_NOUN = {"alignment-report": "report"}


def _claim(
    out: str | os.PathLike[str],
    kind: str,
    inputs: Iterable[str | os.PathLike[str] | None],
    overwrite: bool,
    resume: bool,
    file: bool,
    removable: bool = True,
) -> tuple[str, str | None]:
    """:func:`check_output`, and the path to write (:func:`through_link`); ``removable``:
    also refuse to replace what this user could not remove (:func:`_check_removable`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    out = check_name(out)
    inputs = [check_name(i) for i in inputs if i is not None]
    check_not_input(out, inputs)
    if file and os.path.isdir(out):
        raise InputError(out, "is a folder: name the file to write")
    out = through_link(out, kind)
    _check_folder_above(out)
    if not os.path.lexists(out) or is_empty_folder(out):
        return out, None
    foreign: list[str] = []
    if not os.path.isdir(out):
        found = recognise(out)
    elif found := _written_as(out):  # strangers: a report is not one; others not replaced
        if found == "alignment-report" or overwrite:
            foreign = strangers(out)
        elif resume:  # written into: a level that is a link or a user's folder is written
            # through; and what a user put where the resume writes or deletes (_resumed_over)
            levels = _levels(_zarr_kind(out)[1])
            foreign = [f for f in strangers(out) if f in levels or _resumed_over(f)]
    if foreign:  # a replacement would delete them with the folder
        what = "an alignment report" if found == "alignment-report" else f"an sxtdist {found}"
        raise OutputExistsError(
            out,
            f"is {what} holding files it did not write ({first_named(foreign)}): it "
            f"is left alone; move them, or write the {_NOUN.get(kind, kind)} elsewhere",
        )
    if found != kind:
        what = f"is an sxtdist {found}" if found else "was not written by sxtdist"
        raise OutputExistsError(
            out, f"already exists and {what}, not an sxtdist {kind}: it is left alone"
        )
    if not (overwrite or resume):
        raise OutputExistsError(out, f"already exists ({use_overwrite()})")
    if overwrite and removable:  # replaced: what the replacement removes must be removable
        _check_removable(out, kind, resume)
    return out, found


def unremovable(path: str | os.PathLike[str]) -> list[str]:
    """The folders of the tree ``path`` (itself included; links not followed) whose entries
    this user cannot remove: without read, write or search permission (:func:`os.access`
    as the effective user, who removes them; root passes, as its removal would). ``[]`` for
    a file, a link or nothing: a file is removed by its folder's permission alone."""
    path = os.fspath(path)
    if _form(path) != "folder":
        return []
    effective = os.access in os.supports_effective_ids
    mode = os.R_OK | os.W_OK | os.X_OK
    # a folder that cannot be listed is named, and not entered (os.walk passes it over)
    return [top for top, _, _ in os.walk(path) if not os.access(top, mode, effective_ids=effective)]


def _check_removable(out: str, kind: str, resume: bool) -> None:
    """Refuse (:class:`UnwritableError`, naming ``out``) to replace the output ``out`` when
    what the replacement removes cannot be removed by this user (:func:`unremovable`): the
    old output once the new one is swapped in (made read-only, ``chmod -R a-w``, or another
    user's); an old copy an earlier replacement set aside (:func:`aside_path`); what one
    left at :func:`partial_path`, unless ``resume`` (then it is written into, not removed).

    Why before the work: found only after the swap, the command failed (exit 1, naming an
    inner ``zarr.json``) with the new output in place and the old one left beside it.
    """
    noun = _NOUN.get(kind, kind)
    partial = partial_path(out)
    beside = {
        aside_path(partial): f"the old {noun} that an earlier replacement set aside",
        partial: "what an earlier replacement left",
    }
    for old in (out, *list(beside)[: 1 if resume else 2]):
        locked = [printable(f) for f in unremovable(old)]
        if not locked:
            continue
        where = f"no write permission for this user in {first_named(locked)}"
        if old == out:
            raise UnwritableError(
                out,
                f"cannot be replaced: the old {noun} could not be removed once the new one is "
                f"in place ({where}): it is left as it was; make it writable "
                f"(chmod -R u+w {quoted(out)}), or write the {noun} elsewhere",
            )
        raise UnwritableError(
            out,
            f"cannot be replaced: {beside[old]}, {printable(old)}, cannot be removed ({where}): "
            f"remove it (chmod -R u+w {quoted(old)} && rm -r {quoted(old)}), then run the "
            "command again",
        )


def rebuilt_strangers(path: str | os.PathLike[str]) -> list[str]:
    """What a user put in the coarser levels of the volume ``path`` (``1/notes.txt``), which
    its last step deletes to build again (:meth:`sxtdist.volume.Volume.finalize`): checked
    again there, as a file put in one while the run wrote its blocks would go with it."""
    return [f for f in strangers(os.fspath(path)) if _resumed_over(f) and f.split("/")[0] != "0"]


def _resumed_over(stranger: str) -> bool:
    """Whether a resume of an unfinished volume would delete, or write through, the stranger
    ``stranger`` (a path :func:`strangers` gives).

    A resume writes level ``0``'s chunks (``0/c/Z/Y/X``), then deletes each coarser level
    and builds it again (:meth:`sxtdist.volume.Volume.finalize`): what a user put inside a
    coarser level (``1/notes.txt``) or under a numbered name where one is built (``3``) goes,
    and a link or file on a chunk's path in level 0 (``0/c``, ``0/c/1``) is written through.
    Anything else in level 0 (``0/notes.txt``, ``0/c/notes.txt``, ``0/c/1/notes.txt``) the
    resume never touches: it stays, and the resume goes ahead.
    """
    top, _, rest = stranger.partition("/")
    if CHUNK_PART.fullmatch(top) is None:
        return False  # beside the levels: never touched
    if top != "0":
        return True
    first, *below = rest.split("/")
    return first == "c" and all(CHUNK_PART.fullmatch(p) for p in below)


# -- writing -----------------------------------------------------------------------------------


@dataclass
class Target:
    """Where a claimed output is written.

    Parameters
    ----------
    path
        The output.
    write_path
        Where to write now: ``path`` itself, or :func:`partial_path` when the output
        is written beside and swapped in on success.
    """

    path: str
    write_path: str

    @property
    def beside(self) -> bool:
        return self.write_path != self.path


@contextmanager
def writing(
    out: str | os.PathLike[str],
    kind: str,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    resume: bool = False,
    beside: bool = True,
    keep: Callable[[BaseException, str], bool] | None = None,
    file: bool = False,
) -> Iterator[Target]:
    """Claim ``out`` (:func:`check_output`), hold its lock, and write it safely.

    With ``beside`` (or when replacing an existing output) the caller writes to
    ``target.write_path`` beside the output, and on success it is swapped into
    place, ``out`` checked again first (a user's file put in the old output, or at its
    path, while the new one was written refuses the swap; an old output made read-only
    meanwhile does not: :func:`install` warns); otherwise it writes ``out``
    itself (a resumable output that is visibly unfinished while written). A file output
    (``file``) is written beside under a name of its own (:func:`make_temp`; those that
    killed runs left and sxtdist tells for its own are removed: :func:`clear_temps`). A
    leftover at the partial path (an interrupted write) is removed first unless ``resume``. On
    failure, what this call created is removed (:func:`remove_made`: not a folder where a
    user put files) unless ``keep(exc, write_path)`` says to keep it for a resume.
    ``file``: as :func:`check_output`'s.
    """
    inputs = list(inputs)
    out = _claim(out, kind, inputs, overwrite, resume, file)[0]  # where a link points
    parent = os.path.dirname(os.path.abspath(out))
    made_parent = make_folders(parent)
    try:
        with write_lock(out):
            recover_swap(partial_path(out), out)
            # a creation stopped (:func:`creating`): no one creates it now that the lock is
            # ours; said cleared by ``sxtdist info``; sxtdist's by what it holds, not its name
            for stopped in (new_path(out), new_path(partial_path(out))):
                remove_leftover(stopped, out)
            # checked again under the lock: another run may have written it meanwhile
            existing = check_output(
                out, kind, inputs=inputs, overwrite=overwrite, resume=resume, file=file
            )
            replace = existing is not None and overwrite
            write_path = partial_path(out) if (beside or replace) else out
            if write_path != out:  # removed, or resumed: only a write of sxtdist's
                check_leftover(write_path, out)
                if not resume:
                    remove_beside(write_path, out, "what an earlier replacement left")
            created = not os.path.lexists(write_path)
            if file and write_path != out:  # a file: under a name of its own (make_temp)
                clear_temps(out)
                write_path, created = make_temp(out), True
            target = Target(out, write_path)
            here = {os.path.abspath(p) for p in (out, write_path)} - _WRITING
            _WRITING.update(here)
            try:
                yield target
                if target.beside:
                    # again as it is replaced: while it was written, a user may have put a
                    # file in the old output (or one of theirs at its path); an old output
                    # made read-only meanwhile is no reason to lose the work: install warns
                    _claim(out, kind, inputs, overwrite, resume, file, removable=False)
                    install(write_path, out, kind)
            except BaseException as exc:  # a failed install too: no partial left behind
                if created and not (keep and keep(exc, write_path)):
                    remove_made(write_path)
                raise
            finally:
                _WRITING.difference_update(here)
    except BaseException:
        if made_parent:
            remove_empty_folders(made_parent)
        raise


#: The outputs this process writes now under :func:`writing`, and where (absolute paths):
#: their locks are held (:func:`written_here`).
_WRITING: set[str] = set()


def written_here(path: str | os.PathLike[str]) -> bool:
    """Whether this process writes ``path`` now under :func:`writing`, holding the output's
    lock (``path`` the output or where it is written): a function that creates it for such
    a caller (:func:`sxtdist.volume.create_volume`) then takes no lock of its own, which
    the caller's would refuse."""
    return os.path.abspath(os.fspath(path)) in _WRITING


@contextmanager
def replacing_file(path: str | os.PathLike[str], kind: str | None = None) -> Iterator[str]:
    """Write a file beside ``path`` (at the :func:`make_temp` path yielded) and rename it over
    ``path`` when the block ends: a reader never sees half a file, and a failed write
    leaves no partial behind and ``path`` as it was. Whether ``path`` may be written is
    the caller's to check first (:func:`check_output`: a symbolic link there leads to a
    file of sxtdist's, which is replaced, the link kept). ``kind``: checked again as
    the file is renamed over (:func:`check_output`), for a caller that checked long before
    and holds no lock: a user's file put at ``path`` meanwhile is refused, not replaced."""
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)
    # an earlier version's stopped write at the known name: cleared, a user's file refused
    remove_leftover(partial_path(path), path)
    try:  # written under a name of its own (make_temp): a kill leaves no unmarked partial
        tmp = make_temp(path)
    except OSError as exc:
        raise naming(exc, path) from exc
    try:
        yield tmp
        if kind is not None:
            check_output(path, kind, overwrite=True, file=True)
        os.replace(tmp, path)
    except OSError as exc:  # the file the user named, not the hidden one beside it
        if exc.filename != tmp or exc.errno is None:
            raise
        raise naming(exc, path) from exc
    finally:
        remove(tmp)  # nothing there after the rename


def creating(path: str | os.PathLike[str], build: Callable[[str], None]) -> None:
    """Make the new folder output ``path`` whole or not at all: ``build(folder)`` writes it
    in a folder beside (:func:`new_path`), which is then renamed to ``path``.

    Built in place, a run stopped between Zarr's first file and the attributes that say
    sxtdist wrote it (killed as it created a volume) left a folder that no later run can
    tell from a user's; stopped now, it leaves the hidden folder beside, which the next
    creation of ``path`` removes as its own. ``path`` is absent or an empty folder (its
    owner's to check, holding its lock); an empty folder that cannot be renamed over (a
    mount point) is built in place, as before.
    """
    path = os.fspath(path)
    new = new_path(path)
    remove_leftover(new, path)  # a creation stopped before its rename
    try:
        build(new)
        _clear_probes(path)  # a killed run's: a rename over a folder needs it empty
        os.rename(new, path)  # over an empty folder too
    except BaseException as exc:
        remove(new)
        if not (isinstance(exc, OSError) and exc.filename2 == path):
            raise
        if exc.errno not in (errno.EBUSY, errno.EXDEV):
            raise naming(exc, path) from exc  # the output, not ``new``
        build(path)  # ``path`` is a mount point: written in place


def _clear_probes(folder: str) -> None:
    """Remove the writability probes (:func:`probes`) in ``folder`` (not through a link)."""
    for probe in [] if os.path.islink(folder) else probes(folder):
        with suppress(FileNotFoundError):  # another run's, just removed
            os.remove(probe)


def make_folders(path: str) -> str | None:
    """Create folder ``path`` and missing parents; the topmost folder created, or None."""
    top = None
    p = path = os.path.abspath(path)  # a relative path's dirname ends at '', not '/'
    while not os.path.exists(p):
        top = p
        p = os.path.dirname(p)
    if top is not None:
        os.makedirs(path, exist_ok=True)
    return top


def remove_empty_folders(top: str) -> None:
    """Remove the folders :func:`make_folders` made, as far as nothing was put in them."""
    for root, _, _ in sorted(os.walk(top), key=lambda e: -len(e[0])):
        try:
            os.rmdir(root)
        except OSError:
            return


def remove_made(path: str) -> None:
    """Remove what a failed write made at ``path`` (:func:`remove`), unless it is a folder
    where a user put files of their own while it was written (:func:`strangers`): that is
    kept, whole, and a warning names it (a new volume is written at its path, in sight)."""
    foreign = strangers(path) if os.path.isdir(path) and not os.path.islink(path) else []
    if not foreign:
        remove(path)
        return
    logger.warning(
        "%s: kept, unfinished, as it holds files sxtdist did not write (%s): move them "
        "out before the same command is run again",
        printable(path),
        first_named([printable(n) for n in foreign]),
    )


def first_named(names: Sequence[str], most: int = 3) -> str:
    """``names``' first ``most`` joined by commas, and how many more there are: what a
    message names of the files it found (``"a, b, c and 2 more"``)."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def remove(path: str) -> None:
    """Remove a file or a folder tree (nothing if absent)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap ``a`` and ``b`` atomically (Linux ``renameat2``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def recover_swap(partial: str, out: str) -> None:
    """Undo what a :func:`swap_in` stopped mid-way left (a kill where the file system
    cannot exchange two folders): the old output set aside at ``partial.old`` goes back
    to ``out`` when nothing is there (its only copy), else it is removed (the swap was
    done; its removal was not). Only what sxtdist set aside (:func:`check_leftover`)."""
    aside = aside_path(partial)
    if not os.path.lexists(aside):
        return
    check_leftover(aside, out)
    if os.path.lexists(out):
        remove_beside(aside, out, "the old output that an earlier replacement set aside")
    else:
        os.replace(aside, out)


def remove_beside(path: str, out: str, what: str) -> None:
    """Remove what sxtdist keeps at the hidden name ``path`` beside the output ``out``
    (``what`` it is); a failure is told as :class:`UnwritableError` naming ``out``, the
    path the user gave, with ``path`` and why: the :class:`OSError` of a removal names only
    an inner file (``zarr.json: Permission denied``)."""
    try:
        remove(path)
    except OSError as exc:
        why = exc.strerror or one_line(exc)
        raise UnwritableError(
            out,
            f"cannot be written: {what}, {printable(path)}, cannot be removed ({why}): "
            f"remove it (chmod -R u+w {quoted(path)} && rm -r {quoted(path)}), then run the "
            "command again",
        ) from None


def install(partial: str, out: str, kind: str | None = None) -> None:
    """Put the finished ``partial`` in place of ``out`` and remove what was there
    (:func:`swap_in`, then the old output, set aside at :func:`aside_path` first).

    The replacement is done once swapped in: an old output that cannot be removed then
    (a folder in it made read-only meanwhile, an unexpected error) is left at its
    :func:`aside_path`, with a warning naming it and why, and this returns: the command
    succeeded (``kind``: how the warning names the old output).
    """
    old = swap_in(partial, out)
    if old is None:
        return
    if old == partial:  # exchanged: the old output now has the replacement's name
        old = _set_aside(partial)
    try:
        remove(old)
    except OSError as exc:
        noun = _NOUN.get(kind, kind) if kind else "output"
        logger.warning(
            "%s: replaced; the old %s, set aside at %s, could not be removed (%s): "
            "remove it yourself: chmod -R u+w %s && rm -r %s",
            printable(out),
            noun,
            printable(old),
            exc.strerror or one_line(exc),
            quoted(old),
            quoted(old),
        )


def _set_aside(partial: str) -> str:
    """Rename the old output that an exchange left at ``partial`` (the replacement's name) to
    :func:`aside_path`, and return where it is: were its removal to fail or stop, what is
    left there is then named for what it is (:mod:`sxtdist.leftovers`: the old output, not
    an unfinished replacement). A rename within one folder needs no write permission on the
    folder renamed; where it fails (or the name is taken) the old output stays at ``partial``."""
    aside = aside_path(partial)
    if os.path.lexists(aside):
        return partial
    try:
        os.rename(partial, aside)
    except OSError:
        return partial
    return aside


def swap_in(partial: str, out: str) -> str | None:
    """Put the finished ``partial`` in place of ``out``; where the old output is now (to be
    removed), or None. When this raises, ``out`` is as it was.

    Files are renamed over (atomic). A folder replacing a folder is swapped with
    ``RENAME_EXCHANGE`` (atomic) where the file system has it, else the old one is
    renamed aside first (for an instant no output is at ``out``).
    """
    if os.path.isdir(out) and not os.path.isdir(partial):
        raise InputError(out, "is a folder: name the file to write")  # never replaced by one
    if not os.path.lexists(out) or not os.path.isdir(partial) or not os.path.isdir(out):
        os.replace(partial, out)
        return None
    if _exchange(partial, out):
        return partial
    aside = aside_path(partial)
    os.replace(out, aside)
    try:
        os.replace(partial, out)
    except BaseException:
        os.replace(aside, out)  # the old one back
        raise
    return aside
