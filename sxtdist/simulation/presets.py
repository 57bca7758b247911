"""Simulation presets: ``tiny`` for unit tests, ``small`` paper-like, ``cell`` and ``cell-1k`` for benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ParameterError


@dataclass(frozen=True)
class ScanPreset:
    """One scan of a preset."""

    n_angles: int
    pixel_size_nm: float
    photons_per_pixel: float | None
    zone_plate_ozw_nm: float
    shifts_sigma_px: float = 0.0
    arc_deg: float = 180.0
    width_um: float | None = None  # detector width; None: the whole field of view
    energy_ev: float = 517.0


@dataclass(frozen=True)
class Preset:
    """A simulated acquisition: the cell, the field of view, both scans."""

    name: str
    voxel_nm: float
    fov_px: int  # in-slice field of view of the full scan, in voxels
    height_px: int
    cell_diameter_um: float
    full: ScanPreset
    roi: ScanPreset
    capillary: bool = True
    organelle_density: float = 1.0

    @property
    def fov_nm(self) -> float:
        return self.fov_px * self.voxel_nm

    @property
    def height_nm(self) -> float:
        return self.height_px * self.voxel_nm


def paper_photons(pixel_nm: float, per_20nm: float) -> float:
    """Photons per pixel for a fluence given per (20 nm)² pixel, the paper's unit.

    The paper's simulations use 10 000 photons per (20 nm)² pixel and view for the
    interior scan (figure 3) and 1000 for full-field scans (figure 5).
    """
    return per_20nm * (pixel_nm / 20.0) ** 2


PRESETS: dict[str, Preset] = {
    # ≤ 64³ and a few seconds: unit tests
    "tiny": Preset(
        "tiny",
        voxel_nm=100.0,
        fov_px=64,
        height_px=32,
        cell_diameter_um=4.6,
        full=ScanPreset(9, 200.0, 4000.0, 60.0),
        roi=ScanPreset(36, 100.0, 2000.0, 35.0, width_um=2.8),
    ),
    # ~128³, paper-like: ROI ≈ 60 % of the cell, 19 full views at twice the pixel, 90 interior
    # views, the paper's fluence (10 000 interior, 1000 full, per (20 nm)² and view)
    "small": Preset(
        "small",
        voxel_nm=60.0,
        fov_px=128,
        height_px=128,
        cell_diameter_um=6.0,
        full=ScanPreset(19, 120.0, paper_photons(120.0, 1000.0), 60.0, shifts_sigma_px=1.0),
        roi=ScanPreset(
            90, 60.0, paper_photons(60.0, 10000.0), 35.0, shifts_sigma_px=1.0, width_um=3.6
        ),
    ),
    # 512³ whole cell for benchmarks: 12 µm cell, 6 µm ROI, 19 + 92 views
    "cell": Preset(
        "cell",
        voxel_nm=30.0,
        fov_px=512,
        height_px=512,
        cell_diameter_um=12.0,
        full=ScanPreset(19, 60.0, paper_photons(60.0, 1000.0), 60.0, shifts_sigma_px=1.5),
        roi=ScanPreset(
            92, 30.0, paper_photons(30.0, 10000.0), 35.0, shifts_sigma_px=1.5, width_um=6.0
        ),
    ),
    # the same cell at twice the resolution: 1024³ at 15 nm, 19 full views at 30 nm
    # (512²), 92 interior views at 15 nm over 6 µm (1024 rows x 400 columns): the paper's
    # ROI of about 0.4 of the field and its 92 + 19 views, for runs at scale
    "cell-1k": Preset(
        "cell-1k",
        voxel_nm=15.0,
        fov_px=1024,
        height_px=1024,
        cell_diameter_um=12.0,
        full=ScanPreset(19, 30.0, paper_photons(30.0, 1000.0), 60.0, shifts_sigma_px=1.5),
        roi=ScanPreset(
            92, 15.0, paper_photons(15.0, 10000.0), 35.0, shifts_sigma_px=1.5, width_um=6.0
        ),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ParameterError(
            f"unknown preset {name!r} (choose from {', '.join(PRESETS)})"
        ) from None


def override_scan(scan: ScanPreset, **changes) -> ScanPreset:
    """A copy of ``scan`` with the non-``None`` changes applied."""
    return replace(scan, **{k: v for k, v in changes.items() if v is not None})
