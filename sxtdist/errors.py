"""Errors that a user can act on.

Everything raised as :class:`SxtdistError` is a problem with the input or the
environment, not a bug: the command line prints it as one line and exits with
code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


def printable(path: str | os.PathLike[str]) -> str:
    """``path`` as text that any terminal can show (undecodable bytes as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
