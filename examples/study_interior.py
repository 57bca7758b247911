"""Interior vs combined: radial PSNR and FRC (the paper's figure 3).

The ``small`` preset at the paper's fluence (10000 photons per (20 nm)² and view,
scaled to the pixels; 19 full views with the 60 nm zone plate at 120 nm
pixels, 90 interior views with the 35 nm zone plate at 60 nm over a 3.6 µm ROI),
reconstructed four ways with oracle stopping (best PSNR in the ROI):

* interior only, sparse (full-field) only, combined;
* a reference: the same cell scanned with the interior optics, pixel and dose at
  every interior angle on an untruncated detector (the paper's x_ref).

Scores: PSNR in annuli about the rotation axis over the cell (figure 3a; also
relative to the reference, PSNR_rel of eq. 10) and the FRC of the central slice
against the truth in a square of the ROI's width (figure 3b) with the 1/7
resolution of the smoothed curve. Full mode: more iterations allowed and two seeds.

Writes ``study_interior.csv``, ``study_interior_frc.csv`` and ``study_interior.png``.

Usage: ``python examples/study_interior.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _study

from sxtdist import metrics, scoring


def main(argv=None) -> int:
    ap = _study.parser(__doc__)
    ap.add_argument(
        "--photons",
        type=float,
        default=10000.0,
        help="photons per (20 nm)² per view, both scans (the paper's figure 3: 10000)",
    )
    args = ap.parse_args(argv)
    seeds = [args.seed] if args.quick else [args.seed, args.seed + 1]
    st = _study.Study(args, "study_interior")
    rows, frc_rows, curves = [], [], {}
    try:
        for seed in seeds:
            st.args.seed = seed
            ph = {
                "full": _study.photons_per_pixel(120.0, args.photons),
                "roi": _study.photons_per_pixel(60.0, args.photons),
            }
            acq = st.simulate(f"acq{seed}", photons=ph)
            fov_um = acq["full"].geometry.detector_shape[1] * acq["full"].pixel_size_nm / 1e3
            ref = st.simulate(f"ref{seed}", roi_width_um=fov_um, photons=ph)
            truth = np.asarray(acq.truth.compute())
            roi_px = _study.roi_diameter_px(acq)
            v = float(acq.truth_meta["voxel_size_nm"])
            runs = {
                "interior": (acq, ["roi"]),
                "sparse": (acq, ["full"]),
                "combined": (acq, ["full", "roi"]),
                "reference": (ref, ["roi"]),
            }
            regions = scoring.Regions.of(acq)
            cell = regions.cell(truth)
            peak = metrics.data_range(truth, mask=cell)
            bin_px = roi_px / 6.0
            radial = {}
            # the oracle scores where the PSNR is read: the interior scan's ROI, for the
            # full-width reference too (over its whole field it stops elsewhere)
            roi_nm = roi_px / 2.0 * v
            for name, (a, scans) in runs.items():
                x = st.reconstruct(a, scans, f"{name}{seed}", oracle_radius_nm=roi_nm)
                s = _study.scores(x, acq)
                rp = metrics.radial_psnr(x, truth, bin_px, mask=cell, data_range_value=peak)
                radial[name] = rp
                mid = truth.shape[0] // 2
                w = int(round(roi_px))
                y0 = (truth.shape[1] - w) // 2
                crop = (mid, slice(y0, y0 + w), slice(y0, y0 + w))
                c = metrics.frc(x[crop], truth[crop], v, smooth_sigma=3)
                res = c.resolution("1/7", smooth=True)
                curves[name] = c
                rows.append(
                    {
                        "seed": seed,
                        "reconstruction": name,
                        "psnr_roi_db": s["psnr_roi"],
                        "psnr_whole_db": s["psnr_whole"],
                        "frc_1_7_nm": float("nan") if res is None else res,
                        "frc_half_bit_nm": float("nan")
                        if c.resolution("half-bit") is None
                        else c.resolution("half-bit"),
                    }
                )
                print(rows[-1], flush=True)
            for name, rp in radial.items():
                for i in range(rp.psnr.size):
                    if rp.count[i]:
                        frc_rows.append(
                            {
                                "seed": seed,
                                "reconstruction": name,
                                "curve": "radial_psnr",
                                "x": float(rp.r_mean[i] * v / 1e3),
                                "x_unit": "radius_um",
                                "y": float(rp.psnr[i]),
                                "y_rel": float(rp.psnr[i] - radial["reference"].psnr[i]),
                            }
                        )
            for name, c in curves.items():
                for f, y in zip(c.freq / v, c.smoothed):
                    frc_rows.append(
                        {
                            "seed": seed,
                            "reconstruction": name,
                            "curve": "frc_smoothed",
                            "x": float(f),
                            "x_unit": "cycles_per_nm",
                            "y": float(y),
                            "y_rel": float("nan"),
                        }
                    )
    finally:
        st.close()
    _study.write_csv(os.path.join(args.out, "study_interior.csv"), rows)
    _study.write_csv(os.path.join(args.out, "study_interior_frc.csv"), frc_rows)
    _study.print_table(rows)
    plt = _study.pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.3))
    last = seeds[-1]
    for name in ("interior", "sparse", "combined", "reference"):
        pts = [
            r
            for r in frc_rows
            if r["seed"] == last and r["reconstruction"] == name and r["curve"] == "radial_psnr"
        ]
        a.plot([p["x"] for p in pts], [p["y"] for p in pts], "o-", ms=3, label=name)
        if name != "reference":
            b.plot([p["x"] for p in pts], [p["y_rel"] for p in pts], "o-", ms=3, label=name)
        cv = curves[name]
        c.plot(cv.freq / (cv.voxel_size_nm or 1) * 1e3, cv.smoothed, label=name)
    roi_r = _roi_radius_um()
    for ax in (a, b):
        ax.axvline(roi_r, color="k", ls=":", lw=1)
        ax.set_xlabel("distance from the rotation axis (µm)")
        ax.legend(fontsize=8)
    a.set_ylabel("PSNR in the annulus (dB)")
    a.set_title("radial PSNR (cell voxels)")
    b.set_ylabel("PSNR − PSNR(reference) (dB)")
    b.set_title("PSNR_rel (eq. 10)")
    c.axhline(1 / 7, color="k", ls="--", lw=1, label="1/7")
    c.set_xlabel("spatial frequency (1/µm)")
    c.set_ylabel("FRC vs truth (smoothed)")
    c.set_title("central slice, ROI-wide square")
    c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "study_interior.png"), dpi=90)
    return 0


def _roi_radius_um() -> float:
    from sxtdist.simulation.presets import get_preset

    return get_preset("small").roi.width_um / 2.0


if __name__ == "__main__":
    raise SystemExit(main())
