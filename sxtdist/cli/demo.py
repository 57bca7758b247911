"""``sxtdist demo``: simulate a cell, align, reconstruct, and say how good the result is."""

from __future__ import annotations

import os

import click

from ..demo import run_demo
from ..recon import AUTO
from ._options import ITERATIONS


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
@click.option("--workers", type=int, help="Local worker processes (default: the available cores).")
@click.option("--iterations", type=ITERATIONS, default=AUTO, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the outputs of an earlier demo in --out.")
def command(out_dir, preset, seed, workers, iterations, overwrite) -> None:
    """Run the whole pipeline on a simulated cell and print where the outputs are."""
    run_demo(
        os.fspath(out_dir),
        preset=preset,
        seed=seed,
        workers=workers,
        iterations=iterations,
        overwrite=overwrite,
    )
