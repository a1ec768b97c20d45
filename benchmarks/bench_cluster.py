"""The gather on a Dask LocalCluster: 1 vs 2 workers (a script, not a test).

Same file, same machine, one run: the tutorial's chunks of 5000 int64 (40 KB, random integers
in [0, 10000) and the other kinds of :func:`btune_wrap.data.mixed_int`), the 32 categories, 3
repeats, stored as ``.b2nd``. For 1 and then 2 local worker processes (one thread and one
codec thread each) the cluster is started first and warmed up with a small gather, so only the
measuring is timed:

* throughput: chunks per second of wall time of :func:`btune_wrap.measure.gather` with
  ``client=``; the ratio 2 workers / 1 worker (2 would be perfect scaling on 2 idle cores);
* the timings themselves: per category, the median ``ctime`` (and ``dtime``) over the chunks
  with 2 workers divided by that with 1 worker: above 1 when two workers measuring side by
  side slow each other down (shared caches, memory bandwidth, a busy machine);
* the cost per chunk of the serial gather (wall and CPU), the base of the README's estimate
  for 100 GB.

On a machine shared with other jobs, the wall-time figures include waiting for a CPU: run it
on an idle machine for the scaling; compare within one run.

Usage::

    .venv/bin/python benchmarks/bench_cluster.py [--chunks 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np

from btune_wrap.categories import DEFAULT_CATEGORIES
from btune_wrap.cluster import connect
from btune_wrap.data import mixed_int
from btune_wrap.measure import gather
from btune_wrap.measurements import Measurements


def timed(path: Path, out: Path, client=None) -> tuple[Measurements, float, float]:
    """The gather, its wall and process CPU seconds."""
    w0, c0 = time.perf_counter(), time.process_time()
    meas = gather(path, out, categories=DEFAULT_CATEGORIES, progress=False, force=True,
                  client=client)  # fmt: skip
    return meas, time.perf_counter() - w0, time.process_time() - c0


def medians(meas: Measurements) -> tuple[np.ndarray, np.ndarray]:
    _, _, ctime, dtime = meas.matrices()
    return np.median(ctime, axis=0), np.median(dtime, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=200, help="chunks (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per setting (default 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.b2nd"
        blosc2.asarray(mixed_int(args.chunks, seed=2), chunks=(5000,), urlpath=str(path))
        warm = {"max_chunks": 4, "progress": False, "force": True}
        gather(path, Path(tmp) / "warm.meas", **warm)
        serial = [timed(path, Path(tmp) / "serial.meas") for _ in range(args.rounds)]
        wall_s = sum(s[1] for s in serial) / args.rounds / args.chunks
        cpu_s = sum(s[2] for s in serial) / args.rounds / args.chunks
        print(f"serial gather: {1e3 * wall_s:.1f} ms wall, {1e3 * cpu_s:.1f} ms CPU per chunk "
              f"(32 categories x 3 repeats, 40 KB chunks; {os.cpu_count()} cores)")  # fmt: skip
        rate: dict[int, float] = {}
        times: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        for n in (1, 2):
            with connect(f"local:{n}", timeout=120) as client:
                gather(path, Path(tmp) / "warm.meas", client=client, **warm)
                runs = [timed(path, Path(tmp) / f"c{n}.meas", client) for _ in range(args.rounds)]
            rate[n] = args.chunks * args.rounds / sum(r[1] for r in runs)
            times[n] = [medians(r[0]) for r in runs]
            print(f"{n} worker(s): {rate[n]:.1f} chunks/s")
        print(f"throughput ratio 2 workers / 1 worker: {rate[2] / rate[1]:.2f}")
        c1 = np.mean([t[0] for t in times[1]], axis=0)
        c2 = np.mean([t[0] for t in times[2]], axis=0)
        d1 = np.mean([t[1] for t in times[1]], axis=0)
        d2 = np.mean([t[1] for t in times[2]], axis=0)
        print(f"\n{'category':<36} {'ctime 2w/1w':>11} {'dtime 2w/1w':>11}")
        for k, cat in enumerate(DEFAULT_CATEGORIES):
            print(f"{cat.name:<36} {c2[k] / c1[k]:>11.2f} {d2[k] / d1[k]:>11.2f}")
        print(f"{'median over categories':<36} {np.median(c2 / c1):>11.2f} "
              f"{np.median(d2 / d1):>11.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
