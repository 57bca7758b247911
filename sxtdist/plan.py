"""Acquisition planning: how many full and interior views, and how many photons per view.

The recommendation follows the paper's reasoning step by step:

1. **Interior views** (figure 11, appendix B.3): a point at radius ``R`` has an
   angular bandwidth ``2π R k``; to reach the target resolution (by default the
   frequency holding 98 % of the interior zone plate's OTF power, capped at the
   pixel's Nyquist) inside the ROI of radius ``R_ROI`` the interior scan needs
   ``N_ROI = ⌈2π R_ROI f⌉`` views over 180° (or interleaved over 360°).
2. **Full views** (figure 2): the sparse full-field scan is there to remove the
   interior scan's null space (cupping, offsets). The null space of the combined
   operator is estimated (:func:`sxtdist.nullspace.null_space`) on a coarse model
   of the cell for a ladder of ``N_full``; the recommendation is the smallest
   ``N_full`` from which on (three rungs of the ladder in a row) the ROI
   null-space component stays below the tolerance: 2 % of the
   ROI's norm by default, i.e. an RMS bias of ~0.006 µm⁻¹ in a 0.28 µm⁻¹ cell,
   several times below the LAC differences between organelles (≥ 0.03 µm⁻¹).
3. **Photons** (eq. 13): the budget is the dose of a reference full-field scan of
   ``N₀`` views at ``I₀`` photons per (interior) pixel. The full views keep the
   reference fluence; the dose the dropped views would have deposited goes to
   the interior views, scaled by ``D_full/D_ROI`` computed from a dose map of
   the model (:mod:`sxtdist.dose`), not a constant.

The model cell is a disc of the given diameter and mean LAC with a nucleus and
organelles, in vacuum, on a grid of about :data:`MODEL_PX` voxels across; the
null space of the interior problem is a low-frequency effect, so a coarse grid
suffices, and the numbers scale with the cell-to-ROI ratio, not the pixel size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import dose as _dose
from .errors import ParameterError, option
from .physics import PAPER_POWER_FRACTION, ZonePlate, views_for_frequency

#: Voxels across the cell in the coarse model used for the null space and the dose ratio.
MODEL_PX = 96
#: ``N_full`` values tried, smallest first.
#: Consecutive rungs that must meet the tolerance (the estimate fluctuates a little).
STABLE_RUNGS = 3
N_FULL_LADDER = (1, 2, 3, 5, 7, 9, 11, 13, 15, 19, 23, 29, 37, 47, 61, 79, 97, 127)


@dataclass(frozen=True)
class PlanRequest:
    """What the scientist knows before acquiring.

    Parameters
    ----------
    cell_diameter_um, roi_width_um
        The cell (sample) diameter and the interior field of view.
    pixel_full_nm, pixel_roi_nm
        Pixel sizes (at the sample) of the full-field and interior scans.
    ozw_full_nm, ozw_roi_nm
        Outermost zone widths of the two objectives.
    energy_ev
        Photon energy.
    photons
        ``I₀``: photons per interior-size pixel per view of the reference full-field scan.
    dose_gy
        Alternatively, the budget as the mean dose in the cell (Gy); overrides ``photons``.
    reference_views
        ``N₀``, views of the reference scan (default: the interior views).
    resolution_nm
        Target resolution (full period) in the ROI; default the interior optic's limit.
    n_roi, n_full
        Fix either number instead of deriving it.
    lac_um
        Mean LAC of the cell (µm⁻¹); the paper's phantom has 0.28.
    null_tolerance
        Largest acceptable ROI null-space norm ratio ``‖x_null‖/‖x₀‖`` inside the ROI.
    arc_deg
        180 or 360 (interleaved full rotation).
    iterations
        CGLS iterations of the null-space estimate.
    model_px
        Voxels across the cell in the coarse model.
    """

    cell_diameter_um: float
    roi_width_um: float
    pixel_full_nm: float
    pixel_roi_nm: float
    ozw_full_nm: float = 60.0
    ozw_roi_nm: float = 35.0
    energy_ev: float = 517.0
    photons: float = 1000.0
    dose_gy: float | None = None
    reference_views: int | None = None
    resolution_nm: float | None = None
    n_roi: int | None = None
    n_full: int | None = None
    lac_um: float = 0.28
    null_tolerance: float = 0.02
    arc_deg: float = 180.0
    iterations: int = 200
    model_px: int = MODEL_PX

    def check(self) -> None:
        """Raise :class:`ParameterError` for values that cannot work."""
        positive = {
            "cell diameter": self.cell_diameter_um,
            "ROI width": self.roi_width_um,
            "full pixel size": self.pixel_full_nm,
            "ROI pixel size": self.pixel_roi_nm,
            "full zone width": self.ozw_full_nm,
            "ROI zone width": self.ozw_roi_nm,
            "energy": self.energy_ev,
            "photons": self.photons,
            "LAC": self.lac_um,
            "null-space tolerance": self.null_tolerance,
        }
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be a positive number, got {value}")
        if self.roi_width_um >= self.cell_diameter_um:
            raise ParameterError(
                f"ROI width {self.roi_width_um} µm is not smaller than the cell "
                f"({self.cell_diameter_um} µm): no interior scan is needed"
            )
        if self.pixel_roi_nm * 4 > self.roi_width_um * 1e3:
            raise ParameterError("the ROI must span at least 4 interior pixels")
        for name, value in (
            ("dose", self.dose_gy),
            ("target resolution", self.resolution_nm),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be positive, got {value}")
        for name, value in (
            ("reference views", self.reference_views),
            ("interior views", self.n_roi),
        ):
            if value is not None and value < 1:
                raise ParameterError(f"{name} must be at least 1, got {value}")
        if self.n_full is not None and self.n_full < 0:
            raise ParameterError(f"full views must not be negative, got {self.n_full}")
        if self.arc_deg not in (180.0, 360.0):
            raise ParameterError(f"angular range must be 180 or 360, got {self.arc_deg}")
        if self.iterations < 1:
            raise ParameterError("null-space iterations must be at least 1")
        if not 16 <= self.model_px <= 512:
            raise ParameterError(f"model size must be 16..512 voxels, got {self.model_px}")


@dataclass
class Plan:
    """The recommendation and the numbers behind it (see :func:`plan_acquisition`)."""

    request: PlanRequest
    n_full: int
    n_roi: int
    reference_views: int
    photons_full: float
    photons_roi: float
    dose_ratio: float
    target_resolution_nm: float
    optics_resolution_nm: float
    views_for_optics: int
    full_scan_resolution_nm: float
    null_space_roi: float
    null_space_interior_only: float
    null_space_table: list[dict[str, float]]
    mean_dose_gy: float
    reference_mean_dose_gy: float
    max_dose_gy: float
    reference_max_dose_gy: float
    optics: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["request"] = asdict(self.request)
        return d

    def table(self) -> str:
        """A human-readable report."""
        r = self.request
        fo, ro = self.optics["full"], self.optics["roi"]
        lines = [
            f"sxtdist plan: {r.cell_diameter_um:g} µm cell, {r.roi_width_um:g} µm ROI, "
            f"{r.arc_deg:g}° rotation, {r.energy_ev:g} eV",
            "",
            f"{'':28s}{'full field':>16s}{'interior (ROI)':>18s}",
            f"{'zone plate OZW (nm)':28s}{r.ozw_full_nm:>16g}{r.ozw_roi_nm:>18g}",
            f"{'pixel (nm)':28s}{r.pixel_full_nm:>16g}{r.pixel_roi_nm:>18g}",
            f"{'PSF FWHM (nm)':28s}{fo['psf_fwhm_nm']:>16.1f}{ro['psf_fwhm_nm']:>18.1f}",
            f"{'depth of field (µm)':28s}{fo['depth_of_field_nm'] / 1e3:>16.2f}"
            f"{ro['depth_of_field_nm'] / 1e3:>18.2f}",
            f"{'98% OTF-power period (nm)':28s}{fo['f98_period_nm']:>16.1f}"
            f"{ro['f98_period_nm']:>18.1f}",
            f"{'views (recommended)':28s}{self.n_full:>16d}{self.n_roi:>18d}",
            f"{'photons / pixel / view':28s}{self.photons_full:>16.4g}{self.photons_roi:>18.4g}",
            "",
            f"interior sampling: {self.views_for_optics} views resolve the optics' "
            f"{self.optics_resolution_nm:.1f} nm inside the ROI (N = 2π R_ROI f_cut);",
            f"  {self.n_roi} views give {self.target_resolution_nm:.1f} nm.",
            f"{self.n_full} full views sample the whole cell to a period of "
            f"~{self.full_scan_resolution_nm:.0f} nm: context and the null space, not detail.",
            f"null space in the ROI (‖x_null‖/‖x₀‖): interior only "
            f"{100 * self.null_space_interior_only:.2f} %, with {self.n_full} full views "
            f"{100 * self.null_space_roi:.2f} % (tolerance {100 * r.null_tolerance:g} %).",
            f"dose: D_full/D_ROI = {self.dose_ratio:.3f}; reference {self.reference_views} full views "
            f"at I₀ = {self.photons_full * (r.pixel_roi_nm / r.pixel_full_nm) ** 2:.4g} photons/"
            f"({r.pixel_roi_nm:g} nm)² -> eq. 13: I_ROI = {self.photons_roi:.4g} photons/px/view.",
            f"  mean dose in the cell {self.mean_dose_gy:.3g} Gy (reference "
            f"{self.reference_mean_dose_gy:.3g} Gy); peak {self.max_dose_gy:.3g} Gy "
            f"(reference {self.reference_max_dose_gy:.3g} Gy).",
            "",
            f"{'N_full':>8s}{'ROI null %':>12s}{'whole null %':>14s}",
        ]
        for row in self.null_space_table:
            mark = "  <-" if row["n_full"] == self.n_full else ""
            lines.append(
                f"{row['n_full']:>8d}{100 * row['roi']:>12.3f}{100 * row['whole']:>14.3f}{mark}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def model_cell(n: int, diameter_px: float, lac_um: float, seed: int = 0) -> np.ndarray:
    """A 2D cell of mean LAC ≈ ``lac_um``: disc, nucleus and organelles (deterministic)."""
    rng = np.random.default_rng(seed)
    c = np.arange(n) - (n - 1) / 2.0
    yy, xx = np.meshgrid(c, c, indexing="ij")
    cell = _dose.disk(n, diameter_px)
    img = cell * 0.9
    r = diameter_px / 2.0
    nuc = ((yy - 0.15 * r) ** 2 + (xx + 0.1 * r) ** 2) < (0.45 * r) ** 2
    img = img + 0.15 * nuc
    for _ in range(40):
        rho = r * 0.85 * math.sqrt(rng.uniform())
        phi = rng.uniform(0, 2 * math.pi)
        size = r * rng.uniform(0.03, 0.09)
        blob = ((yy - rho * math.sin(phi)) ** 2 + (xx - rho * math.cos(phi)) ** 2) < size**2
        img = img + rng.uniform(0.2, 0.6) * blob
    img *= cell > 0.5
    inside = cell > 0.5
    return (img * (lac_um / img[inside].mean())).astype(np.float32)


def _null_space_ladder(
    req: PlanRequest, ladder: list[int], stop_below: float | None, stable: int = STABLE_RUNGS
) -> tuple[float, list[dict]]:
    """ROI null space of interior-only and of combined scans along ``ladder``.

    Stops once ``stable`` consecutive rungs are below ``stop_below`` (None: all rungs).
    """
    from .geometry import ScanGeometry, VolumeGrid, scan_angles
    from .metrics import cylinder_mask
    from .nullspace import null_space
    from .operators.projector import SliceProjector

    px = int(req.model_px)
    v = req.cell_diameter_um * 1e3 / px
    n = px + 4
    grid = VolumeGrid((1, n, n), v)
    phantom = model_cell(n, px, req.lac_um)[:, :, None]
    roi_cols = max(2, int(round(req.roi_width_um * 1e3 / v)))
    full_cols = int(math.ceil(n * math.sqrt(2))) + 1
    # The coarse ROI scan samples the whole cell at the model's Nyquist, so that what
    # is left is the truncation null space (what the full views are for), not the
    # angular under-sampling of the interior scan (which N_ROI takes care of).
    n_roi_model = views_for_frequency(n * v / 2, 0.5 / v)
    roi_op = SliceProjector(
        ScanGeometry(scan_angles(n_roi_model, req.arc_deg), v, (1, roi_cols)), grid, 1
    )
    mask = cylinder_mask((n, n), req.roi_width_um * 1e3 / v)[:, :, None]
    interior = null_space([roi_op], phantom, req.iterations, mask)
    rows: list[dict] = []
    run = 0  # consecutive rungs below the tolerance
    for nf in ladder:
        full_op = SliceProjector(
            ScanGeometry(scan_angles(nf, req.arc_deg), v, (1, full_cols)), grid, 1
        )
        ns = null_space([roi_op, full_op], phantom, req.iterations, mask)
        rows.append({"n_full": int(nf), "roi": ns.norm_ratio_mask, "whole": ns.norm_ratio})
        run = run + 1 if stop_below is not None and ns.norm_ratio_mask <= stop_below else 0
        if run == stable:
            break
    return interior.norm_ratio_mask, rows


def _first_stable(table: list[dict], tol: float, stable: int = STABLE_RUNGS) -> int | None:
    """First ``n_full`` from which ``stable`` consecutive rungs meet ``tol``."""
    ok = [row["roi"] <= tol for row in table]
    for i in range(len(ok) - stable + 1):
        if all(ok[i : i + stable]):
            return table[i]["n_full"]
    return None


def plan_acquisition(req: PlanRequest) -> Plan:
    """Recommend ``N_full``, ``N_ROI`` and the photons per view (see the module docstring)."""
    req.check()
    notes: list[str] = []
    zp_full = ZonePlate(req.ozw_full_nm, req.energy_ev)
    zp_roi = ZonePlate(req.ozw_roi_nm, req.energy_ev)
    r_cell = req.cell_diameter_um * 1e3 / 2.0
    n_roi, views_optics, f_optics, target_res = _interior_views(req, zp_roi, notes)
    n_full, interior_ns, table, ns_roi = _full_views(req, n_roi, notes)
    full_res = 2 * math.pi * r_cell / n_full if n_full else math.inf
    dose = _photons_and_dose(req, n_roi, n_full, notes)
    cell = dose["cell"]
    return Plan(
        request=req,
        n_full=int(n_full),
        n_roi=int(n_roi),
        reference_views=int(dose["n0"]),
        photons_full=dose["fluence0"] * (req.pixel_full_nm * 1e-3) ** 2,
        photons_roi=dose["fluence_roi"] * (req.pixel_roi_nm * 1e-3) ** 2,
        dose_ratio=float(dose["ratio"]),
        target_resolution_nm=float(target_res),
        optics_resolution_nm=float(1.0 / f_optics),
        views_for_optics=int(views_optics),
        full_scan_resolution_nm=float(full_res),
        null_space_roi=float(ns_roi),
        null_space_interior_only=float(interior_ns),
        null_space_table=table,
        mean_dose_gy=float(dose["plan_map"][cell].mean()),
        reference_mean_dose_gy=float(dose["ref_map"][cell].mean()),
        max_dose_gy=float(dose["plan_map"].max()),
        reference_max_dose_gy=float(dose["ref_map"].max()),
        optics={"full": zp_full.summary(), "roi": zp_roi.summary()},
        notes=notes,
    )


def _interior_views(
    req: PlanRequest, zp_roi: ZonePlate, notes: list[str]
) -> tuple[int, int, float, float]:
    """Step 1: ``(N_ROI, views the optics ask for, the optics' cutoff, target resolution)``."""
    r_roi = req.roi_width_um * 1e3 / 2.0
    f_optics = min(zp_roi.sampling_cutoff_per_nm(PAPER_POWER_FRACTION), 0.5 / req.pixel_roi_nm)
    if f_optics < zp_roi.sampling_cutoff_per_nm():
        notes.append(
            f"the interior pixel ({req.pixel_roi_nm:g} nm) limits the resolution below the "
            f"optics' {zp_roi.summary()['f98_period_nm']:.1f} nm"
        )
    views_optics = views_for_frequency(r_roi, f_optics)
    f_target = f_optics if req.resolution_nm is None else min(1.0 / req.resolution_nm, f_optics)
    if req.resolution_nm is not None and 1.0 / req.resolution_nm > f_optics:
        notes.append(
            f"target {req.resolution_nm:g} nm is finer than the optics allow "
            f"({1 / f_optics:.1f} nm); planning for the latter"
        )
    n_roi = req.n_roi or views_for_frequency(r_roi, f_target)
    target_res = 2 * math.pi * r_roi / n_roi if req.n_roi else 1.0 / f_target
    return n_roi, views_optics, f_optics, max(target_res, 1.0 / f_optics)


def _full_views(
    req: PlanRequest, n_roi: int, notes: list[str]
) -> tuple[int, float, list[dict], float]:
    """Step 2, from the null space of the combined operator: ``(N_full, the interior-only
    null space, the ladder's table, N_full's ROI null space)``."""
    if req.n_full is not None:
        ladder = sorted({n for n in N_FULL_LADDER if n < req.n_full} | {req.n_full} - {0})
        interior_ns, table = _null_space_ladder(req, ladder, None)
        n_full = req.n_full
    else:
        n0_cap = req.reference_views or n_roi
        ladder = [n for n in N_FULL_LADDER if n < n0_cap] or [min(N_FULL_LADDER)]
        interior_ns, table = _null_space_ladder(req, ladder, req.null_tolerance)
        n_full = _first_stable(table, req.null_tolerance)
        if n_full is None:
            n_full = table[-1]["n_full"]
            notes.append(
                f"no N_full up to {n_full} keeps the ROI null space below "
                f"{100 * req.null_tolerance:g} %; using {n_full}"
            )
    ns_roi = next((row["roi"] for row in table if row["n_full"] == n_full), interior_ns)
    return n_full, interior_ns, table, ns_roi


def _photons_and_dose(
    req: PlanRequest, n_roi: int, n_full: int, notes: list[str]
) -> dict[str, Any]:
    """Step 3: the photons from eq. 13 with a computed D_full / D_ROI, and the dose maps."""
    from .geometry import scan_angles

    n0 = req.reference_views or n_roi
    if n_full >= n0:
        raise ParameterError(
            f"{n_full} full views leave no dose for the interior scan within the reference "
            f"scan's {n0} views: raise {option('--reference-views', 'reference_views')}"
        )
    v = req.cell_diameter_um * 1e3 / req.model_px
    n = req.model_px + 4
    lac = model_cell(n, req.model_px, req.lac_um)
    cell = lac > 0
    ang = scan_angles(min(n_roi, 60), req.arc_deg)
    per_view_full = _dose.absorbed_photons(lac, v, _dose.Exposure(ang, math.inf, 1.0)) / ang.size
    per_view_roi = (
        _dose.absorbed_photons(lac, v, _dose.Exposure(ang, req.roi_width_um * 1e3, 1.0)) / ang.size
    )
    ratio = _dose.mean_dose(per_view_full, cell) / _dose.mean_dose(per_view_roi, cell)
    gy_full = _dose.to_gray(per_view_full, v, req.energy_ev)  # Gy per view per photon/µm²
    gy_roi = _dose.to_gray(per_view_roi, v, req.energy_ev)
    if req.dose_gy is not None:
        fluence0 = req.dose_gy / (n0 * float(gy_full[cell].mean()))
    else:
        fluence0 = req.photons / (req.pixel_roi_nm * 1e-3) ** 2
    fluence_roi = fluence0 * ratio * (n0 - n_full) / n_roi  # eq. 13 (N_ROI = N₀ as printed)
    if n0 != n_roi:
        notes.append(
            f"eq. 13 with N_ROI = {n_roi} ≠ N₀ = {n0}: I_ROI = I₀ (D_full/D_ROI) (N₀ − N_full) / N_ROI"
        )
    return {
        "n0": n0,
        "fluence0": fluence0,
        "fluence_roi": fluence_roi,
        "ratio": ratio,
        "cell": cell,
        "ref_map": n0 * fluence0 * gy_full,
        "plan_map": n_full * fluence0 * gy_full + n_roi * fluence_roi * gy_roi,
    }
