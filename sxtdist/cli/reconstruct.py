"""``sxtdist reconstruct``: the combined reconstruction into a multiscale OME-Zarr volume."""

from __future__ import annotations

import os

import click

from ..backends import BACKENDS
from ..errors import ParameterError
from ..recon import DEFAULT_ITERATIONS, METHODS
from ..runner import reconstruct
from ._cluster import client_kwargs, cluster_options
from ._options import overwrite_option, per_scan_float, progress_option, scan_list


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
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="Solve blocks on the CPU or a GPU; auto: a GPU when one is usable (says which it "
    "chose). The two agree in quality, not bit for bit: ASTRA's GPU back-projection is "
    "not the exact transpose (docs/gpu.md).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the block plan, bytes read and written, peak memory per worker (or GPU) "
    "and the wall time estimated from this machine's rates for --workers (or "
    "--max-jobs) workers; run nothing, write nothing (docs/cluster.md).",
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
    dry_run,
    cluster,
    min_jobs,
    max_jobs,
    overwrite,
    progress,
    quiet,
) -> None:
    """Reconstruct ACQUISITION (both scans together by default) into the volume OUT."""
    if dry_run:
        click.echo(
            _estimate(
                acquisition,
                backend,
                workers or max_jobs or os.cpu_count() or 1,
                block_size=block_size,
                halo=halo,
                method=method,
                iterations=iterations,
                scans=scan_list(scans),
                psf=psf,
                voxel_size_nm=voxel_size_nm,
                weights=_weights(weights),
            ).describe()
        )
        return
    reconstruct(
        acquisition,
        out,
        method=method,
        iterations=iterations,
        scans=scan_list(scans),
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


def _estimate(acquisition, backend: str, workers: int, **options):
    """The dry run's estimate; ``auto`` is the backend a local run would choose."""
    from ..backends import select_backend
    from ..estimate import estimate_reconstruction

    chosen = backend if backend != "auto" else select_backend("auto")[0]
    return estimate_reconstruction(acquisition, workers, chosen, **options)


def _weights(text: str):
    if text in ("quadrature", "equal"):
        return text
    parsed = per_scan_float(text, "--weights")
    if not isinstance(parsed, dict):
        raise ParameterError("--weights: give 'quadrature', 'equal' or 'full=W,roi=W'")
    return parsed
