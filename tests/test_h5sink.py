"""Tuned HDF5 outputs: every chunk of an h5py dataset compressed with the parameters chosen for it.

Real HDF5 files through h5py + hdf5plugin's Blosc2 filter (and PyTables / b2h5py where they are
installed), real models (the ``models_dir`` session fixture).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")

import blosc2  # noqa: E402

from btune_wrap import BtuneConfig, BtuneWrapError, ConfigError, InputError  # noqa: E402
from btune_wrap.categories import SplitMode  # noqa: E402
from btune_wrap.cli import main as cli_main  # noqa: E402
from btune_wrap.h5sink import (  # noqa: E402
    BLOSC2_FILTER_ID,
    TUNING_ATTR,
    ChunkFramer,
    H5Dataset,
    parse_target,
)
from btune_wrap.infer import compress  # noqa: E402
from btune_wrap.model import load_model  # noqa: E402

from .conftest import training_data  # noqa: E402
from .test_engines_newest import SHAPES, make_data  # noqa: E402

#: Every dtype h5py stores as it is: the numeric ones, bool, big-endian, structured.
H5_DTYPES = [
    np.dtype(t)
    for t in (
        "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16", "?",
        ">i4", ">f8", [("a", "<i4"), ("b", "<f8")],
    )
] + [np.dtype([("a", "u1"), ("b", "<f8")], align=True)]  # fmt: skip

#: Blosc2 chunk header: the codec's format in bits 5-7 of the flags byte (blosclz 0, lz4 and
#: lz4hc 1, zlib 3, zstd 4); bit 4 set when blocks are not split; filters in bytes 16-21.
_FORMAT = {"blosclz": 0, "lz4": 1, "lz4hc": 1, "zlib": 3, "zstd": 4}


def _config(models_dir: Path, **kw) -> BtuneConfig:
    return BtuneConfig(models_dir=models_dir, use_inference=-1, **kw)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _header(chunk: bytes) -> tuple[int, bool, tuple[int, ...]]:
    """(codec format, blocks split, filters) from a Blosc2 chunk's header bytes."""
    flags = chunk[2]
    return flags >> 5, not flags & 0x10, tuple(chunk[16:22])


def _filters(row_filter: int) -> tuple[int, ...]:
    """The header's six filter slots for a trace row's filter id."""
    if row_filter == 35:  # bytedelta: a shuffle before it
        return (0, 0, 0, 0, 1, 35)
    return (0, 0, 0, 0, 0, row_filter)


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("shape_chunks_blocks", SHAPES, ids=["1d", "2d", "3d"])
def test_every_dtype_round_trips_through_h5py_with_edge_chunks(
    models_dir, tmp_path, shape_chunks_blocks
):
    shape, chunks, blocks = shape_chunks_blocks
    out = tmp_path / "out.h5"
    for i, dtype in enumerate(H5_DTYPES):
        data = make_data(shape, dtype, seed=i)
        written, trace = compress(
            data, _config(models_dir), urlpath=f"{out}:/d{i}", chunks=chunks, blocks=blocks
        )
        assert isinstance(written, H5Dataset)
        assert trace.engine == "python" and len(trace.rows) == written.nchunks
        with h5py.File(out, "r") as h5:
            ds = h5[f"d{i}"]
            assert ds.dtype == data.dtype and ds.chunks == chunks, dtype
            assert str(BLOSC2_FILTER_ID) in ds._filters
            np.testing.assert_array_equal(ds[...], data, err_msg=str(dtype))
            # Slicing across chunk edges reads the same items.
            cut = tuple(slice(s // 3, s - 1) for s in shape)
            np.testing.assert_array_equal(ds[cut], data[cut], err_msg=str(dtype))


def test_chunk_headers_carry_the_parameters_the_trace_records(models_dir, tmp_path):
    data = training_data(24)  # one kind of data per chunk: the model chooses differently
    out = tmp_path / "mixed.h5"
    written, trace = compress(
        data, _config(models_dir, tradeoff=0.5), urlpath=f"{out}:/mixed", chunks=(5000,)
    )
    model = load_model(models_dir, "COMP")
    seen = set()
    with h5py.File(out, "r") as h5:
        dsid = h5["mixed"].id
        assert dsid.get_num_chunks() == written.nchunks == 24
        for step, row in enumerate(trace.rows):
            mask, frame = dsid.read_direct_chunk((step * 5000,))
            assert mask == 0 and frame[2:9] == b"b2frame"  # a cframe, as the filter writes
            one = blosc2.schunk_from_cframe(frame)
            # 1-D chunks of whole blocks: a plain super-chunk, as the filter writes for 1-D.
            assert one.nchunks == 1 and "b2nd" not in one.meta
            chunk = one.get_chunk(0)
            if len(chunk) <= 32 + 8:
                continue  # a special-value chunk has no codec
            fmt, split, filters = _header(chunk)
            assert fmt == _FORMAT[row.codec], (step, row)
            assert filters == _filters(row.filter), (step, row)
            cat = model.categories[row.inference.category]
            if cat.splitmode in (SplitMode.ALWAYS, SplitMode.NEVER):
                assert split is (cat.splitmode == SplitMode.ALWAYS), (step, cat)
            seen.add((row.codec, row.filter))
    assert len(seen) >= 2, f"the model chose one category only: {seen}"


@pytest.mark.parametrize(
    "shape, chunks, blocks, plain",
    [
        ((5000, 7), (700, 7), (100, 7), False),
        ((5000,), (700,), (100,), True),
        ((5000,), (700,), (300,), False),  # blocks that do not divide the chunk: B2ND
    ],
)
def test_framer_splices_the_same_frames_blosc2_serializes(shape, chunks, blocks, plain):
    data = make_data(shape, np.float32, seed=2)
    data[:1000] = 0  # special-value chunks first: the framer learns from a later chunk
    arr = blosc2.asarray(data, chunks=chunks, blocks=blocks)
    framer = ChunkFramer(arr)
    assert framer.plain is plain
    reference = ChunkFramer(arr)
    for i in range(arr.schunk.nchunks):
        chunk = arr.schunk.get_chunk(i)
        frame = framer.frame(chunk)
        reference._update(0, chunk)
        if len(chunk) > 32 + 4:  # blosc2 records special-value chunks in the frame's index
            assert frame == reference._scratch.to_cframe(), i
        if plain:
            back = np.frombuffer(blosc2.schunk_from_cframe(frame).decompress_chunk(0), np.float32)
        else:
            back = blosc2.ndarray_from_cframe(frame)[...].view(np.float32)
        rows = data[i * 700 : (i + 1) * 700]
        np.testing.assert_array_equal(back[: len(rows)], rows)
    assert framer._head is not None  # it did splice


# -- other readers -------------------------------------------------------------------------


def test_pytables_reads_the_tuned_dataset(models_dir, tmp_path):
    tables = pytest.importorskip("tables")
    data = make_data((301, 37), np.float64, seed=5)
    out = tmp_path / "t.h5"
    compress(data, _config(models_dir), urlpath=f"{out}:/g/t", chunks=(40, 16))
    with tables.open_file(out, "r") as f:
        node = f.get_node("/g/t")
        np.testing.assert_array_equal(node[...], data)
        np.testing.assert_array_equal(node[33:77, 5:30], data[33:77, 5:30])


def test_b2h5py_slices_the_tuned_dataset_from_its_cframes(models_dir, tmp_path):
    b2h5py = pytest.importorskip("b2h5py")
    data = make_data((17, 13, 11), np.int32, seed=6)
    out = tmp_path / "b.h5"
    compress(data, _config(models_dir), urlpath=f"{out}:/b", chunks=(8, 6, 5))
    with h5py.File(out, "r") as h5:
        ds = b2h5py.B2Dataset(h5["b"])
        assert ds.is_b2_fast_slicing
        np.testing.assert_array_equal(ds[2:15, 1:12, 3:9], data[2:15, 1:12, 3:9])


@pytest.mark.skipif(shutil.which("h5ls") is None, reason="h5ls/h5dump not installed (hdf5-tools)")
def test_h5ls_and_h5dump_show_a_blosc2_filtered_chunked_dataset(models_dir, tmp_path):
    import hdf5plugin

    data = make_data((200, 300), np.float32, seed=7)
    out = tmp_path / "d.h5"
    compress(data, _config(models_dir), urlpath=f"{out}:/temperature", chunks=(50, 100))
    env = {**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH}
    listing = subprocess.run(
        ["h5ls", "-v", f"{out}/temperature"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "Chunks:    {50, 100}" in listing
    assert "blosc2-32026" in listing
    dump = subprocess.run(
        ["h5dump", "-d", "/temperature", "-s", "0,0", "-c", "1,2", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"(0,0): {data[0, 0]:g}" in dump.replace("\n", " ")


def test_a_tuned_dataset_is_an_input_like_any_hdf5_dataset(models_dir, tmp_path):
    from btune_wrap import measure
    from btune_wrap.categories import Filter, category_set
    from btune_wrap.sources import open_source

    data = training_data(6)
    out = tmp_path / "in.h5"
    compress(data, _config(models_dir), urlpath=f"{out}:/x", chunks=(5000,))
    with open_source(f"{out}:/x") as src:
        np.testing.assert_array_equal(src.load_array(), data)
    meas = measure.gather(
        f"{out}:/x",
        tmp_path / "x.meas",
        categories=category_set(codecs=(("lz4", (5,)),), filters=(Filter.NOFILTER,)),
        progress=False,
    )
    assert Path(meas.path).is_dir()


# -- the CLI and attributes ---------------------------------------------------------------


def test_cli_writes_npy_and_hdf5_inputs_to_hdf5_and_keeps_attributes(models_dir, tmp_path):
    data = make_data((40_000,), np.float32, seed=7)
    np.save(tmp_path / "data.npy", data)
    out = tmp_path / "out.h5"
    args = ["--models", str(models_dir), "--tradeoff", "0.5", "--quiet"]
    assert cli_main(["compress", str(tmp_path / "data.npy"), f"{out}:/temperature", *args,
                     "--perf-mode", "decomp"]) == 0  # fmt: skip
    raw = tmp_path / "in.h5"
    with h5py.File(raw, "w") as h5:
        ds = h5.create_dataset("raw", data=data, chunks=(4000,))
        ds.attrs["units"] = "K"
        ds.attrs["scale"] = np.float64(0.5)
        ds.attrs["window"] = np.arange(3)
    assert cli_main(["compress", f"{raw}:/raw", f"{out}:/raw", *args, "--tradeoff", "0.3"]) == 0
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["temperature"][...], data)
        np.testing.assert_array_equal(h5["raw"][...], data)
        attrs = h5["raw"].attrs
        assert attrs["units"] == "K" and attrs["scale"] == 0.5
        np.testing.assert_array_equal(attrs["window"], np.arange(3))
        tuning = json.loads(attrs[TUNING_ATTR])
        assert tuning["tradeoff"] == 0.3 and tuning["engine"] == "python"
        assert tuning["perf_mode"] == "COMP" and tuning["model"].endswith("model_comp.tflite")
        assert json.loads(h5["temperature"].attrs[TUNING_ATTR])["perf_mode"] == "DECOMP"
        assert sum(tuning["chunks_per_parameters"].values()) == h5["raw"].id.get_num_chunks()


def test_force_replaces_only_the_named_dataset(models_dir, tmp_path):
    out = tmp_path / "f.h5"
    with h5py.File(out, "w") as h5:
        h5["keep"] = np.arange(5)
        h5["x"] = np.zeros(3)
    data = make_data((9000,), np.int16, seed=8)
    compress(data, _config(models_dir), urlpath=f"{out}:/x", force=True)
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == ["keep", "x"]
        np.testing.assert_array_equal(h5["x"][...], data)
        np.testing.assert_array_equal(h5["keep"][...], np.arange(5))


# -- bad input: named errors, nothing written ---------------------------------------------


def _existing(tmp_path: Path) -> Path:
    out = tmp_path / "exist.h5"
    with h5py.File(out, "w") as h5:
        h5.create_group("grp")
        h5["ds"] = np.arange(10)
    return out


@pytest.mark.parametrize(
    "inner, force, message",
    [
        ("/grp", True, "not a group"),
        ("/ds", False, "a new dataset name"),
        ("/ds/below", True, "below groups"),
    ],
)
def test_bad_dataset_paths_are_refused_and_the_file_is_untouched(
    models_dir, tmp_path, inner, force, message
):
    out = _existing(tmp_path)
    before = _digest(out)
    with pytest.raises(InputError, match=message):
        compress(np.arange(1000.0), _config(models_dir), urlpath=f"{out}:{inner}", force=force)
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exist.h5"]


def test_read_only_file_is_refused(models_dir, tmp_path):
    out = _existing(tmp_path)
    os.chmod(out, stat.S_IRUSR | stat.S_IRGRP)
    before = _digest(out)
    try:
        with pytest.raises(InputError, match="read-only"):
            compress(np.arange(1000.0), _config(models_dir), urlpath=f"{out}:/new")
        assert _digest(out) == before
    finally:
        os.chmod(out, stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("existing", [False, True])
def test_chunks_larger_than_the_data_are_refused(models_dir, tmp_path, existing):
    out = _existing(tmp_path) if existing else tmp_path / "new.h5"
    before = _digest(out) if existing else None
    with pytest.raises(InputError, match="no larger than the data's shape"):
        compress(np.arange(100.0), _config(models_dir), urlpath=f"{out}:/x", chunks=(200,))
    assert (_digest(out) if existing else out.exists()) == (before if existing else False)


@pytest.mark.parametrize(
    "chunks, blocks, message",
    [((0,), None, "positive integer"), ((50, 2), None, "one per dimension"),
     ((50,), (60,), "no larger than chunks")],
)  # fmt: skip
def test_bad_chunk_and_block_shapes_are_refused(models_dir, tmp_path, chunks, blocks, message):
    out = tmp_path / "new.h5"
    with pytest.raises(BtuneWrapError, match=message):
        compress(np.arange(100.0), _config(models_dir), urlpath=f"{out}:/x", chunks=chunks,
                 blocks=blocks)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_of_the_same_file_is_the_input(models_dir, tmp_path):
    out = tmp_path / "same.h5"
    data = make_data((3000, 4), np.dtype([("t", "<i8"), ("v", "<f4", (3,))]), seed=1)
    with h5py.File(out, "w") as h5:
        h5["raw"] = data
        h5["raw"].attrs["units"] = "m/s"
    compress(f"{out}:/raw", _config(models_dir), urlpath=f"{out}:/tuned/raw", chunks=(500, 4))
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["tuned/raw"][...], h5["raw"][...])
        assert h5["tuned/raw"].attrs["units"] == "m/s"


def test_native_engine_is_refused_for_hdf5(models_dir, tmp_path):
    with pytest.raises(ConfigError, match="tunes only Blosc2 super-chunks"):
        compress(np.arange(100.0), _config(models_dir), "native", urlpath=tmp_path / "n.h5:/x")
    assert not (tmp_path / "n.h5").exists()


def test_output_must_not_be_the_input_dataset(models_dir, tmp_path):
    out = _existing(tmp_path)
    before = _digest(out)
    with pytest.raises(InputError, match="other than the input"):
        compress(f"{out}:/ds", _config(models_dir), urlpath=f"{out}:/ds", force=True)
    assert _digest(out) == before


@pytest.mark.parametrize("name", ["out.h5", "out.h5:/", "out.h5:/a/../b", "out.h5:/a/"])
def test_hdf5_output_needs_a_dataset_path(name, tmp_path):
    with pytest.raises(InputError, match="dataset"):
        parse_target(f"{tmp_path}/{name}")  # a string: Path would drop a trailing /


def test_other_outputs_are_not_hdf5_targets(tmp_path):
    assert parse_target(tmp_path / "x.b2nd") is None
    assert parse_target(None) is None
    target = parse_target(f"{tmp_path}/o.hdf5:g/d")
    assert target is not None and target.dataset == "/g/d" and target.file.name == "o.hdf5"


def test_a_failure_mid_write_leaves_the_file_as_it_was(models_dir, tmp_path, monkeypatch):
    out = _existing(tmp_path)
    with h5py.File(out, "r") as h5:
        old = h5["ds"][...]
    calls = []

    def failing(self, chunk):  # a write error on the third chunk (a full disk, say)
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, chunk)

    original = ChunkFramer.frame
    monkeypatch.setattr(ChunkFramer, "frame", failing)
    data = make_data((20_000,), np.float64, seed=9)
    with pytest.raises(OSError, match="disk full"):
        compress(data, _config(models_dir), urlpath=f"{out}:/new/deep/x", chunks=(2000,))
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        compress(data, _config(models_dir), urlpath=f"{out}:/ds", chunks=(2000,), force=True)
    with h5py.File(out, "r") as h5:
        names: list[str] = []
        h5.visit(names.append)
        assert sorted(names) == ["ds", "grp"]
        np.testing.assert_array_equal(h5["ds"][...], old)
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        compress(data, _config(models_dir), urlpath=f"{tmp_path}/fresh.h5:/x", chunks=(2000,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exist.h5"]


def test_cli_errors_exit_2(models_dir, tmp_path, capsys):
    out = _existing(tmp_path)
    np.save(tmp_path / "a.npy", np.arange(1000.0))
    code = cli_main(
        ["compress", str(tmp_path / "a.npy"), f"{out}:/ds", "--models", str(models_dir)]
    )
    assert code == 2
    assert "a new dataset name" in capsys.readouterr().err
