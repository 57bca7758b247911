"""A one-page look at a reconstructed volume: slices, FRC, PSNR, as a PNG and CSVs.

``make_report(volume)`` writes three files next to the volume (or at ``out``):

- ``PREFIX.png``: the three orthogonal central slices (with the ROI circle when
  known), the truth's central slice when there is one, the FRC curve with its
  1/7 and half-bit thresholds, and the numbers;
- ``PREFIX.csv``: ``metric,value,unit,note`` rows (PSNR, ROI PSNR, resolutions, ...);
- ``PREFIX.curves.csv``: ``curve,x,x_unit,y`` rows for the FRC, its thresholds and
  the radial PSNR profile.

With a truth (``--truth ACQ``, a simulated acquisition) the metrics compare the
volume with it: PSNR with the paper's data range, PSNR inside the ROI cylinder,
radial PSNR and the FRC of the central slice (a square of the ROI's width, the
paper's figure 3b). With a second half-data reconstruction (``--half``) the FRC
is the split-half one (no truth needed). Metrics use a central slab of at most
``max_slices`` slices so that a whole-cell volume is not read into memory.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import metrics
from .errors import InputError
from .outputs import check_output, first_line, partial_path, register_file_kind

#: The first rows of the report's two CSV files and the PNG's ``Software`` text: how
#: ``--overwrite`` recognises a report sxtdist wrote (:func:`sxtdist.outputs.recognise`).
METRICS_HEADER = ["metric", "value", "unit", "note"]
CURVES_HEADER = ["curve", "x", "x_unit", "y"]
REPORT_SOFTWARE = "sxtdist report"


def _is_ours(path: str) -> bool:
    """A report file sxtdist wrote: a CSV with one of its headers, a PNG with its text."""
    if path.lower().endswith(".png"):
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 16)
        except OSError:
            return False
        return head.startswith(b"\x89PNG") and b"Software\x00" + REPORT_SOFTWARE.encode() in head
    return first_line(path) in (",".join(METRICS_HEADER), ",".join(CURVES_HEADER))


register_file_kind("report", _is_ours)

#: Default number of central slices the metrics read.
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


def _prefix(volume_path: str, out: str | None) -> str:
    if out is None:
        return os.fspath(volume_path).rstrip("/\\") + ".report"
    out = os.fspath(out)
    for ext in (".png", ".csv"):
        if out.endswith(ext):
            return out[: -len(ext)]
    return out


def _central_slab(nz: int, max_slices: int) -> slice:
    k = min(nz, max_slices)
    z0 = (nz - k) // 2
    return slice(z0, z0 + k)


def _square_crop(img: np.ndarray, width: int) -> np.ndarray:
    ny, nx = img.shape[-2:]
    w = max(8, min(width, ny, nx))
    y0, x0 = (ny - w) // 2, (nx - w) // 2
    return img[..., y0 : y0 + w, x0 : x0 + w]


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
        ROI width for the masked PSNR and the FRC crop (default: from the truth's
        acquisition, else none).
    max_slices
        Central slices read for the metrics.
    overwrite
        Replace existing report files.
    """
    from .volume import open_volume

    volume_path = os.fspath(volume_path)
    prefix = _prefix(volume_path, None if out is None else os.fspath(out))
    paths = {"png": prefix + ".png", "csv": prefix + ".csv", "curves": prefix + ".curves.csv"}
    for p in paths.values():  # only earlier reports are replaced, never an input
        check_output(p, "report", inputs=[volume_path, truth, half], overwrite=overwrite)
    parent = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(parent):
        raise InputError(parent, "output directory does not exist")

    vol = open_volume(volume_path, mode="r")
    v = vol.voxel_size_nm
    nz, ny, nx = vol.shape
    level0 = vol.level(0)
    slab = _central_slab(nz, max_slices)
    x = np.asarray(level0[slab], dtype=np.float32)
    rows: list[dict[str, Any]] = [
        {
            "metric": "shape_zyx",
            "value": "x".join(map(str, vol.shape)),
            "unit": "voxel",
            "note": "",
        },
        {"metric": "voxel_size", "value": v, "unit": "nm", "note": ""},
        {"metric": "status", "value": vol.status, "unit": "", "note": ""},
        {
            "metric": "slices_used",
            "value": f"{slab.start}-{slab.stop - 1}",
            "unit": "z index",
            "note": "central slab the metrics read",
        },
        {"metric": "mean_lac", "value": float(x.mean()), "unit": "1/um", "note": "central slab"},
    ]
    if vol.status != "complete":
        rows.append(
            {"metric": "warning", "value": "volume not complete", "unit": "", "note": vol.status}
        )

    ref = None
    roi_px = None
    if truth is not None:
        from .dataset import open_acquisition

        acq = open_acquisition(os.fspath(truth), mode="r")
        if acq.truth is None:
            raise InputError(truth, "has no ground truth (only simulated acquisitions do)")
        tshape = tuple(acq.truth.shape)
        tv = float(acq.truth_meta["voxel_size_nm"])
        if tshape != tuple(vol.shape) or not math.isclose(tv, v, rel_tol=1e-6):
            raise InputError(
                volume_path,
                f"grid {vol.shape} at {v:g} nm differs from the truth's {tshape} at {tv:g} nm "
                f"in {os.fspath(truth)}: reconstruct on the acquisition's default grid to compare",
            )
        ref = np.asarray(acq.truth[slab], dtype=np.float32)
        if roi_width_um is None and "roi" in acq.scans:
            g = acq["roi"].geometry
            roi_width_um = g.detector_shape[1] * g.pixel_size_nm / 1e3
    if roi_width_um is not None:
        roi_px = roi_width_um * 1e3 / v

    other = None
    if half is not None:
        hv = open_volume(os.fspath(half), mode="r")
        if tuple(hv.shape) != tuple(vol.shape):
            raise InputError(half, f"shape {hv.shape} differs from {volume_path}'s {vol.shape}")
        other = np.asarray(hv.level(0)[slab], dtype=np.float32)

    curves: list[tuple[str, float, str, float]] = []
    mid = x.shape[0] // 2
    frc_curve = None
    frc_label = ""
    crop_w = int(round(roi_px)) if roi_px else min(ny, nx)
    if ref is not None:
        dr = metrics.data_range(ref)
        rows.append(
            {
                "metric": "psnr",
                "value": metrics.psnr(x, ref, data_range_value=dr),
                "unit": "dB",
                "note": "whole slab; data range = 99th percentile of the truth",
            }
        )
        if roi_px:
            m = metrics.cylinder_mask(x.shape, roi_px)
            rows.append(
                {
                    "metric": "psnr_roi",
                    "value": metrics.psnr(x, ref, m, dr),
                    "unit": "dB",
                    "note": f"ROI cylinder, diameter {roi_width_um:g} um",
                }
            )
            rows.append(
                {
                    "metric": "mean_lac_roi",
                    "value": float(x[m].mean()),
                    "unit": "1/um",
                    "note": f"truth {float(ref[m].mean()):.4f}",
                }
            )
        rp = metrics.radial_psnr(x, ref, bin_px=max(1.0, min(ny, nx) / 40.0), mask=ref > 0)
        for r, p in zip(rp.r_mean, rp.psnr):
            if np.isfinite(r):
                curves.append(("radial_psnr", float(r * v / 1e3), "radius_um", float(p)))
        frc_curve = metrics.frc(
            _square_crop(x[mid], crop_w), _square_crop(ref[mid], crop_w), v, smooth_sigma=3
        )
        frc_label = "FRC vs truth, central slice"
    elif other is not None:
        frc_curve = metrics.split_half_frc(
            _square_crop(x[mid], crop_w), _square_crop(other[mid], crop_w), v, smooth_sigma=3
        )
        frc_label = "split-half FRC, central slice"
    if frc_curve is not None:
        for thr, sm in (("1/7", True), ("1/7", False), ("half-bit", False)):
            res = frc_curve.resolution(thr, smooth=sm)
            name = (
                "resolution_"
                + ("one_seventh" if thr == "1/7" else "half_bit")
                + ("_smoothed" if sm else "")
            )
            rows.append(
                {
                    "metric": name,
                    "value": "" if res is None else res,
                    "unit": "nm",
                    "note": (frc_label + "; full period; empty: not crossed (<= 2 voxels)"),
                }
            )
        f_nm = frc_curve.freq / v
        for name, y in (
            ("frc", frc_curve.frc),
            ("frc_smoothed", frc_curve.smoothed),
            ("half_bit", frc_curve.half_bit),
            ("one_seventh", frc_curve.one_seventh),
        ):
            curves += [(name, float(a), "cycles_per_nm", float(b)) for a, b in zip(f_nm, y)]

    # the three orthogonal central sections (full z extent for xz and yz)
    xy = x[mid]
    xz = np.asarray(level0[:, ny // 2, :], dtype=np.float32)
    yz = np.asarray(level0[:, :, nx // 2], dtype=np.float32)
    truth_xy = None if ref is None else ref[mid]

    _write_csv(
        paths["csv"],
        METRICS_HEADER,
        [[r[k] for k in ("metric", "value", "unit", "note")] for r in rows],
    )
    _write_csv(paths["curves"], CURVES_HEADER, curves)
    radial = [(c[1], c[3]) for c in curves if c[0] == "radial_psnr"]
    _plot(
        paths["png"],
        volume_path,
        v,
        xy,
        xz,
        yz,
        truth_xy,
        roi_px,
        frc_curve,
        frc_label,
        rows,
        slab.start + mid,
        radial,
    )
    return Report(paths["png"], paths["csv"], paths["curves"], rows)


def _write_csv(path: str, header: list[str], rows: list) -> None:
    tmp = partial_path(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _plot(
    path, title, v, xy, xz, yz, truth_xy, roi_px, frc_curve, frc_label, rows, z_mid, radial
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    lo, hi = np.percentile(xy, [1, 99.5]) if xy.size else (0, 1)
    fig, axes = plt.subplots(2, 4, figsize=(19, 9.5))
    ny, nx = xy.shape
    ext_xy = [-nx * v / 2e3, nx * v / 2e3, -ny * v / 2e3, ny * v / 2e3]

    def show(ax, img, extent, label, xlabel, ylabel):
        im = ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent, origin="lower")
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return im

    im = show(axes[0, 0], xy, ext_xy, f"xy, z = {z_mid}", "x (µm)", "y (µm)")
    fig.colorbar(im, ax=axes[0, 0], label="LAC (1/µm)", shrink=0.8)
    if roi_px:
        axes[0, 0].add_patch(Circle((0, 0), roi_px * v / 2e3, fill=False, color="orange", lw=1))
    nz = xz.shape[0]
    show(
        axes[0, 1],
        xz,
        [ext_xy[0], ext_xy[1], -nz * v / 2e3, nz * v / 2e3],
        "xz, central y",
        "x (µm)",
        "z (µm)",
    )
    show(
        axes[0, 2],
        yz,
        [ext_xy[2], ext_xy[3], -nz * v / 2e3, nz * v / 2e3],
        "yz, central x",
        "y (µm)",
        "z (µm)",
    )
    if truth_xy is not None:
        show(axes[0, 3], truth_xy, ext_xy, "truth xy", "x (µm)", "y (µm)")
    else:
        axes[0, 3].hist(xy.ravel(), bins=100, color="0.3")
        axes[0, 3].set_title("LAC histogram (xy)")
        axes[0, 3].set_xlabel("LAC (1/µm)")
    ax = axes[1, 1]
    if radial:
        r, p = np.array(radial).T
        ax.plot(r, p, "o-", ms=3)
        if roi_px:
            ax.axvline(roi_px * v / 2e3, color="orange", lw=1, label="ROI edge")
            ax.legend(fontsize=8)
        ax.set_xlabel("distance from the rotation axis (µm)")
        ax.set_ylabel("PSNR in the annulus (dB)")
        ax.set_title("radial PSNR (cell voxels)")
    else:
        ax.set_axis_off()
    ax = axes[1, 0]
    if frc_curve is not None:
        f = frc_curve.freq / v * 1e3
        ax.plot(f, frc_curve.frc, color="0.6", lw=1, label="FRC")
        if frc_curve.smoothed is not None:
            ax.plot(f, frc_curve.smoothed, color="C0", lw=2, label="FRC (smoothed, σ = 3 rings)")
        ax.plot(f, frc_curve.one_seventh, "k--", lw=1, label="1/7")
        ax.plot(f, frc_curve.half_bit, "r:", lw=1, label="half-bit")
        ax.set_ylim(-0.1, 1.05)
        ax.set_xlabel("spatial frequency (1/µm)")
        ax.set_ylabel("correlation")
        ax.set_title(frc_label)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no FRC: give --truth ACQ or --half VOLUME", ha="center", va="center")
        ax.set_axis_off()
    for ax in (axes[1, 2], axes[1, 3]):
        ax.set_axis_off()
    ax = axes[1, 2]
    text = "\n".join(
        f"{r['metric']}: {_fmt(r['value'])} {r['unit']}"
        if r["value"] != ""
        else f"{r['metric']}: not crossed (≤ 2 voxels)"
        for r in rows
    )
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=9)
    fig.suptitle(os.path.basename(os.fspath(title).rstrip("/")))
    fig.tight_layout()
    tmp = partial_path(path)
    fig.savefig(tmp, dpi=90, format="png", metadata={"Software": REPORT_SOFTWARE})
    plt.close(fig)
    os.replace(tmp, path)
