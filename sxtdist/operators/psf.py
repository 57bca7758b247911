"""Detector blur (the zone plate's PSF) and cropping, with exact adjoints.

A truncated detector still sees light blurred in from outside its edges, so the
model blurs a padded detector and crops it: ``Crop @ Blur @ (padded projector)``.
Blurring uses zero boundaries (``mode="constant"``): the convolution matrix is
then a symmetric Toeplitz matrix for a symmetric kernel and the adjoint of a
correlation with kernel ``k`` is the correlation with ``k`` flipped, exactly.
Layout: ``(angles, cols, rows)``; the blur acts on the last two axes.
"""

from __future__ import annotations

import math

import numpy as np

from .base import LinearOperator, array_module


def _ndimage(x):
    if array_module(x) is np:
        import scipy.ndimage as ndi
    else:  # pragma: no cover - GPU path
        import cupyx.scipy.ndimage as ndi
    return ndi


def gaussian_radius(sigma_px: float, truncate: float = 4.0) -> int:
    """Half-width (pixels) of the truncated Gaussian kernel (scipy's rule)."""
    return int(truncate * float(sigma_px) + 0.5) if sigma_px > 0 else 0


class GaussianBlur(LinearOperator):
    """Separable Gaussian blur of each projection; self-adjoint.

    Parameters
    ----------
    shape
        ``(angles, cols, rows)``.
    sigma_px
        Standard deviation along (cols, rows), in pixels; 0 skips an axis.
    """

    def __init__(self, shape: tuple[int, int, int], sigma_px: tuple[float, float]) -> None:
        self.domain_shape = self.range_shape = tuple(int(s) for s in shape)
        self.sigma_px = (float(sigma_px[0]), float(sigma_px[1]))

    def _apply(self, x, out):
        ndi = _ndimage(x)
        y = x
        for axis, sigma in ((1, self.sigma_px[0]), (2, self.sigma_px[1])):
            if sigma > 0:
                y = ndi.gaussian_filter1d(y, sigma, axis=axis, mode="constant", cval=0.0)
        if y is x:
            y = x.copy()
        if out is None:
            return y
        out[...] = y
        return out

    _adjoint = _apply


class KernelBlur(LinearOperator):
    """Blur of each projection with a general 2D kernel ``(cols, rows)``, odd-sized.

    The adjoint correlates with the kernel flipped in both axes.
    """

    def __init__(self, shape: tuple[int, int, int], kernel: np.ndarray) -> None:
        kernel = np.asarray(kernel, dtype=np.float32)
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ValueError(f"the kernel must be 2D with odd sizes, got {kernel.shape}")
        self.domain_shape = self.range_shape = tuple(int(s) for s in shape)
        self.kernel = kernel[None]
        self.kernel_flipped = np.ascontiguousarray(kernel[::-1, ::-1])[None]

    def _run(self, x, kernel, out):
        ndi = _ndimage(x)
        xp = array_module(x)
        y = ndi.correlate(x, xp.asarray(kernel), mode="constant", cval=0.0)
        if out is None:
            return y
        out[...] = y
        return out

    def _apply(self, x, out):
        return self._run(x, self.kernel, out)

    def _adjoint(self, y, out):
        return self._run(y, self.kernel_flipped, out)


class Crop(LinearOperator):
    """Keep ``[lo, hi)`` along each axis; the adjoint pads with zeros."""

    def __init__(self, shape: tuple[int, ...], window: tuple[tuple[int, int], ...]) -> None:
        if len(window) != len(shape):
            raise ValueError("one (lo, hi) window per axis")
        for (lo, hi), n in zip(window, shape):
            if not 0 <= lo < hi <= n:
                raise ValueError(f"crop window {(lo, hi)} does not fit an axis of length {n}")
        self.domain_shape = tuple(int(s) for s in shape)
        self.window = tuple((int(lo), int(hi)) for lo, hi in window)
        self.range_shape = tuple(hi - lo for lo, hi in self.window)
        self._index = tuple(slice(lo, hi) for lo, hi in self.window)

    def _apply(self, x, out):
        y = x[self._index]
        if out is None:
            return y.copy()
        out[...] = y
        return out

    def _adjoint(self, y, out):
        xp = array_module(y)
        if out is None:
            out = xp.zeros(self.domain_shape, dtype=y.dtype)
        else:
            out[...] = 0
        out[self._index] = y
        return out


def psf_pad(sigma_px: float) -> int:
    """Padding (pixels) that holds the blur's whole footprint."""
    return gaussian_radius(sigma_px)


def fwhm_to_sigma_px(fwhm_nm: float, pixel_nm: float) -> float:
    """Gaussian standard deviation in pixels from a FWHM in nm."""
    return float(fwhm_nm) / (2.0 * math.sqrt(2.0 * math.log(2.0))) / float(pixel_nm)
