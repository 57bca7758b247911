"""Alignment of an interior scan and a sparse full scan (paper appendix B.1-B.2).

Modules, from the maths up:

- :mod:`.ncc`: masked normalised cross-correlation maps, their bicubic surface and peak;
- :mod:`.resample`: blurs, a full view on the interior grid, padding, sub-pixel shifts;
- :mod:`.pairs`: which views are registered to which (anchors, neighbours), their results;
- :mod:`.shifts`: the shifts from the pairs (eq. 14, least squares with robust weights);
- :mod:`.fullscan`: the full scan on its own (row profiles, weighted moments, projection
  matching);
- :mod:`.gauge`: what no alignment determines, and errors measured without it;
- :mod:`.intensity`: the intensity transform between the scans (eq. 16);
- :mod:`.diagnostics`: what the pairs say about the result without a truth;
- :mod:`.anchoring`: whether an interior scan aligned by anchors still fits its full scan;
- :mod:`.options`: :class:`AlignOptions`, the alignment's own settings;
- :mod:`.tasks`: the worker-side tasks; :mod:`.runner`: :func:`align`, which plans,
  submits and stores; :mod:`.result`: :class:`AlignmentResult`; :mod:`.report`: the CSV
  tables and the plot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import AlignOptions
    from .result import AlignmentResult
    from .runner import align

__all__ = ["AlignOptions", "AlignmentResult", "align"]

#: Where each public name lives, imported on first use: a worker unpickling a task of
#: :mod:`.tasks` imports this package first, and the runner (the joint solve's sparse
#: solvers, Dask's arrays through the dataset's writers) is no part of its work.
_LAZY = {"AlignOptions": ".options", "AlignmentResult": ".result", "align": ".runner"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # once: later lookups find it here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
