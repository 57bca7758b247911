"""Export to MRC, TIFF and NGFF 0.4 (Zarr v2): re-read equals the volume level; napari reads it."""

from __future__ import annotations

import os

import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

from sxtdist.geometry import VolumeGrid
from sxtdist.io.export import export_volume
from sxtdist.volume import create_volume

VOXEL = 30.0


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    path = tmp_path_factory.mktemp("vol") / "v.zarr"
    data = np.random.default_rng(4).random((20, 24, 28), dtype=np.float32)
    vol = create_volume(path, VolumeGrid(data.shape, VOXEL), shard_z=10, chunk_z=10)
    vol.write_slices(0, data[:10])
    vol.write_slices(10, data[10:])
    vol.finalize()
    return str(path), vol


def _read_v2(path):
    g = zarr.open_group(path, mode="r", zarr_format=2)
    ms = g.attrs["multiscales"][0]
    return g, ms


@pytest.mark.parametrize("level", [0, 1])
def test_exports_equal_the_level(volume, tmp_path, run_cli, level):
    path, vol = volume
    expected = vol.level(level).compute()
    v = VOXEL * 2**level
    for name in ("v.mrc", "v.tif", "v.zarr"):
        code, out, err = run_cli("export", path, tmp_path / name, "--level", str(level), "-q")
        assert code == 0, err
        assert out.strip() == str(tmp_path / name)
    with mrcfile.open(tmp_path / "v.mrc", permissive=False) as m:
        np.testing.assert_array_equal(m.data, expected)
        assert m.voxel_size.x == pytest.approx(v * 10) and m.voxel_size.z == pytest.approx(v * 10)
        assert m.header.dmax == pytest.approx(expected.max())
        assert m.header.dmean == pytest.approx(expected.mean(), rel=1e-5)
    with tifffile.TiffFile(tmp_path / "v.tif") as t:
        np.testing.assert_array_equal(t.asarray(), expected)
        assert t.imagej_metadata["spacing"] == pytest.approx(v / 1e3)
        num, den = t.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(v / 1e3)
    g, ms = _read_v2(tmp_path / "v.zarr")
    assert ms["version"] == "0.4"
    assert [a["unit"] for a in ms["axes"]] == ["nanometer"] * 3
    first = ms["datasets"][0]
    np.testing.assert_array_equal(g[first["path"]][:], expected)
    assert first["coordinateTransformations"][0]["scale"] == [v, v, v]
    assert len(ms["datasets"]) >= 1
    if len(ms["datasets"]) > 1:
        assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [2 * v] * 3


def test_export_crop(volume, tmp_path, run_cli):
    path, vol = volume
    expected = vol.level(0).compute()[3:15, :, 5:]
    code, _, err = run_cli("export", path, tmp_path / "c.mrc", "--crop", "3:15,:,5:", "-q")
    assert code == 0, err
    with mrcfile.open(tmp_path / "c.mrc") as m:
        np.testing.assert_array_equal(m.data, expected)
        assert m.header.origin.x == pytest.approx(5 * VOXEL * 10)
        assert m.header.origin.z == pytest.approx(3 * VOXEL * 10)
    export_volume(path, tmp_path / "c.zarr", crop=(slice(3, 15), slice(None), slice(5, None)))
    g, ms = _read_v2(tmp_path / "c.zarr")
    np.testing.assert_array_equal(g[ms["datasets"][0]["path"]][:], expected)
    assert ms["datasets"][0]["coordinateTransformations"][1]["translation"] == [90.0, 0.0, 150.0]


def test_export_errors(volume, tmp_path, run_cli, tiny_acq):
    path, _ = volume
    (tmp_path / "exists.mrc").write_bytes(b"x")
    cases = [
        ((path, tmp_path / "exists.mrc"), "already exists"),
        ((path, tmp_path / "v.xyz"), "cannot tell the format"),
        ((path, tmp_path / "v.mrc", "--level", "9"), "levels"),
        ((path, tmp_path / "v.mrc", "--crop", "5:2,:,:"), "empty"),
        ((path, tmp_path / "v.mrc", "--crop", "1:2,3"), "--crop"),
        ((tiny_acq, tmp_path / "v.mrc"), "not a reconstructed volume"),
        ((tmp_path / "none.zarr", tmp_path / "v.mrc"), "no such file"),
    ]
    for args, words in cases:
        code, out, err = run_cli("export", *args)
        assert code == 2, (args, err)
        assert err.startswith("sxtdist: error: ") and words in err, err
        assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "exists.mrc").read_bytes() == b"x"
    assert sorted(os.listdir(tmp_path)) == ["exists.mrc"]  # nothing half-written


def test_napari_reads_volume_export_and_projections(volume, tmp_path, tiny_acq):
    pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr not installed (extra: napari)")
    from napari_ome_zarr._reader import napari_get_reader

    path, vol = volume

    def layers(p):
        reader = napari_get_reader(str(p))
        assert reader is not None, p
        out = reader(str(p))
        assert len(out) == 1
        return out[0]

    data, props, kind = layers(path)  # NGFF 0.5 / Zarr v3 as written by sxtdist
    assert kind == "image"
    assert data[0].shape == vol.shape and len(data) == vol.n_levels
    assert list(props["scale"]) == [VOXEL] * 3
    np.testing.assert_array_equal(np.asarray(data[0]), vol.level(0).compute())
    lo, hi = np.percentile(vol.level(0).compute(), [0.5, 99.5])  # the omero window
    np.testing.assert_allclose(props["contrast_limits"], [lo, hi], rtol=1e-6)

    export_volume(path, tmp_path / "v.zarr", level=1)
    data, props, _ = layers(tmp_path / "v.zarr")  # NGFF 0.4 / Zarr v2
    assert data[0].shape == vol.level(1).shape
    assert list(props["scale"]) == [2 * VOXEL] * 3

    import sxtdist

    acq = sxtdist.open_acquisition(tiny_acq, mode="r")
    for name, scan in acq.scans.items():
        data, props, _ = layers(os.path.join(tiny_acq, name))
        assert data[0].shape == scan.shape
        p = scan.pixel_size_nm
        assert list(props["scale"]) == [1.0, p, p]


def test_large_tiff_is_bigtiff_with_ome_sizes(volume, tmp_path, monkeypatch):
    import sxtdist.io.export as export
    from sxtdist.io.tiff import pixel_size_nm

    monkeypatch.setattr(export, "IMAGEJ_LIMIT", 0)  # as if the stack were above 4 GB
    path, vol = volume
    export_volume(path, tmp_path / "big.tif")
    with tifffile.TiffFile(tmp_path / "big.tif") as t:
        assert t.is_bigtiff and t.is_ome and not t.is_imagej
        np.testing.assert_array_equal(t.asarray(), vol.level(0).compute())
        assert pixel_size_nm(t) == pytest.approx(VOXEL)


def test_export_refuses_an_unfinished_volume_unless_asked(tmp_path, run_cli):
    path = tmp_path / "u.zarr"
    data = np.random.default_rng(5).random((20, 24, 28), dtype=np.float32)
    vol = create_volume(path, VolumeGrid(data.shape, VOXEL), shard_z=10, chunk_z=10)
    vol.write_slices(0, data[:10])  # one of two blocks, as an interrupted run leaves it
    vol.update_meta(plan={"n_blocks": 2})
    vol.mark_blocks_done([0])
    code, _, err = run_cli("export", path, tmp_path / "u.mrc")
    assert code == 2 and "is unfinished (running, 1 of 2 blocks written)" in err, err
    assert "--allow-incomplete" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "u.mrc").exists()
    code, _, err = run_cli("export", path, tmp_path / "u.mrc", "--allow-incomplete")
    assert code == 0, err
    assert "1 of 2 blocks written" in err
    with mrcfile.open(tmp_path / "u.mrc") as m:
        np.testing.assert_array_equal(m.data[:10], data[:10])
        assert not m.data[10:].any()


def test_crops_of_coarse_levels_keep_positions_in_every_format(tmp_path):
    """A point phantom exported from level 1, cropped, sits where level 0 puts it (in nm)
    in the NGFF 0.4 export (every level), the MRC origin and the OME-TIFF plane positions."""
    from sxtdist.io.tiff import pixel_size_nm

    shape = (64, 64, 64)
    data = np.zeros(shape, np.float32)
    data[24:28, 40:44, 8:12] = 1.0  # one voxel of level 2
    vol = create_volume(tmp_path / "p.zarr", VolumeGrid(shape, VOXEL), shard_z=64, chunk_z=16)
    vol.write_slices(0, data)
    vol.finalize()
    expected = np.array([25.5, 41.5, 9.5]) * VOXEL
    crop = (slice(2, 20), slice(4, 24), slice(0, 18))  # level-1 voxels, the point inside

    def centroid(arr, scale, first):  # ``first``: the centre of voxel (0, 0, 0), nm
        grids = np.indices(arr.shape, dtype=np.float64)
        w = arr.astype(np.float64)
        return np.array([(g * w).sum() / w.sum() * s + o for g, s, o in zip(grids, scale, first)])

    export_volume(tmp_path / "p.zarr", tmp_path / "c.zarr", level=1, crop=crop)
    g, ms = _read_v2(tmp_path / "c.zarr")
    assert len(ms["datasets"]) == 2  # 18 x 20 x 18, then 9 x 10 x 9
    for ds in ms["datasets"]:
        scale, translation = (
            t[k] for t, k in zip(ds["coordinateTransformations"], ("scale", "translation"))
        )
        np.testing.assert_allclose(centroid(g[ds["path"]][:], scale, translation), expected)
    first = [(a * 2 + 0.5) * VOXEL for a in (2, 4, 0)]  # level-1 voxel a: centre (2a + 1/2) v0
    assert ms["datasets"][0]["coordinateTransformations"][1]["translation"] == first
    assert ms["datasets"][1]["coordinateTransformations"][1]["translation"] == [
        f + 2 * VOXEL / 2 for f in first
    ]

    export_volume(tmp_path / "p.zarr", tmp_path / "c.mrc", level=1, crop=crop)
    with mrcfile.open(tmp_path / "c.mrc") as m:
        origin = [m.header.origin.z / 10, m.header.origin.y / 10, m.header.origin.x / 10]
        np.testing.assert_allclose(centroid(m.data, [2 * VOXEL] * 3, origin), expected)

    export_volume(tmp_path / "p.zarr", tmp_path / "c.ome.tif", level=1, crop=crop)
    with tifffile.TiffFile(tmp_path / "c.ome.tif") as t:
        assert t.is_ome and not t.is_imagej
        assert pixel_size_nm(t) == pytest.approx(2 * VOXEL)
        ome = tifffile.xml2dict(t.ome_metadata)["OME"]
        pixels = ome["Image"]["Pixels"]
        assert pixels["PhysicalSizeZ"] == pytest.approx(2 * VOXEL / 1e3)
        plane0 = pixels["Plane"][0]
        origin = [plane0[f"Position{a}"] * 1e3 for a in "ZYX"]
        assert pixels["Plane"][1]["PositionZ"] * 1e3 == pytest.approx(origin[0] + 2 * VOXEL)
        np.testing.assert_allclose(centroid(t.asarray(), [2 * VOXEL] * 3, origin), expected)
        assert ome["Creator"].startswith("sxtdist ")
        assert "level 1, crop 2:20,4:24,0:18" in ome["Image"]["Description"]


def test_a_volume_at_a_non_ascii_path_exports_to_every_format(volume, tmp_path):
    """review6 'export --format tiff of a volume whose path has a non-ASCII letter: internal
    error, rc 1': the source path went into a TIFF string tag, which must be ASCII."""
    import shutil

    from sxtdist.io.export import export_mark

    src = tmp_path / "out ß" / "v.zarr"
    shutil.copytree(volume[0], src)
    for name in ("v.tif", "v.ome.tif", "v.mrc"):
        export_volume(src, tmp_path / name)
        assert (export_mark(tmp_path / name) or "").startswith("sxtdist"), name
    export_volume(src, tmp_path / "v.zarr")
    with tifffile.TiffFile(tmp_path / "v.tif") as t:
        assert "out \\xdf/v.zarr" in t.pages[0].tags["Software"].value


def test_exports_carry_sxtdist_mark_and_provenance(volume, tmp_path):
    from sxtdist import __version__
    from sxtdist.io.export import export_mark

    path, _ = volume
    for name in ("m.mrc", "m.tif", "m.ome.tif"):
        export_volume(path, tmp_path / name, level=1, crop=(slice(2, 8), slice(None), slice(None)))
        mark = export_mark(tmp_path / name)
        assert mark is not None and mark.startswith(f"sxtdist {__version__}"), (name, mark)
    with mrcfile.open(tmp_path / "m.mrc") as m:
        labels = [bytes(lab).decode().strip() for lab in m.header.label[: m.header.nlabl]]
    assert labels[0].startswith(f"sxtdist {__version__} export ")
    assert labels[1] == f"source {os.path.abspath(path)}"[:80] or labels[1].startswith("source ...")
    assert labels[2].startswith("level 1 crop 2:8,0:12,0:14")
    with tifffile.TiffFile(tmp_path / "m.tif") as t:
        assert t.is_imagej and os.path.abspath(path) in t.pages[0].tags["Software"].value
    # files sxtdist did not write carry no mark
    tifffile.imwrite(tmp_path / "other.tif", np.zeros((2, 3, 3), np.float32))
    with mrcfile.new(tmp_path / "other.mrc") as m:
        m.set_data(np.zeros((2, 3, 3), np.float32))
    (tmp_path / "text.txt").write_text("sxtdist 0.1")
    for name in ("other.tif", "other.mrc", "text.txt", "none.mrc"):
        assert export_mark(tmp_path / name) is None, name


@pytest.mark.parametrize("name", ["big.tif", "big.ome.tif", "big.mrc"])
def test_export_past_a_file_size_limit_names_the_output(tmp_path, name):
    """A file that cannot grow (``ulimit -f``, as a full disk): one line naming the output
    and why (exit 1), no file left. TIFFs said only "4096 requested and 896 written" (NumPy's
    short write carries no errno), where an MRC named its file."""
    import resource
    import subprocess
    import sys
    from pathlib import Path

    # slices of 64 kB: tifffile writes them with NumPy's tofile (small ones with write,
    # whose failure carries its errno)
    path = tmp_path / "vol" / "v.zarr"
    data = np.random.default_rng(5).random((4, 128, 128), dtype=np.float32)
    vol = create_volume(path, VolumeGrid(data.shape, VOXEL), shard_z=4, chunk_z=4)
    vol.write_slices(0, data)
    vol.finalize()
    out = tmp_path / "out" / name
    out.parent.mkdir()
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    limit = 20 * 1024
    p = subprocess.run(
        [sys.executable, "-m", "sxtdist", "export", path, out, "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip() == (
        f"sxtdist: error: {out}: File too large (a file grew past the size allowed (ulimit -f, "
        "or the file system's limit))"
    )
    assert os.listdir(out.parent) == []
