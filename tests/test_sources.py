"""Inputs as chunk sources (btune_wrap.sources): real blosc2, h5py/hdf5plugin and Zarr files.

The reference for every layout is blosc2 itself: ``schunk.decompress_chunk(i)`` of the same
data written as an NDArray with the same chunk and block shapes.
"""

from __future__ import annotations

import blosc2
import h5py
import hdf5plugin
import numpy as np
import pytest
import zarr

from btune_wrap.errors import InputError
from btune_wrap.sources import (
    ArraySource,
    FrameSource,
    NDArraySource,
    SourceKind,
    chunk_buffer,
    ext_chunks,
    open_source,
)
from tests.test_engines_newest import DTYPES, SHAPES, make_data

#: More layouts: 4-D, blocks spanning whole trailing dimensions, a chunk larger than the array.
EXTRA_SHAPES = [
    ((5, 6, 7, 3), (2, 3, 4, 2), (1, 2, 3, 1)),
    ((30, 40), (30, 40), (10, 40)),
    ((9,), (16,), (5,)),
]
EXTRA_DTYPES = [np.dtype(">i4"), np.dtype([("x", "<f4", (3,)), ("y", "u1")])]


def blosc2_chunks(data: np.ndarray, chunks, blocks) -> list[bytes]:
    arr = blosc2.asarray(data, chunks=chunks, blocks=blocks)
    return [arr.schunk.decompress_chunk(i) for i in range(arr.schunk.nchunks)]


# -- chunk_buffer: byte for byte what blosc2 hands to the codecs -----------------------------


@pytest.mark.parametrize("dtype", DTYPES + EXTRA_DTYPES, ids=str)
def test_chunk_buffer_equals_blosc2_chunks(dtype):
    for shape, chunks, blocks in SHAPES + EXTRA_SHAPES:
        if np.dtype(dtype).names and np.dtype(dtype).names[0] == "x":
            data = np.zeros(shape, dtype)
            data["x"] = np.arange(np.prod(shape) * 3).reshape(*shape, 3) % 251
            data["y"] = 7
        else:
            data = make_data(shape, dtype)
        expected = blosc2_chunks(data, chunks, blocks)
        for i, ref in enumerate(expected):
            buf = chunk_buffer(data, i, chunks, blocks)
            assert buf.ndim == 1 and buf.flags.c_contiguous
            got = np.ascontiguousarray(buf).reshape(-1).view(np.uint8).tobytes()
            assert got == ref, f"{dtype} {shape} chunks {chunks} blocks {blocks}: chunk {i}"


def test_chunk_buffer_pads_edges_with_zero_bytes():
    # 101 x 37 in chunks of 40 x 16 and blocks of 16 x 6: every chunk is 48 x 18 once padded to
    # whole blocks; the last chunk holds 21 x 5 real items, the rest is zeros.
    data = np.full((101, 37), -1, dtype=np.int32)
    assert ext_chunks((40, 16), (16, 6)) == (48, 18)
    last = chunk_buffer(data, 8, (40, 16), (16, 6))
    assert last.size == 48 * 18
    assert np.count_nonzero(last == -1) == 21 * 5 and np.count_nonzero(last == 0) == 48 * 18 - 105


def test_chunk_buffer_reads_only_the_region_and_checks_the_index():
    data = np.arange(100, dtype=np.int64)
    np.testing.assert_array_equal(chunk_buffer(data, 3, (30,), (10,)), np.r_[90:100, [0] * 20])
    with pytest.raises(InputError, match="chunk index"):
        chunk_buffer(data, 4, (30,), (10,))
    with pytest.raises(InputError, match="chunks, blocks"):
        chunk_buffer(data, 0, (30, 1), (10, 1))


# -- every format gives the chunks of the same data stored as b2nd --------------------------


def write_all_formats(tmp_path, data, chunks, blocks) -> dict[str, str]:
    """The same array as .b2nd (chunks, blocks), .npy, HDF5 (LZ4 and Blosc2 filters, other
    HDF5 chunks), Zarr, and an array inside a Zarr group."""
    paths = {}
    b2 = tmp_path / "a.b2nd"
    blosc2.asarray(data, chunks=chunks, blocks=blocks, urlpath=str(b2), mode="w")
    paths["b2nd"] = str(b2)
    np.save(tmp_path / "a.npy", data)
    paths["npy"] = str(tmp_path / "a.npy")
    h5chunks = tuple(max(1, s // 3) for s in data.shape)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("grp/lz4", data=data, chunks=h5chunks, **hdf5plugin.LZ4())
        f.create_dataset("grp/b2", data=data, chunks=h5chunks, **hdf5plugin.Blosc2(cname="zstd"))
    paths["h5-lz4"] = f"{tmp_path / 'a.h5'}:/grp/lz4"
    paths["h5-blosc2"] = f"{tmp_path / 'a.h5'}:/grp/b2"
    store = str(tmp_path / "a.zarr")
    z = zarr.create_array(store=store, shape=data.shape, chunks=h5chunks, dtype=data.dtype)
    z[...] = data
    paths["zarr"] = str(tmp_path / "a.zarr")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    inner = group.create_array("sub/arr", shape=data.shape, dtype=data.dtype, chunks=h5chunks)
    inner[...] = data
    paths["zarr-group"] = f"{tmp_path / 'g.zarr'}:/sub/arr"
    return paths


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks", "blocks"),
    [
        ((10_007,), "i8", (1000,), (300,)),
        ((101, 37), "i4", (40, 16), (16, 6)),
        ((17, 13, 11), "f8", (8, 6, 5), (4, 3, 2)),
    ],
    ids=["1d", "2d", "3d"],
)
def test_every_format_gives_the_b2nd_chunks(tmp_path, shape, dtype, chunks, blocks):
    data = make_data(shape, np.dtype(dtype))
    paths = write_all_formats(tmp_path, data, chunks, blocks)
    ref = blosc2.open(paths["b2nd"])
    expected = [ref.schunk.decompress_chunk(i) for i in range(ref.schunk.nchunks)]
    own = open_source(paths["b2nd"])
    assert isinstance(own, NDArraySource) and own.kind is SourceKind.B2ND
    assert (own.chunks, own.blocks) == (chunks, blocks)
    for kind, path in paths.items():
        given = {} if kind == "b2nd" else {"chunks": chunks, "blocks": blocks}
        with open_source(path, **given) as src:
            assert src.shape == shape and src.dtype == np.dtype(dtype), kind
            assert (src.chunks, src.blocks) == (chunks, blocks), kind
            assert src.nchunks == ref.schunk.nchunks, kind
            assert src.typesize == ref.schunk.typesize, kind
            assert src.blocksize == ref.schunk.blocksize, kind
            assert src.chunk_nbytes == ref.schunk.chunksize, kind
            for i, chunk in enumerate(expected):
                buf = src.chunk(i)
                assert buf.dtype == np.uint8 and buf.ndim == 1, kind
                assert buf.tobytes() == chunk, f"{kind}: chunk {i}"
            np.testing.assert_array_equal(src.load_array(), data, err_msg=kind)
            assert path.split("/")[-1] in src.describe()


def test_default_layout_is_blosc2s_choice(tmp_path):
    data = np.arange(3_000_000, dtype=np.float32).reshape(1000, 3000)
    np.save(tmp_path / "big.npy", data)
    mine = open_source(tmp_path / "big.npy")
    theirs = blosc2.asarray(data)
    assert (mine.chunks, mine.blocks) == (tuple(theirs.chunks), tuple(theirs.blocks))
    assert mine.blocksize == theirs.schunk.blocksize
    assert mine.chunk_nbytes == theirs.schunk.chunksize
    # Given chunks only: blosc2 picks the blocks, as blosc2.asarray does.
    mine = open_source(tmp_path / "big.npy", chunks=(100, 3000))
    theirs = blosc2.asarray(data, chunks=(100, 3000))
    assert mine.blocks == tuple(theirs.blocks)


def test_b2nd_rechunked_equals_blosc2_with_those_shapes(tmp_path):
    data = make_data((64, 50), np.dtype("u2"))
    path = tmp_path / "own.b2nd"
    blosc2.asarray(data, chunks=(64, 50), blocks=(8, 50), urlpath=str(path), mode="w")
    src = open_source(path, chunks=(20, 25), blocks=(6, 10))
    assert isinstance(src, ArraySource) and src.kind is SourceKind.B2ND
    expected = blosc2_chunks(data, (20, 25), (6, 10))
    assert [src.chunk(i).tobytes() for i in range(src.nchunks)] == expected
    # Blocks only: the file's own chunks are kept.
    assert open_source(path, blocks=(4, 25)).chunks == (64, 50)


def test_b2frame_super_chunk_uses_its_own_chunks(tmp_path):
    data = np.arange(2500, dtype=np.int32)
    path = tmp_path / "raw.b2frame"
    schunk = blosc2.SChunk(
        chunksize=4000, urlpath=str(path), mode="w", contiguous=True, cparams={"typesize": 4}
    )
    schunk.append_data(data[:1000])
    schunk.append_data(data[1000:2000])
    schunk.append_data(data[2000:])  # a shorter last chunk
    del schunk
    src = open_source(path)
    assert isinstance(src, FrameSource) and src.kind is SourceKind.B2FRAME
    assert src.shape == (2500,) and src.dtype == np.dtype("u4") and src.nchunks == 3
    opened = blosc2.open(str(path))
    for i in range(3):
        assert src.chunk(i).tobytes() == opened.decompress_chunk(i)
        header_bs = blosc2.get_cbuffer_sizes(opened.get_chunk(i))[2]
        assert src.chunk_blocksize(i) == header_bs
    np.testing.assert_array_equal(src.load_array().view(np.int32), data)
    # An NDArray saved as .b2frame is an NDArray.
    blosc2.asarray(data, chunks=(500,), urlpath=str(tmp_path / "nd.b2frame"), mode="w")
    assert isinstance(open_source(tmp_path / "nd.b2frame"), NDArraySource)


# -- bad input: a clear InputError naming the input -----------------------------------------


def test_bad_inputs_are_refused_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "plain").mkdir()
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.save(tmp_path / "scalar.npy", np.float64(3))
    np.save(tmp_path / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    np.save(tmp_path / "text.npy", np.array(["ab", "cd"]))
    np.save(tmp_path / "ok.npy", np.arange(100))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("grp/ds", data=np.arange(10))
        f.create_dataset("empty", shape=(0,), dtype="i4")
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w").create_array("a", shape=(4,), dtype="i1")
    cases = [
        (tmp_path / "missing.b2nd", "an existing file"),
        (tmp_path / "notes.txt", "unknown format"),
        (tmp_path / "plain", "is a directory"),
        (tmp_path / "empty.npy", "a non-empty array"),
        (tmp_path / "scalar.npy", "at least one dimension"),
        (tmp_path / "objects.npy", "numeric dtype"),
        (tmp_path / "text.npy", "numeric dtype"),
        (f"{tmp_path / 'f.h5'}", "naming one of: /empty, /grp/ds"),
        (f"{tmp_path / 'f.h5'}:/grp", "is a group, not a dataset"),
        (f"{tmp_path / 'f.h5'}:/nope", "does not exist"),
        (f"{tmp_path / 'f.h5'}:/empty", "a non-empty array"),
        (tmp_path / "g.zarr", "a Zarr group, not an array"),
        (f"{tmp_path / 'notes.txt'}:/x", "unknown format"),
    ]
    for path, message in cases:
        with pytest.raises(InputError, match=message) as info:
            open_source(path)
        assert str(path).split("/")[-1].split(":")[0] in str(info.value), str(info.value)
    for kwargs, message in (
        ({"chunks": (10,), "blocks": (20,)}, "no larger than chunks"),
        ({"chunks": (10, 10)}, "1 positive integers"),
        ({"blocks": (0,)}, "1 positive integers"),
    ):
        with pytest.raises(InputError, match=message):
            open_source(tmp_path / "ok.npy", **kwargs)
