"""``sxtdist align``: estimate per-projection shifts and the intensity transform."""

from __future__ import annotations

import click

from ._options import execution_options, scan_list


@click.command()
@click.argument("acq", type=click.Path())
@click.option("--scans", help="Scans to align, e.g. 'full,roi' (default: all).")
@click.option(
    "--method",
    type=click.Choice(["anchor", "neighbour", "projection-matching"]),
    default="anchor",
    show_default=True,
    help="Interior scan: anchors to the full views plus the neighbour chain (eq. 14), or the "
    "neighbour chain only. projection-matching: full scan only (--scans full).",
)
@click.option(
    "--max-shift", "max_shift_px", type=float,
    help="Largest shift searched (ROI px; default 45 % of the interior view's smaller side).",
)  # fmt: skip
@click.option(
    "--coarse/--no-coarse", default=True, show_default=True,
    help="Register each anchor pair over the whole search first and centre every pair's "
    "search on what that predicts (--no-coarse: around zero).",
)  # fmt: skip
@click.option(
    "--smooth", "smooth_px", type=float, default=1.0, show_default=True,
    help="Extra Gaussian sigma (px) on the compared images, against noise.",
)  # fmt: skip
@click.option(
    "--anchor-window", "anchor_window_deg", type=float,
    help="Largest angle (deg) between an interior view and its anchor "
    "(default: half the full scan's step).",
)  # fmt: skip
@click.option(
    "--refine/--no-refine", default=False, show_default=True,
    help="Maximise the sum of pair NCCs (eq. 14) from the least-squares solution.",
)  # fmt: skip
@click.option(
    "--robust-pairs", "robust_pairs", type=float, default=5.0, show_default=True,
    help="Weight down a pair whose misfit is beyond this many robust standard deviations "
    "of all pairs' (a damaged frame); 0: plain least squares.",
)  # fmt: skip
@click.option(
    "--intensity",
    type=click.Choice(["dual_energy", "affine", "none"]),
    default="dual_energy",
    show_default=True,
    help="Intensity transform between the scans (paper eq. 16) to fit and store.",
)
@click.option("--iterations", "full_iterations", type=int, default=None,
              help="Projection-matching iterations for the full scan after its moments "
                   "[default: 0, or 10 with --method projection-matching; on sparse scans "
                   "it made the moments worse, docs/dev/alignment-history.md].")  # fmt: skip
@click.option("--tol", "tol_px", type=float, default=0.05, show_default=True,
              help="Stop projection matching when no shift changes by more (px).")  # fmt: skip
@click.option(
    "--report", type=click.Path(), help="Report directory (default: <ACQ>_alignment); '' for none."
)
@click.option("--dry-run", is_flag=True, help="Compute and report, but do not store the shifts.")
@click.option(
    "--measure-axis-tilt", "measure_tilt", is_flag=True,
    help="Also measure the rotation axis's in-plane tilt on the full scan and store it on "
    "every scan (then align again: docs/tilt.md).",
)  # fmt: skip
@click.option(
    "--apply", "saved", type=click.Path(),
    help="Store the alignment that an earlier align saved to this file when it could not "
    "store it (the acquisition was busy); nothing is aligned.",
)  # fmt: skip
@execution_options(overwrite=None)
def command(acq, scans, method, report, measure_tilt, saved, execution, **kw) -> None:
    """Align the scans of the acquisition ACQ and store the shifts in its metadata.

    The full scan is aligned first (row profiles and weighted centroids, the
    rotation axis found; projection matching on request); then every interior view
    is registered to its anchor (the full view at the nearest angle, mirrored views
    included) and to its neighbour, one Dask task per pair, and the shifts solved
    from all pairs, the full views' shifts refined with them. A report (shifts.csv,
    pairs.csv, alignment.png) shows whether it worked.
    """
    from ..alignment import align
    from ..alignment.intensity import describe_intensity_transform

    if saved is not None:
        from ..alignment.store import apply_saved

        stored = apply_saved(acq, saved)
        click.echo(f"stored the alignment of {', '.join(stored)} in {acq}")
        return
    if measure_tilt:
        from ..alignment.tilt import measure_axis_tilt

        tilt = measure_axis_tilt(acq, store=not kw["dry_run"])
        click.echo(f"axis tilt: {tilt.tilt_deg:+.4f} ± {tilt.sigma_deg:.4f} deg")
    result = align(acq, scan_list(scans), method=method, report=report, execution=execution, **kw)
    for name, info in result.info.items():
        extra = ""
        if name == "full":
            extra = (
                f", {info['iterations']} projection-matching iterations"
                + (f" (converged: {info['converged']})" if info["iterations"] else "")
                + f", rotation axis offset {info['axis_offset_px']:+.2f} px"
            )
        else:
            extra = (
                f", {info['pairs_used']}/{info['pairs']} pairs, "
                f"residual {info['residual_rms_px']:.3f} px, median peak NCC "
                f"{info['peak_ncc_median']:.4f}"
            )
        click.echo(f"{name}: {len(result.shifts[name])} shifts{extra}")
    if result.intensity_transform:
        click.echo(
            f"intensity transform: {describe_intensity_transform(result.intensity_transform)}"
        )
    click.echo("not stored (dry run)" if kw["dry_run"] else f"stored in {acq}")
    if result.report_dir:
        click.echo(f"report: {result.report_dir}")
