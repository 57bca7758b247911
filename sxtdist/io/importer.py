"""Import a projection stack from a beamline format into an acquisition, as one scan.

The stack is read frame by frame (a lazy dask array over the reader), converted
to optical depth and written one projection per chunk, so memory stays at a few
frames whatever the size of the file. Flat/dark correction::

    OD = -ln( clip((I - dark) / (flat - dark), EPS) )

with flats and darks averaged. The scan is added to a new acquisition (written
whole or not at all) or to an existing one (written beside it and renamed into
place), see :func:`sxtdist.dataset.add_scan`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._progress import log, progress_bar
from ..dataset import (
    SCAN_NAMES,
    Acquisition,
    ScanData,
    add_scan,
    create_acquisition,
    open_acquisition,
)
from ..errors import InputError, OutputExistsError, ParameterError
from ..outputs import check_output, recognise
from . import mrc, nxtomo, tiff, txrm
from .checks import MAX_PIXEL_NM, check_angles, check_finite, check_pixel_type
from .source import FrameSource, read_angles_file

#: Transmission is clipped to this before the log (dead pixels, zero counts).
EPS = 1e-6
#: A frame whose median exceeds this is not a transmission image (raw counts?).
MAX_TRANSMISSION_MEDIAN = 2.0
VALUES = ("auto", "intensity", "transmission", "od")
READERS = {
    "tiff": tiff.open_tiff,
    "mrc": mrc.open_mrc,
    "nxtomo": nxtomo.open_nxtomo,
    "txrm": txrm.open_txrm,
}


def is_acquisition(path: str) -> bool:
    """Whether an sxtdist acquisition is at ``path`` (an empty folder is not one)."""
    return recognise(path) == "acquisition"


def guess_format(path: str) -> str:
    """The reader for ``path`` from its suffix (a folder is a TIFF sequence)."""
    if os.path.isdir(path):
        return "tiff"
    low = path.lower()
    for name, module in (("tiff", tiff), ("mrc", mrc), ("nxtomo", nxtomo), ("txrm", txrm)):
        if low.endswith(module.SUFFIXES):
            return name
    raise InputError(
        path,
        "unknown file type (TIFF .tif/.tiff, MRC .mrc/.st/.ali, NXtomo .nx/.nxs/.h5, "
        "Xradia .txrm/.xrm); name it with --format",
    )


def open_source(path: str | os.PathLike[str], fmt: str | None = None) -> FrameSource:
    """Open a projection stack with the reader for ``fmt`` (guessed from the suffix if None)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file or directory")
    fmt = fmt or guess_format(path)
    if fmt not in READERS:
        raise ParameterError(f"--format: unknown format {fmt!r} (choose from {', '.join(READERS)})")
    return READERS[fmt](path)


def import_scan(
    source: str | os.PathLike[str],
    acquisition: str | os.PathLike[str],
    scan: str = "roi",
    *,
    fmt: str | None = None,
    angles: str | os.PathLike[str] | Sequence[float] | None = None,
    angle_range: tuple[float, float] | None = None,
    pixel_size_nm: float | None = None,
    energy_ev: float | None = None,
    flat: str | os.PathLike[str] | None = None,
    dark: str | os.PathLike[str] | None = None,
    values: str = "auto",
    center_offset_px: tuple[float, float] = (0.0, 0.0),
    frames_per_chunk: int = 1,
    overwrite: bool = False,
    progress: bool | None = None,
    quiet: bool = True,
) -> Acquisition:
    """Read ``source`` and add it as scan ``scan`` to ``acquisition`` (created if absent).

    Parameters
    ----------
    source
        A TIFF/OME-TIFF file or folder, an MRC stack, an NXtomo file or a TXRM/XRM file.
    acquisition
        The acquisition dataset (``*.zarr``); a new one is created if it does not exist.
    scan
        ``"full"`` (sparse full field of view) or ``"roi"`` (dense interior scan).
    fmt
        ``tiff``, ``mrc``, ``nxtomo`` or ``txrm``; guessed from the suffix when None.
    angles
        An angle list file (one value per line, degrees) or the values; overrides the file's.
    angle_range
        ``(start, stop)`` degrees, evenly spaced with both ends included; used
        when neither ``angles`` nor the file gives angles.
    pixel_size_nm, energy_ev
        Override (or supply, where the file has none) the pixel size and energy.
    flat, dark
        Files of flat and dark frames (any supported format; averaged). They
        override flats and darks held in the source.
    values
        What the pixels are: ``intensity`` (counts: needs a flat), ``transmission``
        (I/I0), ``od`` (already optical depth), or ``auto`` (intensity if a flat
        is available, else transmission).
    center_offset_px
        ``(row, col)`` offset of the detector centre from the rotation axis (pixels).
    frames_per_chunk
        Frames read at once (memory is about this many frames, times a few).
    overwrite
        Replace the scan if the acquisition already has one of that name.
    """
    source = os.fspath(source)
    acquisition = os.fspath(acquisition)
    if scan not in SCAN_NAMES:
        raise ParameterError(f"unknown scan {scan!r} (choose from {', '.join(SCAN_NAMES)})")
    if values not in VALUES:
        raise ParameterError(f"--values: {values!r} is not one of {', '.join(VALUES)}")
    if frames_per_chunk < 1:
        raise ParameterError("frames per chunk must be at least 1")
    inputs = [source, flat, dark, angles if isinstance(angles, (str, os.PathLike)) else None]
    # fail before reading anything: an output that is no acquisition, an input, a scan there
    if check_output(acquisition, "acquisition", inputs=inputs, resume=True) and not overwrite:
        if scan in open_acquisition(acquisition, mode="r").scans:
            raise OutputExistsError(
                os.path.join(acquisition, scan),
                "scan already exists (use --overwrite to replace it)",
            )
    with open_source(source, fmt) as src:
        n, rows, cols = src.shape
        ang = check_angles(source, _angles(src, angles, angle_range), scan)
        pixel = _override(src.pixel_size_nm, pixel_size_nm, "pixel size", "nm", src, quiet)
        if pixel is None:
            raise InputError(source, "has no pixel size; give --pixel-size-nm")
        if not 0 < pixel <= MAX_PIXEL_NM:
            raise ParameterError(f"pixel size must be in (0, {MAX_PIXEL_NM:g}] nm, got {pixel}")
        energy = _override(src.energy_ev, energy_ev, "energy", "eV", src, quiet)
        flat_img = _field(flat, src.flat, (rows, cols), "flat")
        dark_img = _field(dark, src.dark, (rows, cols), "dark")
        mode = _mode(values, flat_img, dark_img, src)
        check_pixel_type(source, src.dtype, counts_ok=mode == "intensity")
        log(
            f"importing {source} ({src.format}, {n} frames of {rows}x{cols} {src.dtype}, "
            f"{mode}) as scan {scan!r} of {acquisition}",
            quiet,
        )
        with progress_bar(n, f"import {scan}", progress, unit="frame") as advance:
            data = _lazy_optical_depth(src, mode, flat_img, dark_img, frames_per_chunk, advance)
            scan_data = ScanData(
                data=data,
                angles_deg=ang,
                pixel_size_nm=pixel,
                energy_ev=energy,
                roi_center_px=tuple(float(v) for v in center_offset_px),
                extra={
                    "source": {
                        "path": os.path.abspath(source),
                        "format": src.format,
                        "values": mode,
                        "flat": None if flat is None else os.path.abspath(os.fspath(flat)),
                        "dark": None if dark is None else os.path.abspath(os.fspath(dark)),
                        "flat_from_source": flat is None and src.flat is not None,
                        **src.extra,
                    }
                },
            )
            # one frame at a time in this thread: readers share a file handle and
            # memory stays at a few frames
            with dask.config.set(scheduler="synchronous"):
                if is_acquisition(acquisition):
                    acq = add_scan(acquisition, scan, scan_data, overwrite, inputs)
                else:
                    acq = create_acquisition(acquisition, {scan: scan_data}, inputs=inputs)
    log(f"wrote scan {scan!r}: {n} projections, {pixel:g} nm pixels", quiet)
    return acq


def _angles(
    src: FrameSource,
    angles: str | os.PathLike[str] | Sequence[float] | None,
    angle_range: tuple[float, float] | None,
) -> np.ndarray:
    n = src.n_frames
    if angles is not None:
        if isinstance(angles, (str, os.PathLike)):
            where = os.fspath(angles)
            ang = read_angles_file(where)
        else:
            where = "--angles"
            ang = np.asarray(angles, float).reshape(-1)
    elif src.angles_deg is not None:
        where, ang = src.extra.get("angles_file") or src.path, np.asarray(src.angles_deg, float)
    elif angle_range is not None:
        start, stop = (float(v) for v in angle_range)
        return np.linspace(start, stop, n)
    else:
        raise InputError(
            src.path, "has no rotation angles; give --angles FILE or --angle-range START:STOP"
        )
    if ang.size != n:
        raise InputError(where, f"{ang.size} angles for {n} frames in {src.path}")
    if not np.all(np.isfinite(ang)):
        raise InputError(where, "angles contain NaN or inf")
    return ang


def _override(
    from_file: float | None,
    given: float | None,
    what: str,
    unit: str,
    src: FrameSource,
    quiet: bool,
) -> float | None:
    if given is None:
        return from_file
    if from_file is not None and not np.isclose(from_file, given):
        log(f"note: {src.path} says {what} {from_file:g} {unit}; using {given:g} {unit}", quiet)
    return float(given)


def _field(
    path: str | os.PathLike[str] | None,
    from_source: np.ndarray | None,
    shape: tuple[int, int],
    what: str,
) -> np.ndarray | None:
    if path is None:
        img = from_source
        where = f"{what} field in the source"
    else:
        where = os.fspath(path)
        with open_source(where) as s:
            img = s.mean()
    if img is None:
        return None
    if img.shape != shape:
        raise InputError(where, f"{what} field is {img.shape}, projections are {shape}")
    if not np.all(np.isfinite(img)):
        raise InputError(where, f"{what} field contains NaN or inf")
    return np.asarray(img, np.float32)


def _mode(values: str, flat: np.ndarray | None, dark: np.ndarray | None, src: FrameSource) -> str:
    if values == "auto":
        if flat is not None:
            return "intensity"
        if src.values == "intensity":
            raise InputError(
                src.path, "holds raw detector counts but no flat field; give --flat FILE"
            )
        return "transmission"
    if values == "intensity" and flat is None:
        raise InputError(src.path, "--values intensity needs a flat field; give --flat FILE")
    if values in ("transmission", "od") and (flat is not None or dark is not None):
        raise ParameterError(f"--values {values} takes no flat or dark field")
    return values


def to_optical_depth(
    frames: np.ndarray,
    mode: str,
    flat: np.ndarray | None = None,
    dark: np.ndarray | None = None,
) -> np.ndarray:
    """Convert frames to optical depth (float32).

    ``intensity``: ``-ln(clip((I - dark) / (flat - dark), EPS))``;
    ``transmission``: ``-ln(clip(I, EPS))``; ``od``: unchanged.
    """
    x = np.asarray(frames, dtype=np.float32)
    if mode == "od":
        return x
    if mode == "intensity":
        d = np.float32(0.0) if dark is None else dark
        x = (x - d) / np.maximum(flat - d, np.float32(EPS))
    return -np.log(np.maximum(x, np.float32(EPS)))


def _lazy_optical_depth(
    src: FrameSource,
    mode: str,
    flat: np.ndarray | None,
    dark: np.ndarray | None,
    per_chunk: int,
    advance: Any,
) -> da.Array:
    n, rows, cols = src.shape
    sizes = tuple(min(per_chunk, n - i) for i in range(0, n, per_chunk))

    def block(block_info: dict | None = None) -> np.ndarray:
        i0, i1 = block_info[None]["array-location"][0]
        raw = src.read(i0, i1)
        check_finite(src.path, raw, i0)
        if mode == "transmission":
            med = float(np.median(raw))
            if med > MAX_TRANSMISSION_MEDIAN:
                raise InputError(
                    src.path,
                    f"frame {i0} has median {med:.4g}, not a transmission (0..1); give "
                    "--flat/--dark for raw counts, or --values od for optical depth",
                )
        out = to_optical_depth(raw, mode, flat, dark)
        advance(i1 - i0)
        return out

    return da.map_blocks(
        block,
        chunks=(sizes, (rows,), (cols,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
