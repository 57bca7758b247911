"""Shared fixtures and the skip rules for slow, GPU and SLURM tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption(
        "--matrix",
        metavar="FILE",
        help="write test_bad_inputs.py's table as run (case, command, exit code, message) "
        "to FILE as Markdown",
    )


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


def _slurm_state() -> tuple[bool, str]:
    """(usable, why): is there a SLURM with an idle (or partly used) node?"""
    if shutil.which("sinfo") is None:
        return False, "sinfo not found (no SLURM client installed)"
    try:
        r = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer within 15 s"
    if r.returncode != 0:
        return False, (r.stderr.strip().splitlines() or ["sinfo failed"])[-1]
    states = set(r.stdout.split())
    if states & {"idle", "mix"}:
        return True, ""
    return False, f"no idle node (sinfo states: {', '.join(sorted(states)) or 'none'})"


def _may_start_slurm() -> tuple[bool, str]:
    """Start deploy/slurm-local/start.sh only when asked (SXTDIST_START_SLURM=1, or CI) and root."""
    asked = os.environ.get("SXTDIST_START_SLURM") == "1" or os.environ.get("CI") == "true"
    if os.environ.get("SXTDIST_START_SLURM") == "0" or not asked:
        return False, "set SXTDIST_START_SLURM=1 (as root) to start deploy/slurm-local/start.sh"
    if os.geteuid() != 0:
        return False, "starting it needs root (deploy/slurm-local/start.sh)"
    return True, ""


_SLURM_REASON: str | None = None


def slurm_reason() -> str:
    """Why SLURM tests cannot run ("" when they can); tries the local start script once."""
    global _SLURM_REASON
    if _SLURM_REASON is not None:
        return _SLURM_REASON
    ok, why = _slurm_state()
    if not ok:
        may, why_not = _may_start_slurm()
        if may:
            r = subprocess.run(
                [str(REPO / "deploy" / "slurm-local" / "start.sh")],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            ok, why_after = _slurm_state()
            if not ok:
                tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
                # exit 0 with the node busy (alloc: jobs hold all its CPUs) is no failure
                said = "said" if r.returncode == 0 else "failed"
                why = f"{why_after}; deploy/slurm-local/start.sh {said}: {tail}"
        else:
            why = f"{why}; {why_not}"
    _SLURM_REASON = "" if ok else f"SLURM not running: {why}"
    return _SLURM_REASON


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
        if "slurm" in item.keywords and not ("slow" in item.keywords and not run_slow):
            if slurm_reason():
                item.add_marker(pytest.mark.skip(reason=slurm_reason()))


@pytest.fixture(scope="session", autouse=True)
def _close_kept_clusters():
    """The local clusters the tests' calls kept, closed while the session's output is open
    (at exit, their schedulers' last log lines would go to closed streams)."""
    yield
    from sxtdist.distributed import close_kept_clusters

    close_kept_clusters()


@pytest.fixture(scope="module")
def client():
    """A local cluster of two workers for one test module (the alignment tests use their
    own single-threaded in-process one)."""
    from sxtdist.distributed import get_client

    with get_client(workers=2) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_acq(tmp_path_factory):
    """A simulated tiny acquisition (shared, read-only)."""
    import sxtdist

    path = tmp_path_factory.mktemp("data") / "tiny.zarr"
    sxtdist.simulate(path, preset="tiny", seed=3)
    return str(path)


@pytest.fixture
def tiny_copy(tiny_acq, tmp_path):
    """A private, writable copy of the tiny acquisition."""
    dst = tmp_path / "tiny.zarr"
    shutil.copytree(tiny_acq, dst)
    return str(dst)


@pytest.fixture
def lock_held_elsewhere():
    """``with lock_held_elsewhere(path) as pid``: the lock of the output ``path`` held by
    another process (``pid``), as by another run writing it, until the block ends."""

    @contextmanager
    def hold(path):
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD, os.fspath(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert holder.stdout.readline() == b"held\n"
            yield holder.pid
        finally:
            holder.communicate(b"", timeout=60)

    return hold


_HOLD = (
    "import sys\n"
    "from sxtdist.lock import write_lock\n"
    "with write_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from sxtdist.cli import main

    def run(*args: str):
        code = main([os.fspath(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def deny_writes(monkeypatch):
    """``with deny_writes(folder, code):`` creating a file directly in ``folder`` fails with
    ``errno`` ``code`` (default EACCES), as on a read-only or forbidden place, whatever
    :func:`os.access` says of it (it says yes as root: the tests may run as root)."""
    import errno

    real_open = os.open
    denied: dict[str, int] = {}

    def fake_open(path, flags, *args, **kwargs):
        folder = os.path.dirname(os.path.abspath(os.fsdecode(path)))
        if flags & os.O_CREAT and folder in denied:
            raise OSError(denied[folder], os.strerror(denied[folder]), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)

    @contextmanager
    def deny(folder, code: int = errno.EACCES):
        key = os.path.abspath(os.fspath(folder))
        denied[key] = code
        try:
            yield
        finally:
            del denied[key]

    return deny
