"""Batch throughput: 4 cells on 1 worker vs 2 workers, and Dask's overhead per task.

Prints:

(a) wall time of ``reconstruct_batch`` (reconstruction only, no alignment) on 4 simulated cells with 1 worker and with
    2 workers (same cells, same options, clusters started before the clock), and
    the speed-up 1-worker time / 2-worker time;
(b) the scheduler's overhead per task, two ways: the round trip of an empty task
    (``client.map`` of a no-op, 1 worker), and inside the batch run, the worker time
    not spent computing a block, per block task ((wall x workers - time in block
    tasks) / number of block tasks; an upper bound: it also holds the client's
    bookkeeping and building the coarser levels), as a share of a block task.

Usage: ``python benchmarks/bench_batch.py [--preset tiny|small] [--iterations 20]
[--block-size 8] [--noop-tasks 500]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import sxtdist
from sxtdist.batch import reconstruct_batch


def noop(i: int) -> int:
    return i


def noop_overhead(client, n: int) -> float:
    """Seconds per empty task, submitted together and gathered (after a warm-up)."""
    client.gather(client.map(noop, range(20), pure=False))
    t0 = time.perf_counter()
    futures = client.map(noop, range(n), pure=False)
    client.gather(futures)
    return (time.perf_counter() - t0) / n


def run_batch(cells, out, workers: int, opts: dict) -> dict:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        client.run(__import__, "sxtdist.runner")  # imports on the workers, off the clock
        with _TaskStream(client) as ts:
            t0 = time.perf_counter()
            rows = reconstruct_batch(
                cells,
                out,
                client=client,
                metrics=False,
                progress=False,
                align=False,
                **opts,
            )
            wall = time.perf_counter() - t0
        bad = [r for r in rows if r.status != "done"]
        if bad:
            raise SystemExit(f"cells did not finish: {bad}")
        blocks = [t for t in ts.data if str(t["key"]).startswith("_solve_block")]
        busy = sum(
            s["stop"] - s["start"]
            for t in blocks
            for s in t["startstops"]
            if s["action"] == "compute"
        )
        result = {"wall": wall, "tasks": len(blocks), "busy": busy}
        if workers == 1:
            result["noop"] = noop_overhead(client, _ARGS.noop_tasks)
    return result


class _TaskStream:
    """``client.get_task_stream`` as a context that keeps its records."""

    def __init__(self, client):
        from distributed import get_task_stream

        self._cm = get_task_stream(client)

    def __enter__(self):
        self._ts = self._cm.__enter__()
        return self._ts

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def main() -> None:
    global _ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--block-size", type=int, default=8)
    ap.add_argument("--noop-tasks", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    _ARGS = args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_batch_")
    try:
        t0 = time.perf_counter()
        cells = []
        for i in range(args.cells):
            path = os.path.join(tmp, f"cell{i}.zarr")
            sxtdist.simulate(path, preset=args.preset, seed=100 + i)
            cells.append(path)
        shape = sxtdist.open_acquisition(cells[0], "r").truth.shape
        print(
            f"{args.cells} '{args.preset}' cells of {shape} voxels, {args.iterations} CGNE iterations, "
            f"blocks of {args.block_size} slices (simulated in {time.perf_counter() - t0:.1f} s); "
            f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f} (other processes skew the ratios)"
        )
        opts = {"iterations": args.iterations, "block_size": args.block_size}
        # Fresh clusters (cold worker caches) each time, alternating 1, 2, 1, 2 ...; the
        # fastest of the repeats counts, so the page cache favours neither.
        runs: dict[int, list[dict]] = {1: [], 2: []}
        for rep in range(args.repeats):
            for w in (1, 2):
                out = os.path.join(tmp, f"out{w}-{rep}")
                runs[w].append(run_batch(cells, out, w, opts))
        res = {w: min(rs, key=lambda r: r["wall"]) for w, rs in runs.items()}
        res[1]["noop"] = min(r["noop"] for r in runs[1])
        print(f"\n(a) batch wall time (clusters started before the clock; best of {args.repeats})")
        for w, r in res.items():
            print(
                f"    {w} worker(s): {r['wall']:7.2f} s  ({r['tasks']} block tasks, "
                f"{r['wall'] / args.cells:.2f} s per cell)"
            )
        print(f"    speed-up 1 -> 2 workers: {res[1]['wall'] / res[2]['wall']:.2f}x")
        print("\n(b) scheduler overhead per task")
        print(f"    empty task round trip (1 worker): {res[1]['noop'] * 1e3:.2f} ms/task")
        for w, r in res.items():
            idle = max(0.0, r["wall"] * w - r["busy"]) / r["tasks"]
            mean = r["busy"] / r["tasks"]
            print(
                f"    in the batch, {w} worker(s): {idle * 1e3:6.1f} ms per block task outside block "
                f"computation (scheduling, transfers, the client's bookkeeping and pyramid) vs "
                f"{mean * 1e3:6.1f} ms computing ({idle / mean:.1%})"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_ARGS: argparse.Namespace


if __name__ == "__main__":
    main()
