"""The Evaluate stage: oracle, model, fixed best, genetic Btune and blosc2's defaults.

Real gather (the session's ``training_meas``), real models (``models_dir``), real plugin where
it can run, real LiteRT, real files. Expected numbers are recomputed by hand from the
measurement tables and from blosc2 itself, never from the code under test.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import blosc2
import numpy as np
import pandas as pd
import pytest

from btune_wrap import InputError, ModelError, plugin_support
from btune_wrap.categories import Category
from btune_wrap.cli import main as cli_main
from btune_wrap.evaluate import ALL_METHODS, Evaluation, Method, evaluate
from btune_wrap.measure import gather
from btune_wrap.measurements import Measurements
from btune_wrap.model import load_model, plugin_tradeoff
from btune_wrap.objective import TRADEOFFS
from btune_wrap.sources import open_source

needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)

#: A category set with none of the model's (the tutorial's 32 never split, nor use these levels).
OTHER_SET = ["blosclz-nofilter-split-9", "zstd-bitshuffle-split-2", "lz4-shuffle-split-1"]


@pytest.fixture(scope="module")
def meas_dir(training_meas) -> Path:
    """The session's real gather (240 chunks x the tutorial's 32 categories)."""
    return Path(training_meas)


@pytest.fixture(scope="module")
def comp_eval(models_dir, meas_dir) -> Evaluation:
    """One full evaluation (all methods, all tradeoffs) shared by the tests of this module."""
    return evaluate(models_dir, meas_dir, "comp", progress=False)


def _j(nbytes: float, cbytes: float, seconds: float, t: float) -> float:
    """The objective, written out by hand."""
    return t * math.log(nbytes / cbytes) + (1 - t) * math.log(nbytes / seconds)


def _compressed_size(buf: np.ndarray, name: str, meta: dict) -> int:
    cp = Category.parse(name).to_cparams(
        typesize=meta["typesize"], blocksize=meta["blocksize"], nthreads=meta["nthreads"]
    )
    return len(blosc2.compress2(buf, cparams=cp))


# -- the numbers ---------------------------------------------------------------------------


def test_oracle_regret_is_zero_and_every_regret_is_non_negative(comp_eval, meas_dir):
    ch = comp_eval.choices
    nchunks = Measurements.load(meas_dir).nchunks
    expected = {m.value for m in ALL_METHODS} - ({"genetic"} if not plugin_support() else set())
    assert set(ch["method"]) == expected
    assert len(ch) == nchunks * len(TRADEOFFS) * len(expected)
    oracle = ch[ch["method"] == "oracle"]
    assert (oracle["regret"] == 0).all()
    assert (oracle["j"] == oracle["j_oracle"]).all()
    assert np.isfinite(ch["regret"]).all()
    assert (ch["regret"] >= 0).all() and (ch["regret"] < 1).all()
    # one choice per (chunk, tradeoff, method)
    assert not ch.duplicated(["dataset", "chunk", "tradeoff", "method"]).any()
    assert set(comp_eval.summary["tradeoff"]) == set(TRADEOFFS)


def test_model_numbers_equal_those_computed_by_hand(comp_eval, models_dir, meas_dir):
    meas = Measurements.load(meas_dir)
    model = load_model(models_dir, "comp")
    results = meas.results.set_index(["chunk", "category"])
    evaluated = comp_eval.choices[comp_eval.choices["cost_from"] == "evaluate"]
    source = open_source(meas.meta["source"])
    ids = meas.chunks["chunk"].tolist()
    checked = 0
    for chunk in (ids[0], ids[len(ids) // 2], ids[-1]):
        feats = meas.chunks.set_index("chunk").loc[chunk]
        nbytes = float(feats["nbytes"])
        extra = evaluated[evaluated["chunk"] == chunk].drop_duplicates("category")
        for t in (0.0, 0.3, 1.0):
            k = model.choose(feats["cratio_feature"], feats["speed_feature"], plugin_tradeoff(t))
            name = model.categories[k].name
            row = comp_eval.choices.query(
                "chunk == @chunk and tradeoff == @t and method == 'model'"
            )
            assert len(row) == 1
            row = row.iloc[0]
            assert row["category"] == name
            if (chunk, name) in results.index:
                cost = results.loc[(chunk, name)]
                assert row["cost_from"] == "gather"
                assert (row["cbytes"], row["ctime"]) == (cost["cbytes"], cost["ctime"])
            else:
                assert row["cost_from"] == "evaluate"
                buf = source.chunk(int(chunk))
                assert row["cbytes"] == _compressed_size(buf, name, meas.meta)
            j = _j(nbytes, row["cbytes"], row["ctime"], t)
            assert row["j"] == pytest.approx(j, rel=1e-12)
            # the oracle: the best of every category measured on this chunk
            here = results.loc[chunk]
            candidates = [
                _j(nbytes, c, s, t) for c, s in zip(here["cbytes"], here["ctime"], strict=True)
            ]
            candidates += [
                _j(nbytes, c, s, t) for c, s in zip(extra["cbytes"], extra["ctime"], strict=True)
            ]
            assert row["j_oracle"] == pytest.approx(max(candidates), rel=1e-12)
            assert row["regret"] == pytest.approx(1 - math.exp(j - max(candidates)), abs=1e-12)
            checked += 1
    source.close()
    assert checked == 9
    # the summary's totals of the model at one tradeoff
    rows = comp_eval.choices.query("method == 'model' and tradeoff == 0.5")
    s = comp_eval.summary.query("method == 'model' and tradeoff == 0.5").iloc[0]
    assert s["cratio"] == pytest.approx(rows["nbytes"].sum() / rows["cbytes"].sum())
    assert s["cspeed_gbs"] == pytest.approx(rows["nbytes"].sum() / rows["ctime"].sum() / 1e9)
    assert s["dspeed_gbs"] == pytest.approx(rows["nbytes"].sum() / rows["dtime"].sum() / 1e9)
    assert s["mean_regret"] == pytest.approx(rows["regret"].mean())


def test_fixed_best_is_the_category_of_best_mean_objective_over_the_chunks(comp_eval, meas_dir):
    meas = Measurements.load(meas_dir)
    rows_by_chunk = meas.results.merge(meas.chunks[["chunk", "nbytes"]], on="chunk")
    for t in (0.0, 0.5, 1.0):
        r = rows_by_chunk
        per_row = t * np.log(r["nbytes"] / r["cbytes"]) + (1 - t) * np.log(r["nbytes"] / r["ctime"])
        j = per_row.groupby(rows_by_chunk["category"]).mean().to_dict()
        best = max(j, key=j.get)
        rows = comp_eval.choices.query("method == 'fixed_best' and tradeoff == @t")
        assert set(rows["category"]) == {best}
        assert (rows["cost_from"] == "gather").all()
    summary = comp_eval.summary
    assert summary.groupby("tradeoff")["best"].sum().eq(1).all()
    others = summary[summary["method"] != "oracle"]
    for t, g in others.groupby("tradeoff"):
        assert g.loc[g["best"], "mean_regret"].iloc[0] == g["mean_regret"].min()
        assert comp_eval.best_methods()[t] == g.loc[g["best"], "method"].iloc[0]


def test_defaults_are_measured_on_the_chunks_not_looked_up(comp_eval, meas_dir):
    meas = Measurements.load(meas_dir)
    name = Category.from_cparams(blosc2.CParams()).name
    assert name == "zstd-shuffle-autosplit-5" and name not in meas.meta["categories"]
    rows = comp_eval.choices[comp_eval.choices["method"] == "defaults"]
    assert set(rows["category"]) == {name}
    assert (rows["cost_from"] == "evaluate").all()
    # measured once per chunk, used at every tradeoff
    assert rows.groupby("chunk")["ctime"].nunique().eq(1).all()
    chunk = int(rows["chunk"].iloc[-1])
    with open_source(meas.meta["source"]) as source:
        size = _compressed_size(source.chunk(chunk), name, meas.meta)
    assert rows.loc[rows["chunk"] == chunk, "cbytes"].iloc[0] == size


@needs_plugin
def test_genetic_final_choice_is_measured_like_the_others(comp_eval, meas_dir):
    measured = set(Measurements.load(meas_dir).meta["categories"])
    rows = comp_eval.choices[comp_eval.choices["method"] == "genetic"]
    info = comp_eval.meta["genetic"]
    assert [g["tradeoff"] for g in info] == list(TRADEOFFS)
    for g in info:
        at_t = rows[rows["tradeoff"] == g["tradeoff"]]
        assert set(at_t["category"]) == {g["category"]}
        Category.parse(g["category"])
        expected = "gather" if g["category"] in measured else "evaluate"
        assert (at_t["cost_from"] == expected).all()
    assert "genetic" not in comp_eval.notes


@pytest.mark.skipif(bool(plugin_support()), reason="the plugin runs here: genetic is evaluated")
def test_genetic_is_absent_with_the_reason_where_the_plugin_cannot_run(comp_eval):
    assert "genetic" not in comp_eval.methods
    assert plugin_support().reason in comp_eval.notes["genetic"]
    assert comp_eval.notes["genetic"] in comp_eval.format()


def test_model_evaluated_on_other_data_measured_with_another_category_set(models_dir, tmp_path):
    rng = np.random.default_rng(3)
    series = {
        "walk": np.cumsum(rng.normal(size=30_000)),  # 6 chunks of float64
        "steps": np.repeat(rng.integers(0, 100, 2_000), 10).astype(np.int32),  # 4 chunks of int32
    }
    sources, meas = {}, {}
    for name, data in series.items():
        sources[name] = tmp_path / f"{name}.b2nd"
        blosc2.asarray(data, urlpath=str(sources[name]), mode="w", chunks=(5000,))
        meas[name] = gather(sources[name], categories=OTHER_SET, repeats=1, progress=False)
    methods = (Method.MODEL, Method.FIXED_BEST, Method.DEFAULTS)
    dirs = [m.path for m in meas.values()]
    ev = evaluate(models_dir, dirs, "decomp", tradeoffs=np.array([0, 0.5, 1]), methods=methods)
    model_cats = {c.name for c in load_model(models_dir, "decomp").categories}
    assert not model_cats & set(OTHER_SET)
    rows = ev.choices[ev.choices["method"] == "model"]
    assert rows.groupby("dataset").size().to_dict() == {"walk.b2nd.meas": 18, "steps.b2nd.meas": 12}
    assert set(rows["category"]) <= model_cats
    assert (rows["cost_from"] == "evaluate").all()  # outside the set: measured, not looked up
    for name, m in meas.items():
        mine = rows[rows["dataset"] == m.path.name].drop_duplicates(["chunk", "category"])
        with open_source(sources[name]) as source:
            for row in mine.itertuples():
                buf = source.chunk(row.chunk)
                assert row.cbytes == _compressed_size(buf, row.category, m.meta)
    assert set(ev.choices.loc[ev.choices["method"] == "fixed_best", "category"]) <= set(OTHER_SET)
    assert (ev.choices.loc[ev.choices["method"] == "oracle", "regret"] == 0).all()
    assert (ev.choices["regret"] >= 0).all()
    assert ev.methods == ("oracle", "model", "fixed_best", "defaults")


# -- outputs -------------------------------------------------------------------------------


def test_save_writes_json_csv_and_readable_plots(comp_eval, tmp_path):
    out = comp_eval.save(tmp_path / "eval")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "choices.parquet", "evaluation.json", "frontier.png", "regret.png", "summary.csv"
    ]  # fmt: skip
    for png in ("regret.png", "frontier.png"):
        blob = (out / png).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 20_000
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["mode"] == "comp"
    assert set(doc["best"]) == {f"{t:g}" for t in TRADEOFFS}
    assert len(doc["summary"]) == len(comp_eval.summary)
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), comp_eval.summary)
    assert len(pd.read_parquet(out / "choices.parquet")) == len(comp_eval.choices)
    text = comp_eval.format()
    assert text.count("<- best") == len(TRADEOFFS)
    assert all(m in text for m in comp_eval.methods)

    stamp = (out / "evaluation.json").stat().st_mtime_ns
    with pytest.raises(InputError, match="does not exist yet"):
        comp_eval.save(out)
    assert (out / "evaluation.json").stat().st_mtime_ns == stamp
    comp_eval.save(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_cli_evaluate(models_dir, meas_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", str(models_dir), str(meas_dir), "--mode", "decomp", "--no-genetic"]
    assert cli_main([*argv, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mode decomp" in printed and printed.count("<- best") == len(TRADEOFFS)
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["mode"] == "decomp" and "genetic" not in doc["meta"]["methods"]
    assert {r["method"] for r in doc["summary"]} == {"oracle", "model", "fixed_best", "defaults"}


# -- bad input -----------------------------------------------------------------------------


def _copy_meas(meas_dir: Path, dst: Path, drop_chunk: bool) -> Path:
    shutil.copytree(meas_dir, dst)
    meas = Measurements.load(dst)
    last = int(meas.chunks["chunk"].iloc[-1])
    results = meas.results
    if drop_chunk:  # the chunk is gone from both tables
        meas.chunks[meas.chunks["chunk"] != last].to_parquet(dst / "chunks.parquet")
        results = results[results["chunk"] != last]
    else:  # the chunk lacks one category's result
        results = results.drop(results.index[-1])
    results.to_parquet(dst / "results.parquet")
    return dst


@pytest.mark.parametrize(
    "case", ["other-mode", "results-missing", "chunk-missing", "source-missing", "output-exists"]
)
def test_cli_bad_input_is_refused_and_nothing_is_written(
    case, models_dir, meas_dir, tmp_path, capsys
):
    models, meas = Path(models_dir), Path(meas_dir)
    out = tmp_path / "eval"
    if case == "other-mode":  # a models directory with a comp model only, asked for decomp
        models = tmp_path / "models"
        models.mkdir()
        for f in Path(models_dir).glob("model_comp.*"):
            shutil.copy(f, models / f.name)
    elif case in ("results-missing", "chunk-missing"):
        meas = _copy_meas(Path(meas_dir), tmp_path / "copy.meas", case == "chunk-missing")
    elif case == "source-missing":
        meas = tmp_path / "moved.meas"
        shutil.copytree(meas_dir, meas)
        meta = json.loads((meas / "meta.json").read_text())
        meta["source"] = str(tmp_path / "gone.b2nd")
        meta["input"]["path"] = str(tmp_path / "gone.b2nd")
        (meas / "meta.json").write_text(json.dumps(meta))
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    code = cli_main(["evaluate", str(models), str(meas), "--mode", "decomp", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    expected = {
        "other-mode": "has no model for mode decomp .*model_decomp.tflite.* comp only",
        "results-missing": "lack some of the",
        "chunk-missing": "chunks were measured but chunks.parquet holds",
        "source-missing": "source .* cannot be opened",
        "output-exists": "one btune_wrap wrote \\(this one is not\\)",
    }[case]
    assert err.startswith("btune evaluate: error: ")
    assert re.search(expected, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    if case == "output-exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_library_errors_name_the_argument(models_dir, meas_dir):
    with pytest.raises(ModelError, match="models_dir="):
        evaluate(Path(meas_dir), meas_dir, "comp")
    with pytest.raises(ValueError, match="tradeoffs="):
        evaluate(models_dir, meas_dir, "comp", tradeoffs=(0.5, 1.5))
    with pytest.raises(ValueError, match="methods="):
        evaluate(models_dir, meas_dir, "comp", methods=("oracle",))
    with pytest.raises(ValueError, match="mode="):
        evaluate(models_dir, meas_dir, "balanced")
    with pytest.raises(InputError, match="each directory once"):
        evaluate(models_dir, [meas_dir, Path(meas_dir) / ".." / Path(meas_dir).name], "comp")


def test_group_firsts_points_each_chunk_to_the_first_measured_chunk_of_its_group():
    from btune_wrap.evaluate import group_firsts

    ids = np.array([1, 2, 5, 9, 10, 11, 24])
    assert group_firsts(ids, 4).tolist() == [0, 0, 2, 3, 3, 3, 6]
    assert group_firsts(ids, 1).tolist() == list(range(7))
