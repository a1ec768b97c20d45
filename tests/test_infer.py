"""Tuned compression with trained models: the plugin (native) and the Python engine.

Real plugin, real LiteRT, real files. The models are trained once per session on a small real
gather (the ``models_dir`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig, ConfigError, ModelError, plugin_support
from btune_wrap.cli import main as cli_main
from btune_wrap.data import mixed_int, rand_int
from btune_wrap.engine import PythonEngine
from btune_wrap.infer import Engine, compress
from btune_wrap.model import load_model, model_paths, plugin_tradeoff
from btune_wrap.probe import chunk_features
from btune_wrap.trace import parse_trace

from . import test_engines_newest as newest
from .conftest import ROOT, bare_path_env, mixed_series

needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)


def _copy_models(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


# -- engines: choice and defaults ---------------------------------------------------------


@needs_plugin
def test_default_engine_is_native_where_the_plugin_runs(models_dir, clean_env):
    assert Engine.parse(None) is Engine.NATIVE
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, trace=True)
    arr, trace = compress(rand_int(20_000, seed=5), config, chunks=(5000,))
    assert trace.engine == "native"
    assert arr.shape == (20_000,)


def test_engine_names():
    assert Engine.parse("python") is Engine.PYTHON
    assert Engine.parse(" Native ") is Engine.NATIVE
    with pytest.raises(ValueError, match="engine='plugin' is invalid"):
        Engine.parse("plugin")


# -- use_inference: -1, 0, N --------------------------------------------------------------


@needs_plugin
@pytest.mark.parametrize("mode", ["COMP", "DECOMP"])
def test_native_inference_every_chunk(models_dir, clean_env, mode):
    data = rand_int(100_000, seed=7)
    config = BtuneConfig(
        tradeoff=0.5, perf_mode=mode, models_dir=models_dir, use_inference=-1, trace=True
    )
    arr, trace = compress(data, config, "native", chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert trace.engine == "native"
    assert len(trace.inferences) == 20
    # every table row carries the inference line printed before it, as data
    assert [r.inference for r in trace.rows] == trace.inferences
    model = load_model(models_dir, mode)
    for row in trace.rows:
        cat = model.categories[row.inference.category]
        assert row.inference.codec == cat.to_plugin()[0]
        assert row.filter == row.inference.filter
        assert row.clevel == row.inference.clevel
        assert row.inference.time_entropy > 0


@needs_plugin
@pytest.mark.parametrize("n", [3, 10])
def test_native_inference_first_n_chunks_then_tweaks(models_dir, clean_env, n):
    config = BtuneConfig(
        tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, use_inference=n, trace=True
    )
    arr, trace = compress(rand_int(100_000, seed=8), config, "native", chunks=(5000,))
    assert len(trace.inferences) == n
    assert all(r.inference is not None for r in trace.rows[:n])
    assert all(r.inference is None for r in trace.rows[n:])
    # the tweak starts from the most predicted category: codec and filter stay
    counts = np.bincount([i.category for i in trace.inferences])
    best = load_model(models_dir, "COMP").categories[int(np.argmax(counts))]
    assert {(r.codec, r.filter) for r in trace.rows[n:]} == {
        (best.codec.name.lower(), best.to_plugin()[1])
    }


@needs_plugin
def test_native_use_inference_zero_runs_no_model(models_dir, clean_env):
    config = BtuneConfig(
        tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, use_inference=0, trace=True
    )
    _, trace = compress(rand_int(60_000, seed=9), config, "native", chunks=(5000,))
    assert trace.inferences == [] and trace.rows


@pytest.mark.parametrize("mode", ["COMP", "DECOMP", "BALANCED"])
def test_python_inference_every_chunk(models_dir, mode):
    data = rand_int(60_000, seed=10)
    config = BtuneConfig(tradeoff=0.5, perf_mode=mode, models_dir=models_dir, use_inference=-1)
    arr, trace = compress(data, config, "python", chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert trace.engine == "python"
    assert len(trace.rows) == 12 and all(r.state == "INFERENCE" for r in trace.rows)
    assert [r.inference for r in trace.rows] == trace.inferences
    model = load_model(models_dir, mode)
    assert model.json_path.name == ("model_decomp.json" if mode == "DECOMP" else "model_comp.json")
    for row in trace.rows:
        cat = model.categories[row.inference.category]
        assert (row.codec, row.filter, row.clevel) == (
            cat.codec.name.lower(),
            cat.to_plugin()[1],
            cat.clevel,
        )
        assert row.inference.time_entropy > 0 and row.inference.time_inference > 0
    # the rows describe the chunks really written
    for i, row in enumerate(trace.rows):
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(arr.schunk.get_chunk(i))
        assert row.cratio == pytest.approx(nbytes / cbytes)


def test_decide_every_6_decides_for_the_first_of_every_6_chunks_as_the_engine_would(models_dir):
    """decide_every=6: the model decides for chunks 0, 6, 12, ... (each decision the one made
    deciding every chunk) and the chunks between take that decision."""
    data = mixed_int(30, run=3, seed=10)
    config = BtuneConfig(
        tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, use_inference=-1, trace=True
    )
    arr, trace = compress(data, config, "python", chunks=(5000,), decide_every=6)
    _, each = compress(data, config, "python", chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert [r.state for r in trace.rows] == (["INFERENCE"] + ["GROUP"] * 5) * 5
    assert [r.state for r in parse_trace(trace.raw).rows] == [r.state for r in trace.rows]
    assert [r.inference for r in trace.rows if r.inference] == trace.inferences
    assert [i.category for i in trace.inferences] == [
        each.rows[i].inference.category for i in range(0, 30, 6)
    ]
    params = [(r.codec, r.filter, r.clevel, r.split) for r in trace.rows]
    assert params == [params[i - i % 6] for i in range(30)]
    assert len(set(params)) > 1, "one category for all: a weak check"
    for i, row in enumerate(trace.rows):  # the rows describe the chunks really written
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(arr.schunk.get_chunk(i))
        assert row.cratio == pytest.approx(nbytes / cbytes)


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("decide_every", [200, 10**12])
def test_groups_longer_than_a_batch_span_batches_and_cost_no_memory(
    models_dir, decide_every, nthreads
):
    """Groups longer than the engine's batches (128 chunks of 40 KB) carry their decision
    over; a group longer than the array holds one decision, without a buffer that size."""
    data = mixed_int(300, run=60, seed=12)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, use_inference=-1)
    arr, trace = compress(
        data, config, "python", chunks=(5000,), nthreads=nthreads, decide_every=decide_every
    )
    np.testing.assert_array_equal(arr[:], data)
    leaders = [r.step for r in trace.rows if r.state == "INFERENCE"]
    assert leaders == list(range(0, 300, decide_every))
    assert len(trace.rows) == 300 and {r.state for r in trace.rows} == {"INFERENCE", "GROUP"}
    params = [(r.codec, r.filter, r.clevel, r.split) for r in trace.rows]
    assert params == [params[i - i % decide_every] for i in range(300)]


@pytest.mark.parametrize("n", [3, 10])
def test_python_inference_first_n_chunks_then_tweaks(models_dir, n):
    data = rand_int(100_000, seed=11)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models_dir, use_inference=n)
    arr, trace = compress(data, config, "python", chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert len(trace.inferences) == n
    assert all(r.state == "INFERENCE" for r in trace.rows[:n])
    assert all(r.inference is None for r in trace.rows[n:])
    assert {r.state for r in trace.rows[n:]} <= {"TWEAK", "STOP"}
    assert trace.rows[n].state == "TWEAK"
    counts = np.bincount([i.category for i in trace.inferences])
    start = load_model(models_dir, "COMP").categories[int(np.argmax(counts))]
    # the tweak changes only clevel and split mode
    for row in trace.rows[n:]:
        assert (row.codec, row.filter) == (start.codec.name.lower(), start.to_plugin()[1])
    # once tuning stops, the best parameters stay
    stopped = [(r.codec, r.filter, r.clevel, r.split) for r in trace.rows if r.state == "STOP"]
    assert len(set(stopped)) <= 1


def test_python_use_inference_zero_tweaks_from_blosc2_defaults(tmp_path):
    data = rand_int(60_000, seed=12)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", use_inference=0)  # no models needed
    arr, trace = compress(data, config, "python", chunks=(5000,), max_tweaks=2)
    np.testing.assert_array_equal(arr[:], data)
    assert trace.inferences == []
    assert {r.codec for r in trace.rows} == {"zstd"}
    assert [r.state for r in trace.rows[:2]] == ["TWEAK", "TWEAK"]
    assert {r.state for r in trace.rows[2:]} == {"STOP"}


# -- the Python engine matches the plugin ------------------------------------------------


@needs_plugin
@pytest.mark.parametrize("mode", ["COMP", "DECOMP"])
def test_python_engine_chooses_what_the_plugin_chooses(models_dir, clean_env, mode):
    """Same model, same chunks: same category wherever the features are far from a boundary.

    A chunk counts as far from a boundary when the model's choice does not change with the
    speed feature halved or doubled and the cratio feature moved by 5%: timings differ from
    run to run (and between C and Python), the cratio estimate does not.
    """
    data = mixed_series(40_000)
    config = BtuneConfig(
        tradeoff=0.5, perf_mode=mode, models_dir=models_dir, use_inference=-1, trace=True
    )
    _, native = compress(data, config, "native", chunks=(5000,))
    arr, python = compress(data, config, "python", chunks=(5000,))
    model = load_model(models_dir, mode)
    t = plugin_tradeoff(config.tradeoff)
    nat = [i.category for i in native.inferences]
    py = [r.inference.category for r in python.rows]
    assert len(nat) == len(py) == arr.schunk.nchunks
    robust = []
    for i, buf in enumerate(newest.iter_chunk_buffers(data, arr)):
        f = chunk_features(buf, arr.schunk.typesize, arr.schunk.blocksize)
        choices = {
            model.choose(f.cratio * a, f.speed * b, t)
            for a in (0.95, 1.0, 1.05)
            for b in (0.5, 1.0, 2.0)
        }
        if len(choices) == 1:
            robust.append(i)
    assert len(robust) >= len(nat) // 2, "too few chunks far from a decision boundary"
    disagree = [(i, nat[i], py[i]) for i in robust if nat[i] != py[i]]
    assert not disagree, f"chunk, native, python: {disagree}"


# -- round trips: every dtype family, 1-D to 3-D, edge chunks -----------------------------


@pytest.mark.parametrize("dtype", newest.DTYPES, ids=str)
def test_python_engine_round_trips_every_dtype(models_dir, tmp_path, dtype):
    for shape, chunks, blocks in newest.SHAPES:
        data = newest.make_data(shape, dtype)
        config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models_dir)
        target = tmp_path / f"{len(shape)}d.b2nd"
        arr, trace = compress(data, config, "python", urlpath=target, chunks=chunks, blocks=blocks)
        back = blosc2.open(str(target))
        assert back.dtype == data.dtype and back.shape == data.shape
        np.testing.assert_array_equal(back[()], data)
        assert len(trace.rows) == arr.schunk.nchunks


# -- bad input: clear errors, nothing written ---------------------------------------------


@pytest.fixture
def bad_models(models_dir, tmp_path) -> Path:
    return _copy_models(models_dir, tmp_path / "bad_models")


def _assert_nothing_written(directory: Path, target: Path) -> None:
    assert not target.exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(f".{target.name}")]


@pytest.mark.parametrize("engine", ["python", pytest.param("native", marks=needs_plugin)])
def test_missing_mode_files(bad_models, tmp_path, engine):
    for f in model_paths(bad_models, "DECOMP"):
        f.unlink()
    target = tmp_path / "out.b2nd"
    config = BtuneConfig(perf_mode="DECOMP", models_dir=bad_models)
    with pytest.raises(ModelError, match=r"model_decomp\.tflite and model_decomp\.json.*DECOMP"):
        compress(rand_int(20_000), config, engine, urlpath=target)
    _assert_nothing_written(tmp_path, target)
    # the COMP files are still there and used
    compress(rand_int(20_000), config.replace(perf_mode="COMP"), engine, urlpath=target)
    assert target.exists()


def test_missing_models_dir(tmp_path):
    config = BtuneConfig(models_dir=tmp_path / "nope")
    with pytest.raises(ModelError, match="nope.*is not a directory"):
        compress(rand_int(20_000), config, "python", urlpath=tmp_path / "out.b2nd")
    # no models directory: the Python engine uses the general model (tests/test_general.py)
    _, trace = compress(rand_int(20_000), BtuneConfig(), "python")
    assert trace.engine == "python" and len(trace.inferences) > 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["categories"].__setitem__(3, [3, 1, 5, 2]), r"categories\[3\]=\[3, 1, 5, 2\]"),
        (lambda d: d["categories"].__setitem__(0, [1, 7, 5, 2]), r"categories\[0\]=\[1, 7, 5, 2\]"),
        (lambda d: d["categories"].__setitem__(0, [1, 1]), r"categories\[0\]=\[1, 1\]"),
        (lambda d: d["speed"].__setitem__("std", 0), r"speed\.std=0 is invalid"),
        (lambda d: d.pop("cratio"), r"'cratio'=None is invalid"),
        (lambda d: d["categories"].pop(), r"output shape \[1, \d+\].*expected \[1, \d+\]"),
    ],
    ids=["codec", "filter", "tuple", "std", "cratio", "ncategories"],
)
def test_inconsistent_json(bad_models, tmp_path, edit, message):
    _, json_path = model_paths(bad_models, "COMP")
    doc = json.loads(json_path.read_text())
    edit(doc)
    json_path.write_text(json.dumps(doc))
    target = tmp_path / "out.b2nd"
    with pytest.raises(ModelError, match=message) as info:
        compress(rand_int(20_000), BtuneConfig(models_dir=bad_models), "python", urlpath=target)
    assert "model_comp" in str(info.value)
    _assert_nothing_written(tmp_path, target)


def test_not_a_tflite_file(bad_models, tmp_path):
    tflite, _ = model_paths(bad_models, "COMP")
    tflite.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        compress(rand_int(20_000), BtuneConfig(models_dir=bad_models), "python")


def test_tflite_input_shape_must_be_1x3(bad_models, tmp_path):
    tf = pytest.importorskip("tensorflow")
    ncat = len(json.loads(model_paths(bad_models, "COMP")[1].read_text())["categories"])
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(ncat)])
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    model_paths(bad_models, "COMP")[0].write_bytes(tflite)
    target = tmp_path / "out.b2nd"
    with pytest.raises(ModelError, match=r"input shape \[1, 4\].*expected \[1, 3\]"):
        compress(rand_int(20_000), BtuneConfig(models_dir=bad_models), "python", urlpath=target)
    _assert_nothing_written(tmp_path, target)


# -- CLI and the tutorial script ----------------------------------------------------------


def test_cli_compress(models_dir, tmp_path, capsys):
    src = tmp_path / "in.npy"
    data = rand_int(30_000, seed=15).reshape(300, 100)
    np.save(src, data)
    out = tmp_path / "out.b2nd"
    args = [
        "compress", str(src), str(out), "--tradeoff", "0.5", "--perf-mode", "decomp",
        "--models", str(models_dir), "--engine", "python", "--use-inference", "2",
    ]  # fmt: skip
    assert cli_main(args) == 0
    np.testing.assert_array_equal(blosc2.open(str(out))[()], data)
    shown = capsys.readouterr().out
    assert "python engine" in shown and "Inference category=" in shown

    bad = tmp_path / "empty_models"
    bad.mkdir()
    out2 = tmp_path / "out2.b2nd"
    assert cli_main([*args[:2], str(out2), "--models", str(bad), "--engine", "python"]) == 2
    assert "model_comp.tflite and model_comp.json" in capsys.readouterr().err
    assert not out2.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decide_every": 0}, "decide_every=0 is invalid"),
        ({"decide_every": 2.5}, "decide_every=2.5 is invalid"),
        ({"decide_every": 6, "verify": 2}, "1 with verify=2"),
        ({"decide_every": 6, "engine": "native"}, "the plugin decides every chunk"),
    ],
    ids=["zero", "not-an-int", "with-verification", "native"],
)
def test_a_wrong_decide_every_is_refused_before_writing(models_dir, tmp_path, kwargs, message):
    out = tmp_path / "out.b2nd"
    engine = kwargs.pop("engine", "python")
    config = BtuneConfig(models_dir=models_dir)
    with pytest.raises(ConfigError, match=re.escape(message)):
        compress(rand_int(20_000, seed=3), config, engine, urlpath=out, chunks=(5000,), **kwargs)
    assert not out.exists()


def test_cli_decide_every_groups_chunks_and_a_wrong_one_exits_2(models_dir, tmp_path, capsys):
    src = tmp_path / "in.npy"
    np.save(src, rand_int(20_000, seed=4))
    out = tmp_path / "out.b2nd"
    args = ["compress", str(src), str(out), "--models", str(models_dir), "--engine", "python",
            "--chunks", "5000"]  # fmt: skip
    assert cli_main([*args, "--decide-every", "0"]) == 2
    assert "--decide-every: decide_every=0 is invalid" in capsys.readouterr().err
    assert cli_main([*args, "--decide-every", "3", "--verify", "2"]) == 2
    assert "decide_every=3 is invalid" in capsys.readouterr().err
    assert not out.exists()
    assert cli_main([*args, "--decide-every", "2", "--quiet"]) == 0
    assert "(python engine, 2 inferences)" in capsys.readouterr().out  # 4 chunks, 2 decisions
    assert cli_main([*args, "--quiet", "--force"]) == 0
    assert "(python engine, 4 inferences)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env", "engine", "expect"),
    [
        ({"BTUNE_USE_INFERENCE": "-1", "BTUNE_PERF_MODE": "COMP"}, None, 20),
        ({"BTUNE_USE_INFERENCE": "3", "BTUNE_PERF_MODE": "DECOMP"}, None, 3),
        ({"BTUNE_USE_INFERENCE": "-1", "BTUNE_PERF_MODE": "DECOMP"}, "python", 20),
    ],
    ids=["comp-all-auto", "decomp-3-auto", "decomp-all-python"],
)
def test_tutorial_script(models_dir, tmp_path, env, engine, expect):
    if engine is None and not plugin_support():
        engine = "python"
    full_env = bare_path_env(
        BTUNE_TRADEOFF="0.5", BTUNE_TRACE="1", BTUNE_MODELS_DIR=str(models_dir), **env
    )
    cmd = [sys.executable, str(ROOT / "inference" / "rand_int.py"), "--seed", "1"]
    if engine:
        cmd += ["--engine", engine]
    run = subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("TRACE: Inference category=") == expect
    assert "Performance Mode: " + env["BTUNE_PERF_MODE"] in run.stdout
    assert (tmp_path / "rand_int_inference.b2nd").exists()
    assert f"{expect} inferences" in run.stdout


# -- object API -----------------------------------------------------------------------


def test_engine_python_object_api(models_dir):
    model = load_model(models_dir, "COMP")
    engine = PythonEngine(BtuneConfig(models_dir=models_dir), model)
    arr, trace = engine.write(rand_int(10_000, seed=1), chunks=(5000,))
    assert arr.schunk.nchunks == 2 and len(trace.rows) == 2


def test_environment_untouched(models_dir):
    before = {k: v for k, v in os.environ.items() if k.startswith("BTUNE_")}
    compress(rand_int(10_000), BtuneConfig(models_dir=models_dir), "python")
    assert before == {k: v for k, v in os.environ.items() if k.startswith("BTUNE_")}


@needs_plugin
def test_tensorflow_loaded_before_the_plugin_no_longer_matters(models_dir, tmp_path):
    """TensorFlow's libraries loaded before the plugin's make it crash (SIGSEGV) on loading a
    model, so the native engine used to refuse then; the plugin now runs in a child process
    that never loads TensorFlow, so both import orders work."""
    script = (
        "import sys\n"
        "if sys.argv[1] == 'tf-first':\n"
        "    import tensorflow\n"
        "import numpy as np\n"
        "from btune_wrap import BtuneConfig\n"
        "from btune_wrap.infer import compress\n"
        "from btune_wrap.plugin import TENSORFLOW_FIRST\n"
        "import tensorflow\n"
        "assert TENSORFLOW_FIRST is (sys.argv[1] == 'tf-first')\n"
        "config = BtuneConfig(models_dir=sys.argv[2], trace=True)\n"
        "arr, trace = compress(np.arange(50_000), config, 'native', chunks=(5000,))\n"
        "assert (arr[:] == np.arange(50_000)).all()\n"
        "print('INFERENCES', len(trace.inferences))\n"
    )
    for order in ("tf-first", "btune-first"):
        run = subprocess.run(
            [sys.executable, "-c", script, order, str(models_dir)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=bare_path_env(),
        )
        assert run.returncode == 0, (order, run.returncode, run.stderr[-2000:])
        assert "INFERENCES 10" in run.stdout, (order, run.stdout)


def test_reads_speed_tells_models_that_use_the_speed_feature(models_dir, tmp_path):
    # Trained with the default use_speed=False: the network zeroes the speed input.
    assert load_model(models_dir, "COMP").reads_speed is False
    assert load_model(models_dir, "DECOMP").reads_speed is False
    # One-layer networks that read one feature each (built with TensorFlow).
    from .test_probe import write_reveal_model

    for feature, expected in ((0, False), (1, True)):
        directory = tmp_path / f"feature{feature}"
        directory.mkdir()
        write_reveal_model(str(directory), feature, 0.0, 10.0)
        assert load_model(directory, "COMP").reads_speed is expected
