"""Training: labels, split, export, and the exported models running inside the real plugin.

Real gather (the session's ``training_meas``), real TensorFlow, real LiteRT, real plugin, real
files. The session's models (``trained_models``) are trained once and shared with other files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btune_wrap import BtuneConfig, ConfigError, InputError, plugin_support, write_tuned
from btune_wrap import train as tr
from btune_wrap.cli import main as cli_main
from btune_wrap.cli import training_chunk_main
from btune_wrap.measurements import Measurements
from btune_wrap.model import ModelMeta, load_model, model_paths, plugin_tradeoff
from btune_wrap.objective import TRADEOFFS

from .conftest import ROOT, build_training_meas, training_data

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="training needs TensorFlow"
)
needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)

#: Few epochs where only the plumbing is tested, not the model's quality.
QUICK = ["--epochs", "3", "--quiet"]


@pytest.fixture(scope="module")
def meas(training_meas: Path) -> Measurements:
    return Measurements.load(training_meas)


@pytest.fixture(scope="module")
def small_meas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 chunks measured with 3 categories: too few chunks, and another category set."""
    return build_training_meas(
        tmp_path_factory.mktemp("small"),
        nchunks=8,
        categories=["lz4-nofilter-nosplit-5", "lz4-shuffle-nosplit-5", "zstd-shuffle-nosplit-3"],
    )


def _listing(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.iterdir())}


# -- labels and objective -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["comp", "decomp"])
def test_labels_trade_speed_for_ratio(meas, mode):
    data = tr.prepare(meas, mode)
    nbytes, cbytes, ctime, dtime = meas.matrices()
    cratio = nbytes[:, None] / cbytes
    speed = nbytes[:, None] / (ctime if mode == "comp" else dtime)
    assert data.tradeoffs.tolist() == list(TRADEOFFS)
    # t = 0 picks the fastest category of each chunk, t = 1 the best ratio
    np.testing.assert_array_equal(data.labels[0], np.argmax(speed, axis=1))
    np.testing.assert_array_equal(data.labels[-1], np.argmax(cratio, axis=1))
    # in between, a higher tradeoff never picks a faster or a less compressing category
    rows = np.arange(data.nchunks)
    label_ratio = cratio[rows, data.labels]
    label_speed = speed[rows, data.labels]
    assert np.all(np.diff(label_ratio, axis=0) >= 0)
    assert np.all(np.diff(label_speed, axis=0) <= 0)
    # regret: 0 for the label, positive for others, below 1 always
    assert np.all(data.regret(data.labels) == 0)
    worst = data.regret(np.argmin(data.j, axis=-1))
    assert np.all((worst > 0) & (worst < 1))
    # the labels really differ across tradeoffs and chunks on this mixed data
    assert len(np.unique(data.labels)) >= 4


# -- split, config, reproducibility --------------------------------------------------------


def test_split_by_chunk_seeded():
    config = tr.TrainConfig(seed=3)
    split = tr.split_chunks(240, config)
    sides = [set(split[s].tolist()) for s in ("train", "validation", "test")]
    assert sum(len(s) for s in sides) == 240 and set().union(*sides) == set(range(240))
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert len(sides[2]) == 48
    again = tr.split_chunks(240, tr.TrainConfig(seed=3))
    other = tr.split_chunks(240, tr.TrainConfig(seed=4))
    assert all(np.array_equal(split[k], again[k]) for k in split)
    assert not np.array_equal(split["test"], other["test"])
    with pytest.raises(InputError, match=r"measured chunks=9 is invalid: expected at least 10"):
        tr.split_chunks(9)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden", ()),
        ("hidden", (32, 0)),
        ("epochs", 0),
        ("test_fraction", 0.7),
        ("validation_fraction", 0),
        ("learning_rate", float("nan")),
        ("tradeoffs", (0.5, 1.5)),
        ("use_speed", "yes"),
    ],
)
def test_config_refuses_bad_values(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}=.* is invalid: expected"):
        tr.TrainConfig(**{field: value})


def test_fit_is_reproducible_with_a_seed(meas):
    config = tr.TrainConfig(epochs=4, seed=1)
    a = tr.fit(meas, "comp", config)
    b = tr.fit(meas, "comp", config)
    c = tr.fit(meas, "comp", tr.TrainConfig(epochs=4, seed=2))
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    assert a.history == b.history
    assert not np.array_equal(a.split["test"], c.split["test"])


# -- the session's models: split, normalization, report, LiteRT, plugin --------------------


@pytest.mark.parametrize("mode", ["comp", "decomp"])
def test_trained_model_split_and_normalization(trained_models, meas, mode):
    trained = trained_models[mode]
    report = json.loads((trained_models["dir"] / f"model_{mode}.report.json").read_text())
    sides = {k: {tuple(c) for c in v} for k, v in report["chunks"].items()}
    assert sum(len(s) for s in sides.values()) == meas.nchunks
    assert not (sides["train"] & sides["test"] or sides["validation"] & sides["test"])
    # the JSON's mean/std are those of the training chunks' features, not of all chunks
    feats = meas.features()[trained.split["train"]]
    meta = ModelMeta.load(trained_models["dir"] / f"model_{mode}.json")
    assert meta.cratio.mean == pytest.approx(feats[:, 0].mean(), rel=1e-12)
    assert meta.speed.std == pytest.approx(feats[:, 1].std(), rel=1e-12)
    assert meta.categories == meas.categories
    assert meta.cratio.mean != pytest.approx(meas.features()[:, 0].mean(), rel=1e-9)


@pytest.mark.parametrize("mode", ["comp", "decomp"])
def test_litert_runs_the_tflite_as_keras(trained_models, mode):
    trained = trained_models[mode]
    model = load_model(trained_models["dir"], mode)
    assert model.meta == trained.meta
    x = tr.inputs(trained.meta, trained.data.features, trained.data.tradeoffs)
    x_test = x[:, trained.split["test"]].reshape(-1, 3)
    keras_best = trained.scores_of(x_test).argmax(axis=1)
    np.testing.assert_array_equal(model.runner.predict_many(x_test), keras_best)
    # row by row with the plugin's own rule, from raw features
    test = trained.split["test"]
    for ti, t in enumerate(trained.data.tradeoffs):
        cratios, speeds = trained.data.features[test].T
        chosen = [
            model.choose(c, s, float(np.float32(t))) for c, s in zip(cratios, speeds, strict=True)
        ]
        np.testing.assert_array_equal(chosen, trained.predictions[ti, test])


@pytest.mark.parametrize("mode", ["comp", "decomp"])
def test_report_scores_match_the_exported_model(trained_models, mode):
    trained = trained_models[mode]
    directory = trained_models["dir"]
    report = json.loads((directory / f"model_{mode}.report.json").read_text())
    assert [row[1] for row in report["legend"]] == [c.name for c in trained.meta.categories]
    assert report["history"]["val_regret"] and report["best_epoch"] >= 1
    for suffix in (".history.png", ".tradeoffs.png"):
        assert (directory / f"model_{mode}{suffix}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # recompute the test scores from the .tflite run by LiteRT and the measured objective
    model = load_model(directory, mode)
    data, test = trained.data, trained.split["test"]
    chosen = np.stack([model.choose_many(*data.features[test].T, float(t)) for t in data.tradeoffs])
    regret = data.regret(chosen, test)
    scores = [r for r in report["scores"] if r["split"] == "test"]
    assert [r["tradeoff"] for r in scores] == list(TRADEOFFS)
    for ti, row in enumerate(scores):
        assert row["chunks"] == len(test)
        assert row["mean_regret"] == pytest.approx(regret[ti].mean(), abs=1e-12)
        assert row["top1"] == pytest.approx(np.mean(chosen[ti] == data.labels[ti, test]))
        assert row["top3"] >= row["top1"]
    # the model does much better than the best single category on this mixed data
    mean = np.mean([r["mean_regret"] for r in scores])
    fixed = np.mean([r["fixed_regret"] for r in scores])
    assert mean < fixed / 2
    # the tutorial's table: the most predicted category per tradeoff, over every chunk
    for ti, row in enumerate(report["predicted"]):
        counts = np.bincount(trained.predictions[ti], minlength=len(model.categories))
        assert row["first"] == model.categories[int(np.argmax(counts))].name
        assert row["first_share"] == pytest.approx(counts.max() / data.nchunks)


@needs_plugin
@pytest.mark.parametrize("perf_mode", ["COMP", "DECOMP"])
def test_plugin_infers_with_our_models(trained_models, clean_env, perf_mode):
    directory = trained_models["dir"]
    model = load_model(directory, perf_mode)
    data = training_data(16, seed=7)  # fresh chunks of the four kinds
    seen = set()
    for tradeoff in (0.0, 0.5, 1.0):
        config = BtuneConfig(
            tradeoff=tradeoff,
            perf_mode=perf_mode,
            models_dir=directory,
            use_inference=-1,
            trace=True,
        )
        arr, trace = write_tuned(data, config, chunks=(5000,))
        np.testing.assert_array_equal(arr[:], data)
        assert len(trace.inferences) == 16
        for line in trace.inferences:
            cat = model.categories[line.category]
            assert (line.codec, line.filter, line.clevel, line.splitmode) == cat.to_plugin()
        # the plugin makes exactly our model's choices: the cratio feature is the plugin's
        # own and the network ignores the speed feature (use_speed=False)
        from btune_wrap.probe import chunk_features

        cratios = [
            chunk_features(data[i * 5000 : (i + 1) * 5000], 8, arr.schunk.blocksize).cratio
            for i in range(16)
        ]
        ours = model.choose_many(cratios, [0.0] * 16, plugin_tradeoff(tradeoff))
        assert [line.category for line in trace.inferences] == ours.tolist()
        seen.update(line.category for line in trace.inferences)
    assert len(seen) >= 3  # the choices depend on the chunk and the tradeoff


# -- command line -------------------------------------------------------------------------


def _written(directory: Path, stem: str) -> list[str]:
    """The files training writes for a mode: the network's and the neighbours model's."""
    files = [p.name for p in tr.output_files(directory, stem)]
    return sorted([*files, f"{stem}.ext.json", f"{stem}.ext.npz"])


def test_btune_train_cli(training_meas, tmp_path, capsys):
    out = tmp_path / "models"
    argv = ["train", "--mode", "comp", str(training_meas), "--output", str(out), "--epochs", "3"]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "comp epoch   1/3: loss" in printed and "comp epoch   3/3" in printed
    assert "1st most predicted" in printed and "Mean dspeed (GB/s)" in printed
    assert "top-1" in printed and "regret" in printed
    assert re.search(r"\n +31  zstd-shuffle-bytedelta-nosplit-9 +\[5, 35, 9, 2\]\n", printed)
    names = sorted(p.name for p in out.iterdir())
    # the gather recorded the extended features: the neighbours model is written beside
    assert names == _written(out, "model_comp")
    assert "model_comp.ext: neighbours model of 240 chunks (k = 15" in printed
    assert "model_comp.ext.json + .npz" in printed
    load_model(out, "COMP")
    # an existing output is refused without --force, and left as it was
    before = _listing(out)
    assert cli_main(["train", str(training_meas), "--output", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert f"output={str(out)!r} already exists" in err and "--force" in err
    assert _listing(out) == before
    # with --force both models are written into it
    assert cli_main(["train", str(training_meas), "--output", str(out), "--force", *QUICK]) == 0
    assert model_paths(out, "DECOMP")[0].is_file()
    assert _listing(out)["model_comp.tflite"] != before["model_comp.tflite"]


def test_training_chunk_script_combines_directories(training_meas, tmp_path):
    root = tmp_path / "inference"
    root.mkdir()
    shutil.copytree(training_meas, root / "a.meas")
    shutil.copytree(training_meas, root / "b.meas")
    work = tmp_path / "training"
    work.mkdir()
    script = ROOT / "training" / "training_chunk.py"
    cmd = [sys.executable, str(script), "d", "../inference", "a.meas", "b.meas", "--epochs", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "decomp epoch   2/2" in run.stdout and "1st most predicted" in run.stdout
    assert sorted(p.name for p in work.iterdir()) == _written(work, "model_decomp")
    report = json.loads((work / "model_decomp.report.json").read_text())
    assert sum(len(v) for v in report["chunks"].values()) == 480  # both directories
    assert {src for side in report["chunks"].values() for src, _ in side} == {"a.meas", "b.meas"}
    # the same again refuses to overwrite the models in the current directory
    before = _listing(work)
    again = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2
    assert "already holds model_decomp.tflite" in again.stderr and "--force" in again.stderr
    assert _listing(work) == before


# -- bad input: clear error, exit 2, nothing written ----------------------------------------


def _bad_inputs(training_meas: Path, small_meas: Path, tmp_path: Path):
    not_meas = tmp_path / "not_meas"
    not_meas.mkdir()
    (not_meas / "meta.json").write_text("{}")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    return [
        ([str(not_meas)], "models", "both", "is not a measurement directory: it lacks"),
        ([str(tmp_path / "absent")], "models", "both", "is invalid: expected an existing dir"),
        ([str(training_meas), str(small_meas)], "models", "both", "different category sets"),
        ([str(small_meas)], "models", "both", "measured chunks=8 is invalid: expected at least"),
        ([str(training_meas)], "models", "x", "mode='x' is invalid: expected 'c', 'comp', 'd'"),
        ([str(training_meas)], "existing", "comp", "already exists and is not empty"),
    ]


def test_bad_input_btune_train(training_meas, small_meas, tmp_path, capsys):
    for dirs, output, mode, message in _bad_inputs(training_meas, small_meas, tmp_path):
        before = _listing(tmp_path)
        argv = ["train", *dirs, "--output", str(tmp_path / output), "--mode", mode, *QUICK]
        assert cli_main(argv) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("btune train: error: ") and message in err, err
        assert _listing(tmp_path) == before, message  # nothing written, no leftovers
        assert not (tmp_path / "models").exists()


def test_bad_input_training_chunk(training_meas, small_meas, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = str(training_meas.parent)
    cases = [
        (["x", root, training_meas.name], "mode='x' is invalid"),
        (["c", root, "absent.meas"], "is invalid: expected an existing directory"),
        (["c", str(small_meas.parent), small_meas.name], "measured chunks=8 is invalid"),
    ]
    for argv, message in cases:
        assert training_chunk_main([*argv, *QUICK]) == 2
        err = capsys.readouterr().err
        assert err.startswith("training_chunk.py: error: ") and message in err, err
        assert list(tmp_path.iterdir()) == []


def test_fit_refuses_mixed_category_sets(meas, small_meas):
    with pytest.raises(InputError, match="different category sets"):
        tr.fit([meas, Measurements.load(small_meas)], "comp")
    with pytest.raises(ConfigError, match="mode='both' is invalid"):
        tr.fit(meas, "both")
