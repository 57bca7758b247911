"""``sxtdist report``: slices, PSNR and resolution of a reconstructed volume, as a PNG and CSVs."""

from __future__ import annotations

import click

from ..report import MAX_SLICES, make_report
from ..scoring import PSNR_NOTE
from ._options import echo_json, overwrite_option, renamed_option


@click.command()
@click.argument("volume", type=click.Path())
@click.option(
    "--truth", type=click.Path(), help="Simulated acquisition whose truth to compare with."
)
@click.option(
    "--half", type=click.Path(), help="Volume from the other half of the views: split-half FRC."
)
@click.option(
    "--roi-width-um",
    "roi_um",
    type=float,
    help="ROI width for the ROI PSNR and the resolution cube (µm).",
)
@click.option("--out", type=click.Path(), help="Output prefix (default VOLUME.report).")
@click.option(
    "--max-slices",
    type=click.IntRange(1),
    default=MAX_SLICES,
    show_default=True,
    help="Central slices read for the images and the radial PSNR.",
)
@overwrite_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and files as JSON.")
@renamed_option("--roi-um", "--roi-width-um", "roi_um", type=float)
def command(volume, truth, half, roi_um, out, max_slices, overwrite, as_json) -> None:
    """Write VOLUME.report.png, .csv and .curves.csv: a look at a reconstruction."""
    rep = make_report(volume, truth, out, half, roi_um, max_slices, overwrite)
    if as_json:
        files = {"png": rep.png, "csv": rep.csv, "curves_csv": rep.curves_csv}
        echo_json({"metrics": rep.rows, "files": files})
        return
    for r in rep.rows:
        value = r["value"]
        text = f"{value:.4g} {r['unit']}" if isinstance(value, float) else str(value)
        click.echo(f"{r['metric']:32s} {text}")
    if any(r["metric"].startswith("psnr") for r in rep.rows):
        click.echo(f"PSNR: {PSNR_NOTE}")
    click.echo(f"wrote {rep.png}, {rep.csv}, {rep.curves_csv}")
