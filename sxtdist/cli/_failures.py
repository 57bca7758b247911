"""Every failure of the ``sxtdist`` command as one line and an exit code.

- 2: bad input (:class:`~sxtdist.errors.SxtdistError`, a usage error of an option);
- 1: the environment failed (an :class:`OSError`: disk full, file too large,
  read-only file system, permission, name too long or not UTF-8 ...), memory ran
  out, or a bug in sxtdist (with ``--debug`` its traceback is shown instead).

An error raised in a Dask worker reaches the client as the same exception, so it
is told the same way.
"""

from __future__ import annotations

import click

from ..errors import SxtdistError, describe_os_error, one_line, os_error

#: Set by ``--debug`` (:func:`sxtdist.cli._options.verbosity_options`): failures keep
#: their traceback.
DEBUG = {"on": False}


#: The commands that resume what they left unfinished when run again.
RESUMING = ("reconstruct", "batch")


def describe(exc: BaseException, command: str | None = None) -> tuple[int, str]:
    """``(exit code, one line)`` for a failure that reached the command line (of the
    ``sxtdist`` command ``command``, when known)."""
    if isinstance(exc, SxtdistError):
        return exc.exit_code, one_line(str(exc))
    if isinstance(exc, click.UsageError):
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return 2, one_line(exc.format_message()) + where
    if isinstance(exc, click.ClickException):
        return exc.exit_code or 2, one_line(exc.format_message())
    failed = os_error(exc)  # an OSError, or zarrs' I/O error it stands for
    if failed is not None:
        return 1, describe_os_error(failed, resumes=command in RESUMING)
    if type(exc).__name__ == "KilledWorker" and type(exc).__module__.startswith("distributed"):
        return 1, workers_died(exc, command)
    if isinstance(exc, MemoryError):
        return 1, "out of memory: use smaller blocks (--block-size) or a machine with more memory"
    kind = type(exc).__name__
    return 1, f"internal error ({kind}: {one_line(str(exc))}); run with --debug for the traceback"


def workers_died(exc: BaseException, command: str | None = None) -> str:
    """One line for Dask giving up on a task whose workers died running it
    (``KilledWorker``): its own text names a task key and a worker address, and said as an
    "internal error" it read as a bug of sxtdist. A worker dies of the memory limit (the
    nanny kills it at 95 %), of a signal, or of a job's walltime."""
    tries = getattr(exc, "allowed_failures", 2) + 1
    again = "; the finished blocks stay: run the same command again to resume"
    return (
        f"{tries} worker processes died running the same task (killed: for memory, each "
        "worker's --memory-limit or its job's memory too small for a block, or on a batch "
        "queue at its job's walltime): give the workers more memory or time, or use smaller "
        "blocks (--block-size)" + (again if command in RESUMING else "")
    )
