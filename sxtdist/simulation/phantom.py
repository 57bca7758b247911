"""An analytic frozen cell: ellipsoids and z-cylinders with water-window LACs.

Every shape has an exact line integral (a chord length), so projections are
computed analytically rather than with the reconstruction's projector (no
inverse crime), and the ground-truth volume is the same shapes rasterised with
partial-volume supersampling. Shapes add: an organelle carries ``LAC - LAC of
its parent``, a membrane is a shell made of two nested ellipsoids.

Coordinates are physical nanometres in ``(z, y, x)`` order, centred on the
rotation axis, following :mod:`sxtdist.geometry`. LACs are in µm⁻¹.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..geometry import VolumeGrid

#: Water-window (≈517 eV) linear absorption coefficients, µm⁻¹.
LAC = {
    "ice": 0.109,
    "cytoplasm": 0.20,
    "membrane": 0.30,
    "nucleus": 0.24,
    "nuclear_envelope": 0.31,
    "nucleolus": 0.32,
    "heterochromatin": 0.28,
    "er": 0.29,
    "mitochondrion": 0.33,
    "lipid_droplet": 0.60,
    "dense_granule": 0.48,
    "vesicle": 0.16,
    "glass": 1.20,
}


@dataclass(frozen=True)
class Ellipsoid:
    """``{p : |M (p - c)| <= 1}`` with ``M = diag(1/semi) R^T``; adds ``delta`` µm⁻¹."""

    center: np.ndarray  # (3,) zyx nm
    semi_axes: np.ndarray  # (3,) nm, in the local frame
    rotation: np.ndarray  # (3, 3) local -> world (columns are the local axes in zyx)
    delta: float
    label: str = ""

    @property
    def matrix(self) -> np.ndarray:
        return (self.rotation / self.semi_axes[None, :]).T

    @property
    def half_extent(self) -> np.ndarray:
        """Half size of the axis-aligned bounding box (zyx, nm)."""
        return np.sqrt(((self.rotation * self.semi_axes[None, :]) ** 2).sum(axis=1))

    def chord(self, q: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Length (nm) of the lines ``q + t d`` (``q``: (..., 3), ``d``: (3,) unit) inside."""
        m = self.matrix
        a = m @ d
        b = (q - self.center) @ m.T
        aa = a @ a
        bb = b @ a
        cc = np.einsum("...i,...i->...", b, b) - 1.0
        disc = bb * bb - aa * cc
        return 2.0 * np.sqrt(np.clip(disc, 0.0, None)) / aa

    def norm2(self, p: np.ndarray) -> np.ndarray:
        """``|M (p - c)|²`` at points ``p`` (..., 3): ≤ 1 inside."""
        b = (p - self.center) @ self.matrix.T
        return np.einsum("...i,...i->...", b, b)


@dataclass(frozen=True)
class Cylinder:
    """An infinite cylinder along z, centre ``(y, x)`` nm, radius nm; adds ``delta``."""

    center_yx: np.ndarray
    radius: float
    delta: float
    label: str = ""


@dataclass
class CellPhantom:
    """A collection of shapes; see :func:`make_cell`."""

    ellipsoids: list[Ellipsoid] = field(default_factory=list)
    cylinders: list[Cylinder] = field(default_factory=list)
    description: dict = field(default_factory=dict)

    # -- projection --------------------------------------------------------------------------

    def line_integrals(self, theta: float, z_nm: np.ndarray, u_nm: np.ndarray) -> np.ndarray:
        """Optical depth (LAC µm⁻¹ × µm) along the rays of one projection.

        Parameters
        ----------
        theta
            Projection angle (radians).
        z_nm, u_nm
            1D sample positions along detector rows (z) and columns (u), or two arrays of
            one shape: the rays' own heights and positions (a tilted detector's rays do
            not form a grid, :mod:`sxtdist.geometry`).

        Returns
        -------
        numpy.ndarray
            ``(len(z_nm), len(u_nm))`` float64, or the shape of the points.
        """
        z_nm, u_nm = np.asarray(z_nm, dtype=np.float64), np.asarray(u_nm, dtype=np.float64)
        if z_nm.ndim != 1 or u_nm.ndim != 1:
            return self._line_integrals_at(theta, *np.broadcast_arrays(z_nm, u_nm))
        c, s = math.cos(theta), math.sin(theta)
        d = np.array([0.0, c, -s])  # ray direction (z, y, x), perpendicular to u = (0, s, c)
        out = np.zeros((z_nm.size, u_nm.size))
        for cyl in self.cylinders:
            dist = u_nm - (cyl.center_yx[1] * c + cyl.center_yx[0] * s)
            chord = 2.0 * np.sqrt(np.clip(cyl.radius**2 - dist**2, 0.0, None))
            out += (cyl.delta * 1e-3) * chord[None, :]
        for e in self.ellipsoids:
            # the shadow of the bounding box limits the work to the rows/columns it can reach
            h = e.half_extent
            u0 = e.center[2] * c + e.center[1] * s
            uh = abs(h[2] * c) + abs(h[1] * s)
            iu = np.searchsorted(u_nm, [u0 - uh, u0 + uh])
            iz = np.searchsorted(z_nm, [e.center[0] - h[0], e.center[0] + h[0]])
            if iu[0] == iu[1] or iz[0] == iz[1]:
                continue
            zz = z_nm[iz[0] : iz[1], None]
            uu = u_nm[None, iu[0] : iu[1]]
            q = np.stack(np.broadcast_arrays(zz, uu * s, uu * c), axis=-1)
            out[iz[0] : iz[1], iu[0] : iu[1]] += (e.delta * 1e-3) * e.chord(q, d)
        return out

    def _line_integrals_at(self, theta: float, z_nm: np.ndarray, u_nm: np.ndarray) -> np.ndarray:
        """:meth:`line_integrals` at rays ``(z, u)`` given point by point (arrays of one shape)."""
        c, s = math.cos(theta), math.sin(theta)
        d = np.array([0.0, c, -s])
        out = np.zeros(z_nm.shape)
        for cyl in self.cylinders:
            dist = u_nm - (cyl.center_yx[1] * c + cyl.center_yx[0] * s)
            out += (cyl.delta * 1e-3) * 2.0 * np.sqrt(np.clip(cyl.radius**2 - dist**2, 0.0, None))
        for e in self.ellipsoids:
            h = e.half_extent
            u0 = e.center[2] * c + e.center[1] * s
            uh = abs(h[2] * c) + abs(h[1] * s)
            near = (np.abs(u_nm - u0) <= uh) & (np.abs(z_nm - e.center[0]) <= h[0])
            if not near.any():
                continue
            zz, uu = z_nm[near], u_nm[near]
            q = np.stack([zz, uu * s, uu * c], axis=-1)
            out[near] += (e.delta * 1e-3) * e.chord(q, d)
        return out

    # -- rasterisation -----------------------------------------------------------------------

    def rasterize(
        self,
        grid: VolumeGrid,
        supersampling: int = 3,
        z_range: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """LAC volume (µm⁻¹, float32) on ``grid`` with partial-volume supersampling.

        Voxels whose centre is far from a surface are classified exactly from the
        centre; only the band of voxels around a surface is supersampled.
        ``z_range = (z0, z1)`` gives only those slices (the same values as the
        whole volume's): temporaries stay within :data:`RASTER_BYTES` per shape, so
        a volume is made slab by slab in bounded memory.
        """
        nz, ny, nx = grid.shape
        z0, z1 = (0, nz) if z_range is None else (int(z_range[0]), int(z_range[1]))
        v = grid.voxel_size_nm
        coords = [(np.arange(n) - (n - 1) / 2.0) * v for n in grid.shape]
        vol = np.zeros((z1 - z0, ny, nx), dtype=np.float32)
        ss = int(supersampling)
        offs = ((np.arange(ss) + 0.5) / ss - 0.5) * v

        for cyl in self.cylinders:
            yy, xx = np.meshgrid(coords[1], coords[2], indexing="ij")
            acc = np.zeros((ny, nx))
            for oy in offs:
                for ox in offs:
                    acc += (yy + oy - cyl.center_yx[0]) ** 2 + (
                        xx + ox - cyl.center_yx[1]
                    ) ** 2 <= cyl.radius**2
            vol += (cyl.delta * acc / ss**2).astype(np.float32)[None]

        half_diag = math.sqrt(3.0) * v / 2.0
        for e in self.ellipsoids:
            h = e.half_extent + v
            sl = []
            for ax in range(3):
                lo = np.searchsorted(coords[ax], e.center[ax] - h[ax])
                hi = np.searchsorted(coords[ax], e.center[ax] + h[ax])
                sl.append(slice(lo, hi))
            zlo, zhi = max(sl[0].start, z0), min(sl[0].stop, z1)
            if zlo >= zhi or any(s.start >= s.stop for s in sl[1:]):
                continue
            plane = (sl[1].stop - sl[1].start) * (sl[2].stop - sl[2].start)
            step = max(1, RASTER_BYTES // (plane * RASTER_BYTES_PER_VOXEL))
            band = half_diag / float(e.semi_axes.min())
            for za in range(zlo, zhi, step):
                zs = slice(za, min(zhi, za + step))
                frac = _ellipsoid_fraction(e, coords, (zs, sl[1], sl[2]), band, offs)
                vol[zs.start - z0 : zs.stop - z0, sl[1], sl[2]] += (e.delta * frac).astype(
                    np.float32
                )
        return vol


def _ellipsoid_fraction(e: Ellipsoid, coords, sl, band: float, offs: np.ndarray) -> np.ndarray:
    """Fraction of each voxel of the box ``sl`` inside ``e`` (supersampled near the surface)."""
    zz, yy, xx = np.meshgrid(coords[0][sl[0]], coords[1][sl[1]], coords[2][sl[2]], indexing="ij")
    p = np.stack([zz, yy, xx], axis=-1)
    r = np.sqrt(e.norm2(p))
    frac = (r <= 1.0).astype(np.float64)
    edge = np.abs(r - 1.0) <= band
    if np.any(edge):
        pe = p[edge]
        count = np.zeros(pe.shape[0])
        for oz in offs:
            for oy in offs:
                for ox in offs:
                    count += e.norm2(pe + np.array([oz, oy, ox])) <= 1.0
        frac[edge] = count / offs.size**3
    return frac


#: Bytes of temporaries one shape's rasterisation may take at a time, and what a voxel
#: of its bounding box costs (coordinates, points, radii, fraction: about 12 float64).
RASTER_BYTES = 64 * 2**20
RASTER_BYTES_PER_VOXEL = 96


# -- building a cell ------------------------------------------------------------------------------


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))[None, :]


def _tilt_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = math.radians(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(ang) * k + (1 - math.cos(ang)) * (k @ k)


def _shell(center, semi, rot, thickness, lac_shell, lac_inside, lac_outside, label):
    """A membrane of ``thickness`` around an ellipsoid: two nested ellipsoids."""
    outer = Ellipsoid(center, semi, rot, lac_shell - lac_outside, label + "_membrane")
    inner = Ellipsoid(
        center, np.maximum(semi - thickness, thickness), rot, lac_inside - lac_shell, label
    )
    return [outer, inner]


def make_cell(
    rng: np.random.Generator,
    cell_diameter_nm: float,
    fov_nm: float,
    height_nm: float,
    voxel_nm: float,
    capillary: bool = True,
    organelle_density: float = 1.0,
) -> CellPhantom:
    """A synthetic frozen cell in ice, optionally inside a glass capillary.

    Parameters
    ----------
    rng
        Random generator (the phantom is deterministic for a seed).
    cell_diameter_nm
        Mean diameter of the cell.
    fov_nm
        Full field of view (the ice column and capillary fit inside it).
    height_nm
        Height of the imaged volume (organelles are spread over it).
    voxel_nm
        Voxel size; membranes are at least one voxel thick so they stay visible.
    capillary
        Add a thin glass wall around the ice column.
    organelle_density
        Scales the number of organelles.
    """
    ph = CellPhantom()
    membrane = max(40.0, 0.9 * voxel_nm)
    r_ice = _ice_column(ph, fov_nm, voxel_nm, capillary)
    radius = min(cell_diameter_nm / 2.0, 0.92 * r_ice)
    semi = radius * np.array(
        [rng.uniform(1.0, 1.25), rng.uniform(0.92, 1.0), rng.uniform(0.92, 1.0)]
    )
    semi[1:] = np.minimum(semi[1:], 0.93 * r_ice)
    rot_cell = _tilt_rotation(rng, 12.0)
    offset = min(0.06 * radius, r_ice - semi[1:].max())
    center = np.array([0.0, *rng.uniform(-offset, offset, size=2)])
    ph.ellipsoids += _shell(
        center, semi, rot_cell, membrane, LAC["membrane"], LAC["cytoplasm"], LAC["ice"], "cell"
    )
    inside = _Placer(rng, Ellipsoid(center, semi - membrane, rot_cell, 0.0), semi, height_nm)
    _add_nucleus(ph, inside, radius, membrane, organelle_density)
    counts = _add_organelles(ph, inside, radius, organelle_density)
    ph.description = {
        "cell_diameter_nm": float(2 * radius),
        "capillary": bool(capillary),
        "ice_radius_nm": float(r_ice),
        "membrane_nm": float(membrane),
        "counts": {"nucleus": 1, **counts},
        "lac_um": dict(LAC),
    }
    return ph


def _ice_column(ph: CellPhantom, fov_nm: float, voxel_nm: float, capillary: bool) -> float:
    """Add the ice column (the capillary's lumen, slightly inside the field of view) and
    the capillary's glass wall; return the ice's radius."""
    r_ice = 0.47 * fov_nm
    ph.cylinders.append(Cylinder(np.zeros(2), r_ice, LAC["ice"], "ice"))
    if capillary:
        wall = max(150.0, 1.5 * voxel_nm)
        r_ice -= wall
        ph.cylinders[0] = Cylinder(np.zeros(2), r_ice, LAC["ice"], "ice")
        ph.cylinders.append(Cylinder(np.zeros(2), r_ice + wall, LAC["glass"], "capillary_wall"))
        ph.cylinders.append(Cylinder(np.zeros(2), r_ice, -LAC["glass"], "capillary_lumen"))
    return r_ice


class _Placer:
    """Where things fit inside the cell: the bounding spheres placed so far, the cell's
    inner ellipsoid (``cell``, semi-axes ``semi`` about its centre) and the imaged height."""

    def __init__(
        self, rng: np.random.Generator, cell: Ellipsoid, semi: np.ndarray, height_nm: float
    ) -> None:
        self.rng, self.cell, self.semi, self.height_nm = rng, cell, semi, height_nm
        self.center = cell.center
        self.placed: list[tuple[np.ndarray, float]] = []

    def fits(self, c: np.ndarray, r: float, margin: float = 30.0) -> bool:
        # inside the cell with a margin: test the sphere's extreme points along the cell axes
        pts = c + r * np.vstack([np.eye(3), -np.eye(3)]) @ self.cell.rotation.T
        if np.any(self.cell.norm2(pts) > 0.97**2) or abs(c[0]) > self.height_nm / 2 + r:
            return False
        return all(np.linalg.norm(c - c2) > r + r2 + margin for c2, r2 in self.placed)

    def place(self, r: float, tries: int = 200) -> np.ndarray | None:
        """A random centre where a sphere of radius ``r`` fits (kept), or None."""
        for _ in range(tries):
            c = self.center + (self.rng.uniform(-1, 1, size=3) * self.semi)
            if self.fits(c, r):
                self.placed.append((c, r))
                return c
        return None


def _add_nucleus(
    ph: CellPhantom, inside: _Placer, radius: float, membrane: float, organelle_density: float
) -> None:
    """A large off-centre ellipsoid with an envelope, nucleoli and heterochromatin."""
    rng, center, semi = inside.rng, inside.center, inside.semi
    n_semi = radius * np.array(
        [rng.uniform(0.42, 0.5), rng.uniform(0.38, 0.46), rng.uniform(0.4, 0.5)]
    )
    n_rot = _random_rotation(rng)
    n_center = None
    for _ in range(500):
        c = center + rng.uniform(-0.3, 0.3, size=3) * semi
        c[0] = rng.uniform(-0.15, 0.15) * min(inside.height_nm, semi[0])
        if inside.fits(c, float(n_semi.max())):
            n_center = c
            break
    if n_center is None:
        n_center, n_semi = center.copy(), n_semi * 0.8
    inside.placed.append((n_center, float(n_semi.max())))
    ph.ellipsoids += _shell(
        n_center,
        n_semi,
        n_rot,
        membrane,
        LAC["nuclear_envelope"],
        LAC["nucleus"],
        LAC["cytoplasm"],
        "nucleus",
    )
    for i in range(rng.integers(1, 3)):
        s = (
            n_semi.min()
            * rng.uniform(0.22, 0.35)
            * np.array([1.0, rng.uniform(0.7, 1), rng.uniform(0.7, 1)])
        )
        c = n_center + (n_rot @ (rng.uniform(-0.35, 0.35, size=3) * n_semi))
        ph.ellipsoids.append(
            Ellipsoid(
                c, s, _random_rotation(rng), LAC["nucleolus"] - LAC["nucleus"], f"nucleolus{i}"
            )
        )
    for _ in range(int(12 * organelle_density)):  # heterochromatin patches under the envelope
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        c = n_center + n_rot @ (0.82 * n_semi * direction)
        s = n_semi.min() * rng.uniform(0.08, 0.14) * np.array([1.0, 1.0, 0.5])
        ph.ellipsoids.append(
            Ellipsoid(
                c,
                s,
                _random_rotation(rng),
                LAC["heterochromatin"] - LAC["nucleus"],
                "heterochromatin",
            )
        )


def _add_organelles(
    ph: CellPhantom, inside: _Placer, radius: float, organelle_density: float
) -> dict[str, int]:
    """Mitochondria, lipid droplets, ER, dense granules and vesicles where they fit, as
    many as the cell's volume calls for; return how many of each were placed."""
    rng = inside.rng
    volume_ratio = (radius / 3000.0) ** 3 * organelle_density
    counts = {"mitochondrion": 0, "er": 0, "lipid_droplet": 0, "dense_granule": 0, "vesicle": 0}

    def add(kind: str, semi_axes: np.ndarray) -> None:
        c = inside.place(float(semi_axes.max()))
        if c is not None:
            ph.ellipsoids.append(
                Ellipsoid(c, semi_axes, _random_rotation(rng), LAC[kind] - LAC["cytoplasm"], kind)
            )
            counts[kind] += 1

    for _ in range(int(round(14 * volume_ratio)) + 2):
        length = rng.uniform(350, 900)
        width = rng.uniform(130, 220)
        add("mitochondrion", np.array([length, width, width * rng.uniform(0.8, 1.0)]))
    for _ in range(int(round(6 * volume_ratio)) + 1):
        add("lipid_droplet", np.full(3, rng.uniform(150, 320)))
    for _ in range(int(round(60 * volume_ratio)) + 4):
        add("er", np.array([rng.uniform(250, 600), rng.uniform(45, 70), rng.uniform(45, 70)]))
    for _ in range(int(round(25 * volume_ratio)) + 2):
        add("dense_granule", np.full(3, rng.uniform(50, 110)))
    for _ in range(int(round(10 * volume_ratio)) + 1):
        add("vesicle", np.full(3, rng.uniform(80, 180)))
    return counts
