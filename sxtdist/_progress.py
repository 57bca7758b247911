"""Progress reporting: a bar on a terminal, silence elsewhere (CI, logs, notebooks' files)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any


def progress_enabled(explicit: bool | None = None) -> bool:
    """``explicit`` when given, else whether standard error is a terminal."""
    if explicit is not None:
        return explicit
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool | None = None, unit: str = "it"):
    """Yield a callable ``advance(n=1)``; draws a tqdm bar when enabled."""
    if not progress_enabled(enabled):
        yield lambda n=1: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False) as bar:
        yield bar.update


def log(message: str, quiet: bool = False, **kwargs: Any) -> None:
    """Print a status line to standard error (kept apart from results on stdout)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True, **kwargs)
