"""Cross-validation (leave one dataset out, even/odd chunks) and Measurements.select, on small
real gathers of two datasets; tiny networks and few epochs keep it fast."""

from __future__ import annotations

from pathlib import Path

import blosc2
import numpy as np
import pandas as pd
import pytest

from btune_wrap import ConfigError, InputError
from btune_wrap.cli import main as cli_main
from btune_wrap.crossval import Protocol, crossval, even_odd, folds
from btune_wrap.data import mixed_int
from btune_wrap.evaluate import evaluate, gain_table
from btune_wrap.measure import gather
from btune_wrap.measurements import Measurements
from btune_wrap.objective import TRADEOFFS, hindsight_best, objective_matrix

pytest.importorskip("tensorflow")
from btune_wrap.train import TrainConfig  # noqa: E402

#: Six categories of different codecs and filters: enough choice, a short gather.
CATEGORIES = [
    "blosclz-nofilter-nosplit-5",
    "lz4-shuffle-nosplit-5",
    "lz4-bitshuffle-nosplit-5",
    "zstd-shuffle-nosplit-1",
    "zstd-bitshuffle-nosplit-9",
    "zlib-shuffle-bytedelta-nosplit-5",
]
TINY = TrainConfig(hidden=(8,), epochs=3, patience=2, seed=0)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[Path]:
    """Two real gathers (24 chunks of 5000 int64 each, mixed kinds, different seeds)."""
    root = tmp_path_factory.mktemp("crossval")
    out = []
    for name, seed in (("alpha", 1), ("beta", 2)):
        source = root / f"{name}.b2nd"
        blosc2.asarray(mixed_int(24, seed=seed), urlpath=str(source), mode="w", chunks=(5000,))
        meas = gather(source, root / f"{name}.meas", categories=CATEGORIES, progress=False)
        out.append(Path(meas.path))
    return out


@pytest.fixture(scope="module")
def loo(datasets):
    """Leave one dataset out, both modes, evaluated on the odd chunks."""
    return crossval(datasets, "loo", "both", TINY, test_chunks="odd")


@pytest.fixture(scope="module")
def own(datasets):
    """Even/odd per dataset, comp mode."""
    return crossval(datasets, "even-odd", "comp", TINY)


def test_select_keeps_the_tables_consistent(datasets):
    meas = Measurements.load(datasets[0])
    keep = [3, 7, 8, 21]
    sub = meas.select([21, 8, 3, 7, 8])
    assert sub.chunks["chunk"].tolist() == keep
    assert sorted(sub.results["chunk"].unique().tolist()) == keep
    assert len(sub.results) == len(keep) * len(CATEGORIES)
    assert sub.meta["measured_chunks"] == 4 and meas.meta["measured_chunks"] == 24
    assert sub.name == meas.name and sub.path is None
    rows = meas.chunks["chunk"].isin(keep).to_numpy()
    for whole, part in zip(meas.matrices(), sub.matrices(), strict=True):
        np.testing.assert_array_equal(whole[rows], part)
    np.testing.assert_array_equal(sub.features(), meas.features()[rows])
    assert meas.select([1], label="one").name == "one"
    with pytest.raises(InputError, match=r"chunks=\[24, 99\] is invalid"):
        meas.select([1, 24, 99])


def test_even_odd_splits_the_chunks_by_parity(datasets):
    meas = Measurements.load(datasets[0])
    even, odd = even_odd(meas)
    assert even.chunks["chunk"].tolist() == list(range(0, 24, 2))
    assert odd.chunks["chunk"].tolist() == list(range(1, 24, 2))
    assert (even.name, odd.name) == ("alpha.meas:even", "alpha.meas")


def test_leave_one_out_folds_train_on_the_other_datasets(datasets):
    sets = [Measurements.load(d) for d in datasets]
    loo = folds(sets, "loo")
    assert [f.name for f in loo] == ["alpha.meas", "beta.meas"]
    assert [m.name for m in loo[0].train] == ["beta.meas"] and loo[0].test.nchunks == 24
    odd = folds(sets, Protocol.LEAVE_ONE_OUT, test_chunks="odd")
    assert odd[1].test.chunks["chunk"].tolist() == list(range(1, 24, 2))
    assert odd[1].train_chunks == 24
    with pytest.raises(ConfigError, match="at least two datasets"):
        folds(sets[:1], "loo")
    with pytest.raises(ConfigError, match="protocol='kfold' is invalid"):
        folds(sets, "kfold")


def test_leave_one_out_gains_are_the_evaluations_own(datasets, loo):
    result = loo
    ch = result.choices
    assert set(ch["mode"]) == {"comp", "decomp"}
    assert set(ch["method"]) == {"oracle", "model", "fixed_best", "defaults"}
    assert len(ch) == 2 * 2 * 4 * 12 * len(TRADEOFFS)  # modes x datasets x methods x chunks x t
    assert set(ch["chunk"] % 2) == {1}
    assert result.folds["model"].all() and (result.folds["train_chunks"] == 24).all()
    table = result.table("measured")
    assert list(table.index) == [
        ("comp", "alpha.meas"), ("comp", "beta.meas"), ("comp", "mean"),
        ("decomp", "alpha.meas"), ("decomp", "beta.meas"), ("decomp", "mean"),
    ]  # fmt: skip
    # the fixed best, by hand: at each tradeoff the category of best mean J over the chunks
    meas = even_odd(Measurements.load(datasets[1]))[1]
    j = objective_matrix(*meas.matrices(), "decomp", TRADEOFFS)
    fixed = np.take_along_axis(j, hindsight_best(j)[:, None, None], axis=-1)[..., 0]
    expected = np.mean(np.expm1(j.max(axis=-1) - fixed))
    assert table.loc[("decomp", "beta.meas"), "fixed_best"] == pytest.approx(expected)
    assert table.loc[("decomp", "mean"), "model"] == pytest.approx(
        table.loc[[("decomp", "alpha.meas"), ("decomp", "beta.meas")], "model"].mean()
    )
    # blosc2's defaults (auto split) are outside the 6 measured and at times better: the known
    # oracle is at least the measured one, so its gain against the measured one is <= 0
    assert (table["oracle"] <= 1e-12).all()
    assert (table[["model", "fixed_best"]] >= 0).all().all()
    known = result.table("known")
    assert (known["oracle"] == 0).all() and (known >= 0).all().all()


def test_even_odd_evaluates_the_odd_chunks_only(own):
    result = own
    assert set(result.choices["chunk"] % 2) == {1}
    assert result.folds["train_chunks"].tolist() == [12, 12]
    known = gain_table(result.choices, "known")
    assert known.index.tolist() == [("comp", "alpha.meas"), ("comp", "beta.meas")]


def test_known_oracle_spans_every_evaluation_given(own, loo):
    """Two evaluations of the same chunks concatenated: the known oracle is the best J of
    either, so no method scores below 0 against it."""
    a = own.choices
    b = loo.choices[loo.choices["mode"] == "comp"]
    both = pd.concat([a, b[b["method"] == "model"].assign(method="general")])
    table = gain_table(both, "known")
    assert list(table.columns) == ["oracle", "model", "fixed_best", "defaults", "general"]
    assert (table >= 0).all().all()


def test_crossval_command_prints_and_writes_the_tables(datasets, tmp_path, capsys):
    out = tmp_path / "gain.csv"
    argv = ["crossval", *map(str, datasets), "--mode", "comp", "--hidden", "8", "--epochs", "2"]
    assert cli_main([*argv, "--quiet", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Mean gain per dataset against the best measured category (loo)" in printed
    table = pd.read_csv(out)
    assert set(table["oracle"]) == {"known", "measured"}
    assert set(table["dataset"]) == {"alpha.meas", "beta.meas", "mean"}
    # an existing output is kept without --force; one dataset cannot be left out
    assert cli_main([*argv, "--quiet", "--output", str(out)]) == 2
    assert cli_main(["crossval", str(datasets[0]), "--quiet"]) == 2
    assert "at least two datasets" in capsys.readouterr().err


def test_evaluate_prints_the_gain_per_dataset_against_both_oracles(datasets):
    ev = evaluate(None, datasets, "comp", methods=["fixed_best", "defaults"], progress=False)
    text = ev.format()
    assert "Mean gain over the tradeoffs (vs best measured): oracle" in text
    assert "Mean gain per dataset (its own fixed best category):" in text
    table = gain_table(ev.choices)
    assert table.index.tolist() == ["alpha.meas", "beta.meas"]
    for name in table.index:
        assert f"{name}" in text
    # the summary's measured gain is the mean of the choices' gain_measured
    rows = ev.choices[(ev.choices["method"] == "defaults") & (ev.choices["tradeoff"] == 1.0)]
    summary = ev.summary.set_index(["tradeoff", "method"])
    assert summary.loc[(1.0, "defaults"), "mean_gain_measured"] == pytest.approx(
        rows["gain_measured"].mean()
    )
    np.testing.assert_allclose(rows["gain_measured"], np.expm1(rows["j_measured"] - rows["j"]))
