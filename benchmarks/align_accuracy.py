"""Alignment accuracy on simulated data with known shifts (the table in docs/alignment.md).

For each noise level and number of full views: simulate the ``small`` preset
(paper-like) with random shifts of standard deviation 3 px on both scans, align,
and compare with the truth after removing what no alignment can determine (a
rigid translation of the object: ``dy`` constant, ``dx = a cos + b sin``).

Columns: full-scan RMS error (its pixels); interior RMS error when its anchors
are the truly aligned full views (the interior registration on its own); interior
RMS error end to end (anchored to the estimated full shifts); rotation-axis error.
RMS is of the error vector length, px.

Run: ``PYTHONPATH=. python benchmarks/align_accuracy.py [--photons 3000 500] [--full 9 19]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np


def study(photons: float, n_full: int, seed: int, sigma: float, client, workdir: str) -> dict:
    import sxtdist
    from sxtdist.align import remove_gauge, rms, sinusoid_basis

    path = f"{workdir}/acq_{photons:g}_{n_full}_{seed}.zarr"
    acq = sxtdist.simulate(
        path, preset="small", seed=seed, n_full=n_full, photons=photons, shifts_px=sigma, quiet=True
    )
    truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
    t0 = time.perf_counter()
    res = sxtdist.align(acq, client=client, report="", quiet=True, dry_run=True, progress=False)
    seconds = time.perf_counter() - t0
    out = {"photons": photons, "n_full": n_full, "seed": seed, "seconds": seconds}
    for name in ("full", "roi"):
        e = remove_gauge(res.shifts[name] - truth[name], acq[name].geometry.angles_deg)
        out[f"{name}_rms"] = rms(e)
    basis = sinusoid_basis(acq["full"].geometry.angles_deg)
    err_full = res.shifts["full"][:, 1] - truth["full"][:, 1]
    out["axis_err"] = float(np.linalg.lstsq(basis, err_full, rcond=None)[0][0])
    # the interior registration alone: anchors are the truly aligned full views
    acq = sxtdist.open_acquisition(path)
    acq.set_shifts("full", truth["full"], method="truth")
    res = sxtdist.align(
        acq, scans=["roi"], client=client, report="", quiet=True, dry_run=True, progress=False
    )
    e = remove_gauge(res.shifts["roi"] - truth["roi"], acq["roi"].geometry.angles_deg)
    out["roi_true_anchor_rms"] = rms(e)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photons", type=float, nargs="+", default=[3000.0, 500.0])
    ap.add_argument("--full", type=int, nargs="+", default=[9, 19])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--sigma", type=float, default=3.0)
    args = ap.parse_args()
    from distributed import Client

    workdir = tempfile.mkdtemp(prefix="sxtdist-align-acc-")
    rows = []
    try:
        with Client(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
        ) as client:
            for photons in args.photons:
                for n_full in args.full:
                    for seed in args.seeds:
                        r = study(photons, n_full, seed, args.sigma, client, workdir)
                        rows.append(r)
                        print(r, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        "| photons/px | full views | seed | full RMS [px] | interior RMS, true anchors [px] "
        "| interior RMS, end to end [px] | axis error [px] | time [s] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['photons']:g} | {r['n_full']} | {r['seed']} | {r['full_rms']:.3f} | "
            f"{r['roi_true_anchor_rms']:.3f} | {r['roi_rms']:.3f} | {r['axis_err']:+.3f} | "
            f"{r['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
