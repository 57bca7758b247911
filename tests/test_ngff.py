"""NGFF helpers: the pyramid is the same whether built in memory or streamed through dask."""

from __future__ import annotations

import numpy as np
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
