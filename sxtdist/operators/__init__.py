"""Linear operators with exact adjoints: projector, row sampling, PSF, crop, binning, stack."""

from .base import Composition, Identity, LinearOperator, Scaled, Stack, dot_test
from .binning import Binning
from .projector import SliceProjector
from .psf import Crop, GaussianBlur, KernelBlur
from .rows import RowSampling
from .scan import ScanModel, scan_operator
from .tilt import DetectorTilt

__all__ = [
    "Binning",
    "Composition",
    "Crop",
    "DetectorTilt",
    "GaussianBlur",
    "Identity",
    "KernelBlur",
    "LinearOperator",
    "RowSampling",
    "Scaled",
    "ScanModel",
    "SliceProjector",
    "Stack",
    "dot_test",
    "scan_operator",
]
