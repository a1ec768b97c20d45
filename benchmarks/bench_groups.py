"""What one decision per group of chunks costs in choice quality (a script, not a test).

With ``decide_every=N`` the Python engine decides for the first of every N consecutive chunks
and the others take its choice: at 40 KB chunks, 6 writes at about the speed of
``blosc2.asarray`` (``bench_infer.py``), where deciding every chunk (the default) is about
half as fast. This measures what it costs on real data.

The first ``--chunks`` consecutive chunks of about 40 KB of each corpus array are gathered
(74 categories, 3 timings; cached in ``build/corpus-meas-40k``) and the mean gain
``exp(J_best - J_choice) - 1`` (best measured category per chunk; mean over tradeoffs 0..1 and
chunks, then over arrays) of the neighbours models' choices is computed with ``decide_every``
1, 2, 6 and 13, for two models:

- ``general``: trained on the other arrays' chunks (leave one array out: the shipped general
  model on data it has not seen);
- ``own``: trained on the array's first half of chunks (with the other arrays as its fallback,
  as ``btune train`` has the general model), tested on its second half.

Usage::

    .venv/bin/python benchmarks/bench_groups.py [--corpus build/corpus] [--chunks 120]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from bench_quality import layout

from btune_wrap import measure
from btune_wrap.evaluate import model_candidates
from btune_wrap.features import DEFAULT_FEATURES
from btune_wrap.general import general_neighbors
from btune_wrap.measurements import Measurements
from btune_wrap.neighbors import fit_neighbors
from btune_wrap.objective import TRADEOFFS, gain, objective_matrix

CHUNK_BYTES = 40_000
GROUPS = (1, 2, 6, 13)


def gathered(npy: Path, meas_dir: Path, nchunks: int) -> Measurements:
    """The first ``nchunks`` chunks of about 40 KB of ``npy``, gathered once (cached)."""
    arr = np.load(npy, mmap_mode="r")
    chunks, blocks = layout(arr.shape, arr.dtype, CHUNK_BYTES)
    return measure.gather(
        npy, meas_dir, chunks=chunks, blocks=blocks, max_chunks=nchunks, repeats=3, nthreads=1,
        resume=True, progress=False,
    )  # fmt: skip


def mean_gain(model, test: Measurements, mode: str, group: int) -> float:
    """Mean gain of ``model``'s choices on ``test`` with ``group`` chunks per decision."""
    picks = model_candidates(model, test, TRADEOFFS, 1, group)[:, 0, :]  # (ntrade, nchunks)
    j = objective_matrix(*test.matrices(), mode, TRADEOFFS)
    chosen = np.take_along_axis(j, picks[..., None], axis=-1)[..., 0]
    return float(gain(chosen, j.max(axis=-1)).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("build/corpus"))
    p.add_argument("--chunks", type=int, default=120, help="consecutive chunks per array")
    p.add_argument("--cache", type=Path, default=Path("build/corpus-meas-40k"))
    args = p.parse_args(argv)
    names = [e["name"] for e in json.loads((args.corpus / "manifest.json").read_text())["arrays"]]
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = {}
    for name in names:
        meas = gathered(args.corpus / f"{name}.npy", args.cache / f"{name}.meas", args.chunks)
        sets[name] = meas
        nbytes = meas.meta["chunk_nbytes"]
        print(f"gathered {name}: {meas.nchunks} chunks of {nbytes} B", flush=True)
    rows = []
    for mode in ("comp", "decomp"):
        for name, meas in sets.items():
            others = [m for n, m in sets.items() if n != name]
            loo = general_neighbors(others, mode, DEFAULT_FEATURES)
            ids = meas.chunks["chunk"].to_numpy()
            half = len(ids) // 2
            first, second = meas.select(ids[:half]), meas.select(ids[half:])
            own = fit_neighbors(first, mode, DEFAULT_FEATURES, fallback=loo)
            for label, model, test in (("general", loo, meas), ("own", own, second)):
                gains = [mean_gain(model, test, mode, g) for g in GROUPS]
                rows.append((mode, label, name, *gains))
    header = " ".join(f"{'every ' + str(g):>9}" for g in GROUPS)
    print(f"\nmean gain of the choices by chunks per decision (first {args.chunks} chunks of "
          f"~40 KB per array)\n{'mode':<7} {'model':<8} {'array':<16} {header}")  # fmt: skip
    for mode, label, name, *gains in rows:
        print(f"{mode:<7} {label:<8} {name:<16} " + " ".join(f"{x:9.1%}" for x in gains))
    for mode in ("comp", "decomp"):
        for label in ("general", "own"):
            sel = np.array([r[3:] for r in rows if r[0] == mode and r[1] == label]).mean(axis=0)
            print(f"{mode:<7} {label:<8} {'mean':<16} " + " ".join(f"{x:9.1%}" for x in sel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
