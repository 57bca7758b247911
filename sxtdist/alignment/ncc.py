"""Masked normalised cross-correlation (paper eq. 15) at every integer shift, and its peak.

Registration of a *template* ``T`` (``H x W``) against a *reference* ``R`` on the
same pixel grid but padded by a margin ``m`` on every side: the normalised
cross-correlation of ``T(x)`` with ``R(x + m + s)`` is evaluated at every integer
``s`` in ``[-m, m]^2`` over the pixels that are valid in both (masked NCC: the cross
term by FFT; the other sums by FFT, or as rectangle sums when the valid pixels are
rectangles). That integer map is cached; a bicubic spline of it gives the NCC and its
gradient at sub-pixel shifts, maximised with L-BFGS-B. If ``T`` is ``R`` displaced by
``d`` then the peak is at ``s = -d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import optimize
from scipy.interpolate import RectBivariateSpline


class _ValidCorrelator:
    """``c[k] = sum_x a[x] b[x + k]`` for every ``k`` where an ``(H, W)`` ``a`` fits inside the
    ``(Hr, Wr)`` ``b``, by FFTs of the reference's size (not the full linear size): the
    template sits at the origin of a zero-padded frame and no lag that is kept wraps
    around. Each image is transformed once, however many products it enters."""

    def __init__(self, template_shape: tuple[int, int], reference_shape: tuple[int, int]):
        self.out = (
            reference_shape[0] - template_shape[0] + 1,
            reference_shape[1] - template_shape[1] + 1,
        )
        self.shape = tuple(sfft.next_fast_len(n, real=True) for n in reference_shape)
        # large frames in single precision: a third faster, and the sums over many pixels
        # keep their accuracy (1024² SXT pairs: NCC within 5e-7 of double precision, the
        # sub-pixel peak within 0.004 px, a tenth of the registration's own error, on
        # broad flat peaks); small ones, where a few pixels' overlap would show the
        # rounding, and which cost little anyway, in double
        big = self.shape[0] * self.shape[1] >= SINGLE_PRECISION_FFT_SIZE
        self.dtype = np.float32 if big else np.float64

    def template(self, a: np.ndarray) -> np.ndarray:
        return np.conj(sfft.rfft2(a.astype(self.dtype, copy=False), s=self.shape))

    def reference(self, b: np.ndarray) -> np.ndarray:
        return sfft.rfft2(b.astype(self.dtype, copy=False), s=self.shape)

    def __call__(
        self, fa: np.ndarray, fb: np.ndarray, offset: tuple[int, int] = (0, 0)
    ) -> np.ndarray:
        """The correlation of the images transformed to ``fa`` and ``fb``; ``offset``: the
        reference was transformed at the frame's origin but sits at ``offset`` in the
        reference, which only moves the lags read out: ``c[k] = c_0[k - offset]``, and the
        negative lags that wrap around meet only the zeros of the frame's padding."""
        c = sfft.irfft2(fa * fb, s=self.shape)
        if offset == (0, 0):
            return c[: self.out[0], : self.out[1]].astype(np.float64)
        rows = (np.arange(self.out[0]) - offset[0]) % self.shape[0]
        cols = (np.arange(self.out[1]) - offset[1]) % self.shape[1]
        return c[np.ix_(rows, cols)].astype(np.float64)

    def check(self, spectrum: np.ndarray) -> np.ndarray:
        """``spectrum`` if it is a transform of this frame, else ``ValueError``."""
        want = (self.shape[0], self.shape[1] // 2 + 1)
        if spectrum.shape != want or spectrum.real.dtype != self.dtype:
            raise ValueError(
                f"a spectrum of shape {want} and {np.dtype(self.dtype).name} precision is "
                f"needed for this pair, got {spectrum.shape} {spectrum.real.dtype.name}"
            )
        return spectrum


#: FFT frames of at least this many pixels are correlated in single precision.
SINGLE_PRECISION_FFT_SIZE = 256 * 256


def _window_sums(b: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """``c[k] = sum of b over the window-sized box at offset k``, for every box inside ``b``:
    the correlation of an all-ones template with ``b``, by running sums (rows, then columns)."""
    h, w = window
    # sums over h consecutive rows, by a running update from the first: one pass over b
    # and arrays only as tall as the search range (a cumsum along rows is much slower)
    band = np.empty((b.shape[0] - h + 1, b.shape[1]))
    band[0] = b[:h].sum(axis=0)
    np.cumsum(b[h:] - b[: b.shape[0] - h], axis=0, out=band[1:])
    band[1:] += band[0]
    cols = np.zeros((band.shape[0], band.shape[1] + 1))
    np.cumsum(band, axis=1, out=cols[:, 1:])
    return cols[:, w:] - cols[:, :-w]


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` if the valid pixels of ``mask`` fill exactly that rectangle
    (not empty), else ``None``."""
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return None
    y0, y1 = int(np.argmax(rows)), rows.size - int(np.argmax(rows[::-1]))
    x0, x1 = int(np.argmax(cols)), cols.size - int(np.argmax(cols[::-1]))
    if np.count_nonzero(mask) != (y1 - y0) * (x1 - x0):
        return None
    return y0, y1, x0, x1


def _range_sums(img: np.ndarray, a0, a1, b0, b1) -> np.ndarray:
    """``c[i, j] = img[a0[i]:a1[i], b0[j]:b1[j]].sum()`` for every ``i, j``: rectangle sums
    of an integral image, built only at the rows the ranges need (a full one takes a
    cumsum along rows, much slower), from one pass over ``img``."""
    h, w = img.shape
    starts = np.unique(np.concatenate([[0], a0, a1]))
    starts = starts[starts < h]
    rows = np.append(starts, h)  # the integral image's rows kept: sums of img above each
    integral = np.zeros((rows.size, w + 1))
    bands = integral[1:, 1:]
    # band by band (np.add.reduceat along rows is as slow as a cumsum); most bands are one
    # row (the lags' edges), which is its own sum: copied at once, not summed one by one
    # (a call per row was a third of the time of a map of small views)
    single = np.diff(rows) == 1
    bands[single] = img[starts[single]]
    for k in np.flatnonzero(~single):
        bands[k] = img[rows[k] : rows[k + 1]].sum(axis=0)
    np.cumsum(bands, axis=0, out=bands)
    np.cumsum(bands, axis=1, out=bands)
    r0, r1 = np.searchsorted(rows, a0), np.searchsorted(rows, a1)
    return (
        integral[np.ix_(r1, b1)]
        - integral[np.ix_(r0, b1)]
        - integral[np.ix_(r1, b0)]
        + integral[np.ix_(r0, b0)]
    )


def _sums_inside_box(t: np.ndarray, box: tuple[int, int, int, int], out: tuple[int, int]):
    """``c[k] = sum of t over the template pixels x with x + k inside the box``, for every
    lag ``k`` of an ``out``-shaped map."""
    h, w = t.shape
    y0, y1, x0, x1 = box
    ky, kx = np.arange(out[0]), np.arange(out[1])
    return _range_sums(
        t, np.clip(y0 - ky, 0, h), np.clip(y1 - ky, 0, h), np.clip(x0 - kx, 0, w),
        np.clip(x1 - kx, 0, w),
    )  # fmt: skip


def _box_window_sums(
    inside: np.ndarray, box: tuple[int, int, int, int], window: tuple[int, int], out
) -> np.ndarray:
    """``c[k] = sum of a frame over the window-sized box at offset k``, for every lag ``k``
    of an ``out``-shaped map, where the frame is ``inside`` over ``box`` and zero elsewhere
    (what :func:`_window_sums` gives for the whole frame, without making it)."""
    hb, wb = inside.shape
    y0, _, x0, _ = box
    ky, kx = np.arange(out[0]), np.arange(out[1])
    return _range_sums(
        inside, np.clip(ky - y0, 0, hb), np.clip(ky + window[0] - y0, 0, hb),
        np.clip(kx - x0, 0, wb), np.clip(kx + window[1] - x0, 0, wb),
    )  # fmt: skip


def _box_overlap(box: tuple[int, int, int, int], shape, out: tuple[int, int]) -> np.ndarray:
    """Pixels of an all-valid ``shape`` template inside the box, at every lag."""
    y0, y1, x0, x1 = box
    ky, kx = np.arange(out[0]), np.arange(out[1])
    oy = np.clip(np.minimum(y1 - ky, shape[0]) - np.maximum(y0 - ky, 0), 0, None)
    ox = np.clip(np.minimum(x1 - kx, shape[1]) - np.maximum(x0 - kx, 0), 0, None)
    return np.outer(oy, ox).astype(np.float64)


def centred_spectrum(
    image: np.ndarray, template_shape: tuple[int, int], reference_shape: tuple[int, int]
) -> np.ndarray:
    """The transform :func:`ncc_map` computes of an all-valid image in a pair of these
    shapes: the image less its mean, at the origin of the pair's zero-padded frame.

    Pass it to :func:`ncc_map` as ``template_spectrum`` where the image is the template,
    or as ``reference_spectrum`` where it fills the reference's valid rectangle (a
    padded view, an anchor), so that pairs sharing an image transform it once. The
    same spectrum serves both: ``ncc_map`` reads the lags out where the rectangle sits.
    """
    corr = _ValidCorrelator(tuple(template_shape), tuple(reference_shape))
    a = np.asarray(image, dtype=np.float64)
    return sfft.rfft2((a - a.sum() / max(a.size, 1)).astype(corr.dtype, copy=False), s=corr.shape)


#: An all-valid image less its mean, and that squared (:func:`centred`).
Centred = tuple[np.ndarray, np.ndarray]


def centred(image: np.ndarray) -> Centred:
    """An all-valid image less its mean, and that squared: what :func:`ncc_map_in_rectangle`
    sums for a template or a valid rectangle. Pass it as ``template_centred`` or
    ``valid_centred`` where pairs share the image (a 1024² view: about 2.5 ms each time)."""
    a = np.asarray(image, dtype=np.float64)
    c = a - a.sum() / max(a.size, 1)
    return c, c * c


def valid_rectangle(reference: np.ndarray, reference_mask: np.ndarray) -> np.ndarray | None:
    """The part of ``reference`` that :func:`ncc_map` compares when its valid pixels form a
    rectangle (``None`` when they do not): what ``valid_centred`` is :func:`centred` of."""
    mask = np.asarray(reference_mask)
    box = _box(mask) if mask.dtype == bool else None
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return np.asarray(reference)[y0:y1, x0:x1]


def rectangle_spectrum(
    reference: np.ndarray, reference_mask: np.ndarray, template_shape: tuple[int, int]
) -> np.ndarray | None:
    """:func:`centred_spectrum` of a reference's valid rectangle, for pairs that share the
    reference; ``None`` when its valid pixels do not form a rectangle (then
    :func:`ncc_map` takes no spectrum for it)."""
    valid = valid_rectangle(reference, reference_mask)
    if valid is None:
        return None
    return centred_spectrum(valid, template_shape, np.shape(reference_mask))


def ncc_map(
    template: np.ndarray,
    reference: np.ndarray,
    template_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    min_overlap: float = 0.5,
    *,
    template_spectrum: np.ndarray | None = None,
    reference_spectrum: np.ndarray | None = None,
    template_centred: Centred | None = None,
    valid_centred: Centred | None = None,
) -> np.ndarray:
    """Masked normalised cross-correlation at every integer shift.

    Parameters
    ----------
    template
        ``(H, W)`` image.
    reference
        ``(H + 2 my, W + 2 mx)`` image on the same pixel grid, the template's
        frame sitting at offset ``(my, mx)``.
    template_mask, reference_mask
        Valid pixels (default: all).
    min_overlap
        Shifts whose overlap is below this fraction of the template's valid pixels
        get NCC ``-1``.
    template_spectrum, reference_spectrum
        :func:`centred_spectrum` of the template, and of the reference's valid
        rectangle, when already computed (pairs that share a view). Only for an
        all-valid template and a reference whose valid pixels form a rectangle.
    template_centred, valid_centred
        :func:`centred` of the template and of the reference's valid rectangle
        (:func:`valid_rectangle`), when already computed; the same conditions.

    Returns
    -------
    numpy.ndarray
        ``(2 my + 1, 2 mx + 1)`` map; entry ``[sy + my, sx + mx]`` is the NCC of
        ``template(x)`` and ``reference(x + (my, mx) + s)``.
    """
    t = np.asarray(template, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if t.ndim != 2 or r.ndim != 2 or r.shape[0] < t.shape[0] or r.shape[1] < t.shape[1]:
        raise ValueError(f"reference {r.shape} must contain template {t.shape}")
    box = None  # the rectangle-sum path: an all-valid template, a boolean rectangle
    if template_mask is None and reference_mask is None:
        box = (0, r.shape[0], 0, r.shape[1])
    elif template_mask is None and np.asarray(reference_mask).dtype == bool:
        box = _box(np.asarray(reference_mask))
    if box is not None:
        y0, y1, x0, x1 = box
        return ncc_map_in_rectangle(
            template, r[y0:y1, x0:x1], (y0, x0), r.shape, min_overlap,
            template_spectrum=template_spectrum, reference_spectrum=reference_spectrum,
            template_centred=template_centred, valid_centred=valid_centred,
        )  # fmt: skip
    given = (template_spectrum, reference_spectrum, template_centred, valid_centred)
    if any(x is not None for x in given):
        raise ValueError(
            "spectra and centred images need an all-valid template and a reference whose "
            "valid pixels form a rectangle"
        )
    # centre both first: the sums below subtract large, nearly equal numbers otherwise
    if template_mask is None:  # no all-ones mask to build and multiply by (exact either way)
        mt = None
        n_template = t.size
        t = t - t.sum() / max(n_template, 1)
    else:
        mt = np.asarray(template_mask, np.float64)
        n_template = mt.sum()
        t = (t - (t * mt).sum() / max(n_template, 1)) * mt
    corr = _ValidCorrelator(t.shape, r.shape)
    mr = np.ones_like(r) if reference_mask is None else np.asarray(reference_mask, np.float64)
    r = (r - (r * mr).sum() / max(mr.sum(), 1)) * mr
    f_t, f_tt = corr.template(t), corr.template(t * t)
    f_mr, f_r = corr.reference(mr), corr.reference(r)
    if mt is None:
        # an all-valid template: its mask's correlations are window sums (7 FFTs, not 13)
        n = np.rint(_window_sums(mr, t.shape))
        sr, srr = _window_sums(r, t.shape), _window_sums(r * r, t.shape)
    else:
        f_mt = corr.template(mt)
        n = np.rint(corr(f_mt, f_mr))
        sr, srr = corr(f_mt, f_r), corr(f_mt, corr.reference(r * r))
    st, stt = corr(f_t, f_mr), corr(f_tt, f_mr)
    return _normalised(corr(f_t, f_r), n, st, stt, sr, srr, n_template, min_overlap)


def ncc_map_in_rectangle(
    template: np.ndarray,
    valid: np.ndarray,
    offset: tuple[int, int],
    frame_shape: tuple[int, int],
    min_overlap: float = 0.5,
    *,
    template_spectrum: np.ndarray | None = None,
    reference_spectrum: np.ndarray | None = None,
    template_centred: Centred | None = None,
    valid_centred: Centred | None = None,
) -> np.ndarray:
    """:func:`ncc_map` of an all-valid template against a reference frame of
    ``frame_shape`` whose valid pixels are the rectangle ``valid`` at ``offset`` (a view
    padded by the search margin, a full view resampled onto the interior grid), without
    making the frame.

    Every sum but the cross term is a rectangle sum of the template or of ``valid``
    (3 FFTs, not 7, or one inverse FFT with both spectra given: see
    :func:`centred_spectrum`, which ``reference_spectrum`` is of ``valid``), over the
    template and ``valid`` less their means (:func:`centred`; ``template_centred`` and
    ``valid_centred`` when already computed).
    """
    t = np.asarray(template, dtype=np.float64)
    inside = np.asarray(valid, dtype=np.float64)
    y0, x0 = offset
    box = (y0, y0 + inside.shape[0], x0, x0 + inside.shape[1])
    if (
        t.ndim != 2 or inside.ndim != 2 or len(frame_shape) != 2
        or min(y0, x0) < 0 or box[1] > frame_shape[0] or box[3] > frame_shape[1]
        or frame_shape[0] < t.shape[0] or frame_shape[1] < t.shape[1]
    ):  # fmt: skip
        raise ValueError(
            f"a {inside.shape} rectangle at {offset} and template {t.shape} must fit in the "
            f"frame {tuple(frame_shape)}"
        )
    frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
    corr = _ValidCorrelator(t.shape, frame_shape)
    # centre both first: the sums below subtract large, nearly equal numbers otherwise
    t_c, t_cc = template_centred or centred(t)
    r_c, r_cc = valid_centred or centred(inside)
    if t_c.shape != t.shape or r_c.shape != inside.shape:
        raise ValueError("centred images of another shape than the template and the rectangle")
    if reference_spectrum is None:  # the rectangle at the frame's origin (see corr())
        reference_spectrum = centred_spectrum(inside, t.shape, frame_shape)
    if template_spectrum is None:  # one definition of both transforms: centred_spectrum
        template_spectrum = centred_spectrum(template, t.shape, frame_shape)
    n = _box_overlap(box, t.shape, corr.out)
    st, stt = _sums_inside_box(t_c, box, corr.out), _sums_inside_box(t_cc, box, corr.out)
    sr = _box_window_sums(r_c, box, t.shape, corr.out)
    srr = _box_window_sums(r_cc, box, t.shape, corr.out)
    f_t = np.conj(corr.check(template_spectrum))
    cross = corr(f_t, corr.check(reference_spectrum), offset=(y0, x0))
    return _normalised(cross, n, st, stt, sr, srr, t.size, min_overlap)


def _normalised(str_, n, st, stt, sr, srr, n_template, min_overlap) -> np.ndarray:
    """NCC from the overlap's pixel count and sums (template, reference, their squares,
    the cross term), ``-1`` where the overlap is too small or a side is flat."""
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.maximum(n, 1)
        cov = str_ - st * sr / nn
        vt = stt - st * st / nn
        vr = srr - sr * sr / nn
        out = cov / np.sqrt(np.maximum(vt, 0) * np.maximum(vr, 0))
    bad = (n < min_overlap * n_template) | ~np.isfinite(out) | (vt <= 1e-12 * max(vt.max(), 1e-300))
    out[bad] = -1.0
    return np.clip(out, -1.0, 1.0)


class NccSurface:
    """A bicubic spline through a cached integer NCC map: values and gradients at any shift."""

    def __init__(self, ncc: np.ndarray) -> None:
        self.map = np.asarray(ncc, dtype=np.float64)
        my, mx = (s // 2 for s in self.map.shape)
        self.margin = (my, mx)
        ky = min(3, self.map.shape[0] - 1)
        kx = min(3, self.map.shape[1] - 1)
        self.spline = RectBivariateSpline(
            np.arange(-my, my + 1.0), np.arange(-mx, mx + 1.0), self.map, kx=ky, ky=kx, s=0
        )

    def clip(self, s: np.ndarray) -> np.ndarray:
        m = np.asarray(self.margin, float)
        return np.clip(s, -m, m)

    def value(self, s: np.ndarray) -> np.ndarray:
        """NCC at shifts ``s`` (``(..., 2)``), clipped to the map."""
        s = self.clip(np.asarray(s, float))
        return self.spline.ev(s[..., 0], s[..., 1])

    def gradient(self, s: np.ndarray) -> np.ndarray:
        s = self.clip(np.asarray(s, float))
        return np.stack(
            [
                self.spline.ev(s[..., 0], s[..., 1], dx=1),
                self.spline.ev(s[..., 0], s[..., 1], dy=1),
            ],
            axis=-1,
        )

    def peak(self, window: SearchWindow | None = None) -> tuple[np.ndarray, float]:
        """Sub-pixel maximum: integer argmax (within ``window`` when given: the shifts a
        coarse estimate leaves possible) refined on the spline by L-BFGS-B (within ±1 px,
        and the window)."""
        m = np.asarray(self.margin, float)
        lo, hi = -m, m
        if window is not None:
            lo = np.maximum(lo, np.ceil(window.centre - window.radius))
            hi = np.minimum(hi, np.floor(window.centre + window.radius))
        masked = np.full(self.map.shape, -np.inf)
        rows = slice(int(lo[0] + m[0]), int(hi[0] + m[0]) + 1)
        cols = slice(int(lo[1] + m[1]), int(hi[1] + m[1]) + 1)
        masked[rows, cols] = self.map[rows, cols]
        iy, ix = np.unravel_index(int(np.argmax(masked)), self.map.shape)
        s0 = np.array([iy - self.margin[0], ix - self.margin[1]], float)
        bounds = [(max(s0[k] - 1, lo[k]), min(s0[k] + 1, hi[k])) for k in range(2)]
        # NCC peaks of large, smooth images are broad and nearly flat (values within 1e-4 of
        # each other over pixels): scipy's default tolerances (gradient 1e-5) would stop at
        # the integer start, so the tolerances are set far below any meaningful change
        res = optimize.minimize(
            lambda s: -float(self.value(s)),
            s0,
            jac=lambda s: -self.gradient(s),
            method="L-BFGS-B",
            bounds=bounds,
            options={"gtol": 1e-14, "ftol": 1e-15, "maxiter": 100},
        )
        s = res.x if res.fun <= -masked.max() else s0
        return np.asarray(s, float), float(self.value(s))


@dataclass(frozen=True)
class SearchWindow:
    """The shifts a pair's peak is looked for in: ``centre ± radius`` (px, per axis)."""

    centre: np.ndarray
    radius: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre", np.asarray(self.centre, float).reshape(2))
        object.__setattr__(self, "radius", np.asarray(self.radius, float).reshape(2))

    def holds_inside(self, shift: np.ndarray, margin: Sequence[int]) -> bool:
        """Whether ``shift`` lies inside the window and a map of ``margin``, not on either's
        edge (on an edge it only bounds the shift)."""
        # per axis on Python floats (the same comparisons): arrays of two cost more
        for k in range(2):
            s, c, r, m = float(shift[k]), float(self.centre[k]), float(self.radius[k]), margin[k]
            if not (s < min(c + r, m) - 0.5 and s > max(c - r, -m) + 0.5):
                return False
        return True


def peak_quality(ncc: np.ndarray) -> float:
    """Peak sharpness: peak NCC minus the median of the map (0: no peak, ~1: a sharp one)."""
    return float(ncc.max() - np.median(ncc))


def register(
    template: np.ndarray,
    reference: np.ndarray,
    template_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    **spectra: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """NCC map, sub-pixel peak shift ``s``, peak NCC and peak quality of one pair
    (``spectra``: :func:`ncc_map`'s ``template_spectrum`` and ``reference_spectrum``)."""
    m = ncc_map(template, reference, template_mask, reference_mask, **spectra)
    return (m, *locate_peak(m))


def locate_peak(
    ncc: np.ndarray, window: SearchWindow | None = None
) -> tuple[np.ndarray, float, float]:
    """Sub-pixel peak shift, peak NCC and peak quality of an integer NCC map (what
    :func:`register` returns after the map), the peak within ``window`` if given."""
    s, peak = NccSurface(ncc).peak(window)
    return s, peak, peak_quality(ncc)
