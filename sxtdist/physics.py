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
from dataclasses import dataclass

import numpy as np

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


# -- in-focus PSF and its transfer function ----------------------------------------------------

#: Fraction of the OTF power that defines the sampling cut-off of the paper's figure 11.
PAPER_POWER_FRACTION = 0.98


def airy_psf(r_nm: np.ndarray, ozw_nm: float) -> np.ndarray:
    """In-focus intensity PSF ``(2 J1(v) / v)²`` of a zone plate, 1 at the centre.

    ``v = 2π NA r / λ = π r / Δr``: in focus the PSF depends on the outermost zone
    width only, not on the energy.
    """
    from scipy.special import j1

    v = np.pi * np.abs(np.asarray(r_nm, dtype=np.float64)) / ozw_nm
    out = np.ones_like(v)
    nz = v > 1e-12
    out[nz] = (2.0 * j1(v[nz]) / v[nz]) ** 2
    return out


def otf_cutoff_per_nm(ozw_nm: float, convention: str = "paper") -> float:
    """Spatial frequency (cycles/nm) where the incoherent OTF reaches zero.

    ``"physical"``: ``2 NA / λ = 1 / Δr``. ``"paper"``: the reference code's
    ``1.22 / FWHM`` with ``FWHM = Δr`` (interiorsxt_facts.md 4.6), i.e. ``1.22 / Δr``;
    it is the convention behind the paper's figure 11 (656 views for 60 nm).
    """
    if ozw_nm <= 0:
        raise ValueError(f"outermost zone width must be positive, got {ozw_nm}")
    if convention == "physical":
        return 1.0 / ozw_nm
    if convention == "paper":
        return 1.22 / ozw_nm
    raise ValueError(f"unknown OTF convention {convention!r} (paper or physical)")


def otf(k_per_nm: np.ndarray, ozw_nm: float, convention: str = "paper") -> np.ndarray:
    """Incoherent circular-aperture OTF ``(2/π)(acos ρ − ρ √(1 − ρ²))``, ``ρ = k / k_c``.

    1 at zero frequency, 0 at and beyond the cut-off :func:`otf_cutoff_per_nm`.
    """
    rho = np.clip(
        np.abs(np.asarray(k_per_nm, dtype=np.float64))
        * (1.0 / otf_cutoff_per_nm(ozw_nm, convention)),
        0.0,
        1.0,
    )
    return (2.0 / np.pi) * (np.arccos(rho) - rho * np.sqrt(1.0 - rho**2))


def otf_power_fraction(
    k_per_nm: np.ndarray, ozw_nm: float, convention: str = "paper"
) -> np.ndarray:
    """``∫₀^k OTF² dk / ∫₀^{k_c} OTF² dk``: the share of the (1-D) OTF power below ``k``."""
    kc = otf_cutoff_per_nm(ozw_nm, convention)
    rho = np.linspace(0.0, 1.0, 4001)
    power = otf(rho * kc, ozw_nm, convention) ** 2
    cum = np.concatenate([[0.0], np.cumsum((power[1:] + power[:-1]) / 2.0)])
    cum /= cum[-1]
    return np.interp(np.abs(np.asarray(k_per_nm, dtype=np.float64)) / kc, rho, cum)


def power_cutoff_per_nm(
    ozw_nm: float, fraction: float = PAPER_POWER_FRACTION, convention: str = "paper"
) -> float:
    """Frequency (cycles/nm) below which ``fraction`` of the OTF power lies (figure 11's f_cut)."""
    if not 0 < fraction < 1:
        raise ValueError(f"power fraction must be in (0, 1), got {fraction}")
    kc = otf_cutoff_per_nm(ozw_nm, convention)
    rho = np.linspace(0.0, 1.0, 4001)
    frac = otf_power_fraction(rho * kc, ozw_nm, convention)
    return float(np.interp(fraction, frac, rho) * kc)


def views_for_frequency(radius_nm: float, f_per_nm: float, arc_deg: float = 180.0) -> int:
    """Views needed to sample a disc of ``radius_nm`` up to ``f_per_nm`` (Rattey–Lindgren).

    The Radon transform of a point at radius ``R`` is band-limited in the angular
    frequency to ``2π R k``; over 180° that many views sample it (paper, B.3 and
    figure 11: ``N_a ≈ 2π R f_cut``). A 360° scan with interleaved mirrored views
    needs the same number of views in total.
    """
    if radius_nm <= 0 or f_per_nm <= 0:
        raise ValueError("radius and frequency must be positive")
    del arc_deg  # same count for 180° and interleaved 360°
    return int(math.ceil(2.0 * math.pi * radius_nm * f_per_nm - 1e-9))


@dataclass(frozen=True)
class ZonePlate:
    """A micro zone plate objective at one photon energy.

    Parameters
    ----------
    ozw_nm
        Outermost zone width Δr (nm).
    energy_ev
        Photon energy (eV); the water window's 517 eV by default.
    """

    ozw_nm: float
    energy_ev: float = 517.0

    @property
    def wavelength_nm(self) -> float:
        return wavelength_nm(self.energy_ev)

    @property
    def na(self) -> float:
        return zone_plate_na(self.ozw_nm, self.energy_ev)

    @property
    def rayleigh_nm(self) -> float:
        return rayleigh_resolution_nm(self.ozw_nm)

    @property
    def depth_of_field_nm(self) -> float:
        return depth_of_field_nm(self.ozw_nm, self.energy_ev)

    @property
    def psf_fwhm_nm(self) -> float:
        return psf_fwhm_nm(self.ozw_nm)

    def psf_sigma_px(self, pixel_size_nm: float) -> float:
        return psf_sigma_px(self.ozw_nm, pixel_size_nm)

    def sampling_cutoff_per_nm(
        self, fraction: float = PAPER_POWER_FRACTION, convention: str = "paper"
    ) -> float:
        return power_cutoff_per_nm(self.ozw_nm, fraction, convention)

    def summary(self) -> dict:
        """The numbers a beamline scientist quotes, in nm."""
        f = self.sampling_cutoff_per_nm()
        return {
            "ozw_nm": self.ozw_nm,
            "energy_ev": self.energy_ev,
            "wavelength_nm": self.wavelength_nm,
            "na": self.na,
            "rayleigh_nm": self.rayleigh_nm,
            "psf_fwhm_nm": self.psf_fwhm_nm,
            "depth_of_field_nm": self.depth_of_field_nm,
            "otf_cutoff_per_nm": otf_cutoff_per_nm(self.ozw_nm),
            "f98_per_nm": f,
            "f98_period_nm": 1.0 / f,
        }
