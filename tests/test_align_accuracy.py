"""The alignment accuracy study (slow): paper-like data at the paper's dose, shifts of 3 px."""

from __future__ import annotations

import numpy as np
import pytest

import sxtdist
from sxtdist.alignment import remove_gauge, rms
from sxtdist.metrics import psnr_in_region
from sxtdist.runner import roi_mask


def _roi_psnr(acq, path, out, client) -> float:
    vol = sxtdist.reconstruct(path, out, client=client, overwrite=True, quiet=True, progress=False)
    truth = acq.truth.compute()
    mask = np.broadcast_to(roi_mask(acq), truth.shape)
    return psnr_in_region(vol.level(0).compute(), truth, mask)


@pytest.mark.slow
@pytest.mark.parametrize("n_full", [9, 19])
def test_alignment_accuracy_small_preset(tmp_path, n_full):
    from distributed import Client

    path = str(tmp_path / "acc.zarr")
    acq = sxtdist.simulate(path, preset="small", seed=1, n_full=n_full, shifts_px=3.0, quiet=True)
    truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}

    def err(name, shifts):
        return rms(remove_gauge(shifts - truth[name], acq[name].geometry.angles_deg))

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        res = sxtdist.align(acq, client=c, report="", quiet=True, progress=False)
        assert err("full", res.shifts["full"]) <= 0.2
        # end to end: measured 0.180 (9 views) and 0.094 px (19 views) for this seed; over
        # seeds 1-6 0.064-0.180 px, and a row moves by about +-0.05 px with the noise draw
        # of the full scan's rotation axis (docs/alignment.md), so the bound is loose
        assert err("roi", res.shifts["roi"]) <= 0.2
        # without the constant (dy, dx) common to all views, mostly the axis: 0.102 and 0.073
        e = remove_gauge(res.shifts["roi"] - truth["roi"], acq["roi"].geometry.angles_deg)
        assert rms(e - e.mean(axis=0)) <= 0.12
        # the reconstruction from the estimated shifts is as good as from the true ones
        estimated = _roi_psnr(acq, path, str(tmp_path / "est.zarr"), c)
        for name in ("full", "roi"):
            acq.set_shifts(name, truth[name], method="truth")
        true = _roi_psnr(acq, path, str(tmp_path / "true.zarr"), c)
        assert estimated >= true - 0.3
        # the interior registration itself: anchors at the truly aligned full views
        res = sxtdist.align(acq, scans=["roi"], client=c, report="", quiet=True, progress=False)
    assert err("roi", res.shifts["roi"]) <= 0.1
