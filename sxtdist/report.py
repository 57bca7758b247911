"""A one-page look at a reconstructed volume: slices, PSNR, resolution, as a PNG and CSVs.

``make_report(volume)`` writes three files next to the volume (or at ``out``):

- ``PREFIX.png``: the three orthogonal central slices (with the ROI circle when
  known), the truth's central slice when there is one, the FSC and transfer curves
  with their thresholds, the radial PSNR and the numbers;
- ``PREFIX.csv``: ``metric,value,unit,note`` rows (PSNRs, resolutions, ...);
- ``PREFIX.curves.csv``: ``curve,x,x_unit,y`` rows for the curves.

With a truth (``--truth ACQ``, a simulated acquisition) the volume is scored as
``batch`` and the demo score it (:mod:`sxtdist.scoring`): PSNR in the ROI cylinder and
in the cell over the whole volume (peak: the 99th percentile of the truth inside the
cell), the FSC against the truth (1/7) and the transfer function's MTF-50 over the
central cube inscribed in the ROI. With a second volume from the other half of the
views (``--half``) the FSC is the split-half one (1/7 and half-bit; no truth needed).
Slices and the radial PSNR use a central slab of at most ``max_slices`` slices so
that a whole-cell volume is not read into memory.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import metrics, scoring
from .errors import InputError, option
from .file_kinds import CURVES_HEADER, METRICS_HEADER, REPORT_SOFTWARE  # how it is recognised
from .outputs import check_output, replacing_file, require_writable

#: Default number of central slices read for the images and the radial PSNR.
MAX_SLICES = 64


@dataclass
class Report:
    """What a report found; ``rows`` are the summary CSV rows."""

    png: str
    csv: str
    curves_csv: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def value(self, metric: str) -> Any:
        for r in self.rows:
            if r["metric"] == metric:
                return r["value"]
        raise KeyError(metric)


def default_prefix(volume_path: str | os.PathLike[str]) -> str:
    """Where :func:`make_report` writes a volume's report files by default: ``VOLUME.report``
    (``.png``, ``.csv``, ``.curves.csv``)."""
    return os.fspath(volume_path).rstrip("/\\") + ".report"


def _prefix(volume_path: str, out: str | None) -> str:
    if out is None:
        return default_prefix(volume_path)
    out = os.fspath(out)
    for ext in (".png", ".csv"):
        if out.endswith(ext):
            return out[: -len(ext)]
    return out


def _central_slab(nz: int, max_slices: int) -> slice:
    k = min(nz, max_slices)
    z0 = (nz - k) // 2
    return slice(z0, z0 + k)


def _row(metric: str, value: Any, unit: str = "", note: str = "") -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "note": note}


def make_report(
    volume_path: str | os.PathLike[str],
    truth: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    half: str | os.PathLike[str] | None = None,
    roi_width_um: float | None = None,
    max_slices: int = MAX_SLICES,
    overwrite: bool = False,
) -> Report:
    """Write the PNG and CSV report of a volume; see the module docstring.

    Parameters
    ----------
    volume_path
        An sxtdist volume.
    truth
        A simulated acquisition whose ``truth`` is on the volume's grid.
    out
        Output prefix (default ``VOLUME.report``).
    half
        A second volume reconstructed from the other half of the views.
    roi_width_um
        ROI width for the ROI PSNR and the resolution cube (default: from the truth's
        acquisition, else none).
    max_slices
        Central slices read for the images and the radial PSNR.
    overwrite
        Replace existing report files.
    """
    from .volume import open_volume

    volume_path = os.fspath(volume_path)
    paths = _report_paths(volume_path, out, [volume_path, truth, half], overwrite)
    vol = open_volume(volume_path, mode="r")
    v = vol.voxel_size_nm
    nz, ny, nx = vol.shape
    level0 = vol.level(0)
    slab = _central_slab(nz, max_slices)
    x = np.asarray(level0[slab], dtype=np.float32)
    rows = [
        _row("shape_zyx", "x".join(map(str, vol.shape)), "voxel"),
        _row("voxel_size", v, "nm"),
        _row("status", vol.status),
        _row(
            "slices_used", f"{slab.start}-{slab.stop - 1}", "z index", "central slab of the images"
        ),
        _row("mean_lac", float(x.mean()), "1/um", "central slab"),
    ]
    if vol.status != "complete":
        rows.append(_row("warning", "volume not complete", "", vol.status))
    acq = _truth_acquisition(truth, vol, volume_path) if truth is not None else None
    roi_px = None if roi_width_um is None else roi_width_um * 1e3 / v
    regions = None
    if acq is not None:
        regions = scoring.Regions.of(acq)
        if roi_px is not None:
            regions = replace(regions, roi_diameter_px=roi_px)
        roi_px = regions.roi_diameter_px
    curves: list[tuple[str, float, str, float]] = []
    ref = None
    found: list[tuple[scoring.Resolution, str]] = []
    if acq is not None and regions is not None:
        ref = np.asarray(acq.truth[slab], dtype=np.float32)
        truth_rows, curves, res = _against_truth(level0, x, ref, acq.truth, regions, v)
        rows += truth_rows
        if res is not None:
            found.append((res, "truth"))
    pair = _halves(vol, volume_path, half)
    if pair is not None:
        if regions is None:
            roi_px = roi_px or _input_roi_px(vol)
            regions = scoring.Regions(v, roi_px, 0.0, None)
        res = scoring.resolution(pair[0], pair[1], regions, against_truth=False)
        if res is not None:
            found.append((res, "split_half"))
    for res, kind in found:
        rows += _resolution_rows(res, kind)
        curves += _resolution_curves(res, v, kind)

    mid = x.shape[0] // 2
    _write_csv(
        paths["csv"],
        METRICS_HEADER,
        [[r[k] for k in ("metric", "value", "unit", "note")] for r in rows],
    )
    _write_csv(paths["curves"], CURVES_HEADER, curves)
    _plot(
        paths["png"],
        volume_path,
        v,
        (x[mid], level0[:, ny // 2, :], level0[:, :, nx // 2]),
        None if ref is None else ref[mid],
        roi_px,
        found,
        rows,
        slab.start + mid,
        [(c[1], c[3]) for c in curves if c[0] == "radial_psnr"],
    )
    return Report(paths["png"], paths["csv"], paths["curves"], rows)


def _report_paths(
    volume_path: str, out: str | os.PathLike[str] | None, inputs: list, overwrite: bool
) -> dict[str, str]:
    """The report's files (png, csv, curves), checked: only earlier reports are replaced,
    never an input, and the folder must exist."""
    prefix = _prefix(volume_path, None if out is None else os.fspath(out))
    paths = {"png": prefix + ".png", "csv": prefix + ".csv", "curves": prefix + ".curves.csv"}
    for p in paths.values():
        check_output(p, "report", inputs=inputs, overwrite=overwrite)
    parent = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(parent):
        raise InputError(parent, "output directory does not exist")
    # a read-only place is told before the volume is read
    require_writable(
        paths["csv"], f"write the report elsewhere with {option('--out PREFIX', 'out=PREFIX')}"
    )
    return paths


def _against_truth(
    level0: Any, x: np.ndarray, ref: np.ndarray, truth: Any, regions: scoring.Regions, v: float
) -> tuple[list[dict], list[tuple[str, float, str, float]], scoring.Resolution | None]:
    """The rows (PSNRs), the radial PSNR curve and the resolution of a volume against its
    truth; ``x`` and ``ref`` are the central slab of each, ``v`` the voxel (nm)."""
    ny, nx = x.shape[1:]
    s = scoring.score(level0, truth, regions)
    rows = _psnr_rows(s, regions.roi_diameter_px, v, x, ref, regions)
    rp = metrics.radial_psnr(
        x, ref, max(1.0, min(ny, nx) / 40.0), mask=regions.cell(ref), data_range_value=s.peak
    )
    curves = [
        ("radial_psnr", float(r * v / 1e3), "radius_um", float(p))
        for r, p in zip(rp.r_mean, rp.psnr)
        if np.isfinite(r)
    ]
    return rows, curves, scoring.resolution(level0, truth, regions)


def _truth_acquisition(truth: str | os.PathLike[str], vol: Any, volume_path: str) -> Any:
    """The simulated acquisition ``truth``, checked to hold a truth on the volume's grid."""
    from .dataset import open_acquisition

    acq = open_acquisition(os.fspath(truth), mode="r")
    if acq.truth is None:
        raise InputError(truth, "has no ground truth (only simulated acquisitions do)")
    tshape = tuple(acq.truth.shape)
    tv = float(acq.truth_meta["voxel_size_nm"])
    if tshape != tuple(vol.shape) or not math.isclose(tv, vol.voxel_size_nm, rel_tol=1e-6):
        raise InputError(
            volume_path,
            f"grid {vol.shape} at {vol.voxel_size_nm:g} nm differs from the truth's {tshape} at "
            f"{tv:g} nm in {os.fspath(truth)}: reconstruct on the acquisition's default grid "
            "to compare",
        )
    return acq


def _psnr_rows(
    s: scoring.Scores,
    roi_px: float | None,
    v: float,
    x: np.ndarray,
    ref: np.ndarray,
    regions: scoring.Regions,
) -> list[dict[str, Any]]:
    note = scoring.PSNR_NOTE
    rows = []
    if s.psnr_roi is not None and roi_px:
        rows.append(
            _row("psnr_roi", s.psnr_roi, "dB", f"ROI cylinder {roi_px * v / 1e3:.3g} um; {note}")
        )
        m = np.broadcast_to(regions.roi(x.shape[1:]), x.shape)
        rows.append(
            _row(
                "mean_lac_roi",
                float(x[m].mean()),
                "1/um",
                f"central slab; truth {float(ref[m].mean()):.4f}",
            )
        )
    rows.append(
        _row(
            "psnr_cell",
            s.psnr_cell,
            "dB",
            f"cell ({100 * s.cell_fraction:.0f} % of the volume); {note}",
        )
    )
    rows.append(_row("psnr_peak", s.peak, "1/um", note))
    return rows


def _halves(vol: Any, volume_path: str, half: Any) -> tuple[Any, Any] | None:
    """The two half volumes to correlate: VOLUME and ``half``, or the halves that
    ``reconstruct --split-halves`` recorded in VOLUME's provenance (``None``: neither)."""
    from .volume import open_volume

    if half is not None:
        paths = [volume_path, os.fspath(half)]
    else:
        paths = (vol.meta.get("provenance") or {}).get("split_halves") or []
        if not paths:
            return None
        missing = [p for p in paths if not os.path.isdir(p)]
        if missing:
            raise InputError(missing[0], f"split half of {volume_path} is missing")
    pair = [open_volume(p, mode="r") for p in paths]
    for p, h in zip(paths, pair):
        if tuple(h.shape) != tuple(vol.shape):
            raise InputError(p, f"shape {h.shape} differs from {volume_path}'s {vol.shape}")
    return pair[0].level(0), pair[1].level(0)


def _input_roi_px(vol: Any) -> float | None:
    """The ROI diameter of the acquisition a volume was reconstructed from, if at hand."""
    from .dataset import open_acquisition
    from .errors import SxtdistError

    path = (vol.meta.get("provenance") or {}).get("input")
    try:
        acq = open_acquisition(path, mode="r") if path and os.path.isdir(path) else None
    except SxtdistError:
        return None
    if acq is None or "roi" not in acq.scans:
        return None
    return metrics.roi_diameter_px(acq["roi"].geometry, vol.voxel_size_nm)


_KINDS = {
    "truth": "FSC vs truth, central ROI cube",
    "split_half": "split-half FSC, central ROI cube",
}


def _resolution_rows(res: scoring.Resolution, kind: str) -> list[dict[str, Any]]:
    where = f"{_KINDS[kind]} ({res.cube_px} voxels a side); full period"
    if kind == "split_half":
        return [
            _row(
                "resolution_split_half_one_seventh",
                scoring.describe(res.fsc_one_seventh_nm),
                "nm",
                where,
            ),
            _row(
                "resolution_split_half_half_bit", scoring.describe(res.fsc_half_bit_nm), "nm", where
            ),
        ]
    return [
        _row("resolution_fsc_one_seventh", scoring.describe(res.fsc_one_seventh_nm), "nm", where),
        _row(
            "resolution_mtf50",
            scoring.describe(res.mtf50_nm),
            "nm",
            "transfer function vs truth falls to 0.5 (sees blur; the FSC does not)",
        ),
    ]


def _resolution_curves(
    res: scoring.Resolution, v: float, kind: str
) -> list[tuple[str, float, str, float]]:
    f_nm = res.fsc.freq / v
    prefix = "split_half_" if kind == "split_half" else ""
    named = [
        (prefix + "fsc", res.fsc.frc),
        (prefix + "half_bit", res.fsc.half_bit),
        (prefix + "one_seventh", res.fsc.one_seventh),
    ]
    if res.mtf is not None:
        named.append(("transfer", res.mtf.gain))
    return [
        (n, float(a), "cycles_per_nm", float(b))
        for n, y in named
        for a, b in zip(f_nm, y)
        if np.isfinite(b)
    ]


def _write_csv(path: str, header: list[str], rows: list) -> None:
    with replacing_file(path, "report") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _plot(path, title, v, sections, truth_xy, roi_px, resolution, rows, z_mid, radial) -> None:
    """The report's PNG (sections: the central xy slice and the level-0 xz, yz planes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    xy, xz, yz = (np.asarray(s, dtype=np.float32) for s in sections)
    lo, hi = np.percentile(xy, [1, 99.5]) if xy.size else (0, 1)
    fig, axes = plt.subplots(2, 4, figsize=(19, 9.5))
    ny, nx = xy.shape
    nz = xz.shape[0]
    ext_xy = [-nx * v / 2e3, nx * v / 2e3, -ny * v / 2e3, ny * v / 2e3]
    ext_z = [-nz * v / 2e3, nz * v / 2e3]
    panels = [
        (axes[0, 0], xy, ext_xy, f"xy, z = {z_mid}", "x (µm)", "y (µm)"),
        (axes[0, 1], xz, ext_xy[:2] + ext_z, "xz, central y", "x (µm)", "z (µm)"),
        (axes[0, 2], yz, ext_xy[2:] + ext_z, "yz, central x", "y (µm)", "z (µm)"),
    ]
    if truth_xy is not None:
        panels.append((axes[0, 3], truth_xy, ext_xy, "truth xy", "x (µm)", "y (µm)"))
    else:
        axes[0, 3].hist(xy.ravel(), bins=100, color="0.3")
        axes[0, 3].set_title("LAC histogram (xy)")
        axes[0, 3].set_xlabel("LAC (1/µm)")
    for ax, img, extent, label, xlabel, ylabel in panels:
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent, origin="lower")
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.colorbar(axes[0, 0].images[0], ax=axes[0, 0], label="LAC (1/µm)", shrink=0.8)
    if roi_px:
        axes[0, 0].add_patch(Circle((0, 0), roi_px * v / 2e3, fill=False, color="orange", lw=1))
    ax = axes[1, 1]
    if radial:
        r, p = np.array(radial).T
        ax.plot(r, p, "o-", ms=3)
        if roi_px:
            ax.axvline(roi_px * v / 2e3, color="orange", lw=1, label="ROI edge")
            ax.legend(fontsize=8)
        ax.set_xlabel("distance from the rotation axis (µm)")
        ax.set_ylabel("PSNR in the annulus (dB)")
        ax.set_title("radial PSNR (cell voxels, central slab)")
    else:
        ax.set_axis_off()
    _plot_resolution(axes[1, 0], resolution, v)
    for ax in (axes[1, 2], axes[1, 3]):
        ax.set_axis_off()
    text = "\n".join(f"{r['metric']}: {_fmt(r['value'])} {r['unit']}" for r in rows)
    axes[1, 2].text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=9)
    axes[1, 3].text(
        0.0, 1.0, scoring.PSNR_NOTE.replace("; ", "\n"), va="top", fontsize=9, wrap=True
    )
    fig.suptitle(os.path.basename(os.fspath(title).rstrip("/")))
    fig.tight_layout()
    try:
        with replacing_file(path, "report") as tmp:
            fig.savefig(tmp, dpi=90, format="png", metadata={"Software": REPORT_SOFTWARE})
    finally:
        plt.close(fig)


def _plot_resolution(ax, found, v: float) -> None:
    if not found:
        text = "no FSC: give --truth ACQ, --half VOLUME or reconstruct --split-halves"
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return
    for i, (res, kind) in enumerate(found):
        f = res.fsc.freq / v * 1e3
        ax.plot(f, res.fsc.frc, color=f"C{i}", lw=2, label=_KINDS[kind].split(",")[0])
        if res.mtf is not None:
            ax.plot(f, res.mtf.gain, color="C2", lw=2, label="transfer vs truth")
            ax.axhline(metrics.MTF_LEVEL, color="C2", ls="--", lw=1, label="0.5 (MTF-50)")
    ax.plot(f, res.fsc.one_seventh, "k--", lw=1, label="1/7")
    ax.plot(f, res.fsc.half_bit, "r:", lw=1, label="half-bit")
    ax.set_ylim(-0.1, 1.2)
    ax.set_xlabel("spatial frequency (1/µm)")
    ax.set_ylabel("correlation / gain")
    ax.set_title("central ROI cube")
    ax.legend(fontsize=8)
