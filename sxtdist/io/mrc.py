"""MRC/IMOD tilt series (``.mrc``, ``.st``, ``.ali``, ...) with ``.rawtlt``/``.tlt`` angles.

The header is read with mrcfile; frames are read with plain file reads at the
data offset (not a memory map, whose touched pages would count as resident
memory for the whole stack). Angles come from a sidecar file with the same
stem: ``.rawtlt`` (IMOD's nominal angles, right for a raw stack we align
ourselves) before ``.tlt`` (refined by tiltalign).

The pixel size is the header's voxel size (Å). IMOD writes a cell equal to the
image size (1 Å per pixel) when the pixel size is unknown, so 1 Å and 0 are
read as "not set".
"""

from __future__ import annotations

import os

import mrcfile
import numpy as np
from mrcfile.utils import data_dtype_from_header

from ..errors import InputError, one_line
from .source import FrameSource, check_dtype, check_shape, read_angles_file

SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".preali", ".map", ".rec")
ANGLE_SUFFIXES = (".rawtlt", ".tlt")
HEADER_BYTES = 1024


def open_mrc(path: str | os.PathLike[str]) -> FrameSource:
    """Open an MRC stack; its frames are the z sections."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=False) as m:
            header = m.header.copy()
            voxel = float(m.voxel_size.x)
    except Exception as exc:  # mrcfile raises ValueError for bad maps, mode, size
        raise InputError(path, f"not a readable MRC file ({one_line(exc)})") from exc
    try:
        dtype = data_dtype_from_header(header)
    except ValueError as exc:
        raise InputError(
            path, f"MRC mode {int(header.mode)} is not a supported pixel type ({one_line(exc)})"
        ) from exc
    dtype = check_dtype(path, dtype, f"MRC mode {int(header.mode)} data")
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    shape = check_shape(path, (nz, ny, nx))
    offset = HEADER_BYTES + int(header.nsymbt)
    frame_bytes = ny * nx * dtype.itemsize
    expected = offset + nz * frame_bytes
    size = os.path.getsize(path)
    if size < expected:
        first = max(0, size - offset) // frame_bytes
        raise InputError(
            path,
            f"truncated: frame {first} of {nz} ends past the end of the file ({nz} sections "
            f"of {ny}x{nx} {dtype} need {expected} bytes, the file has {size})",
        )
    angles, angles_file = None, None
    for sfx in ANGLE_SUFFIXES:
        cand = os.path.splitext(path)[0] + sfx
        if os.path.isfile(cand):
            angles, angles_file = read_angles_file(cand), cand
            break
    fh = open(path, "rb")  # closed by FrameSource.close

    def reader(i0: int, i1: int) -> np.ndarray:
        count = (i1 - i0) * ny * nx
        fh.seek(offset + i0 * frame_bytes)
        data = np.fromfile(fh, dtype=dtype, count=count)
        if data.size != count:
            raise InputError(path, f"truncated at section {i0}")
        return data.reshape(i1 - i0, ny, nx)

    return FrameSource(
        path=path,
        format="mrc",
        shape=shape,
        dtype=dtype,
        reader=reader,
        angles_deg=angles,
        pixel_size_nm=voxel / 10.0 if voxel > 1.0 else None,
        extra={"mrc_mode": int(header.mode), "angles_file": angles_file},
        closer=fh.close,
    )
