"""The ``sxtdist`` command: thin, over the Python API.

Each subcommand lives in its own module, registered in :data:`COMMANDS` and imported
only when it runs or its help is asked (:class:`LazyGroup`).
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

#: ``name -> (module, short help)`` of the subcommands; each module defines a click command
#: ``command``. The short help (the command's own, tests/test_cli_startup.py keeps them
#: equal) lets ``sxtdist --help`` list the commands without importing their modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "simulate",
        "Simulate an interior + sparse full-view acquisition of a frozen cell into OUT (Zarr).",
    ),
    "info": ("info", "Describe the acquisition dataset or reconstructed volume at PATH."),
    "align": (
        "align",
        "Align the scans of the acquisition ACQ and store the shifts in its metadata.",
    ),
    "reconstruct": (
        "reconstruct",
        "Reconstruct ACQUISITION (both scans together by default) into the volume OUT.",
    ),
    "demo": (
        "demo",
        "Run the whole pipeline on a simulated cell and print where the outputs are.",
    ),
    "import": (
        "import_",
        "Add the projections in SOURCE to ACQUISITION (created if absent) as one scan.",
    ),
    "edit": (
        "edit",
        "Set the pixel size, energy, zone plate, dose, centre or axis tilt of an imported scan.",
    ),
    "preview": (
        "preview",
        "Reconstruct a few slices of ACQUISITION by filtered back-projection, as a PNG.",
    ),
    "export": (
        "export",
        "Write VOLUME (a level, optionally cropped) to OUT as MRC, TIFF or OME-Zarr 0.4.",
    ),
    "batch": (
        "batch",
        "Align and reconstruct every cell listed in MANIFEST (YAML or CSV), several at once.",
    ),
    "plan": (
        "plan",
        "Recommend N_full, N_ROI and the photons per view for an interior + sparse scan.",
    ),
    "report": (
        "report",
        "Write VOLUME.report.png, .csv and .curves.csv: a look at a reconstruction.",
    ),
    "rechunk": (
        "rechunk",
        "Copy ACQUISITION to OUT with one projection per shard in bands of rows.",
    ),
    "view": (
        "view",
        "Serve PATH (an acquisition or a volume) over HTTP and print a neuroglancer link.",
    ),
    "verify": (
        "verify",
        "Check that every chunk of the acquisition or volume at PATH is there and readable.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is run or its own
    help is asked: the modules import Dask, Zarr, SciPy ... (seconds on a busy machine),
    which ``sxtdist --help`` does not need (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted (as click lists a group's commands)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, its module imported and the verbosity options added
        on first use (once: the options are added to the module's command in place)."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name][0]}")
            self.add_command(verbosity_options(module.command), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their short help from :data:`COMMANDS`, shortened to the
        width as click shortens a loaded command's, without importing their modules."""
        listed = click.Group(
            commands={
                name: self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
                for name in self.list_commands(ctx)
            }
        )
        listed.format_commands(ctx, formatter)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="sxtdist")
@verbosity_options
def cli() -> None:
    """Interior soft X-ray tomography with sparse global sampling.

    Typical use: simulate or import an acquisition, align it, reconstruct it,
    look at the report. Run ``sxtdist COMMAND --help`` for each step.
    """


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
    # A cluster is kept only by sxtdist.distributed (which imports Dask): not imported
    # yet, none is kept, and a light command (--help, info) need not import it.
    kept = sys.modules.get("sxtdist.distributed")
    before = kept.kept_cluster_keys() if kept is not None else set()
    try:
        yield
    finally:
        kept = sys.modules.get("sxtdist.distributed")
        if kept is not None:
            kept.close_kept_clusters(since=before)


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
