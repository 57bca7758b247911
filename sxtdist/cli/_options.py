"""Options shared by the subcommands, each defined once.

* :func:`execution_options`: how and where a command's work runs (cluster, workers,
  memory, backend, progress, overwrite), passed to the command as one
  :class:`~sxtdist.execution.Execution` argument ``execution``.
* :func:`verbosity_options`: ``-v``, ``-q`` and ``--log-file``, on the ``sxtdist``
  group and on every subcommand (``sxtdist -q reconstruct ...`` and
  ``sxtdist reconstruct ... -q`` are the same).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import click

from ..errors import ParameterError, SxtdistWarning
from ..execution import BACKENDS, CLUSTER_KINDS, Execution


def per_scan_float(text: str | None, name: str) -> float | dict[str, float] | None:
    """Parse ``"60"`` (both scans) or ``"full=120,roi=60"`` (per scan)."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return float(text)
        out: dict[str, float] = {}
        for part in text.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in ("full", "roi"):
                raise ParameterError(f"{name}: unknown scan {key!r} (use full=..., roi=...)")
            out[key] = float(value)
        return out
    except ValueError as exc:
        raise ParameterError(f"{name}: cannot read {text!r} as a number or full=X,roi=Y") from exc


def scan_list(text: str | None) -> list[str] | None:
    """Parse ``"full,roi"``."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if n not in ("full", "roi"):
            raise ParameterError(f"--scans: unknown scan {n!r} (choose from full, roi)")
    if not names:
        raise ParameterError("--scans: name at least one scan")
    return names


class _Iterations(click.ParamType):
    """A positive iteration count or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        # Here, not at the top: sxtdist.recon imports NumPy and the NGFF models, which the
        # group (it imports this module for -v/-q) and ``sxtdist --help`` do not need.
        from ..recon import parse_iterations

        try:
            return parse_iterations(value)
        except ParameterError as exc:
            self.fail(str(exc), param, ctx)


#: ``--iterations``: a positive count or ``auto``.
ITERATIONS = _Iterations()


#: The CLI's ``-v``/``-q`` count, summed over the group and the subcommand, in ``ctx.meta``.
_VERBOSITY = "sxtdist.verbosity"
_LOG_FILE = "sxtdist.log_file"


def verbosity(ctx: click.Context | None = None) -> int:
    """``-v`` (+1 each) and ``-q`` (-1 each) given so far on this command line."""
    ctx = ctx or click.get_current_context()
    return int(ctx.find_root().meta.get(_VERBOSITY, 0))


def _on_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    from ..logs import configure_logging

    meta = ctx.find_root().meta
    if param.name == "log_file":
        if value is not None:
            meta[_LOG_FILE] = value
    else:
        meta[_VERBOSITY] = meta.get(_VERBOSITY, 0) + (value if param.name == "verbose" else -value)
    configure_logging(meta.get(_VERBOSITY, 0), meta.get(_LOG_FILE))


def _on_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    from ._failures import DEBUG

    if value:
        DEBUG["on"] = True


def verbosity_options(cmd: Any) -> Any:
    """Add ``-v/--verbose``, ``-q/--quiet``, ``--log-file`` (they configure logging) and
    ``--debug`` (a failure's traceback instead of one line)."""
    options = [
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_on_verbosity,
            help="More detail (repeatable).",
        ),
        click.option(
            "-q",
            "--quiet",
            count=True,
            expose_value=False,
            callback=_on_verbosity,
            help="Only warnings and errors.",
        ),
        click.option(
            "--log-file",
            type=click.Path(dir_okay=False),
            expose_value=False,
            callback=_on_verbosity,
            help="Also append every message, with times, to this file.",
        ),
        click.option(
            "--debug",
            is_flag=True,
            expose_value=False,
            callback=_on_debug,
            help="Show the traceback of a failure instead of one line.",
        ),
    ]
    for opt in reversed(options):
        cmd = opt(cmd)
    return cmd


#: Fields of :class:`Execution` the options of :func:`execution_options` fill.
_EXECUTION_OPTIONS = (
    "cluster",
    "scheduler",
    "workers",
    "min_jobs",
    "max_jobs",
    "memory_limit",
    "backend",
    "progress",
    "overwrite",
)
OVERWRITE_HELP = "Replace an existing output instead of refusing."


def execution_options(
    *, backend: bool = False, overwrite: str | None = OVERWRITE_HELP
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of how a command runs; the command receives ``execution=``.

    Parameters
    ----------
    backend
        Add ``--backend auto|cpu|gpu``.
    overwrite
        Help of ``--overwrite``; ``None``: no such option.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in _EXECUTION_OPTIONS if k in kwargs}
            kwargs["execution"] = Execution(
                cluster=given.get("cluster"),
                scheduler=given.get("scheduler"),
                workers=given.get("workers"),
                minimum_jobs=given.get("min_jobs"),
                maximum_jobs=given.get("max_jobs"),
                memory_limit=given.get("memory_limit"),
                backend=given.get("backend", "auto"),
                progress=given.get("progress"),
                overwrite=bool(given.get("overwrite", False)),
            )
            return fn(*args, **kwargs)

        options = _cluster_options()
        if backend:
            options.append(_backend_option)
        if overwrite is not None:
            options.append(click.option("--overwrite", is_flag=True, help=overwrite))
        options.append(progress_option)
        for opt in reversed(options):
            command = opt(command)
        return command

    return decorate


def _cluster_options() -> list[Callable[[Any], Any]]:
    return [
        click.option(
            "--cluster",
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
        click.option(
            "--memory-limit",
            metavar="SIZE",
            default=None,
            help="Local clusters: memory limit per worker, e.g. 4GiB (default: shared fairly).",
        ),
    ]


_backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="Solve blocks on the CPU or a GPU; auto: a GPU when one is usable (says which it "
    "chose). The two agree in quality, not bit for bit: ASTRA's GPU back-projection is "
    "not the exact transpose (docs/gpu.md).",
)

progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars (default: on when standard error is a terminal).",
)
overwrite_option = click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)


def renamed_option(
    old: str, new: str, param: str, *, required: bool = False, **attrs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Keep ``old``, a former spelling of the option ``new``, working for users' scripts.

    ``old`` is hidden from ``--help``; using it warns (``sxtdist: warning: --pixel-nm
    is deprecated: use --pixel-size-nm``) and gives its value to ``new``; both at
    once is an error. Declare ``new`` without ``required`` and pass ``required=True``
    here instead, so that either spelling satisfies it.

    Parameters
    ----------
    old, new
        The two spellings (``"--pixel-nm"``, ``"--pixel-size-nm"``).
    param
        The command's parameter that ``new`` fills.
    required
        Whether one of the two must be given.
    **attrs
        ``click.option`` arguments for ``old`` (its ``type``), as for ``new``.
    """
    dest = f"renamed_{param}"

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            value = kwargs.pop(dest)
            if value is not None:
                if ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE:
                    raise ParameterError(f"give {new} once (it was also given as {old})")
                warnings.warn(f"{old} is deprecated: use {new}", SxtdistWarning, stacklevel=2)
                kwargs[param] = value
            if required and kwargs.get(param) is None:
                option = next(p for p in ctx.command.params if p.name == param)
                raise click.MissingParameter(ctx=ctx, param=option)
            return fn(*args, **kwargs)

        return click.option(old, dest, hidden=True, default=None, **attrs)(command)

    return decorate


def echo_json(value: Any) -> None:
    """Print ``value`` as JSON for scripts: NaN, inf and "" (not measured) as null."""
    click.echo(json.dumps(_json_safe(value), indent=2, default=str))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if (isinstance(value, float) and not math.isfinite(value)) or value == "":
        return None
    return value
