"""Calls run in a child process: a crash there (SIGSEGV, abort) costs the call a named error,
never the caller's process. The Btune plugin and the opening of Blosc2 files go through it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import blosc2
import numpy as np
import pytest

from btune_wrap import BtuneConfig, BtuneWrapError, plugin_support, write_tuned
from btune_wrap.data import rand_int
from btune_wrap.errors import ChildCrashError, PluginCrashError
from btune_wrap.evaluate import genetic_choices
from btune_wrap.isolate import run_isolated
from btune_wrap.plugin import tuned_traces

from .conftest import ROOT, mixed_series

needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)


# -- functions the child runs (top level, so that they pickle by name) ----------------------


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)


def abort_self() -> None:
    os.abort()


def describe(array: np.ndarray, scale: int = 1) -> dict[str, object]:
    return {
        "sum": int(array.sum()) * scale,
        "writeable": bool(array.flags.writeable),
        "pid": os.getpid(),
    }


def raise_key_error() -> None:
    raise KeyError("no such chunk")


def exit_early() -> None:
    os._exit(3)


# -- the generic runner ----------------------------------------------------------------------


def test_a_child_killed_by_sigsegv_raises_plugin_crash_error_naming_the_signal():
    with pytest.raises(PluginCrashError, match=r"the test crashed \(SIGSEGV\) while dying"):
        run_isolated(
            kill_self, (signal.SIGSEGV,), what="the test", doing="dying", error=PluginCrashError
        )


def test_an_abort_in_the_child_is_a_child_crash_error_by_default():
    with pytest.raises(ChildCrashError, match=r"SIGABRT") as info:
        run_isolated(abort_self)
    assert not isinstance(info.value, PluginCrashError)
    assert isinstance(info.value, BtuneWrapError)


def test_a_child_past_its_timeout_is_stopped_and_named():
    import time

    started = time.monotonic()
    with pytest.raises(ChildCrashError, match=r"the nap did not finish within 2 s while sleeping"):
        run_isolated(time.sleep, (600,), what="the nap", doing="sleeping", timeout=2)
    # Far below the 600 s nap even on a loaded machine: the child was stopped, not awaited.
    assert time.monotonic() - started < 120


def test_arguments_and_result_cross_to_the_child_and_back():
    data = np.arange(10_000, dtype=np.int64)
    out = run_isolated(describe, (data[::2],), {"scale": 3})
    assert out["sum"] == int(data[::2].sum()) * 3
    assert out["pid"] != os.getpid()


def test_an_exception_in_the_child_is_raised_with_its_class_and_the_child_traceback():
    with pytest.raises(KeyError, match="no such chunk") as info:
        run_isolated(raise_key_error, what="the lookup")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "the lookup" in notes and "raise_key_error" in notes


def test_a_child_that_exits_without_a_result_is_named_with_its_status():
    with pytest.raises(ChildCrashError, match="exited with status 3"):
        run_isolated(exit_early)


# -- the plugin through it -------------------------------------------------------------------

#: FACTS.md section 11: a memory-mapped one-chunk int16 array in DECOMP mode killed the
#: process (exit 139) when the plugin ran in-process on it.
MMAP_CRASH = """
import numpy as np
from btune_wrap import BtuneConfig, PluginCrashError, write_tuned
np.save("w.npy", np.cumsum(np.random.default_rng(0).integers(-3, 4, 32768)).astype(np.int16))
data = np.asarray(np.load("w.npy", mmap_mode="r"))
try:
    arr, _ = write_tuned(data, BtuneConfig(tradeoff=0, perf_mode="DECOMP"), chunks=(32768,),
                         blocks=(32768,), nthreads=1)
except PluginCrashError as exc:
    print("CRASH-AS-ERROR", exc)
else:
    assert (arr[:] == data).all()
    print("WRITTEN")
"""


@needs_plugin
def test_the_memory_mapped_one_chunk_array_no_longer_kills_the_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", MMAP_CRASH], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "WRITTEN" in result.stdout or "CRASH-AS-ERROR" in result.stdout


@needs_plugin
def test_a_plugin_call_that_dies_leaves_the_existing_output_untouched(tmp_path, clean_env):
    """nthreads=0 made blosc2 divide by zero (SIGFPE) in the process that ran the plugin."""
    target = tmp_path / "out.b2nd"
    target.write_text("precious")
    with pytest.raises(BtuneWrapError, match="nthreads|SIGFPE"):
        write_tuned(rand_int(20_000, seed=0), BtuneConfig(), urlpath=target, nthreads=0)
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.b2nd"]


@needs_plugin
def test_an_in_memory_result_keeps_the_chunks_the_plugin_wrote(clean_env):
    """Mixed series (zeros included): their frame made ``ndarray_from_cframe(copy=True)`` abort
    the process on blosc2 4.0.0, so the chunks come back one by one."""
    data = mixed_series(20_000)
    arr, trace = write_tuned(data, BtuneConfig(trace=True), chunks=(5000,))
    assert arr.urlpath is None and arr.chunks == (5000,)
    np.testing.assert_array_equal(arr[:], data)
    assert arr.schunk.nchunks == 20 and len(trace.rows) == 20
    # Each chunk is the one the plugin wrote: its ratio is the one the trace printed.
    for i, row in enumerate(trace.rows):
        nbytes, cbytes, _ = blosc2.get_cbuffer_sizes(arr.schunk.get_chunk(i))
        assert nbytes / cbytes == pytest.approx(row.cratio, rel=0.01)
    arr[:5000] = 0  # an in-memory array of this process, still writable
    assert int(arr[:5000].sum()) == 0


@needs_plugin
def test_a_batch_of_tradeoffs_runs_each_config_in_one_child(clean_env):
    data = rand_int(20_000, seed=5)
    tradeoffs = [0.0, 0.5, 1.0]
    traces = tuned_traces(
        data, [BtuneConfig(tradeoff=t, trace=True) for t in tradeoffs], chunks=(5000,)
    )
    assert [tr.banners[0].tradeoff for tr in traces] == pytest.approx(tradeoffs)
    choices = genetic_choices(data, BtuneConfig().perf_mode, tradeoffs, chunks=(5000,))
    assert len(choices) == 3 and all(row.winner in ("W", "-", "S") for _, row in choices)


# -- corrupted Blosc2 files ------------------------------------------------------------------

#: Opening and reading a .b2nd, the way a user would, in a child of the test.
RAW_READ = """
import sys, blosc2
a = blosc2.open(sys.argv[1], mode="r")
for i in range(a.schunk.nchunks):
    a.schunk.decompress_chunk(i)
a[()]
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "btune_wrap.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def _corrupted_files(tmp_path: Path) -> list[tuple[Path, int]]:
    """A small .b2nd with one byte overwritten at offsets across its header and trailer,
    each with how plain blosc2 fares on it (negative: killed by that signal)."""
    good = tmp_path / "good.b2nd"
    blosc2.asarray(
        np.arange(1000, dtype=np.int32), urlpath=str(good), mode="w", chunks=(500,), blocks=(100,)
    )
    raw = good.read_bytes()
    # Offsets in the frame header, the b2nd metalayer and the trailer (C-Blosc2 frame format).
    offsets = [11, 13, 26, 39, 100, 108, len(raw) - 22, len(raw) - 28]
    files = []
    for off in offsets:
        data = bytearray(raw)
        data[off] ^= 0xFF
        bad = tmp_path / f"bad_{off}.b2nd"
        bad.write_bytes(bytes(data))
        try:
            plain = subprocess.run(
                [sys.executable, "-c", RAW_READ, str(bad)], capture_output=True, timeout=120
            )
            files.append((bad, plain.returncode))
        except subprocess.TimeoutExpired:  # a hang is as bad as a crash
            files.append((bad, -signal.SIGKILL))
    return files


def test_gather_and_compress_refuse_a_corrupted_b2nd_with_exit_2(tmp_path, models_dir):
    files = _corrupted_files(tmp_path)
    killed = [(f, rc) for f, rc in files if rc < 0]
    assert len(killed) >= 3, f"plain blosc2 should die on some of these: {files}"
    for bad, plain_rc in files:
        output = tmp_path / f"out_{bad.stem}.b2nd"
        for args in (
            ("gather", bad.name, "--quiet"),
            ("compress", bad.name, output.name, "--models", str(models_dir), "--quiet"),
        ):
            result = _cli(*args, cwd=tmp_path)
            assert result.returncode >= 0, (args, result.returncode, result.stderr[-800:])
            if plain_rc < 0:
                assert result.returncode == 2, (args, result.stderr[-800:])
                assert repr(bad.name) in result.stderr and "Traceback" not in result.stderr
        if plain_rc < 0:
            assert not output.exists() and not Path(f"{bad}.meas").exists()


def reopen_after_corruption(path: str) -> list[str]:
    """Open a sound .b2nd, corrupt its header in place, open it again; what each open gave."""
    from btune_wrap.errors import InputError
    from btune_wrap.sources import open_source

    seen = []
    for _ in range(2):
        try:
            with open_source(path) as source:
                seen.append(f"opened {source.nchunks} chunks")
        except InputError as exc:
            seen.append(str(exc))
        data = bytearray(Path(path).read_bytes())
        data[11] ^= 0xFF  # the frame's header size: blosc2 4.0 aborts on it
        Path(path).write_bytes(bytes(data))
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    return seen


def test_a_file_changed_after_its_check_is_checked_again(tmp_path):
    path = tmp_path / "a.b2nd"
    blosc2.asarray(np.arange(1000, dtype=np.int32), urlpath=str(path), mode="w", chunks=(500,))
    # In a child of its own: were the check skipped, this test's process would die.
    first, second = run_isolated(reopen_after_corruption, (str(path),))
    assert first == "opened 2 chunks"
    assert second.startswith(f"input {str(path)!r}") and "a.b2nd" in second
