"""How a file sxtdist wrote is told from any other, for every kind of file it writes.

:func:`sxtdist.outputs.recognise` asks these (:data:`FILE_KINDS`) before a file is replaced,
removed or named as a stopped write's (:mod:`sxtdist.leftovers`). They live here, read by
:mod:`sxtdist.outputs`, and not in the modules that write the files (report, preview, batch,
export), so that every kind is known whatever a Python user imported: registered by those
modules, a report's unfinished write was "a file sxtdist did not write" to a session that had
not imported :mod:`sxtdist.report`. This module imports nothing of sxtdist's, so that every
writer can read its marks from here without an import cycle.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

#: The first rows of a report's two CSV files and its PNG's ``Software`` text.
METRICS_HEADER = ["metric", "value", "unit", "note"]
CURVES_HEADER = ["curve", "x", "x_unit", "y"]
REPORT_SOFTWARE = "sxtdist report"
#: The PNG text key of a preview's layout, and the layout's ``kind``.
LAYOUT_KEY = "Description"
LAYOUT_KIND = "sxtdist preview"
#: How a batch summary sxtdist wrote begins (this version's columns, or an earlier one's).
SUMMARY_START = "cell,status,seconds,"
#: What every exported file's mark starts with (MRC label 0, TIFF Software tag).
MARK = "sxtdist"
#: The key of a motion file's mark (:func:`sxtdist.simulation.motion.write_motion` writes
#: it first: ``{"sxtdist": {"kind": "motion", ...}, "full": ...}``), and how such a file
#: begins. A user's own motion file, in the same format without it, is the user's.
MOTION_KEY = "sxtdist"
MOTION_START = re.compile(rb'\s*\{\s*"sxtdist"\s*:\s*\{\s*"kind"\s*:\s*"motion"')


def first_line(path: str | os.PathLike[str]) -> str | None:
    """The first line of a text file (stripped), or None when it is not UTF-8 text."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline(4096).strip()
    except (OSError, UnicodeDecodeError):
        return None


def _png_head(path: str) -> bytes:
    """The first 64 KiB of ``path`` when it is a PNG (where its text chunks are), else b""."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return b""
    return head if head.startswith(b"\x89PNG") else b""


def is_report(path: str) -> bool:
    """A report file sxtdist wrote: a CSV with one of its headers, a PNG with its text."""
    if path.lower().endswith(".png"):
        return b"Software\x00" + REPORT_SOFTWARE.encode() in _png_head(path)
    return first_line(path) in (",".join(METRICS_HEADER), ",".join(CURVES_HEADER))


def is_preview(path: str) -> bool:
    """A PNG whose layout text says sxtdist's preview wrote it."""
    return f'{LAYOUT_KEY}\x00{{"kind": "{LAYOUT_KIND}"'.encode() in _png_head(path)


def is_summary(path: str) -> bool:
    """A batch summary sxtdist wrote: a CSV that begins with its columns."""
    return (first_line(path) or "").startswith(SUMMARY_START)


def is_motion(path: str) -> bool:
    """A motion file sxtdist wrote: JSON that begins with its mark (:data:`MOTION_START`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return MOTION_START.match(head.removeprefix(b"\xef\xbb\xbf")) is not None


def export_mark(path: str | os.PathLike[str]) -> str | None:
    """The provenance sxtdist wrote into an exported MRC or TIFF, or None.

    Returns MRC label 0 or the TIFF ``Software`` tag (``"sxtdist 0.1.0 ..."``)
    when the file carries sxtdist's mark; None for any other file, one that
    cannot be read, or a directory (an NGFF export holds ``sxtdist_export`` in
    its attributes instead).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile  # only for a TIFF: recognising the other kinds stays light

        try:
            with tifffile.TiffFile(path) as t:
                tag = t.pages.first.tags.get("Software")
        except Exception:  # not a readable TIFF: not ours
            return None
        text = str(tag.value) if tag is not None else ""
    elif len(head) == 1024 and head[208:212] == b"MAP ":
        text = head[224:304].decode("ascii", "replace")  # label 0
    else:
        return None
    return text.strip() if text.startswith(MARK + " ") else None


#: How to tell a file of each kind sxtdist writes (``is_ours(path)``, no exceptions).
FILE_KINDS: dict[str, Callable[[str], bool]] = {
    "export": lambda path: export_mark(path) is not None,
    "summary": is_summary,
    "report": is_report,
    "preview": is_preview,
    "motion": is_motion,
}
