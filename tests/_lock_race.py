"""Many processes take one output's lock at once, round after round (run by test_faults).

Usage: ``python _lock_race.py FOLDER TAKERS ROUNDS``. Before each round the lock file
is left as a dead run leaves it (its owner's pid written, nobody holding it); then
all takers try at the same instant. A taker that gets it holds it until every
other has tried. Prints one JSON line: the number of holders in each round.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys

from sxtdist.errors import OutputLockedError
from sxtdist.lock import lock_path, write_lock


def taker(out: str, start, tried, holders, rounds: int) -> None:
    for _ in range(rounds):
        start.wait()
        try:
            with write_lock(out):
                with holders.get_lock():
                    holders.value += 1
                tried.wait()  # hold it while the others try
        except OutputLockedError:
            tried.wait()
        start.wait()  # the coordinator reads the count, then resets


def main(folder: str, n: int, rounds: int) -> list[int]:
    ctx = mp.get_context("fork")
    out = os.path.join(folder, "v.zarr")
    start, tried = ctx.Barrier(n + 1, timeout=60), ctx.Barrier(n, timeout=60)
    holders = ctx.Value("i", 0)
    procs = [ctx.Process(target=taker, args=(out, start, tried, holders, rounds)) for _ in range(n)]
    for p in procs:
        p.start()
    dead = ctx.Process(target=os.getpid)
    dead.start()
    dead.join()  # a pid that no longer runs
    counts = []
    for _ in range(rounds):
        with open(lock_path(out), "w") as f:  # what a killed run leaves behind
            json.dump({"host": os.uname().nodename, "pid": dead.pid}, f)
        start.wait()  # go
        start.wait()  # all tried and let go
        counts.append(holders.value)
        holders.value = 0
    for p in procs:
        p.join()
    return counts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
