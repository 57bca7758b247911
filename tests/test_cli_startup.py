"""``sxtdist --help`` and ``sxtdist COMMAND --help`` start fast: the group imports a
command's module (Dask, Zarr, SciPy, the dataset ...) only when that command runs or its
own help is asked (:class:`sxtdist.cli.LazyGroup`). Each check runs in a fresh
interpreter: pytest's process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sxtdist.cli import COMMANDS, cli

#: The tree under test (its ``sxtdist``), whatever pytest's folder.
TREE = Path(__file__).resolve().parent.parent

#: What the commands use and ``sxtdist --help`` does not: the array and storage stack,
#: the data model and the pipeline's packages (``--help`` needs click and the
#: group's options only).
HEAVY = (
    "numpy",
    "scipy",
    "dask",
    "distributed",
    "zarr",
    "h5py",
    "tifffile",
    "pydantic",
    "ome_zarr_models",
    "sxtdist.dataset",
    "sxtdist.recon",
    "sxtdist.runner",
    "sxtdist.io",
    "sxtdist.simulation",
    "sxtdist.alignment.shifts",
    "sxtdist.alignment.runner",
    "sxtdist.distributed",
)
#: The commands' modules.
COMMAND_MODULES = tuple(f"sxtdist.cli.{module}" for module, _ in COMMANDS.values())
#: Widths of the terminal the help is rendered for (click shortens each line to fit).
WIDTHS = (50, 80, 120)

#: Render the group's help, say what that imported, then load every command and render again.
_HELP_THEN_LOADED = """
import json, sys
import click
from sxtdist.cli import cli, main

def helps():
    return [cli.get_help(click.Context(cli, info_name="sxtdist", terminal_width=w,
                                       max_content_width=100)) for w in WIDTHS]

code = main(["--help"])
lazy = helps()
loaded_by_help = [m for m in WATCHED if m in sys.modules]
for name in cli.list_commands(click.Context(cli)):
    cli.get_command(click.Context(cli), name)
print(json.dumps({"code": code, "lazy": lazy, "loaded_by_help": loaded_by_help,
                  "eager": helps()}))
"""


def _run(script: str, **names: object) -> dict:
    """Run ``script`` (``names`` defined before it) in a fresh interpreter in :data:`TREE`;
    its last line of output, read as JSON."""
    given = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    out = subprocess.run(
        [sys.executable, "-c", given + script],
        cwd=TREE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_help_imports_no_command_and_lists_each_as_click_would():
    """``sxtdist --help`` imported every command's module (2-4 s: Dask, Zarr, SciPy, h5py
    ...) to print one line of each; now it imports none, and its lines are those click
    prints of the loaded commands, at every terminal width."""
    found = _run(_HELP_THEN_LOADED, WATCHED=HEAVY + COMMAND_MODULES, WIDTHS=WIDTHS)
    assert found["code"] == 0
    assert found["loaded_by_help"] == []
    assert found["lazy"] == found["eager"]
    for name in COMMANDS:
        assert f"\n  {name} " in found["lazy"][1], name


#: Commands whose ``--help`` is light, and what of :data:`HEAVY` their options need:
#: ``info`` formats with NumPy, ``demo``'s ``--iterations`` default is sxtdist.recon's.
LIGHT_HELP = {
    "info": ("numpy",),
    "view": (),
    "demo": ("numpy", "scipy", "sxtdist.recon"),
}


@pytest.mark.parametrize("name", sorted(LIGHT_HELP))
def test_a_command_s_help_imports_its_module_and_what_its_options_need(name):
    """``sxtdist info --help`` (``view``, ``demo``) imports that command's module and no
    other command's, nor the dataset, Zarr, Dask or the pipeline, which the command
    imports when it runs."""
    module = f"sxtdist.cli.{COMMANDS[name][0]}"
    watched = COMMAND_MODULES + tuple(m for m in HEAVY if m not in LIGHT_HELP[name])
    script = (
        "import json, sys\n"
        "from sxtdist.cli import main\n"
        "code = main([NAME, '--help'])\n"
        "print(json.dumps([code, [m for m in WATCHED if m in sys.modules]]))\n"
    )
    assert _run(script, NAME=name, WATCHED=watched) == [0, [module]]


def test_each_kept_short_help_is_the_command_s_own():
    """The short help :data:`~sxtdist.cli.COMMANDS` keeps for ``sxtdist --help`` is the
    command's own (its docstring's first sentence): they cannot drift apart."""
    ctx = click.Context(cli)
    for name, (_, short) in COMMANDS.items():
        assert cli.get_command(ctx, name).get_short_help_str(limit=10**6) == short, name
    assert cli.list_commands(ctx) == sorted(COMMANDS)


def test_info_of_an_acquisition_imports_no_dask(tiny_acq):
    """``sxtdist info ACQ`` reads metadata: it imported Dask's arrays (io.ngff at the top,
    and the truth's shape through a Dask array), 1045 modules where 660 do."""
    script = (
        "import json, sys\n"
        "from sxtdist.cli import main\n"
        "code = main(['info', ACQ])\n"
        "print(json.dumps([code, [m for m in ('dask.array', 'distributed') if m in sys.modules]]))\n"
    )
    assert _run(script, ACQ=str(tiny_acq)) == [0, []]
