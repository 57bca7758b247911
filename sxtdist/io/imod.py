"""IMOD/etomo alignments: ``.xf`` transforms as per-view shifts and an axis tilt.

An ``.xf`` file has one line per view, ``A11 A12 A21 A22 DX DY``: the transform that
takes a point of the raw image to the aligned one, ``x' = A11 x + A12 y + DX``,
``y' = A21 x + A22 y + DY``, coordinates in pixels from the image centre (``x`` along
a row, ``y`` down the file's rows). Aligned images have the tilt axis along ``y``.

In sxtdist's geometry (:mod:`sxtdist.geometry`) a raw pixel at detector-frame
position ``p`` (from the detector centre) sees the aligned position
``R(φ) (p - d)``, ``φ`` the axis tilt and ``d`` the view's shift ``(dx, dy)``. So
``A = R(φ)`` and ``(DX, DY) = -R(φ) d``: the tilt is the rotation of the ``A``
matrices (their best rotation, averaged over views) and each shift is
``d = -R(φ)⁻¹ (DX, DY)``. IMOD's transforms may also stretch or magnify (its
``.xf`` from tiltalign can): the rotation part is used and the rest is reported.

Angles come from the ``.tlt`` beside the stack (:func:`sxtdist.io.source.read_angles_file`).
Whether IMOD's tilt angle has sxtdist's sign has not been checked against IMOD
itself: a reconstruction that comes out mirrored needs them negated.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, SxtdistWarning
from ..geometry import MAX_AXIS_TILT_DEG

#: Above this the views' rotations differ too much for one axis tilt (degrees).
MAX_ROTATION_SPREAD_DEG = 0.2
#: Above this the transforms' stretch or magnification is reported (relative).
MAX_STRETCH = 0.01


@dataclass(frozen=True)
class XfAlignment:
    """What an ``.xf`` says in sxtdist's terms.

    Attributes
    ----------
    shifts_px
        ``(views, 2)`` shifts ``(dy, dx)`` in pixels of the stack the ``.xf`` was made for.
    axis_tilt_deg
        The mean rotation of the transforms.
    rotation_spread_deg
        Largest difference of a view's rotation from the mean.
    stretch
        Largest departure of the transforms from a rotation (relative).
    """

    shifts_px: np.ndarray
    axis_tilt_deg: float
    rotation_spread_deg: float
    stretch: float


def read_xf(path: str | os.PathLike[str]) -> np.ndarray:
    """``(views, 6)`` rows ``A11 A12 A21 A22 DX DY`` of an IMOD ``.xf`` file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = [ln.split() for ln in f if ln.strip()]
    except OSError as exc:
        raise InputError(path, f"cannot read the transforms ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise InputError(path, "is not a text file of transforms (not UTF-8)") from None
    if not lines:
        raise InputError(path, "holds no transforms")
    rows = []
    for n, parts in enumerate(lines, 1):
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InputError(path, f"line {n}: not six numbers ({' '.join(parts)!r})") from None
        if len(values) != 6 or not all(math.isfinite(v) for v in values):
            raise InputError(path, f"line {n}: expected A11 A12 A21 A22 DX DY, got {parts}")
        rows.append(values)
    return np.asarray(rows)


def xf_alignment(path: str | os.PathLike[str], n_views: int) -> XfAlignment:
    """Shifts and axis tilt from an ``.xf`` file for a stack of ``n_views`` views."""
    path = os.fspath(path)
    xf = read_xf(path)
    if len(xf) != n_views:
        raise InputError(path, f"{len(xf)} transforms for {n_views} views")
    a = xf[:, :4].reshape(-1, 2, 2)
    # the nearest rotation of each matrix: angle of (A11 + A22, A21 - A12)
    phi = np.arctan2(a[:, 1, 0] - a[:, 0, 1], a[:, 0, 0] + a[:, 1, 1])
    mean = float(np.angle(np.mean(np.exp(1j * phi))))
    spread = float(np.degrees(np.abs(np.angle(np.exp(1j * (phi - mean)))).max()))
    tilt = math.degrees(mean)
    if abs(tilt) >= MAX_AXIS_TILT_DEG:
        raise InputError(
            path,
            f"rotates the views by {tilt:.1f} degrees: sxtdist takes an axis within "
            f"{MAX_AXIS_TILT_DEG:g} degrees of the detector's columns (rotate the stack first)",
        )
    c, s = math.cos(mean), math.sin(mean)
    rot = np.array([[c, -s], [s, c]])
    stretch = float(np.abs(a - rot[None]).max())
    if spread > MAX_ROTATION_SPREAD_DEG:
        warnings.warn(
            f"{path}: the views' rotations differ by up to {spread:.2f} degrees; "
            f"sxtdist uses one axis tilt ({tilt:+.3f} degrees)",
            SxtdistWarning,
            stacklevel=2,
        )
    if stretch > MAX_STRETCH:
        warnings.warn(
            f"{path}: the transforms stretch or magnify (by up to {stretch:.3f}); "
            "only their rotation and shifts are used",
            SxtdistWarning,
            stacklevel=2,
        )
    d_xy = -(rot.T @ xf[:, 4:6].T).T  # -R⁻¹ (DX, DY), as (dx, dy)
    return XfAlignment(d_xy[:, ::-1].copy(), tilt, spread, stretch)
