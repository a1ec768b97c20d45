"""The general model shipped with the package: it loads, it is the Python engine's model when
no models directory is given, ``btune info`` names it, and the plugin can load it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import btune_wrap
from btune_wrap import GENERAL_MODEL_DIR, BtuneConfig, plugin_support
from btune_wrap.categories import DEFAULT_CATEGORIES
from btune_wrap.cli import main as cli_main
from btune_wrap.data import mixed_int
from btune_wrap.general import PROVENANCE_FILE, is_general_dir
from btune_wrap.infer import compress
from btune_wrap.model import load_engine_model, load_model
from btune_wrap.neighbors import NeighborsModel


def test_general_model_dir_is_a_plain_path_inside_the_package():
    assert isinstance(GENERAL_MODEL_DIR, Path)
    assert Path(btune_wrap.__file__).resolve().parent / "models" / "general" == GENERAL_MODEL_DIR
    assert is_general_dir(GENERAL_MODEL_DIR)
    size = sum(f.stat().st_size for f in GENERAL_MODEL_DIR.iterdir())
    assert size < 400_000  # a few hundred KB at most: it ships in the wheel


def test_general_model_loads_for_both_modes():
    provenance = json.loads((GENERAL_MODEL_DIR / PROVENANCE_FILE).read_text())
    for mode in ("COMP", "DECOMP"):
        model = load_model(GENERAL_MODEL_DIR, mode)
        # Trained on the corpus gathered with the default (fast) set: provenance.json says so.
        assert model.categories == tuple(DEFAULT_CATEGORIES)
        assert model.runner.ncategories == len(DEFAULT_CATEGORIES)
        assert [c.name for c in model.categories] == provenance["categories"]
        # The Python engine reads the neighbours model of every corpus chunk.
        engine = load_engine_model(GENERAL_MODEL_DIR, mode)
        assert isinstance(engine, NeighborsModel)
        assert engine.categories == model.categories and len(engine.x) == provenance["chunks"]
    assert len(provenance["datasets"]) >= 10
    assert provenance["chunks"] == sum(provenance["datasets"].values())
    assert provenance["config"]["seed"] == 0


@pytest.mark.parametrize("perf_mode", ["COMP", "DECOMP"])
def test_compress_without_models_dir_uses_the_general_model(perf_mode):
    data = mixed_int(12, seed=3)
    chosen = {}
    for label, models in (("default", None), ("explicit", GENERAL_MODEL_DIR)):
        config = BtuneConfig(tradeoff=0.7, perf_mode=perf_mode, models_dir=models)
        arr, trace = compress(data, config, "python", chunks=(5000,), nthreads=1)
        np.testing.assert_array_equal(arr[()], data)
        assert trace.engine == "python" and len(trace.inferences) == 12
        chosen[label] = [(i.codec, i.filter, i.clevel) for i in trace.inferences]
        assert any("model_" in m and ".ext.json" in m for m in trace.messages)
    assert chosen["default"] == chosen["explicit"]


def test_info_prints_the_general_model_dir(capsys):
    assert cli_main(["info"]) == 0
    assert f"General model: {GENERAL_MODEL_DIR}" in capsys.readouterr().out


def test_compress_command_needs_no_models(tmp_path, capsys):
    source = tmp_path / "in.npy"
    np.save(source, mixed_int(6, seed=4))
    out = tmp_path / "out.b2nd"
    argv = ["compress", str(source), str(out), "--engine", "python", "--chunks", "5000"]
    assert cli_main([*argv, "--quiet"]) == 0
    assert "6 inferences" in capsys.readouterr().out and out.exists()


@pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)
def test_plugin_infers_with_the_general_model():
    config = BtuneConfig(tradeoff=0.5, models_dir=GENERAL_MODEL_DIR, trace=True)
    arr, trace = compress(mixed_int(8, seed=5), config, "native", chunks=(5000,))
    assert len(trace.inferences) == 8


def test_compress_command_verifies_with_the_general_model(tmp_path, capsys):
    source = tmp_path / "in.npy"
    data = mixed_int(6, seed=6)
    np.save(source, data)
    out = tmp_path / "out.b2nd"
    argv = ["compress", str(source), str(out), "--engine", "python", "--chunks", "5000",
            "--perf-mode", "decomp", "--quiet"]  # fmt: skip
    assert cli_main([*argv, "--verify", "3"]) == 0
    assert "6 inferences" in capsys.readouterr().out
    import blosc2

    np.testing.assert_array_equal(blosc2.open(str(out))[:], data)
    assert cli_main([*argv, "--verify", "0", "--force"]) == 2
    assert "--verify: verify=0 is invalid" in capsys.readouterr().err
