"""Small input files for the import tests: NXtomo with a falling beam, TIFFs with angle lists."""

from __future__ import annotations

import h5py
import numpy as np
import tifffile


def decaying_nxtomo(path, keys, transmission, beam0=4000.0, decay=0.004, dark=100.0):
    """An NXtomo whose beam falls linearly with the frame index i: ``beam0 (1 - decay i)``.

    Frames keyed ``keys`` (0 projection, 1 flat, 2 dark): flats read ``dark + beam(i)``,
    projections ``dark + T beam(i)`` with ``T`` from ``transmission`` (one per projection),
    darks ``dark`` (float32: no rounding); projections over -60..60 degrees, 30 nm pixels.
    Returns the frames written.
    """
    keys = np.asarray(keys)
    beam = beam0 * (1.0 - decay * np.arange(keys.size))
    frames = np.full((keys.size, *transmission.shape[1:]), dark, np.float32)
    frames[keys == 0] += transmission * beam[keys == 0, None, None]
    frames[keys == 1] += beam[keys == 1, None, None]
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det["data"] = frames
        det["image_key"] = keys.astype(np.int32)
        det["x_pixel_size"] = 30e-9
        angles = np.zeros(keys.size)
        angles[keys == 0] = np.linspace(-60, 60, int(np.sum(keys == 0)))
        e["sample/rotation_angle"] = angles
    return frames


def import_with_angle_lines(tmp_path, run_cli, lines):
    """``sxtdist import`` of a TIFF of ``len(lines)`` frames with the angle list ``lines``
    (``tilt.csv``) into ``a.zarr``; the exit code and standard error."""
    frames = np.full((len(lines), 5, 5), 0.5, np.float32)
    tifffile.imwrite(tmp_path / "p.tif", frames, photometric="minisblack")
    (tmp_path / "tilt.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run_cli(
        "import", tmp_path / "p.tif", tmp_path / "a.zarr", "--scan=roi",
        "--angles", tmp_path / "tilt.csv", "--pixel-size-nm=30", "-q",
    )  # fmt: skip
    return code, err
