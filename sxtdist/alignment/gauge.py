"""What no alignment determines (the object's position: a rigid translation), the
rotation axis in a scan's ``dx``, and shift errors measured without the former."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..geometry import ScanGeometry, without_rigid_translation


def sinusoid_basis(angles_deg: np.ndarray) -> np.ndarray:
    """``(n, 3)`` columns ``[1, cos, sin]`` of the angles."""
    t = np.deg2rad(np.asarray(angles_deg, float))
    return np.stack([np.ones_like(t), np.cos(t), np.sin(t)], axis=1)


def axis_offset_px(dx: np.ndarray, angles_deg: np.ndarray) -> float:
    """The rotation-axis offset in shifts ``dx``: the constant of their fit by ``[1, cos, sin]``
    (a rigid translation, the sinusoid, does not change it)."""
    return float(np.linalg.lstsq(sinusoid_basis(angles_deg), dx, rcond=None)[0][0])


def remove_gauge(err: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Remove what alignment cannot determine from shift errors ``(n, 2)``.

    A rigid translation of the object moves every view by ``dy = c`` and
    ``dx = a cos(theta) + b sin(theta)``: those components are projected out.
    The constant part of ``dx`` (the rotation axis) is determinable and kept:
    ``dx`` is fitted by ``[1, cos, sin]`` and only the sinusoid removed. One scan
    on its own, strict on the axis; the acceptance figures use
    :func:`shift_errors` (one translation for all scans, removed by least squares).
    """
    err = np.asarray(err, float).copy()
    err[:, 0] -= err[:, 0].mean()
    # fit constant and sinusoid together (over 180 deg they are not orthogonal)
    basis = sinusoid_basis(angles_deg)
    coef, *_ = np.linalg.lstsq(basis, err[:, 1], rcond=None)
    err[:, 1] -= basis[:, 1:] @ coef[1:]
    return err


def shift_errors(
    estimated: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    geometries: Mapping[str, ScanGeometry],
) -> dict[str, np.ndarray]:
    """Errors of estimated shifts, less the one object translation that best explains them.

    The object's position is the one thing no alignment can determine: moving it by
    ``t`` nm shifts every view of every scan (``dy`` by a constant, ``dx`` by
    ``a cos + b sin``, see :func:`~sxtdist.geometry.rigid_translation_nm`), and the
    reconstruction only moves with it. So the error of a set of shifts is what
    remains after the best such translation, one for all scans together, is
    removed: what no placement of the object explains. Unlike :func:`remove_gauge`
    per scan, this also counts a translation of one scan against the other, and it
    does not keep a constant ``dx`` fitted beside the sinusoid: over 180° a
    constant and ``sin`` are far from orthogonal (an axis error ``c`` of one scan
    over 180° leaves ``0.44 c`` RMS once the best translation is removed, not ``c``).

    Parameters
    ----------
    estimated, truth
        ``{scan: (n_angles, 2)}`` shifts ``(dy, dx)`` in each scan's pixels; the
        scans of ``estimated`` are compared.
    geometries
        ``{scan: ScanGeometry}`` (angles and pixel sizes).

    Returns
    -------
    dict
        ``{scan: (n_angles, 2)}`` errors in the scan's pixels.
    """
    errors = {
        name: np.asarray(d, float).reshape(-1, 2) - np.asarray(truth[name], float).reshape(-1, 2)
        for name, d in estimated.items()
    }
    return without_rigid_translation(errors, {name: geometries[name] for name in errors})[0]


def rms(err: np.ndarray) -> float:
    """RMS of the shift error vectors' length (px)."""
    e = np.asarray(err, float)
    return float(np.sqrt(np.mean(np.sum(e**2, axis=-1))))
