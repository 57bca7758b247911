"""Known motion in the simulator: applied inside the forward model, stored as the truth;
the motion families of the alignment benchmark; ``simulate --motion FILE``."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import sxtdist
from sxtdist.errors import InputError, ParameterError
from sxtdist.geometry import rigid_translation_nm, translation_shifts_px
from sxtdist.simulation import simulation_geometries
from sxtdist.simulation.motion import MOTION_FAMILIES, check_motion, motion_family, write_motion
from sxtdist.simulation.presets import get_preset


def _tiny_geometries():
    p = get_preset("tiny")
    return simulation_geometries(p, p.full, p.roi)


def test_motion_moves_the_views_inside_the_forward_model_and_is_stored_centred(tmp_path):
    """Noise-free, no PSF: interior view 5 moved 3 rows down shows what the still view
    shows 3 rows up, view 20 moved 3 rows up the reverse (a motion with no rigid
    translation in it, so applied as given); the other views are as without motion.
    The stored truth is the motion less one rigid translation (here none)."""
    geoms = _tiny_geometries()
    motion = {"full": np.zeros((geoms["full"].n_angles, 2)), "roi": np.zeros((36, 2))}
    motion["roi"][5] = (3.0, 0.0)
    motion["roi"][20] = (-3.0, 0.0)
    kw = dict(preset="tiny", seed=4, photons=0, psf=False)
    still = sxtdist.simulate(tmp_path / "still.zarr", shifts_px=0, **kw)
    moved = sxtdist.simulate(tmp_path / "moved.zarr", motion=motion, **kw)
    a, b = still["roi"].read(), moved["roi"].read()
    tol = 1e-4 * np.abs(a).max()
    np.testing.assert_allclose(b[5][3:], a[5][:-3], atol=tol)
    np.testing.assert_allclose(b[20][:-3], a[20][3:], atol=tol)
    assert np.abs(b[5] - a[5]).max() > 0.05 * np.abs(a[5]).max()  # it did move
    truth = {k: np.asarray(v) for k, v in moved.truth_meta["shifts_px"].items()}
    np.testing.assert_allclose(rigid_translation_nm(truth, geoms), 0.0, atol=1e-6)
    # what was taken out is one translation of the object, for both scans together
    t = rigid_translation_nm({k: motion[k] - truth[k] for k in truth}, geoms)
    for name in truth:
        np.testing.assert_allclose(
            motion[name] - truth[name], translation_shifts_px(t, geoms[name]), atol=1e-9
        )
    np.testing.assert_allclose(truth["roi"], motion["roi"], atol=1e-9)
    others = [k for k in range(36) if k not in (5, 20)]
    np.testing.assert_allclose(b[others], a[others], atol=tol)


@pytest.mark.parametrize(
    "motion, problem",
    [
        ({"roi": np.zeros((35, 2))}, "roi: 35 shifts for 36 views"),
        ({"side": np.zeros((9, 2))}, "unknown scan 'side'"),
        ({"full": [[0.0, 1.0, 2.0]] * 9}, "full: expected a list of [dy, dx] pairs"),
        ({"full": [[0.0, float("nan")]] * 9}, "full: expected a list of [dy, dx] pairs"),
    ],
)
def test_check_motion_names_the_problem(motion, problem):
    with pytest.raises(ParameterError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        check_motion(motion, _tiny_geometries())


def test_check_motion_reads_a_file_and_names_it(tmp_path):
    path = tmp_path / "stage.json"
    write_motion(path, {"roi": np.ones((36, 2))})
    got = check_motion(path, _tiny_geometries())
    np.testing.assert_array_equal(got["roi"], np.ones((36, 2)))
    path.write_text(json.dumps({"roi": [[0, 0]] * 3}))
    with pytest.raises(InputError, match=r"stage\.json: roi: 3 shifts for 36 views"):
        check_motion(str(path), _tiny_geometries())


def test_write_motion_refuses_an_existing_file_unless_overwrite(tmp_path):
    """write_motion opened any path for writing: a user's file of that name was emptied
    and replaced. Now it is refused as other outputs are (OutputExistsError), whole, with
    or without ``overwrite``; a motion file write_motion wrote is refused without
    ``overwrite=True`` and replaced with it; a folder is refused (checked failing with the
    open as it was)."""
    from sxtdist.errors import OutputExistsError

    path = tmp_path / "stage.json"
    path.write_text("my notes\n")
    for overwrite in (False, True):
        with pytest.raises(
            OutputExistsError, match=r"stage\.json: already exists and was not written by sxtdist"
        ):
            write_motion(path, {"roi": np.ones((36, 2))}, overwrite=overwrite)
    assert path.read_text() == "my notes\n"
    path.unlink()
    write_motion(path, {"roi": np.zeros((36, 2))})
    with pytest.raises(
        OutputExistsError, match=r"stage\.json: already exists \(use overwrite=True"
    ):
        write_motion(path, {"roi": np.ones((36, 2))})
    write_motion(path, {"roi": np.ones((36, 2))}, overwrite=True)
    np.testing.assert_array_equal(check_motion(path, _tiny_geometries())["roi"], np.ones((36, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage.json"]  # nothing left beside
    with pytest.raises(InputError, match=r"is a folder: name the file to write"):
        write_motion(tmp_path, {"roi": np.ones((36, 2))}, overwrite=True)


def test_write_motion_never_replaces_a_users_motion_file(tmp_path):
    """A motion file is a user's own as often as not (docs/alignment.md: "test your own
    stage's motion"), in the very format write_motion writes: ``overwrite=True`` replaced
    any file at its path. Now write_motion marks what it writes ("sxtdist": {"kind":
    "motion"}, which check_motion passes over) and replaces only such a file: a user's
    motion file is refused naming it (OutputExistsError, exit 2), byte for byte as it was,
    and nothing is left beside it (seen failing on main's write_motion: replaced)."""
    from sxtdist.errors import OutputExistsError
    from sxtdist.outputs import recognise

    path = tmp_path / "stage.json"
    theirs = json.dumps({"roi": [[0.5, -0.25]] * 36}, indent=2).encode()
    path.write_bytes(theirs)
    with pytest.raises(OutputExistsError, match=re.escape(f"{path}: already exists and was not")):
        write_motion(path, {"roi": np.ones((36, 2))}, overwrite=True)
    assert path.read_bytes() == theirs and sorted(os.listdir(tmp_path)) == ["stage.json"]
    ours = tmp_path / "ours.json"
    write_motion(ours, {"roi": np.ones((36, 2))})
    assert recognise(ours) == "motion" and recognise(path) is None
    assert json.loads(ours.read_text())["sxtdist"]["kind"] == "motion"
    np.testing.assert_array_equal(check_motion(ours, _tiny_geometries())["roi"], np.ones((36, 2)))


def test_write_motion_refuses_a_link_at_its_path_even_a_dangling_one(tmp_path):
    """A link at the path (to a user's file, or to nowhere yet) is refused, with or without
    overwrite, naming the link: the file it points to untouched and nothing made where a
    dangling one points (checked failing with os.path.exists in place of lexists)."""
    mine, gone = tmp_path / "mine.json", tmp_path / "elsewhere" / "x.json"
    mine.write_text("my notes\n")
    gone.parent.mkdir()
    for target in (mine, gone):
        link = tmp_path / f"to-{target.stem}.json"
        link.symlink_to(target)
        for overwrite in (False, True):
            with pytest.raises(InputError, match=re.escape(f"{link}: is a symbolic link to")):
                write_motion(link, {"roi": np.ones((36, 2))}, overwrite=overwrite)
    assert mine.read_text() == "my notes\n" and not gone.exists()


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"roi": [[0, 0], [1, 1]]}', "roi: 2 shifts for 36 views"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "not a readable JSON file"),
    ],
)
def test_cli_simulate_bad_motion_file_exit_2_nothing_written(run_cli, tmp_path, content, problem):
    motion = tmp_path / "m.json"
    motion.write_text(content)
    out = tmp_path / "o.zarr"
    code, _, err = run_cli("simulate", out, "--preset", "tiny", "--motion", motion)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and str(motion) in err and problem in err
    assert not out.exists()


def test_cli_simulate_motion_file_is_the_truth(run_cli, tmp_path):
    geoms = _tiny_geometries()
    rng = np.random.default_rng(0)
    motion = {k: rng.normal(0, 2, (g.n_angles, 2)) for k, g in geoms.items()}
    write_motion(tmp_path / "m.json", motion)
    code, _, err = run_cli(
        "simulate", tmp_path / "o.zarr", "--preset", "tiny", "--motion", tmp_path / "m.json"
    )
    assert code == 0, err
    truth = sxtdist.open_acquisition(tmp_path / "o.zarr").truth_meta["shifts_px"]
    moved = {k: np.asarray(motion[k]).round(6) - np.asarray(truth[k]) for k in geoms}
    t = rigid_translation_nm(moved, geoms)  # the truth is the motion less a translation
    for k in geoms:
        np.testing.assert_allclose(moved[k], translation_shifts_px(t, geoms[k]), atol=1e-6)


@pytest.mark.parametrize("family", list(MOTION_FAMILIES))
def test_motion_families(family):
    """Each family: one (dy, dx) per view of each scan, deterministic for a generator,
    and of the size its description gives."""
    p = get_preset("small")
    geoms = simulation_geometries(p, p.full, p.roi)
    a = motion_family(family, geoms, np.random.default_rng(3))
    b = motion_family(family, geoms, np.random.default_rng(3))
    for name, g in geoms.items():
        assert a[name].shape == (g.n_angles, 2)
        np.testing.assert_array_equal(a[name], b[name])
    roi = np.hypot(*a["roi"].T)
    width = geoms["roi"].detector_shape[1]
    if family == "jitter":
        assert roi.max() < 1.5
    if family == "large":
        assert np.abs(a["roi"]).max() <= width / 4 and np.abs(a["roi"]).max() > width / 8
    if family == "drift":
        steps = np.hypot(*np.diff(a["roi"], axis=0).T)
        assert 5.0 <= np.abs(a["roi"]).max() <= 12.0 and np.median(steps) < 1.5
    if family == "slips":
        steps = np.hypot(*np.diff(a["roi"], axis=0).T)
        assert 2 <= (steps > 3.0).sum() <= 3
    if family.startswith("outlier-"):
        scan = family.split("-")[1]
        off = np.hypot(*a[scan].T)
        assert (off > 8.0).sum() == 1


def test_unknown_motion_family():
    with pytest.raises(ParameterError, match="unknown motion family"):
        motion_family("earthquake", _tiny_geometries(), np.random.default_rng(0))
