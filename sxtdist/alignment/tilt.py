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

a sinusoid per slice and a term per view, plus a periodic function of the pixel phase
described below. The misfit is quadratic in φ near its minimum; Gauss-Newton steps on
it (the other terms fitted at each φ, and the derivative of what they leave by a
finite difference) find it in three or four. Each step first measures the views'
vertical shifts again on the views untilted by the current φ (their row profiles): on
a tilted detector a view's row profile moves by φ times its mass centroid's column, a
sinusoid in θ that a vertical alignment without the tilt takes for shifts. Slices
weigh by their mass squared (a centroid's photon noise goes as one over its slice's
mass); slices with less than :data:`MIN_ROW_MASS` of the heaviest's are left out. The
spread is a jackknife over the views.

**The pixel phase.** A capillary's wall (and, less, the ice column's edge) is a
cylinder about the axis, the same in every view, and sharper than a pixel: its
projection peaks at the lumen's edge. A pixel records ``-log`` of the mean
transmission over its width, not the mean optical depth, so how much of the wall's
mass (and where) a slice's samples show depends on where the wall falls within a
pixel: on the fraction of the axis image's column, ``dx_θ + z sin φ`` (the view's
shift, and the tilt along the height). With the axis image's column changing by
``z sin φ`` down each view, that error is a smooth trend along the height, different in
each view: on the ``small`` preset a wall at 29 pixels from the axis moved slice
centroids by up to 0.3 px over 44 rows, and the tilt by 0.1-0.4 deg. The error is
periodic in that phase and the same for every view, so :data:`PIXEL_PHASE_HARMONICS`
harmonics of it are fitted along with the tilt: those that the views' sub-pixel shifts
spread over the circle (:data:`PHASE_SPREAD`), since it is the shifts that tell them
from a tilt; a scan with no shifts gets none, and a wall's bias. The harmonics depend
on φ, so the Gauss-Newton derivative is that of what the fit leaves (steps that held
them fixed went to 0.75 deg for 0.5 on one seed). Views whose outermost columns carry
mass (:data:`TRUNCATED_EDGE`: a wall cut by the detector's edge, a cut that moves with
the height by φ per row) are left out, unless fewer than :data:`MIN_VIEWS` would be
left. benchmarks/tilt_study.py has the figures (docs/tilt.md).

Tried and rejected: a straight line through each row's centroid offset (the shear
alone): 15-25 % of bias on a cell, the wrong sign on compact blobs (a tilted row mixes
slices across its width). Sampling the views on a grid of ``u`` (a spline across
columns too): 0.01-0.05 deg of bias from the interpolation of the ice's sharp edge;
read along the columns, 0.007-0.024. Narrowing the columns read, a constant per slice
in the form, a cosine taper fixed on the object (inside the lumen or ending inside the
detector; seeds 11-13): the taper takes the ice column's share of the signal (a ring
about the axis is the best marker of the axis's column per slice) and what it leaves
at the wall's flank moved the tilt by up to 0.5 deg. Leaving out the cut views alone:
still 0.07-0.42 deg off.

Needs the full field of view (every slice's whole mass on the detector: the full
scan, not the interior one) and views over an arc where ``cos``, ``sin`` and a
constant are independent.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..dataset import Acquisition, open_acquisition
from ..errors import ParameterError, SxtdistWarning
from ..geometry import ScanGeometry
from .fullscan import row_profile_dy

logger = logging.getLogger(__name__)

#: Rows lighter than this fraction of the heaviest row's (median) mass are left out.
MIN_ROW_MASS = 0.1
#: Largest Gauss-Newton step (radians, 2 degrees): far from the minimum the misfit is
#: not quadratic.
MAX_STEP = math.radians(2.0)
#: Harmonics of the axis image's pixel phase fitted along with the tilt (module doc).
PIXEL_PHASE_HARMONICS = 3
#: A harmonic ``h`` is fitted only if ``|mean exp(2πi h dx)|`` over the views' horizontal
#: shifts ``dx`` is below this (phases spread enough that the term is no tilt).
PHASE_SPREAD = 0.5
#: A view whose outermost columns (5-row means) reach this fraction of the views' typical
#: row maximum is cut by the detector's edge and left out.
TRUNCATED_EDGE = 0.05
#: Fewest views left after the cut ones: with fewer, all are used (and a warning given).
MIN_VIEWS = 8


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
    views_used
        Views that entered it (those cut by the detector's edge are left out).
    """

    tilt_deg: float
    sigma_deg: float
    rows_used: int
    views_used: int

    def to_dict(self) -> dict:
        return {
            "tilt_deg": self.tilt_deg,
            "sigma_deg": self.sigma_deg,
            "rows_used": self.rows_used,
            "views_used": self.views_used,
            "method": "slice centroids of the full scan, pixel phase fitted",
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
    use = _untruncated_views(v, margin)
    v, geometry, n = v[use], geometry.subset(np.flatnonzero(use)), int(use.sum())
    sampler = _Sampler(v, geometry.with_shifts(geometry.shifts_px * [0.0, 1.0]), margin, max_dy)
    keep = sampler.row_mass >= MIN_ROW_MASS * sampler.row_mass.max()
    if keep.sum() < 3:
        raise ParameterError("fewer than 3 slices with mass: no axis tilt can be measured")
    weight = sampler.row_mass[keep] ** 2
    theta = geometry.angles_rad
    fit = _Fit(theta, weight, _spread_harmonics(geometry.shifts_px[:, 1]))
    phi, step = 0.0, math.radians(0.05)
    for _ in range(iterations):
        at, ahead = sampler.fit_inputs(phi, step, keep)
        gn = fit.gauss_newton_step(at, ahead, step)
        phi += float(np.clip(gn, -MAX_STEP, MAX_STEP))
    at, ahead = sampler.fit_inputs(phi, step, keep)
    jack = np.asarray(
        [
            fit.without_view(i).gauss_newton_step(
                [np.delete(x, i, 0) for x in at], [np.delete(x, i, 0) for x in ahead], step
            )
            for i in range(n)
        ]
    )
    sigma = math.sqrt((n - 1) / n * float(((jack - jack.mean()) ** 2).sum()))
    tilt = math.degrees(phi + fit.gauss_newton_step(at, ahead, step))
    logger.info(
        "axis tilt %+.4f ± %.4f deg from %d slices of %d views",
        tilt,
        math.degrees(sigma),
        int(keep.sum()),
        n,
    )
    return AxisTilt(tilt, math.degrees(sigma), int(keep.sum()), n)


def _untruncated_views(views: np.ndarray, margin: int) -> np.ndarray:
    """The views whose outermost columns carry no mass (:data:`TRUNCATED_EDGE`), or all of
    them, with a warning, when fewer than :data:`MIN_VIEWS` are left."""
    edges = views[:, margin : views.shape[1] - margin][:, :, [0, -1]]
    edge = ndimage.uniform_filter1d(edges, 5, axis=1).max(axis=(1, 2))  # 5 rows: noise down
    use = edge <= TRUNCATED_EDGE * float(np.median(views.max(axis=2)))
    if use.sum() < MIN_VIEWS:
        warnings.warn(
            f"the axis tilt: the sample reaches past the detector's edge in {int((~use).sum())} "
            f"of {len(use)} views; all used, the estimate may be biased (docs/tilt.md)",
            SxtdistWarning,
            stacklevel=3,
        )
        return np.ones_like(use)
    if not use.all():
        logger.info("axis tilt: %d views cut by the detector's edge left out", int((~use).sum()))
    return use


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

    def fit_inputs(
        self, phi: float, step: float, keep: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The kept slices' centroids and the axis image's pixel phase at ``phi`` and at
        ``phi + step``, the views' vertical shifts measured again at each (so the
        difference carries theirs too)."""
        return tuple(
            (
                self.centroids(p, remeasure_dy=True)[:, keep],
                self.axis_phase(p)[:, keep],
            )
            for p in (phi, phi + step)
        )

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

    def axis_phase(self, phi: float) -> np.ndarray:
        """``(views, slices)`` column of the axis image where each view sees each slice under
        tilt ``phi`` (pixels; only its fraction matters)."""
        dx = self.geometry.shifts_px[:, 1] - self.geometry.center_offset_px[1]
        return dx[:, None] + self.z[:, 0][None, :] * math.sin(phi) / self.geometry.pixel_size_nm

    def centroids(self, phi: float, remeasure_dy: bool = False) -> np.ndarray:
        """``(views, slices)`` centroids ``u`` (pixels) of the slices under tilt ``phi``; with
        ``remeasure_dy`` the views' vertical shifts are first measured on their slices."""
        if remeasure_dy:  # from the row profiles of the views untilted by phi alone
            self.set_dy(np.zeros(self.geometry.n_angles))
            self.set_dy(row_profile_dy(self.sample(phi)[0], max_shift=self.max_dy))
        s, u = self.sample(phi)
        mass = s.sum(axis=2)
        return (s * u).sum(axis=2) / np.where(mass != 0, mass, 1.0)


def _spread_harmonics(dx: np.ndarray) -> tuple[int, ...]:
    """The pixel-phase harmonics that the views' horizontal shifts make identifiable."""
    h = np.arange(1, PIXEL_PHASE_HARMONICS + 1)
    spread = np.abs(np.exp(2j * np.pi * h[:, None] * dx[None, :]).mean(axis=1))
    return tuple(int(k) for k in h[spread < PHASE_SPREAD])


@dataclass(frozen=True)
class _Fit:
    """The form of the module doc for the views at ``theta``, slices weighted by
    ``weight``, with pixel-phase ``harmonics``."""

    theta: np.ndarray
    weight: np.ndarray
    harmonics: tuple[int, ...]

    def without_view(self, i: int) -> _Fit:
        return _Fit(np.delete(self.theta, i), self.weight, self.harmonics)

    def residual(self, c: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """What of the centroids ``c`` ``(views, slices)`` the form leaves, its terms (the
        pixel phase's at ``phase``) fitted by least squares (flattened and scaled by the
        square root of the slices' weights)."""
        q, _ = np.linalg.qr(np.stack([np.cos(self.theta), np.sin(self.theta)], axis=1))
        w = self.weight / self.weight.sum()

        def project(x: np.ndarray) -> np.ndarray:
            x = x - q @ (q.T @ x)  # each slice's sinusoid out
            return x - (x @ w)[:, None]  # the views' terms out

        sw = np.sqrt(np.broadcast_to(w, c.shape)).ravel()
        r = project(c).ravel() * sw
        if not self.harmonics:
            return r
        h = np.asarray(self.harmonics)[:, None, None] * (2 * np.pi * phase)
        terms = np.stack([project(x).ravel() * sw for x in (*np.cos(h), *np.sin(h))], axis=1)
        return r - terms @ np.linalg.lstsq(terms, r, rcond=None)[0]

    def gauss_newton_step(
        self, at: Sequence[np.ndarray], ahead: Sequence[np.ndarray], step: float
    ) -> float:
        """The change of φ that best brings the residual to zero, from the centroids and
        pixel phases at φ (``at``) and at φ + ``step`` (``ahead``)."""
        r0 = self.residual(*at)
        jac = (self.residual(*ahead) - r0) / step
        den = float(jac @ jac)
        return -float(jac @ r0) / den if den > 0 else 0.0


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
