"""PSNR and null-space size against the number of full-field views (the paper's figure 2).

Noiseless data of the ``small`` preset (90 interior views of a 3.6 µm ROI in a
6 µm cell; full views at twice the pixel size), N_full varied. For each N_full:

* the combined reconstruction (oracle stopping, best PSNR in the ROI): PSNR in the
  ROI cylinder and over the whole volume;
* the null-space component of the truth for the interior-only, sparse-only and
  combined operators (zero-data CGLS from the truth, :func:`sxtdist.nullspace.null_space`)
  on a central slab, as ``‖x_null‖/‖x₀‖`` in the ROI and in the whole slab.

Writes ``study_nfull.csv`` and ``study_nfull.png`` to ``--out``.

Usage: ``python examples/study_nfull.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _study

from sxtdist import metrics, nullspace
from sxtdist.operators.scan import scan_operator
from sxtdist.runner import build_problem


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


def main(argv=None) -> int:
    args = _study.parser(__doc__).parse_args(argv)
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
            s = _study.scores(x, truth, roi_px)
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
