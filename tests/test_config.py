from __future__ import annotations

from pathlib import Path

import pytest

from btune_wrap import BtuneConfig, ConfigError, PerfMode, RepeatMode
from btune_wrap.config import parse_env_tradeoff


def test_defaults_match_the_plugin():
    cfg = BtuneConfig()
    assert cfg.tradeoff == 0.5
    assert cfg.perf_mode is PerfMode.AUTO
    assert cfg.repeat_mode is RepeatMode.STOP
    assert (cfg.nwaits, cfg.nsofts, cfg.nhards) == (0, 5, 10)
    assert cfg.use_inference == -1
    assert cfg.bandwidth == 20 * 1024**2
    assert cfg.models_dir is None


def test_names_are_parsed_case_insensitively():
    cfg = BtuneConfig(perf_mode="decomp", repeat_mode="soft", models_dir="m", tradeoff=1)
    assert cfg.perf_mode is PerfMode.DECOMP
    assert cfg.repeat_mode is RepeatMode.SOFT
    assert cfg.models_dir == Path("m")
    assert cfg.tradeoff == 1.0 and isinstance(cfg.tradeoff, float)


def test_triple_tradeoff():
    cfg = BtuneConfig(tradeoff=(0.5, 0.3, 0.2))
    assert cfg.tradeoff == (0.5, 0.3, 0.2)
    assert cfg.plugin_kwargs()["tradeoff"] == [0.5, 0.3, 0.2]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("tradeoff", 1.5, "[0, 1]"),
        ("tradeoff", -0.1, "[0, 1]"),
        ("tradeoff", float("nan"), "[0, 1]"),
        ("tradeoff", (0.5, 0.5, 0.5), "summing to 1"),
        ("tradeoff", (0.0, 0.0, 1.0), "quality weight below 1"),
        ("tradeoff", "high", "a float in [0, 1]"),
        ("tradeoff", True, "a float"),
        ("perf_mode", "FAST", "COMP, DECOMP, BALANCED, AUTO"),
        ("repeat_mode", "NEVER", "STOP, SOFT, ALL"),
        ("use_inference", -2, "in [-1, 2147483647]"),
        ("use_inference", 1.5, "an integer"),
        ("nsofts", -1, "in [0, 2147483647]"),
        ("nhards", "3", "an integer"),
        ("bandwidth", 0, "in [1, 4294967295]"),
        ("models_dir", "", "a directory path"),
        ("trace", "yes", "True or False"),
    ],
)
def test_invalid_values_name_field_value_and_range(field, value, expected):
    with pytest.raises(ConfigError) as info:
        BtuneConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(f"{field}=")
    assert repr(value) in message or str(value) in message
    assert expected in message


def test_from_env_reads_what_the_plugin_reads():
    env = {
        "BTUNE_TRADEOFF": "0.3",
        "BTUNE_PERF_MODE": "DECOMP",
        "BTUNE_MODELS_DIR": "/tmp/models",
        "BTUNE_USE_INFERENCE": "3",
        "BTUNE_TRACE": "1",
        "OTHER": "x",
    }
    cfg = BtuneConfig.from_env(env)
    assert cfg.tradeoff == pytest.approx(0.3)
    assert cfg.perf_mode is PerfMode.DECOMP
    assert cfg.models_dir == Path("/tmp/models")
    assert cfg.use_inference == 3
    assert cfg.trace is True


def test_from_env_defaults_and_overrides():
    assert BtuneConfig.from_env({}) == BtuneConfig()
    cfg = BtuneConfig.from_env({"BTUNE_TRADEOFF": "1"}, perf_mode="BALANCED")
    assert cfg.tradeoff == 1.0 and cfg.perf_mode is PerfMode.BALANCED


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0.0), (".25", 0.25), ("1.0", 1.0), ("(0.5, 0.3, 0.2)", (0.5, 0.3, 0.2))],
)
def test_env_tradeoff_forms(raw, expected):
    assert parse_env_tradeoff(raw) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("BTUNE_TRADEOFF", "0.25", "at most 3 characters"),
        ("BTUNE_TRADEOFF", "abc", "a number in [0, 1]"),
        ("BTUNE_TRADEOFF", "(0.5, 0.5)", "triple"),
        ("BTUNE_PERF_MODE", "comp", "COMP, DECOMP or BALANCED"),
        ("BTUNE_USE_INFERENCE", "all", "an integer"),
    ],
)
def test_from_env_bad_values(name, raw, expected):
    with pytest.raises(ConfigError) as info:
        BtuneConfig.from_env({name: raw})
    assert name in str(info.value) and raw in str(info.value) and expected in str(info.value)


def test_from_env_out_of_range_tradeoff_names_the_field():
    with pytest.raises(ConfigError, match=r"tradeoff=2\.0 is invalid"):
        BtuneConfig.from_env({"BTUNE_TRADEOFF": "2"})


def test_replace_revalidates():
    cfg = BtuneConfig().replace(tradeoff=0.9)
    assert cfg.tradeoff == 0.9
    with pytest.raises(ConfigError):
        cfg.replace(nwaits=-3)
