"""Progress bars (tqdm: a text bar on a terminal, a widget in a notebook), off elsewhere.

Messages are not here: they go through :mod:`logging` (:mod:`sxtdist.logs`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def progress_enabled(explicit: bool | None = None) -> bool:
    """``explicit`` when given, else whether standard error is a terminal or this is a notebook."""
    if explicit is not None:
        return explicit
    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return _in_notebook()


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm.auto draws a widget)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


@contextmanager
def progress_bar(
    total: int, desc: str, enabled: bool | None = None, unit: str = "it"
) -> Iterator[Callable[[int], None]]:
    """Yield a callable ``advance(n=1)``; draws a tqdm bar when enabled."""
    if not progress_enabled(enabled):
        yield lambda n=1: None
        return
    with _tqdm_class()(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False) as bar:
        yield bar.update


def _tqdm_class() -> type:
    """tqdm's widget in a notebook that has ipywidgets, its text bar elsewhere.

    ``tqdm.auto`` does the same but warns (``TqdmWarning: IProgress not found``) in
    a notebook without ipywidgets; the text bar works there as well.
    """
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401  (the widget bar needs it)
            from tqdm.notebook import tqdm
        except ImportError:
            pass
        else:
            return tqdm
    from tqdm.std import tqdm

    return tqdm
