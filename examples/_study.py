"""Shared plumbing of the study scripts (examples/study_*.py): simulate, reconstruct, score, save.

Every study simulates the paper-like ``small`` preset (a 6 µm cell at 60 nm voxels,
a 3.6 µm ROI; no capillary, as the paper's phantom) with its random per-view jitter (σ = 1 px) and applies the known
shifts (alignment is another study), reconstructs with :func:`sxtdist.runner.reconstruct` on a local Dask
cluster and scores with :mod:`sxtdist.scoring` (the PSNR of ``report`` and ``batch``: the
peak is the 99th percentile of the truth inside the cell).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

import sxtdist
from sxtdist import metrics, scoring
from sxtdist.runner import reconstruct


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer points (< 5 min on 2 cores)")
    ap.add_argument("--out", default="study_out", help="directory for the CSV and PNG")
    ap.add_argument("--work", help="keep the datasets here (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    return ap


class Study:
    """A working directory, a Dask client and a stopwatch."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.args = args
        self.name = name
        self.t0 = time.perf_counter()
        os.makedirs(args.out, exist_ok=True)
        self.work = args.work or tempfile.mkdtemp(prefix=f"sxtdist_{name}_")
        os.makedirs(self.work, exist_ok=True)
        from sxtdist.distributed import get_client

        self._client_cm = get_client(workers=args.workers)
        self.client = self._client_cm.__enter__()

    def close(self) -> None:
        self._client_cm.__exit__(None, None, None)
        if not self.args.work:
            shutil.rmtree(self.work, ignore_errors=True)
        print(f"{self.name}: {time.perf_counter() - self.t0:.0f} s", flush=True)

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def simulate(self, name: str, **kw) -> sxtdist.Acquisition:
        """Simulate the ``small`` preset (its random jitter included) and apply the known shifts.

        No capillary (as the paper's phantom): the glass wall would dominate the PSNR's
        data range and the whole-volume norms.
        """
        kw.setdefault("capillary", False)
        acq = sxtdist.simulate(
            self.path(name + ".zarr"),
            "small",
            self.args.seed,
            overwrite=True,
            progress=False,
            **kw,
        )
        for scan in acq.scans:
            acq.set_shifts(
                scan, np.asarray(acq.truth_meta["shifts_px"][scan]), method="known (simulated)"
            )
        return acq

    def reconstruct(
        self, acq: sxtdist.Acquisition, scans: Sequence[str], tag: str, **kw
    ) -> np.ndarray:
        """Reconstruct ``scans`` of ``acq``; default: oracle stopping in the ROI (the paper's)."""
        kw.setdefault("oracle", True)
        kw.setdefault("iterations", 300 if kw["oracle"] else 10)
        # the paper's reference code: equal scan weights, PSF-aware operators (the figures
        # in docs/studies.md were made so; sxtdist's defaults differ, docs/reconstruction.md)
        kw.setdefault("weights", "equal")
        kw.setdefault("psf", True)
        vol = reconstruct(
            acq.path,
            self.path(f"rec_{tag}.zarr"),
            scans=list(scans),
            client=self.client,
            overwrite=True,
            progress=False,
            **kw,
        )
        return np.asarray(vol.level(0).compute())


def photons_per_pixel(pixel_nm: float, per_20nm: float) -> float:
    """Photons per pixel for the paper's fluence ``per_20nm`` photons per (20 nm)² pixel."""
    return per_20nm * (pixel_nm / 20.0) ** 2


def roi_diameter_px(acq: sxtdist.Acquisition) -> float:
    return metrics.roi_diameter_px(acq["roi"].geometry, float(acq.truth_meta["voxel_size_nm"]))


def scores(x: np.ndarray, acq: sxtdist.Acquisition, roi_px: float | None = None) -> dict:
    """PSNR in the ROI cylinder (of diameter ``roi_px``, default the interior scan's), in
    the cell and over the whole volume (:func:`sxtdist.scoring.score`)."""
    regions = scoring.Regions.of(acq)
    if roi_px is not None:
        regions = replace(regions, roi_diameter_px=roi_px)
    s = scoring.score(x, acq.truth, regions)
    return {"psnr_whole": s.psnr_whole, "psnr_roi": s.psnr_roi, "psnr_cell": s.psnr_cell}


def write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}")


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print(
            "| "
            + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values())
            + " |"
        )


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
