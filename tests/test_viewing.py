"""Viewing: napari opens an acquisition's root and a volume through sxtdist's reader."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr

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
        z, u = scan.geometry.first_pixel_nm  # about the axis: roi drawn inside full
        assert list(layer.scale) == [1.0, p, p] and list(layer.translate) == [0.0, z, u]
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


def test_scans_are_placed_where_the_geometry_puts_them(tmp_path):
    """Scans were written with translation 0, so a viewer drew the interior scan at the
    full scan's corner. Each scan's translation is its first pixel's centre about the
    rotation axis (x) and the volume's middle (y), nm: the interior scan lies at its
    place in the full field, and follows an edit of its centre or pixel size."""
    import sxtdist
    from sxtdist.io.metadata import ScanPhysics, edit_scan

    rng = np.random.default_rng(0)
    full = sxtdist.ScanData(rng.random((3, 16, 32), np.float32), [0, 60, 120], 60.0)
    roi = sxtdist.ScanData(
        rng.random((4, 30, 28), np.float32), [0, 45, 90, 135], 20.0, roi_center_px=(2.0, -3.0)
    )
    path = tmp_path / "a.zarr"
    sxtdist.create_acquisition(path, {"full": full, "roi": roi})

    def centre(name):  # of the scan's middle pixel, (y, x) nm, read back from the file
        group = zarr.open_group(path, mode="r")[name]
        (_, ty, tx), (_, sy, sx) = ngff.level_translations(group)[0], ngff.level_scales(group)[0]
        _, rows, cols = group["0"].shape
        return ty + (rows - 1) / 2 * sy, tx + (cols - 1) / 2 * sx

    assert centre("full") == (0.0, 0.0)  # on the axis
    assert centre("roi") == (2.0 * 20, -3.0 * 20)  # its detector centre's offset, nm
    assert ngff.level_translations(zarr.open_group(path)["full"])[0] == [0.0, -450.0, -930.0]
    edit_scan(path, "roi", center_offset_px=(0.0, 5.0))
    assert centre("roi") == (0.0, 100.0)
    edit_scan(path, "roi", ScanPhysics(pixel_size_nm=10.0))
    assert centre("roi") == (0.0, 50.0)
    assert ngff.level_scales(zarr.open_group(path)["roi"])[0] == [1.0, 10.0, 10.0]


def test_reader_declines_what_is_not_sxtdist(tmp_path, tiny_acq):
    import zarr

    from sxtdist.io.napari_reader import napari_get_reader

    zarr.open_group(tmp_path / "other.zarr", mode="w")
    (tmp_path / "file.zarr").write_text("x")
    for p in (tmp_path / "other.zarr", tmp_path / "file.zarr", tmp_path / "none.zarr"):
        assert napari_get_reader(str(p)) is None, p
    assert napari_get_reader([tiny_acq, tiny_acq]) is None
    assert napari_get_reader([tiny_acq]) is not None


def _get(url, headers=None, method="GET"):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


def test_view_serves_the_volume_with_cors_and_byte_ranges(tiny_volume):
    from sxtdist.io.viewer import serve

    with serve(tiny_volume, local_client=False) as view:
        base = view.data.url
        assert base.startswith("http://127.0.0.1:") and base.endswith("/vol.zarr/")
        status, headers, body = _get(base + "zarr.json")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert "multiscales" in json.loads(body)["attributes"]["ome"]
        shard = os.path.join(tiny_volume, "0", "c", "0", "0", "0")
        whole = open(shard, "rb").read()
        status, headers, body = _get(base + "0/c/0/0/0", {"Range": "bytes=2-9"})
        assert status == 206 and body == whole[2:10]
        assert headers["Content-Range"] == f"bytes 2-9/{len(whole)}"
        status, _, body = _get(base + "0/c/0/0/0", {"Range": "bytes=-16"})  # a shard index
        assert status == 206 and body == whole[-16:]
        status, headers, _ = _get(base + "0/c/0/0/0", {"Range": f"bytes={len(whole)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
        status, headers, _ = _get(base + "zarr.json", method="OPTIONS")
        assert status == 204 and headers["Access-Control-Allow-Private-Network"] == "true"
        open(os.path.join(tiny_volume, ".sxtdist.lock"), "w").close()
        try:
            for bad in ("../vol.zarr/zarr.json", "%2e%2e/zarr.json", ".sxtdist.lock", "0/c/9"):
                assert _get(base + bad)[0] == 404, bad
            assert _get(base.replace("/vol.zarr/", "/other/") + "zarr.json")[0] == 404
        finally:
            os.remove(os.path.join(tiny_volume, ".sxtdist.lock"))
        (layer,) = view.state["layers"]
        assert layer["source"] == "zarr3://" + base and layer["visible"]
        window = ngff.stored_display_window(zarr.open_group(tiny_volume, mode="r"))
        assert layer["shaderControls"]["normalized"]["range"] == [window["start"], window["end"]]
        assert view.state["layout"] == "4panel" and view.link == view.public_link
    with pytest.raises(OSError):  # closed: nothing answers
        _get(base + "zarr.json")


def test_view_state_of_an_acquisition_and_its_link(tiny_acq):
    from urllib.parse import unquote

    from sxtdist.io.viewer import PUBLIC_CLIENT, public_link, viewer_state

    state = viewer_state(tiny_acq, "http://127.0.0.1:1/tiny.zarr/")
    names = [(x["name"], x["visible"], x["source"]) for x in state["layers"]]
    assert names == [
        ("tiny.zarr full", False, "zarr3://http://127.0.0.1:1/tiny.zarr/full/"),
        ("tiny.zarr roi", True, "zarr3://http://127.0.0.1:1/tiny.zarr/roi/"),
    ]
    root = zarr.open_group(tiny_acq, mode="r")
    for layer, group in zip(state["layers"], ("full", "roi"), strict=True):
        window = ngff.stored_display_window(root[group])
        assert layer["shaderControls"]["normalized"]["range"] == [window["start"], window["end"]]
    assert state["layout"] == "xy" and state["selectedLayer"] == {"layer": "tiny.zarr roi"}
    n, rows, cols = root["roi"]["0"].shape  # the middle interior view, centred
    assert list(state["dimensions"]) == ["x", "y", "angle"]
    (_, z, u), p = ngff.level_translations(root["roi"])[0], ngff.level_scales(root["roi"])[0][2]
    assert state["position"] == [u / p + cols / 2, z / p + rows / 2, n // 2 + 0.5]
    assert state["position"][:2] == [0.5, 0.5]  # tiny's roi is centred on the axis
    link = public_link(state)
    assert link.startswith(PUBLIC_CLIENT + "#!") and " " not in link
    assert json.loads(unquote(link.split("#!", 1)[1])) == state


def test_view_of_a_volume_without_a_stored_window_computes_one(tmp_path, tiny_volume):
    import shutil

    from sxtdist.io.viewer import layer_specs

    old = tmp_path / "old.zarr"
    shutil.copytree(tiny_volume, old)
    group = zarr.open_group(old, mode="r+")
    ome = dict(group.attrs["ome"])
    window = ome.pop("omero")["channels"][0]["window"]
    group.attrs["ome"] = ome  # as sxtdist wrote volumes before it stored windows
    (layer,) = layer_specs(str(old), "http://h/old.zarr/")
    assert layer["shaderControls"]["normalized"]["range"] == [window["start"], window["end"]]
    assert "omero" not in zarr.open_group(old, mode="r").attrs["ome"]  # nothing written


def test_view_command_serves_until_stopped(tiny_volume, tmp_path, run_cli):
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "sxtdist", "view", tiny_volume, "--public-client"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("public client https://neuroglancer-demo.appspot.com/#!")
        data_url = lines[1].split()[-1]
        status, headers, _ = _get(data_url + "zarr.json")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    (tmp_path / "plain").mkdir()
    for bad, words in (
        (tmp_path / "none.zarr", "no such file"),
        (tmp_path / "plain", "is not a Zarr group"),
    ):
        code, out, err = run_cli("view", bad)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_view_starts_neuroglancers_own_client(tiny_volume):
    pytest.importorskip("neuroglancer", reason="neuroglancer not installed (extra: view)")
    from sxtdist.io.viewer import serve

    with serve(tiny_volume) as view:
        assert view.link == view.local_link and view.local_link.startswith("http://127.0.0.1:")
        status, _, body = _get(view.local_link)
        assert status == 200 and b"<title>neuroglancer</title>" in body
        state = view._viewer.state.to_json()
        assert [x["name"] for x in state["layers"]] == ["vol.zarr"]
        assert state["layers"][0]["source"] == "zarr3://" + view.data.url


def _panel_centre(png: str, layout: str) -> np.ndarray:
    """Grey levels (0..1) of the middle 60 % of the first panel of a neuroglancer screenshot."""
    import matplotlib.image

    rgb = matplotlib.image.imread(png)[..., :3]
    grey = rgb.mean(axis=2)
    h, w = grey.shape
    top = 50  # neuroglancer's coordinate bar and layer tabs
    if layout == "4panel":  # the first (x, y) panel is the top-left quarter
        grey = grey[top : top + (h - top) // 2, : w // 2]
    else:
        grey = grey[top:]
    ph, pw = grey.shape
    return grey[int(0.2 * ph) : int(0.8 * ph), int(0.2 * pw) : int(0.8 * pw)]


@pytest.mark.slow
@pytest.mark.parametrize("what", ["volume", "acquisition"])
def test_view_in_headless_chromium_shows_the_cell(what, tmp_path):
    """The link ``sxtdist view`` prints, opened in Chromium: the cell, not blank or saturated."""
    pytest.importorskip("neuroglancer", reason="neuroglancer not installed (extra: view)")
    pytest.importorskip("playwright", reason="playwright not installed (extra: browser)")
    import subprocess
    import sys

    chromium = os.environ.get("SXTDIST_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        pytest.skip(f"no Chromium at {chromium} (apt-get install chromium)")
    repo = os.path.join(os.path.dirname(__file__), "..")
    png = tmp_path / f"{what}.png"
    subprocess.run(
        [sys.executable, os.path.join(repo, "examples", "view_in_browser.py"), "--preset",
         "tiny", "--what", what, "--work", str(tmp_path), "--out", str(png)],
        check=True, timeout=900,
    )  # fmt: skip
    centre = _panel_centre(str(png), "4panel" if what == "volume" else "xy")
    # not blank: no grey level (the panel's background) covers much of it, many levels
    _, counts = np.unique(np.round(centre * 255), return_counts=True)
    assert counts.max() / centre.size < 0.2 and len(counts) > 30, (counts.max(), len(counts))
    # the contrast within range: a spread of greys (measured 0.45-0.6), little clipped
    lo, hi = np.percentile(centre, [5, 95])
    assert hi - lo > 0.25, (lo, hi)
    assert (centre > 0.98).mean() < 0.05, "saturated white"
    assert (centre < 0.02).mean() < 0.05, "saturated black"
