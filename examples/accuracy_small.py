"""Accuracy of the combined reconstruction on the paper-like ``small`` preset.

Reconstructs, with the simulation's known shifts applied:

* interior-only (the ROI scan alone),
* sparse-only (the full-view scan alone),
* combined (both, one least-squares problem),
* a full-data reference: the same cell scanned with the interior optics and dose at
  every interior angle but an untruncated detector;

with the defaults (quadrature scan weights, no PSF deconvolution) and, for the
combined problem and the reference, the variants (equal weights, PSF modelled).

and prints a markdown table of PSNR inside the ROI (the paper's cylinder), near the
ROI edge (outer 30% of its radius) and over the cell, for a fixed number of CGNE
iterations and for the oracle stopping rule (best PSNR in the ROI). PSNR as everywhere
(:mod:`sxtdist.scoring`): the peak is the 99th percentile of the truth inside the cell.

Usage: ``python examples/accuracy_small.py [--out DIR] [--seed 1] [--iterations 30]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

import sxtdist
from sxtdist import metrics, scoring
from sxtdist.distributed import get_client
from sxtdist.runner import reconstruct


def apply_known_shifts(acq) -> None:
    for name in acq.scans:
        acq.set_shifts(
            name, np.asarray(acq.truth_meta["shifts_px"][name]), method="known (simulated)"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="keep outputs here (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="sxtdist_accuracy_")
    os.makedirs(out, exist_ok=True)
    try:
        acq_path = os.path.join(out, "small.zarr")
        ref_path = os.path.join(out, "reference.zarr")
        acq = sxtdist.simulate(acq_path, "small", args.seed, overwrite=True)
        fov_um = acq["full"].geometry.detector_shape[1] * acq["full"].pixel_size_nm / 1e3
        ref = sxtdist.simulate(ref_path, "small", args.seed, roi_width_um=fov_um, overwrite=True)
        apply_known_shifts(acq)
        apply_known_shifts(ref)
        truth = acq.truth.compute()
        assert np.array_equal(truth, ref.truth.compute()), "reference must image the same cell"
        regions = scoring.Regions.of(acq)
        d = regions.roi_diameter_px
        edge = metrics.cylinder_mask(truth.shape, d) & ~metrics.cylinder_mask(truth.shape, 0.7 * d)
        runs = {
            "interior-only": (acq_path, ["roi"], {}),
            "sparse-only": (acq_path, ["full"], {}),
            "combined": (acq_path, ["full", "roi"], {}),
            "combined, equal weights": (acq_path, ["full", "roi"], {"weights": "equal"}),
            "combined, PSF modelled": (acq_path, ["full", "roi"], {"psf": True}),
            "full-data reference": (ref_path, ["roi"], {}),
            "full-data reference, PSF": (ref_path, ["roi"], {"psf": True}),
        }
        # the oracle scores in the interior scan's ROI for every run, the full-width
        # reference included (scored over its whole field it stops elsewhere)
        roi_nm = d / 2 * regions.voxel_size_nm
        rows = []
        with get_client(workers=args.workers) as client:
            for stop in (f"{args.iterations} it.", "oracle"):
                for name, (path, scans, extra) in runs.items():
                    oracle = stop == "oracle"
                    vol = reconstruct(
                        path,
                        os.path.join(out, f"{name.replace(' ', '_')}_{oracle}.zarr"),
                        scans=scans,
                        iterations=300 if oracle else args.iterations,
                        oracle=oracle,
                        oracle_radius_nm=roi_nm,
                        client=client,
                        overwrite=True,
                        progress=False,
                        **extra,
                    )
                    x = vol.level(0).compute()
                    s = scoring.score(x, truth, regions)
                    edge_db = metrics.psnr(x, truth, edge, s.peak)
                    rows.append((stop, name, s.psnr_roi, edge_db, s.psnr_cell))
        print(f"small preset, seed {args.seed}; PSNR in dB, {scoring.PSNR_NOTE}\n")
        print("| stopping | reconstruction | ROI | ROI edge | cell |")
        print("|---|---|---:|---:|---:|")
        for stop, name, *vals in rows:
            print(f"| {stop} | {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
