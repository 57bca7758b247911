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
* ``auto``: what ``--iterations auto`` picks from C's curves
  (:func:`sxtdist.solvers.cross_validated_count`: ``far``'s minimum, made later by
  ``max(1, 4.5 × between there / between at the pilot's end)`` with quadrature weights,
  :func:`sxtdist.runner.late_factor`, never past where ``between`` has grown 1.4 times
  from ``far``'s minimum, :data:`sxtdist.solvers.BETWEEN_GROWTH`; earlier than ``far``'s
  minimum where the curves show :data:`sxtdist.solvers.EARLY_SIGNATURE`, from the seventh
  session; in the noise regime the first count at or after ``far``'s vertex
  (:func:`sxtdist.solvers.far_vertex`), from the eighth; where the noise grows fast and
  ``far`` rises past its minimum by more than :data:`sxtdist.solvers.DIP_RISE` of what
  ``between / 2`` grew or falls again later (a
  dip of the bias, :func:`sxtdist.solvers.past_a_dip`), the minimum after it of ``far −
  between / 8`` (:data:`sxtdist.solvers.DIP_CORRECTION`), from the tenth; a rise counts only
  where ``far``'s next rise is smaller (it stalls, :data:`sxtdist.solvers.DIP_STALL`), from
  the eleventh; in the noise regime never past the minimum of ``far − between / 4``
  (:data:`sxtdist.solvers.LATEST_CORRECTION`), from the eleventh;
  :func:`sxtdist.runner.auto_count`);
* ``tenth``: ``auto`` of the tenth session (a rise alone is a dip; no bound on the vertex);
* ``eighth``: ``auto`` of the eighth session (no dip passed over);
* ``seventh``: ``auto`` of the seventh session (the early band :data:`SEVENTH_EARLY`, no
  vertex in the noise regime);
* ``bounded``: ``auto`` without the early rule (``auto`` of the sixth session);
* ``unbounded``: ``bounded`` without the bound (``auto`` of the fifth session);
* ``far``: the minimum of C's ``far`` (the halves' own best count as ``far`` sees it),
  ``auto`` until the fifth session;
* ``corrected``: the minimum of ``far − between/4`` (:func:`corrected_error`), the
  halves' error turned into the full data's by removing half the halves' noise: the
  rule first tried, rejected (stops late at 1/10 dose: docs/reconstruction.md);
* ``holdout``: the minimum of B's held-out misfit;
* ``discrepancy``: the first count whose residual is at most the noise expected from the
  Poisson model, ``Σ_i w_i Σ exp(y)/N_i`` (``N_i`` the scan's photons per pixel;
  ``None`` when never reached);
* ``lcurve``: the corner (largest curvature) of ``(log ||r||, log ||x||)``.

Experiments on why ``auto`` stops early on ``cell-slab`` (docs/dev/stopping-rule.md):

* ``augment``: run D, two halves of the data's *noise* with every view in both
  (:func:`noise_halves`), and run E, 4-fold: CGNE on three quarters of the views compared
  with the last quarter's own last iterate (:func:`extra_record`);
* ``decompose``: ``far`` against the truth: the halves' own errors, the cross term, and
  the correlation of the two halves' errors (:func:`decompose`);
* ``record-volume``: a whole volume solved blockwise with the pilot blocks of
  ``reconstruct`` (:func:`record_volume`; the whole ``cell``).

``cell-slab`` is the ``cell`` preset (12 µm cell, 30 nm voxels, 512² slices) cut to its
central 32 slices, to keep the CPU cost down.

Usage::

    python benchmarks/stopping_rules.py record --out /tmp/stop.jsonl [--presets small]
        [--seeds 1 2 3 4 5] [--doses 1 0.1] [--capillary on off] [--weights quadrature equal]
        [--no-holdout]
    python benchmarks/stopping_rules.py table /tmp/stop.jsonl [--per-seed]
                                          # each rule against the oracle (a row per seed)
    python benchmarks/stopping_rules.py weights /tmp/stop.jsonl   # quadrature against equal
    python benchmarks/stopping_rules.py variants /tmp/stop.jsonl  # auto, far and variants
    python benchmarks/stopping_rules.py signature /tmp/stop.jsonl # what the early rule reads
    python benchmarks/stopping_rules.py overshoot /tmp/stop.jsonl [--push 0.06 0.1]
                                          # auto with its late factor made to overshoot
    python benchmarks/stopping_rules.py augment /tmp/stop.jsonl --out /tmp/stop_de.jsonl
        [--presets small] [--doses 1]                             # then table /tmp/stop_de.jsonl
    python benchmarks/stopping_rules.py decompose --out /tmp/dec.jsonl \
        --configs '[["cell-slab", 1, 1.0, false]]'
    python benchmarks/stopping_rules.py record-volume --out /tmp/cell.jsonl --preset cell \
        --seed 1 --dose 1 --capillary on [--cap 40] [--block-size N]
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
    half_views,
    roi_region,
    sample_voxels,
    slab_system,
    split_half_curves,
    view_subset,
)
from sxtdist.runner import (
    AUTO_CAP,
    _read_block,
    auto_count,
    build_problem,
    early_signature,
    late_factor,
    pilot_blocks,
)
from sxtdist.simulation.presets import PRESETS
from sxtdist.solvers import (
    BETWEEN_GROWTH,
    Stack,
    between_exponent,
    cgne,
    cross_validated_count,
    far_minimum,
    far_vertex,
)

PRESETS.setdefault("cell-slab", replace(PRESETS["cell"], name="cell-slab", height_px=32))
#: Iteration cap per dose factor (the best count is near 20 at the paper's dose, 6-10 at 1/10);
#: other doses take the cap of the nearer of the two (:func:`cap_for`).
CAP = {1.0: 60, 0.1: 40}
FIXED = 20
HOLD_EVERY = 10
#: ``auto``'s early band of the seventh session (``seventh``: with it, without the noise
#: regime's vertex; :data:`sxtdist.solvers.EARLY_SIGNATURE` is the band now).
SEVENTH_EARLY = (0.15, 0.5, 1.2)


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


def simulate(config: dict, work: str) -> tuple[sxtdist.Acquisition, dict[str, float]]:
    """The configuration's acquisition (known shifts set) and its photons per pixel."""
    base = PRESETS[config["preset"]]
    photons = {
        "full": base.full.photons_per_pixel * config["dose"],
        "roi": base.roi.photons_per_pixel * config["dose"],
    }
    acq = sxtdist.simulate(
        os.path.join(work, f"{config['preset']}.zarr"),
        config["preset"],
        config["seed"],
        photons=photons,
        capillary=config["capillary"],
        overwrite=True,
        progress=False,
    )
    for s in acq.scans:
        acq.set_shifts(s, np.asarray(acq.truth_meta["shifts_px"][s]), method="known")
    return acq, photons


def noise_halves(data: dict, photons: dict, seed: int = 0) -> tuple[dict, dict]:
    """Two halves of the data's noise, every view in both (data fission): ``y ± d`` with
    ``d`` normal of the Poisson log-data variance ``exp(y) / N``; uncorrelated, each with
    twice the noise, mean ``y``. They differ by noise only, not by angular sampling."""
    rng = np.random.default_rng(seed)
    plus, minus = {}, {}
    for name, y in data.items():
        y = np.asarray(y, np.float32)
        d = rng.standard_normal(y.shape, np.float32) * np.sqrt(np.exp(y) / photons[name])
        plus[name], minus[name] = y + d, y - d
    return plus, minus


def iterates(
    problem, slab, data: dict, voxels, views: dict | None = None, count: int = AUTO_CAP
) -> np.ndarray:
    """CGNE's iterates at ``voxels``, ``(count, voxels)``, from ``views`` of ``data``."""
    if views is not None:
        problem = view_subset(problem, views)
        data = {n: np.asarray(data[n])[views[n]] for n in problem.models}
    ops, ys, groups, _ = slab_system(problem, slab, data, rows=problem.rows(slab))
    seen: list[np.ndarray] = []
    cgne(ops, ys, count, groups=groups, callback=lambda i, x: seen.append(x.ravel()[voxels]))
    return np.asarray(seen, np.float64)


def extra_record(config: dict, work: str, folds: int = 4, rotations=(0, 1)) -> dict:
    """Runs D and E of a configuration (added to its record by ``augment``).

    D: the noise halves (:func:`noise_halves`), ``far_noise`` and ``between_noise`` as
    ``far`` and ``between``. E: ``folds``-fold, for each of ``rotations``: CGNE on all but
    fold ``j`` (every ``folds``-th view in angle order, from the ``j``-th), compared with
    fold ``j``'s own last iterate, ``far_fold[j][k] = ||x_k − q_K||²`` (the larger subset's
    error up to a constant).
    """
    acq, photons = simulate(config, work)
    problem = build_problem(acq, iterations=AUTO_CAP, weights=config["weights"])
    (block,) = plan_blocks(list(problem.models.values()), problem.grid, problem.grid.nz).blocks
    data, voxels = _read_block(acq, problem, block.slab), _voxels(problem, block)
    t0 = time.perf_counter()
    a, b = (iterates(problem, block.slab, d, voxels) for d in noise_halves(data, photons))
    out = dict(
        far_noise=(0.5 * (((a - b[-1]) ** 2).sum(1) + ((b - a[-1]) ** 2).sum(1))).tolist(),
        between_noise=((a - b) ** 2).sum(1).tolist(),
        seconds_d=time.perf_counter() - t0,
    )
    t0 = time.perf_counter()
    order = {n: np.argsort(m.geometry.angles_deg, kind="stable") for n, m in problem.models.items()}
    out["far_fold"] = []
    for j in rotations:
        fold = {n: np.sort(o[j::folds]) for n, o in order.items()}
        rest = {n: np.setdiff1d(np.arange(o.size), fold[n]) for n, o in order.items()}
        q = iterates(problem, block.slab, data, voxels, fold)[-1]
        x = iterates(problem, block.slab, data, voxels, rest)
        out["far_fold"].append(((x - q) ** 2).sum(1).tolist())
    out.update(folds=folds, seconds_e=time.perf_counter() - t0)
    return out


def _voxels(problem, block) -> np.ndarray:
    s0 = block.slab[0]
    shape = (*problem.grid.slice_shape, block.slab[1] - s0)
    core = slice(block.core[0] - s0, block.core[1] - s0)
    return sample_voxels(shape, roi_region(problem), core, seed=block.index)


def cap_for(dose: float) -> int:
    """Run A's iteration cap at a dose factor: :data:`CAP`'s, that of 1 from a dose of 0.5 up
    and that of 0.1 below (0.3: 40, its best count is below 20 on both presets)."""
    return CAP.get(dose, CAP[1.0] if dose >= 0.5 else CAP[0.1])


def record(config: dict, work: str, holdout: bool = True) -> dict:
    t_sim = time.perf_counter()
    acq, photons = simulate(config, work)
    cap = cap_for(config["dose"])
    problem = build_problem(acq, iterations=cap, weights=config["weights"])
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
    voxels = _voxels(problem, block)
    far, between = split_half_curves(
        replace(problem, iterations=AUTO_CAP), block.slab, data, voxels
    )
    out.update(far=far.tolist(), between=between.tolist(), seconds=time.perf_counter() - t0)
    return out


def decompose(config: dict, work: str) -> dict:
    """``far`` taken apart against the truth: the even and the odd halves' errors at the
    sampled ROI voxels, ``err_a[k] = ||a_k − x||²`` (and ``err_b``), and the cross terms
    ``cross[k] = ½(<a_k − x, b_K − x> + <b_k − x, a_K − x>)``, so that
    ``far = ½(err_a + err_b) − 2 cross + const``; ``corr[k]``, the correlation of the two
    halves' errors at the same count; ``far_long``, ``far`` with the other half's iterate at
    ``2 × AUTO_CAP`` as the reference (docs/dev/stopping-rule.md)."""
    acq, _ = simulate(config, work)
    problem = build_problem(acq, iterations=AUTO_CAP, weights=config["weights"])
    (block,) = plan_blocks(list(problem.models.values()), problem.grid, problem.grid.nz).blocks
    data, voxels = _read_block(acq, problem, block.slab), _voxels(problem, block)
    (s0, s1), full = block.slab, np.asarray(acq.truth, np.float64)
    truth = np.zeros((s1 - s0, *full.shape[1:]))
    truth[max(s0, 0) - s0 : min(s1, full.shape[0]) - s0] = full[max(s0, 0) : s1]
    truth = np.moveaxis(truth, 0, -1).ravel()[voxels]
    ea, eb = (
        iterates(problem, block.slab, data, voxels, h, 2 * AUTO_CAP) - truth
        for h in half_views(problem)
    )
    # far with the other half's iterate at twice the pilot's count as the reference
    far_long = 0.5 * (((ea - eb[-1]) ** 2).sum(1) + ((eb - ea[-1]) ** 2).sum(1))[:AUTO_CAP]
    ea, eb = ea[:AUTO_CAP], eb[:AUTO_CAP]
    err_a, err_b = (ea**2).sum(1), (eb**2).sum(1)
    return dict(
        config,
        far_long=far_long.tolist(),
        err_a=err_a.tolist(),
        err_b=err_b.tolist(),
        cross=(0.5 * ((ea * eb[-1]).sum(1) + (eb * ea[-1]).sum(1))).tolist(),
        corr=((ea * eb).sum(1) / np.sqrt(err_a * err_b)).tolist(),
    )


def record_volume(config: dict, work: str, cap: int, block_size: int) -> dict:
    """A record of the whole volume solved blockwise, as ``reconstruct`` does.

    Run A per block (``cap`` iterations), its squared ROI error summed over the blocks'
    cores per iteration (the blocks with their halos, as ``reconstruct`` solves them: on
    ``small``, 2 blocks, the ROI PSNR differs from one block's by up to 1.5 dB in the first
    11 iterations, by up to 0.12 dB from 14 on); run C on
    :func:`sxtdist.runner.pilot_blocks` only, ``far`` and ``between`` summed over them, as
    ``--iterations auto`` does. For volumes too large for one block (``cell``); no hold-out,
    no residual. Progress is printed per block.
    """
    t_sim = time.perf_counter()
    acq, _ = simulate(config, work)
    problem = build_problem(acq, iterations=cap, weights=config["weights"])
    grid = problem.grid
    plan = plan_blocks(list(problem.models.values()), grid, block_size)
    regions = scoring.Regions.of(acq)
    truth = np.asarray(acq.truth, np.float32)
    peak = metrics.data_range(truth, mask=regions.cell(truth))
    roi = regions.roi(grid.slice_shape)
    out = dict(
        config, cap=cap, block_size=plan.block_size, seconds_simulate=time.perf_counter() - t_sim
    )
    print(f"simulated in {out['seconds_simulate']:.0f} s; {plan.describe()}", flush=True)
    t0 = time.perf_counter()
    pilot = pilot_blocks(plan.blocks)
    far = between = 0.0
    for block in pilot:
        data = _read_block(acq, problem, block.slab)
        f, b = split_half_curves(
            replace(problem, iterations=AUTO_CAP), block.slab, data, _voxels(problem, block)
        )
        far, between = far + f, between + b
        print(f"pilot block {block.index}: {time.perf_counter() - t0:.0f} s", flush=True)
    out.update(far=far.tolist(), between=between.tolist(), pilot=[b.index for b in pilot])
    out["seconds_c"] = time.perf_counter() - t0
    sse, count = np.zeros(cap), 0
    for block in plan.blocks:
        data = _read_block(acq, problem, block.slab)
        (c0, c1), s0 = block.core, block.slab[0]
        ref = np.moveaxis(truth[c0:c1], 0, -1).astype(np.float64)
        mask = np.broadcast_to(roi[:, :, None], ref.shape)
        errors: list[float] = []

        def keep(iteration, x, ref=ref, mask=mask, errors=errors, lo=c0 - s0, hi=c1 - s0) -> bool:
            errors.append(float(((x[..., lo:hi][mask] - ref[mask]) ** 2).sum()))
            return False

        ops, ys, groups, _ = slab_system(problem, block.slab, data)
        cgne(ops, ys, cap, groups=groups, callback=keep)
        sse, count = sse + np.asarray(errors), count + int(mask.sum())
        print(f"block {block.index}: {time.perf_counter() - t0:.0f} s", flush=True)
    out.update(
        psnr_roi=[metrics.psnr_from_mse(e / count, peak) for e in sse],
        seconds=time.perf_counter() - t0,
    )
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
        "lcurve": corner(r["residual"], r["xnorm"]) if r.get("residual") else None,
    }
    misfit = r.get("holdout_misfit")
    out["holdout"] = int(np.argmin(misfit)) + 1 if misfit else None
    out["auto"] = auto_count(r["far"], r["between"], r["weights"])
    early = early_signature(r["weights"])
    # earlier sessions' auto, reproduced from the options that tell them apart
    earlier = {
        "tenth": {"early": early, "dip_stall": None, "latest": None},
        "seventh": {
            "early": SEVENTH_EARLY if early else None,
            "noise_regime": False,
            "dips": False,
        },
        "eighth": {"early": early, "dips": False, "latest": None},
    }
    for name, options in earlier.items():
        out[name] = cross_validated_count(
            r["far"], r["between"], late_factor(r["weights"]), **options
        )
    out["bounded"] = cross_validated_count(
        r["far"], r["between"], late_factor(r["weights"]), early=None
    )
    out["unbounded"] = cross_validated_count(
        r["far"], r["between"], late_factor(r["weights"]), growth=np.inf, early=None
    )
    out["far"] = int(np.argmin(r["far"])) + 1
    out["corrected"] = int(np.argmin(corrected_error(r["far"], r["between"]))) + 1
    if "far_noise" in r:
        out["noise halves"] = int(np.argmin(r["far_noise"])) + 1
        out["noise corrected"] = (
            int(np.argmin(corrected_error(r["far_noise"], r["between_noise"]))) + 1
        )
        out["folds"] = int(np.argmin(np.mean(r["far_fold"], axis=0))) + 1
    noise = r.get("noise")
    below = [i + 1 for i, v in enumerate(r.get("residual") or []) if noise and v <= noise]
    out["discrepancy"] = below[0] if below else None
    return out


def table(path: str, per_seed: bool = False) -> str:
    """Each rule's count and loss against the oracle, min–max and mean (max) over the seeds of
    a configuration, or one row per seed (``per_seed``)."""
    records = [json.loads(line) for line in open(path)]
    rules = [
        "fixed",
        "auto",
        "tenth",
        "eighth",
        "seventh",
        "bounded",
        "unbounded",
        "far",
        "corrected",
        "holdout",
        "discrepancy",
        "lcurve",
    ]
    if any("far_noise" in r for r in records):  # augmented: runs D and E
        rules += ["noise halves", "noise corrected", "folds"]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["preset"], r["dose"], r["capillary"], r["weights"])
        groups.setdefault(key + ((r["seed"],) if per_seed else ()), []).append(r)
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
        seeds = sorted(r["seed"] for r in rs)
        lines.append(
            f"| {key[0]} | {key[1]:g} | {'on' if key[2] else 'off'} | {key[3]} | "
            f"{len(rs)} ({seeds[0]}–{seeds[-1]}) | "
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


#: Variants of ``far`` tried against its early stops (``variants``): the last or the middle
#: count of the flat bottom of ``far``, a weaker noise correction than ``corrected``, and
#: ``auto`` with other factors.
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
    # auto with other factors than LATE_FACTOR (4.5): how wide the good range is
    **{
        f"auto ×{c:g}": (
            lambda r, c=c: cross_validated_count(
                r["far"], r["between"], c, early=early_signature(r["weights"])
            )
        )
        for c in (3.5, 3.75, 5.0, 5.25)
    },
    # auto with other corrections past a dip than DIP_CORRECTION (1/8; 0: far's own minimum)
    **{
        f"dip c={c:g}": (
            lambda r, c=c: cross_validated_count(
                r["far"],
                r["between"],
                late_factor(r["weights"]),
                early=early_signature(r["weights"]),
                dip_correction=c,
            )
        )
        for c in (0.0, 0.0625, 0.1, 0.15, 0.25)
    },
    # auto with other levels than DIP_STALL (1/4 of the noise's growth over two counts), and
    # without the bound on the noise regime's vertex (LATEST_CORRECTION)
    "no latest": lambda r: cross_validated_count(
        r["far"],
        r["between"],
        late_factor(r["weights"]),
        early=early_signature(r["weights"]),
        latest=None,
    ),
    **{
        f"stall {t:g}": (
            lambda r, t=t: cross_validated_count(
                r["far"],
                r["between"],
                late_factor(r["weights"]),
                early=early_signature(r["weights"]),
                dip_stall=t,
            )
        )
        for t in (0.05, 0.15, 0.35, 0.5)
    },
    # auto with other bounds than BETWEEN_GROWTH (1.4), and none (``unbounded``)
    **{
        f"growth {g:g}": (
            lambda r, g=g: cross_validated_count(
                r["far"], r["between"], late_factor(r["weights"]), g, early_signature(r["weights"])
            )
        )
        for g in (1.3, 1.45, 1.5, 1.6)
    },
}


def pushed_count(r: dict, push: float, growth: float = BETWEEN_GROWTH) -> int:
    """``auto``'s count with its late factor's indicator ``between[k_f] / between[-1]`` made
    ``push`` larger: a late factor that overshoots as on held-out ``cell-slab`` seed 3014
    (about 0.42 there: 30 from 16; 0.27-0.36 on seeds 1-13), for the bound to show what
    it limits (the late factor and its bound alone: the early rule off)."""
    b = np.asarray(r["between"], np.float64)
    k = int(np.argmin(r["far"]))
    g = b[k] / b[-1] if b[-1] > 0 else 0.0
    factor = late_factor(r["weights"])
    if g > 0:  # factor × min(1, g) becomes factor × min(1, g + push)
        factor *= min(1.0, g + push) / min(1.0, g)
    return cross_validated_count(r["far"], b, factor, growth, early=None)


def _first_past(over: np.ndarray, k: int) -> int:
    """The last count (1-based) before the first iterate past ``k`` where ``over`` holds
    (the curves' length where none does)."""
    past = np.flatnonzero(over[k + 1 :])
    return k + 1 + int(past[0]) if past.size else over.size


#: Bounds tried on the late factor (``overshoot --candidates``), each from the split-half
#: curves alone (``f`` = ``far``, ``b`` = ``between``, ``k`` = ``far``'s minimum, 0-based):
#: the count stops before ``far`` has risen by a fraction of its minimum, of ``between`` at
#: its minimum or of its whole rise to the pilot's end; before ``between`` has grown a
#: factor from ``k_f`` (``auto``'s bound, :data:`~sxtdist.solvers.BETWEEN_GROWTH`), or
#: reached a fraction of its last value or of ``far``.
BOUNDS = {
    "far rise > 0.11 far[k_f]": lambda f, b, k: _first_past(f - f[k] > 0.11 * f[k], k),
    "far rise > 0.24 between[k_f]": lambda f, b, k: _first_past(f - f[k] > 0.24 * b[k], k),
    "far rise > 0.25 of far[60] − far[k_f]": lambda f, b, k: _first_past(
        f - f[k] > 0.25 * (f[-1] - f[k]), k
    ),
    **{
        f"between > {g:g} between[k_f]": (lambda f, b, k, g=g: _first_past(b > g * b[k], k))
        for g in (1.3, 1.4, 1.5, 1.6)
    },
    "between > 0.6 between[60]": lambda f, b, k: _first_past(b > 0.6 * b[-1], k),
    "between > 0.7 far": lambda f, b, k: _first_past(b > 0.7 * f, k),
}


def bounded_count(r: dict, push: float, bound) -> int:
    """:func:`pushed_count` without ``auto``'s own bound, bounded by ``bound`` instead."""
    f, b = np.asarray(r["far"], np.float64), np.asarray(r["between"], np.float64)
    return min(pushed_count(r, push, np.inf), bound(f, b, int(np.argmin(f))))


def overshoot_table(path: str, pushes: list[float], candidates: bool = False) -> str:
    """``auto`` with and without its bound when the late factor overshoots
    (:func:`pushed_count`): loss against the oracle, mean (max) per configuration; with
    ``candidates``, the loss for each of :data:`BOUNDS` instead of ``auto``'s bound, mean (max)
    per preset over the records where the (pushed) factor goes past ``far``'s minimum."""
    records = [json.loads(line) for line in open(path)]
    pushes = [0.0, *pushes]
    if candidates:  # the records where the (pushed) factor goes past k_f, per preset
        presets = sorted({r["preset"] for r in records})
        cols = [(p, preset) for p in pushes for preset in presets]
        lines = [
            "| bound | " + " | ".join(f"+{p:g}: {preset}" for p, preset in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for name, bound in {"none": lambda f, b, k: f.size, **BOUNDS}.items():
            cells = []
            for p, preset in cols:
                rs = [
                    r
                    for r in records
                    if r["preset"] == preset
                    and pushed_count(r, p, np.inf) > np.argmin(r["far"]) + 1
                ]
                losses = [loss(r, bounded_count(r, p, bound)) for r in rs]
                cells.append(f"{np.mean(losses):.2f} ({max(losses):.2f})" if rs else "–")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    rules = {}
    for push in pushes:
        rules[f"+{push:g}, unbounded"] = lambda r, p=push: pushed_count(r, p, np.inf)
        rules[f"+{push:g}, auto"] = lambda r, p=push: pushed_count(r, p)
    return loss_table(records, rules)


def loss(r: dict, k: int) -> float:
    """The oracle's ROI PSNR minus that at count ``k`` (at most the record's cap)."""
    return max(r["psnr_roi"]) - r["psnr_roi"][min(k, len(r["psnr_roi"])) - 1]


def variants_table(path: str) -> str:
    """``auto``, ``far`` and :data:`VARIANTS`: loss against the oracle, mean (max) per
    configuration, and the worst loss over all configurations."""
    records = [json.loads(line) for line in open(path)]
    rules = {
        "auto": lambda r: choices(r)["auto"],
        "bounded": lambda r: choices(r)["bounded"],
        "unbounded": lambda r: choices(r)["unbounded"],
        "far": lambda r: choices(r)["far"],
        **VARIANTS,
    }
    return loss_table(records, rules)


def loss_table(records: list[dict], rules: dict) -> str:
    """Each rule's loss against the oracle, mean (max) per configuration, and the worst."""
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


def signature_table(path: str) -> str:
    """What ``auto``'s early rule reads (:data:`sxtdist.solvers.EARLY_SIGNATURE`), per
    configuration, min–max over the seeds: ``far``'s minimum ``k_f``, its vertex
    (:func:`sxtdist.solvers.far_vertex`) and the oracle's count,
    ``between[k_f] / between[-1]`` and :func:`sxtdist.solvers.between_exponent` at ``k_f``;
    and what the dip test reads (:func:`sxtdist.solvers.past_a_dip`): ``far``'s rise from
    ``k_f`` to the next count over the growth of ``between / 2`` there (above
    :data:`sxtdist.solvers.DIP_RISE`: a dip, where the ratio is at most the band's first
    value), ``far``'s rise over the two counts after that over ``between / 2``'s growth there
    (below :data:`sxtdist.solvers.DIP_STALL`: ``far`` levels off, as past a dip), on how many
    records
    ``far`` falls again past ``k_f`` (a dip too), and ``far``'s minimum past a dip
    (:func:`sxtdist.solvers.far_minimum`)."""
    records = [json.loads(line) for line in open(path)]
    groups: dict[tuple, list[tuple]] = {}
    for r in records:
        f = np.asarray(r["far"], np.float64)
        k = int(np.argmin(f))
        b = np.asarray(r["between"], np.float64)
        e = between_exponent(b, k)
        rise = f[k + 1] - f[k] if k + 1 < f.size else np.nan
        grew = 0.5 * (b[k + 1] - b[k]) if k + 1 < f.size else np.nan
        m = min(k + 3, f.size - 1)
        then = (f[m] - f[k + 1]) / (0.5 * (b[m] - b[k + 1])) if m > k + 1 else np.nan
        row = (
            k + 1,
            far_vertex(r["far"]),
            choices(r)["oracle"],
            b[k] / b[-1],
            np.nan if e is None else e,
            rise / grew if grew > 0 else np.inf,
            then,
            far_minimum(f, b)[0] + 1,
            bool(np.any(np.diff(f[k:]) < 0)),
        )
        groups.setdefault((r["preset"], r["dose"], r["capillary"], r["weights"]), []).append(row)
    lines = [
        "| preset | dose | capillary | weights | seeds | k_f | far's vertex | oracle | "
        "between[k_f] / between[60] | exponent over [k_f/2, k_f] | "
        "far's rise / between's growth / 2 | then, over 2 counts | "
        "far falls again past k_f | k_f past a dip |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rows in sorted(groups.items()):
        kf, vx, orc, g, e, rg, st, kd, fa = (np.asarray(c, np.float64) for c in zip(*rows))
        lines.append(
            f"| {key[0]} | {key[1]:g} | {'on' if key[2] else 'off'} | {key[3]} | {len(rows)} | "
            f"{kf.min():.0f}–{kf.max():.0f} | {vx.min():.2f}–{vx.max():.2f} | "
            f"{orc.min():.0f}–{orc.max():.0f} | "
            f"{g.min():.3f}–{g.max():.3f} | {e.min():.2f}–{e.max():.2f} | "
            f"{rg.min():.2f}–{rg.max():.2f} | {np.nanmin(st):.3f}–{np.nanmax(st):.3f} | "
            f"{fa.sum():.0f} of {fa.size} | "
            f"{kd.min():.0f}–{kd.max():.0f} |"
        )
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
    vol = sub.add_parser("record-volume", help="one whole volume, blockwise (record_volume)")
    vol.add_argument("--out", required=True, help="JSON lines file (appended)")
    vol.add_argument("--preset", default="cell")
    vol.add_argument("--seed", type=int, default=1)
    vol.add_argument("--dose", type=float, default=1.0)
    vol.add_argument("--capillary", choices=["on", "off"], default="on")
    vol.add_argument("--weights", default="quadrature")
    vol.add_argument("--cap", type=int, default=40, help="run A's iterations")
    vol.add_argument("--block-size", type=int, default=None)
    aug = sub.add_parser("augment", help="add runs D and E (extra_record) to records")
    aug.add_argument("records")
    aug.add_argument("--out", required=True, help="JSON lines file (appended)")
    aug.add_argument("--presets", nargs="+", default=None)
    aug.add_argument("--doses", nargs="+", type=float, default=None)
    aug.add_argument("--seeds", nargs="+", type=int, default=None)
    aug.add_argument("--capillary", nargs="+", choices=["on", "off"], default=None)
    aug.add_argument("--weights", nargs="+", default=["quadrature"])
    dec = sub.add_parser("decompose", help="far against the truth (decompose), one record a config")
    dec.add_argument("--out", required=True, help="JSON lines file (appended)")
    dec.add_argument(
        "--configs", required=True, help="JSON list of [preset, seed, dose, capillary]"
    )
    tab = sub.add_parser("table")
    tab.add_argument("records")
    tab.add_argument("--per-seed", action="store_true", help="one row per record")
    wts = sub.add_parser("weights")
    wts.add_argument("records")
    var = sub.add_parser("variants")
    var.add_argument("records")
    sig = sub.add_parser("signature", help="what auto's early rule reads, per configuration")
    sig.add_argument("records")
    ovs = sub.add_parser("overshoot", help="auto's late factor pushed up, bounded or not")
    ovs.add_argument("records")
    ovs.add_argument("--push", type=float, nargs="+", default=[0.06, 0.1])
    ovs.add_argument(
        "--candidates", action="store_true", help="each of BOUNDS: mean (max) loss per preset"
    )
    args = ap.parse_args(argv)
    if args.command == "table":
        print(table(args.records, args.per_seed))
        return 0
    if args.command == "weights":
        print(weights_table(args.records))
        return 0
    if args.command == "signature":
        print(signature_table(args.records))
        return 0
    if args.command == "variants":
        print(variants_table(args.records))
        return 0
    if args.command == "overshoot":
        print(overshoot_table(args.records, args.push, args.candidates))
        return 0
    if args.command == "augment":
        return augment(args)
    if args.command == "decompose":
        return decompose_main(args)
    if args.command == "record-volume":
        return record_volume_main(args)
    return record_main(args)


KEY = ("preset", "seed", "dose", "capillary", "weights")


def append(path: str, r: dict) -> None:
    """Append a record to a JSON lines file."""
    with open(path, "a") as f:
        f.write(json.dumps(r) + "\n")


def augment(args) -> int:
    """``augment``: runs D and E (:func:`extra_record`) added to the selected records."""
    done = set()
    if os.path.exists(args.out):
        done = {tuple(json.loads(line)[k] for k in KEY) for line in open(args.out)}
    with tempfile.TemporaryDirectory(prefix="stopping_") as work:
        for line in open(args.records):
            r = json.loads(line)
            if (
                tuple(r[k] for k in KEY) in done
                or (args.presets and r["preset"] not in args.presets)
                or (args.doses and r["dose"] not in args.doses)
                or (args.seeds and r["seed"] not in args.seeds)
                or (args.capillary and ("on" if r["capillary"] else "off") not in args.capillary)
                or r["weights"] not in args.weights
            ):
                continue
            r.update(extra_record({k: r[k] for k in KEY}, work))
            append(args.out, r)
            c = choices(r)
            print(
                f"{tuple(r[k] for k in KEY)}: {r['seconds_d']:.0f} s; oracle {c['oracle']}, "
                f"auto {c['auto']}, noise halves {c['noise halves']}, noise corrected "
                f"{c['noise corrected']}, folds {c['folds']} ({r['seconds_e']:.0f} s)",
                flush=True,
            )
    return 0


def decompose_main(args) -> int:
    """``decompose``: :func:`decompose` for each configuration, and its summary."""
    for preset, seed, dose, cap in json.loads(args.configs):
        config = dict(preset=preset, seed=seed, dose=dose, capillary=cap, weights="quadrature")
        with tempfile.TemporaryDirectory(prefix="stopping_") as work:
            r = decompose(config, work)
        append(args.out, r)
        half = 0.5 * (np.asarray(r["err_a"]) + r["err_b"])
        far = half - 2 * np.asarray(r["cross"])
        corr = np.round(np.asarray(r["corr"])[[4, 9, 14, 19, 29, 59]], 2)
        print(
            f"{preset} seed {seed} dose {dose:g} capillary {cap}: the halves' own best "
            f"{int(np.argmin(half)) + 1}, far's {int(np.argmin(far)) + 1}, far's against "
            f"{2 * AUTO_CAP} iterations {int(np.argmin(r['far_long'])) + 1}; "
            f"corr at 5, 10, 15, 20, 30, 60: {corr.tolist()}",
            flush=True,
        )
    return 0


def record_volume_main(args) -> int:
    """``record-volume``: one :func:`record_volume`."""
    config = dict(
        preset=args.preset,
        seed=args.seed,
        dose=args.dose,
        capillary=args.capillary == "on",
        weights=args.weights,
    )
    with tempfile.TemporaryDirectory(prefix="stopping_") as work:
        r = record_volume(config, work, args.cap, args.block_size)
    append(args.out, r)
    c = choices(r)
    print(f"oracle {c['oracle']} ({max(r['psnr_roi']):.2f} dB); auto {c['auto']}", flush=True)
    return 0


def record_main(args) -> int:
    """``record``: every configuration not in ``--out`` yet, one record each."""
    done = set()
    if os.path.exists(args.out):
        done = {tuple(json.loads(line)[k] for k in KEY) for line in open(args.out)}
    with tempfile.TemporaryDirectory(prefix="stopping_") as work:
        for preset in args.presets:
            for dose in args.doses:
                for cap in args.capillary:
                    for w in args.weights:
                        for seed in args.seeds:
                            key = (preset, seed, dose, cap == "on", w)
                            if key in done:
                                continue
                            t0 = time.perf_counter()
                            r = record(dict(zip(KEY, key)), work, holdout=not args.no_holdout)
                            append(args.out, r)
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
