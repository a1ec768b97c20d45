"""The Python engine's fast paths write what the general paths write.

Chunk buffers taken as views of 1-D data, the layout computed once per shape, the probe
validated once per layout (:class:`btune_wrap.probe.ChunkProbe`), run over many chunks in one
call or in a background thread, must give the same chunks, shapes and features as
``sources.chunk_buffer``, ``blosc2.empty`` and ``chunk_features``; the engine must write the
same array whether it probes in the background or not. Real blosc2, real data, real models.
"""

from __future__ import annotations

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig
from btune_wrap.categories import default_category
from btune_wrap.compressor import ChunkCodec, compiled_method
from btune_wrap.data import mixed_int, rand_int
from btune_wrap.errors import InputError
from btune_wrap.infer import compress
from btune_wrap.model import load_model
from btune_wrap.probe import ChunkProbe, chunk_features
from btune_wrap.sources import ChunkReader, chunk_buffer

from .test_engines_newest import iter_chunk_buffers

CASES = {
    "1-D whole chunks": (rand_int(60_000, seed=1), (5000,), (1000,)),
    "1-D edge chunk": (rand_int(61_234, seed=2), (5000,), (1000,)),
    "1-D blocks not dividing chunks": (rand_int(30_000, seed=3), (5000,), (1200,)),
    "1-D strided": (rand_int(40_000, seed=4)[::2], (4000,), (1000,)),
    "2-D": (np.cumsum(np.arange(300 * 70, dtype="f4").reshape(300, 70), axis=1), (64, 40), (16, 8)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_chunk_buffers_are_the_reference_layout(name):
    data, chunks, blocks = CASES[name]
    arr = blosc2.empty(data.shape, dtype=data.dtype, chunks=chunks, blocks=blocks)
    bufs = list(iter_chunk_buffers(data, arr))
    assert len(bufs) == arr.schunk.nchunks
    for i, buf in enumerate(bufs):
        ref = chunk_buffer(data, i, chunks, blocks).view(np.uint8)
        assert buf.dtype == np.uint8 and buf.ndim == 1 and buf.flags.c_contiguous
        assert buf.nbytes == arr.schunk.chunksize
        np.testing.assert_array_equal(buf, ref)


@pytest.mark.parametrize("name", list(CASES))
def test_written_chunks_are_the_reference_bytes(name):
    data, chunks, blocks = CASES[name]
    config = BtuneConfig(models_dir=None, use_inference=0)
    arr, trace = compress(
        data, config, "python", chunks=chunks, blocks=blocks, nthreads=1, max_tweaks=0
    )
    np.testing.assert_array_equal(arr[()], data)
    schunk = arr.schunk
    cparams = default_category().to_cparams(
        typesize=schunk.typesize, blocksize=schunk.blocksize, nthreads=1
    )
    ref = ChunkCodec(cparams, schunk.chunksize)
    for i in range(schunk.nchunks):
        expected = ref.compress(chunk_buffer(data, i, chunks, blocks).view(np.uint8))
        assert schunk.get_chunk(i) == expected, f"chunk {i}"
    assert [row.step for row in trace.rows] == list(range(schunk.nchunks))
    assert {row.state for row in trace.rows} == {"STOP"}
    cbytes = [len(schunk.get_chunk(i)) for i in range(schunk.nchunks)]
    assert [row.cratio for row in trace.rows] == [schunk.chunksize / c for c in cbytes]
    assert all(np.isfinite(row.score) for row in trace.rows)


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks"),
    [((2_000_000,), "i8", None), ((2_000_000,), "i8", (250_000,)), ((300, 700), "f4", None)],
)
def test_layout_is_blosc2s_choice(shape, dtype, chunks):
    data = np.zeros(shape, dtype=dtype)
    data.flat[::7] = 1
    expected = blosc2.empty(shape, dtype=dtype, chunks=chunks)
    config = BtuneConfig(models_dir=None, use_inference=0)
    for _ in range(2):  # computed, then cached
        arr, _ = compress(data, config, "python", chunks=chunks, max_tweaks=0)
        assert (arr.chunks, arr.blocks) == (expected.chunks, expected.blocks)


def test_chunk_probe_is_chunk_features():
    data = rand_int(40_000, seed=7)
    arr = blosc2.empty(data.shape, dtype=data.dtype, chunks=(5000,), blocks=(1000,))
    probe = ChunkProbe(arr.schunk.chunksize, arr.schunk.typesize, arr.schunk.blocksize)
    assert (probe.nblocks, probe.blocksize) == (5, 8000)
    for buf in iter_chunk_buffers(data, arr):
        got = probe(buf)
        ref = chunk_features(buf, arr.schunk.typesize, arr.schunk.blocksize)
        assert got.cratio == ref.cratio
        assert got.speed > 0 and got.elapsed > 0


def test_chunk_probe_refuses_what_chunk_features_refuses():
    with pytest.raises(InputError, match="chunk nbytes=16 is invalid"):
        ChunkProbe(16, 8, 8)
    with pytest.raises(InputError, match="blocksize=16 is invalid"):
        ChunkProbe(4096, 1, 16)
    with pytest.raises(InputError, match="typesize=0 is invalid"):
        ChunkProbe(4096, 0, 1024)
    # A leftover block of 8 bytes that is not a run: the plugin's probe fails on it.
    probe = ChunkProbe(1032, 8, 1024)
    buf = np.arange(1032, dtype=np.uint32).astype(np.uint8)
    with pytest.raises(InputError, match="leftover block"):
        probe(buf)


# -- many chunks at once ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_chunk_reader_batches_are_the_reference_layout(name):
    data, chunks, blocks = CASES[name]
    arr = blosc2.empty(data.shape, dtype=data.dtype, chunks=chunks, blocks=blocks)
    nchunks = arr.schunk.nchunks
    reader = ChunkReader(data, arr, 3)
    for first in range(0, nchunks, 3):
        count = min(3, nchunks - first)
        rows = reader.take(first, count)
        assert rows.shape == (count, arr.schunk.chunksize) and rows.flags.c_contiguous
        for k in range(count):
            ref = chunk_buffer(data, first + k, chunks, blocks).view(np.uint8)
            np.testing.assert_array_equal(rows[k], ref)
        view = reader.view(first, count)
        if view is not None:
            assert np.shares_memory(view, data)
            np.testing.assert_array_equal(view, rows)
    # Views exactly where chunks are plain slices of contiguous 1-D data.
    whole = name in ("1-D whole chunks", "1-D edge chunk")
    assert (reader.view(0, 2) is not None) == whole
    assert reader.view(0, nchunks) is None or name == "1-D whole chunks"
    with pytest.raises(InputError, match=r"first, count=\(0, 4\) is invalid"):
        reader.take(0, 4)
    with pytest.raises(InputError, match="first, count"):
        reader.take(nchunks - 1, 2)


def test_probe_many_is_the_probe_on_each_chunk():
    data = mixed_int(24, run=3, seed=5)
    rows = data.view(np.uint8).reshape(24, 40_000)
    probe = ChunkProbe(40_000, 8, 8000)
    feats = probe.many(rows)
    assert [len(a) for a in feats] == [24, 24, 24, 24]
    assert feats.extra.shape == (24, 0)  # none asked for
    for k in range(24):
        one = probe(rows[k])
        assert feats.cratio[k] == one.cratio
        assert feats.speed[k] > 0 and feats.elapsed[k] > 0
    # A chunk the probe fails on gives NaN features, and no exception, among good ones.
    probe = ChunkProbe(1032, 8, 1024)
    bad = np.arange(1032, dtype=np.uint32).astype(np.uint8)
    good = np.zeros(1032, dtype=np.uint8)  # the leftover block is a run: features exist
    got = probe.many(np.stack([good, bad, good]))
    assert np.isnan(got.cratio).tolist() == [False, True, False]
    assert np.isnan(got.speed).tolist() == [False, True, False]


@pytest.mark.parametrize(
    "chunks",
    [np.zeros((2, 4000), dtype=np.uint8), np.zeros((2, 4096), dtype=np.int8),
     np.zeros(4096, dtype=np.uint8), np.zeros((4096, 2), dtype=np.uint8).T],
)  # fmt: skip
def test_probe_many_refuses_other_arrays(chunks):
    probe = ChunkProbe(4096, 8, 4096)
    with pytest.raises(InputError, match=r"chunks=.* a C-contiguous uint8 array of shape"):
        probe.many(chunks)
    with pytest.raises(InputError, match="chunks="):
        probe.start(chunks)


def test_probe_job_gives_what_many_gives():
    data = mixed_int(300, run=7, seed=1)
    rows = data.view(np.uint8).reshape(300, 40_000)
    probe = ChunkProbe(40_000, 8, 40_000)
    ref = probe.many(rows)
    with probe.start(rows) as job:
        assert job.total == 300
        first = job.features(0, 10)
        assert job.wait(1) >= 1
        rest = job.features(10, 300)
        assert job.wait(300) == 300
    np.testing.assert_array_equal(np.concatenate([first.cratio, rest.cratio]), ref.cratio)
    speeds = np.concatenate([first.speed, rest.speed])
    assert (speeds > 0).all() and (np.concatenate([first.elapsed, rest.elapsed]) > 0).all()


def test_probe_job_stops_when_closed():
    nchunks = 6000
    rows = rand_int(nchunks * 1024, seed=2).view(np.uint8).reshape(nchunks, 8192)
    probe = ChunkProbe(8192, 8, 8192)
    job = probe.start(rows)
    job.close()
    done = job.wait(0)
    assert done < nchunks
    with pytest.raises(RuntimeError, match=f"stopped after {done} of {nchunks} chunks"):
        job.wait(nchunks)


@pytest.mark.parametrize("decide_every", [1, 6])
def test_background_probe_writes_what_the_serial_probe_writes(
    models_dir, monkeypatch, decide_every
):
    """With nthreads > 1 the probe runs in a background thread (on the first chunk of each
    group with decide_every > 1); the array and the decisions are those of the serial probe
    (these models ignore the speed feature, which the background probe's timings could
    shift)."""
    assert not load_model(models_dir, "COMP").reads_speed
    started = []
    start = ChunkProbe.start

    def spy(self, chunks):
        started.append(chunks.shape)
        return start(self, chunks)

    monkeypatch.setattr(ChunkProbe, "start", spy)
    data = mixed_int(300, run=5, seed=3)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, use_inference=-1)
    out = {}
    for nthreads in (1, 2):
        arr, trace = compress(
            data, config, "python", chunks=(5000,), nthreads=nthreads, decide_every=decide_every
        )
        np.testing.assert_array_equal(arr[()], data)
        out[nthreads] = (
            [arr.schunk.get_chunk(i) for i in range(arr.schunk.nchunks)],
            [i.category for i in trace.inferences],
            [(r.step, r.codec, r.filter, r.clevel, r.split, r.cratio) for r in trace.rows],
        )
    assert started == [(300 // decide_every, 40_000)]  # nthreads=2 only
    assert len(set(out[2][1])) > 1, "the models chose one category: a weak comparison"
    assert out[1] == out[2]


def test_compiled_method_is_python_blosc2s_base_method():
    schunk = blosc2.SChunk(chunksize=64, cparams={"typesize": 1})
    append = compiled_method(schunk, "append_data")
    assert append.__self__ is schunk
    base = getattr(blosc2.blosc2_ext, "SChunk", None)
    if base is not None and "append_data" in vars(base):
        assert append.__func__ is vars(base)["append_data"]
    else:  # another layout: the public method
        assert append == schunk.append_data
    append(np.arange(64, dtype=np.uint8))
    assert schunk.nchunks == 1
    assert schunk.decompress_chunk(0) == bytes(range(64))
    # Anything else falls back to the public attribute.
    assert compiled_method(schunk, "urlpath") == schunk.urlpath


def test_big_chunks_compressed_into_the_array_are_those_compressed_apart(monkeypatch, tmp_path):
    """Chunks of a MB or more are compressed by the array's own schunk (DirectWrite): the
    same bytes and trace rows as compressing apart and copying in, and the array, in memory
    or reopened from its file, keeps its own cparams afterwards."""
    from btune_wrap import engine

    rng = np.random.default_rng(0)
    n = 250_000  # 2 MB chunks of int64
    kinds = [np.zeros(n, np.int64), rng.integers(0, 10, n), np.cumsum(rng.integers(-3, 4, n))]
    data = np.concatenate(kinds * 2)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", use_inference=-1)
    out = {}
    for direct in (True, False):
        monkeypatch.setattr(engine, "_DIRECT_NBYTES", 2**20 if direct else 2**62)
        arr, trace = compress(data, config, "python", chunks=(n,), nthreads=2)
        np.testing.assert_array_equal(arr[()], data)
        schunk = arr.schunk
        own = (blosc2.cparams_dflts["codec"], blosc2.cparams_dflts["clevel"])
        assert (schunk.cparams.codec, schunk.cparams.clevel) == own
        path = tmp_path / f"direct_{direct}.b2nd"
        compress(data, config, "python", chunks=(n,), nthreads=2, urlpath=path)
        stored = blosc2.open(str(path))
        assert (stored.schunk.cparams.codec, stored.schunk.cparams.clevel) == own
        np.testing.assert_array_equal(stored[()], data)
        cbytes = [len(schunk.get_chunk(i)) for i in range(schunk.nchunks)]
        assert [row.cratio for row in trace.rows] == [schunk.chunksize / c for c in cbytes]
        out[direct] = (
            [schunk.get_chunk(i) for i in range(schunk.nchunks)],
            [stored.schunk.get_chunk(i) for i in range(stored.schunk.nchunks)],
            [(r.step, r.codec, r.filter, r.clevel, r.split, r.winner) for r in trace.rows],
        )
    assert len({row[1:5] for row in out[True][1]}) > 1, "one category: a weak comparison"
    assert out[True] == out[False]
