"""``sxtdist reconstruct``: the combined reconstruction into a multiscale OME-Zarr volume."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..recon import DEFAULT_ITERATIONS, METHODS
from ..runner import Reconstruction, reconstruct
from ._options import execution_options, per_scan_float, scan_list


@click.command()
@click.argument("acquisition", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--method", type=click.Choice(METHODS), default="cgne", show_default=True)
@click.option(
    "--iterations",
    type=int,
    default=DEFAULT_ITERATIONS,
    show_default=True,
    help="Iterations per block.",
)
@click.option("--scans", help="Scans to use: 'full,roi' (combined, default), 'roi' or 'full'.")
@click.option("--block-size", type=int, help="Slices per block (default: from the memory budget).")
@click.option(
    "--halo", type=int, help="Halo slices per block side (default: from the row coupling)."
)
@click.option("--nonneg-every", type=int, help="CGNE: clamp at zero every K iterations.")
@click.option("--rtol", type=float, help="CGNE: stop each slice group at this relative residual.")
@click.option(
    "--psf/--no-psf",
    default=False,
    show_default=True,
    help="Model the zone-plate PSF of each scan (a deconvolving reconstruction).",
)
@click.option("--voxel-size-nm", type=float, help="Voxel size (default: the finest pixel).")
@click.option(
    "--weights",
    default="quadrature",
    show_default=True,
    help="Scan weights: 'quadrature' (pixel area x angular step), 'equal', or 'full=W,roi=W'.",
)
@click.option(
    "--oracle",
    is_flag=True,
    help="Simulated data: stop at the best PSNR against the truth (studies only).",
)
@execution_options(backend=True)
def command(acquisition, out, execution, **recipe) -> None:
    """Reconstruct ACQUISITION (both scans together by default) into the volume OUT."""
    recipe["scans"] = scan_list(recipe["scans"])
    recipe["weights"] = _weights(recipe["weights"])
    reconstruct(acquisition, out, Reconstruction(**recipe), execution)


def _weights(text: str):
    if text in ("quadrature", "equal"):
        return text
    parsed = per_scan_float(text, "--weights")
    if not isinstance(parsed, dict):
        raise ParameterError("--weights: give 'quadrature', 'equal' or 'full=W,roi=W'")
    return parsed
