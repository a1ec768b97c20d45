"""Writing a Blosc2 file of many chunks (a script, not a test).

How the time per chunk of writing a ``.b2nd`` file grows with its number of chunks, side by side
in one run: ``blosc2.asarray`` with fixed parameters (blosc2's defaults) straight to the file, and
into memory then saved (``NDArray.save``), the Python engine (general model, COMP, tradeoff 0.5)
writing the same file, and the same engine writing into memory. Int64 data of
chunks of 5000 items (40 KB, the tutorial's), from 1000 to ``--max-chunks`` chunks.

Then the bare cost: one precompressed chunk of 1000 int64 stored with ``update_chunk`` into a file
array of 2000, 8000 and 32000 chunks, per chunk: it grows with the number of chunks, whoever
writes them.

Usage::

    .venv/bin/python benchmarks/bench_file_write.py [--max-chunks 16000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np

from btune_wrap import BtuneConfig
from btune_wrap.infer import compress

ITEMS = 5000


def _seconds(write) -> float:
    t0 = time.perf_counter()
    write()
    return time.perf_counter() - t0


def row(n: int, work: Path) -> tuple[float, ...]:
    """Microseconds per chunk for ``n`` chunks: asarray to a file, asarray into memory and
    saved, the engine to a file and the engine into memory."""
    data = np.arange(n * ITEMS, dtype=np.int64)
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP")
    layout = {"chunks": (ITEMS,), "blocks": (ITEMS,)}
    fixed = _seconds(
        lambda: blosc2.asarray(data, urlpath=str(work / "fixed.b2nd"), mode="w", **layout)
    )
    saved = _seconds(
        lambda: blosc2.asarray(data, **layout).save(str(work / "saved.b2nd"), mode="w")
    )
    out = work / "engine.b2nd"
    out.unlink(missing_ok=True)
    engine = _seconds(lambda: compress(data, config, "python", urlpath=out, **layout))
    memory = _seconds(lambda: compress(data, config, "python", **layout))
    return tuple(1e6 * s / n for s in (fixed, saved, engine, memory))


def bare_update(n: int, work: Path, items: int = 1000) -> float:
    """Microseconds per ``update_chunk`` of one precompressed chunk into each chunk of a file
    array of ``n`` chunks of ``items`` int64."""
    path = work / "bare.b2nd"
    arr = blosc2.empty((n * items,), np.int64, chunks=(items,), blocks=(items,),
                       urlpath=str(path), mode="w")  # fmt: skip
    chunk = blosc2.compress2(np.arange(items, dtype=np.int64))
    update = arr.schunk.update_chunk
    seconds = _seconds(lambda: [update(i, chunk) for i in range(n)])
    del arr
    path.unlink()
    return 1e6 * seconds / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-chunks", type=int, default=16000)
    args = parser.parse_args(argv)
    print(f"blosc2 {blosc2.__version__}; us per chunk of {ITEMS} int64")
    print(
        f"{'chunks':>8} {'asarray file':>13} {'asarray+save':>13} {'engine file':>12} "
        f"{'engine memory':>14}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        n = 1000
        while n <= args.max_chunks:
            fixed, saved, engine, memory = row(n, Path(tmp))
            print(
                f"{n:>8} {fixed:>13.0f} {saved:>13.0f} {engine:>12.0f} {memory:>14.0f}",
                flush=True,
            )
            n *= 4
        print("\nbare update_chunk into a file array, us per chunk of 1000 int64")
        for n in (2000, 8000, 32000):
            print(f"{n:>8} {bare_update(n, Path(tmp)):>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
