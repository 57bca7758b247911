"""sxtdist preview: FBP slices with the stored shifts and tilt, the PNG's content, its outputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import sxtdist
from sxtdist.execution import Execution
from sxtdist.fbp import axis_sinogram, fbp, rows_for_slice, sample_positions
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import ScanModel, SliceProjector, scan_operator
from sxtdist.preview import preview


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def _bin(img, f):
    ny, nx = img.shape
    pad = np.pad(img, ((0, -ny % f), (0, -nx % f)), mode="edge")
    return pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f).mean(axis=(1, 3))


def _blobs(grid):
    """A disc of 0.5 µm⁻¹ and an off-centre blob of 1.5 (orientation shows)."""
    ny, nx = grid.slice_shape
    y = (np.arange(ny) - (ny - 1) / 2)[:, None]
    x = (np.arange(nx) - (nx - 1) / 2)[None, :]
    img = 0.5 * (np.hypot(y, x) < 0.35 * nx)
    img += 1.0 * (np.hypot(y - 0.15 * ny, x + 0.2 * nx) < 0.06 * nx)
    return img.astype(np.float32)


def test_fbp_of_our_projections_gives_the_slice_back():
    """FBP of the CPU projector's data: the values (µm⁻¹) and the orientation (y down, x
    right) of the slice, so the preview and the reconstruction agree on the picture."""
    grid = VolumeGrid((1, 96, 96), 20.0)
    g = ScanGeometry(np.arange(180) * 1.0, 20.0, (1, 140))
    truth = _blobs(grid)
    sino = SliceProjector(g, grid, 1)(truth[:, :, None])[:, :, 0]  # (angles, cols)
    u = sample_positions(grid, 20.0)
    full = axis_sinogram(sino[:, None, :], 0, g, 0.0, u)
    rec = fbp(full, g.angles_deg, 20.0, grid)
    inner = np.hypot(*np.meshgrid(np.arange(96) - 47.5, np.arange(96) - 47.5)) < 40
    assert _corr(rec[inner], truth[inner]) > 0.95
    assert np.median(rec[truth == 0.5]) == pytest.approx(0.5, rel=0.05)
    assert _corr(rec[inner], truth[::-1][inner]) < 0.8  # flipped would not do


def test_axis_sinogram_undoes_shifts_and_tilt():
    """Views simulated with shifts and a tilted axis (the CPU operator), sampled back along
    the slice's line: the slice again, and worse when the tilt or the shifts are ignored."""
    grid = VolumeGrid((24, 40, 40), 20.0)
    shifts = np.random.default_rng(0).normal(0, 2.0, (60, 2))
    g = ScanGeometry(np.arange(60) * 3.0, 20.0, (24, 60), (0.0, 0.0), shifts, axis_tilt_deg=3.0)
    # a sheared object (a voxel in x per slice): mixing heights blurs it
    from scipy.ndimage import shift

    blobs = _blobs(grid)
    vol = np.stack([shift(blobs, (0, 1.0 * (k - 26)), order=1) for k in range(40)], axis=2)
    m = ScanModel(g)
    slab = (-8, 32)
    rows = m.rows_for_slab(grid, slab)
    data = scan_operator(m, grid, slab, rows)(vol).transpose(0, 2, 1)  # (angles, rows, cols)
    u = sample_positions(grid, 20.0)
    k = 18  # off the middle: the tilt moves its line
    z = float(grid.z_centers_nm(k, k + 1)[0])
    first, stop = rows_for_slice(g, z, u)
    assert rows[0] <= first and stop <= rows[-1] + 1
    band = data[:, first - rows[0] : stop - rows[0]]
    truth = vol[:, :, k + 8]

    # the slice's own sinogram, on the axis-centred samples: what sampling must give back
    own = SliceProjector(own_geometry(g), grid, 1)
    expected = axis_sinogram(own(truth[:, :, None])[:, None, :, 0], 0, own_geometry(g), 0.0, u)

    def error(geometry):  # relative RMS error of the sampled sinogram
        s = axis_sinogram(band, first, geometry, z, u)
        return float(np.sqrt(((s - expected) ** 2).mean() / (expected**2).mean()))

    good = error(g)
    assert good < 0.02
    assert error(g.with_tilt(0.0)) > 3 * good
    assert error(g.with_shifts(None)) > 10 * good
    rec = fbp(axis_sinogram(band, first, g, z, u), g.angles_deg, 20.0, grid)
    assert _corr(rec, truth) > 0.97


def own_geometry(g):
    """One row, untilted, unshifted: the slice's own detector."""
    return ScanGeometry(g.angles_deg, g.pixel_size_nm, (1, g.detector_shape[1]))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """An acquisition of a known volume: a full scan (30 views, 2x pixels) and a truncated
    interior scan (60 views), both with 1.5 px shifts stored as their alignment."""
    from sxtdist.dataset import ScanData, create_acquisition

    grid = VolumeGrid((16, 48, 48), 20.0)
    blobs = _blobs(grid)
    truth = np.stack([blobs * (1.0 + 0.3 * np.cos(k / 3.0)) for k in range(16)])  # (z, y, x)
    rng = np.random.default_rng(7)
    scans = {}
    for name, n, pixel, (rows, cols) in (("full", 30, 40.0, (8, 24)), ("roi", 60, 20.0, (16, 26))):
        g = ScanGeometry(np.arange(n) * 180.0 / n, pixel, (rows, cols), (0.0, 0.0),
                         rng.normal(0, 1.5, (n, 2)))  # fmt: skip
        m = ScanModel(g)
        slab = (-12, 28)
        vol = np.zeros((48, 48, 40), np.float32)
        vol[:, :, 12:28] = truth.transpose(1, 2, 0)
        r = m.rows_for_slab(grid, slab)
        assert np.array_equal(r, np.arange(rows))
        data = scan_operator(m, grid, slab, r)(vol).transpose(0, 2, 1)
        scans[name] = ScanData(data, g.angles_deg, pixel, shifts_px=g.shifts_px)
    path = tmp_path_factory.mktemp("pv") / "synthetic.zarr"
    acq = create_acquisition(path, scans, truth=truth, truth_meta={"voxel_size_nm": 20.0})
    for name, sd in scans.items():
        acq.set_shifts(name, sd.shifts_px, method="known")
    return str(path), truth


def _png_panels(path):
    img = Image.open(path)
    layout = json.loads(img.text["Description"])
    return np.asarray(img.convert("RGB")), layout


def test_the_png_shows_the_slices_and_the_roi(synthetic, tmp_path):
    """The PNG's panels, found by its layout: grey levels that are the FBP slices, the
    combined one close to the known volume, and the interior field as a red ring of the
    interior detector's radius."""
    path, truth = synthetic
    out = tmp_path / "p.png"
    res = preview(path, out, slices=(3, 8, 12))
    rgb, layout = _png_panels(out)
    assert layout["kind"] == "sxtdist preview" and rgb.shape[:2] == (
        Image.open(out).height,
        Image.open(out).width,
    )
    assert [p["scan"] for p in layout["panels"]] == ["full", "roi", "combined"] * 3
    radius = layout["roi_radius_px"]
    assert radius == pytest.approx(13 * 20.0 / 20.0) == res.roi_radius_nm / 20.0
    for p in layout["panels"]:
        x0, y0, x1, y1 = p["box"]
        tile = rgb[y0:y1, x0:x1].astype(float)
        assert tile.shape[:2] == (48, 48)
        red = (tile[..., 0] > 200) & (tile[..., 1] < 60) & (tile[..., 2] < 60)
        yy, xx = np.nonzero(red)
        r = np.hypot(yy - 23.5, xx - 23.5)
        assert red.sum() > 50 and np.all(np.abs(r - radius) <= 0.6)
        i = res.z_index.index(p["slice"])
        shown = res.slices[p["scan"]][i][~red]
        assert _corr(tile[..., 1][~red], np.clip(shown, *np.percentile(shown, [0.5, 99.5]))) > 0.95
        if p["scan"] == "combined":  # the known volume, at its levels inside the field too
            c, t = res.slices["combined"][i], truth[p["slice"]]
            assert _corr(c, t) > 0.9
            disc = np.hypot(*np.mgrid[:48, :48] - 23.5) < 0.9 * radius
            assert abs(float(np.mean(c[disc] - t[disc]))) < 0.05  # µm⁻¹ (values 0.5 to 1.9)


def test_the_preview_uses_the_stored_shifts(synthetic, tmp_path):
    """The same views with their shifts forgotten: the slices are worse, the first sign
    of a wrong alignment."""
    import shutil

    path, truth = synthetic
    good = preview(path, tmp_path / "g.png", slices=(3, 8, 12))
    unaligned = tmp_path / "u.zarr"
    shutil.copytree(path, unaligned)
    ua = sxtdist.open_acquisition(unaligned)
    for name in ua.scans:
        ua.set_shifts(name, np.zeros((ua[name].geometry.n_angles, 2)), method="none")
    bad = preview(unaligned, tmp_path / "u.png", slices=(3, 8, 12))
    y, x = np.mgrid[:48, :48] - 23.5
    where = {"full": np.ones((48, 48), bool), "roi": np.hypot(y, x) < 0.9 * 13}
    where["combined"] = where["full"]
    for i, k in enumerate(good.z_index):
        for name, m in where.items():
            a = _corr(good.slices[name][i][m], truth[k][m])
            b = _corr(bad.slices[name][i][m], truth[k][m])
            assert a > b + 0.05, (name, k, a, b)


def test_preview_outputs_and_refusals(tiny_copy, tmp_path, run_cli):
    out = tmp_path / "p.png"
    vol = tmp_path / "v.zarr"
    code, stdout, err = run_cli("preview", tiny_copy, "--out", out, "--volume", vol, "--z", "4,20")
    assert code == 0, err
    assert str(out) in stdout
    v = sxtdist.open_volume(vol)
    assert v.status == "complete" and v.shape == (8, 16, 16)
    assert v.meta["provenance"]["method"].startswith("fbp preview")
    before = out.read_bytes()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for args, words in (
        (["--out", out], ["already exists", "--overwrite"]),
        (["--out", os.path.join(tiny_copy, "p.png")], ["lies inside the input"]),
        (["--out", tmp_path / "q.png", "--z", "4,99"], ["--z", "0..31"]),
        (
            ["--out", tmp_path / "q.png", "--volume", tmp_path, "--overwrite"],
            ["contains the input"],
        ),
        (
            ["--out", tmp_path / "q.png", "--volume", mine, "--overwrite"],
            ["not written by sxtdist"],
        ),
    ):
        code, _, err = run_cli("preview", tiny_copy, *args)
        assert code == 2 and all(w in err for w in words), err
        assert len(err.strip().splitlines()) == 1, err
    assert out.read_bytes() == before
    assert not (tmp_path / "q.png").exists()
    assert (mine / "notes.txt").read_text() == "mine"
    assert run_cli("preview", tiny_copy, "--out", out, "--overwrite", "--slices", "1")[0] == 0
    assert Image.open(out).height < Image.open(tmp_path / "p.png").height + 1


@pytest.mark.gpu
def test_cuda_fbp_matches_the_cpu_one():
    grid = VolumeGrid((1, 64, 64), 20.0)
    g = ScanGeometry(np.arange(90) * 2.0, 20.0, (1, 90))
    sino = SliceProjector(g, grid, 1)(_blobs(grid)[:, :, None])[:, :, 0]
    u = sample_positions(grid, 20.0)
    s = axis_sinogram(sino[:, None, :], 0, g, 0.0, u)
    cpu, gpu = fbp(s, g.angles_deg, 20.0, grid), fbp(s, g.angles_deg, 20.0, grid, backend="gpu")
    assert _corr(cpu, gpu) > 0.99


def test_execution_backend_cpu_is_used(tiny_copy, tmp_path):
    res = preview(tiny_copy, tmp_path / "c.png", slices=1, execution=Execution(backend="cpu"))
    assert res.backend == "cpu" and res.slices["combined"].shape == (1, 64, 64)
