"""sxtdist: interior soft X-ray tomography with sparse global sampling.

Align and reconstruct an interior (region-of-interest) scan together with a few
full-field-of-view projections as one least-squares problem, block by block on
Dask, into a multiscale OME-Zarr volume.

What is solved is a :class:`Reconstruction`; how and where it runs an
:class:`Execution`; messages go to the ``sxtdist`` logger (:func:`configure_logging`
shows them). The names below are imported on first use, so ``import sxtdist`` stays
cheap (the CLI's ``--help``, a worker's start).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import InputError, ParameterError, SxtdistError, SxtdistWarning
from .execution import Execution
from .logs import configure_logging

#: Public name -> the module that defines it (imported on first use).
_LAZY = {
    "Acquisition": "dataset",
    "Scan": "dataset",
    "ScanData": "dataset",
    "create_acquisition": "dataset",
    "open_acquisition": "dataset",
    "ScanGeometry": "geometry",
    "VolumeGrid": "geometry",
    "align": "alignment",
    "open_volume": "volume",
    "Reconstruction": "runner",
    "reconstruct": "runner",
    "reconstruct_batch": "batch",
    "simulate": "simulation",
    "estimate_reconstruction": "estimate",
}

__all__ = [
    "Acquisition",
    "Execution",
    "InputError",
    "ParameterError",
    "Reconstruction",
    "Scan",
    "ScanData",
    "ScanGeometry",
    "SxtdistError",
    "SxtdistWarning",
    "VolumeGrid",
    "__version__",
    "align",
    "configure_logging",
    "create_acquisition",
    "estimate_reconstruction",
    "open_acquisition",
    "open_volume",
    "reconstruct",
    "reconstruct_batch",
    "simulate",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sxtdist' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
