"""MRC/IMOD tilt series (``.mrc``, ``.st``, ``.ali``, ...) with ``.rawtlt``/``.tlt`` angles.

The header is read with mrcfile; frames are read with plain file reads at the
data offset (not a memory map, whose touched pages would count as resident
memory for the whole stack). Angles come from a sidecar file with the same
stem: ``.rawtlt`` (IMOD's nominal angles, right for a raw stack we align
ourselves) before ``.tlt`` (refined by tiltalign), then SerialEM's ``NAME.mrc.mdoc``
or ``NAME.mdoc`` (``TiltAngle`` of each ``ZValue``, :func:`mdoc_beside`); without one,
from the extended header where the microscope wrote them (FEI1/FEI2 ``Alpha tilt``, SerialEM's tilt
angles, :func:`header_tilts`). The scan's ``source.angles_from`` says which.

The pixel size is the header's voxel size (Å). IMOD writes a cell equal to the
image size (1 Å per pixel) when the pixel size is unknown, so 1 Å and 0 are
read as "not set" (as is a sampling ``mx`` of 0, which makes it infinite).

Mode 0 bytes are signed in MRC2014 (as mrcfile reads them) but unsigned in IMOD,
which writes them so unless its flags (header bytes 152-159: the stamp
1146047817, then bit 1 "bytes are signed") say otherwise. A stack with IMOD's
stamp follows its flag; one without follows its header range (``dmin >= 0`` and
``dmax > 127`` can only be unsigned), else MRC2014.
"""

from __future__ import annotations

import logging
import os
import warnings

import mrcfile
import numpy as np
from mrcfile.dtypes import get_ext_header_dtype
from mrcfile.utils import data_dtype_from_header

from ..errors import InputError, keyword, one_line
from .source import (
    FrameSource,
    check_dtype,
    check_shape,
    number,
    read_angles_file,
    square_pixel,
)

SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".preali", ".map", ".rec")
ANGLE_SUFFIXES = (".rawtlt", ".tlt")
HEADER_BYTES = 1024
#: IMOD's stamp: the next header word holds its bit flags.
IMOD_STAMP = 1146047817
#: IMOD's flag "mode 0 bytes are stored as signed".
IMOD_SIGNED_BYTES = 1
#: The bit of an FEI1/FEI2 record's ``Bitmask 1`` that says its ``Alpha tilt`` is valid: bits
#: 0-15 are the 16 fields from ``Timestamp`` to ``Pixel size Y`` in their order (``Alpha
#: tilt`` the 8th), 16-21 the unused range, 22-31 ``Defocus`` to ``Magnification`` (Thermo
#: Fisher's MRC2014 extended header; mrcfile.dtypes names the fields in that order).
FEI_ALPHA_TILT_BIT = 7

logger = logging.getLogger(__name__)


def _nm(angstrom: float) -> float | None:
    """A header sampling in nm; 0 and 1 Å (IMOD's "unknown") are not set."""
    return angstrom / 10.0 if np.isfinite(angstrom) and angstrom > 1.0 else None


def unsigned_bytes(path: str, header: np.recarray) -> bool:
    """Whether a mode 0 stack holds unsigned bytes (IMOD's way) rather than signed (MRC2014)."""
    with open(path, "rb") as f:
        raw = f.read(160)
    stamp, flags = np.frombuffer(raw[152:160], dtype=header.dtype["mode"])
    if int(stamp) == IMOD_STAMP:
        return not int(flags) & IMOD_SIGNED_BYTES
    return float(header.dmin) >= 0 and float(header.dmax) > 127


def header_tilts(
    m: mrcfile.mrcobject.MrcObject, name: str = "the MRC file"
) -> tuple[np.ndarray, str] | None:
    """The tilt angle of each section from the extended header, and where it was read, or
    ``None``: FEI1/FEI2 (Thermo Fisher EPU/Tomo) records' ``Alpha tilt`` (degrees), or
    SerialEM's shorts (tilt x 100, first in each section's ``nint`` bytes when bit 1 of
    ``nreal`` says so). Angles that are all equal or not finite are no tilt series: ``None``;
    so are FEI records whose ``Bitmask 1`` marks ``Alpha tilt`` not valid (in any section; a
    note naming ``name`` is logged)."""
    header, nz = m.header, int(m.header.nz)
    exttyp = bytes(header.exttyp)
    if int(header.nsymbt) <= 0 or nz < 2:
        return None
    if exttyp in (b"FEI1", b"FEI2"):
        records = _fei_records(m)
        if records is None:
            return None
        records = _fei_section_records(records, nz, exttyp.decode(), name)
        tilts, where = np.asarray(records["Alpha tilt"], float), f"{exttyp.decode()} Alpha tilt"
        valid = (np.asarray(records["Bitmask 1"], np.uint32) >> FEI_ALPHA_TILT_BIT) & 1
        if not np.all(valid):  # the microscope says the field holds no tilt: not read
            logger.info(
                "%s: the %s extended header's Alpha tilt is marked not valid (Bitmask 1 bit %d) "
                "in %d of %d records: not used",
                name,
                exttyp.decode(),
                FEI_ALPHA_TILT_BIT,
                int(np.sum(valid == 0)),
                valid.size,
            )
            return None
    else:
        order = header.mode.dtype.byteorder
        nint, nreal = np.frombuffer(bytes(header.extra1)[:4], dtype=f"{order}i2")
        if not _serialem(exttyp, int(nint), int(nreal)):
            return None
        held = m.extended_header.nbytes // int(nint)
        if held < nz:
            if exttyp != b"SERI":  # flags that only look like SerialEM's: no tilts, as before
                return None
            raise InputError(
                name,
                f"the SerialEM extended header holds records for {held} sections ({int(nint)} "
                f"bytes each) and the stack has {nz}: which tilt is whose is not known; give "
                f"the angles with {keyword('angles')} (or a .rawtlt beside the stack)",
            )
        raw = np.frombuffer(m.extended_header.tobytes()[: int(nint) * nz], np.uint8)
        tilts = raw.reshape(nz, int(nint))[:, :2].copy().view(f"{order}i2")[:, 0] / 100.0
        where = "SerialEM tilt angles"
    if not np.all(np.isfinite(tilts)) or np.ptp(tilts) == 0:
        return None
    return tilts.astype(float), f"the extended header ({where})"


def _fei_records(m: mrcfile.mrcobject.MrcObject) -> np.ndarray | None:
    """Every record of an FEI1/FEI2 extended header (as many as it holds, not only ``nz``:
    mrcfile's ``indexed_extended_header`` gives the first ``nz``, or nothing where there are
    fewer), or ``None`` where its first record is not of that type's size."""
    dtype = get_ext_header_dtype(bytes(m.header.exttyp), m.header.mode.dtype.byteorder)
    raw = m.extended_header.tobytes()
    if len(raw) < dtype.itemsize:
        return None
    if int(np.frombuffer(raw[: dtype.itemsize], dtype)["Metadata size"][0]) != dtype.itemsize:
        return None  # records of another size: not read as these (no angles)
    return np.frombuffer(raw[: len(raw) // dtype.itemsize * dtype.itemsize], dtype)


def _fei_section_records(records: np.ndarray, nz: int, exttyp: str, name: str) -> np.ndarray:
    """The ``nz`` records of an FEI1/FEI2 extended header that belong to the sections.

    Thermo Fisher's software reserves room for more records than a stack has sections (the
    older FEI header always held 1024, unused ones zero): records past the ``nz``-th whose
    ``Alpha tilt`` is not marked valid are that room, and the first ``nz`` are the
    sections'. Past ones holding a valid tilt (a stack cut after it was written), or fewer
    records than sections, leave which tilt is whose unknown: an :class:`InputError`
    (:func:`open_mrc` keeps it as the angles' error, which ``--angles`` replaces).
    """
    fix = f"give the angles with {keyword('angles')} (or a .rawtlt beside the stack)"
    if len(records) < nz:
        raise InputError(
            name,
            f"the {exttyp} extended header has {len(records)} records for {nz} sections: "
            f"which tilt is whose is not known; {fix}",
        )
    spare = records[nz:]
    used = (np.asarray(spare["Bitmask 1"], np.uint32) >> FEI_ALPHA_TILT_BIT) & 1
    if np.any(used):
        raise InputError(
            name,
            f"the {exttyp} extended header has {len(records)} records for {nz} sections and "
            f"{int(used.sum())} past the {nz}th hold a tilt (a stack cut after it was "
            f"written?): which tilt is whose is not known; {fix}",
        )
    if len(spare):
        logger.debug("%s: %d spare %s records past the %d sections", name, len(spare), exttyp, nz)
    return records[:nz]


def mdoc_tilts(path: str, nz: int) -> np.ndarray:
    """The ``TiltAngle`` of each ``[ZValue = k]`` section of a SerialEM ``.mdoc``, k = 0..nz-1.

    An ``.mdoc`` with more or fewer sections than the stack's ``nz`` is refused naming both
    counts: it is another stack's, or this one's before sections were added or dropped.
    """
    tilts: dict[int, float] = {}
    z, sections = None, 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from exc
    for n, line in enumerate(lines, 1):
        key, _, value = (p.strip() for p in line.strip().strip("[]").partition("="))
        try:
            if key == "ZValue":
                z, sections = int(value), sections + 1
            elif key == "TiltAngle" and z is not None:
                text = value.split()[0] if value else value
                tilts[z] = number(text)
        except ValueError:
            raise InputError(path, f"line {n}: {line.strip()!r} is not a number") from None
    if sections != nz:
        raise InputError(
            path,
            f"has {sections} sections ([ZValue]) for the stack's {nz}: not this stack's "
            f"SerialEM log as it stands; correct it, move it away or give {keyword('angles')}",
        )
    missing = [k for k in range(nz) if k not in tilts]
    if missing:
        raise InputError(
            path, f"has no TiltAngle for section {missing[0]} ({len(tilts)} of the stack's {nz})"
        )
    return np.array([tilts[k] for k in range(nz)], float)


def mdoc_beside(path: str, nz: int) -> tuple[np.ndarray, str] | None:
    """The tilts of SerialEM's ``.mdoc`` beside the stack and its path, or ``None``: SerialEM
    names it ``STACK.mrc.mdoc``, users and other programs ``STACK.mdoc``. Both there and
    saying different tilts: refused, naming both (which one is this stack's is not known)."""
    names = dict.fromkeys((path + ".mdoc", os.path.splitext(path)[0] + ".mdoc"))
    found = [(mdoc_tilts(c, nz), c) for c in names if os.path.isfile(c)]
    if len(found) == 2 and not np.allclose(found[0][0], found[1][0], rtol=0, atol=1e-6):
        (a, first), (b, second) = found
        k = int(np.argmax(np.abs(a - b)))
        raise InputError(
            path,
            f"two SerialEM logs beside it disagree: {first} and {second} (section {k}: "
            f"TiltAngle {a[k]:g} and {b[k]:g}); remove or rename the one that is not this "
            f"stack's, or give {keyword('angles')}",
        )
    return found[0] if found else None


def _sidecar_angles(path: str, nz: int) -> tuple[np.ndarray | None, str | None]:
    """The angles of a sidecar beside the stack and its path: ``STEM.rawtlt``, ``STEM.tlt``,
    then SerialEM's ``.mdoc`` (:func:`mdoc_beside`); ``(None, None)`` where there is none."""
    for sfx in ANGLE_SUFFIXES:
        cand = os.path.splitext(path)[0] + sfx
        if os.path.isfile(cand):
            return read_angles_file(cand), cand
    mdoc = mdoc_beside(path, nz)  # SerialEM's: name.mrc.mdoc, or name.mdoc
    return (None, None) if mdoc is None else mdoc


#: SerialEM's ``nreal`` flags and the bytes each takes in a section's record (IMOD's
#: mrc_format.txt): tilt x 100, montage piece, stage x 25, magnification / 100,
#: intensity x 25000, dose.
SERIALEM_BYTES = {1: 2, 2: 6, 4: 4, 8: 2, 16: 2, 32: 4}


def _serialem(exttyp: bytes, nint: int, nreal: int) -> bool:
    """Whether ``nint``/``nreal`` are SerialEM's (bytes per section, flags) with the tilt
    angle: exttyp ``SERI``, or flags all known whose bytes add up to ``nint`` (an Agard
    header's counts of integers and reals rarely do)."""
    if nint < 2 or nreal <= 0 or not nreal & 1:
        return False
    if exttyp == b"SERI":
        return True
    if nreal & ~sum(SERIALEM_BYTES):
        return False
    return sum(b for bit, b in SERIALEM_BYTES.items() if nreal & bit) == nint


def open_mrc(path: str | os.PathLike[str]) -> FrameSource:
    """Open an MRC stack; its frames are the z sections."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    try:
        with warnings.catch_warnings():
            # mrcfile's own use of numpy (NumPy 2.5 deprecates setting an array's dtype):
            # nothing a user can act on, shown on every import
            warnings.filterwarnings("ignore", "Setting the dtype", DeprecationWarning)
            with mrcfile.open(path, mode="r", header_only=True, permissive=False) as m:
                header = m.header.copy()
                try:
                    tilts, tilts_error = header_tilts(m, path), None
                except InputError as exc:  # refused where used: a sidecar or --angles replace it
                    tilts, tilts_error = None, exc
    except Exception as exc:  # mrcfile raises ValueError for bad maps, mode, size
        raise InputError(path, f"not a readable MRC file ({one_line(exc)})") from exc
    mx, my = int(header.mx), int(header.my)
    voxel = float(header.cella.x) / mx if mx > 0 else 0.0  # Å; mx = 0: no sampling given
    height = float(header.cella.y) / my if my > 0 else 0.0
    try:
        dtype = data_dtype_from_header(header)
    except ValueError as exc:
        raise InputError(
            path, f"MRC mode {int(header.mode)} is not a supported pixel type ({one_line(exc)})"
        ) from exc
    if int(header.mode) == 0 and unsigned_bytes(path, header):
        dtype = np.dtype(np.uint8)  # one byte: no byte order to keep
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
    angles_error = None
    try:
        angles, angles_file = _sidecar_angles(path, nz)
    except InputError as exc:  # refused when used: --angles replaces a sidecar, even this one
        angles, angles_file, angles_error = None, None, exc
    angles_from = angles_file
    if angles is None and angles_error is None:
        if tilts is not None:
            angles, angles_from = tilts  # no sidecar: the tilts the microscope wrote
        angles_error = tilts_error
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
        angles_error=angles_error,
        pixel_size_nm=square_pixel(path, _nm(voxel), _nm(height)),
        extra={
            "mrc_mode": int(header.mode),
            "angles_file": angles_file,
            "angles_from": angles_from,
            "unsigned_bytes": bool(dtype == np.uint8),
        },
        closer=fh.close,
    )
