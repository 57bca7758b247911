"""The ``sxtdist`` command: thin, over the Python API.

Each subcommand lives in its own module and is registered in :data:`COMMANDS`.
Every failure is printed as one line on standard error
(:mod:`sxtdist.cli._failures`): exit code 2 for bad input, 1 for an environment
failure or a bug; ``--debug`` shows the traceback instead. Status lines are logging
(``-v``/``-q``/``--log-file``/``--debug`` on the group and on every subcommand),
warnings are shown as one line each.
"""

from __future__ import annotations

import importlib
import signal
import sys
from contextlib import contextmanager

import click

from .._version import __version__
from ..errors import command_line_words
from ..logs import configure_logging, reset_logging, warnings_as_log_lines
from ._failures import DEBUG, describe
from ._options import verbosity_options

#: ``name -> module`` of the subcommands; each module defines a click command ``command``.
COMMANDS = {
    "simulate": "simulate",
    "info": "info",
    "align": "align",
    "reconstruct": "reconstruct",
    "demo": "demo",
    "import": "import_",
    "edit": "edit",
    "preview": "preview",
    "export": "export",
    "batch": "batch",
    "plan": "plan",
    "report": "report",
    "rechunk": "rechunk",
    "view": "view",
    "verify": "verify",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sxtdist")
@verbosity_options
def cli() -> None:
    """Interior soft X-ray tomography with sparse global sampling.

    Typical use: simulate or import an acquisition, align it, reconstruct it,
    look at the report. Run ``sxtdist COMMAND --help`` for each step.
    """


for _name, _module in COMMANDS.items():
    cli.add_command(
        verbosity_options(importlib.import_module(f"{__name__}.{_module}").command), _name
    )


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system's time limit, ``kill``) stops like Ctrl-C: cleanly, resumable."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    configure_logging()
    args = sys.argv[1:] if argv is None else argv
    try:
        with (
            _sigterm_as_interrupt(),
            warnings_as_log_lines(),
            command_line_words(args),
            _closing_new_clusters(),
        ):
            return _main(args)
    except KeyboardInterrupt:  # as the command's cluster closed: one line, not a traceback
        click.echo("sxtdist: interrupted", err=True)
        return 130
    finally:
        reset_logging()


@contextmanager
def _closing_new_clusters():
    """The local clusters the command started and kept (sxtdist.distributed) are closed
    when it ends; those a caller of :func:`main` holds are left alone."""
    from ..distributed import close_kept_clusters, kept_cluster_keys

    before = kept_cluster_keys()
    try:
        yield
    finally:
        close_kept_clusters(since=before)


def _command(args: list[str]) -> str | None:
    """The name of the ``sxtdist`` command that ``args`` run (its first word)."""
    return next((a for a in args if not a.startswith("-")), None)


def _main(argv: list[str]) -> int:
    DEBUG["on"] = False
    try:
        # Without standalone mode click returns a command's ``Exit`` code instead of exiting.
        code = cli.main(args=argv, prog_name="sxtdist", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("sxtdist: interrupted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Exception as exc:
        if DEBUG["on"]:
            raise
        code, line = describe(exc, _command(argv))
        click.echo(f"sxtdist: error: {line}", err=True)
        return code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
