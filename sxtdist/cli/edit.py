"""``sxtdist edit``: change what an acquisition says about a scan (metadata only)."""

from __future__ import annotations

import click

from ..io.metadata import edit_scan
from .import_ import pair, physics_options, pop_physics


@click.command()
@click.argument("acquisition", type=click.Path())
@click.option(
    "--scan", type=click.Choice(["full", "roi"]), required=True, help="The scan to change."
)
@physics_options
@click.option(
    "--center-offset-px",
    metavar="ROW,COL",
    help="Offset of the detector centre from the rotation axis (pixels).",
)
@click.option(
    "--axis-tilt-deg",
    type=float,
    help="In-plane tilt of the rotation axis on the detector (degrees; positive: the axis "
    "runs to the right down the detector).",
)
@click.option(
    "--xf", type=click.Path(), help="An IMOD .xf alignment: its shifts and axis tilt are stored."
)
def command(acquisition, scan, center_offset_px, axis_tilt_deg, xf, **kw) -> None:
    """Set the pixel size, energy, zone plate, dose, centre or axis tilt of an imported scan.

    Only the metadata changes; the projections are not touched. Values are checked
    before anything is written, and each change is kept with its old value under the
    scan's "edits" (see `sxtdist info`). Example: the zone plate an import could not
    know, so that `reconstruct --psf` can model it:

        sxtdist edit cell.zarr --scan roi --zone-plate-ozw-nm 35
    """
    changes = edit_scan(
        acquisition,
        scan,
        pop_physics(kw),
        pair(center_offset_px, ",", "--center-offset-px", "ROW,COL"),
        axis_tilt_deg,
        xf,
    )
    for key, c in changes.items():
        if key == "shifts_px":
            click.echo(f"{scan}: shifts_px from {xf} ({len(c['to'])} views)")
        elif key != "alignment":
            click.echo(f"{scan}: {key} {c['from']} -> {c['to']}")
    if not changes:
        click.echo(f"{scan}: nothing changed (the values were already set)")
