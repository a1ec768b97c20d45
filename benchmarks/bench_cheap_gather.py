"""The cheaper gather against the full one (a script, not a test).

Same chunks, same machine, one run, in turns: the built-in data (:func:`btune_wrap.data.mixed_int`,
four kinds of int64 chunks of 5000, and the tutorial's :func:`btune_wrap.data.rand_int`), stored
as ``.b2nd``, gathered with the tutorial's 32 categories and 3 repeats:

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

Usage::

    .venv/bin/python benchmarks/bench_cheap_gather.py [--chunks 200] [--noise 1.5,2,3] [--gain 480]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np

from btune_wrap.categories import DEFAULT_CATEGORIES
from btune_wrap.data import mixed_int, rand_int
from btune_wrap.measure import gather
from btune_wrap.measurements import Measurements
from btune_wrap.objective import TRADEOFFS, best_index, objective_matrix, regret

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


def heldout_gain(workdir: Path, nchunks: int, noise: float) -> None:
    """Train on a cheaper and on a full gather of one file; evaluate both on another file."""
    from btune_wrap.evaluate import evaluate
    from btune_wrap.train import train_and_export

    train_path, test_path = workdir / "train.b2nd", workdir / "test.b2nd"
    blosc2.asarray(mixed_int(nchunks, seed=11), chunks=(CHUNK_ITEMS,), urlpath=str(train_path))
    blosc2.asarray(mixed_int(nchunks // 2, seed=12), chunks=(CHUNK_ITEMS,), urlpath=str(test_path))
    full, cpu_f = timed_gather(train_path, workdir / "train.full.meas", True)
    cheap, cpu_c = timed_gather(train_path, workdir / "train.cheap.meas", False, noise)
    test, _ = timed_gather(test_path, workdir / "test.meas", True)
    print(f"\nheld-out: trained on {nchunks} mixed_int chunks, evaluated on {nchunks // 2} others")
    print(f"{'trained on':<22} {'CPU ms':>8} {'mode':<7} {'mean gain':>9} {'mean regret':>11}")
    for label, meas, cpu in (
        ("full gather", full, cpu_f),
        (f"cheaper, noise {noise}", cheap, cpu_c),
    ):
        models = workdir / f"models.{label.split()[0].strip(',')}"
        train_and_export([meas.path], models, "both", force=True)
        for mode in ("comp", "decomp"):
            ev = evaluate(models, [test.path], mode, methods=["model"], progress=False)
            mine = ev.summary[ev.summary["method"] == "model"]
            print(
                f"{label:<22} {1e3 * cpu:>8.1f} {mode:<7} {mine['mean_gain'].mean():>9.4f} "
                f"{mine['mean_regret'].mean():>11.4f}"
            )


def corpus_rows(corpus: Path, nchunks: int, workdir: Path, noises: list[float]) -> None:
    """:func:`run` on ``nchunks`` chunks (drawn with seed 0) of every corpus array, in the
    256 KB chunks of ``bench_quality.py``."""
    import json

    from bench_quality import layout

    names = [e["name"] for e in json.loads((corpus / "manifest.json").read_text())["arrays"]]
    for name in names:
        npy = corpus / f"{name}.npy"
        arr = np.load(npy, mmap_mode="r")
        chunks, blocks = layout(arr.shape, arr.dtype)
        run(name, npy, workdir, noises, chunks=chunks, blocks=blocks, sample=nchunks)


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
    args = parser.parse_args(argv)
    n = args.chunks
    noises = [float(x) for x in args.noise.split(",")]
    datasets = {
        "mixed_int": mixed_int(n, seed=1),
        "rand_int": rand_int(n * CHUNK_ITEMS, seed=1),
    }
    ncat = len(DEFAULT_CATEGORIES)
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


if __name__ == "__main__":
    sys.exit(main())
