"""Issue 11, section 1: what a new user or a hostile reviewer found on a fresh clone.

Each test is one case that deleted data, crashed, printed a raw traceback or gave a wrong result
with exit 0 before the fix. Commands run through ``btune_wrap.cli.main`` in-process where that
is safe, and in a child interpreter where the old behaviour killed the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import blosc2
import numpy as np
import pandas as pd
import pytest

from btune_wrap import BtuneConfig
from btune_wrap.atomic import atomic_path, remove_stale_temporaries
from btune_wrap.cli import main
from btune_wrap.errors import BtuneWrapError, ConfigError, InputError
from btune_wrap.infer import compress
from btune_wrap.measure import gather, partial_dir
from btune_wrap.measurements import CHUNKS_FILE, META_FILE, RESULTS_FILE, Measurements

from .conftest import ROOT

RAND_INT = ROOT / "inference" / "rand_int.py"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``a.npy`` (60 000 random int64) and its gather: 30 chunks of 2000, 3 categories."""
    work = tmp_path_factory.mktemp("hardening")
    src = work / "a.npy"
    np.save(src, np.random.default_rng(0).integers(0, 10_000, 60_000))
    meas = gather(
        src,
        categories=[
            "lz4-nofilter-nosplit-5",
            "zstd-shuffle-nosplit-1",
            "zlib-bitshuffle-nosplit-5",
        ],
        chunks=(2000,),
        max_chunks=30,
        repeats=1,
        progress=False,
    )
    return {"dir": work, "npy": src, "meas": Path(meas.path)}


def compress_args(src: object, out: object, models_dir: Path, *extra: str) -> list[str]:
    """``btune compress SRC OUT`` with blosc2's defaults as the tweak's start (no model run)."""
    return [
        "compress",
        str(src),
        str(out),
        "--models",
        str(models_dir),
        "--use-inference",
        "0",
        *extra,
    ]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``btune ARGS`` in a child interpreter (for cases that used to kill the process)."""
    return subprocess.run(
        [sys.executable, "-m", "btune_wrap.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def victim_dir(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "notes.txt").write_text("x")
    return path


def intact(path: Path) -> bool:
    return (path / "sub" / "notes.txt").read_text() == "x"


# -- data loss -------------------------------------------------------------------------------


def test_rand_int_refuses_an_existing_directory_as_output(tmp_path):
    victim = victim_dir(tmp_path / "victim")
    cmd = [sys.executable, str(RAND_INT), "--size", "1000", "--output", str(victim)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "a directory is there" in done.stderr
    assert intact(victim)


def test_compress_refuses_a_directory_as_output_even_with_force(
    small, tmp_path, capsys, models_dir
):
    victim = victim_dir(tmp_path / "mydir")
    for extra in ([], ["--force"]):
        args = compress_args(small["npy"], victim, models_dir, "--engine", "python", "--quiet")
        assert main([*args, *extra]) == 2
        assert "a directory is there" in capsys.readouterr().err
    assert intact(victim)
    config = BtuneConfig(use_inference=0)
    with pytest.raises(InputError, match="a directory is there"):
        compress(np.arange(10_000), config, "python", urlpath=victim, force=True)
    assert intact(victim)


def test_an_atomic_write_never_replaces_a_directory_unless_asked(tmp_path):
    victim = victim_dir(tmp_path / "out.b2nd")
    with pytest.raises(InputError), atomic_path(victim) as tmp:
        tmp.write_text("never")
    assert intact(victim)


def test_gather_refuses_its_own_input_as_output_even_with_force(tmp_path, capsys):
    import zarr

    store = tmp_path / "s.zarr"
    z = zarr.create_array(store=str(store), shape=(20_000,), chunks=(5000,), dtype="int64")
    z[:] = np.arange(20_000)
    assert main(["gather", str(store), "--output", str(store), "--force", "--quiet"]) == 2
    assert "apart from the input" in capsys.readouterr().err
    assert np.array_equal(zarr.open_array(str(store))[:], np.arange(20_000))
    assert not partial_dir(store).exists()


def test_evaluate_refuses_to_write_over_the_measurements_it_reads(small, models_dir, capsys):
    meas = str(small["meas"])
    args = ["evaluate", str(models_dir), meas, "--output", meas, "--force", "--no-genetic"]
    assert main(args) == 2
    assert "apart from the input" in capsys.readouterr().err
    Measurements.load(meas)  # still whole


def test_compress_replaces_an_existing_output_only_with_force(small, tmp_path, capsys, models_dir):
    out = tmp_path / "o.b2nd"
    args = compress_args(str(small["npy"]), str(out), models_dir)
    args += ["--engine", "python", "--quiet"]
    assert main(args) == 0
    first = out.stat().st_mtime_ns
    assert main(args) == 2
    assert "does not exist yet" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == first
    assert main([*args, "--force"]) == 0


def test_compress_refuses_its_input_as_output(small, tmp_path, capsys, models_dir):
    npy = tmp_path / "b.npy"
    np.save(npy, np.arange(10_000))
    before = npy.read_bytes()
    args = compress_args(str(npy), str(npy), models_dir, "--force")
    assert main([*args, "--engine", "python", "--quiet"]) == 2
    assert "apart from the input" in capsys.readouterr().err
    assert npy.read_bytes() == before


def test_an_output_inside_an_input_directory_is_refused(tmp_path, capsys):
    import zarr

    store = tmp_path / "s.zarr"
    z = zarr.create_array(store=str(store), shape=(20_000,), chunks=(5000,), dtype="int64")
    z[:] = np.arange(20_000)
    inside = store / "measured"
    assert main(["gather", str(store), "--output", str(inside), "--quiet"]) == 2
    assert "apart from the input" in capsys.readouterr().err
    assert not inside.exists()


# -- wrong results with exit 0 -----------------------------------------------------------------


def test_evaluate_refuses_measurements_whose_source_was_rewritten(tmp_path, models_dir, capsys):
    src = tmp_path / "w.npy"
    np.save(src, np.random.default_rng(1).integers(0, 1000, 40_000))
    meas = gather(
        src, categories=["lz4-nofilter-nosplit-5"], chunks=(4000,), repeats=1, progress=False
    )
    np.save(src, np.zeros(40_000, dtype=np.int64))
    assert main(["evaluate", str(models_dir), str(meas.path), "--no-genetic"]) == 2
    assert "modified since the gather" in capsys.readouterr().err


def test_evaluate_accepts_a_copied_source_whose_contents_are_the_same(tmp_path, models_dir):
    src = tmp_path / "w.npy"
    data = np.random.default_rng(2).integers(0, 1000, 40_000)
    np.save(src, data)
    meas = gather(
        src, categories=["lz4-nofilter-nosplit-5"], chunks=(4000,), repeats=1, progress=False
    )
    time.sleep(0.01)
    np.save(src, data)  # a new modification time, the same data
    assert main(["evaluate", str(models_dir), str(meas.path), "--no-genetic"]) == 0


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        (RESULTS_FILE, "ctime", float("nan")),
        (RESULTS_FILE, "dtime", -1.0),
        (RESULTS_FILE, "cbytes", 0),
        (CHUNKS_FILE, "nbytes", 0),
        (CHUNKS_FILE, "speed_feature", float("inf")),
    ],
)
def test_measurements_with_impossible_values_are_refused_on_load(
    small, tmp_path, capsys, table, column, value
):
    import shutil

    bad = tmp_path / "bad.meas"
    shutil.copytree(small["meas"], bad)
    frame = pd.read_parquet(bad / table)
    frame.loc[3, column] = value
    frame.to_parquet(bad / table, index=False)
    with pytest.raises(InputError, match=f"column '{column}'"):
        Measurements.load(bad)
    assert main(["train", str(bad), "--output", str(tmp_path / "m"), "--quiet"]) == 2
    assert f"column '{column}'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("size", ["0", "-5"])
def test_rand_int_refuses_a_size_below_one(tmp_path, size):
    cmd = [sys.executable, str(RAND_INT), "--size", size, "--output", str(tmp_path / "r.b2nd")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2
    assert "--size" in done.stderr
    assert not (tmp_path / "r.b2nd").exists()


def test_rand_int_writes_a_one_element_array(tmp_path):
    out = tmp_path / "r.b2nd"
    cmd = [sys.executable, str(RAND_INT), "--size", "1", "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_no_btune_env())
    assert done.returncode == 0, done.stderr
    assert blosc2.open(str(out)).shape == (1,)


# -- interpreter killed --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["python", "native"])
@pytest.mark.parametrize("nthreads", ["0", "-2", "100000"])
def test_compress_refuses_thread_counts_blosc2_cannot_use(
    small, tmp_path, engine, nthreads, models_dir
):
    out = tmp_path / "o.b2nd"
    args = compress_args(str(small["npy"]), str(out), models_dir)
    done = run_cli(*args, "--engine", engine, "--nthreads", nthreads, "--quiet")
    assert done.returncode == 2, done.stderr
    assert "--nthreads" in done.stderr
    assert not out.exists()


def test_compress_refuses_object_arrays_and_none():
    config = BtuneConfig(use_inference=0)
    with pytest.raises(InputError, match="dtype"):
        compress(np.array([object()] * 10), config, "python")
    with pytest.raises(InputError, match="data=None"):
        compress(None, config, "python")
    with pytest.raises(InputError, match="non-empty"):
        compress(np.zeros(0), config, "python")


# -- leftovers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "symlink", "input"])
def test_gather_force_onto_what_it_may_not_replace_leaves_nothing_behind(small, tmp_path, kind):
    src = tmp_path / "a.npy"
    src.write_bytes(small["npy"].read_bytes())
    if kind == "file":
        out = tmp_path / "f.meas"
        out.write_text("mine")
    elif kind == "symlink":
        out = tmp_path / "l.meas"
        out.symlink_to(small["dir"])
    else:
        out = src
    done = run_cli("gather", str(src), "--output", str(out), "--force", "--quiet", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert not partial_dir(out).exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_gather_with_too_many_threads_leaves_nothing_behind(small, tmp_path):
    done = run_cli(
        "gather",
        str(small["npy"]),
        "--output",
        str(tmp_path / "o.meas"),
        "--nthreads",
        "100000",
        "--quiet",
    )
    assert done.returncode == 2
    assert "--nthreads" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_compress_stopped_by_sigterm_leaves_no_temporary(tmp_path, models_dir):
    npy = tmp_path / "big.npy"
    np.save(npy, np.random.default_rng(0).integers(0, 2**40, 8_000_000))
    out = tmp_path / "o.b2nd"
    cmd = [
        sys.executable,
        "-m",
        "btune_wrap.cli",
        "compress",
        str(npy),
        str(out),
        "--models",
        str(models_dir),
        "--use-inference",
        "0",
        "--engine",
        "python",
        "--chunks",
        "5000",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy"]


def test_a_stale_temporary_of_a_dead_process_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "o.b2nd"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".o.b2nd.{int(dead.stdout)}.abc.tmp"
    stale.write_text("left by a killed run")
    live = tmp_path / f".o.b2nd.{os.getpid()}.xyz.tmp"
    live.write_text("a write under way")
    assert remove_stale_temporaries(target) == [stale]
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert live.exists() and not stale.exists()


# -- named errors instead of tracebacks ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "an empty file"), (b"hello, not an array", "no NumPy header")],
)
def test_a_file_that_is_not_npy_gets_a_named_error(tmp_path, capsys, content, expected):
    bad = tmp_path / "x.npy"
    bad.write_bytes(content)
    assert main(["gather", str(bad), "--quiet"]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--chunks", "100000000000"], "bytes per chunk"),
        (["--seed", "-1", "--sample", "3"], "--seed"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
        (["--checkpoint-every", "nan"], "--checkpoint-every"),
        (["--chunks", "2000", "--blocks", "10000000"], "blocks"),
        (["--chunks", "2000", "--blocks", "4000"], "no larger than chunks"),
    ],
)
def test_gather_options_out_of_range_get_named_errors(small, tmp_path, capsys, args, expected):
    out = tmp_path / "o.meas"
    assert main(["gather", str(small["npy"]), "--output", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--chunks", "10,10"], "one per dimension"),
        (["--chunks", "100", "--blocks", "1000"], "no larger than chunks"),
        (["--blocks", "10000000"], "blocks"),
    ],
)
def test_compress_layouts_blosc2_refuses_get_named_errors(
    small, tmp_path, capsys, args, expected, models_dir
):
    out = tmp_path / "o.b2nd"
    base = compress_args(str(small["npy"]), str(out), models_dir)
    assert main([*base, "--engine", "python", "--quiet", *args]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_train_bounds_the_network_size(small, tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        main(
            [
                "train",
                str(small["meas"]),
                "--output",
                str(out),
                "--hidden",
                "100000000,100000000",
                "--quiet",
            ]
        )
        == 2
    )
    assert "--hidden" in capsys.readouterr().err
    assert not out.exists()


def test_train_checks_its_output_before_training(small, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    t0 = time.monotonic()
    assert main(["train", str(small["meas"]), "--output", str(tmp_path / "afile" / "m")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert time.monotonic() - t0 < 60  # refused before any epoch (training takes minutes)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"categories": 5}, "a list of category names"),
        ({"nchunks": "many"}, "nchunks"),
        ({"format": [[[[[]]]]]}, "format"),
    ],
)
def test_a_damaged_meta_json_gets_a_named_error(small, tmp_path, change, expected):
    import shutil

    bad = tmp_path / "bad.meas"
    shutil.copytree(small["meas"], bad)
    meta = json.loads((bad / META_FILE).read_text())
    meta.update(change)
    (bad / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(InputError, match=expected):
        Measurements.load(bad)


def test_deeply_nested_json_is_refused_not_a_recursion_error(small, models_dir, tmp_path):
    import shutil

    from btune_wrap.model import load_model

    deep = "[" * 100_000 + "]" * 100_000
    bad = tmp_path / "bad.meas"
    shutil.copytree(small["meas"], bad)
    (bad / META_FILE).write_text(deep)
    with pytest.raises(InputError):
        Measurements.load(bad)
    models = tmp_path / "models"
    shutil.copytree(models_dir, models)
    (models / "model_comp.json").write_text(deep)
    with pytest.raises(BtuneWrapError, match="not valid JSON"):
        load_model(models, "COMP")


@pytest.fixture
def interrupted(small, tmp_path) -> Path:
    """A gather of ``small`` into ``tmp_path/o.meas`` stopped after a few checkpoints."""
    out = tmp_path / "o.meas"
    with pytest.raises(KeyboardInterrupt):
        _gather_interrupted(small["npy"], out, RESUMED_CATEGORIES)
    return out


RESUMED_CATEGORIES = ["lz4-nofilter-nosplit-5"]


def resume(small, out: Path, **options) -> None:
    gather(
        small["npy"],
        out,
        categories=RESUMED_CATEGORIES,
        chunks=(2000,),
        repeats=1,
        resume=True,
        progress=False,
        **options,
    )


def test_resume_with_a_damaged_checkpoint_part_is_refused_before_measuring(small, interrupted):
    parts = sorted(partial_dir(interrupted).glob("part-*"))
    assert parts
    (parts[0] / CHUNKS_FILE).write_bytes(b"garbage")
    with pytest.raises(InputError, match="damaged"):
        resume(small, interrupted)
    assert sorted(partial_dir(interrupted).glob("part-*")) == parts  # nothing measured


def test_resume_with_other_options_says_where_they_differ(small, interrupted):
    with pytest.raises(InputError) as info:
        resume(small, interrupted, sample=5)
    assert "item 0 was 0, now" in str(info.value)


def test_a_one_element_array_is_not_told_to_use_larger_chunks(tmp_path, capsys):
    one = tmp_path / "one.npy"
    np.save(one, np.arange(1))
    assert main(["gather", str(one), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "gather a larger array" in err and "larger --chunks" not in err


def test_native_compress_with_quiet_does_not_claim_zero_inferences(
    small, tmp_path, capsys, models_dir
):
    from btune_wrap import plugin_support

    if not plugin_support():
        pytest.skip(plugin_support().reason)
    out = tmp_path / "o.b2nd"
    args = compress_args(str(small["npy"]), str(out), models_dir)
    main([*args, "--engine", "native", "--quiet"])
    printed = capsys.readouterr().out
    assert "native engine" in printed and "inferences" not in printed


def test_parsers_refuse_booleans_nan_and_out_of_range_values():
    from btune_wrap.parse import parse_float, parse_int, parse_shape, parse_tradeoffs

    for bad in (True, 1.5, "3", None):
        with pytest.raises(ConfigError, match="n="):
            parse_int("n", bad, 1)
    with pytest.raises(ConfigError, match=r"in \[1, 4\]"):
        parse_int("n", 5, 1, 4)
    with pytest.raises(ConfigError):
        parse_float("x", float("nan"))
    with pytest.raises(ConfigError, match="one per dimension"):
        parse_shape("chunks", (10, 10), 1)
    with pytest.raises(ConfigError, match="each tradeoff once"):
        parse_tradeoffs("tradeoffs", [0.5, 0.5])
    assert parse_int("n", np.int64(3), 1) == 3


# -- helpers -------------------------------------------------------------------------------------


def _no_btune_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BTUNE_")}


def _gather_interrupted(src: Path, out: Path, categories: list[str]) -> None:
    """Gather ``src`` into ``out`` and stop it (as Ctrl-C would) after a few checkpoints."""
    from btune_wrap import measure

    calls = {"n": 0}
    real = measure.ChunkCodec.measure

    def measure_then_stop(self, buf, repeats=3):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return real(self, buf, repeats)

    measure.ChunkCodec.measure = measure_then_stop
    try:
        gather(
            src,
            out,
            categories=categories,
            chunks=(2000,),
            repeats=1,
            progress=False,
            checkpoint_every=0.0,
        )
    finally:
        measure.ChunkCodec.measure = real


# -- a second probe of bad inputs (2026-11-28) -----------------------------------------------


def _needs_plugin() -> None:
    from btune_wrap import plugin_support

    if not plugin_support():
        pytest.skip(plugin_support().reason)


@pytest.mark.parametrize("engine", ["python", "native"])
def test_more_than_16_dimensions_are_refused_before_blosc2_or_the_plugin(engine, tmp_path, capsys):
    # Before: blosc2 raised ValueError (exit 1); the plugin's child died of SIGSEGV (17
    # dimensions) or SIGFPE (32).
    if engine == "native":
        _needs_plugin()
    data = np.arange(2**17, dtype=np.int32).reshape((2,) * 17)
    with pytest.raises(InputError, match="at most 16 dimensions"):
        compress(data, BtuneConfig(), engine)
    np.save(tmp_path / "d17.npy", data)
    args = ["compress", str(tmp_path / "d17.npy"), str(tmp_path / "o.b2nd"), "--engine", engine]
    assert main(args) == 2
    assert "at most 16 dimensions" in capsys.readouterr().err
    assert not (tmp_path / "o.b2nd").exists()
    with pytest.raises(InputError, match="at most 16 dimensions"):
        gather(tmp_path / "d17.npy", tmp_path / "d17.meas", progress=False)


def test_the_plugins_integer_knobs_are_bounded_as_c_ints():
    # Before: the plugin read 2**32 + 1 waits as 1, 2**32 hards as 0, and 2**31 hards made a
    # banner no parser could read.
    for name, value in (("nwaits", 2**32 + 1), ("nhards", 2**31), ("nsofts", 10**20),
                        ("use_inference", 10**20)):  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            BtuneConfig(**{name: value})
    assert BtuneConfig(nhards=2**31 - 1, use_inference=2**31 - 1).nhards == 2**31 - 1


@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_blosc2_array_is_never_written_over_the_file_it_was_read_from(engine, tmp_path):
    from btune_wrap.plugin import write_tuned

    path = tmp_path / "a.b2nd"
    blosc2.asarray(np.arange(50_000), chunks=(5000,), urlpath=str(path), mode="w")
    before = path.read_bytes()
    with pytest.raises(InputError, match="apart from the input"):
        compress(blosc2.open(str(path)), BtuneConfig(), engine, urlpath=path, force=True)
    with pytest.raises(InputError, match="apart from the input"):
        write_tuned(blosc2.open(str(path)), BtuneConfig(), urlpath=path, force=True)
    assert path.read_bytes() == before


def test_blocks_too_small_for_the_plugin_are_refused_before_it_runs(tmp_path):
    # Before: with 8-byte blocks the plugin's child hung, idle, until stopped after 2 minutes.
    _needs_plugin()
    from btune_wrap.plugin import write_tuned

    data = np.random.default_rng(0).integers(0, 1000, 200_000)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="bytes per block"):
        compress(data, BtuneConfig(), "native", chunks=(1000,), blocks=(1,))
    with pytest.raises(InputError, match="bytes per block"):
        write_tuned(data, BtuneConfig(), chunks=(1000,), blocks=(1,))
    assert time.monotonic() - t0 < 60  # refused, not timed out (a loaded machine is slow)


def test_paths_that_are_not_utf8_get_named_errors(small, tmp_path, capsys):
    # Before: UnicodeEncodeError from pyarrow or blosc2, exit 1.
    odd = os.fsdecode(b"\xff\xfe.npy")
    (tmp_path / odd).write_bytes(small["npy"].read_bytes())
    assert main(["gather", str(tmp_path / odd), "--output", str(tmp_path / "g.meas")]) == 2
    assert "a path in UTF-8" in capsys.readouterr().err
    out = tmp_path / os.fsdecode(b"\xfe.b2nd")
    assert main(["compress", str(small["npy"]), str(out), "--engine", "python"]) == 2
    assert "a path in UTF-8" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [odd]


def test_a_structured_dtype_gathered_gives_features_for_training(tmp_path):
    # Before: the gather succeeded, then train and evaluate said the dtype recorded in
    # meta.json, "[('a', '<i4'), ('b', '<f8')]", was not a NumPy dtype.
    from btune_wrap.features import measured_features
    from btune_wrap.parse import parse_dtype

    data = np.zeros(40_000, dtype=[("a", "<i4"), ("b", "<f8")])
    data["a"] = np.arange(40_000)
    data["b"] = np.random.default_rng(0).normal(size=40_000)
    np.save(tmp_path / "s.npy", data)
    meas = gather(tmp_path / "s.npy", categories=["lz4-shuffle-nosplit-5"], chunks=(5000,),
                  repeats=1, progress=False)  # fmt: skip
    feats = measured_features(meas)
    assert feats is not None and feats.shape[0] == meas.nchunks and np.isfinite(feats).all()
    for dt in (data.dtype, np.dtype(">i4"), np.dtype("f2"), np.dtype([("x", "u1", (3,))])):
        assert parse_dtype("dtype", str(dt)) == dt
    with pytest.raises(ConfigError, match="a NumPy dtype"):
        parse_dtype("dtype", "[('a', 'no such type')]")


def test_api_arguments_of_the_wrong_type_get_named_errors(small, models_dir):
    # Before: AttributeError or TypeError from deep inside (fit: after training had run).
    from btune_wrap.errors import ModelError
    from btune_wrap.evaluate import evaluate
    from btune_wrap.model import load_model
    from btune_wrap.plugin import write_tuned
    from btune_wrap.train import export, fit

    data = np.arange(10_000)
    for config in (None, {}):
        with pytest.raises(ConfigError, match="config"):
            write_tuned(data, config)
    with pytest.raises(InputError, match="compress"):
        write_tuned(str(small["npy"]), BtuneConfig())
    with pytest.raises(InputError, match="measurements"):
        fit(None)
    with pytest.raises(ConfigError, match="progress"):
        fit(Measurements.load(small["meas"]), progress=5)
    with pytest.raises(ConfigError, match="trained"):
        export(None, small["dir"] / "never")
    assert not (small["dir"] / "never").exists()
    for bad in (None, 5):
        with pytest.raises(ModelError, match="models_dir"):
            load_model(bad, "comp")
        with pytest.raises(InputError, match="measurement directories"):
            evaluate(models_dir, bad)
    with pytest.raises(ModelError, match="models_dir"):
        evaluate(5, small["meas"])


def test_a_quality_tradeoff_is_refused_by_name_for_the_plugin_and_taken_by_the_python_engine():
    # Before: RuntimeError "Error while creating the NDArray" from the plugin's child, for
    # integer and float data alike.
    data = np.random.default_rng(0).integers(0, 1000, 50_000)
    config = BtuneConfig(tradeoff=(0.3, 0.3, 0.4))
    from btune_wrap.plugin import write_tuned

    with pytest.raises(ConfigError, match="engine='python'"):
        write_tuned(data, config)
    arr, trace = compress(data, config, "python", chunks=(5000,))
    assert np.array_equal(arr[()], data) and len(trace.rows) == 10


def test_flags_given_as_strings_are_refused(small, tmp_path):
    # Before: force="no", echo="x" and extended="yes" were taken as true.
    from btune_wrap.plugin import write_tuned
    from btune_wrap.train import export, fit

    with pytest.raises(ConfigError, match="echo"):
        write_tuned(np.arange(10_000), BtuneConfig(), echo="x")
    meas = Measurements.load(small["meas"])
    with pytest.raises(ConfigError, match="extended"):
        fit(meas, extended="yes")
    from btune_wrap.neighbors import fit_neighbors

    with pytest.raises(ConfigError, match="force"):
        export(fit_neighbors(meas, "comp"), tmp_path / "models", force="no")
    assert not (tmp_path / "models").exists()


def test_train_refuses_the_same_measurements_twice(small, tmp_path, capsys):
    # Before: `btune train X X` trained on every chunk twice (crossval and evaluate refused it).
    meas = str(small["meas"])
    assert main(["train", meas, meas, "--output", str(tmp_path / "m")]) == 2
    assert "each directory once" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
