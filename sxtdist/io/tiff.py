"""TIFF and OME-TIFF projection stacks (tifffile): one multi-page file or a folder of frames.

TIFF has no standard place for rotation angles, so they come from ``--angles``
or ``--angle-range``, or, for a folder of one file per angle, from the file
names (``--angles-from-names``: a regular expression whose first group, or the
group named ``angle``, is the angle in degrees; files that do not match, such as
flats and darks in the same folder, are left out). The pixel size is taken from
OME-XML (``PhysicalSizeX``) or from ImageJ's calibration (``XResolution`` with
the ``unit`` in ImageJ's description) when the file has one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import tifffile
import zarr

from ..errors import InputError, ParameterError, keyword, one_line
from .source import (
    CODECS_INSTALL,
    FrameSource,
    check_dtype,
    check_shape,
    decimal_comma,
    number,
    second_column,
    square_pixel,
)

SUFFIXES = (".tif", ".tiff")

#: Length units as written by OME, ImageJ and people, in nanometres.
UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "meters": 1e9,
    "metres": 1e9,
    "nanometers": 1.0,
    "nanometres": 1.0,
    "micrometers": 1e3,
    "micrometres": 1e3,
    "å": 0.1,
    "a": 0.1,
    "angstrom": 0.1,
}


logger = logging.getLogger(__name__)


class _TifffileWatch(logging.Filter):
    """A filter on the ``tifffile`` logger (added once): what tifffile logs while a read
    inside :func:`_refuse_damage` runs is taken by that read instead of shown.

    No switch of the shared logger is flipped, so reads in several threads do not
    undo each other. A record goes to the read running in the thread that logged it;
    one from a thread with no read of its own (tifffile decodes segments in a pool)
    goes to every read running then.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._reads: dict[int, list[logging.LogRecord]] = {}

    @contextmanager
    def taking(self) -> Iterator[list[logging.LogRecord]]:
        """The records logged while the block runs (a list, filled as they come)."""
        me, taken = threading.get_ident(), []
        with self._lock:
            outer = self._reads.get(me)
            self._reads[me] = taken
        try:
            yield taken
        finally:
            with self._lock:
                if outer is None:
                    del self._reads[me]
                else:
                    self._reads[me] = outer

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            own = self._reads.get(record.thread)
            reads = [own] if own is not None else list(self._reads.values())
        for taken in reads:
            taken.append(record)
        return not reads


_WATCH = _TifffileWatch()
logging.getLogger("tifffile").addFilter(_WATCH)


@contextmanager
def _refuse_damage(path: str, what: str) -> Iterator[None]:
    """Turn what tifffile only logs about missing pixels into an :class:`InputError`
    naming ``path`` and ``what`` was read.

    tifffile logs at ERROR when "the returned image data may be wrong or incomplete"
    (a truncated file's missing pages, strips padded with zeros) and at WARNING when
    the file is non-conforming but its pixels are believed correct (invalid ImageJ or
    vendor metadata): only the first refuse the file; the others go to the debug log.
    """
    with _WATCH.taking() as taken:
        yield
    for record in taken:
        if record.levelno < logging.ERROR:
            logger.debug("%s: tifffile: %s", path, record.getMessage())
    damage = [r.getMessage() for r in taken if r.levelno >= logging.ERROR]
    if damage:
        first = damage[0].split("> ", 1)[-1]
        raise InputError(
            path,
            f"truncated or damaged TIFF: {what} cannot be read whole ({first}; "
            f"the file has {os.path.getsize(path)} bytes)",
        )


def _inspect(path: str, tif: tifffile.TiffFile) -> tuple[tuple[int, int, int], np.dtype, object]:
    """Shape, pixel type and a frame-by-frame zarr view of the file's one image series."""
    series = tif.series
    if not series:
        raise InputError(path, "holds no images")
    if len(series) > 1:
        shapes = ", ".join(str(tuple(s.shape)) for s in series[:3])
        raise InputError(
            path,
            f"holds images of mixed shapes ({shapes}); all projections must have one shape",
        )
    s = series[0]
    if "S" in s.axes and not _frames_as_planes(tif, s):  # samples per pixel: RGB(A)
        raise InputError(path, f"is a colour image (axes {s.axes}); projections must be grayscale")
    shape = check_shape(path, tuple(s.shape))
    dtype = check_dtype(path, s.dtype)
    if s.pages and s.pages[0] is not None:
        _check_codec(path, s.pages[0])
    _check_extent(path, s, shape, dtype)
    len(s.pages)  # every page's header, now: a broken page list is a truncated file
    # tifffile's zarr view reads one frame per chunk whatever the layout
    # (pages, contiguous ImageJ data beyond 4 GB, OME); never the whole stack
    return shape, dtype, zarr.open_array(s.aszarr(), mode="r")


def _check_codec(path: str, page: tifffile.TiffPage) -> None:
    """Refuse, before anything is written, a compression tifffile cannot decode here (LZW,
    JPEG and others need the ``imagecodecs`` package; deflate and none do not)."""
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]
    except KeyError:
        name = getattr(page.compression, "name", str(page.compression))
        raise InputError(
            path,
            f"is compressed with {name}, which needs the imagecodecs package to be read: "
            f"{CODECS_INSTALL} (or pip install imagecodecs)",
        ) from None


def _frames_as_planes(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> bool:
    """A stack of 3 or 4 frames that tifffile wrote as one RGB(A) page of separate planes.

    ``tifffile.imwrite(path, stack)`` stores an array of shape ``(3, rows, cols)`` or
    ``(4, rows, cols)`` (three flats, four darks) as planar colour unless told
    ``photometric="minisblack"``, with its own description of the shape: its planes are
    the frames written.
    """
    page = series.pages[0] if series.pages else None
    return (
        series.axes == "SYX"
        and len(series.pages) == 1
        and page is not None
        and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
        and tif.is_shaped
    )


def _check_extent(path: str, series: object, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a contiguous stack whose data run past the end of the file (truncated)."""
    offset = getattr(series, "dataoffset", None)
    if offset is None:  # not contiguous: pages are checked as they are read
        return
    frame_bytes = int(np.prod(shape[1:])) * dtype.itemsize
    size = os.path.getsize(path)
    if offset + shape[0] * frame_bytes > size:
        first = max(0, size - offset) // frame_bytes
        raise InputError(
            path,
            f"truncated: frame {first} of {shape[0]} ends past the end of the file ({size} bytes)",
        )


def open_tiff(path: str | os.PathLike[str], angles_from_names: str | None = None) -> FrameSource:
    """Open a multi-page TIFF/OME-TIFF, or a folder of single-frame TIFFs, as a stack.

    Parameters
    ----------
    path
        The file, or a folder of one file per projection (natural sort order of the names).
    angles_from_names
        For a folder: a regular expression matched against each file name (``re.search``);
        its group ``angle`` (or its first group) is the angle in degrees. Files that do not
        match are not projections and are skipped.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _open_folder(path, angles_from_names)
    if angles_from_names is not None:
        raise InputError(
            path, f"{keyword('angles_from_names')} needs a folder of one TIFF file per angle"
        )
    tif = None
    try:
        # tifffile reads pages lazily: the whole inspection is watched for damage
        with _refuse_damage(path, "its page list"):
            tif = tifffile.TiffFile(path)
            shape, dtype, frames = _inspect(path, tif)
            pixel = pixel_size_nm(tif)
    except BaseException as exc:
        if tif is not None:
            tif.close()
        if isinstance(exc, FileNotFoundError):
            raise InputError(path, "no such file") from None
        if isinstance(exc, Exception) and not isinstance(exc, InputError):
            raise InputError(path, f"not a readable TIFF file ({one_line(exc)})") from exc
        raise

    def reader(i0: int, i1: int) -> np.ndarray:
        with _refuse_damage(path, f"frames {i0}..{i1 - 1}"):
            out = frames[i0:i1] if len(frames.shape) == 3 else frames[:]
        return np.asarray(out).reshape(i1 - i0, *shape[1:])

    return FrameSource(
        path=path,
        format="tiff",
        shape=shape,
        dtype=dtype,
        reader=reader,
        pixel_size_nm=pixel,
        extra={"ome": bool(tif.is_ome), "imagej": bool(tif.is_imagej)},
        closer=tif.close,
    )


def _open_folder(path: str, angles_from_names: str | None) -> FrameSource:
    files = sorted(
        (f for f in os.listdir(path) if f.lower().endswith(SUFFIXES) and not f.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise InputError(path, "folder holds no .tif/.tiff files")
    angles = None
    numbering = None
    if angles_from_names is not None:
        files, angles = angles_in_names(path, files, angles_from_names)
    else:  # judged where angles are given by position (io.importer)
        numbering = odd_numbering(files)
    files = [os.path.join(path, f) for f in files]
    shape0 = None
    dtype = None
    pixel = None
    for f in files:  # headers only: check every frame before importing anything
        try:
            with tifffile.TiffFile(f) as tif:
                page = tif.pages[0]
                shp, dt = tuple(page.shape), page.dtype
                # only the first frame of each file is read: a stack here would lose the rest
                frames = tif.series[0].shape if tif.series else shp
                if shape0 is None:
                    pixel = pixel_size_nm(tif)
        except Exception as exc:
            raise InputError(f, f"not a readable TIFF file ({one_line(exc)})") from exc
        _check_codec(f, page)
        if len(shp) != 2 or page.samplesperpixel != 1:
            raise InputError(f, f"is not a single grayscale frame (shape {shp})")
        if len(frames) > 2:
            raise InputError(
                f,
                f"holds {int(np.prod(frames[:-2]))} frames (shape {tuple(frames)}), but a folder "
                "is read as one frame per file: import the stack file itself, or keep only "
                "single-frame files in the folder",
            )
        if shape0 is None:
            shape0, dtype = shp, check_dtype(f, dt)
        elif shp != shape0:
            raise InputError(
                f, f"has shape {shp} but {os.path.basename(files[0])} has {shape0} (mixed shapes)"
            )
        elif dt != dtype:  # a frame saved again after processing: its values mean another thing
            raise InputError(
                f,
                f"has pixels of {dt} but {os.path.basename(files[0])} has {dtype} (mixed pixel "
                "types: a processed or converted file among the raw ones?); keep one kind",
            )

    def read(i: int) -> np.ndarray:
        with _refuse_damage(files[i], f"frame {i}"):
            return tifffile.imread(files[i], key=0)

    def reader(i0: int, i1: int) -> np.ndarray:
        return np.stack([read(i) for i in range(i0, i1)])

    return FrameSource(
        path=path,
        format="tiff",
        shape=(len(files), *shape0),
        dtype=dtype,
        reader=reader,
        angles_deg=angles,
        pixel_size_nm=pixel,
        extra={"files": len(files), "angles_from_names": angles_from_names, "numbering": numbering},
    )


def angles_in_names(folder: str, names: list[str], pattern: str) -> tuple[list[str], np.ndarray]:
    """The names that match ``pattern`` and the angle (degrees) each one gives.

    The angle is the group named ``angle`` or else the first group of the match.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ParameterError(
            f"{keyword('angles_from_names')}: {pattern!r} is not a regular expression ({exc})"
        ) from None
    if rx.groups == 0:
        raise ParameterError(
            f"{keyword('angles_from_names')}: {pattern!r} has no group (...) around the angle"
        )
    group = "angle" if "angle" in rx.groupindex else 1
    kept, texts, angles = [], [], []
    for name in names:
        m = rx.search(name)
        if m is None:
            continue
        text = m.group(group)
        try:  # one decimal comma ('img_-60,5.tif', a European locale's) is a decimal point
            angles.append(number(text))
        except (TypeError, ValueError):
            raise InputError(
                os.path.join(folder, name),
                f"{keyword('angles_from_names')}: {text!r} in the name is not a number",
            ) from None
        kept.append(name)
        texts.append(text)
    if not kept:
        raise InputError(folder, f"no file name matches {keyword('angles_from_names')} {pattern!r}")
    if all(decimal_comma(t) for t in texts):  # 'img_-60,2.tif' ...: an index or exposure after?
        second_column(folder, texts, "file name's angle", "rename the files with a decimal point")
    return kept, np.asarray(angles, float)


def pixel_size_nm(tif: tifffile.TiffFile) -> float | None:
    """The pixel size (nm) from OME-XML or ImageJ calibration, or ``None``."""
    try:
        if tif.is_ome and tif.ome_metadata:
            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and el.get("PhysicalSizeX"):
                    unit = el.get("PhysicalSizeXUnit", "µm")
                    width = _to_nm(float(el.get("PhysicalSizeX")), unit)
                    tall = el.get("PhysicalSizeY")
                    unit_y = el.get("PhysicalSizeYUnit", "µm")
                    height = _to_nm(float(tall), unit_y) if tall else None
                    return square_pixel(tif.filehandle.path, width, height)
        if tif.is_imagej:
            unit = (tif.imagej_metadata or {}).get("unit")
            tag = tif.pages[0].tags.get("XResolution")
            if unit and tag is not None:
                num, den = tag.value
                if num > 0:
                    return _to_nm(den / num, unit)
    except (ValueError, ET.ParseError, TypeError, ZeroDivisionError):
        return None
    return None


def _to_nm(value: float, unit: str) -> float | None:
    factor = UNIT_NM.get(str(unit).strip().lower())
    if factor is None or not np.isfinite(value) or value <= 0:
        return None
    return float(value) * factor


#: A number in a file name, with any sign or decimals before and after it.
_NUMBER = re.compile(r"([-+])?(\d+)(\.\d+)?")


def _numbers(name: str) -> tuple[str, list[float], list[int]]:
    """A frame file's name read once: its pattern (lower case, numbers as ``#``, the
    ``.tif``/``.tiff`` suffix in any spelling left out), its numbers read with their sign
    and decimals, and its runs of digits. A sign is one only where it follows no letter
    or digit (``img_-60``, not ``proj-0001``)."""
    stem = name.lower()
    stem = stem[: stem.rindex(".")] if stem.endswith(SUFFIXES) else stem
    values, runs = [], []
    for m in _NUMBER.finditer(stem):
        sign, whole, frac = m.groups()
        if sign and re.match(r"[0-9a-z]", stem[m.start() - 1 : m.start()]):
            sign = ""
        values.append(float(f"{sign or ''}{whole}{frac or ''}"))
        runs += [int(whole), *([int(frac[1:])] if frac else [])]
    return _NUMBER.sub("#", stem), values, runs


def odd_numbering(files: list[str]) -> tuple[str, str] | None:
    """``(kind, what)`` when a folder's frames are not one numbered series, else ``None``.

    ``kind`` is ``"pattern"`` for names of another pattern (a flat or dark frame among the
    projections), ``"clash"`` for two names that differ only in the suffix's spelling
    (``p_2.TIF``, ``p_2.tiff``: one view twice), ``"order"`` for names whose number, read
    with its sign and decimals, is not in name order (``img_-10.tif`` sorts before
    ``img_-60.tif``; ``img_+10.0`` before ``img_-60.0``; ``proj-0001``'s dash is no sign)
    and ``"gaps"`` for gaps in the numbering (views missing). Every file is read as a
    projection in name order, so angles given by position go wrong. ``.tif``, ``.TIF``,
    ``.tiff`` and ``.TIFF`` are one suffix.
    """
    read = [_numbers(f) for f in files]
    patterns: dict[str, list[str]] = {}
    for f, (pattern, _, _) in zip(files, read):
        patterns.setdefault(pattern, []).append(f)
    if len(patterns) > 1:
        main = max(patterns.values(), key=len)
        others = sorted(f for f in files if f not in main)
        return "pattern", f"names of another pattern than {main[0]} ({', '.join(others[:3])})"
    seen: dict[tuple[float, ...], str] = {}
    for f, (_, values, _) in zip(files, read):
        if tuple(values) in seen:
            return "clash", f"{seen[tuple(values)]} and {f} number the same view: keep one of them"
        seen[tuple(values)] = f
    signed = [values for _, values, _ in read]
    vary = [k for k in range(min(map(len, signed))) if len({s[k] for s in signed}) > 1]
    if vary:  # judged by the order, not the look: an elapsed time in decimals is fine
        values = [s[vary[0]] for s in signed]
        back = next((k for k in range(len(values) - 1) if values[k + 1] < values[k]), None)
        if back is not None:
            return "order", (
                f"the files' names are not in the order of their numbers ({files[back]} comes "
                f"before {files[back + 1]})"
            )
    runs = [r for _, _, r in read]
    # the number that counts the views: the first that is not the same in every name
    varying = [k for k in range(min(map(len, runs))) if len({r[k] for r in runs}) > 1]
    numbers = {r[varying[0]] for r in runs} if varying else set()
    missing = sorted(set(range(min(numbers), max(numbers) + 1)) - numbers) if numbers else []
    if not missing:
        return None
    return "gaps", f"gaps in the numbering (no {', '.join(map(str, missing[:5]))})"


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]
