"""The alignment's task graph: the shifts it gives are main's, and its pairs run where
their views are prepared.

The shifts are pinned to those of commit 8371db8 (before the views of
``PREPARED_VIEW_PIXELS`` and more went into stretches): the graph changes where and in
which tasks the registrations run, never what they compute. The digests below were equal
to the last bit on the development machine (the 2-core VM of docs/alignment.md's Speed
section); the tolerance, 1e-12 relative, leaves room for another CPU's rounding in
vectorised sums and nothing else: any change of the maths moved these shifts by more
than 1e-6 px.
"""

from __future__ import annotations

import numpy as np
import pytest

import sxtdist

#: (fixture, coarse pass, scan) -> :func:`digest` of its shifts at commit 8371db8, aligned
#: on one in-process worker (:func:`aligned_shifts`).
MAIN_DIGESTS: dict[tuple[str, bool, str], list[float]] = {
    ('tiny', True, 'full'): [0.013262736832893252, -2.700431483243324, 34.53353117764843, 21.626589089972885, -24.126242240171, -20.06398440686207],
    ('tiny', True, 'roi'): [-0.026525473665783617, 14.20221592518649, 80.96681455117297, 137.71050639379686, -26.188602570849955, 332.0887292144838],
    ('tiny', False, 'full'): [0.014596939803554254, -2.7000174451936694, 34.542212364420465, 21.624258108114162, -24.116241335896742, -20.06158691618779],
    ('tiny', False, 'roi'): [-0.02919387960710984, 14.202301297382743, 80.97388688176171, 137.70851280998693, -25.825016109781046, 332.09540693566845],
    ('small', True, 'full'): [-0.8326259882717562, 2.3346592797936543, 205.2413509512582, 149.1537170460535, -113.50748830704894, 63.09581199387917],
    ('small', True, 'roi'): [1.6652519765435105, 0.813594158161649, 796.3948511573575, 1008.1903291998951, -1659.2441188798339, -372.50717802548746],
    ('small', False, 'full'): [-0.8326260165994536, 2.334659253512736, 205.24135104703026, 149.15371712321405, -113.50748879143894, 63.095811797357044],
    ('small', False, 'roi'): [1.665252033198903, 0.813594090404536, 796.3948504443913, 1008.1903296885322, -1659.2441121086456, -372.5071818542541],
    ('prepared', True, 'roi'): [-4.6649803316004155, -9.289005454061794, 42.61320524440755, 130.56351085382568, -43.73476113457226, -66.48133780592747],
    ('prepared', False, 'roi'): [-4.6649803316004155, -9.289005454061794, 42.61320524440755, 130.56351085382568, -43.73476113457226, -66.48133780592747],
}  # fmt: skip


def digest(d: np.ndarray) -> np.ndarray:
    """Sums over the views of ``dy``, ``dx``, their squares and their products with the
    view's index: any view's shift moving moves one of them."""
    d = np.asarray(d, np.float64)
    k = np.arange(1, len(d) + 1, dtype=np.float64)[:, None]
    return np.concatenate([d.sum(0), (d * d).sum(0), (k * d).sum(0)])


def prepared_acquisition(path) -> str:
    """12 interior views of 256² px (prepared apart: ``PREPARED_VIEW_PIXELS``; the coarse
    pass binned 4x) and 3 full views over the same 22°, random shifts of 3 px, the full
    scan's stored shifts zero."""
    from sxtdist.dataset import ScanData, create_acquisition
    from sxtdist.geometry import ScanGeometry
    from sxtdist.simulation.forward import ForwardModel, project_scan
    from sxtdist.simulation.phantom import make_cell

    rng = np.random.default_rng(5)
    phantom = make_cell(np.random.default_rng(3), 12000.0, 18000.0, 16000.0, 30.0)
    model = ForwardModel(psf_fwhm_nm=30.0, photons_per_pixel=2500.0, supersampling=1)
    angles = np.arange(12) * 2.0
    full_angles = np.linspace(0.0, angles[-1], 3)

    def views(a, shifts, pixel_nm, seed):
        g = ScanGeometry(a, pixel_nm, (256, 256), shifts_px=shifts)
        return project_scan(phantom, g, model, np.random.default_rng(seed))

    roi = views(angles, rng.normal(0.0, 3.0, (12, 2)), 60.0, 6)
    full = views(full_angles, np.zeros((3, 2)), 120.0, 7)
    create_acquisition(
        str(path), {"roi": ScanData(roi, angles, 60.0), "full": ScanData(full, full_angles, 120.0)}
    )
    sxtdist.open_acquisition(str(path)).set_shifts("full", np.zeros((3, 2)), method="truth")
    return str(path)


def fixture(name: str, tmp_path) -> tuple[str, list[str] | None]:
    """The acquisition of a fixture and the scans to align (``None``: both)."""
    path = tmp_path / f"{name}.zarr"
    if name == "prepared":
        return prepared_acquisition(path), ["roi"]
    preset, seed, shifts = {"tiny": ("tiny", 1, 1.5), "small": ("small", 1, 3.0)}[name]
    sxtdist.simulate(str(path), preset=preset, seed=seed, shifts_px=shifts)
    return str(path), None


def aligned_shifts(path: str, scans: list[str] | None, coarse: bool, client) -> dict:
    kw = {} if scans is None else {"scans": scans}
    res = sxtdist.align(path, client=client, report="", dry_run=True, coarse=coarse, **kw)
    return res.shifts


@pytest.fixture(scope="module")
def one_worker():
    """One in-process worker of one thread: nothing moves between processes."""
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        yield c


@pytest.mark.parametrize(
    ("name", "coarse"),
    [("tiny", True), ("tiny", False), ("small", True), ("prepared", True), ("prepared", False)],
)
def test_shifts_are_those_before_the_stretches(tmp_path, one_worker, name, coarse):
    """Both scans' shifts (the interior one's alone for the prepared views, the full
    scan's stored) as at commit 8371db8 (module docstring: to rounding)."""
    path, scans = fixture(name, tmp_path)
    shifts = aligned_shifts(path, scans, coarse, one_worker)
    assert sorted(shifts) == sorted(scan for n, c, scan in MAIN_DIGESTS if (n, c) == (name, coarse))
    for scan, d in shifts.items():
        np.testing.assert_allclose(
            digest(d), MAIN_DIGESTS[name, coarse, scan], rtol=1e-12, atol=1e-12, err_msg=scan
        )


@pytest.mark.parametrize("name", ["prepared", "tiny"])
def test_nothing_moves_between_two_workers(tmp_path, monkeypatch, name):
    """On two workers each stretch prepares its views and its anchor views and registers
    its pairs, the one to the next stretch's first view included: one task per worker,
    none waiting for another, and nothing moves between the workers (the workers' own
    transfer logs), where anchor views in tasks of their own and the views at the
    stretches' ends moved (5-8 of them at 1024², docs/alignment.md); the shifts are one
    worker's, to the last bit. Small views (``tiny``) too: one stretch per worker, where
    8 each made 14 views' coarse registrations again (on ``small`` 1.31x the tasks' CPU
    of one worker)."""
    from distributed import Client

    import sxtdist.alignment.tasks as tasks
    import sxtdist.distributed as distributed

    path, scans = fixture(name, tmp_path)
    graphs = []

    def recording_run_graph(client, graph, keys, *args, **kwargs):
        graphs.append((graph, keys))
        return run_graph(client, graph, keys, *args, **kwargs)

    run_graph = distributed.run_graph
    monkeypatch.setattr(distributed, "run_graph", recording_run_graph)
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0") as c:
        shifts = aligned_shifts(path, scans, True, c)
        logs = c.run(lambda dask_worker: list(dask_worker.transfer_incoming_log))
    ((graph, keys),) = graphs
    per_worker = {"prepared": tasks.PREPARED_STRETCHES_PER_WORKER}.get(
        name, tasks.STRETCHES_PER_WORKER
    )
    assert len(keys) == len(graph) == 2 * per_worker == 2  # one stretch per worker
    assert all(k.startswith("align-stretch-") for k in keys)
    for task in graph.values():  # nothing to wait for: no argument is a key
        assert not any(isinstance(a, str) and a in graph for a in task[1:])
    assert [e for log in logs.values() for e in log] == []
    for scan, d in shifts.items():
        np.testing.assert_allclose(
            digest(d), MAIN_DIGESTS[name, True, scan], rtol=1e-12, atol=1e-12, err_msg=scan
        )


def test_a_stretch_holds_few_prepared_views_however_long(tmp_path, monkeypatch):
    """A stretch lets each prepared view go after its last pair: one stretch of all 12
    views holds two at a time (a view and the next one, for their neighbour pair; three
    allowed), not all twelve (as it did before it let them go), and one or two of its 3
    anchor views, which it prepares itself, and gives the same registrations as four
    stretches."""
    import weakref

    import dask.local

    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks

    acq = sxtdist.open_acquisition(prepared_acquisition(tmp_path / "p.zarr"))
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    settings = runner.pair_settings(acq, acq["full"].geometry)
    alive, most = set(), [0]
    prepare = tasks.prepare_roi_view

    def counted(index, *args, **kwargs):
        out = prepare(index, *args, **kwargs)
        alive.add(index)
        weakref.finalize(out[0], alive.discard, index)
        most[0] = max(most[0], len(alive))
        return out

    anchors, most_anchors = set(), [0]
    prepare_anchors = tasks.prepare_anchors

    def counted_anchors(full_index, *args, **kwargs):
        out = prepare_anchors(full_index, *args, **kwargs)
        anchors.add(full_index)
        weakref.finalize(out[False][0], anchors.discard, full_index)
        most_anchors[0] = max(most_anchors[0], len(anchors))
        return out

    def run(n_stretches: int) -> list:  # one per worker
        graph = tasks.pair_graph(pairs, settings, "m", coarse=True, workers=n_stretches)
        assert len(graph.keys) == n_stretches
        return graph.results(dask.local.get_sync(graph.graph, graph.keys))[0]

    four = run(4)
    monkeypatch.setattr(tasks, "prepare_roi_view", counted)
    monkeypatch.setattr(tasks, "prepare_anchors", counted_anchors)
    one = run(1)
    assert 1 < most[0] <= 3, most
    assert len({p.j for p in pairs if p.kind == "anchor"}) == 3
    assert 1 <= most_anchors[0] <= 2, most_anchors
    for a, b in zip(four, one, strict=True):
        assert a.pair == b.pair
        np.testing.assert_array_equal(a.ncc, b.ncc)
        np.testing.assert_array_equal(a.shift, b.shift)


def test_a_stretch_of_small_views_reads_each_view_once(tmp_path, monkeypatch):
    """A stretch of views below PREPARED_VIEW_PIXELS reads each interior and full view
    once for all its pairs and coarse registrations (a pair that prepared its own views
    read an interior view up to three times and a full view once per interior view it
    anchors), lets each go after its last pair (one stretch of all the views holds a few
    at a time), and gives the registrations of eight stretches, bit for bit."""
    import weakref
    from collections import Counter

    import dask.local

    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks

    path = tmp_path / "t.zarr"
    sxtdist.simulate(str(path), preset="tiny", seed=6, shifts_px=1.5)
    acq = sxtdist.open_acquisition(str(path))
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    settings = runner.pair_settings(acq, acq["full"].geometry)
    assert not tasks.prepares_views_apart(settings.roi.detector_shape)
    reads, alive, most = Counter(), set(), [0]
    read = tasks.read_projection

    def counted(array: str, index: int):
        out = read(array, index)
        reads[array, index] += 1
        alive.add((array, index))
        weakref.finalize(out, alive.discard, (array, index))
        most[0] = max(most[0], len(alive))
        return out

    def run(n_stretches: int) -> list:  # one per worker
        graph = tasks.pair_graph(pairs, settings, "r", coarse=True, workers=n_stretches)
        assert len(graph.keys) == n_stretches
        return graph.results(dask.local.get_sync(graph.graph, graph.keys))[0]

    eight = run(8)
    monkeypatch.setattr(tasks, "read_projection", counted)
    one = run(1)
    assert set(reads.values()) == {1}
    anchored = {(p.j, p.kind) for p in pairs if p.kind == "anchor"}
    assert sorted(reads) == sorted(
        [(settings.roi_array, i) for i in range(acq["roi"].shape[0])]
        + [(settings.full_array, j) for j, _ in anchored]
    )
    assert 2 <= most[0] <= 5, most  # two interior views and their full views
    for a, b in zip(eight, one, strict=True):
        assert a.pair == b.pair
        np.testing.assert_array_equal(a.ncc, b.ncc)
        np.testing.assert_array_equal(a.shift, b.shift)


def _unaligned(a: np.ndarray, offset: int = 3) -> np.ndarray:
    """A copy of ``a`` at an odd byte address, as Dask may hand a task an array it received."""
    buf = bytearray(a.nbytes + 64)
    start = (-np.frombuffer(buf, np.uint8).ctypes.data) % 64 + offset
    out = np.ndarray(a.shape, a.dtype, buffer=memoryview(buf)[start : start + a.nbytes])
    out[...] = a
    assert a.itemsize == 1 or not out.flags.aligned
    return out


def test_a_view_from_another_worker_registers_to_the_same_bits(tmp_path):
    """A prepared anchor or interior view at an unaligned address (as a 1024² anchor
    arrived from the other worker) gives the pairs of the aligned one to the last bit.
    NumPy sums an unaligned array in another order (here a 512² one), which moved a 1024²
    pair by up to 5e-7 px on 2 workers against 1; ``tasks.aligned`` copies such arrays."""
    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks

    x = np.random.default_rng(0).normal(5.0, 1.0, (512, 512))
    moved = _unaligned(x)
    assert moved.sum() != x.sum()  # NumPy's own behaviour, which the copy is for
    (copy,) = tasks.aligned((moved,))
    assert copy.flags.aligned and copy.flags.c_contiguous and copy.sum() == x.sum()
    acq = sxtdist.open_acquisition(prepared_acquisition(tmp_path / "p.zarr"))
    settings = runner.pair_settings(acq, acq["full"].geometry)
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    for p in [q for q in pairs if q.kind == "anchor"][:3] + [
        q for q in pairs if q.kind != "anchor"
    ][:2]:
        template = tasks.prepare_roi_view(p.i, settings)
        if p.kind == "anchor":
            other = tasks.prepare_anchor(p.j, p.mirrored, settings)
        else:
            other = tasks.prepare_roi_view(p.j, settings)
        moved = [tuple(_unaligned(a) if isinstance(a, np.ndarray) else a for a in x)
                 for x in (template, other)]  # fmt: skip
        a = tasks.register_prepared(p, template, other, settings)
        b = tasks.register_prepared(p, *moved, settings)
        np.testing.assert_array_equal(a.ncc, b.ncc)
        np.testing.assert_array_equal(a.shift, b.shift, err_msg=str(p))


@pytest.mark.parametrize(("name", "binned"), [("prepared", True), ("tiny", False)])
def test_binned_coarse_registrations_come_back_without_their_maps(tmp_path, name, binned):
    """A stretch returns its binned coarse registrations without their maps (the client
    reads their seconds alone; the maps were 29 % of the bytes gathered at 1024²), their
    seconds kept, and at no binning the anchor pairs' own results, maps and all."""
    import dask.local

    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks

    acq = sxtdist.open_acquisition(fixture(name, tmp_path)[0])
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    settings = runner.pair_settings(acq, acq["full"].geometry)
    assert (settings.coarse_bin > 1) == binned
    graph = tasks.pair_graph(pairs, settings, "c", coarse=True, workers=2)
    results, coarse = graph.results(dask.local.get_sync(graph.graph, graph.keys))
    assert len(coarse) == sum(p.kind == "anchor" for p in pairs)
    pair_results = {id(r) for r in results}
    for r in coarse:
        assert r.seconds > 0
        assert (id(r) in pair_results) != binned
        assert (r.ncc.size == 0) == binned


def test_prepared_stretches_read_each_view_once(tmp_path, monkeypatch):
    """Views of PREPARED_VIEW_PIXELS and more: one stretch (one worker) reads each interior
    view and each anchored full view once, each full view prepared for the coarse pass
    (binned) and for its pairs from one read (a read per binning read it twice). On two
    workers the second stretch's first view is read once more, by the first stretch (for
    their neighbour pair), with the full view it anchors to, and a full view both
    stretches anchor to is read by each."""
    from collections import Counter

    import dask.local

    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks
    from sxtdist.alignment.pairs import views_of

    acq = sxtdist.open_acquisition(prepared_acquisition(tmp_path / "p.zarr"))
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    settings = runner.pair_settings(acq, acq["full"].geometry)
    assert tasks.prepares_views_apart(settings.roi.detector_shape) and settings.coarse_bin > 1
    reads = Counter()
    read = tasks.read_projection

    def counted(array: str, index: int):
        reads[array, index] += 1
        return read(array, index)

    monkeypatch.setattr(tasks, "read_projection", counted)
    n_roi = acq["roi"].shape[0]
    anchored = {p.j for p in pairs if p.kind == "anchor"}
    for workers in (1, 2):
        reads.clear()
        graph = tasks.pair_graph(pairs, settings, "r", coarse=True, workers=workers)
        graph.results(dask.local.get_sync(graph.graph, graph.keys))
        expected = Counter()
        for _, task, _, _, _, foreign in graph.graph.values():
            roi = {v for _, p in task for v in views_of(p)}
            expected.update((settings.roi_array, v) for v in roi)
            full = {p.j for _, p in task if p.kind == "anchor"} | {p.j for p in foreign}
            expected.update((settings.full_array, j) for j in full)
        assert reads == expected
        assert sorted({k for k in reads if k[0] == settings.full_array}) == sorted(
            (settings.full_array, j) for j in anchored
        )
        in_roi = sum(n for (array, _), n in reads.items() if array == settings.roi_array)
        assert in_roi == n_roi + len(graph.keys) - 1


def _compositions(n: int, parts: int):
    """Every way to cut ``n`` views into ``parts`` stretches of at least one view."""
    if parts == 1:
        yield [n]
        return
    for first in range(1, n - parts + 2):
        for rest in _compositions(n - first, parts - 1):
            yield [first, *rest]


@pytest.mark.parametrize("boundary", [0.0, 0.7, 1.5])
def test_stretch_sizes_give_the_least_largest_work(boundary):
    """A stretch's work counted as its views plus ``boundary`` for each but the last
    (the next stretch's first view prepared again, its coarse registration, the pair
    across): the sizes hold every view, at least one each, and their largest work is the
    least over every cut (all of them tried, up to 11 views and 4 stretches); where the
    views do not divide evenly the first stretch, which does the boundary's work, is not
    the one with the spare view."""
    from sxtdist.alignment.tasks import stretch_sizes

    def largest(sizes: list[int]) -> float:
        return max(s + (boundary if k < len(sizes) - 1 else 0.0) for k, s in enumerate(sizes))

    assert stretch_sizes(0, 2, boundary) == [0]
    for n_views in range(1, 12):
        for n_stretches in range(1, 5):
            sizes = stretch_sizes(n_views, n_stretches, boundary)
            count = min(n_views, n_stretches)
            assert len(sizes) == count and sum(sizes) == n_views and min(sizes) >= 1
            best = min(largest(c) for c in _compositions(n_views, count))
            assert largest(sizes) == pytest.approx(best), (n_views, n_stretches, sizes)
    if 0 < boundary < 1:  # under a view's work (PREPARED_BOUNDARY_VIEWS): 47 = 23 + 24
        assert stretch_sizes(47, 2, boundary) == [23, 24]
        assert stretch_sizes(48, 2, boundary) == [24, 24]


def test_prepared_stretches_share_the_views_by_their_work(tmp_path):
    """Views of PREPARED_VIEW_PIXELS and more, stretches cut by :func:`stretch_sizes` with
    PREPARED_BOUNDARY_VIEWS: each interior view in exactly one stretch, consecutive in
    the neighbour chain; with an odd count on two workers (47 views, 7 full views) each
    stretch prepares 24 interior views (the first its 23 and the second's first again)
    where an even cut of the views gave 25 against 23; and 12 views cut unevenly (5
    stretches) register each pair exactly as one stretch does."""
    import dask.local

    import sxtdist.alignment.runner as runner
    import sxtdist.alignment.tasks as tasks
    from sxtdist.alignment.pairs import plan_pairs, views_of

    angles = np.arange(47) * 2.0
    pairs = plan_pairs(angles, np.linspace(0.0, angles[-1], 7), None)
    stretch_of = tasks.view_stretches(pairs, 2, tasks.PREPARED_BOUNDARY_VIEWS)
    assert sorted(stretch_of) == list(range(47))  # each view in exactly one stretch
    assert [stretch_of[v] for v in range(47)] == [0] * 23 + [1] * 24  # angle order
    prepared = [
        len({v for p in pairs if stretch_of[p.i] == k for v in views_of(p)}) for k in (0, 1)
    ]
    assert prepared == [24, 24]

    acq = sxtdist.open_acquisition(prepared_acquisition(tmp_path / "p.zarr"))
    pairs = runner.plan(acq, ["roi"], "anchor")["pairs"]
    settings = runner.pair_settings(acq, acq["full"].geometry)

    def run(workers: int) -> list:
        graph = tasks.pair_graph(pairs, settings, "w", coarse=True, workers=workers)
        assert len(graph.keys) == workers
        return graph.results(dask.local.get_sync(graph.graph, graph.keys))[0]

    # the spare views to the last stretches (an even cut of the views: 3, 3, 2, 2, 2)
    assert tasks.stretch_sizes(12, 5, tasks.PREPARED_BOUNDARY_VIEWS) == [2, 2, 2, 3, 3]
    for a, b in zip(run(1), run(5), strict=True):
        assert a.pair == b.pair
        np.testing.assert_array_equal(a.ncc, b.ncc)
        np.testing.assert_array_equal(a.shift, b.shift)


#: Set by the test's progress bar when it counts a unit a task reported
#: (:func:`test_the_bar_counts_the_pairs_a_stretch_reports_as_it_goes`).
_COUNTED = __import__("threading").Event()


def _reports_two_of_five_then_waits() -> str:
    """A task of five units that reports two, then ends only once the client counted one."""
    from sxtdist.distributed import unit_reporter

    report = unit_reporter(every_s=0.0)
    report(1)
    report(2)
    assert _COUNTED.wait(20), "the client never counted a unit the task reported"
    return "done"


def test_the_bar_counts_the_pairs_a_stretch_reports_as_it_goes(monkeypatch):
    """With one stretch task per worker a bar of tasks stands at 0 until the end: the
    alignment's bar counts pairs, which each stretch reports as it registers them
    (``run_graph``'s ``units``, ``unit_reporter``). Here the task ends only after the
    client's bar counted a unit it reported; the rest are counted when it ends."""
    from contextlib import contextmanager

    from distributed import Client

    import sxtdist.distributed as distributed

    bars: list[tuple[int, str, list[int]]] = []

    @contextmanager
    def recording_bar(total, desc, enabled=None, unit="it"):
        counted: list[int] = []
        bars.append((total, unit, counted))

        def advance(n: int = 1) -> None:
            counted.append(n)
            if unit == "pair":
                _COUNTED.set()

        yield advance

    monkeypatch.setattr(distributed, "progress_bar", recording_bar)
    _COUNTED.clear()
    graph = {"units-test-0": (_reports_two_of_five_then_waits,)}
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        got = distributed.run_graph(c, graph, list(graph), "t", True, ([5], "pair"))
    assert got == ["done"]
    ((total, _, advances),) = [b for b in bars if b[1] == "pair"]
    assert total == 5 and sum(advances) == 5
    assert advances[0] in (1, 2) and len(advances) >= 2  # a report counted before the end


def test_a_worker_imports_only_what_its_tasks_use():
    """A worker unpickling an alignment task imports ``sxtdist.alignment.tasks`` (and the
    package above it) in a fresh process: not the runner (the joint solve's sparse
    solvers, the verdict), nor Dask's arrays and the OME-NGFF models that the dataset's
    writers and ``open_acquisition`` use (0.45 s of a fresh worker's first task inside
    ``sxtdist align``, speed15: ``python -X importtime -c "import sxtdist.alignment.tasks"``),
    nor ``scipy.stats``, ``distributed``, ASTRA or matplotlib; what it reads a view with
    (zarr) it does import. The package's public names still come on first use."""
    import subprocess
    import sys
    from pathlib import Path

    late = (
        "sxtdist.alignment.runner",
        "sxtdist.alignment.shifts",
        "dask.array",
        "ome_zarr_models",
        "sxtdist.io.ngff",
        "scipy.stats",
        "distributed",
        "astra",
        "matplotlib",
    )
    code = (
        "import sys, sxtdist.alignment.tasks\n"
        f"print(' '.join(m for m in {late!r} if m in sys.modules))\n"
        "print('zarr' in sys.modules)\n"
        "import sxtdist.alignment as a\n"
        "print(a.align.__module__, a.AlignOptions.__module__, a.AlignmentResult.__module__)"
    )
    root = Path(sxtdist.__file__).resolve().parent.parent  # the tree under test
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded, zarr_loaded, public = out.stdout.splitlines()
    assert loaded.split() == []
    assert zarr_loaded == "True"
    assert public.split() == [
        "sxtdist.alignment.runner",
        "sxtdist.alignment.options",
        "sxtdist.alignment.result",
    ]
