"""Filtered back-projection of single slices: the quick look before any iterative solve.

Numerical core (numpy, scipy, ASTRA; no Dask, no Zarr). For one slice at height
``z``, :func:`axis_sinogram` samples each view of a scan where it sees the line of
the object at that height (:meth:`ScanGeometry.detector_position_px`: the stored
shifts and the axis tilt undone by interpolation), on a detector centred on the
rotation axis; :func:`fbp` reconstructs it with ASTRA's FBP (``FBP`` on the CPU,
``FBP_CUDA`` on a GPU), which takes that plain ``parallel`` geometry.

An interior scan is truncated: beyond its edges the sinogram is continued with its
edge values, tapered to zero over :data:`TAPER_FRACTION` of its width, which keeps
the ramp filter's edge spike out of the field (the cupping and offset of interior
tomography remain; :func:`combine` takes the offset from the full scan).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from .errors import ParameterError
from .geometry import ScanGeometry, VolumeGrid

#: Width of the taper beyond a truncated detector's edges, as a fraction of its width.
TAPER_FRACTION = 0.5
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann")
ALGORITHMS = {"cpu": "FBP", "gpu": "FBP_CUDA"}


def sample_positions(grid: VolumeGrid, spacing_nm: float) -> np.ndarray:
    """Detector samples ``u`` (nm) centred on the axis, ``spacing_nm`` apart, covering the grid."""
    ny, nx = grid.slice_shape
    half = math.hypot(ny, nx) * grid.voxel_size_nm / 2.0
    n = 2 * int(math.ceil(half / spacing_nm)) + 1
    return (np.arange(n) - (n - 1) / 2.0) * spacing_nm


def axis_sinogram(
    band: np.ndarray, first_row: int, geometry: ScanGeometry, z_nm: float, u_nm: np.ndarray
) -> np.ndarray:
    """``(views, len(u_nm))`` of the object's line at height ``z_nm``, from a band of rows.

    Parameters
    ----------
    band
        ``(views, rows, cols)`` optical depth: detector rows ``first_row ..`` of every view.
    first_row
        The detector row of ``band[:, 0]``.
    geometry
        The scan: its shifts and tilt say where each view sees ``(u, z)``.
    z_nm, u_nm
        The slice's height and the samples along the detector, from the axis.

    Rows the band lacks read as its nearest row; columns beyond the detector as the
    edge value, tapered to zero (see the module doc).
    """
    n_views, n_rows, w = band.shape
    taper = max(1.0, TAPER_FRACTION * w)
    out = np.empty((n_views, u_nm.size), dtype=np.float32)
    for a in range(n_views):
        row, col = geometry.detector_position_px(a, u_nm, z_nm)
        coords = np.stack([np.asarray(row) - first_row, col])
        out[a] = ndimage.map_coordinates(band[a], coords, order=1, mode="nearest")
        beyond = np.maximum(np.maximum(-col, col - (w - 1)), 0.0)
        out[a] *= np.where(beyond < taper, 0.5 + 0.5 * np.cos(np.pi * beyond / taper), 0.0)
    return out


def rows_for_slice(geometry: ScanGeometry, z_nm: float, u_nm: np.ndarray) -> tuple[int, int]:
    """``(first, stop)`` detector rows that :func:`axis_sinogram` reads at height ``z_nm``
    (every view, the samples that land on the detector), clipped to the detector."""
    h, w = geometry.detector_shape
    lo, hi = math.inf, -math.inf
    for a in range(geometry.n_angles):
        row, col = geometry.detector_position_px(a, u_nm, z_nm)
        on = (col >= -1) & (col <= w)
        if np.any(on):
            lo, hi = min(lo, float(row[on].min())), max(hi, float(row[on].max()))
    if lo > hi:  # the line misses the detector at every view
        r = int(np.clip(round(float(np.median(row))), 0, h - 1))
        return r, r + 1
    first = int(np.clip(math.floor(lo), 0, h - 1))
    return first, int(np.clip(math.floor(hi) + 2, first + 1, h))


def fbp(
    sinogram: np.ndarray,
    angles_deg: np.ndarray,
    spacing_nm: float,
    grid: VolumeGrid,
    filter_type: str = "ram-lak",
    backend: str = "cpu",
) -> np.ndarray:
    """ASTRA's FBP of one slice: ``(ny, nx)`` attenuation in µm⁻¹ from optical depth.

    The detector is centred on the axis with ``sinogram.shape[1]`` samples
    ``spacing_nm`` apart (:func:`sample_positions`). ASTRA's ``parallel`` geometry at
    angle ``-θ`` is our view ``θ`` (its 2D volume has ``y`` flipped against ours; see
    :meth:`ScanGeometry.astra_vectors_2d`), and its image rows are then ours.
    """
    import astra

    if filter_type not in FILTERS:
        raise ParameterError(f"unknown filter {filter_type!r} (choose from {', '.join(FILTERS)})")
    if backend not in ALGORITHMS:
        raise ParameterError(f"unknown backend {backend!r} (cpu or gpu)")
    ny, nx = grid.slice_shape
    vol_geom = astra.create_vol_geom(ny, nx)
    proj_geom = astra.create_proj_geom(
        "parallel",
        spacing_nm / grid.voxel_size_nm,
        sinogram.shape[1],
        -np.deg2rad(np.asarray(angles_deg, dtype=np.float64)),
    )
    sino_id = astra.data2d.create("-sino", proj_geom, np.ascontiguousarray(sinogram, np.float32))
    rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
    cfg = astra.astra_dict(ALGORITHMS[backend])
    cfg["ProjectionDataId"], cfg["ReconstructionDataId"] = sino_id, rec_id
    cfg["FilterType"] = filter_type
    proj_id = None
    if backend == "cpu":
        proj_id = astra.create_projector("linear", proj_geom, vol_geom)
        cfg["ProjectorId"] = proj_id
    alg_id = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(alg_id)
        rec = astra.data2d.get(rec_id)
    finally:
        astra.algorithm.delete(alg_id)
        astra.data2d.delete([sino_id, rec_id])
        if proj_id is not None:
            astra.projector.delete(proj_id)
    # a voxel's line integral is in voxels: per µm, divide by the voxel in µm
    return np.ascontiguousarray(rec / (grid.voxel_size_nm * 1e-3), dtype=np.float32)


def combine(
    slices: Mapping[str, np.ndarray], grid: VolumeGrid, roi_radius_nm: float | None
) -> np.ndarray:
    """A rough combined slice: the full scan's FBP, with the interior scan's inside its disc.

    The interior FBP is moved by the median difference to the full scan's over the
    inner 80 % of the disc (interior tomography leaves it an offset), and blended into
    the full scan's over the disc's outer tenth. With one scan, that scan's slice.
    """
    if "full" not in slices or "roi" not in slices or not roi_radius_nm:
        return next(iter(slices.values()))
    full, roi = slices["full"], slices["roi"]
    ny, nx = grid.slice_shape
    y = (np.arange(ny) - (ny - 1) / 2.0)[:, None] * grid.voxel_size_nm
    x = (np.arange(nx) - (nx - 1) / 2.0)[None, :] * grid.voxel_size_nm
    r = np.hypot(y, x) / roi_radius_nm
    inner = r < 0.8
    offset = float(np.median((full - roi)[inner])) if inner.any() else 0.0
    w = np.clip((1.0 - r) / 0.1, 0.0, 1.0)
    w = 0.5 - 0.5 * np.cos(np.pi * w)  # 1 inside 0.9 r, 0 from r
    return (w * (roi + offset) + (1.0 - w) * full).astype(np.float32)
