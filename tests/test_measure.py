"""The gather (btune_wrap.measure): real blosc2, real probe, real files, a real killed process.

The reference gather measures a small ``.b2nd`` (40 chunks of 5000 int64, 4 blocks each) with
the 64 categories (the tutorial's 32 and their "always split" variants), one timing each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import blosc2
import numpy as np
import pandas as pd
import pytest

from btune_wrap.categories import SPLIT_CATEGORIES, TUTORIAL_CATEGORIES, Category
from btune_wrap.cli import main
from btune_wrap.compressor import ChunkCodec, RoundTripError, measure_cparams
from btune_wrap.errors import ConfigError, InputError
from btune_wrap.measure import ChunkMeasurer, default_output, gather, partial_dir, select_chunks
from btune_wrap.measurements import Measurements, summarize
from btune_wrap.probe import chunk_features
from btune_wrap.sources import open_source
from tests.test_engines_newest import make_data
from tests.test_sources import write_all_formats

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "training" / "gather_data.py"
NCHUNKS = 40
ITEMS = 5000
FEW = [Category.parse(n) for n in ("lz4-shuffle-nosplit-5", "zstd-bitshuffle-split-9")] + [
    Category.parse(n) for n in ("blosclz-nofilter-nosplit-5", "zlib-shuffle-bytedelta-nosplit-5")
]


def mixed_data(nchunks: int, seed: int = 0) -> np.ndarray:
    """Random, smooth, repetitive, constant and wide-range chunks in turn (int64)."""
    rng = np.random.default_rng(seed)
    kinds = [
        lambda: rng.integers(0, 10_000, ITEMS),
        lambda: np.cumsum(rng.integers(-3, 4, ITEMS)),
        lambda: np.repeat(rng.integers(0, 1000, ITEMS // 16 + 1), 16)[:ITEMS],
        lambda: np.zeros(ITEMS, dtype=np.int64),
        lambda: rng.integers(0, 2**40, ITEMS),
    ]
    return np.concatenate([kinds[i % len(kinds)]() for i in range(nchunks)]).astype(np.int64)


def write_mixed_b2nd(path: Path) -> Path:
    """:func:`mixed_data` of :data:`NCHUNKS` chunks as a ``.b2nd`` file (blocks of 1250)."""
    blosc2.asarray(mixed_data(NCHUNKS), chunks=(ITEMS,), blocks=(1250,), urlpath=str(path))
    return path


@pytest.fixture(scope="module")
def b2(tmp_path_factory) -> Path:
    return write_mixed_b2nd(tmp_path_factory.mktemp("gather") / "mixed.b2nd")


@pytest.fixture(scope="module")
def reference(b2) -> Measurements:
    return gather(b2, categories=SPLIT_CATEGORIES, repeats=1, progress=False)


def tables(meas: Measurements) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deterministic part of the tables (timings and the speed feature differ per run)."""
    return (
        meas.chunks[["chunk", "nbytes", "cratio_feature"]],
        meas.results[["chunk", "category", "cbytes"]],
    )


def assert_same_tables(got: Measurements, expected: Measurements) -> None:
    for mine, theirs in zip(tables(got), tables(expected), strict=True):
        pd.testing.assert_frame_equal(mine, theirs)


# -- the reference gather --------------------------------------------------------------------


def test_every_chunk_has_features_and_every_category(b2, reference):
    out = b2.with_name(b2.name + ".meas")
    assert reference.path == out == default_output(open_source(b2))
    assert not partial_dir(out).exists()
    loaded = Measurements.load(out)
    pd.testing.assert_frame_equal(loaded.chunks, reference.chunks)
    pd.testing.assert_frame_equal(loaded.results, reference.results)
    meta = loaded.meta
    assert meta["categories"] == [c.name for c in SPLIT_CATEGORIES]
    assert meta["nchunks"] == meta["measured_chunks"] == NCHUNKS
    assert (meta["chunks"], meta["blocks"], meta["typesize"]) == ([ITEMS], [1250], 8)
    assert (meta["blocksize"], meta["chunk_nbytes"]) == (10_000, 40_000)
    assert (meta["repeats"], meta["nthreads"], meta["resumed_chunks"]) == (1, 1, 0)
    assert meta["versions"]["blosc2"] == blosc2.__version__ and meta["cpu"] and meta["date"]
    assert loaded.chunks["chunk"].tolist() == list(range(NCHUNKS))
    assert (loaded.chunks["nbytes"] == 40_000).all()
    res = loaded.results
    assert len(res) == NCHUNKS * len(SPLIT_CATEGORIES)
    assert res["category"].tolist() == [c.name for c in SPLIT_CATEGORIES] * NCHUNKS
    assert (res["cbytes"] > 0).all() and (res["ctime"] > 0).all() and (res["dtime"] > 0).all()


def test_features_are_the_probes(b2, reference):
    src = open_source(b2)
    feats = reference.chunks
    for i in range(NCHUNKS):
        f = chunk_features(src.chunk(i), src.typesize, src.blocksize)
        assert feats["cratio_feature"][i] == f.cratio
    zero = feats["chunk"] % 5 == 3  # constant chunks: every block is a run, the plugin skips it
    assert (feats.loc[zero, ["cratio_feature", "speed_feature"]] == 0).all().all()
    assert (feats.loc[~zero, "speed_feature"] > 0).all()
    assert (feats.loc[~zero, "cratio_feature"] > 0).all()


def test_cbytes_equal_blosc2_compress2(b2, reference):
    src = open_source(b2)
    cbytes = reference.results.set_index(["chunk", "category"])["cbytes"]
    for i in range(NCHUNKS):
        buf = src.chunk(i)
        for cat in SPLIT_CATEGORIES:
            cp = cat.to_cparams(typesize=src.typesize, blocksize=src.blocksize, nthreads=1)
            assert cbytes[(i, cat.name)] == len(blosc2.compress2(buf, cparams=cp)), (i, cat)


def test_summary_names_the_most_frequent_winners(reference):
    s = summarize(reference)
    assert (s.chunks, s.categories) == (NCHUNKS, len(SPLIT_CATEGORIES))
    wide = reference.results.pivot(index="chunk", columns="category")
    names = [c.name for c in SPLIT_CATEGORIES]
    for column, winner in (("cbytes", s.best_cratio), ("ctime", s.best_cspeed)):
        firsts = wide[column][names].to_numpy().argmin(axis=1)  # lowest index on ties
        counts = np.bincount(firsts, minlength=len(names))
        assert winner.category == names[int(counts.argmax())]
        assert winner.share == counts.max() / NCHUNKS
    assert s.best_dspeed.category in names


# -- resume after a kill ---------------------------------------------------------------------


def run_until_checkpoint(cmd: list[str], out: Path) -> None:
    """Run a ``btune gather`` child and kill it as soon as it wrote a checkpoint."""
    work = partial_dir(out)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    try:
        while not any(work.glob("part-*")):
            assert child.poll() is None, f"the child ended early: {child.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.002)
    finally:
        child.kill()
        child.wait()
    assert not out.exists(), "the child finished before it was killed"


def killed_gather(b2: Path, out: Path) -> tuple[Path, list[str]]:
    """A gather of ``b2`` into ``out`` killed after its first checkpoint: the checkpoint
    directory and its parts' names."""
    work = partial_dir(out)
    cmd = [sys.executable, str(SCRIPT), str(b2), "--output", str(out), "--categories", "split"]
    cmd += ["--repeats", "1", "--checkpoint-every", "0", "--quiet"]
    run_until_checkpoint(cmd, out)
    return work, sorted(p.name for p in work.glob("part-*"))


def test_resume_after_kill_gives_identical_tables(b2, reference, tmp_path):
    out = tmp_path / "killed.meas"
    work, parts = killed_gather(b2, out)
    assert 1 <= len(parts) < NCHUNKS

    # Other options than the interrupted run, or no --resume: refused, checkpoint untouched.
    for kwargs, message in (
        ({"repeats": 2}, "other repeats"),
        ({"max_chunks": 10}, "other selection"),
        ({"resume": False}, "left its checkpoint"),
    ):
        opts = {"categories": SPLIT_CATEGORIES, "repeats": 1, "progress": False, "resume": True}
        with pytest.raises(InputError, match=message):
            gather(b2, out, **(opts | kwargs))
    assert sorted(p.name for p in work.glob("part-*")) == parts and not out.exists()

    resumed = gather(b2, out, categories=SPLIT_CATEGORIES, repeats=1, resume=True, progress=False)
    assert len(parts) <= resumed.meta["resumed_chunks"] < NCHUNKS
    assert not work.exists()
    assert_same_tables(resumed, reference)
    assert_same_tables(Measurements.load(out), reference)
    # Resuming a complete output made with the same options returns it unchanged.
    again = gather(b2, out, categories=SPLIT_CATEGORIES, repeats=1, resume=True, progress=False)
    pd.testing.assert_frame_equal(again.results, resumed.results)


# -- other inputs: same features and cbytes as the b2nd -------------------------------------


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks", "blocks"),
    [
        ((20_011,), "i8", (2000,), (600,)),
        ((101, 37), "i4", (40, 16), (16, 6)),
        ((17, 13, 11), "f8", (8, 6, 5), (4, 3, 2)),
    ],
    ids=["1d", "2d", "3d"],
)
def test_every_format_measures_like_the_b2nd(tmp_path, shape, dtype, chunks, blocks):
    data = make_data(shape, np.dtype(dtype))
    paths = write_all_formats(tmp_path, data, chunks, blocks)
    opts = {"categories": FEW, "repeats": 1, "progress": False}
    expected = gather(paths.pop("b2nd"), **opts)
    for kind, path in paths.items():
        got = gather(path, chunks=chunks, blocks=blocks, **opts)
        assert got.path == default_output(open_source(path)), kind
        assert got.meta["kind"] == kind.split("-")[0].replace("h5", "hdf5"), kind
        assert_same_tables(got, expected)
    assert (tmp_path / "a.h5.grp.lz4.meas").is_dir() and (tmp_path / "g.zarr.sub.arr.meas").is_dir()


def test_max_chunks_and_sample_select_chunks(b2, tmp_path):
    got = gather(
        b2, tmp_path / "s.meas", categories=FEW[:1], max_chunks=30, sample=6, seed=3, repeats=1,
        progress=False,
    )  # fmt: skip
    chosen = select_chunks(NCHUNKS, 30, 6, 3)
    assert got.chunks["chunk"].tolist() == chosen and len(chosen) == 6 and max(chosen) < 30
    assert (got.meta["nchunks"], got.meta["measured_chunks"]) == (NCHUNKS, 6)
    assert got.meta["selection"] == {"max_chunks": 30, "sample": 6, "seed": 3}
    assert select_chunks(NCHUNKS, 30, 6, 4) != chosen
    assert select_chunks(NCHUNKS, None, 100) == list(range(NCHUNKS))
    first = gather(b2, tmp_path / "f.meas", categories=FEW[:1], max_chunks=3, progress=False)
    assert first.chunks["chunk"].tolist() == [0, 1, 2]


# -- the measuring routine -------------------------------------------------------------------


def test_measure_cparams_matches_compress2_and_checks_round_trips():
    buf = mixed_data(2)[:ITEMS]
    for cat in (TUTORIAL_CATEGORIES[0], TUTORIAL_CATEGORIES[-1], SPLIT_CATEGORIES[1]):
        cp = cat.to_cparams(typesize=8, blocksize=10_000)
        m = measure_cparams(buf, cp, repeats=2, nthreads=1)
        assert m.cbytes == len(blosc2.compress2(buf, cparams=cp))
        assert m.ctime > 0 and m.dtime > 0
        assert measure_cparams(buf.tobytes(), cp, repeats=1, nthreads=2).cbytes == m.cbytes
    with pytest.raises(ConfigError, match="repeats"):
        measure_cparams(buf, cp, repeats=0)
    with pytest.raises(InputError, match="buf.nbytes"):
        ChunkCodec(cp, 100).measure(buf)

    # A real (user-registered) codec that loses the second half of every block.
    def encoder(src, dst, meta, schunk):
        n = src.size // 2
        dst[:n] = src[:n]
        return n

    def decoder(src, dst, meta, schunk):
        dst[: src.size] = src
        dst[src.size :] = 0
        return dst.size

    if 201 not in blosc2.ucodecs_registry:
        blosc2.register_codec("halver", 201, encoder, decoder)
    lossy = blosc2.CParams(
        codec=201, typesize=8, nthreads=1, splitmode=blosc2.SplitMode.NEVER_SPLIT,
        filters=[blosc2.Filter.NOFILTER] * 6,
    )  # fmt: skip
    with pytest.raises(RoundTripError, match="did not give the chunk back"):
        measure_cparams(np.arange(ITEMS, dtype=np.int64), lossy, repeats=1)


def test_codecs_of_one_chunk_size_decompress_into_one_shared_buffer():
    buf = mixed_data(2)[:ITEMS].view(np.uint8)
    measurer = ChunkMeasurer(TUTORIAL_CATEGORIES[:3], 8)
    codecs = measurer._codecs_for(buf.nbytes, 10_000)
    assert len({id(c._dst) for c in codecs}) == 1
    assert measurer._codecs_for(buf.nbytes // 2, 10_000)[0]._dst is not codecs[0]._dst
    # Sharing it changes nothing a codec gives back, and each round trip is still checked.
    alone = ChunkCodec(codecs[0].cparams, buf.nbytes)
    assert codecs[0].measure(buf, 1).cbytes == alone.measure(buf, 1).cbytes
    codecs[1].measure(buf, 1)
    assert np.array_equal(codecs[0]._dst, buf)
    cp = codecs[0].cparams
    for bad in (
        np.empty(buf.nbytes - 1, np.uint8),
        np.empty(buf.nbytes // 8, np.int64),
        np.empty(2 * buf.nbytes, np.uint8)[::2],
    ):
        with pytest.raises(InputError, match="dst"):
            ChunkCodec(cp, buf.nbytes, dst=bad)


class _Recorder:
    """A super-chunk that records which of its methods were called, in order."""

    def __init__(self, schunk) -> None:
        self.schunk, self.calls = schunk, []

    def __getattr__(self, name: str):
        method = getattr(self.schunk, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


@pytest.mark.parametrize(("compressions", "decompressions"), [(0, 2), (2, 2), (2, 0), (1, 3)])
def test_repeated_timings_decompress_only_right_after_compressing(compressions, decompressions):
    """The cheaper gather's repeats are taken as the full gather takes its timings: each
    decompression right after a compression of the chunk (a decompression in a row runs in
    warmer caches: zstd-9 up to 1.85x faster), with no compression the timings do not need."""
    buf = mixed_data(2)[:ITEMS].view(np.uint8)
    cp = Category.parse("zstd-shuffle-nosplit-9").to_cparams(typesize=8, blocksize=10_000)
    codec = ChunkCodec(cp, buf.nbytes)
    codec._schunk = recorder = _Recorder(codec._schunk)
    ctime, dtime = codec.time_more(buf, compressions, decompressions)
    calls = recorder.calls
    assert calls.count("append_data") == max(compressions, decompressions)
    assert calls.count("decompress_chunk") == decompressions
    for k, name in enumerate(calls):
        if name == "decompress_chunk":
            assert calls[k - 1] == "append_data", calls
    assert (0 < ctime < 1) == (compressions > 0) and (0 < dtime < 1) == (decompressions > 0)
    assert np.isinf(ctime) == (compressions == 0) and np.isinf(dtime) == (decompressions == 0)
    assert recorder.schunk.nchunks == 0  # the scratch super-chunk is left empty


# -- bad input: clear error, exit 2, nothing written -----------------------------------------


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    import h5py

    np.save(tmp_path / "empty.npy", np.zeros(0))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    np.save(tmp_path / "small.npy", np.arange(1000, dtype=np.int8))
    (tmp_path / "notes.csv").write_text("1,2\n")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("grp/ds", data=np.arange(10))
    existing = tmp_path / "done.npy.meas"
    existing.mkdir()
    (existing / "meta.json").write_text("{}")
    before = listing(tmp_path)
    cases = [
        ([str(tmp_path / "missing.npy")], "an existing file"),
        ([str(tmp_path / "notes.csv")], "unknown format"),
        ([f"{tmp_path / 'f.h5'}:/grp"], "not a dataset"),
        ([str(tmp_path / "empty.npy")], "non-empty array"),
        ([str(tmp_path / "text.npy")], "numeric dtype"),
        ([str(tmp_path / "small.npy"), "--chunks", "16"], "cannot be probed"),  # 16 B chunks
        ([str(tmp_path / "small.npy"), "--chunks", "64", "--blocks", "1"], "cannot be probed"),
        ([str(tmp_path / "small.npy"), "--output", str(existing)], "one btune_wrap wrote"),
        ([str(tmp_path / "small.npy"), "--categories", "lz4-nope-5"], "category"),
        ([str(tmp_path / "small.npy"), "--repeats", "0"], "repeats"),
        ([str(tmp_path / "small.npy"), "--sample", "0"], "sample"),
    ]
    for args, message in cases:
        assert main(["gather", *args, "--quiet"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("btune gather: error: ") and message in err, (args, err)
        assert listing(tmp_path) == before, args
    with pytest.raises(SystemExit):
        main(["gather", str(tmp_path / "small.npy"), "--resume", "--force"])
    assert json.loads((existing / "meta.json").read_text()) == {}


def test_cli_gather_prints_a_summary_and_force_replaces(tmp_path, capsys):
    data = mixed_data(5)
    np.save(tmp_path / "d.npy", data)
    args = ["gather", str(tmp_path / "d.npy"), "--chunks", "5000", "--repeats", "1"]
    args += ["--categories", "lz4-shuffle-nosplit-5,zstd-bitshuffle-nosplit-9"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"Wrote {tmp_path / 'd.npy.meas'}: 5 chunks x 2 categories" in out
    for label in ("best cratio:", "fastest compression:", "fastest decompression:"):
        assert label in out
    first = Measurements.load(tmp_path / "d.npy.meas")
    best = summarize(first).best_cratio
    assert f"best cratio:            {best.category} (best on {best.share:.0%} of" in out
    assert main([*args, "--force", "--max-chunks", "2", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d.npy.meas")
    replaced = Measurements.load(tmp_path / "d.npy.meas")
    assert first.nchunks == 5 and replaced.nchunks == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_gather_accepts_an_open_source(tmp_path):
    from btune_wrap.sources import ArraySource

    data = mixed_data(3)
    src = ArraySource(data, chunks=(ITEMS,), blocks=(2500,))
    with pytest.raises(ConfigError, match="output"):
        gather(src, categories=FEW[:2], progress=False)
    with pytest.raises(ConfigError, match="chunks/blocks apply to a path"):
        gather(src, tmp_path / "x.meas", chunks=(100,), progress=False)
    got = gather(src, tmp_path / "x.meas", categories=FEW[:2], repeats=1, progress=False)
    np.save(tmp_path / "d.npy", data)
    expected = gather(tmp_path / "d.npy", chunks=(ITEMS,), blocks=(2500,), categories=FEW[:2],
                      repeats=1, progress=False)  # fmt: skip
    assert_same_tables(got, expected)


def small_b2nd(directory: Path) -> Path:
    """A ``.b2nd`` of 4 chunks of 5000 int64."""
    path = directory / "a.b2nd"
    blosc2.asarray(np.arange(20_000), chunks=(ITEMS,), urlpath=str(path), mode="w")
    return path


def test_an_output_that_names_no_directory_to_make_exits_2_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    path = small_b2nd(tmp_path)
    monkeypatch.chdir(tmp_path)  # '.' and '' are the test's directory
    before = listing(tmp_path)
    for output in (".", "./", "/", "", ".."):
        assert main(["gather", str(path), "--output", output, "--quiet"]) == 2, output
        err = capsys.readouterr().err
        assert f"output={output!r} is invalid: expected a path whose last component" in err
        with pytest.raises(InputError, match="last component names the directory to make"):
            gather(path, Path(output), categories=FEW[:1], progress=False)
        assert listing(tmp_path) == before, output


def test_a_client_or_output_of_another_type_is_refused_before_any_checkpoint(tmp_path):
    path = small_b2nd(tmp_path)
    before = listing(tmp_path)
    opts = {"categories": FEW[:1], "progress": False}
    with pytest.raises(ConfigError, match=r"client=5 is invalid: expected a distributed\.Client"):
        gather(path, tmp_path / "x.meas", client=5, **opts)
    with pytest.raises(ConfigError, match="client='tcp://127.0.0.1:8786' is invalid"):
        gather(path, tmp_path / "x.meas", client="tcp://127.0.0.1:8786", **opts)
    with pytest.raises(InputError, match=r"output=5 is invalid: expected a path \(str or"):
        gather(path, 5, **opts)
    assert listing(tmp_path) == before


def test_a_damaged_workers_file_is_refused_on_resume_before_measuring(b2, tmp_path, capsys):
    out = tmp_path / "damaged.meas"
    work, parts = killed_gather(b2, out)
    workers = work / parts[0] / "workers.json"
    opts = {"categories": SPLIT_CATEGORIES, "repeats": 1, "progress": False, "resume": True}
    for damage in (b"\xff\xfe", b"{bad", b'["not", "workers"]'):
        workers.write_bytes(damage)
        with pytest.raises(InputError, match="is damaged") as refused:
            gather(b2, out, **opts)
        message = str(refused.value)
        assert str(workers) in message and "start over with --force" in message
        # Refused before measuring: no new part (an interrupted measure flushes one).
        assert sorted(p.name for p in work.glob("part-*")) == parts and not out.exists()
        assert workers.read_bytes() == damage
    cli = ["gather", str(b2), "--output", str(out), "--categories", "split", "--repeats", "1"]
    assert main([*cli, "--resume", "--quiet"]) == 2
    assert "workers.json" in capsys.readouterr().err
