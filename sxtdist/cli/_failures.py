"""Every failure of the ``sxtdist`` command as one line and an exit code.

- 2: bad input (:class:`~sxtdist.errors.SxtdistError`, a usage error of an option);
- 1: the environment failed (an :class:`OSError`: disk full, file too large,
  read-only file system, permission, name too long or not UTF-8 ...), memory ran
  out, or a bug in sxtdist (with ``--debug`` its traceback is shown instead).

An error raised in a Dask worker reaches the client as the same exception, so it
is told the same way.
"""

from __future__ import annotations

import errno
import os
import re

import click

from ..errors import SxtdistError, one_line, printable

#: Set by ``--debug`` (:func:`sxtdist.cli._options.verbosity_options`): failures keep
#: their traceback.
DEBUG = {"on": False}

#: What a user can do about an environment failure, by ``errno``.
OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space (or write elsewhere) and run the same "
    "command again; an unfinished reconstruction resumes",
    errno.EDQUOT: "the disk quota is used up: free space and run the same command again",
    errno.EFBIG: "a file grew past the size allowed (ulimit -f, or the file system's limit)",
    errno.EROFS: "the file system is read-only: write the output elsewhere",
    errno.EACCES: "no permission: write the output elsewhere or change its permissions",
    errno.EPERM: "not permitted: write the output elsewhere or change its permissions",
    errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter one",
}


def describe(exc: BaseException) -> tuple[int, str]:
    """``(exit code, one line)`` for a failure that reached the command line."""
    if isinstance(exc, SxtdistError):
        return exc.exit_code, one_line(str(exc))
    if isinstance(exc, click.UsageError):
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return 2, one_line(exc.format_message()) + where
    if isinstance(exc, click.ClickException):
        return exc.exit_code or 2, one_line(exc.format_message())
    if isinstance(exc, OSError):
        return 1, _os_error(exc)
    code = _rust_os_error(exc)
    if code is not None:
        return 1, _os_error(OSError(code, os.strerror(code)))
    if isinstance(exc, MemoryError):
        return 1, "out of memory: use smaller blocks (--block-size) or a machine with more memory"
    kind = type(exc).__name__
    return 1, f"internal error ({kind}: {one_line(str(exc))}); run with --debug for the traceback"


def _os_error(exc: OSError) -> str:
    what = exc.strerror or one_line(exc)
    names = [printable(n) for n in (exc.filename, exc.filename2) if n is not None]
    text = f"{' -> '.join(names)}: {what}" if names else what
    hint = OS_HINTS.get(exc.errno)
    return f"{text} ({hint})" if hint else text


def _rust_os_error(exc: BaseException) -> int | None:
    """The ``errno`` of an I/O error raised by zarrs (Rust) as ``RuntimeError: ... (os error 28)``."""
    found = re.search(r"\(os error (\d+)\)", str(exc)) if isinstance(exc, RuntimeError) else None
    return int(found[1]) if found else None
