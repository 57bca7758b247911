"""The capacity planner against measured runs: estimate, then reconstruct, on this machine.

For each size (the ``cell`` preset at 60 nm for 256³, at 30 nm for 512³; simulated
once into ``--tmp``), the rates are measured afresh (the load of a shared machine
changes), :func:`sxtdist.estimate.estimate_reconstruction` estimates the run, and
:func:`sxtdist.reconstruct` runs it on a new local cluster of ``--workers`` workers,
timed from asking for the cluster to the finished volume (cluster start and pyramid
included). Prints the estimate, the measured time, their ratio and the load before and
after; and, since the estimate is of a worker with a core of its own while other work
on a shared machine takes its share, also the workers' CPU seconds against the
estimate's worker-seconds (matrices and blocks: the part other work cannot stretch).

Usage: ``python benchmarks/planner_check.py [--sizes 256 512] [--workers 2] [--iterations 20]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import sxtdist
from sxtdist.calibration import measure_rates
from sxtdist.distributed import get_client
from sxtdist.estimate import estimate_reconstruction

PIXELS = {256: {"full": 120.0, "roi": 60.0}, 512: None}


def acquisition(tmp: str, size: int) -> str:
    path = os.path.join(tmp, f"cell{size}.zarr")
    if not os.path.exists(path):
        sxtdist.simulate(path, preset="cell", seed=0, pixel_size_nm=PIXELS[size])
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512], choices=sorted(PIXELS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--tmp", default="/tmp/sxtdist-planner-check")
    args = ap.parse_args(argv)
    os.makedirs(args.tmp, exist_ok=True)
    print(f"# planner_check: {os.cpu_count()} cpus, {args.workers} workers, {args.iterations} its")
    for size in args.sizes:
        acq = acquisition(args.tmp, size)
        load0 = os.getloadavg()
        est = estimate_reconstruction(
            acq,
            workers=args.workers,
            backend="cpu",
            iterations=args.iterations,
            rates=measure_rates(),
        )
        print(f"\n## {size}³\n{est.describe()}")
        t0 = time.perf_counter()
        with get_client(workers=args.workers, keep_cluster=False) as client:
            cpu0 = client.run(time.process_time)
            sxtdist.reconstruct(
                acq,
                os.path.join(args.tmp, f"rec{size}.zarr"),
                iterations=args.iterations,
                client=client,
                backend="cpu",
                overwrite=True,
                progress=False,
            )
            measured = time.perf_counter() - t0
            cpu1 = client.run(time.process_time)
        cpu = sum(cpu1[w] - cpu0[w] for w in cpu0)
        load1 = os.getloadavg()
        print(
            f"measured {measured:.0f} s, estimated {est.wall_s:.0f} s -> estimate/measured "
            f"{est.wall_s / measured:.2f}; load (1/5/15 min) before {load0[0]:.1f}/{load0[1]:.1f}/"
            f"{load0[2]:.1f}, after {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}\n"
            f"workers' CPU {cpu:.0f} s, estimated {est.worker_hours * 3600:.0f} worker-s -> "
            f"{est.worker_hours * 3600 / cpu:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
