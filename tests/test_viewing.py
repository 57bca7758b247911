"""Viewing: napari opens an acquisition's root and a volume through sxtdist's reader."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sxtdist.io import ngff


@pytest.fixture(scope="module")
def tiny_volume(tmp_path_factory, tiny_acq):
    """A small finished volume with three levels (not a reconstruction: only its format)."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    path = tmp_path_factory.mktemp("vol") / "vol.zarr"
    data = np.random.default_rng(7).normal(0.3, 0.05, (32, 40, 48)).astype(np.float32)
    vol = create_volume(path, VolumeGrid(data.shape, 50.0), shard_z=32, chunk_z=16)
    vol.write_slices(0, data)
    vol.finalize()
    return str(path)


def test_napari_opens_an_acquisition_root_as_its_scans(tiny_acq, tiny_volume):
    pytest.importorskip("napari", reason="napari not installed (extra: napari)")
    import npe2
    from napari.components import ViewerModel

    import sxtdist

    npe2.PluginManager.instance().discover()  # the entry point of the installed package
    assert "sxtdist" in npe2.PluginManager.instance()._manifests
    viewer = ViewerModel()
    viewer.open(tiny_acq, plugin="sxtdist")
    acq = sxtdist.open_acquisition(tiny_acq, mode="r")
    name = os.path.basename(tiny_acq)
    assert [layer.name for layer in viewer.layers] == [f"{name} {s}" for s in acq.scans] + [
        f"{name} truth"
    ]
    for scan_name, scan in acq.scans.items():
        layer = viewer.layers[f"{name} {scan_name}"]
        p = scan.pixel_size_nm
        assert list(layer.scale) == [1.0, p, p] and list(layer.translate) == [0.0, 0.0, 0.0]
        assert layer.axis_labels == ("angle", "y", "x")
        assert layer.visible == (scan_name == "roi")
        lo, hi = np.percentile(scan.read(), [0.5, 99.5])
        np.testing.assert_allclose(layer.contrast_limits, [lo, hi], rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(layer.data), scan.read())
    truth = viewer.layers[f"{name} truth"]
    v = acq.truth_meta["voxel_size_nm"]
    assert list(truth.scale) == [v, v, v] and not truth.visible

    viewer = ViewerModel()
    viewer.open(tiny_volume, plugin="sxtdist")
    (layer,) = viewer.layers
    vol = sxtdist.open_volume(tiny_volume, mode="r")
    assert layer.multiscale and len(layer.data) == vol.n_levels == 3
    assert list(layer.scale) == [50.0] * 3
    assert layer.metadata["sxtdist"]["status"] == "complete"
    window = ngff.stored_display_window(vol.group)
    assert list(layer.contrast_limits) == [window["start"], window["end"]]


def test_reader_declines_what_is_not_sxtdist(tmp_path, tiny_acq):
    import zarr

    from sxtdist.io.napari_reader import napari_get_reader

    zarr.open_group(tmp_path / "other.zarr", mode="w")
    (tmp_path / "file.zarr").write_text("x")
    for p in (tmp_path / "other.zarr", tmp_path / "file.zarr", tmp_path / "none.zarr"):
        assert napari_get_reader(str(p)) is None, p
    assert napari_get_reader([tiny_acq, tiny_acq]) is None
    assert napari_get_reader([tiny_acq]) is not None
