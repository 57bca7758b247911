"""One vocabulary on the command line: a concept has one option name in every command.

The test lists every command's options (click's own description of the CLI) and
fails when one concept is spelled two ways, when a command that runs work on Dask
lacks the cluster options, when a command with progress bars lacks ``-q`` or
``--progress``, or when a command that describes something has no ``--json``.
Old spellings may stay as hidden, deprecated aliases (for users' scripts).
"""

from __future__ import annotations

import os
import re

import click
import pytest

from sxtdist.cli import cli

#: concept -> (its one spelling, spellings that must not be visible)
CONCEPTS = {
    "pixel size": ("--pixel-size-nm", {"--pixel-nm", "--pixel-size", "--pixel"}),
    "interior field width": ("--roi-width-um", {"--roi-um", "--roi-width", "--roi"}),
    "cell diameter": ("--cell-diameter-um", {"--cell-um", "--cell-diameter", "--cell"}),
    "zone-plate outermost zone": ("--zone-plate-ozw-nm", {"--ozw-nm", "--ozw", "--ozw-um"}),
    "photon energy": ("--energy-ev", {"--energy", "--energy-kev", "--ev"}),
    "voxel size": ("--voxel-size-nm", {"--voxel-nm", "--voxel", "--voxel-size"}),
    "worker processes": ("--workers", {"--n-workers", "--nworkers", "--processes"}),
    "scheduler address": ("--scheduler", {"--scheduler-address", "--address"}),
    "replace outputs": ("--overwrite", {"--force", "--replace", "--clobber"}),
    "JSON output": ("--json", {"--as-json", "--json-output", "--format-json"}),
    "progress bars": ("--progress", {"--progress-bar", "--show-progress", "--bar"}),
    "fewer messages": ("--quiet", {"--silent"}),
}
#: Options of where work runs, on every command whose work runs on Dask.
CLUSTER = {"--cluster", "--scheduler", "--workers", "--min-jobs", "--max-jobs"}
#: Commands whose work runs on Dask.
DASK_COMMANDS = {"align", "reconstruct", "batch", "demo"}
#: Commands with progress bars.
PROGRESS_COMMANDS = DASK_COMMANDS | {"simulate", "import", "export"}
#: Commands that describe something and whose output a script may read.
JSON_COMMANDS = {"info", "report", "plan"}
#: Units an option name may end with, and words that only say which measure of a length.
_UNITS = r"-(nm|um|mm|px|ev|kev|deg|gy|s)$"
_MEASURES = {"size", "width", "diameter", "length"}


def visible_options() -> dict[str, set[str]]:
    """``{command: {--long, -s, --no-x ...}}`` of the options ``--help`` shows."""
    out = {}
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):  # the group loads a command when asked for it
        cmd = cli.get_command(ctx, name)
        opts = set()
        for p in cmd.params:
            if p.param_type_name == "option" and not p.hidden:
                opts.update(p.opts)
                opts.update(p.secondary_opts)
        out[name] = opts
    return out


def _stem(option: str) -> str:
    """What an option names, without its unit or measure: --pixel-size-nm -> pixel."""
    words = re.sub(_UNITS, "", option.lstrip("-")).split("-")
    return "-".join(w for w in words if w not in _MEASURES) or option


def spelling_problems(options: dict[str, set[str]]) -> list[str]:
    """Every concept spelled two ways (by the table, or by the same stem), and where."""
    where: dict[str, set[str]] = {}
    for cmd, opts in options.items():
        for o in opts:
            if o.startswith("--"):
                where.setdefault(o, set()).add(cmd)
    problems = []
    for concept, (one, others) in CONCEPTS.items():
        for o in sorted(others & set(where)):
            problems.append(f"{concept}: {o} in {sorted(where[o])}, elsewhere {one}")
    by_stem: dict[str, set[str]] = {}
    for o in where:
        by_stem.setdefault(_stem(o), set()).add(o)
    for stem, spellings in sorted(by_stem.items()):
        if len(spellings) > 1:
            listed = ", ".join(f"{o} in {sorted(where[o])}" for o in sorted(spellings))
            problems.append(f"{stem!r} spelled {len(spellings)} ways: {listed}")
    return problems


def presence_problems(options: dict[str, set[str]]) -> list[str]:
    problems = []
    for cmd, opts in sorted(options.items()):
        has_cluster = opts & CLUSTER
        if cmd in DASK_COMMANDS or has_cluster:
            missing = CLUSTER - opts
            if missing:
                problems.append(f"{cmd} runs on Dask but lacks {sorted(missing)}")
        if cmd in PROGRESS_COMMANDS or "--progress" in opts:
            missing = {"-q", "--progress", "--no-progress"} - opts
            if missing:
                problems.append(f"{cmd} has progress but lacks {sorted(missing)}")
        if cmd in JSON_COMMANDS and "--json" not in opts:
            problems.append(f"{cmd} describes something but has no --json")
    return problems


def test_every_concept_has_one_spelling_in_every_command():
    options = visible_options()
    assert set(DASK_COMMANDS | PROGRESS_COMMANDS | JSON_COMMANDS) <= set(options)
    assert spelling_problems(options) == []
    assert presence_problems(options) == []


def test_the_checks_catch_two_spellings_and_missing_options():
    """The test's own rules fail on the mistakes they are for (as the CLI once had them)."""
    options = visible_options()
    options["plan"] = options["plan"] | {"--pixel-nm", "--roi-um"}
    options["report"] = options["report"] - {"--json"}
    options["align"] = options["align"] - {"--min-jobs", "--max-jobs"}
    options["export"] = options["export"] | {"--voxel-nm"}
    options["edit"] = options["edit"] | {"--energy-kev"}
    problems = spelling_problems(options) + presence_problems(options)
    text = "\n".join(problems)
    for words in (
        "pixel size: --pixel-nm in ['plan']",
        "interior field width: --roi-um in ['plan']",
        "'voxel' spelled 2 ways",
        "photon energy: --energy-kev in ['edit']",
        "report describes something but has no --json",
        "align runs on Dask but lacks ['--max-jobs', '--min-jobs']",
    ):
        assert words in text, text
    assert _stem("--pixel-size-nm") == _stem("--pixel-nm") == "pixel"
    assert _stem("--n-roi") != _stem("--roi-width-um")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("--pixel-nm", "--pixel-size-nm"),
        ("--roi-um", "--roi-width-um"),
        ("--cell-um", "--cell-diameter-um"),
        ("--ozw-nm", "--zone-plate-ozw-nm"),
    ],
)
def test_plan_keeps_old_spellings_as_hidden_deprecated_aliases(old, new, run_cli):
    args = {
        "--cell-diameter-um": "16",
        "--roi-width-um": "6",
        "--pixel-size-nm": "20",
        "--zone-plate-ozw-nm": "full=60,roi=35",
    }
    base = ["plan", "--json", "--model-px", "32", "--n-full", "9", "--n-roi", "30"]

    def run(given):
        return run_cli(*base, *[x for kv in given.items() for x in kv])

    code, expected, err = run(args)
    assert code == 0 and "deprecated" not in err
    code, out, err = run({old if k == new else k: v for k, v in args.items()})
    assert code == 0 and out == expected
    assert f"{old} is deprecated: use {new}" in err and len(err.strip().splitlines()) == 1
    code, _, err = run({**args, old: args[new]})  # both spellings at once
    assert code == 2 and f"give {new} once (it was also given as {old})" in err
    assert old not in run_cli("plan", "--help")[1]  # hidden


def test_info_and_report_print_json(tiny_acq, tmp_path, run_cli):
    import json

    import numpy as np

    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    code, out, err = run_cli("info", tiny_acq, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == "acquisition" and set(info["images"]) == {"full", "roi", "truth"}
    roi = info["images"]["roi"]
    n, rows, cols = roi["levels"][0]["shape"]
    assert len(info["metadata"]["scans"]["roi"]["angles_deg"]) == n
    p = info["metadata"]["scans"]["roi"]["pixel_size_nm"]
    assert roi["levels"][0]["scale"] == [1.0, p, p] and roi["display_window"]["end"] > 0

    data = np.random.default_rng(3).random((16, 20, 24), dtype=np.float32)
    vol = create_volume(tmp_path / "v.zarr", VolumeGrid(data.shape, 40.0), 16, 16)
    vol.write_slices(0, data)
    vol.finalize()
    code, out, err = run_cli("info", tmp_path / "v.zarr", "--json")
    levels = json.loads(out)["images"]["volume"]["levels"]
    assert code == 0 and [lv["shape"] for lv in levels] == [[16, 20, 24], [8, 10, 12]]
    assert levels[1]["scale"] == [80.0] * 3 and levels[1]["translation"] == [20.0] * 3
    code, out, err = run_cli("report", tmp_path / "v.zarr", "--json")
    assert code == 0, err
    report = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    metrics = {r["metric"]: r["value"] for r in report["metrics"]}
    assert metrics["voxel_size"] == 40.0 and metrics["status"] == "complete"
    assert os.path.isfile(report["files"]["png"]) and os.path.isfile(report["files"]["csv"])
    code, out, err = run_cli("info", tmp_path / "none.zarr", "--json")
    assert code == 2 and out == "" and "no such file" in err
