"""float32 CGNE against a float64 CGLS on the same matrices: objective and ROI PSNR.

sxtdist's CGNE keeps its vectors in float32 (the volume's size) and its per-slice
scalars in float64 (``slice_kernels.sumsq_last``). The reference here is plain CGLS
with the same per-slice-group scalars, the same system matrices cast to float64 and
float64 vectors, so the difference is round-off alone. Problems:

* ``bench``: benchmarks/bench_reconstruct.py's combined problem (255², 92 interior
  views on a 149-px detector, 19 full views at 3x the pixel), noiseless, quadrature
  weights (43.6 : 1), 6 slices;
* ``small``: the ``small`` preset (seed 1, no capillary, known shifts), 24 central
  slices, quadrature weights, noiseless and at the paper's dose.

For each: the objective ``Σ w_i ||A_i x − y_i||²`` (in float64) of both at 10/20/50
iterations, the float64 iteration at which float64 CGLS first reaches float32's
objective (the delay), and the PSNR in the ROI (:mod:`sxtdist.scoring`'s peak).

Usage: ``python benchmarks/cg_precision.py [--problems bench small] [--iterations 10 20 50]``
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile

import numpy as np

import sxtdist
from sxtdist import metrics, scoring
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import ScanModel, SliceProjector
from sxtdist.operators.base import Composition, Scaled
from sxtdist.operators.rows import RowSampling
from sxtdist.recon import Problem, slab_system
from sxtdist.runner import build_problem
from sxtdist.solvers import cgne

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_reconstruct import geometries, phantom


def to_float64(op):
    """A float64 twin of a composed operator: the same matrices, float64 products."""
    twin = copy.copy(op)
    if isinstance(op, Scaled):
        twin.op = to_float64(op.op)
    elif isinstance(op, Composition):
        twin.outer, twin.inner = to_float64(op.outer), to_float64(op.inner)
    elif isinstance(op, SliceProjector | RowSampling):
        twin.matrix = op.matrix.astype(np.float64)
        twin.matrix_t = op.matrix_t.astype(np.float64)
        if isinstance(op, SliceProjector):  # its own _map casts to float32
            twin._map = lambda m, v, shape_out: (
                m @ np.ascontiguousarray(v, np.float64).reshape(-1, shape_out[-1])
            ).reshape(shape_out)
    else:
        raise TypeError(f"no float64 twin for {type(op).__name__}")
    return twin


def cgls(ops_forward, ops_adjoint, data, groups, shape, iterations: int, **variant):
    """CGLS with per-group scalars (float64 sums); every iterate.

    ``ops_forward``/``ops_adjoint``: the operators used for ``A p`` and ``Aᵀ r`` (float32
    or float64 twins); ``variant``: ``dtype`` of the vectors (default float64),
    ``replace_every`` (recompute ``r = y − A x`` every k iterations), ``polak_ribiere``
    (β = s·(s − s_old) / γ).
    """
    dtype = variant.get("dtype", np.float64)
    every = variant.get("replace_every", 0)
    dom, ranges, n = groups.domain, groups.ranges, groups.n

    def dsum(v):
        return np.bincount(dom, np.einsum("ijk,ijk->k", v, v, dtype=np.float64), n)

    def rsum(vs):
        return sum(
            np.bincount(lab, np.einsum("ijk,ijk->k", v, v, dtype=np.float64), n)
            for v, lab in zip(vs, ranges)
        )

    def forward(v):
        return [np.asarray(o(v), dtype) for o in ops_forward]

    def adjoint(rs):
        return np.asarray(sum(o.T(ri) for o, ri in zip(ops_adjoint, rs)), dtype)

    x = np.zeros(shape, dtype)
    r = [np.asarray(y, dtype).copy() for y in data]
    s = adjoint(r)
    p, gamma = s.copy(), dsum(s)
    out = []
    for it in range(1, iterations + 1):
        q = forward(p)
        qq = rsum(q)
        a = np.where(qq > 0, gamma / np.where(qq > 0, qq, 1), 0)
        x += (a[dom] * p).astype(dtype)
        for i in range(len(r)):
            r[i] -= (a[ranges[i]] * q[i]).astype(dtype)
        if every and it % every == 0:
            r = [np.asarray(y, dtype) - f for y, f in zip(data, forward(x))]
        s_old, s = s, adjoint(r)
        g = dsum(s)
        num = (
            g - np.bincount(dom, np.einsum("ijk,ijk->k", s, s_old), n)
            if variant.get("polak_ribiere")
            else g
        )
        p = (s + np.where(gamma > 0, num / np.where(gamma > 0, gamma, 1), 0)[dom] * p).astype(dtype)
        gamma = g
        out.append(x.copy())
    return out


#: Variants of CGLS tried against float64 CGLS (``--variants``): where float32 loses ground.
VARIANTS = {
    "float32 products, float64 vectors": ("32", "32", {}),
    "float64 forward only, float32 vectors": ("64", "32", {"dtype": np.float32}),
    "float64 adjoint only, float32 vectors": ("32", "64", {"dtype": np.float32}),
    "float32, Polak-Ribiere beta": ("32", "32", {"dtype": np.float32, "polak_ribiere": True}),
    "float32, residual replaced every 5": ("32", "32", {"dtype": np.float32, "replace_every": 5}),
}


def bench_problem():
    """(ops, data, groups, truth slab, ROI disc) of bench_reconstruct's combined problem."""
    n, nz, v = 255, 6, 30.0
    grid = VolumeGrid((nz, n, n), v)
    truth = np.ascontiguousarray(np.moveaxis(phantom(n, nz, np.random.default_rng(0)), 0, -1))
    models = {}
    for name, g in geometries(n, v).items():
        rows = int(round(nz * v / g.pixel_size_nm))
        models[name] = ScanModel(
            ScanGeometry(g.angles_deg, g.pixel_size_nm, (rows, g.detector_shape[1]))
        )
    problem = Problem(grid, models, weights={"full": 9 * 92 / 19})
    slab = (0, nz)
    rows = problem.rows(slab)
    blank = {
        k: np.zeros((m.geometry.n_angles, rows[k].size, m.geometry.detector_shape[1]))
        for k, m in models.items()
    }
    ops, _, groups, _ = slab_system(problem, slab, blank)
    ys = [op(truth) for op in ops]  # noiseless, weighted like the operators
    roi = metrics.cylinder_mask((n, n), metrics.roi_diameter_px(models["roi"].geometry, v))
    roi = np.broadcast_to(roi[:, :, None], truth.shape)
    return ops, ys, groups, truth, roi, truth > 0.1


def small_problem(photons, work: str, n_slices: int = 24, margin: int = 4):
    """The same for the ``small`` preset's central slices, scored inside a margin."""
    acq = sxtdist.simulate(
        os.path.join(work, "small.zarr"),
        "small",
        1,
        photons=photons,
        capillary=False,
        overwrite=True,
        progress=False,
    )
    for s in acq.scans:
        acq.set_shifts(s, np.asarray(acq.truth_meta["shifts_px"][s]), method="known")
    problem = build_problem(acq)
    z0 = problem.grid.nz // 2 - n_slices // 2
    # the slab reaches past the scored slices: rows at a slab's edge are left out
    slab = (z0 - margin, z0 + n_slices + margin)
    rows = problem.rows(slab)
    data = {k: acq[k].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for k, r in rows.items()}
    ops, ys, groups, _ = slab_system(problem, slab, data)
    truth = np.ascontiguousarray(np.moveaxis(np.asarray(acq.truth[slab[0] : slab[1]]), 0, -1))
    regions = scoring.Regions.of(acq)
    scored = np.zeros(truth.shape, bool)
    scored[..., margin:-margin] = True
    roi = scored & regions.roi(truth.shape[:2])[:, :, None]
    return (
        ops,
        ys,
        groups,
        truth,
        roi,
        scored & np.moveaxis(regions.cell(np.moveaxis(truth, -1, 0)), 0, -1),
    )


def compare(label, ops, ys, groups, truth, roi, cell, iterations, out, variants=False) -> None:
    ops64 = [to_float64(o) for o in ops]
    ys64 = [np.asarray(y, np.float64) for y in ys]

    def objective(x):
        x = np.asarray(x, np.float64)
        return sum(float(((o(x) - y) ** 2).sum()) for o, y in zip(ops64, ys64))

    ref = cgls(ops64, ops64, ys64, groups, ops[0].domain_shape, max(iterations) + 20)
    f64 = [objective(x) for x in ref]
    peak = metrics.data_range(truth, mask=cell)
    for k in iterations:
        x32 = cgne(ops, ys, k, groups=groups).x
        f32 = objective(x32)
        reached = next((i + 1 for i, f in enumerate(f64) if f <= f32), None)
        out.append(
            f"| {label} | {k} | {f32:.4g} | {f64[k - 1]:.4g} | {f32 / f64[k - 1]:.3f} | "
            f"{reached if reached is not None else '> ' + str(len(f64))} | "
            f"{metrics.psnr(x32, truth, roi, peak):.2f} | "
            f"{metrics.psnr(ref[k - 1], truth, roi, peak):.2f} |"
        )
        print(out[-1], flush=True)
    if variants:
        pick = {"32": ops, "64": ops64}
        for name, (fw, bw, kw) in VARIANTS.items():
            xs = cgls(pick[fw], pick[bw], ys64, groups, ops[0].domain_shape, max(iterations), **kw)
            ratios = ", ".join(f"{k}: {objective(xs[k - 1]) / f64[k - 1]:.3f}" for k in iterations)
            out.append(f"| {label} | {name} | objective / float64's at {ratios} |")
            print(out[-1], flush=True)
    # the count where the ROI PSNR peaks (the oracle's): does float32 move it?
    scores: list[float] = []
    cgne(
        ops,
        ys,
        len(ref),
        groups=groups,
        callback=lambda it, x: scores.append(metrics.psnr(x, truth, roi, peak)) and False,
    )
    best32 = int(np.argmax(scores)) + 1
    best64 = int(np.argmax([metrics.psnr(x, truth, roi, peak) for x in ref])) + 1
    out.append(
        f"| {label} | best ROI PSNR at | | | | | {best32}: {max(scores):.2f} | "
        f"{best64}: {metrics.psnr(ref[best64 - 1], truth, roi, peak):.2f} |"
    )
    print(out[-1], flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["bench", "small", "small-noisy"])
    ap.add_argument("--iterations", nargs="+", type=int, default=[10, 20, 50])
    ap.add_argument("--variants", action="store_true", help="also the CGLS variants (VARIANTS)")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cg_precision_") as work:
        for name in args.problems:
            if name == "bench":
                system = bench_problem()
            elif name in ("small", "small-noisy"):
                system = small_problem(None if name == "small-noisy" else 0, work)
            else:
                raise SystemExit(f"unknown problem {name!r}")
            compare(name, *system, args.iterations, rows, args.variants)
    print(
        "\n| problem | iterations | objective float32 | objective float64 | ratio | float64 "
        "iteration reaching float32's objective | ROI PSNR float32 (dB) | float64 (dB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
