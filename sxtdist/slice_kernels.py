"""Per-slice vector operations of the solvers, and slab transposes, fused on the GPU.

CGNE keeps its scalars per slice (or per detector row), on the last axis of every
array: ``x += a[k] · p`` for each slice ``k``, ``p = s + b[k] · p``, ``Σ v²`` per slice.
Written with numpy broadcasting, each is two or three passes over a volume and a
temporary; on a GPU the volume passes are most of what CGNE adds to ASTRA's
projections. Here they are one pass each on cupy arrays (an elementwise kernel, and a
coalesced reduction that accumulates in float64), and plain numpy otherwise.

All functions take C-contiguous float32 arrays whose last axis has ``n`` entries and
scalars of length ``n``. :func:`transpose_2d` turns a slab between our layout (slices
last) and ASTRA's (slices first) at about copy speed (a tiled transpose through shared
memory; cupy's strided copy is about three times slower).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .operators.base import array_module

_KERNELS: dict[str, Any] = {}

_SUMSQ_SOURCE = r"""
extern "C" __global__ void slice_sumsq(const float* v, double* out,
                                        long long n_outer, int n, long long rows_per_block) {
    // thread j sums column j (one slice) over a band of the outer index:
    // consecutive threads read consecutive floats, so the loads are coalesced
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    long long r0 = (long long)blockIdx.y * rows_per_block;
    long long r1 = r0 + rows_per_block < n_outer ? r0 + rows_per_block : n_outer;
    double acc = 0.0;
    for (long long r = r0; r < r1; ++r) {
        double a = (double)v[r * n + j];
        acc += a * a;
    }
    atomicAdd(&out[j], acc);
}
"""


_TRANSPOSE_SOURCE = r"""
extern "C" __global__ void transpose_scale(const float* in, float* out,
                                            long long rows, long long cols, float alpha) {
    // out (cols, rows) = alpha * in (rows, cols)ᵀ, 32x32 tiles; blockIdx.x walks the rows
    // (the long axis: up to 2^31 tiles), blockIdx.y the columns
    __shared__ float tile[32][33];
    long long r0 = (long long)blockIdx.x * 32, c0 = (long long)blockIdx.y * 32;
    int tx = threadIdx.x, ty = threadIdx.y;
    for (int k = 0; k < 32; k += 8) {
        long long r = r0 + ty + k, c = c0 + tx;
        if (r < rows && c < cols) tile[ty + k][tx] = in[r * cols + c];
    }
    __syncthreads();
    for (int k = 0; k < 32; k += 8) {
        long long c = c0 + ty + k, r = r0 + tx;
        if (c < cols && r < rows) out[c * rows + r] = alpha * tile[tx][ty + k];
    }
}
"""


def _kernel(name: str):
    """Compile (once per process) and return the cupy kernel ``name``."""
    if name not in _KERNELS:
        import cupy

        if name == "transpose":
            _KERNELS[name] = cupy.RawKernel(_TRANSPOSE_SOURCE, "transpose_scale")
        elif name == "sumsq":
            _KERNELS[name] = cupy.RawKernel(_SUMSQ_SOURCE, "slice_sumsq")
        elif name == "axpy":
            _KERNELS[name] = cupy.ElementwiseKernel(
                "raw float32 a, float32 p, int64 n", "float32 x", "x += a[i % n] * p", "slice_axpy"
            )
        elif name == "xpby":
            _KERNELS[name] = cupy.ElementwiseKernel(
                "raw float32 b, float32 s, int64 n",
                "float32 p",
                "p = s + b[i % n] * p",
                "slice_xpby",
            )
        else:  # pragma: no cover - programming error
            raise KeyError(name)
    return _KERNELS[name]


def sumsq_last(v) -> Any:
    """``Σ v²`` over all axes but the last, in float64: one value per slice (or row).

    Products and sums are float64 (CG's scalars from float32 vectors keep their
    accuracy; numpy's einsum casts in buffered chunks, no float64 copy of ``v``).
    """
    if array_module(v) is np:
        ax = "abcdefgh"[: v.ndim - 1] + "z"
        return np.einsum(f"{ax},{ax}->z", v, v, dtype=np.float64)
    import cupy

    n = int(v.shape[-1])
    outer = int(v.size // n) if n else 0
    out = cupy.zeros(n, dtype=cupy.float64)
    if outer == 0 or n == 0:
        return out
    v = cupy.ascontiguousarray(v, dtype=cupy.float32)
    threads = min(256, 32 * -(-n // 32))
    blocks_x = -(-n // threads)
    # enough blocks to fill the GPU (~4096), each summing at least 64 outer rows
    blocks_y = max(1, min(-(-outer // 64), 4096 // blocks_x))
    rows_per_block = -(-outer // blocks_y)
    blocks_y = -(-outer // rows_per_block)
    _kernel("sumsq")(
        (blocks_x, blocks_y),
        (threads,),
        (v, out, np.int64(outer), np.int32(n), np.int64(rows_per_block)),
    )
    return out


def axpy_last(x, a, p) -> None:
    """``x += a[k] · p[..., k]`` in place."""
    if array_module(x) is np:
        x += a[(None,) * (x.ndim - 1)] * p
        return
    _kernel("axpy")(a.astype("float32", copy=False), p, np.int64(x.shape[-1]), x)


def xpby_last(p, b, s) -> None:
    """``p = s + b[k] · p[..., k]`` in place."""
    if array_module(p) is np:
        p *= b[(None,) * (p.ndim - 1)]
        p += s
        return
    _kernel("xpby")(b.astype("float32", copy=False), s, np.int64(p.shape[-1]), p)


def transpose_2d(a, rows: int, cols: int, alpha: float = 1.0, out=None):
    """``alpha · aᵀ`` of C-contiguous ``a`` seen as ``(rows, cols)``, C-contiguous ``(cols, rows)``.

    A slab ``(ny, nx, nz)`` is ``(ny·nx, nz)``: ``transpose_2d(x, ny * nx, nz)`` gives ASTRA's
    ``(nz, ny, nx)`` (reshape the result), and back with the two sizes swapped.
    ``out`` (any shape of ``rows · cols`` elements) receives the result.
    """
    alpha = np.float32(alpha)
    if array_module(a) is np:
        res = np.empty((cols, rows), np.float32) if out is None else out.reshape(cols, rows)
        np.multiply(a.reshape(rows, cols).T, alpha, out=res)
        return res if out is None else out
    import cupy

    if not a.flags.c_contiguous or a.dtype != cupy.float32:
        a = cupy.ascontiguousarray(a, dtype=cupy.float32)
    if out is None:
        out = cupy.empty((cols, rows), dtype=cupy.float32)
    grid = (-(-rows // 32), -(-cols // 32))
    _kernel("transpose")(grid, (32, 8), (a, out, np.int64(rows), np.int64(cols), alpha))
    return out


__all__ = ["axpy_last", "sumsq_last", "transpose_2d", "xpby_last"]
