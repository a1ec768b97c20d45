"""Measuring efficiency of the gather (a script, not a test).

Same data, same machine, one run: the tutorial's chunks of 5000 int64 (40 KB) from
``numpy.random.default_rng(0).integers(0, 10000, ...)``, stored as a ``.b2nd``.

* bare codec calls: for every chunk and every category, the very calls the gather makes
  (``SChunk.append_data`` and ``SChunk.decompress_chunk`` on one reused scratch super-chunk per
  category), ``repeats`` times each, in a plain loop; the sum of the time spent inside them,
  wall and CPU (``time.thread_time``: the codecs run on the calling thread with nthreads=1);
* gather: the wall time of :func:`btune_wrap.measure.gather` on the same file with the same
  categories, repeats and threads (reading chunks, probe features, the same codec calls, round
  trip checks, checkpoints and the final write included), wall and process CPU time.

The ratio gather / bare codec calls is the gather's overhead (target: at most 1.10). Each
round runs both, in that order, and the ratio of the sums over all rounds is reported; a small
warm-up gather first loads the compiled probe and measures the zeros-speed reference, so
one-off start-up costs are left out. On a shared machine wall times include time spent
waiting for a CPU: the CPU-time ratio is the steadier figure; compare within one run.

Usage::

    .venv/bin/python benchmarks/bench_measure.py [--chunks 100] [--repeats 3] [--rounds 3]
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
from btune_wrap.measure import gather

CHUNK_ITEMS = 5000


def write_input(path: Path, nchunks: int) -> Path:
    data = np.random.default_rng(0).integers(0, 10_000, nchunks * CHUNK_ITEMS)
    blosc2.asarray(data, chunks=(CHUNK_ITEMS,), urlpath=str(path), mode="w")
    return path


def bare_calls(path: Path, repeats: int, nthreads: int) -> tuple[float, float]:
    """Seconds spent inside the codec calls: (wall, CPU of this thread)."""
    arr = blosc2.open(str(path))
    schunk = arr.schunk
    nbytes, ts, bs = schunk.chunksize, schunk.typesize, schunk.blocksize
    scratch = [
        blosc2.SChunk(
            chunksize=nbytes,
            cparams=c.to_cparams(typesize=ts, blocksize=bs, nthreads=nthreads),
            dparams={"nthreads": nthreads},
        )
        for c in DEFAULT_CATEGORIES
    ]
    dst = np.empty(nbytes, dtype=np.uint8)
    clock, cpu = time.perf_counter, time.thread_time
    wall = cpu_s = 0.0
    for i in range(schunk.nchunks):
        buf = np.frombuffer(schunk.decompress_chunk(i), dtype=np.uint8)
        for sc in scratch:
            for _ in range(repeats):
                c0 = cpu()
                t0 = clock()
                sc.append_data(buf)
                t1 = clock()
                sc.decompress_chunk(0, dst)
                t2 = clock()
                cpu_s += cpu() - c0
                wall += (t1 - t0) + (t2 - t1)
                sc.delete_chunk(0)
    return wall, cpu_s


def timed_gather(path: Path, out: Path, repeats: int, nthreads: int, **kw):
    """(wall seconds, process CPU seconds, measurements) of one gather."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    meas = gather(path, out, repeats=repeats, nthreads=nthreads, progress=False, force=True, **kw)
    return time.perf_counter() - t0, time.process_time() - c0, meas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100, help="number of 40 KB chunks")
    parser.add_argument("--repeats", type=int, default=3, help="timings per operation")
    parser.add_argument("--nthreads", type=int, default=1, help="codec threads")
    parser.add_argument("--rounds", type=int, default=3, help="bare loop + gather rounds")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_input(Path(tmp) / "rand_int.b2nd", max(args.chunks, 1))
        out = Path(tmp) / "rand_int.b2nd.meas"
        timed_gather(path, out, 1, args.nthreads, max_chunks=2)  # warm-up
        ncat = len(DEFAULT_CATEGORIES)
        print(
            f"{args.chunks} chunks of {CHUNK_ITEMS} int64 (40 KB) x {ncat} categories, "
            f"repeats={args.repeats}, nthreads={args.nthreads}"
        )
        print()
        print(f"{'':>5} {'bare calls':>21} {'gather':>21} {'gather / bare calls':>21}")
        print(f"{'round':>5} {'wall s':>10} {'CPU s':>10} {'wall s':>10} {'CPU s':>10} "
              f"{'wall':>10} {'CPU':>10}   probe s")  # fmt: skip
        sums = np.zeros(4)
        per_round = []
        for r in range(args.rounds):
            bare_wall, bare_cpu = bare_calls(path, args.repeats, args.nthreads)
            g_wall, g_cpu, meas = timed_gather(path, out, args.repeats, args.nthreads)
            probe = float(meas.chunks["probe_time"].sum())
            sums += (bare_wall, bare_cpu, g_wall, g_cpu)
            waiting = (bare_wall + g_wall) / (bare_cpu + g_cpu)  # 1.0: never off the CPU
            per_round.append((waiting, g_wall / bare_wall, g_cpu / bare_cpu))
            print(
                f"{r + 1:>5} {bare_wall:>10.3f} {bare_cpu:>10.3f} {g_wall:>10.3f} {g_cpu:>10.3f} "
                f"{g_wall / bare_wall:>10.3f} {g_cpu / bare_cpu:>10.3f}   {probe:.3f}"
            )
    load = max(load, os.getloadavg()[0])
    print()
    print(
        f"all rounds: gather / bare codec calls = {sums[2] / sums[0]:.3f} (wall), "
        f"{sums[3] / sums[1]:.3f} (CPU); target <= 1.10"
    )
    waiting, wall_ratio, cpu_ratio = min(per_round)
    print(
        f"least disturbed round (wall/CPU {waiting:.2f}): {wall_ratio:.3f} (wall), "
        f"{cpu_ratio:.3f} (CPU)"
    )
    print(f"load average (1 min) up to {load:.1f} on {os.cpu_count()} CPUs during the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
