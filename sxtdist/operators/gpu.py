"""GPU slice projector: ASTRA's CUDA 3D parallel-beam projector on a slab in GPU memory.

:class:`GpuSliceProjector` is the GPU twin of :class:`~sxtdist.operators.SliceProjector`:
same geometry, same layout ``(ny, nx, nz) -> (angles, cols, nz)`` (slices last), same
units (a volume in µm⁻¹ projects to optical depth), so the rest of a scan's model
(row sampling, PSF, crop) and the solvers are shared with the CPU path and run on
cupy arrays.

How it maps onto ASTRA (``docs/gpu.md``, ``shared/reference/gpu_astra_facts.md``):

* one ``cuda3d`` projector per scan and slab shape, ``parallel3d_vec`` geometry from
  :meth:`ScanGeometry.astra_vectors_3d` (voxel = 1; detector rows = the slab's
  slices at the voxel pitch; columns = the scan's padded pixels split into
  ``supersampling`` samples of about a voxel, so ASTRA's ray-driven FP and
  voxel-driven BP stay close to adjoint; the samples are averaged here, exactly);
* ASTRA's volume is ``(nz, ny, nx)`` and its projections ``(nz, angles, cols)``;
  the transposes to and from our layout are cupy copies on the device;
* arrays are handed over by DLPack (``astra.data3d.link``) and run with
  ``astra.experimental.do_composite``, which raises on failure (``direct_FP3D`` /
  ``direct_BP3D`` in ASTRA 2.5 build the error and never raise it);
* ASTRA keeps the par3d geometry in process-global constant memory with no lock,
  so calls on one GPU are serialised by a process-wide lock per device;
* ASTRA copies its input into a CUDA array outside cupy's memory pool: before each
  call the free device memory is checked (and cupy's cached blocks released if
  needed), and a sample of the output is set to NaN and checked afterwards.

Everything but the ASTRA call is written against the array module of the input,
so the module can be exercised with numpy and a stand-in engine (``tests/test_gpu.py``).
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any, Protocol

import numpy as np

from ..errors import SxtdistError, option
from ..geometry import ScanGeometry, VolumeGrid
from ..slice_kernels import transpose_2d
from .base import LinearOperator, array_module
from .projector import default_supersampling

#: ASTRA's ``EJobMode`` values (``experimental.pyx``): add into the output, or overwrite it.
MODE_ADD, MODE_SET = 0, 1
#: Free device memory kept beyond ASTRA's CUDA array (its streams, textures, kernels).
ASTRA_HEADROOM = 256 * 1024**2

_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class GpuError(SxtdistError):
    """A GPU step failed (out of device memory, ASTRA refused the call, ...)."""


def device_lock(device: int) -> threading.Lock:
    """The process-wide lock that serialises ASTRA calls on GPU ``device``."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(int(device), threading.Lock())


def check_free_memory(free_bytes: int, needed_bytes: int, what: str) -> None:
    """Raise :class:`GpuError` unless ``needed_bytes`` plus headroom fit in ``free_bytes``."""
    if needed_bytes + ASTRA_HEADROOM > free_bytes:
        raise GpuError(
            f"not enough GPU memory for ASTRA's {what}: it needs "
            f"{(needed_bytes + ASTRA_HEADROOM) / 2**20:.0f} MiB outside cupy's pool and "
            f"{free_bytes / 2**20:.0f} MiB are free; use a smaller {option('--block-size', 'block_size')}"
        )


def sentinel_indices(size: int, count: int = 64) -> np.ndarray:
    """Up to ``count`` flat indices spread evenly over ``size`` elements, first and last included."""
    return np.unique(np.linspace(0, max(size - 1, 0), min(count, size)).round().astype(np.int64))


def check_astra_output(out: Any, what: str) -> None:
    """Raise :class:`GpuError` if ``out``, filled with NaN before the call, still holds NaN.

    ``out`` is the output or the values at its :func:`sentinel_indices`. All NaN: the call never
    wrote it (it failed before it touched the output); some NaN: non-finite input, or
    a call that failed part-way.
    """
    xp = array_module(out)
    n_bad = int(xp.count_nonzero(xp.isnan(out)))
    if n_bad == 0:
        return
    if n_bad == out.size:
        raise GpuError(f"ASTRA's {what} did not run on the GPU (its output was left untouched)")
    raise GpuError(
        f"ASTRA's {what} left {n_bad} of {out.size} checked values non-finite "
        "(non-finite input, or the call failed part-way)"
    )


def texture_nbytes(shape: tuple[int, ...]) -> int:
    """Bytes of ASTRA's CUDA-array copy of a float32 array of ``shape`` (rows padded to 512 B)."""
    *outer, inner = shape
    return int(math.prod(outer) * math.ceil(inner * 4 / 512) * 512)


class Engine(Protocol):
    """What :class:`GpuSliceProjector` needs from a 3D projector (ASTRA, or a test stand-in)."""

    vol_shape: tuple[int, int, int]  # ASTRA's (slices, rows, cols) of the volume
    proj_shape: tuple[int, int, int]  # ASTRA's (detector rows, angles, detector cols)

    def fp(self, vol: Any, proj: Any) -> None: ...  # proj = FP(vol), in voxel lengths

    def bp(self, proj: Any, vol: Any) -> None: ...  # vol = BP(proj) ≈ FPᵀ proj


class AstraCudaEngine:
    """ASTRA ``cuda3d`` projector of one scan on a slab; FP and BP on cupy arrays.

    Parameters
    ----------
    vectors
        ``(angles, 12)`` ``parallel3d_vec`` rows in voxel units, in ASTRA's axes.
    vol_shape
        ASTRA's ``(slices, rows, cols)`` of the volume array; the volume geometry is
        centred, one unit per voxel.
    det_shape
        ``(rows, cols)`` of the detector (cols supersampled).
    device
        CUDA device (default: the current one; dask-cuda makes each worker's GPU device 0).
    check
        Set a sample of each output to NaN before each call and check it after.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        vol_shape: tuple[int, int, int],
        det_shape: tuple[int, int],
        device: int | None = None,
        check: bool = True,
    ) -> None:
        import astra
        import astra.experimental  # do_composite lives there
        import cupy

        nz, ny, nx = (int(n) for n in vol_shape)
        n_rows, n_cols = (int(n) for n in det_shape)
        self.vol_shape = (nz, ny, nx)
        self.proj_shape = (n_rows, int(vectors.shape[0]), n_cols)
        self.device = cupy.cuda.runtime.getDevice() if device is None else int(device)
        self.check = bool(check)
        self.vol_geom = astra.create_vol_geom(
            ny, nx, nz, -nx / 2.0, nx / 2.0, -ny / 2.0, ny / 2.0, -nz / 2.0, nz / 2.0
        )
        self.proj_geom = astra.create_proj_geom(
            "parallel3d_vec", n_rows, n_cols, np.asarray(vectors, dtype=np.float64)
        )
        with cupy.cuda.Device(self.device):
            self.pid = astra.create_projector("cuda3d", self.proj_geom, self.vol_geom)
        weakref.finalize(self, astra.projector3d.delete, self.pid)

    def fp(self, vol, proj) -> None:
        self._run(vol, proj, "FP", texture_nbytes(self.vol_shape), proj)

    def bp(self, proj, vol) -> None:
        self._run(vol, proj, "BP", texture_nbytes(self.proj_shape), vol)

    def _run(self, vol, proj, op: str, texture: int, out) -> None:
        import astra
        import astra.experimental
        import cupy

        for name, arr, shape in (
            ("volume", vol, self.vol_shape),
            ("projections", proj, self.proj_shape),
        ):
            if tuple(arr.shape) != shape or arr.dtype != np.float32 or not arr.flags.c_contiguous:
                raise ValueError(f"ASTRA {op}: {name} must be C-contiguous float32 {shape}")
        what = f"{'forward' if op == 'FP' else 'back'} projection of {self.vol_shape} voxels"
        with cupy.cuda.Device(self.device), device_lock(self.device):
            free, _ = cupy.cuda.runtime.memGetInfo()
            if free < texture + ASTRA_HEADROOM:  # cupy's cached blocks count as used
                cupy.get_default_memory_pool().free_all_blocks()
                free, _ = cupy.cuda.runtime.memGetInfo()
            check_free_memory(free, texture, what)
            # NaN in a sample of the output, checked after the call: a sentinel costs no
            # volume pass (filling and scanning all of it did, twice per iteration)
            flat = out.reshape(-1)  # a view: out is C-contiguous
            probe = cupy.asarray(sentinel_indices(flat.size)) if self.check else None
            if probe is not None:
                flat[probe] = np.nan
            ids = []
            try:  # linked by DLPack: zero-copy, and cupy's stream is waited for
                ids.append(astra.data3d.link("-vol", self.vol_geom, vol))
                ids.append(astra.data3d.link("-sino", self.proj_geom, proj))
                try:
                    astra.experimental.do_composite(self.pid, ids[:1], ids[1:], MODE_SET, op)
                except Exception as exc:  # AstraError "Failed to perform FP/BP" + ASTRA's log
                    raise GpuError(f"ASTRA's {what} failed on GPU {self.device}: {exc}") from exc
            finally:
                if ids:
                    astra.data3d.delete(ids)
            if probe is not None:
                check_astra_output(flat[probe], what)


#: How our ``(ny, nx, nz)`` slab is handed to ASTRA (see :class:`GpuSliceProjector`).
LAYOUTS = ("yxz", "zyx")


def vectors_for_layout(vectors: np.ndarray, layout: str) -> np.ndarray:
    """``parallel3d_vec`` rows in ASTRA's axes for a volume array laid out as ``layout``.

    ASTRA's volume array is ``(slices, rows, cols)`` along its ``(z, y, x)``.
    ``"zyx"``: our ``(nz, ny, nx)`` array, ASTRA's axes are ours. ``"yxz"``: our
    ``(ny, nx, nz)`` array as is, so ASTRA's ``(x, y, z)`` are our ``(z, x, y)`` and every
    3-vector ``(a_x, a_y, a_z)`` becomes ``(a_z, a_x, a_y)``; the rotation axis is then
    ASTRA's ``x``. Same lines either way.
    """
    if layout == "zyx":
        return np.asarray(vectors, dtype=np.float64)
    if layout != "yxz":
        raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    v = np.asarray(vectors, dtype=np.float64).reshape(-1, 4, 3)
    return v[:, :, [2, 0, 1]].reshape(-1, 12)


def slab_vectors(
    geometry: ScanGeometry,
    grid: VolumeGrid,
    slab: tuple[int, int],
    pad: int,
    supersampling: int,
    layout: str = "zyx",
) -> np.ndarray:
    """The ``parallel3d_vec`` rows of a scan for the slices ``slab`` of ``grid``, in ``layout``.

    The slab's place matters with a tilted axis only: the detector turns about the
    grid's middle slice (:meth:`ScanGeometry.astra_vectors_3d`).
    """
    centre = (slab[0] + slab[1] - 1) / 2.0 - (grid.nz - 1) / 2.0  # voxels from the middle
    return vectors_for_layout(
        geometry.astra_vectors_3d(grid.voxel_size_nm, supersampling, pad, centre), layout
    )


class GpuSliceProjector(LinearOperator):
    """A scan's projection of every slice of a slab on the GPU: ``(ny, nx, nz) -> (angles, cols, nz)``.

    Same parameters, shapes and units as :class:`~sxtdist.operators.SliceProjector`.

    Parameters
    ----------
    layout
        How the slab is handed to ASTRA. ``"zyx"`` (default): ASTRA's usual orientation
        (rotation axis along its ``z``) on a transposed ``(nz, ny, nx)`` copy, made by a
        tiled transpose (:func:`~sxtdist.slice_kernels.transpose_2d`, about a plain copy's
        time). ``"yxz"``: ASTRA reads and writes our ``(ny, nx, nz)`` arrays as they are,
        with the geometry's axes permuted (:func:`vectors_for_layout`); no transpose, but
        ASTRA's forward projection runs slower in that orientation (H100, 512³, 92
        views: 28.6 vs 23.2 ms), so the whole iteration is slower (0.088 vs 0.086 s).
        Projections are transposed between ASTRA's ``(nz, angles, cols)`` and ours either
        way (they are small next to the volume).
    engine
        Replaces the ASTRA engine (tests); by default one is made on the current CUDA
        device.
    first_slice
        The slab's first slice in the grid: with a tilted axis the detector turns about
        the grid's middle, so the vectors depend on where the slab is.
    """

    def __init__(
        self,
        geometry: ScanGeometry,
        grid: VolumeGrid,
        n_slices: int,
        pad: int = 0,
        supersampling: int | None = None,
        engine: Engine | None = None,
        layout: str = "zyx",
        first_slice: int = 0,
    ) -> None:
        s = default_supersampling(geometry, grid) if supersampling is None else int(supersampling)
        ny, nx = grid.slice_shape
        nz = int(n_slices)
        cols = geometry.detector_shape[1] + 2 * pad
        self.supersampling = s
        self.n_cols = cols
        self.layout = layout
        # FP gives lengths in voxels; a voxel in µm turns µm⁻¹ into optical depth
        self.scale = np.float32(grid.voxel_size_nm * 1e-3)
        vol_shape = (ny, nx, nz) if layout == "yxz" else (nz, ny, nx)
        vectors = slab_vectors(geometry, grid, (first_slice, first_slice + nz), pad, s, layout)
        if engine is None:
            engine = AstraCudaEngine(vectors, vol_shape, (nz, cols * s))
        expected = (vol_shape, (nz, geometry.n_angles, cols * s))
        if (tuple(engine.vol_shape), tuple(engine.proj_shape)) != expected:
            raise ValueError(f"engine shapes {engine.vol_shape}, {engine.proj_shape} != {expected}")
        self.engine = engine
        self.domain_shape = (ny, nx, nz)
        self.range_shape = (geometry.n_angles, cols, nz)

    def _apply(self, x, out):
        xp = array_module(x)
        ny, nx, nz = self.domain_shape
        if self.layout == "yxz":  # no copy when x is already C-contiguous float32
            vol = xp.ascontiguousarray(x, dtype=xp.float32)
        else:  # (ny, nx, nz) -> (nz, ny, nx)
            vol = transpose_2d(x, ny * nx, nz).reshape(nz, ny, nx)
        fine = xp.empty(self.engine.proj_shape, dtype=xp.float32)
        self.engine.fp(vol, fine)
        del vol
        nz, n_a, _ = fine.shape
        s = self.supersampling
        if s > 1:  # average the samples of each pixel
            fine = fine.reshape(nz, n_a, self.n_cols, s).sum(axis=3, dtype=xp.float32)
        if out is None:
            out = xp.empty(self.range_shape, dtype=xp.float32)
        xp.multiply(fine.transpose(1, 2, 0), self.scale / np.float32(s), out=out)
        return out

    def _adjoint(self, y, out):
        xp = array_module(y)
        s = self.supersampling
        proj = xp.ascontiguousarray(y.transpose(2, 0, 1), dtype=xp.float32)  # (nz, angles, cols)
        if s > 1:  # adjoint of the average: spread each pixel evenly over its samples
            proj = xp.repeat(proj, s, axis=2)
        factor = self.scale / np.float32(s)
        vol = xp.empty(self.engine.vol_shape, dtype=xp.float32)
        self.engine.bp(proj, vol)
        del proj
        if self.layout == "yxz":  # ASTRA wrote our layout: scale in place
            if out is None:
                vol *= factor
                return vol
            xp.multiply(vol, factor, out=out)
            return out
        ny, nx, nz = self.domain_shape  # (nz, ny, nx) -> (ny, nx, nz), scaled on the way
        res = transpose_2d(vol, nz, ny * nx, factor, out=out)
        return res.reshape(self.domain_shape) if out is None else out


__all__ = [
    "ASTRA_HEADROOM",
    "LAYOUTS",
    "MODE_ADD",
    "MODE_SET",
    "AstraCudaEngine",
    "Engine",
    "GpuError",
    "GpuSliceProjector",
    "check_astra_output",
    "check_free_memory",
    "device_lock",
    "sentinel_indices",
    "slab_vectors",
    "texture_nbytes",
    "vectors_for_layout",
]
