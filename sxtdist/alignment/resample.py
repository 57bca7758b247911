"""Images made comparable: blurs to a common resolution, resampling of a full view onto the
interior grid (bicubic), padding with a validity mask, sub-pixel shifts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse

from ..geometry import ScanGeometry
from ..physics import FWHM_PER_SIGMA, psf_fwhm_nm

#: A sigma up to this leaves its axis alone (as in ``ndimage.gaussian_filter``).
NO_BLUR_SIGMA = 1e-15


def gaussian_blur(img: np.ndarray, sigma_px: float | Sequence[float]) -> np.ndarray:
    """``ndimage.gaussian_filter`` of a 2D image as every compared image gets it: in double
    precision, edges extended (``nearest``), the kernel to 4 sigma; zero sigma leaves an
    axis alone. Each pass writes into rows a few pixels longer than the image
    (:func:`_rows_apart`), so that a column's pixels never lie a power of two bytes apart:
    ndimage's pass across the rows of a 1024² view took 14 ms that way against 4 ms along
    them, the cache holding few lines 8 KiB apart; on such rows it takes 5-6 ms, and the
    transposes the blur made before (3.5 ms each) go. The same values, to the last bit
    (each pass is ndimage's line by line, whatever the strides)."""
    sy, sx = np.broadcast_to(np.asarray(sigma_px, float), (2,))
    out = np.asarray(img, np.float64)
    if sx > NO_BLUR_SIGMA:
        out = ndimage.gaussian_filter1d(
            out, sx, axis=1, mode="nearest", output=_rows_apart(out.shape)
        )
    if sy > NO_BLUR_SIGMA:
        out = ndimage.gaussian_filter1d(
            out, sy, axis=0, mode="nearest", output=_rows_apart(out.shape)
        )
    return np.ascontiguousarray(out)


def _rows_apart(shape: tuple[int, ...]) -> np.ndarray:
    """An empty float64 image of ``shape`` whose rows lie 8 pixels further apart than its
    width (a view into a wider array): see :func:`gaussian_blur`."""
    h, w = shape
    return np.empty((h, w + 8))[:, :w]


def resolution_sigma_px(pixel_nm: float, ozw_nm: float | None, in_pixel_nm: float) -> float:
    """Gaussian sigma (in pixels of ``in_pixel_nm``) of a scan's PSF plus its pixel box."""
    psf = 0.0 if not ozw_nm else psf_fwhm_nm(ozw_nm) / FWHM_PER_SIGMA
    return math.sqrt(psf**2 + pixel_nm**2 / 12.0) / in_pixel_nm


def matching_blur_px(roi: ScanGeometry, full: ScanGeometry, roi_ozw, full_ozw) -> float:
    """Extra blur (ROI pixels) that brings an ROI view to the full view's resolution."""
    sf = resolution_sigma_px(full.pixel_size_nm, full_ozw, roi.pixel_size_nm)
    sr = resolution_sigma_px(roi.pixel_size_nm, roi_ozw, roi.pixel_size_nm)
    return math.sqrt(max(sf**2 - sr**2, 0.0))


def anchor_on_roi_grid(
    full_view: np.ndarray,
    full: ScanGeometry,
    full_index: int,
    roi: ScanGeometry,
    margin: tuple[int, int],
    mirrored: bool = False,
    full_shift: Sequence[float] | None = None,
    binning: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """A full view resampled (bicubic) onto the ROI pixel grid, padded by ``margin``.

    The full view is taken as aligned with shift ``full_shift`` (default: the
    geometry's). ``mirrored`` gives the view at ``theta + 180``: the same lines, the
    detector reversed (``u -> -u``). ``binning``: onto the grid of the ROI binned by
    this factor (:func:`bin_image`; ``margin`` in its pixels), the full view first
    blurred so that it does not alias there. Returns the image and its validity mask
    (inside the full detector).
    """
    my, mx = margin
    hr, wr = roi.detector_shape
    hf, wf = full.detector_shape
    dyf, dxf = full.shifts_px[full_index] if full_shift is None else full_shift
    # the binned pixels' centres, in ROI pixels
    b = int(binning)
    rows = np.arange(-my, hr // b + my, dtype=float) * b + (b - 1) / 2
    cols = np.arange(-mx, wr // b + mx, dtype=float) * b + (b - 1) / 2
    # physical positions of the aligned ROI pixels (geometry.py's convention, no shift)
    z = (rows - (hr - 1) / 2 + roi.center_offset_px[0]) * roi.pixel_size_nm
    u = (cols - (wr - 1) / 2 + roi.center_offset_px[1]) * roi.pixel_size_nm
    if mirrored:
        u = -u
    rf = z / full.pixel_size_nm + (hf - 1) / 2 - full.center_offset_px[0] + dyf
    cf = u / full.pixel_size_nm + (wf - 1) / 2 - full.center_offset_px[1] + dxf
    # rows and columns map independently (an axis-aligned affine map), and only the part
    # of the full view the ROI grid falls on is needed: interpolate on that crop, which
    # keeps SPLINE_CROP_PAD pixels around it so the spline prefilter's edge effect
    # (decaying by 0.268 per pixel) is below 1e-9 where it is sampled
    (r0, r1), (c0, c1) = (_crop_range(rf, hf), _crop_range(cf, wf))
    crop = np.asarray(full_view)[r0:r1, c0:c1]
    if b > 1:  # the binned grid's spacing in full pixels: blur to half of it first
        crop = gaussian_blur(crop, 0.5 * b * roi.pixel_size_nm / full.pixel_size_nm)
    img = bicubic_on_grid(crop, rf - r0, cf - c0)
    e = DETECTOR_EDGE_PX
    mask = ((rf >= e) & (rf <= hf - 1 - e))[:, None] & ((cf >= e) & (cf <= wf - 1 - e))[None, :]
    return img, mask


#: Pixels along each edge of a view that no registration compares (a full view's in its
#: anchors, an interior view's in all its pairs, :func:`compared_box`): a detector's
#: outermost rows and columns are often bad, and next to the edge a bicubic spline reads
#: the edge pixel's value repeated beyond it. One: two cut a quarter of the ``tiny``
#: preset's 16-row full views, and no simulated case measured better with two (a full
#: view 15 px off, 9 views, seed 3: the same 0.54 px either way).
DETECTOR_EDGE_PX = 1

#: The largest share of a view's side that :func:`compared_box` takes for edge-replicated
#: strips.
PADDING_MAX_SHARE = 0.125
#: A row (column) is a replica where it differs from the next one inwards by less than
#: this share of the median such difference over the view's middle (RMS over the line),
#: while it varies along itself by more than this share of the middle's lines do.
PADDING_CONTRAST = 0.25

#: ``(y0, y1, x0, x1)``: rows ``y0:y1`` and columns ``x0:x1`` of a view.
Box = tuple[int, int, int, int]


def compared_box(view: np.ndarray) -> Box:
    """The rectangle of an interior view that its registrations compare: the view less
    its :data:`DETECTOR_EDGE_PX` outermost rows and columns and, before those, less any
    strip along an edge whose rows (columns) each nearly repeat the next one inwards
    (:data:`PADDING_CONTRAST`): the edge replicated, as shifting a recorded view with
    ``nearest`` edges leaves it (by spline or not), up to :data:`PADDING_MAX_SHARE` of the
    view per side. Such a strip is the same pattern in every view, at the same place on
    the detector: compared, it pulls each pair towards no shift.

    A strip that is flat along itself too (a constant) is compared: a damaged frame's
    constant part (a beam drop) must still correlate poorly, for the verdict to name it.
    """
    v = np.asarray(view)
    top, bottom = _replicated_ends(v, 0)
    left, right = _replicated_ends(v, 1)
    return top, v.shape[0] - bottom, left, v.shape[1] - right


def _replicated_ends(v: np.ndarray, axis: int) -> tuple[int, int]:
    """How many of the first and of the last rows (``axis`` 0) or columns (1) of a view
    :func:`compared_box` leaves out.

    The lines are tested from the edge inwards a few at a time, up to the first that is
    no replica: most views have none, and testing all the lines that could be one took
    most of the 5 ms of a 1024² view's box. Each line's test is the same either way
    (its own sums; the lines copied in rows of their own, as indexing the transposed
    view laid them out), but a 1024² view's columns are gathered row by row, not read
    down the 8 KiB-apart rows one at a time."""
    n = v.shape[axis]
    cap = int(PADDING_MAX_SHARE * n)
    if cap == 0:
        return DETECTOR_EDGE_PX, DETECTOR_EDGE_PX

    def lines(k: np.ndarray) -> np.ndarray:  # lines k, one row each, C-ordered
        if axis == 0:
            return np.asarray(v[k], np.float64)
        return np.ascontiguousarray(np.asarray(v[:, k], np.float64).T)

    def step_and_spread(k: np.ndarray, inward: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = lines(k), lines(k + inward)
        return np.sqrt(np.mean((b - a) ** 2, axis=1)), a.std(axis=1)

    # the view's own: up to 64 lines of its middle, which no strip reaches (only the lines
    # that can be a strip and these are read)
    middle = np.unique(np.linspace(cap, max(n - 2 - cap, cap), 64).astype(int))
    step, spread = (np.median(x) for x in step_and_spread(middle, 1))

    def leading(k: np.ndarray, inward: int) -> int:  # the lines that repeat the next one in
        start, size = 0, 4
        while start < k.size:  # 4 lines, then 8, 16, ...: up to the first that is no replica
            s, sp = step_and_spread(k[start : start + size], inward)
            like = (s < PADDING_CONTRAST * step) & (sp > PADDING_CONTRAST * spread)
            if not like.all():
                return start + int(np.argmin(like)) + DETECTOR_EDGE_PX
            start, size = start + size, 2 * size
        return k.size + DETECTOR_EDGE_PX

    return leading(np.arange(cap), 1), leading(n - 1 - np.arange(cap), -1)


def binned_box(box: Box, binning: int) -> Box:
    """The blocks of :func:`bin_image` that lie wholly inside ``box``."""
    y0, y1, x0, x1 = box
    b = int(binning)
    return -(-y0 // b), y1 // b, -(-x0 // b), x1 // b


def bin_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Means over ``factor x factor`` blocks (the last rows and columns that do not fill a
    block left out); the image itself for 1."""
    if factor == 1:
        return np.asarray(img, np.float64)
    h, w = (n // factor * factor for n in img.shape)
    blocks = np.asarray(img, np.float64)[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3))


#: Edge pixels ndimage adds before its spline prefilter in ``mode="nearest"`` (scipy >= 1.6).
_SPLINE_PREPAD = 12


def _cubic_bspline_weights(coords: np.ndarray, n: int) -> sparse.csr_matrix:
    """``(len(coords), n)`` matrix that evaluates a cubic B-spline with ``n`` coefficients at
    ``coords``; coefficients beyond the ends are the end ones (ndimage's ``nearest``)."""
    c = np.asarray(coords, np.float64)
    f = np.floor(c)
    t = c - f
    t2, t3 = t * t, t * t * t
    w = np.stack(
        [(1 - t) ** 3 / 6, (3 * t3 - 6 * t2 + 4) / 6, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6],
        axis=1,
    )
    idx = np.clip(f.astype(np.intp)[:, None] + np.arange(-1, 3), 0, n - 1)
    indptr = np.arange(0, 4 * c.size + 1, 4)
    return sparse.csr_matrix((w.ravel(), idx.ravel(), indptr), shape=(c.size, n))


def bicubic_on_grid(img: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bicubic spline interpolation of ``img`` at every ``(rows[i], cols[j])``.

    The same as ``ndimage.map_coordinates(img, meshgrid(rows, cols), order=3,
    mode="nearest")`` (to rounding), but separable: rows, then columns, 8 taps per
    pixel instead of 16 and no general coordinate transform (a 1088² grid: 33 ms
    against 107 ms for ndimage).
    """
    padded = np.pad(np.asarray(img, np.float64), _SPLINE_PREPAD, mode="edge")
    coef = ndimage.spline_filter(padded, 3, output=np.float64, mode="nearest")
    wy = _cubic_bspline_weights(np.asarray(rows) + _SPLINE_PREPAD, padded.shape[0])
    wx = _cubic_bspline_weights(np.asarray(cols) + _SPLINE_PREPAD, padded.shape[1])
    return np.ascontiguousarray((wx @ (wy @ coef).T).T)


#: Pixels kept around the sampled part of a view for bicubic interpolation on a crop.
SPLINE_CROP_PAD = 16


def _crop_range(coords: np.ndarray, size: int) -> tuple[int, int]:
    """Index range of a view's axis of ``size`` pixels that covers ``coords`` (any order)
    with :data:`SPLINE_CROP_PAD` pixels to spare, clipped to the view."""
    lo = int(np.floor(coords.min())) - SPLINE_CROP_PAD
    hi = int(np.ceil(coords.max())) + SPLINE_CROP_PAD + 1
    lo, hi = max(lo, 0), min(hi, size)
    if hi <= lo:  # entirely off the view: the nearest edge pixels
        lo = min(max(lo, 0), size - 1)
        hi = lo + 1
    return lo, hi


def pad_with_mask(img: np.ndarray, margin: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad an image by ``margin`` and return it with its validity mask."""
    my, mx = margin
    out = np.pad(np.asarray(img, np.float64), ((my, my), (mx, mx)))
    mask = np.pad(np.ones(img.shape, bool), ((my, my), (mx, mx)))
    return out, mask


def shift_image(img: np.ndarray, shift: Sequence[float], order: int = 3) -> np.ndarray:
    """Move an image's content by ``shift`` pixels (``(dy, dx)``), bicubic, edges extended."""
    return ndimage.shift(np.asarray(img, np.float64), shift, order=order, mode="nearest")
