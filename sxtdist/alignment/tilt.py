"""The rotation axis's in-plane tilt on the detector, from the full scan's slice centroids.

In parallel beam the column centroid of slice ``z``'s projection at angle ``θ`` is
``x_z cos θ + y_z sin θ`` (the slice's centre of mass) plus a term of the view alone
(its displacement and the axis column): Helgason-Ludwig's first condition, slice by
slice. On a detector turned by φ about the beam (:mod:`sxtdist.geometry`) a detector
row is no slice: it runs across slices and is sheared along them, so its centroids
break that form. :func:`estimate_axis_tilt` looks for the φ whose untilted views
(each view read where it sees slice ``z``, :meth:`ScanGeometry.detector_position_px`
with the view's shifts: along each detector column, every sample with its own ``u``)
have slice centroids that fit the form best::

    c(z, θ) = α_z cos θ + β_z sin θ + d_θ

a sinusoid per slice and a term per view. The misfit is quadratic in φ near its
minimum; Gauss-Newton steps with the derivative of the centroids by a finite
difference find it in three or four. Each step first measures the views' vertical
shifts again on the views untilted by the current φ (their row profiles): on a
tilted detector a view's row profile moves by φ times its mass centroid's column,
a sinusoid in θ that a vertical alignment without the tilt takes for shifts. Slices
weigh by their mass squared (a centroid's photon noise goes as one over its slice's
mass); slices with less than
:data:`MIN_ROW_MASS` of the heaviest's are left out. The spread is a jackknife over
the views.

A first try, a straight line through each row's centroid offset (the shear alone),
was biased by 15-25 % on a cell and had the wrong sign on compact blobs: a tilted
row also mixes slices across its width, which moves its centroid as much as the shear
does wherever the mass changes along the axis. Sampling the views back into slices
takes both into account. Sampling them on a grid of ``u`` (a spline across columns
too) left 0.01-0.05 deg of bias at 0.5 deg on the ``small`` preset without its
capillary, from the interpolation of the ice's sharp edge; read along the columns,
0.007-0.024 (benchmarks/tilt_study.py).

A capillary wall that the detector's edges cut is not removed: the cut runs along a
detector column, so on the untilted slices it moves with the height by φ per row, and
the wall's mass it takes away looks like a tilt (0.39, 0.69, 0.40 deg for 0.5 on the
``small`` preset's three seeds; narrowing the columns read, or a constant per slice
in the form, made it worse; a cosine taper fixed on the object, 6 px wide and ending
inside the detector, brought it to 0.57, 0.49, 0.60 but moved seed 3 without the
capillary from 0.507 to 0.557, since it cuts the cell too). Measure the tilt where the
capillary is inside the field or outside it, or give it by hand (``sxtdist edit
--axis-tilt-deg``).

Needs the full field of view (every slice's whole mass on the detector: the full
scan, not the interior one) and views over an arc where ``cos``, ``sin`` and a
constant are independent.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..dataset import Acquisition, open_acquisition
from ..errors import ParameterError
from ..geometry import ScanGeometry
from .fullscan import row_profile_dy

logger = logging.getLogger(__name__)

#: Rows lighter than this fraction of the heaviest row's (median) mass are left out.
MIN_ROW_MASS = 0.1
#: Largest Gauss-Newton step (radians, 2 degrees): far from the minimum the misfit is
#: not quadratic.
MAX_STEP = math.radians(2.0)


@dataclass(frozen=True)
class AxisTilt:
    """An estimate of the axis tilt.

    Attributes
    ----------
    tilt_deg
        The tilt (the convention of :mod:`sxtdist.geometry`: positive, the axis image
        runs right down the detector).
    sigma_deg
        Its jackknife standard error over the views.
    rows_used
        Detector rows that entered the fit.
    """

    tilt_deg: float
    sigma_deg: float
    rows_used: int

    def to_dict(self) -> dict:
        return {
            "tilt_deg": self.tilt_deg,
            "sigma_deg": self.sigma_deg,
            "rows_used": self.rows_used,
            "method": "row centroids of the full scan",
        }


def estimate_axis_tilt(
    views: np.ndarray,
    geometry: ScanGeometry,
    margin: int | None = None,
    iterations: int = 4,
) -> AxisTilt:
    """Estimate the axis tilt from a full-field scan's views.

    Parameters
    ----------
    views
        ``(n_views, rows, cols)`` optical depth of the whole field of view.
    geometry
        The scan: its angles and the views' horizontal shifts. The vertical ones are
        measured again at each step, from the row profiles of the untilted views
        (:func:`~sxtdist.alignment.fullscan.row_profile_dy`): a tilted detector row's
        profile moves with the view's mass centroid, so shifts measured without the
        tilt carry it.
    margin
        Rows left out at each end (default: the row profiles' search range, an eighth
        of the rows, plus two).
    iterations
        Gauss-Newton steps (each samples the views twice).
    """
    v = np.asarray(views, dtype=np.float64)
    n, rows, _ = v.shape
    if n < 4:
        raise ParameterError(f"the axis tilt needs at least 4 views, the scan has {n}")
    max_dy = max(2, rows // 8)
    margin = max_dy + 2 if margin is None else int(margin)
    if rows - 2 * margin < 3:
        raise ParameterError(f"{rows} rows leave too few for the axis tilt (margin {margin})")
    sampler = _Sampler(v, geometry.with_shifts(geometry.shifts_px * [0.0, 1.0]), margin, max_dy)
    keep = sampler.row_mass >= MIN_ROW_MASS * sampler.row_mass.max()
    if keep.sum() < 3:
        raise ParameterError("fewer than 3 slices with mass: no axis tilt can be measured")
    weight = sampler.row_mass[keep] ** 2
    theta = geometry.angles_rad
    phi, step = 0.0, math.radians(0.05)
    for _ in range(iterations):
        c0, jac = sampler.centroids_and_derivative(phi, step, keep)
        phi += float(np.clip(_gauss_newton_step(c0, jac, weight, theta), -MAX_STEP, MAX_STEP))
    c0, jac = sampler.centroids_and_derivative(phi, step, keep)
    jack = [
        _gauss_newton_step(np.delete(c0, i, 0), np.delete(jac, i, 0), weight, np.delete(theta, i))
        for i in range(n)
    ]
    jack = np.asarray(jack)
    sigma = math.sqrt((n - 1) / n * float(((jack - jack.mean()) ** 2).sum()))
    tilt = math.degrees(phi + _gauss_newton_step(c0, jac, weight, theta))
    logger.info(
        "axis tilt %+.4f ± %.4f deg from %d slices of %d views",
        tilt,
        math.degrees(sigma),
        int(keep.sum()),
        n,
    )
    return AxisTilt(tilt, math.degrees(sigma), int(keep.sum()))


class _Sampler:
    """The views sampled back into slices for a trial tilt, and those slices' centroids.

    A slice is read along each detector column at the row where that column sees it
    (a cubic spline along the column only), and each sample keeps its own position
    ``u`` across the slice: no interpolation across columns, where the edges of a
    capillary or the ice are sharp and an interpolation error that changes with the
    height would look like a tilt.
    """

    def __init__(self, views: np.ndarray, geometry: ScanGeometry, margin: int, max_dy: int) -> None:
        self.views, self.geometry, self.max_dy = views, geometry, max_dy
        (h, w), p = geometry.detector_shape, geometry.pixel_size_nm
        r = np.arange(margin, h - margin, dtype=np.float64)
        self.z = ((r - (h - 1) / 2.0 + geometry.center_offset_px[0]) * p)[:, None]  # nm
        self.cols = np.arange(w, dtype=np.float64)[None, :]
        self.row_mass = np.median(self.sample(0.0)[0].sum(axis=2), axis=0)

    def set_dy(self, dy: np.ndarray) -> None:
        shifts = self.geometry.shifts_px.copy()
        shifts[:, 0] = dy
        self.geometry = self.geometry.with_shifts(shifts)

    def centroids_and_derivative(
        self, phi: float, step: float, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The kept slices' centroids at ``phi`` and their derivative in ``phi``, the views'
        vertical shifts measured again at each (so the derivative carries theirs too)."""
        c0 = self.centroids(phi, remeasure_dy=True)[:, keep]
        c1 = self.centroids(phi + step, remeasure_dy=True)[:, keep]
        return c0, (c1 - c0) / step

    def sample(self, phi: float) -> tuple[np.ndarray, np.ndarray]:
        """``(views, slices, cols)`` values of the slices under tilt ``phi``, read along the
        detector's columns, and their positions ``u`` across the slice (pixels).

        The inverse of :meth:`ScanGeometry.detector_position_px` at a given column: the
        column's ``a`` (its shift and the offset out) and the slice's ``z`` give
        ``u = (a - z sin φ) / cos φ`` and the row of ``b = -u sin φ + z cos φ``.
        """
        g = self.geometry
        (h, w), p = g.detector_shape, g.pixel_size_nm
        off_r, off_c = g.center_offset_px
        cos, sin = math.cos(phi), math.sin(phi)
        values = np.empty((g.n_angles, self.z.shape[0], w))
        u_px = np.empty_like(values)
        for k in range(g.n_angles):
            dy, dx = g.shifts_px[k]
            a = (self.cols - (w - 1) / 2.0 + off_c - dx) * p
            u = (a - self.z * sin) / cos
            row = (-u * sin + self.z * cos) / p + (h - 1) / 2.0 - off_r + dy
            cols = np.broadcast_to(self.cols, row.shape)
            values[k] = ndimage.map_coordinates(self.views[k], [row, cols], order=3, mode="nearest")
            u_px[k] = u / p
        return values, u_px

    def centroids(self, phi: float, remeasure_dy: bool = False) -> np.ndarray:
        """``(views, slices)`` centroids ``u`` (pixels) of the slices under tilt ``phi``; with
        ``remeasure_dy`` the views' vertical shifts are first measured on their slices."""
        if remeasure_dy:  # from the row profiles of the views untilted by phi alone
            self.set_dy(np.zeros(self.geometry.n_angles))
            self.set_dy(row_profile_dy(self.sample(phi)[0], max_shift=self.max_dy))
        s, u = self.sample(phi)
        mass = s.sum(axis=2)
        return (s * u).sum(axis=2) / np.where(mass != 0, mass, 1.0)


def _gauss_newton_step(
    c: np.ndarray, jac: np.ndarray, weight: np.ndarray, theta: np.ndarray
) -> float:
    """The change of φ that best brings centroids ``c + jac Δ`` ``(views, slices)`` to the
    form of the module doc (least squares, slices weighted)."""
    q, _ = np.linalg.qr(np.stack([np.cos(theta), np.sin(theta)], axis=1))
    w = weight / weight.sum()

    def residual(x: np.ndarray) -> np.ndarray:
        x = x - q @ (q.T @ x)  # each slice's sinusoid out
        return x - (x @ w)[:, None]  # the views' terms out

    rc, rj = residual(c), residual(jac)
    den = float(((rj**2) @ w).sum())
    return -float(((rc * rj) @ w).sum()) / den if den > 0 else 0.0


def measure_axis_tilt(
    acquisition: str | os.PathLike[str] | Acquisition, scan: str = "full", store: bool = True
) -> AxisTilt:
    """Estimate the axis tilt from one scan of an acquisition and store it on every scan.

    The scans share the detector and the rotation stage, so the tilt measured on the
    full scan (the one whose views hold the whole sample) is the interior scan's too.
    Stored as each scan's ``axis_tilt_deg`` (which every operator uses) and, with how
    it was measured, as ``axis_tilt``. Align again afterwards: vertical shifts
    measured without the tilt carry part of it (:func:`estimate_axis_tilt`).
    """
    acq = (
        acquisition
        if isinstance(acquisition, Acquisition)
        else open_acquisition(acquisition, mode="r+" if store else "r")
    )
    s = acq[scan]
    result = estimate_axis_tilt(s.read(), s.geometry)
    if store:
        record = {**result.to_dict(), "scan": scan, "date": _now()}
        for name in acq.scans:
            acq.update_scan(name, axis_tilt_deg=result.tilt_deg, axis_tilt=record)
        logger.info("stored axis tilt %+.4f deg on %s", result.tilt_deg, ", ".join(acq.scans))
    return result


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
