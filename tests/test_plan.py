"""``sxtdist plan``: recommendation logic, dose bookkeeping, CLI and bad input."""

import json

import pytest

from sxtdist.errors import ParameterError
from sxtdist.plan import PlanRequest, _first_stable, model_cell, plan_acquisition


def small(**kw):
    base = dict(
        cell_diameter_um=16,
        roi_width_um=6,
        pixel_full_nm=40,
        pixel_roi_nm=20,
        model_px=40,
        iterations=40,
    )
    base.update(kw)
    return PlanRequest(**base)


def test_plan_follows_figure11_eq13_and_the_null_space():
    p = plan_acquisition(small())
    # interior views: 2π R_ROI f98(35 nm) = 2π · 3000 nm · 0.447/20 nm⁻¹ = 422
    assert p.n_roi == 422
    assert p.optics_resolution_nm == pytest.approx(20 / 0.447, rel=1e-2)
    # combining helps: the ROI null space with the recommended full views is below
    # the tolerance and far below interior-only
    assert p.null_space_roi <= 0.02 < p.null_space_interior_only
    assert 1 <= p.n_full < p.n_roi
    # eq. 13: I_ROI = I0 · ratio · (N0 − N_full) / N0 with N0 = N_ROI
    assert p.photons_roi == pytest.approx(1000 * p.dose_ratio * (422 - p.n_full) / 422, rel=1e-9)
    # full views keep the reference fluence: 4× the photons in a 2× larger pixel
    assert p.photons_full == pytest.approx(4000)
    # the split keeps the mean dose in the cell
    assert p.mean_dose_gy == pytest.approx(p.reference_mean_dose_gy, rel=0.03)
    assert 2.0 < p.dose_ratio < 2.9
    assert "null space in the ROI" in p.table()
    json.dumps(p.to_dict())


def test_plan_with_fixed_views_and_a_dose_budget():
    p = plan_acquisition(small(n_roi=97, n_full=19, dose_gy=1e7))
    assert (p.n_roi, p.n_full) == (97, 19)
    assert p.mean_dose_gy == pytest.approx(1e7, rel=0.03)
    assert p.target_resolution_nm == pytest.approx(2 * 3.14159265 * 3000 / 97, rel=1e-6)
    assert p.null_space_table[-1]["n_full"] == 19


def test_first_stable_ignores_a_single_dip():
    rows = [
        {"n_full": n, "roi": r}
        for n, r in [(1, 0.1), (3, 0.01), (5, 0.03), (7, 0.01), (9, 0.01), (11, 0.01)]
    ]
    assert _first_stable(rows, 0.02) == 7
    assert _first_stable(rows[:4], 0.02) is None


def test_model_cell_mean_lac():
    img = model_cell(60, 56, 0.28)
    assert img[img > 0].mean() == pytest.approx(0.28, rel=0.05)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(roi_width_um=20), "not smaller than the cell"),
        (dict(pixel_roi_nm=-1), "ROI pixel size"),
        (dict(n_full=500, n_roi=97), "no dose for the interior"),
        (dict(arc_deg=90.0), "180 or 360"),
    ],
)
def test_plan_rejects_bad_requests(kw, words):
    with pytest.raises(ParameterError, match=words):
        plan_acquisition(small(**kw))


def test_plan_cli_table_json_and_errors(run_cli):
    args = [
        "plan",
        "--cell-diameter-um",
        "16",
        "--roi-width-um",
        "6",
        "--pixel-size-nm",
        "full=40,roi=20",
    ]
    code, out, err = run_cli(*args, "--model-px", "32", "--n-roi", "97", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["n_roi"] == 97 and d["request"]["pixel_full_nm"] == 40
    code, out, err = run_cli(*args, "--model-px", "32", "--n-roi", "97", "--n-full", "5")
    assert code == 0 and "photons / pixel / view" in out
    code, out, err = run_cli(
        "plan", "--cell-diameter-um", "6", "--roi-width-um", "8", "--pixel-size-nm", "20"
    )
    assert code == 2 and err.count("\n") == 1 and "not smaller than the cell" in err
    code, out, err = run_cli(*args[:-1], "full=40")
    assert code == 2 and "give both scans" in err
