"""``sxtdist report``: PNG and CSVs from a volume, with and without a truth."""

import csv
import os

import numpy as np
import pytest

from sxtdist.dataset import open_acquisition
from sxtdist.geometry import VolumeGrid, default_grid
from sxtdist.report import make_report
from sxtdist.volume import create_volume


def _volume(path, data, voxel):
    vol = create_volume(path, VolumeGrid(data.shape, voxel), 8, 8)
    vol.write_slices(0, data)
    vol.finalize()
    return str(path)


@pytest.fixture(scope="module")
def noisy(tiny_acq, tmp_path_factory):
    acq = open_acquisition(tiny_acq, "r")
    grid = default_grid([s.geometry for s in acq.scans.values()])
    truth = np.asarray(acq.truth)
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("rep")
    a = _volume(d / "a.zarr", truth + 0.05 * rng.standard_normal(truth.shape), grid.voxel_size_nm)
    b = _volume(d / "b.zarr", truth + 0.05 * rng.standard_normal(truth.shape), grid.voxel_size_nm)
    return a, b, truth


def test_report_against_truth(noisy, tiny_acq, tmp_path, run_cli):
    a, _, truth = noisy
    out = tmp_path / "r"
    code, text, err = run_cli("report", a, "--truth", tiny_acq, "--out", out)
    assert code == 0, err
    assert (tmp_path / "r.png").stat().st_size > 10_000
    rows = {r["metric"]: r for r in csv.DictReader(open(tmp_path / "r.csv"))}
    # the peak is the cell's 99th percentile (0.2-0.6 1/um), not the whole truth's
    peak = float(rows["psnr_peak"]["value"])
    assert 0.25 < peak < 0.65
    expected = 10 * np.log10(peak**2 / 0.05**2)
    for name in ("psnr_roi", "psnr_cell"):
        assert float(rows[name]["value"]) == pytest.approx(expected, abs=0.2)
        assert "inside the cell" in rows[name]["note"]
    assert "inside the cell" in text
    # white noise is not a blur: the transfer function stays at 1, no MTF-50
    assert rows["resolution_mtf50"]["value"] == "not crossed"
    assert "resolution_fsc_one_seventh" in rows
    curves = list(csv.DictReader(open(tmp_path / "r.curves.csv")))
    assert {c["curve"] for c in curves} >= {
        "fsc",
        "half_bit",
        "one_seventh",
        "transfer",
        "radial_psnr",
    }
    # refuses to overwrite, then does with --overwrite
    code, _, err = run_cli("report", a, "--truth", tiny_acq, "--out", out)
    assert code == 2 and "already exists" in err
    assert run_cli("report", a, "--truth", tiny_acq, "--out", out, "--overwrite")[0] == 0


def test_split_half_report_next_to_the_volume(noisy):
    a, b, _ = noisy
    rep = make_report(a, half=b, roi_width_um=2.8)
    assert rep.png == a + ".report.png"
    res = rep.value("resolution_split_half_half_bit")
    # independent noise of equal power to the signal's fine detail: a finite resolution
    assert isinstance(res, float) and res >= 200.0


def test_report_bad_inputs(noisy, tiny_acq, tmp_path, run_cli):
    a, _, truth = noisy
    other = _volume(tmp_path / "c.zarr", truth[:, :32, :32].copy(), 100.0)
    code, _, err = run_cli("report", other, "--truth", tiny_acq, "--out", tmp_path / "x")
    assert code == 2 and "differs from the truth" in err and err.count("\n") == 1
    code, _, err = run_cli("report", tiny_acq)
    assert code == 2 and "not a reconstructed volume" in err
    code, _, err = run_cli("report", a, "--truth", a, "--out", tmp_path / "y")
    assert code == 2
    assert not (tmp_path / "x.png").exists()


def test_a_failed_csv_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    """The report's CSVs are written beside and renamed (outputs.replacing_file): a write
    that fails midway (a full disk) leaves the earlier file whole and nothing else."""
    import errno

    from sxtdist.report import METRICS_HEADER, _write_csv

    path = tmp_path / "r.csv"
    _write_csv(str(path), METRICS_HEADER, [["psnr", 30.0, "dB", ""]])
    before = path.read_bytes()

    class DiskFull:
        def __str__(self) -> str:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        _write_csv(str(path), METRICS_HEADER, [["a", 1.0, "", ""], [DiskFull(), 2.0, "", ""]])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.csv"]
