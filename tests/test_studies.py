"""The paper's studies (examples/study_*.py) run end to end in their quick mode (slow)."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nfull", "interior", "dose", "angles"])
def test_study_quick_mode_writes_csv_and_png(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(os.path.join(EXAMPLES, "..")))
    script = os.path.join(EXAMPLES, f"study_{name}.py")
    subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path)],
        check=True,
        env=env,
        timeout=600,
    )
    assert (tmp_path / f"study_{name}.csv").stat().st_size > 0
    assert (tmp_path / f"study_{name}.png").stat().st_size > 10_000


def test_dose_maps_example_quick(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(os.path.join(EXAMPLES, "..")))
    script = os.path.join(EXAMPLES, "dose_maps.py")
    out = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(tmp_path)],
        check=True,
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    assert "19 full + 97 interior" in out
    assert (tmp_path / "dose_maps.png").exists()
