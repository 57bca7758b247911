"""How and where work runs: one options object shared by align, reconstruct, batch and the CLI.

:class:`Execution` says *how* a run is carried out (which Dask cluster, how many
workers, how much memory, CPU or GPU, progress bars, whether an existing output is
replaced); what is computed is said elsewhere (:class:`sxtdist.runner.Recipe`, the
alignment's options). The CLI builds one from its shared options
(:func:`sxtdist.cli._options.execution_options`); in Python make one and pass it to
every call, or give the few common fields as keyword shortcuts::

    ex = sxtdist.Execution(workers=4, progress=True)
    sxtdist.align(acq, execution=ex)
    sxtdist.reconstruct(acq, "cell.zarr", execution=ex, iterations=30)
    sxtdist.reconstruct(acq, "cell.zarr", workers=4)        # the same, as a shortcut

Without a client, scheduler or cluster, calls in one process share one local
cluster (:func:`sxtdist.distributed.get_client`): the first call starts it, later
calls reuse it, and it is closed when the process exits; distributed's current
default client (a ``Client()`` made in a notebook) is used when there is one. This
module imports nothing heavy: building an ``Execution`` starts nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError, option

#: Cluster kinds :func:`sxtdist.distributed.make_cluster` knows.
CLUSTER_KINDS = ("local", "local-cuda", "slurm", "pbs", "lsf")
#: Where blocks are solved.
BACKENDS = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Execution:
    """How and where a run's work is carried out (validated on construction).

    Parameters
    ----------
    client
        A ``distributed.Client`` (used as is) or a cluster object to connect to;
        neither is closed afterwards.
    cluster
        Kind of cluster to make: ``"local"``, ``"local-cuda"``, ``"slurm"``, ``"pbs"``
        or ``"lsf"`` (docs/cluster.md); an address (``tcp://...``) means ``scheduler``.
        Default: Dask config ``sxtdist.cluster.scheduler``, else ``sxtdist.cluster.kind``.
    scheduler
        Address of a running Dask scheduler.
    workers
        Local clusters: worker processes (default: the available cores).
    minimum_jobs, maximum_jobs
        Batch queues: adaptive scaling between these job counts (equal: fixed).
    memory_limit
        Local clusters: memory limit per worker (Dask's syntax, ``"4GiB"``, or bytes;
        default ``sxtdist.cluster.memory-limit``, ``"auto"``).
    memory_budget
        Bytes per worker the reconstruction's block plan may use (default: 60 % of
        the workers' limit).
    backend
        ``"auto"`` (a usable GPU, else the CPU), ``"cpu"`` or ``"gpu"``.
    progress
        Progress bars (``None``: on a terminal or in a notebook).
    overwrite
        Replace an existing output instead of refusing (or resuming) it.
    keep_cluster
        A local cluster sxtdist starts is kept for later calls in this process and
        closed at exit (default); ``False``: started for this call, closed after it.
    cluster_options
        Extra keyword arguments for the cluster class (``queue=``, ``walltime=`` ...).
    """

    client: Any = None
    cluster: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    minimum_jobs: int | None = None
    maximum_jobs: int | None = None
    memory_limit: str | int | None = None
    memory_budget: int | None = None
    backend: str = "auto"
    progress: bool | None = None
    overwrite: bool = False
    keep_cluster: bool = True
    cluster_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.cluster is not None and "://" in str(self.cluster):
            if self.scheduler is not None:
                raise ParameterError("give either a cluster or a scheduler address, not both")
            object.__setattr__(self, "scheduler", str(self.cluster))
            object.__setattr__(self, "cluster", None)
        if self.client is not None and (self.scheduler is not None or self.cluster is not None):
            raise ParameterError(
                "give either a client/cluster object or a scheduler address, not both"
            )
        if self.scheduler is not None and self.cluster is not None:
            raise ParameterError(
                f"give either {option('--cluster', 'cluster=')} or "
                f"{option('--scheduler', 'scheduler=')}, not both"
            )
        if self.cluster is not None:
            object.__setattr__(self, "cluster", normalize_kind(self.cluster))
        _check_count("number of workers", self.workers, 1)
        _check_count("minimum jobs", self.minimum_jobs, 0)
        _check_count("maximum jobs", self.maximum_jobs, 1)
        lo, hi = self.minimum_jobs, self.maximum_jobs
        if lo is not None and hi is not None and lo > hi:
            raise ParameterError(f"jobs: need minimum ({lo}) <= maximum ({hi})")
        _check_count("memory budget (bytes)", self.memory_budget, 1)
        _check_memory_limit(self.memory_limit)
        if self.backend not in BACKENDS:
            raise ParameterError(
                f"unknown backend {self.backend!r} (choose from {', '.join(BACKENDS)})"
            )
        for name in ("overwrite", "keep_cluster"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ParameterError(f"progress must be True, False or None, got {self.progress!r}")

    @property
    def external(self) -> bool:
        """Whether the cluster, not this machine, says which backend can run: a client or
        a scheduler given, or a cluster kind other than ``"local"``."""
        return (
            self.client is not None
            or self.scheduler is not None
            or self.cluster
            not in (
                None,
                "local",
            )
        )

    def replace(self, **changes: Any) -> Execution:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, execution: Execution | None = None, **shortcuts: Any) -> Execution:
        """``execution`` (default: all defaults) with the shortcuts that are not ``None``.

        The public functions take ``execution=`` and a few fields as keywords
        (``workers=``, ``client=`` ...); this merges them. An unknown name is a
        ``TypeError``, as for any keyword argument.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(shortcuts) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
        if execution is not None and not isinstance(execution, Execution):
            raise ParameterError(f"execution must be an sxtdist.Execution, got {execution!r}")
        given = {k: v for k, v in shortcuts.items() if v is not None}
        base = execution if execution is not None else cls()
        return dataclasses.replace(base, **given) if given else base


def execution_fields() -> tuple[str, ...]:
    """The names of :class:`Execution`'s fields."""
    return tuple(f.name for f in dataclasses.fields(Execution))


def normalize_kind(kind: str) -> str:
    """Lower-case cluster kind, checked against :data:`CLUSTER_KINDS`."""
    k = str(kind).strip().lower()
    if k not in CLUSTER_KINDS:
        raise ParameterError(f"unknown cluster {kind!r} (choose from {', '.join(CLUSTER_KINDS)})")
    return k


def _check_count(what: str, value: Any, least: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"{what} must be a whole number, got {value!r}")
    if value < least:
        raise ParameterError(f"{what} must be at least {least}, got {value}")


#: The least memory limit per worker: a worker process holds 150-250 MiB before any
#: block (Python, NumPy, SciPy, ASTRA, Dask), and Dask pauses a worker at 80 % of its
#: limit and kills it at 95 %. At 10 MiB the workers paused from the start and a run
#: waited for ever without a word; at 150 MiB they were killed mid-block and the user
#: read "internal error (KilledWorker ...)" (redteam14, bugs.md R14-7).
MIN_MEMORY_LIMIT = 512 * 2**20


def _check_memory_limit(value: Any) -> None:
    if value is None or value == "auto":
        return
    size = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        from dask.utils import parse_bytes

        try:
            size = parse_bytes(value)
        except (ValueError, TypeError):
            pass
    if size is None or size <= 0:
        raise ParameterError(
            f"memory limit must be 'auto', bytes or a size like '4GiB', got {value!r}"
        )
    if size < MIN_MEMORY_LIMIT:
        raise ParameterError(
            f"{option('--memory-limit', 'memory_limit')} {value} per worker is less than a "
            f"worker needs: it holds 150-250 MiB before any work (Python, NumPy, ASTRA, Dask) "
            f"and Dask pauses it at 80 % of its limit; give at least 512MiB, or 'auto'"
        )


__all__ = ["BACKENDS", "CLUSTER_KINDS", "Execution", "execution_fields", "normalize_kind"]
