"""Tuned HDF5 against h5py + hdf5plugin's Blosc2 filter at fixed parameters (a script, not a test).

For each dataset, chunking and mode, in one run:

1. Write throughput: ``compress(data, config, urlpath="x.h5:/d")`` (the Python engine, the
   model on every chunk, each chunk written directly) against ``h5py`` creating the same dataset
   through hdf5plugin's Blosc2 filter with the category the model chose most (same chunks).
   The filter takes one shuffle-type filter and no split mode: a bytedelta category is written
   with its shuffle only, and the filter keeps blosc2's default split mode and its own blocks.
2. Read throughput: ``h5py`` reading the whole tuned dataset against the fixed one (both
   through the filter).

Mode ``NONE`` writes every chunk with blosc2's default parameters through the same path (no
model, no tweak), next to the filter with those parameters: the cost of the write path alone.

Both writers use one compression thread (the filter always does); best of ``--repeats``, the
two sides taking turns; ratios by wall-clock and by CPU time of this process (both sides run
in it on one thread: CPU time still compares them when other processes load the machine).

Usage::

    .venv/bin/python benchmarks/bench_h5.py [--models DIR] [--repeats 10]

Without ``--models`` small models are trained first (``bench_out/models``, reused afterwards).
Timings on a shared 2-core machine are noisy: compare within one run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from common import ensure_models, models_parser

from btune_wrap import BtuneConfig
from btune_wrap.categories import Category, Filter, default_category
from btune_wrap.data import mixed_int
from btune_wrap.infer import compress
from btune_wrap.model import load_model


def datasets(seed: int = 0) -> dict[str, tuple[np.ndarray, list[tuple[int, ...]]]]:
    """The mixed int64 series (1-D) and a smooth float32 field with noise (2-D), each with
    the chunk shapes to try."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:2000, 0:4000].astype(np.float32)
    field = np.sin(x / 150) * np.cos(y / 90) * 40 + rng.normal(0, 0.05, x.shape)
    return {  # 32 MB each
        "mixed": (mixed_int(800, run=10, seed=seed), [(5000,), (100_000,)]),
        "field": (field.astype(np.float32), [(250, 500), (100, 4000)]),
    }


def fixed_filter(cat: Category) -> hdf5plugin.Blosc2:
    """hdf5plugin's Blosc2 filter closest to ``cat`` (bytedelta -> its shuffle)."""
    shuffle = Filter.SHUFFLE if cat.filter is Filter.BYTEDELTA else cat.filter
    return hdf5plugin.Blosc2(cname=cat.codec.name.lower(), clevel=cat.clevel, filters=int(shuffle))


def _best(fns: dict[str, object], repeats: int) -> dict[str, tuple[float, float]]:
    """Best wall-clock and best CPU time of each function; they take turns, so that both see
    the same machine load. Both sides run in this process on one thread, so CPU time compares
    them even when other processes take the cores (wall-clock ratios then moved by 2x)."""
    wall = dict.fromkeys(fns, np.inf)
    cpu = dict.fromkeys(fns, np.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
    return {name: (wall[name], cpu[name]) for name in fns}


def case(
    data: np.ndarray, chunks: tuple[int, ...], models: Path, mode: str, repeats: int, work: Path
) -> dict[str, object]:
    tuned, fixed = work / f"tuned-{mode}.h5", work / f"fixed-{mode}.h5"
    tuned.unlink(missing_ok=True)
    # NONE: no model and no tweak, every chunk with blosc2's default parameters; the same
    # parameters as the fixed side, so that the ratio is the cost of the write path alone.
    kw = {"chunks": chunks, "nthreads": 1, "max_tweaks": 0 if mode == "NONE" else 8}
    if mode == "NONE":
        config = BtuneConfig(tradeoff=0.5, use_inference=0)
    else:
        config = BtuneConfig(tradeoff=0.5, perf_mode=mode, models_dir=models, use_inference=-1)
    _, trace = compress(data, config, "python", urlpath=f"{tuned}:/d", **kw)
    if mode == "NONE":
        counts: Counter = Counter([0])
        cat = default_category()
    else:
        counts = Counter(i.category for i in trace.inferences)
        cat = load_model(models, mode).categories[counts.most_common(1)[0][0]]
    filt = fixed_filter(cat)

    def write_tuned() -> None:  # a new file each time, as h5py's mode "w" for the fixed one
        tuned.unlink()
        compress(data, config, "python", urlpath=f"{tuned}:/d", **kw)

    def write_fixed() -> None:
        with h5py.File(fixed, "w") as h5:
            h5.create_dataset("d", data=data, chunks=chunks, compression=filt)

    def reader(path: Path):
        def read() -> None:
            with h5py.File(path, "r") as h5:
                h5["d"][...]

        return read

    (t_wt, c_wt), (t_wf, c_wf) = _best({"t": write_tuned, "f": write_fixed}, repeats).values()
    (t_rt, c_rt), (t_rf, c_rf) = _best({"t": reader(tuned), "f": reader(fixed)}, repeats).values()
    mb = data.nbytes / 1e6
    return {
        "category": f"{cat.name} ({len(counts)} chosen)",
        "size_tuned": tuned.stat().st_size / 1e6,
        "size_fixed": fixed.stat().st_size / 1e6,
        "write_tuned": mb / t_wt,
        "write_fixed": mb / t_wf,
        "write_cpu_ratio": c_wf / c_wt,
        "read_tuned": mb / t_rt,
        "read_fixed": mb / t_rf,
        "read_cpu_ratio": c_rf / c_rt,
    }


def main(argv: list[str] | None = None) -> int:
    p = models_parser(__doc__.split("\n\n")[0], repeats=10)
    args = p.parse_args(argv)
    models = ensure_models(args)

    print(f"MB/s wall-clock (best of {args.repeats}), tradeoff 0.5, one thread; sizes in MB;")
    print("ratio = tuned/fixed speed, by wall-clock and by CPU time (cpu)")
    head = f"{'data':<6} {'chunks':<12} {'mode':<7} {'most chosen (of n)':<38} {'size t/f':>11}"
    print(f"{head} {'write t':>8} {'fixed':>6} {'ratio':>6} {'cpu':>5} {'read t':>7} {'fixed':>6} "
          f"{'ratio':>6} {'cpu':>5}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, (data, shapes) in datasets().items():
            for chunks in shapes:
                for mode in ("NONE", "COMP", "DECOMP"):
                    r = case(data, chunks, models, mode, args.repeats, Path(tmp))
                    print(
                        f"{name:<6} {str(chunks):<12} {mode:<7} {r['category']:<38} "
                        f"{r['size_tuned']:5.1f}/{r['size_fixed']:<5.1f} "
                        f"{r['write_tuned']:8.0f} {r['write_fixed']:6.0f} "
                        f"{r['write_tuned'] / r['write_fixed']:6.2f} {r['write_cpu_ratio']:5.2f} "
                        f"{r['read_tuned']:7.0f} {r['read_fixed']:6.0f} "
                        f"{r['read_tuned'] / r['read_fixed']:6.2f} {r['read_cpu_ratio']:5.2f}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
