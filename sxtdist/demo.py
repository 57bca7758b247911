"""The end-to-end demonstration behind ``sxtdist demo``.

Simulate a paper-like acquisition (known random shifts, Poisson noise, the
zone-plate PSF), align it, reconstruct interior-only and combined, and compare
both with the truth inside the ROI and over the whole cell.
"""

from __future__ import annotations

import logging
import os
import time

from .alignment import align
from .dataset import open_acquisition
from .errors import OutputExistsError, quoted, use_overwrite
from .execution import Execution
from .outputs import check_output, make_folders, remove_empty_folders
from .recon import AUTO
from .runner import reconstruct
from .scoring import PSNR_NOTE, Regions, score
from .simulation import simulate

logger = logging.getLogger(__name__)


def run_demo(
    out_dir: str | os.PathLike[str],
    preset: str = "small",
    seed: int = 1,
    iterations: int | str = AUTO,
    execution: Execution | None = None,
    *,
    workers: int | None = None,
    overwrite: bool | None = None,
) -> dict[str, dict[str, float]]:
    """Run the demo; returns ``{volume name: {"roi_psnr": ..., "cell_psnr": ...}}``.

    ``execution`` says where the alignment and the reconstructions run (with a usable
    GPU, and no cluster given, the reconstructions run on a local dask-cuda cluster);
    ``workers`` and ``overwrite`` are shortcuts for its fields.
    :func:`describe_results` puts the result in words.
    """
    t0 = time.perf_counter()
    ex = Execution.of(execution, workers=workers, overwrite=overwrite)
    out_dir = os.fspath(out_dir)
    acq_path = os.path.join(out_dir, f"{preset}.zarr")
    volumes = {name: os.path.join(out_dir, f"{name}.zarr") for name in VOLUMES}
    if os.path.exists(acq_path) and not ex.overwrite:
        raise OutputExistsError(acq_path, f"exists from an earlier demo ({use_overwrite()})")
    # every output checked before the first is written: only an earlier demo's are replaced
    check_output(acq_path, "acquisition", overwrite=ex.overwrite)
    for out in volumes.values():
        check_output(out, "volume", inputs=[acq_path], overwrite=ex.overwrite)
    made = make_folders(out_dir)
    try:
        results = _run(acq_path, volumes, preset, seed, iterations, ex)
    except BaseException:
        if made:
            remove_empty_folders(made)
        raise
    logger.info("demo finished in %.0f s", time.perf_counter() - t0)
    return results


#: The demo's volumes and the scans each is reconstructed from.
VOLUMES = {"interior-only": ["roi"], "combined": ["full", "roi"]}


def _run(
    acq_path: str,
    volumes: dict[str, str],
    preset: str,
    seed: int,
    iterations: int | str,
    ex: Execution,
) -> dict[str, dict[str, float]]:
    logger.info("1/3 simulating a '%s' cell (seed %d) -> %s", preset, seed, acq_path)
    simulate(acq_path, preset=preset, seed=seed, overwrite=ex.overwrite, progress=ex.progress)
    acq = open_acquisition(acq_path)
    logger.info("2/3 aligning the projections")
    align(acq, execution=ex)
    regions = Regions.of(acq)
    logger.info("3/3 reconstructing (interior only, then combined)")
    results: dict[str, dict[str, float]] = {}
    for name, scans in VOLUMES.items():
        vol = reconstruct(acq_path, volumes[name], execution=ex, scans=scans, iterations=iterations)
        s = score(vol.level(0), acq.truth, regions)
        results[name] = {"roi_psnr": s.psnr_roi, "cell_psnr": s.psnr_cell}
    return results


def describe_results(
    out_dir: str | os.PathLike[str], preset: str, results: dict[str, dict[str, float]]
) -> str:
    """The demo's outputs and their PSNRs (:func:`run_demo`'s result) as a short table."""
    out_dir = os.fspath(out_dir)
    acq_path = os.path.join(out_dir, f"{preset}.zarr")
    lines = [
        f"sxtdist demo: outputs in {out_dir}/",
        f"  acquisition   {acq_path}  (sxtdist info {quoted(acq_path)})",
        f"  {'volume':<14}{'PSNR in ROI':>12}{'PSNR cell':>12}  path",
    ]
    for name, r in results.items():
        lines.append(
            f"  {name:<14}{r['roi_psnr']:>10.2f}dB{r['cell_psnr']:>10.2f}dB  "
            f"{os.path.join(out_dir, name + '.zarr')}"
        )
    lines.append(f"  PSNR: {PSNR_NOTE}")
    combined = os.path.join(out_dir, "combined.zarr")
    view = quoted(combined)
    lines.append(f"  view: sxtdist view {view}  (or napari --plugin sxtdist {view})")
    return "\n".join(lines)
