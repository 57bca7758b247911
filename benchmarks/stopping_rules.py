"""Stopping rules without a truth, measured against the oracle on recorded CGNE trajectories.

Each configuration (preset, seed, capillary, dose, scan weights) is simulated once,
with the known shifts applied, and reconstructed in one block (all slices: CG's scalars
are per slice group, so a block's answer is the volume's), recording after every
iteration what each rule looks at:

* run A, all views, to a cap: the PSNR in the ROI and in the cell against the truth
  (:mod:`sxtdist.scoring`; the oracle and the "fixed 20" figures), the weighted
  residual ``Σ w_i ||A_i x − y_i||²`` and ``||x||²``;
* run B, without every 10th interior view, to the cap: the held views' misfit
  (data-space hold-out cross-validation);
* run C, ``--iterations auto`` itself: the even and the odd views apart, 60 iterations
  (:data:`sxtdist.runner.AUTO_CAP`), compared at a sample of the ROI's voxels
  (:func:`sxtdist.recon.split_half_curves`).

The rules, evaluated on the records (the count a rule picks is applied to run A):

* ``fixed``: 20 iterations;
* ``oracle``: the best count for the whole volume (max of A's ROI PSNR);
* ``auto``: the minimum of C's ``far`` (the halves' own best count), what
  ``--iterations auto`` picks;
* ``corrected``: the minimum of ``far − between/4`` (:func:`corrected_error`), the
  halves' error turned into the full data's by removing half the halves' noise: the
  rule first tried, rejected (stops late at 1/10 dose: docs/reconstruction.md);
* ``holdout``: the minimum of B's held-out misfit;
* ``discrepancy``: the first count whose residual is at most the noise expected from the
  Poisson model, ``Σ_i w_i Σ exp(y)/N_i`` (``N_i`` the scan's photons per pixel;
  ``None`` when never reached);
* ``lcurve``: the corner (largest curvature) of ``(log ||r||, log ||x||)``.

``cell-slab`` is the ``cell`` preset (12 µm cell, 30 nm voxels, 512² slices) cut to its
central 32 slices, to keep the CPU cost down.

Usage::

    python benchmarks/stopping_rules.py record --out /tmp/stop.jsonl [--presets small]
        [--seeds 1 2 3 4 5] [--doses 1 0.1] [--capillary on off] [--weights quadrature equal]
        [--no-holdout]
    python benchmarks/stopping_rules.py table /tmp/stop.jsonl     # each rule against the oracle
    python benchmarks/stopping_rules.py weights /tmp/stop.jsonl   # quadrature against equal
    python benchmarks/stopping_rules.py variants /tmp/stop.jsonl  # auto against its variants
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

import numpy as np

import sxtdist
from sxtdist import metrics, scoring
from sxtdist.blocks import plan_blocks
from sxtdist.recon import (
    roi_region,
    sample_voxels,
    slab_system,
    split_half_curves,
    view_subset,
)
from sxtdist.runner import AUTO_CAP, build_problem
from sxtdist.simulation.presets import PRESETS
from sxtdist.solvers import Stack, cgne

PRESETS.setdefault("cell-slab", replace(PRESETS["cell"], name="cell-slab", height_px=32))
#: Iteration cap per dose factor (the best count is near 20 at the paper's dose, 6-10 at 1/10).
CAP = {1.0: 60, 0.1: 40}
FIXED = 20
HOLD_EVERY = 10


class Recorder:
    """A CGNE callback: ROI and cell PSNR of the slab's core, ``||x||²``."""

    def __init__(self, truth, regions, core: slice) -> None:
        self.truth = np.ascontiguousarray(np.moveaxis(truth, 0, -1), np.float64)
        self.core = core
        self.roi = np.broadcast_to(regions.roi(truth.shape[1:])[:, :, None], self.truth.shape)
        self.cell = np.moveaxis(regions.cell(truth), 0, -1)
        self.peak = metrics.data_range(self.truth, mask=self.cell)
        self.psnr_roi: list[float] = []
        self.psnr_cell: list[float] = []
        self.xnorm: list[float] = []

    def __call__(self, iteration, x) -> bool:
        core = x[..., self.core]
        self.psnr_roi.append(metrics.psnr(core, self.truth, self.roi, self.peak))
        self.psnr_cell.append(metrics.psnr(core, self.truth, self.cell, self.peak))
        self.xnorm.append(float(np.einsum("ijk,ijk->", x, x, dtype=np.float64)))
        return False


def holdout_misfit(problem, slab, data, every: int = HOLD_EVERY) -> list[float]:
    """Data-space hold-out: CGNE without every ``every``-th interior view; the held views'
    weighted misfit after each iteration."""
    rows = problem.rows(slab)
    n = problem.models["roi"].geometry.n_angles
    held = np.arange(every // 2, n, every)
    keep = np.setdiff1d(np.arange(n), held)
    fit, test = view_subset(problem, {"roi": keep}), view_subset(problem, {"roi": held})
    test = replace(test, models={"roi": test.models["roi"]})

    def pick(idx):
        return dict(data, roi=np.asarray(data["roi"])[idx])

    ops, ys, groups, _ = slab_system(fit, slab, pick(keep), rows=rows)
    hops, hys, _, _ = slab_system(test, slab, pick(held), rows=rows)
    stack, misfit = Stack(hops), []

    def record(iteration, x) -> bool:
        misfit.append(
            sum(float(((q - z) ** 2).sum(dtype=np.float64)) for q, z in zip(stack(x), hys))
        )
        return False

    cgne(ops, ys, problem.iterations, groups=groups, callback=record)
    return misfit


def corrected_error(far, between) -> np.ndarray:
    """The full data's error up to a constant, if ``between`` were noise alone.

    ``far[k]`` estimates the half's error ``bias_k² + var_k`` plus a constant;
    ``between[k] = ||a_k − b_k||²`` is ``2 var_k`` when the halves differ by noise only;
    the full data have half the halves' noise, so ``far − between/4``. Measured, it
    stops late at 1/10 dose (a likely reason, not measured: the halves' different angular
    sampling also parts them, so ``between`` holds more than noise).
    """
    return np.asarray(far, np.float64) - 0.25 * np.asarray(between, np.float64)


def expected_noise(problem, data, photons: dict) -> float | None:
    """``Σ_i w_i Σ exp(y) / N_i``: the residual of the truth under the Poisson model."""
    total = 0.0
    for name, y in data.items():
        n = photons.get(name)
        if not n:
            return None
        total += float(problem.weights.get(name, 1.0)) * float(np.exp(np.float64(y)).sum()) / n
    return total


def record(config: dict, work: str, holdout: bool = True) -> dict:
    preset, seed, dose, capillary, weights = (
        config[k] for k in ("preset", "seed", "dose", "capillary", "weights")
    )
    base = PRESETS[preset]
    photons = {
        "full": base.full.photons_per_pixel * dose,
        "roi": base.roi.photons_per_pixel * dose,
    }
    path = os.path.join(work, f"{preset}.zarr")
    t_sim = time.perf_counter()
    acq = sxtdist.simulate(
        path,
        preset,
        seed,
        photons=photons,
        capillary=capillary,
        overwrite=True,
        progress=False,
    )
    for s in acq.scans:
        acq.set_shifts(s, np.asarray(acq.truth_meta["shifts_px"][s]), method="known")
    cap = CAP[dose]
    problem = build_problem(acq, iterations=cap, weights=weights)
    grid = problem.grid
    (block,) = plan_blocks(list(problem.models.values()), grid, grid.nz).blocks
    rows = problem.rows(block.slab)
    data = {n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items()}
    truth = np.asarray(acq.truth)
    regions = scoring.Regions.of(acq)
    core = slice(block.core[0] - block.slab[0], block.core[1] - block.slab[0])
    out = dict(config, cap=cap, seconds_simulate=time.perf_counter() - t_sim)
    t0 = time.perf_counter()
    a = Recorder(truth, regions, core)
    ops, ys, groups, _ = slab_system(problem, block.slab, data)
    res = cgne(ops, ys, cap, groups=groups, callback=a)
    out.update(
        psnr_roi=a.psnr_roi,
        psnr_cell=a.psnr_cell,
        xnorm=a.xnorm,
        residual=[float(np.sum(r)) for r in res.residuals],
        noise=expected_noise(problem, data, photons),
        seconds_a=time.perf_counter() - t0,
    )
    out["holdout_misfit"] = holdout_misfit(problem, block.slab, data) if holdout else None
    out["seconds_b"] = time.perf_counter() - t0 - out["seconds_a"]
    shape = (*grid.slice_shape, block.slab[1] - block.slab[0])
    voxels = sample_voxels(shape, roi_region(problem), core, seed=block.index)
    far, between = split_half_curves(
        replace(problem, iterations=AUTO_CAP), block.slab, data, voxels
    )
    out.update(far=far.tolist(), between=between.tolist(), seconds=time.perf_counter() - t0)
    return out


def corner(residual, xnorm) -> int:
    """The L-curve's corner: the count of largest curvature of (log ||r||, log ||x||)."""
    u = 0.5 * np.log(np.asarray(residual))
    v = 0.5 * np.log(np.asarray(xnorm))
    du, dv = np.gradient(u), np.gradient(v)
    ddu, ddv = np.gradient(du), np.gradient(dv)
    kappa = (du * ddv - dv * ddu) / np.maximum((du**2 + dv**2) ** 1.5, 1e-30)
    return int(np.argmax(kappa[1:-1])) + 2


def choices(r: dict) -> dict[str, int | None]:
    """The count each rule picks (1-based), from a record."""
    out: dict[str, int | None] = {
        "fixed": FIXED,
        "oracle": int(np.argmax(r["psnr_roi"])) + 1,
        "lcurve": corner(r["residual"], r["xnorm"]),
    }
    misfit = r.get("holdout_misfit")
    out["holdout"] = int(np.argmin(misfit)) + 1 if misfit else None
    out["auto"] = int(np.argmin(r["far"])) + 1
    out["corrected"] = int(np.argmin(corrected_error(r["far"], r["between"]))) + 1
    noise = r.get("noise")
    below = [i + 1 for i, v in enumerate(r["residual"]) if noise and v <= noise]
    out["discrepancy"] = below[0] if below else None
    return out


def table(path: str) -> str:
    records = [json.loads(line) for line in open(path)]
    rules = ["fixed", "auto", "corrected", "holdout", "discrepancy", "lcurve"]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["preset"], r["dose"], r["capillary"], r["weights"])
        groups.setdefault(key, []).append(r)
    lines = [
        "| preset | dose | capillary | weights | seeds | oracle: count, ROI PSNR | "
        + " | ".join(f"{k}: count, loss" for k in rules)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(rules),
    ]
    for key, rs in sorted(groups.items()):
        best = [max(r["psnr_roi"]) for r in rs]
        cells = []
        for rule in rules:
            counts, losses = [], []
            for r in rs:
                k = choices(r).get(rule)
                if k is None:
                    continue
                k = min(k, r["cap"])
                counts.append(k)
                losses.append(max(r["psnr_roi"]) - r["psnr_roi"][k - 1])
            if not counts:
                cells.append("–")
                continue
            n_missing = len(rs) - len(counts)
            miss = f" ({n_missing} never)" if n_missing else ""
            cells.append(
                f"{min(counts)}–{max(counts)}, {np.mean(losses):.2f} (max {max(losses):.2f}){miss}"
            )
        oracle = [choices(r)["oracle"] for r in rs]
        lines.append(
            f"| {key[0]} | {key[1]:g} | {'on' if key[2] else 'off'} | {key[3]} | {len(rs)} | "
            f"{min(oracle)}–{max(oracle)}, {np.mean(best):.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def flat_minimum(far, tolerance: float) -> tuple[int, int]:
    """The counts (1-based) where ``far`` stays within ``tolerance`` (relative) of its minimum,
    around it: the ends of the flat bottom of the curve."""
    f = np.asarray(far, np.float64)
    k = int(np.argmin(f))
    top = f[k] * (1.0 + tolerance)
    lo = hi = k
    while lo > 0 and f[lo - 1] <= top:
        lo -= 1
    while hi + 1 < f.size and f[hi + 1] <= top:
        hi += 1
    return lo + 1, hi + 1


#: Variants of ``auto`` tried against its early stops (``variants``): the last or the middle
#: count of the flat bottom of ``far``, and a weaker noise correction than ``corrected``.
VARIANTS = {
    **{
        f"last {t:.1%}": (lambda r, t=t: flat_minimum(r["far"], t)[1]) for t in (0.002, 0.005, 0.01)
    },
    **{
        f"middle {t:.1%}": (lambda r, t=t: sum(flat_minimum(r["far"], t)) // 2)
        for t in (0.002, 0.005, 0.01)
    },
    "far − between/8": lambda r: (
        int(np.argmin(np.asarray(r["far"]) - 0.125 * np.asarray(r["between"]))) + 1
    ),
}


def variants_table(path: str) -> str:
    """``auto`` and :data:`VARIANTS`: loss against the oracle, mean (max) per configuration,
    and the worst loss over all configurations."""
    records = [json.loads(line) for line in open(path)]
    rules = {"auto": lambda r: choices(r)["auto"], **VARIANTS}
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["preset"], r["dose"], r["capillary"], r["weights"]), []).append(r)
    lines = [
        "| preset | dose | capillary | weights | " + " | ".join(rules) + " |",
        "|---|---|---|---|" + "---|" * len(rules),
    ]
    worst = dict.fromkeys(rules, 0.0)
    for key, rs in sorted(groups.items()):
        cells = []
        for name, rule in rules.items():
            losses = []
            for r in rs:
                k = min(rule(r), len(r["psnr_roi"]))
                losses.append(max(r["psnr_roi"]) - r["psnr_roi"][k - 1])
            worst[name] = max(worst[name], max(losses))
            cells.append(f"{np.mean(losses):.2f} ({max(losses):.2f})")
        lines.append(
            f"| {key[0]} | {key[1]:g} | {'on' if key[2] else 'off'} | {key[3]} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("| worst | | | | " + " | ".join(f"{w:.2f}" for w in worst.values()) + " |")
    return "\n".join(lines)


def weights_table(path: str) -> str:
    """Quadrature against equal weights per seed: ROI PSNR at 20, by ``auto``, by the oracle."""
    records = [json.loads(line) for line in open(path)]
    by = {(r["preset"], r["dose"], r["capillary"], r["seed"], r["weights"]): r for r in records}
    lines = [
        "| preset | dose | capillary | stop | seeds | quadrature (dB) | equal (dB) | "
        "quadrature − equal: mean (min … max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({k[:3] for k in by})
    for preset, dose, cap in keys:
        seeds = sorted(
            s for (p, d, c, s, w) in by if (p, d, c, w) == (preset, dose, cap, "quadrature")
        )
        seeds = [s for s in seeds if (preset, dose, cap, s, "equal") in by]
        if not seeds:
            continue
        for rule in ("fixed", "auto", "oracle"):
            vals = {}
            for w in ("quadrature", "equal"):
                vals[w] = []
                for s in seeds:
                    r = by[(preset, dose, cap, s, w)]
                    k = min(choices(r)[rule], r["cap"])
                    vals[w].append(r["psnr_roi"][k - 1])
            diff = np.subtract(vals["quadrature"], vals["equal"])
            lines.append(
                f"| {preset} | {dose:g} | {'on' if cap else 'off'} | {rule} | {len(seeds)} | "
                f"{np.mean(vals['quadrature']):.2f} | {np.mean(vals['equal']):.2f} | "
                f"{diff.mean():+.2f} ({diff.min():+.2f} … {diff.max():+.2f}) |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--out", required=True, help="JSON lines file (appended)")
    rec.add_argument("--presets", nargs="+", default=["small"])
    rec.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    rec.add_argument("--doses", nargs="+", type=float, default=[1.0, 0.1])
    rec.add_argument("--capillary", nargs="+", default=["on", "off"])
    rec.add_argument("--weights", nargs="+", default=["quadrature", "equal"])
    rec.add_argument(
        "--no-holdout",
        action="store_true",
        help="skip run B (the hold-out rule, rejected; about a quarter of a record's CPU time)",
    )
    tab = sub.add_parser("table")
    tab.add_argument("records")
    wts = sub.add_parser("weights")
    wts.add_argument("records")
    var = sub.add_parser("variants")
    var.add_argument("records")
    args = ap.parse_args(argv)
    if args.command == "table":
        print(table(args.records))
        return 0
    if args.command == "weights":
        print(weights_table(args.records))
        return 0
    if args.command == "variants":
        print(variants_table(args.records))
        return 0
    done = set()
    if os.path.exists(args.out):
        for line in open(args.out):
            r = json.loads(line)
            done.add((r["preset"], r["seed"], r["dose"], r["capillary"], r["weights"]))
    with tempfile.TemporaryDirectory(prefix="stopping_") as work:
        for preset in args.presets:
            for dose in args.doses:
                for cap in args.capillary:
                    for w in args.weights:
                        for seed in args.seeds:
                            key = (preset, seed, dose, cap == "on", w)
                            if key in done:
                                continue
                            config = dict(
                                zip(("preset", "seed", "dose", "capillary", "weights"), key)
                            )
                            t0 = time.perf_counter()
                            r = record(config, work, holdout=not args.no_holdout)
                            with open(args.out, "a") as f:
                                f.write(json.dumps(r) + "\n")
                            c = choices(r)
                            print(
                                f"{key}: {time.perf_counter() - t0:.0f} s; oracle {c['oracle']} "
                                f"({max(r['psnr_roi']):.2f} dB); "
                                + ", ".join(f"{k} {v}" for k, v in c.items() if k != "oracle"),
                                flush=True,
                            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
