"""NGFF helpers: the pyramid is the same whether built in memory or streamed through dask."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from sxtdist.io import ngff


def _image(path, data):
    root = zarr.open_group(path, mode="w", zarr_format=3)
    g = ngff.create_multiscale(
        root, "img", [data.shape], [[2.0, 1.0, 1.0]], ngff.VOLUME_AXES, chunks=[(8, 16, 16)]
    )
    g["0"][...] = data
    return g


def test_pyramid_in_memory_equals_dask(tmp_path):
    data = np.random.default_rng(0).random((33, 70, 41)).astype(np.float32)
    a = _image(tmp_path / "a.zarr", data)
    b = _image(tmp_path / "b.zarr", data)
    na = ngff.add_downsampled_levels(a, 5, ngff.VOLUME_AXES, "img", min_size=4)
    nb = ngff.add_downsampled_levels(b, 5, ngff.VOLUME_AXES, "img", min_size=4, in_memory_bytes=0)
    assert na == nb == 4
    for level in range(1, na):
        np.testing.assert_allclose(a[str(level)][...], b[str(level)][...], rtol=1e-6)
    # level 1 is the mean of 2x2x2 cells (the odd edge dropped)
    expected = data[:32, :70, :40].reshape(16, 2, 35, 2, 20, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(a["1"][...], expected, rtol=1e-6)
    assert ngff.level_scales(a)[2] == [8.0, 4.0, 4.0]
    ngff.validate_image(a)


def _centroid_nm(data, scale, translation):
    """Centroid of ``data`` in physical units: index → index · scale + translation."""
    grids = np.indices(data.shape, dtype=np.float64)
    w = data.astype(np.float64)
    return [float((g * w).sum() / w.sum()) * s + t for g, s, t in zip(grids, scale, translation)]


def test_every_level_puts_a_point_where_level_0_does(tmp_path):
    """A point phantom (a cube filling one coarsest-level voxel) has the same centroid in
    nm at every level: the translations place each level's voxel centres truly."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume, open_volume

    shape, voxel = (64, 72, 80), 25.0
    data = np.zeros(shape, np.float32)
    data[24:32, 40:48, 8:16] = 1.0  # whole blocks of 8 = one voxel of level 3
    vol = create_volume(tmp_path / "p.zarr", VolumeGrid(shape, voxel), shard_z=64, chunk_z=16)
    vol.write_slices(0, data)
    assert vol.finalize() == 4
    vol = open_volume(tmp_path / "p.zarr", mode="r")
    scales = ngff.level_scales(vol.group)
    translations = ngff.level_translations(vol.group)
    expected = [(24 + 3.5) * voxel, (40 + 3.5) * voxel, (8 + 3.5) * voxel]
    for k in range(vol.n_levels):
        got = _centroid_nm(vol.level(k).compute(), scales[k], translations[k])
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=f"level {k}")
    # as written on disk, for a viewer: level 1 half a coarse voxel minus half a fine one on
    assert translations[1] == [12.5] * 3 and translations[3] == [87.5] * 3
    ms = vol.group.attrs["ome"]["multiscales"][0]
    assert ms["datasets"][2]["coordinateTransformations"][1] == {
        "type": "translation",
        "translation": [37.5] * 3,
    }
    ngff.validate_image(vol.group)


def test_translation_of_level_0_carries_to_every_level(tmp_path):
    data = np.random.default_rng(1).random((32, 32, 32)).astype(np.float32)
    root = zarr.open_group(tmp_path / "t.zarr", mode="w", zarr_format=3)
    g = ngff.create_multiscale(root, "img", [data.shape], [[2.0, 1.0, 1.0]], ngff.VOLUME_AXES,
                               chunks=[(8, 16, 16)])  # fmt: skip
    g["0"][...] = data
    ngff.set_multiscale_metadata(g, [[2.0, 1.0, 1.0]], ngff.VOLUME_AXES, "img", [[10.0, 0, -4]])
    ngff.add_downsampled_levels(g, 3, ngff.VOLUME_AXES, "img", min_size=4)
    assert ngff.level_translations(g) == [[10.0, 0.0, -4.0], [11.0, 0.5, -3.5], [13.0, 1.5, -2.5]]


def test_display_window_is_the_data_percentiles(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(0.3, 0.05, (16, 40, 40)).astype(np.float32)
    data[0, 0, :4] = [np.nan, 50.0, -50.0, 0.3]  # outliers and a hole do not set the window
    g = _image(tmp_path / "w.zarr", data)
    window = ngff.update_display_window(g, "attenuation (1/um)")
    finite = data[np.isfinite(data)]
    assert window["start"] == pytest.approx(np.percentile(finite, 0.5), rel=1e-6)
    assert window["end"] == pytest.approx(np.percentile(finite, 99.5), rel=1e-6)
    assert window["min"] == -50.0 and window["max"] == 50.0
    assert 0.15 < window["start"] < 0.2 and 0.4 < window["end"] < 0.45
    channel = g.attrs["ome"]["omero"]["channels"][0]
    assert channel["window"] == window and channel["label"] == "attenuation (1/um)"
    assert ngff.stored_display_window(g) == window
    # rewriting the multiscale metadata (a new level) keeps the window; it still validates
    ngff.add_downsampled_levels(g, 2, ngff.VOLUME_AXES, "img", min_size=4)
    assert ngff.stored_display_window(g) == window
    ngff.validate_image(g)
    # a constant image gets a window one unit wide
    assert ngff.display_window(np.full(5, 2.0)) == {
        "min": 1.5,
        "max": 2.5,
        "start": 1.5,
        "end": 2.5,
    }


def test_window_sample_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(ngff, "WINDOW_SAMPLE", 1000)
    data = np.arange(20 * 30 * 40, dtype=np.float32).reshape(20, 30, 40)
    g = _image(tmp_path / "s.zarr", data)
    sample = ngff.window_sample(g)
    assert 0 < sample.size <= 1000
    assert sample.shape[0] == 1 and sample.shape[1:] == (15, 20)  # one plane, strided
