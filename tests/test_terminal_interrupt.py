"""Ctrl-C in a terminal: the signal reaches the whole foreground process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from test_faults import _HELD_AFTER_ONE_BLOCK, CLI_OPTS, REPO, _wait_for_blocks

import sxtdist


def test_ctrl_c_to_the_process_group_prints_one_line(tmp_path):
    """A terminal's Ctrl-C signals sxtdist's local worker processes as well as sxtdist:
    one line ``sxtdist: interrupted`` and exit 130, no worker's traceback (each printed a
    ``KeyboardInterrupt`` traceback from its event loop, ~100 lines in all). Run in a
    session of its own, as a terminal's foreground job, the run held after one block."""
    acq = tmp_path / "cell.zarr"
    sxtdist.simulate(acq, preset="tiny", seed=23)
    out = tmp_path / "v.zarr"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = ["reconstruct", acq, out, "--workers", "2", *CLI_OPTS]
    p = subprocess.Popen(
        [sys.executable, "-c", _HELD_AFTER_ONE_BLOCK, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a shell's background job inherits SIGINT ignored: hear it as a terminal's job does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_blocks(out, 1, proc=p)
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err
    assert "sxtdist: interrupted" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
