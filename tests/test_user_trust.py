"""What a first-time user runs into that breaks trust: found by following README.md and
docs/ as a beamline scientist would (redteam14), each checked here as the user meets it."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from _cli_in_a_process import run_script

import sxtdist
from sxtdist.dataset import shifts_change


def _edit_scan_meta(acq, scan: str, edit) -> None:
    """Change a scan's entry in the acquisition's zarr.json by hand, as a user would."""
    path = Path(acq) / "zarr.json"
    doc = json.loads(path.read_text())
    edit(doc["attributes"]["sxtdist"]["scans"][scan])
    path.write_text(json.dumps(doc, indent=2))


def _drop_last_angle(scan: dict) -> None:
    scan["angles_deg"] = scan["angles_deg"][:-1]


def _angle_as_text(scan: dict) -> None:
    scan["angles_deg"][3] = "abc"


HAND_EDITS = {
    # a scan's folder deleted, the metadata still listing it
    "scan folder removed": (lambda acq: shutil.rmtree(Path(acq) / "full"), "missing on disk"),
    "an angle removed": (
        lambda acq: _edit_scan_meta(acq, "roi", _drop_last_angle),
        "angles but",
    ),
    "an angle made text": (
        lambda acq: _edit_scan_meta(acq, "roi", _angle_as_text),
        "angles_deg must be numbers",
    ),
}


@pytest.mark.parametrize("edit", sorted(HAND_EDITS))
def test_verify_does_not_call_whole_an_acquisition_every_command_refuses(edit, tiny_copy, run_cli):
    """An acquisition edited by hand (a scan's folder deleted, its angles changed) is
    refused by info, align and reconstruct; verify read its chunks and said "acquisition
    whole", exit 0. Now it names the same problem and exits 2."""
    change, said = HAND_EDITS[edit]
    change(tiny_copy)
    code, _, err = run_cli("info", tiny_copy)
    assert code == 2 and said in err, err  # what every command says of it
    code, out, err = run_cli("verify", tiny_copy)
    assert code == 2, out
    assert "whole" not in out and said in out, out
    assert "damaged: 1 problem(s)" in err, err


def test_verify_tells_a_truncated_scan_once_chunk_by_chunk(tiny_copy, run_cli):
    """A projection chunk deleted: verify lists it (as before), not again as the summary
    that every other command refuses the acquisition with."""
    chunks = sorted(p for p in (Path(tiny_copy) / "roi" / "0" / "c").rglob("*") if p.is_file())
    chunks[0].unlink()
    code, out, err = run_cli("verify", tiny_copy)
    missing = [line for line in out.splitlines() if line.endswith("is missing")]
    assert code == 2 and missing, out
    assert "projection chunks are missing" not in out, out
    assert f"damaged: {len(missing)} problem(s)" in err, err


def test_a_reconstruction_of_unaligned_scans_says_so_and_records_it(tiny_copy, tmp_path, run_cli):
    """``reconstruct`` on an acquisition never aligned ran without a word: a user who
    forgot ``sxtdist align`` got a blurred volume that nothing told from an aligned one.
    Now the run names the scans it reconstructs without shifts, and the volume records
    how each scan used was aligned (``sxtdist info`` shows it)."""
    args = ["--iterations", "2", "--workers", "1", "--no-progress"]
    code, _, err = run_cli("reconstruct", tiny_copy, tmp_path / "a.zarr", *args)
    assert code == 0, err
    assert f"{tiny_copy}: scans full, roi not aligned" in err, err
    assert "sxtdist align" in err, err
    vol = sxtdist.open_volume(tmp_path / "a.zarr")
    assert vol.meta["provenance"]["alignment"] == {"full": "unaligned", "roi": "unaligned"}
    code, out, _ = run_cli("info", tmp_path / "a.zarr")
    assert "alignment: full unaligned, roi unaligned" in out, out

    acq = sxtdist.open_acquisition(tiny_copy)
    n = acq["full"].geometry.n_angles
    acq.update_scans({"full": shifts_change(np.zeros((n, 2)), method="moments")})
    code, _, err = run_cli("reconstruct", tiny_copy, tmp_path / "b.zarr", *args)
    assert code == 0 and f"{tiny_copy}: scan roi not aligned" in err, err
    prov = sxtdist.open_volume(tmp_path / "b.zarr").meta["provenance"]
    assert prov["alignment"] == {"full": "moments", "roi": "unaligned"}

    code, _, err = run_cli("reconstruct", tiny_copy, tmp_path / "c.zarr", "--scans", "full", *args)
    assert code == 0 and "not aligned" not in err, err  # only the scans used are named

    code, _, err = run_cli("reconstruct", tiny_copy, tmp_path / "d.zarr", "--split-halves", *args)
    assert code == 0 and err.count("not aligned") == 1, err  # once, not again for each half


#: A Ctrl-C while a command's module is imported (seconds on a busy machine; ``--help``
#: alone imports none), made certain: its import raises KeyboardInterrupt, as the signal does.
_CTRL_C_AT_IMPORT = """
import runpy, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "sxtdist.cli.simulate":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
sys.argv = ["sxtdist", "simulate", "--help"]
"""

#: How a user starts it: ``python -m sxtdist``, or the ``sxtdist`` program's entry point.
_STARTS = {
    "python -m sxtdist": 'runpy.run_module("sxtdist", run_name="__main__", alter_sys=True)',
    "console script": "from sxtdist._console import main\nsys.exit(main())",
}


@pytest.mark.parametrize("start", sorted(_STARTS))
def test_ctrl_c_while_the_commands_load_is_one_line(start):
    """Ctrl-C pressed in the seconds the CLI imports Dask, Zarr and SciPy printed the
    import's traceback (30 lines into pydantic) and the process died of the signal; now
    it ends as an interrupted command does: one line, exit code 130."""
    code, err = run_script(_CTRL_C_AT_IMPORT + _STARTS[start])
    assert (code, err) == (130, ["sxtdist: interrupted"])


def test_the_program_starts_through_the_guard():
    """The installed ``sxtdist`` program is the guarded entry point, not the CLI itself."""
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["sxtdist"] == "sxtdist._console:main"


@pytest.mark.parametrize("where", ["run.log", "roi/run.log", "roi/0/run.log"])
def test_a_log_file_inside_the_acquisition_is_refused(where, tiny_copy, tmp_path, run_cli):
    """A new ``--log-file`` inside the input (cell.zarr/run.log: the log kept with the
    data) became a file sxtdist did not write inside the acquisition, which then made every
    --overwrite of it refuse. (An existing file there, its zarr.json, is refused since
    b86b5b5: not a log of sxtdist's.) Now refused before anything is written, exit 2,
    naming the dataset, the acquisition as it was."""
    log = Path(tiny_copy) / where
    before = log.read_bytes() if log.exists() else None
    code, _, err = run_cli(
        "reconstruct", tiny_copy, tmp_path / "v.zarr", "--iterations", "1", "--log-file", log
    )
    assert code == 2 and f"{log}: lies inside the Zarr dataset" in err, err
    assert (log.read_bytes() if log.exists() else None) == before
    assert not (tmp_path / "v.zarr").exists()
    code, _, err = run_cli("info", tiny_copy)
    assert code == 0, err
