"""The forward model of a soft X-ray microscope scan.

For each projection: exact line integrals of the analytic phantom on a detector
grid supersampled ``s × s`` per pixel (and padded so the PSF sees beyond a
truncated detector), transmission ``exp(-p)``, the optional dual-energy
intensity mismatch of the paper's eq. 16, the zone-plate PSF blur of the
intensity, pixel integration (mean over the sub-samples), then Poisson counts
under a smooth flat field and flat-field correction to optical depth.
Per-projection shifts displace the sampling grid exactly (no interpolation).

Memory is bounded by a band of detector rows, not by the scan: a view is traced
band by band (the phantom is analytic, so a band's rays meet only the shapes at its
heights) and the views come one at a time, in order, to be written as they come
(:func:`scan_views`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import ScanGeometry
from ..physics import FWHM_PER_SIGMA
from .phantom import CellPhantom


@dataclass(frozen=True)
class ForwardModel:
    """How one scan is acquired.

    Parameters
    ----------
    psf_fwhm_nm
        Gaussian PSF FWHM in the object plane (``None``: no blur).
    photons_per_pixel
        Mean incident photons per pixel and projection (``None``: noiseless).
    supersampling
        Sub-samples per pixel along each detector axis.
    flat_field_variation
        Peak-to-edge fall-off of the illumination (0.1 = 10 %).
    n_flats
        Flat-field frames averaged for the correction (their noise is included).
    intensity_mismatch
        ``(phi0, c)`` of eq. 16: ``T -> phi0 T + (1 - phi0) T**c``; ``None``: none.
    """

    psf_fwhm_nm: float | None = None
    photons_per_pixel: float | None = None
    supersampling: int = 2
    flat_field_variation: float = 0.12
    n_flats: int = 10
    intensity_mismatch: tuple[float, float] | None = None


def flat_field(shape: tuple[int, int], variation: float, tilt: float = 0.03) -> np.ndarray:
    """A smooth illumination profile, 1 at its peak, ``1 - variation`` at the corners."""
    rows, cols = shape
    z = (np.arange(rows) - (rows - 1) / 2) / max(rows / 2, 1)
    u = (np.arange(cols) - (cols - 1) / 2) / max(cols / 2, 1)
    r2 = (z[:, None] ** 2 + u[None, :] ** 2) / 2.0
    return (1.0 - variation * r2) * (1.0 + tilt * u[None, :])


#: Bytes of ray temporaries one band of a view may take (the chords of the largest
#: ellipsoid over the band: about 12 float64 numbers per supersampled ray).
BAND_BYTES = 48 * 2**20


@dataclass(frozen=True)
class _Sampling:
    """The supersampled detector of one scan: where its rays sit, and how far the PSF reaches."""

    rows: int
    cols: int
    s: int
    pad: int
    sigma_fine: float  # PSF sigma in sub-samples (0: no blur)
    margin: int  # sub-sample rows the blur reaches: a band computes this many more each side
    r_fine: np.ndarray  # sub-sample row positions, pixels, padded detector
    c_fine: np.ndarray

    @classmethod
    def of(cls, geometry: ScanGeometry, model: ForwardModel) -> _Sampling:
        rows, cols = geometry.detector_shape
        s = int(model.supersampling)
        sigma_px = (
            0.0
            if not model.psf_fwhm_nm
            else model.psf_fwhm_nm / FWHM_PER_SIGMA / (geometry.pixel_size_nm)
        )
        pad = int(math.ceil(4 * sigma_px)) + 1 if sigma_px > 0 else 0
        sub = (np.arange(s) + 0.5) / s - 0.5
        r_fine = (np.arange(-pad, rows + pad)[:, None] + sub[None, :]).reshape(-1)
        c_fine = (np.arange(-pad, cols + pad)[:, None] + sub[None, :]).reshape(-1)
        sigma_fine = sigma_px * s
        # scipy's Gaussian reaches int(truncate * sigma + 0.5) samples (truncate = 4)
        margin = int(4.0 * sigma_fine + 0.5) if sigma_fine > 0 else 0
        return cls(rows, cols, s, pad, sigma_fine, margin, r_fine, c_fine)

    def bands(self) -> list[tuple[int, int]]:
        """Detector rows ``[r0, r1)`` in bands whose ray temporaries fit :data:`BAND_BYTES`."""
        per_row = self.s * self.c_fine.size * 12 * 8
        n = max(1, min(self.rows, int(BAND_BYTES // per_row)))
        return [(r0, min(self.rows, r0 + n)) for r0 in range(0, self.rows, n)]


def view_transmission(
    phantom: CellPhantom,
    geometry: ScanGeometry,
    model: ForwardModel,
    view: int,
    sampling: _Sampling | None = None,
) -> np.ndarray:
    """Noise-free transmission ``(rows, cols)`` float64 of one view, computed band by band.

    Each band of detector rows traces only its own rays, plus the sub-sample rows
    the PSF reaches beyond it (clipped at the padded detector's edges, where the blur
    extends the edge as it would on the whole view), so memory is bounded by a band
    whatever the detector, and the result equals the whole view computed at once.
    The rays of a band are :func:`view_rays`': that is where per-view shifts enter,
    and a tilted rotation axis, which gives each ray its own height.
    """
    sp = sampling or _Sampling.of(geometry, model)
    s, pad, m = sp.s, sp.pad, sp.margin
    fine_rows = sp.r_fine.size
    out = np.empty((sp.rows, sp.cols))
    for r0, r1 in sp.bands():
        f0, f1 = (r0 + pad) * s, (r1 + pad) * s  # the band's own sub-sample rows
        g0, g1 = max(0, f0 - m), min(fine_rows, f1 + m)  # and what the blur reaches
        z, u = view_rays(geometry, view, sp.r_fine[g0:g1], sp.c_fine)
        t = np.exp(-phantom.line_integrals(float(geometry.angles_rad[view]), z, u))
        if model.intensity_mismatch is not None:
            phi0, c = model.intensity_mismatch
            t = phi0 * t + (1.0 - phi0) * t**c
        if sp.sigma_fine > 0:
            t = ndimage.gaussian_filter(t, sp.sigma_fine, mode="nearest", truncate=4.0)
        t = t[f0 - g0 : f1 - g0]
        t = t.reshape(r1 - r0, s, sp.cols + 2 * pad, s).mean(axis=(1, 3))
        out[r0:r1] = t[:, pad : pad + sp.cols]
    return out


def view_rays(
    geometry: ScanGeometry, view: int, r_fine: np.ndarray, c_fine: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Heights ``z`` and detector positions ``u`` (nm) of the rays at sub-sample rows and columns.

    The true displacement ``(dy, dx)`` of the view moves its sampling grid exactly. On a
    tilted detector (:mod:`sxtdist.geometry`) each ray has its own height and position:
    ``z`` and ``u`` are then ``(rows, cols)`` arrays instead of a row and a column axis.
    """
    rows, cols = geometry.detector_shape
    p = geometry.pixel_size_nm
    dy, dx = geometry.shifts_px[view]
    z = (r_fine - (rows - 1) / 2 + geometry.center_offset_px[0] - dy) * p
    u = (c_fine - (cols - 1) / 2 + geometry.center_offset_px[1] - dx) * p
    if geometry.tilted:  # detector frame (a, b) = (u, z) above, turned into the object's
        u, z = geometry.detector_to_axis_frame(u[None, :], z[:, None])
    return z, u


def scan_views(
    phantom: CellPhantom,
    geometry: ScanGeometry,
    model: ForwardModel,
    rng: np.random.Generator,
    progress=None,
) -> Iterator[np.ndarray]:
    """Simulated optical depth of one scan, one view ``(rows, cols)`` float32 at a time, in order.

    The noise is drawn from ``rng`` view after view in angle order (the flat field's
    first), so the data depend only on the seed, not on how they are written.
    ``geometry.shifts_px`` are the true displacements the images receive.
    """
    sampling = _Sampling.of(geometry, model)
    ff = flat_field(geometry.detector_shape, model.flat_field_variation)
    if model.photons_per_pixel:
        i0 = float(model.photons_per_pixel)
        flat_counts = rng.poisson(i0 * ff * model.n_flats) / model.n_flats
        flat_counts = np.maximum(flat_counts, 1.0 / model.n_flats)
    for a in range(geometry.n_angles):
        t = view_transmission(phantom, geometry, model, a, sampling)
        if model.photons_per_pixel:
            counts = rng.poisson(i0 * ff * t).astype(np.float64)
            counts = np.maximum(counts, 1.0)  # a dead-dark pixel would give an infinite depth
            view = -np.log(counts / flat_counts)
        else:
            view = -np.log(np.clip(t, 1e-30, None))
        if progress is not None:
            progress(1)
        yield view.astype(np.float32)


def project_scan(
    phantom: CellPhantom,
    geometry: ScanGeometry,
    model: ForwardModel,
    rng: np.random.Generator,
    progress=None,
) -> np.ndarray:
    """All views of :func:`scan_views` as one array ``(n_angles, rows, cols)`` float32."""
    out = np.empty((geometry.n_angles, *geometry.detector_shape), dtype=np.float32)
    for a, view in enumerate(scan_views(phantom, geometry, model, rng, progress)):
        out[a] = view
    return out
