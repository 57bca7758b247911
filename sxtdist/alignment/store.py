"""Storing an alignment in its acquisition without ever losing the solved shifts.

The store waits for the acquisition's lock (an ``import`` or an ``edit`` may hold it
for a while) for up to :data:`STORE_WAIT_S` seconds. If the shifts still cannot be
stored, they are saved to a file of their own beside the acquisition (or in the
temporary folder when that cannot be written), and the error names the one command
that stores them later: ``sxtdist align ACQ --apply FILE``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from ..dataset import (
    Acquisition,
    ScanEditedError,
    ScanReplacedError,
    measured_with,
    open_acquisition,
)
from ..dataset import _jsonable as jsonable
from ..errors import (
    OS_HINTS,
    InputError,
    SxtdistError,
    describe_os_error,
    one_line,
    os_error,
    printable,
    quoted,
    with_hint,
)
from ..outputs import remove

logger = logging.getLogger(__name__)

#: How long the final store waits for another writer's lock (seconds).
STORE_WAIT_S = 600.0
#: The ``kind`` of a file of saved, unstored scan changes.
SAVED_KIND = "sxtdist-unstored-alignment"


class ShiftsNotStoredError(SxtdistError):
    """The alignment was solved but could not be stored; its changes are saved in ``saved``.

    Parameters
    ----------
    message
        One line: why, where the changes are, and the command that stores them.
    saved
        The file holding them (:func:`apply_saved` stores it).
    """

    def __init__(self, message: str, saved: str) -> None:
        super().__init__(message)
        self.saved = saved

    def __reduce__(self):
        return type(self), (str(self), self.saved)


def store(acq: Acquisition, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Store each scan's ``changes`` in ``acq`` at once; if that fails, save them and raise.

    Raises
    ------
    ShiftsNotStoredError
        The acquisition could not be written (busy past :data:`STORE_WAIT_S`, a full
        disk, read-only ...): the changes are in the file it names.
    """
    try:
        acq.update_scans(changes, wait_s=STORE_WAIT_S, measured_on=_measured_on(acq, changes))
    except (ScanReplacedError, ScanEditedError):
        raise  # measured on projections that are gone, or with another geometry: not saved
    except (SxtdistError, OSError) as exc:
        logger.debug("could not store the alignment in %s", acq.path, exc_info=True)
        try:
            saved = save(acq, changes)
        except OSError as failed:  # a full disk: neither; say both, not the second alone
            raise _not_saved(acq.path, exc, failed) from exc
        raise ShiftsNotStoredError(
            f"{printable(acq.path)}: the alignment could not be stored ({one_line(exc)}); "
            f"it is saved in {printable(saved)}: store it with "
            f"'sxtdist align {quoted(acq.path)} --apply {quoted(saved)}'",
            saved,
        ) from exc


def _not_saved(path: str, exc: BaseException, failed: OSError) -> BaseException:
    """The error of a store that failed (``exc``) whose changes could not be saved either
    (``failed``): an :class:`OSError` naming the acquisition where the store's was one (a
    full disk: the environment's failure, exit 1), with both reasons; else an
    :class:`~sxtdist.errors.SxtdistError` saying both."""
    saving = describe_os_error(failed)
    first = os_error(exc, path)
    if first is None:
        return SxtdistError(
            f"{printable(path)}: the alignment could not be stored ({one_line(exc)}) nor "
            f"saved in a file ({saving}): align again once that is mended"
        )
    # the same failure twice (a full disk) is said once, with what to do about it
    why = OS_HINTS.get(first.errno) if failed.errno == first.errno else f"saving: {saving}"
    why = why or "mend that"
    hint = (
        "the alignment could not be stored, nor saved in a file beside it or in the "
        f"temporary folder; {why}{'' if 'again' in why else ', then align again'}"
    )
    return with_hint(first, path, hint)


def _measured_on(acq: Acquisition, changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What the changes were measured with (:func:`~sxtdist.dataset.measured_with`): the
    scans they change, and the full scan an interior scan's anchors read."""
    names = [*changes, *(["full"] if "roi" in changes and "full" in acq.scans else [])]
    return measured_with(acq, dict.fromkeys(names))


def save(acq: Acquisition, changes: Mapping[str, Mapping[str, Any]]) -> str:
    """Write ``changes`` to a new file beside ``acq`` (else in the temporary folder); its path.

    The file records each scan's ``data_id``, so that :func:`apply_saved` refuses it
    once a scan's projections were replaced. It never replaces an existing file.
    """
    record = {
        "kind": SAVED_KIND,
        "acquisition": os.path.abspath(acq.path),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scans": {
            name: {"data_id": acq[name].meta.get("data_id"), "changes": jsonable(change)}
            for name, change in changes.items()
        },
        "measured_on": jsonable(_measured_on(acq, changes)),
    }
    text = json.dumps(record, indent=1)
    stem = os.path.basename(os.path.abspath(acq.path).rstrip("/")).removesuffix(".zarr")
    name = f"{stem}_unstored-alignment-{time.strftime('%Y%m%d-%H%M%S')}"
    failure: OSError | None = None
    for folder in (os.path.dirname(os.path.abspath(acq.path)), tempfile.gettempdir()):
        for n in range(100):
            path = os.path.join(folder, f"{name}{f'-{n}' if n else ''}.json")
            try:
                f = open(path, "x", encoding="utf-8")  # never over a file
            except FileExistsError:
                continue
            except OSError as exc:
                failure = exc
                break
            try:
                with f:
                    f.write(text)
                return path
            except OSError as exc:  # a full disk: what this call created goes
                failure = exc
                with contextlib.suppress(OSError):
                    remove(path)
                break
    raise failure or OSError(f"no free name for {name}.json")


def apply_saved(acq_path: str | os.PathLike[str], saved: str | os.PathLike[str]) -> list[str]:
    """Store the changes that :func:`store` saved in ``saved`` into the acquisition
    ``acq_path`` (waiting for its lock as the store does); the scans changed.

    Refused (:class:`~sxtdist.errors.InputError`) when the file is not such a record,
    or a scan it was measured on was replaced (another ``data_id``), edited (another
    pixel size, centre or axis tilt: :class:`~sxtdist.dataset.ScanEditedError`) or
    removed since.
    """
    saved = os.fspath(saved)
    record = _read(saved)
    acq = open_acquisition(acq_path, mode="r+")
    changes, measured_on = {}, dict(record.get("measured_on") or {})
    if not all(isinstance(m, dict) for m in measured_on.values()):
        raise InputError(saved, "records what it was measured with in an unknown form")
    for name, entry in record["scans"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), dict):
            raise InputError(saved, f"scan {name!r} has no changes recorded")
        changes[name] = entry["changes"]
        measured_on[name] = {**measured_on.get(name, {}), "data_id": entry.get("data_id")}
    gone = [name for name in (*changes, *measured_on) if name not in acq.scans]
    if gone:  # every scan it changes was measured on too: one look
        what = "changes" if gone[0] in changes else "was measured on"
        raise InputError(saved, f"{what} scan {gone[0]!r}, which {acq.path} has not")
    try:  # compared under the acquisition's lock
        acq.update_scans(changes, wait_s=STORE_WAIT_S, measured_on=measured_on)
    except ScanReplacedError as exc:
        raise InputError(
            saved,
            f"was solved for other projections of scan {exc.name!r} (it was replaced since): "
            "align again",
        ) from None
    logger.info("stored the alignment of %s from %s", ", ".join(changes), saved)
    return list(changes)


def _read(saved: str) -> dict[str, Any]:
    try:
        with open(saved, encoding="utf-8-sig") as f:  # an editor may add a byte-order mark
            record = json.load(f)
    except FileNotFoundError:
        raise InputError(saved, "no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(saved, f"cannot be read as a saved alignment ({one_line(exc)})") from None
    if not isinstance(record, dict) or record.get("kind") != SAVED_KIND:
        raise InputError(saved, "is not an alignment that sxtdist align saved")
    if not isinstance(record.get("scans"), dict) or not record["scans"]:
        raise InputError(saved, "holds no scans")
    return record
