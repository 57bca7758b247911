"""PSNR, radial PSNR, FRC and the null-space estimate against known answers."""

import math

import numpy as np
import pytest

from sxtdist import metrics, nullspace


def test_psnr_matches_a_hand_computation():
    ref = np.zeros((10, 10))
    ref[:, :5] = 2.0  # 99th percentile of the reference = 2
    x = ref.copy()
    x[0, 0] += 0.1
    x[1, 1] -= 0.3
    mse = (0.1**2 + 0.3**2) / 100
    assert metrics.data_range(ref) == pytest.approx(2.0)
    assert metrics.psnr(x, ref) == pytest.approx(10 * math.log10(4 / mse))
    # a mask restricts the MSE, not the data range
    m = np.zeros_like(ref, bool)
    m[:2, :2] = True
    assert metrics.psnr(x, ref, mask=m) == pytest.approx(10 * math.log10(4 / (0.1 / 4)))
    assert metrics.psnr(ref, ref) == math.inf
    with pytest.raises(ValueError):
        metrics.psnr(x[:5], ref)


def test_radial_psnr_scores_each_annulus_alone():
    n = 64
    ref = np.ones((2, n, n))
    x = ref.copy()
    r = metrics.radial_distance(ref.shape)
    x[(r >= 10) & (r < 20)] += 0.5  # error only in the second annulus
    out = metrics.radial_psnr(x, ref, bin_px=10, r_max_px=30)
    assert np.isinf(out.psnr[0]) and np.isinf(out.psnr[2])
    assert out.psnr[1] == pytest.approx(10 * math.log10(1 / 0.25))
    assert out.count.sum() == np.count_nonzero(r < 30)
    assert 10 < out.r_mean[1] < 20


def test_frc_of_an_image_with_itself_is_one():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 64))
    c = metrics.frc(a, a, voxel_size_nm=20.0)
    assert np.allclose(c.frc, 1.0)
    assert c.crossing() is None and c.resolution() is None
    assert c.freq[-1] == pytest.approx(0.5)


def test_frc_of_independent_noise_crosses_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 128, 128))
    c = metrics.frc(a, b)
    assert c.crossing("1/7") < 0.05
    assert c.crossing("half-bit") < 0.05
    assert abs(c.frc[5:].mean()) < 0.02


def test_frc_resolution_of_signal_plus_noise():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    sigma, noise = 2.0, 0.1
    signal = gaussian_filter(rng.standard_normal((256, 256)), sigma, mode="wrap")
    a = signal + noise * rng.standard_normal(signal.shape)
    b = signal + noise * rng.standard_normal(signal.shape)
    c = metrics.frc(a, b, voxel_size_nm=10.0)
    # FRC = G² / (G² + noise²) with G = exp(-2π²σ²f²): 1/7 where G² = noise² / 6
    f = math.sqrt(math.log(6 / noise**2) / (4 * math.pi**2 * sigma**2))
    assert c.crossing() == pytest.approx(f, rel=0.03)
    assert c.resolution() == pytest.approx(10.0 / f, rel=0.03)
    # half-bit lies above 1/7 for small rings: it crosses earlier or equal
    assert c.crossing("half-bit") <= c.crossing("1/7") + 1e-9


def test_fsc_3d_and_half_bit_threshold():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((16, 32, 32))
    c = metrics.frc(a, a + 0.01 * rng.standard_normal(a.shape), smooth_sigma=3)
    assert c.frc.shape == (9,)
    assert np.all(c.frc > 0.99) and c.smoothed is not None
    # half-bit threshold tends to 0.2071/1.2071 for large rings and is 1 at n = 1
    assert metrics.half_bit_threshold(np.array([1.0]))[0] == pytest.approx(1.0, abs=1e-3)
    assert metrics.half_bit_threshold(np.array([1e12]))[0] == pytest.approx(0.1716, abs=1e-3)


def test_split_half_indices_alternate_in_angle():
    angles = np.array([30.0, 0.0, 20.0, 10.0, 40.0])
    even, odd = metrics.split_half_indices(angles)
    assert sorted(angles[even]) == [0.0, 20.0, 40.0]
    assert sorted(angles[odd]) == [10.0, 30.0]


@pytest.fixture(scope="module")
def slice_problem():
    from sxtdist.geometry import ScanGeometry, VolumeGrid, scan_angles
    from sxtdist.operators.projector import SliceProjector

    n, v = 32, 100.0
    grid = VolumeGrid((1, n, n), v)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    ph = 0.2 * (yy**2 + xx**2 < 14**2) + 0.1 * ((yy - 4) ** 2 + (xx + 3) ** 2 < 16)
    ops = {
        "full": SliceProjector(ScanGeometry(scan_angles(64), v, (1, 46)), grid, 1),
        "roi": SliceProjector(ScanGeometry(scan_angles(64), v, (1, 12)), grid, 1),
        "sparse": SliceProjector(ScanGeometry(scan_angles(5), v, (1, 46)), grid, 1),
    }
    mask = metrics.cylinder_mask((n, n), 12)[:, :, None]
    return ph[:, :, None].astype(np.float32), ops, mask


def test_null_space_of_untruncated_full_scan_is_zero(slice_problem):
    ph, ops, mask = slice_problem
    ns = nullspace.null_space(ops["full"], ph, iterations=200, mask=mask)
    assert ns.ratio < 1e-4 and ns.ratio_mask < 1e-4


def test_null_space_interior_sparse_and_combined(slice_problem):
    ph, ops, mask = slice_problem
    interior = nullspace.null_space([ops["roi"]], ph, 100, mask)
    sparse = nullspace.null_space([ops["sparse"]], ph, 100, mask)
    combined = nullspace.null_space([ops["roi"], ops["sparse"]], ph, 100, mask)
    assert interior.ratio > 0.1  # truncation leaves most of the outside unmeasured
    assert interior.ratio_mask > 0.01  # and a bias inside the ROI
    assert sparse.ratio > 0.01
    # combining pins the ROI down far better than either alone
    assert combined.ratio_mask < interior.ratio_mask / 10
    assert combined.ratio_mask < sparse.ratio_mask
    # the null-space part really is invisible to the operators
    for op in (ops["roi"], ops["sparse"]):
        assert np.linalg.norm(op(combined.x_null)) < 0.05 * np.linalg.norm(op(ph))
    assert combined.norm_ratio == pytest.approx(math.sqrt(combined.ratio))


def test_null_space_accepts_a_solver_callable(slice_problem):
    ph, ops, _ = slice_problem
    calls = []

    def solver(operators, x0, iterations):
        calls.append(iterations)
        return nullspace.cgls_zero_data(operators, x0, iterations)

    ns = nullspace.null_space([ops["full"]], ph, 7, solver=solver)
    assert calls == [7] and ns.ratio < 0.5
    with pytest.raises(ValueError):
        nullspace.null_space([ops["full"]], np.zeros_like(ph))


def test_transfer_function_is_the_blur_and_ignores_noise():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(4)
    truth = rng.standard_normal((256, 256))
    sigma = 3.0
    blurred = gaussian_filter(truth, sigma, mode="wrap")
    t = metrics.transfer(blurred, truth, voxel_size_nm=10.0)
    f = np.sqrt(np.log(2) / (2 * np.pi**2)) / sigma  # exp(-2π²σ²f²) = 1/2
    assert t.crossing() == pytest.approx(f, rel=0.05)
    assert t.resolution() == pytest.approx(10.0 / f, rel=0.05)
    k = t.freq < 0.3
    assert np.allclose(
        t.gain[k][1:], np.exp(-2 * np.pi**2 * sigma**2 * t.freq[k][1:] ** 2), atol=0.03
    )
    # independent noise of the truth's power: the gain stays at 1, no crossing; FRC sees it
    noisy = truth + rng.standard_normal(truth.shape)
    assert metrics.transfer(noisy, truth).resolution() is None
    assert metrics.frc(noisy, truth).crossing() is None  # FRC = 1/√2 > 1/7 everywhere
    # and FRC is blind to the blur (up to where the truncated kernel's spectrum is ~0)
    blind = metrics.frc(blurred, truth)
    assert np.all(blind.frc[1:][blind.freq[1:] < 0.2] > 0.99)
