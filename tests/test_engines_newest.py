"""The Python engine on any blosc2: the tests that must also pass on the newest blosc2.

This module runs in two environments:

* the main one (blosc2 4.0.0, the plugin, TensorFlow): the models are trained once per
  session on a small real gather (the ``models_dir`` fixture of ``tests/conftest.py``);
* ``.venv-newest`` (the newest blosc2, no TensorFlow, the plugin must never be called): the
  models come from the directory named by ``BTUNE_WRAP_TEST_MODELS``, produced beforehand by
  the main environment with::

      .venv/bin/python -m tests.test_engines_newest build/test-models
      BTUNE_WRAP_TEST_MODELS=build/test-models .venv-newest/bin/python -m pytest \\
          tests/test_engines_newest.py

Nothing here calls the plugin unless :func:`btune_wrap.plugin.plugin_support` says it can run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig, PluginUnavailableError, plugin_support
from btune_wrap.infer import Engine, compress
from btune_wrap.model import load_model
from btune_wrap.sources import ChunkReader

DTYPES = [
    np.dtype(t)
    for t in (
        "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16", "?",
        "M8[s]", "S5", [("a", "<i4"), ("b", "<f8"), ("c", "S3")],
    )
]  # fmt: skip

#: (shape, chunks, blocks): edge chunks everywhere, blocks that do not divide the chunks.
SHAPES = [
    ((10_007,), (1000,), (300,)),
    ((101, 37), (40, 16), (16, 6)),
    ((17, 13, 11), (8, 6, 5), (4, 3, 2)),
]


def iter_chunk_buffers(data: np.ndarray, arr: blosc2.NDArray):
    """Each chunk of ``data`` as the bytes (1-D uint8) blosc2 hands to the codecs for ``arr``
    (the layout of :class:`~btune_wrap.sources.ChunkReader`; views of ``data`` or copies)."""
    reader = ChunkReader(data, arr)
    for i in range(reader.nchunks):
        buf = reader.take(i, 1)[0]
        yield buf if i < reader.full else buf.copy()


def make_data(shape: tuple[int, ...], dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """Data with some structure (ramps, repeats, noise) in any dtype, deterministic."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    base = np.cumsum(rng.integers(-2, 3, n)) + np.repeat(rng.integers(0, 50, n // 8 + 1), 8)[:n]
    dtype = np.dtype(dtype)
    if dtype.names:
        out = np.zeros(n, dtype=dtype)
        for name in dtype.names:
            out[name] = _cast(base + rng.integers(0, 3, n), dtype[name])
        return out.reshape(shape)
    return _cast(base, dtype).reshape(shape)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "b":
        return values % 3 == 0
    if dtype.kind == "M":
        return (values + 1_600_000_000).astype(dtype)
    if dtype.kind == "S":
        return np.char.encode(np.char.mod("%d", values % 1000)).astype(dtype)
    if dtype.kind == "c":
        return (values + 1j * values[::-1]).astype(dtype)
    if dtype.kind == "f":
        return (values / 7).astype(dtype)
    return values.astype(dtype)


# -- models -------------------------------------------------------------------------------
# ``models_dir`` is the session fixture of tests/conftest.py (trained once per session on the
# ``training_meas`` gather, or read from BTUNE_WRAP_TEST_MODELS).


def build_test_models(directory: Path) -> Path:
    """Gather the session's training data and train comp and decomp models into ``directory``
    (needs TensorFlow: run in the main environment)."""
    from .conftest import build_models, build_training_meas

    directory = Path(directory)
    meas = build_training_meas(directory.parent / f".{directory.name}.work")
    build_models(meas, directory)
    return directory


# -- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["COMP", "DECOMP"])
@pytest.mark.parametrize("shape_chunks_blocks", SHAPES, ids=["1d", "2d", "3d"])
def test_round_trip_every_dtype(models_dir, tmp_path, mode, shape_chunks_blocks):
    shape, chunks, blocks = shape_chunks_blocks
    config = BtuneConfig(tradeoff=0.5, perf_mode=mode, models_dir=models_dir, use_inference=-1)
    for i, dtype in enumerate(DTYPES):
        data = make_data(shape, dtype, seed=i)
        target = tmp_path / f"a{i}.b2nd"
        arr, trace = compress(data, config, "python", urlpath=target, chunks=chunks, blocks=blocks)
        assert trace.engine == "python"
        assert len(trace.inferences) == arr.schunk.nchunks == len(trace.rows)
        back = blosc2.open(str(target))
        assert back.dtype == data.dtype, dtype
        np.testing.assert_array_equal(back[()], data, err_msg=str(dtype))
        np.testing.assert_array_equal(arr[()], data, err_msg=str(dtype))


@pytest.mark.parametrize("use_inference", [-1, 0, 2])
def test_round_trip_default_chunks_and_tweaks(models_dir, use_inference):
    data = make_data((300_000,), np.float64, seed=3)
    config = BtuneConfig(tradeoff=0.3, models_dir=models_dir, use_inference=use_inference)
    arr, trace = compress(data, config, "python", chunks=(20_000,))
    np.testing.assert_array_equal(arr[:], data)
    assert len(trace.inferences) == {-1: arr.schunk.nchunks, 0: 0, 2: 2}[use_inference]
    for i, row in enumerate(trace.rows):
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(arr.schunk.get_chunk(i))
        assert row.cratio == pytest.approx(nbytes / cbytes)


def test_blosc2_input_keeps_its_chunks(models_dir, tmp_path):
    data = make_data((64, 50), np.int32, seed=4)
    src = blosc2.asarray(data, chunks=(20, 25), blocks=(10, 5), urlpath=str(tmp_path / "in.b2nd"))
    arr, _ = compress(tmp_path / "in.b2nd", BtuneConfig(models_dir=models_dir), "python")
    assert (arr.chunks, arr.blocks) == (src.chunks, src.blocks)
    np.testing.assert_array_equal(arr[()], data)
    arr2, _ = compress(src, BtuneConfig(models_dir=models_dir), "python", chunks=(32, 50))
    assert arr2.chunks == (32, 50)
    np.testing.assert_array_equal(arr2[()], data)


def test_btune_tradeoff_in_the_environment_does_not_reach_the_python_engine(
    models_dir, monkeypatch
):
    """C-Blosc2 turns the plugin on for every new super-chunk when BTUNE_TRADEOFF is set (the
    tutorial sets it): the Python engine must still write its own choices, and on a blosc2 the
    plugin cannot run, must not call it (the process would die with SIGFPE)."""
    monkeypatch.setenv("BTUNE_TRADEOFF", "0.5")
    data = make_data((60_000,), np.int64, seed=5)
    config = BtuneConfig(tradeoff=0.5, models_dir=models_dir, use_inference=-1)
    arr, trace = compress(data, config, "python", chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert os.environ["BTUNE_TRADEOFF"] == "0.5"
    model = load_model(models_dir, "COMP")
    schunk = arr.schunk
    for i, (row, buf) in enumerate(zip(trace.rows, iter_chunk_buffers(data, arr), strict=True)):
        cat = model.categories[row.inference.category]
        cparams = cat.to_cparams(
            typesize=schunk.typesize, blocksize=schunk.blocksize, nthreads=schunk.cparams.nthreads
        )
        assert len(schunk.get_chunk(i)) == len(blosc2.compress2(buf, cparams=cparams)), i


def test_models_load_without_tensorflow(models_dir):
    for mode in ("COMP", "BALANCED", "DECOMP"):
        model = load_model(models_dir, mode)
        assert model.runner.ncategories == len(model.categories) >= 2
    # LiteRT only: TensorFlow need not be imported for inference
    if importlib.util.find_spec("tensorflow") is None:
        assert "tensorflow" not in sys.modules


@pytest.mark.skipif(bool(plugin_support()), reason="the plugin runs with this blosc2")
def test_native_refused_before_writing(models_dir, tmp_path):
    target = tmp_path / "out.b2nd"
    config = BtuneConfig(models_dir=models_dir)
    with pytest.raises(PluginUnavailableError, match=r"blosc2 .* outside the range"):
        compress(make_data((20_000,), np.int64), config, "native", urlpath=target)
    assert list(tmp_path.iterdir()) == []
    # no models directory: genetic tuning has no Python counterpart; the Python engine runs
    # the general model shipped with the package instead
    _, trace = compress(make_data((20_000,), np.int64), BtuneConfig(), urlpath=target)
    assert trace.engine == "python" and len(trace.inferences) > 0
    target.unlink()
    # the default engine is the Python one here, and the trace says so
    assert Engine.parse(None) is Engine.PYTHON
    arr, trace = compress(make_data((20_000,), np.int64), config, urlpath=target)
    assert trace.engine == "python" and target.exists()


@pytest.mark.parametrize("shape_chunks_blocks", SHAPES, ids=["1d", "2d", "3d"])
def test_hdf5_output_writes_and_reads_back(models_dir, tmp_path, shape_chunks_blocks):
    """The tuned HDF5 dataset (btune_wrap.h5sink) on this blosc2: written, then read by h5py
    through hdf5plugin's Blosc2 filter, with edge chunks and blocks that do not divide them."""
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("hdf5plugin")
    shape, chunks, blocks = shape_chunks_blocks
    config = BtuneConfig(tradeoff=0.5, perf_mode="DECOMP", models_dir=models_dir)
    for i, dtype in enumerate(("i2", "f8", "c8", "?")):
        data = make_data(shape, np.dtype(dtype), seed=i)
        out = f"{tmp_path / 'out.h5'}:/g/d{i}"
        written, trace = compress(data, config, urlpath=out, chunks=chunks, blocks=blocks)
        assert trace.engine == "python" and len(trace.inferences) == written.nchunks
        with h5py.File(tmp_path / "out.h5", "r") as h5:
            np.testing.assert_array_equal(h5[f"g/d{i}"][...], data, err_msg=dtype)


if __name__ == "__main__":
    # Produce the models directory the newest-blosc2 job uses (run with the main venv).
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/test-models")
    build_test_models(out)
    print(f"wrote {sorted(p.name for p in out.iterdir())} to {out}")
