"""Run a short Python script that ends in sxtdist's CLI in a fresh process (tests that must
unload something first, e.g. an HDF5 filter, before sxtdist reads a file)."""

from __future__ import annotations

import os
import subprocess
import sys


def run_script(script: str, *args: object) -> tuple[int, list[str]]:
    """Run ``script`` with ``args`` in a fresh interpreter seeing this one's ``sys.path``;
    return its exit code and its standard error's lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    return r.returncode, r.stderr.strip().splitlines()
