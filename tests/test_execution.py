"""How work runs: the Execution object, the shared local cluster, logging and the CLI's options."""

from __future__ import annotations

import logging
import warnings

import pytest

import sxtdist
from sxtdist.errors import ParameterError, SxtdistWarning
from sxtdist.execution import Execution


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"workers": 0}, "workers must be at least 1"),
        ({"workers": 2.5}, "workers must be a whole number"),
        ({"workers": True}, "workers must be a whole number"),
        ({"minimum_jobs": -1}, "minimum jobs must be at least 0"),
        ({"maximum_jobs": 0}, "maximum jobs must be at least 1"),
        ({"minimum_jobs": 3, "maximum_jobs": 2}, r"minimum \(3\) <= maximum \(2\)"),
        ({"memory_limit": "lots"}, "memory limit"),
        ({"memory_limit": -5}, "memory limit"),
        ({"memory_budget": 0}, "memory budget"),
        ({"backend": "tpu"}, "unknown backend 'tpu'"),
        ({"cluster": "kubernetes"}, "unknown cluster 'kubernetes'"),
        ({"cluster": "slurm", "scheduler": "tcp://h:1"}, "not both"),
        ({"client": object(), "scheduler": "tcp://h:1"}, "not both"),
        ({"overwrite": "yes"}, "overwrite must be True or False"),
        ({"progress": 1}, "progress must be True, False or None"),
    ],
)
def test_execution_refuses_what_cannot_work(fields, match):
    with pytest.raises(ParameterError, match=match):
        Execution(**fields)


def test_execution_normalises_and_merges_shortcuts():
    ex = Execution(cluster=" SLURM ", memory_limit="4GiB")
    assert ex.cluster == "slurm" and ex.external
    assert Execution(cluster="tcp://h:8786").scheduler == "tcp://h:8786"
    assert not Execution(cluster="local").external
    base = Execution(workers=2, progress=True)
    merged = Execution.of(base, workers=None, overwrite=True)
    assert (merged.workers, merged.progress, merged.overwrite) == (2, True, True)
    assert Execution.of(None) == Execution()
    with pytest.raises(TypeError, match="nonsense"):
        Execution.of(base, nonsense=1)
    with pytest.raises(ParameterError, match="at least 1"):
        base.replace(workers=0)


def test_reconstruct_routes_keywords_to_the_recipe_and_the_execution():
    from sxtdist.runner import Reconstruction, split_options

    recipe, ex = split_options(
        Reconstruction(iterations=5), None, {"block_size": 8, "workers": 3, "method": None}
    )
    assert (recipe.iterations, recipe.block_size, recipe.method) == (5, 8, "cgne")
    assert ex.workers == 3
    with pytest.raises(TypeError, match="quiet"):
        split_options(None, None, {"quiet": True})


def test_calls_share_one_local_cluster_and_use_the_current_client():
    """Without a client, a second call reuses the cluster the first started (a notebook
    does not start a cluster per call); distributed's current client wins when there is
    one; ``keep_cluster=False`` starts and closes its own."""
    from distributed import Client, LocalCluster

    from sxtdist.distributed import close_kept_clusters, get_client, kept_cluster_keys

    before = kept_cluster_keys()
    try:
        only_here = dict(workers=1, memory_limit="1GiB")  # not kept by another test
        with get_client(**only_here) as a:
            pass
        with get_client(**only_here) as b:
            assert b is a and b.status == "running"
        with get_client(**only_here, keep_cluster=False) as c:
            assert c is not a
        assert c.status == "closed"
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as lc,
            Client(lc) as mine,
            get_client() as d,
        ):
            assert d is mine
    finally:
        assert close_kept_clusters(since=before) == 1
    assert a.status == "closed"


def test_outputs_are_checked_before_any_cluster_starts(tiny_acq, tmp_path, monkeypatch):
    """A complete output (no overwrite) is refused before a cluster is asked for."""
    import sxtdist.runner as runner

    out = tmp_path / "v.zarr"
    runner.reconstruct(tiny_acq, out, iterations=1, workers=1, progress=False)

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(runner, "get_client", no_cluster)
    with pytest.raises(sxtdist.SxtdistError, match="complete volume already"):
        runner.reconstruct(tiny_acq, out, iterations=1, workers=1)
    sxtdist.open_volume(out, mode="r+").update_meta(status="running")
    with pytest.raises(sxtdist.SxtdistError, match="other parameters"):
        runner.reconstruct(tiny_acq, out, iterations=2, workers=1)


def test_a_local_run_with_a_gpu_asks_for_a_dask_cuda_cluster(monkeypatch):
    """With a usable GPU here and no cluster given, the blocks go to a local-cuda cluster
    (one worker per GPU, resource GPU=1), even while a CPU cluster is kept; a cluster given
    by the user says itself whether it has GPUs."""
    from contextlib import contextmanager

    import sxtdist.runner as runner

    asked = []

    @contextmanager
    def fake_client(ex):
        asked.append(ex)
        yield "client"

    monkeypatch.setattr(runner, "get_client", fake_client)
    monkeypatch.setattr(runner, "current_client", lambda: None)
    monkeypatch.setattr(runner, "select_backend", lambda b, client=None: ("gpu", str(client)))
    ex, backend, why = runner._local_backend(Execution(workers=1))
    assert (ex.cluster, backend, why) == ("local-cuda", "gpu", "None")
    with runner._connect(ex, backend, why) as (c, backend, why):
        assert (backend, why) == ("gpu", "None")
    assert asked[-1].cluster == "local-cuda"
    ex, backend, why = runner._local_backend(Execution(client="given"))
    assert backend is None and ex.cluster is None
    with runner._connect(ex, backend, why) as (c, backend, why):
        assert (backend, why) == ("gpu", "client")
    assert asked[-1].client == "given"


def test_cli_verbosity_and_log_file(tiny_acq, tmp_path, run_cli):
    """Status lines by default; -q leaves only problems; -v adds details (named by their
    logger); --log-file keeps everything with times; group or command position alike."""
    args = ("info", tiny_acq)
    code, _, err = run_cli(*args)
    assert code == 0
    log = tmp_path / "run.log"
    code, _, err_q = run_cli("-q", *args, "--log-file", log)
    assert code == 0 and err_q == ""
    logging.getLogger("sxtdist.test").info("a status line")  # after main: nothing set up
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "o.zarr", "--workers", "1",
                           "--iterations", "1", "--no-progress", "-v")  # fmt: skip
    assert code == 0, err
    assert "wrote " in err and "sxtdist.runner: " not in err  # INFO lines are bare
    code, _, err = run_cli("-q", "reconstruct", tiny_acq, tmp_path / "p.zarr", "--workers", "1",
                           "--iterations", "1", "--log-file", log)  # fmt: skip
    assert code == 0 and err == ""
    text = log.read_text()
    assert " INFO sxtdist.runner: wrote " in text
    assert not logging.getLogger("sxtdist").handlers[1:]  # main removed its handlers


def test_cli_shows_a_warning_as_one_line(run_cli, monkeypatch):
    import sxtdist.cli.info as info

    def warn(*args, **kwargs):
        warnings.warn("look at this\nplease", SxtdistWarning, stacklevel=2)
        warnings.warn("numpy says so", RuntimeWarning, stacklevel=2)

    monkeypatch.setattr(info.command, "callback", warn)
    code, _, err = run_cli("info", "x")
    assert code == 0
    assert err.splitlines() == [
        "sxtdist: warning: look at this please",
        "sxtdist: warning: numpy says so (RuntimeWarning)",
    ]


def test_configure_logging_for_a_notebook(capsys):
    from sxtdist.logs import cell_messages_as_details, reset_logging

    log = logging.getLogger("sxtdist.somewhere")
    try:
        sxtdist.configure_logging()
        log.info("shown")
        log.debug("hidden")
        with cell_messages_as_details():
            log.info("a cell's line")
            log.warning("a cell's problem")
        sxtdist.configure_logging(-1)
        log.info("hidden too")
        log.warning("a problem")
    finally:
        reset_logging()
    log.warning("nowhere")
    assert capsys.readouterr().err.splitlines() == [
        "shown",
        "sxtdist: warning: a cell's problem",
        "sxtdist: warning: a problem",
    ]
