"""Alignment maths: NCC registration, anchor/neighbour pairs, eq. 14, the intensity transform.

Pure numpy/scipy; the Dask orchestration and the dataset I/O live in
:mod:`sxtdist.alignment_runner`.

Conventions (see :mod:`sxtdist.geometry`): a shift ``d = (dy, dx)`` is the
measured displacement of an image in its scan's pixels; an image displaced by
``d`` shows at pixel ``x`` what the aligned image shows at ``x - d``.

Registration of a *template* ``T`` (``H x W``) against a *reference* ``R`` on the
same pixel grid but padded by a margin ``m`` on every side: the normalised
cross-correlation (paper eq. 15) of ``T(x)`` with ``R(x + m + s)`` is evaluated
at every integer ``s`` in ``[-m, m]^2`` over the pixels that are valid in both
(masked NCC: the cross term by FFT; the other sums by FFT, or as rectangle sums when
the valid pixels are rectangles). That integer map is cached; a bicubic spline of it
gives the NCC and its gradient at sub-pixel shifts, maximised with L-BFGS-B.
If ``T`` is ``R`` displaced by ``d`` then the peak is at ``s = -d``.

The interior scan (paper appendix B.1): every interior view ``i`` is paired with
its anchor (the full view at the nearest angle, or the mirrored full view
``theta + 180`` flipped left-right) when one lies within ``anchor_window_deg``,
and with its angular neighbour ``i + 1``. Each pair gives a cached NCC map; the
shifts maximise the sum of all pair NCCs (eq. 14), started from the linear
least-squares solution of the pairs' peak shifts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, optimize, sparse
from scipy.interpolate import RectBivariateSpline

from .geometry import ScanGeometry, without_rigid_translation
from .physics import FWHM_PER_SIGMA, psf_fwhm_nm

# -- NCC over integer shifts ------------------------------------------------------------------


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
    # band by band (np.add.reduceat along rows is as slow as a cumsum)
    bands = [img[i:j].sum(axis=0) for i, j in itertools.pairwise(rows)]
    np.cumsum(bands, axis=0, out=integral[1:, 1:])
    np.cumsum(integral[1:, 1:], axis=1, out=integral[1:, 1:])
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


def rectangle_spectrum(
    reference: np.ndarray, reference_mask: np.ndarray, template_shape: tuple[int, int]
) -> np.ndarray | None:
    """:func:`centred_spectrum` of a reference's valid rectangle, for pairs that share the
    reference; ``None`` when its valid pixels do not form a rectangle (then
    :func:`ncc_map` takes no spectrum for it)."""
    mask = np.asarray(reference_mask)
    box = _box(mask) if mask.dtype == bool else None
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return centred_spectrum(np.asarray(reference)[y0:y1, x0:x1], template_shape, mask.shape)


def ncc_map(
    template: np.ndarray,
    reference: np.ndarray,
    template_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    min_overlap: float = 0.5,
    *,
    template_spectrum: np.ndarray | None = None,
    reference_spectrum: np.ndarray | None = None,
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
        )  # fmt: skip
    if template_spectrum is not None or reference_spectrum is not None:
        raise ValueError(
            "spectra need an all-valid template and a reference whose valid pixels form a rectangle"
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
) -> np.ndarray:
    """:func:`ncc_map` of an all-valid template against a reference frame of
    ``frame_shape`` whose valid pixels are the rectangle ``valid`` at ``offset`` (a view
    padded by the search margin, a full view resampled onto the interior grid), without
    making the frame.

    Every sum but the cross term is a rectangle sum of the template or of ``valid``
    (3 FFTs, not 7, or one inverse FFT with both spectra given: see
    :func:`centred_spectrum`, which ``reference_spectrum`` is of ``valid``).
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
    t_c = t - t.sum() / max(t.size, 1)
    r_c = inside - inside.sum() / max(inside.size, 1)
    if reference_spectrum is None:  # the rectangle at the frame's origin (see corr())
        reference_spectrum = centred_spectrum(inside, t.shape, frame_shape)
    if template_spectrum is None:  # one definition of both transforms: centred_spectrum
        template_spectrum = centred_spectrum(template, t.shape, frame_shape)
    n = _box_overlap(box, t.shape, corr.out)
    st, stt = _sums_inside_box(t_c, box, corr.out), _sums_inside_box(t_c * t_c, box, corr.out)
    sr = _box_window_sums(r_c, box, t.shape, corr.out)
    srr = _box_window_sums(r_c * r_c, box, t.shape, corr.out)
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

    def peak(self) -> tuple[np.ndarray, float]:
        """Sub-pixel maximum: integer argmax refined on the spline by L-BFGS-B (within ±1 px)."""
        iy, ix = np.unravel_index(int(np.argmax(self.map)), self.map.shape)
        s0 = np.array([iy - self.margin[0], ix - self.margin[1]], float)
        m = np.asarray(self.margin, float)
        bounds = [(max(s0[k] - 1, -m[k]), min(s0[k] + 1, m[k])) for k in range(2)]
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
        s = res.x if res.fun <= -self.map.max() else s0
        return np.asarray(s, float), float(self.value(s))


def peak_quality(ncc: np.ndarray) -> float:
    """Peak sharpness: peak NCC minus the median of the map (0: no peak, ~1: a sharp one)."""
    return float(ncc.max() - np.median(ncc))


# -- images to compare ------------------------------------------------------------------------


def gaussian_blur(img: np.ndarray, sigma_px: float | Sequence[float]) -> np.ndarray:
    """Gaussian blur of a 2D image (``nearest`` edges, kernel to 4 sigma); no-op for zero sigma.

    ``ndimage.gaussian_filter``'s result to rounding, but along the columns by a banded
    matrix product (whole rows at a time): ndimage's column pass takes 2.5 times its row
    pass (1024²: 22 ms against 33 ms for the whole blur).
    """
    sig = np.broadcast_to(np.asarray(sigma_px, float), (2,))
    out = np.asarray(img, np.float64)
    if sig[1] > 0:
        out = ndimage.gaussian_filter1d(out, sig[1], axis=1, mode="nearest")
    if sig[0] > 0:
        out = _gaussian_band(out.shape[0], float(sig[0])) @ out
    return out


def _gaussian_band(n: int, sigma: float) -> sparse.csr_matrix:
    """``(n, n)`` matrix of ndimage's Gaussian filter along an axis (``nearest`` edges)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    cols = np.clip(np.arange(n)[:, None] + x, 0, n - 1)  # repeated edge columns add up
    indptr = np.arange(0, x.size * n + 1, x.size)
    return sparse.csr_matrix((np.tile(kernel, n), cols.ravel(), indptr), shape=(n, n))


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
) -> tuple[np.ndarray, np.ndarray]:
    """A full view resampled (bicubic) onto the ROI pixel grid, padded by ``margin``.

    The full view is taken as aligned with shift ``full_shift`` (default: the
    geometry's). ``mirrored`` gives the view at ``theta + 180``: the same lines, the
    detector reversed (``u -> -u``). Returns the image and its validity mask
    (inside the full detector).
    """
    my, mx = margin
    hr, wr = roi.detector_shape
    hf, wf = full.detector_shape
    dyf, dxf = full.shifts_px[full_index] if full_shift is None else full_shift
    rows = np.arange(-my, hr + my, dtype=float)
    cols = np.arange(-mx, wr + mx, dtype=float)
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
    img = bicubic_on_grid(np.asarray(full_view)[r0:r1, c0:c1], rf - r0, cf - c0)
    mask = ((rf >= -0.5) & (rf <= hf - 0.5))[:, None] & ((cf >= -0.5) & (cf <= wf - 0.5))[None, :]
    return img, mask


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


# -- the pairs of the interior alignment (eq. 14) ---------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One registration task.

    ``kind == "anchor"``: ROI view ``i`` against full view ``j`` (``mirrored`` for
    ``theta_j + 180``); the measurement is ``d_i = -s``.
    ``kind == "neighbour"``: ROI view ``i`` against ROI view ``j``; ``d_i - d_j = -s``.
    """

    kind: str
    i: int
    j: int
    mirrored: bool = False
    delta_deg: float = 0.0


def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    """Signed smallest difference ``a - b`` in degrees, in (-180, 180]."""
    return (np.asarray(a) - b + 180.0) % 360.0 - 180.0


def nearest_anchor(theta: float, full_angles: np.ndarray) -> tuple[int, bool, float]:
    """The full view (or its mirror at ``+180``) nearest to ``theta``: (index, mirrored, |delta|)."""
    d0 = np.abs(_angle_diff(full_angles, theta))
    d1 = np.abs(_angle_diff(full_angles + 180.0, theta))
    j0, j1 = int(np.argmin(d0)), int(np.argmin(d1))
    if d0[j0] <= d1[j1]:
        return j0, False, float(d0[j0])
    return j1, True, float(d1[j1])


def plan_pairs(
    roi_angles: np.ndarray,
    full_angles: np.ndarray | None,
    anchor_window_deg: float | None = None,
    neighbours: bool = True,
) -> list[Pair]:
    """The registrations of eq. 14 for an interior scan.

    Parameters
    ----------
    roi_angles, full_angles
        Angles (degrees) of the interior and full views (``None``: no anchors).
    anchor_window_deg
        An interior view is anchored when a full view (or its mirror) lies within
        this angle; default half the full scan's angular step.
    neighbours
        Link every interior view to the next one in angle (the chain that carries
        the alignment between anchors).
    """
    roi_angles = np.asarray(roi_angles, float)
    order = np.argsort(roi_angles, kind="stable")
    pairs: list[Pair] = []
    if full_angles is not None and len(full_angles):
        full_angles = np.asarray(full_angles, float)
        if anchor_window_deg is None:
            a = np.sort(full_angles % 180.0)
            steps = np.diff(np.concatenate([a, a[:1] + 180.0]))
            anchor_window_deg = 0.5 * float(steps.max()) + 1e-6
        for i, th in enumerate(roi_angles):
            j, mirrored, delta = nearest_anchor(th, full_angles)
            if delta <= anchor_window_deg:
                pairs.append(Pair("anchor", i, j, mirrored, delta))
    if neighbours:
        for a, b in itertools.pairwise(order):
            delta = float(abs(roi_angles[b] - roi_angles[a]))
            pairs.append(Pair("neighbour", int(a), int(b), False, delta))
    return pairs


@dataclass
class PairResult:
    """What a registration task returns: the cached map and its sub-pixel peak."""

    pair: Pair
    ncc: np.ndarray
    shift: np.ndarray  # s at the peak (template vs reference)
    peak: float
    quality: float
    seconds: float = 0.0
    intensity_samples: np.ndarray | None = field(default=None, repr=False)


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


def locate_peak(ncc: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Sub-pixel peak shift, peak NCC and peak quality of an integer NCC map (what
    :func:`register` returns after the map)."""
    s, peak = NccSurface(ncc).peak()
    return s, peak, peak_quality(ncc)


def _pair_angles(pair: Pair, roi_angles: np.ndarray, full_angles: np.ndarray | None):
    ti = math.radians(roi_angles[pair.i])
    if pair.kind == "neighbour":
        tj = math.radians(roi_angles[pair.j])
    else:
        tj = math.radians(full_angles[pair.j] + (180.0 if pair.mirrored else 0.0))
    return ti, tj


def peak_inside_map(result: PairResult) -> bool:
    """Whether a pair's peak lies inside its NCC map: on the edge it only bounds the shift,
    and the solvers leave the pair out."""
    return bool(np.all(np.abs(result.shift) < np.asarray(result.ncc.shape) // 2 - 0.5))


def per_pair(results: Sequence[PairResult], values: np.ndarray) -> np.ndarray:
    """``values`` of the used pairs (in order, :func:`peak_inside_map`) spread over all
    ``results``: NaN for a pair left out."""
    values = np.asarray(values, float)
    out = np.full((len(results), *values.shape[1:]), np.nan)
    out[[k for k, r in enumerate(results) if peak_inside_map(r)]] = values
    return out


#: Reweighting rounds at most, and the smallest robust standard deviation of the prior
#: residuals or the pairs' misfits (interior px times the weight) that :func:`solve_joint`
#: reads as one: below it they are met to rounding and nothing is an outlier.
ROBUST_ITERATIONS = 30
ROBUST_SCALE_FLOOR_PX = 1e-3


#: :func:`solve_joint`'s and :func:`solve_shifts`' rule for pairs that the others contradict:
#: a pair whose misfit, in the solve's own units (times the square root of its weight),
#: is beyond this many robust standard deviations of all pairs' loses weight by Huber's
#: rule. Chosen on the ``small`` preset (docs/alignment.md): at 5 it weighted down 1
#: pair in 48 clean alignments (seeds 1-24, 9 and 19 full views, paper dose) and left
#: every figure as it was, and with half of one interior frame lost it kept the other
#: views within 0.1 px on 12 of 12 seeds with 19 full views (0.131 -> 0.075 px).
ROBUST_PAIRS = 5.0


def robust_pair_weights(misfit: np.ndarray, sqrt_weight: np.ndarray, k: float) -> np.ndarray:
    """``(m, 1)`` Huber weights of pairs from their misfit ``(m, 2)`` (px) and the square
    roots of their least-squares weights: ``min(1, k sigma / |r|)`` per component, in
    robust standard deviations ``sigma`` (1.4826 times the median) of the weighted misfit,
    the smaller of a pair's two (one registration: a bad frame spoils both parts)."""
    r = np.abs(np.asarray(misfit, float)) * np.asarray(sqrt_weight, float)[:, None]
    sigma = np.maximum(1.4826 * np.median(r, axis=0), ROBUST_SCALE_FLOOR_PX)
    return np.minimum(1.0, k * sigma / np.maximum(r, 1e-300)).min(axis=1, keepdims=True)


def pair_weights(
    results: Sequence[PairResult], roi_angles: np.ndarray, anchor_scale_deg: float | None = None
) -> np.ndarray:
    """Least-squares weight of each pair: 1 for neighbours, ``1 / (1 + (delta / s)^2)``
    for an anchor ``delta`` degrees away (``s``: the interior angular step by default),
    because the farther the anchor the more the object's rotation biases the peak."""
    if anchor_scale_deg is None:
        a = np.sort(np.asarray(roi_angles, float))
        anchor_scale_deg = float(np.median(np.diff(a))) if a.size > 1 else 1.0
    s = max(float(anchor_scale_deg), 1e-6)
    return np.array(
        [
            1.0 if r.pair.kind == "neighbour" else 1.0 / (1.0 + (r.pair.delta_deg / s) ** 2)
            for r in results
        ]
    )


def solve_shifts(
    n: int,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    full_angles: np.ndarray | None = None,
    rotation_model: bool = True,
    refine: bool = False,
    anchor_scale_deg: float | None = None,
    robust_pairs: float | None = ROBUST_PAIRS,
) -> tuple[np.ndarray, dict]:
    """The interior shifts ``(n, 2)`` from the pair registrations (eq. 14).

    Each pair's peak ``s`` measures ``-(d_i - d_j)`` (neighbours) or ``-d_i``
    (anchors). Views at different angles also differ by the object's rotation:
    features at depth ``w`` along the beam move by ``w * delta``, and NCC follows
    their contrast-weighted mean, which for a rigid object is the motion of one
    point ``(c_x, c_y)``: ``c_x (cos t_i - cos t_j) + c_y (sin t_i - sin t_j)``
    columns. With ``rotation_model`` that point is solved for with the shifts
    (two more unknowns), which removes the bias that otherwise builds up along
    neighbour chains. The solution is the linear least-squares one; ``refine``
    then maximises the sum of the pairs' NCC splines (eq. 14 as written, by
    L-BFGS) from it. Pairs whose peak sits on the edge of their map are dropped;
    the others are weighted by :func:`pair_weights` (near anchors count most).

    ``robust_pairs``: a pair the others contradict (a damaged frame, a peak on the wrong
    feature) loses weight by Huber's rule beyond ``robust_pairs`` robust standard
    deviations of the pairs' misfits (:func:`robust_pair_weights`), repeated until the
    weights settle; ``None``: plain least squares.

    The record ``info`` holds ``pair_misfit_px``, ``(len(results), 2)``: each pair's
    measured peak less the one the solution predicts (``dy, dx``, interior px; NaN for
    a dropped pair), ``residual_rms_px``, its RMS over the used pairs, and
    ``pair_robust_weights``, the share of its weight each pair kept (NaN if dropped).
    """
    roi_angles = np.asarray(roi_angles, float)
    used = [r for r in results if peak_inside_map(r)]
    info: dict = {"pairs": len(results), "pairs_used": len(used), "rotation_model": rotation_model}
    if not used:
        info["pair_misfit_px"] = per_pair(results, np.zeros((0, 2)))
        info["pair_robust_weights"] = per_pair(results, np.zeros(0))
        return np.zeros((n, 2)), info
    k = n + 2
    a = np.zeros((len(used), k))
    b = np.zeros((len(used), 2))
    for row, r in enumerate(used):
        a[row, r.pair.i] = 1.0
        if r.pair.kind == "neighbour":
            a[row, r.pair.j] = -1.0
        ti, tj = _pair_angles(r.pair, roi_angles, full_angles)
        a[row, n] = -(math.cos(ti) - math.cos(tj))
        a[row, n + 1] = -(math.sin(ti) - math.sin(tj))
        b[row] = -np.asarray(r.shift, float)
    w = np.sqrt(pair_weights(used, roi_angles, anchor_scale_deg))
    a *= w[:, None]
    b *= w[:, None]
    has_anchor = any(r.pair.kind == "anchor" for r in used)
    extra_rows = []
    if not has_anchor:  # relative only: pin the mean shift to zero
        extra_rows.append(np.r_[np.full(n, 1.0 / n), 0.0, 0.0])
    # views not reached by any pair: keep them at zero
    touched = np.zeros(n, bool)
    for r in used:
        touched[r.pair.i] = True
        if r.pair.kind == "neighbour":
            touched[r.pair.j] = True
    for i in np.flatnonzero(~touched):
        e = np.zeros(k)
        e[i] = 1.0
        extra_rows.append(e)
    if extra_rows:
        a = np.vstack([a, extra_rows])
        b = np.vstack([b, np.zeros((len(extra_rows), 2))])
    cols = k if rotation_model else n
    m = len(used)

    def solve(pair_w: np.ndarray) -> np.ndarray:
        aw, bw = a.copy(), b.copy()
        aw[:m] *= pair_w
        bw[:m] *= pair_w
        sol = np.zeros((k, 2))
        # dy: rotation about the vertical axis does not move features vertically
        sol[:n, 0] = np.linalg.lstsq(aw[:, :n], bw[:, 0], rcond=None)[0]
        sol[:cols, 1] = np.linalg.lstsq(aw[:, :cols], bw[:, 1], rcond=None)[0]
        return sol

    def misfit(sol: np.ndarray) -> np.ndarray:
        return (a[:m] @ sol - b[:m]) / w[:, None]

    pair_huber = np.ones((m, 1))
    sol = solve(pair_huber)
    for _ in range(ROBUST_ITERATIONS if robust_pairs else 0):
        # iteratively reweighted: a pair the others contradict (a damaged frame) loses
        # weight by Huber's rule (:func:`robust_pair_weights`)
        new = robust_pair_weights(misfit(sol), w, robust_pairs)
        if np.abs(new - pair_huber).max() < 1e-3:
            break
        pair_huber = new
        sol = solve(np.sqrt(pair_huber))
    info["pair_robust_weights"] = per_pair(results, pair_huber[:, 0])
    d0, c0 = sol[:n], sol[n:, 1]
    info["rotation_point_px"] = c0.tolist()
    resid = misfit(sol)
    info["residual_rms_px"] = float(np.sqrt(np.mean(resid**2)))
    info["pair_misfit_px"] = per_pair(results, resid)
    if not refine:
        return d0, info
    surfaces = [NccSurface(r.ncc) for r in used]
    rows = a[:m] / w[:, None]
    wts = w**2 * pair_huber[:, 0]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x[: 2 * n].reshape(n, 2)
        c = x[2 * n :] if rotation_model else np.zeros(2)
        full = np.vstack([np.c_[d[:, 0], d[:, 1]], np.c_[np.zeros(2), c]])
        s = -(rows @ full)  # predicted peak of every pair
        f, g = 0.0, np.zeros_like(full)
        for p, surf in enumerate(surfaces):
            f -= wts[p] * float(surf.value(s[p]))
            g -= wts[p] * np.outer(rows[p], -surf.gradient(s[p]))
        grad = g[:n].ravel()
        if rotation_model:
            grad = np.r_[grad, g[n:, 1]]
        return f, grad

    x0 = np.r_[d0.ravel(), c0] if rotation_model else d0.ravel()
    res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")
    d = res.x[: 2 * n].reshape(n, 2)
    if res.fun > fun(x0)[0] or np.abs(d - d0).max() > 2.0:
        info["refine"] = "rejected"
        return d0, info
    info["refine"] = "ncc_sum"
    full = np.vstack([d, np.c_[np.zeros(2), res.x[2 * n :] if rotation_model else np.zeros(2)]])
    resid = rows @ full - b[:m] / w[:, None]
    info["residual_rms_px"] = float(np.sqrt(np.mean(resid**2)))
    info["pair_misfit_px"] = per_pair(results, resid)
    return d, info


def solve_joint(
    n: int,
    n_full: int,
    scale: float,
    results: Sequence[PairResult],
    roi_angles: np.ndarray,
    full_angles: np.ndarray,
    prior_weight: float | Sequence[float] = (0.3, 1.0),
    anchor_scale_deg: float | None = None,
    prior_target: np.ndarray | None = None,
    robust: float | None = 3.0,
    robust_pairs: float | None = ROBUST_PAIRS,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Interior shifts and corrections to the full scan's shifts, from the same pairs.

    An anchor registered with full-view shift ``f_j`` whose truth is
    ``f_j + D_j`` is displaced by ``scale * D_j`` on the interior grid
    (``scale`` = full pixel / interior pixel; the mirrored view flips the sign
    of the ``dx`` part), so each anchor pair measures ``d_i - scale * D_j`` and
    the dense interior neighbour chain ties the sparse full views to each
    other. Unknowns: ``d`` (``n x 2``), ``D`` (``n_full x 2``) and the rotation
    point of :func:`solve_shifts`; a prior ``D = prior_target`` (default 0: the
    full scan's own estimate; weight ``prior_weight`` for ``(dy, dx)``, or per
    full view ``(n_full, 2)``, against a pair's weight 1, in interior pixels)
    brings in what the pairs cannot know: the
    rigid translation, any full view no interior view reaches, and the slow
    errors of the chain (its drift over many steps and the closure over 180°,
    i.e. the rotation axis), which the full scan's moments measure directly.
    The default weights were chosen on the ``small`` preset (docs/alignment.md):
    the weighted centroids (``dx``) are as good as a pair; ``dy`` weighs less,
    which was still best (against 1, 3 and 10 times more) after the row profiles
    were refined to 0.02 px.

    ``robust``: the prior is not trusted where the pairs contradict it far more than
    elsewhere. After the least-squares solution, each full view's prior residual is
    compared with ``robust`` times their robust standard deviation (1.4826 times the
    median, per component, but never less than the RMS misfit of the pairs
    themselves), and a view beyond it gets Huber's weight ``robust * sigma / |r|``;
    repeated until the weights settle. A full view moved so
    far that the object leaves its field has biased moments (1.2 px on one of 19 views
    of seed 14 in docs/alignment.md), and its prior, worth about a pair, would
    otherwise pull its anchors' stretch of the interior with it. ``None``: plain
    least squares.

    ``robust_pairs``: as in :func:`solve_shifts`, the pairs that the others contradict
    lose weight, but only once the full views' weights have settled: a full view's bad
    prior first shows as the misfit of the pairs around it, and weighting those down
    first would keep the bad prior (seed 14 with 19 full views in docs/alignment.md:
    0.53 px instead of 0.07).

    Returns
    -------
    d, delta_full, info
        Interior shifts (interior px), corrections to add to the full shifts
        (full px), and a record (``full_views_downweighted``: the full views whose
        prior lost weight; ``full_views_downweighted_weights``: the share of its weight
        each kept, the smaller of ``dy``'s and ``dx``'s; ``pair_misfit_px``,
        ``residual_rms_px`` and ``pair_robust_weights`` as in :func:`solve_shifts`).
    """
    roi_angles = np.asarray(roi_angles, float)
    used = [r for r in results if peak_inside_map(r)]
    k = n + n_full + 2
    ay = np.zeros((len(used), k))
    ax = np.zeros((len(used), k))
    b = np.zeros((len(used), 2))
    for row, r in enumerate(used):
        p = r.pair
        ay[row, p.i] = ax[row, p.i] = 1.0
        if p.kind == "neighbour":
            ay[row, p.j] = ax[row, p.j] = -1.0
        else:
            ay[row, n + p.j] = -scale
            ax[row, n + p.j] = scale if p.mirrored else -scale
        ti, tj = _pair_angles(p, roi_angles, full_angles)
        ax[row, n + n_full] = -(math.cos(ti) - math.cos(tj))
        ax[row, n + n_full + 1] = -(math.sin(ti) - math.sin(tj))
        b[row] = -np.asarray(r.shift, float)
    w = np.sqrt(pair_weights(used, roi_angles, anchor_scale_deg))
    ay *= w[:, None]
    ax *= w[:, None]
    b *= w[:, None]
    pw = np.broadcast_to(np.asarray(prior_weight, float), (n_full, 2))
    target = np.zeros((n_full, 2)) if prior_target is None else np.asarray(prior_target, float)
    eye = np.zeros((n_full, k))
    eye[np.arange(n_full), n + np.arange(n_full)] = scale

    def solve(weights: np.ndarray, pair_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        py = np.vstack([ay * pair_w, weights[:, :1] * eye])
        px = np.vstack([ax * pair_w, weights[:, 1:] * eye])
        rhs = np.vstack([b * pair_w, scale * weights * target])
        sy = np.linalg.lstsq(py[:, : n + n_full], rhs[:, 0], rcond=None)[0]
        return sy, np.linalg.lstsq(px, rhs[:, 1], rcond=None)[0]

    def pair_residuals(sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        # the pairs' own misfit, unweighted, dy then dx (interior px)
        return np.concatenate([(ay[:, : n + n_full] @ sy - b[:, 0]) / w, (ax @ sx - b[:, 1]) / w])

    huber = np.ones((n_full, 2))
    pair_huber = np.ones((len(used), 1))
    sy, sx = solve(pw, pair_huber)
    for _ in range(ROBUST_ITERATIONS if robust or robust_pairs else 0):
        # iteratively reweighted: a full view whose own estimate the pairs contradict far
        # more than the others' (an object pushed out of the field biases its moments)
        # loses weight by Huber's rule, in robust standard deviations of those residuals;
        # never below the pairs' own misfit: with few full views the median of their
        # residuals can be a third of it, and a view then lost weight for a residual the
        # pairs have anyway
        r = np.abs(pw * scale * (np.stack([sy[n:], sx[n : n + n_full]], 1) - target))
        misfit = pair_residuals(sy, sx)
        misfit_pairs = misfit.reshape(2, -1).T
        rule = (
            robust_pair_weights(misfit_pairs, w, robust_pairs)
            if robust_pairs and misfit.size
            else np.ones((len(misfit_pairs), 1))
        )
        # the floor is the misfit of the pairs the robust rule would keep whole: a damaged
        # frame's pairs (2 px) would otherwise raise it and hide a bad full view
        kept = rule[:, 0] >= 1.0
        floor = max(
            float(np.sqrt(np.mean(misfit_pairs[kept] ** 2))) if kept.any() else 0.0,
            ROBUST_SCALE_FLOOR_PX,
        )
        sigma = np.maximum(1.4826 * np.median(r, axis=0), floor)
        new = np.minimum(1.0, robust * sigma / np.maximum(r, 1e-300)) if robust else huber
        new_pairs = pair_huber
        settled = np.abs(new - huber).max() < 1e-3
        # pairs only once the prior's weights have settled: a full view's bad prior shows
        # first as the misfit of the pairs around it, which would otherwise lose weight
        if settled:
            new_pairs = rule
        if settled and np.abs(new_pairs - pair_huber).max() < 1e-3:
            break
        huber, pair_huber = new, new_pairs
        sy, sx = solve(pw * np.sqrt(huber), np.sqrt(pair_huber))
    d = np.stack([sy[:n], sx[:n]], axis=1)
    delta = np.stack([sy[n : n + n_full], sx[n : n + n_full]], axis=1)
    m = len(used)
    resid = pair_residuals(sy, sx)
    down = np.flatnonzero((huber < 1).any(axis=1))
    info = {
        "pairs": len(results),
        "pairs_used": m,
        "rotation_model": True,
        "joint_full": True,
        "full_views_downweighted": down.tolist(),
        "full_views_downweighted_weights": [round(float(huber[j].min()), 3) for j in down],
        "rotation_point_px": sx[n + n_full :].tolist(),
        "residual_rms_px": float(np.sqrt(np.mean(resid**2))),
        "pair_misfit_px": per_pair(results, resid.reshape(2, m).T),
        "pair_robust_weights": per_pair(results, pair_huber[:, 0]),
        "full_correction_rms_px": float(np.sqrt(np.mean(delta**2))),
    }
    return d, delta, info


# -- the intensity transform (paper appendix B.2, eq. 16) -------------------------------------


def dual_energy(t: np.ndarray, phi0: float, c: float) -> np.ndarray:
    """Eq. 16: ``phi0 T + (1 - phi0) T**c`` for a transmission ``T`` of the reference scan."""
    t = np.clip(np.asarray(t, np.float64), 1e-12, None)
    return phi0 * t + (1.0 - phi0) * t**c


def fit_intensity_transform(t_a: np.ndarray, t_b: np.ndarray, model: str = "dual_energy") -> dict:
    """Fit ``T_B = g(T_A)`` by least squares over paired transmissions.

    ``model="dual_energy"``: eq. 16, parameters ``phi0`` in (0, 1] and ``c > 0``;
    ``model="affine"``: ``T_B = a T_A + b`` (stray light). Returns the parameters
    and the RMS residual.
    """
    ta = np.asarray(t_a, np.float64).ravel()
    tb = np.asarray(t_b, np.float64).ravel()
    ok = np.isfinite(ta) & np.isfinite(tb) & (ta > 0)
    ta, tb = ta[ok], tb[ok]
    if ta.size < 3:
        raise ValueError("too few samples to fit an intensity transform")
    if model == "affine":
        a, b = np.polyfit(ta, tb, 1)
        rms = float(np.sqrt(np.mean((a * ta + b - tb) ** 2)))
        return {"model": "affine", "a": float(a), "b": float(b), "rms": rms}
    if model != "dual_energy":
        raise ValueError(f"unknown intensity model {model!r}")
    res = optimize.least_squares(
        lambda p: dual_energy(ta, p[0], p[1]) - tb,
        x0=[0.9, 1.5],
        bounds=([1e-3, 1e-3], [1.0, 20.0]),
    )
    phi0, c = (float(v) for v in res.x)
    rms = float(np.sqrt(np.mean(res.fun**2)))
    return {"model": "dual_energy", "phi0": phi0, "c": c, "rms": rms}


#: Above this fitted ``phi0`` eq. 16 is the identity to within the fit, and ``c`` says nothing.
IDENTITY_PHI0 = 0.995


def describe_intensity_transform(params: dict | None) -> str:
    """One line for people: the chosen model's parameters, its RMS misfit and the pairs it
    was fitted on, then the alternative's (what :func:`fit_intensity_transform` returned
    and ``sxtdist align`` stored)."""

    def one(p: dict) -> str:
        model = p.get("model", "identity")
        if model == "dual_energy":
            text = f"dual_energy (eq. 16): phi0 {p['phi0']:.4f}, c {p['c']:.3g}"
            if p["phi0"] > IDENTITY_PHI0:
                text += " (phi0 ~ 1: no second energy seen, c undetermined)"
        elif model == "affine":
            text = f"affine: a {p['a']:.4f}, b {p['b']:+.4f}"
        else:
            return model
        return text + (f", rms {p['rms']:.2g}" if "rms" in p else "")

    if not params:
        return "none"
    text = one(params)
    if params.get("pairs"):
        text += f" over {params['pairs']} pairs"
    if params.get("reference_scan"):
        text += f", relative to scan {params['reference_scan']!r}"
    if params.get("alternative"):
        text += f"; alternative {one(params['alternative'])}"
    return text


def apply_intensity_transform(data: np.ndarray, params: dict | None) -> np.ndarray:
    """Bring optical depths of the transformed scan back to the reference scan's model.

    ``data`` is optical depth ``-ln T_B`` (any shape); returns ``-ln T_A`` with
    ``T_A = g^{-1}(T_B)`` for the fitted ``g`` (eq. 16 or affine). ``None`` or
    ``{"model": "identity"}`` returns the data unchanged. float32 in, float32 out.
    """
    if not params or params.get("model", "identity") == "identity":
        return data
    tb = np.exp(-np.asarray(data, np.float64))
    model = params["model"]
    if model == "affine":
        a, b = float(params["a"]), float(params["b"])
        ta = (tb - b) / a
    elif model == "dual_energy":
        phi0, c = float(params["phi0"]), float(params["c"])
        # g is increasing in T for 0 < phi0 <= 1, c > 0: invert by a dense table
        grid = np.concatenate([np.geomspace(1e-8, 1e-2, 400), np.linspace(1e-2, 1.0, 4000)[1:]])
        g = dual_energy(grid, phi0, c)
        ta = np.interp(tb, g, grid, left=grid[0], right=None)
        above = tb > g[-1]  # brighter than the flat (noise): extrapolate linearly at T = 1
        if np.any(above):
            slope = phi0 + (1.0 - phi0) * c
            ta = np.where(above, 1.0 + (tb - g[-1]) / slope, ta)
    else:
        raise ValueError(f"unknown intensity model {model!r}")
    out = -np.log(np.clip(ta, 1e-12, None))
    return out.astype(np.asarray(data).dtype if np.asarray(data).dtype.kind == "f" else np.float32)


# -- the sparse full scan ---------------------------------------------------------------------


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


def sinusoid_basis(angles_deg: np.ndarray) -> np.ndarray:
    """``(n, 3)`` columns ``[1, cos, sin]`` of the angles."""
    t = np.deg2rad(np.asarray(angles_deg, float))
    return np.stack([np.ones_like(t), np.cos(t), np.sin(t)], axis=1)


def axis_offset_px(dx: np.ndarray, angles_deg: np.ndarray) -> float:
    """The rotation-axis offset in shifts ``dx``: the constant of their fit by ``[1, cos, sin]``
    (a rigid translation, the sinusoid, does not change it)."""
    return float(np.linalg.lstsq(sinusoid_basis(angles_deg), dx, rcond=None)[0][0])


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
    com: np.ndarray, angles_deg: np.ndarray, cols: int
) -> tuple[np.ndarray, float]:
    """Column centroids -> ``dx`` (the fitted sinusoid, the object's position, removed; the
    constant, the rotation axis, kept) and the axis offset, both about the detector centre."""
    basis = sinusoid_basis(angles_deg)
    coef, *_ = np.linalg.lstsq(basis, com, rcond=None)
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
    """Rows left out at each end: at least ``margin`` and more than any ``|dy|``, so no view's
    weights leave the detector (their sum, which cancels the uniform background, then
    survives the move exactly); never more than leaves four rows."""
    need = int(np.ceil(np.abs(np.asarray(dy, float)).max(initial=0.0))) + 1
    return int(min(max(margin, need), max((rows - 4) // 2, 0)))


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
    views: np.ndarray, geometry: ScanGeometry, dy: np.ndarray | None = None, margin: int = 8
) -> tuple[np.ndarray, float]:
    """Horizontal shifts from the first moment of the object weighted along the rotation axis.

    Like :func:`center_of_mass_dx` (the first Helgason-Ludwig condition), but each
    view's rows are weighted by :func:`slice_weights` placed at the view's
    vertical shift ``dy``: the weighted object ``f(x, y, z) w(z)`` is an object
    too, so its projections' column centroid is ``x_w cos + y_w sin`` plus the
    view's displacement, and whatever is uniform along the axis (the ice column,
    the capillary, even where the detector's edges cut them) weighs nothing. Only
    what varies along the axis (the cell) must stay in the field of view.

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
    return _shifts_from_centroids(com, geometry.angles_deg, cols)


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
    c = np.arange(v.shape[2], dtype=np.float64)
    out = np.full(len(v), np.inf)
    for k in range(len(v)):
        total = q[k].sum()
        if abs(total) < 1e-12:
            continue
        e = np.exp(np.clip(v[k], -50.0, 50.0))  # exp(p) / N0: each pixel's variance
        d = v[k, :-1, :-1] - v[k, 1:, :-1] - v[k, :-1, 1:] + v[k, 1:, 1:]
        spread = e[:-1, :-1] + e[1:, :-1] + e[:-1, 1:] + e[1:, 1:]
        per_photon = float(np.median(d**2 / spread)) / 0.4549  # median of chi²(1): 0.4549
        com = (q[k] @ c) / total
        # var(com) = sum_u ((u - com) / total)^2 var(q(u)), var(q(u)) = sum_r w(r)^2 var(p)
        var_q = (w_rows[k] ** 2) @ e * per_photon
        out[k] = np.sqrt((((c - com) / total) ** 2 * var_q).sum())
    return out


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
    dx, axis = weighted_centroid_dx(views, geometry, dy, margin)
    record["start"] = "row_profiles+weighted_centroid"
    record["weighted_centroid_sigma_px"] = weighted_centroid_noise_px(views, dy, margin).tolist()
    return dx, axis, record


def remove_gauge(err: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Remove what alignment cannot determine from shift errors ``(n, 2)``.

    A rigid translation of the object moves every view by ``dy = c`` and
    ``dx = a cos(theta) + b sin(theta)``: those components are projected out.
    The constant part of ``dx`` (the rotation axis) is determinable and kept:
    ``dx`` is fitted by ``[1, cos, sin]`` and only the sinusoid removed. One scan
    on its own, strict on the axis; the acceptance figures use
    :func:`shift_errors` (one translation for all scans, removed by least squares).
    """
    err = np.asarray(err, float).copy()
    err[:, 0] -= err[:, 0].mean()
    # fit constant and sinusoid together (over 180 deg they are not orthogonal)
    basis = sinusoid_basis(angles_deg)
    coef, *_ = np.linalg.lstsq(basis, err[:, 1], rcond=None)
    err[:, 1] -= basis[:, 1:] @ coef[1:]
    return err


def shift_errors(
    estimated: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    geometries: Mapping[str, ScanGeometry],
) -> dict[str, np.ndarray]:
    """Errors of estimated shifts, less the one object translation that best explains them.

    The object's position is the one thing no alignment can determine: moving it by
    ``t`` nm shifts every view of every scan (``dy`` by a constant, ``dx`` by
    ``a cos + b sin``, see :func:`~sxtdist.geometry.rigid_translation_nm`), and the
    reconstruction only moves with it. So the error of a set of shifts is what
    remains after the best such translation, one for all scans together, is
    removed: what no placement of the object explains. Unlike :func:`remove_gauge`
    per scan, this also counts a translation of one scan against the other, and it
    does not keep a constant ``dx`` fitted beside the sinusoid: over 180° a
    constant and ``sin`` are far from orthogonal (an axis error ``c`` of one scan
    over 180° leaves ``0.44 c`` RMS once the best translation is removed, not ``c``).

    Parameters
    ----------
    estimated, truth
        ``{scan: (n_angles, 2)}`` shifts ``(dy, dx)`` in each scan's pixels; the
        scans of ``estimated`` are compared.
    geometries
        ``{scan: ScanGeometry}`` (angles and pixel sizes).

    Returns
    -------
    dict
        ``{scan: (n_angles, 2)}`` errors in the scan's pixels.
    """
    errors = {
        name: np.asarray(d, float).reshape(-1, 2) - np.asarray(truth[name], float).reshape(-1, 2)
        for name, d in estimated.items()
    }
    return without_rigid_translation(errors, {name: geometries[name] for name in errors})[0]


def rms(err: np.ndarray) -> float:
    """RMS of the shift error vectors' length (px)."""
    e = np.asarray(err, float)
    return float(np.sqrt(np.mean(np.sum(e**2, axis=-1))))


def _sirt(
    op, data: np.ndarray, iterations: int, support: np.ndarray | None, weights=None
) -> np.ndarray:
    """Non-negative SIRT on a slice projector (``data``: its range; ``weights``: 0/1 per datum)."""
    row = op(np.ones(op.domain_shape, np.float32))
    w = np.ones(op.range_shape, np.float32) if weights is None else weights.astype(np.float32)
    col = op.T(w)
    r_inv = np.where(row > 1e-6, w / np.maximum(row, 1e-6), 0.0).astype(np.float32)
    c_inv = np.where(col > 1e-6, 1.0 / np.maximum(col, 1e-6), 0.0).astype(np.float32)
    if support is not None:
        c_inv *= support[:, :, None]
    x = np.zeros(op.domain_shape, np.float32)
    for _ in range(iterations):
        x += c_inv * op.T(r_inv * (data - op(x)))
        np.maximum(x, 0.0, out=x)
    return x


def projection_matching(
    views: np.ndarray,
    geometry: ScanGeometry,
    initial: np.ndarray | None = None,
    max_iterations: int = 10,
    tol_px: float = 0.05,
    sirt_iterations: int = 100,
    max_shift_px: int | None = None,
    smooth_px: float = 0.5,
    leave_one_out: bool = False,
    moments: bool = False,
    relaxation: float = 1.0,
    callback=None,
) -> tuple[np.ndarray, dict]:
    """Align a (sparse) full-field scan to itself by projection matching.

    Repeat: undo the current shifts on the views (bicubic), reconstruct the
    slices coarsely (non-negative SIRT on the scan's own pixel grid, inside the
    field-of-view disc), reproject, register every view to its reprojection
    (NCC, sub-pixel) and add the measured residual displacement to its shift,
    until the largest change is below ``tol_px``. The rotation axis is found,
    not assumed: the constant part of ``dx`` is free; the rigid translation of
    the object (``dy`` constant, ``dx`` in ``cos, sin``) is fixed by removing it
    from every update.

    Options: ``leave_one_out`` compares each view with a reconstruction made
    without it (unstable with very few views, off by default); ``moments``
    measures ``dx`` from the first Helgason-Ludwig moment (column centroid) and
    ``dy`` from the row profiles of the views completed by the reprojection
    where the shift pushed them off the detector, instead of registering the
    view to its reprojection (a reconstruction from few views reproduces its own
    misalignment, so that registration converges slowly); ``relaxation`` scales
    every update.

    Returns
    -------
    shifts, info
        ``(n, 2)`` shifts (this scan's pixels) and a record of the iterations.
    """
    from .geometry import VolumeGrid
    from .operators.projector import SliceProjector

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
    support = ((yy**2 + xx**2) <= ((cols + 2 * pad) / 2.0) ** 2).astype(np.float32)
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
        wts = np.ascontiguousarray(valid.transpose(0, 2, 1))
        if leave_one_out:
            # each view is compared with what the others predict at its angle: a
            # reconstruction from all views would reproduce its misalignment
            reproj = np.empty_like(corrected)
            for k in range(n):
                w_k = wts.copy()
                w_k[k] = 0.0
                x = _sirt(op, sino, sirt_iterations, support, w_k)
                reproj[k] = op(x)[k].T
        else:
            x = _sirt(op, sino, sirt_iterations, support, wts)
            reproj = op(x).transpose(0, 2, 1)  # (angles, rows, cols)
        upd = np.zeros((n, 2))
        for k in range(n):
            tpl = gaussian_blur(corrected[k], smooth_px)
            ref, mr = pad_with_mask(gaussian_blur(reproj[k], smooth_px), (m, m))
            ncc = ncc_map(tpl, ref, valid[k], mr)
            s, _ = NccSurface(ncc).peak()
            upd[k] = -s
        if moments:
            # dx from the first moment (Helgason-Ludwig): the column centroid of a
            # view of the whole object is a sinusoid in the angle plus the view's
            # displacement; the columns lost off the detector edge are filled in
            # from the reprojection
            completed = np.where(valid, corrected, reproj)
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
    :func:`sxtdist.alignment_runner.align`): on the ``small`` preset with 9 or 19
    views and 3 px shifts they are accurate to 0.05-0.09 px RMS at the paper's dose
    (seeds 1-6), and every form of projection matching tried from there made it
    worse (0.24-0.79 px after 10 iterations, from moments then at 0.07-0.10 px; a
    reconstruction from so few views reproduces its own misalignment). See
    docs/alignment.md.
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
        moments=True,
        relaxation=0.5,
        callback=callback,
    )
    return d, {**info, **record}
