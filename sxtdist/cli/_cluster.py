"""The ``--cluster`` / ``--scheduler`` options shared by commands that run on Dask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..distributed import CLUSTER_KINDS


def cluster_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--cluster``, ``--scheduler``, ``--workers``, ``--min-jobs``, ``--max-jobs``."""
    options = [
        click.option(
            "--cluster",
            "cluster",
            metavar="NAME",
            default=None,
            help=(
                f"Where to run: {', '.join(CLUSTER_KINDS)} (default: Dask config "
                "sxtdist.cluster.kind, else local). Batch queues read jobqueue.<name> from "
                "Dask's config; see docs/cluster.md."
            ),
        ),
        click.option(
            "--scheduler",
            metavar="ADDRESS",
            default=None,
            help="Address of a running Dask scheduler (tcp://host:8786) instead of a new cluster.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Local clusters: worker processes (default: the available cores).",
        ),
        click.option(
            "--min-jobs",
            type=click.IntRange(min=0),
            default=None,
            help="Batch queues: fewest jobs kept (adaptive scaling; default from config, 1).",
        ),
        click.option(
            "--max-jobs",
            type=click.IntRange(min=1),
            default=None,
            help="Batch queues: most jobs submitted (default from config, 4).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def client_kwargs(
    cluster: str | None,
    scheduler: str | None,
    workers: int | None,
    min_jobs: int | None,
    max_jobs: int | None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`sxtdist.distributed.get_client` from the options."""
    return dict(
        cluster=cluster,
        scheduler=scheduler,
        workers=workers,
        minimum_jobs=min_jobs,
        maximum_jobs=max_jobs,
    )
