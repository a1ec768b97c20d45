"""The neighbours model: the Python engine's default extended model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from btune_wrap import BtuneConfig
from btune_wrap.categories import parse_categories
from btune_wrap.errors import ConfigError, InputError, ModelError
from btune_wrap.features import DEFAULT_FEATURES, FEATURES, measured_features
from btune_wrap.measurements import Measurements, extra_chunk_columns
from btune_wrap.model import ext_model_paths, has_extended_model, load_engine_model
from btune_wrap.neighbors import (
    ONE_ARRAY_PRIOR,
    NeighborsModel,
    default_neighbors,
    fit_neighbors,
)

from .conftest import build_training_meas, training_data

NCHUNKS = 30
CATEGORIES = (
    "blosclz-nofilter-nosplit-1",
    "lz4-shuffle-nosplit-5",
    "zstd-bitshuffle-nosplit-3",
    "zstd-shuffle-bytedelta-nosplit-6",
)
QUICK = {"epochs": 4, "hidden": (8,), "patience": 2, "seed": 0}


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real gather (4 categories) of 30 chunks of mixed int64 data."""
    return build_training_meas(
        tmp_path_factory.mktemp("neighbors"), nchunks=NCHUNKS,
        categories=parse_categories(CATEGORIES),
    )  # fmt: skip


@pytest.fixture(scope="module")
def models(gathered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``btune train``'s default output for 30 chunks: the plugin's networks and the
    neighbours models."""
    pytest.importorskip("tensorflow")
    from btune_wrap import train

    out = tmp_path_factory.mktemp("nmodels") / "models"
    trained = train.train_and_export([gathered], out, "both", train.TrainConfig(**QUICK))
    stems = [t.stem for t in trained]
    assert stems == ["model_comp", "model_decomp", "model_comp.ext", "model_decomp.ext"]
    assert isinstance(trained[2], NeighborsModel)
    return out


def _by_hand(
    meas: Measurements,
    mode: str,
    rows: np.ndarray,
    t: float,
    k: int,
    prior: float,
    gaussian: bool = True,
) -> np.ndarray:
    """The category of least mean gain over the k nearest measured chunks (weighted by
    ``exp(-(d / d_k)**2)`` with ``gaussian``), blended with the plain mean over all of them
    (weight ``prior``), written out."""
    x = measured_features(meas)[:, [FEATURES.index(f) for f in DEFAULT_FEATURES]]
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1)
    nbytes, cbytes, ctime, dtime = meas.matrices()
    secs = ctime if mode == "comp" else dtime
    # as the table stores them: float16 logarithms
    lr = np.log(nbytes[:, None] / cbytes).astype(np.float16).astype(np.float64)
    ls = np.log(secs / nbytes[:, None]).astype(np.float16).astype(np.float64)

    def mean_gain(chunks, c, weights):
        g = 0.0
        for i, w in zip(chunks, weights, strict=True):
            j = t * lr[i] - (1 - t) * ls[i]
            g += w * (np.exp(j.max() - j[c]) - 1)
        return g / sum(weights)

    everyone = range(len(z))
    out = []
    for r in rows:
        dist = np.sqrt(((z - z[r]) ** 2).sum(axis=1))
        near = np.argsort(dist, kind="stable")[:k]
        far = dist[near[-1]]
        w = np.exp(-((dist[near] / far) ** 2)) if gaussian and far > 0 else np.ones(k)
        gains = [
            (1 - prior) * mean_gain(near, c, w) + prior * mean_gain(everyone, c, [1] * len(z))
            for c in range(cbytes.shape[1])
        ]
        out.append(int(np.argmin(gains)))
    return np.array(out)


@pytest.mark.parametrize("mode", ["comp", "decomp"])
def test_the_choice_is_the_least_mean_gain_over_the_nearest_chunks(gathered: Path, mode) -> None:
    meas = Measurements.load(gathered)
    model = fit_neighbors(meas, mode)
    assert model.neighbors == default_neighbors(NCHUNKS) == 5
    assert model.prior == ONE_ARRAY_PRIOR > 0  # one array's chunks
    assert fit_neighbors([meas, meas], mode).prior == 0  # several arrays
    rows = np.arange(0, NCHUNKS, 3)
    feats, extra = meas.features(), meas.extra_features()
    for prior, weighting in ((ONE_ARRAY_PRIOR, "gaussian"), (0.0, "uniform"), (0.6, "gaussian")):
        blended = fit_neighbors(meas, mode, prior=prior, weighting=weighting)
        for t in (0.0, 0.4, 1.0):
            chosen = blended.choose_many(feats[rows, 0], extra[rows], "int64", t)
            by_hand = _by_hand(meas, mode, rows, t, 5, prior, weighting == "gaussian")
            np.testing.assert_array_equal(chosen, by_hand)
    top = model.choose_many(feats[rows, 0], extra[rows], "int64", 0.4, top=3)
    assert top.shape == (len(rows), 3)
    np.testing.assert_array_equal(top[:, 0], model.choose_many(feats[rows, 0], extra[rows],
                                                                "int64", 0.4))  # fmt: skip


def test_with_every_chunk_as_neighbour_it_is_the_category_of_least_mean_gain(
    gathered: Path,
) -> None:
    from btune_wrap.objective import TRADEOFFS, gain, objective_matrix

    meas = Measurements.load(gathered)
    model = fit_neighbors(meas, "comp", neighbors=NCHUNKS, weighting="uniform")
    feats, extra = meas.features(), meas.extra_features()
    j = objective_matrix(*meas.matrices(), "comp", TRADEOFFS)
    least = gain(j, j.max(axis=-1, keepdims=True)).mean(axis=1).argmin(axis=-1)
    for ti, t in enumerate(TRADEOFFS):
        chosen = model.choose_many(feats[:, 0], extra, "int64", t)
        assert (chosen == least[ti]).all()


def test_files_round_trip_and_the_engine_uses_them(models: Path, gathered: Path) -> None:
    from btune_wrap.infer import compress

    meas = Measurements.load(gathered)
    loaded = load_engine_model(models, "comp")
    assert isinstance(loaded, NeighborsModel)
    in_memory = fit_neighbors(meas, "comp")
    feats, extra = meas.features(), meas.extra_features()
    for t in (0.0, 0.5, 1.0):
        np.testing.assert_array_equal(
            loaded.choose_many(feats[:, 0], extra, "int64", t),
            in_memory.choose_many(feats[:, 0], extra, "int64", t),
        )
    assert loaded.prior == in_memory.prior == ONE_ARRAY_PRIOR
    assert (models / "model_comp.ext.npz").stat().st_size < 20_000
    data = training_data(10, seed=7)
    config = BtuneConfig(tradeoff=0.5, perf_mode="DECOMP", models_dir=models, use_inference=-1)
    arr, trace = compress(data, config, "python", chunks=(5000,))
    np.testing.assert_array_equal(arr[:], data)
    assert any(m.endswith("model_decomp.ext.json") for m in trace.messages)
    assert len(trace.inferences) == 10


def test_a_damaged_table_is_refused_and_a_missing_one_falls_back_to_the_network(
    models: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    table = copy / "model_comp.ext.npz"
    table.write_bytes(table.read_bytes()[:100])
    with pytest.raises(ModelError, match="model_comp.ext.npz.*cannot be read"):
        load_engine_model(copy, "comp")
    _, js = ext_model_paths(copy, "decomp")
    doc = json.loads(js.read_text())
    doc["neighbors"] = 0
    js.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="'neighbors'=0 is invalid"):
        load_engine_model(copy, "decomp")
    doc["neighbors"], doc["mode"] = 5, "comp"
    js.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="'mode'='comp' is invalid: expected 'decomp'"):
        load_engine_model(copy, "decomp")
    doc["mode"] = ["decomp"]
    js.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="'mode'"):
        load_engine_model(copy, "decomp")
    doc["mode"] = "decomp"
    js.write_text(json.dumps(doc))
    other = copy / "model_decomp.ext.npz"
    np.savez(other, x=np.float32(1), log_cratio=np.zeros(3), log_seconds=np.zeros(3))
    with pytest.raises(ModelError, match="is invalid: expected finite arrays"):
        load_engine_model(copy, "decomp")
    table.unlink()
    assert not has_extended_model(copy, "comp")
    assert type(load_engine_model(copy, "comp")).__name__ == "BtuneModel"


def test_fitting_needs_the_extended_features(gathered: Path, tmp_path: Path) -> None:
    meas = Measurements.load(gathered)
    meas.chunks = meas.chunks.drop(columns=list(extra_chunk_columns()))
    with pytest.raises(InputError, match="lack the probe's extended features"):
        fit_neighbors(meas, "comp")
    with pytest.raises(InputError, match="features"):
        fit_neighbors(Measurements.load(gathered), "comp", features=["colour"])


def test_evaluate_judges_the_neighbours_model_with_verification(
    models: Path, gathered: Path
) -> None:
    from btune_wrap.evaluate import evaluate

    one = evaluate(models, gathered, "decomp", methods=["model"], progress=False)
    three = evaluate(models, gathered, "decomp", methods=["model"], verify=3, progress=False)
    assert one.meta["model_file"] == "model_decomp.ext.json"
    g1 = one.choices.query("method == 'model'")["gain_measured"].to_numpy()
    g3 = three.choices.query("method == 'model'")["gain_measured"].to_numpy()
    assert (g3 <= g1 + 1e-12).all()


def test_the_table_keeps_at_most_max_chunks_spread_over_the_data(gathered: Path) -> None:
    meas = Measurements.load(gathered)
    full = fit_neighbors(meas, "comp")
    small = fit_neighbors(meas, "comp", max_chunks=10)
    assert len(full.x) == NCHUNKS and len(small.x) == 10 and small.neighbors == 5
    # evenly spread: the first and the last measured chunk are kept
    np.testing.assert_array_equal(small.log_cratio[[0, -1]], full.log_cratio[[0, -1]])
    with pytest.raises(InputError, match="max_chunks=0 is invalid"):
        fit_neighbors(meas, "comp", max_chunks=0)


def test_the_compiled_search_averages_the_k_nearest_rows_ties_going_to_earlier_rows() -> None:
    from btune_wrap.nearest import mean_gain_of_nearest

    rng = np.random.default_rng(0)
    # Small integers: many rows at equal distances, and exact arithmetic.
    x = rng.integers(0, 3, size=(200, 3)).astype(np.float64)
    z = rng.integers(0, 3, size=(40, 3)).astype(np.float64)
    gains = rng.random((200, 5))
    for k in (1, 7, 200):
        out = np.empty((40, 5))
        mean_gain_of_nearest(z, np.ascontiguousarray(x.T), (x * x).sum(axis=1), gains, k, out)
        for i, row in enumerate(z):
            near = np.argsort(((x - row) ** 2).sum(axis=1), kind="stable")[:k]
            np.testing.assert_allclose(out[i], gains[near].mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("decide_every", [1, 6])
def test_the_engine_decides_as_the_model_with_the_probe_ahead_or_in_turn(
    models: Path, monkeypatch, decide_every: int
) -> None:
    """300 chunks with two threads: the probe runs ahead and the neighbours model takes what
    is ready (batches of varying size); with one thread everything runs in turn. Both write
    the same chunks, and each choice is the model's on the probed features of that chunk (with
    decide_every=6: of the first chunk of its group, which the group's chunks take)."""
    from btune_wrap.infer import compress
    from btune_wrap.probe import ChunkProbe

    batches = []
    choose = NeighborsModel.choose_many

    def spy(self, cratios, *args, **kwargs):
        batches.append(len(cratios))
        return choose(self, cratios, *args, **kwargs)

    monkeypatch.setattr(NeighborsModel, "choose_many", spy)
    data = training_data(300, seed=11)
    config = BtuneConfig(tradeoff=0.9, perf_mode="COMP", models_dir=models, use_inference=-1)
    out = {}
    for nthreads in (1, 2):
        batches.clear()
        arr, trace = compress(
            data, config, "python", chunks=(5000,), nthreads=nthreads, decide_every=decide_every
        )
        np.testing.assert_array_equal(arr[()], data)
        out[nthreads] = (
            [arr.schunk.get_chunk(i) for i in range(arr.schunk.nchunks)],
            [i.category for i in trace.inferences],
        )
        assert sum(batches) == 300 // decide_every
        leaders = {r.step: r for r in trace.rows if r.step % decide_every == 0}
        for r in trace.rows:
            lead = leaders[r.step - r.step % decide_every]
            assert (r.codec, r.filter, r.clevel, r.split) == (
                lead.codec, lead.filter, lead.clevel, lead.split
            )  # fmt: skip
            assert r.state == ("INFERENCE" if r is lead else "GROUP")
    assert out[1] == out[2]
    chosen = np.array(out[1][1])
    assert len(set(chosen.tolist())) > 1, "one category chosen: a weak comparison"
    rows = np.ascontiguousarray(data.view(np.uint8).reshape(300, -1)[::decide_every])
    feats = ChunkProbe(rows.shape[1], 8, arr.schunk.blocksize, extra=True).many(rows)
    model = load_engine_model(models, "comp")
    np.testing.assert_array_equal(chosen, choose(model, feats.cratio, feats.extra, "int64", 0.9))


def _without(models: Path, tmp_path: Path, field: str) -> tuple[Path, Path, dict]:
    """A copy of ``models`` whose comp model's JSON lacks ``field`` (as the files written
    before it): the copy, that JSON file and its document."""
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    _, js = ext_model_paths(copy, "comp")
    doc = json.loads(js.read_text())
    del doc[field]
    js.write_text(json.dumps(doc))
    return copy, js, doc


def test_a_table_without_a_prior_has_none_and_a_bad_prior_is_refused(
    models: Path, gathered: Path, tmp_path: Path
) -> None:
    copy, js, doc = _without(models, tmp_path, "prior")
    assert load_engine_model(copy, "comp").prior == 0.0
    for bad in (1.5, -0.1, "0.1", True):
        doc["prior"] = bad
        js.write_text(json.dumps(doc))
        with pytest.raises(
            ModelError, match=r"'prior'=.* is invalid: expected a finite number in \[0, 1\]"
        ):
            load_engine_model(copy, "comp")
    with pytest.raises(InputError, match="prior"):
        fit_neighbors(Measurements.load(gathered), "comp", prior=2.0)


def test_a_model_of_one_array_leans_on_its_fallback_at_the_priors_weight(
    gathered: Path, tmp_path: Path
) -> None:
    from btune_wrap.neighbors import read_neighbors, write_neighbors

    meas = Measurements.load(gathered)
    ids = meas.chunks["chunk"].to_numpy()
    even, odd = (meas.select(ids[ids % 2 == r], label=f"{r}") for r in (0, 1))
    other = fit_neighbors(odd, "comp", prior=0.0)  # a model of other chunks
    own = fit_neighbors(even, "comp", prior=0.0)
    x = measured_features(meas)[:, [FEATURES.index(f) for f in DEFAULT_FEATURES]]
    for t in (0.0, 0.5, 1.0):
        leaning = fit_neighbors(even, "comp", prior=1.0, fallback=other)
        np.testing.assert_array_equal(leaning.expected_gain(x, t), other.expected_gain(x, t))
    half = fit_neighbors(even, "comp", prior=0.5, fallback=other)
    np.testing.assert_allclose(
        half.expected_gain(x, 0.5),
        0.5 * own.expected_gain(x, 0.5) + 0.5 * other.expected_gain(x, 0.5),
    )
    assert fit_neighbors(even, "comp", prior=0.0, fallback=other).fallback is None
    # in its files, and back: the same choices
    js = tmp_path / "model_comp.ext.json"
    write_neighbors(half, js)
    doc = json.loads(js.read_text())
    assert doc["fallback"]["neighbors"] == other.neighbors and doc["prior"] == 0.5
    back = read_neighbors(js, doc)
    assert back.fallback is not None and back.fallback.prior == 0.0
    np.testing.assert_array_equal(back.expected_gain(x, 0.5), half.expected_gain(x, 0.5))
    # a table without the fallback's rows is refused, naming the table
    with np.load(js.with_suffix(".npz")) as npz:
        kept = {n: npz[n] for n in ("x", "log_cratio", "log_seconds")}
    np.savez(js.with_suffix(".npz"), **kept)
    with pytest.raises(ModelError, match="cannot be read"):
        read_neighbors(js, doc)
    # a fallback of another mode (or categories) is refused before anything is fitted
    with pytest.raises(InputError, match="fallback"):
        fit_neighbors(even, "decomp", fallback=other)


def test_a_table_without_a_weighting_averages_plainly_and_a_bad_one_is_refused(
    models: Path, gathered: Path, tmp_path: Path
) -> None:
    assert json.loads(ext_model_paths(models, "comp")[1].read_text())["weighting"] == "gaussian"
    copy, js, doc = _without(models, tmp_path, "weighting")
    loaded = load_engine_model(copy, "comp")
    assert loaded.weighting == "uniform"
    meas = Measurements.load(gathered)
    uniform = fit_neighbors(meas, "comp", weighting="uniform")
    feats, extra = meas.features(), meas.extra_features()
    for t in (0.0, 0.5, 1.0):
        np.testing.assert_array_equal(
            loaded.choose_many(feats[:, 0], extra, "int64", t),
            uniform.choose_many(feats[:, 0], extra, "int64", t),
        )
    for bad in ("cosine", 1, None):
        doc["weighting"] = bad
        js.write_text(json.dumps(doc))
        with pytest.raises(ModelError, match=r"'weighting'=.* is invalid: expected one of"):
            load_engine_model(copy, "comp")
    with pytest.raises(InputError, match="weighting='nearest' is invalid"):
        fit_neighbors(meas, "comp", weighting="nearest")
    with pytest.raises(InputError, match="neighbors_scale=0 is invalid"):
        fit_neighbors(meas, "comp", neighbors_scale=0)


def test_the_general_model_consults_twice_a_users_share_of_its_chunks() -> None:
    from btune_wrap import GENERAL_MODEL_DIR
    from btune_wrap.general import GENERAL_CONFIG
    from btune_wrap.train import TrainConfig

    for mode in ("comp", "decomp"):
        model = load_engine_model(GENERAL_MODEL_DIR, mode)
        n = len(model.x)
        assert model.neighbors == default_neighbors(n, 2.0) == round(2 * n**0.5)
        assert model.weighting == "gaussian" and model.features == DEFAULT_FEATURES
    assert GENERAL_CONFIG.neighbors_scale == 2.0 and TrainConfig().neighbors_scale == 1.0
    with pytest.raises(ConfigError, match=r"neighbors_scale=-1 is invalid"):
        TrainConfig(neighbors_scale=-1)
    with pytest.raises(ConfigError, match="weighting='knn' is invalid"):
        TrainConfig(weighting="knn")


def test_the_general_models_tables_are_the_fallback_of_models_of_its_categories() -> None:
    from btune_wrap import GENERAL_MODEL_DIR
    from btune_wrap.categories import DEFAULT_CATEGORIES
    from btune_wrap.neighbors import general_fallback

    for mode in ("comp", "decomp"):
        model = general_fallback(mode, DEFAULT_CATEGORIES, DEFAULT_FEATURES)
        assert model is not None and model.path.parent == GENERAL_MODEL_DIR
        assert model.perf_mode.name.lower() == mode and model.prior == 0.0
    assert general_fallback("comp", DEFAULT_CATEGORIES[:4], DEFAULT_FEATURES) is None
    assert general_fallback("comp", DEFAULT_CATEGORIES, DEFAULT_FEATURES[:3]) is None


def test_training_one_array_of_the_default_categories_leans_on_the_general_model(
    tmp_path: Path,
) -> None:
    pytest.importorskip("tensorflow")
    from btune_wrap import GENERAL_MODEL_DIR
    from btune_wrap.categories import DEFAULT_CATEGORIES
    from btune_wrap.config import PerfMode
    from btune_wrap.train import TrainConfig, fit_all

    meas = Measurements.load(
        build_training_meas(tmp_path, nchunks=12, categories=DEFAULT_CATEGORIES)
    )
    for fallback in (True, False):
        config = TrainConfig(**QUICK, fallback=fallback)
        ext = fit_all([meas], [PerfMode.DECOMP], config)[-1]
        assert isinstance(ext, NeighborsModel) and ext.prior == ONE_ARRAY_PRIOR
        if fallback:
            assert ext.fallback is not None and ext.fallback.path.parent == GENERAL_MODEL_DIR
        else:
            assert ext.fallback is None
