"""``sxtdist demo``: simulate a cell, align, reconstruct, and say how good the result is."""

from __future__ import annotations

import click

from ..recon import AUTO
from ._options import ITERATIONS, execution_options


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(),
    default="sxtdist-demo",
    show_default=True,
    help="Directory for the acquisition and the volumes.",
)
@click.option("--preset", type=click.Choice(["tiny", "small"]), default="small", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--iterations", type=ITERATIONS, default=AUTO, show_default=True)
@execution_options(backend=True, overwrite="Replace the outputs of an earlier demo in --out.")
def command(out_dir, preset, seed, iterations, execution) -> None:
    """Run the whole pipeline on a simulated cell and print where the outputs are."""
    # Here, not at the top: the pipeline (simulation, alignment, runner: Dask, Zarr) is
    # what ``sxtdist demo --help`` need not import.
    from ..demo import describe_results, run_demo

    results = run_demo(out_dir, preset, seed, iterations, execution)
    click.echo(describe_results(out_dir, preset, results))
