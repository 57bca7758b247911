"""The alignment report: CSV tables and a plot a person can check at a glance.

``shifts.csv``: one row per projection (scan, index, angle, dy, dx, and the
error against the simulation's truth when there is one, less the one object
translation that best explains the errors of all the scans together:
``AlignmentResult.error_arrays``, whose RMS ``AlignmentResult.errors`` reports).
``pairs.csv``: one row per interior registration (kind, views, angle apart, peak
shift, peak NCC, its ``1 - peak`` over the median of its kind's, peak quality, task
seconds, the share of the view the other view overlaps at the peak, its least-squares
weight (:func:`~sxtdist.alignment.shifts.pair_weights`: from the overlap for a neighbour,
from the angle apart for an anchor), whether the solve used it, the share of that weight
it kept, ``AlignmentResult.pair_kept_weight``, and its misfit: the measured peak less the
one the solved shifts predict, ``AlignmentResult.pair_misfit``). ``alignment.png``: shifts
against angle for each scan (full views whose own shifts the joint solve weighted down
circled), the peak NCC of every pair against angle, and the pairs' misfit against
angle (pairs weighted down circled, pairs correlating poorly crossed:
``POOR_PEAK_FACTOR``). Without a truth the misfit is what tells a registration the
others disagree with.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np

from ..outputs import REPORT_MARK, writing
from .diagnostics import POOR_PEAK_FACTOR, peak_loss_ratio
from .shifts import pair_weights


def write_report(directory: str, acq: Any, result: Any) -> str:
    """Write the report folder ``directory``; returns it.

    It is written beside and swapped in whole (:mod:`sxtdist.outputs`): an earlier
    report is replaced, a folder sxtdist did not write is refused.
    """
    with writing(directory, "alignment-report", inputs=[acq.path], overwrite=True) as target:
        _write_files(target.write_path, acq, result)
        mark = {
            "kind": "alignment-report",
            "acquisition": os.path.abspath(acq.path),
            "files": sorted(os.listdir(target.write_path)),  # what a replacement may remove
        }
        with open(os.path.join(target.write_path, REPORT_MARK), "w") as fh:
            json.dump(mark, fh)
    return directory


def _write_files(directory: str, acq: Any, result: Any) -> None:
    os.makedirs(directory)
    errors = result.error_arrays(acq)
    with open(os.path.join(directory, "shifts.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["scan", "index", "angle_deg", "dy_px", "dx_px", "err_dy_px", "err_dx_px"])
        for name, d in result.shifts.items():
            angles = acq[name].geometry.angles_deg
            err = errors.get(name, np.full_like(d, np.nan))
            for k, (a, s, e) in enumerate(zip(angles, d, err, strict=True)):
                w.writerow([name, k, f"{a:.4f}", f"{s[0]:.4f}", f"{s[1]:.4f}", *_fmt(e)])
    misfit = _per_pair_or_nan(result.pair_misfit, len(result.pairs), 2)
    kept = _per_pair_or_nan(result.pair_kept_weight, len(result.pairs))
    loss = peak_loss_ratio(result.pairs)
    weight = pair_weights(result.pairs, acq["roi"].geometry.angles_deg) if result.pairs else []
    with open(os.path.join(directory, "pairs.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["kind", "i", "j", "mirrored", "delta_deg", "peak_sy_px", "peak_sx_px",
             "peak_ncc", "peak_loss_ratio", "quality", "seconds", "overlap", "weight", "used",
             "kept_weight", "misfit_dy_px", "misfit_dx_px"]
        )  # fmt: skip
        for r, m, k, q, pw in zip(result.pairs, misfit, kept, loss, weight, strict=True):
            p = r.pair
            w.writerow(
                [p.kind, p.i, p.j, int(p.mirrored), f"{p.delta_deg:.4f}", f"{r.shift[0]:.4f}",
                 f"{r.shift[1]:.4f}", f"{r.peak:.5f}", f"{q:.2f}", f"{r.quality:.5f}",
                 f"{r.seconds:.4f}", f"{r.overlap:.4f}", f"{pw:.4f}", int(np.isfinite(m).all()),
                 *_fmt([k]), *_fmt(m)]
            )  # fmt: skip
    _plot(os.path.join(directory, "alignment.png"), acq, result, errors, misfit, kept, loss)


def _per_pair_or_nan(values: Any, n: int, *shape: int) -> np.ndarray:
    """A per-pair record of the result, NaN throughout where the solve recorded none."""
    return np.full((n, *shape), np.nan) if values is None else np.asarray(values, float)


def _fmt(e: np.ndarray) -> list[str]:
    return ["" if not np.isfinite(v) else f"{v:.4f}" for v in e]


def _plot(
    path: str,
    acq: Any,
    result: Any,
    errors: dict,
    misfit: np.ndarray,
    kept: np.ndarray,
    loss: np.ndarray,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.shifts)
    n_rows = len(names) + (2 if result.pairs else 0)
    fig, axes = plt.subplots(n_rows, 1, figsize=(8, 2.6 * n_rows), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=False):
        angles = acq[name].geometry.angles_deg
        d = result.shifts[name]
        ax.plot(angles, d[:, 0], "o-", ms=3, label="dy")
        ax.plot(angles, d[:, 1], "s-", ms=3, label="dx")
        if name in errors:
            # the truth moved by the object translation the errors leave out, so the
            # curves are comparable
            t_g = d - errors[name]
            ax.plot(angles, t_g[:, 0], "k:", lw=1, label="true dy")
            ax.plot(angles, t_g[:, 1], "k--", lw=1, label="true dx")
        down = (result.info.get(name) or {}).get("joint_downweighted_views") or []
        if down:  # their own shifts contradicted by the interior pairs
            ax.plot(
                angles[down], d[down, 1], "o", ms=9, mfc="none", mec="red",
                label="weighted down (joint solve)",
            )  # fmt: skip
        ax.set_ylabel(f"{name} shift [px]")
        ax.set_xlabel("angle [deg]")
        ax.legend(fontsize=7, ncol=4)
        ax.grid(alpha=0.3)
    if result.pairs:
        roi_angles = acq["roi"].geometry.angles_deg
        at = np.array([roi_angles[r.pair.i] for r in result.pairs])
        kinds = np.array([r.pair.kind for r in result.pairs])
        length = np.hypot(misfit[:, 0], misfit[:, 1])
        peaks = np.array([r.peak for r in result.pairs])
        for ax, values, label in (
            (axes[-2, 0], peaks, "peak NCC"),
            (axes[-1, 0], length, "misfit after the solve [px]"),
        ):
            for kind, marker in (("anchor", "o"), ("neighbour", ".")):
                k = (kinds == kind) & np.isfinite(values)
                if k.any():
                    ax.plot(at[k], values[k], marker, ms=4, label=f"{kind} pairs")
            down = kept < 1  # NaN (left out) compares False
            if down.any():
                ax.plot(
                    at[down], values[down], "o", ms=9, mfc="none", mec="red",
                    label="weighted down (others contradict it)",
                )  # fmt: skip
            poor = (loss > POOR_PEAK_FACTOR) & np.isfinite(values)
            if poor.any():
                ax.plot(
                    at[poor], values[poor], "x", ms=8, color="black",
                    label=f"poor peak (1 - NCC > {POOR_PEAK_FACTOR:g}× median)",
                )  # fmt: skip
            ax.set_ylabel(label)
            ax.set_xlabel("angle [deg]")
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
