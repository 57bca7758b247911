"""Notebook-first: the example notebook runs on one cluster; Python callers read Python's words;
scripts without the main guard run (on threads) and are told why."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import sxtdist
from sxtdist.errors import OutputExistsError, ParameterError

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _texts(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] == "error":
            parts.append("\n".join(out["traceback"]))
        else:
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def test_example_notebook_runs_three_calls_on_one_cluster(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (extra: test)")
    nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (extra: test)")
    nb = nbformat.read(os.path.join(EXAMPLES, "notebook.ipynb"), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback
    cells = [c for c in nb.cells if c.cell_type == "code"]
    text = {c.source.splitlines()[0]: _texts(c) for c in cells}
    everything = "".join(text.values())
    assert "clusters started for the three calls: 1" in everything
    assert everything.count("Dask cluster:") == 1, everything  # one start, three calls
    assert "TqdmWarning" not in everything and "IProgress" not in everything
    recon = next(t for src, t in text.items() if src.startswith("combined = "))
    assert "blocks: 100%" in recon or "blocks:  50%" in recon, recon  # progress by default
    error = next(t for src, t in text.items() if src.startswith("try:"))
    assert "overwrite=True" in error and "--overwrite" not in error, error
    assert (tmp_path / "cell_recon.zarr").is_dir() and (tmp_path / "cell_roi.zarr").is_dir()


def test_errors_name_python_arguments_to_python_and_flags_to_the_command_line(
    tiny_acq, tmp_path, run_cli
):
    with pytest.raises(OutputExistsError, match=r"use overwrite=True to replace it\)$"):
        sxtdist.simulate(tiny_acq, preset="tiny")
    with pytest.raises(ParameterError, match="give either cluster= or scheduler=, not both"):
        sxtdist.Execution(cluster="local", scheduler="tcp://127.0.0.1:1")
    code, _, err = run_cli("simulate", tiny_acq, "--preset", "tiny")
    assert code == 2 and err.rstrip().endswith("(use --overwrite to replace it)"), err
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "v.zarr", "--cluster", "local",
                           "--scheduler", "tcp://127.0.0.1:1")  # fmt: skip
    assert code == 2 and "give either --cluster or --scheduler" in err, err
    with pytest.raises(OutputExistsError, match="overwrite=True"):  # Python again after the CLI
        sxtdist.simulate(tiny_acq, preset="tiny")


def test_progress_in_a_notebook_is_a_widget_only_with_ipywidgets(monkeypatch):
    import types

    from tqdm.notebook import tqdm as notebook_bar
    from tqdm.std import tqdm as text_bar

    from sxtdist import _progress

    monkeypatch.setattr(_progress, "_in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto would warn here (TqdmWarning)
        assert _progress._tqdm_class() is text_bar
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    assert _progress._tqdm_class() is notebook_bar
    monkeypatch.setattr(_progress, "_in_notebook", lambda: False)
    assert _progress._tqdm_class() is text_bar


def _script(body: str) -> str:
    return "import sxtdist\nfrom sxtdist.distributed import main_rerun_problem\n" + textwrap.dedent(
        body
    )


def test_main_rerun_problem_sees_the_guard(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        _script("""
        def inside():
            return main_rerun_problem()
        print("top:", main_rerun_problem())
        print("function at top:", inside())
        if __name__ == "__main__":
            print("guarded:", main_rerun_problem())
            print("function guarded:", inside())
        """)
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    unguarded = "probe.py calls sxtdist outside 'if __name__ == \"__main__\":'"
    assert out[0].startswith("top: ") and unguarded in out[0]
    assert out[1].startswith("function at top: ") and unguarded in out[1]
    assert out[2:] == ["guarded: None", "function guarded: None"]
    out = subprocess.run(
        [sys.executable, "-"], input=script.read_text(), capture_output=True, text=True,
        check=True, timeout=120,
    ).stdout  # fmt: skip
    assert "cannot be read again by Dask's worker processes" in out.splitlines()[0]
    out = subprocess.run(
        [sys.executable, "-c", "import sxtdist.distributed as d; print(d.main_rerun_problem())"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert out.strip() == "None"
    # python -m: a module is run again by the workers, a package's __main__ is not
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "__main__.py").write_text(_script('print("pkg:", main_rerun_problem())'))
    for module, expected in (("probe", unguarded), ("pkg", None)):
        out = subprocess.run(
            [sys.executable, "-m", module], capture_output=True, text=True, check=True,
            timeout=120, cwd=tmp_path,
        ).stdout.splitlines()[0]  # fmt: skip
        assert (expected in out) if expected else out == "pkg: None", out


def test_a_script_without_the_guard_runs_on_threads_and_says_so(tiny_acq, tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(
        _script(f"""
        sxtdist.configure_logging()
        vol = sxtdist.reconstruct({tiny_acq!r}, {str(tmp_path / "v.zarr")!r}, workers=2,
                                  iterations=2)
        print("status", vol.status)
        """)
    )
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "status complete" in r.stdout
    assert "noguard.py calls sxtdist outside 'if __name__" in r.stderr
    assert "running on 2 threads in this process instead of worker processes" in r.stderr
    assert "Nanny failed" not in r.stderr and "Traceback" not in r.stderr
