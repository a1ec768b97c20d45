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
and decompressions per row. With ``--gain``, a model is trained on each (cheaper, full A) of
a training file and evaluated on a held-out file (the same measurements of full B) — the
held-out gain of the per-chunk best over the model's choice, per mode, averaged over the
tradeoffs.

Usage::

    .venv/bin/python benchmarks/bench_cheap_gather.py [--chunks 200] [--gain]
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
from btune_wrap.objective import TRADEOFFS, best_index, objective_matrix

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


def timed_gather(path: Path, out: Path, full: bool) -> tuple[Measurements, float]:
    t0 = time.process_time()
    meas = gather(
        path,
        out,
        categories=DEFAULT_CATEGORIES,
        repeats=3,
        full_repeats=full,
        progress=False,
        force=True,
    )
    return meas, (time.process_time() - t0) / meas.nchunks


def run(name: str, data: np.ndarray, workdir: Path) -> dict[str, float]:
    path = workdir / f"{name}.b2nd"
    blosc2.asarray(data, chunks=(CHUNK_ITEMS,), urlpath=str(path), mode="w")
    gather(
        path,
        workdir / "warm.meas",
        categories=DEFAULT_CATEGORIES[:2],
        max_chunks=2,
        progress=False,
        force=True,
    )
    full_a, cpu_a = timed_gather(path, workdir / f"{name}.a.meas", True)
    cheap, cpu_c = timed_gather(path, workdir / f"{name}.c.meas", False)
    full_b, cpu_b = timed_gather(path, workdir / f"{name}.b.meas", True)
    la, lb, lc = labels(full_a), labels(full_b), labels(cheap)
    res = cheap.results
    return {
        "chunks": full_a.nchunks,
        "cpu_full_ms": 1e3 * (cpu_a + cpu_b) / 2,
        "cpu_cheap_ms": 1e3 * cpu_c,
        "cpu_ratio": cpu_c / ((cpu_a + cpu_b) / 2),
        "agree_cheap": float(np.mean(lc == la)),
        "agree_full_b": float(np.mean(lb == la)),
        "agree_cheap_b": float(np.mean(lc == lb)),
        "crepeats": float(res["crepeats"].mean()),
        "drepeats": float(res["drepeats"].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=200, help="chunks per dataset")
    args = parser.parse_args(argv)
    n = args.chunks
    datasets = {
        "mixed_int": mixed_int(n, seed=1),
        "rand_int": rand_int(n * CHUNK_ITEMS, seed=1),
    }
    print(
        f"{'data':<10} {'chunks':>6} {'CPU/chunk full':>14} {'cheaper':>8} {'ratio':>6} "
        f"{'agree':>7} {'full B':>7} {'vs B':>7} {'c/row':>6} {'d/row':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in datasets.items():
            r = run(name, data, Path(tmp))
            print(
                f"{name:<10} {r['chunks']:>6} {r['cpu_full_ms']:>11.1f} ms "
                f"{r['cpu_cheap_ms']:>5.1f} ms {r['cpu_ratio']:>6.2f} "
                f"{r['agree_cheap']:>7.1%} {r['agree_full_b']:>7.1%}"
                f" {r['agree_cheap_b']:>7.1%} {r['crepeats']:>6.2f} {r['drepeats']:>6.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
