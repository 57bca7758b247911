"""Alignment speed and sub-pixel accuracy, all figures measured in one run.

1. **Small preset, 1 vs 2 workers**: simulate the ``small`` preset (90 interior
   views, 179 pairs), align its interior scan on a local Dask cluster of 1 worker
   and of 2 workers (``--repeat`` rounds of 1 then 2 workers, each cluster started
   before the clock runs); print the times, each round's ratio (and their median),
   the ratio of the best times, and the per-pair task time. Before that, the whole
   alignment of both scans (as ``sxtdist align``) on 1 worker, timed once: the full
   scan's alignment (row profiles, weighted centroids; one task), and what the coarse
   pass and the check (the joint solve's per-view standard errors) cost beside the fine
   registrations they guard (parts 1 and 2 print these task seconds).
2. **1024² interior views, 1 vs 2 workers** (``--large-views N``, default 48):
   an interior scan of ``N`` views of 1024 x 1024 pixels (15 nm, 2° apart, random
   shifts of 3 px, Poisson noise, PSF) and ``--large-full F`` (default 7) aligned
   full views of 1024² pixels of 30 nm over the same arc, written as an acquisition
   and aligned by the same runner (at this size one stretch of consecutive views per
   worker, one task each, that prepares its views and anchor views once and registers
   their pairs, the stretches cut by their estimated work, ``stretch_sizes`` since
   speed15; commit 50637ce: a task per view and per pair; ``--large-full 0``:
   neighbours only);
   the time per pair with all work included (alignment time / pairs), the pairs' own
   registration time (all, and per kind) and the 1-worker / 2-worker ratio.
3. **Against scikit-image** (``--compare-pairs M``, default 8): ``M`` pairs of
   1024² views at the same angle with independent noise and a known random
   sub-pixel shift, once with the two views divided by the same noisy flat field
   (one scan, as in real data: its noise is a pattern common to both) and once
   with independent flats;
   RMS error and time per pair of ``sxtdist.alignment.ncc.register`` (the pair task's
   registration: blur 1 px, masked NCC over ±32 px, spline peak) and of
   ``skimage.registration.phase_cross_correlation`` (``upsample_factor=100``,
   with its default phase normalisation, without it, and on the same blurred
   images as ours).

``--large-size N`` gives part 2 views of ``N x N`` pixels over the same field (pixels of
``15 * 1024 / N`` nm); ``--one-task-per-pair`` registers them as views below
``PREPARED_VIEW_PIXELS`` are (stretches that read and prepare their own views, no view
or anchor tasks; until commit e44a53a each pair prepared its own), for comparison;
``--stretches-per-worker N`` plans ``N`` stretches per worker at this size on 2 workers
(``PREPARED_STRETCHES_PER_WORKER``, 1 since speed10, 4 before: each stretch but the last
prepares the next one's first view again; 1 worker and the ceiling's graph: one stretch);
``--small-stretches-per-worker N`` does the same for part 1's views (``STRETCHES_PER_WORKER``,
1 since speed11, 8 before; on 1 worker one stretch either way, where 894fc6c made 8);
``--memory`` adds part 2's peak memory of a worker process, from one more run on 1 and
on 2 workers that is not timed. The timed run is the first on a fresh cluster (what
``sxtdist align`` does); ``--warm`` also times the same alignment once more on each
cluster, as a batch's later cells run, and prints that ratio too. From Dask's task
stream of every timed run on 2 workers, parts 1 and 2 print how long the first worker to
run out of tasks waited for the other, how many inputs moved between them and how busy
they were over the tasks' span, and the CPU seconds of the client and the local
scheduler per run (they share the machine's cores with the workers): figures that a
busy machine disturbs far less than the times. From a CPU ledger of every timed run
(``CpuLedger``): the CPU other processes on the machine took meanwhile (``/proc/stat``
less this run's own, in cores: a quiet machine is under 0.1; Linux shares the cores
between sessions before it reads ``nice``, so a study at ``nice -n 19`` in another
session still takes its share, and one such process halves what 2 workers get, not
what 1 gets), and from Dask's task metrics the tasks' CPU seconds per run on 1 and on 2
workers (equal where the second worker adds no work and the cores do not slow each
other) and the share of the tasks' time they were on a CPU.

After the Dask timings of parts 1 and 2, **this machine's ceiling**: the same task graph
(``task_graph``: what ``sxtdist.align`` submits) run whole by Dask's synchronous
scheduler in plain processes, with the environment Dask's nanny gives its workers, one
alone and then two at once, ``--repeat`` rounds. Two processes doing twice the work in
``t2`` against one in ``t1`` is a throughput ratio of ``2 t1 / t2``, the most any
scheduling of the tasks on 2 workers can reach here: below 2 where the two cores share
the memory bandwidth or one physical core. The Dask ratio is then printed as a fraction
of it (``--no-ceiling`` skips this). Beside it the CPU seconds of the graph per process,
alone and two at once (above 1x: the cores slow each other: memory bandwidth, a shared
physical core), and what other processes took meanwhile.

At the end of parts 1 and 2, one verdict line each: the median of the rounds' 1 -> 2 worker
ratios against issue #25's target (``TARGET_RATIO``, 1.75x: met / NOT met), the rounds'
spread, and how quiet the machine was (other processes' CPU over the timed runs, from the
ledgers; quiet where every run had under ``QUIET_CORES``, 0.1 cores; a verdict on a
machine that was not quiet does not count). ``bench_align_whole.py`` gives the issue's
other figure, the whole ``sxtdist align`` of ``small`` against the code at its filing.

It prints first which sxtdist it imported (its directory and that tree's git commit).

Run: ``PYTHONPATH=. python benchmarks/bench_align.py [--repeat 3] [--large-views 48]
[--large-full 7] [--large-size 1024] [--one-task-per-pair] [--stretches-per-worker N]
[--small-stretches-per-worker N] [--memory]
[--no-ceiling] [--warm] [--compare-pairs 8]``

Dask places the tasks itself. Until 0.2.0 ``run_graph`` kept each worker on a stretch of
consecutive views; ``--locality-ab 2,4`` of commit 7061327 timed the whole alignment with
and without that on 2 and 4 workers (6 alternating rounds each, fresh clusters; load
average 13-53 on the shared 2-core VM): median off / on 0.988 and 0.994 on 2 workers,
1.028 and 1.244 on 4 (rounds from 0.43 to 1.86), no gain of 5 % on both, so it went.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter

import numpy as np

LARGE = 1024  # view side, pixels
LARGE_PIXEL_NM = 15.0
TARGET_RATIO = 1.75  # issue #25's acceptance: 1 -> 2 workers on `small` and at 1024²
QUIET_CORES = 0.1  # other processes' CPU (cores) under which a timed run counts as quiet


def _phantom(seed: int):
    from sxtdist.simulation.phantom import make_cell

    # a 12 µm cell in an 18 µm capillary: the 15.4 µm views see the cell, not the wall
    return make_cell(np.random.default_rng(seed), 12000.0, 18000.0, 16000.0, 30.0)


def _views(
    phantom, angles_deg, shifts, seed: int, pixel_nm: float = LARGE_PIXEL_NM, size: int = LARGE
) -> np.ndarray:
    from sxtdist.geometry import ScanGeometry
    from sxtdist.simulation.forward import ForwardModel, project_scan

    g = ScanGeometry(np.asarray(angles_deg, float), pixel_nm, (size, size), shifts_px=shifts)
    model = ForwardModel(psf_fwhm_nm=30.0, photons_per_pixel=2500.0, supersampling=1)
    return project_scan(phantom, g, model, np.random.default_rng(seed))


def _align(acq, client, scans: list[str], method: str, **options):
    import sxtdist

    return sxtdist.align(
        acq, scans=scans, method=method, client=client, report="", dry_run=True,
        progress=False, intensity="none", **options,
    )  # fmt: skip


def coarse_pass_cost(acq, repeat: int) -> None:
    """What the coarse pass adds to the interior registrations: the pairs' task seconds
    (summed) of the alignment with and without it (``coarse=False``: every pair searched
    around zero within the pairs' margin), on 1 worker, ``repeat`` alternating rounds on
    one cluster, medians. With no binning (``small``) the coarse pass is the anchors' own
    registrations over the whole search range, so only this difference is its cost."""
    import sxtdist.alignment

    if not hasattr(sxtdist.alignment, "AlignOptions"):
        return  # the sxtdist of commit 50637ce: no coarse pass
    seconds: dict[bool, list[float]] = {True: [], False: []}
    with _fresh_client(1) as client:
        client.run(_warm_imports)
        _align(acq, client, ["roi"], "anchor")  # warm
        for _ in range(repeat):
            for coarse in (True, False):
                info = _align(acq, client, ["roi"], "anchor", coarse=coarse).info["roi"]
                seconds[coarse].append(info["coarse_task_seconds"] + info["fine_task_seconds"])
    on, off = np.median(seconds[True]), np.median(seconds[False])
    print(
        f"    the interior registrations' task seconds on 1 worker, with the coarse pass "
        f"{on:.3f} s, without {off:.3f} s (medians of {repeat}): the coarse pass adds "
        f"{on - off:.3f} s, {(on - off) / off:.0%} of the registrations without it"
    )


def time_workers(
    acq, repeat: int, scans: list[str], method: str, warm: bool = False
) -> tuple[dict, dict, object, dict, list]:
    """Alignment times on 1 and on 2 local workers, ``repeat`` rounds, and the task times.

    Each round times 1 worker, then 2, each on a fresh cluster started before the clock
    runs, so that a slow spell of the shared machine falls on both sides of a round's
    ratio rather than on one side of the best times. That first run on a fresh cluster
    is what ``sxtdist align`` does. With ``warm``, the same alignment is timed once more
    on each cluster right after it: what a cluster that already aligned a cell (a
    batch) gives. Returns the first runs' times, the task times, the last result, the
    second runs' times (empty without ``warm``) and, for every timed run on 2 workers,
    :func:`end_wait` from Dask's task stream (recorded on the scheduler, read after the
    clock stops) with the CPU seconds of this process per run on 1 and on 2 workers.
    """

    times: dict[int, list[float]] = {1: [], 2: []}
    again: dict[int, list[float]] = {1: [], 2: []}
    pair_s: dict[int, list[float]] = {1: [], 2: []}
    waits: list[tuple[float, int, float, str]] = []
    cpu: dict[int, list[float]] = {1: [], 2: []}
    ledgers: dict[int, list[dict]] = {1: [], 2: []}
    res = None
    for _ in range(repeat):
        for workers in (1, 2):
            with _fresh_client(workers) as client:
                client.run(_warm_imports)  # off the clock
                client.get_task_stream(start=time.time())  # starts the scheduler's record
                for run in range(2 if warm else 1):
                    since = time.time()
                    before = CpuLedger.start(client)
                    t0, c0 = time.perf_counter(), time.process_time()
                    out = _align(acq, client, scans, method)
                    (times if run == 0 else again)[workers].append(time.perf_counter() - t0)
                    cpu[workers].append(time.process_time() - c0)
                    if run == 0:
                        ledgers[workers].append(before.stop(client))
                        res = out
                        pair_s[workers] += [(r.pair.kind, r.seconds) for r in res.pairs]
                    if workers == 2:
                        waits.append(end_wait(client.get_task_stream(start=since)))
    return times, pair_s, res, again, (waits, cpu, ledgers)


def _warm_imports() -> None:
    """On a worker: import what its alignment tasks use, before the clock runs. The
    worker-side module since speed15 (``import sxtdist.alignment`` alone imports no
    submodule there); the package itself at commit 50637ce (no ``tasks`` module)."""
    try:
        import sxtdist.alignment.tasks
    except ImportError:
        import sxtdist.alignment  # noqa: F401


def _fresh_client(workers: int):
    """A local cluster of ``workers`` made for this run and closed after it. Also works with
    the sxtdist of commit 50637ce (no ``Execution``; its ``get_client`` kept no cluster), for
    old-against-new comparisons: ``PYTHONPATH=<old tree>:. python benchmarks/bench_align.py``."""
    from sxtdist.distributed import get_client

    try:
        from sxtdist.execution import Execution  # noqa: F401
    except ImportError:
        return get_client(workers=workers)
    return get_client(workers=workers, keep_cluster=False)


def end_wait(records: list[dict]) -> tuple[float, int, float, str]:
    """From Dask's task stream of one run: how long the first worker to run out of tasks
    waited for the last (seconds between their last tasks' ends), how many inputs moved
    between workers, how busy the workers were over the tasks' span (their compute
    seconds over workers x span: 1 when none ever waited for a task), and which task
    ended last (its key's last part: a stretch's number, ``"0"`` the first in angle)."""
    ends: dict[str, float] = {}
    busy, start, stop = 0.0, np.inf, -np.inf
    moved, last = 0, ""
    for r in records:
        for part in r["startstops"]:
            if part["action"] == "compute":
                ends[r["worker"]] = max(ends.get(r["worker"], 0.0), part["stop"])
                busy += part["stop"] - part["start"]
                if part["stop"] > stop:
                    last = str(r.get("key", "")).rsplit("-", 1)[-1]
                start, stop = min(start, part["start"]), max(stop, part["stop"])
            elif part["action"] == "transfer":
                moved += 1
    if not ends:
        return 0.0, moved, 0.0, last
    wait = max(ends.values()) - min(ends.values())
    return wait, moved, busy / (len(ends) * (stop - start)), last


def _print_end_wait(waits: list, cpu: dict, ledgers: dict | None = None) -> None:
    """:func:`end_wait` over the runs on 2 workers (first and second runs together), the
    CPU seconds of this process (the client and the local cluster's scheduler) per
    run: what the workers' two cores share with them, and the timed runs' CPU ledgers
    (:class:`CpuLedger`, :func:`_print_ledgers`)."""
    if ledgers:
        _print_ledgers(ledgers)
    if not waits:
        return
    wait = np.array([w[0] for w in waits])
    moved = [w[1] for w in waits]
    busy = [w[2] for w in waits]
    # which stretch the other waited for: the same one every run is an imbalance of work,
    # not of the machine's load
    last = Counter(w[3] for w in waits)
    print(
        f"    on 2 workers, one waited for the other at the end: median {np.median(wait):.3f} s "
        f"(mean {wait.mean():.3f}, largest {wait.max():.3f}) over {len(wait)} runs; inputs "
        f"moved between them: median {np.median(moved):g} ({min(moved)}-{max(moved)}); workers "
        f"busy over the tasks' span: median {np.median(busy):.0%} ({min(busy):.0%}-"
        f"{max(busy):.0%}); the task that ended last: "
        + ", ".join(f"stretch {k} in {n}" for k, n in sorted(last.items()))
        + f" of {len(wait)} runs"
    )
    print(
        "    CPU of the client and scheduler (this process) per run: "
        + ", ".join(
            f"{w} worker{'s' if w > 1 else ''} median {np.median(c):.3f} s"
            for w, c in cpu.items()
            if c
        )
    )


def _machine_busy_seconds() -> float | None:
    """CPU seconds all the machine's cores spent busy since boot (``/proc/stat``: user,
    nice, system, irq, softirq, steal), or ``None`` where there is no ``/proc/stat``."""
    import os

    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = sum(int(fields[k]) for k in (0, 1, 2, 5, 6, 7))
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process (the client and a local cluster's scheduler) and of
    every process it started (the local cluster's nannies and workers; those that ended
    and were waited for too: a command run apart, as ``bench_align_whole.py`` runs
    ``sxtdist align``, with the processes it waited for)."""
    import resource

    import psutil

    me = psutil.Process()
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + ended.ru_utime + ended.ru_stime
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # gone meanwhile
            continue
        total += t.user + t.system
    return total


async def _heartbeat(dask_worker) -> None:
    """Send the worker's metrics to the scheduler now (they go with its heartbeat)."""
    await dask_worker.heartbeat()


def _task_metrics(client) -> dict[str, float]:
    """The cluster's cumulative fine performance metrics (distributed 2023.4+; empty
    where it has none), in seconds: the tasks' CPU (``thread-cpu``: their thread on a
    CPU), their wall time off a CPU (``thread-noncpu``: waiting for a core, for I/O, for
    the GIL) and the transfers between workers (``gather-dep`` and ``get-data``).
    ``client`` ``None`` (no cluster of this process's): empty."""
    if client is None:
        return {}
    try:
        client.run(_heartbeat)
        raw = client.run_on_scheduler(
            lambda dask_scheduler: dict(dask_scheduler.cumulative_worker_metrics)
        )
    except Exception:  # an older distributed: no such metrics
        return {}
    out = {"thread-cpu": 0.0, "thread-noncpu": 0.0, "transfers": 0.0}
    for key, value in raw.items():
        if not isinstance(key, tuple) or key[-1] != "seconds":
            continue
        if key[0] == "execute" and key[2] in ("thread-cpu", "thread-noncpu"):
            out[key[2]] += value
        elif key[0] in ("gather-dep", "get-data"):
            out["transfers"] += value
    return out


class CpuLedger:
    """Where the CPU went during one timed run: the machine's busy seconds, those of this
    process and its local cluster's, and the tasks' own metrics (:func:`_task_metrics`).

    The rest of the machine's busy seconds are other processes' (``others``): on this
    2-core machine, shared by several sessions, a run that had less than both cores sees
    its 1 -> 2 worker ratio fall towards what it was given, whatever the code. Linux
    shares the cores between sessions (autogroups) before it reads ``nice``, so a study
    at ``nice -n 19`` in another session takes its share all the same.

    ``client`` ``None``: no task metrics, only the wall, this process's CPU with that of
    the processes it started (ended ones included) and the others'.
    """

    def __init__(self, client) -> None:
        self.wall = time.perf_counter()
        self.busy = _machine_busy_seconds()
        self.own = _own_cpu_seconds()
        self.metrics = _task_metrics(client)

    @classmethod
    def start(cls, client) -> CpuLedger:
        return cls(client)

    def stop(self, client) -> dict:
        """The run's figures, from :meth:`start` to now (the tasks' metrics read after the
        clock, when the workers have sent them)."""
        wall = time.perf_counter() - self.wall
        busy = _machine_busy_seconds()
        own = _own_cpu_seconds() - self.own
        after = _task_metrics(client)
        out = {"wall": wall, "own": own}
        if busy is not None and self.busy is not None:
            out["others"] = max(busy - self.busy - own, 0.0)
        if after and self.metrics:
            out.update({k: after[k] - self.metrics.get(k, 0.0) for k in after})
        return out


def _print_ledgers(ledgers: dict) -> None:
    """The timed runs' CPU ledgers (:class:`CpuLedger`), medians per worker count."""

    def med(w: int, key: str) -> float:
        return float(np.median([g[key] for g in ledgers[w]]))

    if not ledgers[1] or not ledgers[2]:
        return
    have = set(ledgers[1][0]) & set(ledgers[2][0])
    parts = []
    if "others" in have:
        parts.append(
            "other processes' CPU during the timed runs (cores, median): "
            + ", ".join(f"{w} worker{'s' if w > 1 else ''} {med(w, 'others') / med(w, 'wall'):.2f}"
                        for w in (1, 2))
            + " (a quiet machine: under 0.1)"
        )  # fmt: skip
    parts.append(
        "this run's own CPU (client, scheduler, workers; seconds per run, median): "
        + ", ".join(f"{w} worker{'s' if w > 1 else ''} {med(w, 'own'):.2f}" for w in (1, 2))
    )
    if "thread-cpu" in have:
        one, two = med(1, "thread-cpu"), med(2, "thread-cpu")
        on_cpu = {
            w: med(w, "thread-cpu") / max(med(w, "thread-cpu") + med(w, "thread-noncpu"), 1e-9)
            for w in (1, 2)
        }
        parts.append(
            f"the tasks' CPU seconds per run: 1 worker {one:.2f}, 2 workers {two:.2f} "
            f"({two / max(one, 1e-9):.2f}x: above 1, work the second worker adds or the two "
            f"cores slowing each other); share of the tasks' time on a CPU: 1 worker "
            f"{on_cpu[1]:.0%}, 2 workers {on_cpu[2]:.0%} (below ~95 %: the tasks waited for "
            f"a core or for I/O); transfers between workers {med(2, 'transfers'):.2f} s per "
            f"run on 2 workers"
        )
        outside = {w: np.median([g["own"] - g["thread-cpu"] for g in ledgers[w]]) for w in (1, 2)}
        parts.append(
            f"CPU outside the tasks' threads per run (reads' decoding threads, event loops, "
            f"client, scheduler: on 1 worker mostly on the other core, on 2 workers it shares "
            f"theirs): 1 worker {outside[1]:.2f} s, 2 workers {outside[2]:.2f} s"
        )
    for line in parts:
        print(f"    {line}")


def others_cores(ledgers: list[dict]) -> list[float]:
    """Other processes' CPU during each run of ``ledgers`` (:class:`CpuLedger`), in cores
    (none where the machine's busy seconds are unknown)."""
    return [g["others"] / g["wall"] for g in ledgers if "others" in g and g["wall"] > 0]


def verdict(what: str, ratios, bound: float, at_least: bool, cores: list[float]) -> str:
    """One plain line: the median of the rounds' ``ratios`` against ``bound`` (met where it
    is ``>= bound`` with ``at_least``, else ``<= bound``), the rounds' spread, and how
    quiet the machine was: other processes' CPU over the timed runs (``cores``, from
    :func:`others_cores`), quiet where every run had under ``QUIET_CORES``."""
    ratios = np.asarray(ratios, float)
    median = float(np.median(ratios))
    met = median >= bound if at_least else median <= bound
    if cores:
        quiet = (
            "quiet"
            if max(cores) < QUIET_CORES
            else f"NOT quiet (quiet: under {QUIET_CORES} in every run), the verdict does not count"
        )
        load = (
            f"other processes {min(cores):.2f}-{max(cores):.2f} cores over the "
            f"{len(cores)} timed runs (median {np.median(cores):.2f}): {quiet}"
        )
    else:
        load = "other processes' CPU unknown (no /proc/stat): quietness unknown"
    return (
        f"verdict, {what}: median {median:.2f}x over {len(ratios)} round"
        f"{'s' if len(ratios) > 1 else ''} ({ratios.min():.2f}-{ratios.max():.2f}) against "
        f"{'>=' if at_least else '<='} {bound:g}x: {'met' if met else 'NOT met'}; {load}"
    )


def _print_verdict(what: str, times: dict, ledgers: dict) -> None:
    """:func:`verdict` of the 1 -> 2 worker ratios of :func:`time_workers`' rounds."""
    rounds = np.asarray(times[1]) / np.asarray(times[2])
    cores = others_cores(ledgers[1] + ledgers[2])
    print(f"    {verdict(what + ', 1 -> 2 workers', rounds, TARGET_RATIO, True, cores)}")


def _print_warm(again: dict) -> None:
    """The second runs' times and ratios (:func:`time_workers` with ``warm``)."""
    if not again[1]:
        return
    one, two = np.asarray(again[1]), np.asarray(again[2])
    rounds = one / two
    print(
        f"    the same once more on each cluster (--warm): 1 worker "
        f"{', '.join(f'{t:.2f}' for t in one)} s, 2 workers {', '.join(f'{t:.2f}' for t in two)}"
        f" s; ratio per round {', '.join(f'{r:.2f}' for r in rounds)}x, median "
        f"{np.median(rounds):.2f}x"
    )


def peak_worker_memory(acq, scans: list[str], method: str) -> None:
    """Print the largest worker process's peak resident memory in one untimed alignment on
    1 and on 2 workers (sampled every 50 ms by ``bench_reconstruct.PeakRSS``, apart from
    the timed runs, whose times the sampling would disturb on a small machine)."""
    from bench_reconstruct import PeakRSS

    from sxtdist.distributed import get_client

    peaks = {}
    for workers in (1, 2):
        with get_client(workers=workers, keep_cluster=False) as client:
            client.run(_warm_imports)
            with PeakRSS() as idle:
                time.sleep(0.2)
            with PeakRSS() as busy:
                _align(acq, client, scans, method)
            peaks[workers] = (idle.peak, busy.peak)
    print(
        "    peak memory of a worker process (one untimed run each): "
        + ", ".join(
            f"{w} worker{'s' if w > 1 else ''} {busy / 2**20:.0f} MiB (idle {idle / 2**20:.0f})"
            for w, (idle, busy) in peaks.items()
        )
    )


def task_graph(acq, method: str) -> tuple[dict, list]:
    """The interior alignment's task graph as :func:`sxtdist.align` builds it for ``acq``
    (views prepared apart at this size, or one task per pair), the full scan's stored
    shifts honoured: ``(graph, keys of the pair results)``."""
    try:
        import sxtdist.alignment.runner as runner
        import sxtdist.alignment.tasks as tasks
    except ImportError:  # the sxtdist of commit 50637ce
        return _task_graph_50637ce(acq, method)

    pairs = runner.plan(acq, ["roi"], method)["pairs"]  # neighbours only, unless anchored
    full = acq["full"].geometry if method == "anchor" else None
    settings = runner.pair_settings(acq, full)
    graph = tasks.pair_graph(pairs, settings, "ceiling", coarse=method == "anchor")
    return graph.graph, graph.keys


def _task_graph_50637ce(acq, method: str) -> tuple[dict, list]:
    """:func:`task_graph` of the sxtdist of commit 50637ce (a task per view and per pair,
    or per pair below ``PREPARED_VIEW_PIXELS``), for old-against-new ceilings."""
    import sxtdist.alignment_runner as runner

    roi = acq["roi"].geometry
    pairs = runner.plan(acq, ["roi"], method)["pairs"]
    full = acq["full"].geometry if method == "anchor" else None
    settings = runner.pair_settings(acq, full, runner.search_margin(roi.detector_shape))
    if runner.prepares_views_apart(roi.detector_shape):
        graph, keys, _ = runner.pair_graph(pairs, settings, "ceiling", roi.angles_deg)
        return graph, keys
    graph = {f"pair-{n}": (runner.register_pair, p, settings) for n, p in enumerate(pairs)}
    return graph, list(graph)


def _run_graph_alone(graph, keys, barrier, times) -> None:
    """A plain process: wait for the others, run the whole graph by Dask's synchronous
    scheduler, put the seconds it took."""
    import dask.local

    _tasks_module()  # imported before the clock, as on the workers

    barrier.wait()
    t0, c0, busy = time.perf_counter(), time.process_time(), _machine_busy_seconds()
    dask.local.get_sync(graph, keys)
    busy = None if busy is None else _machine_busy_seconds() - busy
    times.put((time.perf_counter() - t0, time.process_time() - c0, busy))


def machine_ceiling(acq, method: str, repeat: int) -> np.ndarray:
    """What 2 processes can do on this machine against 1, with no Dask cluster at all.

    The alignment's own task graph, run whole by Dask's synchronous scheduler in plain
    processes (spawned with the environment Dask's nanny gives its workers): alone, then
    two at once. Two processes doing twice the work in ``t2`` against one in ``t1`` is
    a throughput ratio of ``2 t1 / t2``: where two cores share the memory bandwidth (or
    one physical core) this is below 2, and no scheduling of the tasks on 2 workers can
    beat it. Returns the ratio of each of ``repeat`` rounds.
    """
    import multiprocessing as mp
    import os

    import dask.config
    import distributed  # noqa: F401  (its defaults, the nanny's environment, load on import)

    graph, keys = task_graph(acq, method)
    ctx = mp.get_context("spawn")
    from sxtdist.distributed import local_housekeeping

    with dask.config.set(local_housekeeping()):  # what sxtdist's local clusters give theirs
        spawn = dask.config.get("distributed.nanny.pre-spawn-environ")
    env = {k: str(v) for k, v in spawn.items()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the spawned children inherit it, as a nanny's workers do
    try:
        ratios, alone, together = [], [], []
        cpu: dict[int, list[float]] = {1: [], 2: []}  # per process
        others: dict[int, list[float]] = {1: [], 2: []}  # cores
        for _ in range(repeat):
            for n in (1, 2):
                barrier, times = ctx.Barrier(n), ctx.Queue()
                procs = [
                    ctx.Process(target=_run_graph_alone, args=(graph, keys, barrier, times))
                    for _ in range(n)
                ]
                for proc in procs:
                    proc.start()
                seconds = [times.get() for _ in procs]
                for proc in procs:
                    proc.join()
                (alone if n == 1 else together).append(max(s for s, _, _ in seconds))
                cpu[n] += [c for _, c, _ in seconds]
                wall, _, busy = seconds[0]
                if busy is not None:  # the rest of the machine meanwhile, in cores
                    others[n].append(max(busy - sum(c for _, c, _ in seconds), 0.0) / wall)
            ratios.append(2 * alone[-1] / together[-1])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print(
        f"    this machine's ceiling (the same graph in plain processes, Dask's synchronous "
        f"scheduler, no cluster): 1 process {', '.join(f'{t:.2f}' for t in alone)} s, "
        f"2 at once {', '.join(f'{t:.2f}' for t in together)} s -> 2 processes do "
        f"{', '.join(f'{r:.2f}' for r in ratios)}x the work of one, median "
        f"{np.median(ratios):.2f}x"
    )
    quiet = (
        f"; other processes meanwhile: median {np.median(others[1]):.2f} cores (1 process), "
        f"{np.median(others[2]):.2f} (2 at once; a quiet machine: under 0.1)"
        if others[1] and others[2]
        else ""
    )
    print(
        f"      CPU seconds of the graph per process: alone median {np.median(cpu[1]):.2f}, two "
        f"at once {np.median(cpu[2]):.2f} ({np.median(cpu[2]) / np.median(cpu[1]):.2f}x: "
        f"above 1, the two cores slow each other: memory bandwidth, a shared core){quiet}"
    )
    return np.asarray(ratios)


def _tasks_module():
    """The module of the alignment's tasks (``sxtdist.alignment_runner`` at commit 50637ce)."""
    try:
        import sxtdist.alignment.tasks as tasks
    except ImportError:
        import sxtdist.alignment_runner as tasks
    return tasks


def _prepared(acq) -> bool:
    return _tasks_module().prepares_views_apart(acq["roi"].geometry.detector_shape)


def _print_ceiling(acq, method: str, repeat: int, ratio: float) -> None:
    ceiling = float(np.median(machine_ceiling(acq, method, repeat)))
    print(f"    Dask's median ratio is {ratio / ceiling:.0%} of this machine's ceiling")


def part_small(workdir: str, repeat: int, ceiling: bool = True, warm: bool = False) -> None:
    import sxtdist

    path = f"{workdir}/small.zarr"
    sxtdist.simulate(path, preset="small", seed=1, shifts_px=3.0)
    t0 = time.perf_counter()
    # both scans, as a user does; stored, so the timed runs anchor to the aligned full scan
    whole = sxtdist.align(path, report="", workers=1)
    whole_s = time.perf_counter() - t0
    acq = sxtdist.open_acquisition(path)
    times, pair_s, res, again, waits = time_workers(acq, repeat, ["roi"], "anchor", warm)
    print(f"[1] small preset: {acq['roi'].shape[0]} interior views, {len(res.pairs)} pairs")
    ratio = _print_times(times, pair_s, len(res.pairs), _prepared(acq))
    _print_warm(again)
    _print_end_wait(*waits)
    if ceiling:
        _print_ceiling(acq, "anchor", repeat, ratio)
    print(
        f"    the whole alignment of both scans on 1 worker (cluster start included, as "
        f"`sxtdist align`): {whole_s:.2f} s; of it the full scan (row profiles and weighted "
        f"centroids, one task) {whole.info['full']['seconds']:.2f} s"
    )
    _print_stages(whole.info["roi"])
    coarse_pass_cost(acq, repeat)
    _print_verdict("[1] small", times, waits[2])


def _print_stages(info: dict) -> None:
    """What the coarse pass and the check cost beside the fine registrations they guard
    (task seconds summed over the tasks; the check runs in the client)."""
    coarse, fine = info.get("coarse_task_seconds"), info.get("fine_task_seconds")
    if coarse is None or fine is None:
        return
    check = info.get("check_seconds")
    binned = info.get("coarse_bin") or 1
    what = (
        f"binned {binned}x, registrations of their own"
        if binned > 1
        else "unbinned: the anchors' own registrations over the whole range"
    )
    print(
        f"    registrations, task seconds summed: coarse pass ({what}) {coarse:.2f} s, the "
        f"other registrations {fine:.2f} s ({coarse / max(fine, 1e-9):.2f}x)"
        + (
            f"; the check (per-view standard errors of the joint solve) {check:.3f} s"
            if check is not None
            else ""
        )
    )


def part_large(
    workdir: str,
    repeat: int,
    n_views: int,
    n_full: int,
    size: int = LARGE,
    per_pair: bool = False,
    memory: bool = False,
    ceiling: bool = True,
    warm: bool = False,
) -> None:
    import sxtdist
    from sxtdist.dataset import ScanData, create_acquisition

    if per_pair:  # registered as small views are, whatever their size
        _tasks_module().PREPARED_VIEW_PIXELS = sys.maxsize
    rng = np.random.default_rng(5)
    angles = np.arange(n_views) * 2.0
    shifts = rng.normal(0.0, 3.0, (n_views, 2))
    phantom = _phantom(3)
    pixel_nm = LARGE_PIXEL_NM * LARGE / size  # the same field of view at any size
    t0 = time.perf_counter()
    data = _views(phantom, angles, shifts, seed=6, pixel_nm=pixel_nm, size=size)
    scans = {"roi": ScanData(data, angles, pixel_nm)}
    if n_full:  # anchors: full views of twice the pixel over the same arc, aligned
        full_angles = np.linspace(0.0, angles[-1], n_full)
        full = _views(
            phantom, full_angles, np.zeros((n_full, 2)), seed=7, pixel_nm=2 * pixel_nm, size=size
        )
        scans["full"] = ScanData(full, full_angles, 2 * pixel_nm)
    sim_s = time.perf_counter() - t0
    path = f"{workdir}/large.zarr"
    create_acquisition(path, scans)
    acq = sxtdist.open_acquisition(path)
    if n_full:
        acq.set_shifts("full", np.zeros((n_full, 2)), method="truth")
    method = "anchor" if n_full else "neighbour"
    times, pair_s, res, again, waits = time_workers(acq, repeat, ["roi"], method, warm)
    try:
        from sxtdist.alignment.gauge import remove_gauge
    except ImportError:  # commit 50637ce
        from sxtdist.alignment import remove_gauge

    # the rigid translation and the axis (a constant dx) are unknown without anchors
    err = remove_gauge(res.shifts["roi"] - shifts, angles)
    err -= err.mean(axis=0)
    n_anchor = sum(r.pair.kind == "anchor" for r in res.pairs)
    print(
        f"[2] {n_views} interior views of {size}x{size} px and {n_full} full views "
        f"({sim_s:.0f} s to simulate): {len(res.pairs) - n_anchor} neighbour and {n_anchor} "
        f"anchor pairs"
    )
    ratio = _print_times(times, pair_s, len(res.pairs), _prepared(acq))
    _print_warm(again)
    _print_end_wait(*waits)
    if ceiling:
        _print_ceiling(acq, method, repeat, ratio)
    _print_stages(res.info["roi"])
    print(
        f"    shift error vs truth (translation and axis removed; the 2° rotation between views "
        f"biases neighbour pairs): "
        f"{np.sqrt((err**2).sum(axis=1).mean()):.3f} px RMS"
    )
    if memory:
        peak_worker_memory(acq, ["roi"], "anchor" if n_full else "neighbour")
    _print_verdict(f"[2] {size}x{size}, {n_views} views and {n_full} full", times, waits[2])


def part_compare(n_pairs: int, shared_flat: bool) -> None:
    from skimage.registration import phase_cross_correlation

    from sxtdist.alignment.ncc import register
    from sxtdist.alignment.resample import gaussian_blur, pad_with_mask

    rng = np.random.default_rng(11)
    truth = rng.normal(0.0, 3.0, (n_pairs, 2))
    phantom = _phantom(4)
    margin = (32, 32)
    errs: dict[str, list] = {
        "sxtdist": [],
        "skimage phase": [],
        "skimage plain CC": [],
        "skimage phase, images blurred 1 px": [],
    }
    secs: dict[str, list] = {k: [] for k in errs}
    for k in range(n_pairs):
        angle = 7.0 * k
        if shared_flat:  # one scan: both views divided by the same noisy flat
            views = _views(phantom, [angle, angle], np.array([[0.0, 0.0], truth[k]]), 20 + k)
        else:  # two scans: independent flats
            views = np.concatenate(
                [
                    _views(phantom, [angle], np.zeros((1, 2)), 20 + k),
                    _views(phantom, [angle], truth[k][None], 120 + k),
                ]
            )
        t0 = time.perf_counter()
        ref, mask = pad_with_mask(gaussian_blur(views[1], 1.0), margin)
        _, s, _, _ = register(gaussian_blur(views[0], 1.0), ref, None, mask)
        secs["sxtdist"].append(time.perf_counter() - t0)
        errs["sxtdist"].append(s - truth[k])  # s: view 1 = view 0 moved by s
        blurred = [gaussian_blur(v, 1.0) for v in views]
        for label, norm, pair in (
            ("skimage phase", "phase", views),
            ("skimage plain CC", None, views),
            ("skimage phase, images blurred 1 px", "phase", blurred),
        ):
            t0 = time.perf_counter()
            est, _, _ = phase_cross_correlation(
                pair[1], pair[0], upsample_factor=100, normalization=norm
            )
            secs[label].append(time.perf_counter() - t0)
            errs[label].append(np.asarray(est) - truth[k])
    flats = "one flat-field correction shared" if shared_flat else "independent flat fields"
    print(
        f"[3] {n_pairs} pairs of {LARGE}x{LARGE} views, same angle, known shifts (sigma 3 px), "
        f"{flats}"
    )
    print("    | method | RMS error [px] | max error [px] | time per pair [s] |")
    print("    |---|---|---|---|")
    for label in errs:
        e = np.sqrt((np.asarray(errs[label]) ** 2).sum(axis=1))
        print(
            f"    | {label} | {np.sqrt((e**2).mean()):.3f} | {e.max():.3f} | "
            f"{np.median(secs[label]):.3f} |"
        )


def _print_times(times: dict, pair_s: dict, n_pairs: int, prepared: bool) -> float:
    """Print the times, ratios and task times; return the median ratio of the rounds."""
    one, two = np.asarray(times[1]), np.asarray(times[2])
    print(f"    1 worker : {', '.join(f'{t:.2f}' for t in one)} s (best {one.min():.2f})")
    print(f"    2 workers: {', '.join(f'{t:.2f}' for t in two)} s (best {two.min():.2f})")
    rounds = one / two
    print(
        f"    ratio 1 worker / 2 workers (target >= {TARGET_RATIO:g}): per round "
        f"{', '.join(f'{r:.2f}' for r in rounds)}x, median {np.median(rounds):.2f}x; "
        f"of the best times {one.min() / two.min():.2f}x"
    )
    print(
        f"    time per pair, all work included (alignment time / {n_pairs} pairs): 1 worker "
        f"median {np.median(one) / n_pairs * 1e3:.1f} ms, 2 workers "
        f"{np.median(two) / n_pairs * 1e3:.1f} ms"
    )
    if prepared:
        print(
            "    (views prepared once each, apart from the pairs' registrations: the pair "
            "times below only register)"
        )
    for w in (1, 2):
        kinds = sorted({k for k, _ in pair_s[w]})
        for kind in [None, *kinds] if len(kinds) > 1 else [None]:
            sec = [t for k, t in pair_s[w] if kind in (None, k)]
            what = "per-pair" if kind is None else f"  {kind}"
            print(
                f"    {what} task time with {w} worker{'s' if w > 1 else ''}: median "
                f"{np.median(sec) * 1e3:.1f} ms, mean {np.mean(sec) * 1e3:.1f} ms "
                f"over {len(sec)} tasks"
            )
    return float(np.median(rounds))


def imported_tree() -> str:
    """Which sxtdist this run imported: its package directory and that tree's git commit
    (``+ changes`` where the package differs from it), so that runs of two trees (an old
    commit's through ``PYTHONPATH``) cannot be confused."""
    import os

    import sxtdist

    where = os.path.dirname(os.path.abspath(sxtdist.__file__))
    commit = tree_commit(where)
    if not commit:
        return f"sxtdist {sxtdist.__version__} from {where} (not a git tree)"
    return f"sxtdist {sxtdist.__version__} from {where}, commit {commit}"


def tree_commit(where: str) -> str:
    """The git commit of the tree holding the directory ``where`` (short hash and commit
    date; ``+ uncommitted changes`` where ``where`` differs from it); empty where it is
    in no git tree."""
    import subprocess

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", "-C", where, *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("log", "-1", "--format=%h %cd", "--date=iso-strict")
    if not commit:
        return ""
    changed = " + uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
    return f"{commit}{changed}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of 1 then 2 workers")
    ap.add_argument("--large-views", type=int, default=48, help="0: skip part 2")
    ap.add_argument("--large-full", type=int, default=7, help="part 2's full views (anchors)")
    ap.add_argument("--large-size", type=int, default=LARGE, help="part 2's view side, px")
    ap.add_argument(
        "--one-task-per-pair",
        action="store_true",
        help="part 2: register the views as small ones are (no view or anchor tasks)",
    )
    ap.add_argument(
        "--memory",
        action="store_true",
        help="part 2: also the peak memory of a worker process, in one more (untimed) run "
        "on 1 and on 2 workers",
    )
    ap.add_argument(
        "--no-ceiling",
        action="store_true",
        help="parts 1 and 2: skip this machine's ceiling (the task graph in 1 and in 2 plain "
        "processes)",
    )
    ap.add_argument(
        "--warm",
        action="store_true",
        help="parts 1 and 2: also time a second alignment on each cluster (a batch's cells "
        "after the first)",
    )
    ap.add_argument(
        "--stretches-per-worker",
        type=int,
        default=0,
        help="part 2: stretches per worker of views prepared apart (0: sxtdist's own)",
    )
    ap.add_argument(
        "--small-stretches-per-worker",
        type=int,
        default=0,
        help="part 1: stretches per worker of small views (0: sxtdist's own)",
    )
    ap.add_argument("--compare-pairs", type=int, default=8, help="0: skip part 3")
    ap.add_argument("--skip-small", action="store_true", help="skip part 1")
    args = ap.parse_args()

    print(imported_tree(), flush=True)
    if args.stretches_per_worker:  # the graph is planned here, in the client
        _tasks_module().PREPARED_STRETCHES_PER_WORKER = args.stretches_per_worker
    if args.small_stretches_per_worker:
        _tasks_module().STRETCHES_PER_WORKER = args.small_stretches_per_worker
    workdir = tempfile.mkdtemp(prefix="sxtdist-bench-align-")
    try:
        if not args.skip_small:
            part_small(workdir, args.repeat, not args.no_ceiling, args.warm)
        if args.large_views:
            part_large(
                workdir,
                args.repeat,
                args.large_views,
                args.large_full,
                args.large_size,
                args.one_task_per_pair,
                args.memory,
                not args.no_ceiling,
                args.warm,
            )
        if args.compare_pairs:
            part_compare(args.compare_pairs, shared_flat=True)
            part_compare(args.compare_pairs, shared_flat=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
