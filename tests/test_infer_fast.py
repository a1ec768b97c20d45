"""The Python engine's fast paths write what the general paths write.

Chunk buffers taken as views of 1-D data, the layout computed once per shape, and the probe
validated once per layout (:class:`btune_wrap.probe.ChunkProbe`) must give the same chunks,
shapes and features as ``sources.chunk_buffer``, ``blosc2.empty`` and ``chunk_features``.
Real blosc2, real data; no model needed (``use_inference=0`` without tweaks writes every chunk
with blosc2's default parameters).
"""

from __future__ import annotations

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig
from btune_wrap.data import rand_int
from btune_wrap.errors import InputError
from btune_wrap.infer import ChunkCompressor, compress, default_category, iter_chunk_buffers
from btune_wrap.probe import ChunkProbe, chunk_features
from btune_wrap.sources import chunk_buffer

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
    ref = ChunkCompressor(cparams, schunk.chunksize)
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
