"""The reconstructed volume: a multiscale OME-NGFF 0.5 image written block by block.

On disk the volume directory is itself the image group: arrays ``0`` (full
resolution), ``1``, ... (each half the size), axes ``(z, y, x)`` in nanometres,
values the linear attenuation coefficient in µm⁻¹. ``attrs["sxtdist"]`` says what
made it and how far it got::

    {"version": 1, "kind": "volume", "status": "running" | "complete",
     "voxel_size_nm": ..., "provenance": {...}, "plan": {...},
     "blocks_done": [0, 3, ...], "stopping": {...}}

Only the client process updates ``blocks_done`` (after a block's write has
returned), so a block listed there is on disk whole. A complete volume records
what it must contain (``"contents"``: the chunks stored per level) and every
chunk carries a checksum, so :meth:`Volume.damage` tells a volume whose files
were lost since, and :func:`sxtdist.integrity.verify` one whose bytes were
damaged. Writers hold :func:`sxtdist.lock.write_lock`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import dask.array as da
import numpy as np
import zarr

from . import _version
from .dataset import KEY, SCHEMA_VERSION, _jsonable, _now, open_sxtdist_group
from .errors import InputError, OutputExistsError
from .geometry import VolumeGrid
from .io import ngff
from .outputs import (
    check_output,
    creating,
    first_named,
    rebuilt_strangers,
    remove,
    writing,
    written_here,
)

#: Coarser levels are made while every axis stays at least this long.
MIN_LEVEL_SIZE = 8
#: What a volume's values are (the label of its display channel).
VALUE_LABEL = "attenuation (1/um)"


class Volume:
    """An opened volume. ``level(n)`` is a lazy dask array; ``meta`` the sxtdist attributes."""

    def __init__(self, path: str, group: zarr.Group) -> None:
        self.path = path
        self.group = group

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.group.attrs[KEY])

    @property
    def status(self) -> str:
        return self.meta.get("status", "unknown")

    @property
    def voxel_size_nm(self) -> float:
        return float(self.meta["voxel_size_nm"])

    @property
    def n_levels(self) -> int:
        return len(ngff.level_scales(self.group))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.group["0"].shape)

    @property
    def grid(self) -> VolumeGrid:
        return VolumeGrid(self.shape, self.voxel_size_nm)

    def level(self, n: int = 0) -> da.Array:
        """Level ``n`` of the pyramid as a dask array (``0`` = full resolution)."""
        if not 0 <= n < self.n_levels:
            raise InputError(self.path, f"has levels 0..{self.n_levels - 1}, not {n}")
        return da.from_zarr(self.group[str(n)])

    @property
    def blocks_done(self) -> set[int]:
        return set(self.meta.get("blocks_done", []))

    def update_meta(self, **changes: Any) -> None:
        meta = self.meta
        meta.update(_jsonable(changes))
        self.group.attrs[KEY] = meta

    def mark_blocks_done(self, ids: Iterable[int]) -> None:
        done = self.blocks_done | {int(i) for i in ids}
        self.update_meta(blocks_done=sorted(done))

    def write_slices(self, z0: int, data: np.ndarray) -> None:
        """Write ``data`` (``(nz, ny, nx)``) into level 0 at slice ``z0``.

        The caller writes whole shards (the block plan aligns blocks to them).
        """
        arr = ngff.for_writing(self.group["0"])
        arr[z0 : z0 + data.shape[0]] = np.asarray(data, dtype=np.float32)

    def finalize(self, **meta: Any) -> int:
        """Build the coarser levels from level 0, record the contents, mark the volume complete.

        Each coarser level is deleted and built again: one where a user put files (since the
        output was checked) is refused (:class:`~sxtdist.errors.OutputExistsError`), the
        volume left unfinished and the files whole.
        """
        foreign = rebuilt_strangers(self.path)
        if foreign:
            raise OutputExistsError(
                self.path,
                f"holds files sxtdist did not write in the levels its last step builds again "
                f"({first_named(foreign)}): it is left alone, unfinished; move them, then run "
                "the same command again",
            )
        n = ngff.add_downsampled_levels(
            self.group, 8, ngff.VOLUME_AXES, "volume", chunks=(64, 64, 64), min_size=MIN_LEVEL_SIZE
        )
        ngff.update_display_window(self.group, VALUE_LABEL)
        contents = {str(i): self.group[str(i)].nchunks_initialized for i in range(n)}
        self.update_meta(status="complete", finished=_now(), levels=n, contents=contents, **meta)
        return n

    def damage(self) -> list[str]:
        """What a complete volume lacks of what it recorded (``[]`` when whole, or not complete).

        Counts the stored chunks of every level against ``"contents"`` (a directory
        listing, no data read) and the finished blocks against the plan.
        Unreadable bytes are found by :func:`sxtdist.integrity.verify`.
        """
        meta = self.meta
        if meta.get("status") != "complete":
            return []
        problems = []
        n_blocks = (meta.get("plan") or {}).get("n_blocks")
        if n_blocks is not None and len(self.blocks_done) != n_blocks:
            problems.append(f"{len(self.blocks_done)} of {n_blocks} blocks recorded done")
        for level, expected in (meta.get("contents") or {}).items():
            if level not in self.group:
                problems.append(f"level {level} is missing")
                continue
            stored = self.group[level].nchunks_initialized
            if stored < expected:
                problems.append(f"level {level} lacks {expected - stored} of {expected} chunks")
        return problems

    def __repr__(self) -> str:
        return f"Volume({self.path!r}, shape={self.shape}, voxel={self.voxel_size_nm} nm, {self.status})"


def create_volume(
    path: str | os.PathLike[str],
    grid: VolumeGrid,
    shard_z: int,
    chunk_z: int,
    attributes: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Volume:
    """Create an empty volume (status ``running``) for ``grid``.

    Level 0 is sharded ``(shard_z, ny, nx)`` along z so that each block of the
    plan writes whole shards; inner chunks are ``(chunk_z, ≤256, ≤256)``. The volume is
    built beside ``path`` and renamed into place (:func:`~sxtdist.outputs.creating`).
    Called from Python, ``path`` is claimed and locked as a command's output is
    (:func:`~sxtdist.outputs.writing`: refused while another run writes it, an old volume
    replaced only with ``overwrite``, swapped out whole); a writer that holds its lock
    already (:func:`~sxtdist.outputs.written_here`) creates it under that lock.
    """
    path = os.fspath(path)
    args = (grid, shard_z, chunk_z, attributes)
    if written_here(path):  # the caller's write (a reconstruction, a preview): its lock
        return _create(path, *args, overwrite=overwrite)
    with writing(path, "volume", overwrite=overwrite, beside=False) as target:
        _create(target.write_path, *args, overwrite=False)
    return Volume(path, zarr.open_group(path, mode="r+", zarr_format=3))


def _create(
    path: str,
    grid: VolumeGrid,
    shard_z: int,
    chunk_z: int,
    attributes: Mapping[str, Any] | None,
    overwrite: bool,
) -> Volume:
    """:func:`create_volume` at ``path``, whose lock the caller holds."""
    if check_output(path, "volume", overwrite=overwrite):  # only a volume is replaced
        remove(path)
    nz, ny, nx = grid.shape
    v = grid.voxel_size_nm
    chunk = (min(chunk_z, nz), min(256, ny), min(256, nx))
    shard = (min(shard_z, nz), ny, nx)
    # shards must be a multiple of chunks in every axis
    shard = tuple(-(-s // c) * c for s, c in zip(shard, chunk))
    meta = {
        "version": SCHEMA_VERSION,
        "kind": "volume",
        "status": "running",
        "software": f"sxtdist {_version.__version__}",
        "created": _now(),
        "voxel_size_nm": v,
        "unit": "1/um (linear attenuation coefficient)",
        "blocks_done": [],
        **_jsonable(dict(attributes or {})),
    }

    def build(folder: str) -> None:
        root = zarr.create_group(folder, zarr_format=3, overwrite=False)
        ngff.create_multiscale(
            root, "", [grid.shape], [[v, v, v]], ngff.VOLUME_AXES, chunks=[chunk], shards=[shard]
        )
        root.attrs[KEY] = meta

    # built beside and renamed in: stopped half-way, no folder at ``path`` that a re-run
    # could not tell from a user's
    creating(path, build)
    return Volume(path, zarr.open_group(path, mode="r+", zarr_format=3))


def open_volume(path: str | os.PathLike[str], mode: str = "r+") -> Volume:
    """Open and validate a volume written by sxtdist."""
    path = os.fspath(path)
    group = open_sxtdist_group(path, mode=mode)
    meta = group.attrs[KEY]
    if meta.get("kind") != "volume":
        raise InputError(
            path, f"is an sxtdist {meta.get('kind', 'dataset')}, not a reconstructed volume"
        )
    if "0" not in group:
        raise InputError(path, "volume has no level 0 array")
    ngff.validate_image(group)
    return Volume(path, group)


def is_volume(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an sxtdist volume (no validation)."""
    try:
        meta = zarr.open_group(os.fspath(path), mode="r").attrs.get(KEY, {})
    except Exception:
        return False
    return isinstance(meta, dict) and meta.get("kind") == "volume"
