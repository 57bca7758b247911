"""``sxtdist preview``: FBP of a few slices of each scan, and a rough combined look, as a PNG."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..execution import BACKENDS, Execution
from ..fbp import FILTERS
from ..preview import PANEL_PX, PreviewOptions, preview
from ._options import overwrite_option


@click.command()
@click.argument("acquisition", type=click.Path())
@click.option("--out", type=click.Path(), help="The PNG [default: <ACQ name>_preview.png here].")
@click.option(
    "--slices", type=click.IntRange(min=1), default=3, show_default=True,
    help="How many slices, spread evenly over the height.",
)  # fmt: skip
@click.option("--z", "z_index", metavar="K1,K2,...", help="These slice indices instead.")
@click.option(
    "--filter", "filter_type", type=click.Choice(FILTERS), default="ram-lak", show_default=True
)
@click.option(
    "--panel-px", type=click.IntRange(min=16), default=PANEL_PX, show_default=True,
    help="Panels larger than this (pixels a side) are shown binned.",
)  # fmt: skip
@click.option(
    "--volume", type=click.Path(),
    help="Also write the combined FBP of every slice, binned, as an OME-Zarr volume.",
)  # fmt: skip
@click.option("--volume-bin", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
    help="ASTRA's FBP on the CPU or its CUDA FBP; auto: CUDA when ASTRA has a GPU.",
)  # fmt: skip
@overwrite_option
def command(acquisition, out, slices, z_index, backend, overwrite, **kw) -> None:
    """Reconstruct a few slices of ACQUISITION by filtered back-projection, as a PNG.

    One row per slice: each scan's FBP (the stored shifts and axis tilt applied) and a
    rough combined slice (the full scan's, with the interior scan's inside its field,
    the red circle). Seconds at 512^2: look at it after import (is the cell in the
    field?) and after align (misaligned views smear edges into arcs).
    """
    if z_index is not None:
        try:
            kw["slices"] = tuple(int(t) for t in z_index.split(","))
        except ValueError:
            raise ParameterError(
                f"--z: expected slice indices K1,K2,..., got {z_index!r}"
            ) from None
    else:
        kw["slices"] = slices
    result = preview(
        acquisition, out, PreviewOptions(**kw), Execution(backend=backend, overwrite=overwrite)
    )
    click.echo(f"{result.png} ({len(result.z_index)} slices, {result.seconds:.2f} s)")
    if result.volume:
        click.echo(result.volume)
