"""PSNR and null-space size against the number of full-field views (the paper's figure 2).

Noiseless data of the ``small`` preset (90 interior views of a 3.6 µm ROI in a
6 µm cell; full views at twice the pixel size), N_full varied. For each N_full:

* the combined reconstruction (oracle stopping, best PSNR in the ROI): PSNR in the
  ROI cylinder and over the whole volume;
* the null-space component of the truth for the interior-only, sparse-only and
  combined operators (zero-data CGLS from the truth, :func:`sxtdist.nullspace.null_space`)
  on a central slab, as ``‖x_null‖/‖x₀‖`` in the ROI and in the whole slab.

Writes ``study_nfull.csv`` and ``study_nfull.png`` to ``--out``.

``--paper`` instead matches the paper's figure-2 setup and adds the full-data
reference (:func:`paper_table`): noiseless data, both scans at the same 60 nm pixel, a
Gaussian blur of 1.5 px FWHM on the intensity, an interior detector 23.8 % of the full
field (as 62 of 260 px), 273 interior views, N_full ∈ {2, 3, 9, 18, 273}, equal weights
and the oracle stop (the best ROI PSNR within 100 iterations) as in the paper's code; the
reference is the 273 views on the untruncated detector, reconstructed the same way. One
block of all 24 slices, solved in this process (:func:`paper_solve`); the combined
operator's null space in the ROI as above (``null_roi_combined``). Writes
``study_nfull_paper.csv``; ``--weights quadrature``, ``--psf`` and ``--cap N`` vary the
reconstruction to explain the trend.

Usage: ``python examples/study_nfull.py [--quick | --paper] [--out DIR]``
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _study

from sxtdist import metrics, nullspace, scoring
from sxtdist.blocks import plan_blocks
from sxtdist.operators.scan import scan_operator
from sxtdist.recon import slab_system
from sxtdist.runner import build_problem
from sxtdist.solvers import OracleStop, cgne


def null_space_ratios(acq, scans, truth, roi_px, slab_len, eval_len, iterations):
    """‖x_null‖/‖x₀‖ (ROI, whole) on the central ``eval_len`` slices of a ``slab_len`` slab."""
    prob = build_problem(acq, scans=scans)
    grid = prob.grid
    # the null space belongs to the acquisition geometry, not to the jitter
    models = [replace(m, geometry=m.geometry.with_shifts(None)) for m in prob.models.values()]
    z0 = grid.nz // 2 - slab_len // 2
    slab = (z0, z0 + slab_len)
    ops = []
    for m in models:
        rows = m.rows_for_slab(grid, slab)
        ops.append(scan_operator(m, grid, slab, rows))
    x0 = np.ascontiguousarray(np.moveaxis(truth[slab[0] : slab[1]], 0, -1))
    ns = nullspace.null_space(ops, x0, iterations)
    # slices near the slab's ends lose the rows they share with the neighbours: score the middle
    e0 = (slab_len - eval_len) // 2
    inner = np.zeros(x0.shape, bool)
    inner[..., e0 : e0 + eval_len] = True
    roi = inner & metrics.cylinder_mask(x0.shape[:2], roi_px)[:, :, None]
    xn = ns.x_null.astype(np.float64)

    def ratio(m):
        return math.sqrt(float((xn[m] ** 2).sum()) / float((x0[m].astype(np.float64) ** 2).sum()))

    return ratio(roi), ratio(inner)


#: The paper's figure 2 (interiorsxt_facts.md 6) on the ``small`` cell: a 7.68 µm field at
#: 60 nm, both scans at 60 nm, a 1.5 px FWHM blur (zone plate of 1.5 px / 1.029), the interior
#: detector 62/260 of the field, 273 interior views, noiseless, no jitter, no capillary.
PAPER_FIELD_FRACTION = 62 / 260
PAPER_N_FULL = (2, 3, 9, 18, 273)


def paper_preset():
    from sxtdist.simulation.presets import PRESETS, Preset, ScanPreset

    ozw = 1.5 * 60.0 / 1.029
    field_um = 128 * 60.0 / 1e3
    scan = ScanPreset(273, 60.0, None, ozw)
    PRESETS["paper-fig2"] = Preset(
        "paper-fig2",
        voxel_nm=60.0,
        fov_px=128,
        height_px=24,
        cell_diameter_um=6.0,
        full=scan,
        roi=replace(scan, width_um=PAPER_FIELD_FRACTION * field_um),
        capillary=False,
    )
    return "paper-fig2"


def paper_solve(acq, scans, regions, args) -> tuple[np.ndarray, int]:
    """CGNE on one block of all slices to ``args.cap`` iterations; the iterate of best ROI PSNR.

    The paper's oracle is the best PSNR within the cap. The runner's ``oracle`` stops
    5 iterations after a block's first local best: with N_full = 3 it stopped at 24
    iterations, 2.1 dB below the best (at 132). Returns ``(z, y, x)`` and the count.
    """
    problem = build_problem(
        acq, scans=scans, iterations=args.cap, weights=args.weights, psf=args.psf
    )
    (block,) = plan_blocks(list(problem.models.values()), problem.grid, problem.grid.nz).blocks
    rows = problem.rows(block.slab)
    data = {n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items()}
    # the slab reaches past the volume when the PSF is modelled: score its core only
    core = slice(block.core[0] - block.slab[0], block.core[1] - block.slab[0])
    shape = (*problem.grid.slice_shape, block.slab[1] - block.slab[0])
    truth, roi = np.zeros(shape, np.float32), np.zeros(shape, bool)
    truth[..., core] = np.moveaxis(np.asarray(acq.truth, np.float32), 0, -1)
    roi[..., core] = regions.roi(problem.grid.slice_shape)[:, :, None]
    best = OracleStop(truth, roi, patience=args.cap)
    ops, ys, groups, _ = slab_system(problem, block.slab, data)
    cgne(ops, ys, args.cap, groups=groups, callback=best)
    return np.moveaxis(best.best_x[..., core], -1, 0), best.best_iteration


def paper_table(st, args) -> list[dict]:
    """Combined minus the full-data reference in the ROI, per N_full (the paper's setup)."""
    preset = paper_preset()
    ref = st.simulate("paper_ref", preset, n_full=1, roi_width_um=128 * 60.0 / 1e3, photons=0)
    acq0 = st.simulate("paper_nf2", preset, n_full=2, photons=0)
    assert np.array_equal(np.asarray(ref.truth), np.asarray(acq0.truth))
    # everything is scored, and the oracle looks, in the combined setup's interior ROI
    regions = scoring.Regions.of(acq0)
    x, k_ref = paper_solve(ref, ["roi"], regions, args)
    s_ref = _study.scores(x, acq0)
    roi_px = _study.roi_diameter_px(acq0)
    truth = np.asarray(acq0.truth.compute())
    rows = []
    for nf in PAPER_N_FULL:
        acq = acq0 if nf == 2 else st.simulate(f"paper_nf{nf}", preset, n_full=nf, photons=0)
        x, k = paper_solve(acq, ["full", "roi"], regions, args)
        s = _study.scores(x, acq0)
        null_roi, _ = null_space_ratios(acq, ["full", "roi"], truth, roi_px, 16, 6, 200)
        rows.append(
            {
                "n_full": nf,
                "combined_roi_db": s["psnr_roi"],
                "reference_roi_db": s_ref["psnr_roi"],
                "combined_minus_reference_db": s["psnr_roi"] - s_ref["psnr_roi"],
                "combined_whole_db": s["psnr_whole"],
                "reference_whole_db": s_ref["psnr_whole"],
                "combined_iterations": k,
                "reference_iterations": k_ref,
                "null_roi_combined": null_roi,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    ap = _study.parser(__doc__)
    ap.add_argument("--paper", action="store_true", help="the paper's figure-2 setup (see above)")
    ap.add_argument("--weights", default="equal", help="--paper: scan weights (paper: equal)")
    ap.add_argument("--psf", action="store_true", help="--paper: model the blur in the solve")
    ap.add_argument("--cap", type=int, default=100, help="--paper: the oracle's cap (paper: 100)")
    args = ap.parse_args(argv)
    if args.paper:
        st = _study.Study(args, "study_nfull_paper")
        try:
            rows = paper_table(st, args)
        finally:
            st.close()
        variant = (args.weights, args.psf, args.cap) != ("equal", False, 100)
        tag = f"_{args.weights}{'_psf' * args.psf}_cap{args.cap}" if variant else ""
        _study.write_csv(os.path.join(args.out, f"study_nfull_paper{tag}.csv"), rows)
        _study.print_table(rows)
        return 0
    n_fulls = [1, 3, 9, 19] if args.quick else [1, 2, 3, 5, 9, 13, 19, 29, 45, 90]
    iterations = 200  # the reference code's count; fewer leave the estimate unconverged
    slab_len, eval_len = (16, 6) if args.quick else (32, 16)
    st = _study.Study(args, "study_nfull")
    rows = []
    try:
        interior_ns = None
        for nf in n_fulls:
            acq = st.simulate(f"nfull{nf}", n_full=nf, photons=0)
            truth = np.asarray(acq.truth.compute())
            roi_px = _study.roi_diameter_px(acq)
            x = st.reconstruct(acq, ["full", "roi"], f"comb{nf}")
            s = _study.scores(x, acq)
            if interior_ns is None:
                interior_ns = null_space_ratios(
                    acq, ["roi"], truth, roi_px, slab_len, eval_len, iterations
                )
            sparse_ns = null_space_ratios(
                acq, ["full"], truth, roi_px, slab_len, eval_len, iterations
            )
            comb_ns = null_space_ratios(
                acq, ["full", "roi"], truth, roi_px, slab_len, eval_len, iterations
            )
            rows.append(
                {
                    "n_full": nf,
                    "psnr_roi_db": s["psnr_roi"],
                    "psnr_whole_db": s["psnr_whole"],
                    "null_roi_combined": comb_ns[0],
                    "null_whole_combined": comb_ns[1],
                    "null_roi_sparse": sparse_ns[0],
                    "null_whole_sparse": sparse_ns[1],
                    "null_roi_interior": interior_ns[0],
                    "null_whole_interior": interior_ns[1],
                }
            )
            print(rows[-1], flush=True)
    finally:
        st.close()
    _study.write_csv(os.path.join(args.out, "study_nfull.csv"), rows)
    _study.print_table(rows)
    plt = _study.pyplot()
    n = [r["n_full"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(n, [r["psnr_roi_db"] for r in rows], "o-", label="ROI")
    a.plot(n, [r["psnr_whole_db"] for r in rows], "s-", label="whole volume")
    a.set_xscale("log")
    a.set_xlabel("full-field views N_full")
    a.set_ylabel("PSNR (dB), combined, oracle stop")
    a.set_title("combined reconstruction, noiseless")
    a.legend()
    for key, lab, st_ in (
        ("combined", "combined", "-"),
        ("sparse", "sparse only", "--"),
        ("interior", "interior only", ":"),
    ):
        b.plot(n, [100 * r[f"null_roi_{key}"] for r in rows], "o" + st_, label=f"{lab}, ROI")
        b.plot(
            n,
            [100 * r[f"null_whole_{key}"] for r in rows],
            "s" + st_,
            label=f"{lab}, whole",
            alpha=0.6,
        )
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("full-field views N_full")
    b.set_ylabel("‖x_null‖ / ‖x₀‖ (%)")
    b.set_title("null-space component of the truth")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "study_nfull.png"), dpi=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
