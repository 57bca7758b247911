"""The alignment accuracy study (slow): paper-like data at the paper's dose, shifts of 3 px."""

from __future__ import annotations

import numpy as np
import pytest

import sxtdist
from sxtdist.alignment.gauge import remove_gauge, rms, shift_errors
from sxtdist.scoring import Regions, score


def _roi_psnr(acq, path, out, client) -> float:
    # a fixed count: the two reconstructions compared must stop at the same iteration
    vol = sxtdist.reconstruct(
        path, out, iterations=20, client=client, overwrite=True, progress=False
    )
    return score(vol.level(0), acq.truth, Regions.of(acq)).psnr_roi


#: Interior RMS bound (px) per number of full views, after removing the object's one rigid
#: translation (``shift_errors``). Seed 1 measured 0.122 (9 views) and 0.077 px (19);
#: over seeds 1-12 at this dose 0.056-0.122 and 0.052-0.086 px (docs/dev/alignment-history.md). The
#: target, 0.1 px, holds for every seed with 19 views; with 9 it holds for the RMS over
#: the seeds, not for each (the full views' axis noise over 180°).
INTERIOR_BOUND_PX = {9: 0.15, 19: 0.1}


@pytest.mark.slow
@pytest.mark.parametrize("n_full", [9, 19])
def test_alignment_accuracy_small_preset(tmp_path, n_full):
    from distributed import Client

    path = str(tmp_path / "acc.zarr")
    acq = sxtdist.simulate(path, preset="small", seed=1, n_full=n_full, shifts_px=3.0)
    truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
    geoms = {name: acq[name].geometry for name in ("full", "roi")}

    def err(shifts):
        return {name: rms(e) for name, e in shift_errors(shifts, truth, geoms).items()}

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        res = sxtdist.align(acq, client=c, report="", progress=False)
        e = err(res.shifts)
        assert e == res.errors(acq)
        assert e["full"] <= 0.2
        assert e["roi"] <= INTERIOR_BOUND_PX[n_full]
        # per scan with the constant dx kept (the earlier reading), seed 1: 0.182 and 0.093
        per_scan = remove_gauge(res.shifts["roi"] - truth["roi"], geoms["roi"].angles_deg)
        assert rms(per_scan) <= 0.2
        # the reconstruction from the estimated shifts is as good as from the true ones
        estimated = _roi_psnr(acq, path, str(tmp_path / "est.zarr"), c)
        for name in ("full", "roi"):
            acq.set_shifts(name, truth[name], method="truth")
        true = _roi_psnr(acq, path, str(tmp_path / "true.zarr"), c)
        assert estimated >= true - 0.3
        # the interior registration itself: anchors at the truly aligned full views
        res = sxtdist.align(acq, scans=["roi"], client=c, report="", progress=False)
    assert err({"full": truth["full"], "roi": res.shifts["roi"]})["roi"] <= 0.1


@pytest.mark.slow
def test_alignment_survives_a_full_view_pushed_out_of_its_field(tmp_path):
    """Seed 14 with 19 full views draws an 11 px shift for the view at 113.7°, which moves
    the cell partly out of the 64 px field: that view's moments are 1.2 px off. The robust
    joint solve weighs its own estimate down; plain least squares left the interior at
    0.371 px (measured 0.072 with it)."""
    from distributed import Client

    path = str(tmp_path / "acc.zarr")
    acq = sxtdist.simulate(path, preset="small", seed=14, n_full=19, shifts_px=3.0)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        res = sxtdist.align(acq, client=c, report="", progress=False, dry_run=True)
    assert 12 in res.info["full"]["joint_downweighted_views"]
    errors = res.errors(acq)
    assert errors["roi"] <= 0.1
    assert errors["full"] <= 0.1
