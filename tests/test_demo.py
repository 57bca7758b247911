"""``sxtdist demo`` end to end on the tiny preset."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import sxtdist
from sxtdist.batch import cell_metrics
from sxtdist.report import make_report
from sxtdist.volume import open_volume


def test_demo_tiny(tmp_path, run_cli):
    out = tmp_path / "demo"
    code, stdout, err = run_cli("demo", "--out", out, "--preset", "tiny", "--workers", "1")
    assert code == 0, err
    for name in ("tiny.zarr", "interior-only.zarr", "combined.zarr"):
        assert os.path.isdir(out / name)
    assert "PSNR in ROI" in stdout
    # the paper's point: the sparse full views pin the interior problem's null space
    # (offset, cupping), so over the whole cell the combined volume is far better
    psnr = {
        m[1]: (float(m[2]), float(m[3]))
        for m in re.finditer(r"^\s+(\S+)\s+([\d.]+)dB\s+([\d.]+)dB", stdout, re.M)
    }
    assert set(psnr) == {"interior-only", "combined"}, stdout
    assert psnr["combined"][1] > psnr["interior-only"][1] + 3.0, psnr
    assert psnr["combined"][0] > psnr["interior-only"][0], psnr
    assert "PSNR in ROI" in stdout and "combined" in stdout and "inside the cell" in stdout
    code, _, err = run_cli("demo", "--out", out, "--preset", "tiny", "--workers", "1")
    assert code == 2 and "earlier demo" in err
    # one volume, one PSNR: the demo's, the report's and the batch summary's agree, and
    # equal a computation by hand (ROI: the interior detector's disc; peak: the 99th
    # percentile of the truth in the cell, above the ice-cytoplasm midpoint in the lumen)
    line = next(s for s in stdout.splitlines() if s.strip().startswith("combined"))
    demo_roi, demo_cell = (float(w.removesuffix("dB")) for w in line.split()[1:3])
    rep = make_report(out / "combined.zarr", truth=out / "tiny.zarr")
    summary = cell_metrics(str(out / "tiny.zarr"), str(out / "combined.zarr"))
    acq = sxtdist.open_acquisition(out / "tiny.zarr", "r")
    t = np.asarray(acq.truth, np.float64)
    x = np.asarray(open_volume(out / "combined.zarr").level(0), np.float64)
    v, g = acq.truth_meta["voxel_size_nm"], acq["roi"].geometry
    r = np.hypot(*np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in t.shape[1:]), indexing="ij"))
    cell = (t > (0.109 + 0.20) / 2) & (r < acq.truth_meta["phantom"]["ice_radius_nm"] / v - 1)
    peak = np.percentile(t[cell], 99)
    by_hand = 10 * np.log10(peak**2 / np.mean((x - t)[:, r < g.detector_shape[1] / 2] ** 2))
    for value in (rep.value("psnr_roi"), summary["psnr_roi_db"]):
        assert value == pytest.approx(by_hand, abs=1e-6)
    assert demo_roi == pytest.approx(by_hand, abs=0.006)  # printed with 2 decimals
    cell_by_hand = 10 * np.log10(peak**2 / np.mean((x - t)[cell] ** 2))
    assert rep.value("psnr_cell") == pytest.approx(summary["psnr_cell_db"], abs=1e-9)
    assert demo_cell == pytest.approx(cell_by_hand, abs=0.006)


def test_demo_leaves_its_cpu_workers_out_of_a_gpu_reconstruction(tmp_path, monkeypatch):
    """The demo's local workers (for the alignment) offer no GPU resource: the
    reconstructions get the execution without a client, so that with a usable GPU
    they start a dask-cuda cluster (tests/test_reconstruct.py checks that choice)."""
    import sxtdist.demo as demo
    from sxtdist.runner import reconstruct

    calls = []

    def recording_reconstruct(*args, execution=None, **kwargs):
        calls.append(execution)
        return reconstruct(*args, execution=execution.replace(backend="cpu"), **kwargs)

    monkeypatch.setattr(demo, "reconstruct", recording_reconstruct)
    demo.run_demo(tmp_path / "demo", preset="tiny", workers=1, iterations=2)
    assert len(calls) == 2
    assert all(ex.client is None and ex.workers == 1 for ex in calls)
