"""Import a projection stack from a beamline format into an acquisition, as one scan.

The stack is read frame by frame (a lazy dask array over the reader), converted
to optical depth and written one projection per shard, so memory stays at a few
frames whatever the size of the file. Flat/dark correction::

    OD = -ln( clip((I - dark) / (flat - dark), EPS) )

with darks averaged, and flats averaged, or, where the source holds flats taken in
sets at several points of the scan, interpolated per projection in frame index
between the sets before and after it (:class:`~sxtdist.io.source.FlatSeries`). The scan is added to a new acquisition (written
whole or not at all) or to an existing one (written beside it and renamed into
place), see :func:`sxtdist.dataset.add_scan`.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._progress import progress_bar
from ..dataset import (
    SCAN_NAMES,
    Acquisition,
    ScanData,
    add_scan,
    create_acquisition,
    open_acquisition,
)
from ..errors import (
    InputError,
    OutputExistsError,
    ParameterError,
    SxtdistWarning,
    keyword,
    no_such_file,
    use_overwrite,
)
from ..outputs import check_output, recognise
from . import mrc, nxtomo, tiff, txrm
from .checks import check_finite, check_pixel_type
from .imod import xf_alignment
from .metadata import ScanPhysics, check_axis_tilt, check_center_offset, physics_option
from .source import FlatSeries, FrameSource, read_angles_file

logger = logging.getLogger(__name__)

#: Transmission is clipped to this before the log (dead pixels, zero counts).
EPS = 1e-6
#: A frame whose median exceeds this is not a transmission image (raw counts?).
MAX_TRANSMISSION_MEDIAN = 2.0
#: The share of a scan's pixels clipped at :data:`EPS` (no transmission) above which the
#: import warns (a dark subtracted twice, dead pixels): each becomes a spike of OD 13.8.
CLIPPED_WARN_SHARE = 1e-3
VALUES = ("auto", "intensity", "transmission", "od")
READERS = {
    "tiff": tiff.open_tiff,
    "mrc": mrc.open_mrc,
    "nxtomo": nxtomo.open_nxtomo,
    "txrm": txrm.open_txrm,
}


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
        f"Xradia .txrm/.xrm); name it with {keyword('fmt', '--format')}",
    )


#: Import options that only one reader understands: option -> format.
READER_ONLY = {
    "data_path": "nxtomo",
    "angles_path": "nxtomo",
    "image_key_path": "nxtomo",
    "flat_data_path": "nxtomo",
    "dark_data_path": "nxtomo",
    "angles_from_names": "tiff",
}


@dataclass(frozen=True)
class ImportOptions:
    """How to read a projection stack and what to state about it.

    Parameters
    ----------
    fmt
        ``tiff``, ``mrc``, ``nxtomo`` or ``txrm``; guessed from the suffix when None.
    data_path, angles_path, image_key_path
        NXtomo: where the frames, angles and ``image_key`` are, when not where the
        definition (or the search in :mod:`sxtdist.io.nxtomo`) puts them.
    angles
        An angle list file (one value per line, degrees; IMOD ``.tlt``) or the values;
        overrides the file's.
    angle_range
        ``(start, stop)`` degrees, evenly spaced with both ends included; used when
        neither ``angles`` nor the file gives angles.
    angles_from_names
        A folder of TIFFs: a regular expression whose first group (or group ``angle``)
        in each file name is its angle in degrees; files that do not match are skipped.
    flat, dark
        Files of flat and dark frames (any supported format; averaged). They override
        flats and darks held in the source. An HDF5 file of flats (darks) gives its
        frames keyed 1 (2), or all of them.
    flat_data_path, dark_data_path
        Where the frames are in those HDF5 files (default: ``data_path``, else searched).
    crop_rows, crop_cols
        ``(start, stop)`` pixels of each frame to keep (flats and darks alike).
    values
        What the pixels are: ``intensity`` (counts: needs a flat), ``transmission``
        (I/I0), ``od`` (already optical depth), or ``auto`` (intensity if a flat is
        available, else transmission).
    physics
        Pixel size, energy, zone plate, dose, exposure: given values override the
        file's (:class:`~sxtdist.io.metadata.ScanPhysics`).
    center_offset_px
        ``(row, col)`` offset of the detector centre from the rotation axis, in pixels
        of the frame as the file holds it (a crop moves it accordingly).
    axis_tilt_deg
        In-plane tilt of the rotation axis on the detector, when known
        (:mod:`sxtdist.geometry`).
    xf
        An IMOD ``.xf`` alignment of the stack: its shifts and axis tilt are stored, the
        scan marked aligned (:mod:`sxtdist.io.imod`).
    frames_per_chunk
        Frames read at once (memory is about this many frames, times a few).
    """

    fmt: str | None = None
    data_path: str | None = None
    angles_path: str | None = None
    image_key_path: str | None = None
    angles: str | os.PathLike[str] | Sequence[float] | None = None
    angle_range: tuple[float, float] | None = None
    angles_from_names: str | None = None
    flat: str | os.PathLike[str] | None = None
    dark: str | os.PathLike[str] | None = None
    flat_data_path: str | None = None
    dark_data_path: str | None = None
    crop_rows: tuple[int, int] | None = None
    crop_cols: tuple[int, int] | None = None
    values: str = "auto"
    physics: ScanPhysics = field(default_factory=ScanPhysics)
    center_offset_px: tuple[float, float] = (0.0, 0.0)
    axis_tilt_deg: float = 0.0
    xf: str | os.PathLike[str] | None = None
    frames_per_chunk: int = 1

    def __post_init__(self) -> None:
        if self.fmt is not None and self.fmt not in READERS:
            raise ParameterError(
                f"{keyword('fmt', '--format')}: unknown format {self.fmt!r} "
                f"(choose from {', '.join(READERS)})"
            )
        if self.values not in VALUES:
            raise ParameterError(
                f"{keyword('values')}: {self.values!r} is not one of {', '.join(VALUES)}"
            )
        if self.frames_per_chunk < 1:
            raise ParameterError("frames per chunk must be at least 1")
        object.__setattr__(
            self, "center_offset_px", tuple(check_center_offset(self.center_offset_px))
        )
        object.__setattr__(self, "axis_tilt_deg", check_axis_tilt(self.axis_tilt_deg))
        if self.xf is not None and self.axis_tilt_deg:
            raise ParameterError(
                f"give {keyword('axis_tilt_deg')} or {keyword('xf')} (which has the tilt), not both"
            )

    def check_format(self, fmt: str) -> None:
        """Refuse options the reader ``fmt`` does not use (a silently ignored path would mislead)."""
        for name, only in READER_ONLY.items():
            if getattr(self, name) is not None and fmt != only:
                raise ParameterError(f"{keyword(name)} applies to {only} sources, not {fmt}")


def open_source(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    options: ImportOptions | None = None,
    frames: str = "projections",
) -> FrameSource:
    """Open a projection stack with the reader for ``fmt`` (guessed from the suffix if None).

    ``frames`` is ``"flats"`` or ``"darks"`` when the file holds those (HDF5 files
    then give their frames of that ``image_key``); other formats give all frames.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, no_such_file(path))
    fmt = fmt or guess_format(path)
    if fmt not in READERS:
        raise ParameterError(
            f"{keyword('fmt', '--format')}: unknown format {fmt!r} (choose from {', '.join(READERS)})"
        )
    o = options or ImportOptions()
    if fmt == "nxtomo":
        layout = nxtomo.HdfLayout(o.data_path, o.angles_path, o.image_key_path)
        if frames != "projections":  # a file of flats or darks: its own paths, keys searched
            own = o.flat_data_path if frames == "flats" else o.dark_data_path
            option = keyword("flat_data_path" if frames == "flats" else "dark_data_path")
            layout = nxtomo.HdfLayout(
                own or o.data_path,
                data_option=option
                if own
                else f"{keyword('data_path')}; give {option} for this file",
            )
        return nxtomo.open_nxtomo(path, layout, frames)
    if fmt == "tiff" and frames == "projections":
        return tiff.open_tiff(path, o.angles_from_names)
    return READERS[fmt](path)


def import_scan(
    source: str | os.PathLike[str],
    acquisition: str | os.PathLike[str],
    scan: str = "roi",
    options: ImportOptions | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    **option_fields: Any,
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
    options
        How to read it and what to state (:class:`ImportOptions`).
    overwrite
        Replace the scan if the acquisition already has one of that name.
    option_fields
        :class:`ImportOptions` fields given one by one (``pixel_size_nm=40``,
        ``flat="flat.tif"``); the physics fields (``pixel_size_nm``, ``energy_ev``,
        ``zone_plate_ozw_nm``, ``photons_per_pixel``, ``exposure_s``) go into its
        ``physics``. Not together with ``options``.
    """
    source = os.fspath(source)
    acquisition = os.fspath(acquisition)
    opts = _options(options, option_fields)
    if scan not in SCAN_NAMES:
        raise ParameterError(f"unknown scan {scan!r} (choose from {', '.join(SCAN_NAMES)})")
    # fail before reading anything: an output that is no acquisition, an input, a scan there
    if check_output(acquisition, "acquisition", inputs=_inputs(source, opts), resume=True):
        if not overwrite and scan in open_acquisition(acquisition, mode="r").scans:
            raise OutputExistsError(
                os.path.join(acquisition, scan),
                f"scan already exists ({use_overwrite()})",
            )
    if os.path.exists(source):
        opts.check_format(opts.fmt or guess_format(source))
    with open_source(source, opts.fmt, opts) as opened:
        src = opened.cropped(opts.crop_rows, opts.crop_cols)
        with src:
            return _import_open(src, acquisition, scan, opts, overwrite, progress)


def _inputs(source: str, opts: ImportOptions) -> list[str | os.PathLike[str] | None]:
    """The files an import reads: the acquisition written may be none of them."""
    angles = opts.angles if isinstance(opts.angles, (str, os.PathLike)) else None
    return [source, opts.flat, opts.dark, angles, opts.xf]


def _options(options: ImportOptions | None, given: dict[str, Any]) -> ImportOptions:
    if options is not None:
        if given:
            raise ParameterError("give either an ImportOptions or its fields, not both")
        return options
    physics_names = {f.name for f in fields(ScanPhysics)}
    known = {f.name for f in fields(ImportOptions)} | physics_names
    unknown = set(given) - known
    if unknown:
        raise ParameterError(f"unknown import option(s): {', '.join(sorted(unknown))}")
    physics = ScanPhysics(**{k: v for k, v in given.items() if k in physics_names})
    rest = {k: v for k, v in given.items() if k not in physics_names}
    return ImportOptions(physics=physics, **rest)


def _import_open(
    src: FrameSource,
    acquisition: str,
    scan: str,
    opts: ImportOptions,
    overwrite: bool,
    progress: bool | None,
) -> Acquisition:
    """Convert and write an opened (and cropped) source; see :func:`import_scan`."""
    source = src.path
    n, rows, cols = src.shape
    ang = _angles(src, opts.angles, opts.angle_range)  # checked as the scan is written
    angles_from = _angles_from(src, opts)
    physics = _physics(src, opts.physics)
    xf = None if opts.xf is None else xf_alignment(opts.xf, n)
    pixel = float(physics["pixel_size_nm"])
    flat_img, flat_file = _field(opts, "flats", src)
    dark_img, _ = _field(opts, "darks", src)
    mode = _mode(opts.values, flat_img, dark_img, src)
    check_pixel_type(source, src.dtype, counts_ok=mode == "intensity")
    # the source's own flats taken in sets during the scan (also where --flat names the
    # projection file: their positions are known): a flat per projection
    own_flats = opts.flat is None or _names_source(opts, "flats", src)
    series = src.flat_series if own_flats and flat_img is not None else None
    logger.info(
        "importing %s (%s, %d frames of %dx%d %s, %s%s; angles from %s) as scan %r of %s",
        source,
        src.format,
        n,
        rows,
        cols,
        src.dtype,
        mode,
        _flat_note(series, flat_img, flat_file if series is None else "")
        + _dark_note(src, dark_img is not None and opts.dark is None),
        angles_from,
        scan,
        acquisition,
    )
    clipped = _Clipped()
    with progress_bar(n, f"import {scan}", progress, unit="frame") as advance:
        data = _lazy_optical_depth(
            src, mode, (flat_img, series), dark_img, opts.frames_per_chunk, advance, clipped
        )
        scan_data = ScanData(
            data=data,
            angles_deg=ang,
            roi_center_px=_cropped_center(opts.center_offset_px, src),
            axis_tilt_deg=opts.axis_tilt_deg if xf is None else xf.axis_tilt_deg,
            **physics,
            extra={
                "source": {
                    "path": os.path.abspath(source),
                    "format": src.format,
                    "values": mode,
                    "flat": _abspath(opts.flat),
                    "dark": _abspath(opts.dark),
                    "flat_from_source": own_flats and src.flat is not None,
                    "flat_interpolated": series is not None,
                    **src.extra,
                    "angles_from": angles_from,
                }
            },
        )
        acq = _write_scan(acquisition, scan, scan_data, overwrite, _inputs(source, opts))
    clipped.warn(source, scan, n * rows * cols)
    if xf is not None:
        acq.set_shifts(scan, xf.shifts_px, method="imod xf", file=os.path.abspath(opts.xf))
    missing = [
        physics_option(k) for k in ("zone_plate_ozw_nm", "energy_ev") if physics.get(k) is None
    ]
    if missing:
        logger.info(
            "scan %r has no %s (set with sxtdist edit; the PSF model needs the zone plate)",
            scan,
            " or ".join(missing),
        )
    logger.info("wrote scan %r: %d projections, %g nm pixels", scan, n, pixel)
    return acq


def _flat_note(series: FlatSeries | None, flat: np.ndarray | None, flat_file: str = "") -> str:
    """How the flat field is applied, for the import's log line (``flat_file``: what
    :func:`_field` says of a ``--flat`` file's frames)."""
    if flat is None:
        return ""
    if flat_file:
        return f"; one flat, {flat_file}"
    if series is None:
        return "; one flat, averaged"
    return (
        f"; flat interpolated per projection in frame index between {len(series.positions)} "
        "sets taken during the scan"
    )


def _dark_note(src: FrameSource, used: bool) -> str:
    """The source's darks in sets, for the import's log line: their levels, so that a
    drift between them can be seen (they are averaged; docs/io.md, "Darks")."""
    levels = src.extra.get("dark_set_levels")
    if not used or not levels:
        return ""
    return f"; darks in {len(levels)} sets (mean levels {', '.join(f'{v:.5g}' for v in levels)}) averaged"


def _physics(src: FrameSource, given: ScanPhysics) -> dict[str, float | None]:
    """The file's physical values, overridden by those the user gave (a difference is logged)."""
    physics = {
        "pixel_size_nm": src.pixel_size_nm,
        "energy_ev": src.energy_ev,
        "exposure_s": src.exposure_s,
    }
    for key, error in src.unreadable.items():  # a unit not known: wrong if guessed
        if key not in given.given():
            raise InputError(error.path, f"{error.problem}; give {physics_option(key)}")
        logger.info("%s (replaced by %s)", error, physics_option(key))
    for key, value in given.given().items():
        if physics.get(key) is not None and not np.isclose(physics[key], value):
            logger.info(
                "%s says %s %g; using %g (%s)",
                src.path,
                key,
                physics[key],
                value,
                physics_option(key),
            )
        physics[key] = value
    if physics["pixel_size_nm"] is None:
        raise InputError(src.path, f"has no pixel size; give {physics_option('pixel_size_nm')}")
    return physics


def _write_scan(
    acquisition: str, scan: str, data: ScanData, overwrite: bool, inputs: list
) -> Acquisition:
    """Add the scan to the acquisition sxtdist wrote there, or create one holding it."""
    # one frame at a time in this thread: readers share a file handle and memory stays
    # at a few frames
    with dask.config.set(scheduler="synchronous"):
        if recognise(acquisition) == "acquisition":
            return add_scan(acquisition, scan, data, overwrite, inputs)
        return create_acquisition(acquisition, {scan: data}, inputs=inputs)


def _cropped_center(offset: tuple[float, float], src: FrameSource) -> tuple[float, float]:
    """The detector centre's offset from the axis after a crop (``offset`` is for the whole frame).

    A window ``[start, stop)`` of ``size`` pixels moves the centre by
    ``(start + stop - 1) / 2 - (size - 1) / 2``.
    """
    crop = src.extra.get("crop")
    if crop is None:
        return tuple(float(v) for v in offset)
    full = src.extra["uncropped_shape"]
    return tuple(
        float(o) + (a + b - 1) / 2.0 - (size - 1) / 2.0
        for o, (a, b), size in zip(offset, crop, full, strict=True)
    )


def _abspath(p: str | os.PathLike[str] | None) -> str | None:
    return None if p is None else os.path.abspath(os.fspath(p))


def _angles(
    src: FrameSource,
    angles: str | os.PathLike[str] | Sequence[float] | None,
    angle_range: tuple[float, float] | None,
) -> np.ndarray:
    n = src.n_frames
    if angles is None and src.angles_error is not None:
        raise src.angles_error  # a sidecar that cannot be read: nothing replaces it
    if angles is not None:
        if src.angles_error is not None:
            logger.info("%s (replaced by %s)", src.angles_error, keyword("angles"))
        if isinstance(angles, (str, os.PathLike)):
            where = os.fspath(angles)
            ang = read_angles_file(where)
        else:
            where = keyword("angles")
            ang = np.asarray(angles, float).reshape(-1)
    elif src.angles_deg is not None:
        where, ang = src.extra.get("angles_file") or src.path, np.asarray(src.angles_deg, float)
        if angle_range is not None:
            _unused_range(src, ang, angle_range)
    elif angle_range is not None:
        _check_numbering(src, keyword("angle_range"), refuse=("pattern", "gaps", "order"))
        start, stop = (float(v) for v in angle_range)
        return np.linspace(start, stop, n)
    else:
        raise InputError(
            src.path,
            f"has no rotation angles; give {keyword('angles')} (a file or values) or "
            f"{keyword('angle_range')} (start, stop)",
        )
    if angles is not None:  # a list may leave out the missing views' angles on purpose
        _check_numbering(src, f"the angle list {where}", refuse=("pattern", "order"))
    if ang.size != n:
        raise InputError(where, f"{ang.size} angles for {n} frames in {src.path}")
    if not np.all(np.isfinite(ang)):
        raise InputError(where, "angles contain NaN or inf")
    return ang


def _unused_range(src: FrameSource, ang: np.ndarray, angle_range: tuple[float, float]) -> None:
    """Warn where ``--angle-range`` is given but the file's own angles are used and differ
    (an MRC whose extended header or ``.mdoc`` holds tilts it did not read before)."""
    start, stop = (float(v) for v in angle_range)
    if ang.size == src.n_frames and np.allclose(
        ang, np.linspace(start, stop, ang.size), rtol=0, atol=0.01
    ):
        return
    warnings.warn(
        f"{src.path}: {keyword('angle_range')} {start:g}:{stop:g} is not used: the angles come "
        f"from {src.extra.get('angles_from') or 'the file'} ({ang.min():g} to {ang.max():g}), "
        f"which differ from it; give {keyword('angles')} to replace them",
        SxtdistWarning,
        stacklevel=4,
    )


def _angles_from(src: FrameSource, opts: ImportOptions) -> str:
    """Where the scan's angles came from, as :func:`_angles` chose, in words."""
    if isinstance(opts.angles, (str, os.PathLike)):
        return os.path.abspath(os.fspath(opts.angles))
    if opts.angles is not None:
        return f"the values given ({keyword('angles')})"
    if src.angles_deg is not None:
        return src.extra.get("angles_from") or f"the {src.format} file"
    start, stop = opts.angle_range
    return f"{keyword('angle_range')} {start:g}:{stop:g}"


def _check_numbering(src: FrameSource, given: str, refuse: tuple[str, ...]) -> None:
    """A folder of frames that is not one numbered series, given angles by position:
    refused (exit 2) for the ``refuse`` kinds of :func:`~sxtdist.io.tiff.odd_numbering`,
    else a warning. Evenly spread angles are wrong after any gap or stray frame; a list is
    wrong after a stray frame (a flat or dark) but may skip missing views on purpose."""
    odd = src.extra.get("numbering")
    if not odd:
        return
    kind, what = odd
    if kind == "clash":  # one view twice, whatever gives the angles
        raise InputError(src.path, what)
    if kind == "order" and kind in refuse:
        raise InputError(
            src.path,
            f"{what}: the files are read in name order, so {given} would give views wrong "
            f"angles; rename them, or take the angles from the names "
            f"({keyword('angles_from_names')} with a group around the angle)",
        )
    if kind in refuse:
        raise InputError(
            src.path,
            f"{what}: {given} gives every later file a wrong angle; keep only the projections "
            f"in the folder, give each view's angle ({keyword('angles')}), or take the angles "
            f"from the names ({keyword('angles_from_names')})",
        )
    warnings.warn(
        f"{src.path}: {what}: every file is read as a projection, in name order, with the "
        f"angles of {given}; check that they match",
        SxtdistWarning,
        stacklevel=4,
    )


def _field(opts: ImportOptions, kind: str, src: FrameSource) -> tuple[np.ndarray | None, str]:
    """The averaged flat (``kind="flats"``) or dark field, from its own file or the source,
    and for a file, what was averaged (``"the 8 frames of F.nx averaged"``, and its sets).

    A file's flats are averaged whatever sets it holds: where they were taken against the
    projections (their frame positions in the projections' series) is not in a second
    file, so a flat per projection cannot be interpolated as for the source's own sets.
    """
    path = opts.flat if kind == "flats" else opts.dark
    what, note = kind[:-1], ""
    named_source = path is not None and _names_source(opts, kind, src)
    if path is None or named_source:
        img = src.flat if kind == "flats" else src.dark
        where = src.path  # its own flats (darks): the message names the file
        if named_source:
            # the projection file's own flats (darks): as the source read them, where a flat
            # per projection is known (sets), not its frames of that key averaged again
            if img is None:
                raise InputError(
                    path,
                    f"{keyword(kind[:-1])} names the projection file, which holds no {what} "
                    f"frames (image_key {nxtomo.KEYS[kind]}): give the file of {kind}",
                )
            logger.info(
                "%s: %s names the projection file: its own %s are used as the source holds them",
                src.path,
                keyword(kind[:-1]),
                kind,
            )
            note = f"the projection file's own {kind}"
        elif img is not None and opts.values in ("transmission", "od"):
            # said outright: the file's own reference is not for these values
            logger.info("%s: its %s field is not used (%s values)", src.path, what, opts.values)
            return None, ""
    else:
        where = os.fspath(path)
        with open_source(where, None, opts, frames=kind) as s:
            sets = int(s.extra.get("flat_sets") or 0)
            with s.cropped(opts.crop_rows, opts.crop_cols) as c:
                img = c.mean()
            note = f"the {s.n_frames} frames of {where} averaged"
            if sets > 1:
                note += (
                    f" (its {sets} sets alike: when they were taken against the projections "
                    "is not known, so a beam drifting between them is not followed)"
                )
    if img is None:
        return None, ""
    if img.shape != src.shape[1:]:
        raise InputError(where, f"{what} field is {img.shape}, projections are {src.shape[1:]}")
    if not np.all(np.isfinite(img)):
        raise InputError(where, f"{what} field contains NaN or inf")
    return np.asarray(img, np.float32), note


def _names_source(opts: ImportOptions, kind: str, src: FrameSource) -> bool:
    """Whether ``--flat`` (``kind="flats"``) or ``--dark`` names the projection file itself,
    its frames of that kind where the projections are (not another dataset of the file).

    An HDF5 file's own flats and darks are then the source's (their sets interpolated per
    projection); any other format's frames are the projections, refused as flats or darks.
    """
    path = opts.flat if kind == "flats" else opts.dark
    try:
        if path is None or not os.path.samefile(path, src.path):
            return False
    except OSError:  # missing: refused where it is opened
        return False
    if src.format != "nxtomo":
        held = " (the reference it holds is used without it)" if src.format == "txrm" else ""
        raise InputError(
            os.fspath(path),
            f"{keyword(kind[:-1])} names the projection file: its frames are the projections, "
            f"not {kind}{held}; give the file of {kind}",
        )
    own = opts.flat_data_path if kind == "flats" else opts.dark_data_path
    return own is None or "/" + own.strip("/") == src.extra.get("data_path")


def _mode(values: str, flat: np.ndarray | None, dark: np.ndarray | None, src: FrameSource) -> str:
    if values == "auto":
        if flat is not None:
            return "intensity"
        if src.values == "intensity":
            raise InputError(
                src.path, f"holds raw detector counts but no flat field; give {keyword('flat')}"
            )
        return "transmission"
    if values == "intensity" and flat is None:
        raise InputError(
            src.path, f"{keyword('values')} intensity needs a flat field; give {keyword('flat')}"
        )
    if values in ("transmission", "od") and (flat is not None or dark is not None):
        raise ParameterError(f"{keyword('values')} {values} takes no flat or dark field")
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


class _Clipped:
    """The pixels an import clipped at :data:`EPS` (no transmission), counted as the
    frames are converted (in the writer's threads): a frame of nothing else is refused,
    many of them warned of once the scan is written."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.worst = (0, -1)  # (pixels, frame)

    def add(self, path: str, od: np.ndarray, first: int) -> None:
        at_clip = od.reshape(od.shape[0], -1) >= np.float32(-np.log(EPS)) - np.float32(1e-3)
        per_frame = at_clip.sum(axis=1)
        empty = np.flatnonzero(per_frame == at_clip.shape[1])
        if empty.size:
            raise InputError(
                path,
                f"frame {first + int(empty[0])} has no pixel with a transmission above 0 (a "
                f"closed shutter, or the wrong {keyword('values')} or "
                f"{keyword('flat')}/{keyword('dark')}?): it would be a constant optical depth",
            )
        k = int(np.argmax(per_frame))
        with self.lock:
            self.count += int(per_frame.sum())
            self.worst = max(self.worst, (int(per_frame[k]), first + k))

    def warn(self, path: str, scan: str, total: int) -> None:
        if total and self.count > CLIPPED_WARN_SHARE * total:
            warnings.warn(
                f"{path}: {self.count / total:.2%} of the pixels of scan {scan!r} have no "
                f"transmission above 0 (stored as optical depth {-np.log(EPS):.1f}, spikes in "
                f"every slice; frame {self.worst[1]} has the most): a dark subtracted twice, or "
                "dead pixels?",
                SxtdistWarning,
                stacklevel=4,
            )


def _lazy_optical_depth(
    src: FrameSource,
    mode: str,
    flat: tuple[np.ndarray | None, FlatSeries | None],
    dark: np.ndarray | None,
    per_chunk: int,
    advance: Any,
    clipped: _Clipped | None = None,
) -> da.Array:
    """The optical depth of ``src``'s frames, read ``per_chunk`` at a time when computed.

    ``flat`` is the averaged flat and, where the source's flats were taken in sets during
    the scan, their :class:`~sxtdist.io.source.FlatSeries` (then used in its place).
    """
    n, rows, cols = src.shape
    mean_flat, series = flat
    sizes = tuple(min(per_chunk, n - i) for i in range(0, n, per_chunk))
    read: set[int] = set()  # the pieces counted: one read again (an error path) is not
    counting = threading.Lock()

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
                    f"{keyword('flat')}/{keyword('dark')} for raw counts, or "
                    f"{keyword('values')} od for optical depth",
                )
        out = to_optical_depth(raw, mode, mean_flat if series is None else series.at(i0, i1), dark)
        if clipped is not None and mode != "od":
            clipped.add(src.path, out, i0)
        with counting:
            first = i0 not in read
            read.add(i0)
        if first:
            advance(i1 - i0)
        return out

    return da.map_blocks(
        block,
        chunks=(sizes, (rows,), (cols,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
