"""Look at an acquisition or a volume in neuroglancer: serve it over HTTP, build the link.

Neuroglancer runs in the browser and reads OME-Zarr over HTTP, so ``sxtdist view``
serves the dataset's directory read-only (127.0.0.1 by default) with what the
browser needs: CORS headers (the viewer page comes from another origin),
``Range`` requests (a sharded array's index and inner chunks are byte ranges of
one shard file) and the private-network preflight answer (a public page asking
for a local address). The link carries the viewer state: one layer per scan (the
interior scan shown) or the volume, each with its ``omero`` display window as the
contrast range, so projections are not drawn saturated.

Two clients: the one shipped in the ``neuroglancer`` Python package (extra
``view``), served on another local port and fed the state by neuroglancer's own
server, works without a network; the public client
(https://neuroglancer-demo.appspot.com) needs none installed but needs the
internet. Both read the data from the local server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zarr

from ..errors import InputError, ParameterError
from . import ngff
from .napari_reader import sxtdist_kind

logger = logging.getLogger(__name__)

#: The public neuroglancer client (needs the internet; the data stay local).
PUBLIC_CLIENT = "https://neuroglancer-demo.appspot.com/"
#: A grey-level image shader whose contrast range is the control ``normalized``.
SHADER = "#uicontrol invlerp normalized\nvoid main() {\n  emitGrayscale(normalized());\n}\n"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class DataRequestHandler(SimpleHTTPRequestHandler):
    """Read-only files of one directory, with CORS and single byte ranges.

    Only ``/<name>/...`` under the served directory is answered; hidden files
    (the write lock) and anything resolving outside it are 404.
    """

    server: DataServer

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Length, ETag")
        super().end_headers()

    def do_OPTIONS(self) -> None:  # the CORS (and private-network) preflight
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def translate_path(self, path: str) -> str:
        """The file for a URL path, or ``""`` when it is not one of the served files."""
        parts = [p for p in urllib.parse.unquote(urllib.parse.urlsplit(path).path).split("/") if p]
        if not parts or parts[0] != self.server.name:
            return ""
        if any(p.startswith(".") for p in parts[1:]):  # "..", and the write lock
            return ""
        full = os.path.realpath(os.path.join(self.server.root, *parts[1:]))
        inside = full == self.server.root or full.startswith(self.server.root + os.sep)
        return full if inside else ""

    def send_head(self):  # the stdlib's hook: send the headers, return the file to copy
        path = self.translate_path(self.path)
        if not path or not os.path.isfile(path):  # a chunk never written is a fill value
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None
        size = os.path.getsize(path)
        first, last = 0, size - 1
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            a, b = match.groups()
            if a:
                first, last = int(a), min(int(b), size - 1) if b else size - 1
            else:  # a suffix: the last N bytes (a shard's index)
                first = max(0, size - int(b))
            if first > last:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        fh = open(path, "rb")  # closed by the stdlib after copyfile
        fh.seek(first)
        self._remaining = last - first + 1
        return fh

    def copyfile(self, source, outputfile) -> None:
        left = self._remaining
        while left > 0:
            chunk = source.read(min(left, 1 << 20))
            if not chunk:
                break
            outputfile.write(chunk)
            left -= len(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class DataServer(ThreadingHTTPServer):
    """Serves the directory ``root`` as ``http://HOST:PORT/<basename>/``."""

    daemon_threads = True

    def __init__(self, root: str, host: str, port: int) -> None:
        self.root = os.path.realpath(root)
        self.name = os.path.basename(self.root)
        super().__init__((host, port), DataRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/{urllib.parse.quote(self.name)}/"


def layer_specs(path: str, data_url: str) -> list[dict[str, Any]]:
    """Neuroglancer image layers for an acquisition (its scans) or a volume.

    An acquisition's simulated truth is left out: a volume among projections
    would add a fourth axis to every view (napari's reader shows it, hidden).

    Parameters
    ----------
    path
        The acquisition or volume directory.
    data_url
        Where the directory is served (ends with ``/``).
    """
    kind = sxtdist_kind(path)
    group = zarr.open_group(path, mode="r")
    name = os.path.basename(os.path.realpath(path))
    if kind == "volume":
        return [_image_layer(group, data_url, name, visible=True)]
    if kind != "acquisition":
        raise InputError(path, "is not an sxtdist acquisition or volume")
    shown = _shown_scan(group)
    return [
        _image_layer(group[s], f"{data_url}{s}/", f"{name} {s}", visible=s == shown)
        for s in group.attrs["sxtdist"].get("scans", {})
    ]


def _image_layer(group: zarr.Group, url: str, name: str, visible: bool) -> dict[str, Any]:
    window = ngff.stored_display_window(group)
    if window is None:  # written before sxtdist stored windows: compute one, write nothing
        window = ngff.display_window(ngff.window_sample(group))
    return {
        "type": "image",
        "source": f"zarr3://{url}",
        "name": name,
        "shader": SHADER,
        "shaderControls": {
            "normalized": {
                "range": [window["start"], window["end"]],
                "window": [window["min"], window["max"]],
            }
        },
        "visible": visible,
    }


def viewer_state(path: str, data_url: str, panel_px: int = 360) -> dict[str, Any]:
    """The neuroglancer state: the layers, the axes in view, where and how close.

    A volume is shown in four panels (x across and y down in the first), an
    acquisition's projections in one panel (x across, y down, the angle as the
    third axis) at the middle view of the interior scan; zoomed so that the
    image fills a panel about ``panel_px`` wide (twice that for one panel).
    """
    layers = layer_specs(path, data_url)
    group = zarr.open_group(path, mode="r")
    volume = sxtdist_kind(path) == "volume"
    shown = group if volume else group[_shown_scan(group)]
    scale = ngff.level_scales(shown)[0]
    first = ngff.level_translations(shown)[0]  # where the image's first voxel sits
    n0, n1, n2 = shown["0"].shape
    c1, c2 = (t / s + n / 2 for t, s, n in zip(first[1:], scale[1:], (n1, n2)))
    extent_px = max(n1, n2) * 1.15  # a margin around the image
    # neuroglancer shows the first two global dimensions in its first panel: x, y
    if volume:
        dims = {a: [scale[i] * 1e-9, "m"] for i, a in ((2, "x"), (1, "y"), (0, "z"))}
    else:
        dims = {"x": [scale[2] * 1e-9, "m"], "y": [scale[1] * 1e-9, "m"], "angle": [1, ""]}
        panel_px *= 2
    return {
        "dimensions": dims,
        "position": [c2, c1, n0 // 2 + 0.5],  # voxel i spans [i, i + 1), moved by its translation
        "crossSectionScale": extent_px / panel_px,
        "projectionScale": extent_px * 1.5,
        "layers": layers,
        "selectedLayer": {"layer": next(x["name"] for x in layers if x["visible"])},
        "layout": "4panel" if volume else "xy",
    }


def _shown_scan(group: zarr.Group) -> str:
    scans = list(group.attrs["sxtdist"].get("scans", {}))
    return "roi" if "roi" in scans else scans[0]


def public_link(state: dict[str, Any], client: str = PUBLIC_CLIENT) -> str:
    """A link to ``client`` with the state in its fragment (what neuroglancer's URLs hold)."""
    text = json.dumps(state, separators=(",", ":"))
    return client + "#!" + urllib.parse.quote(text, safe="~@#$&()*!+=:;,.?/'")


@dataclass
class View:
    """A running view: the data server, and neuroglancer's local client when installed.

    Use :func:`serve`; :meth:`close` stops both (also on leaving a ``with`` block).
    """

    path: str
    data: DataServer
    state: dict[str, Any]
    local_link: str | None = None
    _viewer: Any = None

    @property
    def public_link(self) -> str:
        return public_link(self.state)

    @property
    def link(self) -> str:
        """The link to open: the local client's if there is one, else the public client's."""
        return self.local_link or self.public_link

    def close(self) -> None:
        """Stop the data server and neuroglancer's server (the one of this process)."""
        self.data.shutdown()
        self.data.server_close()
        if self._viewer is not None:
            import neuroglancer

            neuroglancer.stop()
            self._viewer = None

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve(
    path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, local_client: bool = True
) -> View:
    """Serve an acquisition or volume for neuroglancer and return the running :class:`View`.

    Parameters
    ----------
    path
        An sxtdist acquisition or volume (a Zarr directory).
    host
        Address to listen on: 127.0.0.1 (this machine only) unless you mean to
        share the data with other machines.
    port
        Port of the data server (0: any free port).
    local_client
        Also start neuroglancer's own client (needs the ``neuroglancer`` package;
        skipped with a note when it is not installed).
    """
    path = os.fspath(path).rstrip("/") or "/"
    kind = sxtdist_kind(path)
    if kind not in ("acquisition", "volume"):
        from ..dataset import open_sxtdist_group

        open_sxtdist_group(path)  # says what is wrong (no such path, not Zarr, not sxtdist)
        raise InputError(path, f"is a {kind}, not an acquisition or a volume")
    _check_readable(path, kind)
    try:
        data = DataServer(path, host, port)
    except OSError as exc:
        raise ParameterError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    thread = threading.Thread(target=data.serve_forever, name="sxtdist-view-data", daemon=True)
    thread.start()
    view = View(path, data, viewer_state(path, data.url))
    if local_client:
        view._viewer, view.local_link = _start_local_client(view.state, host)
    return view


def _check_readable(path: str, kind: str) -> None:
    if kind == "volume":
        from ..volume import open_volume

        vol = open_volume(path, mode="r")
        if vol.status != "complete":
            logger.warning("%s is %s: blocks not written yet show as zeros", path, vol.status)
    else:
        from ..dataset import open_acquisition

        open_acquisition(path, mode="r")


def _start_local_client(state: dict[str, Any], host: str) -> tuple[Any, str | None]:
    """Neuroglancer's own server and client (the ``neuroglancer`` package), if installed."""
    try:
        neuroglancer = _import_neuroglancer()
    except ImportError:
        logger.info(
            "neuroglancer is not installed: the link uses the public client, which needs the "
            "internet (pip install 'sxtdist[view]' for one that works offline)"
        )
        return None, None
    neuroglancer.set_server_bind_address(bind_address=host, bind_port=0)
    viewer = neuroglancer.Viewer()
    viewer.set_state(neuroglancer.ViewerState(state))
    return viewer, viewer.get_viewer_url()


def _import_neuroglancer() -> Any:
    """``import neuroglancer``, without the stderr handler its import gives the root logger
    (its ``boss_credentials`` module calls ``logging.basicConfig()``): sxtdist's records
    reached it too and every status line was printed twice. A handler the user set before
    is kept."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        import neuroglancer
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
    return neuroglancer


__all__ = ["View", "layer_specs", "public_link", "serve", "viewer_state"]
