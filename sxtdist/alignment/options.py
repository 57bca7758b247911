"""The alignment's own settings (what is estimated and how), in one object.

Where and how the work runs is :class:`sxtdist.execution.Execution`'s; this is the rest:
the method, the search, the blur, the robust rules, the intensity model, the full
scan's projection matching.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError, option
from .shifts import ROBUST_PAIRS, ROBUST_PRIOR

METHODS = ("anchor", "neighbour", "projection-matching")
INTENSITY_MODELS = ("dual_energy", "affine", "none")


@dataclass(frozen=True)
class AlignOptions:
    """How :func:`sxtdist.align` aligns (checked on construction: a bad value is a
    :class:`~sxtdist.errors.ParameterError`).

    Attributes
    ----------
    method
        Interior scan: ``"anchor"`` (anchors plus neighbour chain, eq. 14) or
        ``"neighbour"`` (neighbour chain only, relative shifts with mean zero).
        ``"projection-matching"`` aligns only full-field scans (their own method).
    max_shift_px
        Largest shift searched, interior pixels (default 45 % of the interior view's
        smaller side). The coarse pass searches this far; a pair's own search is the
        pairs' margin around what the coarse pass predicts, widened (never beyond this)
        when its peak lies on its edge.
    coarse
        Register every anchor pair over the whole search range first (binned for large
        views) and centre the pairs' searches on what that predicts; ``False``: every
        pair searches the pairs' margin around zero (the search before version 0.3).
    smooth_px
        Gaussian sigma (ROI px) added to every compared image against noise.
    anchor_window_deg
        Largest angle between an interior view and its anchor (default: half the full
        scan's angular step).
    rotation_model, refine
        See :func:`sxtdist.alignment.shifts.solve_shifts`.
    joint
        When both scans are aligned by anchors, also correct the full scan's shifts from
        the interior pairs (:func:`sxtdist.alignment.shifts.solve_joint`); not combined
        with ``refine``.
    robust_pairs
        A pair whose misfit is beyond this many robust standard deviations of all pairs'
        loses weight (a damaged frame; :func:`sxtdist.alignment.shifts.robust_pair_weights`).
        ``None`` or 0: plain least squares.
    robust_prior
        The same for the full views' own estimates in the joint solve.
    intensity
        Intensity transform fitted between the scans and stored (``"none"``: skip).
    full_iterations, tol_px
        Projection-matching iterations after the full scan's moments and their stopping
        tolerance (px). Default: none (on sparse scans it made the moments' estimate
        worse; see :func:`sxtdist.alignment.fullscan.align_full_scan`), unless
        ``method="projection-matching"`` asks for it (then 10).
    """

    method: str = "anchor"
    max_shift_px: float | None = None
    coarse: bool = True
    smooth_px: float = 1.0
    anchor_window_deg: float | None = None
    rotation_model: bool = True
    refine: bool = False
    joint: bool = True
    robust_pairs: float | None = ROBUST_PAIRS
    robust_prior: float | None = ROBUST_PRIOR
    intensity: str = "dual_energy"
    full_iterations: int | None = None
    tol_px: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ParameterError(
                f"unknown alignment method {self.method!r} (choose from {METHODS})"
            )
        if self.intensity not in INTENSITY_MODELS:
            raise ParameterError(f"unknown intensity model {self.intensity!r} ({INTENSITY_MODELS})")
        if self.smooth_px < 0:
            raise ParameterError(f"smoothing must not be negative, got {self.smooth_px}")
        for name in ("robust_pairs", "robust_prior"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ParameterError(
                    f"{name.replace('_', ' ')}: a number of standard deviations >= 0 "
                    f"(0: off), got {value}"
                )
        if self.max_shift_px is not None and not self.max_shift_px >= 1:
            raise ParameterError(
                f"{option('--max-shift', 'max_shift_px')} must be at least 1 px, "
                f"got {self.max_shift_px}"
            )
        if self.projection_iterations < 0 or not self.tol_px > 0:
            raise ParameterError(
                "projection matching needs iterations >= 0 and a positive tolerance"
            )

    @property
    def projection_iterations(self) -> int:
        """``full_iterations``, its default resolved."""
        if self.full_iterations is not None:
            return int(self.full_iterations)
        return 10 if self.method == "projection-matching" else 0

    @classmethod
    def of(cls, options: AlignOptions | None = None, **shortcuts: Any) -> AlignOptions:
        """``options`` (default: all defaults) with the fields given as keywords replaced
        (``None`` included: it means the field's own "none" or "default")."""
        if options is not None and not isinstance(options, AlignOptions):
            raise ParameterError(
                f"options must be an sxtdist.alignment.AlignOptions, got {options!r}"
            )
        base = options if options is not None else cls()
        return dataclasses.replace(base, **shortcuts) if shortcuts else base


def option_fields() -> frozenset[str]:
    """The names of :class:`AlignOptions`' fields."""
    return frozenset(f.name for f in dataclasses.fields(AlignOptions))
