"""``sxtdist batch``: reconstruct every cell of a manifest on one cluster."""

from __future__ import annotations

import click

from ..batch import format_summary, reconstruct_batch
from ..recon import METHODS
from ._options import ITERATIONS, execution_options, scan_list, verbosity


@click.command()
@click.argument("manifest", type=click.Path())
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    required=True,
    help="Output directory: one CELL.zarr volume per cell and batch-summary.csv.",
)
@click.option(
    "--concurrent",
    type=click.IntRange(min=1),
    help="Cells reconstructed at once (default: the number of workers, at least 2).",
)
@click.option(
    "--align",
    type=click.Choice(["auto", "always", "never"]),
    help="Align each cell first: auto (default) when a scan is not aligned yet, always, never.",
)
@click.option("--method", type=click.Choice(METHODS), help="Default method for every cell.")
@click.option("--iterations", type=ITERATIONS, help="Default iterations, or 'auto' (the default).")
@click.option("--scans", help="Default scans: 'full,roi' (combined), 'roi' or 'full'.")
@click.option("--block-size", type=click.IntRange(min=1), help="Default slices per block.")
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="PSNR and FRC resolution against the truth where a cell has one (simulated data).",
)
@click.option("--summary", type=click.Path(), help="Summary CSV (default OUT/batch-summary.csv).")
@execution_options(
    backend=True,
    overwrite="Reconstruct every cell again, replacing complete outputs instead of skipping them.",
)
def command(
    manifest,
    out_dir,
    execution,
    concurrent,
    align,
    method,
    iterations,
    scans,
    block_size,
    metrics,
    summary,
) -> None:
    """Align and reconstruct every cell listed in MANIFEST (YAML or CSV), several at once.

    Each line or entry names an acquisition and may override options for that cell
    (align, method, iterations, scans, block_size, ...); see docs/cluster.md. A failing
    cell is recorded and the others go on; running the same command again resumes
    (complete cells are skipped, unfinished ones continue from their finished
    blocks). Ctrl-C or SIGTERM stops cleanly. The summary table goes to standard
    output (not with -q) and to OUT/batch-summary.csv; the exit code is 1 if any cell
    failed.
    """
    defaults = {
        k: v
        for k, v in dict(
            align={"auto": "auto", "always": True, "never": False}.get(align),
            method=method,
            iterations=iterations,
            scans=scan_list(scans),
            block_size=block_size,
        ).items()
        if v is not None
    }
    # SIGTERM arrives as an interrupt (sxtdist.cli.main): outputs stay resumable
    rows = reconstruct_batch(
        manifest,
        out_dir,
        execution,
        concurrent=concurrent,
        metrics=metrics,
        summary=summary,
        **defaults,
    )
    if verbosity() >= 0:
        click.echo(format_summary(rows))
    if any(r.status == "failed" for r in rows):
        raise click.exceptions.Exit(1)
