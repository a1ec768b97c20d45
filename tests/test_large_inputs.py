"""Inputs larger than memory: the Python engine reads a file one batch of chunks at a time.

``compress`` on a file path (``.npy``, ``.b2nd``, ``file.h5:/ds``, Zarr) or on a Blosc2 NDArray
reads each batch of chunks' regions from the input as it writes them, instead of loading the
whole array first; the result and the choices are those of the loaded array.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig
from btune_wrap.infer import compress
from btune_wrap.sources import ChunkReader, chunk_buffer, region_reader

CONFIG = BtuneConfig(tradeoff=0.5, perf_mode="COMP")


def _series(n: int) -> np.ndarray:
    """Int64 data of a few kinds along the array, so that chunks get different categories."""
    rng = np.random.default_rng(3)
    parts = [
        np.cumsum(rng.integers(-3, 4, n // 4)),
        rng.integers(0, 1000, n // 4),
        np.zeros(n // 4, dtype=np.int64),
        np.arange(n - 3 * (n // 4)) * 7,
    ]
    return np.concatenate(parts).astype(np.int64)


def _choices(trace) -> list[str]:
    return [f"{r.codec}/{r.filter}/{r.clevel}/{r.split}" for r in trace.rows]


@pytest.mark.parametrize("shape", [(250_001,), (301, 457)])
def test_the_chunk_reader_reads_regions_as_the_padded_chunks_blosc2_compresses(shape):
    data = _series(int(np.prod(shape))).reshape(shape)
    chunks = (40_000,) if len(shape) == 1 else (100, 128)
    blocks = (5_000,) if len(shape) == 1 else (50, 64)
    arr = blosc2.asarray(data, chunks=chunks, blocks=blocks)
    lazy = ChunkReader(region_reader(arr), arr, max_count=4)  # a Blosc2 NDArray: by regions
    loaded = ChunkReader(data, arr, max_count=4)
    n = arr.schunk.nchunks
    for first in range(0, n, 3):
        count = min(3, n - first)
        got = lazy.take(first, count).copy()
        assert np.array_equal(got, loaded.take(first, count))
        for k in range(count):
            expected = chunk_buffer(data, first + k, chunks, blocks).view(np.uint8)
            assert np.array_equal(got[k], expected)
            assert got[k].tobytes() == arr.schunk.decompress_chunk(first + k)


def _inputs(tmp_path: Path, data: np.ndarray) -> dict[str, str]:
    import h5py
    import zarr

    paths = {}
    np.save(tmp_path / "d.npy", data)
    paths["npy"] = str(tmp_path / "d.npy")
    blosc2.asarray(data, chunks=(20_000,), urlpath=str(tmp_path / "d.b2nd"), mode="w")
    paths["b2nd"] = str(tmp_path / "d.b2nd")
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        h5.create_dataset("ds", data=data, chunks=(7_000,))
    paths["hdf5"] = f"{tmp_path / 'd.h5'}:/ds"
    z = zarr.create_array(str(tmp_path / "d.zarr"), shape=data.shape, dtype=data.dtype,
                          chunks=(30_000,))  # fmt: skip
    z[:] = data
    paths["zarr"] = str(tmp_path / "d.zarr")
    return paths


@pytest.mark.parametrize("kind", ["npy", "b2nd", "hdf5", "zarr"])
def test_a_file_read_by_regions_gives_the_loaded_arrays_result_and_choices(tmp_path, kind):
    data = _series(200_000)
    path = _inputs(tmp_path, data)[kind]
    layout = {"chunks": (20_000,), "blocks": (5_000,)}
    got, trace = compress(path, CONFIG, "python", urlpath=tmp_path / "out.b2nd", **layout)
    ref, ref_trace = compress(data.copy(), CONFIG, "python", **layout)
    assert np.array_equal(got[()], data)
    assert _choices(trace) == _choices(ref_trace)
    assert len(set(_choices(trace))) >= 2  # the chunks' kinds were told apart
    # The input is closed again: it can be replaced at once (HDF5 locks open files).
    if kind == "hdf5":
        import h5py

        with h5py.File(tmp_path / "d.h5", "w"):
            pass


def test_an_hdf5_dataset_tuned_into_the_same_file(tmp_path):
    """HDF5 cannot open a file for writing that this process reads: such an input is loaded
    first, and closed before the output dataset is written next to it."""
    import h5py

    data = _series(100_000)
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        h5.create_dataset("raw", data=data)
    compress(f"{tmp_path / 'f.h5'}:/raw", CONFIG, "python", urlpath=f"{tmp_path / 'f.h5'}:/tuned")
    import hdf5plugin  # noqa: F401 - the Blosc2 filter for h5py

    with h5py.File(tmp_path / "f.h5", "r") as h5:
        assert np.array_equal(h5["tuned"][()], data) and np.array_equal(h5["raw"][()], data)


_PEAK = """
import json, resource, sys
from btune_wrap import BtuneConfig
from btune_wrap.infer import compress
compress(sys.argv[1], BtuneConfig(tradeoff=0.5, perf_mode="COMP"), "python", urlpath=sys.argv[2])
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def _peak_kb(src: Path, out: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(src), str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return int(json.loads(done.stdout.strip().splitlines()[-1]))


def test_compressing_a_file_8x_larger_takes_no_more_memory(tmp_path):
    """Peak memory of ``compress`` on a 32 MB and a 256 MB ``.b2nd`` (made chunk by chunk:
    never whole in memory here either): loading the input first took at least the array's
    size more; read by regions, the difference stays within the batches' buffers."""
    small, large = tmp_path / "small.b2nd", tmp_path / "large.b2nd"
    for path, n in ((small, 4 * 2**20), (large, 32 * 2**20)):  # int64 items: 32 MB, 256 MB
        blosc2.arange(0, n, 1, dtype=np.int64, chunks=(2**20,), urlpath=str(path), mode="w")
    grown = _peak_kb(large, tmp_path / "large.out.b2nd") - _peak_kb(small, tmp_path / "s.b2nd")
    assert grown < 96 * 1024, f"peak memory grew by {grown / 1024:.0f} MB for 224 MB more input"
    out = blosc2.open(str(tmp_path / "large.out.b2nd"))
    assert out.shape == (32 * 2**20,) and int(out[-1]) == 32 * 2**20 - 1
