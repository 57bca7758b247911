"""``sxtdist export``: a reconstructed volume to MRC, TIFF or OME-Zarr 0.4 (Zarr v2)."""

from __future__ import annotations

import click

from ..io.export import FORMATS, export_volume, parse_crop
from ._options import overwrite_option, progress_option


@click.command()
@click.argument("volume", type=click.Path())
@click.argument("out", type=click.Path())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMATS)),
    help="Output format (default: from OUT's suffix: .mrc/.rec/.map, .tif/.tiff, .zarr).",
)
@click.option(
    "--level", type=int, default=0, show_default=True, help="Pyramid level (0 = full resolution)."
)
@click.option(
    "--crop",
    metavar="Z0:Z1,Y0:Y1,X0:X1",
    help="Sub-volume in voxels of the chosen level; empty ends mean the edge, e.g. '10:50,:,:'.",
)
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Export a volume whose reconstruction has not finished (missing blocks are zeros).",
)
@overwrite_option
@progress_option
def command(volume, out, fmt, level, crop, allow_incomplete, overwrite, progress) -> None:
    """Write VOLUME (a level, optionally cropped) to OUT as MRC, TIFF or OME-Zarr 0.4.

    MRC carries the voxel size in its header (IMOD, ChimeraX, Amira), TIFF
    carries ImageJ calibration (Fiji), and .zarr is an NGFF 0.4 multiscale image
    in Zarr v2 for viewers that do not read Zarr v3 (Fiji/MoBIE, older napari).
    """
    path = export_volume(
        volume,
        out,
        fmt=fmt,
        level=level,
        crop=parse_crop(crop),
        overwrite=overwrite,
        progress=progress,
        allow_incomplete=allow_incomplete,
    )
    click.echo(path)
