"""Known stage motion for the simulator: a user's own, or one of a few families.

The motion is what :func:`sxtdist.simulate` moves each view by inside the forward
model (``motion=``, ``sxtdist simulate --motion FILE``): one ``(dy, dx)`` per view, in
that scan's pixels, with the sign convention of the stored truth
(``truth.shifts_px``; :mod:`sxtdist.geometry`). The file is a JSON object::

    {"full": [[dy, dx], ...], "roi": [[dy, dx], ...]}

with one pair per view of each scan it names (a scan it does not name gets the
simulator's random shifts). :func:`write_motion` puts its mark first,
``"sxtdist": {"kind": "motion", ...}``, which the reader passes over: only a file so
marked is one it may replace (a user's own motion file has none). :func:`motion_family` draws the families the alignment
benchmark (``benchmarks/align_motion.py``) is measured on.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import InputError, ParameterError
from ..file_kinds import MOTION_KEY
from ..geometry import ScanGeometry
from ..outputs import writing


def read_motion(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path`` (checked against the scans by :func:`check_motion`)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:  # -sig: saved with a BOM
            raw = json.load(fh)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise InputError(path, 'expected a JSON object {"full": [[dy, dx], ...], "roi": [...]}')
    return raw


#: Known motion: ``{scan: (n_views, 2)}`` shifts, or the path of a JSON file of them.
Motion = Mapping[str, Any] | str | os.PathLike


def check_motion(motion: Motion, geometries: Mapping[str, ScanGeometry]) -> dict[str, np.ndarray]:
    """``motion`` (read first when it is a path) as ``(n_views, 2)`` arrays, one row per
    view of each scan it names; an error (naming the file, if one) when a scan is unknown
    or a count does not match its views."""
    source = None
    if isinstance(motion, (str, os.PathLike)):
        source = os.fspath(motion)
        motion = read_motion(source)
    out = {}
    for name, value in motion.items():
        if name == MOTION_KEY and source:  # write_motion's mark, not a scan
            continue
        try:
            d = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            d = np.zeros(0)
        if name not in geometries:
            problem = f"unknown scan {name!r} (expected {' or '.join(geometries)})"
        elif d.ndim != 2 or d.shape[1:] != (2,) or not np.isfinite(d).all():
            problem = f"{name}: expected a list of [dy, dx] pairs of numbers"
        elif len(d) != geometries[name].n_angles:
            problem = f"{name}: {len(d)} shifts for {geometries[name].n_angles} views"
        else:
            out[name] = d
            continue
        raise InputError(source, problem) if source else ParameterError(f"motion: {problem}")
    return out


def write_motion(
    path: str | os.PathLike[str], motion: Mapping[str, np.ndarray], *, overwrite: bool = False
) -> None:
    """Write ``motion`` in the format :func:`read_motion` reads.

    Parameters
    ----------
    path
        The file to write.
    motion
        Per-view shifts ``{scan: (n_views, 2)}``.
    overwrite
        Replace a motion file that this function wrote (it carries its mark,
        ``"sxtdist": {"kind": "motion", ...}``). Without it any file at ``path`` is
        refused (:class:`~sxtdist.errors.OutputExistsError`); with it, any other file (a
        user's own motion file, in the same format but unmarked) still is, left whole.

    Raises
    ------
    OutputExistsError
        A file is at ``path`` that may not be replaced; the message names it.
    InputError
        ``path`` is a folder, or a symbolic link to anything but a motion file of
        sxtdist's.

    Notes
    -----
    Written as every output is (:func:`sxtdist.outputs.writing`): under the lock of
    ``path``, beside it, and renamed over it when whole, ``path`` checked again first; a
    failed write leaves what was there.
    """
    data = {k: np.asarray(v, float).round(6).tolist() for k, v in motion.items()}
    # the mark first: what tells this file from a user's (file_kinds.is_motion reads it)
    mark = {"kind": "motion", "software": f"sxtdist {__version__}"}
    with writing(path, "motion", overwrite=overwrite, file=True) as target:
        with open(target.write_path, "w", encoding="utf-8") as fh:
            json.dump({MOTION_KEY: mark, **data}, fh)


#: The motion families of :func:`motion_family`, in words. Amplitudes are in interior
#: pixels, and the full scan moves as far in nanometres, except where a family says
#: "each scan's pixels"; ``W`` is the interior field's width.
MOTION_FAMILIES = {
    "jitter": "sub-pixel jitter, σ 0.3 px",
    "control": "random, σ 3 px in each scan's pixels (the simulator's own shifts)",
    "drift": "slow drift of 5-10 px amplitude, plus 0.3 px jitter",
    "slips": "slow drift of 2-5 px with 2-3 stage slips of 4-8 px (1-2 in the full scan)",
    "large": "random, σ W/8 clipped at W/4 (25 % of the interior field's width)",
    "outlier-roi": "random, σ 1 px, and one interior view 10-15 px off",
    "outlier-full": "random, σ 1 px, and one full view 15 full-scan px off",
}


def motion_family(
    family: str, geometries: Mapping[str, ScanGeometry], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-view shifts ``{scan: (n_views, 2)}`` of one of :data:`MOTION_FAMILIES` for
    the scans ``"full"`` and ``"roi"`` of ``geometries`` (views in acquisition order, the
    order of their angles)."""
    if family not in MOTION_FAMILIES:
        raise ParameterError(f"unknown motion family {family!r} ({', '.join(MOTION_FAMILIES)})")
    roi, full = geometries["roi"], geometries["full"]
    to_full = roi.pixel_size_nm / full.pixel_size_nm  # interior px -> full px
    width = roi.detector_shape[1]
    out = {}
    for name, g, unit in (("full", full, to_full), ("roi", roi, 1.0)):
        n = g.n_angles
        if family == "jitter":
            d = rng.normal(0.0, 0.3 * unit, (n, 2))
        elif family == "control":
            d = rng.normal(0.0, 3.0, (n, 2))
        elif family == "drift":
            d = _drift(n, rng, rng.uniform(5.0, 10.0, 2) * unit) + rng.normal(0, 0.3 * unit, (n, 2))
        elif family == "slips":
            slips = rng.integers(2, 4) if name == "roi" else rng.integers(1, 3)
            d = _drift(n, rng, rng.uniform(2.0, 5.0, 2) * unit) + _slips(
                n, rng, slips, (4.0 * unit, 8.0 * unit)
            )
            d += rng.normal(0, 0.3 * unit, (n, 2))
        elif family == "large":
            d = np.clip(
                rng.normal(0.0, width / 8 * unit, (n, 2)), -width / 4 * unit, width / 4 * unit
            )
        else:
            d = rng.normal(0.0, unit, (n, 2))
            if family == f"outlier-{name}":
                k = int(rng.integers(1, n - 1))
                size = rng.uniform(10.0, 15.0) if name == "roi" else 15.0
                d[k] += size * _direction(rng)
        out[name] = d
    return out


def _direction(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0.0, 2.0 * math.pi)
    return np.array([math.sin(a), math.cos(a)])


def _drift(n: int, rng: np.random.Generator, amplitude: np.ndarray) -> np.ndarray:
    """A slow random curve per axis over ``n`` views: a ramp and three random sines of
    periods from the whole scan down to a third of it, scaled to ``amplitude`` at its
    largest."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    k = np.arange(1, 4)[None, :]
    curves = []
    for a in amplitude:
        c = rng.normal(0.0, 1.0) * t[:, 0] + (
            rng.normal(0.0, 1.0, 3)
            / k[0]
            * np.sin(math.pi * k * t + rng.uniform(0, 2 * math.pi, 3))
        ).sum(axis=1)
        c -= c.mean()
        curves.append(a * c / max(np.abs(c).max(), 1e-12))
    return np.stack(curves, axis=1)


def _slips(n: int, rng: np.random.Generator, count: int, size: tuple[float, float]) -> np.ndarray:
    """Steps that persist: ``count`` slips of ``size`` (range) in random directions, at
    random views."""
    d = np.zeros((n, 2))
    for k in rng.choice(np.arange(1, n), size=min(count, n - 1), replace=False):
        d[k:] += rng.uniform(*size) * _direction(rng)
    return d
