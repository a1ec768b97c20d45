"""Inference engines, side by side in one run (a script, not a test).

1. Decision cost per chunk: the Python engine's probe + inference against the plugin's own
   ``time entropy + inference`` (from its trace), on the same chunks; and how often both
   engines choose the same category.
2. Write throughput: the Python engine (the model on every chunk, and with ``decide_every=6``:
   on the first of every 6 chunks) against ``blosc2.asarray`` with fixed parameters (the
   category the model chose most) on the same data and chunking; the plugin with the same
   model for reference. Both with blosc2's default threads (the engine then probes in a
   background thread) and with one thread (everything in turn).

Usage::

    .venv/bin/python benchmarks/bench_infer.py [--models DIR] [--repeats 5]

Without ``--models`` small models are trained first (``bench_out/models``, reused afterwards).
Timings on a shared 2-core machine are noisy: compare within one run.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import blosc2
import numpy as np
from common import ensure_models, models_parser

from btune_wrap import BtuneConfig, plugin_support
from btune_wrap.data import mixed_int, rand_int
from btune_wrap.infer import compress
from btune_wrap.model import load_model

#: ``decide_every`` of the second Python engine column (6 chunks of 40 KB: 240 KB).
GROUP = 6


def datasets(seed: int = 0) -> dict[str, np.ndarray]:
    """rand_int as in the tutorial, and a mix of smoother and repetitive int64 series."""
    mixed = mixed_int(400, run=10, seed=seed)
    return {"rand_int": rand_int(2_000_000, seed=seed + 1), "mixed": mixed}


def decision_cost(data: np.ndarray, models: Path, mode: str, native: bool) -> dict[str, float]:
    config = BtuneConfig(
        tradeoff=0.5, perf_mode=mode, models_dir=models, use_inference=-1, trace=True
    )
    out: dict[str, float] = {}
    _, py = compress(data, config, "python", chunks=(5000,))
    py_cost = [i.time_entropy + i.time_inference for i in py.inferences]
    out["python_us"] = statistics.median(py_cost) * 1e6
    out["python_probe_us"] = statistics.median(i.time_entropy for i in py.inferences) * 1e6
    out["python_infer_us"] = statistics.median(i.time_inference for i in py.inferences) * 1e6
    if native:
        _, nat = compress(data, config, "native", chunks=(5000,))
        nat_cost = [i.time_entropy + i.time_inference for i in nat.inferences]
        out["native_us"] = statistics.median(nat_cost) * 1e6
        out["native_probe_us"] = statistics.median(i.time_entropy for i in nat.inferences) * 1e6
        out["native_infer_us"] = statistics.median(i.time_inference for i in nat.inferences) * 1e6
        a = [i.category for i in nat.inferences]
        b = [i.category for i in py.inferences]
        out["agreement"] = float(np.mean(np.equal(a, b))) if len(a) == len(b) else float("nan")
    return out


def throughput(
    data: np.ndarray,
    models: Path,
    chunks: tuple[int, ...] | None,
    repeats: int,
    native: bool,
    nthreads: int,
) -> dict[str, float]:
    config = BtuneConfig(tradeoff=0.5, perf_mode="COMP", models_dir=models, use_inference=-1)
    kw: dict = {"chunks": chunks} if chunks else {}
    arr, trace = compress(data, config, "python", nthreads=nthreads, **kw)
    model = load_model(models, "COMP")
    counts = np.bincount([i.category for i in trace.inferences], minlength=len(model.categories))
    cat = model.categories[int(np.argmax(counts))]
    cparams = cat.to_cparams(typesize=arr.schunk.typesize, blocksize=0, nthreads=nthreads)
    best = {"asarray": np.inf, "python": np.inf, "each": np.inf, "native": np.inf}
    for _ in range(repeats):
        t0 = time.perf_counter()
        fixed = blosc2.asarray(data, cparams=cparams, **kw)
        best["asarray"] = min(best["asarray"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        compress(data, config, "python", nthreads=nthreads, **kw)
        best["python"] = min(best["python"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        compress(data, config, "python", nthreads=nthreads, decide_every=GROUP, **kw)
        best["each"] = min(best["each"], time.perf_counter() - t0)
        if native:
            t0 = time.perf_counter()
            compress(data, config, "native", nthreads=nthreads, **kw)
            best["native"] = min(best["native"], time.perf_counter() - t0)
    mb = data.nbytes / 1e6
    return {
        "chunks": str(fixed.chunks),
        "category": cat.name,
        "asarray_mbs": mb / best["asarray"],
        "python_mbs": mb / best["python"],
        "each_mbs": mb / best["each"],
        "native_mbs": mb / best["native"] if native else float("nan"),
        "ratio": best["asarray"] / best["python"],
        "each_ratio": best["asarray"] / best["each"],
    }


def main(argv: list[str] | None = None) -> int:
    p = models_parser(__doc__.split("\n\n")[0], repeats=5)
    args = p.parse_args(argv)
    models = ensure_models(args)
    native = bool(plugin_support())
    data = datasets()

    print("\n1. Decision cost per chunk (median, us) and category agreement, chunks of 5000 int64")
    print(f"{'data':<9} {'mode':<7} {'python':>8} {'(probe':>7} {'+ nn)':>6} {'plugin':>8}"
          f" {'(probe':>7} {'+ nn)':>6} {'py/plugin':>9} {'agree':>6}")  # fmt: skip
    for name, arr in data.items():
        for mode in ("COMP", "DECOMP"):
            r = decision_cost(arr, models, mode, native)
            nat = r.get("native_us", float("nan"))
            print(
                f"{name:<9} {mode:<7} {r['python_us']:8.1f} {r['python_probe_us']:7.1f} "
                f"{r['python_infer_us']:6.1f} {nat:8.1f} {r.get('native_probe_us', np.nan):7.1f} "
                f"{r.get('native_infer_us', np.nan):6.1f} {r['python_us'] / nat:9.2f} "
                f"{r.get('agreement', np.nan):6.1%}"
            )

    print(f"\n2. Write throughput, MB/s (best of {args.repeats}), COMP, tradeoff 0.5")
    print(f"   (python: the model on every chunk; every {GROUP}: on the first of every {GROUP})")
    print(f"{'data':<9} {'chunks':<12} {'threads':>7} {'fixed category':<34} {'asarray':>8}"
          f" {'python':>8} {'every ' + str(GROUP):>8} {'plugin':>8} {'py/asarray':>10}"
          f" {'every/asarray':>13}")  # fmt: skip
    for name, arr in data.items():
        for chunks in ((5000,), (250_000,), None):
            for nthreads in (blosc2.nthreads, 1):
                r = throughput(arr, models, chunks, args.repeats, native, nthreads)
                print(
                    f"{name:<9} {r['chunks']:<12} {nthreads:>7} {r['category']:<34} "
                    f"{r['asarray_mbs']:8.0f} {r['python_mbs']:8.0f} {r['each_mbs']:8.0f} "
                    f"{r['native_mbs']:8.0f} {r['ratio']:10.2f} {r['each_ratio']:13.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
