"""Projection reads of both readers, the old layout against the current one.

A slice block reads a band of rows of every view; alignment reads whole views. The
old layout (one projection per unsharded chunk, what sxtdist wrote before) made
every block decode every view whole. The current one
(:func:`sxtdist.dataset.projection_layout`: one view per shard, inner chunks of
``ROW_BAND`` rows at full width, read through the zarrs pipeline) decodes only the
bands a block touches.

For each view size, on ``--views`` synthetic views (a smooth cell-like optical depth
with Poisson noise at the ``cell`` preset's interior dose), prints:

(1) bytes decoded per block / bytes of the block's rows (halo included), mean and
    worst over the blocks of ``--block`` rows with ``--halo`` rows each side that
    cover the view (counted from the chunk grid: a read decodes every inner chunk it
    touches, whole); target <= 1.5;
(2) the time to read one block's rows of every view (median over blocks);
(3) the time to read one whole view (median over the views, as alignment reads it:
    :func:`sxtdist.dataset.read_projection`), new / old; target <= 1.5. "old" is
    the old layout read as sxtdist read it (zarr's own codec pipeline).

Usage: ``python benchmarks/bench_io.py [--sizes 512 1024] [--views 90] [--block 32]
[--halo 4]``
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import zarr

from sxtdist import dataset
from sxtdist.io import ngff


def synthetic_views(n_views: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Optical depth of a disc-shaped cell in ice, Poisson noise at 22 500 photons/px."""
    yy, xx = np.mgrid[:n, :n] / n - 0.5
    od = 0.4 + 0.8 * np.clip(1 - (yy**2 + xx**2) / 0.16, 0, None) ** 0.5
    out = np.empty((n_views, n, n), np.float32)
    for i in range(n_views):
        t = np.exp(-(od + 0.05 * np.sin(xx * (7 + i % 5) + yy * 3)))
        out[i] = -np.log(np.maximum(rng.poisson(22500 * t), 1) / 22500)
    return out


def write_old(path: str, data: np.ndarray) -> zarr.Array:
    """The layout sxtdist wrote before: one projection per unsharded chunk."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    ngff.create_multiscale(
        group,
        "roi",
        [data.shape],
        [[1.0, 30.0, 30.0]],
        ngff.PROJECTION_AXES,
        chunks=[(1, *data.shape[1:])],
        fill_value=float("nan"),
    )
    group["roi"]["0"][...] = data
    return group["roi"]["0"]


def write_new(path: str, data: np.ndarray) -> zarr.Array:
    group = zarr.open_group(path, mode="w", zarr_format=3)
    dataset.write_projections(group, "roi", data, 30.0)
    return group["roi"]["0"]


def blocks(rows: int, block: int, halo: int) -> list[tuple[int, int]]:
    return [(max(0, z0 - halo), min(rows, z0 + block + halo)) for z0 in range(0, rows, block)]


def decoded_ratio(arr: zarr.Array, r0: int, r1: int) -> float:
    """Bytes of the inner chunks a read of rows ``r0:r1`` decodes / bytes of those rows."""
    band = arr.chunks[1]
    touched = (math.ceil(r1 / band) - r0 // band) * band
    return min(touched, arr.shape[1]) / (r1 - r0)


def median_time(fn, items) -> float:
    times = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(n: int, n_views: int, block: int, halo: int, tmp: str) -> None:
    data = synthetic_views(n_views, n, np.random.default_rng(n))
    old_path, new_path = os.path.join(tmp, f"old{n}.zarr"), os.path.join(tmp, f"new{n}.zarr")
    old, new = write_old(old_path, data), write_new(new_path, data)
    plan = blocks(n, block, halo)
    ratios = {
        name: [decoded_ratio(a, *b) for b in plan] for name, a in (("old", old), ("new", new))
    }
    old_plain = zarr.open_array(os.path.join(old_path, "roi", "0"), mode="r")
    new_fast = dataset.open_projections(os.path.join(new_path, "roi", "0"))
    old_fast = dataset.open_projections(os.path.join(old_path, "roi", "0"))
    for a in (old_plain, new_fast, old_fast):  # warm the page cache and the openers
        a[...]
    t_block = {
        name: median_time(lambda b, a=a: a[:, b[0] : b[1]], plan)
        for name, a in (("old", old_plain), ("new", new_fast), ("old, zarrs", old_fast))
    }
    views = range(n_views)
    t_view = {
        "old": median_time(lambda i: np.asarray(old_plain[i], np.float64), views),
        "new": median_time(lambda i: dataset.read_projection(new_fast_path(new_path), i), views),
        "old, zarrs": median_time(lambda i: np.asarray(old_fast[i], np.float64), views),
    }
    size = {
        p: sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
        for p in (old_path, new_path)
    }
    print(
        f"\n## {n_views} views of {n}x{n}, blocks of {block} rows + {halo} halo ({len(plan)} blocks)"
    )
    print(f"layout new: shards {new.shards}, inner chunks {new.chunks}; old: chunks {old.chunks}")
    for name in ("old", "new"):
        r = np.asarray(ratios[name])
        print(
            f"(1) {name}: bytes decoded / bytes of the rows: mean {r.mean():.2f}, worst {r.max():.2f}"
        )
    print(
        f"(2) one block's rows of every view: old {t_block['old'] * 1e3:.1f} ms, new "
        f"{t_block['new'] * 1e3:.1f} ms (old layout through zarrs {t_block['old, zarrs'] * 1e3:.1f} ms)"
    )
    print(
        f"(3) one whole view: old {t_view['old'] * 1e3:.2f} ms, new {t_view['new'] * 1e3:.2f} ms "
        f"-> ratio {t_view['new'] / t_view['old']:.2f} (target <= 1.5; old layout through zarrs "
        f"{t_view['old, zarrs'] * 1e3:.2f} ms)"
    )
    print(
        f"    on disk: old {size[old_path] / 2**20:.1f} MiB, new {size[new_path] / 2**20:.1f} MiB"
    )


def new_fast_path(new_path: str) -> str:
    return os.path.join(new_path, "roi", "0")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--views", type=int, default=90)
    ap.add_argument("--block", type=int, default=32, help="rows per block (its core)")
    ap.add_argument("--halo", type=int, default=4, help="rows of halo on each side")
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a new temporary one)")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_io_", dir=args.tmp)
    print(
        f"# bench_io: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, ROW_BAND {dataset.ROW_BAND}"
    )
    try:
        for n in args.sizes:
            measure(n, args.views, args.block, args.halo, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
