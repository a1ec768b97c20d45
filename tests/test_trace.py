"""The trace parser on both table layouts, with inference lines joined to their rows."""

from __future__ import annotations

import pytest

from btune_wrap import parse_trace

RULE = "-=" * 39 + "-="

# Btune 1.2.x: S.Score (inverse score, higher is better), no Blocksize/Shufflesize.
NEW_LAYOUT = f"""{RULE}
Btune version: 1.2.1
Performance Mode: DECOMP, Compression tradeoff: 0.300000, Bandwidth: 20 GB/s
Behaviour: Waits - 0, Softs - 5, Hards - 10, Repeat Mode - STOP
TRACE: Environment variable BTUNE_MODELS_DIR is not defined
TRACE: WARNING: Empty metadata, no inference performed

|    Codec   | Filter | Split | C.Level | C.Threads | D.Threads |  S.Score  |  C.Ratio   |   Btune State   | Readapt | Winner
|        lz4 |      0 |     1 |       8 |         2 |         2 |     0.311 |      1.96x |    CODEC_FILTER |    HARD | W
|    blosclz |      2 |     0 |       8 |         2 |         2 |      2.05 |      4.41x |    CODEC_FILTER |    HARD | -
|       zstd |     35 |     1 |       3 |         4 |         2 |  1.2e-05 |       515x |          CLEVEL |    SOFT | S
some line printed by the user's program
"""  # noqa: E501

# Older Btune: Score (lower is better), with Blocksize and Shufflesize; inference lines.
OLD_LAYOUT = f"""Creating data for inference purposes...
{RULE}
Btune version: 1.0.1.dev
Performance Mode: COMP, Compression tradeoff: (0.500000, 0.250000, 0.250000), Bandwidth: 20 GB/s
Behaviour: Waits - 1, Softs - 4, Hards - 9, Repeat Mode - REPEAT_SOFT
INFO: Model files found in the 'm' directory
TRACE: time load model: 0.010000
TRACE: Inference category=5 codec=1 filter=1 clevel=5 splitmode=2 time entropy=0.000300 inference=0.000800
| Codec | Filter | Split | C.Level | Blocksize | Shufflesize | C.Threads | D.Threads | Score | C.Ratio | Btune State | Readapt | Winner
|   lz4 |      1 |     1 |       5 |         0 |           8 |         6 |         6 | 0.00041 |   3.90x | CODEC_FILTER |  HARD | W
TRACE: Inference category=2 codec=0 filter=2 clevel=5 splitmode=1 time entropy=0.000100 inference=0.000006
|   blosclz |   2 |     0 |       5 |        16 |           8 |         6 |         6 | 1.3e-05 |   4.47x | CODEC_FILTER |  HARD | -
"""  # noqa: E501


def test_new_layout():
    trace = parse_trace(NEW_LAYOUT)
    assert len(trace.banners) == 1
    banner = trace.banners[0]
    assert (banner.version, banner.perf_mode, banner.tradeoff) == ("1.2.1", "DECOMP", 0.3)
    assert (banner.nwaits, banner.nsofts, banner.nhards, banner.repeat_mode) == (0, 5, 10, "STOP")
    assert [r.codec for r in trace.rows] == ["lz4", "blosclz", "zstd"]
    first, second, third = trace.rows
    assert (first.filter, first.split, first.clevel, first.cthreads, first.dthreads) == (
        0,
        1,
        8,
        2,
        2,
    )
    assert first.score == pytest.approx(0.311) and first.score_higher_is_better
    assert second.cratio == pytest.approx(4.41)
    assert third.cratio == 515 and third.score == pytest.approx(1.2e-5)
    assert first.is_winner and not second.is_winner and third.is_special
    assert [r.step for r in trace.rows] == [0, 1, 2]
    assert first.blocksize is None and first.inference is None
    assert trace.winners == [first]
    assert "TRACE: Environment variable BTUNE_MODELS_DIR is not defined" in trace.messages


def test_old_layout_with_inference_lines():
    trace = parse_trace(OLD_LAYOUT)
    banner = trace.banners[0]
    assert banner.tradeoff == (0.5, 0.25, 0.25)
    assert banner.repeat_mode == "REPEAT_SOFT"
    assert len(trace.rows) == 2 and len(trace.inferences) == 2
    row = trace.rows[1]
    assert not row.score_higher_is_better
    assert (row.blocksize, row.shufflesize, row.cthreads) == (16, 8, 6)
    assert row.inference is not None
    assert (row.inference.category, row.inference.codec, row.inference.splitmode) == (2, 0, 1)
    assert row.inference.time_entropy == pytest.approx(1e-4)
    assert trace.rows[0].inference.category == 5
    assert "INFO: Model files found in the 'm' directory" in trace.messages


def test_dataframe_has_one_row_per_step_and_flat_inference_columns():
    df = parse_trace(OLD_LAYOUT).to_dataframe()
    assert list(df["codec"]) == ["lz4", "blosclz"]
    assert list(df["inf_category"]) == [5, 2]
    assert "inference" not in df.columns
    empty = parse_trace("nothing here").to_dataframe()
    assert len(empty) == 0 and "codec" in empty.columns


def test_rows_before_a_header_and_malformed_rows_are_ignored():
    text = "| lz4 | 0 | 1 |\n" + NEW_LAYOUT + "| lz4 | x | 1 | 8 | 2 | 2 | 1 | 2x | A | B | W\n"
    assert len(parse_trace(text).rows) == 3


def test_assemble_equals_the_constructor():
    from btune_wrap.trace import InferenceLine, TraceRow, assemble

    inf_fields = {"category": 3, "codec": 1, "filter": 1, "clevel": 5, "splitmode": 2}
    times = {"time_entropy": 1e-5, "time_inference": 2e-6}
    inf = assemble(InferenceLine, inf_fields, times)
    assert inf == InferenceLine(**inf_fields, **times)
    assert hash(inf) == hash(InferenceLine(**inf_fields, **times))
    base = {
        "codec": "lz4", "filter": 1, "split": 0, "clevel": 5, "cthreads": 2, "dthreads": 2,
        "readapt": "", "score_higher_is_better": True, "blocksize": None, "shufflesize": None,
    }  # fmt: skip
    per_row = {"step": 7, "score": 0.5, "cratio": 2.5, "state": "STOP", "winner": "-"}
    row = assemble(TraceRow, base, {**per_row, "inference": inf})
    assert row == TraceRow(**base, **per_row, inference=inf)
    assert repr(row) == repr(TraceRow(**base, **per_row, inference=inf))
    with pytest.raises(AttributeError):
        row.step = 8  # still frozen
