"""What a user states about a scan that its file may not say, and changing it after import.

A beamline file holds the projections and, at best, the angles, the pixel size,
the energy and the exposure. The zone plate's outermost zone width (which the PSF
model needs) and the dose are rarely in it. :class:`ScanPhysics` carries these
values as given on the command line (``sxtdist import`` and ``sxtdist edit`` share
the option names in :data:`OPTIONS`), checked once, here.

:func:`edit_scan` changes them in an acquisition already imported: metadata only
(the projections are not touched), every value checked before anything is
written, the metadata written in one atomic replacement of the group's
``zarr.json``, and each change recorded with its old value under the scan's
``edits``, so nothing stated before is lost.
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import math
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ParameterError, SxtdistWarning, keyword, option

logger = logging.getLogger(__name__)

#: Metadata key -> the command-line option that sets it (import and edit alike).
OPTIONS = {
    "pixel_size_nm": "--pixel-size-nm",
    "energy_ev": "--energy-ev",
    "zone_plate_ozw_nm": "--zone-plate-ozw-nm",
    "photons_per_pixel": "--photons",
    "exposure_s": "--exposure-s",
}


def physics_option(key: str) -> str:
    """How the user gives the physical value ``key``: its flag, or the :class:`ScanPhysics` field."""
    return option(OPTIONS[key], f"ScanPhysics({key}=...)")


@dataclass(frozen=True)
class ScanPhysics:
    """Physical facts about a scan, each ``None`` when not given.

    Parameters
    ----------
    pixel_size_nm
        Detector pixel in the object plane, nm.
    energy_ev
        Photon energy, eV.
    zone_plate_ozw_nm
        Outermost zone width of the objective zone plate, nm (sets the PSF).
    photons_per_pixel
        Mean incident photons per pixel and projection.
    exposure_s
        Exposure per projection, seconds.
    """

    pixel_size_nm: float | None = None
    energy_ev: float | None = None
    zone_plate_ozw_nm: float | None = None
    photons_per_pixel: float | None = None
    exposure_s: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ParameterError(f"{physics_option(f.name)}: expected a number, got {v!r}")
            if not (math.isfinite(v) and v > 0):
                raise ParameterError(
                    f"{physics_option(f.name)}: must be a positive number, got {v:g}"
                )
            object.__setattr__(self, f.name, float(v))

    def given(self) -> dict[str, float]:
        """The values that were given, by metadata key."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


def check_center_offset(offset: Any) -> list[float]:
    """``[row, col]`` as two finite numbers, or a :class:`ParameterError` naming the option."""
    try:
        values = [float(v) for v in offset]
    except (TypeError, ValueError):
        raise ParameterError(
            f"{keyword('center_offset_px')}: expected ROW,COL, got {offset!r}"
        ) from None
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise ParameterError(
            f"{keyword('center_offset_px')}: expected two finite numbers, got {offset!r}"
        )
    return values


def check_axis_tilt(tilt: Any) -> float:
    """An in-plane axis tilt in degrees, or a :class:`ParameterError` naming the option."""
    from ..geometry import MAX_AXIS_TILT_DEG

    try:
        value = float(tilt)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{keyword('axis_tilt_deg')}: expected a number, got {tilt!r}"
        ) from None
    if not (math.isfinite(value) and abs(value) < MAX_AXIS_TILT_DEG):
        raise ParameterError(
            f"{keyword('axis_tilt_deg')}: must be a finite angle below {MAX_AXIS_TILT_DEG} "
            f"degrees, got {tilt}"
        )
    return value


def edit_scan(
    acquisition: str | os.PathLike[str],
    scan: str,
    physics: ScanPhysics | None = None,
    center_offset_px: tuple[float, float] | None = None,
    axis_tilt_deg: float | None = None,
    xf: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Change what an acquisition says about one scan; the projections stay as they are.

    Parameters
    ----------
    acquisition
        An acquisition dataset.
    scan
        ``"full"`` or ``"roi"``.
    physics
        The values to set (those left ``None`` are kept).
    center_offset_px
        New ``(row, col)`` offset of the detector centre from the rotation axis.
    axis_tilt_deg
        New in-plane tilt of the rotation axis on the detector (:mod:`sxtdist.geometry`).
    xf
        An IMOD ``.xf`` alignment: its shifts and axis tilt replace the scan's, which is
        then marked aligned (:mod:`sxtdist.io.imod`).

    Returns
    -------
    dict
        ``{key: {"from": old, "to": new}}`` for each value that changed.

    Notes
    -----
    A new pixel size or centre also updates the scan's OME-NGFF scale and translation
    (:func:`~sxtdist.dataset.place_scan`). Changing the pixel size
    or the centre of a scan that is aligned warns: its shifts were measured with the
    old values.
    """
    from ..dataset import open_acquisition

    asked: dict[str, Any] = dict((physics or ScanPhysics()).given())
    if center_offset_px is not None:
        asked["roi_center_px"] = check_center_offset(center_offset_px)
    if axis_tilt_deg is not None:
        if xf is not None:
            raise ParameterError(
                f"give {keyword('axis_tilt_deg')} or {keyword('xf')} (which has the tilt), not both"
            )
        asked["axis_tilt_deg"] = check_axis_tilt(axis_tilt_deg)
    if not asked and xf is None:
        names = ", ".join(
            [
                *map(physics_option, OPTIONS),
                *map(keyword, ("center_offset_px", "axis_tilt_deg", "xf")),
            ]
        )
        raise ParameterError(f"nothing to change: give at least one of {names}")
    acq = open_acquisition(acquisition, mode="r+")
    entry = acq[scan].meta
    if xf is not None:
        from .imod import xf_alignment

        alignment = xf_alignment(xf, acq[scan].geometry.n_angles)
        asked["shifts_px"] = alignment.shifts_px.tolist()
        asked["axis_tilt_deg"] = alignment.axis_tilt_deg
        asked["alignment"] = {
            "state": "aligned",
            "method": "imod xf",
            "file": os.path.abspath(os.fspath(xf)),
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
    was = {**entry, "axis_tilt_deg": entry.get("axis_tilt_deg") or 0.0}  # absent: untilted
    changes = {k: {"from": was.get(k), "to": v} for k, v in asked.items() if was.get(k) != v}
    if not changes:
        logger.info("scan %r of %s already says so: nothing changed", scan, acq.path)
        return {}
    geometric = ("pixel_size_nm", "roi_center_px", "axis_tilt_deg")
    if acq[scan].aligned and xf is None and set(geometric) & set(changes):
        warnings.warn(
            f"{acq.path}: scan {scan!r} was aligned with the old "
            + " and ".join(k for k in geometric if k in changes)
            + "; run sxtdist align again",
            SxtdistWarning,
            stacklevel=2,
        )
    record = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "changes": changes}
    # one write of the group's zarr.json (atomic in zarr): the new values and their history
    try:
        acq.update_scan(
            scan,
            **{k: c["to"] for k, c in changes.items()},
            edits=[*entry.get("edits", []), record],
        )
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        from ..outputs import UnwritableError  # exit 1: the environment's failure

        raise UnwritableError(
            acq.path,
            f"cannot be written ({exc.strerror}): an edit changes the acquisition's metadata; "
            "copy it somewhere writable and edit the copy",
        ) from None
    for key, c in changes.items():
        if key not in ("shifts_px", "alignment"):  # arrays and records: not one line
            logger.info("scan %r: %s %s -> %s", scan, key, c["from"], c["to"])
    return changes
