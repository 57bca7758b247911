"""HDF5 NXtomo (NeXus) files: projections, flats and darks told apart by ``image_key``.

Read from the first ``NXentry`` whose definition is ``NXtomo`` (or, failing
that, the first entry with ``instrument/detector/data``):

- ``instrument/detector/data`` ``(frames, rows, cols)``;
- ``instrument/detector/image_key`` (0 projection, 1 flat, 2 dark, 3 invalid),
  or ``image_key_control`` where present (-1 marks alignment frames, skipped);
- ``sample/rotation_angle`` (``units`` degree or rad; degrees if absent);
- ``instrument/detector/x_pixel_size`` (``units`` attribute; metres, NeXus'
  default, if absent);
- the energy from ``beam/incident_energy``, ``instrument/monochromator/energy``
  or ``instrument/source/energy`` (``units`` eV or keV; keV, tomoscan's
  convention, if absent).

All flats are averaged into one flat and all darks into one dark.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ..errors import InputError
from .source import FrameSource, _one_line, check_dtype, check_shape
from .tiff import UNIT_NM

SUFFIXES = (".nx", ".nxs", ".h5", ".hdf5", ".hdf", ".nxtomo")
ENERGY_PATHS = (
    "beam/incident_energy",
    "instrument/monochromator/energy",
    "instrument/source/energy",
)


def open_nxtomo(path: str | os.PathLike[str]) -> FrameSource:
    """Open the projections of an NXtomo file; flats and darks are averaged on opening."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # truncated or not HDF5
        if "truncated file" in str(exc):
            raise InputError(
                path, f"truncated: the HDF5 file ends at byte {os.path.getsize(path)} "
                f"before its own end ({_one_line(exc)})",
            ) from exc  # fmt: skip
        raise InputError(path, f"not a readable HDF5 file ({_one_line(exc)})") from exc
    try:
        return _open(path, f)
    except BaseException:
        f.close()
        raise


def _open(path: str, f: h5py.File) -> FrameSource:
    entry = _find_entry(f)
    if entry is None:
        raise InputError(path, "has no NXtomo entry (no */instrument/detector/data)")
    where = entry.name
    data = entry["instrument/detector/data"]
    if not isinstance(data, h5py.Dataset):
        raise InputError(path, f"{where}/instrument/detector/data is not a dataset")
    check_dtype(path, data.dtype, f"{data.name}")
    if data.ndim != 3:
        raise InputError(path, f"{data.name} must be (frames, rows, cols), is {data.shape}")
    _check_written(path, data)
    n = data.shape[0]
    det = entry["instrument/detector"]
    key_name = "image_key_control" if "image_key_control" in det else "image_key"
    if key_name in det:
        keys = np.asarray(det[key_name][()], dtype=int).reshape(-1)
        if keys.size != n:
            raise InputError(path, f"{det.name}/{key_name} has {keys.size} entries for {n} frames")
    else:
        keys = np.zeros(n, dtype=int)
    proj = np.flatnonzero(keys == 0)
    if proj.size == 0:
        raise InputError(path, f"{det.name}/{key_name} marks no frame as a projection (0)")
    shape = check_shape(path, (proj.size, *data.shape[1:]))

    angles = None
    if "sample/rotation_angle" in entry:
        ds = entry["sample/rotation_angle"]
        all_angles = np.asarray(ds[()], dtype=float).reshape(-1)
        if all_angles.size != n:
            raise InputError(
                path,
                f"{ds.name} has {all_angles.size} angles for {n} frames (flats/darks included)",
            )
        angles = all_angles[proj]
        if str(_units(ds) or "degree").lower().startswith("rad"):
            angles = np.degrees(angles)

    def read_indices(idx: np.ndarray) -> np.ndarray:
        if idx.size and np.all(np.diff(idx) == 1):
            return data[int(idx[0]) : int(idx[-1]) + 1]
        return data[list(map(int, idx))]  # h5py fancy indexing wants increasing indices

    def mean_of(kind: int) -> np.ndarray | None:
        idx = np.flatnonzero(keys == kind)
        if idx.size == 0:
            return None
        acc = np.zeros(data.shape[1:], dtype=np.float64)
        for i in idx:  # one frame at a time: bounded memory
            acc += data[int(i)]
        return (acc / idx.size).astype(np.float32)

    try:
        flat, dark = mean_of(1), mean_of(2)
    except Exception as exc:
        raise InputError(path, f"cannot read flats/darks ({_one_line(exc)})") from exc

    return FrameSource(
        path=path,
        format="nxtomo",
        shape=shape,
        dtype=data.dtype,
        reader=lambda i0, i1: read_indices(proj[i0:i1]),
        angles_deg=angles,
        pixel_size_nm=_pixel_size_nm(det),
        energy_ev=_energy_ev(entry),
        flat=flat,
        dark=dark,
        values="intensity" if flat is not None else None,
        extra={
            "entry": where,
            "n_flats": int(np.sum(keys == 1)),
            "n_darks": int(np.sum(keys == 2)),
        },
        closer=data.file.close,
    )


def _check_written(path: str, data: h5py.Dataset) -> None:
    """Refuse a dataset some of whose frames were never written (HDF5 would read zeros)."""
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


def _find_entry(f: h5py.File) -> h5py.Group | None:
    fallback = None
    for name in f:
        g = f[name]
        if not isinstance(g, h5py.Group):
            continue
        definition = g.get("definition")
        text = definition[()] if isinstance(definition, h5py.Dataset) else g.attrs.get("definition")
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        has_data = "instrument/detector/data" in g
        if has_data and str(text) == "NXtomo":
            return g
        if has_data and fallback is None:
            fallback = g
    return fallback


def _units(ds: h5py.Dataset) -> str | None:
    u = ds.attrs.get("units")
    if isinstance(u, bytes):
        u = u.decode(errors="replace")
    return None if u is None else str(u)


def _scalar(ds: h5py.Dataset) -> float | None:
    v = np.asarray(ds[()], dtype=float).reshape(-1)
    return float(v[0]) if v.size and np.isfinite(v[0]) and v[0] > 0 else None


def _pixel_size_nm(det: h5py.Group) -> float | None:
    if "x_pixel_size" not in det:
        return None
    ds = det["x_pixel_size"]
    v = _scalar(ds)
    factor = UNIT_NM.get((_units(ds) or "m").strip().lower())
    return None if v is None or factor is None else v * factor


def _energy_ev(entry: h5py.Group) -> float | None:
    for p in ENERGY_PATHS:
        if p in entry and isinstance(entry[p], h5py.Dataset):
            v = _scalar(entry[p])
            unit = (_units(entry[p]) or "keV").strip().lower()
            factor = {"ev": 1.0, "kev": 1e3}.get(unit)
            if v is not None and factor is not None:
                return v * factor
    return None
