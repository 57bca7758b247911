"""Clusters from configuration: local, batch queues (job scripts without submitting), a real SLURM."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import dask.config
import dask_jobqueue  # noqa: F401  (registers jobqueue.* defaults before any config.set)
import pytest
import yaml

from sxtdist.distributed import (
    LOCAL_HOUSEKEEPING,
    get_client,
    jobqueue_options,
    make_cluster,
    scale_cluster,
)
from sxtdist.errors import ParameterError, SxtdistError

REPO = Path(__file__).resolve().parent.parent
NO_DASHBOARD = {"scheduler_options": {"dashboard_address": ":0"}}


def flat(d: dict, prefix: str = "") -> dict:
    """Nested config → dotted keys, so dask.config.set merges instead of replacing sections."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def deploy_config(name: str) -> dict:
    return flat(yaml.safe_load((REPO / "deploy" / "dask-config" / name).read_text()))


def _job_script(kind: str, **kw) -> str:
    with make_cluster(kind, **NO_DASHBOARD, **kw) as cluster:
        return cluster.job_script()


def test_slurm_job_script_from_arguments(tmp_path):
    script = _job_script(
        "slurm", cores=2, processes=2, memory="2GB", queue="debug", local_directory="/tmp"
    )
    import sys

    assert script.startswith("#!/usr/bin/env bash")
    assert "#SBATCH -p debug" in script
    assert "#SBATCH --cpus-per-task=2" in script
    assert "#SBATCH --mem=2G" in script
    # Our process's Python runs the workers; one thread per worker process.
    assert f"{sys.executable} -m distributed.cli.dask_worker" in script
    assert "--nthreads 1" in script and "--nworkers 2" in script


def test_jobqueue_defaults_fill_only_unset_keys():
    # Nothing configured: sxtdist's defaults make a bare --cluster slurm work.
    with dask.config.set(
        {
            "jobqueue.slurm.cores": None,
            "jobqueue.slurm.memory": None,
            "jobqueue.slurm.processes": None,
        }
    ):
        opts = jobqueue_options("slurm")
        assert opts["cores"] == 1 and opts["memory"] == "4GiB" and opts["processes"] == 1
    # The user's jobqueue.slurm section wins (dask-jobqueue reads it itself) ...
    with dask.config.set({"jobqueue.slurm.cores": 16, "jobqueue.slurm.memory": "64GB"}):
        opts = jobqueue_options("slurm")
        assert "cores" not in opts and "memory" not in opts
        script = _job_script("slurm")
        assert "--cpus-per-task=16" in script and "--mem=60G" in script
    # ... and explicit arguments win over both.
    assert jobqueue_options("slurm", {"cores": 3})["cores"] == 3


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "slurm-cpu.yaml",
            ["#SBATCH -p compute", "--cpus-per-task=8", "--nworkers 8", "--nthreads 1"],
        ),
        (
            "slurm-gpu.yaml",
            [
                "#SBATCH --gres=gpu:1",
                "#SBATCH --cpus-per-task=8",
                "-m dask_cuda.cli",
                "--resources GPU=1",
                "--nthreads 1",
            ],
        ),
        ("pbs-cpu.yaml", ["#PBS -q workq", "#PBS -l select=1:ncpus=8:mem=32GB", "--nworkers 8"]),
        ("pbs-gpu.yaml", ["ngpus=1", "-m dask_cuda.cli", "--resources GPU=1"]),
    ],
)
def test_deploy_configs_make_the_job_scripts_they_promise(config, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' relative log-directory is created here
    with dask.config.set(deploy_config(config)):
        kind = dask.config.get("sxtdist.cluster.kind")
        assert kind in ("slurm", "pbs")
        script = _job_script(kind)
    for text in expected:
        assert text in script, f"{config}: {text!r} not in\n{script}"
    assert "dummy-name" in script  # a worker command line, not an empty template


def test_lsf_kind_is_dask_jobqueue_lsf():
    script = _job_script("lsf", cores=1, memory="1GB", queue="normal")
    assert "#BSUB -q normal" in script


def test_unknown_cluster_kind_is_refused():
    with pytest.raises(ParameterError, match=r"unknown cluster 'kubernetes' \(choose from local"):
        make_cluster("kubernetes")
    with pytest.raises(ParameterError, match="unknown cluster"), get_client(cluster="nope"):
        pass


def test_local_cuda_without_dask_cuda_says_what_to_install():
    try:
        import dask_cuda  # noqa: F401

        pytest.skip("dask-cuda is installed here")
    except ImportError:
        pass
    with pytest.raises(ParameterError, match=r"needs dask-cuda \(pip install 'sxtdist\[gpu\]'\)"):
        make_cluster("local-cuda")


def test_local_cuda_cluster_is_made_with_the_lighter_housekeeping(monkeypatch):
    """dask-cuda's LocalCUDACluster (a LocalCluster underneath) is made while the lighter
    housekeeping is configured, with one thread and the GPU resource per worker; a
    stand-in class records what it got (no GPU or dask-cuda needed)."""
    import sys
    import types

    made = {}

    class FakeLocalCUDACluster:
        def __init__(self, **opts):
            made.update(opts)
            made["config"] = {k: dask.config.get(k) for k in LOCAL_HOUSEKEEPING}

    monkeypatch.setitem(
        sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=FakeLocalCUDACluster)
    )
    make_cluster("local-cuda", workers=2)
    assert made["config"] == {k: ours for k, (_, ours) in LOCAL_HOUSEKEEPING.items()}
    assert made["n_workers"] == 2 and made["threads_per_worker"] == 1
    assert made["resources"] == {"GPU": 1}
    assert dask.config.get("distributed.admin.tick.interval") == "20ms"  # only while made


def test_jobqueue_option_errors_are_one_line():
    with pytest.raises(ParameterError, match="cluster 'slurm'"):
        make_cluster("slurm", cores=1, memory="1GB", no_such_option=3)


class _FakeJobCluster:
    def __init__(self):
        self.calls = []

    def scale(self, **kw):
        self.calls.append(("scale", kw))

    def adapt(self, **kw):
        self.calls.append(("adapt", kw))


def test_scale_cluster_is_adaptive_between_bounds():
    c = _FakeJobCluster()
    assert scale_cluster(c, "slurm", 1, 4) == (1, 4)
    assert c.calls[-1] == ("adapt", {"minimum_jobs": 1, "maximum_jobs": 4})
    # A fixed count is adaptive too, so that jobs which end are resubmitted.
    assert scale_cluster(c, "slurm", 2, 2) == (2, 2)
    assert c.calls[-1] == ("adapt", {"minimum_jobs": 2, "maximum_jobs": 2})
    with dask.config.set({"sxtdist.cluster.minimum-jobs": 0, "sxtdist.cluster.maximum-jobs": 3}):
        assert scale_cluster(c, "pbs") == (0, 3)
    # A minimum above the configured maximum raises the maximum with it.
    with dask.config.set({"sxtdist.cluster.maximum-jobs": 2}):
        assert scale_cluster(c, "slurm", 5) == (5, 5)
    with pytest.raises(ParameterError, match=r"minimum \(3\) <= maximum \(2\)"):
        scale_cluster(c, "slurm", 3, 2)


def test_local_cluster_from_config_runs_tasks():
    with (
        dask.config.set({"sxtdist.cluster.kind": "local", "sxtdist.cluster.workers": 1}),
        get_client() as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 1
        assert client.submit(pow, 2, 10).result() == 1024


@pytest.mark.parametrize("processes", [True, False])
def test_local_cluster_dashboard_listens_where_its_link_says(processes):
    """The scheduler and the dashboards on one interface (127.0.0.1 by default), nothing on
    every interface, and the printed link is one of the listening addresses (worker
    processes or, for a script Dask cannot start them from, workers in this process)."""
    from urllib.parse import urlparse

    import psutil
    from distributed import Client

    def listening() -> set[tuple[str, int]]:
        me = psutil.Process()
        return {
            (c.laddr.ip, c.laddr.port)
            for p in (me, *me.children(recursive=True))
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }

    before = listening()
    with (
        make_cluster("local", workers=1, processes=processes) as cluster,
        Client(cluster) as client,
    ):
        new = listening() - before
        link = urlparse(client.dashboard_link)
        assert (link.hostname, link.port) in new
        assert urlparse(cluster.scheduler_address).hostname == link.hostname == "127.0.0.1"
        assert {ip for ip, _ in new} == {"127.0.0.1"}, new


def _malloc_environment() -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}


def test_local_cluster_housekeeping_is_lighter_unless_configured():
    """The workers of sxtdist's local cluster run without the profiler and with slow
    event-loop ticks; a value the user configured is kept."""
    keys = ["distributed.worker.profile.enabled", "distributed.admin.tick.interval"]

    def worker_config(keys):
        import dask.config

        return [dask.config.get(k) for k in keys]

    with get_client(cluster="local", workers=1) as client:
        (got,) = client.run(worker_config, keys).values()
        (env,) = client.run(_malloc_environment).values()
    assert got == [False, "500ms"]
    # freed memory kept for reuse (glibc): arrays to 64 MiB from the heap, 256 MiB kept
    assert env == {
        "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
    }
    with (
        dask.config.set({"distributed.admin.tick.interval": "50ms"}),
        get_client(cluster="local", workers=1) as client,
    ):
        (got,) = client.run(worker_config, keys).values()
    assert got == [False, "50ms"]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # ours only


def _square_or_fail(i: int, fail_at: int = -1) -> int:
    if i == fail_at:
        raise ValueError(f"task {i} failed")
    return i * i


def test_run_tasks_returns_in_item_order_and_raises_a_failed_task():
    """Both ways of collecting results (one gather at the end; each as it comes, when
    ``on_result`` is given) keep the items' order and raise a task's own error."""
    from distributed import Client, LocalCluster

    from sxtdist.distributed import run_tasks

    items = list(range(12))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        assert run_tasks(client, _square_or_fail, items, "t", False) == [i * i for i in items]
        seen = {}
        got = run_tasks(client, _square_or_fail, items, "t", False, on_result=seen.__setitem__)
        assert got == [i * i for i in items] and seen == dict(zip(items, got, strict=True))
        for on_result in (None, seen.__setitem__):
            with pytest.raises(ValueError, match="task 5 failed"):
                run_tasks(client, _square_or_fail, items, "t", False, on_result, fail_at=5)


def _fails_first(path: str, value: int) -> int:
    """Raises the first time it runs for ``path`` (a file records the attempts)."""
    with open(path, "a") as f:
        f.write("x")
    if os.path.getsize(path) == 1:
        raise OSError("a passing fault (a network file system's hiccup)")
    return value


def _add(a: int, b: int) -> int:
    return a + b


@pytest.mark.parametrize("retries", [1, 0])
def test_failed_tasks_are_run_again(tmp_path, retries):
    """A block or pair task that raises is run again ``sxtdist.cluster.retries`` times
    (run_tasks and run_graph alike) before its error reaches the caller."""
    from distributed import Client, LocalCluster

    from sxtdist.distributed import run_graph, run_tasks

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        dask.config.set({"sxtdist.cluster.retries": retries}),
    ):
        graph = {
            "shared": (_fails_first, str(tmp_path / "g"), 10),
            "a": (_add, "shared", 1),
            "b": (_add, "shared", 2),
        }
        calls = [
            lambda: run_tasks(client, _fails_first, [str(tmp_path / "t")], "t", False, value=7),
            lambda: run_graph(client, graph, ["b", "a"], "t", False),
        ]
        if retries:
            assert calls[0]() == [7]
            assert calls[1]() == [12, 11]
        else:
            for call in calls:
                with pytest.raises(OSError, match="passing fault"):
                    call()


@dataclasses.dataclass(frozen=True)
class _Settings:
    offset: int


def _offset(a: int, settings: _Settings) -> int:
    return a + settings.offset


def test_run_graph_does_not_hash_the_tasks_it_submits(monkeypatch):
    """run_graph names its graph with a token of its own: ``Client.get`` given a plain
    dict hashed every task's arguments (a dataclass pickled and read back) to name it,
    most of an alignment's submission time in the client."""
    import dask._expr
    from distributed import Client, LocalCluster

    from sxtdist.distributed import run_graph

    hashed = []
    real = dask._expr._tokenize_deterministic

    def counting(*args, **kwargs):
        hashed.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(dask._expr, "_tokenize_deterministic", counting)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        graph = {"a": (_offset, 1, _Settings(10)), "b": (_offset, "a", _Settings(100))}
        assert run_graph(client, graph, ["b", "a"], "t", False) == [111, 11]
    assert dask._expr.LLGExpr not in hashed


def test_run_graph_falls_back_to_a_dict_when_dask_changes_its_private_expression(monkeypatch):
    """``LLGExpr`` is Dask's private class: a Dask whose constructor takes other arguments
    must cost the submission its speed, not the alignment."""
    import dask._expr

    from sxtdist.distributed import _named_graph

    class Changed:
        def __init__(self, graph):  # no _determ_token any more
            self.graph = graph

    monkeypatch.setattr(dask._expr, "LLGExpr", Changed)
    graph = {"a": (_offset, 1, _Settings(10))}
    assert _named_graph(graph) == graph


def test_retries_from_the_configuration_are_checked():
    from sxtdist.distributed import task_retries

    assert task_retries() == 2
    for bad in (-1, "two", True):
        with (
            dask.config.set({"sxtdist.cluster.retries": bad}),
            pytest.raises(ParameterError, match="retries must be a whole number"),
        ):
            task_retries()


def test_scheduler_address_from_cluster_option_and_config():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as lc:
        # --cluster tcp://... means "connect to this scheduler".
        with get_client(cluster=lc.scheduler_address) as client:
            assert client.submit(abs, -3).result() == 3
        with (
            dask.config.set({"sxtdist.cluster.scheduler": lc.scheduler_address}),
            get_client() as client,
        ):
            assert client.scheduler.address == lc.scheduler_address


def test_unreachable_scheduler_is_a_one_line_error():
    with (
        dask.config.set({"sxtdist.cluster.connect-timeout": "1s"}),
        pytest.raises(SxtdistError, match=r"cannot connect to scheduler tcp://127.0.0.1:9"),
        get_client(scheduler="tcp://127.0.0.1:9"),
    ):
        pass


def test_both_cluster_and_scheduler_refused():
    with (
        pytest.raises(ParameterError, match="not both"),
        get_client(cluster="slurm", scheduler="tcp://127.0.0.1:9"),
    ):
        pass


def test_batch_queue_without_its_submit_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch / qsub here
    with pytest.raises(SxtdistError, match="qsub is not on PATH"), get_client(cluster="pbs"):
        pass


# --- a real SLURM ------------------------------------------------------------------------


@pytest.mark.slurm
def test_slurm_cluster_runs_tasks_in_slurm_jobs(tmp_path):
    def where():
        return os.environ.get("SLURM_JOB_ID"), os.getpid()

    opts = dict(
        memory="1GB",
        local_directory=str(tmp_path),
        log_directory=str(tmp_path / "logs"),
        **NO_DASHBOARD,
    )
    with get_client(
        cluster="slurm", minimum_jobs=1, maximum_jobs=1, cluster_options=opts
    ) as client:
        job_id, pid = client.submit(where, pure=False).result(timeout=60)
    assert job_id is not None and job_id.isdigit(), "the task did not run inside a SLURM job"
    assert pid != os.getpid()


@pytest.mark.slurm
def test_slurm_job_that_never_starts_is_a_clear_error(tmp_path):
    # More memory than any node has: SLURM rejects the job, no worker ever comes.
    opts = dict(memory="100TB", log_directory=str(tmp_path / "logs"), **NO_DASHBOARD)
    with (
        dask.config.set({"sxtdist.cluster.wait-for-workers": 5}),
        pytest.raises(SxtdistError, match="no worker started within 5 s"),
        get_client(cluster="slurm", minimum_jobs=1, maximum_jobs=1, cluster_options=opts),
    ):
        pass


@pytest.mark.slurm
def test_sxtdist_batch_on_slurm(tmp_path, monkeypatch, run_cli):
    """The acceptance run: `sxtdist batch` on two tiny cells through SLURMCluster."""
    import sxtdist
    from sxtdist.batch import read_summary
    from sxtdist.volume import open_volume

    for i in (1, 2):
        sxtdist.simulate(tmp_path / f"c{i}.zarr", preset="tiny", seed=30 + i)
    manifest = tmp_path / "cells.yaml"
    manifest.write_text("cells:\n  - acquisition: c1.zarr\n  - acquisition: c2.zarr\n")
    monkeypatch.chdir(tmp_path)  # job logs land here, not in the repository
    # The jobs inherit this environment; a relative PYTHONPATH would point elsewhere there.
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(REPO), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]),
    )
    settings = {
        "jobqueue.slurm.memory": "2GB",
        "jobqueue.slurm.cores": 1,
        "jobqueue.slurm.processes": 1,
        "jobqueue.slurm.local-directory": str(tmp_path),
        "jobqueue.slurm.log-directory": str(tmp_path / "logs"),
        "jobqueue.slurm.scheduler-options": {"dashboard_address": ":0"},
    }
    with dask.config.set(settings):
        code, out, err = run_cli(
            "batch",
            manifest,
            "--out",
            tmp_path / "out",
            "--cluster",
            "slurm",
            "--min-jobs",
            "2",
            "--max-jobs",
            "2",
            "--iterations",
            "8",
            "--no-progress",
        )
    assert code == 0, err
    assert "SLURM cluster: 2..2 job(s)" in err
    rows = read_summary(tmp_path / "out" / "batch-summary.csv")
    assert [(r["cell"], r["status"]) for r in rows] == [("c1", "done"), ("c2", "done")]
    assert all(r["message"].startswith("aligned") for r in rows)  # aligned, then reconstructed
    for r in rows:
        assert float(r["psnr_roi_db"]) > 10
        assert open_volume(tmp_path / "out" / f"{r['cell']}.zarr").status == "complete"
    # the workers really were SLURM jobs: their logs are there
    assert len(list((tmp_path / "logs").glob("*.err"))) >= 1


def test_workers_that_cannot_import_are_reported(tmp_path):
    from sxtdist.distributed import check_workers_import

    with get_client(workers=1) as client:
        check_workers_import(client)  # sxtdist itself: fine
        with pytest.raises(SxtdistError, match="workers cannot import no_such_module_xyz"):
            check_workers_import(client, "no_such_module_xyz")


@pytest.mark.slurm
def test_slurm_job_lost_mid_run_volume_identical(tmp_path, monkeypatch):
    """scancel one of two worker jobs mid-reconstruction: its tasks re-run, same volume."""
    import subprocess
    import threading
    import time

    import numpy as np

    import sxtdist
    from sxtdist.runner import reconstruct
    from sxtdist.volume import open_volume

    acq = tmp_path / "c.zarr"
    sxtdist.simulate(acq, preset="tiny", seed=41)
    opts = dict(block_size=4, iterations=40, progress=False)
    ref = reconstruct(acq, tmp_path / "ref.zarr", workers=1, **opts).level(0).compute()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(REPO), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]),
    )
    name = f"sxtdist-lost-{os.getpid()}"
    cluster_opts = dict(
        job_name=name, memory="1GB", log_directory=str(tmp_path / "logs"), **NO_DASHBOARD
    )
    out = tmp_path / "v.zarr"
    with get_client(
        cluster="slurm", minimum_jobs=2, maximum_jobs=2, cluster_options=cluster_opts
    ) as client:
        client.wait_for_workers(2, timeout=60)
        box = {}
        t = threading.Thread(
            target=lambda: box.setdefault("vol", reconstruct(acq, out, client=client, **opts))
        )
        t.start()
        t0 = time.monotonic()
        while not open_volume_blocks(out) and time.monotonic() - t0 < 120:
            time.sleep(0.02)
        jobs = subprocess.run(
            ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(jobs) == 2, jobs
        assert t.is_alive(), "the run ended before a job could be lost"
        subprocess.run(["scancel", jobs[0]], check=True)  # a node lost mid-run
        t.join(timeout=300)
        assert "vol" in box, "the reconstruction did not finish"
    vol = open_volume(out)
    assert vol.status == "complete"
    np.testing.assert_array_equal(vol.level(0).compute(), ref)


def open_volume_blocks(out) -> list:
    import json

    try:
        with open(os.path.join(out, "zarr.json")) as f:
            return json.load(f)["attributes"]["sxtdist"].get("blocks_done", [])
    except (OSError, ValueError, KeyError):
        return []


@pytest.mark.slurm
def test_slurm_walltime_shorter_than_a_block_is_said(tmp_path, monkeypatch):
    """A job's walltime shorter than one block: SLURM ends the job mid-block, Dask gives up
    on the block, and the cell's row says so with the walltime and where the job logs are
    (it said only Dask's ``KilledWorker: Attempted to run task '_solve_block-...'``)."""
    import sxtdist

    sxtdist.simulate(tmp_path / "c.zarr", preset="tiny", seed=42)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(REPO), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]),
    )
    logs = tmp_path / "logs"
    opts = dict(memory="1GB", walltime="00:01:00", log_directory=str(logs), **NO_DASHBOARD)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # one job's end
        rows = sxtdist.reconstruct_batch(
            [str(tmp_path / "c.zarr")],
            tmp_path / "out",
            cluster="slurm",
            minimum_jobs=1,
            maximum_jobs=1,
            cluster_options=opts,
            metrics=False,
            align=False,
            block_size=32,  # one block: the whole tiny cell
            iterations=100_000,  # minutes of work: longer than the walltime
        )
    (row,) = rows
    assert row.status == "failed", row
    assert row.message.startswith("1 worker(s) died running one of its blocks"), row.message
    assert f"(00:01:00, jobqueue.slurm.walltime); the job logs in {logs}" in row.message
    assert "DUE TO TIME LIMIT" in "".join(p.read_text() for p in logs.glob("*.err"))
