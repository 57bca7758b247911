"""Batches of cells: manifests, concurrent cells on one client, failures, resume, summary."""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

import sxtdist
from sxtdist.batch import cell_metrics, read_manifest, read_summary, reconstruct_batch
from sxtdist.errors import InputError, OutputExistsError, OutputLockedError
from sxtdist.lock import write_lock
from sxtdist.runner import reconstruct
from sxtdist.volume import open_volume

OPTS = dict(iterations=8, block_size=8, align=False)  # alignment: its own test


@pytest.fixture(scope="module")
def two_cells(tmp_path_factory):
    d = tmp_path_factory.mktemp("cells")
    for i in (1, 2):
        sxtdist.simulate(d / f"cell{i}.zarr", preset="tiny", seed=10 + i)
    return d


# --- manifests ---------------------------------------------------------------------------


def test_yaml_manifest_defaults_overrides_and_paths(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text(
        "defaults:\n  iterations: 20\n  method: sirt\n"
        "cells:\n"
        "  - acquisition: data/a.zarr\n"
        "  - acquisition: /abs/b.ome.zarr\n    name: bee\n    iterations: 5\n    scans: roi\n"
        "  - acquisition: c.zarr\n    out: sub/c-out.zarr\n    block-size: 4\n    psf: no\n"
    )
    cells = read_manifest(m, tmp_path / "out", defaults={"iterations": 3, "rtol": 1e-3})
    a, b, c = cells
    assert a.name == "a" and a.acquisition == str(tmp_path / "data" / "a.zarr")
    assert a.out == str(tmp_path / "out" / "a.zarr")
    # manifest defaults beat the caller's, a cell's own options beat both
    assert a.options == {"iterations": 20, "method": "sirt", "rtol": 1e-3}
    assert b.name == "bee" and b.acquisition == "/abs/b.ome.zarr"
    assert b.options["iterations"] == 5 and b.options["scans"] == ["roi"]
    assert c.out == str(tmp_path / "out" / "sub" / "c-out.zarr")
    assert c.options["block_size"] == 4 and c.options["psf"] is False


def test_csv_manifest_empty_fields_mean_default(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text(
        "name,acquisition,iterations,scans,psf\n"
        "one,a.zarr,,,\n"
        'two,b.zarr,7,"full,roi",false\n'
        "three,c.zarr,,roi,yes\n"
    )
    one, two, three = read_manifest(m, tmp_path / "o", defaults={"iterations": 9})
    assert one.options == {"iterations": 9}
    assert two.options == {"iterations": 7, "scans": ["full", "roi"], "psf": False}
    assert three.options == {"iterations": 9, "scans": ["roi"], "psf": True}


def test_list_of_paths_is_a_manifest(tmp_path):
    cells = read_manifest(["x/a.zarr", {"acquisition": "b.zarr", "iterations": 2}], tmp_path)
    assert [c.name for c in cells] == ["a", "b"] and cells[1].options == {"iterations": 2}


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("m.yaml", "- acquisition: a.zarr\n  iteratons: 3\n", "unknown option 'iteratons'"),
        (
            "m.yaml",
            "- acquisition: a.zarr\n  iterations: many\n",
            "iterations: iterations must be a positive number or 'auto'",
        ),
        ("m.yaml", "- name: x\n", "cell 1: no 'acquisition'"),
        ("m.yaml", "- a.zarr\n- other/a.zarr\n", "two cells are named 'a'"),
        (
            "m.yaml",
            "- {acquisition: a.zarr, out: x.zarr}\n- {acquisition: b.zarr, out: x.zarr}\n",
            "write the same output",
        ),
        ("m.yaml", "cells: []\n", "lists no cells"),
        ("m.yaml", "cells: [a.zarr]\nsettings: {}\n", "unknown top-level key(s): settings"),
        ("m.yaml", "- acquisition: a.zarr\n  scans: side\n", "scans must name full and/or roi"),
        # the cell's options as its run checks them: refused with the manifest, not as each
        # cell ran, after the queue and the alignment (seen accepted on main db261a1)
        ("m.yaml", "- acquisition: a.zarr\n  method: cgn\n", "cell 1 (a): unknown method 'cgn'"),
        ("m.yaml", "- acquisition: a.zarr\n  block_size: 0\n", "block_size must be a whole"),
        ("m.yaml", "- acquisition: a.zarr\n  iterations: 200000\n", "must be from 1 to 100000"),
        ("m.yaml", "- acquisition: a.zarr\n  method: sirt\n", "not for SIRT"),
        ("m.yaml", "- acquisition: a.zarr\n  rtol: 2\n", "rtol must be between 0 and 1"),
        ("m.yaml", "- acquisition: a.zarr\n  backend: tpu\n", "unknown backend 'tpu'"),
        ("m.csv", "acquisition,weights\na.zarr,roi=0\n", "weight of scan 'roi' must be positive"),
        ("m.yaml", "[unclosed\n", "cannot read as YAML"),
        ("m.csv", "path,iterations\na.zarr,3\n", "needs an 'acquisition' column"),
        ("m.txt", "a.zarr\n", "must be .yaml, .yml or .csv"),
    ],
)
def test_bad_manifests_are_one_line_errors(tmp_path, run_cli, name, text, problem):
    m = tmp_path / name
    m.write_text(text)
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(m, tmp_path / "o")
    code, out, err = run_cli("batch", m, "--out", tmp_path / "o")
    assert code == 2 and err.startswith(f"sxtdist: error: {m}:") and problem in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "o" / "batch-summary.csv")


def test_missing_manifest(tmp_path, run_cli):
    code, _, err = run_cli("batch", tmp_path / "none.yaml", "--out", tmp_path / "o")
    assert code == 2 and "no such manifest file" in err


# --- running -----------------------------------------------------------------------------


def test_batch_runs_cells_records_failures_and_resumes(two_cells, tmp_path, client):
    out = tmp_path / "out"
    manifest = [
        str(two_cells / "cell1.zarr"),
        {"acquisition": str(two_cells / "cell2.zarr"), "iterations": 5},
        str(two_cells / "absent.zarr"),
    ]
    rows = reconstruct_batch(manifest, out, client=client, **OPTS)
    by = {r.cell: r for r in rows}
    assert [r.cell for r in rows] == ["cell1", "cell2", "absent"]
    assert by["cell1"].status == by["cell2"].status == "done"
    assert by["absent"].status == "failed" and "no such file" in by["absent"].message
    # Each cell's volume is what a single reconstruct with its options gives.
    ref = reconstruct(
        two_cells / "cell2.zarr",
        tmp_path / "ref2.zarr",
        client=client,
        progress=False,
        iterations=5,
        block_size=8,
    )
    got = open_volume(out / "cell2.zarr")
    assert got.status == "complete"
    np.testing.assert_array_equal(got.level(0).compute(), ref.level(0).compute())
    # PSNR against the truth inside the ROI cylinder, recomputed here by hand: the peak is
    # the 99th percentile of the truth in the cell (above the ice-cytoplasm midpoint,
    # inside the ice column)
    acq = sxtdist.open_acquisition(two_cells / "cell2.zarr", "r")
    t = acq.truth.compute().astype(np.float64)
    v = got.level(0).compute().astype(np.float64)
    g, vox = acq["roi"].geometry, got.voxel_size_nm
    r = np.hypot(*np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in t.shape[1:]), indexing="ij"))
    roi = r < g.detector_shape[1] / 2 * g.pixel_size_nm / vox
    ice = acq.truth_meta["phantom"]["ice_radius_nm"] / vox
    cell = (t > (0.109 + 0.20) / 2) & (r < ice - 1)
    peak = np.percentile(t[cell], 99)
    expect = 10 * math.log10(peak**2 / np.mean((v - t)[:, roi] ** 2))
    assert by["cell2"].psnr_roi_db == pytest.approx(expect, rel=1e-9)
    expect_cell = 10 * math.log10(peak**2 / np.mean((v - t)[cell] ** 2))
    assert by["cell2"].psnr_cell_db == pytest.approx(expect_cell, rel=1e-9)
    # resolution against the truth: the central cube inside the ROI cylinder
    from sxtdist.metrics import NOT_CROSSED, frc

    half = int(roi.sum(axis=1).max() / 2 / np.sqrt(2))
    win = tuple(slice(c // 2 - half, c // 2 + half) for c in got.shape)
    curve = frc(v[win], t[win], vox)
    assert curve.frc.ndim == 1 and len(curve.frc) == half + 1  # shells of a 3D cube
    assert by["cell2"].fsc_nm == (curve.resolution("1/7") or NOT_CROSSED)
    assert by["cell2"].mtf50_nm is not None
    assert cell_metrics(str(two_cells / "cell2.zarr"), str(out / "cell2.zarr")) == {
        k: getattr(by["cell2"], k) for k in ("psnr_roi_db", "psnr_cell_db", "fsc_nm", "mtf50_nm")
    }
    # The summary CSV has every cell.
    table = read_summary(out / "batch-summary.csv")
    assert [r["cell"] for r in table] == ["cell1", "cell2", "absent"]
    assert table[1]["status"] == "done" and float(table[1]["psnr_roi_db"]) == pytest.approx(
        expect, abs=0.01
    )
    assert table[2]["psnr_roi_db"] == ""

    # A re-run skips complete cells; an unfinished one resumes from its blocks.
    vol1 = open_volume(out / "cell1.zarr")
    before = vol1.level(0).compute()
    n_blocks = vol1.meta["plan"]["n_blocks"]
    vol1.update_meta(status="running", blocks_done=[0])
    import zarr

    zarr.open_array(out / "cell1.zarr" / "0", mode="r+")[8:] = -1.0  # lost work
    rows = reconstruct_batch(manifest[:2], out, client=client, **OPTS)
    by = {r.cell: r for r in rows}
    assert by["cell1"].status == "done" and by["cell1"].message == "resumed"
    assert by["cell2"].status == "skipped"
    resumed = open_volume(out / "cell1.zarr")
    assert resumed.meta["stopping"]["blocks_run"] == n_blocks - 1
    np.testing.assert_array_equal(resumed.level(0).compute(), before)


def test_complete_cell_with_other_options_is_not_silently_kept(two_cells, tmp_path, client):
    out = tmp_path / "o"
    cell = [str(two_cells / "cell1.zarr")]
    reconstruct_batch(cell, out, client=client, metrics=False, **OPTS)
    (row,) = reconstruct_batch(cell, out, client=client, block_size=8, iterations=3, align=False)
    assert row.status == "failed" and "iterations=8" in row.message
    assert "overwrite=True" in row.message  # in Python's words: this is a call from Python
    # overwrite=True redoes every cell of a batch: the row says how to redo this one alone
    alone = f"to redo 'cell1' alone, remove {out / 'cell1.zarr'} and run the batch again"
    assert alone in row.message
    open_volume(out / "cell1.zarr").update_meta(status="running")  # stopped, of other options
    with pytest.raises(OutputExistsError, match="holds an unfinished reconstruction") as e:
        reconstruct_batch(cell, out, client=client, block_size=8, iterations=3, align=False)
    assert alone in str(e.value) and "; no cell was run (refused at cell 'cell1')" in str(e.value)
    (row,) = reconstruct_batch(
        cell,
        out,
        client=client,
        overwrite=True,
        block_size=8,
        iterations=3,
        align=False,
    )
    assert row.status == "done"
    assert open_volume(out / "cell1.zarr").meta["provenance"]["iterations"] == 3


def test_a_complete_oracle_cell_is_kept_and_a_plain_one_is_not(two_cells, tmp_path, client):
    """A re-run of an oracle cell skips it (its provenance's count is the oracle's cap, not
    what was asked: it used to be read as a fixed count and refused); the same cell asked
    for without the oracle is refused, naming it."""
    out = tmp_path / "o"
    cell = [str(two_cells / "cell1.zarr")]
    opts = dict(block_size=8, align=False, metrics=False)
    (row,) = reconstruct_batch(cell, out, client=client, oracle=True, **opts)
    assert row.status == "done"
    (row,) = reconstruct_batch(cell, out, client=client, oracle=True, **opts)
    assert row.status == "skipped", row
    (row,) = reconstruct_batch(cell, out, client=client, **opts)
    assert row.status == "failed" and "oracle=True" in row.message, row


def test_second_batch_into_the_same_directory_is_refused(two_cells, tmp_path, client, run_cli):
    out = tmp_path / "o"
    with write_lock(out):  # another batch holds the directory
        with pytest.raises(OutputLockedError, match="is being written by pid"):
            reconstruct_batch([str(two_cells / "cell1.zarr")], out, client=client, align=False)
    assert not (out / "cell1.zarr").exists()


def test_cell_whose_output_is_locked_fails_alone(two_cells, tmp_path, client):
    out = tmp_path / "o"
    out.mkdir()
    with write_lock(out / "cell1.zarr"):  # e.g. a `sxtdist reconstruct` writing it
        rows = reconstruct_batch(
            [str(two_cells / "cell1.zarr"), str(two_cells / "cell2.zarr")],
            out,
            client=client,
            metrics=False,
            **OPTS,
        )
    assert rows[0].status == "failed" and "is being written by" in rows[0].message
    assert rows[1].status == "done"


def test_a_later_cells_locked_or_unfinished_output_refuses_the_batch_first(
    two_cells, tmp_path, client, lock_held_elsewhere
):
    """A later cell's output being written by another run, or unfinished and begun with
    other parameters (not resumed), was found only when that cell ran, after the others:
    now the batch is refused before any cell runs, naming the cell and the path."""
    from sxtdist.geometry import VolumeGrid
    from sxtdist.volume import create_volume

    out = tmp_path / "o"
    out.mkdir()
    cells = [str(two_cells / "cell1.zarr"), str(two_cells / "cell2.zarr")]
    with lock_held_elsewhere(out / "cell2.zarr") as pid:
        locked = rf"cell2\.zarr: is being written by pid {pid} on \S+; wait for it to finish"
        with pytest.raises(
            OutputLockedError, match=locked + r"; no cell was run \(refused at cell 'cell2'\)"
        ):
            reconstruct_batch(cells, out, client=client, metrics=False, **OPTS)
    assert os.listdir(out) == []
    prov = {"fingerprint": "another", "method": "sirt", "iterations": 3, "scans": ["full"]}
    create_volume(out / "cell2.zarr", VolumeGrid((8, 16, 16), 20.0), 4, 4, {"provenance": prov})
    other = r"cell2\.zarr: holds an unfinished reconstruction of other data or with other param"
    with pytest.raises(OutputExistsError, match=other) as e:
        reconstruct_batch(cells, out, client=client, metrics=False, **OPTS)
    assert os.listdir(out) == ["cell2.zarr"]
    # one sentence: it had two parenthesised clauses in a row, "... again) (cell 'cell2': ..."
    assert str(e.value).endswith(
        "use overwrite=True to start over, but in a batch that redoes every cell: to redo "
        f"'cell2' alone, remove {out / 'cell2.zarr'} and run the batch again; no cell was run "
        "(refused at cell 'cell2')"
    ), e.value
    assert ") (" not in str(e.value)


def test_a_cells_report_folder_or_a_running_align_refuses_the_batch_first(
    two_cells, tmp_path, client, lock_held_elsewhere
):
    """The up-front pass checked the volumes only: a cell's alignment report folder that is
    a user's, or its acquisition being aligned by a `sxtdist align`, failed that cell when
    it came to align, after the others ran. Refused before any cell runs, naming the path;
    a cell that does not align is not refused for them (checked failing without the pass)."""
    from sxtdist.batch import _check_cell_outputs

    acqs = [tmp_path / "a1.zarr", tmp_path / "a2.zarr"]
    for i, a in enumerate(acqs, 1):
        shutil.copytree(two_cells / f"cell{i}.zarr", a)  # aligned if the refusal fails
    out = tmp_path / "o"
    (out / "a2_alignment").mkdir(parents=True)
    (out / "a2_alignment" / "shifts.csv").write_text("mine")
    before = sorted(os.walk(out))
    cells = [str(a) for a in acqs]
    mine = r"a2_alignment: already exists and was not written by sxtdist"
    with pytest.raises(OutputExistsError, match=mine) as e:
        reconstruct_batch(cells, out, client=client, metrics=False, **dict(OPTS, align=True))
    assert str(e.value).endswith("; no cell was run (refused at cell 'a2')"), e.value
    assert sorted(os.walk(out)) == before
    assert _check_cell_outputs(read_manifest(cells, out, dict(OPTS)), False) == {
        "a1": None,
        "a2": None,
    }  # align=False: no report written, none checked
    shutil.rmtree(out / "a2_alignment")
    with lock_held_elsewhere(f"{os.path.realpath(acqs[0])}.aligned") as pid:  # an align
        aligning = rf"a1\.zarr: is being aligned by pid {pid} on \S+; wait for it to finish"
        with pytest.raises(OutputLockedError, match=aligning + r"; no cell was run"):
            reconstruct_batch(cells, out, client=client, metrics=False, **dict(OPTS, align=True))
    assert not any(sxtdist.open_acquisition(a)[s].aligned for a in acqs for s in ("full", "roi"))


def test_batch_cli_prints_table_and_exit_code(two_cells, tmp_path, run_cli):
    m = tmp_path / "cells.csv"
    m.write_text(f"acquisition,iterations\n{two_cells / 'cell1.zarr'},4\nmissing.zarr,\n")
    code, out, err = run_cli(
        "batch",
        m,
        "--out",
        tmp_path / "o",
        "--workers",
        "1",
        "--block-size",
        "8",
        "--no-progress",
        "--align",
        "never",
    )
    assert code == 1  # a cell failed
    lines = out.strip().splitlines()
    assert lines[0].split()[:7] == [
        "cell",
        "status",
        "time_s",
        "psnr_roi_db",
        "psnr_cell_db",
        "fsc_nm",
        "mtf50_nm",
    ]
    assert lines[1].split()[:2] == ["cell1", "done"] and lines[2].split()[:2] == [
        "missing",
        "failed",
    ]
    assert "batch: 1 done, 1 failed" in err
    code, out, err = run_cli(
        "batch", m, "--out", tmp_path / "o", "--workers", "1", "-q", "--align", "never"
    )
    assert code == 1 and out == "" and err == ""
    rows = read_summary(tmp_path / "o" / "batch-summary.csv")
    assert [r["status"] for r in rows] == ["skipped", "failed"]


def test_resume_keeps_the_block_layout_it_started_with(two_cells, tmp_path, client):
    """The default block size follows the workers' number and memory, so a batch resumed
    on another allocation may default to another layout; the finished blocks must still
    count (same layout) and the volume be the same."""
    out = tmp_path / "o"
    acq = two_cells / "cell1.zarr"
    # Started where the default was 8 slices per block (here: 16), then interrupted.
    vol = reconstruct(
        acq,
        out / "cell1.zarr",
        client=client,
        progress=False,
        iterations=8,
        block_size=8,
    )
    before = vol.level(0).compute()
    n_blocks = vol.meta["plan"]["n_blocks"]
    vol.update_meta(status="running", blocks_done=[0, 1])
    (row,) = reconstruct_batch(
        [str(acq)], out, client=client, iterations=8, metrics=False, align=False
    )
    assert row.status == "done" and row.message == "resumed", row
    vol = open_volume(out / "cell1.zarr")
    assert vol.meta["plan"]["block_size"] == 8
    assert vol.meta["stopping"]["blocks_run"] == n_blocks - 2
    np.testing.assert_array_equal(vol.level(0).compute(), before)


def test_cells_are_aligned_first_once_and_as_sxtdist_align_does(two_cells, tmp_path, client):
    import shutil

    from sxtdist.alignment import align

    a, ref = tmp_path / "a.zarr", tmp_path / "ref.zarr"
    shutil.copytree(two_cells / "cell1.zarr", a)
    shutil.copytree(two_cells / "cell1.zarr", ref)
    assert not sxtdist.open_acquisition(a, "r")["roi"].aligned
    out = tmp_path / "o"
    # two cells on one acquisition (e.g. two reconstructions of it): aligned once
    cells = [str(a), {"acquisition": str(a), "name": "a-roi", "scans": "roi"}]
    rows = reconstruct_batch(cells, out, client=client, metrics=False, **OPTS | {"align": "auto"})
    assert [r.status for r in rows] == ["done", "done"]
    said = sorted(r.message for r in rows)  # aligned once, by one of them
    assert said[0] == ""
    acq = sxtdist.open_acquisition(a, "r")
    assert acq["full"].aligned and acq["roi"].aligned
    assert {p.name for p in out.glob("*_alignment")} <= {"a_alignment", "a-roi_alignment"}
    assert len(list(out.glob("*_alignment"))) == 1  # one report: aligned once
    # the same shifts as `sxtdist align`, and the volume reconstructed from them
    found = align(ref, client=client, report="", progress=False)
    # The alignment's warning names no cell (many run at once): the cell's row says it.
    # (Seen failing on main 900dabc: the row said "aligned" alone.)
    assert found.verdict.startswith("check views ")  # the tiny cell's ROI views are not tied
    report = next(out.glob("*_alignment"))
    assert said[1] == f"aligned: {found.verdict} (report {report})"
    expect = sxtdist.open_acquisition(ref, "r")
    for name in ("full", "roi"):
        np.testing.assert_allclose(acq[name].geometry.shifts_px, expect[name].geometry.shifts_px)
    vol = reconstruct(
        ref,
        tmp_path / "v.zarr",
        client=client,
        progress=False,
        iterations=8,
        block_size=8,
    )
    np.testing.assert_array_equal(
        open_volume(out / "a.zarr").level(0).compute(), vol.level(0).compute()
    )
    # a re-run neither aligns again nor reconstructs again
    date = acq["roi"].meta["alignment"]["date"]
    rows = reconstruct_batch(cells, out, client=client, metrics=False, **OPTS | {"align": "auto"})
    assert [r.status for r in rows] == ["skipped", "skipped"]
    again = sxtdist.open_acquisition(a, "r")
    np.testing.assert_array_equal(again["roi"].geometry.shifts_px, acq["roi"].geometry.shifts_px)
    assert again["roi"].meta["alignment"]["date"] == date


def test_yaml_names_and_paths_are_read_as_written(tmp_path):
    """review6 'YAML manifest: cells named 010, 011 write 8.zarr, 9.zarr (YAML 1.1 octal),
    007 and 7 collide': names, paths and values are the text written; each option still
    converts its own (iterations 20, psf no, weights 1)."""
    m = tmp_path / "m.yaml"
    m.write_text(
        "defaults:\n  iterations: 20\n  psf: no\n  rtol: 1.0e-3\n"
        "cells:\n"
        "  - {acquisition: 010.zarr, name: 010}\n"
        "  - {acquisition: a.zarr, name: 007, weights: {full: 1, roi: 2.5}}\n"
        "  - {acquisition: b.zarr, name: 7, out: 0x10.zarr}\n"
        "  - {acquisition: c.zarr, name: yes, block_size: 8, oracle: true}\n"
    )
    cells = read_manifest(m, tmp_path / "o")
    assert [c.name for c in cells] == ["010", "007", "7", "yes"]
    assert cells[0].acquisition == str(tmp_path / "010.zarr")
    assert cells[2].out == str(tmp_path / "o" / "0x10.zarr")
    assert cells[0].options == {"iterations": 20, "psf": False, "rtol": 1e-3}
    assert cells[1].options["weights"] == {"full": 1.0, "roi": 2.5}
    assert cells[3].options["block_size"] == 8 and cells[3].options["oracle"] is True


def test_bad_align_value(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text("- acquisition: a.zarr\n  align: sometimes\n")
    with pytest.raises(InputError, match="align must be auto, yes/always or no/never"):
        read_manifest(m, tmp_path / "o")


def test_cells_sharing_an_acquisition_ask_for_one_alignment(tmp_path):
    """A cell aligning a shared acquisition another way changed the shifts another cell
    was reconstructed with (or, aligned once, reconstructed a cell with shifts of a
    method it did not ask for): refused before any work, naming both cells."""
    (tmp_path / "a.zarr").mkdir()
    (tmp_path / "link.zarr").symlink_to(tmp_path / "a.zarr")
    m = tmp_path / "m.yaml"

    def cells(*entries):
        m.write_text(
            "".join(f"- {{acquisition: {a}, name: c{i}{e}}}\n" for i, (a, e) in enumerate(entries))
        )
        return read_manifest(m, tmp_path / "o")

    for second in (", align_method: neighbour", ", align: yes", ", align: no"):
        with pytest.raises(InputError, match="cells 'c0' and 'c1' share the acquisition") as e:
            cells(("a.zarr", ""), ("link.zarr", second))
        assert str(m) in str(e.value) and "different alignments" in str(e.value)
    with pytest.raises(InputError, match=r"align_method anchor and neighbour\)"):
        cells(("a.zarr", ""), ("a.zarr", ", align_method: neighbour"))
    with pytest.raises(InputError, match=r"\(align auto and no\)"):
        cells(("a.zarr", ""), ("a.zarr", ", align: never"))
    # the same alignment, never aligned (the method is then no matter), other acquisitions
    assert (
        len(
            cells(
                ("a.zarr", ", align_method: neighbour"), ("link.zarr", ", align_method: Neighbour")
            )
        )
        == 2
    )
    assert (
        len(cells(("a.zarr", ", align: no"), ("a.zarr", ", align: no, align_method: neighbour")))
        == 2
    )
    assert len(cells(("a.zarr", ""), ("b.zarr", ", align_method: neighbour, align: yes"))) == 2
    with pytest.raises(InputError, match="align_method must be one of anchor, neighbour"):
        cells(("a.zarr", ", align_method: nearest"))


def test_a_cell_does_not_align_what_an_unfinished_cell_resumes(two_cells, tmp_path, client):
    """An unfinished output resumes with the shifts it was begun with: another cell of its
    acquisition asking ``align: yes`` aligned it again first, and the resume was refused
    ('other data or other parameters'), or it resumed and the two cells had other shifts."""
    import shutil

    a = tmp_path / "a.zarr"
    shutil.copytree(two_cells / "cell1.zarr", a)
    out = tmp_path / "o"
    cells = [str(a), {"acquisition": str(a), "name": "a-roi", "scans": "roi"}]
    opts = OPTS | {"align": True, "concurrent": 1}
    rows = reconstruct_batch(cells, out, client=client, metrics=False, **opts)
    assert [r.status for r in rows] == ["done", "done"]
    date = sxtdist.open_acquisition(a, "r")["roi"].meta["alignment"]["date"]
    shutil.rmtree(out / "a.zarr")  # cell a as if not run yet; a-roi as if interrupted
    open_volume(out / "a-roi.zarr").update_meta(status="running", blocks_done=[0])
    rows = reconstruct_batch(cells, out, client=client, metrics=False, **opts)
    assert [(r.status, r.message) for r in rows] == [("done", ""), ("done", "resumed")], rows
    assert sxtdist.open_acquisition(a, "r")["roi"].meta["alignment"]["date"] == date
    # --overwrite starts the unfinished output over: aligning again is then allowed
    open_volume(out / "a-roi.zarr").update_meta(status="running", blocks_done=[0])
    rows = reconstruct_batch(cells, out, client=client, metrics=False, overwrite=True, **opts)
    assert [r.status for r in rows] == ["done", "done"]
    assert rows[0].message.startswith("aligned")


def test_batch_says_which_backend_its_cluster_gives(two_cells, tmp_path, monkeypatch, capsys):
    """CPU workers offer no GPU: a local batch on a GPU machine says how to use the GPU."""
    import sxtdist.backends as backends
    from sxtdist.batch import _backend_lines, read_manifest
    from sxtdist.distributed import get_client
    from sxtdist.errors import command_line_words

    m = tmp_path / "m.csv"
    m.write_text(
        f"acquisition,backend\n{two_cells / 'cell1.zarr'},\n{two_cells / 'cell2.zarr'},gpu\n"
    )
    cells = read_manifest(m, tmp_path / "out")
    with get_client(workers=1) as c:
        lines = _backend_lines(cells, c, local=True)
        assert lines[0].startswith("batch: backend cpu (auto: no usable GPU: no worker of the")
        assert "local-cuda" not in lines[0]  # no GPU here, or none usable
        assert lines[1].startswith("batch: cells asking for backend 'gpu' will fail: no usable GPU")
        gpu_here = backends.GpuInfo(True, "", [{"name": "a test GPU"}])
        monkeypatch.setattr(backends, "probe_gpu", lambda *a, **k: gpu_here)
        lines = _backend_lines(cells[:1], c, local=True)  # from Python: its words
        assert lines[0].endswith('this machine has a GPU: cluster="local-cuda" reconstructs on it')
        with command_line_words():  # as sxtdist batch says it
            lines = _backend_lines(cells[:1], c, local=True)
        assert lines[0].endswith("this machine has a GPU: --cluster local-cuda reconstructs on it")
        assert "local-cuda" not in _backend_lines(cells[:1], c, local=False)[0]


@pytest.mark.parametrize("cutoff_shell", [3, 5])
def test_fsc_resolution_of_a_known_cutoff(two_cells, tmp_path, client, cutoff_shell):
    """The truth with its central ROI cube (where the FSC is taken) cut off sharply beyond
    Fourier shell ``c`` of the cube: the correlation is 1 up to shell ``c`` and 0 from
    shell ``c + 1``, so the summary's resolution lies between the periods of those two
    shells, ``N / (c + 1)`` and ``N / c`` voxels; the truth itself never crosses."""
    import zarr

    from sxtdist import scoring
    from sxtdist.batch import cell_metrics
    from sxtdist.metrics import NOT_CROSSED

    acq_path = str(two_cells / "cell1.zarr")
    out = tmp_path / "v.zarr"
    vol = reconstruct(acq_path, out, iterations=1, client=client, progress=False)
    acq = sxtdist.open_acquisition(acq_path, "r")
    truth = acq.truth.compute()
    win = scoring.central_cube(truth.shape, scoring.Regions.of(acq))
    n = win[0].stop - win[0].start
    k = np.meshgrid(*(np.fft.fftfreq(n) * n for _ in range(3)), indexing="ij")
    shell = np.round(np.sqrt(sum(f**2 for f in k)))
    cube = np.fft.ifftn(np.fft.fftn(truth[win].astype(np.float64)) * (shell <= cutoff_shell))
    low = truth.copy()
    low[win] = cube.real
    zarr.open_array(out / "0", mode="r+")[:] = low
    period = cell_metrics(acq_path, str(out))["fsc_nm"] / vol.voxel_size_nm
    assert n / (cutoff_shell + 1) <= period <= n / cutoff_shell, (period, n)
    zarr.open_array(out / "0", mode="r+")[:] = truth
    assert cell_metrics(acq_path, str(out))["fsc_nm"] == NOT_CROSSED


def test_a_full_disk_is_one_clear_line_in_a_batch_and_an_oserror_in_python(
    two_cells, tmp_path, monkeypatch
):
    """zarrs (Rust) reports a full disk as ``RuntimeError('No space left on device (os error
    28)')``: a Python caller gets the OSError it is (errno ENOSPC, naming the output), and a
    batch's row says it as the command line does, not as ``OSError: [Errno 28] ...``."""
    import errno

    from distributed import Client, LocalCluster

    from sxtdist.volume import Volume

    def full(self, z0, data):
        raise RuntimeError("No space left on device (os error 28)")  # as zarrs raises it

    monkeypatch.setattr(Volume, "write_slices", full)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        with pytest.raises(OSError) as e:
            reconstruct(
                two_cells / "cell1.zarr", tmp_path / "v.zarr", client=client, progress=False,
                iterations=2, block_size=8,
            )  # fmt: skip
        assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "v.zarr")
        (row,) = reconstruct_batch(
            [str(two_cells / "cell1.zarr")], tmp_path / "o", client=client, **OPTS
        )
    assert row.status == "failed"
    assert row.message == (
        f"{tmp_path / 'o' / 'cell1.zarr'}: No space left on device (the disk is full: free "
        "space (or write elsewhere) and run the same command again; an unfinished "
        "reconstruction resumes)"
    )


def test_a_block_write_failing_with_an_unnamed_oserror_names_the_output(
    two_cells, tmp_path, monkeypatch
):
    """review6 "Finding 5's cause, and the Python API too: the ENOSPC of a block write is
    an OSError without a file name": zarr's local store raises Python's own OSError, which
    names no file; the reconstruction's caller gets one naming the output."""
    import errno

    from distributed import Client, LocalCluster

    from sxtdist.volume import Volume

    def full(self, z0, data):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it

    monkeypatch.setattr(Volume, "write_slices", full)
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
        pytest.raises(OSError) as e,
    ):
        reconstruct(
            two_cells / "cell1.zarr", tmp_path / "v.zarr", client=client, progress=False,
            iterations=2, block_size=8,
        )  # fmt: skip
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "v.zarr")


def test_write_lock_raises_zarrs_io_errors_as_oserror(tmp_path):
    import errno

    with pytest.raises(OSError) as e, write_lock(tmp_path / "x.zarr"):
        raise RuntimeError("Read-only file system (os error 30)")
    assert e.value.errno == errno.EROFS and e.value.filename == str(tmp_path / "x.zarr")
    with pytest.raises(RuntimeError, match="something else"), write_lock(tmp_path / "x.zarr"):
        raise RuntimeError("something else")


def test_align_always_aligns_once_and_resumes_an_unfinished_cell(two_cells, tmp_path, client):
    """review5 finding 8: two ``align: yes`` cells on one acquisition align it once, and a
    re-run resumes an unfinished cell with the shifts it began with (aligning again changed
    them, and the resume was refused as 'other data or other parameters')."""
    import shutil

    a = tmp_path / "a.zarr"
    shutil.copytree(two_cells / "cell1.zarr", a)
    out = tmp_path / "o"
    cells = [str(a), {"acquisition": str(a), "name": "a-roi", "scans": "roi"}]
    rows = reconstruct_batch(cells, out, client=client, metrics=False, **OPTS | {"align": True})
    assert [r.status for r in rows] == ["done", "done"]
    said = sorted(r.message for r in rows)
    assert said[0] == "" and said[1].startswith("aligned")
    date = sxtdist.open_acquisition(a, "r")["roi"].meta["alignment"]["date"]
    vol = open_volume(out / "a-roi.zarr")
    vol.update_meta(status="running", blocks_done=[0])  # as if interrupted
    rows = reconstruct_batch(cells, out, client=client, metrics=False, **OPTS | {"align": True})
    by = {r.cell: r for r in rows}
    assert by["a-roi"].status == "done", by["a-roi"].message
    assert (
        open_volume(out / "a-roi.zarr").meta["stopping"]["blocks_run"]
        == vol.meta["plan"]["n_blocks"] - 1
    )
    assert sxtdist.open_acquisition(a, "r")["roi"].meta["alignment"]["date"] == date


def test_the_summary_is_checked_again_each_time_it_is_rewritten(tmp_path):
    """A batch rewrites its summary as each cell starts and ends, long after it checked the
    path: a user's file put at batch-summary.csv meanwhile was replaced without a word (the
    rewrite asked nothing). Now each rewrite checks it is a summary of sxtdist's (or
    nothing): a user's file is refused, as it is, and sxtdist's own summary is replaced."""
    from sxtdist.batch import CellResult, write_summary

    path = tmp_path / "batch-summary.csv"
    row = CellResult("a", "done", 1.0, "a.zarr")
    write_summary([row], path)  # nothing there: written
    write_summary([row, CellResult("b", "running", None, "b.zarr")], path)  # its own: replaced
    assert [r["cell"] for r in read_summary(path)] == ["a", "b"]
    path.write_text("name,score\nmine,1\n")  # a user's file, put there meanwhile
    with pytest.raises(OutputExistsError, match="was not written by sxtdist"):
        write_summary([row], path)
    assert path.read_text() == "name,score\nmine,1\n"
    assert sorted(os.listdir(tmp_path)) == ["batch-summary.csv"]  # no partial left behind


def test_a_cell_whose_workers_die_says_so_and_the_batch_goes_on(two_cells, tmp_path):
    """Dask gives up on a block whose workers keep dying (out of memory; on a batch queue
    a job's walltime shorter than the block): the cell's row said only Dask's
    ``KilledWorker: Attempted to run task '_solve_block-...' on 2 different workers ...``
    (seen failing on main 900dabc); it says what died and what to do, the others run."""
    import dask
    from distributed import Client, LocalCluster

    cells = [str(two_cells / "cell1.zarr"), str(two_cells / "cell2.zarr")]
    out = tmp_path / "o"
    box: dict = {}
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),  # one death: give up
        LocalCluster(
            n_workers=1, threads_per_worker=1, dashboard_address=":0", silence_logs=50
        ) as cluster,
        Client(cluster) as client,
    ):

        def kill_the_first_block() -> None:  # the first cell's (one cell at a time)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120 and "killed" not in box:
                for keys in client.processing().values():
                    if any("_solve_block" in str(k) for k in keys):
                        pids = client.run(os.getpid)
                        os.kill(next(iter(pids.values())), signal.SIGKILL)  # mid-block
                        box["killed"] = True
                        break
                time.sleep(0.005)

        killer = threading.Thread(target=kill_the_first_block)
        killer.start()
        rows = reconstruct_batch(
            cells, out, client=client, metrics=False, concurrent=1, **OPTS | {"iterations": 40}
        )
        killer.join()
    assert box.get("killed"), "no worker was busy with a block"
    assert [r.status for r in rows] == ["failed", "done"], rows
    assert rows[0].message.startswith("1 worker(s) died running one of its blocks"), rows[0]
    assert "out of memory" in rows[0].message and "run the batch again" in rows[0].message


def test_workers_died_on_a_batch_queue_names_the_walltime_and_the_logs():
    """On SLURM the same failure names the jobs' walltime and where their logs are (the
    cluster's job options, as dask-jobqueue keeps them; run for real in test_cluster.py)."""
    from types import SimpleNamespace

    from distributed import KilledWorker

    from sxtdist.batch import _workers_died

    jobs = {"config_name": "slurm", "walltime": "00:01:00", "log_directory": "/x/logs"}
    client = SimpleNamespace(cluster=SimpleNamespace(_job_kwargs=jobs))
    worker = SimpleNamespace(address="tcp://10.0.0.1:1")
    said = _workers_died(KilledWorker("_solve_block-1", worker, 2), client)
    assert said.startswith("3 worker(s) died running one of its blocks")
    assert "(00:01:00, jobqueue.slurm.walltime)" in said and "job logs in /x/logs" in said
    assert _workers_died(ValueError("x"), client) == ""


def test_a_cell_interrupted_before_its_first_block_says_there_is_no_output(
    two_cells, tmp_path, client, monkeypatch
):
    """Stopped (Ctrl-C, SIGTERM at a job's time limit) before a cell wrote a block, its output
    is removed; its row said 'output left unfinished (status running); re-run to resume'
    (seen failing on main 900dabc, and in a real `sbatch deploy/batch-job.sh` stopped by
    SLURM's signal): it says there is none."""
    from concurrent.futures import CancelledError

    import sxtdist.batch as batch
    import sxtdist.runner as runner

    started, stopping = threading.Event(), threading.Event()

    def never_writing(*args, **kwargs):  # a cell's reconstruction before its first block
        started.set()
        stopping.wait(60)
        raise CancelledError("the batch stopped")  # as its cancelled tasks end it

    real_wait = batch.wait

    def interrupted_wait(*args, **kwargs):  # Ctrl-C in the batch's main thread
        if started.is_set() and not stopping.is_set():
            stopping.set()
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(runner, "reconstruct", never_writing)
    monkeypatch.setattr(batch, "wait", interrupted_wait)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        reconstruct_batch(
            [str(two_cells / "cell1.zarr")], out, client=client, metrics=False, **OPTS
        )
    (row,) = read_summary(out / "batch-summary.csv")
    assert row["status"] == "interrupted" and not (out / "cell1.zarr").exists()
    assert (
        row["message"]
        == "stopped before its first block was written (no output); re-run to start it"
    )
