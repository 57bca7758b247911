"""Errors that a user can act on.

Everything raised as :class:`SxtdistError` is a problem with the input or the
environment, not a bug: the command line prints it as one line and exits with
code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def printable(path: str | os.PathLike[str]) -> str:
    """``path`` as text that any terminal can show (undecodable bytes as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def quoted(path: str | os.PathLike[str]) -> str:
    """``path`` for a command a message suggests: :func:`printable`, quoted for a shell
    (a path with a space or a quote is then copied and pasted as one argument)."""
    import shlex

    return shlex.quote(printable(path))


def no_such_file(path: str | os.PathLike[str]) -> str:
    """What to say of a missing ``path``: no such file, and, where the same name exists in
    the other Unicode form (macOS writes names decomposed: u + a combining diaeresis for
    ü), that spelling, which looks the same."""
    import unicodedata

    text = os.fsdecode(path)
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, text)
        if other != text and os.path.exists(other):
            return (
                f"no such file or directory, but {printable(other)} is: the same name in "
                "another Unicode form (as macOS writes it); give that spelling"
            )
    return "no such file or directory"


def one_line(error: BaseException | str) -> str:
    """The first non-blank line of an error's message (stripped): what a one-line message
    quotes of an exception (tracebacks and hints below it dropped). An exception with no
    message gives its type's name; text with none, ``""``."""
    text = error if isinstance(error, str) else str(error)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "" if isinstance(error, str) else type(error).__name__


#: What a user can do about an environment failure (an :class:`OSError`), by ``errno``.
OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space (or write elsewhere) and run the same "
    "command again",
    errno.EDQUOT: "the disk quota is used up: free space and run the same command again",
    errno.EFBIG: "a file grew past the size allowed (ulimit -f, or the file system's limit)",
    errno.EROFS: "the file system is read-only: write the output elsewhere",
    errno.EACCES: "no permission: write the output elsewhere or change its permissions",
    errno.EPERM: "not permitted: write the output elsewhere or change its permissions",
    errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter one",
}


#: The ``errno`` of a failed write that concern the file written (:func:`os_error`).
FILE_ERRNOS = (*OS_HINTS, errno.EIO)


def naming(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """``exc`` as an :class:`OSError` naming ``path``: the place the user named rather than a
    file sxtdist keeps beside it (a lock, a marker, a file being written), or than none."""
    return OSError(exc.errno, exc.strerror or one_line(exc), os.fspath(path))


def os_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> OSError | None:
    """The :class:`OSError` that ``exc`` is: itself, or an I/O error of zarrs (Rust), raised
    as ``RuntimeError("No space left on device (os error 28)")``, as an ``OSError`` with that
    ``errno`` naming ``path`` (as is one that names no file, a failed write); None for any
    other exception."""
    if isinstance(exc, OSError):
        # a file system's failure (not a socket's: a lost connection names no output)
        if exc.filename is None and path is not None and exc.errno in FILE_ERRNOS:
            return naming(exc, path)
        return exc
    found = re.search(r"\(os error (\d+)\)", str(exc)) if isinstance(exc, RuntimeError) else None
    if found is None:
        return None
    code = int(found[1])
    return OSError(code, os.strerror(code), *(() if path is None else (os.fspath(path),)))


def describe_os_error(exc: OSError, resumes: bool = False) -> str:
    """One line for an environment failure: the file(s), what failed, what to do about it
    (:data:`OS_HINTS`, or the exception's own ``hint``: what sxtdist knows of this failure,
    :func:`with_hint`); ``resumes``: the command resumes what it left unfinished (a
    reconstruction), said where running it again is the advice."""
    what = exc.strerror or one_line(exc)
    names = [printable(n) for n in (exc.filename, exc.filename2) if n is not None]
    text = f"{' -> '.join(names)}: {what}" if names else what
    own = getattr(exc, "hint", None)
    hint = own if isinstance(own, str) else OS_HINTS.get(exc.errno)
    if hint and own is None and resumes and "run the same command again" in hint:
        hint += "; an unfinished reconstruction resumes"
    return f"{text} ({hint})" if hint else text


def with_hint(exc: OSError, path: str | os.PathLike[str], hint: str) -> OSError:
    """``exc`` naming ``path``, told with ``hint`` instead of :data:`OS_HINTS`' advice
    (:func:`describe_os_error`)."""
    named = naming(exc, path)
    named.hint = hint  # type: ignore[attr-defined]  # kept when pickled (the __dict__)
    return named


class SxtdistError(Exception):
    """A problem the user can fix (bad input, bad configuration, a busy output)."""

    exit_code = 2


class InputError(SxtdistError):
    """A file or directory that cannot be used as asked.

    Parameters
    ----------
    path
        The file or directory at fault; it leads the message.
    problem
        What is wrong with it, in words a user understands.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fsdecode(path)
        self.problem = problem
        super().__init__(f"{printable(self.path)}: {problem}" if self.path else problem)

    def __reduce__(self):  # raised on a Dask worker, re-raised in the client as it was
        return type(self), (self.path, self.problem)


class OutputExistsError(InputError):
    """The output already exists and overwriting it was not asked for."""


class OutputLockedError(InputError):
    """Another run is writing the same output."""


class ParameterError(SxtdistError):
    """A parameter value that cannot work (negative sizes, unknown names)."""


class SxtdistWarning(UserWarning):
    """A condition the user should look at and can correct (shown as one line by the CLI)."""


#: Whether messages name choices by the command line's words (while the CLI runs).
_cli_words = False
#: The arguments of the ``sxtdist`` command running (while the CLI runs), else None.
_cli_args: list[str] | None = None


def option(cli: str, python: str) -> str:
    """Name a choice in a message the way the user makes it.

    ``cli`` (``"--overwrite"``) while a command of the ``sxtdist`` program runs,
    ``python`` (``"overwrite=True"``) for a call from Python: a notebook user is
    not told about flags they cannot pass.
    """
    return cli if _cli_words else python


@contextmanager
def command_line_words(args: Sequence[str] | None = None) -> Iterator[None]:
    """Within the block (the CLI's ``main``), :func:`option` names command-line flags, and
    :func:`command_line` gives the command that runs (its arguments ``args``).

    A process-wide switch, not per thread: the CLI's helper threads speak its words too.
    """
    global _cli_words, _cli_args
    before = _cli_words, _cli_args
    _cli_words, _cli_args = True, None if args is None else [str(a) for a in args]
    try:
        yield
    finally:
        _cli_words, _cli_args = before


def command_line() -> str | None:
    """The ``sxtdist`` command running, quoted for a shell, or None (a call from Python)."""
    if _cli_args is None:
        return None
    import shlex

    return shlex.join(["sxtdist", *_cli_args])


def keyword(name: str, cli: str | None = None) -> str:
    """:func:`option` for a keyword parameter ``name`` whose flag is ``--name-with-dashes``.

    ``keyword("pixel_size_nm")`` is ``"--pixel-size-nm"`` on the command line and
    ``"pixel_size_nm="`` from Python; ``cli`` names a flag spelled otherwise.
    """
    return option(cli or "--" + name.replace("_", "-"), f"{name}=")


def use_overwrite(to: str = "replace it") -> str:
    """``"use --overwrite to replace it"`` (or ``overwrite=True`` from Python)."""
    return f"use {option('--overwrite', 'overwrite=True')} to {to}"
