"""``sxtdist reconstruct``: the combined reconstruction into a multiscale OME-Zarr volume."""

from __future__ import annotations

import click

from ..backends import BACKENDS
from ..errors import ParameterError
from ..recon import AUTO, METHODS
from ..runner import reconstruct
from ._cluster import client_kwargs, cluster_options
from ._options import ITERATIONS, overwrite_option, per_scan_float, progress_option, scan_list


@click.command()
@click.argument("acquisition", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--method", type=click.Choice(METHODS), default="cgne", show_default=True)
@click.option(
    "--iterations",
    type=ITERATIONS,
    default=AUTO,
    show_default=True,
    help="Iterations, or 'auto': one count for the volume by hold-out cross-validation "
    "(recorded in the volume's provenance).",
)
@click.option("--scans", help="Scans to use: 'full,roi' (combined, default), 'roi' or 'full'.")
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
    help="Simulated data: stop at the best PSNR against the truth (studies only).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="Solve blocks on the CPU or a GPU; auto: a GPU when one is usable (says which it "
    "chose). The two agree in quality, not bit for bit: ASTRA's GPU back-projection is "
    "not the exact transpose (docs/gpu.md).",
)
@cluster_options
@overwrite_option
@progress_option
@click.option("-q", "--quiet", is_flag=True, help="No status lines.")
def command(
    acquisition,
    out,
    method,
    iterations,
    scans,
    split_halves,
    block_size,
    halo,
    workers,
    scheduler,
    nonneg_every,
    rtol,
    psf,
    voxel_size_nm,
    weights,
    oracle,
    backend,
    cluster,
    min_jobs,
    max_jobs,
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
        split_halves=split_halves,
        block_size=block_size,
        halo=halo,
        **client_kwargs(cluster, scheduler, workers, min_jobs, max_jobs),
        nonneg_every=nonneg_every,
        rtol=rtol,
        psf=psf,
        voxel_size_nm=voxel_size_nm,
        weights=_weights(weights),
        oracle=oracle,
        backend=backend,
        overwrite=overwrite,
        progress=progress,
        quiet=quiet,
    )


def _weights(text: str):
    if text in ("quadrature", "equal"):
        return text
    parsed = per_scan_float(text, "--weights")
    if not isinstance(parsed, dict):
        raise ParameterError("--weights: give 'quadrature', 'equal' or 'full=W,roi=W'")
    return parsed
