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
    assert code == 2 and "already exists (use --overwrite" in err


def test_demo_leaves_its_cpu_workers_out_of_a_gpu_reconstruction(tmp_path, monkeypatch):
    """The demo's local workers (for the alignment) offer no GPU resource: the
    reconstructions get the execution without a client, so that with a usable GPU
    they start a dask-cuda cluster (tests/test_reconstruct.py checks that choice)."""
    import sxtdist.demo as demo
    from sxtdist.runner import reconstruct

    calls = []

    def recording_reconstruct(*args, execution=None, **kwargs):
        calls.append(execution)
        return reconstruct(*args, execution=execution.replace(backend="cpu"), **kwargs)

    monkeypatch.setattr(demo, "reconstruct", recording_reconstruct)
    demo.run_demo(tmp_path / "demo", preset="tiny", workers=1, iterations=2)
    assert len(calls) == 2
    assert all(ex.client is None and ex.workers == 1 for ex in calls)
