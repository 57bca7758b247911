"""``sxtdist simulate``: a synthetic acquisition with a known truth."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..simulation import PRESETS, simulate
from ._options import overwrite_option, per_scan_float, progress_option


@click.command()
@click.argument("out", type=click.Path())
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="small",
    show_default=True,
    help="Size of the simulated cell and scans.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (deterministic).")
@click.option("--n-full", type=int, help="Number of sparse full-field views.")
@click.option("--n-roi", type=int, help="Number of interior (ROI) views.")
@click.option("--roi-width-um", type=float, help="Width of the interior field of view (µm).")
@click.option("--pixel-size-nm", help="Pixel size, '60' or per scan 'full=120,roi=60'.")
@click.option("--photons", help="Photons per pixel (flat field), one value or 'full=..,roi=..'.")
@click.option(
    "--shifts", "shifts_px", help="Std. dev. of random per-projection shifts (px), or per scan."
)
@click.option(
    "--motion",
    type=click.Path(dir_okay=False),
    help='Known per-view shifts, a JSON file {"full": [[dy, dx], ...], "roi": [...]} '
    "(each scan's pixels, one pair per view), instead of random ones for the scans it names.",
)
@click.option(
    "--range", "arc_deg", type=click.Choice(["180", "360"]), help="Angular range (degrees)."
)
@click.option(
    "--intensity-mismatch",
    metavar="PHI0,C",
    help="Eq. 16 intensity transform applied to the ROI scan, e.g. '0.8,1.6'.",
)
@click.option(
    "--capillary/--no-capillary", default=None, help="Model a capillary wall around the cell."
)
@click.option(
    "--psf/--no-psf", default=True, show_default=True, help="Blur with the zone-plate PSF."
)
@click.option(
    "--axis-tilt-deg",
    type=float,
    default=0.0,
    show_default=True,
    help="Tilt of the rotation axis on the detectors (the truth's; the scans say 0).",
)
@overwrite_option
@progress_option
def command(
    out,
    preset,
    seed,
    n_full,
    n_roi,
    roi_width_um,
    pixel_size_nm,
    photons,
    shifts_px,
    motion,
    arc_deg,
    intensity_mismatch,
    capillary,
    psf,
    axis_tilt_deg,
    overwrite,
    progress,
) -> None:
    """Simulate an interior + sparse full-view acquisition of a frozen cell into OUT (Zarr)."""
    simulate(
        out,
        preset=preset,
        seed=seed,
        n_full=n_full,
        n_roi=n_roi,
        roi_width_um=roi_width_um,
        pixel_size_nm=per_scan_float(pixel_size_nm, "--pixel-size-nm"),
        photons=per_scan_float(photons, "--photons"),
        shifts_px=per_scan_float(shifts_px, "--shifts"),
        motion=motion,
        arc_deg=None if arc_deg is None else float(arc_deg),
        intensity_mismatch=_pair(intensity_mismatch),
        capillary=capillary,
        psf=psf,
        axis_tilt_deg=axis_tilt_deg,
        overwrite=overwrite,
        progress=progress,
    )


def _pair(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        phi0, c = (float(t) for t in text.split(","))
    except ValueError as exc:
        raise ParameterError(f"--intensity-mismatch: expected PHI0,C, got {text!r}") from exc
    return phi0, c
