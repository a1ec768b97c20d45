"""The real Btune plugin, driven from Python: genetic runs, discovery, version guard."""

from __future__ import annotations

import subprocess
import sys

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig, InputError, plugin_support, write_tuned
from btune_wrap.data import rand_int
from btune_wrap.plugin import check_versions, version_tuple

from .conftest import ROOT, bare_path_env

CODECS = {"blosclz", "lz4", "lz4hc", "zlib", "zstd"}

needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)


@needs_plugin
@pytest.mark.parametrize("mode", ["COMP", "DECOMP", "BALANCED"])
def test_genetic_run_traces_and_round_trips(tmp_path, clean_env, mode):
    data = rand_int(60_000, seed=3)
    target = tmp_path / "out.b2nd"
    config = BtuneConfig(tradeoff=0.5, perf_mode=mode, trace=True)
    arr, trace = write_tuned(data, config, urlpath=target, chunks=(5000,))
    assert len(trace.rows) >= 1
    assert trace.winners, "a genetic run has at least one winner"
    assert {row.codec for row in trace.rows} <= CODECS
    assert trace.banners and trace.banners[0].perf_mode == mode
    assert trace.engine == "native"
    np.testing.assert_array_equal(arr[:], data)
    np.testing.assert_array_equal(blosc2.open(str(target))[:], data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.b2nd"]


@needs_plugin
def test_config_wins_over_environment(clean_env):
    clean_env.setenv("BTUNE_PERF_MODE", "DECOMP")
    clean_env.setenv("BTUNE_TRADEOFF", "0.1")
    arr, trace = write_tuned(
        rand_int(20_000, seed=1),
        BtuneConfig(tradeoff=0.9, perf_mode="COMP", trace=True),
        chunks=(5000,),
    )
    assert trace.banners[0].perf_mode == "COMP"
    assert trace.banners[0].tradeoff == pytest.approx(0.9)
    # and the caller's environment is restored afterwards
    import os

    assert os.environ["BTUNE_PERF_MODE"] == "DECOMP"


@needs_plugin
def test_no_trace_requested_gives_empty_trace(clean_env):
    arr, trace = write_tuned(rand_int(20_000, seed=2), BtuneConfig(), chunks=(5000,))
    assert trace.rows == [] and arr.shape == (20_000,)


@needs_plugin
def test_in_memory_multidimensional(clean_env):
    data = np.arange(120 * 70, dtype=np.float32).reshape(120, 70)
    arr, trace = write_tuned(data, BtuneConfig(trace=True), chunks=(50, 70), blocks=(10, 70))
    np.testing.assert_array_equal(arr[:], data)
    assert arr.chunks == (50, 70)
    assert trace.rows


def test_empty_array_is_refused():
    with pytest.raises(InputError, match="non-empty"):
        write_tuned(np.array([], dtype=np.int64), BtuneConfig())


@needs_plugin
def test_discovery_from_an_unactivated_venv(tmp_path):
    """Started as .venv/bin/python with a PATH that has no python, the plugin still runs."""
    script = (
        "import numpy as np\n"
        "from btune_wrap import BtuneConfig, write_tuned\n"
        "a = np.arange(40_000, dtype=np.int64)\n"
        "arr, trace = write_tuned(a, BtuneConfig(trace=True), chunks=(5000,))\n"
        "assert (arr[:] == a).all()\n"
        "print('ROWS', len(trace.rows))\n"
    )
    env = bare_path_env()
    probe = subprocess.run(["sh", "-c", "command -v python"], env=env, capture_output=True)
    assert probe.returncode != 0, "the test needs a PATH without python"
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "ROWS 8" in result.stdout


@pytest.mark.parametrize(
    ("blosc2_version", "btune_version", "ok", "fragment"),
    [
        ("4.0.0", "1.2.1", True, "known-good"),
        ("4.1.2", "1.2.1", True, "known-good"),
        ("4.2.0", "1.2.1", False, "SIGFPE"),
        ("4.14.1", "1.2.1", False, "SIGFPE"),
        ("5.0.0.dev1", "1.2.1", False, "outside the range"),
        ("3.12.2", "1.2.1", False, "outside the range"),
        ("4.0.0", "1.1.0", False, "blosc2-btune 1.1.0"),
        ("4.0.0", None, False, "not installed"),
    ],
)
def test_version_guard_decision(blosc2_version, btune_version, ok, fragment):
    support = check_versions(blosc2_version, btune_version)
    assert support.ok is ok and bool(support) is ok
    assert fragment in support.reason


def test_version_tuple():
    assert version_tuple("4.0.0") == (4, 0, 0)
    assert version_tuple("4.2.0.dev1") == (4, 2, 0)
    assert version_tuple("1.2rc1") == (1, 2)


def test_rand_int_script_follows_the_tutorial(tmp_path):
    """BTUNE_* in the environment drive the script exactly as in the tutorial."""
    env = bare_path_env(BTUNE_TRACE="1", BTUNE_TRADEOFF="0.5", BTUNE_PERF_MODE="COMP")
    script = ROOT / "inference" / "rand_int.py"
    result = subprocess.run(
        [sys.executable, str(script), "--size", "50000", "--seed", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    if not plugin_support():
        assert result.returncode == 2 and "Btune plugin" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert "Btune version:" in result.stdout and "| Winner" in result.stdout
    assert "NDArray 'rand_int_inference.b2nd' created!" in result.stdout
    assert blosc2.open(str(tmp_path / "rand_int_inference.b2nd")).shape == (50_000,)


def test_rand_int_script_rejects_a_misread_tradeoff(tmp_path):
    env = bare_path_env(BTUNE_TRADEOFF="0.55")
    script = ROOT / "inference" / "rand_int.py"
    result = subprocess.run(
        [sys.executable, str(script), "--size", "20000"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "BTUNE_TRADEOFF='0.55'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_btune_info_reports_versions_and_plugin_state():
    result = subprocess.run(
        [sys.executable, "-m", "btune_wrap.cli", "info"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"blosc2          {blosc2.__version__}" in result.stdout
    assert "Btune plugin usable:" in result.stdout
