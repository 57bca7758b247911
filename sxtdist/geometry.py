"""The one place where sxtdist's geometry conventions live.

Conventions (used by the simulator and the reconstruction alike)
----------------------------------------------------------------
- A volume is indexed ``(z, y, x)``; ``z`` is the rotation axis and runs along
  detector rows. The beam is parallel.
- Physical coordinates are centred on the rotation axis (and, along z, on the
  volume centre): ``x = (ix - (nx - 1) / 2) * voxel``, same for ``y`` and ``z``.
- A point projects onto detector column coordinate ``u = x cos(theta) + y sin(theta)``
  and row coordinate ``z``.
- A scan's detector has its own pixel size ``p``. Column ``c`` of a detector of
  width ``W`` is centred at ``u = (c - (W - 1) / 2 + offset_col - dx) * p`` and row ``r``
  of height ``H`` at ``z = (r - (H - 1) / 2 + offset_row - dy) * p``, where
  ``offset`` is the scan's ``center_offset_px`` (the detector centre relative to the
  rotation axis, metadata key ``roi_center_px``) and ``(dy, dx)`` is the
  projection's shift.
- **Shifts are the measured displacement of the image**, in that scan's pixels:
  a projection stored with shift ``(dy, dx) = (0, +2)`` shows the object two
  columns to the right of where the aligned geometry puts it. The forward model
  reproduces that displacement, i.e. it samples the aligned projection at
  ``c - dx``; this is what "the operator applies the opposite" means.
- **A tilted rotation axis** (``axis_tilt_deg`` φ: the detector turned about the
  beam) is a rotation of the detector frame about the point where the axis meets
  the volume's middle slice. The pixel at detector-frame position ``(a, b)`` (the
  ``u`` and ``z`` formulas above, shifts included, so shifts are displacements on
  the detector as measured) sees the ray through ``u = a cos φ - b sin φ`` and
  ``z = a sin φ + b cos φ``. Positive φ: the image of the axis runs ``tan φ``
  columns to the right per row down the detector. A tilt about another point is
  this one plus a shift, which the alignment absorbs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ParameterError

#: Largest in-plane axis tilt accepted (degrees): real ones are a fraction of a degree.
MAX_AXIS_TILT_DEG = 10.0


@dataclass(frozen=True)
class VolumeGrid:
    """A reconstruction grid: ``shape = (nz, ny, nx)`` voxels of ``voxel_size_nm``.

    The grid is centred on the rotation axis in ``x, y`` and on its middle slice in ``z``.
    """

    shape: tuple[int, int, int]
    voxel_size_nm: float

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ParameterError(f"volume shape must be three positive sizes, got {self.shape}")
        if not (math.isfinite(self.voxel_size_nm) and self.voxel_size_nm > 0):
            raise ParameterError(f"voxel size must be positive, got {self.voxel_size_nm}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "voxel_size_nm", float(self.voxel_size_nm))

    @property
    def nz(self) -> int:
        return self.shape[0]

    @property
    def slice_shape(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    def z_centers_nm(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Physical z of the slice centres ``start .. stop - 1``."""
        stop = self.nz if stop is None else stop
        return (np.arange(start, stop) - (self.nz - 1) / 2.0) * self.voxel_size_nm

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "voxel_size_nm": self.voxel_size_nm}

    @classmethod
    def from_dict(cls, d: dict) -> VolumeGrid:
        return cls(tuple(d["shape"]), d["voxel_size_nm"])


@dataclass(frozen=True, eq=False)
class ScanGeometry:
    """Where each pixel of a scan's projections looks, in the conventions above.

    Parameters
    ----------
    angles_deg
        Rotation angle of each projection, degrees.
    pixel_size_nm
        Detector pixel size in the object plane, nm.
    detector_shape
        ``(rows, cols)`` of one projection.
    center_offset_px
        ``(row, col)`` offset of the detector centre from the rotation axis (col)
        and from the volume centre (row), in this scan's pixels.
    shifts_px
        ``(n_angles, 2)`` measured image displacement ``(dy, dx)`` per projection,
        in this scan's pixels. Zeros when unaligned.
    axis_tilt_deg
        In-plane angle of the rotation axis on the detector (see the module doc).
    """

    angles_deg: np.ndarray
    pixel_size_nm: float
    detector_shape: tuple[int, int]
    center_offset_px: tuple[float, float] = (0.0, 0.0)
    shifts_px: np.ndarray | None = field(default=None)
    axis_tilt_deg: float = 0.0

    def __post_init__(self) -> None:
        angles = np.asarray(self.angles_deg, dtype=np.float64).reshape(-1)
        rows, cols = (int(n) for n in self.detector_shape)
        if rows < 1 or cols < 1:
            raise ParameterError(f"detector shape must be positive, got {self.detector_shape}")
        if not np.all(np.isfinite(angles)) or angles.size == 0:
            raise ParameterError("angles must be a non-empty list of finite numbers")
        if not (math.isfinite(self.pixel_size_nm) and self.pixel_size_nm > 0):
            raise ParameterError(f"pixel size must be positive, got {self.pixel_size_nm}")
        shifts = (
            np.zeros((angles.size, 2))
            if self.shifts_px is None
            else np.asarray(self.shifts_px, dtype=np.float64).reshape(-1, 2)
        )
        if shifts.shape[0] != angles.size:
            raise ParameterError(
                f"{shifts.shape[0]} shifts for {angles.size} angles: one (dy, dx) per projection"
            )
        if not np.all(np.isfinite(shifts)):
            raise ParameterError("shifts must be finite")
        offset = tuple(float(v) for v in self.center_offset_px)
        if len(offset) != 2 or not all(math.isfinite(v) for v in offset):
            raise ParameterError("center offset must be two finite numbers (row, col)")
        tilt = float(self.axis_tilt_deg)
        if not (math.isfinite(tilt) and abs(tilt) < MAX_AXIS_TILT_DEG):
            raise ParameterError(
                f"axis tilt must be a finite angle below {MAX_AXIS_TILT_DEG} degrees, got {tilt}"
            )
        object.__setattr__(self, "axis_tilt_deg", tilt)
        angles.setflags(write=False)
        shifts.setflags(write=False)
        object.__setattr__(self, "angles_deg", angles)
        object.__setattr__(self, "pixel_size_nm", float(self.pixel_size_nm))
        object.__setattr__(self, "detector_shape", (rows, cols))
        object.__setattr__(self, "center_offset_px", offset)
        object.__setattr__(self, "shifts_px", shifts)

    @property
    def n_angles(self) -> int:
        return self.angles_deg.size

    @property
    def angles_rad(self) -> np.ndarray:
        return np.deg2rad(self.angles_deg)

    def with_shifts(self, shifts_px: np.ndarray | None) -> ScanGeometry:
        """The same geometry with other per-projection shifts (``None``: zeros)."""
        return replace(self, shifts_px=shifts_px)

    def with_tilt(self, axis_tilt_deg: float) -> ScanGeometry:
        """The same geometry with another in-plane axis tilt."""
        return replace(self, axis_tilt_deg=axis_tilt_deg)

    def subset(self, index: Sequence[int] | np.ndarray) -> ScanGeometry:
        """The geometry of a subset of the projections."""
        index = np.asarray(index)
        return replace(self, angles_deg=self.angles_deg[index], shifts_px=self.shifts_px[index])

    # -- the tilted axis -------------------------------------------------------------------

    @property
    def tilted(self) -> bool:
        return self.axis_tilt_deg != 0.0

    def detector_to_axis_frame(
        self, a: np.ndarray | float, b: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(u, z)`` of the ray seen at detector-frame position ``(a, b)`` (any length unit)."""
        phi = math.radians(self.axis_tilt_deg)
        c, s = math.cos(phi), math.sin(phi)
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return a * c - b * s, a * s + b * c

    def detector_position_px(
        self, view: int, u_nm: np.ndarray | float, z_nm: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fractional detector ``(row, col)`` where ``view`` sees the ray through ``(u, z)``.

        The inverse of the forward convention (module doc): the tilt turned back, then
        the offset and the view's measured shift added.
        """
        phi = math.radians(self.axis_tilt_deg)
        c, s = math.cos(phi), math.sin(phi)
        u, z = np.asarray(u_nm, dtype=np.float64), np.asarray(z_nm, dtype=np.float64)
        a, b = u * c + z * s, -u * s + z * c
        (h, w), p = self.detector_shape, self.pixel_size_nm
        dy, dx = self.shifts_px[view]
        col = a / p + (w - 1) / 2.0 - self.center_offset_px[1] + dx
        row = b / p + (h - 1) / 2.0 - self.center_offset_px[0] + dy
        return row, col

    @property
    def first_pixel_nm(self) -> tuple[float, float]:
        """``(z, u)`` of the centre of detector pixel ``(0, 0)``, nm, shifts left out (they
        differ per view): where a viewer draws a scan's first pixel, so that an interior
        scan lies where it is in the full field."""
        (h, w), p = self.detector_shape, self.pixel_size_nm
        off_row, off_col = self.center_offset_px
        return ((off_row - (h - 1) / 2.0) * p, (off_col - (w - 1) / 2.0) * p)

    @property
    def field_radius_nm(self) -> float:
        """Radius of the disc about the axis that every view sees (the interior ROI)."""
        w = self.detector_shape[1]
        return (w / 2.0 - abs(self.center_offset_px[1])) * self.pixel_size_nm

    def _max_abs_col_px(self, pad: int) -> float:
        """The largest ``|a|`` (pixels) of a (padded) column, shifts and offset included."""
        w = self.detector_shape[1]
        return (
            (w - 1) / 2.0 + pad + abs(self.center_offset_px[1]) + np.abs(self.shifts_px[:, 1]).max()
        )

    def tilt_reach_slices(self, voxel_size_nm: float, pad: int = 0) -> int:
        """Slices beyond its own that a detector row's pixels (``pad`` columns each side
        included) reach through the tilt, interpolation included; 0 without a tilt."""
        if not self.tilted:
            return 0
        a_nm = self._max_abs_col_px(pad) * self.pixel_size_nm
        reach = a_nm * abs(math.sin(math.radians(self.axis_tilt_deg))) / voxel_size_nm
        return int(math.ceil(reach - 1e-9)) + 1

    def tilt_pad_px(self, voxel_size_nm: float, pad: int = 0) -> int:
        """Extra columns each side an untilted detector needs to hold every ray of the
        tilted one (its rows and ``pad`` more each way, shifts included); 0 without a tilt."""
        if not self.tilted:
            return 0
        phi = math.radians(self.axis_tilt_deg)
        h = self.detector_shape[0]
        b_px = (
            (h - 1) / 2.0 + pad + abs(self.center_offset_px[0]) + np.abs(self.shifts_px[:, 0]).max()
        ) + 2.0 * voxel_size_nm / self.pixel_size_nm
        a_px = self._max_abs_col_px(pad)
        return int(math.ceil(b_px * abs(math.sin(phi)) + a_px * (1.0 - math.cos(phi)))) + 1

    # -- horizontal: detector columns ------------------------------------------------------

    def column_centers_nm(
        self, angle_index: int, pad: int = 0, supersampling: int = 1
    ) -> np.ndarray:
        """Column coordinates ``u`` (nm) of the (padded, supersampled) detector samples."""
        cols = self.detector_shape[1] + 2 * pad
        s = int(supersampling)
        fine = (np.arange(cols * s) + 0.5) / s - 0.5  # centre of sub-sample in pixel units
        dx = self.shifts_px[angle_index, 1]
        return (fine - (cols - 1) / 2.0 + self.center_offset_px[1] - dx) * self.pixel_size_nm

    def astra_vectors_2d(
        self, voxel_size_nm: float, supersampling: int = 1, pad: int = 0
    ) -> np.ndarray:
        """ASTRA ``parallel_vec`` rows for a 2D slice, lengths in voxels.

        The detector has ``(cols + 2 pad) * supersampling`` samples of pitch
        ``pixel / supersampling``; averaging each run of ``supersampling`` samples
        gives one (padded) pixel.

        ASTRA's 2D volume has ``y`` pointing to decreasing row index, so our
        ``(x, y)`` is ASTRA's ``(x, -y)``: the ray is ``(sin, cos)`` and the detector
        step is ``pitch * (cos, -sin)``. ``tests/test_geometry.py`` pins this down.
        """
        theta = self.angles_rad
        pitch = self.pixel_size_nm / voxel_size_nm / int(supersampling)
        centre = (self.center_offset_px[1] - self.shifts_px[:, 1]) * (
            self.pixel_size_nm / voxel_size_nm
        )
        c, s = np.cos(theta), np.sin(theta)
        vec = np.empty((theta.size, 6))
        vec[:, 0], vec[:, 1] = s, c
        vec[:, 2], vec[:, 3] = centre * c, -centre * s
        vec[:, 4], vec[:, 5] = pitch * c, -pitch * s
        return vec

    def astra_vectors_3d(
        self,
        voxel_size_nm: float,
        supersampling: int = 1,
        pad: int = 0,
        slab_center_vox: float = 0.0,
    ) -> np.ndarray:
        """ASTRA ``parallel3d_vec`` rows for a slab whose detector rows are its slices.

        Lengths are in voxels, for a volume geometry centred on the slab with a
        voxel of 1 (``create_vol_geom(ny, nx, nz, -nx/2, nx/2, -ny/2, ny/2, -nz/2, nz/2)``).
        Columns are the ``(cols + 2 pad) * supersampling`` samples of
        :meth:`astra_vectors_2d` (pitch ``pixel / supersampling``, horizontal shifts
        applied); rows are one per slice at the voxel pitch, so a horizontal ray
        through row ``r`` runs through the centre of slice ``r`` only. The scan's real
        rows (pixel height, vertical shifts) are made from these by
        :class:`sxtdist.operators.RowSampling`.

        Unlike ASTRA's 2D volume, its 3D volume has ``y`` growing with the row index,
        as ours does, so this is ASTRA's own ``parallel3d`` geometry (``geom_2vec``)
        with the detector centre moved along ``u``: ray ``(sin, -cos, 0)``,
        ``u = pitch (cos, sin, 0)``, ``v = (0, 0, 1)``. Each row is
        ``[ray, detector centre, u, v]``.

        A tilted axis turns ``u`` and ``v`` about the ray (the detector frame of the
        module doc): the fine rows are then rows of the tilted detector, one voxel
        apart, the middle one at the slab's height ``slab_center_vox`` (voxels from the
        grid's middle slice; the detector turns about the grid's middle, so where the
        slab sits matters).
        """
        theta = self.angles_rad
        pitch = self.pixel_size_nm / voxel_size_nm / int(supersampling)
        centre = (self.center_offset_px[1] - self.shifts_px[:, 1]) * (
            self.pixel_size_nm / voxel_size_nm
        )
        c, s = np.cos(theta), np.sin(theta)
        e_u = np.stack([c, s, np.zeros_like(c)], axis=1)
        e_z = np.array([0.0, 0.0, 1.0])
        # the middle fine pixel's ray: detector frame (centre, slab centre) -> (u, z)
        u0, z0 = self.detector_to_axis_frame(centre, slab_center_vox)
        phi = math.radians(self.axis_tilt_deg)
        vec = np.zeros((theta.size, 12))
        vec[:, 0], vec[:, 1] = s, -c
        vec[:, 3:6] = e_u * u0[:, None] + e_z * (z0 - slab_center_vox)[:, None]
        vec[:, 6:9] = pitch * (math.cos(phi) * e_u + math.sin(phi) * e_z)
        vec[:, 9:12] = -math.sin(phi) * e_u + math.cos(phi) * e_z
        return vec

    # -- vertical: detector rows -----------------------------------------------------------

    def row_centers_nm(self, rows: np.ndarray, dy: np.ndarray | float = 0.0) -> np.ndarray:
        """Physical z (nm) of detector rows, for shift(s) ``dy``; broadcasts."""
        h = self.detector_shape[0]
        return (
            np.asarray(rows) - (h - 1) / 2.0 + self.center_offset_px[0] - dy
        ) * self.pixel_size_nm

    def row_weights(
        self, grid: VolumeGrid, rows: np.ndarray, slab: tuple[int, int], per_angle: bool
    ) -> np.ndarray:
        """Vertical footprint of detector rows on the slices of a slab.

        ``w[a, k, r]`` is the fraction of row ``rows[r]``'s height (for projection ``a``)
        that falls in slice ``slab[0] + k``. Rows may lie outside ``0..H-1`` (padding
        for a PSF). With ``per_angle=False`` the shifts are ignored except that they
        must all be equal (the caller checks), and the first axis has length one.

        Returns
        -------
        numpy.ndarray
            ``(n_angles or 1, slab_len, len(rows))`` float32.
        """
        dy = self.shifts_px[:, 0] if per_angle else self.shifts_px[:1, 0]
        zr = self.row_centers_nm(np.asarray(rows)[None, :], dy[:, None])  # (A, R)
        half_p = self.pixel_size_nm / 2.0
        zk = grid.z_centers_nm(*slab)  # (K,)
        half_v = grid.voxel_size_nm / 2.0
        lo = np.maximum(zr[:, None, :] - half_p, zk[None, :, None] - half_v)
        hi = np.minimum(zr[:, None, :] + half_p, zk[None, :, None] + half_v)
        return (np.clip(hi - lo, 0.0, None) / self.pixel_size_nm).astype(np.float32)

    def row_slice_support(
        self, grid: VolumeGrid, rows: np.ndarray, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """First and last slice (inclusive, may be outside the grid) each row touches.

        With a tilted axis a row's pixels (and ``pad`` more columns each side, which a
        PSF reaches) see slices above and below their own: :meth:`tilt_reach_slices`.
        """
        dy = self.shifts_px[:, 0]
        zr = self.row_centers_nm(np.asarray(rows)[None, :], dy[:, None])
        v = grid.voxel_size_nm
        half_p = self.pixel_size_nm / 2.0
        # slice k spans [(k - (nz-1)/2 - 1/2) v, (k - (nz-1)/2 + 1/2) v); touch = positive overlap
        eps = 1e-6
        k_lo = np.ceil((zr.min(0) - half_p) / v + (grid.nz - 1) / 2.0 - 0.5 + eps)
        k_hi = np.floor((zr.max(0) + half_p) / v + (grid.nz - 1) / 2.0 + 0.5 - eps)
        reach = self.tilt_reach_slices(v, pad)
        return k_lo.astype(int) - reach, k_hi.astype(int) + reach

    def to_dict(self) -> dict:
        return {
            "angles_deg": self.angles_deg.tolist(),
            "pixel_size_nm": self.pixel_size_nm,
            "detector_shape": list(self.detector_shape),
            "roi_center_px": list(self.center_offset_px),
            "shifts_px": self.shifts_px.tolist(),
            "axis_tilt_deg": self.axis_tilt_deg,
        }


#: Largest volume grid (voxels a side, voxels in all): far beyond any soft X-ray
#: tomogram, small enough that planning it (arrays over its slices) fits in memory.
MAX_GRID_SIDE = 2**16
MAX_GRID_VOXELS = 2**40


def default_grid(
    geometries: Sequence[ScanGeometry], voxel_size_nm: float | None = None
) -> VolumeGrid:
    """The grid that covers every scan's field of view.

    The voxel size defaults to the finest pixel; the in-slice size covers the widest
    detector (with its offset) and the height the tallest detector.
    """
    if not geometries:
        raise ParameterError("no scans to build a volume grid from")
    v = float(voxel_size_nm or min(g.pixel_size_nm for g in geometries))
    width_nm = max(
        (g.detector_shape[1] + 2 * abs(g.center_offset_px[1])) * g.pixel_size_nm for g in geometries
    )
    height_nm = max(
        (g.detector_shape[0] + 2 * abs(g.center_offset_px[0])) * g.pixel_size_nm for g in geometries
    )
    n_xy = max(1, math.ceil(width_nm / v - 1e-6))
    n_z = max(1, math.ceil(height_nm / v - 1e-6))
    if max(n_z, n_xy) > MAX_GRID_SIDE or n_z * n_xy**2 > MAX_GRID_VOXELS:  # before any array
        raise ParameterError(
            f"the volume grid would be {(n_z, n_xy, n_xy)} voxels, beyond "
            f"{MAX_GRID_SIDE} a side or {MAX_GRID_VOXELS:.3g} in all: the voxel size {v:g} nm "
            f"is too fine for detectors {width_nm:g} nm wide and {height_nm:g} nm high "
            "(with their centre offsets)"
        )
    return VolumeGrid((n_z, n_xy, n_xy), v)


def angular_spacing_deg(angles_deg: np.ndarray) -> float:
    """Median spacing of the sorted angles (degrees); 0 for a single angle."""
    a = np.sort(np.asarray(angles_deg, dtype=float))
    return float(np.median(np.diff(a))) if a.size > 1 else 0.0


def scan_angles(n: int, arc_deg: float = 180.0, interleave: bool = True) -> np.ndarray:
    """``n`` equally spaced angles over ``[0, arc_deg)``, in degrees.

    For a full rotation (``arc_deg = 360``) with an even ``n``, views ``θ`` and
    ``θ + 180°`` would see the same lines; with ``interleave`` the second half is
    moved by half a step so the mirrored views fall between the first half's
    (the paper's interlaced full-rotation protocol).
    """
    if n < 1:
        raise ParameterError(f"number of angles must be at least 1, got {n}")
    if arc_deg not in (180.0, 360.0) and not 0 < arc_deg <= 360:
        raise ParameterError(f"angular range must be in (0, 360], got {arc_deg}")
    angles = np.arange(n) * (arc_deg / n)
    if interleave and arc_deg == 360.0 and n % 2 == 0:
        angles[n // 2 :] += arc_deg / n / 2.0
    return angles


def rigid_translation_nm(
    shifts_px: Mapping[str, np.ndarray], geometries: Mapping[str, ScanGeometry]
) -> np.ndarray:
    """The translation of the object that best explains per-view shifts, nm.

    Moving the object by ``t = (t_z, t_x, t_y)`` nm displaces view ``theta`` of a
    scan with pixel ``p`` by ``dy = t_z / p`` and ``dx = (t_x cos theta + t_y sin
    theta) / p``, in every scan alike. No alignment can tell such a shift from the
    object's position; it only moves the reconstruction in its grid. Fitted by least
    squares in nm over all views of all the given scans, each view weighted equally.

    Parameters
    ----------
    shifts_px
        ``{scan: (n_angles, 2)}`` shifts ``(dy, dx)`` in each scan's pixels.
    geometries
        ``{scan: ScanGeometry}`` for the same scans (their angles and pixel sizes).

    Returns
    -------
    numpy.ndarray
        ``(t_z, t_x, t_y)`` in nm.
    """
    dy_nm, dx_nm, basis = [], [], []
    for name, d in shifts_px.items():
        g = geometries[name]
        d = np.asarray(d, dtype=np.float64).reshape(-1, 2)
        t = np.deg2rad(g.angles_deg)
        dy_nm.append(d[:, 0] * g.pixel_size_nm)
        dx_nm.append(d[:, 1] * g.pixel_size_nm)
        basis.append(np.stack([np.cos(t), np.sin(t)], axis=1))
    if not dy_nm:
        return np.zeros(3)
    t_z = float(np.concatenate(dy_nm).mean())
    # lstsq gives the minimum-norm answer when the angles cannot separate t_x from t_y
    t_xy = np.linalg.lstsq(np.vstack(basis), np.concatenate(dx_nm), rcond=None)[0]
    return np.array([t_z, *t_xy])


def translation_shifts_px(translation_nm: Sequence[float], geometry: ScanGeometry) -> np.ndarray:
    """``(n_angles, 2)`` shifts, in the scan's pixels, that a translation of the object makes
    (see :func:`rigid_translation_nm`)."""
    t_z, t_x, t_y = (float(v) for v in translation_nm)
    t = np.deg2rad(geometry.angles_deg)
    dy = np.full(t.size, t_z)
    dx = t_x * np.cos(t) + t_y * np.sin(t)
    return np.stack([dy, dx], axis=1) / geometry.pixel_size_nm


def without_rigid_translation(
    shifts_px: Mapping[str, np.ndarray], geometries: Mapping[str, ScanGeometry]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Shifts with their joint rigid translation (:func:`rigid_translation_nm`) removed.

    What remains keeps the object where it is on average, so a reconstruction
    from these shifts stays centred in its grid.

    Returns
    -------
    shifts, translation_nm
        The new ``{scan: (n_angles, 2)}`` shifts and the translation taken out.
    """
    t = rigid_translation_nm(shifts_px, geometries)
    out = {
        name: np.asarray(d, dtype=np.float64).reshape(-1, 2)
        - translation_shifts_px(t, geometries[name])
        for name, d in shifts_px.items()
    }
    return out, t
