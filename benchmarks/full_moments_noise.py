"""Noise of the full scan's weighted moments (``dx`` and the rotation axis), by Monte Carlo.

For each seed and number of full views: simulate the ``small`` preset's full scan
noise-free with random shifts (σ = 3 px), then draw Poisson noise at the paper's
dose (or ``--photons``) many times and estimate ``dy`` (row profiles) and ``dx``
(weighted centroids) from each draw, as ``sxtdist align`` does. Two slice weights
are compared on the same draws: the current one (the slices' mass less its mean,
tapered over :data:`sxtdist.alignment.fullscan.SLICE_WEIGHT_RAMP_ROWS` rows at each end)
and the one used before (the same under a ``cos²`` taper over the whole axis,
which is the current function with the ramp over half the axis).

Printed per case and weight: RMS of the rotation-axis error over the draws, the
per-view scatter about each draw's common offset, the ``dx`` RMS (axis kept,
rigid translation removed) and the median noise each view reports
(``weighted_centroid_noise_px``), all in full-scan pixels.

Run: ``PYTHONPATH=. python benchmarks/full_moments_noise.py [--seeds 1 2 3 4] [--full 9 19]
[--draws 12] [--photons N]``
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np


def study(seed: int, n_full: int, draws: int, photons: float | None, workdir: str) -> dict:
    import sxtdist
    import sxtdist.alignment.fullscan as al
    from sxtdist.alignment.gauge import remove_gauge
    from sxtdist.simulation.presets import get_preset

    acq = sxtdist.simulate(
        f"{workdir}/m_{seed}_{n_full}.zarr", preset="small", seed=seed, n_full=n_full,
        photons=0, shifts_px={"full": 3.0, "roi": 0.0},
    )  # fmt: skip
    full = acq["full"]
    clean = np.asarray(full.read(), np.float64)
    truth = np.asarray(acq.truth_meta["shifts_px"]["full"])
    angles = full.geometry.angles_deg
    i0 = photons or get_preset("small").full.photons_per_pixel
    rows = clean.shape[1]
    dy_search, margin = max(2, rows // 6), max(2, rows // 16)  # as align_full_scan
    current = al.SLICE_WEIGHT_RAMP_ROWS
    weights = {"cos² taper (before)": rows, "current": current}
    out = {name: {"axis": [], "dx": [], "sigma": []} for name in weights}
    rng = np.random.default_rng(1000 + seed)
    try:
        for _ in range(draws):
            views = -np.log(np.maximum(rng.poisson(i0 * np.exp(-clean)), 1) / i0)
            dy = al.row_profile_dy(views.astype(np.float32), dy_search)
            for name, ramp in weights.items():
                al.SLICE_WEIGHT_RAMP_ROWS = ramp
                dx, _ = al.weighted_centroid_dx(views, full.geometry, dy, margin)
                err = remove_gauge(np.stack([dy, dx], axis=1) - truth, angles)[:, 1]
                out[name]["axis"].append(err.mean())
                out[name]["dx"].append(err)
                out[name]["sigma"].append(
                    np.median(al.weighted_centroid_noise_px(views, dy, margin))
                )
    finally:
        al.SLICE_WEIGHT_RAMP_ROWS = current
    summary = {}
    for name, r in out.items():
        dx = np.array(r["dx"])
        summary[name] = {
            "axis_rms": float(np.sqrt(np.mean(np.square(r["axis"])))),
            "per_view_sd": float((dx - dx.mean(axis=1, keepdims=True)).std(axis=0).mean()),
            "dx_rms": float(np.sqrt(np.mean(dx**2))),
            "sigma_median": float(np.median(r["sigma"])),
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--full", type=int, nargs="+", default=[9, 19])
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--photons", type=float, default=None, help="per full pixel (default: paper)")
    args = ap.parse_args()
    print(
        "| full views | seed | weights | axis RMS [px] | per-view sd [px] | dx RMS [px] "
        "| reported noise [px] |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n_full in args.full:
            for seed in args.seeds:
                for name, s in study(seed, n_full, args.draws, args.photons, tmp).items():
                    print(
                        f"| {n_full} | {seed} | {name} | {s['axis_rms']:.3f} | "
                        f"{s['per_view_sd']:.3f} | {s['dx_rms']:.3f} | {s['sigma_median']:.3f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
