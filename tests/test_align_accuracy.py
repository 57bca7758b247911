"""The alignment accuracy study (slow): paper-like data, known shifts of 3 px."""

from __future__ import annotations

import numpy as np
import pytest

import sxtdist
from sxtdist.align import remove_gauge, rms


@pytest.mark.slow
@pytest.mark.parametrize("n_full", [9, 19])
def test_alignment_accuracy_small_preset(tmp_path, n_full):
    from distributed import Client

    path = tmp_path / "acc.zarr"
    acq = sxtdist.simulate(
        path, preset="small", seed=1, n_full=n_full, photons=3000, shifts_px=3.0, quiet=True
    )
    truth = {k: np.asarray(v) for k, v in acq.truth_meta["shifts_px"].items()}
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        res = sxtdist.align(acq, client=c, report="", quiet=True, progress=False)
        full_err = rms(
            remove_gauge(res.shifts["full"] - truth["full"], acq["full"].geometry.angles_deg)
        )
        assert full_err <= 0.2
        # the interior registration itself: anchors at the truly aligned full views
        acq.set_shifts("full", truth["full"], method="truth")
        res = sxtdist.align(acq, scans=["roi"], client=c, report="", quiet=True, progress=False)
    roi_err = rms(remove_gauge(res.shifts["roi"] - truth["roi"], acq["roi"].geometry.angles_deg))
    assert roi_err <= 0.1
