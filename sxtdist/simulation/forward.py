"""The forward model of a soft X-ray microscope scan.

For each projection: exact line integrals of the analytic phantom on a detector
grid supersampled ``s × s`` per pixel (and padded so the PSF sees beyond a
truncated detector), transmission ``exp(-p)``, the optional dual-energy
intensity mismatch of the paper's eq. 16, the zone-plate PSF blur of the
intensity, pixel integration (mean over the sub-samples), then Poisson counts
under a smooth flat field and flat-field correction to optical depth.
Per-projection shifts displace the sampling grid exactly (no interpolation).
"""

from __future__ import annotations

import math
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


def project_scan(
    phantom: CellPhantom,
    geometry: ScanGeometry,
    model: ForwardModel,
    rng: np.random.Generator,
    progress=None,
) -> np.ndarray:
    """Simulated optical depth ``(n_angles, rows, cols)`` float32 for one scan.

    ``geometry.shifts_px`` are the true displacements the images receive.
    """
    rows, cols = geometry.detector_shape
    p = geometry.pixel_size_nm
    s = int(model.supersampling)
    sigma_px = 0.0 if not model.psf_fwhm_nm else model.psf_fwhm_nm / FWHM_PER_SIGMA / p
    pad = int(math.ceil(4 * sigma_px)) + 1 if sigma_px > 0 else 0
    sub = (np.arange(s) + 0.5) / s - 0.5
    r_fine = (np.arange(-pad, rows + pad)[:, None] + sub[None, :]).reshape(-1)
    c_fine = (np.arange(-pad, cols + pad)[:, None] + sub[None, :]).reshape(-1)
    ff = flat_field((rows, cols), model.flat_field_variation)
    out = np.empty((geometry.n_angles, rows, cols), dtype=np.float32)
    if model.photons_per_pixel:
        i0 = float(model.photons_per_pixel)
        flat_counts = rng.poisson(i0 * ff * model.n_flats) / model.n_flats
        flat_counts = np.maximum(flat_counts, 1.0 / model.n_flats)
    for a, theta in enumerate(geometry.angles_rad):
        dy, dx = geometry.shifts_px[a]
        z = (r_fine - (rows - 1) / 2 + geometry.center_offset_px[0] - dy) * p
        u = (c_fine - (cols - 1) / 2 + geometry.center_offset_px[1] - dx) * p
        t = np.exp(-phantom.line_integrals(float(theta), z, u))
        if model.intensity_mismatch is not None:
            phi0, c = model.intensity_mismatch
            t = phi0 * t + (1.0 - phi0) * t**c
        if sigma_px > 0:
            t = ndimage.gaussian_filter(t, sigma_px * s, mode="nearest", truncate=4.0)
        t = t.reshape(rows + 2 * pad, s, cols + 2 * pad, s).mean(axis=(1, 3))
        t = t[pad : pad + rows, pad : pad + cols]
        if model.photons_per_pixel:
            counts = rng.poisson(i0 * ff * t).astype(np.float64)
            counts = np.maximum(counts, 1.0)  # a dead-dark pixel would give an infinite depth
            out[a] = -np.log(counts / flat_counts)
        else:
            out[a] = -np.log(np.clip(t, 1e-30, None))
        if progress is not None:
            progress(1)
    return out
