"""What :func:`sxtdist.align` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..dataset import Acquisition
from .gauge import rms, shift_errors
from .pairs import PairResult


@dataclass
class AlignmentResult:
    """What :func:`align` found: per scan shifts, a record of how, and the pair results."""

    shifts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    pairs: list[PairResult] = field(default_factory=list)
    #: ``(len(pairs), 2)``: each pair's measured peak less the one the solved shifts
    #: predict (``dy, dx``, interior px; NaN for a pair whose peak lay on the edge of its
    #: search and was left out). Large where the solution disagrees with a registration.
    pair_misfit: np.ndarray | None = None
    #: ``(len(pairs),)``: the share of its weight each pair kept in the solve (1 for most;
    #: less for a pair the others contradict; NaN for one left out).
    pair_kept_weight: np.ndarray | None = None
    intensity_transform: dict | None = None
    report_dir: str | None = None
    stored: bool = False

    def error_arrays(self, acq: Acquisition) -> dict[str, np.ndarray]:
        """``(n_angles, 2)`` errors (px) of each scan's shifts that the simulation has true
        shifts for, less the one object translation that best explains them all
        (:func:`~sxtdist.alignment.gauge.shift_errors`); empty without a truth."""
        truth = (acq.truth_meta or {}).get("shifts_px") or {}
        found = {name: d for name, d in self.shifts.items() if name in truth}
        if not found:
            return {}
        return shift_errors(found, truth, {name: acq[name].geometry for name in found})

    @property
    def verdict(self) -> str:
        """``trusted``, or ``check views ...`` with the views of each scan to check and why
        (:mod:`sxtdist.alignment.verdict`); ``trusted`` for a scan aligned on its own."""
        lines = [
            f"{name} {info['verdict'].removeprefix('check views ')}"
            for name, info in self.info.items()
            if info.get("verdict", "trusted") != "trusted"
        ]
        return "check views " + "; ".join(lines) if lines else "trusted"

    def errors(self, acq: Acquisition) -> dict[str, float]:
        """RMS of :meth:`error_arrays` per scan (px)."""
        return {name: rms(e) for name, e in self.error_arrays(acq).items()}
