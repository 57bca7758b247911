"""A memory limit per worker too small to work is refused before any work; workers that die
running a task are told as such, not as an internal error (bugs.md R14-7)."""

from __future__ import annotations

import pytest

from sxtdist.cli._failures import describe
from sxtdist.errors import ParameterError
from sxtdist.execution import Execution


@pytest.mark.parametrize("limit", ["10MiB", "150MiB", 100 * 2**20])
def test_a_memory_limit_below_what_a_worker_needs_is_refused(limit):
    with pytest.raises(ParameterError, match=r"memory_limit .* per worker is less than a worker"):
        Execution(memory_limit=limit)


@pytest.mark.parametrize("limit", ["512MiB", "4GiB", "auto", None])
def test_a_workable_memory_limit_is_taken(limit):
    assert Execution(memory_limit=limit).memory_limit == limit


def test_cli_refuses_a_tiny_memory_limit_before_any_work(run_cli, tiny_acq, tmp_path):
    """At 10MiB the workers paused from the start: the run waited for ever without a word."""
    out = tmp_path / "v.zarr"
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--memory-limit", "10MiB")
    assert code == 2, err
    assert err.strip().splitlines() == [
        "sxtdist: error: --memory-limit 10MiB per worker is less than a worker needs: it holds "
        "150-250 MiB before any work (Python, NumPy, ASTRA, Dask) and Dask pauses it at 80 % "
        "of its limit; give at least 512MiB, or 'auto'"
    ]
    assert not out.exists()


def test_workers_that_died_are_said_so_not_an_internal_error():
    from distributed import KilledWorker

    exc = KilledWorker("('_solve_block-abc', 0)", "tcp://127.0.0.1:4242", allowed_failures=3)
    code, line = describe(exc, "reconstruct")
    assert code == 1
    assert line.startswith("4 worker processes died running the same task (killed: for memory")
    assert "--memory-limit" in line and "--block-size" in line and "walltime" in line
    assert "internal error" not in line
    assert line.endswith("run the same command again to resume")
