"""Whether the machine can hold a plan: refuse, before anything is written, what cannot fit.

A voxel of 0.001 nm makes a grid of hundreds of terabytes; planning its blocks
alone would take hours. These checks run first and say the size in one line.
"""

from __future__ import annotations

import errno
import os
import shutil

import psutil

from .errors import ParameterError


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it above 1 (``"1.5 GiB"``)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{int(n)} B" if i == 0 else f"{n:.4g} {units[i]}"


def disk_bytes(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(total, free)`` bytes of the file system that holds (or will hold) ``path``."""
    p = os.path.abspath(os.fspath(path))
    while not os.path.exists(p):
        p = os.path.dirname(p)
    usage = shutil.disk_usage(p)
    return usage.total, usage.free


def require_disk(path: str | os.PathLike[str], nbytes: float, what: str) -> None:
    """Refuse writing ``nbytes`` (``what``, for the message) where the disk has less free.

    More than the whole file system holds is a :class:`ParameterError` (bad input,
    exit code 2: no freeing of space helps); more than is free an :class:`OSError`
    ``ENOSPC``, told as a full disk (exit code 1: free space and run it again).
    """
    total, free = disk_bytes(path)
    if nbytes <= free:
        return
    text = f"{what} needs {format_bytes(nbytes)} on disk; {os.fspath(path)} has "
    if nbytes > total:
        raise ParameterError(text + f"{format_bytes(free)} free of {format_bytes(total)}")
    raise OSError(errno.ENOSPC, text + f"{format_bytes(free)} free")


def require_memory(nbytes: float, what: str, limit: float | None = None) -> None:
    """Refuse holding ``nbytes`` in memory when more than ``limit`` (default: this machine's RAM)."""
    have = psutil.virtual_memory().total if limit is None else limit
    if nbytes > have:
        where = "this machine has" if limit is None else "a worker may use"
        raise ParameterError(
            f"{what} needs {format_bytes(nbytes)} of memory; {where} {format_bytes(have)}"
        )
