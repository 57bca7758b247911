"""One verdict per alignment, from what the pairs say (no truth needed): ``trusted``, or
``check views ...`` with the views and why.

A view is named when

- no registration that the solve used ties it (every pair of it left out at the edge
  of the search, or weighted down to less than half: :data:`LOST_WEIGHT`);
- all its pairs correlate far worse than the others (a damaged frame): ``1 - peak NCC``
  over :data:`POOR_PAIRS_FACTOR` times the median of their kind;
- a pair of it disagrees with the solution by more than :data:`MISFIT_FLAG_PX` in the
  solve's own units (the misfit times the square root of the pair's weight: a far
  anchor's misfit counts as little as it weighs): the loops of anchors and neighbours
  through it do not close (a pair the robust rule weighted down counts too: it was
  contradicted, or it was right and the rest is not);
- (full views) its own estimate was rejected by the joint solve, or the detector's
  edges cut its cell, and fewer than :data:`MIN_ANCHORS` anchors tie it instead;
- (full views) none of its anchors is trusted: the interior cannot check it, and the
  interior views at its angles hang on neighbours from afar (a search narrower than the
  motion leaves whole stretches so: with ``--max-shift 5`` on drift with slips, one
  development run kept 6 of 90 anchors and ended up to 7 px off, every pair closing);
- it moves more than :data:`~sxtdist.alignment.consistency.MOVE_FLAG_PX` when the
  measurements of one full view, which the rest of the data contradict, are left out
  (:mod:`sxtdist.alignment.consistency`): an error the pairs of a stretch share; that
  full view is named too;
- its ``dy`` moves more than :data:`~sxtdist.alignment.consistency.MOVE_FLAG_PX` when
  every full view's own estimate is left out (the pairs alone): an error those estimates
  share, which no one of them left out shows; the full views whose own ``dy`` the pairs
  alone put as far off are named too;
- its standard error in ``dy`` or ``dx`` is more than
  :data:`~sxtdist.alignment.confidence.SIGMA_RATIO_FLAG` times the scan's median
  (:func:`~sxtdist.alignment.confidence.weakly_tied`): the solve ties it far less than
  its typical view (a stretch of full views whose own ``dx`` the edges cut leaves the
  interior at their angles on the chain of neighbours alone), so an error the pairs
  share there shows in no misfit;
- its nearest full view lies in a run of consecutive full views without their own ``dx``
  (cut by the detector's edges, or rejected) spanning at least
  :data:`~sxtdist.alignment.cut_stretches.CUT_STRETCH_FLAG_DEG`
  (:mod:`sxtdist.alignment.cut_stretches`): nothing there ties a slow ``dx`` error that
  the pairs share, and no reprojection shows one; those full views are named too;
- no full view's own estimate weighs more than the gauge in the joint solve (the full
  scan's ``dx`` from the plain centre of mass, as on the ``tiny`` preset's 16-row views, or
  from projection matching: :func:`~sxtdist.alignment.shifts.full_prior_weights`): the
  whole scan is such a stretch, in ``dy`` too; every view of both scans is named
  (:func:`own_estimates_unused`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .confidence import SIGMA_RATIO_FLAG
from .consistency import MOVE_ALWAYS_PX, MOVE_FLAG_PX
from .cut_stretches import CUT_STRETCH_FLAG_DEG
from .diagnostics import LOST_WEIGHT, peak_loss_ratio
from .pairs import PairResult, views_of

#: A pair whose misfit after the solve, times the square root of its weight, is longer
#: than this (interior px) names its views. On the ``small`` preset's control motion
#: (σ 3 px, development seeds 1-6, 9 and 19 full views, paper dose) the largest is
#: 0.045-0.126 px per alignment; a view off by 0.5 px in a loop of neighbours leaves
#: about half of it on each of its two neighbour pairs.
MISFIT_FLAG_PX = 0.25
#: A view all of whose pairs' ``1 - peak NCC`` is over this many times the median of their
#: kind is named (the log names single pairs only beyond
#: :data:`~sxtdist.alignment.diagnostics.POOR_PEAK_FACTOR`). On the control motion
#: (development seeds 1-6, 9 and 19 full views) no view's pairs all pass 1.85; half of
#: one ``tiny`` frame lost puts its three pairs at 5.6-9.3 (and the view 0.64 px off,
#: its pairs agreeing with each other).
POOR_PAIRS_FACTOR = 4.0
#: A full view whose own estimate the joint solve rejected needs this many used anchors.
MIN_ANCHORS = 2
#: What the verdict says of a view that another check names (:func:`judge`'s ``named``),
#: per check and scan.
NAMED_REASONS: dict[str, dict[str, str]] = {
    "pairs_alone": {
        "roi": f"dy move over {MOVE_FLAG_PX:g} px without the full views' own estimates",
        "full": "own dy contradicted by the pairs alone",
    },
    "weakly_tied": {"roi": f"standard error over {SIGMA_RATIO_FLAG:g} times the median"},
    "cut_stretch": {
        "roi": f"full views' own dx cut over {CUT_STRETCH_FLAG_DEG:g}° or more",
        "full": f"own dx cut, in a stretch of {CUT_STRETCH_FLAG_DEG:g}°+",
    },
    "own_unused": {
        "roi": "no full view's own shift ties it",
        "full": "own shift only fixes the gauge",
    },
}


@dataclass
class Verdict:
    """The views to check (none: trusted), per scan, with the reason for each."""

    roi: dict[int, str] = field(default_factory=dict)
    full: dict[int, str] = field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        return not self.roi and not self.full

    def line(self) -> str:
        """``trusted`` or ``check views roi 12, 13 (pair misfit ...); full 4 (...)``."""
        if self.trusted:
            return "trusted"
        parts = [f"{scan} {_by_reason(views)}" for scan, views in self.scans() if views]
        return "check views " + "; ".join(parts)

    def scans(self) -> list[tuple[str, dict[int, str]]]:
        return [("roi", self.roi), ("full", self.full)]

    def scan_line(self, scan: str) -> str:
        """One scan's part: ``trusted`` or ``check views 12, 13 (pair misfit ...)``."""
        views = dict(self.scans())[scan]
        return f"check views {_by_reason(views)}" if views else "trusted"


def own_estimates_unused(
    gauge_only: Sequence[int], n_roi: int, n_full: int
) -> dict[str, list[int]]:
    """The views the ``own_unused`` check of :func:`judge` names: every view of both scans
    when every one of the ``n_full`` full views is in ``gauge_only`` (its own estimate
    weighs no more than the gauge in the joint solve, ``full_views_gauge_only`` in the
    record), else none.

    The interior and the full views are then placed by the pairs alone: an error the
    anchors of a full view share (its noise, a rotation bias) moves it and the interior
    views it anchors together, every loop closing. On the ``tiny`` preset (the demo's
    settings, development seeds 1-12) every full scan's ``dx`` came from the plain centre
    of mass and the runs ended 0.40-0.77 px off (8 of 12 past 0.5 px), their standard
    errors 0.04-0.13 px, their largest pair misfit naming 2 of them; no ``small`` control
    run leaves its full views' own estimates out."""
    if n_full == 0 or not set(range(n_full)) <= {int(j) for j in gauge_only}:
        return {"roi": [], "full": []}
    return {"roi": list(range(n_roi)), "full": list(range(n_full))}


def _by_reason(views: dict[int, str]) -> str:
    by_reason: dict[str, list[int]] = {}
    for v, why in sorted(views.items()):
        by_reason.setdefault(why, []).append(v)
    return "; ".join(f"{_listed(vs)} ({why})" for why, vs in by_reason.items())


def _listed(views: Sequence[int], most: int = 12) -> str:
    shown = ", ".join(map(str, views[:most]))
    return shown + (f" and {len(views) - most} more" if len(views) > most else "")


def judge(
    results: Sequence[PairResult],
    misfit: np.ndarray | None,
    kept: np.ndarray | None,
    weights: np.ndarray,
    n_roi: int,
    full_rejected: Sequence[int] = (),
    left_out: Sequence[Sequence[float]] = (),
    full_no_signal: Sequence[int] = (),
    named: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
) -> Verdict:
    """The verdict on an interior alignment from its pairs (``misfit`` ``(m, 2)`` and
    ``kept`` ``(m,)`` as :class:`~sxtdist.alignment.AlignmentResult` holds them, NaN for a
    pair left out; ``weights``: the pairs' least-squares weights,
    :func:`~sxtdist.alignment.shifts.pair_weights`), the full views whose own estimate
    the joint solve rejected (or could not use) and the leave-one-out check's
    ``[interior view, full view, move px, contradicted (0/1)]`` (``leave_one_out_flagged``,
    :meth:`~sxtdist.alignment.consistency.LeaveOneOut.flagged`) and the full views with no
    signal (constant or not finite: their own estimate measured nothing), and ``named``:
    the views other checks name, ``{check: {"roi": [...], "full": [...]}}`` for the checks
    of :data:`NAMED_REASONS`: ``pairs_alone`` (the pairs alone place them otherwise in
    ``dy``, :meth:`~sxtdist.alignment.consistency.PairsAlone.flagged`), ``weakly_tied``
    (the solve ties them weakly, :func:`~sxtdist.alignment.confidence.weakly_tied`) and
    ``cut_stretch`` (a wide stretch without the full views' own ``dx``,
    :func:`~sxtdist.alignment.cut_stretches.views_in_cut_stretches`) and ``own_unused``
    (no full view's own estimate used, :func:`own_estimates_unused`)."""
    verdict = Verdict()
    m = len(results)
    misfit = np.full((m, 2), np.nan) if misfit is None else np.asarray(misfit, float)
    kept = np.full(m, np.nan) if kept is None else np.asarray(kept, float)
    trusted = np.isfinite(kept) & (kept >= LOST_WEIGHT)
    tied = np.zeros(n_roi, bool)
    for r, ok in zip(results, trusted, strict=True):
        if ok:
            tied[list(views_of(r.pair))] = True
    for v in np.flatnonzero(~tied):
        verdict.roi[int(v)] = "no trusted pair"
    if m:
        poor = peak_loss_ratio(results) > POOR_PAIRS_FACTOR
        has_good = np.zeros(n_roi, bool)
        has_poor = np.zeros(n_roi, bool)
        for r, p in zip(results, poor, strict=True):
            for v in views_of(r.pair):
                (has_poor if p else has_good)[v] = True
        for v in np.flatnonzero(has_poor & ~has_good):
            verdict.roi.setdefault(int(v), "pairs correlate poorly")
    length = np.hypot(misfit[:, 0], misfit[:, 1]) * np.sqrt(np.asarray(weights, float))
    for r, size in zip(results, length, strict=True):
        if size > MISFIT_FLAG_PX:  # NaN (left out) compares False
            for v in views_of(r.pair):
                verdict.roi.setdefault(int(v), f"pair misfit over {MISFIT_FLAG_PX:g} px")
    anchors = np.zeros(max([r.pair.j for r in results if r.pair.kind == "anchor"] + [-1]) + 1)
    planned = np.zeros_like(anchors)
    for r, ok in zip(results, trusted, strict=True):
        if r.pair.kind == "anchor":
            planned[r.pair.j] += 1
            anchors[r.pair.j] += ok
    for j in np.flatnonzero((planned > 0) & (anchors == 0)):
        verdict.full[int(j)] = "no trusted anchor"
    for j in full_rejected:
        if j >= len(anchors) or anchors[j] < MIN_ANCHORS:
            verdict.full[int(j)] = "own estimate rejected, too few anchors"
    for i, j, _, *significant in left_out:
        if not significant or significant[0]:
            verdict.roi.setdefault(
                int(i), f"move over {MOVE_FLAG_PX:g} px without full view {int(j)}"
            )
            verdict.full.setdefault(int(j), "contradicted by the rest (leave-one-out)")
        else:  # named by the size of the move alone: the rest did not contradict it
            verdict.roi.setdefault(
                int(i), f"move over {MOVE_ALWAYS_PX:g} px without full view {int(j)}"
            )
            verdict.full.setdefault(int(j), "alone carries interior views (leave-one-out)")
    for check, scans in (named or {}).items():
        for scan, views in scans.items():
            for v in views:
                getattr(verdict, scan).setdefault(int(v), NAMED_REASONS[check][scan])
    for j in full_no_signal:  # the cause of whatever else its anchors showed
        verdict.full[int(j)] = "no signal"
    return verdict
