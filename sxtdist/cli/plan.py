"""``sxtdist plan``: how many full and interior views, and how many photons per view."""

from __future__ import annotations

import json

import click

from ..errors import ParameterError
from ..plan import PlanRequest, plan_acquisition
from ._options import per_scan_float, renamed_option


def _pair(text: str | None, name: str, default: tuple[float, float]) -> tuple[float, float]:
    value = per_scan_float(text, name)
    if value is None:
        return default
    if isinstance(value, float):
        return value, value
    missing = {"full", "roi"} - set(value)
    if missing:
        raise ParameterError(f"{name}: give both scans, e.g. full=40,roi=20 (missing {missing})")
    return value["full"], value["roi"]


@click.command()
@click.option("--cell-diameter-um", "cell_um", type=float, help="Cell (sample) diameter, µm.")
@click.option("--roi-width-um", "roi_um", type=float, help="Interior field of view width, µm.")
@click.option(
    "--pixel-size-nm", "pixel_nm", help="Pixel size at the sample: '20' or 'full=40,roi=20'."
)
@click.option(
    "--zone-plate-ozw-nm",
    "ozw_nm",
    default="full=60,roi=35",
    show_default=True,
    help="Zone-plate outermost zone widths.",
)
@click.option("--energy-ev", type=float, default=517.0, show_default=True, help="Photon energy.")
@click.option(
    "--photons",
    type=float,
    default=1000.0,
    show_default=True,
    help="Budget: photons per interior pixel per view of the reference full-field scan (I₀).",
)
@click.option("--dose-gy", type=float, help="Budget as the mean dose in the cell (Gy) instead.")
@click.option(
    "--reference-views", type=int, help="N₀, views of the reference scan (default: N_ROI)."
)
@click.option("--resolution-nm", type=float, help="Target resolution (full period) in the ROI.")
@click.option("--n-roi", type=int, help="Fix the number of interior views.")
@click.option("--n-full", type=int, help="Fix the number of full-field views.")
@click.option("--lac", type=float, default=0.28, show_default=True, help="Mean cell LAC, 1/µm.")
@click.option(
    "--null-tolerance",
    type=float,
    default=2.0,
    show_default=True,
    help="Acceptable ROI null-space size, % of the ROI's norm.",
)
@click.option(
    "--model-px",
    type=int,
    default=96,
    show_default=True,
    help="Voxels across the cell in the coarse null-space/dose model.",
)
@click.option("--range", "arc_deg", type=click.Choice(["180", "360"]), default="180")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@renamed_option("--cell-um", "--cell-diameter-um", "cell_um", required=True, type=float)
@renamed_option("--roi-um", "--roi-width-um", "roi_um", required=True, type=float)
@renamed_option("--pixel-nm", "--pixel-size-nm", "pixel_nm", required=True)
@renamed_option("--ozw-nm", "--zone-plate-ozw-nm", "ozw_nm")
def command(
    cell_um,
    roi_um,
    pixel_nm,
    ozw_nm,
    energy_ev,
    photons,
    dose_gy,
    reference_views,
    resolution_nm,
    n_roi,
    n_full,
    lac,
    null_tolerance,
    model_px,
    arc_deg,
    as_json,
) -> None:
    """Recommend N_full, N_ROI and the photons per view for an interior + sparse scan.

    The interior views follow from the target resolution (paper figure 11), the
    full views from the null space of the combined scan on a model of the cell
    (figure 2), the photons from the dose budget with eq. 13. Example (the
    paper's simulation): sxtdist plan --cell-diameter-um 16 --roi-width-um 6
    --pixel-size-nm 20
    """
    pf, pr = _pair(pixel_nm, "--pixel-size-nm", (0.0, 0.0))
    of, orr = _pair(ozw_nm, "--zone-plate-ozw-nm", (60.0, 35.0))
    req = PlanRequest(
        cell_diameter_um=cell_um,
        roi_width_um=roi_um,
        pixel_full_nm=pf,
        pixel_roi_nm=pr,
        ozw_full_nm=of,
        ozw_roi_nm=orr,
        energy_ev=energy_ev,
        photons=photons,
        dose_gy=dose_gy,
        reference_views=reference_views,
        resolution_nm=resolution_nm,
        n_roi=n_roi,
        n_full=n_full,
        lac_um=lac,
        null_tolerance=null_tolerance / 100.0,
        arc_deg=float(arc_deg),
        model_px=model_px,
    )
    plan = plan_acquisition(req)
    if as_json:
        click.echo(json.dumps(plan.to_dict(), indent=2, default=float))
    else:
        click.echo(plan.table())
