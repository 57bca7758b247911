"""Where the interior alignment's error comes from (docs/dev/alignment-history.md, "Reading it honestly").

For one simulated ``small`` acquisition (σ = 3 px shifts, the paper's dose) it aligns
and prints:

* the neighbour pairs' errors (measured shift against the true difference), before
  and after fitting the rotation point of :func:`sxtdist.alignment.shifts.solve_shifts`, their
  lag-1 autocorrelation, and how far they drift when summed along the chain;
* how much of each interior view's final error is its nearest full view's error times
  the pixel ratio (correlation, and what is left).

``--neighbour-weight K`` multiplies the neighbour pairs' weight in the joint solve
(1 = the default), to see whether a stiffer chain would help.

Run: ``PYTHONPATH=. python benchmarks/align_link_errors.py [--full 19] [--seed 1]
[--neighbour-weight 1]``
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np


def link_errors(acq, truth: dict, result) -> None:
    """Neighbour pairs: error of ``-s`` against ``t_i - t_j``, raw and after the rotation point."""
    ang = np.deg2rad(acq["roi"].geometry.angles_deg)
    nb = [r for r in result.pairs if r.pair.kind == "neighbour"]
    e = np.array(
        [-np.asarray(r.shift) - (truth["roi"][r.pair.i] - truth["roi"][r.pair.j]) for r in nb]
    )
    ti = np.array([ang[r.pair.i] for r in nb])
    tj = np.array([ang[r.pair.j] for r in nb])
    basis = np.stack([np.cos(ti) - np.cos(tj), np.sin(ti) - np.sin(tj)], axis=1)
    point, *_ = np.linalg.lstsq(basis, e[:, 1], rcond=None)
    rx = e[:, 1] - basis @ point
    print(f"{len(nb)} neighbour pairs, error [interior px]:")
    print(
        f"  dy: mean {e[:, 0].mean():+.4f}, std {e[:, 0].std():.4f}, summed along the chain up to {np.abs(np.cumsum(e[:, 0])).max():.3f}"
    )
    print(
        f"  dx: mean {e[:, 1].mean():+.4f}, std {e[:, 1].std():.4f}; after the rotation point ({point[0]:+.2f}, {point[1]:+.2f}) px: std {rx.std():.4f}, summed up to {np.abs(np.cumsum(rx)).max():.3f}"
    )
    print(
        f"  lag-1 autocorrelation: dx {np.corrcoef(rx[:-1], rx[1:])[0, 1]:+.2f}, dy {np.corrcoef(e[:-1, 0], e[1:, 0])[0, 1]:+.2f}"
    )


def inherited(acq, truth: dict, result) -> None:
    """How far each interior view's error is its nearest full view's error x the pixel ratio."""
    from sxtdist.alignment.gauge import remove_gauge

    er = remove_gauge(result.shifts["roi"] - truth["roi"], acq["roi"].geometry.angles_deg)
    ef = remove_gauge(result.shifts["full"] - truth["full"], acq["full"].geometry.angles_deg)
    ar, af = acq["roi"].geometry.angles_deg, acq["full"].geometry.angles_deg
    nearest = np.array([np.argmin(np.abs((a - af + 90) % 180 - 90)) for a in ar])
    scale = acq["full"].geometry.pixel_size_nm / acq["roi"].geometry.pixel_size_nm
    pred = scale * ef[nearest]
    for k, name in ((1, "dx"), (0, "dy")):
        c = np.corrcoef(er[:, k], pred[:, k])[0, 1]
        left = np.sqrt(np.mean((er[:, k] - pred[:, k]) ** 2))
        print(
            f"  {name}: interior error RMS {np.sqrt(np.mean(er[:, k] ** 2)):.3f} px; nearest full "
            f"view's x {scale:g}: {np.sqrt(np.mean(pred[:, k] ** 2)):.3f} px, correlation {c:+.2f}, "
            f"difference RMS {left:.3f} px"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", type=int, default=19)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--neighbour-weight", type=float, default=1.0)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    import sxtdist
    import sxtdist.alignment.shifts as alignment

    if args.neighbour_weight != 1.0:
        original = alignment.pair_weights

        def weights(results, roi_angles, anchor_scale_deg=None):
            w = original(results, roi_angles, anchor_scale_deg)
            w[[r.pair.kind == "neighbour" for r in results]] *= args.neighbour_weight
            return w

        alignment.pair_weights = weights
    with (
        LocalCluster(n_workers=1, processes=False, threads_per_worker=2) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        acq = sxtdist.simulate(
            f"{tmp}/a.zarr",
            preset="small",
            seed=args.seed,
            n_full=args.full,
            shifts_px=3.0,
        )
        truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
        result = sxtdist.align(acq, client=client, report="", dry_run=True, progress=False)
        print(
            f"small, {args.full} full views, seed {args.seed}, neighbour weight x{args.neighbour_weight:g}"
        )
        link_errors(acq, truth, result)
        print("final errors, rigid translation removed:")
        inherited(acq, truth, result)


if __name__ == "__main__":
    main()
