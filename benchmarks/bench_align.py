"""Alignment time: the interior pairs on 1 worker vs 2 workers, measured in one run.

Simulates one acquisition (``small`` preset by default: 90 interior views, 179
pairs), then aligns its interior scan on a local Dask cluster of 1 worker and
of 2 workers (clusters started before the clock runs; each timing is the best
of ``--repeat``). Prints both times, their ratio, and the per-pair task time
measured inside the tasks; the full scan's projection matching is one task and
is timed separately.

Run: ``PYTHONPATH=. python benchmarks/bench_align.py [--preset small] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import sxtdist
    from sxtdist.distributed import get_client

    workdir = tempfile.mkdtemp(prefix="sxtdist-bench-align-")
    try:
        path = f"{workdir}/acq.zarr"
        sxtdist.simulate(path, preset=args.preset, seed=1, shifts_px=3.0, quiet=True)
        acq = sxtdist.open_acquisition(path)
        times: dict[int, float] = {}
        pair_s: list[float] = []
        full_s = None
        for workers in (1, 2):
            with get_client(workers=workers, quiet=True) as client:
                client.run(lambda: __import__("sxtdist.align"))  # warm imports
                if workers == 1:
                    res = sxtdist.align(
                        acq, scans=["full"], client=client, report="", quiet=True, dry_run=True
                    )
                    full_s = res.info["full"]["seconds"]
                best = np.inf
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    res = sxtdist.align(
                        acq, scans=["roi"], client=client, report="", quiet=True, dry_run=True,
                        progress=False,
                    )  # fmt: skip
                    best = min(best, time.perf_counter() - t0)
                    pair_s += [r.seconds for r in res.pairs]
                times[workers] = best
        n_pairs = len(res.pairs)
        print(f"preset {args.preset}: {acq['roi'].shape[0]} interior views, {n_pairs} pairs")
        print(f"interior alignment, 1 worker : {times[1]:.2f} s")
        print(f"interior alignment, 2 workers: {times[2]:.2f} s")
        print(f"ratio 1 worker / 2 workers   : {times[1] / times[2]:.2f}x")
        print(
            f"per-pair task time: median {np.median(pair_s) * 1e3:.1f} ms, "
            f"mean {np.mean(pair_s) * 1e3:.1f} ms over {len(pair_s)} tasks"
        )
        print(f"full scan (projection matching, one task): {full_s:.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
