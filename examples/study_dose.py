"""Dose redistribution at a fixed budget (the paper's figure 5, eq. 13).

As in the paper's simulation both scans use the same pixel (60 nm here; the full
scan differs by its 60 nm zone plate and its field of view). Reference budget:
N₀ = 90 full-field views at I₀ photons per pixel (default: the paper's
1000 photons per (20 nm)², i.e. 9000 per 60 nm pixel). For each N_full the combined
protocol keeps N_full full views at I₀ and gives the interior scan (90 views, 3.6 µm ROI)
I_ROI = I₀ (D_full/D_ROI)(N₀ − N_full)/N₀, with D_full/D_ROI computed from dose
maps of the cell (``sxtdist.dose.dose_ratio`` on the truth's central slice, the
cell as the sample), not hard-coded. Reconstructed with oracle stopping:

* combined (N_full + 90 interior at I_ROI): PSNR in the ROI and whole;
* sparse only (the N_full full views): the full-field protocol getting sparser;
* reference: 90 untruncated views with the interior optics at I₀ (the paper's red line).

The mean dose in the cell of each combined protocol is checked against the
reference's with dose maps (column ``dose_vs_reference``).

Writes ``study_dose.csv`` and ``study_dose.png``.

Usage: ``python examples/study_dose.py [--quick] [--out DIR] [--photons 1000]``
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _study

from sxtdist import dose, scoring
from sxtdist.geometry import scan_angles


def main(argv=None) -> int:
    ap = _study.parser(__doc__)
    ap.add_argument(
        "--photons",
        type=float,
        default=1000.0,
        help="I₀ per (20 nm)² as in the paper's figure 5 (scaled to the 60 nm pixel)",
    )
    args = ap.parse_args(argv)
    n0 = 90
    i0 = _study.photons_per_pixel(60.0, args.photons)
    n_fulls = [5, 9, 19, 45] if args.quick else [3, 5, 9, 13, 19, 29, 45, 61, 75]
    st = _study.Study(args, "study_dose")
    rows = []
    try:
        same_pixel = {"pixel_size_nm": 60.0}
        probe = st.simulate("probe", n_full=1, n_roi=1, **same_pixel)
        truth = np.asarray(probe.truth.compute())
        v = float(probe.truth_meta["voxel_size_nm"])
        roi_px = _study.roi_diameter_px(probe)
        roi_nm = roi_px * v
        fov_um = probe["full"].geometry.detector_shape[1] * probe["full"].pixel_size_nm / 1e3
        mid = truth[truth.shape[0] // 2]
        cell = scoring.Regions.of(probe).cell(mid)
        ratio = dose.dose_ratio(mid, v, roi_nm, scan_angles(30), mask=cell)
        print(f"D_full/D_ROI = {ratio:.3f} (computed on the central slice)", flush=True)
        fluence0 = i0 / 0.06**2
        ref_dose = dose.mean_dose(
            dose.absorbed_photons(mid, v, dose.Exposure(scan_angles(n0), np.inf, fluence0)), cell
        )
        ref = st.simulate("reference", roi_width_um=fov_um, photons={"roi": i0}, **same_pixel)
        x = st.reconstruct(ref, ["roi"], "reference")
        s_ref = _study.scores(x, ref, roi_px)
        for nf in n_fulls:
            i_roi = dose.redistributed_intensity(i0, n0, nf, ratio)
            acq = st.simulate(
                f"nf{nf}", n_full=nf, n_roi=n0, photons={"full": 4 * i0, "roi": i_roi}
            )
            plan_dose = dose.mean_dose(
                dose.absorbed_photons(
                    mid,
                    v,
                    [
                        dose.Exposure(scan_angles(nf), np.inf, fluence0),
                        dose.Exposure(scan_angles(n0), roi_nm, i_roi / 0.06**2),
                    ],
                ),
                cell,
            )
            sc = _study.scores(st.reconstruct(acq, ["full", "roi"], f"comb{nf}"), acq, roi_px)
            ss = _study.scores(st.reconstruct(acq, ["full"], f"sparse{nf}"), acq, roi_px)
            rows.append(
                {
                    "n_full": nf,
                    "i_roi": i_roi,
                    "dose_vs_reference": plan_dose / ref_dose,
                    "combined_psnr_roi_db": sc["psnr_roi"],
                    "combined_psnr_whole_db": sc["psnr_whole"],
                    "sparse_psnr_roi_db": ss["psnr_roi"],
                    "sparse_psnr_whole_db": ss["psnr_whole"],
                    "reference_psnr_roi_db": s_ref["psnr_roi"],
                    "reference_psnr_whole_db": s_ref["psnr_whole"],
                    "dose_ratio": ratio,
                }
            )
            print(rows[-1], flush=True)
    finally:
        st.close()
    _study.write_csv(os.path.join(args.out, "study_dose.csv"), rows)
    _study.print_table(rows)
    plt = _study.pyplot()
    n = [r["n_full"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, where in zip(axes, ("roi", "whole")):
        ax.plot(n, [r[f"combined_psnr_{where}_db"] for r in rows], "o-", label="combined (eq. 13)")
        ax.plot(n, [r[f"sparse_psnr_{where}_db"] for r in rows], "s-", label="full-field only")
        ax.axhline(rows[0][f"reference_psnr_{where}_db"], color="r", label="reference")
        ax.set_xlabel("full-field views N_full")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"PSNR, {'ROI cylinder' if where == 'roi' else 'whole volume'}")
        ax.legend(fontsize=8)
    fig.suptitle(
        f"equal total dose: N₀ = {n0} views at I₀ = {i0:g}; D_full/D_ROI = {rows[0]['dose_ratio']:.2f}"
    )
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "study_dose.png"), dpi=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
