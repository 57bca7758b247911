"""Whether an interior scan aligned by anchors still fits the full scan it was anchored to.

The anchors register each interior view to the full scan's view at its angle, as the
full scan's stored shifts place it, and an interior scan aligned on its own keeps the
full scan's gauge (:func:`sxtdist.alignment.runner.align`). Aligning the full scan again
alone re-centres it (:mod:`.gauge`); importing or editing it changes what the anchors
saw. The interior's stored shifts then no longer fit, whatever its verdict said: the
alignment records a digest of the full scan it was anchored to
(:func:`full_reference`), and :func:`stale_anchoring` compares it with the full scan
as it is now. ``align``, ``info`` and ``reconstruct`` say so.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from ..errors import quoted

if TYPE_CHECKING:
    from ..dataset import Acquisition
    from ..geometry import ScanGeometry

#: The alignment key holding :func:`full_reference` of the full scan anchored to.
ANCHORED_TO = "anchored_to_full"


def full_reference(geometry: ScanGeometry, data_id: str | None) -> str:
    """A digest of what anchoring to a full scan depends on: its projections (their
    ``data_id``), shifts, pixel size, centre offset and axis tilt."""
    h = hashlib.sha256(str(data_id).encode())
    h.update(np.ascontiguousarray(np.round(geometry.shifts_px, 6) + 0.0).tobytes())
    numbers = (geometry.pixel_size_nm, *geometry.center_offset_px, geometry.axis_tilt_deg)
    h.update(repr([round(float(v), 9) + 0.0 for v in numbers]).encode())
    return h.hexdigest()[:16]


def stale_anchoring(acq: Acquisition) -> str | None:
    """Why the interior scan's anchored alignment no longer fits the full scan, or ``None``.

    An alignment stored before the digest was recorded is judged by its date: stale
    when the full scan was aligned later.
    """
    if "roi" not in acq.scans or "full" not in acq.scans:
        return None
    al = acq["roi"].meta.get("alignment") or {}
    if al.get("state") != "aligned" or al.get("method") != "anchor":
        return None
    full = acq["full"]
    if ANCHORED_TO in al:
        now = full_reference(full.geometry, full.meta.get("data_id"))
        if al[ANCHORED_TO] == now:
            return None
        what = "changed since (aligned again, re-imported or edited)"
    else:
        later = (full.meta.get("alignment") or {}).get("date")
        if not later or later <= al.get("date", ""):
            return None
        what = f"was aligned again on {later}"
    return (
        f"scan 'roi' was aligned by anchors to the full scan as it was on {al.get('date')}, "
        f"and the full scan {what}: the interior's shifts no longer fit it (alignment stale); "
        f"align it again: sxtdist align {quoted(acq.path)} --scans roi"
    )
