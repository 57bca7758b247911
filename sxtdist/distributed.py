"""Where the work runs: a Dask client on a local cluster, a running scheduler, or one passed in.

The Dask layer is thin: callers submit plain functions (one block, one projection
pair) and collect results with :func:`run_tasks`, which draws a progress bar over
them and keeps the client from ever holding more than the results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ._progress import log, progress_bar
from .errors import ParameterError


def default_workers() -> int:
    """Worker processes for a local cluster: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def get_client(
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: str | int | None = "auto",
    quiet: bool = False,
) -> Iterator[Any]:
    """Yield a ``distributed.Client``.

    Parameters
    ----------
    client
        A ``Client`` (used as is) or a cluster object (``LocalCluster``,
        ``SLURMCluster`` ...) to connect to; neither is closed afterwards.
    scheduler
        Address of a running scheduler (``tcp://host:8786``).
    workers
        Worker processes of the local cluster made when neither is given
        (default: the available cores), one thread each: ASTRA and scipy's sparse
        products do their own work per call and one task per core keeps memory
        predictable.
    memory_limit
        Per-worker memory limit of the local cluster (Dask's syntax).
    """
    from distributed import Client, LocalCluster

    if client is not None and scheduler is not None:
        raise ParameterError("give either a client/cluster or a scheduler address, not both")
    if client is not None:
        if isinstance(client, Client):
            yield client
            return
        with Client(client) as c:
            yield c
        return
    if scheduler is not None:
        with Client(scheduler) as c:
            log(f"connected to scheduler {scheduler} (dashboard {c.dashboard_link})", quiet)
            yield c
        return
    n = workers or default_workers()
    if n < 1:
        raise ParameterError(f"number of workers must be at least 1, got {n}")
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
            silence_logs=40,
        ) as cluster,
        Client(cluster) as c,
    ):
        log(f"local Dask cluster: {n} worker(s), dashboard {c.dashboard_link}", quiet)
        yield c


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
    ``{"GPU": 1}``) restricts each task to workers offering them.
    """
    from distributed import as_completed

    items = list(items)
    if not items:
        return []
    big = {k: client.scatter(v, broadcast=True) for k, v in kwargs.items() if _is_big(v)}
    small = {k: v for k, v in kwargs.items() if k not in big}
    futures = []
    for i, item in enumerate(items):
        key = None if key_prefix is None else f"{key_prefix}-{i}"
        futures.append(
            client.submit(fn, item, **small, **big, key=key, pure=False, resources=resources)
        )
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    with progress_bar(len(items), desc, progress, unit="task") as advance:
        for fut in as_completed(futures):
            i = index[fut.key]
            results[i] = fut.result()
            if on_result is not None:
                on_result(items[i], results[i])
            fut.release()
            advance()
    return results


def _is_big(v: Any) -> bool:
    nbytes = getattr(v, "nbytes", None)
    return isinstance(nbytes, int) and nbytes > 1_000_000
