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
ROI edge (outer 30% of its radius) and over the whole cell, for a fixed number of
CGNE iterations and for the oracle stopping rule (best PSNR in the ROI).

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
from sxtdist.distributed import get_client
from sxtdist.metrics import psnr_in_region
from sxtdist.recon import roi_cylinder_mask
from sxtdist.runner import build_problem, reconstruct


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
        grid = build_problem(acq).grid
        g = acq["roi"].geometry
        radius = g.detector_shape[1] / 2 * g.pixel_size_nm
        masks = {
            "ROI": np.broadcast_to(roi_cylinder_mask(grid, 0.95 * radius), truth.shape),
            "ROI edge": np.broadcast_to(
                roi_cylinder_mask(grid, 0.95 * radius) & ~roi_cylinder_mask(grid, 0.65 * radius),
                truth.shape,
            ),
            "cell": truth > 0.5 * float(np.median(truth[truth > 0])),
        }
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
        roi_nm = (g.detector_shape[1] / 2 - abs(g.center_offset_px[1])) * g.pixel_size_nm
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
                    rows.append(
                        (stop, name, *(psnr_in_region(x, truth, m) for m in masks.values()))
                    )
        print(f"small preset, seed {args.seed}; PSNR in dB (peak = truth's range in the region)\n")
        print("| stopping | reconstruction | " + " | ".join(masks) + " |")
        print("|---|---|" + "---:|" * len(masks))
        for stop, name, *vals in rows:
            print(f"| {stop} | {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
