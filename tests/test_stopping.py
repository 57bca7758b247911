"""Stopping without a truth: split-half cross-validation, ``--iterations auto``, split halves."""

from __future__ import annotations

import os

import numpy as np
import pytest

import sxtdist
from sxtdist.blocks import plan_blocks
from sxtdist.errors import ParameterError
from sxtdist.recon import (
    AUTO,
    half_views,
    parse_iterations,
    roi_region,
    sample_voxels,
    split_half_curves,
    view_subset,
)
from sxtdist.runner import build_problem, half_paths, pilot_blocks, reconstruct
from sxtdist.solvers import split_half_error
from sxtdist.volume import open_volume


@pytest.fixture(scope="module")
def client():
    from sxtdist.distributed import get_client

    with get_client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def low_dose(tmp_path_factory):
    """Tiny at a tenth of its dose: CGNE semi-converges within a few iterations."""
    path = tmp_path_factory.mktemp("low") / "low.zarr"
    sxtdist.simulate(path, preset="tiny", seed=4, photons={"full": 400, "roi": 200})
    return str(path)


def _one_block(acq, problem):
    (block,) = plan_blocks(list(problem.models.values()), problem.grid, problem.grid.nz).blocks
    rows = problem.rows(block.slab)
    data = {n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items()}
    return block, data


def test_view_subset_keeps_the_stored_indices(tiny_acq):
    acq = sxtdist.open_acquisition(tiny_acq, "r")
    problem = build_problem(acq)
    angles = acq["roi"].geometry.angles_deg
    once = view_subset(problem, {"roi": [1, 3, 5, 7]})
    twice = view_subset(once, {"roi": [0, 2]})
    assert twice.views == {"roi": (1, 5)}
    np.testing.assert_array_equal(twice.models["roi"].geometry.angles_deg, angles[[1, 5]])
    assert twice.models["full"] is problem.models["full"]
    assert set(view_subset(problem, {"full": []}).models) == {"roi"}
    even, odd = half_views(problem)  # alternate views in angle, every scan
    for name, m in problem.models.items():
        assert not set(even[name]) & set(odd[name])
        assert set(even[name]) | set(odd[name]) == set(range(m.geometry.n_angles))
        assert np.all(np.diff(np.sort(m.geometry.angles_deg[even[name]])) > 0)


def test_split_half_error_is_the_full_datas_error_up_to_a_constant():
    # each half: the object's part (bias c_k, none at the last iterate) plus its own noise,
    # growing with k; the full data are the halves' mean: half their noise power
    rng = np.random.default_rng(0)
    n = 20_000
    obj, noise_a, noise_b = rng.standard_normal((3, n))
    bias = [2.0, 1.0, 0.5, 0.25, 0.0]
    noise = [0.1, 0.3, 0.6, 1.0, 1.6]
    a = [obj * (1 - c) + s * noise_a for c, s in zip(bias, noise)]
    b = [obj * (1 - c) + s * noise_b for c, s in zip(bias, noise)]
    far = [0.5 * (((x - b[-1]) ** 2).sum() + ((y - a[-1]) ** 2).sum()) for x, y in zip(a, b)]
    between = [((x - y) ** 2).sum() for x, y in zip(a, b)]
    error = split_half_error(far, between)
    full = [((0.5 * (x + y) - obj) ** 2).sum() for x, y in zip(a, b)]
    np.testing.assert_allclose(np.diff(error), np.diff(full), rtol=0.05, atol=0.02 * n)
    assert np.argmin(error) == np.argmin(full) == 2


def test_split_half_curves_find_an_inner_minimum(low_dose):
    acq = sxtdist.open_acquisition(low_dose, "r")
    problem = build_problem(acq, iterations=30)
    block, data = _one_block(acq, problem)
    s0 = block.slab[0]
    shape = (*problem.grid.slice_shape, block.slab[1] - s0)
    core = slice(block.core[0] - s0, block.core[1] - s0)
    voxels = sample_voxels(shape, roi_region(problem), core, n=5000)
    assert voxels.size == 5000 and np.all(np.diff(voxels) > 0)
    far, between = split_half_curves(problem, block.slab, data, voxels)
    assert far.shape == between.shape == (30,)
    assert between[-1] > 3 * between[2]  # the halves part ways as they fit their own noise
    error = split_half_error(far, between)
    k = int(np.argmin(error)) + 1
    assert 2 < k < 25  # a minimum inside: low dose semi-converges early
    assert error[-1] > error[k - 1]


def test_parse_iterations():
    assert parse_iterations("auto") == AUTO and parse_iterations(" AUTO ") == AUTO
    assert parse_iterations("12") == 12 and parse_iterations(7) == 7
    for bad in ("0", "-3", "2.5", "many", None):
        with pytest.raises(ParameterError):
            parse_iterations(bad)


def test_iterations_auto_is_one_count_recorded_in_the_provenance(low_dose, tmp_path, client):
    vol = reconstruct(
        low_dose,
        tmp_path / "auto.zarr",
        client=client,
        block_size=8,
        progress=False,
    )
    prov = vol.meta["provenance"]
    rule = prov["iterations_rule"]
    assert rule["rule"] == "split-half cross-validation"
    assert prov["iterations"] == int(np.argmin(rule["estimated_error"])) + 1
    assert vol.meta["stopping"]["iterations_min"] == vol.meta["stopping"]["iterations_max"]
    problem = build_problem(sxtdist.open_acquisition(low_dose, "r"))
    plan = plan_blocks(list(problem.models.values()), problem.grid, 8)
    assert rule["pilot_blocks"] == [b.index for b in pilot_blocks(plan.blocks)]
    # the volume is the fixed-count reconstruction with that count
    fixed = reconstruct(
        low_dose,
        tmp_path / "fixed.zarr",
        iterations=prov["iterations"],
        client=client,
        block_size=8,
        progress=False,
    )
    np.testing.assert_array_equal(vol.level(0).compute(), fixed.level(0).compute())


def test_split_halves_and_their_fsc(tiny_acq, tmp_path, client, run_cli):
    out = tmp_path / "rec.zarr"
    reconstruct(tiny_acq, out, iterations=6, split_halves=True, client=client, progress=False)
    h1, h2 = half_paths(str(out))
    assert h1.endswith("rec.half1.zarr") and h2.endswith("rec.half2.zarr")
    acq = sxtdist.open_acquisition(tiny_acq, "r")
    views = [open_volume(h).meta["provenance"]["views"] for h in (h1, h2)]
    for name in ("full", "roi"):
        a, b = set(views[0][name]), set(views[1][name])
        assert not a & b and a | b == set(range(acq[name].geometry.n_angles))
        assert abs(len(a) - len(b)) <= 1
    assert open_volume(h1).meta["provenance"]["iterations"] == 6
    code, text, err = run_cli("report", out)
    assert code == 0, err
    assert "resolution_split_half_half_bit" in text and "resolution_split_half_one_seventh" in text


def test_split_half_curves_on_the_gpu_path(low_dose, monkeypatch):
    """The device plumbing of the pilot (data to the device, sampled voxels back each
    iteration) with a numpy stand-in for cupy and the ASTRA emulator: the CPU's answer."""
    import sys
    import types

    sys.path.insert(0, os.path.dirname(__file__))
    from _astra3d_emulator import EmulatedEngine

    import sxtdist.operators.gpu as gpu_mod

    fake = types.ModuleType("cupy")
    fake.asarray, fake.asnumpy = np.asarray, np.array
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(gpu_mod, "AstraCudaEngine", EmulatedEngine)
    acq = sxtdist.open_acquisition(low_dose, "r")
    problem = build_problem(acq, iterations=4, weights="equal")
    block, data = _one_block(acq, problem)
    shape = (*problem.grid.slice_shape, block.slab[1] - block.slab[0])
    voxels = sample_voxels(shape, roi_region(problem), slice(2, shape[2] - 2), n=2000)
    cpu = split_half_curves(problem, block.slab, data, voxels, "cpu")
    gpu = split_half_curves(problem, block.slab, data, voxels, "gpu")
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=2e-3)
