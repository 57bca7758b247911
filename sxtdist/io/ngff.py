"""OME-NGFF 0.5 multiscale images in Zarr v3: create, describe, validate, downsample.

The metadata is built with ``ome_zarr_models`` (so what we write is what the
models validate), the arrays with ``zarr`` and the coarser levels with ``dask``.

Where a voxel is: NGFF maps an array index to physical space by each level's
``scale`` then ``translation``, an integer index being the *centre* of a voxel.
A coarse voxel is the mean of a block of finer ones, so its centre lies half a
block minus half a fine voxel beyond the block's first voxel centre: level ``k``
has ``translation_k = translation_0 + (scale_k - scale_0) / 2`` (50 nm at level 1
of a 100 nm volume, 150 nm at level 2). Viewers that honour each level's
transform (neuroglancer) then draw every level in the same place.

Contrast: each image carries an ``omero`` rendering window (percentiles of its
data), which napari and neuroglancer-style viewers use as the initial contrast.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from ome_zarr_models.v05.axes import Axis
from ome_zarr_models.v05.image import Image
from pydantic_zarr.v3 import ArraySpec

from ..errors import InputError

#: Axes of a projection stack: the angle axis is custom (no type), y/x in nanometres.
PROJECTION_AXES: tuple[tuple[str, str | None, str | None], ...] = (
    ("angle", None, None),
    ("y", "space", "nanometer"),
    ("x", "space", "nanometer"),
)
#: Axes of a volume: z is the rotation axis.
VOLUME_AXES: tuple[tuple[str, str | None, str | None], ...] = (
    ("z", "space", "nanometer"),
    ("y", "space", "nanometer"),
    ("x", "space", "nanometer"),
)


def array_options(compressor: Any | None = None) -> dict[str, Any]:
    """What every array sxtdist writes gets, so damage can be found (``sxtdist verify``).

    Every chunk is stored, fill values too (a missing chunk is then a lost one, not
    an empty one), and carries a CRC32C checksum of its stored bytes (a chunk of
    garbage fails to decode instead of reading as numbers). ``compressor``: a Zarr
    bytes-to-bytes codec (default zstd).
    """
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {
        "compressors": (compressor or ZstdCodec(), Crc32cCodec()),
        "config": {"write_empty_chunks": True},
    }


def for_writing(arr: zarr.Array) -> zarr.Array:
    """``arr`` as every write of sxtdist's sees it: every chunk stored, fill values too.

    Zarr keeps ``write_empty_chunks`` (:func:`array_options`) with the array object,
    not in the file: an array opened again (``group["0"]``, a worker's
    :func:`sxtdist.volume.open_volume`) would drop an all-zero chunk, and
    ``sxtdist verify`` would then call a healthy array damaged. Every handle
    sxtdist writes through comes from here.
    """
    return arr.with_config(array_options()["config"])


#: Percentiles of the data that bound the ``omero`` display window.
WINDOW_PERCENTILES = (0.5, 99.5)
#: Most values read to compute a display window (a coarse level or a subsample).
WINDOW_SAMPLE = 2**22


def _axes(spec: Sequence[tuple[str, str | None, str | None]]) -> list[Axis]:
    return [Axis(name=n, type=t, unit=u) for n, t, u in spec]


def create_multiscale(
    parent: zarr.Group,
    name: str,
    level_shapes: Sequence[tuple[int, ...]],
    level_scales: Sequence[Sequence[float]],
    axes: Sequence[tuple[str, str | None, str | None]],
    chunks: Sequence[tuple[int, ...]],
    shards: Sequence[tuple[int, ...] | None] | None = None,
    dtype: str = "float32",
    fill_value: float = 0.0,
    compressor: Any | None = None,
) -> zarr.Group:
    """Create an empty multiscale image group ``parent/name`` with arrays ``0, 1, ...``.

    With ``name=""`` the image is ``parent`` itself (a volume is an image at its root).
    ``compressor``: see :func:`array_options`. Returns the group; its ``ome`` attributes
    validate as an NGFF 0.5 image.
    """
    group = parent.create_group(name) if name else parent
    dim_names = tuple(a[0] for a in axes)
    shards = shards or [None] * len(level_shapes)
    for i, (shape, ch, sh) in enumerate(zip(level_shapes, chunks, shards, strict=True)):
        group.create_array(
            str(i),
            shape=tuple(shape),
            chunks=tuple(min(c, s) for c, s in zip(ch, shape)),
            shards=None if sh is None else tuple(sh),
            dtype=dtype,
            fill_value=fill_value,
            dimension_names=dim_names,
            **array_options(compressor),
        )
    set_multiscale_metadata(group, level_scales, axes, name or "image", [[0.0] * len(axes)])
    return group


def set_multiscale_metadata(
    group: zarr.Group,
    level_scales: Sequence[Sequence[float]],
    axes: Sequence[tuple[str, str | None, str | None]],
    name: str,
    translations: Sequence[Sequence[float]] | None = None,
) -> None:
    """(Re)write the ``ome`` attributes of a group whose arrays are ``0 .. n-1``.

    Parameters
    ----------
    group
        The image group.
    level_scales
        ``scale`` of each level, one value per axis.
    axes
        ``(name, type, unit)`` per axis.
    name
        The image's name.
    translations
        ``translation`` of level 0, or of every level. Coarser levels missing from
        it are placed by :func:`pyramid_translations` (block means). None keeps
        level 0 where it was (the origin for an image without one).

    An ``omero`` rendering window already on the group is kept.
    """
    paths = [str(i) for i in range(len(level_scales))]
    specs = [ArraySpec.from_array(group[p]) for p in paths]
    scales = [list(map(float, s)) for s in level_scales]
    if translations is None:
        translations = [_stored_translation(group, 0) or [0.0] * len(axes)]
    if len(translations) != len(scales):
        translations = pyramid_translations(scales, translations[0])
    old_omero = dict(group.attrs.get("ome", {})).get("omero")
    image = Image.new(
        array_specs=specs,
        paths=paths,
        axes=_axes(axes),
        scales=scales,
        translations=[list(map(float, t)) for t in translations],
        name=name,
    )
    ome = image.attributes.model_dump(mode="json", exclude_none=True)
    if old_omero is not None:
        ome["ome"]["omero"] = old_omero
    group.attrs.update(ome)


def pyramid_translations(
    level_scales: Sequence[Sequence[float]], origin: Sequence[float] | None = None
) -> list[list[float]]:
    """Where each level's first voxel centre is, for a pyramid of block means.

    Level ``k``'s first voxel averages the block of level-0 voxels that starts at
    level 0's first one, so its centre lies at ``origin + (scale_k - scale_0) / 2``
    along each axis (an axis that is not downsampled keeps ``origin``).

    Parameters
    ----------
    level_scales
        Each level's voxel size (level 0 first).
    origin
        Level 0's translation (the position of its first voxel centre); zeros if None.
    """
    s0 = [float(v) for v in level_scales[0]]
    t0 = [0.0] * len(s0) if origin is None else [float(v) for v in origin]
    return [[t + (float(s) - a) / 2 for t, s, a in zip(t0, sk, s0)] for sk in level_scales]


def validate_image(group: zarr.Group) -> Image:
    """Validate a group as an NGFF 0.5 image; raise :class:`InputError` if it is not one."""
    try:
        return Image.from_zarr(group)
    except Exception as exc:  # pydantic and zarr raise many kinds; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(_group_path(group), f"not a valid OME-NGFF 0.5 image ({first})") from exc


def level_scales(group: zarr.Group) -> list[list[float]]:
    """The ``scale`` of each level of a multiscale group."""
    return [list(_transform(ds, "scale")) for ds in _datasets(group)]


def level_translations(group: zarr.Group) -> list[list[float]]:
    """The ``translation`` of each level: where its first voxel centre is.

    Levels written without one (by sxtdist before it wrote them) are placed as
    the block-mean pyramid puts them (:func:`pyramid_translations`), which is
    what sxtdist's coarser levels are.
    """
    scales = level_scales(group)
    stored = [_stored_translation(group, k) for k in range(len(scales))]
    expected = pyramid_translations(scales, stored[0])
    return [t if t is not None else e for t, e in zip(stored, expected)]


def _datasets(group: zarr.Group) -> list[dict[str, Any]]:
    return group.attrs["ome"]["multiscales"][0]["datasets"]


def _transform(dataset: dict[str, Any], kind: str) -> list[float] | None:
    for t in dataset["coordinateTransformations"]:
        if t["type"] == kind:
            return [float(v) for v in t[kind]]
    return None


def _stored_translation(group: zarr.Group, level: int) -> list[float] | None:
    ome = dict(group.attrs.get("ome", {}))
    if not ome.get("multiscales"):
        return None
    datasets = ome["multiscales"][0]["datasets"]
    return _transform(datasets[level], "translation") if level < len(datasets) else None


def display_window(
    sample: Any, percentiles: tuple[float, float] = WINDOW_PERCENTILES
) -> dict[str, float]:
    """An ``omero`` window: the data's range and the percentiles to display.

    Parameters
    ----------
    sample
        The values (any shape; NaN and inf are ignored). A coarse level or a
        subsample of a large image is enough: the window is for display.
    percentiles
        Lower and upper percentiles mapped to black and white.

    Returns
    -------
    dict
        ``{"min", "max", "start", "end"}`` with ``start < end`` (a constant image
        gets a window one unit wide, so viewers still draw it).
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0}
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    vmin, vmax = float(values.min()), float(values.max())
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
        vmin, vmax = min(vmin, lo), max(vmax, hi)
    return {"min": vmin, "max": vmax, "start": lo, "end": hi}


def set_display_window(group: zarr.Group, window: dict[str, float], label: str) -> None:
    """Write the ``omero`` rendering metadata of a one-channel greyscale image."""
    ome = dict(group.attrs["ome"])
    ome["omero"] = {
        "channels": [
            {
                "label": label,
                "color": "FFFFFF",
                "window": {k: float(window[k]) for k in ("min", "max", "start", "end")},
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
            }
        ],
        "rdefs": {"model": "greyscale"},
    }
    group.attrs["ome"] = ome


def stored_display_window(group: zarr.Group) -> dict[str, float] | None:
    """The ``omero`` window of a group's first channel, or None if it has none."""
    try:
        window = group.attrs["ome"]["omero"]["channels"][0]["window"]
        return {k: float(window[k]) for k in ("min", "max", "start", "end")}
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def window_sample(group: zarr.Group) -> np.ndarray:
    """Values to compute a display window from, at most about :data:`WINDOW_SAMPLE`.

    The finest level small enough is read whole; otherwise evenly spaced planes
    of the coarsest level (a projection stack has one level), strided within the
    plane too when one plane is larger than the budget.
    """
    levels = [group[str(k)] for k in range(len(level_scales(group)))]
    for arr in levels:
        if arr.size <= WINDOW_SAMPLE:
            return arr[...]
    arr = levels[-1]
    plane = arr.size // arr.shape[0]
    n_planes = max(1, WINDOW_SAMPLE // plane)
    stride = math.ceil(math.sqrt(plane / WINDOW_SAMPLE)) if plane > WINDOW_SAMPLE else 1
    step = -(-arr.shape[0] // n_planes)
    return arr[(slice(step // 2, None, step),) + (slice(None, None, stride),) * (arr.ndim - 1)]


def update_display_window(group: zarr.Group, label: str) -> dict[str, float]:
    """Compute the display window from the group's data and write it; returns it."""
    window = display_window(window_sample(group))
    set_display_window(group, window, label)
    return window


def add_downsampled_levels(
    group: zarr.Group,
    n_levels: int,
    axes: Sequence[tuple[str, str | None, str | None]],
    name: str,
    factors: Sequence[int] = (2, 2, 2),
    chunks: tuple[int, ...] = (64, 64, 64),
    min_size: int = 16,
    in_memory_bytes: int = 64 * 2**20,
) -> int:
    """Build levels ``1 .. n_levels-1`` from level 0 by block means (bounded memory).

    A level is only made while every downsampled axis stays at least ``min_size``
    long. Returns the number of levels the image has afterwards. Levels whose
    source is at most ``in_memory_bytes`` are computed in numpy (dask's graph costs
    more than the work there); larger ones stream through dask chunk by chunk.
    """
    scales = [level_scales(group)[0]]
    origin = level_translations(group)[0]
    made = 1
    previous = None  # the last level made, kept when it was small enough to hold
    for level in range(1, n_levels):
        src_arr = group[str(level - 1)]
        new_shape = tuple(n // f for n, f in zip(src_arr.shape, factors))
        if any(f > 1 and n < min_size for n, f in zip(new_shape, factors)):
            break
        # block means over whole factor-sized cells; excess edge voxels are dropped
        cells = tuple(slice(0, n * f) for n, f in zip(new_shape, factors))
        if src_arr.nbytes <= in_memory_bytes:
            src = previous if previous is not None else src_arr[...]
            view = src[cells].reshape([x for n, f in zip(new_shape, factors) for x in (n, f)])
            coarse = view.mean(axis=tuple(range(1, 2 * len(factors), 2)), dtype=np.float64)
            coarse = coarse.astype(src_arr.dtype)
            previous = coarse
        else:
            import dask.array as da  # only here: info and the readers need no dask

            src = da.from_zarr(src_arr)[cells]
            src = src.rechunk(tuple(max(f, (c // f) * f) for c, f in zip(chunks, factors)))
            coarse = da.coarsen(np.mean, src, dict(enumerate(factors))).astype(src_arr.dtype)
            previous = None
        path = str(level)
        if path in group:
            del group[path]
        target = group.create_array(
            path,
            shape=new_shape,
            chunks=tuple(min(c, n) for c, n in zip(chunks, new_shape)),
            dtype=src_arr.dtype,
            fill_value=0.0,
            dimension_names=tuple(a[0] for a in axes),
            **array_options(),
        )
        if isinstance(coarse, np.ndarray):
            target[...] = coarse
        else:
            da.store(coarse.rechunk(target.chunks), target, lock=False)
        scales.append([s * f for s, f in zip(scales[-1], factors)])
        made += 1
    set_multiscale_metadata(group, scales, axes, name, pyramid_translations(scales, origin))
    return made


def _group_path(group: zarr.Group) -> str:
    store = group.store
    root = getattr(store, "root", None)
    base = os.fspath(root) if root is not None else str(store)
    return os.path.join(base, group.path) if group.path else base
