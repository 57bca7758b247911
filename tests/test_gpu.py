"""The GPU backend: geometry, operator plumbing, memory sizing and backend choice on the CPU;
the device itself in tests marked ``gpu`` (skipped with the reason where there is none).

The CPU tests drive :class:`GpuSliceProjector` with ``tests/_astra3d_emulator.py``, a
numpy transcription of ASTRA's CUDA ``par3d`` forward kernel, so the vectors, the
layout transposes, the supersampling average and the scaling are checked against
the CPU projector without a GPU. Whether ASTRA really behaves like the emulator is
what the ``gpu`` tests check on a device.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.ndimage as ndi
from _astra3d_emulator import EmulatedEngine

import sxtdist
from sxtdist import backends
from sxtdist.errors import ParameterError, SxtdistError
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import RowSampling, ScanModel, SliceProjector, dot_test, scan_operator
from sxtdist.operators.gpu import (
    ASTRA_HEADROOM,
    LAYOUTS,
    GpuError,
    GpuSliceProjector,
    check_astra_output,
    check_free_memory,
    device_lock,
    sentinel_indices,
    texture_nbytes,
    vectors_for_layout,
)
from sxtdist.operators.projector import default_supersampling
from sxtdist.runner import reconstruct
from sxtdist.volume import open_volume

TOL = 1e-5


def _geom(n=12, cols=20, rows=10, pixel=10.0, offset=(0.0, 0.0), shifts=None):
    return ScanGeometry(np.arange(n) * 180.0 / n + 3.0, pixel, (rows, cols), offset, shifts)


def _emulated(g, grid, nz, pad=0, supersampling=None, layout="yxz"):
    s = default_supersampling(g, grid) if supersampling is None else supersampling
    cols = (g.detector_shape[1] + 2 * pad) * s
    ny, nx = grid.slice_shape
    vectors = vectors_for_layout(g.astra_vectors_3d(grid.voxel_size_nm, s, pad), layout)
    vol_shape = (ny, nx, nz) if layout == "yxz" else (nz, ny, nx)
    engine = EmulatedEngine(vectors, vol_shape, (nz, cols))
    return GpuSliceProjector(
        g, grid, nz, pad=pad, supersampling=supersampling, engine=engine, layout=layout
    )


def _smooth(shape, seed=0):
    x = np.random.default_rng(seed).random(shape)
    return ndi.gaussian_filter(x, (2, 2, 0)).astype(np.float32)


CASES = {
    "pixel=voxel": dict(pixel=10.0, cols=24, shifts=None),
    "coarse 2x, offset, shifts": dict(
        pixel=20.0, cols=11, offset=(0.0, 2.5), shifts=np.random.default_rng(1).normal(size=(12, 2))
    ),
    "fine, off-centre ROI": dict(pixel=10.0, cols=12, offset=(0.0, -4.0)),
}

# -- geometry: the 3D vectors -----------------------------------------------------------------


def test_vectors_3d_are_astras_parallel3d_when_centred():
    """No offset, no shifts, one sample per pixel: exactly ASTRA's own ``geom_2vec``."""
    import astra

    g = _geom(cols=16, pixel=20.0)
    pg = astra.create_proj_geom("parallel3d", 2.0, 1.0, 5, 16, g.angles_rad)
    ref = astra.functions.geom_2vec(pg)["Vectors"]
    np.testing.assert_allclose(g.astra_vectors_3d(10.0), ref, atol=1e-12)


def test_vectors_3d_agree_with_the_2d_ones():
    """ASTRA's 2D volume has y flipped; 3D does not: same lines, y mirrored; rows along z."""
    shifts = np.random.default_rng(0).normal(size=(12, 2))
    g = _geom(pixel=30.0, offset=(1.0, 2.5), shifts=shifts)
    for s, pad in ((1, 0), (3, 2)):
        v2 = g.astra_vectors_2d(10.0, s, pad)
        v3 = g.astra_vectors_3d(10.0, s, pad)
        flip = np.array([1.0, -1.0])
        for k2, k3 in ((0, 0), (2, 3), (4, 6)):  # ray, detector centre, u
            np.testing.assert_allclose(v3[:, k3 : k3 + 2], v2[:, k2 : k2 + 2] * flip, atol=1e-12)
            np.testing.assert_allclose(v3[:, k3 + 2], 0.0)
        np.testing.assert_allclose(v3[:, 9:12], np.tile([0.0, 0.0, 1.0], (12, 1)))
        np.testing.assert_allclose(np.linalg.norm(v3[:, 6:9], axis=1), 3.0 / s)
        np.testing.assert_allclose(np.einsum("ij,ij->i", v3[:, 0:3], v3[:, 6:9]), 0.0, atol=1e-12)


def test_vectors_3d_project_points_where_our_convention_says():
    """ASTRA's own ``projectPoint`` (C++, runs on CPU) on our vectors: a voxel centre at
    (x, y, z) lands on the fine column whose centre is u = x cos θ + y sin θ (shift and
    offset included) and on the row of its slice."""
    import astra
    import astra.experimental

    grid = VolumeGrid((6, 30, 30), 10.0)
    shifts = np.random.default_rng(2).normal(size=(12, 2))
    g = _geom(cols=13, pixel=20.0, offset=(0.0, 1.5), shifts=shifts)
    s, pad, nz = 2, 3, 6
    n_fine = (g.detector_shape[1] + 2 * pad) * s
    vectors = g.astra_vectors_3d(10.0, s, pad)
    pg = astra.create_proj_geom("parallel3d_vec", nz, n_fine, vectors)
    assert astra.geom_size(pg) == (nz, g.n_angles, n_fine)  # (rows, angles, cols)
    # the same lines with ASTRA's axes (x, y, z) = our (z, x, y): the "yxz" layout
    pg_yxz = astra.create_proj_geom(
        "parallel3d_vec", nz, n_fine, vectors_for_layout(vectors, "yxz")
    )
    ny, nx = grid.slice_shape
    for iz, iy, ix in ((0, 3, 25), (5, 17, 4), (2, 15, 15)):
        # voxel centre in ASTRA's 3D volume (voxel units, window centred; y grows with row)
        x, y, z = ix - (nx - 1) / 2, iy - (ny - 1) / 2, iz - (nz - 1) / 2
        for a in range(g.n_angles):
            u_col, v_row = astra.experimental.projectPoint(pg, x, y, z, a)
            assert astra.experimental.projectPoint(pg_yxz, z, x, y, a) == pytest.approx(
                (u_col, v_row), abs=1e-9
            )
            t = g.angles_rad[a]
            u_nm = (x * np.cos(t) + y * np.sin(t)) * grid.voxel_size_nm
            centres = g.column_centers_nm(a, pad, s)
            expected = (u_nm - centres[0]) / (centres[1] - centres[0])
            assert u_col == pytest.approx(expected, abs=1e-6)
            assert v_row == pytest.approx(iz, abs=1e-9)


# -- the operator, with the emulated engine ------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("pad", [0, 2])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gpu_projector_matches_cpu_projector(case, pad, layout):
    """Both ways of handing the slab to ASTRA (as is with permuted axes, or transposed)."""
    kw = dict(CASES[case])
    g = _geom(**kw)
    grid = VolumeGrid((3, 24, 26), 10.0)  # ny != nx: a swapped axis would show
    cpu = SliceProjector(g, grid, 3, pad=pad)
    gpu = _emulated(g, grid, 3, pad=pad, layout=layout)
    assert gpu.domain_shape == cpu.domain_shape and gpu.range_shape == cpu.range_shape
    x = _smooth(cpu.domain_shape)
    a, b = cpu(x), gpu(x)
    assert b.dtype == np.float32 and b.flags.c_contiguous
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    y = _smooth(cpu.range_shape, 1)
    assert np.abs(cpu.T(y) - gpu.T(y)).max() <= 1e-4 * np.abs(cpu.T(y)).max()
    assert dot_test(gpu) < TOL
    assert gpu.engine.calls == {"fp": 2, "bp": 2}
    out = np.empty(gpu.domain_shape, np.float32)
    assert gpu.T(y, out) is out
    np.testing.assert_allclose(out, gpu.T(y), rtol=1e-6)


def test_gpu_projector_supersampling_averages_the_samples():
    """A forced 3 samples per coarse pixel: FP is the mean of the fine samples, times the voxel."""
    g = _geom(pixel=20.0, cols=11)
    grid = VolumeGrid((2, 20, 20), 10.0)
    op = _emulated(g, grid, 2, supersampling=3, layout="zyx")
    x = _smooth(op.domain_shape)
    fine = np.empty(op.engine.proj_shape, np.float32)
    op.engine.fp(np.ascontiguousarray(x.transpose(2, 0, 1)), fine)
    expected = fine.reshape(2, 12, 11, 3).mean(axis=3).transpose(1, 2, 0) * 0.01
    np.testing.assert_allclose(op(x), expected, rtol=1e-5)
    assert dot_test(op) < TOL


def test_gpu_projector_refuses_an_engine_of_another_shape():
    g = _geom()
    grid = VolumeGrid((3, 24, 24), 10.0)
    wrong = EmulatedEngine(g.astra_vectors_3d(10.0), (24, 24, 4), (3, 20))
    with pytest.raises(ValueError, match="engine shapes"):
        GpuSliceProjector(g, grid, 3, engine=wrong)


@pytest.mark.parametrize("psf", [0.0, 0.7])
def test_gpu_scan_operator_matches_cpu(psf):
    """The whole scan model (rows, PSF, crop) with the GPU projector: CPU shapes and values."""
    rng = np.random.default_rng(3)
    grid = VolumeGrid((24, 20, 20), 10.0)
    models = [
        ScanModel(_geom(n=5, cols=10, rows=12, pixel=20.0, shifts=rng.normal(0, 0.3, (5, 2))), psf),
        ScanModel(
            _geom(n=9, cols=12, rows=24, offset=(0.0, 2.0), shifts=rng.normal(0, 0.5, (9, 2))),
            psf,
        ),
    ]
    slab = (0, 20)
    for m in models:
        rows = m.rows_for_slab(grid, slab)
        cpu = scan_operator(m, grid, slab, rows)
        proj = _emulated(m.geometry, grid, 20, pad=m.pad)
        gpu = scan_operator(m, grid, slab, rows, backend="gpu", projector=proj)
        assert gpu.domain_shape == cpu.domain_shape and gpu.range_shape == cpu.range_shape
        x = _smooth(cpu.domain_shape)
        a, b = cpu(x), gpu(x)
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
        assert dot_test(gpu) < TOL


def test_scan_operator_refuses_unknown_backend_and_wrong_projector():
    g = _geom()
    grid = VolumeGrid((4, 24, 24), 10.0)
    m = ScanModel(g)
    rows = m.rows_for_slab(grid, (0, 4))
    with pytest.raises(ValueError, match="unknown backend"):
        scan_operator(m, grid, (0, 4), rows, backend="tpu")
    with pytest.raises(ValueError, match="projector gives"):
        scan_operator(m, grid, (0, 4), rows, projector=SliceProjector(g, grid, 3))


def test_row_sampling_gives_contiguous_results_or_fills_out():
    """The sparse operators' results (a transposed product for row sampling) come back
    C-contiguous, or in the array given; both ways the same values."""
    g = _geom(pixel=15.0, shifts=np.random.default_rng(4).normal(size=(12, 2)))
    grid = VolumeGrid((12, 8, 8), 10.0)
    a = RowSampling(g, grid, np.arange(1, 7), (0, 12), 20)
    x = _smooth(a.domain_shape)
    y = _smooth(a.range_shape, 1)
    fx, fy = a(x), a.T(y)
    assert fx.flags.c_contiguous and fy.flags.c_contiguous
    out_x, out_y = np.empty_like(fx), np.empty_like(fy)
    assert a(x, out_x) is out_x and a.T(y, out_y) is out_y
    np.testing.assert_array_equal(out_x, fx)
    np.testing.assert_array_equal(out_y, fy)
    assert dot_test(a) < TOL


# -- failure checks and memory ---------------------------------------------------------------


def test_astra_output_check():
    out = np.full((2, 3, 4), np.nan, np.float32)
    with pytest.raises(GpuError, match="did not run"):
        check_astra_output(out, "forward projection")
    out[0] = 1.0
    with pytest.raises(GpuError, match="12 of 24 checked values non-finite"):
        check_astra_output(out, "forward projection")
    out[...] = 0.0
    check_astra_output(out, "forward projection")  # zeros are a valid projection


@pytest.mark.parametrize("size", [1, 2, 63, 64, 65, 1000, 123457])
def test_sentinel_indices_spread_over_the_array_with_both_ends(size):
    idx = sentinel_indices(size)
    assert idx[0] == 0 and idx[-1] == size - 1
    assert idx.size == min(size, 64) and np.all(np.diff(idx) > 0)
    if size > 1:
        assert np.diff(idx).max() <= -(-size // 63)


def test_free_memory_check():
    check_free_memory(10 * 2**30, 2**30, "FP")
    with pytest.raises(GpuError, match=r"not enough GPU memory.*block_size"):
        check_free_memory(2**30, 2**30, "FP")
    check_free_memory(2**30 + ASTRA_HEADROOM, 2**30, "FP")


def test_texture_bytes_pad_rows_to_512_bytes():
    assert texture_nbytes((2, 3, 128)) == 6 * 512
    assert texture_nbytes((1, 1, 129)) == 1024


def test_device_lock_is_one_per_device():
    assert device_lock(0) is device_lock(0)
    assert device_lock(0) is not device_lock(1)
    assert isinstance(device_lock(0), type(threading.Lock()))


def _cell(n: int):
    """A whole cell like the benchmark's: n³ voxels, 19 full views at 2x, 92 interior views."""
    v = 30.0
    grid = VolumeGrid((n, n, n), v)
    full = ScanModel(_geom(n=19, cols=n // 2, rows=n // 2, pixel=2 * v), 1.0)
    roi = ScanModel(_geom(n=92, cols=n // 2, rows=n, pixel=v), 1.0)
    return grid, [full, roi]


def test_gpu_memory_estimate_scales_with_the_slab():
    grid, models = _cell(256)
    one = backends.estimate_gpu_block_bytes(models, grid, 64)
    two = backends.estimate_gpu_block_bytes(models, grid, 128)
    vol = 4 * 256 * 256 * 64
    assert 7 * vol < one - ASTRA_HEADROOM < 12 * vol  # seven volume-sized arrays plus data
    assert 1.8 < (two - ASTRA_HEADROOM) / (one - ASTRA_HEADROOM) < 2.05
    assert backends.estimate_gpu_block_bytes(models, grid, 64, oracle=True) - one == 2 * vol


def test_gpu_block_size_is_the_largest_that_fits():
    grid, models = _cell(256)
    free = int(1.5 * 2**30)
    b = backends.gpu_block_size(models, grid, free, halo=2)
    budget = int(free * backends.GPU_MEMORY_FRACTION) - backends.GPU_CONTEXT_BYTES
    assert 1 <= b < 256
    assert backends.estimate_gpu_block_bytes(models, grid, b + 4) <= budget
    assert backends.estimate_gpu_block_bytes(models, grid, b + 5) > budget
    with pytest.raises(SxtdistError, match="one slice needs"):
        backends.gpu_block_size(models, grid, 2**29)


def test_a_1024_cube_cell_is_one_block_on_an_80gb_gpu():
    """The design's target: 1024³ with 19 + 92 views solves as one block on an H100 (80 GB)."""
    grid, models = _cell(1024)
    need = backends.estimate_gpu_block_bytes(models, grid, 1024)
    assert 28 * 2**30 < need < 45 * 2**30
    assert backends.gpu_block_size(models, grid, 79 * 2**30) == 1024
    assert backends.gpu_block_size(models, grid, 20 * 2**30) < 1024


# -- backend choice ------------------------------------------------------------------------------


@pytest.fixture
def no_gpu(monkeypatch):
    info = backends.GpuInfo(False, "no CUDA device")
    monkeypatch.setattr(backends, "probe_gpu", lambda refresh=False: info)


@pytest.fixture
def one_gpu(monkeypatch):
    dev = {"index": 0, "name": "NVIDIA H100", "free": 80 * 2**30, "total": 80 * 2**30}
    info = backends.GpuInfo(True, "", [dev])
    monkeypatch.setattr(backends, "probe_gpu", lambda refresh=False: info)
    monkeypatch.setattr(backends, "have_dask_cuda", lambda: True)


def test_select_backend_without_gpu(no_gpu):
    assert backends.select_backend("cpu") == ("cpu", "requested")
    name, why = backends.select_backend("auto")
    assert name == "cpu" and why == "auto: no usable GPU: no CUDA device"
    with pytest.raises(SxtdistError, match=r"^no usable GPU: no CUDA device$"):
        backends.select_backend("gpu")
    with pytest.raises(ParameterError, match="unknown backend 'cuda'"):
        backends.select_backend("cuda")


def test_select_backend_with_gpu(one_gpu, monkeypatch):
    name, why = backends.select_backend("auto")
    assert name == "gpu" and "NVIDIA H100 (80 of 80 GiB free)" in why
    assert backends.select_backend("gpu")[0] == "gpu"
    assert backends.select_backend("cpu")[0] == "cpu"
    monkeypatch.setattr(backends, "have_dask_cuda", lambda: False)
    assert "dask-cuda is not installed" in backends.select_backend("auto")[1]


def test_probe_here_says_why():
    """The real probe on this machine: usable, or a reason (never an exception)."""
    info = backends.probe_gpu(refresh=True)
    if info.usable:
        assert info.devices and info.min_free_bytes > 0
    else:
        assert info.reason and info.describe().startswith("no usable GPU: ")
        name, why = backends.select_backend("auto")
        assert name == "cpu" and info.reason in why


def test_parse_probe():
    bad = backends.parse_probe(1, "", "Traceback...\nImportError: libcuda.so.1")
    assert not bad.usable and "exit 1: ImportError: libcuda.so.1" in bad.reason
    ok = backends.parse_probe(
        0, 'noise\n{"usable": true, "reason": "", "devices": [{"free": 5, "total": 9}]}', ""
    )
    assert ok.usable and ok.min_free_bytes == 5


def test_gpu_resource_routes_tasks_and_selects_gpu_on_an_external_cluster():
    """A cluster whose worker offers GPU=1: auto picks the GPU; tasks carry the resource."""
    from distributed import Client, LocalCluster

    from sxtdist.distributed import run_tasks

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            resources={"GPU": 1},
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as c,
    ):
        assert backends.select_backend("auto", client=c)[0] == "gpu"
        assert run_tasks(
            c, lambda i, k: i * k, [1, 2, 3], "t", False, resources={"GPU": 1}, k=2
        ) == [2, 4, 6]
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        name, why = backends.select_backend("auto", client=c)
        assert name == "cpu" and "GPU resource" in why
        with pytest.raises(SxtdistError, match="no usable GPU: no worker"):
            backends.select_backend("gpu", client=c)


def test_cli_backend_choice_without_gpu(tiny_acq, tmp_path, run_cli):
    if backends.probe_gpu().usable:
        pytest.skip("this machine has a usable GPU")
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "g.zarr", "--backend", "gpu")
    assert code == 2 and "sxtdist: error: no usable GPU: " in err
    assert not (tmp_path / "g.zarr").exists()
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "b.zarr", "--backend", "tpu")
    assert code == 2 and "tpu" in err
    out = tmp_path / "a.zarr"
    code, _, err = run_cli(
        "reconstruct", tiny_acq, out, "--backend", "auto", "--workers", "1", "--iterations", "2"
    )
    assert code == 0, err
    assert "backend: cpu (auto: no usable GPU: " in err
    assert open_volume(out).meta["provenance"]["backend"] == "cpu"


# == on the device ===============================================================================


def _cupy():
    import cupy

    return cupy


def _positive_dot(op, xp, seed=0):
    """ASTRA's own adjoint test: uniform [0, 1) vectors, relative mismatch of the two products."""
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.random(op.domain_shape, dtype=np.float32))
    y = xp.asarray(rng.random(op.range_shape, dtype=np.float32))
    lhs, rhs = float((op(x) * y).sum()), float((x * op.T(y)).sum())
    return abs(lhs - rhs) / abs(lhs)


@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_device_projector_dot_and_matches_cpu(case, layout):
    """ASTRA's ray-driven FP and voxel-driven BP are only approximately adjoint (its own test
    allows 10 %). The forward projection agrees with the CPU projector (the same Joseph-type
    line integrals) to about the texture unit's 8-bit interpolation weights; the
    back-projection differs from the CPU's exact transpose by about 2 % (RMS) and 5.5 % (max)
    everywhere, not only at the edges (H100, ASTRA 2.5: 2.0-2.4 % and 5.3-5.5 %)."""
    cp = _cupy()
    g = _geom(**CASES[case])
    grid = VolumeGrid((5, 24, 26), 10.0)
    cpu = SliceProjector(g, grid, 5, pad=2)
    gpu = GpuSliceProjector(g, grid, 5, pad=2, layout=layout)
    x = _smooth(cpu.domain_shape)
    a, b = cpu(x), cp.asnumpy(gpu(cp.asarray(x)))
    rel = np.abs(a - b).max() / np.abs(a).max()
    y = _smooth(cpu.range_shape, 1)
    at, bt = cpu.T(y), cp.asnumpy(gpu.T(cp.asarray(y)))
    rel_t = np.abs(at - bt).max() / np.abs(at).max()
    rms_t = np.linalg.norm(at - bt) / np.linalg.norm(at)
    dot = _positive_dot(gpu, cp)
    print(
        f"{case}, {layout}: FP vs CPU {rel:.2e}, BP vs CPU transpose {rel_t:.2e} (max) "
        f"{rms_t:.2e} (RMS), uniform dot mismatch {dot:.2e}"
    )
    assert rel < 0.002
    assert rms_t < 0.03 and rel_t < 0.08
    assert dot < 0.01


@pytest.mark.gpu
def test_device_point_projects_to_u():
    cp = _cupy()
    grid = VolumeGrid((1, 41, 41), 10.0)
    for theta in (0.0, 30.0, 90.0, 135.0):
        g = ScanGeometry(np.array([theta]), 10.0, (1, 61))
        op = GpuSliceProjector(g, grid, 1, supersampling=4)
        vol = np.zeros((41, 41, 1), np.float32)
        vol[30, 12, 0] = 1.0
        proj = cp.asnumpy(op(cp.asarray(vol)))[0, :, 0]
        u_cols = (np.arange(61) - 30) * 10.0
        t = np.deg2rad(theta)
        centre = (proj * u_cols).sum() / proj.sum()
        assert centre == pytest.approx(-80.0 * np.cos(t) + 100.0 * np.sin(t), abs=3.5)
        assert proj.sum() == pytest.approx(0.01, rel=0.03)


@pytest.mark.gpu
def test_device_exact_operators_dot():
    """Row sampling, blur, crop and binning on cupy: exact adjoints (cupyx.ndimage, cuSPARSE)."""
    from sxtdist.operators import Binning, Crop, GaussianBlur, KernelBlur

    cp = _cupy()
    g = _geom(pixel=15.0, shifts=np.random.default_rng(4).normal(size=(12, 2)))
    grid = VolumeGrid((12, 8, 8), 10.0)
    ops = [
        RowSampling(g, grid, np.arange(1, 7), (0, 12), 20),
        GaussianBlur((12, 20, 9), (1.5, 2.0)),
        KernelBlur((12, 20, 9), np.random.default_rng(0).random((5, 3))),
        Crop((12, 20, 9), ((0, 12), (2, 18), (1, 8))),
        Binning((12, 20, 8), (2, 2)),
    ]
    for op in ops:
        assert dot_test(op, xp=cp) < 1e-5, op


def _solve_tiny(acq_path, slab, backend, psf=True, iterations=8):
    from sxtdist.recon import solve_slab
    from sxtdist.runner import build_problem

    acq = sxtdist.open_acquisition(acq_path, "r")
    problem = build_problem(acq, iterations=iterations, psf=psf)
    rows = problem.rows(slab)
    data = {
        n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items() if r.size
    }
    return solve_slab(problem, slab, data, backend=backend)[0]


def _assert_as_good_as_cpu(gpu, cpu, truth, what):
    """ASTRA's back-projection is not the exact transpose of its projection, so CGNE takes
    another path on the GPU: the two results differ by several per cent (RMS), but they must
    be equally close to the truth. H100: 7.8-9.5 % apart, the GPU 0.07-0.12 dB better."""
    from sxtdist.metrics import psnr

    apart = np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu)
    p_cpu, p_gpu = psnr(cpu, truth), psnr(gpu, truth)
    print(
        f"{what}: GPU vs CPU {apart:.1%} apart (RMS); PSNR CPU {p_cpu:.2f} dB, GPU {p_gpu:.2f} dB"
    )
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    assert apart < 0.15
    assert abs(p_gpu - p_cpu) < 0.3


@pytest.mark.gpu
@pytest.mark.parametrize("psf", [False, True])
def test_device_solve_matches_cpu(tiny_acq, psf):
    """The same block and iterations on both backends."""
    truth = np.asarray(sxtdist.open_acquisition(tiny_acq, "r").truth[:].compute(), np.float32)
    nz = truth.shape[0]
    cpu = _solve_tiny(tiny_acq, (0, nz), "cpu", psf=psf)
    gpu = _solve_tiny(tiny_acq, (0, nz), "gpu", psf=psf)
    _assert_as_good_as_cpu(gpu, cpu, truth, f"solve_slab, psf={psf}")


@pytest.mark.gpu
def test_device_blocked_equals_unblocked(tmp_path):
    """Exact regime (no PSF, no shifts, 2x full pixels): blocks of 4 slices == the whole."""
    path = tmp_path / "clean.zarr"
    sxtdist.simulate(path, preset="tiny", seed=5, shifts_px=0, psf=False)
    nz = sxtdist.open_acquisition(path, "r").truth.shape[0]
    whole = _solve_tiny(path, (0, nz), "gpu", psf=False, iterations=12)
    blocks = np.concatenate(
        [_solve_tiny(path, (z, z + 4), "gpu", psf=False, iterations=12) for z in range(0, nz, 4)]
    )
    assert np.abs(blocks - whole).max() <= 1e-4 * np.abs(whole).max()


@pytest.mark.gpu
def test_device_astra_failure_raises():
    """A volume wider than a CUDA 3D texture allows (16384): ASTRA fails and says so."""
    from sxtdist.operators.gpu import AstraCudaEngine

    cp = _cupy()
    g = ScanGeometry(np.array([0.0]), 10.0, (1, 8))
    engine = AstraCudaEngine(g.astra_vectors_3d(10.0), (1, 4, 17000), (1, 8))
    vol = cp.ones(engine.vol_shape, cp.float32)
    proj = cp.empty(engine.proj_shape, cp.float32)
    with pytest.raises(GpuError, match="ASTRA's forward projection"):
        engine.fp(vol, proj)


@pytest.mark.gpu
def test_device_concurrent_calls_are_serialised():
    """Two threads on one GPU give the serial answers (ASTRA's geometry constants are global)."""
    cp = _cupy()
    grid = VolumeGrid((4, 32, 32), 10.0)
    ops = [GpuSliceProjector(_geom(n=n, cols=32), grid, 4) for n in (7, 13)]
    x = cp.asarray(_smooth(ops[0].domain_shape))
    serial = [cp.asnumpy(op(x)) for op in ops]
    results: dict[int, list] = {0: [], 1: []}

    def work(i):
        for _ in range(20):
            results[i].append(cp.asnumpy(ops[i](x)))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (0, 1):
        for r in results[i]:
            np.testing.assert_array_equal(r, serial[i])


@pytest.mark.gpu
def test_device_reconstruct_end_to_end(tiny_acq, tmp_path):
    """``reconstruct(backend="gpu")`` on a local dask-cuda cluster; close to the CPU result."""
    pytest.importorskip("dask_cuda")
    gpu = reconstruct(tiny_acq, tmp_path / "g.zarr", backend="gpu", iterations=6, progress=False)
    assert gpu.meta["provenance"]["backend"] == "gpu"
    cpu = reconstruct(
        tiny_acq,
        tmp_path / "c.zarr",
        backend="cpu",
        iterations=6,
        workers=1,
        block_size=gpu.meta["plan"]["block_size"],
        progress=False,
    )
    truth = np.asarray(sxtdist.open_acquisition(tiny_acq, "r").truth[:].compute(), np.float32)
    a, b = cpu.level(0).compute(), gpu.level(0).compute()
    _assert_as_good_as_cpu(b, a, truth, "reconstruct")


def test_solve_slab_gpu_path_with_numpy_standing_in(tiny_acq, monkeypatch):
    """``solve_slab(backend="gpu")`` end to end on the CPU: a numpy-backed stand-in for the
    ``cupy`` module and the ASTRA emulator for the engine. Same answer as the CPU path, so
    the device plumbing (data in once, slab out once, oracle truth on the device, row
    sampling and PSF through the GPU operator chain) is right up to the real device."""
    import sys
    import types

    import sxtdist.operators.gpu as gpu_mod
    from sxtdist.recon import solve_slab
    from sxtdist.runner import build_problem

    fake = types.ModuleType("cupy")
    fake.asarray, fake.ascontiguousarray, fake.moveaxis = (
        np.asarray,
        np.ascontiguousarray,
        np.moveaxis,
    )
    fake.asnumpy = np.asarray
    freed = []
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(
        free_all_blocks=lambda: freed.append(1)
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    engines = []

    def make_engine(*args):
        engines.append(EmulatedEngine(*args))
        return engines[-1]

    monkeypatch.setattr(gpu_mod, "AstraCudaEngine", make_engine)

    acq = sxtdist.open_acquisition(tiny_acq, "r")
    problem = build_problem(acq, iterations=5, weights="equal")
    slab = (0, 12)
    rows = problem.rows(slab)
    data = {n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items()}
    truth = np.asarray(acq.truth[0:12].compute(), np.float32)
    for kw in ({}, {"truth": truth}):
        cpu, res_cpu = solve_slab(problem, slab, data, backend="cpu", **kw)
        gpu, res_gpu = solve_slab(problem, slab, data, backend="gpu", **kw)
        assert gpu.shape == cpu.shape == (12, 64, 64) and gpu.dtype == np.float32
        assert np.abs(gpu - cpu).max() <= 1e-4 * np.abs(cpu).max()
        assert res_gpu.stopped_by == res_cpu.stopped_by
        assert res_gpu.x.shape == (64, 64, 12)  # the CPU layout, a view of the slab
    assert len(freed) == 2  # the device pool is released after each block
    assert len(engines) == 4 and all(e.calls["fp"] >= 5 and e.calls["bp"] >= 5 for e in engines)
    with pytest.raises(ParameterError, match="unknown backend"):
        solve_slab(problem, slab, data, backend="tpu")
