"""Zone-plate optics against known values (paper, interiorsxt_facts.md 2.3 and 4.6)."""

import math

import numpy as np
import pytest

from sxtdist import physics


def test_zone_plate_numbers_match_the_papers_table():
    # facts 2.3: NA at 550 eV; resolution and DOF at 517 eV
    assert physics.zone_plate_na(60, 550) == pytest.approx(0.01879, abs=2e-5)
    assert physics.zone_plate_na(35, 550) == pytest.approx(0.03220, abs=2e-5)
    lam = physics.wavelength_nm(517)
    assert lam == pytest.approx(2.398, abs=1e-3)
    na = physics.zone_plate_na(60, 550)
    assert 0.61 * lam / na == pytest.approx(77.9, abs=0.1)
    assert lam / na**2 / 1e3 == pytest.approx(6.80, abs=0.01)


def test_airy_psf_fwhm_is_1029_ozw():
    r = np.linspace(0, 100, 200001)
    h = physics.airy_psf(r, 35.0)
    half = r[np.argmin(np.abs(h - 0.5))]
    assert 2 * half == pytest.approx(physics.psf_fwhm_nm(35.0), rel=1e-3)
    # first zero of J1 at v = 3.8317: r = 1.22 Δr (Rayleigh)
    assert physics.airy_psf(np.array([3.8317 * 35 / math.pi]), 35.0)[0] < 1e-8


def test_otf_limits_and_cutoff():
    k = np.array([0.0, 0.5, 1.0, 1.5]) * physics.otf_cutoff_per_nm(60)
    o = physics.otf(k, 60)
    assert o[0] == pytest.approx(1.0)
    # ρ = 1/2: (2/π)(acos ½ − ½ √¾) = 0.3910
    assert o[1] == pytest.approx(0.39100, abs=1e-4)
    assert o[2] == 0 and o[3] == 0
    assert physics.otf_cutoff_per_nm(60, "physical") == pytest.approx(1 / 60)
    with pytest.raises(ValueError):
        physics.otf_cutoff_per_nm(60, "bogus")


def test_figure11_sampling_cutoff_and_views():
    # facts 4.6: 98 % of the OTF power below 0.261 cycles/px (60 nm, 20 nm pixels),
    # 0.447 cycles/px for 35 nm; N_a = int(2π f R) = 656 for R = 400 px
    f60 = physics.power_cutoff_per_nm(60.0)
    assert f60 * 20 == pytest.approx(0.261, abs=1e-3)
    assert physics.power_cutoff_per_nm(35.0) * 20 == pytest.approx(0.447, abs=1e-3)
    assert physics.views_for_frequency(400 * 20, f60) == 656
    assert physics.otf_power_fraction(np.array([f60]), 60.0)[0] == pytest.approx(0.98, abs=1e-4)


def test_zone_plate_summary_is_consistent():
    zp = physics.ZonePlate(35.0, 517.0)
    s = zp.summary()
    assert s["rayleigh_nm"] == pytest.approx(1.22 * 35)
    assert s["depth_of_field_nm"] == pytest.approx(4 * 35**2 / zp.wavelength_nm)
    assert zp.psf_sigma_px(10.0) == pytest.approx(1.029 * 35 / 2.3548 / 10, rel=1e-4)
    assert s["f98_period_nm"] == pytest.approx(1 / s["f98_per_nm"])
