"""Darks taken in two sets (before and after the scan) while the dark level drifts: what
averaging them (what ``sxtdist import`` does) costs against interpolating them per
projection, as the import does for flats (docs/io.md, "Darks").

Two figures, on synthetic frames:

1. bias: the optical-depth error of the import itself (averaged darks, flats interpolated)
   for a linear drift, noise-free, at five transmissions;
2. noise: with detector read noise in the darks, the error at the first projection of
   averaged darks against darks interpolated between the sets (computed here): a bias for
   the first, more pixel-to-pixel noise (rings in a slice) for the second.

Usage: ``python benchmarks/dark_sets.py [--beam 4000] [--read-noise 3]``
"""

from __future__ import annotations

import argparse
import os
import tempfile

import h5py
import numpy as np

from sxtdist.io.importer import import_scan

DARK = 100.0
TRANSMISSIONS = np.array([0.9, 0.5, 0.2, 0.05, 0.02], np.float32)


def import_bias(drift: float, beam: float) -> np.ndarray:
    """Max |OD error| per transmission of an import of darks drifting by ``drift`` counts
    over the scan (10 darks, 10 flats, 180 projections, 10 flats, 10 darks)."""
    keys = np.r_[[2] * 10, [1] * 10, [0] * 180, [1] * 10, [2] * 10]
    level = DARK + drift * np.arange(keys.size) / (keys.size - 1)
    frames = np.empty((keys.size, 1, TRANSMISSIONS.size), np.float32)
    frames[:] = level[:, None, None]
    frames[keys == 0] += TRANSMISSIONS * beam
    frames[keys == 1] += beam
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.nx")
        with h5py.File(path, "w") as f:
            e = f.create_group("entry")
            e["definition"] = "NXtomo"
            det = e.create_group("instrument/detector")
            det["data"], det["image_key"], det["x_pixel_size"] = frames, keys, 30e-9
            angles = np.zeros(keys.size)
            angles[keys == 0] = np.linspace(-90, 90, 180)
            e["sample/rotation_angle"] = angles
        acq = import_scan(path, os.path.join(d, "a.zarr"), "roi", progress=False)
        od = acq["roi"].data.compute()[:, 0]
    return np.abs(od + np.log(TRANSMISSIONS)).max(axis=0)


def first_projection_errors(
    drift: float, sigma: float, beam: float, t: float, n_set: int = 10, n_px: int = 4096
) -> dict[str, tuple[float, float]]:
    """(mean, pixel-to-pixel rms) OD error at the first projection, darks averaged or
    interpolated, darks with read noise ``sigma`` (flats and projections noise-free)."""
    rng = np.random.default_rng(0)
    frames = 4 * n_set + 180
    level = DARK + drift * np.arange(frames) / (frames - 1)
    first = level[:n_set, None] + rng.normal(0, sigma, (n_set, n_px))
    last = level[-n_set:, None] + rng.normal(0, sigma, (n_set, n_px))
    i = 2 * n_set
    w = (i - (n_set - 1) / 2) / (frames - n_set)
    darks = {
        "averaged": np.r_[first, last].mean(axis=0),
        "interpolated": (1 - w) * first.mean(axis=0) + w * last.mean(axis=0),
    }
    out = {}
    for name, d in darks.items():
        err = -np.log((level[i] + t * beam - d) / (level[i] + beam - d)) + np.log(t)
        out[name] = (float(err.mean()), float(err.std()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beam", type=float, default=4000.0, help="flat counts above the dark")
    ap.add_argument("--read-noise", type=float, default=3.0, help="counts rms of a dark frame")
    a = ap.parse_args()
    print(
        f"1. import, darks averaged: max |OD error|, flat {a.beam:g} counts above a dark of {DARK:g}"
    )
    print("   drift  " + "  ".join(f"T {t:.2f}" for t in TRANSMISSIONS))
    for drift in (1.0, 5.0):
        errs = import_bias(drift, a.beam)
        print(f"   {drift:5g}  " + "  ".join(f"{e:6.4f}" for e in errs))
    print(f"2. first projection, read noise {a.read_noise:g} counts, 10 darks a set: mean / rms")
    for drift in (1.0, 5.0):
        for t in (0.2, 0.05):
            r = first_projection_errors(drift, a.read_noise, a.beam, t)
            print(
                f"   drift {drift:g}, T {t:g}: "
                + ", ".join(f"{k} {m:+.4f} / {s:.4f}" for k, (m, s) in r.items())
            )


if __name__ == "__main__":
    main()
