"""Checks on projections and angles before anything is written: inputs are verified, not trusted.

One place for the rules every way in follows (``sxtdist import``'s readers, the
simulator, :func:`sxtdist.create_acquisition` from Python):

- pixel types: real floating point; integers only as raw detector counts, which
  the importer converts explicitly (flat/dark to optical depth); complex, boolean
  and structured types are refused (:func:`check_pixel_type`);
- no NaN or infinity in a frame (:func:`check_finite`, naming the frame);
- optical depth not negative everywhere (:class:`OpticalDepthRange`: a stack of
  ``ln(I/I0)`` instead of ``-ln(I/I0)``, or intensities above the flat);
- angles: finite, not all equal; a warning when they look like radians
  (:func:`check_angles`).
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np

from ..errors import InputError, SxtdistWarning, keyword

#: Integer pixel types read as raw detector counts (TIFF, MRC modes 0, 1, 6, HDF5).
COUNT_KINDS = "ui"


def check_pixel_type(where: str, dtype: np.dtype, counts_ok: bool) -> np.dtype:
    """Refuse pixel types that are not real numbers; integers only where ``counts_ok``.

    ``counts_ok``: the data will be converted from raw counts with a flat field
    (the importer's ``intensity`` values); elsewhere projections are optical
    depth or transmission and must be floating point.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(where, f"pixels are complex ({dtype}); projections must be real numbers")
    if dtype.kind not in "fui" or dtype.itemsize > 8:
        raise InputError(where, f"pixels have type {dtype}, not a real number type")
    if dtype.kind in COUNT_KINDS and not counts_ok:
        raise InputError(
            where,
            f"pixels are integers ({dtype}), read as raw detector counts: give their flat "
            f"field ({keyword('flat')}); transmission or optical depth must be floating point",
        )
    return dtype


def check_finite(where: str, frames: np.ndarray, first: int = 0) -> None:
    """Refuse frames ``first, first+1, ...`` holding NaN or infinity, naming the first such frame."""
    if frames.dtype.kind != "f":
        return
    ok = np.isfinite(frames.reshape(frames.shape[0], -1)).all(axis=1)
    if not ok.all():
        raise InputError(where, f"frame {first + int(np.flatnonzero(~ok)[0])} contains NaN or inf")


class OpticalDepthRange:
    """The largest optical depth seen, frame block by frame block (thread-safe).

    :meth:`check` refuses a stack whose every value is negative: the sample then
    transmits more than the flat field everywhere, which means a sign error
    (``ln(I/I0)``) or the wrong flat.
    """

    def __init__(self) -> None:
        self.largest = -math.inf
        self._lock = threading.Lock()

    def add(self, od: np.ndarray) -> np.ndarray:
        if od.size:
            m = float(np.max(od))
            with self._lock:
                self.largest = max(self.largest, m)
        return od

    def check(self, where: str) -> None:
        if self.largest < 0:
            raise InputError(
                where,
                f"every optical depth value is negative (largest {self.largest:.4g}): the "
                "stack looks like ln(I/I0) instead of -ln(I/I0), or the flat field is wrong",
            )


#: The largest pixel or voxel size taken as plausible (nm): 1 mm.
MAX_PIXEL_NM = 1e6

#: Angles whose whole range is within this (degrees) are suspected of being radians.
RADIANS_SPAN = 2 * math.pi + 1e-6


def check_angles(where: str, angles_deg: np.ndarray, scan: str, warn: bool = True) -> np.ndarray:
    """Refuse non-finite or all-equal angles; warn (``warn``) when they look like radians."""
    a = np.asarray(angles_deg, dtype=float).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise InputError(where, f"scan {scan!r}: angles contain NaN or inf")
    if a.size > 1 and np.ptp(a) == 0:
        raise InputError(
            where, f"scan {scan!r}: all {a.size} angles are equal ({a[0]:g} deg); a tilt series "
            "needs distinct angles",
        )  # fmt: skip
    if warn and a.size >= 3 and np.max(np.abs(a)) <= RADIANS_SPAN:
        warnings.warn(
            f"{where}: scan {scan!r}: the {a.size} angles span only {a.min():.3g}..{a.max():.3g}; "
            "if they are radians, give degrees (sxtdist reads angles in degrees)",
            SxtdistWarning,
            stacklevel=2,
        )
    return a
