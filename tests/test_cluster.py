"""The gather on a real Dask LocalCluster (2 process workers), and the cheaper gather.

One cluster serves the module (starting one takes seconds here); the test that kills a worker
runs last. Inputs are tiny (tens of chunks, a few categories): what is checked is that the
cluster gives the serial gather's tables, not how fast it is (benchmarks/bench_cluster.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import blosc2
import numpy as np
import pandas as pd
import pytest

from btune_wrap import cluster
from btune_wrap.categories import SPLIT_CATEGORIES, Category
from btune_wrap.cli import main
from btune_wrap.cluster import InputSpec, check_cluster, connect
from btune_wrap.errors import ConfigError, InputError
from btune_wrap.measure import ChunkMeasurer, gather, partial_dir
from btune_wrap.measurements import CHUNK_EXTRA, RESULT_EXTRA, Measurements
from btune_wrap.objective import TRADEOFFS, best_index, contested, objective_matrix
from btune_wrap.sources import open_source
from tests.test_engines_newest import make_data
from tests.test_measure import (
    ITEMS,
    NCHUNKS,
    assert_same_tables,
    run_until_checkpoint,
    write_mixed_b2nd,
)
from tests.test_sources import write_all_formats

FEW = [
    Category.parse(n)
    for n in ("lz4-shuffle-nosplit-5", "zstd-bitshuffle-split-9", "blosclz-nofilter-nosplit-5")
]


@pytest.fixture(scope="module")
def client():
    with connect("local:2", timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("formats")
    return write_all_formats(tmp, make_data((20_011,), np.dtype("i8")), (2000,), (600,))


@pytest.fixture(scope="module")
def b2(tmp_path_factory) -> Path:
    """40 chunks of 5000 int64 of five kinds (the serial gather's test file)."""
    return write_mixed_b2nd(tmp_path_factory.mktemp("killed") / "mixed.b2nd")


@pytest.fixture(scope="module")
def reference(b2) -> Measurements:
    return gather(b2, b2.with_suffix(".ref.meas"), categories=SPLIT_CATEGORIES, repeats=1,
                  progress=False)  # fmt: skip


def addresses(client) -> set[str]:
    # Not scheduler_info(): distributed 2026.8 refreshes its cache every 2 s without the
    # workers, and a refresh landing between the fetch and the return gave an empty set (CI).
    return set(client.nthreads())


@pytest.mark.parametrize("kind", ["b2nd", "h5-blosc2", "zarr"])
def test_a_cluster_gather_gives_the_serial_tables(client, formats, kind, tmp_path):
    opts = {"categories": FEW, "repeats": 1, "progress": False}
    if kind != "b2nd":
        opts |= {"chunks": (2000,), "blocks": (600,)}
    serial = gather(formats[kind], tmp_path / "serial.meas", **opts)
    on_cluster = gather(formats[kind], tmp_path / "cluster.meas", client=client, **opts)
    assert_same_tables(on_cluster, serial)
    assert_same_tables(Measurements.load(tmp_path / "cluster.meas"), serial)
    # Each chunk names the worker that measured it; meta.json describes every one of them.
    workers = on_cluster.meta["workers"]
    assert set(on_cluster.chunks["worker"]) == set(workers) <= addresses(client)
    assert all(w["cpu"] and w["cpu_count"] >= 1 and w["host"] for w in workers.values())
    assert set(serial.chunks["worker"]) == {socket.gethostname()}


def test_an_input_changed_or_missing_on_the_workers_is_refused(client, tmp_path):
    path = tmp_path / "a.b2nd"
    blosc2.asarray(np.arange(20_000), chunks=(2000,), urlpath=str(path), mode="w")
    with open_source(path) as src:
        spec = InputSpec.of(src, None)
        measurer = ChunkMeasurer(tuple(FEW), src.typesize)
    assert set(check_cluster(client, spec, measurer)) == addresses(client)
    os.utime(path, ns=(0, 0))
    with pytest.raises(InputError, match=r"worker tcp://.*differs from the client's"):
        check_cluster(client, spec, measurer)
    path.rename(tmp_path / "elsewhere.b2nd")
    with pytest.raises(InputError, match=r"worker tcp://.*an existing file"):
        check_cluster(client, spec, measurer)


def test_a_worker_without_a_package_is_named(client, formats, monkeypatch):
    # Workers lacking btune_wrap are found the same way as one lacking any package here.
    monkeypatch.setattr(cluster, "SAME_VERSIONS", ("btune_wrap", "no-such-distribution"))
    with open_source(formats["b2nd"]) as src:
        spec = InputSpec.of(src, None)
        measurer = ChunkMeasurer(tuple(FEW), src.typesize)
    with pytest.raises(ConfigError, match=r"worker tcp://\S+ lacks no-such-distribution"):
        check_cluster(client, spec, measurer)


def test_a_worker_with_two_threads_measures_each_task_with_its_own_codecs(b2, reference, tmp_path):
    # A worker started without --nthreads 1 runs two tasks at once: they must not share the
    # scratch super-chunks and the decompression buffer of one measurer.
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as two_threads,
    ):
        got = gather(b2, tmp_path / "threads.meas", categories=SPLIT_CATEGORIES, repeats=1,
                     progress=False, client=two_threads)  # fmt: skip
    assert_same_tables(got, reference)


def test_without_a_cluster_dask_is_not_imported(formats, tmp_path):
    code = (
        "import sys\n"
        "from btune_wrap.measure import gather\n"
        f"gather({formats['b2nd']!r}, {str(tmp_path / 'x.meas')!r}, repeats=1,"
        " categories=['lz4-shuffle-nosplit-5'], progress=False)\n"
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'\n"
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_directories_without_the_optional_columns_still_load(formats, tmp_path):
    meas = gather(formats["b2nd"], tmp_path / "new.meas", categories=FEW, repeats=1,
                  progress=False)  # fmt: skip
    old = tmp_path / "new.meas"
    chunks = pd.read_parquet(old / "chunks.parquet").drop(columns=list(CHUNK_EXTRA))
    chunks.to_parquet(old / "chunks.parquet", index=False)
    results = pd.read_parquet(old / "results.parquet").drop(columns=list(RESULT_EXTRA))
    results.to_parquet(old / "results.parquet", index=False)
    loaded = Measurements.load(old)
    assert_same_tables(loaded, meas)
    assert "worker" not in loaded.chunks and "crepeats" not in loaded.results


@pytest.mark.parametrize("first", ["serial", "cluster"])
def test_resume_works_across_serial_and_cluster(client, b2, reference, tmp_path, first):
    out = tmp_path / f"{first}.meas"
    cmd = [sys.executable, "-m", "btune_wrap.cli", "gather", str(b2), "--output", str(out)]
    cmd += ["--categories", "split", "--repeats", "1", "--checkpoint-every", "0", "--quiet"]
    if first == "cluster":
        cmd += ["--cluster", client.scheduler.address]
    run_until_checkpoint(cmd, out)
    opts = {"categories": SPLIT_CATEGORIES, "repeats": 1, "progress": False, "resume": True}
    resumed = gather(b2, out, client=client if first == "serial" else None, **opts)
    assert 1 <= resumed.meta["resumed_chunks"] < NCHUNKS
    assert_same_tables(resumed, reference)
    # Both kinds of worker measured some chunks, and meta.json describes both.
    kinds = {w.startswith("tcp://") for w in resumed.chunks["worker"]}
    assert kinds == {True, False}
    assert set(resumed.meta["workers"]) == set(resumed.chunks["worker"])


def test_an_unreachable_scheduler_exits_2_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "a.b2nd"
    blosc2.asarray(np.arange(20_000), chunks=(2000,), urlpath=str(path), mode="w")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = sorted(p.name for p in tmp_path.iterdir())
    cmd = ["gather", str(path), "--cluster", f"tcp://127.0.0.1:{port}", "--connect-timeout", "1"]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert f"cannot connect to the scheduler at 'tcp://127.0.0.1:{port}'" in err
    assert main(["gather", str(path), "--cluster", "local:zero"]) == 2
    assert "cluster workers='zero' is invalid" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_file_that_is_not_a_scheduler_file_exits_2_and_writes_nothing(client, tmp_path, capsys):
    path = tmp_path / "a.b2nd"
    blosc2.asarray(np.arange(20_000), chunks=(5000,), urlpath=str(path), mode="w")
    files = {
        "text.txt": "hello",
        "list.json": "[1]",
        "no-address.json": '{"type": "Scheduler"}',
        "bad-address.json": '{"address": "hello"}',
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name in files:
        cmd = ["gather", str(path), "--scheduler-file", str(tmp_path / name)]
        assert main([*cmd, "--connect-timeout", "1", "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert f"scheduler_file={str(tmp_path / name)!r} is invalid: expected the JSON" in err
        assert "Traceback" not in err, name
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # A real scheduler file still connects.
    client.write_scheduler_file(str(tmp_path / "scheduler.json"))
    with connect(scheduler_file=tmp_path / "scheduler.json", timeout=30) as other:
        assert addresses(other) == addresses(client)


def test_a_killed_worker_costs_only_a_rerun(client, b2, reference, tmp_path):
    out = tmp_path / "killed.meas"
    work = partial_dir(out)
    pids = client.run(os.getpid)
    victim = sorted(pids.items())[0]
    killed: list[bool] = []

    def kill_when_started() -> None:
        deadline = time.monotonic() + 120
        while not any(work.glob("part-*")) and time.monotonic() < deadline:
            time.sleep(0.002)
        killed.append(not out.exists())
        os.kill(victim[1], signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        got = gather(b2, out, categories=SPLIT_CATEGORIES, repeats=1, progress=False,
                     checkpoint_every=0, client=client)  # fmt: skip
    finally:
        killer.join()
    assert killed == [True], "the gather ended before the worker was killed"
    assert_same_tables(got, reference)
    assert victim[0] not in addresses(client)  # it is gone (its nanny started another one)


# -- the cheaper gather ------------------------------------------------------------------------

#: On a random walk, zstd with shuffle and bytedelta at level 1 beats each of these in ratio,
#: compression and decompression speed by 2x or more (measured: 19 vs <= 9 cratio, 1.4 vs
#: <= 0.21 GB/s compression, 2.4 vs <= 0.53 GB/s decompression).
FAR_APART = [
    Category.parse(n)
    for n in (
        "zstd-shuffle-bytedelta-nosplit-1",
        "zlib-nofilter-nosplit-5",
        "zstd-nofilter-nosplit-9",
        "zlib-shuffle-nosplit-5",
    )
]


def labels(meas: Measurements, rows: np.ndarray) -> np.ndarray:
    nbytes, cbytes, ctime, dtime = (m[rows] for m in meas.matrices())
    return np.stack(
        [best_index(objective_matrix(nbytes, cbytes, ctime, dtime, m)) for m in ("c", "d")]
    )


def test_the_cheaper_gather_gives_the_full_labels_when_categories_are_far_apart(tmp_path):
    rng = np.random.default_rng(0)
    walk = [np.cumsum(rng.integers(-3, 4, ITEMS)) for _ in range(12)]
    zeros = [np.zeros(ITEMS, dtype=np.int64)] * 4
    path = tmp_path / "walk.b2nd"
    blosc2.asarray(np.concatenate(walk + zeros), chunks=(ITEMS,), urlpath=str(path))
    opts = {"categories": FAR_APART, "repeats": 3, "progress": False}
    full = gather(path, tmp_path / "full.meas", **opts)
    cheap = gather(path, tmp_path / "cheap.meas", full_repeats=False, **opts)
    assert_same_tables(cheap, full)
    # The first 3 chunks make the history that catches a preempted first timing (SPIKE):
    # from then on a single timing cannot make the clear winner look like a loser.
    walk_rows = np.arange(3, 12)
    assert (labels(cheap, walk_rows) == labels(full, walk_rows)).all()
    assert (labels(full, walk_rows) == 0).all()

    # How often each row was timed: the full gather 3 times; the cheaper one once where a
    # single category wins everywhere. On chunks of zeros every category gives the same 32
    # bytes, so time alone decides below t = 1: those within noise of the fastest (at least
    # two: a tie) are timed 3 times.
    assert (full.results[["crepeats", "drepeats"]] == 3).all().all()
    res = cheap.results.set_index("chunk")
    on_zeros = res.loc[range(12, 16), ["crepeats", "drepeats"]]
    assert on_zeros.isin([1, 3]).all().all()
    assert (on_zeros.to_numpy() == 3).sum() >= 2
    on_walk = res.loc[range(12), ["crepeats", "drepeats"]]
    assert on_walk.isin([1, 3]).all().all()
    # A cold or preempted first timing can make a row contested: most are not (measured 60% to
    # 92% timed once on an idle box; the band is for a loaded one). The winner's first
    # decompression is the coldest: it follows the previous chunk's last category.
    assert (on_walk == 1).mean().min() >= 0.5
    assert cheap.meta["full_repeats"] is False and full.meta["full_repeats"] is True
    again = Measurements.load(tmp_path / "cheap.meas")
    pd.testing.assert_frame_equal(again.results, cheap.results)


def test_a_tie_of_ratios_at_tradeoff_1_is_not_contested_because_no_timing_changes_it():
    # Two categories giving the same bytes (as zstd-9 with and without shuffle on uint8
    # data), one 10x faster: the faster is best wherever time counts, and at t = 1 they tie
    # on ratio whatever their times. A third is worse on both.
    cbytes = np.array([300.0, 300.0, 900.0])
    ctime = np.array([1e-5, 1e-4, 5e-5])
    assert not contested(1000, cbytes, ctime, None, "comp", slack=np.log(2)).any()
    assert not contested(1000, cbytes, ctime, None, "comp", np.log(2), tradeoffs=None).any()
    # Within the noise of each other, their times decide the label below t = 1: contested.
    close = np.array([1e-5, 1.2e-5, 5e-5])
    assert contested(1000, cbytes, close, None, "comp", slack=np.log(2)).tolist() == [
        True, True, False,
    ]  # fmt: skip


def test_contested_names_the_categories_within_noise_of_the_hull():
    # Three categories on one chunk of 1000 bytes: A fast, C the best ratio, B between but
    # slower than A and worse than C; D is A timed a bit slower.
    cbytes = np.array([500.0, 400.0, 100.0, 500.0])
    ctime = np.array([1e-6, 4e-6, 1e-4, 1.1e-6])
    decided = contested(1000, cbytes, ctime, None, "comp", slack=0.0)
    assert decided.tolist() == [False, False, False, False]
    # Within 20% noise, D could beat A at the fast end: both are contested, nothing else.
    noisy = contested(1000, cbytes, ctime, None, "comp", slack=np.log(1.2))
    assert noisy.tolist() == [True, False, False, True]
    # Over the whole interval, A and C tie somewhere (where the label changes): contested too.
    whole = contested(1000, cbytes, ctime, None, "comp", slack=0.0, tradeoffs=None)
    assert whole[[0, 2]].all() and not whole[1]
    assert (contested(1000, cbytes, ctime, None, "comp", 0.0, tradeoffs=TRADEOFFS) == decided).all()
