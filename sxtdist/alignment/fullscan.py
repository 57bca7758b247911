"""The sparse full-field scan aligned on its own: row profiles (``dy``), weighted first
moments (``dx`` and the rotation axis), optionally projection matching."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from ..geometry import ScanGeometry
from ..operators.base import Diagonal
from ..solvers import sirt
from .gauge import axis_offset_px, remove_gauge, sinusoid_basis
from .ncc import NccSurface, ncc_map
from .resample import pad_with_mask, shift_image


def row_profile_dy(views: np.ndarray, max_shift: int, refinements: int = 2) -> np.ndarray:
    """Vertical shifts from the rows' total mass, which parallel beam makes angle-independent.

    Each view's row sums are first registered (1D NCC, sub-pixel) to their median
    profile, which finds shifts up to ``max_shift``. That alone is biased by 0.04-0.12
    px on noise-free ``small`` data: the median of unaligned profiles is blurred, and
    a spline through an NCC map locks sub-pixel peaks towards whole pixels. So
    ``refinements`` passes follow (:func:`_refine_profile_shifts`): the reference is
    rebuilt from the profiles moved back by the current shifts, and each profile is
    fitted to it by least squares in a sub-pixel shift, a gain and an offset (a
    background cut differently by the detector's edges changes only the offset).
    Noise-free: 0.001-0.009 px. The result has mean zero (the common vertical offset
    is undetermined).
    """
    prof = np.asarray(views, np.float64).sum(axis=2)  # (n, rows)
    ref = np.median(prof, axis=0)
    m = int(max_shift)
    out = np.zeros(len(prof))
    # as 2D images three columns wide (the bicubic surface needs two axes)
    r, mr = pad_with_mask(np.repeat(ref[:, None], 3, axis=1), (m, 1))
    mt = np.ones((prof.shape[1], 3), bool)
    mt[:m] = mt[prof.shape[1] - m :] = False  # the edge rows may have left the detector
    for k, p in enumerate(prof):
        ncc = ncc_map(np.repeat(p[:, None], 3, axis=1), r, mt, mr, min_overlap=0.3)
        s, _ = NccSurface(ncc[:, 1:2].repeat(3, axis=1)).peak()
        out[k] = -s[0]
    out -= out.mean()
    if prof.shape[1] - 2 * m >= 8:  # a gain, an offset and a shift need rows to fit
        for _ in range(refinements):
            out = _refine_profile_shifts(prof, out, m)
    return out


def _refine_profile_shifts(prof: np.ndarray, dy: np.ndarray, margin: int) -> np.ndarray:
    """One pass of :func:`row_profile_dy`'s refinement: a reference from the profiles
    moved back by ``dy`` (bicubic), then each profile's shift (within 1.5 px of ``dy``)
    that fits it best as ``a * reference(z - s) + b`` over the rows ``margin`` away
    from both ends. Returns the shifts with mean zero."""
    n, rows = prof.shape
    ref = _realigned_median(prof, dy, cubic=True)
    coef = ndimage.spline_filter1d(ref, order=3, mode="nearest")
    z = np.arange(margin, rows - margin, dtype=np.float64)
    out = np.empty(n)
    for k in range(n):
        p = prof[k, margin : rows - margin]

        def misfit(s: float, p: np.ndarray = p) -> float:
            r = ndimage.map_coordinates(coef, [z - s], order=3, mode="nearest", prefilter=False)
            design = np.stack([r, np.ones_like(r)], axis=1)
            fit, *_ = np.linalg.lstsq(design, p, rcond=None)
            return float(np.sum((design @ fit - p) ** 2))

        res = optimize.minimize_scalar(
            misfit, bounds=(dy[k] - 1.5, dy[k] + 1.5), method="bounded", options={"xatol": 1e-5}
        )
        out[k] = res.x
    return out - out.mean()


def center_of_mass_dx(views: np.ndarray, geometry: ScanGeometry) -> tuple[np.ndarray, float]:
    """Horizontal shifts from the projections' centres of mass.

    In parallel beam the column centroid of a view is ``x cos + y sin`` of the
    object's centre of mass plus the view's displacement. The fitted sinusoid is
    the object's position (a rigid translation: undetermined, removed); the
    rest is the shift, its mean the rotation-axis offset. Needs the object
    inside the field of view; a first estimate for projection matching.
    """
    v = np.clip(np.asarray(views, np.float64), 0.0, None).sum(axis=1)  # (n, cols)
    cols = np.arange(v.shape[1])
    com = (v * cols).sum(axis=1) / np.maximum(v.sum(axis=1), 1e-12)
    return _shifts_from_centroids(com, geometry.angles_deg, v.shape[1])


def _shifts_from_centroids(
    com: np.ndarray, angles_deg: np.ndarray, cols: int, sigma: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Column centroids -> ``dx`` (the fitted sinusoid, the object's position, removed; the
    constant, the rotation axis, kept) and the axis offset, both about the detector centre.
    ``sigma``: each centroid's uncertainty, which weighs it in the fit (default equal; a
    view cut by the detector's edges would otherwise move the axis: 1.6 px for one of 9)."""
    basis = sinusoid_basis(angles_deg)
    w = np.ones(len(com)) if sigma is None else 1.0 / np.maximum(np.asarray(sigma, float), 1e-6)
    coef, *_ = np.linalg.lstsq(basis * w[:, None], com * w, rcond=None)
    dx = com - basis[:, 1:] @ coef[1:] - (cols - 1) / 2.0
    return dx, float(coef[0] - (cols - 1) / 2.0)


def slice_weights(views: np.ndarray, dy: np.ndarray, margin: int) -> np.ndarray:
    """A weight per slice (object ``z``, detector rows' spacing) for :func:`weighted_centroid_dx`.

    Zero-sum and zero at both ends: anything that does not change along the
    rotation axis (ice, a capillary, the parts of them cut off by the detector's
    edges) drops out of a weighted moment. The weight is the slices' mass (the
    views' row sums, aligned by ``dy``; the median over views) less its mean, the
    matched filter that keeps most of the cell for the noise it lets in. Only
    :data:`SLICE_WEIGHT_RAMP_ROWS` rows at each end are tapered: a ``cos²`` taper
    over the whole axis (the same function with the ramp over half of it), used
    before, kept a third less of the cell for the same weight and made ``dx``
    1.3-1.8 times noisier (``benchmarks/full_moments_noise.py``). The first and
    last ``margin`` rows, which shifts may have moved off the detector, get none. Linear
    interpolation onto each view's rows keeps the sum exactly zero for any
    sub-pixel ``dy`` (the hat functions sum to one), so a steep edge costs nothing.
    """
    v = np.asarray(views, np.float64)
    rows = v.shape[1]
    length = max(rows - 2 * margin, 0)
    taper = np.ones(length)
    ramp = min(SLICE_WEIGHT_RAMP_ROWS, length // 2)
    if ramp:
        edge = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
        taper[:ramp], taper[length - ramp :] = edge, edge[::-1]
    mass = _slice_mass(v, dy)[margin : rows - margin]
    w = (mass - (mass * taper).sum() / max(taper.sum(), 1e-12)) * taper
    out = np.zeros(rows)
    out[margin : rows - margin] = w
    return out


#: Rows at each end of :func:`slice_weights` over which the weight ramps up (``sin²``).
SLICE_WEIGHT_RAMP_ROWS = 2


def _slice_mass(v: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The mass of each slice (object ``z`` on the detector rows' grid): the views' row sums
    moved back by their ``dy``, the median over views."""
    return _realigned_median(v.sum(axis=2), dy)


def _realigned_median(prof: np.ndarray, dy: np.ndarray, cubic: bool = False) -> np.ndarray:
    """Row profiles ``(n, rows)`` moved back by their ``dy`` (object ``z`` on the detector
    rows' grid; linear, or bicubic for :func:`row_profile_dy`'s sub-pixel fit; the end
    values held), the median over views."""
    if cubic:
        moved = [ndimage.shift(p, -d, order=3, mode="nearest") for p, d in zip(prof, dy)]
    else:
        z = np.arange(prof.shape[1], dtype=np.float64)
        moved = [np.interp(z, z - d, p) for p, d in zip(prof, dy)]
    return np.median(moved, axis=0)


#: Below this :func:`slice_weight_contrast` the weighted centroid is mostly noise and the
#: plain centre of mass is used (the ``tiny`` preset's 16-row views: 0.013; ``small``: 0.05).
MIN_SLICE_WEIGHT_CONTRAST = 0.03


def weight_margin(rows: int, dy: np.ndarray, margin: int) -> int:
    """Rows left out at each end: at least ``margin`` and more than the ``|dy|`` of every
    view but those far off the rest (:func:`far_off_rows`), so no other view's weights
    leave the detector (their sum, which cancels the uniform background, then survives
    the move exactly); never more than leaves four rows. One view moved far along the
    axis would otherwise shorten every view's weighted rows: a full view 10-14 rows off
    (``outlier-full``, 19 views, seeds 408 and 412) made the others' ``dx`` 2-3 times
    noisier and the interior 0.08-0.11 px RMS off, against 0.05-0.06 px without it (the
    far view's own ``dx`` and ``dy`` then only fix the gauge: :func:`moment_dx`)."""
    dy = np.abs(np.asarray(dy, float))
    need = int(np.ceil(dy[~far_off_rows(dy)].max(initial=0.0))) + 1
    return int(min(max(margin, need), max((rows - 4) // 2, 0)))


#: A full view whose ``dy`` lies more than this many robust standard deviations (never
#: less than a row) from the median of all is far off the rest (:func:`far_off_rows`).
FAR_OFF_SIGMA = 5.0


def far_off_rows(dy: np.ndarray) -> np.ndarray:
    """``(n,)``: the views whose ``dy`` lies far off the others' (:data:`FAR_OFF_SIGMA`):
    :func:`weight_margin` does not make room for them."""
    dy = np.asarray(dy, float)
    if dy.size < 3:
        return np.zeros(dy.shape, bool)
    sigma = max(1.4826 * float(np.median(np.abs(dy - np.median(dy)))), 1.0)
    return np.abs(dy - np.median(dy)) > FAR_OFF_SIGMA * sigma


def slice_weight_contrast(views: np.ndarray, dy: np.ndarray, margin: int) -> float:
    """How much of the views' mass :func:`slice_weights` keeps: ``|sum w m| / (sum |w| mean m)``
    for the slices' mass ``m``; near 0 when the sample looks the same along the axis."""
    v = np.asarray(views, np.float64)
    margin = weight_margin(v.shape[1], dy, margin)
    w = slice_weights(v, dy, margin)
    mass = _slice_mass(v, dy)
    scale = np.abs(w).sum() * max(abs(mass.mean()), 1e-12)
    return float(abs((w * mass).sum()) / scale)


def weighted_centroid_dx(
    views: np.ndarray,
    geometry: ScanGeometry,
    dy: np.ndarray | None = None,
    margin: int = 8,
    sigma: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Horizontal shifts from the first moment of the object weighted along the rotation axis.

    Like :func:`center_of_mass_dx` (the first Helgason-Ludwig condition), but each
    view's rows are weighted by :func:`slice_weights` placed at the view's
    vertical shift ``dy``: the weighted object ``f(x, y, z) w(z)`` is an object
    too, so its projections' column centroid is ``x_w cos + y_w sin`` plus the
    view's displacement, and whatever is uniform along the axis (the ice column,
    the capillary, even where the detector's edges cut them) weighs nothing. Only
    what varies along the axis (the cell) must stay in the field of view.

    ``sigma``: each view's uncertainty, which weighs it in the sinusoid's fit (default
    equal; :func:`moment_dx` gives its noise and :func:`truncation_bias_px` together).

    Returns
    -------
    dx, axis
        Shifts (the fitted sinusoid removed; its constant, the rotation axis,
        kept) and the axis offset, in this scan's pixels.
    """
    v = np.asarray(views, np.float64)
    cols = v.shape[2]
    _, q = _weighted_columns(v, dy, margin)
    total = q.sum(axis=1)
    safe = np.where(np.abs(total) > 1e-12, total, 1.0)
    com = np.where(
        np.abs(total) > 1e-12, q @ np.arange(cols, dtype=np.float64) / safe, (cols - 1) / 2.0
    )
    return _shifts_from_centroids(com, geometry.angles_deg, cols, sigma)


def weighted_centroid_noise_px(
    views: np.ndarray, dy: np.ndarray | None = None, margin: int = 8
) -> np.ndarray:
    """Standard deviation, from the photon noise, of each view's weighted column centroid
    (what :func:`weighted_centroid_dx` fits its sinusoid to), in pixels.

    A pixel of optical depth ``p`` counted ``N0 exp(-p)`` photons, so its variance is
    ``exp(p) / N0``. Each view's ``N0`` is measured in the data: the mixed second
    difference of four neighbouring pixels, ``p[r, c] - p[r+1, c] - p[r, c+1] +
    p[r+1, c+1]``, vanishes on whatever is smooth or varies along one direction only,
    so it is nearly all noise, of variance the four pixels' sum; ``1 / N0`` is the
    median of its square over that sum, divided by the median of ``chi²(1)``. The
    pixels' variances are then propagated through the weighted moment. On the ``small``
    preset (seeds 1-3, 9 and 19 views) this reads 0.99-1.23 times the centroids'
    scatter over 24 Poisson draws (``test_weighted_centroid_noise_at_the_papers_dose``);
    the second difference along the rows used before, with one noise level for the
    whole view, read 1.26-1.72 times it (the cell's edges leak into it).
    """
    v = np.asarray(views, np.float64)
    w_rows, q = _weighted_columns(v, dy, margin)
    var_q = _weighted_column_variance(v, w_rows)
    c = np.arange(v.shape[2], dtype=np.float64)
    out = np.full(len(v), np.inf)
    for k in range(len(v)):
        total = q[k].sum()
        if abs(total) < 1e-12:
            continue
        com = (q[k] @ c) / total
        # var(com) = sum_u ((u - com) / total)^2 var(q(u))
        out[k] = np.sqrt((((c - com) / total) ** 2 * var_q[k]).sum())
    return out


def _weighted_column_variance(v: np.ndarray, w_rows: np.ndarray) -> np.ndarray:
    """``(n, cols)``: the photon-noise variance of each view's weighted column sums
    ``q(u) = sum_r w(r) p(r, u)``, ``sum_r w(r)^2 var(p(r, u))``, each pixel's variance
    ``exp(p) / N0`` with ``1 / N0`` read from the view's mixed second differences
    (:func:`weighted_centroid_noise_px`)."""
    out = np.empty((v.shape[0], v.shape[2]))
    for k in range(len(v)):
        e = np.exp(np.clip(v[k], -50.0, 50.0))  # exp(p) / N0: each pixel's variance
        d = v[k, :-1, :-1] - v[k, 1:, :-1] - v[k, :-1, 1:] + v[k, 1:, 1:]
        spread = e[:-1, :-1] + e[1:, :-1] + e[:-1, 1:] + e[1:, 1:]
        per_photon = float(np.median(d**2 / spread)) / 0.4549  # median of chi²(1): 0.4549
        out[k] = (w_rows[k] ** 2) @ e * per_photon
    return out


#: Columns at each side of a full view that :func:`edge_significance` and
#: :func:`truncation_bias_px` read: the outermost, where the field ends (with the next
#: column too, views whose cell only reached that column, 0.01-0.08 px off, read as cut
#: as those 0.3-1.4 px off).
CUT_EDGE_COLUMNS = 1
#: A full view whose weighted column sums at the detector's edge pass this many standard
#: deviations of their photon noise (:func:`edge_significance`) has its cell cut by the
#: edge. Noise alone passes 5σ in one of 1.7 million reads; on the ``small`` preset's
#: whole views (development seeds 1-6) they stay under 3.5σ.
CUT_SIGMA = 5.0


def _edge_columns(v: np.ndarray, dy: np.ndarray | None, margin: int):
    """The weighted column sums ``q`` ``(n, cols)``, their photon noise ``sd`` and the
    indices of the :data:`CUT_EDGE_COLUMNS` outermost columns of each side."""
    w_rows, q = _weighted_columns(v, dy, margin)
    sd = np.sqrt(np.maximum(_weighted_column_variance(v, w_rows), 1e-300))
    cols = v.shape[2]
    k = CUT_EDGE_COLUMNS
    return q, sd, np.r_[np.arange(k), np.arange(cols - k, cols)]


def edge_significance(
    views: np.ndarray, dy: np.ndarray | None = None, margin: int = 8
) -> np.ndarray:
    """``(n,)``: how far the cell reaches the detector's edges in each view, the largest
    ``|q(u)| / sd(q(u))`` over the :data:`CUT_EDGE_COLUMNS` outermost columns of each side,
    ``q`` the weighted column sums of :func:`weighted_centroid_dx` (what is uniform along
    the axis, ice and capillary even where cut, weighs nothing there) and ``sd`` their
    photon noise."""
    q, sd, edge = _edge_columns(np.asarray(views, np.float64), dy, margin)
    return np.abs(q[:, edge] / sd[:, edge]).max(axis=1)


def truncation_bias_px(
    views: np.ndarray, dy: np.ndarray | None = None, margin: int = 8
) -> np.ndarray:
    """``(n,)``: a scale for how far the detector's edges bias each view's weighted
    centroid (px): the pull on the centroid of the weighted mass in the
    :data:`CUT_EDGE_COLUMNS` outermost columns of each side, beyond
    :data:`CUT_SIGMA` times its noise (0 where the cell stays inside). What lies beyond
    the edge is not measured; its order is what the edge holds. On the ``small`` preset
    it read 0-0.19 px where the centroid was 0.005-0.08 px off, 0.36 and 0.42 px where
    it was 0.30 and 1.40 px off (a view 8 and 14 px out)."""
    v = np.asarray(views, np.float64)
    q, sd, edge = _edge_columns(v, dy, margin)
    u = np.arange(v.shape[2], dtype=np.float64)
    total = q.sum(axis=1)
    safe = np.where(np.abs(total) > 1e-12, total, 1.0)
    com = q @ u / safe
    excess = np.maximum(np.abs(q[:, edge]) - CUT_SIGMA * sd[:, edge], 0.0)
    return (excess * np.abs(u[edge][None, :] - com[:, None])).sum(axis=1) / np.abs(safe)


def _weighted_columns(
    v: np.ndarray, dy: np.ndarray | None, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each view's row weights (:func:`slice_weights` placed at its ``dy``) and weighted
    column sums: ``(n, rows)`` and ``(n, cols)``."""
    n, rows, _ = v.shape
    dy = np.zeros(n) if dy is None else np.asarray(dy, float)
    margin = weight_margin(rows, dy, margin)
    w_z = slice_weights(v, dy, margin)
    z = np.arange(rows, dtype=np.float64)
    # detector row r sees z = r - dy
    w_rows = np.stack([np.interp(z, z + dy[k], w_z, left=0.0, right=0.0) for k in range(n)])
    return w_rows, np.einsum("kr,krc->kc", w_rows, v)


def moment_dx(
    views: np.ndarray, geometry: ScanGeometry, dy: np.ndarray, margin: int
) -> tuple[np.ndarray, float, dict]:
    """``dx`` of a full-field scan from its first moment: weighted along the axis
    (:func:`weighted_centroid_dx`, with each view's noise) unless the sample looks the
    same along the axis (:func:`slice_weight_contrast` below
    :data:`MIN_SLICE_WEIGHT_CONTRAST`), then the plain :func:`center_of_mass_dx`.

    Returns
    -------
    dx, axis, record
        Shifts and axis offset (this scan's pixels) and how they were measured.
    """
    contrast = slice_weight_contrast(views, dy, margin)
    record: dict = {"slice_weight_contrast": contrast}
    if contrast < MIN_SLICE_WEIGHT_CONTRAST:  # the weighted mass would be all noise
        dx, axis = center_of_mass_dx(views, geometry)
        record["start"] = "row_profiles+centre_of_mass"
        return dx, axis, record
    noise = weighted_centroid_noise_px(views, dy, margin)
    bias = truncation_bias_px(views, dy, margin)
    # a view whose weights leave the detector (far off the rest along the axis) weighs
    # the cell otherwise than the others and lets the background in: its centroid may
    # lie anywhere in the field; the detector's edge cut its row profile too, so its dy
    # only fixes the gauge in the joint solve (full_prior_weights)
    rows_lost = np.ceil(np.abs(dy)) + 1 > weight_margin(views.shape[1], dy, margin)
    bias = np.where(rows_lost, np.maximum(bias, 0.5 * views.shape[2]), bias)
    record["rows_cut_views"] = np.flatnonzero(rows_lost).tolist()
    dx, axis = weighted_centroid_dx(views, geometry, dy, margin, np.hypot(noise, bias))
    record["start"] = "row_profiles+weighted_centroid"
    record["weighted_centroid_sigma_px"] = noise.tolist()
    record["truncation_bias_px"] = bias.round(4).tolist()
    # the views whose cut weighs more than their noise (their estimate lost most weight)
    record["cut_views"] = np.flatnonzero(bias > noise).tolist()
    return dx, axis, record


def _sirt(op, data: np.ndarray, iterations: int, support: np.ndarray, weights: np.ndarray):
    """Non-negative SIRT (:func:`sxtdist.solvers.sirt`) of the data ``weights`` keeps
    (0/1 per datum: pixels from inside the detector), for the voxels in ``support``."""
    masked = Diagonal(weights, op.range_shape) @ op @ Diagonal(support, op.domain_shape)
    return sirt([masked], [weights * data], iterations, nonneg=True).x


def projection_matching(
    views: np.ndarray,
    geometry: ScanGeometry,
    initial: np.ndarray | None = None,
    max_iterations: int = 10,
    tol_px: float = 0.05,
    sirt_iterations: int = 100,
    max_shift_px: int | None = None,
    relaxation: float = 1.0,
    callback=None,
) -> tuple[np.ndarray, dict]:
    """Align a (sparse) full-field scan to itself by projection matching.

    Repeat: undo the current shifts on the views (bicubic), reconstruct the
    slices coarsely (non-negative SIRT on the scan's own pixel grid, inside the
    field-of-view disc), reproject, complete each view by its reprojection where
    the shift pushed it off the detector, and measure the residual displacement
    from the completed views: ``dx`` from the first Helgason-Ludwig moment (column
    centroid), ``dy`` from the row profiles. ``relaxation`` times it is added to the
    shifts until the largest change is below ``tol_px``. The rotation axis is found,
    not assumed: the constant part of ``dx`` is free; the rigid translation of
    the object (``dy`` constant, ``dx`` in ``cos, sin``) is fixed by removing it
    from every update.

    Registering each view to its reprojection (NCC) instead, with or without
    leaving the view out of the reconstruction, converged slowly or not at all
    (a reconstruction from few views reproduces its own misalignment) and was
    removed; see docs/dev/alignment-history.md.

    Returns
    -------
    shifts, info
        ``(n, 2)`` shifts (this scan's pixels) and a record of the iterations.
    """
    from ..geometry import VolumeGrid
    from ..operators.projector import SliceProjector

    views = np.asarray(views, np.float32)
    n, rows, cols = views.shape
    d = np.zeros((n, 2)) if initial is None else np.array(initial, float)
    m = int(max_shift_px or max(2, min(rows, cols) // 6))
    # the slices cover the detector plus a margin: shifted views reach beyond it
    pad = m
    grid = VolumeGrid((rows, cols + 2 * pad, cols + 2 * pad), geometry.pixel_size_nm)
    g0 = geometry.with_shifts(None)
    op = SliceProjector(g0, grid, rows, supersampling=1)
    yy, xx = np.mgrid[: cols + 2 * pad, : cols + 2 * pad] - (cols + 2 * pad - 1) / 2.0
    support = ((yy**2 + xx**2) <= ((cols + 2 * pad) / 2.0) ** 2).astype(np.float32)[:, :, None]
    history = []
    ones = np.ones((rows, cols))
    for it in range(max_iterations):
        corrected = np.stack([shift_image(v, -s) for v, s in zip(views, d, strict=True)])
        # pixels whose value came from inside the detector (not edge-extended)
        # (two pixels in from the edge: bicubic shifts smear the extended edge inwards)
        valid = np.stack(
            [ndimage.shift(ones, -s, order=1, mode="constant", cval=0) > 0.999 for s in d]
        )
        valid = ndimage.binary_erosion(valid, np.ones((1, 1, 5), bool), border_value=0)
        sino = np.ascontiguousarray(corrected.transpose(0, 2, 1))  # (angles, cols, rows)
        wts = np.ascontiguousarray(valid.transpose(0, 2, 1), dtype=np.float32)
        x = _sirt(op, sino, sirt_iterations, support, wts)
        reproj = op(x).transpose(0, 2, 1)  # (angles, rows, cols)
        # dx from the first moment (Helgason-Ludwig): the column centroid of a
        # view of the whole object is a sinusoid in the angle plus the view's
        # displacement; the columns lost off the detector edge are filled in
        # from the reprojection
        completed = np.where(valid, corrected, reproj)
        upd = np.zeros((n, 2))
        upd[:, 0] = row_profile_dy(completed, max(2, rows // 6))
        upd[:, 1], _, _ = moment_dx(completed, geometry, upd[:, 0], m)
        upd = remove_gauge(upd, geometry.angles_deg)
        d += relaxation * upd
        change = float(np.abs(upd).max())
        history.append(change)
        if callback is not None:
            callback(it, d.copy(), change)
        if change < tol_px:
            break
    info = {
        "iterations": len(history),
        "changes_px": history,
        "converged": bool(history and history[-1] < tol_px),
        "axis_offset_px": axis_offset_px(d[:, 1], geometry.angles_deg),
    }
    return d, info


def align_full_scan(
    views: np.ndarray,
    geometry: ScanGeometry,
    max_iterations: int = 10,
    tol_px: float = 0.05,
    callback=None,
) -> tuple[np.ndarray, dict]:
    """Shifts of a full-field scan: row profiles (dy), weighted centroids (dx), then optionally
    ``max_iterations`` of projection matching.

    The moments alone are the default (``max_iterations=0`` in
    :func:`sxtdist.align`): on the ``small`` preset with 9 or 19
    views and 3 px shifts they are accurate to 0.05-0.09 px RMS at the paper's dose
    (seeds 1-6), and every form of projection matching tried from there made it
    worse (0.24-0.79 px after 10 iterations, from moments then at 0.07-0.10 px; a
    reconstruction from so few views reproduces its own misalignment). See
    docs/dev/alignment-history.md.
    """
    views = np.asarray(views, np.float32)
    rows, cols = views.shape[1:]
    dy = row_profile_dy(views, max(2, rows // 6))
    dx, axis, record = moment_dx(views, geometry, dy, max(2, rows // 16))
    record["start_axis_offset_px"] = axis
    start = np.stack([dy, dx], axis=1)
    if max_iterations == 0:
        info = {"iterations": 0, "changes_px": [], "converged": None, "axis_offset_px": axis}
        return start, {**info, **record}
    d, info = projection_matching(
        views,
        geometry,
        start,
        max_iterations=max_iterations,
        tol_px=tol_px,
        relaxation=0.5,
        callback=callback,
    )
    return d, {**info, **record}
