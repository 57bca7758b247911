"""A stack of projections in someone else's file format, read frame by frame.

Every reader (:mod:`.tiff`, :mod:`.mrc`, :mod:`.nxtomo`, :mod:`.txrm`) returns a
:class:`FrameSource`: the stack's shape, what the file says about angles, pixel
size and energy, its flat and dark fields if it holds them, and a
``read(i0, i1)`` that returns frames ``i0 .. i1-1`` only. Nothing reads the
whole stack at once, so a stack larger than memory imports in bounded memory.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError, SxtdistWarning, keyword, one_line

logger = logging.getLogger(__name__)

#: Pixel width and height further apart than this (relative) draw a warning.
SQUARE_TOLERANCE = 0.01

#: How to install the codecs of compressed inputs (imagecodecs for TIFF, hdf5plugin for HDF5).
CODECS_INSTALL = 'pip install "sxtdist[codecs]"'

#: Pixel data types a projection may have (anything else is the wrong mode).
REAL_KINDS = "uif"


@dataclass(frozen=True)
class FlatSeries:
    """Flat fields taken in sets at several points of a scan (before and after it, or
    inside it), for a flat per projection: the beam decays or drifts between the sets.

    The sets are read when a projection needs them and a few kept, so memory stays at a
    few frames however many sets the scan has; each is read from the file once where the
    projections are read in order.

    Parameters
    ----------
    positions
        ``(k,)`` where each set was taken: the mean file frame index of its frames
        (a set of frames 0..9 stands for the beam at 4.5), increasing.
    frames
        ``(n,)`` the file frame index of each projection.
    load
        ``load(j)`` reads set ``j``'s average ``(rows, cols)``.
    """

    positions: np.ndarray
    frames: np.ndarray
    load: Callable[[int], np.ndarray]
    _kept: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    #: Sets kept read: a block of projections spans at most a few (they are read in order).
    KEPT = 3

    def field(self, j: int) -> np.ndarray:
        """Set ``j``'s average flat (float32), read once while it is in use."""
        with self._lock:
            if j not in self._kept:
                if len(self._kept) >= self.KEPT:
                    self._kept.pop(next(iter(self._kept)))
                self._kept[j] = np.asarray(self.load(j), np.float32)
            return self._kept[j]

    def at(self, i0: int, i1: int) -> np.ndarray:
        """The flats of projections ``i0 .. i1-1``, ``(i1-i0, rows, cols)``: linear in frame
        index between the nearest sets before and after each one, the nearest set's
        outside them (as tomoscan and httomo weight reduced flats)."""
        p = np.asarray(self.frames[i0:i1], float)
        hi = np.clip(np.searchsorted(self.positions, p, side="right"), 1, len(self.positions) - 1)
        lo = hi - 1
        span = self.positions[hi] - self.positions[lo]
        w = np.clip((p - self.positions[lo]) / span, 0.0, 1.0).astype(np.float32)
        return np.stack(
            [(1 - wk) * self.field(a) + wk * self.field(b) for a, b, wk in zip(lo, hi, w)]
        )

    def mapped(self, fn: Callable[[np.ndarray], np.ndarray]) -> FlatSeries:
        """The same sets, each passed through ``fn`` (a crop, an exposure scaling) when read.

        The new series takes each set from this one's :meth:`field`, not from ``load``: a set
        this one has read already (the first, read on opening) is not read from the file again.
        """
        return replace(self, load=lambda j: fn(self.field(j)))


def flat_sets(keys: np.ndarray, flat_key: int = 1, projection_key: int = 0) -> list[np.ndarray]:
    """The file frame indices of each set of flats: flats with no projection between them
    (darks or invalid frames may be) are one set."""
    flats = np.flatnonzero(keys == flat_key)
    proj = np.flatnonzero(keys == projection_key)
    if flats.size == 0:
        return []
    # a projection between two flats (its count before the second grows) starts a new set
    before = np.searchsorted(proj, flats)
    cuts = np.flatnonzero(np.diff(before) > 0) + 1
    return np.split(flats, cuts)


@dataclass
class FrameSource:
    """A projection stack opened for reading.

    Parameters
    ----------
    path
        The file (or folder) it came from; errors name it.
    format
        Short name of the reader (``tiff``, ``mrc``, ``nxtomo``, ``txrm``).
    shape
        ``(frames, rows, cols)`` of the projections (flats and darks excluded).
    dtype
        Pixel type on disk.
    reader
        ``reader(i0, i1) -> ndarray (i1-i0, rows, cols)``; not thread-safe, the
        :class:`FrameSource` serialises calls.
    angles_deg, pixel_size_nm, energy_ev, exposure_s
        What the file says, or ``None``.
    angles_error
        Why the angles of a file beside it (an MRC's ``.rawtlt`` or ``.mdoc``) cannot be
        read, raised where they would be used: ``--angles`` replaces them.
    flat, dark
        Averaged flat and dark fields ``(rows, cols)`` held by the file, or ``None``. Where
        ``flat_series`` is set, ``flat`` is its first set's average (the series replaces it).
    flat_series
        The file's flats as sets taken at two or more points of the scan
        (:class:`FlatSeries`), or ``None`` (one set: ``flat`` is the flat of every frame).
    unreadable
        Why a value the file holds (``pixel_size_nm``, ``energy_ev``, ``exposure_s``) cannot
        be read (a unit not known), by key: raised where it would be used, unless the user
        gives the value.
    values
        What the pixel values are if the format says (``"intensity"`` for raw
        detector counts), else ``None``.
    extra
        More metadata to keep with the scan.
    closer
        Called by :meth:`close`.
    """

    path: str
    format: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    reader: Callable[[int, int], np.ndarray]
    angles_deg: np.ndarray | None = None
    angles_error: InputError | None = None
    pixel_size_nm: float | None = None
    energy_ev: float | None = None
    exposure_s: float | None = None
    flat: np.ndarray | None = None
    dark: np.ndarray | None = None
    flat_series: FlatSeries | None = None
    unreadable: dict[str, InputError] = field(default_factory=dict)
    values: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    closer: Callable[[], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Frames ``i0 .. i1-1`` as an array ``(i1-i0, rows, cols)`` in the file's type."""
        with self._lock:  # file handles are not safe to share between threads
            try:
                out = self.reader(i0, i1)
            except InputError:
                raise
            except Exception as exc:  # a damaged file fails in many ways; the user needs one line
                raise InputError(
                    self.path, f"cannot read frames {i0}..{i1 - 1} ({one_line(exc)})"
                ) from exc
        expected = (i1 - i0, *self.shape[1:])
        if out.shape != expected:
            raise InputError(
                self.path, f"frames {i0}..{i1 - 1} have shape {out.shape}, expected {expected}"
            )
        return out

    def mean(self) -> np.ndarray:
        """The average of all frames, one at a time (for flat and dark files)."""
        acc = np.zeros(self.shape[1:], dtype=np.float64)
        for i in range(self.n_frames):
            acc += self.read(i, i + 1)[0]
        return (acc / self.n_frames).astype(np.float32)

    def cropped(
        self, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None
    ) -> FrameSource:
        """The same stack seen through a window ``rows = (start, stop)``, ``cols = (start, stop)``.

        Flat and dark are cropped alike. The new source owns the file: close it, not this one.
        """
        n, h, w = self.shape
        r0, r1 = check_window(self.path, rows, h, keyword("crop_rows"))
        c0, c1 = check_window(self.path, cols, w, keyword("crop_cols"))
        if (r0, r1, c0, c1) == (0, h, 0, w):
            return self

        def reader(i0: int, i1: int) -> np.ndarray:
            return self.read(i0, i1)[:, r0:r1, c0:c1]

        def crop(img: np.ndarray | None) -> np.ndarray | None:
            return None if img is None else img[r0:r1, c0:c1]

        closer, self.closer = self.closer, None
        return replace(
            self,
            shape=(n, r1 - r0, c1 - c0),
            reader=reader,
            flat=crop(self.flat),
            dark=crop(self.dark),
            flat_series=None
            if self.flat_series is None
            else self.flat_series.mapped(lambda f: f[r0:r1, c0:c1]),
            extra={**self.extra, "crop": [[r0, r1], [c0, c1]], "uncropped_shape": [h, w]},
            closer=closer,
            _lock=threading.Lock(),
        )

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_window(
    path: str, window: tuple[int, int] | None, size: int, option: str
) -> tuple[int, int]:
    """``(start, stop)`` of a crop along an axis of ``size`` pixels (``None``: all of it)."""
    if window is None:
        return 0, size
    start, stop = (int(v) for v in window)
    if not 0 <= start < stop <= size:
        raise InputError(
            path, f"{option} {start}:{stop} is not inside the frame's 0:{size} (start < stop)"
        )
    return start, stop


def check_dtype(path: str, dtype: np.dtype, what: str = "pixel data") -> np.dtype:
    """Refuse complex, boolean or structured pixel types with one line."""
    dtype = np.dtype(dtype)
    if dtype.kind not in REAL_KINDS or dtype.itemsize > 8:
        raise InputError(path, f"{what} has type {dtype}, not a real number type")
    return dtype


def check_shape(path: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A projection stack must be ``(frames, rows, cols)`` with all three non-zero."""
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise InputError(path, f"expected a stack of 2D images, got an array of shape {shape}")
    if min(shape) < 1:
        raise InputError(path, f"the stack is empty (shape {shape})")
    return tuple(int(s) for s in shape)


def read_angles_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Angles in degrees, one per line (IMOD ``.tlt``/``.rawtlt``, or any text list).

    Blank lines and ``#`` comments are skipped; several numbers on a line are read
    left to right, separated by spaces, tabs, semicolons or commas. A typographic minus
    (U+2212) and a trailing degree sign, as a list copied from a document has them, are
    read as a minus and nothing. A decimal comma (``-60,5``, a European locale's) is read
    where it is one: the file has no decimal point, and no comma in it can only be a
    separator; a number list such as ``-60,5,-59,5`` that reads either way is refused,
    naming the line (:func:`decimal_commas`). A table with a header row naming its columns
    (``angle,exposure``, ``Tilt;Dose``, as a spreadsheet exports it) gives the column whose
    name says angle, tilt or theta (:func:`header_column`).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark (Excel) is no angle
            text = f.read()
    except OSError as exc:
        raise InputError(path, f"cannot read the angle list ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise InputError(path, "is not a text file of angles (not UTF-8)") from None
    rows = [line.split("#", 1)[0].replace("\u2212", "-") for line in text.splitlines()]
    table = header_column(path, rows)
    if table is not None:
        return table
    lines = [[t for t in re.split(r"[;\s]+", row) if t] for row in rows]
    comma = decimal_commas(path, lines)
    values: list[float] = []
    for n, tokens in enumerate(lines, 1):
        for tok in tokens:
            for part in [tok] if comma else tok.split(","):
                if not part:
                    continue
                try:  # a list pasted from a document: a degree sign
                    values.append(float(part.removesuffix("°").replace(",", ".")))
                except ValueError:
                    raise InputError(path, f"line {n}: {part!r} is not a number") from None
    if not values:
        raise InputError(path, "the angle list is empty")
    angles = np.asarray(values, float)
    if not np.all(np.isfinite(angles)):
        raise InputError(path, "the angle list contains NaN or inf")
    return angles


#: A column name that says it holds the angles (``Angle``, ``tilt angle (deg)``, ``theta``).
_ANGLE_COLUMN = re.compile(r"angle|tilt|theta", re.IGNORECASE)


def header_column(path: str, rows: list[str]) -> np.ndarray | None:
    """The angle column of a table whose first row names its columns, or ``None`` where the
    first row (comments removed) is numbers: no header.

    The header's separator (a semicolon, else a tab, else a comma, else spaces) splits every
    row; the one column whose name matches angle, tilt or theta is read, with a decimal
    comma where the separator is not a comma. A header naming no such column, or two, and a
    row of another width are refused naming the line: which column is the angle is then a
    guess. Named columns are what makes ``-60,4`` two numbers provably.
    """
    numbered = [(n, row.strip()) for n, row in enumerate(rows, 1) if row.strip()]
    if not numbered:
        return None
    n0, head = numbered[0]
    sep = next((c for c in ";\t," if c in head), None)
    names = [c.strip() for c in (head.split(sep) if sep else head.split())]
    if all(_is_number(c) for c in names):
        return None
    hits = [i for i, c in enumerate(names) if _ANGLE_COLUMN.search(c)]
    if len(hits) != 1:
        said = "no column" if not hits else f"{len(hits)} columns"
        raise InputError(
            path,
            f"line {n0}: {head!r} is a header naming {said} of angles (angle, tilt or theta); "
            "name one column so, or give one angle per line",
        )
    col, values = hits[0], []
    for n, row in numbered[1:]:
        cells = [c.strip() for c in (row.split(sep) if sep else row.split())]
        if len(cells) != len(names):
            raise InputError(
                path, f"line {n}: {len(cells)} values under a header of {len(names)} ({head!r})"
            )
        cell = cells[col].removesuffix("°")
        try:
            values.append(float(cell if sep == "," else cell.replace(",", ".", 1)))
        except ValueError:
            raise InputError(path, f"line {n}: {cells[col]!r} is not a number") from None
    if not values:
        raise InputError(path, f"line {n0}: a header ({head!r}) and no angles under it")
    logger.info("%s: angles from column %r of %d", path, names[col], len(names))
    return np.asarray(values, float)


def _is_number(text: str) -> bool:
    try:
        float(text.removesuffix("°").replace(",", ".", 1))
    except ValueError:
        return not text  # an empty cell is no name either
    return True


#: A number written with one decimal comma: sign, digits, comma, digits.
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+°?")


def decimal_commas(path: str, lines: list[list[str]]) -> bool:
    """Whether the commas of an angle list (``lines`` of tokens split at spaces, tabs and
    semicolons) are decimal commas (``True``) or separate numbers (``False``).

    Separators when the file has a decimal point, or a comma in it can only separate
    (``-60,-58``, ``0,10,20``: an odd count of parts, or a signed part after a comma);
    otherwise a token with one comma is one number (``-60,5``, one per line or separated
    by spaces or semicolons), and one with more (``-60,5,-59,5``: two numbers, or four) is
    refused as ambiguous, naming its line. So is a list whose lines' whole parts count
    up by one from 0 or 1 with differing decimals (``0,0`` ``1,2`` ``2,4``: an index and an
    angle, as a spreadsheet exports a 0..180 scan, or decimals); ``0,0`` ``1,0`` ``2,0``
    are read as decimals. A list whose lines all have the same digits after the comma
    (``-60,2`` ``-58,2``: an angle and an exposure, or decimals) is refused unless only
    decimals can read it (:func:`second_column`).
    """
    tokens = [t for line in lines for t in line]
    if not any("," in t for t in tokens) or any("." in t for t in tokens):
        return False
    if any("," in t and not _could_be_decimal(t) for t in tokens):
        return False
    fix = "write decimals with a point, or separate the numbers with spaces, tabs or semicolons"
    for n, line in enumerate(lines, 1):
        for tok in line:
            if tok.count(",") > 1:
                raise InputError(
                    path,
                    f"line {n}: {tok!r} is ambiguous: its commas may be decimal commas or "
                    f"separate numbers; {fix}",
                )
    numbered = [(n, line[0]) for n, line in enumerate(lines, 1) if line]
    if len(numbered) >= 3 and all(len(line) < 2 and "," in line[0] for line in lines if line):
        whole = np.array([int(tok.split(",")[0]) for _, tok in numbered])
        after = {tok.split(",")[1] for _, tok in numbered}  # one step's decimals: all alike
        if whole[0] in (0, 1) and np.all(np.diff(whole) == 1) and len(after) > 1:
            n, tok = numbered[0]
            raise InputError(
                path,
                f"line {n}: {tok!r} is ambiguous: the numbers before the commas count up by "
                f"one, as an index column does (index, angle) or decimals may; {fix}",
            )
    if numbered and all(len(line) < 2 for line in lines):
        second_column(path, [tok for _, tok in numbered])
    return True


def _evenly_spaced(values: np.ndarray) -> bool:
    """Whether ``values`` step by one non-zero amount (to a millionth of a degree)."""
    steps = np.diff(values)
    return bool(steps.size and steps[0] != 0 and np.allclose(steps, steps[0], rtol=0, atol=1e-6))


def second_column(
    path: str,
    tokens: list[str],
    each: str = "line",
    fix: str = "use a decimal point, or one angle per line",
) -> None:
    """Refuse a list, one number per line (``each``: per name, per value), whose numbers all
    have the same digits after the comma (``-60,2`` ``-58,2`` ... ``60,2``): the hallmark of an angle and a second column (an
    exposure of 2 s) as much as of decimals, and read as decimals it would be -60.2, -58.2 ...
    without a word.

    All zeros after the comma read the same either way (``-60,0``: -60). Otherwise only the
    zero crossing tells the two apart: decimals evenly spaced through zero (``-1,5`` ``-0,5``
    ``0,5``; a column of angles would hold -1, 0, 0), in any order, are read; a list whose part before the
    comma is what is evenly spaced (``-2,5`` ``0,5`` ``2,5``: -2.5, 0.5, 2.5 as decimals), or
    that does not cross zero (``10,5`` ``12,5``: 10.5 or 10 at 5 s), is refused: an
    :class:`InputError` naming ``path`` and ending in ``fix``.
    """
    numbers = [tok.removesuffix("°") for tok in tokens]
    if not all("," in tok for tok in numbers):  # a line without one has no second column
        return
    # each reading in its own order: a list in acquisition order, names sorted as text
    decimals = np.sort([float(tok.replace(",", ".")) for tok in numbers])
    before = np.sort([float(tok.split(",")[0]) for tok in numbers])
    after = {tok.split(",")[1] for tok in numbers}
    if len(after) > 1:
        _changing_second_column(path, tokens, before, decimals, each, fix)
        return
    if not after.pop().strip("0"):
        return
    if _evenly_spaced(decimals) and not _evenly_spaced(before):
        return
    raise InputError(
        path,
        f"every {each} is one number with the same digits after its comma ({tokens[0]!r}, "
        f"{tokens[-1]!r}): an angle with a second column ({tokens[0]!r}: "
        f"{numbers[0].split(',')[0]} degrees, then an exposure or a count) as much as a decimal "
        f"comma; {fix}",
    )


def _changing_second_column(
    path: str, tokens: list[str], before: np.ndarray, decimals: np.ndarray, each: str, fix: str
) -> None:
    """Refuse a list of three or more whose parts before the commas step evenly (``-60``
    ``-58`` ``-56``) while the parts after them differ (``-60,4`` ``-58,3`` ``-56,4``): an
    angle with a second column that changes (an exposure lengthened at high tilt, a count,
    a frame number) as much as decimals, and read as decimals every angle would be off by a
    tenth, a hundredth ... of that column.

    Decimals whose parts after the comma change make whole parts that do not step evenly:
    a planned scan's steps of 1.5 or 0.25 degrees (``-3,0`` ``-1,5`` ``0,0``: -3, -1, 0),
    read-back angles that straddle the planned ones (``-60,02`` ``-57,98``), a Saxton
    scheme's shrinking steps. Those read. ``before`` and ``decimals`` are the two readings,
    sorted.
    """
    if len(tokens) < 3 or not _evenly_spaced(before):
        return
    seconds = [tok.removesuffix("°").split(",")[1] for tok in tokens[:3]]
    raise InputError(
        path,
        f"every {each} is one number with a comma, the numbers before the commas step evenly "
        f"by {before[1] - before[0]:g} and those after differ ({', '.join(seconds)}, ...): an "
        f"angle with a second column ({tokens[0]!r}: {tokens[0].split(',')[0]} degrees, then "
        f"an exposure or a count of {seconds[0]}) as much as decimals "
        f"({', '.join(f'{d:g}' for d in decimals[:3])}, ...); {fix}",
    )


def decimal_comma(text: str | None) -> bool:
    """Whether ``text`` is one number written with a decimal comma (``-60,5``)."""
    return text is not None and _DECIMAL_COMMA.fullmatch(text.strip()) is not None


def number(text: str) -> float:
    """``text`` as a number, one decimal comma (``-60,5``, :func:`decimal_comma`) read as a
    point, a typographic minus (U+2212) as a minus and a trailing degree sign as nothing (as
    angle lists have them); :class:`ValueError` where it is none."""
    text = text.strip().replace("\u2212", "-")
    return float((text.replace(",", ".") if decimal_comma(text) else text).removesuffix("°"))


def _could_be_decimal(token: str) -> bool:
    """Whether ``token``'s commas can all be decimal commas: numbers ``a,b`` joined by commas."""
    parts = token.split(",")
    if len(parts) % 2:
        return False
    return all(_DECIMAL_COMMA.fullmatch(f"{a},{b}") for a, b in zip(parts[::2], parts[1::2]))


def square_pixel(path: str, width_nm: float | None, height_nm: float | None) -> float | None:
    """The pixel width a file gives; a warning where its height differs (sxtdist's geometry
    takes square pixels: the volume would come out stretched along the rotation axis)."""
    if width_nm and height_nm and abs(height_nm - width_nm) > SQUARE_TOLERANCE * width_nm:
        warnings.warn(
            f"{path}: the pixels are {width_nm:g} nm wide and {height_nm:g} nm tall; sxtdist "
            f"takes square pixels of the width, so the volume comes out stretched along the "
            f"rotation axis by {height_nm / width_nm:.3g} (resample the stack to square pixels)",
            SxtdistWarning,
            stacklevel=3,
        )
    return width_nm
