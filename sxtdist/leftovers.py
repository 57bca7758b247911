"""What a stopped write left beside an output, said so that its owner knows what it is.

A write killed outright leaves sxtdist's hidden names beside the output ``NAME``
(:mod:`sxtdist.outputs`): ``.NAME.sxtdist-new`` (a volume a reconstruction was creating),
``.NAME.sxtdist-partial`` (a replacement being written), ``.NAME.sxtdist-partial.old``
(the old output set aside by a swap, until it is removed) and ``.NAME.sxtdist-tmp-HEX`` (a file output being
written); a run killed as it checked that a folder can be
written leaves a writability probe in it (``.sxtdist-probe-HEX``). Hidden, they are found
by no listing a user reads;
``sxtdist info`` and ``sxtdist verify`` name them (:func:`leftovers`): what each is, what
clears it, and how to remove it; one that sxtdist did not write (:func:`sxtdist.outputs.not_ours`:
a user's file of that name) is said to be left alone. Nothing here removes anything.
"""

from __future__ import annotations

import os
import re
from datetime import datetime

from .errors import option, printable, quoted
from .lock import held_by
from .outputs import (
    NEW_SUFFIX,
    OLD_SUFFIX,
    PARTIAL_SUFFIX,
    TEMP,
    aside_path,
    created,
    is_empty_folder,
    new_path,
    not_ours,
    partial_path,
    probes,
    recognise,
    temps,
    unremovable,
)

#: A hidden name of sxtdist's beside the output ``name``; a replacement's own creation is
#: ``..NAME.sxtdist-partial.sxtdist-new`` (the ``name`` then a partial's).
HIDDEN = re.compile(
    rf"\.(?P<name>.+?)(?P<suffix>{re.escape(NEW_SUFFIX)}|{re.escape(PARTIAL_SUFFIX)}"
    rf"|{re.escape(PARTIAL_SUFFIX + OLD_SUFFIX)})"
)


def is_leftover(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is, by its name, one of the hidden names a write keeps beside an output."""
    name = os.path.basename(os.path.abspath(os.fspath(path)))
    return HIDDEN.fullmatch(name) is not None or TEMP.fullmatch(name) is not None


def leftovers(path: str | os.PathLike[str]) -> list[str]:
    """One line for each thing a stopped write left that concerns ``path``: what it is, what
    clears it and how to remove it.

    Looked for: ``path`` itself when it is such a hidden name, those beside the output
    ``path`` (whether or not it exists: a creation stopped leaves nothing at ``path``),
    and, when ``path`` is a folder that is no dataset (an output folder), those of every
    output in it; the writability probes in the folder ``path``.
    """
    path = os.fspath(path)
    found = [path] if is_leftover(path) and os.path.lexists(path) else []
    partial = partial_path(path)
    beside = (new_path(path), partial, aside_path(partial), new_path(partial))
    found += [p for p in beside if os.path.lexists(p)] + temps(path)
    if os.path.isdir(path) and not _is_dataset(path):
        try:
            names = sorted(os.listdir(path))
        except OSError:
            names = []
        found += [os.path.join(path, n) for n in names if is_leftover(n)]
    return [_what_is(p) for p in dict.fromkeys(found)] + [_probe(p) for p in probes(path)]


def _probe(probe: str) -> str:
    """What the writability probe ``probe`` is and how to remove it (one line)."""
    folder = os.path.dirname(probe)
    clears = " (a reconstruction into it removes it)" if is_empty_folder(folder) else ""
    return (
        f"{printable(probe)}: an empty file sxtdist made to check that {printable(folder)} "
        f"can be written, left by a run stopped at that moment, nothing of yours{clears}; "
        f"or remove it: rm {quoted(probe)}"
    )


def _is_dataset(path: str) -> bool:
    """Whether the folder ``path`` is a Zarr dataset (its hidden names are not leftovers)."""
    return any(os.path.exists(os.path.join(path, f)) for f in ("zarr.json", ".zgroup"))


def _temp(tmp: str) -> str:
    """What the file output's write ``tmp`` (:data:`~sxtdist.outputs.TEMP`) is, and how to
    remove it (one line)."""
    folder, found = os.path.dirname(tmp), TEMP.fullmatch(os.path.basename(tmp))
    assert found is not None
    out = os.path.join(folder, found["name"])
    shown, shown_out = printable(tmp), printable(out)
    holder = held_by(out)
    if holder:
        return f"{shown}: {shown_out} is being written by {holder}, and this with it: leave it"
    why = not_ours(tmp)
    if why is not None:  # killed before its mark, or a user's file: never said to be ours
        return (
            f"{shown}: named as a write of {shown_out} is, left by a run that stopped before "
            f"its mark was in it, or not sxtdist's at all ({why}): it is left alone, in no "
            f"one's way; if it is nothing of yours, remove it: rm {quoted(tmp)}"
        )
    return (
        f"{shown}: an unfinished write of {shown_out}, left by a run that stopped; "
        f"{shown_out} is as it was (nothing of yours): the next write of {shown_out} may "
        f"remove it; or remove it: rm {quoted(tmp)}"
    )


def _older(hidden: str, out: str) -> bool:
    """Whether ``hidden`` at the partial name is the old output ``out`` replaced, not its
    replacement: an output of the same kind created strictly before the one at ``out`` (a
    replacement is created after the output it replaces). Where an exchange left the old
    output before its removal failed or stopped (this version renames it to the aside
    name first; earlier ones did not)."""
    before, now = created(hidden), created(out)
    if before is None or now is None or recognise(hidden) != recognise(out):
        return False
    try:  # ISO 8601 of one zone: compared as times, not as text of maybe other widths
        return datetime.fromisoformat(before) < datetime.fromisoformat(now)
    except ValueError:
        return False


def _what_is(hidden: str) -> str:
    """What the hidden ``hidden`` is, what clears it, how to remove it (one line)."""
    if TEMP.fullmatch(os.path.basename(hidden)):
        return _temp(hidden)
    found = HIDDEN.fullmatch(os.path.basename(hidden))
    assert found is not None
    folder, name, suffix = os.path.dirname(hidden), found["name"], found["suffix"]
    inner = HIDDEN.fullmatch(name)  # the creation of a replacement (``--overwrite``)
    out = os.path.join(folder, inner["name"] if inner else name)
    shown, shown_out = printable(hidden), printable(out)
    holder = held_by(out)
    if holder:  # a run writing the output now: its work, not a leftover
        return f"{shown}: {shown_out} is being written by {holder}, and this with it: leave it"
    why = not_ours(hidden)
    if why is not None:  # a user's (or another tool's) of that name: never "remove it"
        return (
            f"{shown}: has the hidden name sxtdist gives its unfinished writes of {shown_out}, "
            f"but sxtdist did not write it ({why}): it is left alone, and {shown_out} is not "
            "written while it is there; move or rename it"
        )
    remove = f"rm -r {quoted(hidden)}"
    again = option("--overwrite", "overwrite=True")
    if suffix == NEW_SUFFIX:
        what = f"a replacement of {shown_out}" if inner else shown_out
        clears = (
            f"the next reconstruction of {shown_out} with {again}"
            if inner
            else f"the next reconstruction into {shown_out}"
        )
        return (
            f"{shown}: the start of {what}, left by a reconstruction stopped while creating it "
            f"(not an output, nothing of yours): {clears} removes it; or remove it: {remove}"
        )
    if suffix == PARTIAL_SUFFIX and _older(hidden, out):
        return (
            f"{shown}: the old {shown_out} (the previous version, created before {shown_out}, "
            f"its replacement), set aside by a replacement that did not remove it: the next "
            f"write of {shown_out} with {again} removes it; or remove it: {remove}"
        )
    if suffix == PARTIAL_SUFFIX:
        return (
            f"{shown}: an unfinished replacement of {shown_out}, left by a run with {again} "
            f"that stopped; {shown_out} is as it was: the same command again resumes or "
            f"replaces it; or remove it: {remove}"
        )
    if not os.path.lexists(out):  # stopped between the swap's two renames: its only copy
        return (
            f"{shown}: the only copy of {shown_out}, set aside by a replacement that stopped; "
            f"do not remove it: the next write of {shown_out} puts it back first (or move it "
            f"back: mv {quoted(hidden)} {quoted(out)})"
        )
    # the previous output, replaced: left where its removal stopped or failed (read-only)
    if unremovable(hidden):
        return (
            f"{shown}: the old {shown_out} (the previous version; {shown_out} is its "
            f"replacement), set aside when it was replaced and not removed, as this user may "
            f"not write it (read-only): remove it: chmod -R u+w {quoted(hidden)} && {remove}"
        )
    return (
        f"{shown}: the old {shown_out} (the previous version; {shown_out} is its "
        f"replacement), set aside when it was replaced, its removal stopped: the next write "
        f"of {shown_out} removes it; or remove it: {remove}"
    )
