"""The benchmark scripts whose figures stand in docs/: what they compare is what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from sxtdist.geometry import ScanGeometry, VolumeGrid
from sxtdist.operators import ScanModel
from sxtdist.recon import Problem, slab_system

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cg_precision_reference_computes_in_float64():
    """docs/reconstruction.md's precision table compares float32 CGNE with a float64
    reference: every product of the reference's operators (weighted projector, row
    sampling of the coarse scan) is float64, so their adjoints are exact to float64
    round-off, not float32's (a twin whose projector cast to float32 read 1e-7)."""
    cg = _load("cg_precision")
    n, nz, v = 24, 4, 30.0
    grid = VolumeGrid((nz, n, n), v)
    models = {}
    for name, g in cg.geometries(n, v).items():
        rows = int(round(nz * v / g.pixel_size_nm))
        models[name] = ScanModel(
            ScanGeometry(g.angles_deg, g.pixel_size_nm, (rows, g.detector_shape[1]))
        )
    problem = Problem(grid, models, weights={"full": 9 * 92 / 19})
    rows = problem.rows((0, nz))
    blank = {
        k: np.zeros((m.geometry.n_angles, rows[k].size, m.geometry.detector_shape[1]))
        for k, m in models.items()
    }
    ops = slab_system(problem, (0, nz), blank)[0]
    rng = np.random.default_rng(0)
    for op in ops:
        twin = cg.to_float64(op)
        x = rng.standard_normal(op.domain_shape)
        y = rng.standard_normal(op.range_shape)
        ax, aty = twin(x), twin.T(y)
        assert ax.dtype == aty.dtype == np.float64
        lhs, rhs = float(np.vdot(ax, y)), float(np.vdot(x, aty))
        assert abs(lhs - rhs) < 1e-12 * abs(lhs), (lhs, rhs)


def test_stopping_rules_auto_is_the_runners_rule_and_skipped_holdout_reads_as_dash(tmp_path):
    """docs/reconstruction.md's stopping table: the ``auto`` column is the count the runner's
    ``--iterations auto`` picks from the same curve (``eighth``, ``seventh``: those sessions');
    a record made with ``--no-holdout``
    shows no hold-out count (not "never reached"); ``flat_minimum`` brackets the minimum."""
    import json

    from sxtdist.solvers import cross_validated_count

    sr = _load("stopping_rules")
    far = [5.0, 2.0, 1.004, 1.0, 1.003, 1.02, 1.5]
    psnr = [20.0, 24.0, 25.0, 25.5, 25.7, 25.6, 25.0]
    r = dict(
        preset="p", seed=1, dose=1.0, capillary=True, weights="quadrature", cap=7,
        psnr_roi=psnr, psnr_cell=psnr, xnorm=[1.0 + i for i in range(7)],
        residual=[10.0 / (1 + i) for i in range(7)], noise=None, holdout_misfit=None,
        far=far, between=[0.1 * i**3 for i in range(7)],
    )  # fmt: skip
    # between ∝ k³ (exponent 4.75 over [2, 4], at 4 1/8 of its last value): the noise regime,
    # far's vertex 4.07, so 5; without the vertex (the seventh session's auto) 4
    assert sr.choices(r)["auto"] == cross_validated_count(far, r["between"]) == 5
    assert (
        sr.choices(r)["seventh"]
        == cross_validated_count(far, r["between"], noise_regime=False)
        == 4
    )
    assert sr.choices(r)["holdout"] is None
    assert sr.flat_minimum(far, 0.005) == (3, 5)
    # the halves' disagreement grows 2× after 4: 4 × 2.25 = 9, but it passes 1.4× at 6: 5
    slow = [0.1 * i for i in range(7)]
    assert sr.choices(dict(r, between=slow))["auto"] == cross_validated_count(far, slow) == 5
    assert cross_validated_count(far, slow, growth=1e9) == 9
    assert sr.choices(dict(r, between=slow, weights="equal"))["auto"] == 4  # as the runner
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(r) + "\n")
    row = sr.table(str(path)).splitlines()[-1].split("|")
    assert row[8].strip() == "5–5, 0.00 (max 0.00)"  # auto: iteration 5, the best
    assert row[9].strip() == "5–5, 0.00 (max 0.00)"  # tenth: no dip here, as auto
    assert row[10].strip() == "5–5, 0.00 (max 0.00)"  # eighth: the same
    assert row[11].strip() == "4–4, 0.20 (max 0.20)"  # seventh: iteration 4, 25.7 − 25.5
    assert row[12].strip() == "4–4, 0.20 (max 0.20)"  # bounded: the same here
    assert row[13].strip() == "4–4, 0.20 (max 0.20)"  # unbounded: the same here
    assert row[14].strip() == "4–4, 0.20 (max 0.20)"  # far's minimum: the same here
    assert row[16].strip() == "–"  # hold-out
    # one row per seed: the same here (one record)
    assert sr.table(str(path), per_seed=True).splitlines()[-1] == "|".join(row)
    # overshoot: the factor's indicator 0.5 pushed to 0.7 makes 4 × 4.5 × 0.7 = 12.6, 13;
    # auto's bound keeps 5, a candidate bound its own count
    s = dict(r, between=slow)
    assert sr.pushed_count(s, 0.0) == 5 and sr.pushed_count(s, 0.0, np.inf) == 9
    assert sr.pushed_count(s, 0.2) == 5 and sr.pushed_count(s, 0.2, np.inf) == 13
    assert sr.bounded_count(s, 0.2, sr.BOUNDS["between > 1.6 between[k_f]"]) == 5  # 0.5 > 0.48
    assert sr.bounded_count(s, 0.2, sr.BOUNDS["far rise > 0.11 far[k_f]"]) == 6  # 1.5 at 7


def test_stopping_rules_reads_a_volume_record_and_an_augmented_one(tmp_path):
    """A ``record-volume`` record (no residual, no hold-out) gets counts for the rules it
    has and none for the others; an augmented record's experiments (runs D and E) are
    the minima of their curves, and the table shows them after the other rules."""
    import json

    sr = _load("stopping_rules")
    psnr = [20.0, 24.0, 25.0, 25.5, 25.7, 25.6]
    r = dict(
        preset="cell", seed=1, dose=1.0, capillary=True, weights="quadrature", cap=6,
        psnr_roi=psnr, far=[5.0, 2.0, 1.5, 1.0, 1.2, 1.3], between=[0.0, 0.0, 0.01, 0.02, 0.2, 0.5],
    )  # fmt: skip
    c = sr.choices(r)
    # far rises 0.2 past its minimum at 4 where between / 2 grew 0.09 (and between there is
    # 1/25 of its last value): a dip for the tenth session's test, so its count is past it, 5;
    # but far goes on rising (0.1, more than a quarter of the noise's growth 0.15): no dip
    # now, auto is 4, as the eighth's
    assert (c["oracle"], c["auto"], c["tenth"], c["eighth"], c["lcurve"]) == (5, 4, 5, 4, None)
    assert (c["discrepancy"], c["holdout"]) == (None, None)
    assert "folds" not in c
    r.update(
        far_noise=[4.0, 3.0, 2.0, 1.9, 1.8, 2.5], between_noise=[0.0, 0.4, 0.8, 1.2, 2.0, 4.0],
        far_fold=[[3.0, 1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 2.0, 0.5, 3.0, 4.0, 5.0]],
    )  # fmt: skip
    c = sr.choices(r)
    # noise corrected: far_noise − between_noise/4 = 4, 2.9, 1.8, 1.6, 1.3, 1.5
    # folds: the rotations' mean, 3, 1.5, 1.25, 3, 4, 5
    assert (c["noise halves"], c["noise corrected"], c["folds"]) == (5, 5, 3)
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(r) + "\n")
    header, _, row = sr.table(str(path)).splitlines()
    assert header.split("|")[-2].strip() == "folds: count, loss"
    assert row.split("|")[-2].strip() == "3–3, 0.70 (max 0.70)"  # 25.7 − 25.0


def _spin(seconds: float) -> float:
    """Busy a thread for about ``seconds`` of its CPU; return the CPU it took."""
    import time

    t0 = time.thread_time()
    x = 0
    while time.thread_time() - t0 < seconds:
        x += 1
    return time.thread_time() - t0


def test_bench_align_ledger_counts_the_tasks_cpu():
    """docs/alignment.md's Speed section reads 1 -> 2 worker ratios through
    ``bench_align.py``'s CPU ledger: the tasks' CPU it reports from Dask's metrics holds
    a task's own CPU (a distributed that renamed its metrics would leave it at zero and
    the ratios unjudgeable), and the CPU of other processes is never negative."""
    from distributed import Client

    bench = _load("bench_align")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        ledger = bench.CpuLedger.start(c)
        spent = c.submit(_spin, 0.3, pure=False).result()
        out = ledger.stop(c)
    assert spent >= 0.3
    assert spent * 0.9 <= out["thread-cpu"] <= out["own"] + 1e-6, (spent, out)
    assert out.get("others", 0.0) >= 0.0


def test_bench_align_verdict_reads_the_median_against_the_bound_and_the_load():
    """The verdict lines of ``bench_align.py`` (1 -> 2 workers, at least 1.75x) and of
    ``bench_align_whole.py`` (current / old, at most 1.5x) judge the median of the rounds,
    and say a machine whose other processes took 0.1 core or more in a run was not quiet."""
    bench = _load("bench_align")
    assert bench.TARGET_RATIO == 1.75
    line = bench.verdict("[1] small", [2.13, 1.87, 1.87], 1.75, True, [0.0, 0.04])
    assert "median 1.87x over 3 rounds (1.87-2.13) against >= 1.75x: met;" in line
    assert "0.00-0.04 cores over the 2 timed runs" in line and ": quiet" in line
    # one round above the target, the median below it
    line = bench.verdict("[2]", [1.9, 1.6, 1.7], 1.75, True, [0.0, 0.3])
    assert "median 1.70x" in line and "NOT met" in line and "NOT quiet" in line
    assert ": met" in bench.verdict("whole", [1.4, 1.6, 1.2], 1.5, False, [0.05])
    assert "NOT met" in bench.verdict("whole", [1.6, 1.4, 1.55], 1.5, False, [0.05])
    assert "quietness unknown" in bench.verdict("whole", [1.0], 1.5, False, [])
    ledgers = [{"wall": 2.0, "others": 0.5}, {"wall": 1.0, "own": 1.0}]
    assert bench.others_cores(ledgers) == [0.25]


def test_bench_align_ledger_counts_a_finished_commands_cpu():
    """``bench_align_whole.py`` runs ``sxtdist align`` as a command and reads its CPU from
    the ledger once it has ended: a process that ended and was waited for is counted in
    ``own`` (not in the other processes' CPU, which would make a busy machine of a quiet
    one), and with no cluster there are no task metrics."""
    import subprocess
    import sys

    bench = _load("bench_align")
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    ledger = bench.CpuLedger.start(None)
    subprocess.run([sys.executable, "-c", spin], check=True)
    out = ledger.stop(None)
    assert out["own"] >= 0.38, out
    assert "thread-cpu" not in out


def _git_tree() -> bool:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(BENCHMARKS.parent), "rev-parse", "HEAD"], capture_output=True
        )
    except OSError:
        return False
    return out.returncode == 0


def test_bench_align_whole_leaves_nothing_behind_on_ctrl_c(tmp_path, monkeypatch):
    """The old commit's code is extracted into a temporary directory that goes with the
    run, Ctrl-C included."""
    import tempfile

    import pytest

    if not _git_tree():
        pytest.skip("not a git checkout: no commit to extract")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports bench_align
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    whole = _load("bench_align_whole")
    with pytest.raises(KeyboardInterrupt), whole.scratch() as work:
        named = whole.extract_commit("HEAD", work / "old")
        assert (work / "old" / "sxtdist" / "__init__.py").is_file()
        assert not (work / "old" / ".git").exists()
        assert len(named.split()[0]) >= 7
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_bench_align_whole_times_both_trees_from_one_acquisition(tmp_path, monkeypatch, capsys):
    """One round of the whole ``sxtdist align`` (``tiny``), the committed HEAD against this
    tree: one acquisition read by both, a run of each, the verdict against 1.5x, and
    nothing left in the temporary directory."""
    import tempfile

    import pytest

    if not _git_tree():
        pytest.skip("not a git checkout: no commit to extract")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    whole = _load("bench_align_whole")
    whole.main(["--commit", "HEAD", "--rounds", "1", "--preset", "tiny"])
    out = capsys.readouterr().out
    assert "one acquisition (tiny, seed 1), by this tree's simulator, for both" in out
    assert "round 1, old: wall" in out and "round 1, current: wall" in out
    assert "current / old: per round" in out
    assert "over 1 round" in out and "against <= 1.5x" in out
    assert list(tmp_path.iterdir()) == []
