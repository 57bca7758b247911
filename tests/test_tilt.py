"""A tilted rotation axis: the convention, the CPU resampling and the GPU vectors (through the
emulated ASTRA engine), exact adjoints, and the slab/halo bookkeeping that keeps blocks exact."""

from __future__ import annotations

import numpy as np
import pytest
from _astra3d_emulator import EmulatedEngine
from scipy import ndimage as ndi

from sxtdist.errors import ParameterError
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import DetectorTilt, ScanModel, dot_test, scan_operator
from sxtdist.operators.gpu import GpuSliceProjector, slab_vectors
from sxtdist.operators.projector import default_supersampling

TOL = 1e-5


def _geom(tilt, n=8, rows=16, cols=20, pixel=10.0, offset=(0.0, 0.0), shifts=None):
    angles = np.arange(n) * 180.0 / n + 7.0
    return ScanGeometry(angles, pixel, (rows, cols), offset, shifts, axis_tilt_deg=tilt)


def _emulated(g, grid, slab, pad=0):
    """The GPU projector of a slab with the emulated ASTRA engine (exact transpose as BP)."""
    nz = slab[1] - slab[0]
    s = default_supersampling(g, grid)
    vectors = slab_vectors(g, grid, slab, pad, s, "zyx")
    ny, nx = grid.slice_shape
    engine = EmulatedEngine(vectors, (nz, ny, nx), (nz, (g.detector_shape[1] + 2 * pad) * s))
    return GpuSliceProjector(g, grid, nz, pad=pad, engine=engine, first_slice=slab[0])


def _blob(grid, slab, centre_vox, sigma=1.2):
    """A Gaussian blob ``(ny, nx, slices)`` at ``(z, y, x)`` voxels of the grid."""
    ny, nx = grid.slice_shape
    z = np.arange(*slab)[None, None, :]
    y = np.arange(ny)[:, None, None]
    x = np.arange(nx)[None, :, None]
    cz, cy, cx = centre_vox
    r2 = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def test_the_tilt_convention():
    """A point of the axis at height z appears tan(φ) columns right per row down."""
    g = _geom(0.5)
    z = 100.0
    phi = np.radians(0.5)
    a, b = z * np.sin(phi), z * np.cos(phi)  # the inverse rotation, by hand
    u, zz = g.detector_to_axis_frame(a, b)
    assert u == pytest.approx(0.0, abs=1e-12) and zz == pytest.approx(z)
    assert a / b == pytest.approx(np.tan(phi)) and a > 0
    assert g.to_dict()["axis_tilt_deg"] == 0.5
    assert g.with_shifts(None).axis_tilt_deg == 0.5 and g.subset([0, 1]).axis_tilt_deg == 0.5
    with pytest.raises(ParameterError, match="axis tilt"):
        _geom(float("nan"))


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("tilt", [-2.0, 1.5])
def test_a_point_lands_where_the_tilted_detector_sees_it(backend, tilt):
    """A blob at (x, y, z) lands at detector (a, b) = R(-φ)(u, z), u = x cos θ + y sin θ,
    shifts added: the known answer for both projectors (a sign error moves it by 2φ·z)."""
    grid = VolumeGrid((24, 28, 28), 10.0)
    rng = np.random.default_rng(1)
    g = _geom(tilt, rows=24, cols=28, shifts=rng.normal(0, 0.7, (8, 2)))
    m = ScanModel(g)
    slab = (5, 30)  # off the grid's middle: the slab's place enters the GPU vectors
    rows = m.rows_for_slab(grid, slab)
    if backend == "gpu":
        op = scan_operator(m, grid, slab, rows, "gpu", projector=_emulated(g, grid, slab))
    else:
        op = scan_operator(m, grid, slab, rows)
    cz, cy, cx = 19.0, 9.0, 20.0  # far from the middle in z and x: the tilt shows
    proj = op(_blob(grid, slab, (cz, cy, cx)))  # (angles, cols, rows)
    c_idx = np.arange(g.detector_shape[1])[:, None]
    r_idx = rows[None, :]
    z = (cz - (grid.nz - 1) / 2) * 10.0
    x, y = (cx - 13.5) * 10.0, (cy - 13.5) * 10.0
    phi = np.radians(tilt)
    for a, t in enumerate(g.angles_rad):
        u = x * np.cos(t) + y * np.sin(t)
        a_nm, b_nm = u * np.cos(phi) + z * np.sin(phi), -u * np.sin(phi) + z * np.cos(phi)
        dy, dx = g.shifts_px[a]
        col = a_nm / 10.0 + (g.detector_shape[1] - 1) / 2 + dx
        row = b_nm / 10.0 + (g.detector_shape[0] - 1) / 2 + dy
        img = proj[a]
        assert (img * c_idx).sum() / img.sum() == pytest.approx(col, abs=0.05)
        assert (img * r_idx).sum() / img.sum() == pytest.approx(row, abs=0.05)


def test_detector_tilt_is_a_shift_without_tilt_and_exact_adjoint():
    grid = VolumeGrid((10, 16, 16), 10.0)
    g0 = _geom(0.0, shifts=np.random.default_rng(2).normal(size=(8, 2)))
    op = DetectorTilt(g0, grid, (0, 10), 3, 1)
    x = np.random.default_rng(3).random(op.domain_shape).astype(np.float32)
    np.testing.assert_array_equal(op(x), x[:, 2:-2, :])
    rng = np.random.default_rng(0)
    for tilt in (0.5, -3.0):
        op = DetectorTilt(g0.with_tilt(tilt), grid, (2, 9), 4, 1)
        x, y = rng.standard_normal(op.domain_shape), rng.standard_normal(op.range_shape)
        lhs, rhs = np.vdot(op(x), y), np.vdot(x, op.T(y))  # float64 throughout
        assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs))
        assert op(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("psf", [0.0, 0.8])
def test_tilted_scan_operators_have_exact_adjoints(psf):
    grid = VolumeGrid((20, 18, 18), 10.0)
    rng = np.random.default_rng(4)
    for pixel, cols in ((10.0, 14), (20.0, 9)):
        g = _geom(1.0, rows=10 if pixel == 20 else 20, cols=cols, pixel=pixel,
                  offset=(0.5, 2.0), shifts=rng.normal(0, 0.5, (8, 2)))  # fmt: skip
        m = ScanModel(g, psf)
        slab = (-4, 24)
        rows = m.rows_for_slab(grid, slab)
        assert rows.size
        cpu = scan_operator(m, grid, slab, rows)
        assert dot_test(cpu) < TOL
        gpu = scan_operator(m, grid, slab, rows, "gpu", projector=_emulated(g, grid, slab, m.pad))
        assert dot_test(gpu) < 1e-4
        # the two agree up to the CPU's resampling of the projections (cubic across
        # columns, linear across slices; the largest differences at the field's corners)
        x = ndi.gaussian_filter(rng.random(cpu.domain_shape), 2.0).astype(np.float32)
        a, b = cpu(x), gpu(x)
        err = np.abs(a - b) / np.abs(a).max()
        assert np.median(err) < 5e-4 and err.max() < 0.03


def test_a_slab_models_its_rows_as_the_whole_volume_does():
    """The rows a slab claims are modelled in full: the same values as from the whole grid
    (the tilt's reach counted in the footprints, so blocks with a halo stay exact)."""
    grid = VolumeGrid((30, 16, 16), 10.0)
    g = _geom(2.5, rows=30, cols=16, shifts=np.random.default_rng(5).normal(0, 0.4, (8, 2)))
    m = ScanModel(g, 0.6)
    lo, hi = m.row_footprints(grid)
    untilted = ScanModel(g.with_tilt(0.0), 0.6).row_footprints(grid)
    reach = g.tilt_reach_slices(10.0, m.pad)
    assert reach >= 1 and np.all(lo == untilted[0] - reach) and np.all(hi == untilted[1] + reach)
    whole = (lo.min(), hi.max() + 1)
    x = np.random.default_rng(6).random((16, 16, whole[1] - whole[0])).astype(np.float32)
    all_rows = m.rows_for_slab(grid, whole)
    y_all = scan_operator(m, grid, whole, all_rows)(x)
    slab = (8, 24)
    rows = m.rows_for_slab(grid, slab)
    assert rows.size and np.all(np.isin(rows, all_rows))
    part = x[:, :, slab[0] - whole[0] : slab[1] - whole[0]]
    y = scan_operator(m, grid, slab, rows)(part)
    np.testing.assert_allclose(y, y_all[:, :, np.searchsorted(all_rows, rows)], atol=2e-6)


def test_the_tilt_is_stored_by_import_and_edit_and_used_by_the_reconstruction(tmp_path, tiny_copy):
    import tifffile

    import sxtdist
    from sxtdist.io.importer import import_scan
    from sxtdist.io.metadata import edit_scan
    from sxtdist.runner import build_problem

    tifffile.imwrite(
        tmp_path / "t.tif", np.full((3, 4, 5), 0.5, np.float32), photometric="minisblack"
    )
    acq = import_scan(
        tmp_path / "t.tif", tmp_path / "a.zarr", "roi", angle_range=(0, 90), pixel_size_nm=10,
        axis_tilt_deg=-0.7,
    )  # fmt: skip
    assert acq["roi"].geometry.axis_tilt_deg == -0.7
    with pytest.raises(ParameterError, match=r"^axis_tilt_deg=: must be a finite angle"):
        import_scan(tmp_path / "t.tif", tmp_path / "b.zarr", "roi", axis_tilt_deg=45.0)
    # simulated data carry no tilt; an edit sets it and the reconstruction's models see it
    assert sxtdist.open_acquisition(tiny_copy)["roi"].geometry.axis_tilt_deg == 0.0
    changes = edit_scan(tiny_copy, "roi", axis_tilt_deg=0.4)
    assert changes == {"axis_tilt_deg": {"from": 0.0, "to": 0.4}}
    problem = build_problem(sxtdist.open_acquisition(tiny_copy))
    assert problem.models["roi"].geometry.axis_tilt_deg == 0.4
    assert problem.models["full"].geometry.axis_tilt_deg == 0.0


# -- IMOD .xf ----------------------------------------------------------------------------------


def _imod_xf(tilt_deg, shifts):
    """The .xf IMOD would write for raw views with this tilt and these shifts (dy, dx)."""
    phi = np.radians(tilt_deg)
    rot = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    d = -(rot @ shifts[:, ::-1].T).T  # (DX, DY) = -R (dx, dy)
    return np.column_stack([np.tile(rot.reshape(1, 4), (len(shifts), 1)), d])


def test_an_xf_aligns_our_raw_views_as_imod_defines_it(tmp_path, run_cli):
    """Views made with a tilt and shifts; the .xf that says so, applied as IMOD defines it
    (x' = A x + D about the centre), gives the aligned views back; imported, it gives the
    tilt and shifts back."""
    import mrcfile
    from scipy.ndimage import affine_transform

    import sxtdist

    grid = VolumeGrid((24, 32, 32), 10.0)
    rng = np.random.default_rng(9)
    shifts = rng.normal(0, 1.5, (6, 2))
    g = _geom(1.2, n=6, rows=24, cols=32, shifts=shifts)
    vol = ndi.gaussian_filter(rng.random((32, 32, 40)), 2.0).astype(np.float32)
    m, slab = ScanModel(g), (-8, 32)
    rows = m.rows_for_slab(grid, slab)
    assert rows.size == 24
    raw = scan_operator(m, grid, slab, rows)(vol).transpose(0, 2, 1)  # (views, rows, cols)
    aligned = scan_operator(ScanModel(g.with_shifts(None).with_tilt(0.0)), grid, slab, rows)(vol)
    aligned = aligned.transpose(0, 2, 1)
    xf = _imod_xf(1.2, shifts)
    centre = np.array([11.5, 15.5])  # (row, col)
    for k in range(6):
        a = xf[k, :4].reshape(2, 2)[::-1, ::-1]  # (x, y) -> (row, col) order
        d = xf[k, 4:][::-1]
        inv = np.linalg.inv(a)  # aligned(p') = raw(A⁻¹ (p' - c - D) + c)
        out = affine_transform(raw[k], inv, offset=centre - inv @ (centre + d), order=3)
        inner = (slice(5, 19), slice(5, 27))
        err = np.abs(out[inner] - aligned[k][inner]).max() / np.abs(aligned[k]).max()
        assert err < 0.02, (k, err)
    # imported with the .xf: its shifts and tilt
    with mrcfile.new(tmp_path / "t.st") as f:
        f.set_data(raw.astype(np.float32))
        f.voxel_size = 100.0
    np.savetxt(tmp_path / "t.tlt", g.angles_deg)
    np.savetxt(tmp_path / "t.xf", xf, fmt="%.7f")
    acq = tmp_path / "a.zarr"
    code, _, err = run_cli(
        "import", tmp_path / "t.st", acq, "--scan=roi", "--values=od", "--xf", tmp_path / "t.xf"
    )
    assert code == 0, err
    scan = sxtdist.open_acquisition(acq)["roi"]
    assert scan.geometry.axis_tilt_deg == pytest.approx(1.2, abs=1e-5)
    np.testing.assert_allclose(scan.geometry.shifts_px, shifts, atol=1e-5)
    assert scan.aligned and scan.meta["alignment"]["method"] == "imod xf"


def test_bad_xf_files_and_edit_with_an_xf(tmp_path, tiny_copy, run_cli):
    import sxtdist

    n = sxtdist.open_acquisition(tiny_copy)["roi"].geometry.n_angles
    good = _imod_xf(-0.3, np.random.default_rng(1).normal(0, 1, (n, 2)))
    np.savetxt(tmp_path / "ok.xf", good)
    np.savetxt(tmp_path / "short.xf", good[:-1])
    np.savetxt(tmp_path / "turned.xf", _imod_xf(45.0, np.zeros((n, 2))))
    (tmp_path / "junk.xf").write_text("1 0 0 1 0\n")
    for name, words in (
        ("short.xf", [f"{n - 1} transforms for {n} views"]),
        ("turned.xf", ["45.0 degrees", "rotate the stack"]),
        ("junk.xf", ["line 1", "A11 A12 A21 A22 DX DY"]),
        ("missing.xf", ["missing.xf", "cannot read"]),
    ):
        code, _, err = run_cli("edit", tiny_copy, "--scan=roi", "--xf", tmp_path / name)
        assert code == 2 and all(w in err for w in words) and str(tmp_path / name) in err, err
    assert not sxtdist.open_acquisition(tiny_copy)["roi"].aligned
    code, out, err = run_cli("edit", tiny_copy, "--scan=roi", "--xf", tmp_path / "ok.xf")
    assert code == 0, err
    scan = sxtdist.open_acquisition(tiny_copy)["roi"]
    assert scan.aligned and scan.geometry.axis_tilt_deg == pytest.approx(-0.3)
    assert set(scan.meta["edits"][-1]["changes"]) == {"shifts_px", "axis_tilt_deg", "alignment"}
    # a stretched transform: used for its rotation and shifts, with a warning
    stretched = good.copy()
    stretched[:, 0] *= 1.03
    np.savetxt(tmp_path / "stretched.xf", stretched)
    from sxtdist.io.imod import xf_alignment

    with pytest.warns(sxtdist.errors.SxtdistWarning, match="stretch"):
        assert xf_alignment(tmp_path / "stretched.xf", n).axis_tilt_deg == pytest.approx(
            -0.3, abs=0.01
        )


# -- estimating the tilt ----------------------------------------------------------------------


def _blob_views(tilt):
    """Views of a smooth object (in the field, off the axis) with horizontal shifts and a
    tilt, and their geometry as an estimator meets it (no tilt, no shifts)."""
    from sxtdist.geometry import scan_angles

    grid = VolumeGrid((32, 48, 48), 100.0)
    rng = np.random.default_rng(2)
    z, y, x = np.mgrid[:32, :48, :48]
    vol = np.zeros(grid.shape, np.float32)
    for _ in range(10):
        c, r = rng.uniform([4, 14, 14], [28, 34, 34]), rng.uniform(2, 5)
        vol += ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r * r
    vol = ndi.gaussian_filter(vol, 1.5)
    shifts = np.column_stack([np.zeros(19), rng.normal(0, 1, 19)])
    g = ScanGeometry(scan_angles(19), 100.0, (32, 48), (0.0, 0.0), shifts, axis_tilt_deg=tilt)
    m, slab = ScanModel(g), (-12, 44)
    padded = np.zeros((48, 48, 56), np.float32)
    padded[:, :, 12:44] = vol.transpose(1, 2, 0)
    data = scan_operator(m, grid, slab, m.rows_for_slab(grid, slab))(padded).transpose(0, 2, 1)
    return data, g.with_shifts(None).with_tilt(0.0)


@pytest.mark.parametrize("tilt", [0.5, -1.0])
def test_the_tilt_is_estimated_from_the_full_scan(tilt):
    """The blobs' tilt back to 0.05 deg, the vertical shifts measured with it (zero here;
    the voxel phantom's slices would make shifted views blur differently, which the
    simulator's analytic cell does not: benchmarks/tilt_study.py has both shifts)."""
    from sxtdist.alignment.tilt import estimate_axis_tilt

    data, g = _blob_views(tilt)
    est = estimate_axis_tilt(data, g)
    assert est.tilt_deg == pytest.approx(tilt, abs=0.05)
    assert est.sigma_deg < 0.05 and est.rows_used >= 10 and est.views_used == 19


def test_views_cut_by_the_detector_edge_are_left_out():
    """Mass in a view's outermost column (a wall the detector's edge cuts): that view is
    left out, and the tilt still found; when too few views would be left, all are used
    and the user is warned."""
    from sxtdist.alignment.tilt import MIN_VIEWS, estimate_axis_tilt
    from sxtdist.errors import SxtdistWarning

    data, g = _blob_views(0.5)
    cut = data.copy()
    cut[[3, 11], :, -1] += 0.5 * data.max()
    est = estimate_axis_tilt(cut, g)
    assert est.views_used == 17 and est.tilt_deg == pytest.approx(0.5, abs=0.05)
    cut[: 19 - MIN_VIEWS + 1, :, 0] += 0.5 * data.max()
    with pytest.warns(SxtdistWarning, match="past the detector's edge"):
        assert estimate_axis_tilt(cut, g).views_used == 19


def test_measure_axis_tilt_stores_it_on_every_scan(tiny_copy, run_cli):
    import sxtdist

    code, out, err = run_cli("align", tiny_copy, "--measure-axis-tilt", "--workers=1", "--report=")
    assert code == 0, err
    acq = sxtdist.open_acquisition(tiny_copy)
    tilt = acq["full"].geometry.axis_tilt_deg
    assert f"axis tilt: {tilt:+.4f}" in out and tilt != 0.0  # tiny's 8 rows: a rough figure
    assert acq["roi"].geometry.axis_tilt_deg == tilt
    assert acq["roi"].meta["axis_tilt"]["scan"] == "full"


# -- the simulator ----------------------------------------------------------------------------


@pytest.mark.parametrize("tilt", [-2.0, 1.5])
def test_the_simulator_sees_a_sphere_where_the_tilted_detector_does(tilt):
    """The simulator's forward model on a tilted detector: a small sphere's image lands at
    (a, b) = R(-φ)(u, z) plus the view's shift, the same convention as the operators."""
    from sxtdist.simulation.forward import ForwardModel, view_transmission
    from sxtdist.simulation.phantom import CellPhantom, Ellipsoid

    centre = np.array([600.0, -250.0, 500.0])  # (z, y, x) nm: far from the axis and the middle
    sphere = Ellipsoid(centre, np.full(3, 60.0), np.eye(3), 5.0)
    g = _geom(tilt, n=5, rows=40, cols=40, pixel=40.0,
              shifts=np.random.default_rng(3).normal(0, 1.0, (5, 2)))  # fmt: skip
    model = ForwardModel(psf_fwhm_nm=50.0, supersampling=4)
    phi = np.radians(tilt)
    r_idx, c_idx = np.mgrid[:40, :40]
    for k, t in enumerate(g.angles_rad):
        img = -np.log(view_transmission(CellPhantom([sphere]), g, model, k))
        u = centre[2] * np.cos(t) + centre[1] * np.sin(t)
        a_nm = u * np.cos(phi) + centre[0] * np.sin(phi)
        b_nm = -u * np.sin(phi) + centre[0] * np.cos(phi)
        dy, dx = g.shifts_px[k]
        assert (img * c_idx).sum() / img.sum() == pytest.approx(a_nm / 40 + 19.5 + dx, abs=0.02)
        assert (img * r_idx).sum() / img.sum() == pytest.approx(b_nm / 40 + 19.5 + dy, abs=0.02)


def test_simulate_records_the_tilt_as_the_truths_only(tmp_path):
    import sxtdist

    acq = sxtdist.simulate(tmp_path / "t.zarr", "tiny", 1, axis_tilt_deg=0.8, progress=False)
    assert acq.truth_meta["axis_tilt_deg"] == 0.8
    assert all(acq[name].geometry.axis_tilt_deg == 0.0 for name in acq.scans)
    # the same seed untilted: the same noise, other views (the tilt reached the forward model)
    flat = sxtdist.simulate(tmp_path / "f.zarr", "tiny", 1, progress=False)
    assert not np.allclose(acq["full"].read(), flat["full"].read(), atol=1e-3)


@pytest.mark.parametrize(
    ("seed", "capillary"),
    [(1, True), (1, False)]
    + [pytest.param(s, c, marks=pytest.mark.slow) for s in (2, 3) for c in (True, False)],
)
def test_a_simulated_tilt_is_recovered_from_the_full_scan(tmp_path, seed, capillary):
    """``small`` simulated with the axis tilted 0.5 deg, with its capillary (whose wall the
    pixel-phase terms of alignment/tilt.py are for; some views' walls cut by the
    detector's edge) and without, the true shifts stored: the tilt measured to 0.05 deg
    and stored on both scans. Seed 1 in the default suite, seeds 2 and 3 in the slow one
    (benchmarks/tilt_study.py has the table)."""
    import sxtdist
    from sxtdist.alignment.tilt import measure_axis_tilt

    acq = sxtdist.simulate(
        tmp_path / "s.zarr", "small", seed, axis_tilt_deg=0.5, capillary=capillary, progress=False
    )
    for name in acq.scans:
        acq.set_shifts(name, np.asarray(acq.truth_meta["shifts_px"][name]), method="known")
    est = measure_axis_tilt(acq)
    assert est.tilt_deg == pytest.approx(0.5, abs=0.05)
    assert est.sigma_deg < 0.05
    stored = sxtdist.open_acquisition(tmp_path / "s.zarr")
    assert all(stored[n].geometry.axis_tilt_deg == est.tilt_deg for n in stored.scans)
