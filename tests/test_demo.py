"""``sxtdist demo`` end to end on the tiny preset."""

from __future__ import annotations

import os


def test_demo_tiny(tmp_path, run_cli):
    out = tmp_path / "demo"
    code, stdout, err = run_cli("demo", "--out", out, "--preset", "tiny", "--workers", "1")
    assert code == 0, err
    for name in ("tiny.zarr", "interior-only.zarr", "combined.zarr"):
        assert os.path.isdir(out / name)
    assert "PSNR in ROI" in stdout and "combined" in stdout
    code, _, err = run_cli("demo", "--out", out, "--preset", "tiny", "--workers", "1")
    assert code == 2 and "earlier demo" in err
