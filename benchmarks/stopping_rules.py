"""Stopping rules without a truth, measured against the oracle on recorded CGNE trajectories.

Each configuration (preset, seed, capillary, dose, scan weights) is simulated once,
with the known shifts applied, and reconstructed in one block (all slices: CG's scalars
are per slice group, so a block's answer is the volume's) to a cap, recording after
every iteration what each rule looks at:

* run A, all views: the PSNR in the ROI and in the cell against the truth
  (:mod:`sxtdist.scoring`; the oracle and the "fixed 20" figures), the weighted
  residual ``Σ w_i ||A_i x − y_i||²`` and ``||x||²``;
* run B, without every 10th interior view: the held views' misfit
  (:func:`sxtdist.recon.holdout_misfit`, cross-validation) and the PSNR;
* run C (``--holdout-both``), without every 10th view of both scans: the same.

The rules, evaluated on the records (the count a rule picks is applied to run A):

* ``fixed``: 20 iterations;
* ``oracle``: the best count for the whole volume (max of A's ROI PSNR);
* ``cv``: the count at the minimum of B's held-out misfit;
* ``cv-both``: the same from run C;
* ``discrepancy``: the first count whose residual is at most the noise expected
  from the Poisson model, ``Σ_i w_i Σ exp(y)/N_i`` (``N_i`` the scan's photons per
  pixel; ``None`` when never reached);
* ``lcurve``: the corner (largest curvature) of ``(log ||r||, log ||x||)``.

``cell-slab`` is the ``cell`` preset (12 µm cell, 30 nm voxels, 512² slices) cut to its
central 32 slices, to keep the CPU cost down.

Usage::

    python benchmarks/stopping_rules.py record --out /tmp/stop.jsonl [--presets small]
        [--seeds 1 2 3 4 5] [--doses 1 0.1] [--capillary on off] [--weights quadrature equal]
    python benchmarks/stopping_rules.py table /tmp/stop.jsonl
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
from sxtdist.recon import holdout_misfit, slab_system
from sxtdist.runner import build_problem
from sxtdist.simulation.presets import PRESETS
from sxtdist.solvers import cgne

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


def expected_noise(problem, data, photons: dict) -> float | None:
    """``Σ_i w_i Σ exp(y) / N_i``: the residual of the truth under the Poisson model."""
    total = 0.0
    for name, y in data.items():
        n = photons.get(name)
        if not n:
            return None
        total += float(problem.weights.get(name, 1.0)) * float(np.exp(np.float64(y)).sum()) / n
    return total


def record(config: dict, work: str) -> dict:
    preset, seed, dose, capillary, weights = (
        config[k] for k in ("preset", "seed", "dose", "capillary", "weights")
    )
    base = PRESETS[preset]
    photons = {
        "full": base.full.photons_per_pixel * dose,
        "roi": base.roi.photons_per_pixel * dose,
    }
    path = os.path.join(work, f"{preset}.zarr")
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
    out = dict(config, cap=cap)
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
    views = {"roi": np.arange(0, problem.models["roi"].geometry.n_angles, HOLD_EVERY)}
    holdouts = {"cv": views}
    if config.get("holdout_both"):
        n_full = problem.models["full"].geometry.n_angles
        holdouts["cv-both"] = dict(views, full=np.arange(0, n_full, HOLD_EVERY))
    for name, held in holdouts.items():
        b = Recorder(truth, regions, core)
        misfit = holdout_misfit(problem, block.slab, data, held, callback=b)
        out[f"{name}_misfit"] = misfit.tolist()
        out[f"{name}_psnr_roi"] = b.psnr_roi
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
    for name in ("cv", "cv-both"):
        if f"{name}_misfit" in r:
            out[name] = int(np.argmin(r[f"{name}_misfit"])) + 1
    noise = r.get("noise")
    below = [i + 1 for i, v in enumerate(r["residual"]) if noise and v <= noise]
    out["discrepancy"] = below[0] if below else None
    return out


def table(path: str) -> str:
    records = [json.loads(line) for line in open(path)]
    rules = ["fixed", "cv", "cv-both", "discrepancy", "lcurve"]
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
    rec.add_argument("--holdout-both", action="store_true")
    tab = sub.add_parser("table")
    tab.add_argument("records")
    args = ap.parse_args(argv)
    if args.command == "table":
        print(table(args.records))
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
                                zip(("preset", "seed", "dose", "capillary", "weights"), key),
                                holdout_both=args.holdout_both,
                            )
                            t0 = time.perf_counter()
                            r = record(config, work)
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
