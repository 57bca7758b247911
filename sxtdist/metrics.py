"""Image-quality metrics: PSNR, regions, radial PSNR, FRC/FSC, transfer function.

One definition of each, used by ``report``, ``batch``, the demo and the studies
(through :mod:`sxtdist.scoring`, which applies them to volumes on disk):

- **PSNR** ``= 10 log10(R² / MSE)`` over a region, with the peak ``R`` the 99th
  percentile of the reference *inside the cell* (:func:`cell_mask`; never the
  capillary's glass or the ice, which would inflate it: on ``small`` with the
  capillary the whole truth's 99th percentile is the glass, 1.2 µm⁻¹, and the PSNR
  12 dB higher). For plain arrays without a cell, ``R`` defaults to the 99th
  percentile of the whole reference (the paper's code). A mask restricts the MSE,
  not ``R``.
- **ROI**: :func:`cylinder_mask` of diameter :func:`roi_diameter_px`, the disc about
  the rotation axis that the interior scan sees at every angle (the paper's
  ``roi_mask(w)``, voxel centres strictly inside).
- **Radial PSNR**: the PSNR over annuli about the rotation axis.
- **FRC / FSC**: ring (2D) or shell (3D) correlation of two images' Fourier
  transforms, rings at integer radii ``round(|k|)``; thresholds 1/7 and the
  half-bit curve of van Heel & Schatz (2005). Frequencies in cycles per voxel
  (0.5 = Nyquist); resolutions are the full period ``voxel / f`` at the first
  crossing, as in the paper (61 nm, 79 nm); a curve that never crosses has no
  resolution (``None``), not "two voxels".
- **Transfer function** against a truth: the per-ring gain ``Re Σ X T* / Σ |T|²``,
  the MTF of everything between the object and the reconstruction. Unlike the FRC
  it sees blur (a per-ring gain does not change a correlation); its 0.5 crossing
  (MTF-50) is the blur-sensitive resolution figure (docs/metrics.md).

The null-space estimate (figure 2h) is :mod:`sxtdist.nullspace`.

Only numpy here (cupy arrays work where the functions use array methods only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: What a resolution figure says when its curve never crosses the threshold.
NOT_CROSSED = "not crossed"
#: The percentile of the reference (inside the cell) that is PSNR's peak.
PEAK_PERCENTILE = 99.0

# -- PSNR -------------------------------------------------------------------------------------


def data_range(
    reference: np.ndarray, percentile: float = PEAK_PERCENTILE, mask: np.ndarray | None = None
) -> float:
    """The PSNR peak: a percentile (99th) of the reference, inside ``mask`` (the cell)."""
    ref = np.asarray(reference)
    values = ref[np.broadcast_to(mask, ref.shape)] if mask is not None else ref
    if values.size == 0:
        raise ValueError("data range of an empty selection")
    return float(np.percentile(values, percentile))


class TopPercentile:
    """A high percentile of values seen in chunks, equal to :func:`numpy.percentile`'s.

    Keeps only the largest ``(100 − q)`` % of at most ``max_count`` values (plus
    two), so the 99th percentile of a volume's cell streams through in 1 % of the
    volume's memory.

    Parameters
    ----------
    q
        Percentile, at least 50.
    max_count
        An upper bound on the number of values that will be added.
    """

    def __init__(self, q: float, max_count: int) -> None:
        if not 50.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [50, 100], got {q}")
        self.q = float(q)
        self.keep = int(math.ceil((1.0 - q / 100.0) * max(int(max_count), 1))) + 2
        self.count = 0
        self._top = np.empty(0, np.float64)

    def add(self, values: np.ndarray) -> None:
        """Add a chunk of values."""
        v = np.asarray(values, np.float64).ravel()
        self.count += v.size
        top = np.concatenate([self._top, v])
        if top.size > self.keep:
            top = np.partition(top, top.size - self.keep)[-self.keep :]
        self._top = top

    def value(self) -> float:
        """The percentile of everything added (numpy's "linear" rule)."""
        if self.count == 0:
            raise ValueError("percentile of no values")
        pos = self.q / 100.0 * (self.count - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, self.count - 1)
        top = np.sort(self._top)
        # ascending index i of all values is index i - (count - len(top)) of the kept top
        first = self.count - top.size
        a, b = top[lo - first], top[hi - first]
        return float(a + (pos - lo) * (b - a))


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


def psnr_from_mse(mse_value: float, peak: float) -> float:
    """``10 log10(peak² / MSE)`` in dB; ``inf`` for a zero error."""
    if mse_value == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse_value)


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
        The peak ``R``: give the 99th percentile of the reference inside the cell
        (``data_range(reference, mask=cell)``, as :mod:`sxtdist.scoring` does);
        default the 99th percentile of the whole reference.

    Returns
    -------
    float
        ``10 log10(R² / MSE)``; ``inf`` for identical arrays.
    """
    r = data_range(reference) if data_range_value is None else float(data_range_value)
    return psnr_from_mse(mse(x, reference, mask), r)


# -- regions ----------------------------------------------------------------------------------


def roi_diameter_px(roi_geometry: Any, voxel_size_nm: float) -> float:
    """The ROI's diameter in voxels: where the interior scan sees at every angle.

    ``2 × (detector half-width − |column offset|) × pixel / voxel``, for a
    :class:`~sxtdist.geometry.ScanGeometry` (its ``detector_shape``,
    ``center_offset_px`` and ``pixel_size_nm``).
    """
    g = roi_geometry
    half = g.detector_shape[1] / 2.0 - abs(g.center_offset_px[1])
    return 2.0 * half * g.pixel_size_nm / float(voxel_size_nm)


def cylinder_mask(shape: Sequence[int], diameter_px: float) -> np.ndarray:
    """Voxels whose in-slice distance from the axis (the ``(y, x)`` centre) is < ``diameter/2``.

    For a 2D ``shape`` the mask is a disc; for 3D it is the same disc in every slice
    (the paper's ROI cylinder, effectively full height). With
    :func:`roi_diameter_px` it is *the* ROI of every "PSNR in the ROI".
    """
    r = radial_distance(shape)
    return r < diameter_px / 2.0


def cell_mask(
    truth: np.ndarray, threshold: float, lumen_radius_px: float | None = None
) -> np.ndarray:
    """The cell: voxels of ``truth`` above ``threshold``, inside the lumen.

    ``threshold`` lies between the medium (ice, 0.109 µm⁻¹) and the least absorbing
    part of the cell (cytoplasm 0.20, vesicles 0.16): :mod:`sxtdist.scoring` takes the
    midpoint of ice and cytoplasm. ``lumen_radius_px`` (in-slice distance from the
    axis) leaves out a capillary's glass wall, which is above any threshold.
    """
    t = np.asarray(truth)
    m = t > threshold
    if lumen_radius_px is not None:
        m &= radial_distance(t.shape) < lumen_radius_px
    return m


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
    ``mask`` (the cell) in it. ``data_range_value`` defaults to the 99th percentile
    of the reference inside ``mask`` (the figure-3 convention, and :func:`psnr`'s
    with the cell), or of all of it without a mask. Empty annuli give NaN.
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


# -- FRC / FSC and the transfer function ---------------------------------------------------


def _first_crossing(freq: np.ndarray, curve: np.ndarray, threshold: np.ndarray) -> float | None:
    """First frequency after ring 0 where ``curve`` falls below ``threshold``, interpolated.

    If ring 1 is already below, ring 1's frequency (nothing agrees beyond the mean);
    ``None`` when the curve never falls below.
    """
    below = np.nonzero(curve[1:] < threshold[1:])[0]
    if below.size == 0:
        return None
    i = int(below[0]) + 1
    if i == 1:
        return float(freq[1])
    d0 = curve[i - 1] - threshold[i - 1]
    d1 = curve[i] - threshold[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(freq[i - 1] + t * (freq[i] - freq[i - 1]))


def _period(f: float | None, voxel_size_nm: float | None) -> float | None:
    if f is None or f <= 0:
        return None
    return (voxel_size_nm or 1.0) / f


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
        ``None`` when the curve never crosses: the data cannot say how much finer
        than the Nyquist period the resolution is.
        """
        curve = self.smoothed if smooth and self.smoothed is not None else self.frc
        return _first_crossing(self.freq, curve, self.threshold(threshold))

    def threshold(self, name: str) -> np.ndarray:
        if name in ("1/7", "one_seventh"):
            return self.one_seventh
        if name in ("half-bit", "half_bit", "1/2-bit"):
            return self.half_bit
        raise ValueError(f"unknown FRC threshold {name!r} (1/7 or half-bit)")

    def resolution(self, threshold: str = "1/7", smooth: bool = False) -> float | None:
        """Full-period resolution ``voxel / f`` at the crossing (nm, or voxels without a voxel size).

        ``None`` when the curve does not cross (:data:`NOT_CROSSED`).
        """
        return _period(self.crossing(threshold, smooth), self.voxel_size_nm)


def half_bit_threshold(n: np.ndarray) -> np.ndarray:
    """Half-bit threshold for rings/shells of ``n`` Fourier samples (van Heel & Schatz 2005)."""
    s = np.sqrt(np.maximum(np.asarray(n, dtype=np.float64), 1.0))
    return (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)


def _ring_sums(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per ring ``round(|k|)``: ``Re Σ A B*``, ``Σ|A|²``, ``Σ|B|²``, samples, frequency."""
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
    return cross, pa, pb, count, np.arange(n_rings) / n_min


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
    cross, pa, pb, count, freq = _ring_sums(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = cross / np.sqrt(pa * pb)
    curve = np.nan_to_num(curve, nan=0.0)
    out = FRC(
        freq,
        curve,
        count,
        half_bit_threshold(count),
        np.full(freq.size, 1.0 / 7.0),
        voxel_size_nm,
    )
    if smooth_sigma > 0:
        from scipy.ndimage import gaussian_filter1d

        out.smoothed = gaussian_filter1d(curve, smooth_sigma, mode="nearest")
    return out


#: The transfer level whose crossing is the blur-sensitive resolution (MTF-50).
MTF_LEVEL = 0.5
#: Standard errors by which the gain must lie below :data:`MTF_LEVEL` to count as crossed.
MTF_CONFIDENCE = 3.0


@dataclass
class Transfer:
    """The transfer function of a reconstruction against its truth, per ring/shell.

    Attributes
    ----------
    freq
        Ring radius in cycles per voxel.
    gain
        ``Re Σ X T* / Σ |T|²``: the least-squares gain of the reconstruction's Fourier
        coefficients on the truth's. For ``X = h ⊛ T + noise`` it is the MTF ``|H|``
        (noise independent of the truth averages out); a blur lowers it, noise does not.
    stderr
        The gain's standard error from the ring's residual ``Σ |X − gain·T|²``
        (large where the truth has little power, e.g. at high frequencies).
    n
        Fourier samples per ring.
    voxel_size_nm
        For resolutions in nm.
    """

    freq: np.ndarray
    gain: np.ndarray
    stderr: np.ndarray
    n: np.ndarray
    voxel_size_nm: float | None = None

    def crossing(self, level: float = MTF_LEVEL) -> float | None:
        """First frequency after ring 0 where the gain is below ``level`` with confidence.

        The gain plus :data:`MTF_CONFIDENCE` standard errors must fall below ``level``
        (so noise alone, which leaves the gain at 1 but scatters its estimate, does not
        cross); interpolated on that bound. ``None``: never.
        """
        upper = self.gain + MTF_CONFIDENCE * self.stderr
        return _first_crossing(self.freq, upper, np.full(self.gain.size, float(level)))

    def resolution(self, level: float = MTF_LEVEL) -> float | None:
        """Full period ``voxel / f`` at the crossing (MTF-50 by default); ``None``: not crossed."""
        return _period(self.crossing(level), self.voxel_size_nm)


def transfer(x: np.ndarray, truth: np.ndarray, voxel_size_nm: float | None = None) -> Transfer:
    """The transfer function of ``x`` against ``truth`` (2D rings or 3D shells, as :func:`frc`).

    The truth's mean is removed first, so ring 0 (a constant offset) does not matter
    (its gain is NaN).
    The standard error counts half the ring's samples as independent (a real image's
    Fourier transform is Hermitian).
    """
    t = np.asarray(truth, np.float64)
    t = t - t.mean()
    cross, px, pt, count, freq = _ring_sums(x, t)
    ok = pt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(ok, cross / np.where(ok, pt, 1.0), 0.0)
        residual = np.maximum(px - gain * cross, 0.0)  # Σ |X − gain T|² at the optimum
        dof = np.maximum(count / 2.0 - 1.0, 1.0)
        stderr = np.where(ok, np.sqrt(residual / (dof * np.where(ok, pt, 1.0))), np.inf)
    gain[0], stderr[0] = np.nan, np.nan  # the mean is not a transfer: removed above
    return Transfer(freq, gain, stderr, count, voxel_size_nm)


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
