"""``sxtdist info``: what an acquisition or a volume holds."""

from __future__ import annotations

import os
import warnings
from typing import Any

import click
import numpy as np

from ..alignment.anchoring import stale_anchoring
from ..errors import InputError, SxtdistWarning, printable, quoted
from ..geometry import angular_spacing_deg
from ..leftovers import is_leftover, leftovers
from ._options import echo_json


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the metadata and the arrays as JSON.")
def command(path: str, as_json: bool) -> None:
    """Describe the acquisition dataset or reconstructed volume at PATH.

    Also names what a stopped run left beside it (or, for a folder, beside the outputs in
    it): a volume it was creating, a replacement it was writing.
    """
    try:
        text = None if as_json else describe(path)
        found = summary(path) if as_json else None
    except InputError:  # nothing to describe at PATH: what a stopped run left may be
        for line in leftovers(path):
            click.echo(f"leftover: {line}", err=as_json)
        raise
    if as_json:
        echo_json(found)
    else:
        click.echo(text)


def summary(path: str) -> dict[str, Any]:
    """What ``info --json`` prints: the kind, sxtdist's metadata, and each image's levels.

    ``images`` maps each scan (and a simulated truth), or ``volume``, to its levels'
    shape, chunks, dtype, scale and translation (nm) and its display window.
    """
    # The dataset's and NGFF's modules (Zarr, Dask, the NGFF models: seconds on a busy
    # machine) are imported here and below, not at the top: ``sxtdist info --help`` needs
    # none of them.
    from ..dataset import KEY, open_sxtdist_group

    group = open_sxtdist_group(os.fspath(path))
    kind = group.attrs[KEY].get("kind", "acquisition")
    if kind == "volume":
        from ..volume import open_volume

        images = {"volume": open_volume(path, mode="r").group}
    elif kind == "acquisition":
        from ..dataset import open_acquisition

        acq = open_acquisition(path, mode="r")
        stale = stale_anchoring(acq)
        if stale:  # on standard error: the JSON on standard output stays whole
            warnings.warn(f"{printable(acq.path)}: {stale}", SxtdistWarning, stacklevel=2)
        names = [*acq.scans, *(["truth"] if "truth" in acq.group else [])]
        images = {name: acq.group[name] for name in names}
    else:
        raise InputError(path, f"unknown sxtdist dataset kind {kind!r}")
    return {
        "path": os.path.abspath(path),
        "kind": kind,
        "metadata": dict(group.attrs[KEY]),
        "images": {name: _image_summary(g) for name, g in images.items()},
        "leftovers": leftovers(path),
    }


def _image_summary(group) -> dict[str, Any]:
    from ..io import ngff

    scales, translations = ngff.level_scales(group), ngff.level_translations(group)
    levels = []
    for k, (scale, translation) in enumerate(zip(scales, translations)):
        arr = group[str(k)]
        levels.append(
            {
                "shape": list(arr.shape),
                "chunks": list(arr.chunks),
                "dtype": str(arr.dtype),
                "scale": scale,
                "translation": translation,
            }
        )
    return {"levels": levels, "display_window": ngff.stored_display_window(group)}


def describe(path: str) -> str:
    """A human-readable summary of an sxtdist dataset (acquisition or volume)."""
    from ..dataset import KEY, open_sxtdist_group

    group = open_sxtdist_group(os.fspath(path))
    kind = group.attrs[KEY].get("kind", "acquisition")
    if kind == "volume":
        return _describe_volume(path)
    if kind == "acquisition":
        return _describe_acquisition(path)
    raise InputError(path, f"unknown sxtdist dataset kind {kind!r}")


def _describe_acquisition(path: str) -> str:
    from ..dataset import KEY, leftover_scans, open_acquisition

    acq = open_acquisition(path, mode="r")
    meta = acq.group.attrs[KEY]
    lines = [f"acquisition {path}", f"  created {meta.get('created')} by {meta.get('software')}"]
    stale = stale_anchoring(acq)
    for name, scan in acq.scans.items():
        g = scan.geometry
        a = g.angles_deg
        n, rows, cols = scan.shape
        arr = acq.group[name]["0"]
        m = scan.meta
        lines.append(
            f"  scan {name!r}: {n} projections, {rows} x {cols} px of {g.pixel_size_nm:g} nm "
            f"({rows * g.pixel_size_nm / 1e3:.2f} x {cols * g.pixel_size_nm / 1e3:.2f} µm)"
        )
        lines.append(
            f"    angles {a.min():.2f}..{a.max():.2f} deg, spacing {angular_spacing_deg(a):.3f} deg"
        )
        lines.append(
            f"    detector centre offset from axis [row, col]: {list(g.center_offset_px)} px"
        )
        if g.tilted:
            lines.append(f"    rotation axis tilted {g.axis_tilt_deg:+.3f} deg on the detector")
        if m.get("edits"):
            last = m["edits"][-1]
            lines.append(
                f"    edited {len(m['edits'])} time(s), last {last.get('date')}: "
                + ", ".join(f"{k} {c['from']} -> {c['to']}" for k, c in last["changes"].items())
            )
        lines.append(
            f"    chunks {arr.chunks}, dtype {arr.dtype}, data {m.get('data', 'optical_depth')}"
        )
        dose = m.get("photons_per_pixel")
        dose_text = (
            "unknown"
            if dose is None
            else f"{dose:g} photons/px/view, {dose * n:g} photons/px in total"
        )
        lines.append(
            f"    energy {m.get('energy_ev')} eV, zone plate OZW {m.get('zone_plate_ozw_nm')} nm, "
            f"dose {dose_text}"
        )
        al = m.get("alignment", {}) or {}
        state = al.get("state", "unaligned")
        s = np.asarray(m.get("shifts_px"), float)
        extra = ""
        if state != "unaligned":
            extra = (
                f" ({al.get('method', '?')}; |shift| max {np.abs(s).max():.2f} px, "
                f"rms {np.sqrt((s**2).mean()):.2f} px)"
            )
        lines.append(f"    alignment: {state}{extra}")
        if name == "roi" and stale:  # its stored verdict was given against another full scan
            al = {**al, "verdict": f"stale (was {al.get('verdict', 'not judged')})"}
            lines.append(f"      warning: {stale}")
        if state == "aligned":
            lines.append("      " + _alignment_details(al))
        it = m.get("intensity_transform")
        if it:
            from ..alignment.intensity import describe_intensity_transform

            lines.append(f"    intensity transform: {describe_intensity_transform(it)}")
    if "truth" in acq.group:  # its shape from Zarr: acq.truth would import dask.array
        t = acq.truth_meta
        lines.append(
            f"  truth: volume {tuple(acq.group['truth']['0'].shape)} at {t['voxel_size_nm']:g} nm "
            f"(simulated, preset {t.get('preset')}, seed {t.get('seed')})"
        )
    lines += [f"  leftover: {note}" for note in leftover_scans(path).values()]
    lines += [f"  leftover: {note}" for note in leftovers(path)]
    return "\n".join(lines)


def _alignment_details(al: dict) -> str:
    """One line of how an alignment went (what ``sxtdist align`` recorded)."""
    parts = [f"verdict: {al['verdict']}"] if "verdict" in al else []
    parts.append(f"date {al.get('date', '?')}")
    if al.get("iterations"):
        parts.append(
            f"{al['iterations']} projection-matching iterations, converged {al.get('converged')}"
        )
    elif al.get("start") == "row_profiles+weighted_centroid":
        what = "row profiles and weighted centroids"
        sigma = al.get("weighted_centroid_sigma_px")
        if sigma:  # the photon noise of each view's centroid, as measured in the data
            sigma = np.asarray(sigma, float)
            ok = np.isfinite(sigma)
            median = f"{np.median(sigma[ok]):.3f} px" if ok.any() else "none"
            blank = f"; {np.count_nonzero(~ok)} views without signal" if not ok.all() else ""
            what += f" (centroid noise median {median}{blank})"
        parts.append(what)
        if al.get("cut_views"):  # their centroid misses what lies beyond the edge
            parts.append(f"cell cut by the detector's edges in views {al['cut_views']}")
    if "axis_offset_px" in al:
        parts.append(f"rotation axis offset {al['axis_offset_px']:+.2f} px")
    if al.get("joint_with_roi"):
        parts.append("refined jointly with the interior pairs")
        views = al.get("joint_downweighted_views")
        if views:  # their own estimate contradicted by the pairs
            kept = al.get("joint_downweighted_weights")
            if kept and len(kept) == len(views):  # recorded since the weights were kept too
                shares = ", ".join(f"{j} (to {k:.0%})" for j, k in zip(views, kept, strict=True))
                parts.append(f"own shifts weighted down for views {shares}")
            else:
                parts.append(f"own shifts weighted down for views {views}")
    if "pairs" in al:
        parts.append(
            f"{al.get('pairs_used', '?')}/{al['pairs']} pairs ({al.get('anchors', 0)} anchors)"
        )
    if "residual_rms_px" in al:
        residual = f"pair residual {al['residual_rms_px']:.3f} px"
        if "residual_largest_px" in al:  # recorded since the misfit per pair is
            residual += (
                f" (largest {al['residual_largest_px']:.3f} px, {al['residual_largest_pair']})"
            )
        parts.append(residual)
    if al.get("pairs_downweighted"):  # the others contradicted them (a damaged frame?)
        parts.append(f"{al['pairs_downweighted']} pairs weighted down")
    # frames to check: every pair of theirs correlates poorly, or lost its weight
    for key, what in (
        ("views_poor_peak", "views whose pairs all correlate poorly"),
        ("views_without_weight", "views whose every pair lost its weight"),
    ):
        if al.get(key):
            parts.append(f"{what}: " + ", ".join(map(str, al[key])))
    if al.get("peak_ncc_median") is not None:
        parts.append(f"median peak NCC {al['peak_ncc_median']:.4f}")
    parts += _check_details(al)
    return "; ".join(parts)


def _check_details(al: dict) -> list[str]:
    """What the verdict's checks read, as recorded: the views' standard errors, the
    leave-one-out and pairs-alone moves, the largest standard-error ratio and the widest
    stretch of full views without their own ``dx``."""
    parts: list[str] = []
    if al.get("roi_sigma_px"):  # each view's standard error in the solve's own reading
        sigma = np.hypot(*np.asarray(al["roi_sigma_px"], float).T)
        parts.append(
            f"views' standard error median {np.median(sigma):.3f} px "
            f"(largest {sigma.max():.3f} px, view {int(np.argmax(sigma))})"
        )
    move = al.get("leave_one_out_move_px")
    if move:  # how far each view moves without one full view's measurements
        i = int(np.argmax(move))
        parts.append(
            f"leave-one-out: largest move {move[i]:.3f} px (view {i}, without full view "
            f"{al['leave_one_out_full_view'][i]}, p = {al['leave_one_out_p'][i]:.2g})"
        )
    alone = al.get("pairs_alone_dy_move_px")
    if alone:  # how far each view's dy moves without every full view's own estimate
        i = int(np.argmax(alone))
        parts.append(f"pairs alone: largest dy move {alone[i]:.3f} px (view {i})")
    ratio = al.get("sigma_ratio")
    if ratio:  # how much less the solve ties a view than the median one
        i = int(np.argmax(ratio))
        parts.append(f"largest standard error {ratio[i]:.2f} times the median (view {i})")
    stretch = al.get("cut_stretch_deg")
    if stretch and max(stretch) > 0:  # the widest run of full views without their own dx
        j = int(np.argmax(stretch))
        parts.append(
            f"widest stretch of full views without their own dx {stretch[j]:.0f}° (full view {j})"
        )
    return parts


def _describe_volume(path: str) -> str:
    from ..volume import open_volume

    vol = open_volume(path, mode="r")
    meta = vol.meta
    nz, ny, nx = vol.shape
    v = vol.voxel_size_nm
    lines = [
        f"volume {path}",
        f"  status {_volume_status(path, meta)}, created {meta.get('created')} by "
        f"{meta.get('software')}",
        f"  shape (z, y, x) {vol.shape} at {v:g} nm = "
        f"{nz * v / 1e3:.2f} x {ny * v / 1e3:.2f} x {nx * v / 1e3:.2f} µm, values {meta.get('unit')}",
        f"  levels {vol.n_levels}: "
        + ", ".join(str(tuple(vol.group[str(i)].shape)) for i in range(vol.n_levels)),
    ]
    plan = meta.get("plan") or {}
    if plan:
        done = len(meta.get("blocks_done", []))
        lines.append(
            f"  blocks {done}/{plan.get('n_blocks')} done, block {plan.get('block_size')} slices, "
            f"halo {plan.get('halo')}"
        )
    damage = vol.damage()
    if damage:
        lines.append(f"  DAMAGED: {'; '.join(damage)} (sxtdist verify {quoted(path)} lists it)")
    prov = meta.get("provenance") or {}
    for key in ("input", "method", "iterations", "scans", "backend", "psf", "nonneg_every"):
        if key in prov:
            lines.append(f"  {key}: {prov[key]}")
    if prov.get("alignment"):  # how each scan used was aligned ("unaligned": no shifts)
        lines.append(
            "  alignment: " + ", ".join(f"{n} {how}" for n, how in prov["alignment"].items())
        )
    if meta.get("stopping"):
        lines.append(f"  stopping: {meta['stopping']}")
    if meta.get("elapsed_s") is not None:
        lines.append(f"  elapsed {meta['elapsed_s']:.1f} s")
    stale = _stale_report(path, meta)
    if stale:
        lines.append(f"  report: {stale}")
    lines += [f"  leftover: {note}" for note in leftovers(path)]
    return "\n".join(lines)


def _volume_status(path: str, meta: dict[str, Any]) -> str:
    """The volume's status; a ``running`` one that no run holds (killed) said as stopped,
    and a lock its killed run left said stale."""
    from ..lock import held_by, stale_owner

    status = meta.get("status")
    if status != "running":
        return str(status)
    if is_leftover(path):  # not an output: its own "leftover" line says what it is
        return "unfinished (left by a stopped run: see leftover below)"
    stale = stale_owner(path)  # read before held_by, which removes a free lock's file
    holder = held_by(path)
    if holder:
        return f"running ({holder})"
    was = f"its lock names {stale}, which has ended: stale; " if stale else ""
    return f"unfinished, stopped ({was}no run holds it: run the same command again to finish it)"


def _stale_report(path: str, meta: dict[str, Any]) -> str | None:
    """What to say of a report beside the volume (``sxtdist report``'s default files) that
    is older than the volume's end (resumed or replaced since), or None."""
    import datetime as dt

    from ..report import default_prefix

    files = [default_prefix(path) + s for s in (".png", ".csv", ".curves.csv")]
    files = [f for f in files if os.path.isfile(f)]
    try:
        finished = dt.datetime.fromisoformat(str(meta.get("finished"))).timestamp()
    except ValueError:
        return None
    old = [f for f in files if os.path.getmtime(f) < finished]
    if not old:
        return None
    return (
        f"{', '.join(os.path.basename(f) for f in old)} describe the volume before it was "
        f"finished on {meta.get('finished')}: run sxtdist report {quoted(path)} --overwrite"
    )
