"""Soft X-ray optics: zone-plate resolution and point spread function.

Units: lengths in nm, energies in eV. A micro zone plate of outermost zone width
``Δr`` has numerical aperture ``NA = λ / (2 Δr)``; its Rayleigh resolution is
``0.61 λ / NA = 1.22 Δr`` and its depth of field ``λ / NA²``. The in-focus
intensity PSF of a circular aperture is the Airy pattern, whose full width at
half maximum is ``1.029 λ / (2 NA) = 1.029 Δr``; sxtdist approximates it by a
Gaussian of that FWHM.
"""

from __future__ import annotations

import math

#: h c in eV nm.
HC_EV_NM = 1239.841984
#: FWHM of the Airy intensity pattern in units of λ / (2 NA).
AIRY_FWHM_FACTOR = 1.0290
#: Gaussian FWHM / sigma.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def wavelength_nm(energy_ev: float) -> float:
    """Photon wavelength (nm) at ``energy_ev``."""
    if energy_ev <= 0:
        raise ValueError(f"energy must be positive, got {energy_ev}")
    return HC_EV_NM / energy_ev


def zone_plate_na(ozw_nm: float, energy_ev: float) -> float:
    """Numerical aperture of a zone plate with outermost zone width ``ozw_nm``."""
    return wavelength_nm(energy_ev) / (2.0 * ozw_nm)


def rayleigh_resolution_nm(ozw_nm: float) -> float:
    """Rayleigh (half-period) resolution ``1.22 Δr``; independent of energy."""
    return 1.22 * ozw_nm


def depth_of_field_nm(ozw_nm: float, energy_ev: float) -> float:
    """Depth of field ``λ / NA² = 4 Δr² / λ`` (nm)."""
    return 4.0 * ozw_nm**2 / wavelength_nm(energy_ev)


def psf_fwhm_nm(ozw_nm: float) -> float:
    """FWHM (nm) of the in-focus Airy PSF, ``1.029 Δr``: the Gaussian approximation's width."""
    if ozw_nm <= 0:
        raise ValueError(f"outermost zone width must be positive, got {ozw_nm}")
    return AIRY_FWHM_FACTOR * ozw_nm


def psf_sigma_px(ozw_nm: float, pixel_size_nm: float) -> float:
    """Gaussian sigma of the zone-plate PSF in detector pixels."""
    return psf_fwhm_nm(ozw_nm) / FWHM_PER_SIGMA / pixel_size_nm
