"""Stopping without a truth: hold-out cross-validation, ``--iterations auto``, split halves."""

from __future__ import annotations

import numpy as np
import pytest

import sxtdist
from sxtdist.blocks import plan_blocks
from sxtdist.errors import ParameterError
from sxtdist.recon import (
    AUTO,
    holdout_misfit,
    holdout_views,
    parse_iterations,
    slab_system,
    view_subset,
)
from sxtdist.runner import build_problem, half_paths, pilot_blocks, reconstruct
from sxtdist.solvers import cgne, cross_validated_count
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
    held = holdout_views(problem)  # every 10th view of the scan with the most views
    assert list(held) == ["roi"] and np.all(np.diff(held["roi"]) == 10)


def test_holdout_misfit_falls_then_rises_near_the_best_iterate(low_dose):
    acq = sxtdist.open_acquisition(low_dose, "r")
    problem = build_problem(acq, iterations=40)
    block, data = _one_block(acq, problem)
    misfit = holdout_misfit(problem, block.slab, data, holdout_views(problem))
    assert misfit.shape == (40,)
    k = cross_validated_count(misfit)
    assert 2 < k < 30  # a minimum inside, then the held views' misfit grows: noise is fitted
    assert misfit[-1] > misfit[k - 1] * 1.05
    # patience: stop once the minimum is well behind, with the same minimum
    short = holdout_misfit(problem, block.slab, data, holdout_views(problem), patience=5)
    assert len(short) < 40 and cross_validated_count(short) == k
    np.testing.assert_allclose(short, misfit[: len(short)], rtol=1e-6)
    # the held views are the fit's test set: without holding them out they would be fitted
    ops, ys, groups, _ = slab_system(problem, block.slab, data)
    assert cgne(ops, ys, 5, groups=groups).iterations == 5


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
    assert rule["rule"] == "hold-out cross-validation"
    assert prov["iterations"] == int(np.argmin(rule["held_misfit"])) + 1
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
