"""Is every chunk of an acquisition or a volume there and readable? (``sxtdist verify``)

sxtdist stores every chunk of the arrays it writes, fill values included, each
with a CRC32C checksum (:func:`sxtdist.io.ngff.array_options`). A missing chunk
file is therefore a lost one, and a chunk whose bytes changed fails to decode.
:func:`verify` reads every chunk of every array once, in bounded memory, and
lists what is missing, unreadable or holds NaN/inf; a complete volume is also
held to what it recorded (:meth:`sxtdist.volume.Volume.damage`).

Arrays written before checksums (no ``crc32c`` codec) may have left chunks of
fill values unwritten: for them only the stored chunks are checked. So did the
volumes of sxtdist 0.2.0 before its workers stored all-zero chunks (commit 3ef91e6):
a chunk missing from a complete volume whose finishing counted it missing too (its
``contents`` agree with what is stored) was never written, an all-zero one, and is
noted, not called damage (:func:`_unwritten_is_zero`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import zarr

from .dataset import (
    KEY,
    interrupted_replacement,
    leftover_scans,
    open_acquisition,
    open_sxtdist_group,
)
from .errors import InputError, one_line, printable
from .leftovers import leftovers
from .outputs import strangers


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Parameters
    ----------
    path, kind
        The dataset and its kind (``acquisition`` or ``volume``).
    arrays, chunks
        How many arrays and chunks were checked.
    problems
        One line per missing, unreadable or non-finite chunk (and per recorded
        content a volume lacks).
    notes
        What was not checked, and why (an unfinished volume's unwritten blocks).
    """

    path: str
    kind: str
    arrays: int = 0
    chunks: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Check every chunk of the acquisition or volume at ``path``."""
    path = os.fspath(path)
    group = open_sxtdist_group(path)
    kind = group.attrs[KEY].get("kind", "acquisition")
    report = VerifyReport(path, kind)
    must_be_whole = True
    zero_if_missing: set[str] = set()
    refused: InputError | None = None  # what the other commands refuse an acquisition for
    if kind == "volume":
        from .volume import open_volume

        vol = open_volume(path, mode="r")
        report.problems += [f"{path}: {p}" for p in vol.damage()]
        if vol.status != "complete":
            must_be_whole = False  # blocks not done yet are not written yet
            report.notes.append(
                f"unfinished ({vol.status}): only the chunks written so far were checked"
            )
        zero_if_missing = _unwritten_is_zero(vol.meta, group)
    else:
        stopped = interrupted_replacement(group.attrs[KEY])
        if stopped:  # every other command refuses it: not whole, whatever its chunks
            report.problems.append(f"{path}: {stopped}")
        refused = None if stopped else _refusal(path)
    # not walked: what stopped imports left, and what sxtdist did not write
    left = leftover_scans(path) if kind == "acquisition" else {}
    foreign = [n for n in strangers(path) if n not in left]
    report.notes += [*left.values()]
    report.notes += [f"{printable(os.path.join(path, n))}: {NOT_OURS}" for n in foreign]
    report.notes += leftovers(path)  # beside it: what a stopped write left
    nodes = [
        n
        for n in sorted(os.listdir(path))
        if n not in left and n not in foreign and os.path.isfile(os.path.join(path, n, "zarr.json"))
    ]
    for name, arr in _arrays(group, names=nodes):
        report.arrays += 1
        whole = must_be_whole and _stores_every_chunk(arr)
        for missing, line in _check_array(arr, os.path.join(path, name), whole):
            if missing and name in zero_if_missing:
                report.notes.append(f"{line} ({UNWRITTEN})")
            else:
                report.problems.append(line)
        report.chunks += arr.nchunks
    if refused is not None and not _told(report, refused):
        report.problems.insert(0, str(refused))
    return report


def _refusal(path: str) -> InputError | None:
    """What every other command refuses the acquisition at ``path`` for (a scan listed but
    gone, angles that do not match its projections: :func:`open_acquisition`), or None."""
    try:
        open_acquisition(path, mode="r")
    except InputError as exc:
        return exc
    return None


def _told(report: VerifyReport, refused: InputError) -> bool:
    """Whether ``report`` already lists, chunk by chunk, the damage ``refused`` sums up (a
    projection array's missing chunks): said once, where it is."""
    where = f"{printable(refused.path)}: chunk "
    return any(p.startswith(where) for p in report.problems)


#: What :func:`verify` says of a file or folder sxtdist did not put in the dataset.
NOT_OURS = "not written by sxtdist: not checked"
#: What a chunk that an old volume never wrote is (a note of :func:`verify`'s).
UNWRITTEN = (
    "possibly an all-zero chunk, which sxtdist 0.2.0 before 3ef91e6 did not write; "
    "it reads as zeros"
)


def _unwritten_is_zero(meta: dict, group: zarr.Group) -> set[str]:
    """The levels of a complete volume whose missing chunks were never written (all-zero
    chunks that sxtdist <= 0.2.0 skipped), not lost: written by such a version, and when
    it finished, it counted as stored what is stored now (a lost chunk makes fewer)."""
    if meta.get("status") != "complete" or not _written_by_at_most(meta, (0, 2, 0)):
        return set()
    contents = meta.get("contents") or {}
    return {
        level
        for level, counted in contents.items()
        if level in group and group[level].nchunks_initialized == counted
    }


def _written_by_at_most(meta: dict, version: tuple[int, ...]) -> bool:
    """Whether ``meta["software"]`` (``"sxtdist X.Y.Z"``) names ``version`` or an older one."""
    text = str(meta.get("software", "")).removeprefix("sxtdist ")
    try:
        found = tuple(int(p) for p in text.split("+")[0].split(".")[:3])
    except ValueError:
        return False
    return found <= version


def _arrays(
    group: zarr.Group, prefix: str = "", names: list[str] | None = None
) -> Iterator[tuple[str, zarr.Array]]:
    """Every array under ``group`` with its path; only the members ``names`` when given
    (Zarr's own listing warns of each folder that is no Zarr node: a half-made one, a user's)."""
    members = group.members() if names is None else ((n, group[n]) for n in names)
    for name, member in sorted(members, key=lambda m: m[0]):
        where = f"{prefix}{name}"
        if isinstance(member, zarr.Array):
            yield where, member
        else:
            yield from _arrays(member, f"{where}/")


def _stores_every_chunk(arr: zarr.Array) -> bool:
    """Whether ``arr`` was written with every chunk stored (sxtdist's arrays since checksums)."""
    names = {type(c).__name__ for c in arr.metadata.codecs}
    for c in arr.metadata.codecs:
        names |= {type(i).__name__ for i in getattr(c, "codecs", ())}
    return "Crc32cCodec" in names


def _check_array(arr: zarr.Array, where: str, whole: bool) -> Iterator[tuple[bool, str]]:
    """One line per chunk of ``arr`` that is missing (where ``whole``), unreadable or not
    finite, with whether it is missing."""
    stored_grid = arr.shards or arr.chunks
    present: dict[tuple[int, ...], bool] = {}
    for idx in itertools.product(*(range(-(-n // c)) for n, c in zip(arr.shape, arr.chunks))):
        region = tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, arr.chunks, arr.shape)
        )
        key = tuple(r.start // s for r, s in zip(region, stored_grid))
        if key not in present:
            name = arr.metadata.encode_chunk_key(key)
            present[key] = os.path.exists(os.path.join(where, name))
        if not present[key]:
            if whole:
                yield True, f"{printable(where)}: chunk {_show(region)} is missing"
            continue
        try:
            values = arr[region]
        except Exception as exc:  # a damaged chunk fails in many ways: one line each
            yield (
                False,
                f"{printable(where)}: chunk {_show(region)} is unreadable ({one_line(exc)})",
            )
            continue
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            yield False, f"{printable(where)}: chunk {_show(region)} holds NaN or inf"


def _show(region: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{r.start}:{r.stop}" for r in region) + "]"
