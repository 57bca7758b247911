"""What the pairs say about how the alignment went, without a truth: the misfit after the
solve, pairs weighted down, pairs that correlate far worse than the others; recorded in
the scan's record and logged."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import SxtdistWarning, option
from .pairs import PairResult, describe_pair, views_of

logger = logging.getLogger(__name__)


def log_pair_misfit(
    info: dict,
    results: Sequence[PairResult],
    misfit: np.ndarray | None,
    roi_angles: np.ndarray,
    margin: Sequence[int],
) -> None:
    """Record and log how far the solution is from the pairs: the largest misfit and its
    pair (on real data, with no truth, where a registration and the rest disagree), and
    how many pairs were left out for a peak on the edge of the search."""
    dropped = len(results) - info.get("pairs_used", len(results))
    if dropped:
        warnings.warn(
            f"{dropped} of {len(results)} pairs left out: their NCC peak lay on "
            f"the edge of the ±{margin[0]}×{margin[1]} px search range (raise "
            f"{option('--max-shift', 'max_shift_px')} if the views moved further)",
            SxtdistWarning,
            stacklevel=2,
        )
    if misfit is None or not np.isfinite(misfit).any():
        return
    length = np.hypot(misfit[:, 0], misfit[:, 1])
    worst = int(np.nanargmax(length))
    if length[worst] < 1e-6:  # a chain without anchors: no loop, every pair met exactly
        logger.info("pairs' misfit after the solve: none to see (the pairs form no loop)")
        return
    info["residual_largest_px"] = float(length[worst])
    info["residual_largest_pair"] = describe_pair(results[worst].pair, roi_angles)
    logger.info(
        "pairs' misfit after the solve: RMS %.3f px per component, largest %.3f px (%s)",
        info["residual_rms_px"],
        length[worst],
        info["residual_largest_pair"],
    )


#: Pairs named one by one in the log when weighted down or correlating poorly; beyond, a count.
PAIRS_NAMED = 5


#: A pair "lost its weight" for :func:`views_without_weight` below this share.
LOST_WEIGHT = 0.5


#: A pair whose ``1 - peak NCC`` is more than this many times the median of its kind
#: (anchors, neighbours) correlates far worse than the others. On the ``small`` preset
#: (seeds 1-24, 9 and 19 full views, paper dose and 3000 photons) one clean pair in 96
#: alignments passed 20 (45 times: an anchor 10° from its full view), and with half of
#: one frame lost every pair of that frame was 68-926 times (docs/dev/alignment-history.md).
POOR_PEAK_FACTOR = 20.0


def peak_loss_ratio(results: Sequence[PairResult]) -> np.ndarray:
    """``(len(results),)``: each pair's ``1 - peak NCC`` over the median of its kind's
    (anchors, neighbours); beyond :data:`POOR_PEAK_FACTOR` a pair correlates poorly."""
    kinds = np.array([r.pair.kind for r in results])
    loss = np.array([1.0 - r.peak for r in results], float)
    ratio = np.full(len(results), np.nan)
    for kind in set(kinds.tolist()):
        k = kinds == kind
        ratio[k] = loss[k] / max(float(np.median(loss[k])), 1e-12)
    return ratio


def log_poor_peaks(info: dict, results: Sequence[PairResult], roi_angles: np.ndarray) -> None:
    """Warn of the pairs that correlate far worse than the others (a damaged frame whose
    pairs all agree on a wrong shift shows in no misfit, but in its peaks), and of the
    interior views all of whose pairs do."""
    if not results:
        return
    ratio = peak_loss_ratio(results)
    poor = np.flatnonzero(ratio > POOR_PEAK_FACTOR)
    info["pairs_poor_peak"] = int(poor.size)
    if not poor.size:
        return
    named = _name_pairs(
        poor[np.argsort(-ratio[poor])], results, roi_angles, lambda k: f"{ratio[k]:.0f}×"
    )
    warnings.warn(
        f"pairs whose peak NCC is far below the others' (1 - peak over "
        f"{POOR_PEAK_FACTOR:g} times their kind's median): {named}",
        SxtdistWarning,
        stacklevel=2,
    )
    views = views_whose_pairs_all(
        results, ratio > POOR_PEAK_FACTOR, np.ones(len(results), bool), len(roi_angles)
    )
    info["views_poor_peak"] = views
    if views:
        warnings.warn(
            f"interior views all of whose pairs correlate poorly (check these "
            f"frames): {', '.join(map(str, views))}",
            SxtdistWarning,
            stacklevel=2,
        )


def views_whose_pairs_all(
    results: Sequence[PairResult], flagged: np.ndarray, counted: np.ndarray, n_views: int
) -> list[int]:
    """Interior views that have ``counted`` pairs, all of them ``flagged``."""
    bad = np.zeros(n_views, bool)
    good = np.zeros(n_views, bool)
    for r, f, c in zip(results, flagged, counted, strict=True):
        if c:
            for v in views_of(r.pair):
                (bad if f else good)[v] = True
    return [int(v) for v in np.flatnonzero(bad & ~good)]


def views_without_weight(
    results: Sequence[PairResult], kept: np.ndarray, n_views: int
) -> list[int]:
    """Interior views all of whose used pairs kept less than :data:`LOST_WEIGHT` of their
    weight: nothing the solve trusts ties them (a damaged frame, most likely)."""
    return views_whose_pairs_all(results, kept < LOST_WEIGHT, np.isfinite(kept), n_views)


def _name_pairs(
    order: np.ndarray,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    note: Callable[[int], str],
) -> str:
    """The first :data:`PAIRS_NAMED` pairs of ``order`` in words, each with ``note(k)``,
    and how many more."""
    named = ", ".join(
        f"{describe_pair(results[k].pair, roi_angles)} ({note(k)})" for k in order[:PAIRS_NAMED]
    )
    return named + (f" and {len(order) - PAIRS_NAMED} more" if len(order) > PAIRS_NAMED else "")


def log_pairs_weighted_down(
    info: dict,
    results: Sequence[PairResult],
    kept: np.ndarray | None,
    roi_angles: np.ndarray,
    n_views: int,
) -> None:
    """Record and log the pairs the others contradicted (weighted down by the robust rule)
    and the interior views left with no trusted pair."""
    if kept is None:
        return
    down = np.flatnonzero(kept < 1)  # NaN (left out) compares False
    info["pairs_downweighted"] = int(down.size)
    if not down.size:
        return
    named = _name_pairs(
        down[np.argsort(kept[down])], results, roi_angles, lambda k: f"to {kept[k]:.0%}"
    )
    logger.info("pairs the others contradict, weighted down in the solve: %s", named)
    lost = views_without_weight(results, kept, n_views)
    info["views_without_weight"] = lost
    if lost:
        warnings.warn(
            f"interior views whose every pair lost its weight (check these "
            f"frames): {', '.join(map(str, lost))}",
            SxtdistWarning,
            stacklevel=2,
        )
