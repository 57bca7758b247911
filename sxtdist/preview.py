"""``sxtdist.preview``: a quick look at an acquisition before any iterative solve.

A few slices of each scan reconstructed by filtered back-projection
(:mod:`sxtdist.fbp`), with the stored shifts and axis tilt applied, and a rough
combined slice (the full scan's FBP with the interior scan's inside its disc), saved
as one PNG: a row per slice, a column per scan and the combined look, the interior
scan's field drawn as a red circle. It takes seconds at 512², so it is the first
look at a new acquisition (is the cell in the field, is the centre right) and the
first check of an alignment: misaligned views smear every edge into arcs.

The PNG carries its layout as JSON in its ``Description`` text chunk (each panel's
box, scan, slice and height), so a program can find the panels again. Optionally the
combined FBP of every slice, binned, is written as a small volume (OME-Zarr, as
``sxtdist reconstruct`` writes them).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .dataset import Acquisition, open_acquisition
from .errors import ParameterError, SxtdistError
from .execution import Execution
from .fbp import FILTERS, axis_sinogram, combine, fbp, rows_for_slice, sample_positions
from .file_kinds import LAYOUT_KEY, LAYOUT_KIND  # how a preview is recognised
from .geometry import VolumeGrid, default_grid
from .outputs import check_output, writing

logger = logging.getLogger(__name__)

#: Panels larger than this (pixels a side) are shown binned.
PANEL_PX = 512
RING_RGB = (230, 25, 25)


@dataclass(frozen=True)
class PreviewOptions:
    """What the preview shows.

    Parameters
    ----------
    slices
        How many slices, spread evenly over the height (at ``(i + 1) / (n + 1)``), or the
        slice indices of the reconstruction grid.
    filter_type
        ASTRA's FBP filter (:data:`sxtdist.fbp.FILTERS`).
    panel_px
        Panels are binned to at most this many pixels a side.
    volume
        Also write the combined FBP of every slice, binned by ``volume_bin``, here.
    volume_bin
        Binning of that volume (voxels per side).
    """

    slices: int | Sequence[int] = 3
    filter_type: str = "ram-lak"
    panel_px: int = PANEL_PX
    volume: str | None = None
    volume_bin: int = 4

    def __post_init__(self) -> None:
        if self.filter_type not in FILTERS:
            raise ParameterError(
                f"--filter: {self.filter_type!r} is not one of {', '.join(FILTERS)}"
            )
        if isinstance(self.slices, int) and self.slices < 1:
            raise ParameterError(f"--slices: at least 1, got {self.slices}")
        if self.panel_px < 16:
            raise ParameterError(f"--panel-px: at least 16, got {self.panel_px}")
        if self.volume_bin < 1:
            raise ParameterError(f"--volume-bin: at least 1, got {self.volume_bin}")


@dataclass
class Preview:
    """What :func:`preview` made."""

    png: str
    grid: VolumeGrid
    z_index: list[int]
    slices: dict[str, np.ndarray] = field(default_factory=dict)  # scan or "combined": (n, ny, nx)
    roi_radius_nm: float | None = None
    backend: str = "cpu"
    seconds: float = 0.0
    volume: str | None = None


def preview(
    acquisition: str | os.PathLike[str] | Acquisition,
    out: str | os.PathLike[str] | None = None,
    options: PreviewOptions | None = None,
    execution: Execution | None = None,
    **option_fields,
) -> Preview:
    """Reconstruct a few slices of each scan by FBP and save them as a PNG.

    Parameters
    ----------
    acquisition
        The acquisition (a path or one opened).
    out
        The PNG (default: ``<acquisition name>_preview.png`` in the working directory).
    options
        :class:`PreviewOptions`, or its fields as keywords.
    execution
        Its ``backend`` (``auto``: ASTRA's CUDA FBP when ASTRA has a GPU) and
        ``overwrite`` (replace an existing PNG or volume) are used.
    """
    t0 = time.perf_counter()
    opts = options or PreviewOptions(**option_fields)
    ex = execution or Execution()
    acq = (
        acquisition
        if isinstance(acquisition, Acquisition)
        else open_acquisition(acquisition, mode="r")
    )
    png = os.fspath(out) if out is not None else _default_png(acq.path)
    # before the work: each replaces only an earlier preview PNG, an sxtdist volume
    check_output(png, "preview", inputs=[acq.path], overwrite=ex.overwrite, file=True)
    if opts.volume is not None:
        check_output(opts.volume, "volume", inputs=[acq.path], overwrite=ex.overwrite)
    backend = _backend(ex.backend)
    grid = default_grid([s.geometry for s in acq.scans.values()])
    z_index = _slice_indices(opts.slices, grid.nz)
    roi_radius = acq["roi"].geometry.field_radius_nm if "roi" in acq.scans else None
    result = Preview(png, grid, z_index, roi_radius_nm=roi_radius, backend=backend)
    per_scan = {name: [] for name in acq.scans}
    combined = []
    for k in z_index:
        z = float(grid.z_centers_nm(k, k + 1)[0])
        one = {
            name: _scan_slice(scan, grid, [z], opts.filter_type, backend)
            for name, scan in acq.scans.items()
        }
        for name, img in one.items():
            per_scan[name].append(img)
        combined.append(combine(one, grid, roi_radius))
    result.slices = {n: np.stack(v) for n, v in per_scan.items()}
    result.slices["combined"] = np.stack(combined)
    with writing(png, "preview", inputs=[acq.path], overwrite=ex.overwrite, file=True) as target:
        write_png(result, acq, opts.panel_px, target.write_path)
    if opts.volume is not None:
        result.volume = _write_volume(acq, opts, backend, ex.overwrite)
    result.seconds = time.perf_counter() - t0
    logger.info(
        "preview of %s: %d slice(s) by FBP (%s) in %.2f s -> %s",
        acq.path,
        len(z_index),
        backend,
        result.seconds,
        png,
    )
    return result


def _scan_slice(
    scan, grid: VolumeGrid, heights_nm: Sequence[float], filter_type: str, backend: str
) -> np.ndarray:
    """FBP of one slice of ``grid`` from one scan; several heights (a binned slice) are
    averaged in the sinogram."""
    g = scan.geometry
    spacing = max(g.pixel_size_nm, grid.voxel_size_nm)
    u = sample_positions(grid, spacing)
    spans = [rows_for_slice(g, z, u) for z in heights_nm]
    first, stop = min(s[0] for s in spans), max(s[1] for s in spans)
    band = scan.read(rows=slice(first, stop))
    if spacing > 1.5 * g.pixel_size_nm:  # sampled coarser than the pixels: average first
        from scipy.ndimage import uniform_filter1d

        band = uniform_filter1d(band, int(round(spacing / g.pixel_size_nm)), axis=2)
    sino = np.mean([axis_sinogram(band, first, g, z, u) for z in heights_nm], axis=0)
    return fbp(sino, g.angles_deg, spacing, grid, filter_type, backend)


def _slice_indices(slices: int | Sequence[int], nz: int) -> list[int]:
    if isinstance(slices, int):
        n = min(slices, nz)
        return sorted({int(round((i + 1) * nz / (n + 1) - 0.5)) for i in range(n)})
    out = [int(k) for k in slices]
    bad = [k for k in out if not 0 <= k < nz]
    if bad or not out:
        raise ParameterError(f"--z: slice indices must be in 0..{nz - 1}, got {list(slices)}")
    return out


def _backend(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    import astra

    if astra.use_cuda():
        return "gpu"
    if requested == "gpu":
        raise SxtdistError("no usable GPU: ASTRA has no CUDA device here (use --backend cpu)")
    return "cpu"


def _default_png(acq_path: str) -> str:
    name = os.path.basename(os.path.normpath(acq_path))
    stem = name[: -len(".zarr")] if name.endswith(".zarr") else name
    return os.path.abspath(f"{stem}_preview.png")


# -- the picture ----------------------------------------------------------------------------


def write_png(
    result: Preview, acq: Acquisition, panel_px: int = PANEL_PX, path: str | None = None
) -> dict:
    """Lay the slices out as a PNG at ``path`` (default ``result.png``); returns the layout.

    :func:`preview` writes it beside its output and swaps it in (:func:`sxtdist.outputs.writing`).
    """
    from matplotlib.figure import Figure

    columns = list(result.slices)
    grid = result.grid
    f = max(1, math.ceil(max(grid.slice_shape) / panel_px))
    ph, pw = (-(-n // f) for n in grid.slice_shape)
    left, top, gap, bottom = 110, 30, 6, 24
    width = left + len(columns) * (pw + gap)
    height = top + len(result.z_index) * (ph + gap) + bottom
    canvas = np.full((height, width, 3), 255, np.uint8)
    ring = _ring(
        ph,
        pw,
        None if result.roi_radius_nm is None else result.roi_radius_nm / (grid.voxel_size_nm * f),
    )
    panels = []
    labels = []
    for i, k in enumerate(result.z_index):
        lo, hi = _window(result.slices["combined"][i], grid)
        y0 = top + i * (ph + gap)
        z_um = float(grid.z_centers_nm(k, k + 1)[0]) / 1e3
        labels.append((4, y0 + ph / 2, f"slice {k}\nz {z_um:+.2f} µm"))
        for j, name in enumerate(columns):
            img = _bin(result.slices[name][i], f)
            grey = (np.clip((img - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)
            tile = np.repeat(grey[:, :, None], 3, axis=2)
            tile[ring] = RING_RGB
            x0 = left + j * (pw + gap)
            canvas[y0 : y0 + ph, x0 : x0 + pw] = tile
            panels.append(
                {"scan": name, "slice": k, "z_nm": z_um * 1e3, "box": [x0, y0, x0 + pw, y0 + ph]}
            )
    for j, name in enumerate(columns):
        views = "" if name == "combined" else f" ({acq[name].geometry.n_angles} views)"
        labels.append((left + j * (pw + gap) + 2, top / 2, f"{name}{views}"))
    aligned = ", ".join(
        f"{n}: {'aligned' if s.aligned else 'not aligned'}" for n, s in acq.scans.items()
    )
    labels.append(
        (
            4,
            height - bottom / 2,
            f"{os.path.basename(acq.path)} - FBP ({result.backend}) - {aligned}",
        )
    )
    layout = {
        "kind": LAYOUT_KIND,
        "acquisition": os.path.abspath(acq.path),
        "panels": panels,
        "bin": f,
        "voxel_size_nm": grid.voxel_size_nm,
        "roi_radius_px": None
        if result.roi_radius_nm is None
        else result.roi_radius_nm / (grid.voxel_size_nm * f),
        "ring_rgb": list(RING_RGB),
    }
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fig.figimage(canvas, 0, 0, origin="upper", resize=False)
    for x, y, text in labels:
        fig.text(x / width, 1.0 - y / height, text, fontsize=8, va="center", ha="left")
    fig.savefig(
        path or result.png, dpi=dpi, format="png", metadata={LAYOUT_KEY: json.dumps(layout)}
    )
    return layout


def _ring(ph: int, pw: int, radius_px: float | None) -> np.ndarray:
    """Pixels of a one-pixel circle of ``radius_px`` about the panel's centre."""
    if radius_px is None:
        return np.zeros((ph, pw), bool)
    y = np.arange(ph)[:, None] - (ph - 1) / 2.0
    x = np.arange(pw)[None, :] - (pw - 1) / 2.0
    return np.abs(np.hypot(y, x) - radius_px) <= 0.5


def _window(img: np.ndarray, grid: VolumeGrid) -> tuple[float, float]:
    """Grey levels: the 0.5 and 99.5 percentiles inside the grid's inscribed disc."""
    ny, nx = grid.slice_shape
    y = np.arange(ny)[:, None] - (ny - 1) / 2.0
    x = np.arange(nx)[None, :] - (nx - 1) / 2.0
    inside = np.hypot(y, x) <= min(ny, nx) / 2.0
    lo, hi = np.percentile(img[inside], [0.5, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1e-6


def _bin(img: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return img
    ny, nx = img.shape
    pad = np.pad(img, ((0, -ny % f), (0, -nx % f)), mode="edge")
    return pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f).mean(axis=(1, 3))


# -- the small volume -----------------------------------------------------------------------


def _write_volume(acq: Acquisition, opts: PreviewOptions, backend: str, overwrite: bool) -> str:
    """The combined FBP of every slice on a grid binned ``volume_bin`` times, as a volume."""
    from .volume import create_volume

    full = default_grid([s.geometry for s in acq.scans.values()])
    b = opts.volume_bin
    nz, ny, nx = (max(1, n // b) for n in full.shape)
    grid = VolumeGrid((nz, ny, nx), full.voxel_size_nm * b)
    roi_radius = acq["roi"].geometry.field_radius_nm if "roi" in acq.scans else None
    sub = (np.arange(b) - (b - 1) / 2.0) * full.voxel_size_nm  # heights inside a binned slice
    vol = np.empty(grid.shape, np.float32)
    for k, z in enumerate(grid.z_centers_nm()):
        one = {
            name: _scan_slice(scan, grid, list(z + sub), opts.filter_type, backend)
            for name, scan in acq.scans.items()
        }
        vol[k] = combine(one, grid, roi_radius)
    out = os.fspath(opts.volume)
    attributes = {
        "provenance": {
            "input": os.path.abspath(acq.path),
            "method": f"fbp preview ({opts.filter_type}, {backend})",
            "binning": b,
            "scans": list(acq.scans),
        }
    }
    with writing(out, "volume", inputs=[acq.path], overwrite=overwrite) as target:
        v = create_volume(
            target.write_path, grid, shard_z=nz, chunk_z=min(nz, 64), attributes=attributes
        )
        v.write_slices(0, vol)
        v.finalize()
    logger.info("preview volume %s: %s voxels of %g nm", out, grid.shape, grid.voxel_size_nm)
    return out
