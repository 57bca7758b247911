"""Where the work runs: a Dask client on a local cluster, a batch-queue cluster, a running scheduler, or one passed in.

The Dask layer is thin: callers submit plain functions (one block, one projection
pair) and collect results with :func:`run_tasks`, which draws a progress bar over
them and keeps the client from ever holding more than the results.

Which cluster is made is chosen, in this order, by the ``cluster=`` / ``scheduler=``
arguments (the CLI's ``--cluster NAME`` / ``--scheduler ADDRESS``) or by Dask's
configuration system under the ``sxtdist.cluster`` key (a YAML file in
``~/.config/dask/``, a file named by ``DASK_CONFIG``, or environment variables such as
``DASK_SXTDIST__CLUSTER__KIND=slurm``)::

    sxtdist:
      cluster:
        kind: local            # local | local-cuda | slurm | pbs | lsf
        scheduler: null        # address of a running scheduler (wins over kind)
        workers: null          # local kinds: worker processes (default: the available cores)
        memory-limit: auto     # local kinds: memory limit per worker
        minimum-jobs: 1        # batch queues: adaptive scaling between these job counts
        maximum-jobs: 4
        wait-for-workers: 300  # seconds to wait for the first worker before giving up
        connect-timeout: 30s   # to reach a running scheduler
        host: 127.0.0.1        # local kinds: the interface the scheduler and dashboard listen on
        retries: 2             # times a failed block or pair task is run again
        jobqueue-defaults:     # used only where jobqueue.<kind> leaves them unset
          cores: 1
          memory: 4GiB
          processes: 1

The batch-queue kinds are dask-jobqueue's ``SLURMCluster``, ``PBSCluster`` and
``LSFCluster``; they read everything else (queue, account, walltime, worker command,
job directives ...) from the ``jobqueue.<kind>`` section users of dask-jobqueue
already have. See ``docs/cluster.md`` and the examples in ``deploy/``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dask.config

from ._progress import progress_bar, progress_enabled
from .errors import ParameterError, SxtdistError, option
from .execution import Execution, normalize_kind

logger = logging.getLogger(__name__)
#: dask-jobqueue class and submit command of each batch-queue kind.
JOBQUEUE_KINDS = {
    "slurm": ("SLURMCluster", "sbatch"),
    "pbs": ("PBSCluster", "qsub"),
    "lsf": ("LSFCluster", "bsub"),
}

#: sxtdist's defaults in Dask's configuration (overridden by any user file or variable).
DEFAULT_CONFIG: dict[str, Any] = {
    "sxtdist": {
        "cluster": {
            "kind": "local",
            "scheduler": None,
            "workers": None,
            "memory-limit": "auto",
            "minimum-jobs": 1,
            "maximum-jobs": 4,
            "wait-for-workers": 300,
            "connect-timeout": "30s",
            "host": "127.0.0.1",
            "retries": 2,
            "jobqueue-defaults": {"cores": 1, "memory": "4GiB", "processes": 1},
        }
    }
}
dask.config.update_defaults(DEFAULT_CONFIG)


def cluster_config(key: str, default: Any = None) -> Any:
    """``sxtdist.cluster.<key>`` from Dask's configuration (refreshed from disk and environment)."""
    return dask.config.get(f"sxtdist.cluster.{key}", default=default)


def default_workers() -> int:
    """Worker processes for a local cluster: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Dask's housekeeping on the local clusters sxtdist makes: distributed's default (key:
#: ``(default, ours)``) and the value used while it is still the default.
#:
#: * An idle 2-worker LocalCluster spent a quarter of one core on its housekeeping on a
#:   2-core machine (event-loop ticks every 20 ms, the workers' statistical profiler every
#:   10 ms, the system monitor every 0.5 s), time the workers' tasks then lacked. What is
#:   lost: the dashboard's profile page, and its CPU and memory plots are updated every 2 s.
#: * The workers' allocator: Dask's nanny starts them with ``MALLOC_TRIM_THRESHOLD_=65536``
#:   (memory goes back to the system promptly), which also turns off glibc's adaptive mmap
#:   threshold: every array over 128 KiB is then mapped fresh and page-faulted in, and one
#:   freed is unmapped at once. A task making many such temporaries pays that on each: a
#:   1024² pair registration took 136 ms instead of 103 ms (docs/alignment.md). Arrays up to
#:   64 MiB come from the heap and up to 256 MiB of freed heap is kept for reuse instead
#:   (bounded: a worker's idle memory grows by at most that much).
LOCAL_HOUSEKEEPING = {
    "distributed.worker.profile.enabled": (True, False),
    "distributed.admin.tick.interval": ("20ms", "500ms"),
    "distributed.admin.system-monitor.interval": ("500ms", "2s"),
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": (65536, 256 << 20),
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": (None, 64 << 20),
}


def local_housekeeping() -> dict[str, Any]:
    """The lighter :data:`LOCAL_HOUSEKEEPING` values of the keys nobody has changed."""
    return {
        key: ours
        for key, (default, ours) in LOCAL_HOUSEKEEPING.items()
        if dask.config.get(key, default=None) == default
    }


def local_cluster_options() -> dict[str, Any]:
    """Options of every local cluster sxtdist makes.

    The scheduler and the dashboard listen on one interface (``sxtdist.cluster.host``,
    this machine only by default), so the printed link is true. The cluster's own
    logs are silenced up to errors: a task's error (a damaged input) reaches the
    client as the same exception and is told there in one line, not also as a
    worker's traceback.
    """
    host = str(cluster_config("host", "127.0.0.1"))
    return {"host": host, "dashboard_address": f"{host}:0", "silence_logs": logging.CRITICAL}


def make_cluster(
    kind: str | None = None,
    *,
    workers: int | None = None,
    memory_limit: str | int | None = None,
    **overrides: Any,
) -> Any:
    """Make (but do not scale or start jobs on) a Dask cluster of the given kind.

    Parameters
    ----------
    kind
        ``"local"`` (``LocalCluster``), ``"local-cuda"`` (dask-cuda's
        ``LocalCUDACluster``, one worker per GPU), or ``"slurm"`` / ``"pbs"`` / ``"lsf"``
        (dask-jobqueue). Default: ``sxtdist.cluster.kind`` from Dask's config.
    workers
        Local kinds: number of worker processes (default: config
        ``sxtdist.cluster.workers``, else the available cores; for ``local-cuda`` the
        visible GPUs). Ignored by batch queues, which are scaled afterwards.
    memory_limit
        Local kinds: memory limit per worker (Dask's syntax, e.g. ``"4GiB"``).
    **overrides
        Passed to the cluster class; for batch queues they win over the
        ``jobqueue.<kind>`` configuration (``cores=``, ``memory=``, ``queue=``,
        ``walltime=``, ``job_extra_directives=``, ``worker_command=`` ...).

    Returns
    -------
    The cluster object; close it (or use it as a context manager) when done.
    """
    kind = normalize_kind(kind if kind is not None else cluster_config("kind", "local"))
    if memory_limit is None:
        memory_limit = cluster_config("memory-limit", "auto")
    if workers is None:
        workers = cluster_config("workers")
    if workers is not None and int(workers) < 1:
        raise ParameterError(f"number of workers must be at least 1, got {workers}")
    rerun = main_rerun_problem() if kind in ("local", "local-cuda") else None
    if kind == "local":
        from distributed import LocalCluster

        opts = dict(
            n_workers=int(workers or default_workers()),
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            **local_cluster_options(),
        )
        if rerun:  # worker processes would fail to start: one worker of threads, said so
            logger.warning(
                "%s: running on %d threads in this process instead of worker processes "
                "(%s to have processes)",
                rerun,
                opts["n_workers"],
                GUARD_ADVICE,
            )
            opts.update(threads_per_worker=opts["n_workers"], n_workers=1, processes=False)
        opts.update(overrides)
        if not opts["processes"]:  # over TCP on the host, not inproc://: the link is true
            opts.setdefault("protocol", "tcp://")
            opts.setdefault("worker_dashboard_address", opts["dashboard_address"])
        # the scheduler and the nannies take their configuration when they are made
        with dask.config.set(local_housekeeping()), workers_deaf_to_ctrl_c():
            return LocalCluster(**opts)
    if kind == "local-cuda":
        if rerun:  # one process per GPU is how dask-cuda works: no threads to fall back to
            raise SxtdistError(f"{rerun}; {GUARD_ADVICE}")
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise ParameterError(
                "cluster 'local-cuda' needs dask-cuda (pip install 'sxtdist[gpu]'): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        # One thread per GPU worker (one ASTRA call at a
        # time per device) and the resource GPU=1 that GPU block tasks ask for.
        opts = dict(
            threads_per_worker=1,
            resources={"GPU": 1},
            memory_limit=memory_limit,
            **local_cluster_options(),
        )
        if workers:
            opts["n_workers"] = int(workers)
        opts.update(overrides)
        # a LocalCluster underneath: its scheduler, nannies and workers take the same
        # lighter housekeeping from the configuration in force when it is made
        with dask.config.set(local_housekeeping()), workers_deaf_to_ctrl_c():
            return LocalCUDACluster(**opts)
    return _make_jobqueue_cluster(kind, overrides)


@contextmanager
def workers_deaf_to_ctrl_c() -> Iterator[None]:
    """Ignore SIGINT while a local cluster spawns its worker processes, so they inherit it.

    Ctrl-C in a terminal signals the whole foreground process group: the worker processes
    too, each of which then printed a ``KeyboardInterrupt`` traceback from its event loop
    (about a hundred lines) beside sxtdist's one ``sxtdist: interrupted``. A process
    started with SIGINT ignored keeps it ignored (Python installs no handler of its own),
    while this process gets its handler back at once and stops the run; the workers end
    when the cluster closes. A Ctrl-C in the seconds the workers start is lost, and a
    worker a nanny restarts later hears it again. Only the main thread may set handlers:
    elsewhere (a notebook's thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:  # None: a handler not set from Python, which Python cannot put back
        signal.signal(signal.SIGINT, signal.SIG_DFL if before is None else before)


#: What to do about a script that worker processes would run again.
GUARD_ADVICE = "put the script's calls under 'if __name__ == \"__main__\":' (docs/python.md)"


def main_rerun_problem() -> str | None:
    """Why Dask's local worker processes would fail to start now, or None.

    Worker processes are spawned: each imports the main script again, so a script
    that calls sxtdist at its top level, outside ``if __name__ == "__main__":``,
    would start the whole run again in every worker (distributed reports only
    "Nanny failed to start"); a script read from standard input cannot be read
    again at all. Notebooks, ``python -c``, ``python -m package`` (multiprocessing
    leaves a package's ``__main__`` alone) and interactive sessions are fine.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return None
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None and (name == "__main__" or name.endswith(".__main__")):
        return None  # python -m package: multiprocessing does not run its __main__ again
    if not os.path.isfile(path):
        return f"the script {path} cannot be read again by Dask's worker processes"
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"
    ):
        frame = frame.f_back
    if frame is None:  # not called while the script's top level runs (a thread, an import)
        return None
    if _under_main_guard(path, frame.f_lineno):
        return None
    return (
        f"{os.path.basename(path)} calls sxtdist outside 'if __name__ == \"__main__\":', so "
        "every Dask worker process would run the script again"
    )


def _under_main_guard(path: str, line: int) -> bool:
    """Whether ``line`` of the script lies in an ``if __name__ == "__main__":`` block."""
    import ast

    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):  # cannot tell: let distributed try
        return True
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            if node.body[0].lineno <= line <= (node.body[-1].end_lineno or line):
                return True
    return False


def _is_main_test(test: Any) -> bool:
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    sides = [test.left, test.comparators[0]]
    return (
        isinstance(test.ops[0], ast.Eq)
        and any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
        and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides)
    )


def jobqueue_options(kind: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for the dask-jobqueue class of ``kind``.

    dask-jobqueue itself reads ``jobqueue.<kind>``; sxtdist only fills in
    ``cores``/``memory``/``processes`` where that section leaves them unset (from
    ``sxtdist.cluster.jobqueue-defaults``), so a bare ``--cluster slurm`` works, and
    passes explicit ``overrides`` through.
    """
    overrides = dict(overrides or {})
    defaults = cluster_config("jobqueue-defaults", {}) or {}
    opts: dict[str, Any] = {}
    for key in ("cores", "memory", "processes"):
        if overrides.get(key) is None and dask.config.get(f"jobqueue.{kind}.{key}", None) is None:
            if defaults.get(key) is not None:
                opts[key] = defaults[key]
    if overrides.get("python") is None and dask.config.get(f"jobqueue.{kind}.python", None) is None:
        # The workers run the same Python (and so the same sxtdist) as this process.
        opts["python"] = sys.executable
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return opts


def _make_jobqueue_cluster(kind: str, overrides: dict[str, Any]) -> Any:
    cls_name, _ = JOBQUEUE_KINDS[kind]
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ParameterError(
            f"cluster {kind!r} needs dask-jobqueue (pip install 'sxtdist[cluster]'): {exc}"
        ) from None
    cls = getattr(dask_jobqueue, cls_name)
    try:
        return cls(**jobqueue_options(kind, overrides))
    except (ValueError, TypeError) as exc:
        # dask-jobqueue's own complaints (no cores/memory, unknown option) are user-fixable.
        raise ParameterError(f"cluster {kind!r}: {exc}") from None


def scale_cluster(
    cluster: Any,
    kind: str,
    minimum_jobs: int | None = None,
    maximum_jobs: int | None = None,
) -> tuple[int, int]:
    """Start the jobs of a batch-queue cluster: adaptive between ``minimum_jobs`` and ``maximum_jobs``.

    Equal bounds mean a fixed number of jobs, kept up: a job that ends (its
    walltime, a lost node) is replaced. Defaults come from
    ``sxtdist.cluster.minimum-jobs`` / ``maximum-jobs``. Returns the bounds used.
    """
    lo = int(minimum_jobs if minimum_jobs is not None else cluster_config("minimum-jobs", 1))
    hi = int(maximum_jobs if maximum_jobs is not None else cluster_config("maximum-jobs", lo))
    if minimum_jobs is not None and maximum_jobs is None:
        hi = max(hi, lo)
    if lo < 0 or hi < 1 or lo > hi:
        raise ParameterError(f"jobs: need 0 <= minimum ({lo}) <= maximum ({hi}) and maximum >= 1")
    if kind in JOBQUEUE_KINDS:
        # Adaptive even for a fixed count: only the adaptive loop resubmits a job that
        # ended (walltime, node failure) instead of leaving the run without workers.
        cluster.adapt(minimum_jobs=lo, maximum_jobs=hi)
    return lo, hi


def current_client() -> Any:
    """distributed's current default client (one a notebook made with ``Client()``), or ``None``."""
    from distributed import default_client

    try:
        return default_client()
    except ValueError:  # none
        return None


@contextmanager
def get_client(execution: Execution | None = None, **options: Any) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``execution`` (or the fields given as ``options``).

    In this order: the execution's ``client`` (a client used as is, or a cluster
    object to connect to; neither closed afterwards); its ``scheduler``; its
    ``cluster`` kind; distributed's current default client, when none of those nor
    ``workers`` is given; Dask's configuration (``sxtdist.cluster.scheduler``, then
    ``sxtdist.cluster.kind``); a local cluster. A local cluster is kept for the next
    call in this process when ``execution.keep_cluster`` (the default; see
    :func:`close_kept_clusters`), else closed on leaving. See
    :class:`sxtdist.execution.Execution` for the fields.
    """
    from distributed import Client

    ex = Execution.of(execution, **options)
    if ex.client is not None:
        if isinstance(ex.client, Client):
            yield ex.client
            return
        with Client(ex.client, set_as_default=False) as c:
            yield c
        return
    if ex.scheduler is None and ex.cluster is None and ex.workers is None:
        current = current_client()
        if current is not None:
            logger.debug("using the current Dask client %s", current)
            yield current
            return
    scheduler = ex.scheduler
    if scheduler is None and ex.cluster is None:
        scheduler = cluster_config("scheduler")
    if scheduler is not None:
        with _scheduler_client(scheduler) as c:
            yield c
        return
    kind = normalize_kind(ex.cluster if ex.cluster is not None else cluster_config("kind", "local"))
    if kind in JOBQUEUE_KINDS:
        with _jobqueue_client(kind, ex) as c:
            yield c
        return
    if ex.keep_cluster:
        yield _kept_client(kind, ex)
        return
    with _local_cluster(kind, ex) as cl, Client(cl, set_as_default=False) as c:
        _log_local(kind, c)
        yield c


@contextmanager
def _scheduler_client(address: str) -> Iterator[Any]:
    from distributed import Client

    try:
        c = Client(address, timeout=cluster_config("connect-timeout", "30s"), set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SxtdistError(f"cannot connect to scheduler {address}: {exc}") from None
    with c:
        logger.info("connected to scheduler %s (dashboard %s)", address, c.dashboard_link)
        check_workers_import(c)
        yield c


@contextmanager
def _jobqueue_client(kind: str, ex: Execution) -> Iterator[Any]:
    from distributed import Client

    submit = JOBQUEUE_KINDS[kind][1]
    if shutil.which(submit) is None:
        raise SxtdistError(
            f"cluster {kind!r}: {submit} is not on PATH (run on a login node of the "
            f"{kind.upper()} cluster, or choose another {option('--cluster', 'cluster=')})"
        )
    cl = make_cluster(kind, **dict(ex.cluster_options or {}))
    try:
        lo, hi = scale_cluster(cl, kind, ex.minimum_jobs, ex.maximum_jobs)
        per_job = getattr(cl._dummy_job, "worker_processes", "?")
        logger.info(
            "%s cluster: %d..%d job(s) of %s worker(s) each, dashboard %s",
            kind.upper(),
            lo,
            hi,
            per_job,
            cl.dashboard_link,
        )
        with Client(cl, set_as_default=False) as c:
            _wait_for_first_worker(c, kind)
            check_workers_import(c)
            yield c
    finally:
        _close_cluster(cl)


def _local_cluster(kind: str, ex: Execution) -> Any:
    limit = ex.memory_limit if ex.memory_limit != "auto" else None
    return make_cluster(
        kind, workers=ex.workers, memory_limit=limit, **dict(ex.cluster_options or {})
    )


def _log_local(kind: str, client: Any) -> None:
    n = len(client.scheduler_info().get("workers", {}))
    logger.info("%s Dask cluster: %d worker(s), dashboard %s", kind, n, client.dashboard_link)


#: Local clusters kept for later calls (:func:`get_client`), by what they were made with.
_KEPT: dict[tuple, tuple[Any, Any]] = {}
_KEPT_LOCK = threading.Lock()


def _kept_client(kind: str, ex: Execution) -> Any:
    """The client of the kept local cluster made as ``ex`` asks, started on first use."""
    from distributed import Client

    workers = ex.workers if ex.workers is not None else cluster_config("workers")
    limit = ex.memory_limit if ex.memory_limit is not None else cluster_config("memory-limit")
    key = (
        kind,
        workers,
        limit,
        repr(sorted((ex.cluster_options or {}).items())),
        repr(sorted(local_housekeeping().items())),
    )
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is not None and kept[1].status == "running":
            return kept[1]
        if kept is not None:
            _close_kept(kept)
        cluster = _local_cluster(kind, ex.replace(workers=workers, memory_limit=limit))
        client = Client(cluster, set_as_default=False)
        if not _KEPT:
            atexit.register(close_kept_clusters)
        _KEPT[key] = (cluster, client)
    _log_local(kind, client)
    return client


def _close_kept(kept: tuple[Any, Any]) -> None:
    cluster, client = kept
    client.close()
    _close_cluster(cluster)


def close_kept_clusters(since: Iterable[tuple] | None = None) -> int:
    """Close the local clusters kept for later calls; returns how many were closed.

    ``since``: close only those kept after :func:`kept_cluster_keys` returned these
    keys (the CLI closes what its command started, not what a caller of ``main`` holds).
    Registered to run at exit; call it to free the workers' memory sooner.
    """
    old = set(since or ())
    with _KEPT_LOCK:
        keys = [k for k in _KEPT if k not in old]
        kept = [_KEPT.pop(k) for k in keys]
    for k in kept:
        _close_kept(k)
    return len(kept)


def kept_cluster_keys() -> set[tuple]:
    """What identifies the local clusters kept now (for :func:`close_kept_clusters`)."""
    with _KEPT_LOCK:
        return set(_KEPT)


def _close_cluster(cluster: Any) -> None:
    """Close a cluster we made, cancelling its jobs.

    distributed's ``SpecCluster.close`` asserts on jobs that were never submitted
    (a rejected ``sbatch``) after it has already stopped the scheduler and the
    other jobs; that must not hide the error that brought us here.
    """
    try:
        cluster.close()
    except AssertionError:
        pass


def check_workers_import(client: Any, module: str = "sxtdist") -> None:
    """Fail early, in one line, when the workers cannot import sxtdist.

    Workers started elsewhere (batch jobs, a running scheduler's workers) run
    whatever Python environment they were given; a task they cannot unpickle
    kills them one after another and the run would wait for workers forever.
    """
    import importlib

    if not client.scheduler_info().get("workers"):
        return
    try:
        client.run(importlib.import_module, module)
    except ImportError as exc:
        raise SxtdistError(
            f"the Dask workers cannot import {module} ({exc}); run them in the same Python "
            "environment (set jobqueue.<kind>.python, job-script-prologue, or PYTHONPATH "
            "to an absolute path)"
        ) from None


def _wait_for_first_worker(client: Any, kind: str) -> None:
    """Block until one worker of a batch-queue cluster is up (jobs may wait in the queue)."""
    timeout = float(cluster_config("wait-for-workers", 300))
    logger.info("waiting up to %.0f s for the first %s job to start", timeout, kind.upper())
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise SxtdistError(
            f"cluster {kind!r}: no worker started within {timeout:.0f} s; the jobs may be "
            "waiting in the queue or failing at start (check the queue and the job logs; "
            "set jobqueue.<kind>.log-directory to keep them, raise "
            "sxtdist.cluster.wait-for-workers to wait longer)"
        ) from None


def task_retries() -> int:
    """``sxtdist.cluster.retries``, checked: how many times a failed task is run again."""
    value = cluster_config("retries", 2)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"sxtdist.cluster.retries must be a whole number >= 0, got {value!r}")
    return value


def worker_memory_limit(client: Any) -> int | None:
    """The smallest worker memory limit (bytes) of the cluster, if any is set."""
    info = (
        client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    )
    limits = [w.get("memory_limit") or 0 for w in info.get("workers", {}).values()]
    limits = [m for m in limits if m > 0]
    return min(limits) if limits else None


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def run_tasks(
    client: Any,
    fn: Callable[..., Any],
    items: Iterable[Any],
    desc: str,
    progress: bool | None = None,
    on_result: Callable[[Any, Any], None] | None = None,
    key_prefix: str | None = None,
    resources: dict[str, float] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Run ``fn(item, **kwargs)`` for every item as one task each; return results in item order.

    ``on_result(item, result)`` is called in the client as each task finishes (in
    completion order), e.g. to record a finished block. Large keyword arguments are
    scattered once rather than sent with every task. ``resources`` (e.g.
    ``{"GPU": 1}``) restricts each task to workers offering them. A task that raises is
    run again (:func:`task_retries`; a block rewrites the same slices, a pair computes the
    same result) before its error is raised here.
    """
    items = list(items)
    if not items:
        return []
    big = {k: client.scatter(v, broadcast=True) for k, v in kwargs.items() if _is_big(v)}
    small = {k: v for k, v in kwargs.items() if k not in big}
    # one message for all tasks: the scheduler's and the client's work shares the cores
    # with the workers on a small machine
    keys = None if key_prefix is None else [f"{key_prefix}-{i}" for i in range(len(items))]
    futures = client.map(
        fn,
        items,
        **small,
        **big,
        key=keys,
        pure=False,
        resources=resources,
        retries=task_retries(),
    )
    return _collect(futures, client, desc, progress, on_result, items)


def run_graph(
    client: Any,
    graph: Mapping[str, Any],
    keys: Sequence[str],
    desc: str,
    progress: bool | None = None,
    units: tuple[Sequence[int], str] | None = None,
) -> list[Any]:
    """Compute ``keys`` of a task graph on the cluster; return their results in order.

    ``graph`` maps each key to a task ``(fn, *args)``, where an argument that is a key of
    the graph stands for that task's result, or to a plain value shared by the tasks
    that name it. For work whose tasks share inputs worth computing once (the
    alignment's prepared views). The keys must be unique to the run (include a token):
    the cluster may be shared. The progress bar counts ``keys``. Dask places the tasks
    (with the worker holding most of their inputs); a failed task is retried
    (:func:`task_retries`).

    ``units``: how many units of work each key's task does (in ``keys``' order) and
    their name (``"pair"``): the bar then counts units, which each task reports as it
    does them (:func:`unit_reporter`), rather than tasks (one task per worker gave a bar
    that stood at 0 until the end).
    """
    if not keys:
        return []
    if units is None:
        futures = client.get(_named_graph(graph), list(keys), sync=False, retries=task_retries())
        return _collect(futures, client, desc, progress)
    counts, name = units
    # listening before the tasks are submitted: the scheduler forwards a report only to
    # the clients subscribed when it comes
    with _units_done(client, keys, counts, desc, progress, name) as finished:
        futures = client.get(_named_graph(graph), list(keys), sync=False, retries=task_retries())
        return _collect(futures, client, desc, False, on_done=finished)


#: How often a task reports its units of work done at most (:func:`unit_reporter`), in
#: seconds: a few messages a second whatever the work.
UNIT_REPORT_EVERY_S = 0.25

#: The Dask event topic on which tasks report their units done, ``[key, done]``: one
#: topic for all (the scheduler keeps a bounded log per topic, and a topic per task would
#: pile up on a cluster that aligns cell after cell).
UNIT_TOPIC = "sxtdist-units"

#: ``key -> done(n)`` of every :func:`run_graph` with ``units`` in progress (any thread).
_UNIT_CALLBACKS: dict[str, Callable[[int], None]] = {}


def unit_reporter(every_s: float | None = None) -> Callable[[int], None]:
    """In a task of :func:`run_graph` with ``units``: ``report(done)``, to tell the client's
    progress bar how many of its units the task has done so far (a worker event, at most
    every ``every_s`` seconds, default :data:`UNIT_REPORT_EVERY_S`). Outside a Dask
    worker (a synchronous scheduler, a test) it does nothing."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a worker
        return lambda done: None
    key = str(worker.get_current_task())
    every = UNIT_REPORT_EVERY_S if every_s is None else every_s
    last = [-float("inf")]

    def report(done: int) -> None:
        import time

        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            worker.log_event(UNIT_TOPIC, [key, int(done)])

    return report


def _on_units(event: tuple[float, Any]) -> None:
    """The client's handler of :data:`UNIT_TOPIC` (its event loop calls it)."""
    key, done = event[1]
    with _ACTIVE_LOCK:
        callback = _UNIT_CALLBACKS.get(key)
    if callback is not None:
        callback(done)


@contextmanager
def _units_done(
    client: Any, keys: Sequence[str], counts: Sequence[int], desc: str, progress: Any, name: str
) -> Iterator[Callable[[str], None]]:
    """A progress bar of ``sum(counts)`` units, advanced as the tasks of ``keys`` report
    theirs (:func:`unit_reporter`); yields ``finished(key)``, which counts the rest of a
    finished task's units. No bar shown: nothing subscribed."""
    total = dict(zip(keys, counts, strict=True))
    seen = dict.fromkeys(keys, 0)
    lock = threading.Lock()
    with progress_bar(sum(counts), desc, progress, unit=name) as advance:

        def done(key: str, n: int) -> None:
            with lock:  # reports and finished tasks come from two threads
                more = min(int(n), total[key]) - seen[key]
                if more > 0:
                    seen[key] += more
                    advance(more)

        listen = progress_enabled(progress)
        if listen:
            with _ACTIVE_LOCK:
                _UNIT_CALLBACKS.update({k: lambda n, k=k: done(k, n) for k in keys})
            client.subscribe_topic(UNIT_TOPIC, _on_units)  # the same handler for every run
        try:
            yield lambda key: done(key, total[key])
        finally:
            if listen:
                with _ACTIVE_LOCK:
                    for k in keys:
                        _UNIT_CALLBACKS.pop(k, None)
                    last = not _UNIT_CALLBACKS
                if last:
                    client.unsubscribe_topic(UNIT_TOPIC)


def _named_graph(graph: Mapping[str, Any]) -> Any:
    """``graph`` as Dask's low-level graph expression, named by a random token rather than
    by hashing it: given a plain dict, ``Client.get`` tokenizes every task's arguments to
    name the expression (each dataclass argument pickled and read back), 13-19 ms of the
    client's CPU per alignment of ``small``, most of its submission, while the workers
    wait. The keys are unique to the run already (:func:`run_graph`). A Dask without
    ``LLGExpr``, or whose private ``LLGExpr`` takes other arguments, gets the dict."""
    try:
        from dask._expr import LLGExpr
    except ImportError:  # an older Dask: no expressions, no tokenizing either
        return dict(graph)
    try:
        return LLGExpr(dict(graph), _determ_token=uuid.uuid4().hex)
    except TypeError:  # a private class: a later Dask may change it; hashing is only slower
        return dict(graph)


def _collect(
    futures: list[Any],
    client: Any,
    desc: str,
    progress: bool | None,
    on_result: Callable[[Any, Any], None] | None = None,
    items: list[Any] | None = None,
    on_done: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Wait for ``futures`` with a progress bar; their results in order (see :func:`run_tasks`).

    ``on_result(items[i], result)`` is called as each finishes when given (``items``
    then required); else ``on_done(key)``, where given, as each finishes, the results
    gathered at the end."""
    from distributed import as_completed

    token = object()
    with _ACTIVE_LOCK:
        _ACTIVE[id(token)] = (client, futures)
    try:
        with progress_bar(len(futures), desc, progress, unit="task") as advance:
            if on_result is None:
                # results stay on the workers until all are done, then come in one gather:
                # fetching each as it finishes costs the client and scheduler a round trip
                # per task (0.5 s of CPU per 95 tasks on a 2-core machine, taken from the
                # workers)
                for fut in as_completed(futures, loop=client.loop):
                    if fut.status != "finished":  # failed or cancelled: raise it here
                        fut.result()
                    advance()
                    if on_done is not None:
                        on_done(fut.key)
                return client.gather(futures)
            index = {f.key: i for i, f in enumerate(futures)}
            results: list[Any] = [None] * len(futures)
            for fut, result in as_completed(
                futures, loop=client.loop, with_results=True
            ):  # raises if failed
                if fut.status != "finished":  # cancelled: yielded, not raised; raise it here
                    fut.result()
                i = index[fut.key]
                results[i] = result
                on_result(items[i], result)
                fut.release()
                advance()
            return results
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(id(token), None)


#: Futures of every :func:`run_tasks` or :func:`run_graph` call in progress (any thread), for
#: :func:`cancel_tasks`.
_ACTIVE: dict[int, tuple[Any, list[Any]]] = {}
_ACTIVE_LOCK = threading.Lock()


def cancel_tasks() -> int:
    """Cancel the unfinished tasks of every :func:`run_tasks` or :func:`run_graph` call in progress.

    Each such call then raises (``CancelledError``) in its own thread, so callers
    blocked on a batch of cells return promptly after an interruption. Tasks that
    already finished keep their effects. Returns the number of futures cancelled.
    """
    with _ACTIVE_LOCK:
        active = list(_ACTIVE.values())
    n = 0
    for client, futures in active:
        pending = [f for f in futures if not f.done()]
        if pending:
            try:
                client.cancel(pending, force=True)
                n += len(pending)
            except Exception:  # a client closing under us: its futures are gone anyway
                pass
    return n


def _is_big(v: Any) -> bool:
    nbytes = getattr(v, "nbytes", None)
    return isinstance(nbytes, int) and nbytes > 1_000_000
