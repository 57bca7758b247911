"""Simulated interior-plus-sparse-global acquisitions with a known truth.

>>> import sxtdist
>>> acq = sxtdist.simulate("cell.zarr", preset="tiny", seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import progress_bar
from ..dataset import TRUTH_CHUNK_Z, Acquisition, ScanData, Stream, create_acquisition
from ..errors import ParameterError
from ..geometry import (
    ScanGeometry,
    VolumeGrid,
    default_grid,
    scan_angles,
    without_rigid_translation,
)
from ..io.checks import MAX_PIXEL_NM
from ..outputs import check_output
from ..physics import psf_fwhm_nm
from ..resources import require_disk, require_memory
from .forward import ForwardModel, scan_views
from .motion import Motion, check_motion
from .phantom import CellPhantom, make_cell
from .presets import PRESETS, Preset, ScanPreset, get_preset, override_scan

logger = logging.getLogger(__name__)

__all__ = [
    "PRESETS",
    "CellPhantom",
    "ForwardModel",
    "SimulationOptions",
    "simulate",
    "simulation_geometries",
]

PerScan = float | Mapping[str, float] | None


@dataclass(frozen=True)
class SimulationOptions:
    """How a simulation departs from its preset (``None``: the preset's value).

    Parameters
    ----------
    n_full, n_roi, roi_width_um
        The numbers of views of the two scans and the ROI detector's width.
    pixel_size_nm, photons, shifts_px
        A number for both scans or ``{"full": ..., "roi": ...}``. ``shifts_px`` is the
        standard deviation of the random per-projection shifts (both axes). The shifts'
        joint rigid translation is removed (it would only move the cell away from the
        truth volume; :func:`sxtdist.geometry.rigid_translation_nm`).
    arc_deg
        180 or 360 (full rotation, interleaved).
    intensity_mismatch
        ``(phi0, c)`` of the paper's eq. 16, applied to the ROI scan.
    capillary
        Glass capillary wall around the ice (preset default: yes).
    psf
        Blur with the zone plates' Gaussian PSF; ``False`` leaves only pixel integration.
    axis_tilt_deg
        Tilt of the rotation axis on both detectors (:mod:`sxtdist.geometry`). Like the
        shifts it is the truth's (``truth.axis_tilt_deg``): the scans say 0 until it is
        measured (``sxtdist align --measure-axis-tilt``).
    """

    n_full: int | None = None
    n_roi: int | None = None
    roi_width_um: float | None = None
    pixel_size_nm: PerScan = None
    photons: PerScan = None
    shifts_px: PerScan = None
    arc_deg: float | None = None
    intensity_mismatch: tuple[float, float] | None = None
    capillary: bool | None = None
    psf: bool = True
    axis_tilt_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.arc_deg is not None and self.arc_deg not in (180, 360):
            raise ParameterError(f"angular range must be 180 or 360, got {self.arc_deg}")
        if self.intensity_mismatch is not None:
            phi0, c = self.intensity_mismatch
            if not (0 < phi0 <= 1 and c > 0):
                raise ParameterError("intensity mismatch needs 0 < phi0 <= 1 and c > 0")

    @classmethod
    def of(cls, options: SimulationOptions | None = None, **fields: Any) -> SimulationOptions:
        """``options`` (default: the preset's values) with ``fields`` replaced; an unknown
        name is a ``TypeError``, as for any keyword argument."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
        return dataclasses.replace(options or cls(), **fields)


def _per_scan(value: PerScan, name: str) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return value.get(name)


def _resolve(preset: Preset, o: SimulationOptions) -> tuple[ScanPreset, ScanPreset]:
    """The two scans' settings: the preset's with the options' overrides, checked."""
    arc = None if o.arc_deg is None else float(o.arc_deg)
    full = override_scan(
        preset.full,
        n_angles=o.n_full,
        pixel_size_nm=_per_scan(o.pixel_size_nm, "full"),
        photons_per_pixel=_per_scan(o.photons, "full"),
        shifts_sigma_px=_per_scan(o.shifts_px, "full"),
        arc_deg=arc,
    )
    roi = override_scan(
        preset.roi,
        n_angles=o.n_roi,
        pixel_size_nm=_per_scan(o.pixel_size_nm, "roi"),
        photons_per_pixel=_per_scan(o.photons, "roi"),
        shifts_sigma_px=_per_scan(o.shifts_px, "roi"),
        arc_deg=arc,
        width_um=o.roi_width_um,
    )
    for name, s in (("full", full), ("roi", roi)):
        if s.n_angles < 1:
            raise ParameterError(f"{name}: number of views must be at least 1")
        if not 0 < s.pixel_size_nm <= MAX_PIXEL_NM:
            raise ParameterError(f"{name}: pixel size must be in (0, {MAX_PIXEL_NM:g}] nm")
        if s.photons_per_pixel is not None and not 0 <= s.photons_per_pixel < math.inf:
            raise ParameterError(f"{name}: photons per pixel must be a number >= 0")
        if not 0 <= s.shifts_sigma_px < math.inf:
            raise ParameterError(f"{name}: shift standard deviation must be a number >= 0")
    if roi.width_um is not None and not 0 < roi.width_um < math.inf:
        raise ParameterError("ROI width must be a positive number")
    return full, roi


def truth_slabs(phantom: CellPhantom, grid: VolumeGrid) -> Iterator[np.ndarray]:
    """The phantom rasterised on ``grid``, slab after slab of the truth's chunk height."""
    for z0 in range(0, grid.nz, TRUTH_CHUNK_Z):
        yield phantom.rasterize(grid, z_range=(z0, min(grid.nz, z0 + TRUTH_CHUNK_Z)))


def simulation_geometries(
    preset: Preset, full: ScanPreset, roi: ScanPreset
) -> dict[str, ScanGeometry]:
    """Detector geometries (no shifts) of both scans of a preset."""
    return {
        name: ScanGeometry(
            scan_angles(s.n_angles, s.arc_deg), s.pixel_size_nm, _detector_shape(preset, s)
        )
        for name, s in (("full", full), ("roi", roi))
    }


def _detector_shape(preset: Preset, s: ScanPreset) -> tuple[int, int]:
    width_nm = preset.fov_nm if s.width_um is None else min(s.width_um * 1e3, preset.fov_nm)
    cols = max(2, int(round(width_nm / s.pixel_size_nm)))
    rows = max(1, int(math.ceil(preset.height_nm / s.pixel_size_nm - 1e-6)))
    return rows, cols


def _check_capacity(path: str, preset: Preset, full: ScanPreset, roi: ScanPreset) -> None:
    """Refuse, before any array is made, a simulation the machine cannot hold.

    The grid is :func:`sxtdist.geometry.default_grid`'s (the finest pixel, the widest
    field). The truth and the projections go to disk whole; memory holds a slab of
    the truth and a view at a time.
    """
    shapes = {name: _detector_shape(preset, s) for name, s in (("full", full), ("roi", roi))}
    v = min(full.pixel_size_nm, roi.pixel_size_nm)
    n_xy = max(cols * s.pixel_size_nm for (_, cols), s in zip(shapes.values(), (full, roi))) / v
    n_z = max(rows * s.pixel_size_nm for (rows, _), s in zip(shapes.values(), (full, roi))) / v
    grid = (math.ceil(n_z), math.ceil(n_xy), math.ceil(n_xy))
    views = sum(s.n_angles * math.prod(shapes[n]) for n, s in (("full", full), ("roi", roi)))
    what = f"simulating {preset.name!r} (a volume of {grid} voxels of {v:g} nm)"
    require_disk(path, 4 * (math.prod(grid) + views), what)
    piece = max(TRUTH_CHUNK_Z * grid[1] * grid[2], *(math.prod(s) for s in shapes.values()))
    require_memory(4 * piece, what)


def simulate(
    path: str | os.PathLike[str],
    preset: str = "small",
    seed: int = 0,
    options: SimulationOptions | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    motion: Motion | None = None,
    **overrides: Any,
) -> Acquisition:
    """Simulate an acquisition and write it to ``path``.

    Parameters
    ----------
    path
        Output Zarr directory.
    preset
        ``"tiny"`` (unit tests), ``"small"`` (paper-like, ~128³) or ``"cell"`` (512³).
    seed
        Everything (phantom, shifts, noise) is deterministic for a seed.
    options
        How the simulation departs from the preset (:class:`SimulationOptions`).
    overwrite
        Replace an existing output.
    progress
        A progress bar (``None``: on a terminal or in a notebook).
    motion
        Known per-view shifts ``{scan: [[dy, dx], ...]}`` (each scan's pixels, one pair per
        view), or the path of a JSON file of them (:mod:`sxtdist.simulation.motion`):
        applied inside the forward model instead of the random shifts of the scans it
        names, and stored as the truth (less the rigid translation, as the random ones).
    **overrides
        Fields of :class:`SimulationOptions` as keywords (``n_full=9``, ``photons=500``,
        ``psf=False`` ...), over ``options``.

    Returns
    -------
    Acquisition
        The dataset, opened.
    """
    path = os.fspath(path)
    opts = SimulationOptions.of(options, **overrides)
    check_output(path, "acquisition", overwrite=overwrite)  # before hours of work
    if not 0 <= seed < 2**63:
        raise ParameterError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed}")
    base = get_preset(preset)
    full, roi = _resolve(base, opts)
    _check_capacity(path, base, full, roi)
    t0 = time.perf_counter()
    seeds = np.random.SeedSequence(seed).spawn(5)
    geoms = simulation_geometries(base, full, roi)
    given_motion = {} if motion is None else check_motion(motion, geoms)
    grid = default_grid(list(geoms.values()))
    phantom = make_cell(
        np.random.default_rng(seeds[0]),
        base.cell_diameter_um * 1e3,
        grid.shape[2] * grid.voxel_size_nm,
        grid.nz * grid.voxel_size_nm,
        grid.voxel_size_nm,
        capillary=base.capillary if opts.capillary is None else opts.capillary,
        organelle_density=base.organelle_density,
    )
    scans = {"full": full, "roi": roi}
    drawn = _draw_shifts(scans, geoms, seeds, given_motion)
    truth_meta = {
        "voxel_size_nm": grid.voxel_size_nm,
        "shifts_px": {name: drawn[name].tolist() for name in ("full", "roi")},
        "shifts_sigma_px": {"full": full.shifts_sigma_px, "roi": roi.shifts_sigma_px},
        "intensity_transform": _intensity_record(opts.intensity_mismatch),
        "psf": bool(opts.psf),
        "axis_tilt_deg": float(opts.axis_tilt_deg),
        "preset": preset,
        "seed": int(seed),
        "phantom": phantom.description,
    }
    total = full.n_angles + roi.n_angles
    with progress_bar(total, f"simulate {preset}", progress, unit="proj") as advance:
        data = {}
        for i, (name, sp) in enumerate(scans.items()):
            g = geoms[name].with_shifts(drawn[name]).with_tilt(opts.axis_tilt_deg)
            noise = np.random.default_rng(seeds[3 + i])
            data[name] = _scan_data(phantom, g, sp, opts, name, noise, advance)
            data[name].extra = {"source": {"simulated": True, "preset": preset, "seed": seed}}
        acq = create_acquisition(
            path,
            data,
            truth=Stream(grid.shape, truth_slabs(phantom, grid)),
            truth_meta=truth_meta,
            overwrite=overwrite,
            sample={"description": f"simulated cell ({preset} preset)"},
        )
    logger.info(
        "simulated %r (seed %d) in %.1f s -> %s", preset, seed, time.perf_counter() - t0, path
    )
    return acq


def _draw_shifts(
    scans: Mapping[str, ScanPreset],
    geoms: Mapping[str, ScanGeometry],
    seeds: list,
    given: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Each scan's per-view shifts (px): ``given`` (known motion) or random (seeds 1 and
    2), without their joint rigid translation."""
    drawn = {
        name: np.random.default_rng(seeds[1 + i]).normal(
            0.0, sp.shifts_sigma_px, size=(geoms[name].n_angles, 2)
        )
        for i, (name, sp) in enumerate(scans.items())
    }
    drawn.update(given)
    # a rigid translation in the random shifts would only move the cell away from where the
    # truth volume has it (no alignment can know it): take it out, jointly for both scans
    # (over the scans that have shifts: a scan simulated without any stays without)
    jittered = {n: d for n, d in drawn.items() if np.any(d)}
    drawn.update(without_rigid_translation(jittered, geoms)[0])
    return drawn


def _intensity_record(mismatch: tuple[float, float] | None) -> dict[str, Any] | None:
    """The truth's record of eq. 16's intensity transform of the ROI scan."""
    if mismatch is None:
        return None
    return {
        "model": "dual_energy",
        "scan": "roi",
        "phi0": float(mismatch[0]),
        "c": float(mismatch[1]),
    }


def _scan_data(
    phantom: CellPhantom,
    g: ScanGeometry,
    sp: ScanPreset,
    opts: SimulationOptions,
    name: str,
    noise: np.random.Generator,
    advance: Callable[[int], None],
) -> ScanData:
    """Scan ``name`` of the phantom: its views are made as they are written, one at a time
    and in order (a scan's memory is one view's)."""
    model = ForwardModel(
        psf_fwhm_nm=psf_fwhm_nm(sp.zone_plate_ozw_nm) if opts.psf else None,
        photons_per_pixel=sp.photons_per_pixel,
        intensity_mismatch=opts.intensity_mismatch if name == "roi" else None,
    )
    return ScanData(
        data=Stream((g.n_angles, *g.detector_shape), scan_views(phantom, g, model, noise, advance)),
        angles_deg=g.angles_deg,
        pixel_size_nm=g.pixel_size_nm,
        energy_ev=sp.energy_ev,
        zone_plate_ozw_nm=sp.zone_plate_ozw_nm,
        photons_per_pixel=sp.photons_per_pixel or None,
        roi_center_px=g.center_offset_px,
    )
