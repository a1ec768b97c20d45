"""`make demo` end to end, small: genetic tuning, gather, training, comparison table and plot."""

from __future__ import annotations

import json

import blosc2
import pandas as pd
import pytest

from btune_wrap import plugin_support
from btune_wrap.demo import demo_methods, dominated_by_defaults, run_demo
from btune_wrap.errors import InputError


def test_demo_runs_the_tutorial_end_to_end(tmp_path, clean_env):
    lines: list[str] = []
    out = tmp_path / "demo"
    result = run_demo(
        out, training_chunks=40, eval_size=100_000, repeats=1, seed=3, log=lines.append
    )
    text = "\n".join(lines)
    support = plugin_support()
    if support:
        # part 1: the plugin's table, parsed, and the tutorial's file
        trace = result["genetic_trace"]
        assert trace.rows and trace.winners
        assert "winner" in text and "Final winner:" in text
        assert blosc2.open(str(out / "rand_int_inference.b2nd")).shape == (100_000,)
    else:
        assert f"Genetic tuning skipped: {support.reason}" in text
    # part 2: models the plugin reads
    models = result["models_dir"]
    for name in ("model_comp.tflite", "model_comp.json", "model_decomp.tflite"):
        assert (models / name).stat().st_size > 0
    # part 3: one row per method and tradeoff, as CSV and as a plot
    table = pd.read_csv(result["table_path"])
    methods = [m.label for m in demo_methods(bool(support))]
    assert sorted(set(table["method"])) == sorted(methods)
    assert len(table) == len(methods) * 3
    # A model may store the data at tradeoff 0 (blosclz at level 1, a default candidate, gives
    # up on a chunk at once: ratio just below 1, the fastest write); at tradeoff 1 all compress.
    assert (table["cratio"] > 0.99).all() and (table["cspeed_gbs"] > 0).all()
    assert (table.loc[table["tradeoff"] == table["tradeoff"].max(), "cratio"] > 1).all()
    python_rows = table[table["kind"].isin(["python", "general"])]
    assert set(python_rows["engine"]) == {"python"}
    assert {"general python comp", "general python decomp"} <= set(table["method"])
    beaten = dominated_by_defaults(table)
    assert ("beat no Python engine choice" in text) == beaten.empty
    assert text.count("Note: blosc2's defaults beat") == len(beaten)
    assert result["plot_path"].stat().st_size > 10_000
    assert "t=0.5 ratio" in text

    # Run again in the same directory (as `make demo` twice does): everything is replaced.
    lines.clear()
    again = run_demo(out, training_chunks=20, eval_size=50_000, repeats=1, seed=4, log=lines.append)
    assert pd.read_csv(again["table_path"]).shape[0] == len(methods) * 3
    gathered = json.loads((out / "rand_int_training.b2nd.meas" / "meta.json").read_text())
    assert gathered["nchunks"] == 20


def test_demo_refuses_too_few_training_chunks(tmp_path):
    with pytest.raises(InputError, match="training_chunks=3 is invalid"):
        run_demo(tmp_path / "demo", training_chunks=3, log=lambda _: None)


def test_dominated_by_defaults_compares_the_ratio_and_the_speed_of_the_rows_mode():
    rows = [
        ("blosc2 defaults", "defaults", "-", 0.0, 4.0, 1.0, 2.0),
        ("model python comp", "python", "COMP", 0.0, 3.0, 0.5, 9.0),  # slower to write: beaten
        ("model python decomp", "python", "DECOMP", 0.0, 3.0, 0.5, 9.0),  # faster to read
        ("general python comp", "general", "COMP", 0.0, 4.5, 0.5, 1.0),  # better ratio
        ("model native comp", "native", "COMP", 0.0, 1.0, 0.1, 0.1),  # not the Python engine
    ]
    columns = ["method", "kind", "perf_mode", "tradeoff", "cratio", "cspeed_gbs", "dspeed_gbs"]
    beaten = dominated_by_defaults(pd.DataFrame(rows, columns=columns))
    assert beaten["method"].tolist() == ["model python comp"]
    assert beaten[["defaults_cratio", "defaults_speed", "speed_gbs"]].iloc[0].tolist() == [
        4.0, 1.0, 0.5
    ]  # fmt: skip
