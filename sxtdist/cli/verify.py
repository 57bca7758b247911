"""``sxtdist verify``: read every chunk of an acquisition or a volume; name what is lost."""

from __future__ import annotations

import click

from ..errors import InputError
from ..integrity import verify
from ..leftovers import leftovers

#: Problems listed one per line before the rest are counted.
SHOWN = 20


@click.command()
@click.argument("path", type=click.Path())
def command(path: str) -> None:
    """Check that every chunk of the acquisition or volume at PATH is there and readable.

    Reads all of it once (checksums, NaN/inf) and compares a complete volume with
    what it recorded. Lists what is missing or unreadable and exits with code 2 if
    anything is; 0 when all is whole. Notes what a stopped run left beside PATH (or, for a
    folder, beside the outputs in it).
    """
    try:
        report = verify(path)
    except InputError:  # nothing to verify at PATH: what a stopped run left may be
        for line in leftovers(path):
            click.echo(f"note: {line}")
        raise
    for line in report.problems[:SHOWN]:
        click.echo(line)
    if len(report.problems) > SHOWN:
        click.echo(f"... and {len(report.problems) - SHOWN} more problem(s)")
    for note in report.notes[:SHOWN]:
        click.echo(f"note: {note}")
    if len(report.notes) > SHOWN:
        click.echo(f"note: ... and {len(report.notes) - SHOWN} more")
    if not report.ok:
        listed = f"the first {SHOWN} listed" if len(report.problems) > SHOWN else "listed"
        raise InputError(
            path,
            f"damaged: {len(report.problems)} problem(s) in {report.chunks} chunks of "
            f"{report.arrays} arrays ({listed} above)",
        )
    click.echo(
        f"{path}: {report.kind} whole: {report.chunks} chunks of {report.arrays} arrays read"
    )
