"""The cheaper gather against the full one (a script, not a test).

Same chunks, same machine, one run, in turns: the built-in data (:func:`btune_wrap.data.mixed_int`,
four kinds of int64 chunks of 5000, and the tutorial's :func:`btune_wrap.data.rand_int`), stored
as ``.b2nd``, gathered with the default categories and 3 repeats:

* full: every category timed 3 times (``full_repeats=True``), twice (A and B), so the label
  agreement of two full gathers (the timing noise itself) is the floor to compare with;
* cheaper: each category timed once, then only the contested compressions/decompressions
  repeated (``full_repeats=False``).

Reported per dataset: process CPU time per chunk of each (and the ratio cheaper / full, goal
<= 0.4), the share of (chunk, tradeoff, mode) label cells on which the cheaper gather agrees with
full A (goal >= 98%) next to full B's agreement with full A, and the mean number of compressions
and decompressions per row. With ``--gain N``, models are trained on a cheaper and a full gather
of N other mixed_int chunks and evaluated on N/2 held-out chunks (gathered in full) — the
held-out gain of the per-chunk best over the model's choice (and the regret), per mode,
averaged over the tradeoffs. Label cells are (chunk, tradeoff 0, 0.1, ..., 1, mode comp/decomp);
"regret@B" is the mean regret of a gather's labels judged by full B's measurements.

Two gathers run one after the other differ by the machine's timing noise as well as by what the
cheaper one skips (two full gathers agree on 40-80% of the cells). The *paired* rows take that
noise out: every category is timed 3 times on each chunk and the samples are kept; "full" keeps
the best of the 3, the cheaper gather's own code (``ChunkMeasurer._measure_contested``) is replayed
on the same samples (its first timing is the first sample, each repeat it asks for the next
ones). Their label agreement is what skipping timings alone changes, and the share of the
recorded seconds the replay used is its timing cost against full's (``--paired``): "seconds"
the timed ones, of which "first" the first timing of every category; "+recompress" adds the
untimed compression before each repeated decompression that follows no timed one (costed at
the category's best compression time), so that it estimates the share of the codec CPU. The
first timings alone, cold as they are, cost a third of the full gather's seconds or more: the
floor of any gather that times every category once.

Usage::

    .venv/bin/python benchmarks/bench_cheap_gather.py [--chunks 200] [--noise 1.5,2,3] [--gain 480]
    .venv/bin/python benchmarks/bench_cheap_gather.py --paired [--corpus build/corpus]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np
import pandas as pd

from btune_wrap.categories import DEFAULT_CATEGORIES
from btune_wrap.compressor import Measurement
from btune_wrap.data import mixed_int, rand_int
from btune_wrap.measure import ChunkMeasurer, gather, select_chunks
from btune_wrap.measurements import RESULT_COLUMNS, RESULT_EXTRA, Measurements
from btune_wrap.objective import TRADEOFFS, best_index, objective_matrix, regret
from btune_wrap.sources import ChunkSource, open_source

CHUNK_ITEMS = 5000


def labels(meas: Measurements) -> np.ndarray:
    """Labels per (mode, tradeoff, chunk)."""
    nbytes, cbytes, ctime, dtime = meas.matrices()
    return np.stack(
        [
            best_index(objective_matrix(nbytes, cbytes, ctime, dtime, mode, TRADEOFFS))
            for mode in ("comp", "decomp")
        ]
    )


def timed_gather(
    path: Path, out: Path, full: bool, noise: float = 1.5, **source
) -> tuple[Measurements, float]:
    """A gather (``source``: chunks, blocks, sample) and its process CPU seconds per chunk."""
    t0 = time.process_time()
    meas = gather(
        path,
        out,
        categories=DEFAULT_CATEGORIES,
        repeats=3,
        full_repeats=full,
        noise=noise,
        progress=False,
        force=True,
        seed=0,
        **source,
    )
    return meas, (time.process_time() - t0) / meas.nchunks


def label_regret(chosen: np.ndarray, judge: Measurements) -> float:
    """Mean regret, under ``judge``'s measurements, of the labels ``chosen``."""
    nbytes, cbytes, ctime, dtime = judge.matrices()
    out = []
    for k, mode in enumerate(("comp", "decomp")):
        j = objective_matrix(nbytes, cbytes, ctime, dtime, mode, TRADEOFFS)
        picked = np.take_along_axis(j, chosen[k][..., None], axis=-1)[..., 0]
        out.append(regret(picked, j.max(axis=-1)))
    return float(np.mean(out))


def run(name: str, path: Path, workdir: Path, noises: list[float], **source) -> None:
    """Full A, the cheaper gathers, full B of one input, and their table rows."""
    warm = {"categories": DEFAULT_CATEGORIES[:2], "max_chunks": 2, "progress": False}
    gather(path, workdir / "warm.meas", force=True, **warm, **source)
    full_a, cpu_a = timed_gather(path, workdir / f"{name}.a.meas", True, **source)
    cheap = [timed_gather(path, workdir / f"{name}.{x}.meas", False, x, **source)
             for x in noises]  # fmt: skip
    full_b, cpu_b = timed_gather(path, workdir / f"{name}.b.meas", True, **source)
    cpu_full = (cpu_a + cpu_b) / 2
    la = labels(full_a)
    rows = [("full A", full_a, cpu_a), ("full B", full_b, cpu_b)]
    rows += [(f"cheaper, noise {x}", m, c) for x, (m, c) in zip(noises, cheap, strict=True)]
    for label, meas, cpu in rows:
        mine = labels(meas)
        judged = "" if meas is full_b else f"{label_regret(mine, full_b):>10.4f}"
        res = meas.results
        print(
            f"{name:<10} {label:<18} {1e3 * cpu:>8.1f} {cpu / cpu_full:>6.2f} "
            f"{np.mean(mine == la):>8.1%} {judged:>10} {res['crepeats'].mean():>6.2f} "
            f"{res['drepeats'].mean():>6.2f}"
        )


class _Replay:
    """One category's recorded timings of one chunk, given out as a codec would measure them:
    the first sample to ``measure(buf, 1)``, the following ones to ``time_more``."""

    def __init__(self, cbytes: int, ctimes: list[float], dtimes: list[float]) -> None:
        self.cbytes = cbytes
        self.ctimes, self.dtimes = ctimes, dtimes
        self.used = [1, 1]  # samples handed out: compressions, decompressions
        self.recompressed = 0.0  # untimed compressions before repeated decompressions

    def measure(self, buf: np.ndarray, repeats: int = 1) -> Measurement:
        return Measurement(self.cbytes, self.ctimes[0], self.dtimes[0])

    def time_more(self, buf: np.ndarray, compressions: int, decompressions: int):
        out = []
        asked = ((self.ctimes, compressions), (self.dtimes, decompressions))
        for k, (times, n) in enumerate(asked):
            taken = times[self.used[k] : self.used[k] + n]
            if len(taken) < n:
                raise RuntimeError(f"the replay asked for more than {len(times)} timings")
            self.used[k] += n
            out.append(min(taken, default=np.inf))
        # ChunkCodec.time_more compresses the chunk, untimed, before each decompression
        # beyond the compressions it times.
        self.recompressed += max(decompressions - compressions, 0) * min(self.ctimes)
        return out[0], out[1]

    def seconds_used(self) -> float:
        return sum(self.ctimes[: self.used[0]]) + sum(self.dtimes[: self.used[1]])

    def first_seconds(self) -> float:
        return self.ctimes[0] + self.dtimes[0]


#: One chunk's recorded timings: its bytes, and per category (cbytes, 3 ctimes, 3 dtimes).
Recorded = tuple[int, list[tuple[int, list[float], list[float]]]]


def record(src: ChunkSource, indices: list[int]) -> list[Recorded]:
    """Every category timed 3 times in a row on each chunk ``indices`` of ``src``, as the full
    gather takes them, each timing kept."""
    measurer = ChunkMeasurer(DEFAULT_CATEGORIES, src.typesize, repeats=3)
    out = []
    for i in indices:
        buf = src.chunk(i)
        codecs = measurer._codecs_for(buf.nbytes, src.chunk_blocksize(i))
        buf.max()  # the untimed read that warms the chunk, as ChunkMeasurer.measure does
        samples = []
        for codec in codecs:
            runs = [codec.measure(buf, 1) for _ in range(3)]
            samples.append((runs[0].cbytes, [m.ctime for m in runs], [m.dtime for m in runs]))
        out.append((buf.nbytes, samples))
    return out


def replay(
    recorded: list[Recorded], noise: float | None
) -> tuple[list[list[tuple]], dict[str, float]]:
    """Per chunk, the rows (cbytes, ctime, dtime, crepeats, drepeats) per category that the
    full gather (``noise=None``: the best of the 3) or the cheaper one with ``noise`` gives
    from the ``recorded`` timings, and the shares of their seconds it used: ``timed``, of it
    ``first``, and ``recompressed`` (untimed, see :class:`_Replay`)."""
    names = [c.name for c in DEFAULT_CATEGORIES]
    measurer = ChunkMeasurer(DEFAULT_CATEGORIES, 1, repeats=3, full_repeats=False, noise=noise or 1)
    out, total = [], 0.0
    used = {"timed": 0.0, "first": 0.0, "recompressed": 0.0}
    for i, (nbytes, samples) in enumerate(recorded):
        total += sum(sum(ct) + sum(dt) for _, ct, dt in samples)
        if noise is None:
            out.append([(cb, min(ct), min(dt), 3, 3) for cb, ct, dt in samples])
            continue
        replays = [_Replay(*s) for s in samples]
        rows = measurer._measure_contested(i, np.empty(nbytes, np.uint8), names, replays)
        out.append([r[2:] for r in rows])
        used["timed"] += sum(r.seconds_used() for r in replays)
        used["first"] += sum(r.first_seconds() for r in replays)
        used["recompressed"] += sum(r.recompressed for r in replays)
    if noise is None:
        return out, {"timed": 1.0, "first": 0.0, "recompressed": 0.0}
    return out, {k: v / total for k, v in used.items()}


def paired(src: ChunkSource, indices: list[int], noises: list[float]) -> dict[str, object]:
    """Full and cheaper gathers replayed on the same recorded timings of the chunks
    ``indices`` of ``src``: full's labels, each noise's labels and timing-cost share."""
    recorded = record(src, indices)
    nbytes = [n for n, _ in recorded]
    out: dict[str, object] = {"full": _row_labels(nbytes, replay(recorded, None)[0])}
    for x in noises:
        rows, share = replay(recorded, x)
        out[x] = (_row_labels(nbytes, rows), share)
    return out


def _row_labels(nbytes: list[int], rows: list[list[tuple]]) -> np.ndarray:
    """Labels per (mode, tradeoff, chunk) of per-chunk rows (cbytes, ctime, dtime, ...)."""
    nbytes = np.array(nbytes, dtype=np.float64)
    cbytes, ctime, dtime = np.moveaxis(np.array(rows, dtype=np.float64)[..., :3], 2, 0)
    return np.stack(
        [
            best_index(objective_matrix(nbytes, cbytes, ctime, dtime, mode, TRADEOFFS))
            for mode in ("comp", "decomp")
        ]
    )


def paired_rows(name: str, path: Path, nchunks: int, noises: list[float], **source) -> None:
    """The paired table rows of ``nchunks`` chunks of ``path`` (drawn with seed 0)."""
    src = open_source(path, **source)
    try:
        indices = select_chunks(src.nchunks, None, nchunks, 0)
        res = paired(src, indices, noises)
    finally:
        src.close()
    for x in noises:
        lab, share = res[x]
        print(
            f"{name:<16} {x:>6} {share['timed']:>8.2f} {share['first']:>6.2f} "
            f"{share['timed'] + share['recompressed']:>12.2f} {np.mean(lab == res['full']):>9.1%}"
        )


def train_test_files(workdir: Path, nchunks: int) -> tuple[Path, Path]:
    """``nchunks`` mixed_int chunks to train on and ``nchunks // 2`` others to test on, as
    ``.b2nd`` files in ``workdir``."""
    train_path, test_path = workdir / "train.b2nd", workdir / "test.b2nd"
    blosc2.asarray(mixed_int(nchunks, seed=11), chunks=(CHUNK_ITEMS,), urlpath=str(train_path))
    blosc2.asarray(mixed_int(nchunks // 2, seed=12), chunks=(CHUNK_ITEMS,), urlpath=str(test_path))
    return train_path, test_path


def heldout_gain(workdir: Path, nchunks: int, noise: float) -> None:
    """Train on a cheaper and on two full gathers of one file; evaluate them on another file."""
    train_path, test_path = train_test_files(workdir, nchunks)
    full, cpu_f = timed_gather(train_path, workdir / "train.full.meas", True)
    cheap, cpu_c = timed_gather(train_path, workdir / "train.cheap.meas", False, noise)
    again, cpu_b = timed_gather(train_path, workdir / "train.again.meas", True)
    test, _ = timed_gather(test_path, workdir / "test.meas", True)
    print(f"\nheld-out: trained on {nchunks} mixed_int chunks, evaluated on {nchunks // 2} others")
    print("(full B: the full gather run again, whose spread is the noise floor)")
    print(f"{'trained on':<22} {'CPU ms':>8} {'mode':<7} {'mean gain':>9} {'mean regret':>11}")
    for label, meas, cpu in (
        ("full gather", full, cpu_f),
        ("full gather B", again, cpu_b),
        (f"cheaper, noise {noise}", cheap, cpu_c),
    ):
        held_out_row(label, meas.path, test.path, workdir, f"{1e3 * cpu:>8.1f}")


def held_out_row(label: str, train: Path, test: Path, workdir: Path, cpu: str) -> None:
    """Train models on the measurements ``train``; print their held-out gain on ``test``."""
    from btune_wrap.evaluate import evaluate
    from btune_wrap.train import train_and_export

    models = workdir / f"models.{label.replace(' ', '_').replace(',', '')}"
    train_and_export([train], models, "both", force=True)
    for mode in ("comp", "decomp"):
        ev = evaluate(models, [test], mode, methods=["model"], progress=False)
        mine = ev.summary[ev.summary["method"] == "model"]
        print(
            f"{label:<22} {cpu:>8} {mode:<7} {mine['mean_gain'].mean():>9.4f} "
            f"{mine['mean_regret'].mean():>11.4f}"
        )


def paired_gain(workdir: Path, nchunks: int, noises: list[float]) -> None:
    """Models trained on the full and the cheaper gather replayed on the same recorded timings
    of ``nchunks`` mixed_int chunks, evaluated on ``nchunks // 2`` others (gathered in full)."""
    train_path, test_path = train_test_files(workdir, nchunks)
    # The features (and chunk ids) of a one-timing gather; its timings are replaced.
    base = gather(train_path, workdir / "train.base.meas", repeats=1, progress=False, force=True)
    test, _ = timed_gather(test_path, workdir / "test.meas", True)
    src = open_source(train_path)
    try:
        recorded = record(src, list(range(src.nchunks)))
    finally:
        src.close()
    names = [c.name for c in DEFAULT_CATEGORIES]
    ids = base.chunks["chunk"].tolist()
    print(f"\npaired held-out: {nchunks} mixed_int chunks timed 3 times per category, replayed")
    print(f"{'trained on':<22} {'seconds':>8} {'mode':<7} {'mean gain':>9} {'mean regret':>11}")
    for noise in [None, *noises]:
        rows, share = replay(recorded, noise)
        table = [
            (ids[i], name, *r)
            for i, chunk in enumerate(rows)
            for name, r in zip(names, chunk, strict=True)
        ]
        results = pd.DataFrame(table, columns=[*RESULT_COLUMNS, *RESULT_EXTRA])
        meta = dict(base.meta, repeats=3, full_repeats=noise is None, noise=noise)
        label = "full gather" if noise is None else f"cheaper, noise {noise}"
        path = Measurements(meta, base.chunks, results).save(workdir / f"replay.{noise}.meas")
        held_out_row(label, path, test.path, workdir, f"{share['timed']:.2f}")


def corpus_arrays(corpus: Path):
    """Each array of the corpus (``benchmarks/corpus.py``'s ``build/corpus``): its name, its
    ``.npy`` and the chunks/blocks keywords of ``bench_quality.py``'s 256 KB chunks."""
    import json

    from bench_quality import layout

    for entry in json.loads((corpus / "manifest.json").read_text())["arrays"]:
        npy = corpus / f"{entry['name']}.npy"
        arr = np.load(npy, mmap_mode="r")
        chunks, blocks = layout(arr.shape, arr.dtype)
        yield entry["name"], npy, {"chunks": chunks, "blocks": blocks}


def corpus_rows(corpus: Path, nchunks: int, workdir: Path, noises: list[float]) -> None:
    """:func:`run` on ``nchunks`` chunks (drawn with seed 0) of every corpus array."""
    for name, npy, layout in corpus_arrays(corpus):
        run(name, npy, workdir, noises, **layout, sample=nchunks)


def paired_corpus(corpus: Path, nchunks: int, noises: list[float]) -> None:
    """:func:`paired_rows` on ``nchunks`` chunks of every corpus array."""
    for name, npy, layout in corpus_arrays(corpus):
        paired_rows(name, npy, nchunks, noises, **layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=200, help="chunks per dataset")
    parser.add_argument(
        "--noise", default="1.5,2,3", help="noise factors of the cheaper gathers (default 1.5,2,3)"
    )
    parser.add_argument(
        "--gain", type=int, metavar="N", help="also train on N chunks of each and compare"
    )
    parser.add_argument(
        "--corpus", type=Path, metavar="DIR",
        help="also the real-data corpus (benchmarks/corpus.py's build/corpus), 256 KB chunks",
    )  # fmt: skip
    parser.add_argument(
        "--corpus-chunks", type=int, default=8, help="chunks drawn per corpus array (default 8)"
    )
    parser.add_argument(
        "--paired", action="store_true",
        help="only the paired replay (full and cheaper on the same recorded timings)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    n = args.chunks
    noises = [float(x) for x in args.noise.split(",")]
    datasets = {
        "mixed_int": mixed_int(n, seed=1),
        "rand_int": rand_int(n * CHUNK_ITEMS, seed=1),
    }
    ncat = len(DEFAULT_CATEGORIES)
    if args.paired:
        return paired_main(args, datasets, noises)
    print(f"{n} chunks of 40 KB per built-in dataset, {ncat} categories, 3 repeats")
    print(
        f"{'data':<10} {'gather':<18} {'CPU ms':>8} {'ratio':>6} {'= full A':>8} "
        f"{'regret@B':>10} {'c/row':>6} {'d/row':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in datasets.items():
            path = Path(tmp) / f"{name}.b2nd"
            blosc2.asarray(data, chunks=(CHUNK_ITEMS,), urlpath=str(path), mode="w")
            run(name, path, Path(tmp), noises)
        if args.corpus is not None:
            corpus_rows(args.corpus, args.corpus_chunks, Path(tmp), noises)
        if args.gain:
            heldout_gain(Path(tmp), args.gain, noises[0])
    return 0


def paired_main(args: argparse.Namespace, datasets: dict, noises: list[float]) -> int:
    """The paired table: built-in data, then the corpus if asked."""
    print(f"Paired replay: {len(DEFAULT_CATEGORIES)} categories, 3 timings each per chunk")
    print(
        f"{'data':<16} {'noise':>6} {'seconds':>8} {'first':>6} {'+recompress':>12} {'= full':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in datasets.items():
            path = Path(tmp) / f"{name}.b2nd"
            blosc2.asarray(data, chunks=(CHUNK_ITEMS,), urlpath=str(path), mode="w")
            paired_rows(name, path, args.chunks, noises)
    if args.corpus is not None:
        paired_corpus(args.corpus, args.corpus_chunks, noises)
    if args.gain:
        with tempfile.TemporaryDirectory() as tmp:
            paired_gain(Path(tmp), args.gain, noises)
    return 0


if __name__ == "__main__":
    sys.exit(main())
