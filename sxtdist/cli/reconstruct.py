"""``sxtdist reconstruct``: the combined reconstruction into a multiscale OME-Zarr volume."""

from __future__ import annotations

import click

from ..recon import DEFAULT_ITERATIONS, METHODS
from ..runner import reconstruct
from ._options import overwrite_option, progress_option, scan_list


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
@click.option("--workers", type=int, help="Local worker processes (default: the available cores).")
@click.option("--scheduler", help="Address of a running Dask scheduler to use instead.")
@click.option("--nonneg-every", type=int, help="CGNE: clamp at zero every K iterations.")
@click.option("--rtol", type=float, help="CGNE: stop each slice group at this relative residual.")
@click.option(
    "--psf/--no-psf", default=True, show_default=True, help="Model the zone-plate PSF of each scan."
)
@click.option("--voxel-size-nm", type=float, help="Voxel size (default: the finest pixel).")
@click.option(
    "--oracle",
    is_flag=True,
    help="Simulated data: stop at the best PSNR against the truth (studies only).",
)
@overwrite_option
@progress_option
@click.option("-q", "--quiet", is_flag=True, help="No status lines.")
def command(
    acquisition,
    out,
    method,
    iterations,
    scans,
    block_size,
    halo,
    workers,
    scheduler,
    nonneg_every,
    rtol,
    psf,
    voxel_size_nm,
    oracle,
    overwrite,
    progress,
    quiet,
) -> None:
    """Reconstruct ACQUISITION (both scans together by default) into the volume OUT."""
    reconstruct(
        acquisition,
        out,
        method=method,
        iterations=iterations,
        scans=scan_list(scans),
        block_size=block_size,
        halo=halo,
        workers=workers,
        scheduler=scheduler,
        nonneg_every=nonneg_every,
        rtol=rtol,
        psf=psf,
        voxel_size_nm=voxel_size_nm,
        oracle=oracle,
        overwrite=overwrite,
        progress=progress,
        quiet=quiet,
    )
