"""Export a reconstructed volume (any pyramid level, optionally cropped) to MRC, TIFF or NGFF 0.4.

- **MRC** (``.mrc``, ``.rec``, ``.map``): mode 2 (float32), voxel size in the header
  (Å), the first voxel's position in the header origin; labels say what wrote
  it, from which volume, level and crop. IMOD, ChimeraX, Amira read it.
- **OME-TIFF** (``.ome.tif``, ``.ome.tiff``): float32 planes with OME-XML
  physical sizes (µm) and each plane's position, the provenance in the image
  description; BigTIFF above 4 GB. Fiji (Bio-Formats), QuPath, napari read it.
- **TIFF** (``.tif``, ``.tiff``): one multi-page float32 stack with ImageJ
  calibration (pixel size and z spacing in µm) for Fiji; above 4 GB a BigTIFF
  with OME-XML physical sizes instead (ImageJ's format cannot exceed 4 GB).
- **NGFF 0.4** (``.zarr``): an OME-Zarr 0.4 multiscale image in Zarr v2, written
  by ome-zarr-py, for viewers that do not read Zarr v3 yet (Fiji/MoBIE,
  older napari plugins, neuroglancer builds). The exported level becomes
  level 0 and coarser levels are rebuilt from it by 2×2×2 block means.

Positions are those of voxel centres in nm, as in the volume's NGFF metadata:
a level-``k`` voxel is the mean of a block of level-0 voxels, so its centre is
half a block beyond the block's first voxel centre (:mod:`sxtdist.io.ngff`).

Every file carries sxtdist's mark (MRC label 0, the TIFF ``Software`` tag, the
OME ``Creator``) so that what sxtdist wrote can be told from what it did not
(:func:`export_mark`).

Everything is written slab by slab beside ``OUT`` and renamed into place when
complete, so a failed export leaves nothing behind, and an existing export is
replaced only then (:mod:`sxtdist.outputs`: never the volume itself, a path
inside it, or a file without sxtdist's mark). A damaged volume
(:meth:`sxtdist.volume.Volume.damage`) is refused.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np

from .._progress import progress_bar
from .._version import __version__
from ..errors import (
    InputError,
    ParameterError,
    SxtdistWarning,
    option,
)
from ..file_kinds import MARK, export_mark  # how an export is recognised
from ..outputs import check_output, require_writable, writing
from ..volume import MIN_LEVEL_SIZE, open_volume
from . import ngff

logger = logging.getLogger(__name__)

FORMATS = {
    "mrc": (".mrc", ".rec", ".map"),
    "tiff": (".tif", ".tiff"),
    "zarr": (".zarr",),
}
#: Suffixes of OME-TIFF (a kind of ``tiff``).
OME_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff")
#: ImageJ TIFFs must stay below 4 GiB; larger stacks are written as BigTIFF + OME.
IMAGEJ_LIMIT = 2**32 - 2**25
#: How a message names the command that finishes a volume.
RECONSTRUCT_CLI = "'sxtdist reconstruct'"
#: Bytes per slab read and written at once.
SLAB_BYTES = 64 * 2**20


def format_from_suffix(out: str) -> str:
    """``mrc``, ``tiff`` or ``zarr`` from the output's suffix."""
    low = out.rstrip("/").lower()
    for fmt, suffixes in FORMATS.items():
        if low.endswith(suffixes):
            return fmt
    raise ParameterError(
        f"{out}: cannot tell the format from the suffix "
        f"(.mrc/.rec/.map, .tif/.tiff, .zarr); name it with {option('--format', 'fmt=')}"
    )


def parse_crop(text: str | None) -> tuple[slice, slice, slice] | None:
    """Parse ``"z0:z1,y0:y1,x0:x1"`` (voxels of the chosen level; empty ends allowed)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ParameterError(f"--crop: expected Z0:Z1,Y0:Y1,X0:X1, got {text!r}")
    out = []
    for p in parts:
        a, sep, b = p.partition(":")
        try:
            if not sep:
                raise ValueError
            out.append(slice(int(a) if a else None, int(b) if b else None))
        except ValueError:
            raise ParameterError(f"--crop: {p!r} is not START:STOP in voxels") from None
    return tuple(out)


def export_volume(
    volume: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fmt: str | None = None,
    level: int = 0,
    crop: Sequence[slice] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    allow_incomplete: bool = False,
) -> str:
    """Write level ``level`` of ``volume`` (cropped to ``crop``) to ``out``.

    Parameters
    ----------
    volume
        An sxtdist volume directory.
    out
        Output file (MRC, TIFF) or directory (``.zarr``).
    fmt
        ``mrc``, ``tiff`` or ``zarr``; from the suffix of ``out`` when None.
    level
        Pyramid level (0 = full resolution).
    crop
        Three slices ``(z, y, x)`` in voxels of that level (steps are not allowed).
    overwrite
        Replace an existing output.
    allow_incomplete
        Export a volume whose reconstruction has not finished (its missing blocks are
        zeros); refused otherwise.

    Returns
    -------
    str
        The path written.
    """
    out = os.fspath(out).rstrip("/")
    fmt = fmt or format_from_suffix(out)
    if fmt not in FORMATS:
        raise ParameterError(
            f"{option('--format', 'fmt')}: unknown format {fmt!r} "
            f"(choose from {', '.join(FORMATS)})"
        )
    check_output(out, "export", inputs=[volume], overwrite=overwrite, file=fmt != "zarr")
    require_writable(out, "export elsewhere")  # a read-only place told before the volume is read
    vol = open_volume(volume, mode="r")
    damage = vol.damage()
    if damage:
        raise InputError(
            vol.path,
            f"is damaged ({'; '.join(damage)}): reconstruct it again (sxtdist verify lists "
            "what is lost)",
        )
    if vol.status != "complete":
        n_blocks = vol.meta.get("plan", {}).get("n_blocks")
        done = f"{len(vol.blocks_done)} of {n_blocks}" if n_blocks else str(len(vol.blocks_done))
        if not allow_incomplete:
            raise InputError(
                vol.path,
                f"is unfinished ({vol.status}, {done} blocks written): run the same "
                f"{option(RECONSTRUCT_CLI, 'reconstruct()')} again to finish it, or "
                f"pass {option('--allow-incomplete', 'allow_incomplete=True')} to export it "
                "with zeros for the missing blocks",
            )
        warnings.warn(
            f"{vol.path} is {vol.status} ({done} blocks written): the rest are zeros",
            SxtdistWarning,
            stacklevel=2,
        )
    arr = vol.level(level)
    scale = [float(s) for s in ngff.level_scales(vol.group)[level]]
    crop = tuple(crop) if crop is not None else (slice(None),) * 3
    if len(crop) != 3 or any(s.step not in (None, 1) for s in crop):
        raise ParameterError("crop must be three slices (z, y, x) without steps")
    bounds = [s.indices(n)[:2] for s, n in zip(crop, arr.shape)]
    if any(b <= a for a, b in bounds):
        raise ParameterError(
            f"crop {_fmt_crop(crop)} is empty for level {level} of shape {tuple(arr.shape)}"
        )
    arr = arr[tuple(slice(a, b) for a, b in bounds)]
    translation = ngff.level_translations(vol.group)[level]
    # the first exported voxel's centre, nm: where the volume's metadata puts it
    origin = [a * s + t for (a, _), s, t in zip(bounds, scale, translation)]
    source = _Source(os.path.abspath(vol.path), level, bounds)
    logger.info(
        "exporting level %d %s of %s to %s (%s)", level, tuple(arr.shape), vol.path, out, fmt
    )
    with writing(out, "export", inputs=[volume], overwrite=overwrite, file=fmt != "zarr") as target:
        tmp = target.write_path
        if fmt == "mrc":
            _write_mrc(arr, tmp, scale, origin, source, progress)
        elif fmt == "tiff":
            ome = out.lower().endswith(OME_TIFF_SUFFIXES)
            _write_tiff(arr, tmp, scale, origin, source, ome, progress)
        else:
            _write_ngff04(arr, tmp, scale, origin, source)
    return out


@dataclass(frozen=True)
class _Source:
    """What an export was made from: written into every file as its provenance."""

    volume: str
    level: int
    bounds: list[tuple[int, int]]

    @property
    def crop(self) -> str:
        return ",".join(f"{a}:{b}" for a, b in self.bounds)

    def mrc_labels(self) -> list[str]:
        """Three MRC labels (80 characters at most each): mark, source, level and crop."""
        date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        source = self.volume if len(self.volume) <= 72 else "..." + self.volume[-69:]
        return [
            f"{MARK} {__version__} export {date}",
            f"source {source}",
            f"level {self.level} crop {self.crop} (z,y,x); values 1/um"[:80],
        ]

    def description(self) -> str:
        return (
            f"{MARK} {__version__} export of {self.volume}, level {self.level}, crop "
            f"{self.crop} (z,y,x voxels); values: linear attenuation coefficient (1/um)"
        )

    def attributes(self) -> dict:
        return {
            "software": f"{MARK} {__version__}",
            "source": self.volume,
            "level": self.level,
            "crop": [list(b) for b in self.bounds],
            "unit": "1/um (linear attenuation coefficient)",
        }


def _slabs(arr: da.Array):
    """Yield ``(z0, slab)`` of whole z-slices, about :data:`SLAB_BYTES` at a time."""
    nz, ny, nx = arr.shape
    step = max(1, min(nz, SLAB_BYTES // max(1, ny * nx * 4)))
    for z0 in range(0, nz, step):
        yield z0, np.ascontiguousarray(arr[z0 : z0 + step].compute(), dtype=np.float32)


def _write_mrc(
    arr: da.Array,
    path: str,
    scale: list[float],
    origin: list[float],
    source: _Source,
    progress: bool | None,
) -> None:
    import mrcfile

    nz, ny, nx = arr.shape
    stats = _Stats()
    # the header is made by mrcfile; the data go in with plain writes at the data
    # offset, not through the memory map, so resident memory stays at one slab
    with mrcfile.new_mmap(path, shape=(nz, ny, nx), mrc_mode=2, overwrite=True) as m:
        m.voxel_size = (scale[2] * 10.0, scale[1] * 10.0, scale[0] * 10.0)  # x, y, z in Å
        m.header.origin = (origin[2] * 10.0, origin[1] * 10.0, origin[0] * 10.0)
        labels = source.mrc_labels()
        m.header.label = [t.encode("ascii", "replace") for t in labels] + [b""] * (10 - len(labels))
        m.header.nlabl = len(labels)
        offset = 1024 + int(m.header.nsymbt)
        m.flush()
        with open(path, "r+b") as fh, progress_bar(nz, "export mrc", progress, "slice") as adv:
            for z0, slab in _slabs(arr):
                stats.add(slab)
                fh.seek(offset + z0 * ny * nx * 4)
                fh.write(slab.astype("<f4", copy=False).tobytes())
                adv(slab.shape[0])
        m.header.dmin, m.header.dmax, m.header.dmean, m.header.rms = stats.result()


def _write_tiff(
    arr: da.Array,
    path: str,
    scale: list[float],
    origin: list[float],
    source: _Source,
    ome: bool,
    progress: bool | None,
) -> None:
    """An ImageJ TIFF, or an OME-TIFF when asked (``.ome.tif``) or above 4 GB."""
    import tifffile

    nz, ny, nx = arr.shape
    sz, sy, sx = (s / 1e3 for s in scale)  # µm
    big = arr.size * 4 > IMAGEJ_LIMIT

    def frames():
        with progress_bar(nz, "export tiff", progress, "slice") as adv:
            for _, slab in _slabs(arr):
                yield from slab
                adv(slab.shape[0])

    if ome or big:
        oz, oy, ox = (o / 1e3 for o in origin)  # µm
        writer_kwargs = {"bigtiff": big, "ome": True}
        metadata = {
            "axes": "ZYX",
            "Creator": f"{MARK} {__version__}",
            "Name": os.path.basename(source.volume),
            "Description": source.description(),
            "PhysicalSizeX": sx,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": sy,
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": sz,
            "PhysicalSizeZUnit": "µm",
            "Plane": {
                "PositionX": [ox] * nz,
                "PositionXUnit": ["µm"] * nz,
                "PositionY": [oy] * nz,
                "PositionYUnit": ["µm"] * nz,
                "PositionZ": [oz + k * sz for k in range(nz)],
                "PositionZUnit": ["µm"] * nz,
            },
        }
    else:
        writer_kwargs = {"imagej": True}
        metadata = {"axes": "ZYX", "spacing": sz, "unit": "um"}
    try:
        with tifffile.TiffWriter(path, **writer_kwargs) as tif:
            tif.write(
                frames(),
                shape=(nz, ny, nx),
                dtype=np.float32,
                resolution=(1.0 / sx, 1.0 / sy),
                contiguous=True,
                software=source.description().encode("ascii", "backslashreplace").decode()[:200],
                metadata=metadata,
            )
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise short_write(path, exc) from exc


def short_write(path: str, exc: OSError) -> OSError:
    """The :class:`OSError` that a write which came up short without an ``errno`` stands
    for (NumPy's ``tofile``, which tifffile writes with: "4096 requested and 896 written"):
    ``EFBIG`` where ``path`` reached this process's file-size limit (``ulimit -f``),
    ``ENOSPC`` where its file system has no free block, else ``EIO`` with ``exc``'s text.
    It names no file, so that the output is named (not the name it is written under)."""
    import errno
    import resource

    size = os.path.getsize(path) if os.path.exists(path) else 0
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size >= limit:
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    disk = os.statvfs(os.path.dirname(os.path.abspath(path)))
    if disk.f_bavail == 0:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, f"{os.strerror(errno.EIO)} ({exc})")


def _write_ngff04(
    arr: da.Array, path: str, scale: list[float], origin: list[float], source: _Source
) -> None:
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscale

    chunks = tuple(min(64, n) for n in arr.shape)
    pyramid = [arr.astype(np.float32).rechunk(chunks)]
    scales = [scale]
    while len(pyramid) < 8:
        prev = pyramid[-1]
        shape = tuple(n // 2 for n in prev.shape)
        if min(shape) < MIN_LEVEL_SIZE:
            break
        # block means over whole 2x2x2 cells (edge voxels that do not fill one are dropped)
        trimmed = prev[tuple(slice(0, 2 * n) for n in shape)]
        trimmed = trimmed.rechunk(tuple(max(2, (c // 2) * 2) for c in chunks))
        coarse = da.coarsen(np.mean, trimmed, {0: 2, 1: 2, 2: 2}).astype(np.float32)
        pyramid.append(coarse.rechunk(tuple(min(64, n) for n in shape)))
        scales.append([s * 2 for s in scales[-1]])
    axes = [{"name": a, "type": t, "unit": u} for a, t, u in ngff.VOLUME_AXES]
    transforms = [
        [{"type": "scale", "scale": s}, {"type": "translation", "translation": t}]
        for s, t in zip(scales, ngff.pyramid_translations(scales, origin))
    ]
    group = zarr.open_group(path, mode="w", zarr_format=2)
    with warnings.catch_warnings():
        # explicit per-level transforms are exact (2x per level, crop offset); ome-zarr
        # deprecates the argument in favour of scales inferred from shape ratios
        warnings.simplefilter("ignore", DeprecationWarning)
        write_multiscale(
            pyramid,
            group,
            fmt=FormatV04(),
            axes=axes,
            coordinate_transformations=transforms,
            storage_options=[{"chunks": p.chunksize} for p in pyramid],
            axes_units={a: u for a, _, u in ngff.VOLUME_AXES},
            name="volume",
        )
    group.attrs["sxtdist_export"] = source.attributes()


class _Stats:
    """Running min, max, mean and RMS deviation (for the MRC header)."""

    def __init__(self) -> None:
        self.n = 0
        self.s = 0.0
        self.s2 = 0.0
        self.lo = np.inf
        self.hi = -np.inf

    def add(self, x: np.ndarray) -> None:
        x64 = x.astype(np.float64)
        self.n += x.size
        self.s += float(x64.sum())
        self.s2 += float((x64 * x64).sum())
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def result(self) -> tuple[float, float, float, float]:
        mean = self.s / self.n
        return self.lo, self.hi, mean, float(np.sqrt(max(self.s2 / self.n - mean * mean, 0.0)))


def _fmt_crop(crop: Sequence[slice]) -> str:
    return ",".join(
        f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}" for s in crop
    )


__all__ = ["FORMATS", "export_mark", "export_volume", "format_from_suffix", "parse_crop"]
