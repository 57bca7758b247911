"""A tilted rotation axis on the ``small`` preset: the tilt measured, and what ignoring it costs.

For each seed: simulate ``small`` with the rotation axis tilted on the detector by
``--tilt`` degrees, store the views' true shifts as their alignment (so that only the
tilt differs between the runs), measure the tilt on the full scan
(:func:`sxtdist.alignment.tilt.measure_axis_tilt`, what ``sxtdist align --measure-axis-tilt``
runs), and reconstruct the combined problem three times: the tilt ignored (0), as
measured, and as simulated. PSNR in the ROI and over the cell as everywhere
(:mod:`sxtdist.scoring`). Prints the two markdown tables of docs/tilt.md.

Usage: ``python benchmarks/tilt_study.py [--seeds 1 2 3] [--tilt 0.5] [--iterations 20]
[--workers N] [--no-capillary] [--out DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import sxtdist
from sxtdist import scoring
from sxtdist.alignment.tilt import measure_axis_tilt
from sxtdist.distributed import get_client
from sxtdist.runner import reconstruct


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--tilt", type=float, default=0.5)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-capillary", action="store_true", help="simulate without the capillary")
    ap.add_argument("--out", help="keep outputs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="sxtdist_tilt_")
    os.makedirs(out, exist_ok=True)
    measured, psnr = [], []
    try:
        with get_client(workers=args.workers) as client:
            for seed in args.seeds:
                path = os.path.join(out, f"small_{seed}.zarr")
                acq = sxtdist.simulate(
                    path,
                    "small",
                    seed,
                    axis_tilt_deg=args.tilt,
                    capillary=not args.no_capillary,
                    overwrite=True,
                    progress=False,
                )
                for name in acq.scans:  # the true shifts: only the tilt is left to find
                    acq.set_shifts(
                        name, np.asarray(acq.truth_meta["shifts_px"][name]), method="known"
                    )
                t0 = time.perf_counter()
                est = measure_axis_tilt(acq, store=False)
                seconds = time.perf_counter() - t0
                measured.append((seed, est, seconds))
                truth = acq.truth.compute()
                regions = scoring.Regions.of(acq)
                row = [seed]
                for tilt in (0.0, est.tilt_deg, args.tilt):
                    for name in acq.scans:
                        acq.update_scan(name, axis_tilt_deg=tilt)
                    vol = reconstruct(
                        path,
                        os.path.join(out, f"recon_{seed}_{tilt:+.4f}.zarr"),
                        iterations=args.iterations,
                        client=client,
                        overwrite=True,
                        progress=False,
                    )
                    s = scoring.score(vol.level(0).compute(), truth, regions)
                    row.append((s.psnr_roi, s.psnr_cell))
                psnr.append(row)
        capillary = "without" if args.no_capillary else "with"
        print(
            f"small preset {capillary} capillary, axis tilted {args.tilt:+.2f} deg, true shifts\n"
        )
        print(
            "| seed | measured (deg) | error (deg) | jackknife σ (deg) | slices | views | time (s) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for seed, est, seconds in measured:
            err = est.tilt_deg - args.tilt
            print(
                f"| {seed} | {est.tilt_deg:+.4f} | {err:+.4f} | {est.sigma_deg:.4f} | "
                f"{est.rows_used} | {est.views_used} | {seconds:.1f} |"
            )
        print(
            f"\nPSNR (dB) after {args.iterations} CGNE iterations, ROI / cell; {scoring.PSNR_NOTE}\n"
        )
        print("| seed | tilt ignored | tilt measured | tilt as simulated |")
        print("|---:|---:|---:|---:|")
        for seed, *cells in psnr:
            print(f"| {seed} | " + " | ".join(f"{r:.2f} / {c:.2f}" for r, c in cells) + " |")
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
