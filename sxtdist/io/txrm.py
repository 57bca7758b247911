"""Zeiss/Xradia ``.txrm`` tilt series and ``.xrm`` single images (OLE compound files).

Streams read (names as Xradia writes them; OLE names are case-insensitive):

- ``ImageInfo/ImagesTaken`` (the images acquired; ``NoOfImages``, the images planned,
  where it is absent: a scan stopped early has fewer taken), ``ImageWidth``, ``ImageHeight``
  (uint32) and ``DataType`` (5: uint16, 10: float32);
- ``ImageInfo/Angles`` (float32 per image, degrees), ``ImageInfo/PixelSize``
  (float32, µm), ``ImageInfo/Energy`` (float32 per image, eV), ``ImageInfo/ExpTimes``
  (float32 per image, seconds; the median is kept);
- ``ImageData{k}/Image{i}``: image ``i`` (1-based) in folder ``k = ceil(i/100)``;
- ``ReferenceData/Image``: the flat field (reference) when the file carries one,
  with its own ``ReferenceData/DataType``; ``ReferenceData/ExpTime`` (seconds) its
  exposure, when the reference was taken with another exposure than the images: it
  is scaled by their ratio (the median image exposure over the reference's), as
  Diamond's ``txrm2tiff`` does, so that ``I / flat`` is a transmission.

The raw images are detector counts; with a reference they are flat-field
corrected on import.
"""

from __future__ import annotations

import logging
import math
import os
import warnings

import numpy as np
import olefile

from ..errors import InputError, SxtdistWarning, keyword, one_line
from .source import FrameSource, check_shape

logger = logging.getLogger(__name__)

SUFFIXES = (".txrm", ".xrm")
DATA_TYPES = {5: np.dtype("<u2"), 10: np.dtype("<f4")}


def image_stream(i: int) -> str:
    """The stream name of image ``i`` (0-based)."""
    return f"ImageData{math.ceil((i + 1) / 100)}/Image{i + 1}"


def _angles(
    path: str, angles: np.ndarray | None, n: int
) -> tuple[np.ndarray | None, InputError | None]:
    """The first ``n`` of ``ImageInfo/Angles``, or none: all equal or not finite (Xradia
    writes zeros where no angle was recorded: a mosaic, a single-angle series) is no tilt
    series, so ``--angle-range`` applies; fewer values than images is an error that
    ``--angles`` replaces (:attr:`FrameSource.angles_error`)."""
    if angles is None:
        return None, None
    if angles.size < n:
        return None, InputError(
            path,
            f"ImageInfo/Angles has {angles.size} values for {n} images: which angle is whose is "
            f"not known; give {keyword('angles')}",
        )
    angles = angles[:n]
    if n > 1 and (not np.all(np.isfinite(angles)) or np.ptp(angles) == 0):
        logger.info(
            "%s: ImageInfo/Angles holds no tilt series (%s): not used",
            path,
            "not all finite" if not np.all(np.isfinite(angles)) else f"all {angles[0]:g}",
        )
        return None, None
    return angles, None


def open_txrm(path: str | os.PathLike[str]) -> FrameSource:
    """Open a TXRM/XRM file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    if not olefile.isOleFile(path):
        raise InputError(path, "not an OLE compound file (not a TXRM/XRM file)")
    try:
        ole = olefile.OleFileIO(path)
    except Exception as exc:
        raise InputError(path, f"damaged OLE compound file ({one_line(exc)})") from exc
    try:
        return _open(path, ole)
    except BaseException:
        ole.close()
        raise


class _Streams:
    """Typed reads of an OLE file's streams; a damaged stream is one line naming it."""

    def __init__(self, path: str, ole: olefile.OleFileIO) -> None:
        self.path, self.ole = path, ole

    def bytes(self, name: str) -> bytes | None:
        if not self.ole.exists(name):
            return None
        try:
            return self.ole.openstream(name).read()
        except Exception as exc:
            raise InputError(self.path, f"stream {name} is damaged ({one_line(exc)})") from exc

    def int(self, name: str) -> int | None:
        b = self.bytes(name)
        return None if b is None or len(b) < 4 else int(np.frombuffer(b[:4], "<u4")[0])

    def floats(self, name: str) -> np.ndarray | None:
        b = self.bytes(name)
        return None if b is None else np.frombuffer(b[: len(b) // 4 * 4], "<f4").astype(float)

    def positive(self, name: str, n: int) -> np.ndarray | None:
        """The first ``n`` values of a per-image stream, if all are positive."""
        v = self.floats(name)
        return v[:n] if v is not None and v.size and np.all(v[:n] > 0) else None

    def image(self, name: str, dt: np.dtype, shape: tuple[int, int]) -> np.ndarray:
        b = self.bytes(name)
        need = shape[0] * shape[1] * dt.itemsize
        if b is None or len(b) < need:
            have = 0 if b is None else len(b)
            raise InputError(self.path, f"{name} has {have} bytes, {need} expected (truncated?)")
        return np.frombuffer(b[:need], dt).reshape(shape)


def _exposure_matched(
    path: str, st: _Streams, flat: np.ndarray, exposure: np.ndarray | None
) -> tuple[np.ndarray, float]:
    """The reference scaled to the images' exposure, and the factor (1 where either is unknown).

    Counts grow with the exposure: a reference of 2 s under images of 1 s, used as it is,
    would add ln 2 to every optical depth.
    """
    ref = st.positive("ReferenceData/ExpTime", 1)
    if ref is None or exposure is None:
        return flat, 1.0
    image = float(np.median(exposure))
    if np.ptp(exposure) > 0.01 * image:
        logger.info(
            "%s: the images' exposures run from %g to %g s; the reference (%g s) is scaled to "
            "their median, %g s",
            path,
            exposure.min(),
            exposure.max(),
            ref[0],
            image,
        )
    factor = image / float(ref[0])
    return (flat * np.float32(factor) if factor != 1.0 else flat), factor


#: Float images whose median is at most this, under a reference this many times brighter,
#: were divided by it already (XMController saves referenced images as float32).
REFERENCED_MEDIAN, REFERENCED_RATIO = 2.0, 10.0


def _already_referenced(
    path: str, st: _Streams, flat: np.ndarray, dtype: np.dtype, shape: tuple[int, int]
) -> bool:
    """Whether float images are transmissions already (dividing them again would put every
    optical depth near ln of the reference's counts); a warning says so."""
    image = float(np.median(st.image(image_stream(0), dtype, shape)))
    ref = float(np.median(flat))
    if not (0 < image <= REFERENCED_MEDIAN and ref > REFERENCED_RATIO * image):
        return False
    warnings.warn(
        f"{path}: its float images (median {image:.3g}) are already divided by its reference "
        f"(median {ref:.4g}): read as transmission (give --flat to divide them by another)",
        SxtdistWarning,
        stacklevel=4,
    )
    return True


def _open(path: str, ole: olefile.OleFileIO) -> FrameSource:
    st = _Streams(path, ole)
    planned, taken = st.int("ImageInfo/NoOfImages"), st.int("ImageInfo/ImagesTaken")
    n = taken or planned
    if taken and planned and taken < planned:  # stopped early: the images taken are the scan
        warnings.warn(
            f"{path}: the acquisition stopped after {taken} of {planned} planned images "
            "(ImageInfo/ImagesTaken); the images taken are imported",
            SxtdistWarning,
            stacklevel=3,
        )
    width, height = st.int("ImageInfo/ImageWidth"), st.int("ImageInfo/ImageHeight")
    if not n or not width or not height:
        raise InputError(
            path, "lacks ImageInfo/NoOfImages, ImageWidth or ImageHeight (not a TXRM/XRM file?)"
        )
    code = st.int("ImageInfo/DataType")
    if code not in DATA_TYPES:
        raise InputError(path, f"image data type {code} is not supported (5: uint16, 10: float32)")
    dtype = DATA_TYPES[code]
    shape = check_shape(path, (n, height, width))
    missing = [image_stream(i) for i in range(n) if not ole.exists(image_stream(i))]
    if missing:
        raise InputError(
            path, f"{len(missing)} of {n} images are missing (first: {missing[0]}); truncated?"
        )
    angles, angles_error = _angles(path, st.floats("ImageInfo/Angles"), n)
    pixel = st.positive("ImageInfo/PixelSize", 1)  # µm
    energy = st.positive("ImageInfo/Energy", n)  # eV per image
    exposure = st.positive("ImageInfo/ExpTimes", n)  # s per image
    flat, extra = None, {"xradia_data_type": code}
    if ole.exists("ReferenceData/Image"):
        ref_dt = DATA_TYPES.get(st.int("ReferenceData/DataType"), np.dtype("<f4"))
        flat = st.image("ReferenceData/Image", ref_dt, (height, width)).astype(np.float32)
        flat, extra["reference_scaled_by"] = _exposure_matched(path, st, flat, exposure)
        if dtype.kind == "f" and _already_referenced(path, st, flat, dtype, (height, width)):
            flat, extra["reference_applied"] = None, True

    def reader(i0: int, i1: int) -> np.ndarray:
        return np.stack([st.image(image_stream(i), dtype, (height, width)) for i in range(i0, i1)])

    return FrameSource(
        path=path,
        format="txrm",
        shape=shape,
        dtype=dtype,
        reader=reader,
        angles_deg=angles,
        angles_error=angles_error,
        pixel_size_nm=None if pixel is None else float(pixel[0]) * 1e3,
        energy_ev=None if energy is None else float(np.mean(energy)),
        exposure_s=None if exposure is None else float(np.median(exposure)),
        flat=flat,
        values=None if extra.get("reference_applied") else "intensity",
        extra=extra,
        closer=ole.close,
    )
