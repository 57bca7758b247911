"""Alignment accuracy on simulated data with known shifts (the table in docs/dev/alignment-history.md).

For each noise level and number of full views: simulate the ``small`` preset
(paper-like) with random shifts of standard deviation 3 px on both scans, align,
and compare with the truth after removing what no alignment can determine: the
object's position, one rigid translation for both scans (``dy`` constant,
``dx = a cos + b sin``), fitted to the errors by least squares
(:func:`sxtdist.alignment.gauge.shift_errors`).

Columns: full-scan and interior RMS error so measured (each in its own pixels);
the interior's when its anchors are the truly aligned full views (the interior
registration on its own); the interior's as earlier versions of this table gave
it (:func:`sxtdist.alignment.gauge.remove_gauge`: each scan on its own, with a
constant ``dx`` fitted beside the sinusoid and kept as the axis error); the
rotation-axis error of the full scan (constant of a ``[1, cos, sin]`` fit, its
pixels). RMS is of the error vector length, px. With ``--psnr N``: the ROI PSNR
of the combined reconstruction (N CGNE iterations) from the true and from the
estimated shifts.

Run: ``PYTHONPATH=. python benchmarks/align_accuracy.py [--photons paper 3000 paperx100]
[--full 9 19] [--seeds 1 2 3] [--sigma 3] [--arc 360] [--psnr 20]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable

import numpy as np


def parse_photons(spec: str) -> float | dict | None:
    """``"paper"`` (the preset's own doses), ``"paperxK"`` (K times them) or a number (both scans)."""
    if spec == "paper":
        return None
    if spec.startswith("paperx"):
        from sxtdist.simulation.presets import get_preset

        k, preset = float(spec[len("paperx") :]), get_preset("small")
        return {
            "full": k * preset.full.photons_per_pixel,
            "roi": k * preset.roi.photons_per_pixel,
        }
    return float(spec)


def label(photons: float | dict | None) -> str:
    if photons is None:
        return "paper"
    if isinstance(photons, dict):
        from sxtdist.simulation.presets import get_preset

        return f"paper x{photons['full'] / get_preset('small').full.photons_per_pixel:g}"
    return format(photons, "g")


def study(
    photons: float | dict | None,
    n_full: int,
    seed: int,
    sigma: float,
    client,
    workdir: str,
    psnr_iterations: int = 0,
    arc_deg: float | None = None,
) -> dict:
    import sxtdist
    from sxtdist.alignment.gauge import remove_gauge, rms, shift_errors, sinusoid_basis

    path = f"{workdir}/acq_{label(photons).replace(' ', '')}_{n_full}_{seed}_{sigma:g}.zarr"
    acq = sxtdist.simulate(
        path,
        preset="small",
        seed=seed,
        n_full=n_full,
        photons=photons,
        shifts_px=sigma,
        arc_deg=arc_deg,
    )
    truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
    t0 = time.perf_counter()
    res = sxtdist.align(acq, client=client, report="", dry_run=True, progress=False)
    seconds = time.perf_counter() - t0
    estimated = {k: v.copy() for k, v in res.shifts.items()}
    out = {"photons": photons, "n_full": n_full, "seed": seed, "seconds": seconds}
    geoms = {name: acq[name].geometry for name in ("full", "roi")}
    out.update({f"{name}_rms": value for name, value in res.errors(acq).items()})
    e = remove_gauge(res.shifts["roi"] - truth["roi"], geoms["roi"].angles_deg)
    out["roi_rms_per_scan"] = rms(e)
    basis = sinusoid_basis(geoms["full"].angles_deg)
    err_full = res.shifts["full"][:, 1] - truth["full"][:, 1]
    out["axis_err"] = float(np.linalg.lstsq(basis, err_full, rcond=None)[0][0])
    # the interior registration alone: anchors are the truly aligned full views
    acq = sxtdist.open_acquisition(path)
    acq.set_shifts("full", truth["full"], method="truth")
    res = sxtdist.align(acq, scans=["roi"], client=client, report="", dry_run=True, progress=False)
    both = {"full": truth["full"], "roi": res.shifts["roi"]}  # the full scan's error is 0
    out["roi_true_anchor_rms"] = rms(shift_errors(both, truth, geoms)["roi"])
    if psnr_iterations:
        out.update(psnr_true_vs_estimated(path, estimated, client, workdir, psnr_iterations))
    return out


def psnr_true_vs_estimated(path: str, estimated: dict, client, workdir: str, iterations: int):
    """ROI PSNR of the combined reconstruction from the true and from the estimated shifts.

    Both are free of a rigid translation (the simulator removes it from the truth, the
    alignment from its estimate), so both reconstructions are compared with the truth
    volume as they are.
    """
    import sxtdist
    from sxtdist.scoring import Regions, score

    acq = sxtdist.open_acquisition(path)
    regions = Regions.of(acq)
    out = {}
    for label, shifts in (("true", acq.truth_meta["shifts_px"]), ("estimated", estimated)):
        for name in ("full", "roi"):
            acq.set_shifts(name, np.asarray(shifts[name]), method=label)
        vol = sxtdist.reconstruct(
            path,
            f"{workdir}/vol.zarr",
            iterations=iterations,
            client=client,
            overwrite=True,
            progress=False,
        )
        out[f"psnr_{label}"] = score(vol.level(0), acq.truth, regions).psnr_roi
    return out


def run_studies(prefix: str, cases: Iterable[tuple], study_fn: Callable[..., dict]) -> list[dict]:
    """``study_fn(*case, client, workdir)`` for each case, on a one-worker in-process Dask
    cluster and in a scratch folder removed afterwards; prints each row as it comes."""
    from distributed import Client

    workdir = tempfile.mkdtemp(prefix=prefix)
    rows = []
    try:
        with Client(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
        ) as client:
            for case in cases:
                rows.append(study_fn(*case, client, workdir))
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--photons",
        nargs="+",
        default=["paper", "3000"],
        help="photons per pixel and view on both scans, 'paper': the preset's own doses "
        "(the paper's fluence: 36 000 full, 90 000 interior per pixel), or 'paperxK': K times",
    )
    ap.add_argument("--full", type=int, nargs="+", default=[9, 19])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--sigma", type=float, default=3.0)
    ap.add_argument(
        "--arc",
        type=float,
        default=None,
        metavar="DEG",
        help="both scans over this arc (360: full rotation; default the preset's 180)",
    )
    ap.add_argument(
        "--psnr",
        type=int,
        default=0,
        metavar="ITERATIONS",
        help="also reconstruct from the true and the estimated shifts (CGNE iterations)",
    )
    args = ap.parse_args()
    cases = [
        (photons, n_full, seed)
        for photons in [parse_photons(p) for p in args.photons]
        for n_full in args.full
        for seed in args.seeds
    ]

    def one(photons, n_full, seed, client, workdir):
        return study(photons, n_full, seed, args.sigma, client, workdir, args.psnr, args.arc)

    rows = run_studies("sxtdist-align-acc-", cases, one)
    print()
    psnr = bool(args.psnr)
    print(
        "| photons/px | full views | seed | full RMS [px] | interior RMS [px] "
        "| interior RMS, true anchors [px] | interior RMS, per scan, axis kept [px] "
        "| full axis error [px] "
        + ("| PSNR true shifts [dB] | PSNR estimated [dB] | difference [dB] " if psnr else "")
        + "| time [s] |"
    )
    print("|---" * (8 + 3 * psnr + 1) + "|")
    for r in rows:
        extra = (
            f"{r['psnr_true']:.2f} | {r['psnr_estimated']:.2f} | "
            f"{r['psnr_estimated'] - r['psnr_true']:+.2f} | "
            if psnr
            else ""
        )
        print(
            f"| {label(r['photons'])} | {r['n_full']} | {r['seed']} | {r['full_rms']:.3f} | "
            f"{r['roi_rms']:.3f} | {r['roi_true_anchor_rms']:.3f} | {r['roi_rms_per_scan']:.3f} | "
            f"{r['axis_err']:+.3f} | {extra}{r['seconds']:.1f} |"
        )
    summarise(rows)


def summarise(rows: list[dict]) -> None:
    """Per noise level and number of full views: the RMS over all seeds' shifts together
    (each seed has as many views), the largest seed's, and how many seeds are within the
    targets (0.1 px interior, 0.2 px full)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((label(r["photons"]), r["n_full"]), []).append(r)
    print()
    print(
        "| photons/px | full views | seeds | interior RMS, all seeds [px] | largest [px] "
        "| seeds <= 0.1 px | full RMS, all seeds [px] | seeds <= 0.2 px |"
    )
    print("|---" * 8 + "|")
    for (lab, n_full), rs in groups.items():
        roi = np.array([r["roi_rms"] for r in rs])
        full = np.array([r["full_rms"] for r in rs])
        print(
            f"| {lab} | {n_full} | {len(rs)} | {np.sqrt(np.mean(roi**2)):.3f} | {roi.max():.3f} | "
            f"{int((roi <= 0.1).sum())}/{len(rs)} | {np.sqrt(np.mean(full**2)):.3f} | "
            f"{int((full <= 0.2).sum())}/{len(rs)} |"
        )


if __name__ == "__main__":
    main()
