"""The extended features and the extended model (Python engine only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig
from btune_wrap.categories import parse_categories
from btune_wrap.errors import ConfigError, InputError, ModelError
from btune_wrap.features import DEFAULT_FEATURES, FEATURES, feature_array, measured_features
from btune_wrap.measurements import Measurements, extra_chunk_columns
from btune_wrap.model import (
    ExtendedMeta,
    ext_model_paths,
    load_engine_model,
    load_extended_model,
    load_model,
)
from btune_wrap.probe import EXTRA_FEATURES, EXTRA_LAYOUT, ChunkProbe
from tests.test_engines_newest import iter_chunk_buffers

from .conftest import build_training_meas, training_data

NCHUNKS = 40
CATEGORIES = (
    "lz4-nofilter-nosplit-5",
    "lz4-shuffle-nosplit-5",
    "zstd-bitshuffle-nosplit-3",
    "zstd-shuffle-bytedelta-nosplit-6",
)
QUICK = {"epochs": 8, "hidden": (16,), "patience": 4, "seed": 0}


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real gather (4 categories) of 40 chunks of mixed int64 data."""
    return build_training_meas(
        tmp_path_factory.mktemp("features"),
        nchunks=NCHUNKS,
        categories=parse_categories(CATEGORIES),
    )


@pytest.fixture(scope="module")
def trained(gathered: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("tensorflow")
    from btune_wrap import train

    out = tmp_path_factory.mktemp("models") / "models"
    config = train.TrainConfig(**QUICK, extended=True, extended_kind="network")
    models = train.train_and_export([gathered], out, "both", config)
    return {"dir": out, "models": models}


def test_gather_records_the_extended_features_the_engine_computes(gathered: Path) -> None:
    meas = Measurements.load(gathered)
    recorded = meas.extra_features()
    assert recorded is not None and recorded.shape == (NCHUNKS, len(EXTRA_FEATURES))
    data = training_data(NCHUNKS)
    arr = blosc2.asarray(data, chunks=(5000,))
    chunks = np.stack(list(iter_chunk_buffers(data, arr)))
    probe = ChunkProbe(chunks.shape[1], arr.schunk.typesize, arr.schunk.blocksize, extra=True)
    many = probe.many(chunks)
    with probe.start(chunks) as job:
        background = job.features(0, NCHUNKS)
    order = meas.chunks["chunk"].to_numpy()
    np.testing.assert_array_equal(many.extra[order], recorded)
    np.testing.assert_array_equal(background.extra[order], recorded)
    # The kinds of data differ in what the filters do to them.
    assert len(np.unique(recorded[:, 0].round(3))) > 1


def test_extended_features_leave_the_plugins_features_unchanged() -> None:
    data = training_data(8)
    arr = blosc2.asarray(data, chunks=(5000,))
    chunks = np.stack(list(iter_chunk_buffers(data, arr)))
    plain = ChunkProbe(chunks.shape[1], 8, arr.schunk.blocksize).many(chunks)
    extended = ChunkProbe(chunks.shape[1], 8, arr.schunk.blocksize, extra=True).many(chunks)
    np.testing.assert_array_equal(plain.cratio, extended.cratio)
    assert plain.extra.shape == (8, 0)


def test_feature_array_refuses_rows_of_the_wrong_width() -> None:
    with pytest.raises(InputError, match="extra"):
        feature_array(np.ones(3), np.ones((3, 2)), "int64")


def test_old_measurements_without_the_columns_load_and_train_plugin_models_only(
    gathered: Path, trained: dict, tmp_path: Path
) -> None:
    from btune_wrap import train

    meas = Measurements.load(gathered)
    meas.chunks = meas.chunks.drop(columns=list(extra_chunk_columns()))
    old = tmp_path / "old.meas"
    meas.save(old)
    reloaded = Measurements.load(old)
    assert reloaded.extra_features() is None and measured_features(reloaded) is None
    out = tmp_path / "models"
    models = train.train_and_export([old], out, "both", train.TrainConfig(**QUICK))
    assert [m.stem for m in models] == ["model_comp", "model_decomp"]
    assert not any(p.name.endswith((".ext.json", ".ext.tflite")) for p in out.iterdir())
    # The plugin-format export is the one trained beside the extended model: the same JSON
    # and the same network (the TFLite bytes differ in the converter's metadata).
    grid = np.array(
        [(c, s, t) for c in np.linspace(-3, 3, 13) for s in (-1, 0, 1) for t in (0, 0.5, 1)],
        dtype=np.float32,
    )
    for mode in ("COMP", "DECOMP"):
        ours, theirs = load_model(out, mode), load_model(trained["dir"], mode)
        assert ours.json_path.read_bytes() == theirs.json_path.read_bytes()
        np.testing.assert_array_equal(
            ours.runner.scores_many(grid), theirs.runner.scores_many(grid)
        )
    with pytest.raises(InputError, match="extended features"):
        train.train_and_export([old], tmp_path / "m2", "c", train.TrainConfig(extended=True))


def test_a_gather_of_another_feature_layout_reads_as_having_no_extended_features(
    gathered: Path, tmp_path: Path
) -> None:
    meas = Measurements.load(gathered)
    assert meas.meta["extra_layout"] == EXTRA_LAYOUT and meas.extra_features() is not None
    for layout in ("1x2048/h13", None):  # the layout before this one; none recorded
        meta = dict(meas.meta, extra_layout=layout)
        old = Measurements(meta, meas.chunks.copy(), meas.results.copy())
        assert old.extra_features() is None and measured_features(old) is None


def test_extended_features_look_past_the_start_of_the_chunk() -> None:
    """A chunk whose start is noise and whose second half is zeros (one block: the plugin's
    probe sees only its first 8 KB) shows its zeros in the extended features."""
    rng = np.random.default_rng(4)
    noisy = rng.integers(0, 2**62, size=5000, dtype=np.int64)
    half = noisy.copy()
    half[2500:] = 0
    chunks = np.stack([noisy.view(np.uint8), half.view(np.uint8)])
    plain = ChunkProbe(chunks.shape[1], 8, chunks.shape[1], extra=True).many(chunks)
    zero_share = plain.extra[:, EXTRA_FEATURES.index("zero_share")]
    assert plain.cratio[0] == plain.cratio[1]  # the plugin's window: the same noise
    assert zero_share[0] < 0.05 and zero_share[1] > 0.4


def test_an_extended_model_of_another_feature_layout_is_refused(trained: dict) -> None:
    _, js = ext_model_paths(trained["dir"], "COMP")
    doc = json.loads(js.read_text())
    assert doc["extra_layout"] == EXTRA_LAYOUT
    for layout in ("1x2048/h13", None):
        with pytest.raises(ModelError, match=r"'extra_layout'=.*expected '2x1024/h10'"):
            ExtendedMeta.from_dict({**doc, "extra_layout": layout})
    # a model of the plugin's feature and the dtype alone does not depend on the layout
    plain = {**doc, "features": ["cratio", "log2_typesize"], "mean": [0, 0], "std": [1, 1]}
    ExtendedMeta.from_dict({**plain, "extra_layout": None})


def test_few_chunks_train_no_extended_network_unless_asked(gathered: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from btune_wrap import train

    assert NCHUNKS < train.EXT_MIN_CHUNKS
    config = train.TrainConfig(**QUICK, extended_kind="network")
    models = train.train_and_export([gathered], tmp_path / "m", "c", config)
    assert [m.stem for m in models] == ["model_comp"]


def test_extended_model_round_trip_chooses_as_the_trained_network(trained: dict) -> None:
    stems = [m.stem for m in trained["models"]]
    assert stems == ["model_comp", "model_decomp", "model_comp.ext", "model_decomp.ext"]
    for fitted in trained["models"][2:]:
        model = load_extended_model(trained["dir"], fitted.mode)
        assert model.meta.features == DEFAULT_FEATURES
        assert model.categories == fitted.meta.categories
        data = fitted.data
        cols = [FEATURES.index(f) for f in model.meta.features]
        x = model.meta.inputs(data.extended[:, cols], [0.3])[0]
        expected = fitted.scores_of(x).argmax(-1)
        meas_extra = data.extended  # (log) columns back to the probe's raw values
        raw = np.column_stack(
            [np.exp(meas_extra[:, 4:7]), meas_extra[:, 7], meas_extra[:, 8:10] * 8]
        )
        chosen = model.choose_many(np.exp(meas_extra[:, 0]), raw, "int64", 0.3)
        agree = np.mean(chosen == expected)
        assert agree >= 0.95, agree  # float32 TFLite vs Keras: ties may flip


def test_engine_uses_the_extended_model_where_present(trained: dict, tmp_path: Path) -> None:
    from btune_wrap.infer import compress

    models = tmp_path / "models"
    shutil.copytree(trained["dir"], models)
    data = training_data(12, seed=3)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models, use_inference=-1)
    arr, trace = compress(data, config, "python", chunks=(5000,))
    assert any("model_comp.ext.tflite" in m for m in trace.messages)
    assert len(trace.inferences) == 12
    np.testing.assert_array_equal(arr[:], data)
    assert type(load_engine_model(models, "COMP")).__name__ == "ExtendedModel"
    for path in ext_model_paths(models, "COMP"):
        path.unlink()
    arr, trace = compress(data, config, "python", chunks=(5000,))
    assert any(m.endswith("model_comp.tflite") for m in trace.messages)
    np.testing.assert_array_equal(arr[:], data)


def test_extended_json_with_an_unknown_feature_is_refused(trained: dict, tmp_path: Path) -> None:
    _, js = ext_model_paths(trained["dir"], "DECOMP")
    doc = json.loads(js.read_text())
    ExtendedMeta.from_dict(doc)
    doc["features"][0] = "colour"
    with pytest.raises(ModelError, match="features"):
        ExtendedMeta.from_dict(doc)
    doc = json.loads(js.read_text())
    doc["std"][0] = 0
    with pytest.raises(ModelError, match="std"):
        ExtendedMeta.from_dict(doc)


def test_verification_keeps_the_smallest_chunk_of_the_tried_categories_at_tradeoff_1(
    trained: dict,
) -> None:
    """At tradeoff 1 the objective is the ratio alone (no timing), so trying every category
    must write each chunk as small as its smallest measured compression."""
    from btune_wrap.compressor import ChunkCodec
    from btune_wrap.infer import compress

    data = training_data(8, seed=5)
    models = trained["dir"]
    ncat = len(CATEGORIES)
    config = BtuneConfig(tradeoff=1.0, perf_mode="DECOMP", models_dir=models, use_inference=-1)
    arr, trace = compress(data, config, "python", chunks=(5000,), verify=ncat)
    np.testing.assert_array_equal(arr[:], data)
    model = load_engine_model(models, "DECOMP")
    sc = arr.schunk
    for i, buf in enumerate(iter_chunk_buffers(data, arr)):
        sizes = [
            len(
                ChunkCodec(c.to_cparams(typesize=8, blocksize=sc.blocksize), buf.nbytes).compress(
                    buf
                )
            )
            for c in model.categories
        ]
        assert len(sc.get_chunk(i)) == min(sizes)
    assert len(trace.inferences) == 8


def test_verify_is_refused_with_the_native_engine_and_below_1(trained: dict) -> None:
    from btune_wrap.infer import compress

    config = BtuneConfig(tradeoff=0.5, models_dir=trained["dir"], use_inference=-1)
    with pytest.raises(ValueError, match="verify"):
        compress(training_data(2), config, "native", verify=2)
    with pytest.raises(ValueError, match="verify"):
        compress(training_data(2), config, "python", verify=0)


# -- evaluate judges what the Python engine would choose -----------------------------------


def _model_rows(evaluation, t: float):
    rows = evaluation.choices.query("method == 'model' and tradeoff == @t")
    return rows.set_index("chunk")


def test_evaluate_judges_the_extended_model_by_default_and_the_plugin_one_on_request(
    gathered: Path, trained: dict
) -> None:
    from btune_wrap.evaluate import evaluate
    from btune_wrap.model import plugin_tradeoff

    meas = Measurements.load(gathered)
    feats = meas.features()
    chunks = meas.chunks["chunk"].to_numpy()
    engine = evaluate(trained["dir"], gathered, "comp", methods=["model"], progress=False)
    plugin = evaluate(trained["dir"], gathered, "comp", methods=["model"],
                      model_format="plugin", progress=False)  # fmt: skip
    assert engine.meta["model_file"] == "model_comp.ext.tflite"
    assert plugin.meta["model_file"] == "model_comp.tflite"
    assert (engine.meta["model_format"], plugin.meta["model_format"]) == ("engine", "plugin")
    ext, base = load_extended_model(trained["dir"], "comp"), load_model(trained["dir"], "comp")
    for t in (0.0, 0.5, 1.0):
        tt = plugin_tradeoff(t)
        want = ext.choose_many(feats[:, 0], meas.extra_features(), meas.meta["dtype"], tt)
        names = [ext.categories[k].name for k in want]
        assert _model_rows(engine, t).loc[chunks, "category"].tolist() == names
        want = base.choose_many(feats[:, 0], feats[:, 1], tt)
        names = [base.categories[k].name for k in want]
        assert _model_rows(plugin, t).loc[chunks, "category"].tolist() == names


def test_evaluate_groups_the_choices_as_the_engine_with_decide_every(
    gathered: Path, trained: dict
) -> None:
    """decide_every=4: each chunk is judged with the choice of the first measured chunk of its
    group of 4 chunk indices; the plugin-format model decides every chunk, always."""
    from btune_wrap.evaluate import evaluate, group_firsts

    chunks = Measurements.load(gathered).chunks["chunk"].to_numpy()
    each = evaluate(trained["dir"], gathered, "comp", methods=["model"], progress=False)
    four = evaluate(trained["dir"], gathered, "comp", methods=["model"], decide_every=4,
                    progress=False)  # fmt: skip
    assert (each.meta["decide_every"], four.meta["decide_every"]) == (1, 4)
    firsts = group_firsts(chunks, 4)
    assert len(set(firsts.tolist())) == len(set((chunks // 4).tolist())) > 1
    for t in (0.0, 0.5, 1.0):
        names = _model_rows(each, t).loc[chunks, "category"].to_numpy()
        assert _model_rows(four, t).loc[chunks, "category"].tolist() == names[firsts].tolist()
    with pytest.raises(ConfigError, match="the plugin decides every chunk"):
        evaluate(trained["dir"], gathered, "comp", methods=["model"], model_format="plugin",
                 decide_every=4, progress=False)  # fmt: skip


def test_evaluated_verification_keeps_the_best_trial_and_counts_every_trial_in_comp(
    gathered: Path, trained: dict
) -> None:
    from btune_wrap.evaluate import evaluate
    from btune_wrap.objective import chunk_objective

    meas = Measurements.load(gathered)
    costs = meas.results.set_index(["chunk", "category"])
    feats = meas.features()
    for mode in ("comp", "decomp"):
        ext = load_extended_model(trained["dir"], mode)
        one = evaluate(trained["dir"], gathered, mode, methods=["model"], progress=False)
        two = evaluate(trained["dir"], gathered, mode, methods=["model"], verify=2,
                       progress=False)  # fmt: skip
        assert two.meta["verify"] == 2
        for t in (0.0, 1.0):
            top = ext.choose_many(feats[:, 0], meas.extra_features(), meas.meta["dtype"], t, 2)
            rows = _model_rows(two, t)
            for chunk, pair in zip(meas.chunks["chunk"], top, strict=True):
                tried = [costs.loc[(chunk, ext.categories[k].name)] for k in pair]
                nbytes = float(meas.chunks.set_index("chunk").loc[chunk, "nbytes"])
                js = [chunk_objective(nbytes, c["cbytes"], c["ctime"], c["dtime"], mode, t)
                      for c in tried]  # fmt: skip
                best = int(np.argmax(js))
                row = rows.loc[chunk]
                assert row["category"] == ext.categories[pair[best]].name
                spent = sum(c["ctime"] for c in tried) if mode == "comp" else tried[best]["ctime"]
                assert row["ctime"] == pytest.approx(spent, rel=1e-12)
                want = chunk_objective(nbytes, row["cbytes"], spent, row["dtime"], mode, t)
                assert row["j"] == pytest.approx(float(want), rel=1e-12)
        if mode == "decomp":  # free to the reader: never worse than the first choice alone
            g1 = one.choices.query("method == 'model'")["gain_measured"].to_numpy()
            g2 = two.choices.query("method == 'model'")["gain_measured"].to_numpy()
            assert (g2 <= g1 + 1e-12).all() and (g2 < g1).any()


def test_evaluating_the_extended_model_needs_the_gathers_extended_features(
    gathered: Path, trained: dict, tmp_path: Path, capsys
) -> None:
    from btune_wrap.cli import main
    from btune_wrap.evaluate import evaluate

    meas = Measurements.load(gathered)
    meas.chunks = meas.chunks.drop(columns=list(extra_chunk_columns()))
    old = tmp_path / "old.meas"
    meas.save(old)
    with pytest.raises(InputError, match="extended features.*model_format='plugin'"):
        evaluate(trained["dir"], old, "comp", methods=["model"], progress=False)
    ev = evaluate(trained["dir"], old, "comp", methods=["model"], model_format="plugin",
                  progress=False)  # fmt: skip
    assert ev.meta["model_file"] == "model_comp.tflite"
    assert main(["evaluate", str(trained["dir"]), str(old), "--no-genetic"]) == 2
    assert "--model-format plugin" in capsys.readouterr().err
    assert main(["evaluate", str(trained["dir"]), str(old), "--verify", "0"]) == 2
    assert "--verify: verify=0 is invalid" in capsys.readouterr().err
