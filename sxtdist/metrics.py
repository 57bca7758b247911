"""Image-quality metrics: PSNR, radial PSNR, FRC/FSC and the null-space estimate.

Conventions follow the paper and its reference code (interiorsxt_facts.md 4.1–4.4):

- **PSNR** ``= 10 log10(R² / MSE)`` with the data range ``R`` the 99th percentile
  of the *reference* volume (all of it, zeros outside the cell included); a mask
  restricts the MSE, not ``R``.
- **Radial PSNR**: the PSNR over annuli about the rotation axis (the volume's
  ``(y, x)`` centre), so the degradation towards the ROI edge is visible.
- **FRC / FSC**: ring (2D) or shell (3D) correlation of two images' Fourier
  transforms, rings at integer radii ``round(|k|)``; thresholds 1/7 and the
  half-bit curve of van Heel & Schatz (2005). Frequencies are in cycles per
  voxel (0.5 = Nyquist); the resolution quoted is the full period
  ``voxel / f`` at the first crossing, as in the paper (61 nm, 79 nm).
- **Null space**: CGLS with zero data started at the phantom only moves ``x``
  inside ``range(Aᵀ)``, so it converges to the phantom's null-space component
  (the paper's Wilson–Barrett iteration, reached faster); the size is reported as
  the squared-norm ratio the reference code plots and its square root.

Only numpy here (cupy arrays work where the functions use array methods only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .operators.base import LinearOperator

# -- PSNR -------------------------------------------------------------------------------------


def data_range(
    reference: np.ndarray, percentile: float = 99.0, mask: np.ndarray | None = None
) -> float:
    """The paper's PSNR data range: a percentile (99th) of the reference (inside ``mask``)."""
    ref = np.asarray(reference)
    values = ref[mask] if mask is not None else ref
    if values.size == 0:
        raise ValueError("data range of an empty selection")
    return float(np.percentile(values, percentile))


def mse(x: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over all voxels, or over ``mask``."""
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {x.shape} vs reference {ref.shape}")
    d = (x - ref) ** 2
    if mask is not None:
        d = d[np.broadcast_to(mask, d.shape)]
        if d.size == 0:
            raise ValueError("the mask selects no voxels")
    return float(d.mean())


def psnr(
    x: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    data_range_value: float | None = None,
) -> float:
    """Peak signal-to-noise ratio (dB) of ``x`` against ``reference``.

    Parameters
    ----------
    x, reference
        Arrays of one shape.
    mask
        Voxels over which the MSE is taken (default: all).
    data_range_value
        ``R``; default the 99th percentile of the whole reference (the paper's).

    Returns
    -------
    float
        ``10 log10(R² / MSE)``; ``inf`` for identical arrays.
    """
    r = data_range(reference) if data_range_value is None else float(data_range_value)
    m = mse(x, reference, mask)
    if m == 0:
        return math.inf
    return 10.0 * math.log10(r * r / m)


def psnr_in_region(x: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) inside ``mask`` with the truth's range there as the peak.

    The convention of every accuracy table in the docs (ROI, cell, ROI edge).
    """
    t = np.asarray(truth)[np.asarray(mask, bool)]
    return psnr(x, truth, mask, data_range_value=float(t.max() - t.min()))


def cylinder_mask(shape: Sequence[int], diameter_px: float) -> np.ndarray:
    """Voxels whose in-slice distance from the axis (the ``(y, x)`` centre) is < ``diameter/2``.

    For a 2D ``shape`` the mask is a disc; for 3D it is the same disc in every slice
    (the paper's ROI cylinder, effectively full height).
    """
    r = radial_distance(shape)
    return r < diameter_px / 2.0


def radial_distance(shape: Sequence[int]) -> np.ndarray:
    """In-slice distance (voxels) of each voxel from the ``(y, x)`` centre, broadcast to ``shape``."""
    ny, nx = shape[-2:]
    y = np.arange(ny) - (ny - 1) / 2.0
    x = np.arange(nx) - (nx - 1) / 2.0
    r = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    return np.broadcast_to(r, tuple(shape))


@dataclass
class RadialPSNR:
    """PSNR per annulus: ``r_inner``/``r_outer`` and mean ``r_mean`` in voxels, ``psnr`` dB, ``count``."""

    r_inner: np.ndarray
    r_outer: np.ndarray
    r_mean: np.ndarray
    psnr: np.ndarray
    count: np.ndarray


def radial_psnr(
    x: np.ndarray,
    reference: np.ndarray,
    bin_px: float = 20.0,
    r_max_px: float | None = None,
    mask: np.ndarray | None = None,
    data_range_value: float | None = None,
) -> RadialPSNR:
    """PSNR over annuli ``[i·bin, (i+1)·bin)`` about the rotation axis (figure 3a).

    Each annulus is scored on its own (not cumulatively), over the voxels of
    ``mask`` (e.g. the cell) in it. ``data_range_value`` defaults to the 99th
    percentile of the reference inside ``mask`` (the figure-3 convention), or of
    all of it without a mask. Empty annuli give NaN.
    """
    x = np.asarray(x)
    ref = np.asarray(reference)
    r = radial_distance(ref.shape)
    if r_max_px is None:
        r_max_px = float(min(ref.shape[-2:]) / 2.0)
    if data_range_value is None:
        data_range_value = data_range(ref, mask=mask)
    n_bins = max(1, int(math.ceil(r_max_px / bin_px - 1e-9)))
    idx = np.floor(r / bin_px).astype(np.int64)
    sel = idx < n_bins
    if mask is not None:
        sel = sel & np.broadcast_to(mask, ref.shape)
    err = (np.asarray(x, np.float64) - np.asarray(ref, np.float64)) ** 2
    sse = np.bincount(idx[sel], weights=err[sel], minlength=n_bins)
    cnt = np.bincount(idx[sel], minlength=n_bins)
    rsum = np.bincount(idx[sel], weights=r[sel], minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = sse / cnt
        out = 10.0 * np.log10(data_range_value**2 / m)
        rmean = rsum / cnt
    out[cnt == 0] = np.nan
    inner = np.arange(n_bins) * bin_px
    return RadialPSNR(inner, inner + bin_px, rmean, out, cnt)


# -- FRC / FSC --------------------------------------------------------------------------------


@dataclass
class FRC:
    """A Fourier ring/shell correlation curve.

    Attributes
    ----------
    freq
        Ring radius in cycles per voxel (0 … 0.5 = Nyquist).
    frc
        Correlation per ring.
    n
        Fourier samples per ring.
    half_bit, one_seventh
        Threshold curves.
    voxel_size_nm
        For resolutions in nm (None: resolutions in voxels).
    """

    freq: np.ndarray
    frc: np.ndarray
    n: np.ndarray
    half_bit: np.ndarray
    one_seventh: np.ndarray
    voxel_size_nm: float | None = None
    smoothed: np.ndarray | None = field(default=None)

    def crossing(self, threshold: str = "1/7", smooth: bool = False) -> float | None:
        """First frequency (cycles/voxel) where the curve falls below the threshold.

        Ring 0 (the mean) is skipped. The crossing is interpolated linearly between
        the last ring above and the first below; if ring 1 is already below, the
        answer is ring 1's frequency (no correlation beyond the lowest ring).
        ``None`` when the curve never crosses (resolution at least Nyquist).
        """
        curve = self.smoothed if smooth and self.smoothed is not None else self.frc
        thr = self.threshold(threshold)
        below = np.nonzero(curve[1:] < thr[1:])[0]
        if below.size == 0:
            return None
        i = int(below[0]) + 1
        if i == 1:
            return float(self.freq[1])
        d0 = curve[i - 1] - thr[i - 1]
        d1 = curve[i] - thr[i]
        t = d0 / (d0 - d1) if d0 != d1 else 0.0
        return float(self.freq[i - 1] + t * (self.freq[i] - self.freq[i - 1]))

    def threshold(self, name: str) -> np.ndarray:
        if name in ("1/7", "one_seventh"):
            return self.one_seventh
        if name in ("half-bit", "half_bit", "1/2-bit"):
            return self.half_bit
        raise ValueError(f"unknown FRC threshold {name!r} (1/7 or half-bit)")

    def resolution(self, threshold: str = "1/7", smooth: bool = False) -> float | None:
        """Full-period resolution ``voxel / f`` at the crossing (nm, or voxels without a voxel size).

        ``None`` when the curve does not cross: the resolution is the Nyquist
        period (2 voxels) or better.
        """
        f = self.crossing(threshold, smooth)
        if f is None or f <= 0:
            return None
        return (self.voxel_size_nm or 1.0) / f


def half_bit_threshold(n: np.ndarray) -> np.ndarray:
    """Half-bit threshold for rings/shells of ``n`` Fourier samples (van Heel & Schatz 2005)."""
    s = np.sqrt(np.maximum(np.asarray(n, dtype=np.float64), 1.0))
    return (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)


def frc(
    a: np.ndarray,
    b: np.ndarray,
    voxel_size_nm: float | None = None,
    smooth_sigma: float = 0.0,
) -> FRC:
    """Fourier ring (2D) or shell (3D) correlation of two equal-shape images.

    ``FRC(k) = Re Σ F₁F₂* / √(Σ|F₁|² Σ|F₂|²)`` over each ring ``round(|k|) = k`` in
    units of the shortest axis' frequency step; rings ``0 … N/2`` are returned, ``N``
    the shortest side. ``smooth_sigma`` > 0 also fills ``smoothed`` (a Gaussian
    along the rings, "nearest" edges, as the paper's plotted curves with σ = 3).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"FRC needs equal shapes, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"FRC needs a 2D or 3D image, got {a.ndim}D")
    fa = np.fft.fftn(a)
    fb = np.fft.fftn(b)
    n_min = min(a.shape)
    # frequency radius in units of 1/n_min (so ring k is k / n_min cycles per voxel)
    grids = np.meshgrid(*[np.fft.fftfreq(n) * n_min for n in a.shape], indexing="ij", sparse=True)
    k = np.sqrt(sum(g**2 for g in grids))
    ring = np.rint(k).astype(np.int64).ravel()
    n_rings = n_min // 2 + 1
    sel = ring < n_rings
    ring = ring[sel]
    cross = np.bincount(ring, weights=(fa * np.conj(fb)).real.ravel()[sel], minlength=n_rings)
    pa = np.bincount(ring, weights=(np.abs(fa) ** 2).ravel()[sel], minlength=n_rings)
    pb = np.bincount(ring, weights=(np.abs(fb) ** 2).ravel()[sel], minlength=n_rings)
    count = np.bincount(ring, minlength=n_rings)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = cross / np.sqrt(pa * pb)
    curve = np.nan_to_num(curve, nan=0.0)
    freq = np.arange(n_rings) / n_min
    out = FRC(
        freq,
        curve,
        count,
        half_bit_threshold(count),
        np.full(n_rings, 1.0 / 7.0),
        voxel_size_nm,
    )
    if smooth_sigma > 0:
        from scipy.ndimage import gaussian_filter1d

        out.smoothed = gaussian_filter1d(curve, smooth_sigma, mode="nearest")
    return out


def split_half_indices(angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the even and odd views in angular order, for split-half FRC.

    Reconstruct each half on its own and pass the two volumes to :func:`frc`; with
    no truth, the half-bit crossing of that curve is the usual resolution estimate
    (each half has half the dose, so it is a conservative one).
    """
    order = np.argsort(np.asarray(angles_deg, dtype=np.float64), kind="stable")
    return np.sort(order[0::2]), np.sort(order[1::2])


def split_half_frc(
    half_a: np.ndarray,
    half_b: np.ndarray,
    voxel_size_nm: float | None = None,
    smooth_sigma: float = 0.0,
) -> FRC:
    """FRC/FSC between two reconstructions from disjoint halves of the views."""
    return frc(half_a, half_b, voxel_size_nm, smooth_sigma)


# -- null space -------------------------------------------------------------------------------


def _as_list(y: Any) -> list:
    return y if isinstance(y, list) else [y]


def _norm2(v: Any) -> float:
    return float(sum(float(np.vdot(p.ravel(), p.ravel()).real) for p in _as_list(v)))


class _Float64View(LinearOperator):
    """An operator applied in float32, as it is built, with float64 results: the solver's
    vectors and sums over scans stay float64 (a null-space estimate runs to 200 CG
    iterations, where float32 vectors lose the small components it measures)."""

    def __init__(self, op: Any) -> None:
        self.op = op
        self.domain_shape, self.range_shape = op.domain_shape, op.range_shape

    def _apply(self, x, out):
        return np.asarray(self.op(x.astype(np.float32)), dtype=np.float64)

    def _adjoint(self, y, out):
        return np.asarray(self.op.T(y.astype(np.float32)), dtype=np.float64)


def cgls_zero_data(operators: Sequence[Any], x0: np.ndarray, iterations: int) -> np.ndarray:
    """CGLS on ``min Σ‖A_i x‖²`` from ``x0``: converges to ``x0``'s null-space component.

    ``operators`` is a list of per-scan operators (``A(x)``, ``A.T(y)``), the
    combined operator of the paper's eq. 7 without materialising it. The same iterates
    as :func:`sxtdist.solvers.cgne` from zero on the data ``−A_i x₀`` (the correction
    ``e`` with ``x = x₀ + e``), which is how it is computed, in float64.
    """
    from .solvers import cgne

    ops = [_Float64View(op) for op in operators]
    x0 = np.asarray(x0, dtype=np.float64)
    shifted = [-op(x0) for op in ops]
    return x0 + cgne(ops, shifted, int(iterations)).x


@dataclass
class NullSpace:
    """The null-space component of a phantom and its size.

    ``ratio`` and ``ratio_mask`` are ``‖x_null‖² / ‖x₀‖²`` (whole, inside the mask),
    the quantity the paper's figure 2h plots ×100; ``norm_ratio*`` are their
    square roots, the true length ratio.
    """

    x_null: np.ndarray
    ratio: float
    ratio_mask: float | None

    @property
    def norm_ratio(self) -> float:
        return math.sqrt(self.ratio)

    @property
    def norm_ratio_mask(self) -> float | None:
        return None if self.ratio_mask is None else math.sqrt(self.ratio_mask)


def null_space(
    operators: Any,
    phantom: np.ndarray,
    iterations: int = 200,
    mask: np.ndarray | None = None,
    solver: Callable[[Sequence[Any], np.ndarray, int], np.ndarray] | None = None,
) -> NullSpace:
    """Estimate the null-space component of ``phantom`` for one or several operators.

    Parameters
    ----------
    operators
        An operator or a list of per-scan operators (interior only, sparse only, or
        both: the combined operator).
    phantom
        ``x₀``, in the operators' domain layout.
    iterations
        CGLS iterations (the reference used 200).
    mask
        Voxels for the masked ratio (e.g. the ROI cylinder), broadcastable to ``x₀``.
    solver
        ``solver(operators, x0, iterations) -> x``: any least-squares solver that
        with zero data started at ``x0`` returns ``x0``'s null-space part;
        default :func:`cgls_zero_data`.
    """
    ops = list(operators) if isinstance(operators, (list, tuple)) else [operators]
    x0 = np.asarray(phantom, dtype=np.float64)
    x = (solver or cgls_zero_data)(ops, x0, iterations)
    x = np.asarray(x, dtype=np.float64)
    n0 = _norm2(x0)
    if n0 == 0:
        raise ValueError("the phantom is zero: its null-space ratio is undefined")
    ratio = _norm2(x) / n0
    ratio_mask = None
    if mask is not None:
        m = np.broadcast_to(mask, x0.shape)
        d = _norm2(x0[m])
        ratio_mask = _norm2(x[m]) / d if d > 0 else None
    return NullSpace(x.astype(np.float32), ratio, ratio_mask)
