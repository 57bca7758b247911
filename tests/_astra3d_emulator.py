"""A numpy stand-in for ASTRA's CUDA ``parallel3d_vec`` forward projector, for CPU tests.

It follows ``cuda/3d/par3d_fp.cu`` (astra-toolbox 2.5) line by line: the detector
corner is ``d - rows/2 v - cols/2 u``; pixel ``(r, c)`` is traced from its centre
along the ray, stepping one voxel along the ray's main axis (x, y or z, whichever
component of the ray is largest) through voxel-centre planes, reading the volume by
linear interpolation with a zero border (the texture fetch) and multiplying by the
ray length per step ``sqrt(1 + a1² + a2²)``. Volume index ``i`` along an axis of
``n`` voxels sits at coordinate ``i - n/2 + 0.5`` (voxel units, window centred),
with x the fastest axis of the ``(z, y, x)`` array.

The back projection is the exact transpose (ASTRA's is an approximation of it), so
dot tests through this engine test everything around the projector exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def par3d_matrix(vectors: np.ndarray, vol_shape: tuple[int, int, int], det_shape: tuple[int, int]):
    """Sparse ``(rows * angles * cols, nz * ny * nx)`` matrix of the emulated FP."""
    nz, ny, nx = vol_shape
    n_rows, n_cols = det_shape
    dims = {"x": nx, "y": ny, "z": nz}
    strides = {"x": 1, "y": nx, "z": nx * ny}
    n_angles = vectors.shape[0]
    rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    rows_all, cols_all, vals_all = [], [], []
    for a in range(n_angles):
        ray, d, u, v = (vectors[a, 3 * k : 3 * k + 3] for k in range(4))
        corner = d - 0.5 * n_rows * v - 0.5 * n_cols * u
        # pixel centres (R, C, 3)
        p = corner + (cc[..., None] + 0.5) * u + (rr[..., None] + 0.5) * v
        axes = ("x", "y", "z")
        if abs(ray[0]) >= abs(ray[1]) and abs(ray[0]) >= abs(ray[2]):
            main = 0
        elif abs(ray[1]) >= abs(ray[0]) and abs(ray[1]) >= abs(ray[2]):
            main = 1
        else:
            main = 2
        o1, o2 = [k for k in range(3) if k != main]
        a1, a2 = ray[o1] / ray[main], ray[o2] / ray[main]
        b1 = p[..., o1] - a1 * p[..., main]
        b2 = p[..., o2] - a2 * p[..., main]
        n0 = dims[axes[main]]
        i = np.arange(n0)
        c0 = i - n0 / 2.0 + 0.5  # main-axis coordinate of each voxel plane
        f1 = a1 * c0[None, None, :] + b1[..., None] + dims[axes[o1]] / 2.0 - 0.5
        f2 = a2 * c0[None, None, :] + b2[..., None] + dims[axes[o2]] / 2.0 - 0.5
        j1, j2 = np.floor(f1).astype(int), np.floor(f2).astype(int)
        t1, t2 = f1 - j1, f2 - j2
        scale = np.sqrt(1.0 + a1 * a1 + a2 * a2)
        det_index = (rr * n_angles + a) * n_cols + cc  # ASTRA layout (rows, angles, cols)
        for dj1, w1 in ((0, 1 - t1), (1, t1)):
            for dj2, w2 in ((0, 1 - t2), (1, t2)):
                k1, k2 = j1 + dj1, j2 + dj2
                w = w1 * w2 * scale
                ok = (
                    (k1 >= 0) & (k1 < dims[axes[o1]]) & (k2 >= 0) & (k2 < dims[axes[o2]]) & (w != 0)
                )
                vox = (
                    np.broadcast_to(i, k1.shape) * strides[axes[main]]
                    + k1 * strides[axes[o1]]
                    + k2 * strides[axes[o2]]
                )
                rows_all.append(np.broadcast_to(det_index[..., None], k1.shape)[ok])
                cols_all.append(vox[ok])
                vals_all.append(w[ok])
    return sp.csr_matrix(
        (np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))),
        shape=(n_rows * n_angles * n_cols, nz * ny * nx),
    )


class EmulatedEngine:
    """The :class:`sxtdist.operators.gpu.Engine` interface on numpy arrays."""

    def __init__(self, vectors: np.ndarray, vol_shape: tuple[int, int, int], det_shape):
        self.vol_shape = tuple(int(n) for n in vol_shape)
        n_rows, n_cols = (int(n) for n in det_shape)
        self.proj_shape = (n_rows, vectors.shape[0], n_cols)
        self.matrix = par3d_matrix(vectors, self.vol_shape, (n_rows, n_cols))
        self.calls = {"fp": 0, "bp": 0}

    def fp(self, vol, proj):
        assert vol.shape == self.vol_shape and vol.flags.c_contiguous and vol.dtype == np.float32
        self.calls["fp"] += 1
        proj[...] = (self.matrix @ vol.ravel()).reshape(self.proj_shape)

    def bp(self, proj, vol):
        assert proj.shape == self.proj_shape and proj.flags.c_contiguous
        self.calls["bp"] += 1
        vol[...] = (self.matrix.T @ proj.ravel()).reshape(self.vol_shape)
