"""The capacity planner: nonzeros, bytes, the time model, calibration cache, --dry-run."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from sxtdist import calibration
from sxtdist.blocks import Block, plan_blocks
from sxtdist.capacity import Rates, block_read_bytes, estimate, matrix_nnz, per_slice_rate
from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators.projector import build_system_matrix
from sxtdist.operators.scan import ScanModel
from sxtdist.recon import Problem

RATES = Rates(
    build_s_per_nnz=1e-6,
    iteration_s_per_nnz=1e-8,
    iteration_s_per_nnz_slice=1e-9,
    read_bytes_per_s=1e8,
    write_bytes_per_s=5e7,
    startup_s=3.0,
    gpu_s_per_nnz_slice=1e-11,
    source="test",
)


@pytest.mark.parametrize(
    ("pixel", "cols", "offset", "tolerance"),
    [(30.0, 25, 3.5, 1e-3), (60.0, 32, 0.0, 0.05), (90.0, 23, 0.0, 0.06), (60.0, 46, 0.0, 0.05)],
    ids=["interior", "2x-pixel", "3x-pixel", "wider-than-the-slice"],
)
def test_matrix_nnz_matches_the_built_matrix(pixel, cols, offset, tolerance):
    grid = VolumeGrid((4, 64, 64), 30.0)
    g = ScanGeometry(np.arange(23) * 180 / 23, pixel, (4, cols), (0.0, offset))
    g = g.with_shifts(np.column_stack([np.zeros(23), np.linspace(-2, 2, 23)]))
    for pad in (0, 3):
        built = build_system_matrix(g, grid, pad).nnz
        assert abs(matrix_nnz(g, grid, pad) / built - 1) <= tolerance


def _problem(iterations=5):
    grid = VolumeGrid((40, 32, 32), 30.0)
    models = {
        "roi": ScanModel(ScanGeometry(np.arange(10) * 18.0, 30.0, (40, 12))),
        "full": ScanModel(ScanGeometry(np.arange(5) * 36.0, 60.0, (20, 16))),
    }
    return Problem(grid, models, "cgne", iterations)


def test_a_block_reads_the_bands_its_rows_touch():
    problem = _problem()
    block = Block(0, (10, 20), (10, 20))  # roi rows 10-19; full rows 5-9
    assert block_read_bytes(problem, block) == 10 * 10 * 12 * 4 + 5 * 5 * 16 * 4
    # bands of 8 rows: roi rows 8-23 (16), full rows 0-15 (16 of 20)
    assert block_read_bytes(problem, block, {"roi": 8, "full": 8}) == (
        10 * 16 * 12 * 4 + 5 * 16 * 16 * 4
    )
    # one band as tall as the view: the old layout decodes every view whole
    assert block_read_bytes(problem, block, {"roi": 40, "full": 20}) == (
        10 * 40 * 12 * 4 + 5 * 20 * 16 * 4
    )


def test_the_time_model_by_hand():
    problem = _problem(iterations=5)
    models = list(problem.models.values())
    plan = plan_blocks(models, problem.grid, block_size=10)
    assert plan.n_blocks == 4 and plan.exact
    nnz = {n: matrix_nnz(m.geometry, problem.grid) for n, m in problem.models.items()}
    one = estimate(problem, plan, RATES, workers=1)

    def block_s(b):  # CGNE's 5 + 1 iterations, the read and the write
        slab = b.slab[1] - b.slab[0]
        solve = 6 * sum(nnz.values()) * (1e-8 + 1e-9 * slab)
        return solve + block_read_bytes(problem, b) / 1e8 + 10 * 32 * 32 * 4 / 5e7

    assert one.build_s == pytest.approx(sum(nnz.values()) * 1e-6)
    assert one.block_s == pytest.approx(max(block_s(b) for b in plan.blocks))
    volume = 40 * 32 * 32 * 4
    finalize = volume / 1e8 + volume / 7 / 5e7
    assert one.wall_s == pytest.approx(3.0 + one.build_s + 4 * one.block_s + finalize)
    assert one.bytes_written == int(volume * 8 / 7)
    two = estimate(problem, plan, RATES, workers=2)
    assert two.wall_s == pytest.approx(3.0 + one.build_s + 2 * one.block_s + finalize)
    assert two.worker_hours > one.worker_hours  # each worker builds its matrices
    gpu = estimate(problem, plan, RATES, workers=1, backend="gpu", gpu_peak_bytes=123)
    assert gpu.build_s == 0 and gpu.peak_bytes == 123
    assert gpu.block_s < one.block_s
    text = two.describe()
    assert "4 block(s) of 10 slices" in text and "2 round(s)" in text and "rates: test" in text


def test_the_per_slice_rate_grows_with_the_slice_between_the_calibrations():
    two = dataclasses.replace(
        RATES, iteration_s_per_nnz_slice_large=4e-9, calibration_pixels=(100, 10_000)
    )
    assert per_slice_rate(two, 50) == 1e-9  # below the small calibration: its figure
    assert per_slice_rate(two, 100) == 1e-9
    assert per_slice_rate(two, 1_000) == pytest.approx(2.5e-9)  # halfway in log(pixels)
    assert per_slice_rate(two, 10_000) == 4e-9
    assert per_slice_rate(two, 10**8) == 4e-9  # past the caches: flat
    assert per_slice_rate(RATES, 10**8) == 1e-9  # one calibration size: one figure
    # the estimate uses the rate of the problem's slice (32² = 1024 pixels)
    problem = _problem(iterations=5)
    plan = plan_blocks(list(problem.models.values()), problem.grid, block_size=10)
    nnz = sum(matrix_nnz(m.geometry, problem.grid) for m in problem.models.values())
    rate = 1e-9 + 3e-9 * np.log(1024 / 100) / np.log(100)
    slow, fast = estimate(problem, plan, two), estimate(problem, plan, RATES)
    assert slow.block_s - fast.block_s == pytest.approx(6 * nnz * 10 * (rate - 1e-9))


def test_rates_taken_under_load_are_flagged():
    assert not RATES.taken_under_load  # load unknown
    assert not dataclasses.replace(RATES, load=1.9, cpus=2).taken_under_load
    assert dataclasses.replace(RATES, load=2.5, cpus=2).taken_under_load


def _imports(module: str) -> set[str]:
    """Top-level packages ``sxtdist.<module>`` imports, following sxtdist's own modules (AST)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sxtdist"
    seen, todo, found = set(), [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".") if name else []
        path = root.joinpath(*parts).with_suffix(".py")
        package = parts[:-1]
        if not path.exists():
            path, package = root.joinpath(*parts, "__init__.py"), parts
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    todo.append(".".join([*base, *node.module.split(".")]))
                else:
                    todo += [".".join([*base, a.name]) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
    return found


def test_the_planner_imports_no_dask_zarr_or_cli():
    used = _imports("capacity")
    assert "numpy" in used  # the walk works
    assert not used & {"dask", "distributed", "zarr", "click"}, used & {"dask", "zarr"}


def test_rates_are_measured_once_per_machine_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(calibration, "measure_rates", lambda: calls.append(1) or RATES)
    assert calibration.load_rates() == RATES and len(calls) == 1
    assert calibration.load_rates() == RATES and len(calls) == 1  # from the cache
    path = calibration.cache_path()
    saved = json.loads(open(path).read())
    saved["machine"]["cpus"] = -1  # another machine (or version) sharing the home
    open(path, "w").write(json.dumps(saved))
    calibration.load_rates()
    assert len(calls) == 2
    calibration.load_rates(recalibrate=True)
    assert len(calls) == 3
    saved = json.loads(open(path).read())
    del saved["machine"]["calibration"]  # wall-clock figures of the first calibration
    open(path, "w").write(json.dumps(saved))
    calibration.load_rates()
    assert len(calls) == 4


def test_a_users_file_at_the_cache_path_is_not_replaced(tmp_path, monkeypatch, caplog):
    """The cache's name is sxtdist's, but a file there that is no calibration cache (a
    user's, another tool's) was replaced by the new figures: now it is left as it was, the
    rates measured are used and not kept, and a warning says so."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(calibration, "measure_rates", lambda: RATES)
    path = calibration.cache_path()
    os.makedirs(os.path.dirname(path))
    open(path, "w").write("my notes\n")
    assert calibration.load_rates() == RATES
    assert open(path).read() == "my notes\n"
    assert "not a calibration cache of sxtdist's: left alone" in caplog.text
    assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)]


def test_a_small_calibration_measures_positive_rates():
    r = calibration.measure_rates(n=48, startup=False, n_large=96)
    assert r.build_s_per_nnz > 0 and r.iteration_s_per_nnz_slice >= 0
    assert r.iteration_s_per_nnz_slice_large >= 0 and r.calibration_pixels == (48**2, 96**2)
    assert r.cpus and r.load is not None and f"on {r.cpus} cores" in r.source
    again = calibration.measure_rates(n=48, startup=False, n_large=96)
    assert again.build_s_per_nnz > 0.2 * r.build_s_per_nnz  # not the cached matrices
    assert r.read_bytes_per_s > 0 and r.write_bytes_per_s > 0
    assert 0 < r.gpu_s_per_nnz_slice < r.build_s_per_nnz
    assert "docs/gpu.md" in r.source


def test_dry_run_prints_the_estimate_and_writes_nothing(tiny_acq, tmp_path, monkeypatch, run_cli):
    from sxtdist import estimate as estimate_module

    monkeypatch.setattr(estimate_module, "load_rates", lambda recalibrate=False: RATES)
    out = tmp_path / "v.zarr"
    code, stdout, err = run_cli(
        "reconstruct", tiny_acq, out, "--dry-run", "--workers", "3", "--backend", "cpu"
    )
    assert code == 0, err
    assert "3 worker(s)" in stdout and "peak memory per worker" in stdout
    assert "rates: test" in stdout
    assert "20 iterations" in stdout and "iterations auto: estimated at 20" in stdout
    assert not out.exists()
    code, stdout, err = run_cli(
        "reconstruct", tiny_acq, out, "--dry-run", "--workers", "4", "--backend", "gpu"
    )
    assert code == 0, err
    assert "backend gpu, 4 GPU(s)" in stdout and "peak memory per GPU" in stdout
    assert not out.exists()
    import sxtdist

    est = sxtdist.estimate_reconstruction(tiny_acq, workers=2, backend="cpu", iterations=7)
    assert est.workers == 2 and est.iterations == 7 and est.wall_s > 0


def test_dry_run_warns_of_rates_taken_under_load_and_recalibrates(
    tiny_acq, tmp_path, monkeypatch, run_cli
):
    from sxtdist import estimate as estimate_module

    busy = dataclasses.replace(RATES, load=29.7, cpus=2)
    quiet = dataclasses.replace(RATES, load=0.4, cpus=2, source="quiet")
    monkeypatch.setattr(estimate_module.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    monkeypatch.setattr(
        estimate_module, "load_rates", lambda recalibrate=False: quiet if recalibrate else busy
    )
    args = ("reconstruct", tiny_acq, tmp_path / "v.zarr", "--dry-run", "--backend", "cpu")
    code, stdout, err = run_cli(*args, "--workers", "2")
    assert code == 0, err
    assert "measured under load (29.7 on 2 cores)" in stdout and "--recalibrate" in stdout
    code, stdout, err = run_cli(*args, "--workers", "2", "--recalibrate")
    assert code == 0, err
    assert "under load" not in stdout and "rates: quiet" in stdout
    code, stdout, err = run_cli(*args[:3], "--recalibrate")  # not without --dry-run
    assert code == 2 and "--recalibrate goes with --dry-run" in err
    # this machine busy now: a local run will be slower than the estimate
    monkeypatch.setattr(estimate_module.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(estimate_module.os, "cpu_count", lambda: 2)
    code, stdout, err = run_cli(*args, "--workers", "2", "--recalibrate")
    assert code == 0 and "busy now (load 9.0 on 2 cores)" in stdout
