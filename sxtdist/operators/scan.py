"""The forward model of one scan on a slab of slices, as one composed operator.

``y = Crop( Blur( RowSampling( [Tilt] Project(x) ) ) )``:

* ``Project``: the scan's 2D system matrix on every slice (horizontal shifts,
  pixel size, truncated and off-centre detector), on a detector padded by the
  PSF's reach;
* ``Tilt`` (a tilted rotation axis only): on the CPU the untilted projections,
  on a detector wider by the tilt's reach, resampled onto the tilted detector's
  fine rows (:class:`~sxtdist.operators.tilt.DetectorTilt`); on the GPU the
  projector's vectors are tilted instead and there is no such step;
* ``RowSampling``: slices to detector rows (pixel height, vertical shifts),
  skipped where it is the identity;
* ``Blur``: the zone plate's PSF on the padded detector (zero outside);
* ``Crop``: back to the real detector columns and the block's data rows.

The data rows of a slab are those whose whole footprint (PSF and vertical shifts
included) lies in the slab; rows at a slab's edges are left to the neighbouring
blocks' halo. Slabs of the first and last blocks reach past the volume's ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import ScanGeometry, VolumeGrid
from .base import LinearOperator
from .projector import SliceProjector
from .psf import Crop, GaussianBlur, KernelBlur, psf_pad
from .rows import RowSampling, is_identity
from .tilt import DetectorTilt


@dataclass(frozen=True)
class ScanModel:
    """How one scan is modelled.

    Parameters
    ----------
    geometry
        Angles, pixel size, detector, shifts.
    psf_sigma_px
        Gaussian PSF standard deviation in this scan's pixels (0: no blur).
    kernel
        A general odd-sized 2D kernel ``(cols, rows)`` instead of the Gaussian.
    supersampling
        Rays per pixel of the projector (default: about one per voxel).
    """

    geometry: ScanGeometry
    psf_sigma_px: float = 0.0
    kernel: np.ndarray | None = None
    supersampling: int | None = None

    @property
    def pad(self) -> int:
        """Detector pixels the blur reaches beyond an edge."""
        if self.kernel is not None:
            return max(self.kernel.shape) // 2
        return psf_pad(self.psf_sigma_px)

    def row_footprints(self, grid: VolumeGrid) -> tuple[np.ndarray, np.ndarray]:
        """First and last slice each detector row depends on, PSF included.

        Returns
        -------
        lo, hi
            Per detector row ``0..H-1``, inclusive slice indices (may lie outside the grid).
        """
        h = self.geometry.detector_shape[0]
        p = self.pad
        ext = np.arange(-p, h + p)
        lo, hi = self.geometry.row_slice_support(grid, ext, pad=p)
        if p == 0:
            return lo, hi
        win = 2 * p + 1
        lo_w = np.lib.stride_tricks.sliding_window_view(lo, win).min(axis=1)
        hi_w = np.lib.stride_tricks.sliding_window_view(hi, win).max(axis=1)
        return lo_w, hi_w

    def rows_for_slab(self, grid: VolumeGrid, slab: tuple[int, int]) -> np.ndarray:
        """Detector rows modelled in full by the slices ``slab`` (see module doc).

        A row whose footprint (any angle's vertical shift, the PSF's reach) leaves the
        slab is left out. Slabs may reach past the volume's ends (slice indices below 0
        or from ``nz``): the sample goes on above and below the field (ice, a
        capillary), so a row that sees past the grid is modelled by slices there
        rather than by zeros.
        """
        lo, hi = self.row_footprints(grid)
        return np.flatnonzero((lo >= slab[0]) & (hi < slab[1]) & (hi >= 0) & (lo < grid.nz))


def scan_operator(
    model: ScanModel,
    grid: VolumeGrid,
    slab: tuple[int, int],
    rows: np.ndarray,
    backend: str = "cpu",
    projector: LinearOperator | None = None,
) -> LinearOperator:
    """The composed operator ``(ny, nx, slab slices) -> (angles, cols, len(rows))``.

    ``rows`` must be contiguous detector rows (as :meth:`ScanModel.rows_for_slab` gives).
    ``backend="gpu"`` projects with ASTRA's CUDA projector
    (:class:`~sxtdist.operators.gpu.GpuSliceProjector`) and applies the rest on the
    input's device; the operator then takes and returns cupy arrays, with the same
    shapes. ``projector`` replaces the slice projector (it must have the padded shape).
    """
    rows = np.asarray(rows)
    if rows.size == 0:
        raise ValueError("no detector rows to model")
    if np.any(np.diff(rows) != 1):
        raise ValueError("detector rows of a block must be contiguous")
    g = model.geometry
    nz = slab[1] - slab[0]
    p = model.pad
    cols = g.detector_shape[1] + 2 * p
    tilt_pad = 0  # CPU and tilted: the untilted projection's extra columns
    if backend == "gpu":
        from .gpu import GpuSliceProjector

        if projector is None:
            projector = GpuSliceProjector(
                g, grid, nz, pad=p, supersampling=model.supersampling, first_slice=slab[0]
            )
    elif backend == "cpu":
        tilt_pad = g.tilt_pad_px(grid.voxel_size_nm, p)
    else:
        raise ValueError(f"unknown backend {backend!r} (cpu or gpu)")
    op: LinearOperator = (
        projector
        if projector is not None
        else SliceProjector(g, grid, nz, pad=p + tilt_pad, supersampling=model.supersampling)
    )
    wide = g.detector_shape[1] + 2 * (p + tilt_pad)
    if tuple(op.range_shape) != (g.n_angles, wide, nz):
        raise ValueError(
            f"projector gives {op.range_shape}, the model needs {(g.n_angles, wide, nz)}"
        )
    if backend == "cpu" and g.tilted:
        op = DetectorTilt(g, grid, slab, p + tilt_pad, p) @ op
    ext_rows = np.arange(rows[0] - p, rows[-1] + 1 + p)
    sampling = RowSampling(g, grid, ext_rows, slab, cols)
    if not is_identity(sampling.matrix, nz, len(ext_rows)):  # skip a 1:1 row map
        op = sampling @ op
    shape = (g.n_angles, cols, len(ext_rows))
    if model.kernel is not None:
        op = KernelBlur(shape, model.kernel) @ op
    elif model.psf_sigma_px > 0:
        op = GaussianBlur(shape, (model.psf_sigma_px, model.psf_sigma_px)) @ op
    if p > 0:
        window = ((0, g.n_angles), (p, p + g.detector_shape[1]), (p, p + len(rows)))
        op = Crop(shape, window) @ op
    return op
