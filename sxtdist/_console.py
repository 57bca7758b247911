"""The ``sxtdist`` program's entry point: the CLI imported under a Ctrl-C guard.

Importing the commands (Dask, Zarr, SciPy ...) takes seconds on a busy machine; a Ctrl-C
then printed the import's traceback, dozens of lines into pydantic or NumPy. Here it
ends as an interrupted command does: one line, exit code 130.
"""

from __future__ import annotations

import sys

#: What an interrupted command prints (as :func:`sxtdist.cli.main` does).
INTERRUPTED = "sxtdist: interrupted"


def main() -> int:
    """Import the CLI and run it; returns the exit code (130 when interrupted meanwhile)."""
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return run()
