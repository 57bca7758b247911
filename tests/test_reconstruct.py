"""The combined reconstruction end to end: blocking invariance, seams, output, resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr

import sxtdist
from sxtdist.blocks import plan_blocks
from sxtdist.runner import build_problem, reconstruct
from sxtdist.volume import open_volume


@pytest.fixture(scope="module")
def clean_acq(tmp_path_factory):
    """Tiny, no PSF, no shifts: full-view pixels pair slices exactly (exact blocking)."""
    path = tmp_path_factory.mktemp("clean") / "clean.zarr"
    sxtdist.simulate(path, preset="tiny", seed=5, shifts_px=0, psf=False)
    return str(path)


def _run(acq, out, client, **kw):
    kw.setdefault("iterations", 12)
    return reconstruct(acq, out, client=client, progress=False, **kw)


def test_blocking_does_not_change_the_answer(clean_acq, tmp_path, client):
    acq = sxtdist.open_acquisition(clean_acq, "r")
    problem = build_problem(acq, psf=False)
    plan = plan_blocks(list(problem.models.values()), problem.grid, block_size=4)
    assert plan.exact and plan.halo == 0 and plan.period == 2
    vols = {}
    for b in (1, 4, None):
        v = _run(clean_acq, tmp_path / f"b{b}.zarr", client, block_size=b or 10_000, psf=False)
        vols[b] = v.level(0).compute()
    ref = vols[None]
    scale = np.abs(ref).max()
    for b in (1, 4):
        diff = np.abs(vols[b] - ref).max() / scale
        print(f"block size {b} vs whole: largest difference {diff:.1e} of the maximum")
        assert diff <= 1e-5, b


def test_psf_halo_seams_are_small(tiny_acq, tmp_path, client):
    """With a PSF rows couple all slices: blocks with a halo differ from the whole-volume
    solve (CG's scalars are shared per slab); at the default 30 iterations by < 1%."""
    whole = _run(
        tiny_acq, tmp_path / "whole.zarr", client, block_size=10_000, iterations=30, psf=True
    )
    whole = whole.level(0).compute()
    blocked_vol = _run(
        tiny_acq, tmp_path / "blk.zarr", client, block_size=8, iterations=30, psf=True
    )
    plan = blocked_vol.meta["plan"]
    assert not plan["exact"] and plan["halo"] > 0
    blocked = blocked_vol.level(0).compute()
    edges = [z for z in range(8, whole.shape[0], 8)]
    seam = max(np.abs(blocked[z - 1 : z + 1] - whole[z - 1 : z + 1]).max() for z in edges)
    value_range = float(whole.max() - whole.min())
    print(f"largest seam difference: {seam / value_range:.2%} of the volume's range")
    assert seam < 0.01 * value_range, seam / value_range


def test_output_is_ngff_multiscale_with_provenance(tiny_acq, tmp_path, client):
    out = tmp_path / "v.zarr"
    vol = _run(tiny_acq, out, client)
    assert vol.status == "complete" and vol.n_levels >= 2
    img = open_ome_zarr(zarr.open_group(out, mode="r"))
    assert type(img).__name__ == "Image"
    scales = [
        ds.coordinateTransformations[0].scale for ds in img.attributes.ome.multiscales[0].datasets
    ]
    assert scales[0] == [100.0, 100.0, 100.0] and scales[1] == [200.0, 200.0, 200.0]
    prov = vol.meta["provenance"]
    assert prov["method"] == "cgne" and prov["scans"] == ["full", "roi"]
    assert not os.path.exists(out / ".sxtdist.lock")


def test_complete_output_is_not_overwritten(tiny_acq, tmp_path, client, run_cli):
    out = tmp_path / "v.zarr"
    _run(tiny_acq, out, client)
    before = open_volume(out).level(0).compute()
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--workers", "1", "--iterations", "3")
    assert code == 2 and "complete volume already" in err
    np.testing.assert_array_equal(open_volume(out).level(0).compute(), before)


def test_resume_skips_done_blocks_and_matches(tiny_acq, tmp_path, client):
    ref = _run(tiny_acq, tmp_path / "ref.zarr", client, block_size=8).level(0).compute()
    out = tmp_path / "part.zarr"
    vol = _run(tiny_acq, out, client, block_size=8)
    # simulate an interruption after two blocks: forget the rest, scribble on them
    vol.update_meta(status="running", blocks_done=[0, 2])
    arr = zarr.open_array(out / "0", mode="r+")
    arr[8:16] = -1.0
    arr[24:32] = -1.0
    resumed = _run(tiny_acq, out, client, block_size=8)
    np.testing.assert_array_equal(resumed.level(0).compute(), ref)
    assert resumed.meta["stopping"]["blocks_run"] == 2


def test_resume_with_other_parameters_is_refused(tiny_acq, tmp_path, client):
    out = tmp_path / "part.zarr"
    vol = _run(tiny_acq, out, client, block_size=8)
    vol.update_meta(status="running", blocks_done=[0])
    with pytest.raises(sxtdist.SxtdistError, match="other parameters"):
        _run(tiny_acq, out, client, block_size=8, iterations=5)


def test_resume_with_a_block_size_the_plan_rounds(clean_acq, tmp_path, client):
    """A block size that the plan rounds to whole slice groups resumes the output it made
    (the check before any cluster starts plans it the same way); the layout stays."""
    out = tmp_path / "part.zarr"
    vol = _run(clean_acq, out, client, block_size=7, iterations=2)
    stored = vol.meta["plan"]["block_size"]
    assert stored != 7  # rounded: the full scan's pixels pair the slices
    vol.update_meta(status="running", blocks_done=[0])
    resumed = _run(clean_acq, out, client, block_size=7, iterations=2)
    assert resumed.meta["stopping"]["blocks_run"] == resumed.meta["plan"]["n_blocks"] - 1
    assert resumed.meta["plan"]["block_size"] == stored


def test_interior_and_sparse_only_share_the_grid(tiny_acq, tmp_path, client):
    a = _run(tiny_acq, tmp_path / "roi.zarr", client, scans=["roi"])
    b = _run(tiny_acq, tmp_path / "full.zarr", client, scans=["full"])
    assert a.shape == b.shape == sxtdist.open_acquisition(tiny_acq, "r").truth.shape


def test_combined_beats_interior_only_near_the_roi_edge(tiny_acq, tmp_path, client):
    acq = sxtdist.open_acquisition(tiny_acq, "r")
    truth = acq.truth.compute()
    from sxtdist.metrics import cylinder_mask, roi_diameter_px

    grid = build_problem(acq).grid
    d = roi_diameter_px(acq["roi"].geometry, grid.voxel_size_nm)
    ring = cylinder_mask(grid.slice_shape, d) & ~cylinder_mask(grid.slice_shape, 0.7 * d)
    err = {}
    for scans in (["roi"], ["full", "roi"]):
        x = (
            _run(tiny_acq, tmp_path / f"{'-'.join(scans)}.zarr", client, scans=scans, iterations=20)
            .level(0)
            .compute()
        )
        err[len(scans)] = np.sqrt(np.mean((x - truth)[:, ring] ** 2))
    assert err[2] < 0.7 * err[1], err


def test_sirt_converges_towards_the_truth(clean_acq, tmp_path, client):
    """SIRT on noise-free data: the error inside the ROI falls with the iterations, well
    below that of an all-zero volume, and the volume stays non-negative (its clamp)."""
    acq = sxtdist.open_acquisition(clean_acq, "r")
    truth = acq.truth.compute()
    from sxtdist.metrics import cylinder_mask, roi_diameter_px

    voxel = build_problem(acq).grid.voxel_size_nm
    disc = cylinder_mask(truth.shape[1:], roi_diameter_px(acq["roi"].geometry, voxel))
    roi = np.broadcast_to(disc, truth.shape)
    err = {}
    for its in (3, 30):
        x = _run(clean_acq, tmp_path / f"s{its}.zarr", client, method="sirt", iterations=its)
        x = x.level(0).compute()
        err[its] = float(np.sqrt(np.mean((x - truth)[roi] ** 2)))
        assert x.min() >= 0
    zero = float(np.sqrt(np.mean(truth[roi] ** 2)))
    assert err[30] < 0.75 * err[3] and err[30] < 0.15 * zero, (err, zero)


def test_bad_reconstruct_inputs(tiny_acq, tmp_path, run_cli):
    code, _, err = run_cli("reconstruct", tmp_path / "nope.zarr", tmp_path / "o.zarr")
    assert code == 2 and "no such file" in err
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "o.zarr", "--scans", "abc")
    assert code == 2 and "unknown scan" in err
    code, _, err = run_cli("reconstruct", tiny_acq, tmp_path / "o.zarr", "--iterations", "0")
    assert code == 2 and "iterations" in err
    assert not os.path.exists(tmp_path / "o.zarr")


def test_intensity_transform_is_applied_before_solving(tmp_path, client):
    """A ROI scan with an eq. 16 mismatch, corrected by the stored transform, reconstructs
    like the scan without the mismatch."""
    kw = dict(preset="tiny", seed=4, shifts_px=0, photons=0)
    plain = sxtdist.simulate(tmp_path / "plain.zarr", **kw)
    skew = sxtdist.simulate(tmp_path / "skew.zarr", intensity_mismatch=(0.8, 1.6), **kw)
    ref = _run(plain.path, tmp_path / "ref.zarr", client, scans=["roi"]).level(0).compute()
    raw = _run(skew.path, tmp_path / "raw.zarr", client, scans=["roi"]).level(0).compute()
    skew.update_scan("roi", intensity_transform={"model": "dual_energy", "phi0": 0.8, "c": 1.6})
    fixed = _run(skew.path, tmp_path / "fixed.zarr", client, scans=["roi"]).level(0).compute()
    err_raw = np.abs(raw - ref).max()
    err_fixed = np.abs(fixed - ref).max()
    assert err_fixed < 0.05 * err_raw, (err_fixed, err_raw)


@pytest.mark.parametrize("whole", [False, True])
def test_end_slices_are_constrained(tmp_path, client, whole):
    """With vertical shifts and the PSF, rows near the detector's ends see past the volume;
    the end blocks' slabs reach past the grid so those rows are modelled, and the end slices
    come out like the rest instead of staying near zero. Also with the volume in one block
    (an exact plan, as a GPU's memory allows): that plan once had no halo and dropped those
    rows (the demo's combined volume lost 1.8 dB in the ROI on the GPU)."""
    acq = sxtdist.simulate(tmp_path / "s.zarr", preset="tiny", seed=2, shifts_px=1.0)
    for n in acq.scans:
        acq.set_shifts(n, np.asarray(acq.truth_meta["shifts_px"][n]))
    problem = build_problem(acq, psf=True)
    block_size = problem.grid.nz if whole else 8
    plan = plan_blocks(list(problem.models.values()), problem.grid, block_size=block_size)
    assert plan.exact == whole
    assert plan.blocks[0].slab[0] < 0 and plan.blocks[-1].slab[1] > problem.grid.nz
    x = _run(acq.path, tmp_path / "v.zarr", client, psf=True, block_size=block_size, iterations=20)
    x = x.level(0).compute()
    truth = acq.truth.compute()
    for k in (0, -1):
        ratio = np.abs(x[k]).mean() / np.abs(truth[k]).mean()
        assert 0.7 < ratio < 1.3, (k, ratio)


def test_public_api_names_resolve():
    # README and docs call sxtdist.reconstruct(...) and friends
    import sxtdist
    from sxtdist.runner import reconstruct

    assert sxtdist.reconstruct is reconstruct
    for name in sxtdist.__all__:
        assert getattr(sxtdist, name) is not None, name


def test_oracle_scores_inside_the_radius_asked_for(tiny_acq, tmp_path, client):
    """A full-width reference compared inside an ROI must be stopped by the ROI's PSNR:
    the volume is the one block's iterate of best PSNR inside the cylinder of the radius
    asked for (a solve scored here, by hand, over that cylinder), and the two radii
    pick different iterates."""
    acq = sxtdist.open_acquisition(tiny_acq, "r")
    nz = acq.truth.shape[0]
    got = {}
    for radius in (3000.0, 500.0):
        vol = reconstruct(
            tiny_acq, tmp_path / f"{radius:.0f}.zarr", oracle=True, iterations=60,
            oracle_radius_nm=radius, block_size=nz, client=client, progress=False,
        )  # fmt: skip
        assert vol.meta["provenance"]["oracle_radius_nm"] == radius
        got[radius] = vol.level(0).compute()
        np.testing.assert_array_equal(got[radius], _best_iterate(acq, radius))
    assert not np.array_equal(got[3000.0], got[500.0])


def _best_iterate(acq, radius_nm: float) -> np.ndarray:
    """The whole volume as one block, stopped by the oracle inside ``radius_nm``."""
    from sxtdist.metrics import cylinder_mask
    from sxtdist.recon import solve_slab

    problem = build_problem(acq, iterations=60)
    nz = problem.grid.nz
    (block,) = plan_blocks(list(problem.models.values()), problem.grid, block_size=nz).blocks
    s0, s1 = block.slab
    data = {}
    for name, r in problem.rows(block.slab).items():
        data[name] = acq[name].read(rows=slice(int(r[0]), int(r[-1]) + 1))
    truth = np.zeros((s1 - s0, *problem.grid.slice_shape), np.float32)
    truth[-s0 : nz - s0] = acq.truth.compute()
    inside = (np.arange(s0, s1) >= 0) & (np.arange(s0, s1) < nz)
    v = problem.grid.voxel_size_nm
    disc = cylinder_mask(problem.grid.slice_shape, 2 * radius_nm / v)
    mask = inside[:, None, None] & disc[None]
    x, _ = solve_slab(problem, block.slab, data, truth, mask)
    return x[-s0 : nz - s0]


def test_solve_slab_leaves_the_callers_data_alone(tiny_acq):
    """A weighted scan's data are scaled for the solve, never in the caller's arrays (a
    scan contributing one row is where the layout change did not copy them)."""
    from sxtdist.recon import solve_slab

    acq = sxtdist.open_acquisition(tiny_acq, "r")
    problem = build_problem(acq, iterations=2)
    assert problem.weights["full"] != 1.0
    slab = next(
        (z, z + k)
        for k in range(1, problem.grid.nz)
        for z in range(problem.grid.nz - k)
        if problem.rows((z, z + k))["full"].size == 1
    )
    rows = problem.rows(slab)
    data = {
        n: acq[n].read(rows=slice(int(r[0]), int(r[-1]) + 1)) for n, r in rows.items() if r.size
    }
    kept = {n: d.copy() for n, d in data.items()}
    solve_slab(problem, slab, data)
    for n in data:
        np.testing.assert_array_equal(data[n], kept[n])


def test_oracle_scores_only_the_core_of_a_block(tiny_acq, tmp_path, monkeypatch, client):
    """The halo is solved to support the core and dropped; its outer slices, which few rows
    see, stay noisy. Scored with them, the oracle ran blocks far past their best (the
    full-data reference on `small`: 27.5 dB in the ROI instead of 34.0)."""
    import sxtdist.runner as runner
    from sxtdist.blocks import Block

    out = str(tmp_path / "o.zarr")
    reconstruct(tiny_acq, out, iterations=1, block_size=8, client=client)
    problem = build_problem(acq := sxtdist.open_acquisition(tiny_acq, mode="r"), psf=True)
    seen = {}

    class Result:
        iterations, stopped_by, restarts, residuals = 1, "oracle", 0, []

    def fake_solve(problem, slab, data, truth, mask, backend="cpu"):
        seen["truth"], seen["mask"] = truth, mask
        return np.zeros((slab[1] - slab[0], *problem.grid.slice_shape), np.float32), Result()

    monkeypatch.setattr(runner, "solve_slab", fake_solve)
    block = Block(1, (8, 16), (3, 21))  # a halo of 5 slices each side
    runner._solve_block(block, tiny_acq, out, problem, True, None)
    scored = np.flatnonzero(seen["mask"].any(axis=(1, 2))) + block.slab[0]
    assert scored.tolist() == list(range(8, 16))
    np.testing.assert_array_equal(seen["truth"][5:13], acq.truth[8:16].compute())


@pytest.fixture
def judged_acq(tmp_path):
    """Tiny, with a stored alignment verdict naming interior views 3 and 4 (full: trusted)."""
    path = tmp_path / "judged.zarr"
    acq = sxtdist.simulate(path, preset="tiny", seed=5, shifts_px=0)
    for name, views in (("full", []), ("roi", [3, 4])):
        verdict = f"check views {', '.join(map(str, views))} (pair misfit)" if views else "trusted"
        n = acq[name].geometry.n_angles
        acq.set_shifts(name, np.zeros((n, 2)), verdict=verdict, check_views=views)
    return str(path)


def test_exclude_untrusted_leaves_out_the_views_the_verdict_names(
    judged_acq, tmp_path, client, caplog
):
    """The named views leave the problem (logged with their indices, recorded in the
    provenance), of the views asked for where some are; the rest is untouched."""
    n_roi = sxtdist.open_acquisition(judged_acq)["roi"].geometry.n_angles
    acq = sxtdist.open_acquisition(judged_acq)
    problem = build_problem(acq, exclude_untrusted=True)
    assert problem.views == {"roi": tuple(v for v in range(n_roi) if v not in (3, 4))}
    problem = build_problem(acq, views={"roi": [1, 2, 3, 5]}, exclude_untrusted=True)
    assert problem.views == {"roi": (1, 2, 5)}
    with caplog.at_level("INFO", logger="sxtdist.runner"):
        vol = _run(judged_acq, tmp_path / "v.zarr", client, iterations=2, exclude_untrusted=True)
    assert "does not trust (stored view indices): roi 3, 4" in caplog.text
    prov = vol.meta["provenance"]
    assert prov["excluded_untrusted"] == {"roi": [3, 4]}
    assert prov["views"]["roi"] == [v for v in range(n_roi) if v not in (3, 4)]
    plain = _run(judged_acq, tmp_path / "w.zarr", client, iterations=2)
    assert plain.meta["provenance"]["excluded_untrusted"] is None
    assert plain.meta["provenance"]["fingerprint"] != prov["fingerprint"]


def test_exclude_untrusted_needs_a_verdict_and_a_view_left(judged_acq, tiny_acq, tmp_path, run_cli):
    """No verdict stored, or one naming every view of a scan: one line, exit 2, nothing
    written; the CLI's flag is the recipe's field."""
    out = tmp_path / "o.zarr"
    code, _, err = run_cli("reconstruct", tiny_acq, out, "--exclude-untrusted")
    assert code == 2 and "no alignment verdict" in err and len(err.strip().splitlines()) == 1
    acq = sxtdist.open_acquisition(judged_acq, mode="r+")
    n = acq["full"].geometry.n_angles
    acq.set_shifts("full", np.zeros((n, 2)), verdict="check views ...", check_views=list(range(n)))
    code, _, err = run_cli("reconstruct", judged_acq, out, "--exclude-untrusted")
    assert code == 2 and "names every view of scan 'full'" in err
    assert not os.path.exists(out)
    # the interior scan alone keeps its trusted views
    code, _, err = run_cli(
        "reconstruct", judged_acq, out, "--exclude-untrusted", "--scans", "roi",
        "--iterations", "2", "--workers", "1",
    )  # fmt: skip
    assert code == 0, err
    assert open_volume(out).meta["provenance"]["excluded_untrusted"] == {"roi": [3, 4]}
