"""Stretches of the scan where no full view's own ``dx`` ties the alignment: consecutive full
views whose cell the detector's edges cut (or whose own estimate the joint solve
rejected), spanning a wide angle.

An error in ``dx`` that a whole stretch of the interior shares, the pairs agreeing
along it, shows in no check of the pairs, nor in a reprojection: a shift error that varies
slowly with the angle is what a deformed object would give (at a spatial frequency
``k``, data consistent with an object of radius ``R`` carry angular harmonics up to about
``k R``; a smooth error adds a few, which a slightly different object absorbs at all but
the lowest ``k``). Reconstructing the interior from the aligned data (a 24-slice slab,
10 CGNE iterations) and registering each view to its reprojection, with the view in the
reconstruction or with every other view left out, gave residuals uncorrelated with the
errors on ``align_motion.py --families drift --motion-scale 3 --full 9 --seeds 9``
(correlation 0.03-0.04 in ``dx``, 0.75 px off, residuals up to 0.61 px on a view right to
0.1 px); a 30° stretch left out gave 2.5 px of noise; one projection-matching step on the
full views (their cut columns completed by reprojection) moved them by up to 0.9 px (9
full views) and 3.4 px (19, seed 12) where they were at most 0.30 and 0.35 full px off
(docs/dev/alignment-history.md).

What ties a slow ``dx`` error is the first moment of a full view that sees the whole
cell (:func:`~sxtdist.alignment.fullscan.weighted_centroid_dx`). Where the detector's edges
cut a run of consecutive full views, the interior at their angles hangs on the chain of
neighbours and on anchors up to half the full scan's step away, whose rotation biases add
up along it; and the object's position is fitted to the full views left, over a shorter
arc, so views elsewhere can be off too. On the development runs of ``align_motion.py
--families drift --motion-scale 3`` (seeds 1-12, 9 and 19 full views) the 16 runs with
such a stretch of :data:`CUT_STRETCH_FLAG_DEG` or more (57-180°) ended 0.60-38 px off but
one (60°, 0.35 px), the two the other checks missed among them (80° and 66°); of the runs
with a shorter one, every run past 0.5 px was named by another check (the widest: 40°,
0.72 px), and the others reached 38° (0.38 px). No control run (seeds 1-12) nor ``large``
run (1-6) had a stretch over 20°. The span counts views, not their errors: it reads the
design, like the standard errors' ratio (:mod:`~sxtdist.alignment.confidence`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: A stretch of consecutive full views without their own ``dx`` (angles modulo 180°, the
#: scan's two ends meeting through the mirrored view) that spans at least this many
#: degrees (views times the full scan's step) names the interior views at its angles.
CUT_STRETCH_FLAG_DEG = 50.0


def cut_stretch_deg(full_angles_deg: np.ndarray, untied: Iterable[int]) -> np.ndarray:
    """``(n_full,)``: for each full view in ``untied`` (its own ``dx`` cut or rejected),
    the angle its run of consecutive such views spans (views times the full scan's
    median step; the run may pass from the scan's last view to its first, 180° apart);
    0 for the others. A scan whose every view is untied spans its whole arc."""
    phi = np.asarray(full_angles_deg, float)
    n = phi.size
    out = np.zeros(n)
    bad = np.zeros(n, bool)
    bad[[int(j) for j in untied if 0 <= int(j) < n]] = True
    if n < 2 or not bad.any():
        return out
    order = np.argsort(np.mod(phi, 180.0))
    step = float(np.median(np.diff(np.sort(np.mod(phi, 180.0)))))
    ring = bad[order]
    if ring.all():
        return np.full(n, n * step)
    start = int(np.flatnonzero(~ring)[0]) + 1  # walk the ring from just after a tied view
    run: list[int] = []
    for k in range(start, start + n + 1):
        pos = k % n
        if ring[pos] and k < start + n:
            run.append(int(order[pos]))
            continue
        out[run] = len(run) * step
        run = []
    return out


def views_in_cut_stretches(
    roi_angles_deg: np.ndarray,
    full_angles_deg: np.ndarray,
    span_deg: np.ndarray,
    flag_deg: float = CUT_STRETCH_FLAG_DEG,
) -> tuple[np.ndarray, np.ndarray]:
    """The full views whose run of untied full views spans at least ``flag_deg``
    (``span_deg``: :func:`cut_stretch_deg`'s answer, which the caller records too), and the
    interior views whose nearest full view (angles modulo 180°; either, halfway between
    two) is one of them. Returns ``(interior views, full views)``."""
    full = np.flatnonzero(np.asarray(span_deg, float) >= flag_deg)
    if not full.size:
        return np.zeros(0, int), full
    theta = np.mod(np.asarray(roi_angles_deg, float), 180.0)
    phi = np.mod(np.asarray(full_angles_deg, float), 180.0)
    apart = np.abs(theta[:, None] - phi[None, :])
    apart = np.minimum(apart, 180.0 - apart)
    # a view halfway between a named full view and another counts as near the named one
    near = apart[:, full].min(axis=1) <= apart.min(axis=1) + 1e-9
    return np.flatnonzero(near), full
