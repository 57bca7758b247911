"""sxtdist: interior soft X-ray tomography with sparse global sampling.

Align and reconstruct an interior (region-of-interest) scan together with a few
full-field-of-view projections as one least-squares problem, block by block on
Dask, into a multiscale OME-Zarr volume.
"""

from ._version import __version__
from .alignment import align
from .dataset import Acquisition, Scan, ScanData, create_acquisition, open_acquisition
from .errors import InputError, ParameterError, SxtdistError
from .geometry import ScanGeometry, VolumeGrid
from .simulation import simulate

__all__ = [
    "Acquisition",
    "InputError",
    "ParameterError",
    "Scan",
    "ScanData",
    "ScanGeometry",
    "SxtdistError",
    "VolumeGrid",
    "__version__",
    "align",
    "create_acquisition",
    "open_acquisition",
    "open_volume",
    "reconstruct",
    "reconstruct_batch",
    "simulate",
]


def __getattr__(name: str):
    # Imported on first use: the runner and the batch layer pull in Dask's configuration.
    if name == "reconstruct":
        from .runner import reconstruct

        return reconstruct
    if name == "open_volume":
        from .volume import open_volume

        return open_volume
    if name == "reconstruct_batch":
        from .batch import reconstruct_batch

        return reconstruct_batch
    raise AttributeError(f"module 'sxtdist' has no attribute {name!r}")
