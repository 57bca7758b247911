"""OME-NGFF 0.5 multiscale images in Zarr v3: create, describe, validate, downsample.

The metadata is built with ``ome_zarr_models`` (so what we write is what the
models validate), the arrays with ``zarr`` and the coarser levels with ``dask``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask.array as da
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


def array_options() -> dict[str, Any]:
    """What every array sxtdist writes gets, so damage can be found (``sxtdist verify``).

    Every chunk is stored, fill values too (a missing chunk is then a lost one, not
    an empty one), and carries a CRC32C checksum of its stored bytes (a chunk of
    garbage fails to decode instead of reading as numbers).
    """
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {
        "compressors": (ZstdCodec(), Crc32cCodec()),
        "config": {"write_empty_chunks": True},
    }


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
    overwrite: bool = False,
    attributes: dict[str, Any] | None = None,
) -> zarr.Group:
    """Create an empty multiscale image group ``parent/name`` with arrays ``0, 1, ...``.

    With ``name=""`` the image is ``parent`` itself (a volume is an image at its root).
    Returns the group; its ``ome`` attributes validate as an NGFF 0.5 image.
    """
    group = parent.create_group(name, overwrite=overwrite) if name else parent
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
            **array_options(),
        )
    set_multiscale_metadata(group, level_scales, axes, name or "image")
    if attributes:
        group.attrs.update(attributes)
    return group


def set_multiscale_metadata(
    group: zarr.Group,
    level_scales: Sequence[Sequence[float]],
    axes: Sequence[tuple[str, str | None, str | None]],
    name: str,
) -> None:
    """(Re)write the ``ome`` attributes of a group whose arrays are ``0 .. n-1``."""
    paths = [str(i) for i in range(len(level_scales))]
    specs = [ArraySpec.from_array(group[p]) for p in paths]
    image = Image.new(
        array_specs=specs,
        paths=paths,
        axes=_axes(axes),
        scales=[list(map(float, s)) for s in level_scales],
        translations=[None] * len(paths),
        name=name,
    )
    group.attrs.update(image.attributes.model_dump(mode="json", exclude_none=True))


def validate_image(group: zarr.Group) -> Image:
    """Validate a group as an NGFF 0.5 image; raise :class:`InputError` if it is not one."""
    try:
        return Image.from_zarr(group)
    except Exception as exc:  # pydantic and zarr raise many kinds; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(_group_path(group), f"not a valid OME-NGFF 0.5 image ({first})") from exc


def level_scales(group: zarr.Group) -> list[list[float]]:
    """The ``scale`` of each level of a multiscale group."""
    ms = group.attrs["ome"]["multiscales"][0]
    out = []
    for ds in ms["datasets"]:
        for t in ds["coordinateTransformations"]:
            if t["type"] == "scale":
                out.append(list(t["scale"]))
    return out


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
    set_multiscale_metadata(group, scales, axes, name)
    return made


def _group_path(group: zarr.Group) -> str:
    store = group.store
    root = getattr(store, "root", None)
    base = os.fspath(root) if root is not None else str(store)
    return os.path.join(base, group.path) if group.path else base
