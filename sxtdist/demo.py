"""The end-to-end demonstration behind ``sxtdist demo``.

Simulate a paper-like acquisition (known random shifts, Poisson noise, the
zone-plate PSF), align it, reconstruct interior-only and combined, and compare
both with the truth inside the ROI and over the whole cell.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ._progress import log
from .alignment import align
from .backends import select_backend
from .dataset import open_acquisition
from .distributed import get_client
from .errors import OutputExistsError
from .metrics import psnr_in_region
from .recon import DEFAULT_ITERATIONS
from .runner import reconstruct, roi_mask
from .simulation import simulate


def run_demo(
    out_dir: str,
    preset: str = "small",
    seed: int = 1,
    workers: int | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    overwrite: bool = False,
) -> dict[str, dict[str, float]]:
    """Run the demo; returns ``{volume name: {"roi_psnr": ..., "cell_psnr": ...}}``."""
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    acq_path = os.path.join(out_dir, f"{preset}.zarr")
    if os.path.exists(acq_path) and not overwrite:
        raise OutputExistsError(acq_path, "exists from an earlier demo (use --overwrite)")
    log(f"1/3 simulating a '{preset}' cell (seed {seed}) -> {acq_path}")
    simulate(acq_path, preset=preset, seed=seed, overwrite=overwrite)
    acq = open_acquisition(acq_path)
    volumes = {"interior-only": ["roi"], "combined": ["full", "roi"]}
    results: dict[str, dict[str, float]] = {}
    with get_client(workers=workers) as client:
        log("2/3 aligning the projections")
        align(acq, client=client)
        truth = acq.truth.compute()
        roi = np.broadcast_to(roi_mask(acq), truth.shape)
        cell = truth > 0.5 * float(np.median(truth[truth > 0]))
        log("3/3 reconstructing (interior only, then combined)")
        # with a usable GPU, reconstruct starts its own dask-cuda cluster: the CPU workers
        # started here for the alignment offer no GPU resource
        on_gpu = select_backend("auto")[0] == "gpu"
        for name, scans in volumes.items():
            out = os.path.join(out_dir, f"{name}.zarr")
            vol = reconstruct(
                acq_path,
                out,
                scans=scans,
                iterations=iterations,
                client=None if on_gpu else client,
                overwrite=overwrite,
            )
            x = vol.level(0).compute()
            results[name] = {
                "roi_psnr": psnr_in_region(x, truth, roi),
                "cell_psnr": psnr_in_region(x, truth, cell),
            }
    print(f"\nsxtdist demo finished in {time.perf_counter() - t0:.0f} s; outputs in {out_dir}/")
    print(f"  acquisition   {acq_path}  (sxtdist info {acq_path})")
    print(f"  {'volume':<14}{'PSNR in ROI':>12}{'PSNR cell':>12}  path")
    for name, r in results.items():
        print(
            f"  {name:<14}{r['roi_psnr']:>10.2f}dB{r['cell_psnr']:>10.2f}dB  "
            f"{os.path.join(out_dir, name + '.zarr')}"
        )
    print("  view: napari --plugin napari-ome-zarr " + os.path.join(out_dir, "combined.zarr"))
    return results
