"""A reconstruction scored against a simulated acquisition's truth: one set of regions, one PSNR.

``report``, ``batch``, the demo and the studies all score through here, so a volume
gets the same numbers whichever tool reads it:

- **ROI**: the cylinder the interior scan sees at every angle
  (:func:`sxtdist.metrics.roi_diameter_px`, :func:`sxtdist.metrics.cylinder_mask`);
- **cell**: the truth above the midpoint of the ice's and the cytoplasm's LAC, inside
  the capillary's lumen (:func:`sxtdist.metrics.cell_mask`); not the ice, not the glass;
- **peak** of every PSNR: the 99th percentile of the truth inside the cell;
- **resolution**: the FSC against the truth (1/7) and the transfer function's MTF-50 over
  the central cube inscribed in the ROI cylinder.

Arrays are read a slab of slices at a time: anything sliceable along z that
:func:`numpy.asarray` turns into numpy (numpy, dask, zarr arrays), so memory stays at
two slabs whatever the volume's size. No Dask or Zarr import here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics

#: The sentence every output that shows a PSNR carries.
PSNR_NOTE = "peak = 99th percentile of the truth inside the cell (not the capillary or the ice)"
#: Slices read at a time.
SLAB = 32
#: Smallest central cube (voxels a side) for a resolution figure.
MIN_CUBE = 16


@dataclass(frozen=True)
class Regions:
    """Where a volume is scored, on its grid.

    Attributes
    ----------
    voxel_size_nm
        The grid's voxel.
    roi_diameter_px
        The ROI cylinder's diameter (``None``: no interior scan, no ROI).
    cell_threshold
        LAC (µm⁻¹) above which a truth voxel is the cell.
    lumen_radius_px
        In-slice radius inside which the cell is looked for (``None``: everywhere).
    """

    voxel_size_nm: float
    roi_diameter_px: float | None
    cell_threshold: float
    lumen_radius_px: float | None

    @classmethod
    def of(cls, acquisition: Any) -> Regions:
        """The regions of a simulated acquisition (its ROI scan and its phantom's LACs).

        A truth without the phantom's description (not from ``sxtdist simulate``) falls
        back to the reference code's cell, the truth above 0.
        """
        meta = acquisition.truth_meta or {}
        v = float(meta["voxel_size_nm"])
        roi = (
            metrics.roi_diameter_px(acquisition["roi"].geometry, v)
            if "roi" in acquisition.scans
            else None
        )
        phantom = meta.get("phantom") or {}
        lac = phantom.get("lac_um") or {}
        if "ice" in lac and "cytoplasm" in lac:
            threshold = 0.5 * (float(lac["ice"]) + float(lac["cytoplasm"]))
        else:
            threshold = 0.0
        ice = phantom.get("ice_radius_nm")
        # one voxel inside the ice column: a voxel shared with the glass wall is not the cell
        lumen = None if ice is None else float(ice) / v - 1.0
        return cls(v, roi, threshold, lumen)

    def roi(self, slice_shape: tuple[int, int]) -> np.ndarray | None:
        """The ``(ny, nx)`` ROI disc (``None`` without an ROI)."""
        if self.roi_diameter_px is None:
            return None
        return metrics.cylinder_mask(slice_shape, self.roi_diameter_px)

    def cell(self, truth: np.ndarray) -> np.ndarray:
        """The cell's voxels in a truth (slab)."""
        return metrics.cell_mask(truth, self.cell_threshold, self.lumen_radius_px)


@dataclass(frozen=True)
class Scores:
    """PSNRs (dB) of a volume against its truth; all share the peak."""

    psnr_roi: float | None
    psnr_cell: float
    psnr_whole: float
    peak: float
    cell_fraction: float


def score(volume: Any, truth: Any, regions: Regions, slab: int = SLAB) -> Scores:
    """PSNR in the ROI, in the cell and over the whole volume, in one pass over both.

    ``volume`` and ``truth`` are ``(z, y, x)`` arrays of one shape (read ``slab``
    slices at a time). The peak is the 99th percentile of the truth inside the cell
    (:data:`PSNR_NOTE`); the MSE is taken over each region.
    """
    shape = tuple(truth.shape)
    if tuple(volume.shape) != shape:
        raise ValueError(f"shapes differ: {tuple(volume.shape)} vs truth {shape}")
    roi = regions.roi(shape[1:])
    peak = metrics.TopPercentile(metrics.PEAK_PERCENTILE, math.prod(shape))
    sse = {"roi": 0.0, "cell": 0.0, "whole": 0.0}
    count = {"roi": 0, "cell": 0, "whole": 0}
    for z0 in range(0, shape[0], slab):
        t = np.asarray(truth[z0 : z0 + slab], np.float64)
        d2 = (np.asarray(volume[z0 : z0 + slab], np.float64) - t) ** 2
        cell = regions.cell(t)
        peak.add(t[cell])
        sse["whole"] += float(d2.sum())
        count["whole"] += d2.size
        sse["cell"] += float(d2[cell].sum())
        count["cell"] += int(cell.sum())
        if roi is not None:
            sse["roi"] += float(d2[:, roi].sum())
            count["roi"] += int(roi.sum()) * t.shape[0]
    if count["cell"] == 0:
        raise ValueError("the truth has no cell voxels (nothing above the cell threshold)")
    r = peak.value()

    def db(name: str) -> float:
        return metrics.psnr_from_mse(sse[name] / count[name], r)

    return Scores(
        db("roi") if count["roi"] else None,
        db("cell"),
        db("whole"),
        r,
        count["cell"] / count["whole"],
    )


def central_cube(shape: tuple[int, ...], regions: Regions) -> tuple[slice, ...] | None:
    """The central cube inscribed in the ROI cylinder (the whole grid without an ROI).

    ``None`` when it would be under :data:`MIN_CUBE` voxels a side.
    """
    half = min(shape) // 2
    if regions.roi_diameter_px is not None:
        half = min(half, int(regions.roi_diameter_px / 2.0 / math.sqrt(2.0)))
    if 2 * half < MIN_CUBE:
        return None
    return tuple(slice(c // 2 - half, c // 2 + half) for c in shape)


@dataclass
class Resolution:
    """Resolution figures (nm, full period) of a volume over the central ROI cube.

    ``None`` for a figure whose curve does not cross its threshold: see
    :func:`describe`. ``fsc`` / ``mtf`` hold the curves.
    """

    fsc_one_seventh_nm: float | None
    fsc_half_bit_nm: float | None
    mtf50_nm: float | None
    fsc: metrics.FRC
    mtf: metrics.Transfer | None
    cube_px: int


def resolution(
    volume: Any, other: Any, regions: Regions, against_truth: bool = True
) -> Resolution | None:
    """FSC of ``volume`` with ``other`` (the truth, or the other half-volume) and, against
    the truth, the transfer function's MTF-50; over :func:`central_cube`.

    ``None`` when the cube is too small.
    """
    win = central_cube(tuple(volume.shape), regions)
    if win is None:
        return None
    a = np.asarray(volume[win], np.float64)
    b = np.asarray(other[win], np.float64)
    v = regions.voxel_size_nm
    fsc = metrics.frc(a, b, v)
    mtf = metrics.transfer(a, b, v) if against_truth else None
    return Resolution(
        fsc.resolution("1/7"),
        fsc.resolution("half-bit"),
        None if mtf is None else mtf.resolution(),
        fsc,
        mtf,
        a.shape[0],
    )


def describe(value: float | None) -> float | str:
    """A resolution for a table: the number, or :data:`sxtdist.metrics.NOT_CROSSED`."""
    return metrics.NOT_CROSSED if value is None else float(value)


__all__ = [
    "PSNR_NOTE",
    "Regions",
    "Resolution",
    "Scores",
    "central_cube",
    "describe",
    "resolution",
    "score",
]
