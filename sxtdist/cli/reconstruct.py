"""``sxtdist reconstruct``: the combined reconstruction into a multiscale OME-Zarr volume."""

from __future__ import annotations

import click

from ..errors import ParameterError
from ..recon import AUTO, METHODS
from ..runner import ORACLE_CAP, Reconstruction, reconstruct
from ._options import ITERATIONS, execution_options, per_scan_float, scan_list


@click.command()
@click.argument("acquisition", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--method", type=click.Choice(METHODS), default="cgne", show_default=True)
@click.option(
    "--iterations",
    type=ITERATIONS,
    default=AUTO,
    show_default=True,
    help="Iterations, or 'auto': one count for the volume by split-half cross-validation "
    "of a CGNE pilot (recorded in the volume's provenance; give SIRT a count).",
)
@click.option("--scans", help="Scans to use: 'full,roi' (combined, default), 'roi' or 'full'.")
@click.option(
    "--exclude-untrusted",
    is_flag=True,
    help="Leave out the views the stored alignment verdict names ('check views ...', "
    "`sxtdist info`); recorded in the volume's provenance.",
)
@click.option(
    "--split-halves",
    is_flag=True,
    help="Also reconstruct OUT.half1/.half2 from the even and odd views: "
    "`sxtdist report OUT` then gives the split-half FSC (no truth needed).",
)
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
    help="Simulated data: stop at the best PSNR against the truth (studies only); "
    f"with --iterations auto, within {ORACLE_CAP} iterations.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the block plan, bytes read and written, peak memory per worker (or GPU) "
    "and the wall time estimated from this machine's rates for the cluster's workers "
    "(--workers, or --max-jobs for a batch queue); run nothing, write nothing "
    "(docs/cluster.md).",
)
@click.option(
    "--recalibrate",
    is_flag=True,
    help="With --dry-run: measure this machine's CPU rates again (about 15 s of CPU) and "
    "cache them, e.g. when the cached ones were measured under load.",
)
@execution_options(backend=True)
def command(acquisition, out, execution, dry_run, recalibrate, **recipe) -> None:
    """Reconstruct ACQUISITION (both scans together by default) into the volume OUT."""
    recipe["scans"] = scan_list(recipe["scans"])
    recipe["weights"] = _weights(recipe["weights"])
    if recalibrate and not dry_run:
        raise ParameterError("--recalibrate goes with --dry-run")
    if dry_run:
        from ..estimate import estimate_reconstruction

        estimate = estimate_reconstruction(
            acquisition, Reconstruction(**recipe), execution, recalibrate=recalibrate
        )
        click.echo(estimate.describe())
        return
    reconstruct(acquisition, out, Reconstruction(**recipe), execution)


def _weights(text: str):
    if text in ("quadrature", "equal"):
        return text
    parsed = per_scan_float(text, "--weights")
    if not isinstance(parsed, dict):
        raise ParameterError("--weights: give 'quadrature', 'equal' or 'full=W,roi=W'")
    return parsed
