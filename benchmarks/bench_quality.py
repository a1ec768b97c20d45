"""Decision quality on the real-data corpus (a script, not a test).

For each array of the corpus (``benchmarks/corpus.py``, cached in ``build/corpus``):

1. gather it (:func:`btune_wrap.measure.gather`) in chunks of about 256 KB (whole rows of the
   trailing dimensions, as many leading rows as fit), with the default 32 categories, 3 repeats,
   1 thread; the measurements are cached in ``build/corpus-meas/<name>.meas`` and reused;
2. split the measured chunks by their index in the array: EVEN chunks train, ODD chunks test
   (two filtered measurement directories, ``build/corpus-meas/split/``);
3. per mode (COMP, DECOMP): train a model on the even chunks (:func:`btune_wrap.train.fit`, the
   default :class:`~btune_wrap.train.TrainConfig`; only where the even half has at least
   :data:`btune_wrap.train.MIN_CHUNKS` chunks) and evaluate on the odd chunks with
   :func:`btune_wrap.evaluate.evaluate` (model, genetic Btune, blosc2 defaults, and its own
   fixed-best category of the dataset totals);
4. score every method by its *gain* ``exp(J_oracle - J_choice) - 1`` (``J`` from
   :func:`btune_wrap.objective.objective_matrix` through the evaluation): how much better the
   best category of that chunk is. Mean over the odd chunks and the tradeoffs 0, 0.1, ..., 1.
   Beside the evaluation's methods, ``hindsight``: at each tradeoff, the single category of
   best *mean objective* over the dataset's (odd) chunks, the best a user who tries the 32
   categories once on the data can do. Two oracles (:func:`gains`): ``known``, the
   evaluation's (the gather's 32 categories plus every method's choice, measured on the chunk:
   it moves with the genetic search's timing-dependent choices, e.g. split variants), and
   ``measured``, the best of the 32 only (the same whichever methods run).

The table (one row per oracle (column ``against``), dataset and mode; mean rows per oracle
and mode) is printed and saved as ``<out>/gain.csv`` with a bar chart ``<out>/gain.png``;
``<out>/gather.csv`` holds the gather's cost per chunk. Default (quick) mode measures at most
``--max-chunks`` chunks per array (40, drawn at random with seed 0 from the whole array);
``--full`` measures every chunk. The machine is shared: the quick mode takes about 15 minutes
of one core the first time (gathers), 7 once they are cached (training, evaluation).

Usage::

    .venv/bin/python benchmarks/bench_quality.py [--max-chunks 40 | --full] [--only NAME ...]
        [--no-genetic] [--corpus build/corpus] [--out bench_out/quality]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from btune_wrap import measure, measurements
from btune_wrap import train as tr
from btune_wrap.evaluate import Method, evaluate
from btune_wrap.objective import TRADEOFFS, objective_matrix

ROOT = Path(__file__).resolve().parent.parent
CHUNK_BYTES = 256 * 1024
MODES = ("comp", "decomp")
#: Table columns, in order: the evaluation's methods, then the hindsight category.
METHODS = ("model", "genetic", "defaults", "fixed_best", "hindsight", "oracle")


def chunk_shape(shape: tuple[int, ...], itemsize: int, target: int = CHUNK_BYTES) -> tuple:
    """About ``target`` bytes: whole trailing dimensions while they fit, then a slab of the
    first dimension that does not (at least one row of it)."""
    chunks = list(shape)
    inner = itemsize
    for d in range(len(shape) - 1, -1, -1):
        if inner * shape[d] <= target:
            inner *= shape[d]
            continue
        chunks[d] = max(1, target // inner)
        chunks[:d] = [1] * d
        break
    return tuple(chunks)


def layout(shape: tuple[int, ...], dtype: np.dtype) -> tuple[tuple, tuple]:
    """Chunks of about 256 KB (:func:`chunk_shape`) and blosc2's blocks for them, the chunks
    trimmed to whole blocks: blosc2 pads a chunk to whole blocks with zeros (measured: MRI
    slabs of 5 slices in blocks of 4 were stored as 8 slices, 37% zeros, inflating cratio)."""
    import blosc2

    chunks = chunk_shape(shape, dtype.itemsize)
    _, blocks = blosc2.compute_chunks_blocks(shape, chunks, None, dtype=dtype)
    if any(c % b for c, b in zip(chunks, blocks, strict=True)):
        chunks = tuple(max(b, c // b * b) for c, b in zip(chunks, blocks, strict=True))
        _, again = blosc2.compute_chunks_blocks(shape, chunks, None, dtype=dtype)
        if not any(c % b for c, b in zip(chunks, again, strict=True)):
            blocks = again
    return tuple(int(c) for c in chunks), tuple(int(b) for b in blocks)


def gathered(npy: Path, meas_dir: Path, max_chunks: int | None) -> measurements.Measurements:
    """The cached gather of ``npy`` (made now if absent; an interrupted one is resumed)."""
    arr = np.load(npy, mmap_mode="r")
    chunks, blocks = layout(arr.shape, arr.dtype)
    nchunks = math.prod(math.ceil(s / c) for s, c in zip(arr.shape, chunks, strict=True))
    sample = max_chunks if max_chunks is not None and nchunks > max_chunks else None
    return measure.gather(
        npy, meas_dir, chunks=chunks, blocks=blocks, sample=sample, seed=0, repeats=3, nthreads=1,
        resume=True, progress=False,
    )  # fmt: skip


def subset(
    meas: measurements.Measurements, keep: np.ndarray, path: Path
) -> measurements.Measurements:
    """The measurements of the chunks ``keep`` (source indices), saved to ``path``.

    Belongs in ``btune_wrap.measure`` (e.g. ``Measurements.select(chunks)``) once the refactor
    lands; written here because the benchmark must not change the package.
    """
    chunks = meas.chunks[meas.chunks["chunk"].isin(keep)].reset_index(drop=True)
    results = meas.results[meas.results["chunk"].isin(keep)].reset_index(drop=True)
    meta = dict(meas.meta, measured_chunks=len(chunks))
    sub = measurements.Measurements(meta, chunks, results)
    import shutil

    shutil.rmtree(path, ignore_errors=True)  # ours: rewritten from the cached gather each run
    sub.save(path)
    return sub


def train_models(even: measurements.Measurements, models_dir: Path) -> bool:
    """Train and export the comp and decomp models of ``even``; False if too few chunks."""
    if even.nchunks < tr.MIN_CHUNKS:
        return False
    import shutil

    shutil.rmtree(models_dir, ignore_errors=True)
    for mode in MODES:
        tr.export(tr.fit(even, mode, tr.TrainConfig(seed=0)), models_dir)
    return True


#: The two oracles gains are measured against (see :func:`gains`).
ORACLES = ("known", "measured")


def gains(choices: pd.DataFrame, odd: measurements.Measurements, mode: str) -> dict[str, dict]:
    """Mean gain ``exp(J_oracle - J) - 1`` per method over chunks and tradeoffs, against two
    oracles: ``known``, the evaluation's (the best category known for the chunk: the gather's
    32 plus every other method's choice, measured there), and ``measured``, the best of the
    gather's categories only (the same whichever methods ran; a method choosing outside them
    can score below 0). ``hindsight`` is scored here: at each tradeoff the category of best
    mean ``J`` over the chunks."""
    j = objective_matrix(*odd.matrices(), mode, TRADEOFFS)  # (ntradeoffs, nchunks, ncats)
    j_measured = j.max(axis=-1)
    best = np.argmax(j.mean(axis=1), axis=-1)
    j_hind = np.take_along_axis(j, best[:, None, None], axis=-1)[..., 0]
    out: dict[str, dict] = {o: {} for o in ORACLES}
    for method, g in choices.groupby("method", sort=False):  # rows tradeoff-major
        j_known = g["j_oracle"].to_numpy().reshape(j_measured.shape)
        j_chosen = g["j"].to_numpy().reshape(j_measured.shape)
        out["known"][method] = float(np.mean(np.expm1(j_known - j_chosen)))
        out["measured"][method] = float(np.mean(np.expm1(j_measured - j_chosen)))
    out["known"]["hindsight"] = float(np.mean(np.expm1(j_known - j_hind)))
    out["measured"]["hindsight"] = float(np.mean(np.expm1(j_measured - j_hind)))
    return out


def run_dataset(name: str, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Gather, split, train and evaluate one corpus array; its gain rows and gather cost."""
    cache = args.meas
    t0 = time.perf_counter()
    meas = gathered(args.corpus / f"{name}.npy", cache / f"{name}.meas", args.max_chunks)
    wall = time.perf_counter() - t0
    ids = meas.chunks["chunk"].to_numpy()
    even = subset(meas, ids[ids % 2 == 0], cache / "split" / f"{name}.even.meas")
    odd = subset(meas, ids[ids % 2 == 1], cache / "split" / f"{name}.odd.meas")
    cost = {
        "dataset": name,
        "measured_chunks": meas.nchunks,
        "chunk_kb": float(meas.chunks["nbytes"].mean() / 1024),
        "gather_s_per_chunk": float(meas.meta["elapsed"]) / max(1, meas.nchunks),
        "probe_ms_per_chunk": float(meas.chunks["probe_time"].mean() * 1e3),
        "reused": wall < 0.5 * float(meas.meta["elapsed"]),
    }
    models_dir = cache / "models" / name
    t0 = time.perf_counter()
    trained = train_models(even, models_dir)
    cost["train_s"] = time.perf_counter() - t0 if trained else math.nan
    methods = [Method.FIXED_BEST, Method.DEFAULTS]
    methods += [Method.MODEL] if trained else []
    methods += [] if args.no_genetic else [Method.GENETIC]
    rows = []
    for mode in MODES:
        t0 = time.perf_counter()
        ev = evaluate(models_dir if trained else None, odd.path, mode, methods=methods,
                      progress=False)  # fmt: skip
        cost[f"evaluate_{mode}_s"] = time.perf_counter() - t0
        by_oracle = gains(ev.choices, odd, mode)
        for oracle in ORACLES:
            row = {"against": oracle, "dataset": name, "mode": mode,
                   "train_chunks": even.nchunks, "test_chunks": odd.nchunks}  # fmt: skip
            row.update({m: by_oracle[oracle].get(m, math.nan) for m in METHODS})
            rows.append(row)
        print(_format_row(rows[-2]), flush=True)
    return rows, cost


def _format_row(row: dict) -> str:
    cells = " ".join(f"{_pct(row[m]):>10s}" for m in METHODS)
    sizes = f"{int(row['train_chunks']):4d} {int(row['test_chunks']):4d}"
    return f"{row['dataset']:16s} {row['mode']:6s} {sizes} {cells}"


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}%"


def with_means(table: pd.DataFrame) -> pd.DataFrame:
    """The table with mean rows per mode: ``mean`` over every dataset that has the method,
    ``mean_model`` over the datasets with a model only (all methods on the same datasets)."""
    parts = [table]
    keys = ["against", "mode"]
    for label, rows in (("mean", table), ("mean_model", table[table["model"].notna()])):
        groups = rows.groupby(keys, sort=False)
        means = groups[list(METHODS)].mean()
        means[["train_chunks", "test_chunks"]] = groups[["train_chunks", "test_chunks"]].sum()
        means = means.reset_index()
        means.insert(1, "dataset", label)
        parts.append(means)
    return pd.concat(parts, ignore_index=True)


def plot(table: pd.DataFrame, path: Path) -> None:
    """Bars of gain per dataset and method, one panel per mode (log scale; known oracle)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    shown = [m for m in METHODS if m != "oracle"]
    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(len(MODES), 1, sharex=True)
    for ax, mode in zip(axes, MODES, strict=True):
        part = table[(table["mode"] == mode) & (table["against"] == "known")]
        x = np.arange(len(part))
        width = 0.8 / len(shown)
        for k, m in enumerate(shown):
            ax.bar(x + k * width, np.maximum(part[m].to_numpy() * 100, 0.1), width, label=m)
        ax.set_yscale("log")
        ax.set_ylabel(f"{mode.upper()} gain (%)")
        ax.axhline(5, color="k", lw=0.8, ls="--")
        ax.set_xticks(x + 0.4 - width / 2, part["dataset"], rotation=30, ha="right")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(shown), fontsize=8)
    axes[0].set_title(
        "gain = exp(J_oracle - J_choice) - 1, odd chunks, tradeoffs 0..1 (dashed: 5%)"
    )
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "build" / "corpus")
    p.add_argument("--meas", type=Path, default=None, help="gather cache (build/corpus-meas)")
    p.add_argument("--out", type=Path, default=ROOT / "bench_out" / "quality")
    p.add_argument("--max-chunks", type=int, default=40, help="chunks per array (default 40)")
    p.add_argument("--full", action="store_true", help="measure every chunk of every array")
    p.add_argument("--only", nargs="+", help="these corpus arrays only")
    p.add_argument("--no-genetic", action="store_true", help="leave out genetic Btune")
    args = p.parse_args(argv)
    manifest = args.corpus / "manifest.json"
    if not manifest.is_file():
        print(
            f"{manifest} not found: build the corpus first (benchmarks/corpus.py)", file=sys.stderr
        )
        return 2
    if args.full:
        args.max_chunks = None
    default_meas = "corpus-meas" + ("-full" if args.full else f"-{args.max_chunks}")
    args.meas = args.meas or ROOT / "build" / default_meas
    names = args.only or [e["name"] for e in json.loads(manifest.read_text())["arrays"]]
    args.out.mkdir(parents=True, exist_ok=True)
    heads = " ".join(f"{m:>10s}" for m in METHODS)
    print(f"{'dataset':16s} {'mode':6s} {'even':>4s} {'odd':>4s} {heads}  (mean gain)")
    rows, costs = [], []
    for name in names:
        r, c = run_dataset(name, args)
        rows += r
        costs.append(c)
    table = with_means(pd.DataFrame(rows))
    for oracle in ORACLES:
        print(f"-- against the {oracle!r} oracle (see gains())")
        for _, row in table[table["against"] == oracle].iterrows():
            print(_format_row(row.to_dict()))
    table.to_csv(args.out / "gain.csv", index=False)
    pd.DataFrame(costs).to_csv(args.out / "gather.csv", index=False)
    plot(table, args.out / "gain.png")
    print(pd.DataFrame(costs).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}/gain.csv, gain.png, gather.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
