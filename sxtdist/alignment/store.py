"""Storing an alignment in its acquisition without ever losing the solved shifts.

The store waits for the acquisition's lock (an ``import`` or an ``edit`` may hold it
for a while) for up to :data:`STORE_WAIT_S` seconds. If the shifts still cannot be
stored, they are saved to a file of their own beside the acquisition (or in the
temporary folder when that cannot be written), and the error names the one command
that stores them later: ``sxtdist align ACQ --apply FILE``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from ..dataset import Acquisition, ScanReplacedError, open_acquisition
from ..dataset import _jsonable as jsonable
from ..errors import InputError, SxtdistError, one_line, printable

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
    measured_on = {name: acq[name].meta.get("data_id") for name in changes}
    try:
        acq.update_scans(changes, wait_s=STORE_WAIT_S, data_ids=measured_on)
    except ScanReplacedError:
        raise  # measured on projections that are gone: nothing to save
    except (SxtdistError, OSError) as exc:
        saved = save(acq, changes)
        logger.debug("could not store the alignment in %s", acq.path, exc_info=True)
        raise ShiftsNotStoredError(
            f"{printable(acq.path)}: the alignment could not be stored ({one_line(exc)}); "
            f"it is saved in {printable(saved)}: store it with "
            f"'sxtdist align {_quoted(acq.path)} --apply {_quoted(saved)}'",
            saved,
        ) from exc


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
                _remove_partial(path)
                break
    raise failure or OSError(f"no free name for {name}.json")


def apply_saved(acq_path: str | os.PathLike[str], saved: str | os.PathLike[str]) -> list[str]:
    """Store the changes that :func:`store` saved in ``saved`` into the acquisition
    ``acq_path`` (waiting for its lock as the store does); the scans changed.

    Refused (:class:`~sxtdist.errors.InputError`) when the file is not such a record,
    or a scan it changes was replaced (another ``data_id``) or removed since.
    """
    saved = os.fspath(saved)
    record = _read(saved)
    acq = open_acquisition(acq_path, mode="r+")
    changes, measured_on = {}, {}
    for name, entry in record["scans"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), dict):
            raise InputError(saved, f"scan {name!r} has no changes recorded")
        if name not in acq.scans:
            raise InputError(saved, f"changes scan {name!r}, which {acq.path} has not")
        if entry.get("data_id") != acq[name].meta.get("data_id"):
            raise InputError(
                saved,
                f"was solved for other projections of scan {name!r} (it was replaced since): "
                "align again",
            )
        changes[name], measured_on[name] = entry["changes"], entry.get("data_id")
    acq.update_scans(changes, wait_s=STORE_WAIT_S, data_ids=measured_on)
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


def _remove_partial(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _quoted(path: str) -> str:
    import shlex

    return shlex.quote(printable(path))
