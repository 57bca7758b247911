"""sxtdist's messages: stdlib :mod:`logging` under the ``sxtdist`` logger.

Every module logs to ``logging.getLogger(__name__)``: status lines at INFO, details
at DEBUG. Conditions a user should look at and can correct are
``warnings.warn(..., SxtdistWarning)``. As a library sxtdist configures nothing
(its logger has only a ``NullHandler``); the CLI, or a notebook that wants the status
lines, calls :func:`configure_logging`::

    import sxtdist
    sxtdist.configure_logging()          # status lines on standard error
    sxtdist.configure_logging(-1)        # warnings and errors only

Standard error gets the bare message (``sxtdist: warning: ...`` for problems); a
log file gets every line with its time, level and logger.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import InputError, printable

ROOT = "sxtdist"
#: Verbosity (``-q`` = -1, default 0, ``-v`` = 1) to the level shown on standard error.
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: How a log file's line that :data:`FILE_FORMAT` wrote begins: what tells a log file of
#: sxtdist's, which ``log_file`` may append to, from any other file.
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ sxtdist[.:]")

logging.getLogger(ROOT).addHandler(logging.NullHandler())

#: Threads whose status lines are details (:func:`cell_messages_as_details`).
_DETAIL_THREADS: set[int] = set()


class _DetailThreads(logging.Filter):
    """A handler's filter: an INFO line from a thread in :data:`_DETAIL_THREADS` is
    handled as DEBUG (so only a handler that takes DEBUG lines shows it)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.thread in _DETAIL_THREADS:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.handler.level


@contextmanager
def cell_messages_as_details() -> Iterator[None]:
    """In this thread, within the block, status lines count as details (``-v`` shows them).

    For a batch: each cell's reconstruction says what it does, which a batch of many
    cells running at once would bury its own lines under; a log file keeps them all.
    """
    me = threading.get_ident()
    _DETAIL_THREADS.add(me)
    try:
        yield
    finally:
        _DETAIL_THREADS.discard(me)


class _TerminalFormatter(logging.Formatter):
    """The message alone for status lines; ``sxtdist: warning:`` before problems."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"sxtdist: {record.levelname.lower()}: {text}"
        elif record.levelno < logging.INFO:
            text = f"{record.name}: {text}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(
    verbosity: int = 0, log_file: str | os.PathLike[str] | None = None, stream: Any = None
) -> logging.Logger:
    """Show sxtdist's messages on standard error (and in ``log_file``); returns its logger.

    Parameters
    ----------
    verbosity
        ``-1`` (or less): warnings and errors; ``0``: status lines too; ``1`` (or more):
        details too.
    log_file
        Also append every message from DEBUG up, with times, to this file.
    stream
        Where the terminal lines go (default: standard error at the time of the call).

    Calling it again replaces what an earlier call set up.
    """
    reset_logging()
    logger = logging.getLogger(ROOT)
    level = LEVELS[max(-1, min(1, int(verbosity)))]
    terminal = logging.StreamHandler(stream if stream is not None else sys.stderr)
    terminal.setLevel(level)
    terminal.setFormatter(_TerminalFormatter())
    handlers: list[logging.Handler] = [terminal]
    if log_file is not None:
        check_log_file(log_file)
        file = logging.FileHandler(os.fspath(log_file), encoding="utf-8")
        file.setLevel(logging.DEBUG)
        file.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(file)
    for h in handlers:
        h._sxtdist = True  # type: ignore[attr-defined]
        h.addFilter(_DetailThreads(h))
        logger.addHandler(h)
    logger.setLevel(min(h.level for h in handlers))
    return logger


def check_log_file(path: str | os.PathLike[str]) -> None:
    """Refuse a log file that is there and is not one to append to: only an empty file or a
    log sxtdist wrote (its first line begins as :data:`FILE_FORMAT` writes one,
    :data:`LOG_LINE`) is appended to, so that a slip (``--log-file vol.zarr/zarr.json``, an
    export's MRC, a user's CSV) never writes into a file of another kind. A device or a
    pipe (``/dev/stderr``) is written to as it is. No log file, new or not, is put inside
    a Zarr dataset (``cell.zarr/run.log`` would be a file sxtdist did not write in it).

    Raises
    ------
    InputError
        ``path`` is a plain file of another kind, or lies inside a Zarr dataset; it is
        untouched.
    """
    path = os.fspath(path)
    _refuse_another_kind(path)
    _refuse_inside_zarr(path)


def _refuse_another_kind(path: str) -> None:
    """Refuse a plain file there that is neither empty nor a log of sxtdist's."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return  # a new or empty file, a device, a pipe; a folder: the handler's error
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:  # absent (made), or the handler's open names what is wrong
        return
    if not LOG_LINE.match(head):
        raise InputError(
            path,
            "is not a log file of sxtdist's (its lines begin with a time, a level and "
            "'sxtdist'): a log is appended only to such a file or an empty or new one, never "
            "into a file of another kind; name another log file",
        )


def _refuse_inside_zarr(path: str) -> None:
    """Refuse a log file in a folder at or below a Zarr node (an acquisition, a volume,
    one of their scans or levels), a new file there too: it would be one sxtdist did not
    write in the dataset."""
    from .outputs import is_zarr_node  # here: a log without a file imports no outputs

    folder = os.path.dirname(os.path.realpath(path))
    while True:  # every folder above: a log deep inside a volume's level too
        if is_zarr_node(folder):
            raise InputError(
                path,
                f"lies inside the Zarr dataset {printable(folder)}: a log file there would "
                "change it; write the log elsewhere",
            )
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def reset_logging() -> None:
    """Remove what :func:`configure_logging` set up (sxtdist's logger back to silent)."""
    logger = logging.getLogger(ROOT)
    for h in [h for h in logger.handlers if getattr(h, "_sxtdist", False)]:
        logger.removeHandler(h)
        h.close()
    logger.setLevel(logging.NOTSET)


@contextmanager
def warnings_as_log_lines() -> Iterator[None]:
    """Within the block, show each warning as one log line (``sxtdist: warning: ...``).

    For the CLI: Python's own display names the file and repeats the source line.
    """
    logger = logging.getLogger(f"{ROOT}.warnings")
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        from .errors import SxtdistWarning

        text = str(message).strip().replace("\n", " ")
        if not issubclass(category, SxtdistWarning):
            text = f"{text} ({category.__name__})"
        logger.warning(text)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


__all__ = [
    "cell_messages_as_details",
    "configure_logging",
    "reset_logging",
    "warnings_as_log_lines",
]
