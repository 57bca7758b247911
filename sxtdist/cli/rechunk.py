"""``sxtdist rechunk``: copy an acquisition into the current projection layout."""

from __future__ import annotations

import click

from ..dataset import convert_layout
from ._options import overwrite_option


@click.command()
@click.argument("acquisition", type=click.Path())
@click.argument("out", type=click.Path())
@overwrite_option
def command(acquisition, out, overwrite) -> None:
    """Copy ACQUISITION to OUT with one projection per shard in bands of rows.

    Acquisitions written by sxtdist before this layout (one projection per chunk) open
    and reconstruct as they are, but every slice block then decodes whole views; the
    copy lets each block read only its rows (docs/format.md). ACQUISITION is only read.
    """
    convert_layout(acquisition, out, overwrite=overwrite)
