"""HDF5 NXtomo (NeXus) files as beamlines write them: projections, flats and darks by ``image_key``.

Where things are is found in this order (or named with :class:`HdfLayout`, the
import options ``--data-path``, ``--angles-path``, ``--image-key-path``):

- the frames: ``ENTRY/instrument/detector/data`` (the NXtomo definition), else
  ``ENTRY/data/data`` (an ``NXdata`` group, as Diamond's ``/entry1/tomo_entry``
  holds them), where ENTRY is a top-level group or a group inside one (an
  ``NXsubentry``), those whose ``definition`` is ``NXtomo`` first; then ALBA
  MISTRAL's ``ENTRY/instrument/sample/data`` (flats in
  ``ENTRY/instrument/bright_field/data``, scaled by the ``ExpTimes`` beside each) and
  its normalised ``/TomoNormalized/TomoNormalized``;
- ``image_key_control`` (-1 marks alignment frames, skipped) or ``image_key``
  (0 projection, 1 flat, 2 dark, 3 invalid) in the detector group, else in the
  ``NXdata`` group; none: every frame is a projection;
- the angles: ``ENTRY/sample/rotation_angle``, ``ENTRY/data/rotation_angle``, else
  ``rotation_angle`` beside the
  frames, in degrees or radians by their ``units`` attribute (degrees if absent);
  one per frame, or one per projection;
- ``sample/x_pixel_size`` (the pixel in the object plane, as newer NXtomo writers
  keep it), else ``instrument/detector/x_pixel_size`` (``units``; metres, NeXus'
  default, if absent), the energy from ``beam/incident_energy``,
  ``instrument/monochromator/energy`` or ``instrument/source/energy`` (``units``
  eV or keV; if absent keV, tomoscan's convention, below 200 and eV from 200) and the
  exposure from
  ``instrument/detector/count_time`` (seconds).

External links are followed (HDF5 looks for the linked file beside the master
file); a link whose file is missing is an error naming the link. A virtual
dataset whose source files are missing would read as its fill value, so those
files are checked on opening. All darks are averaged into one dark; flats taken in
two or more sets (before and after the projections, or between parts of the scan) give
each projection a flat interpolated in frame index between the sets before and after it
(:class:`~sxtdist.io.source.FlatSeries`), one set is averaged into one flat. A file of flats or darks alone (as Diamond's I12 writes them) is
opened with ``frames="flats"`` / ``"darks"``: its frames of that ``image_key``,
or all of them when it has no key or marks every frame as a projection.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ..errors import InputError, SxtdistWarning, keyword, one_line
from .source import (
    CODECS_INSTALL,
    FlatSeries,
    FrameSource,
    check_dtype,
    check_shape,
    decimal_comma,
    flat_sets,
    number,
    second_column,
    square_pixel,
)
from .tiff import UNIT_NM

logger = logging.getLogger(__name__)

SUFFIXES = (".nx", ".nxs", ".h5", ".hdf5", ".hdf", ".nxtomo")
#: Where the search looks for the frames in an ENTRY: the NXtomo definition, an NXdata
#: group, ALBA MISTRAL's raw file (flats in ``instrument/bright_field/data``) and its
#: normalised stack (``/TomoNormalized/TomoNormalized``, angles beside it).
DATA_PATHS = ("instrument/detector/data", "data/data", "instrument/sample/data", "TomoNormalized")
#: MISTRAL's flats: a dataset of their own beside the projections' detector group.
BRIGHT_FIELD = "instrument/bright_field"
KEY_NAMES = ("image_key_control", "image_key")
ENERGY_PATHS = (
    "beam/incident_energy",
    "instrument/monochromator/energy",
    "instrument/source/energy",
)
#: Energy units as written (pint's full names by ESRF's ``nxtomo``), in eV.
ENERGY_UNITS = {"ev": 1.0, "electron_volt": 1.0, "kev": 1e3, "kiloelectron_volt": 1e3}
#: An energy without units at least this large is in eV, not keV.
UNITLESS_EV_ABOVE = 200.0
#: ``image_key`` of each kind of frame.
KEYS = {"projections": 0, "flats": 1, "darks": 2}
ANGLE_UNITS = {
    "degree": 1.0,
    "degrees": 1.0,
    "deg": 1.0,
    "°": 1.0,
    "rad": 180.0 / np.pi,
    "radian": 180.0 / np.pi,
    "radians": 180.0 / np.pi,
}


@dataclass(frozen=True)
class HdfLayout:
    """Where a file keeps what the NXtomo definition puts elsewhere (``None``: look for it).

    Parameters
    ----------
    data_path
        The frames ``(frames, rows, cols)`` (``--data-path``).
    angles_path
        The rotation angles (``--angles-path``).
    image_key_path
        The per-frame ``image_key`` (``--image-key-path``).
    data_option
        How the user named ``data_path``, for messages (``None``: ``--data-path``, or
        ``data_path=`` from Python).
    """

    data_path: str | None = None
    angles_path: str | None = None
    image_key_path: str | None = None
    data_option: str | None = None


def open_nxtomo(
    path: str | os.PathLike[str], layout: HdfLayout | None = None, frames: str = "projections"
) -> FrameSource:
    """Open the projections (or the flats or darks) of an NXtomo-like HDF5 file.

    Parameters
    ----------
    path
        The (master) file.
    layout
        Dataset paths that replace the search (see the module doc).
    frames
        ``"projections"`` (flats and darks in the file are averaged on opening),
        ``"flats"`` or ``"darks"`` (a file of flat or dark frames).
    """
    path = os.fspath(path)
    if frames not in KEYS:
        raise ValueError(f"frames must be one of {', '.join(KEYS)}, not {frames!r}")
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # truncated or not HDF5
        if "truncated file" in str(exc):
            raise InputError(
                path, f"truncated: the HDF5 file ends at byte {os.path.getsize(path)} "
                f"before its own end ({one_line(exc)})",
            ) from exc  # fmt: skip
        raise InputError(path, f"not a readable HDF5 file ({one_line(exc)})") from exc
    try:
        return _open(path, f, layout or HdfLayout(), frames)
    except BaseException:
        f.close()
        raise


def _check_written(path: str, data: h5py.Dataset) -> None:
    """Refuse a dataset some of whose frames were never written (HDF5 would read zeros)."""
    if data.is_virtual or data.external:  # their sources are checked where they are read
        return
    if data.chunks is None:
        if data.size and data.id.get_offset() is None:
            raise InputError(path, f"{data.name} was never written (no frame is stored)")
        return
    per = data.chunks
    grid = [-(-n // c) for n, c in zip(data.shape, per)]
    expected = int(np.prod(grid))
    stored = data.id.get_num_chunks()
    if stored >= expected:
        return
    frames = np.zeros(grid[0], dtype=int)
    for k in range(stored):
        frames[data.id.get_chunk_info(k).chunk_offset[0] // per[0]] += 1
    first = int(np.flatnonzero(frames < expected // grid[0])[0]) * per[0]
    raise InputError(
        path,
        f"{data.name}: {expected - stored} of {expected} chunks were never written "
        f"(frame {first} is the first incomplete one)",
    )


def _filters(data: h5py.Dataset) -> list[tuple[int, str]]:
    """``(id, name)`` of the dataset's filters (compression and the like)."""
    dcpl = data.id.get_create_plist()
    out = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, _values, name = dcpl.get_filter(i)
        out.append((int(code), name.decode(errors="replace") if isinstance(name, bytes) else name))
    return out


def _check_filters(path: str, data: h5py.Dataset, where: str) -> None:
    """Refuse, naming it, a compression this HDF5 cannot decode (bitshuffle, LZ4, Blosc, Zstd:
    detector writers use them); HDF5's own error names only its plugin folder.

    ``hdf5plugin``, where installed, registers those filters when imported. Whether one
    can be loaded is learnt by reading the first frame (HDF5 may load a plugin that is not
    registered yet).
    """
    if data.is_virtual or data.size == 0:  # a virtual dataset's filters are its sources'
        return
    filters = _filters(data)
    if any(not h5py.h5z.filter_avail(code) for code, _ in filters):
        try:
            import hdf5plugin  # noqa: F401  (registers its filters on import)
        except ImportError:
            pass
    try:
        data[0]
    except Exception as exc:
        missing = [(c, n) for c, n in filters if not h5py.h5z.filter_avail(c)]
        if not missing:
            raise InputError(path, f"cannot read {where} ({one_line(exc)})") from exc
        code, name = missing[0]
        raise InputError(
            path,
            f"{where} is compressed with HDF5 filter {name or 'unnamed'} (id {code}), which "
            f"this installation cannot decode: install hdf5plugin ({CODECS_INSTALL}, or pip "
            "install hdf5plugin), or decompress it where the filter is installed "
            "(h5repack -f NONE)",
        ) from exc


def _open(path: str, f: h5py.File, layout: HdfLayout, kind: str) -> FrameSource:
    # where the frames are as reached from this file (through a link, the dataset's own
    # name is its path in the linked file)
    data, data_at = _frames_dataset(
        path, f, layout.data_path, layout.data_option or keyword("data_path")
    )
    _check_filters(path, data, data_at)
    _check_written(path, data)
    n = data.shape[0]
    keys, key_where = _image_keys(path, f, data_at, layout.image_key_path)
    if keys is not None and keys.size != n:
        raise InputError(
            path,
            f"{key_where} has {keys.size} entries for {n} frames in {data_at}"
            + _axes_hint(keys.size, data.shape),
        )
    if keys is None:
        keys = np.zeros(n, dtype=int)
    wanted = KEYS[kind]
    chosen = np.flatnonzero(keys == wanted)
    if kind != "projections" and (chosen.size == 0 and np.all(keys == 0)):
        chosen = np.arange(n)  # a file of flats (darks) only, keyed as projections or not at all
    if chosen.size == 0:
        what = {0: "a projection (0)", 1: "a flat (1)", 2: "a dark (2)"}[wanted]
        raise InputError(path, f"{key_where} marks no frame as {what}")
    shape = check_shape(path, (chosen.size, *data.shape[1:]))

    def read_indices(idx: np.ndarray) -> np.ndarray:
        if idx.size and np.all(np.diff(idx) == 1):
            return data[int(idx[0]) : int(idx[-1]) + 1]
        return data[list(map(int, idx))]  # h5py fancy indexing wants increasing indices

    entry = _entry_of(f, data_at)
    flat = dark = series = None
    kept: dict[str, Any] = {}
    if kind == "projections":
        flat, dark, series, kept = _held_fields(path, entry, data, data_at, keys, chosen)
    angles = None
    if kind == "projections":
        angles = _angles(path, f, entry, data_at, layout.angles_path, data.shape, chosen)
    unreadable: dict[str, InputError] = {}
    physics = _physics(entry, chosen, unreadable)
    return FrameSource(
        path=path,
        format="nxtomo",
        shape=shape,
        dtype=data.dtype,
        reader=lambda i0, i1: read_indices(chosen[i0:i1]),
        angles_deg=angles,
        **physics,
        unreadable=unreadable,
        flat=flat,
        dark=dark,
        flat_series=series,
        values="intensity" if flat is not None else None,
        extra={
            "entry": None if entry is None else entry.name,
            "data_path": data_at,
            "image_key_path": key_where if key_where.startswith("/") else None,
            "n_flats": int(np.sum(keys == 1)),
            "n_darks": int(np.sum(keys == 2)),
            # a file given as --flat: how many sets its image_key shows (averaged all the same)
            "flat_sets": len(flat_sets(keys))
            if kind == "flats" and np.any(keys == 1)
            else (0 if series is None else len(series.positions)),
            **kept,
        },
        closer=f.close,
    )


def _held_fields(
    path: str,
    entry: h5py.Group | None,
    data: h5py.Dataset,
    data_at: str,
    keys: np.ndarray,
    chosen: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None, FlatSeries | None, dict[str, Any]]:
    """The flat, dark and flat sets the file holds for its projections ``chosen``
    (``image_key`` 1 and 2 among the frames, else MISTRAL's flats), and what to keep of
    them (the flats' exposure factor, the dark sets' levels)."""
    try:
        dark, dark_levels = _dark(data, keys)
        series = _flat_series(path, data, keys, chosen)
        # sets: the first set's average stands for "a flat" (it stays kept for the first
        # projections), so each flat is read once, not averaged whole first
        flat = _mean_of(data, keys == 1) if series is None else series.field(0)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"cannot read flats/darks of {data_at} ({one_line(exc)})") from exc
    scaled = None
    if flat is not None and entry is not None:
        flat, scaled = _flats_to_exposure(entry, keys, flat, dark)
        if scaled is not None and series is not None:  # the same exposure ratio for every set
            series = series.mapped(lambda f: _scaled(f, dark, scaled))
    if flat is None and entry is not None:
        flat, scaled = _bright_field(path, entry, data_at, (keys.size, *data.shape[1:]))
    kept = {} if scaled is None else {"flat_scaled_by": scaled}
    return flat, dark, series, {**kept, **({"dark_set_levels": dark_levels} if dark_levels else {})}


def _dark(data: h5py.Dataset, keys: np.ndarray) -> tuple[np.ndarray | None, list[float]]:
    """The darks (``image_key`` 2) averaged, all sets alike, each frame read once, and the
    mean level of each set where there are two or more (the import's log line gives them).

    Not interpolated per projection as flats are: a dark drifts by counts, not percent, and
    the average of all sets is the less noisy estimate of each pixel's offset; interpolated,
    the darks of one set alone set the ends of the scan (docs/io.md, "Darks", measured by
    ``benchmarks/dark_sets.py``).
    """
    sets = flat_sets(keys, flat_key=2)
    if len(sets) < 2:
        return _mean_of(data, keys == 2), []
    acc, levels = np.zeros(data.shape[1:], np.float64), []
    for s in sets:  # one set at a time: memory of two frames however many sets
        average = _mean_of(data, np.isin(np.arange(keys.size), s))
        acc += average * len(s)
        levels.append(float(np.mean(average)))
    return (acc / sum(len(s) for s in sets)).astype(np.float32), levels


def _physics(
    entry: h5py.Group | None, chosen: np.ndarray, unreadable: dict[str, InputError]
) -> dict[str, float | None]:
    """Pixel size, energy and exposure as the file has them; those in a unit not known are
    ``None``, their errors put in ``unreadable`` (:func:`_or_unreadable`)."""
    det = entry.get("instrument/detector") if entry is not None else None
    return {
        key: _or_unreadable(unreadable, key, read)
        for key, read in (
            ("pixel_size_nm", lambda: _pixel_size_nm(entry, det)),
            ("energy_ev", lambda: _energy_ev(entry) if entry is not None else None),
            (
                "exposure_s",
                lambda: _exposure_s(det, chosen) if isinstance(det, h5py.Group) else None,
            ),
        )
    }


def _or_unreadable(
    unreadable: dict[str, InputError], key: str, read: Callable[[], float | None]
) -> float | None:
    """``read()``, or ``None`` with its :class:`_Unreadable` kept under ``key``: raised where
    the value is used, unless the user gives it (the importer's ``--pixel-size-nm`` ...)."""
    try:
        return read()
    except _Unreadable as exc:
        unreadable[key] = exc
        return None


# -- finding datasets -------------------------------------------------------------------------


def _get(path: str, f: h5py.File, where: str, option: str) -> h5py.Dataset:
    """The dataset at ``where``, or one line naming what is missing (a link's file, a path)."""
    node: h5py.Group = f
    parts = [p for p in where.split("/") if p]
    for i, name in enumerate(parts):
        sofar = "/" + "/".join(parts[: i + 1])
        link = node.get(name, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            raise InputError(path, f"has no dataset {where} ({option}; {sofar} does not exist)")
        try:
            node = node[name]
        except (KeyError, OSError) as exc:
            if isinstance(link, h5py.ExternalLink):
                raise InputError(
                    path,
                    f"{sofar} ({option}) is an external link to {link.filename}:{link.path}, "
                    "which cannot be opened (the linked file must lie beside the master file)",
                ) from exc
            raise InputError(
                path, f"{sofar} ({option}) cannot be opened ({one_line(exc)})"
            ) from exc
    if not isinstance(node, h5py.Dataset):
        raise InputError(path, f"{where} ({option}) is a group, not a dataset")
    _check_virtual_sources(path, node, where, option)
    return node


def _check_virtual_sources(path: str, ds: h5py.Dataset, where: str, option: str) -> None:
    """A virtual dataset reads its fill value where a source file is missing: refuse that."""
    if not ds.is_virtual:
        return
    base = os.path.dirname(os.path.abspath(path))
    for vmap in ds.virtual_sources():
        name = vmap.file_name
        if name == "." or "%" in name:  # this file, or a printf pattern HDF5 expands
            continue
        full = name if os.path.isabs(name) else os.path.join(base, name)
        if not os.path.isfile(full):
            raise InputError(
                path,
                f"{where} ({option}) is a virtual dataset whose source file {name} is missing "
                "(it would read as fill values)",
            )


def _candidate_entries(f: h5py.File) -> list[h5py.Group]:
    """Top-level groups and the groups inside them, those defined as NXtomo first."""
    groups: list[h5py.Group] = []
    for name in f:
        g = f.get(name)
        if not isinstance(g, h5py.Group):
            continue
        groups.append(g)
        for sub in g:
            link = g.get(sub, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                continue  # not opened just to look (it may be missing)
            s = g.get(sub)
            if isinstance(s, h5py.Group):
                groups.append(s)
    return sorted(groups, key=lambda g: _definition(g) != "NXtomo")


def _definition(g: h5py.Group) -> str:
    d = g.get("definition")
    text = d[()] if isinstance(d, h5py.Dataset) else g.attrs.get("definition")
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text)


def _frames_dataset(
    path: str, f: h5py.File, data_path: str | None, option: str
) -> tuple[h5py.Dataset, str]:
    """The frames and the path they were reached by in this file."""
    if data_path is not None:
        where = "/" + data_path.strip("/")
        data = _get(path, f, where, option)
    else:
        data = None
        for g in _candidate_entries(f):
            for rel in DATA_PATHS:
                if rel in g:
                    where = f"{g.name}/{rel}"
                    data = _get(path, f, where, "found by search")
                    logger.debug("%s: projections found at %s", path, where)
                    break
            if data is not None:
                break
        if data is None:
            raise InputError(
                path,
                "no projections found (looked for ENTRY/instrument/detector/data, "
                "ENTRY/data/data, ENTRY/instrument/sample/data and TomoNormalized); name the "
                f"dataset with {keyword('data_path')}",
            )
        others = _other_stacks(f, data)
        if others:  # several scans in one file (a z-series): say which one is taken
            warnings.warn(
                f"{path}: holds {len(others) + 1} stacks of frames; importing {where}, not "
                f"{', '.join(others[:3])}{' ...' if len(others) > 3 else ''} (name the one "
                f"wanted with {option})",
                SxtdistWarning,
                stacklevel=2,
            )
    check_dtype(path, data.dtype, where)
    if data.ndim != 3:
        raise InputError(path, f"{where} must be (frames, rows, cols), is {data.shape}")
    return data, where


def _other_stacks(f: h5py.File, data: h5py.Dataset) -> list[str]:
    """The paths where the search finds frames other than ``data`` (links to it excluded)."""
    others = []
    for g in _candidate_entries(f):
        for rel in DATA_PATHS:
            try:
                ds = g.get(rel)
            except (KeyError, OSError):  # a link whose file is missing: not this import's
                continue
            if isinstance(ds, h5py.Dataset) and ds.ndim == 3:
                if ds != data and f"{g.name}/{rel}" not in others:
                    others.append(f"{g.name}/{rel}")
                break
    return others


def _entry_of(f: h5py.File, name: str) -> h5py.Group | None:
    """The group two or three levels above the frames at ``name`` (``ENTRY/instrument/
    detector/data``, ``ENTRY/data/data``), else their parent: the metadata around them."""
    for rel in DATA_PATHS:
        if name.endswith("/" + rel):
            g = f.get(name[: -len(rel) - 1] or "/")
            return g if isinstance(g, h5py.Group) else None
    parent = f.get(os.path.dirname(name) or "/")
    return parent if isinstance(parent, h5py.Group) else None


def _axes_hint(count: int, shape: tuple[int, ...]) -> str:
    """A note for a count that matches another axis of the frames than the first: a stack
    written ``(rows, cols, frames)``, which would read as ``rows`` images of the wrong cut."""
    if count in shape[1:]:
        return (
            f"; the frames' dataset is {tuple(shape)}, and {count} is the size of another "
            "axis: written as (rows, cols, frames)? sxtdist reads (frames, rows, cols): "
            "transpose it to (frames, rows, cols) before importing"
        )
    return ""


#: ``image_key`` as words (tomoscan's and ``nxtomo``'s ImageKey names, and short forms).
KEY_WORDS = {
    "projection": 0,
    "flat_field": 1,
    "flat": 1,
    "dark_field": 2,
    "dark": 2,
    "invalid": 3,
    "alignment": -1,
}
#: The values NXtomo defines: 0-3, and -1 (alignment, in ``image_key_control``).
KNOWN_KEYS = (-1, 0, 1, 2, 3)


def _key_values(path: str, ds: h5py.Dataset, where: str) -> np.ndarray:
    """An ``image_key`` as integers: numbers, digits or the words of :data:`KEY_WORDS` as
    text. A value NXtomo does not define (``7``, ``0.5``, ``"white"``) is refused naming the
    frame: skipped, as frames keyed 3 are, a projection would be lost without a word."""
    raw = np.asarray(ds[()]).reshape(-1)
    if raw.dtype.kind in "SUO":
        texts = [
            (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip().lower()
            for v in raw
        ]
        values = [KEY_WORDS.get(t, t) for t in texts]
        keys = np.array(
            [int(v) if isinstance(v, int) or v.lstrip("-").isdigit() else 99 for v in values]
        )
        shown = [repr(t) for t in texts]
    elif raw.dtype.kind in "iubf":
        values = raw.astype(float)
        whole = np.isfinite(values) & (values == np.round(values))  # 0.5 is no key
        keys = np.where(whole, np.nan_to_num(values), 99).astype(int)
        shown = [f"{v:g}" for v in values]
    else:  # compound, complex ...: no key at all
        keys, shown = np.full(raw.size, 99), [f"of type {raw.dtype}"] * raw.size
    bad = np.flatnonzero(~np.isin(keys, KNOWN_KEYS))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            path,
            f"{where}[{i}] is {shown[i]}, not an NXtomo image_key (0 or projection, 1 or "
            f"flat, 2 or dark, 3 or invalid, -1 alignment); {bad.size} frame(s) so: give "
            f"{keyword('image_key_path')} of a key NXtomo defines",
        )
    return keys


def _image_keys(
    path: str, f: h5py.File, data_at: str, key_path: str | None
) -> tuple[np.ndarray | None, str]:
    if key_path is not None:
        ds = _get(path, f, key_path, keyword("image_key_path"))
        return _key_values(path, ds, key_path), key_path
    entry = _entry_of(f, data_at)
    groups = [os.path.dirname(data_at)]
    if entry is not None:
        groups = [f"{entry.name}/instrument/detector", *groups]
    for g in groups:
        for key in KEY_NAMES:
            p = f"{g}/{key}"
            if p in f and isinstance(f[p], h5py.Dataset):
                return _key_values(path, f[p], p), p
    return None, "the file (no image_key)"


def _angles(
    path: str,
    f: h5py.File,
    entry: h5py.Group | None,
    data_at: str,
    angles_path: str | None,
    shape: tuple[int, ...],
    chosen: np.ndarray,
) -> np.ndarray | None:
    if angles_path is not None:
        where = angles_path
        ds = _get(path, f, angles_path, keyword("angles_path"))
    else:
        candidates = [f"{os.path.dirname(data_at)}/rotation_angle"]
        if entry is not None:  # NXtomo's place, then MISTRAL's (an NXdata group)
            candidates[:0] = [
                f"{entry.name}/sample/rotation_angle",
                f"{entry.name}/data/rotation_angle",
            ]
        where = next((p for p in candidates if p in f and isinstance(f[p], h5py.Dataset)), None)
        if where is None:
            return None
        ds = f[where]
    values = _numbers(path, where, ds)
    unit = (_units(ds) or "degree").strip().lower()
    if unit not in ANGLE_UNITS:
        raise InputError(path, f"{where} has units {unit!r}; expected degree or rad")
    n_frames = shape[0]
    if values.size == n_frames:
        values = values[chosen]
    elif values.size != chosen.size:
        raise InputError(
            path,
            f"{where} has {values.size} angles for {n_frames} frames ({chosen.size} projections)"
            + _axes_hint(values.size, shape),
        )
    return values * ANGLE_UNITS[unit]


def _numbers(path: str, where: str, ds: h5py.Dataset) -> np.ndarray:
    """A dataset of numbers, also when written as text (a LabVIEW or spreadsheet writer's
    ``"-60,5"``: one number with a decimal comma is read as one)."""
    raw = np.asarray(ds[()]).reshape(-1)
    if raw.dtype.kind not in "SUO":
        return raw.astype(float)
    values, texts = [], []
    for i, v in enumerate(raw):
        text = (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip()
        texts.append(text)
        try:
            values.append(number(text))
        except ValueError:
            raise InputError(path, f"{where}[{i}] is {text!r}, not a number") from None
    if all(decimal_comma(t) for t in texts):  # '-60,2' '-58,2' ...: an exposure after each?
        second_column(path, texts, f"value of {where}", "write the angles as numbers")
    return np.asarray(values, float)


def _flats_to_exposure(
    entry: h5py.Group, keys: np.ndarray, flat: np.ndarray, dark: np.ndarray | None
) -> tuple[np.ndarray, float | None]:
    """The flat's signal scaled to the projections' exposure where the detector's per-frame
    ``count_time`` says the flats were exposed otherwise (the factor; ``None``: not scaled).

    The dark (the camera's offset) is not scaled: ``dark + (flat - dark) * ratio``.
    """
    ds = entry.get("instrument/detector/count_time")
    if not isinstance(ds, h5py.Dataset) or ds.size != keys.size:
        return flat, None
    try:
        t = _times_s(ds)
    except _Unreadable:
        raw = np.asarray(ds[()]).reshape(-1)
        if raw.dtype.kind in "SUO":  # each value's own unit, one not known: nor is the ratio
            raise
        t = raw.astype(float)  # one unit for all, not known: it cancels in the ratio
    ratio = _exposure_ratio(t[keys == 0], t[keys == 1])
    if ratio is None or abs(ratio - 1.0) < 1e-6:
        return flat, None
    return _scaled(flat, dark, ratio), ratio


def _exposure_ratio(projections: np.ndarray, flats: np.ndarray) -> float | None:
    """The projections' median exposure over the flats' (seconds; times not finite or not
    positive left out), or ``None`` where either has none."""
    projections, flats = (t[np.isfinite(t) & (t > 0)] for t in (projections, flats))
    if not projections.size or not flats.size:
        return None
    return float(np.median(projections) / np.median(flats))


def _scaled(flat: np.ndarray, dark: np.ndarray | None, ratio: float) -> np.ndarray:
    """``flat``'s signal scaled by ``ratio``, the dark (the camera's offset) not."""
    d = np.float32(0.0) if dark is None else dark
    return d + (flat - d) * np.float32(ratio)


def _bright_field(
    path: str, entry: h5py.Group, data_at: str, shape: tuple[int, int, int]
) -> tuple[np.ndarray | None, float | None]:
    """MISTRAL's flats (``ENTRY/instrument/bright_field/data``) averaged, and scaled to the
    projections' exposure when both give ``ExpTimes`` (the factor; ``None``: no flats).

    Counts grow with the exposure: flats of 2 s under projections of 1 s, used as they are,
    would add ln 2 to every optical depth.
    """
    group = entry.get(BRIGHT_FIELD)
    ds = group.get("data") if isinstance(group, h5py.Group) else None
    if not isinstance(ds, h5py.Dataset):
        return None, None
    where = f"{entry.name}/{BRIGHT_FIELD}/data"
    _check_filters(path, ds, where)  # compressed otherwise than the frames: named
    frames = ds.shape if ds.ndim == 3 else (1, *ds.shape)
    if tuple(frames[1:]) != tuple(shape[1:]):
        raise InputError(path, f"{where} has frames of {frames[1:]}, projections are {shape[1:]}")
    try:
        flat = _mean_of(ds, np.ones(frames[0], bool)) if ds.ndim == 3 else ds[()].astype("f4")
    except Exception as exc:
        raise InputError(path, f"cannot read the flats at {where} ({one_line(exc)})") from exc
    times = [entry.file.get(f"{g}/ExpTimes") for g in (os.path.dirname(data_at), group.name)]
    if not all(isinstance(t, h5py.Dataset) for t in times):
        return flat, 1.0
    factor = _exposure_ratio(*(np.asarray(t[()], float).reshape(-1) for t in times))
    if factor is None:
        return flat, 1.0
    return flat * np.float32(factor), factor


def _flat_series(
    path: str, data: h5py.Dataset, keys: np.ndarray, chosen: np.ndarray
) -> FlatSeries | None:
    """The flats as the sets they were taken in (``image_key`` 1 at the start and the end,
    or between parts of the scan), when there are two or more; else ``None``. Each set is
    read when a projection needs it; a set with NaN or inf is refused, naming its frames
    (no average of all the flats checks them first)."""
    sets = flat_sets(keys)
    if len(sets) < 2:
        return None
    masks = [np.isin(np.arange(keys.size), s) for s in sets]

    def load(j: int) -> np.ndarray:
        avg = _mean_of(data, masks[j])
        if not np.all(np.isfinite(avg)):
            raise InputError(
                path, f"flats {sets[j][0]}..{sets[j][-1]} of {data.name} contain NaN or inf"
            )
        return avg

    return FlatSeries(
        positions=np.array([s.mean() for s in sets], float), frames=np.asarray(chosen), load=load
    )


def _mean_of(data: h5py.Dataset, which: np.ndarray) -> np.ndarray | None:
    idx = np.flatnonzero(which)
    if idx.size == 0:
        return None
    acc = np.zeros(data.shape[1:], dtype=np.float64)
    for i in idx:  # one frame at a time: bounded memory
        acc += data[int(i)]
    return (acc / idx.size).astype(np.float32)


# -- metadata ---------------------------------------------------------------------------------


#: A quantity written as text: a number (a decimal point or comma), then its unit if any.
_QUANTITY = re.compile(r"([-+]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][-+]?\d+)?)\s*(\S*)")
#: Exposure units as written, in seconds.
TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
}


class _Unreadable(InputError):
    """A value the file holds in a unit (or words) this reader does not know."""


def _value_and_unit(ds: h5py.Dataset) -> tuple[float | None, str | None]:
    """The first value of ``ds`` and its unit as written: a number with its ``units``
    attribute, or text with its own unit (``"520 eV"``, ``"10 nm"``, ``"0,5 s"``; an
    attribute beside it must agree). The value is ``None`` where it is not positive and
    finite; :class:`_Unreadable` where the text is no number and unit."""
    raw = np.asarray(ds[()]).reshape(-1)
    attr = _units(ds)
    attr = attr.strip() if attr and attr.strip() else None
    if not raw.size:
        return None, attr
    value = raw[0]
    if raw.dtype.kind in "SUO":
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        m = _QUANTITY.fullmatch(text.strip())
        if m is None:
            raise _Unreadable(ds.file.filename, f"{ds.name} is {text!r}, not a number and a unit")
        value, unit = m.group(1).replace(",", "."), m.group(2) or None
        if unit and attr and unit.lower() != attr.lower():
            raise _Unreadable(
                ds.file.filename, f"{ds.name} is {text!r} but its units attribute says {attr!r}"
            )
        attr = unit or attr
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, attr
    return (value if np.isfinite(value) and value > 0 else None), attr


def _quantity(ds: h5py.Dataset, kind: str, default: str) -> float | None:
    """The first value of ``ds`` (:func:`_value_and_unit`; ``default`` its unit where it has
    none) times its unit's factor, a unit of ``kind`` (:func:`_factor`), or ``None``.
    :class:`_Unreadable` where the unit is not one of ``kind``'s: read as another unit or passed over, the value would be wrong
    by the factor between them (the detector's pixel for the object's)."""
    value, unit = _value_and_unit(ds)
    return None if value is None else value * _factor(ds, unit or default, kind)


#: How the unit tables are named in messages.
_KNOWN = {"length": "nm, µm, mm, m or Å", "energy": "eV or keV", "time": "s, ms or µs"}


def _factor(ds: h5py.Dataset, unit: str, kind: str) -> float:
    """The factor of ``unit``, a unit of ``kind`` (``length``, ``energy``, ``time``: its
    table, :data:`UNIT_NM`, :data:`ENERGY_UNITS`, :data:`TIME_UNITS`); :class:`_Unreadable`
    naming ``ds`` where it has none."""
    table = {"length": UNIT_NM, "energy": ENERGY_UNITS, "time": TIME_UNITS}[kind]
    factor = table.get(unit.lower())
    if factor is None:
        raise _Unreadable(
            ds.file.filename,
            f"{ds.name} is in {unit!r}, not a unit of {kind} known here ({_KNOWN[kind]})",
        )
    return factor


def _units(ds: h5py.Dataset) -> str | None:
    u = ds.attrs.get("units")
    if isinstance(u, np.ndarray) and u.size == 1:  # a one-string array (IDL, LabVIEW writers)
        u = u.reshape(-1)[0]
    if isinstance(u, bytes):
        u = u.decode(errors="replace")
    return None if u is None else str(u)


def _pixel_size_nm(entry: h5py.Group | None, det: object) -> float | None:
    """The pixel size in the object plane: ``sample/x_pixel_size`` where the file has it,
    else the detector's ``x_pixel_size``.

    Newer NXtomo writers (ESRF's ``nxtomo``) keep the detector's own pixel (microns)
    in the detector group and the pixel in the sample plane under ``sample``: behind a
    zone plate the two differ by the magnification, a thousandfold.
    """
    groups = [entry.get("sample") if entry is not None else None, det]
    for g in groups:
        width = _length_nm(g, "x_pixel_size")
        if width is not None:
            return square_pixel(g.file.filename, width, _length_nm(g, "y_pixel_size"))
    return None


def _length_nm(g: object, name: str) -> float | None:
    """The length ``g/name`` in nm (``units``, or the unit written after a number in text;
    metres if neither), or ``None``; :class:`_Unreadable` for a unit not known."""
    ds = g.get(name) if isinstance(g, h5py.Group) else None
    if not isinstance(ds, h5py.Dataset):
        return None
    return _quantity(ds, "length", "m")


def _energy_ev(entry: h5py.Group) -> float | None:
    """The photon energy (eV) from the first of :data:`ENERGY_PATHS` the entry has.

    Without ``units`` a value is keV (tomoscan's convention) below
    :data:`UNITLESS_EV_ABOVE` and eV from there: no tomography beamline runs at 200 keV,
    and a soft X-ray writer's 520 (eV) read as keV would be a thousandfold off.
    """
    for p in ENERGY_PATHS:
        ds = entry.get(p)
        if isinstance(ds, h5py.Dataset):
            v, unit = _value_and_unit(ds)
            if v is not None and unit is None:
                return v if v >= UNITLESS_EV_ABOVE else v * 1e3
            if v is not None:
                return v * _factor(ds, unit, "energy")
    return None


def _exposure_s(det: h5py.Group, chosen: np.ndarray) -> float | None:
    """The median ``count_time`` of the projections (one value, or one per frame), seconds."""
    ds = det.get("count_time")
    if not isinstance(ds, h5py.Dataset):
        return None
    v = _times_s(ds)
    if v.size > 1 and v.size > chosen.max():
        v = v[chosen]
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if v.size else None


def _times_s(ds: h5py.Dataset) -> np.ndarray:
    """Every value of a ``count_time`` in seconds: numbers in their ``units`` (seconds if
    absent), or text each with its own unit (``"0.5 s"``, ``"500 ms"``); a unit not known
    is :class:`_Unreadable`."""
    raw = np.asarray(ds[()]).reshape(-1)
    if raw.dtype.kind not in "SUO":
        return raw.astype(float) * _factor(ds, (_units(ds) or "s").strip(), "time")
    out = np.empty(raw.size)
    for i, v in enumerate(raw):
        text = (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip()
        m = _QUANTITY.fullmatch(text)
        if m is None:
            raise _Unreadable(ds.file.filename, f"{ds.name}[{i}] is {text!r}, not a time")
        unit = m.group(2) or (_units(ds) or "s").strip()
        out[i] = float(m.group(1).replace(",", ".")) * _factor(ds, unit, "time")
    return out
