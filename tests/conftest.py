"""Shared fixtures and the skip rules for slow, GPU and SLURM tests."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def _gpu_reason() -> str | None:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as exc:  # no cupy, no driver
        return f"no usable cupy/CUDA ({type(exc).__name__})"
    try:
        import astra

        if not astra.use_cuda():
            return "ASTRA has no CUDA support here"
    except Exception as exc:
        return f"ASTRA unavailable ({type(exc).__name__})"
    return None


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow")
    gpu_reason = None
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow study: run ./dev.sh slow"))
        if "gpu" in item.keywords:
            if gpu_reason is None:
                gpu_reason = _gpu_reason() or ""
            if gpu_reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {gpu_reason}"))


@pytest.fixture(scope="session")
def tiny_acq(tmp_path_factory):
    """A simulated tiny acquisition (shared, read-only)."""
    import sxtdist

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    sxtdist.simulate(path, preset="tiny", seed=3, quiet=True)
    return str(path)


@pytest.fixture
def tiny_copy(tiny_acq, tmp_path):
    """A private, writable copy of the tiny acquisition."""
    dst = tmp_path / "tiny.zarr"
    shutil.copytree(tiny_acq, dst)
    return str(dst)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from sxtdist.cli import main

    def run(*args: str):
        code = main([os.fspath(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
