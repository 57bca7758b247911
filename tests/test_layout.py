"""The projection layout: one view per shard in row bands; old acquisitions open and convert."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

import sxtdist
from sxtdist import dataset
from sxtdist.dataset import ROW_BAND, ScanData, convert_layout, projection_layout
from sxtdist.errors import InputError, OutputExistsError
from sxtdist.outputs import partial_path


def _acquisition(path, rng, rows=21):
    scans = {
        "roi": ScanData(rng.random((6, rows, 10), dtype=np.float32), np.arange(6) * 30.0, 50.0),
        "full": ScanData(rng.random((3, 11, 14), dtype=np.float32), np.arange(3) * 60.0, 100.0),
    }
    truth = rng.random((rows, 10, 10), dtype=np.float32)
    acq = sxtdist.create_acquisition(path, scans, truth=truth, truth_meta={"voxel_size_nm": 50.0})
    return acq, scans, truth


def _old_layout_copy(acq, path):
    """What sxtdist wrote before: the same group with one projection per (unsharded) chunk."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    for name in ("roi", "full", "truth"):
        src = acq.group[name]["0"]
        sub = group.create_group(name)
        chunks = (1, *src.shape[1:]) if name != "truth" else src.chunks
        arr = sub.create_array(
            "0",
            shape=src.shape,
            chunks=chunks,
            dtype="float32",
            fill_value=np.nan,
            dimension_names=src.metadata.dimension_names,
        )
        arr[...] = src[...]
        sub.attrs.update(acq.group[name].attrs.asdict())
    group.attrs.update(acq.group.attrs.asdict())
    return sxtdist.open_acquisition(path, mode="r")


def test_new_acquisitions_have_one_view_per_shard_in_row_bands(tmp_path):
    acq, scans, _ = _acquisition(tmp_path / "a.zarr", np.random.default_rng(0))
    arr = acq["roi"].array
    assert arr.shards == (1, 24, 10)  # 21 rows: three whole bands of 8
    assert arr.chunks == (1, ROW_BAND, 10)
    assert acq["roi"].data.chunksize == (1, 21, 10)  # a dask chunk per shard
    np.testing.assert_array_equal(acq["roi"].read(), scans["roi"].data)
    np.testing.assert_array_equal(acq["roi"].read(rows=slice(5, 17)), scans["roi"].data[:, 5:17])
    np.testing.assert_array_equal(acq["full"].read(angles=[2, 0]), scans["full"].data[[2, 0]])
    assert projection_layout((4, 3, 5)) == ((1, 3, 5), (1, 3, 5))  # fewer rows than a band


def test_projections_are_stored_with_lz4_over_shuffled_bytes_and_a_checksum(tmp_path):
    """Projections: Blosc LZ4 over byte-shuffled float32 (3x cheaper to decode than zstd,
    smaller on noisy views), each chunk's CRC32C kept; the truth volume keeps zstd."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    acq, scans, truth = _acquisition(tmp_path / "a.zarr", np.random.default_rng(1))
    for name in ("roi", "full"):
        inner = acq[name].array.metadata.codecs[0].codecs  # inside the shard
        blosc = [c for c in inner if isinstance(c, BloscCodec)]
        assert len(blosc) == 1 and str(getattr(blosc[0].cname, "value", blosc[0].cname)) == "lz4"
        assert str(getattr(blosc[0].shuffle, "value", blosc[0].shuffle)) == "shuffle"
        assert blosc[0].typesize == 4
        assert isinstance(inner[-1], Crc32cCodec)
        np.testing.assert_array_equal(acq[name].read(), scans[name].data)
    assert any(isinstance(c, ZstdCodec) for c in acq.group["truth"]["0"].metadata.codecs)


def test_reads_agree_with_and_without_the_zarrs_pipeline(tmp_path, monkeypatch):
    acq, scans, _ = _acquisition(tmp_path / "a.zarr", np.random.default_rng(1))
    fast = acq["roi"].array
    assert "Zarrs" in type(fast._async_array.codec_pipeline).__name__
    monkeypatch.setattr(dataset.importlib.util, "find_spec", lambda name: None)
    plain = sxtdist.open_acquisition(acq.path, mode="r")["roi"].array
    assert "Zarrs" not in type(plain._async_array.codec_pipeline).__name__
    assert "Zarrs" not in zarr.config.get("codec_pipeline.path")  # the process's config is kept
    for sel in (np.s_[:], np.s_[:, 3:19], np.s_[4], np.s_[[1, 5], 7:9]):
        np.testing.assert_array_equal(fast[sel], plain[sel])
        np.testing.assert_array_equal(fast[sel], scans["roi"].data[sel])


def test_old_layout_opens_and_converts(tmp_path, run_cli):
    acq, scans, truth = _acquisition(tmp_path / "a.zarr", np.random.default_rng(2))
    acq.set_shifts("roi", np.full((6, 2), 0.5), method="test")
    old = _old_layout_copy(sxtdist.open_acquisition(acq.path, mode="r"), tmp_path / "old.zarr")
    assert old["roi"].array.shards is None
    np.testing.assert_array_equal(old["roi"].read(rows=slice(2, 9)), scans["roi"].data[:, 2:9])
    code, _, err = run_cli("rechunk", tmp_path / "old.zarr", tmp_path / "new.zarr")
    assert code == 0, err
    new = sxtdist.open_acquisition(tmp_path / "new.zarr", mode="r")
    for name in ("roi", "full"):
        assert new[name].array.shards == projection_layout(new[name].shape)[1]
        np.testing.assert_array_equal(new[name].read(), scans[name].data)
    np.testing.assert_array_equal(new.truth.compute(), truth)
    assert new.meta == old.meta  # alignment and all
    assert new["roi"].aligned
    # the output is refused when it exists, and never the input itself
    code, _, err = run_cli("rechunk", tmp_path / "old.zarr", tmp_path / "new.zarr")
    assert code == 2 and "already exists" in err
    with pytest.raises(InputError, match="is the input"):  # the one output rule (outputs.py)
        convert_layout(tmp_path / "old.zarr", tmp_path / "old.zarr", overwrite=True)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code, _, err = run_cli("rechunk", tmp_path / "old.zarr", foreign, "--overwrite")
    assert code == 2 and (foreign / "keep.txt").read_text() == "mine"
    assert not os.path.lexists(partial_path(foreign))


def test_convert_refuses_an_existing_output_without_overwrite(tmp_path):
    acq, _, _ = _acquisition(tmp_path / "a.zarr", np.random.default_rng(3))
    convert_layout(acq.path, tmp_path / "b.zarr")
    with pytest.raises(OutputExistsError):
        convert_layout(acq.path, tmp_path / "b.zarr")
    convert_layout(acq.path, tmp_path / "b.zarr", overwrite=True)


def test_fast_codecs_in_two_threads_leave_the_process_config_alone():
    """Two threads in :func:`fast_codecs` at once (Dask's threads opening arrays) must not
    leave zarrs set for the whole process: the second one's block waits for the first."""
    import threading
    import time

    before = zarr.config.get("codec_pipeline.path")
    a_inside, b_trying, a_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with dataset.fast_codecs():
            a_inside.set()
            b_trying.wait(5)
            time.sleep(0.2)  # the second thread now tries to enter
        a_out.set()

    def second():  # leaves its block after the first has left (interleaved, without a lock)
        a_inside.wait(5)
        b_trying.set()
        with dataset.fast_codecs():
            a_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert zarr.config.get("codec_pipeline.path") == before
