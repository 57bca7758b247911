"""How much of the interior alignment's error is the pairs' rotation bias, and can it be predicted.

Two views at different angles differ by the object's rotation as well as by their
shifts, so every registered pair carries a bias that depends only on the object
(docs/dev/alignment-history.md, "Reading it honestly"). For one simulated ``small``
acquisition (σ = 3 px shifts, the paper's dose) this prints the interior and
full-scan errors of the joint solve (:func:`sxtdist.alignment.shifts.solve_joint`, the
pipeline's own):

* as the pipeline has them;
* with each pair's **true bias** taken out: the same pairs registered on a
  noise-free, shift-free twin of the acquisition (same phantom and optics), whose
  peaks are pure bias. This is the bound a perfect bias model would reach;
* with the bias **predicted from a reconstruction**: the combined reconstruction
  (CGNE, ``--iterations``, from the pipeline's shifts or, with ``--true-shifts``,
  from the true ones) projected without shifts by sxtdist's own operators, PSF
  included, and its pairs registered the same way. ``--truth-outside`` puts the
  truth in place of the reconstruction outside the interior cylinder, to see which
  part of the reconstruction the prediction fails on.

Each at the full scan's prior weight times 1 and 0.3 (with the bias gone, the
chain deserves more trust than the full scan's moments).

Run: ``PYTHONPATH=. python benchmarks/align_pair_bias.py [--full 9] [--seed 1]
[--iterations 20] [--true-shifts] [--truth-outside]``
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np

PRIOR_SCALES = (1.0, 0.3)


def project_volume(volume_zyx: np.ndarray, model, grid, reach: int = 24) -> np.ndarray:
    """Optical depth ``(angles, rows, cols)`` of a volume seen by one scan's model.

    The volume is continued past its ends by its end slices (ice and capillary go on
    above and below the field), so rows that see past the grid are modelled too.
    """
    from sxtdist.operators.scan import scan_operator

    slab = (-reach, grid.nz + reach)
    rows = model.rows_for_slab(grid, slab)
    op = scan_operator(model, grid, slab, rows)
    v = np.pad(volume_zyx, ((reach, reach), (0, 0), (0, 0)), mode="edge").transpose(1, 2, 0)
    g = model.geometry
    out = np.zeros((g.n_angles, *g.detector_shape), np.float32)
    out[:, rows, :] = np.asarray(op(np.ascontiguousarray(v, np.float32))).transpose(0, 2, 1)
    return out


def twin_from_volume(acq, volume_zyx: np.ndarray, path: str):
    """A shift-free, noise-free acquisition of ``volume_zyx`` with ``acq``'s scans."""
    from sxtdist.dataset import ScanData, create_acquisition
    from sxtdist.runner import build_problem

    problem = build_problem(acq, psf=True)
    scans = {}
    for name, model in problem.models.items():
        unshifted = replace(model, geometry=model.geometry.with_shifts(None))
        scan = acq[name]
        scans[name] = ScanData(
            data=project_volume(volume_zyx, unshifted, problem.grid),
            angles_deg=scan.geometry.angles_deg,
            pixel_size_nm=scan.pixel_size_nm,
            zone_plate_ozw_nm=scan.zone_plate_ozw_nm,
            roi_center_px=tuple(scan.geometry.center_offset_px),
        )
    return create_acquisition(path, scans)


def _key(r) -> tuple:
    return (r.pair.kind, r.pair.i, r.pair.j, r.pair.mirrored)


def without_bias(pairs, bias_pairs) -> tuple[list, dict]:
    """``pairs`` with the peaks of the same pairs in ``bias_pairs`` subtracted."""
    bias = {_key(r): np.asarray(r.shift, float) for r in bias_pairs}
    return [
        replace(r, shift=np.asarray(r.shift) - bias[_key(r)]) for r in pairs if _key(r) in bias
    ], bias


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", type=int, default=9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=20, help="CGNE iterations of the prediction")
    ap.add_argument("--true-shifts", action="store_true", help="predict from the true shifts")
    ap.add_argument(
        "--truth-outside", action="store_true", help="the truth outside the ROI cylinder"
    )
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    import sxtdist
    from sxtdist.alignment.gauge import remove_gauge, rms
    from sxtdist.alignment.shifts import full_prior_weights, solve_joint
    from sxtdist.scoring import Regions

    with (
        LocalCluster(n_workers=1, processes=False, threads_per_worker=2) as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        common = dict(preset="small", seed=args.seed, n_full=args.full)
        acq = sxtdist.simulate(f"{tmp}/a.zarr", shifts_px=3.0, **common)
        clean = sxtdist.simulate(f"{tmp}/clean.zarr", shifts_px=0.0, photons=0, **common)
        truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
        opts = dict(report="", dry_run=True, progress=False, client=client)
        # joint=False: the full scan's moments alone, and the pairs registered against them
        # (the same registrations the pipeline's joint solve uses)
        moments = sxtdist.align(acq, joint=False, **opts)
        g_roi, g_full = acq["roi"].geometry, acq["full"].geometry
        scale = g_full.pixel_size_nm / g_roi.pixel_size_nm
        prior = full_prior_weights(moments.info["full"], g_full.n_angles)

        def errors(pairs, prior_scale: float) -> str:
            d, delta, _ = solve_joint(
                scale,
                pairs,
                g_roi.angles_deg,
                g_full.angles_deg,
                prior_weight=prior * prior_scale,
            )
            er = remove_gauge(d - truth["roi"], g_roi.angles_deg)
            ef = remove_gauge(moments.shifts["full"] + delta - truth["full"], g_full.angles_deg)
            return f"interior {rms(er):.3f} px, full {rms(ef):.3f} px"

        def show(label: str, pairs) -> None:
            for s in PRIOR_SCALES:
                print(f"  {label:28s} prior x{s:<4g} {errors(pairs, s)}")

        print(f"small, {args.full} full views, seed {args.seed}, paper dose, σ = 3 px")
        show("as measured", moments.pairs)
        oracle, true_bias = without_bias(
            moments.pairs, sxtdist.align(clean, joint=False, **opts).pairs
        )
        show("true bias removed", oracle)

        sxtdist.align(acq, report="", progress=False, client=client)
        if args.true_shifts:
            for name in ("full", "roi"):
                acq.set_shifts(name, truth[name], method="truth")
        volume = sxtdist.reconstruct(
            acq,
            f"{tmp}/rec.zarr",
            iterations=args.iterations,
            client=client,
            progress=False,
        )
        model = np.asarray(volume.level(0))
        if args.truth_outside:
            roi = Regions.of(acq).roi(model.shape[1:])
            model = np.where(roi[None], model, np.asarray(acq.truth))
        twin = twin_from_volume(acq, model.astype(np.float32), f"{tmp}/twin.zarr")
        predicted, pred_bias = without_bias(
            moments.pairs, sxtdist.align(twin, joint=False, **opts).pairs
        )
        source = "true" if args.true_shifts else "estimated"
        outside = ", the truth outside the ROI" if args.truth_outside else ""
        print(f"  prediction: {args.iterations} CGNE iterations from the {source} shifts{outside}")
        for kind in ("neighbour", "anchor"):
            keys = [k for k in true_bias if k[0] == kind and k in pred_bias]
            t = np.array([true_bias[k][1] for k in keys])
            p = np.array([pred_bias[k][1] for k in keys])
            print(
                f"    {kind} dx bias: true std {t.std():.3f} px; predicted: correlation "
                f"{np.corrcoef(t, p)[0, 1]:+.2f}, error std {(t - p).std():.3f} px"
            )
        show("predicted bias removed", predicted)


if __name__ == "__main__":
    main()
