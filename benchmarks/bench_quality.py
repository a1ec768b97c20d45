"""Decision quality on the real-data corpus (a script, not a test).

For each array of the corpus (``benchmarks/corpus.py``, cached in ``build/corpus``):

1. gather it (:func:`btune_wrap.measure.gather`) in chunks of about 256 KB (whole rows of the
   trailing dimensions, as many leading rows as fit), with the default categories (the fast
   set), 3 repeats, 1 thread; the measurements are cached in ``build/corpus-meas-40/`` (or
   ``build/corpus-meas-full/`` with ``--full``) and reused;
2. ``model``: per dataset, models trained on its EVEN chunks (by index in the array), judged
   as the Python engine uses them (``model_plugin``: the plugin's network; ``model_verify3``:
   verification of 3, every trial's time counted in comp), evaluated on its ODD chunks with
   genetic Btune, blosc2's defaults and the dataset's own hindsight category (``fixed_best``:
   at each tradeoff the category of best mean objective over the odd chunks)
   (:func:`btune_wrap.crossval.crossval`, protocol ``even-odd``; no model where
   the even half has fewer than :data:`btune_wrap.train.MIN_CHUNKS` chunks);
3. ``general``: leave one dataset out: models trained on every chunk of all the OTHER datasets
   (the general model's recipe, :func:`btune_wrap.general.train_general`, minus that dataset),
   evaluated on the same odd chunks (protocol ``loo``, ``test_chunks="odd"``); beside it
   ``corpus_best``, the single category of best mean objective over the other datasets
   (:func:`corpus_best`: the constant a general model has to beat);
4. score every method by its mean *gain* ``exp(J_oracle - J_choice) - 1`` over the odd chunks
   and the tradeoffs 0, 0.1, ..., 1 (:func:`btune_wrap.evaluate.gain_table`), against two
   oracles: ``known``, the best category known for the chunk (the measured ones, plus every
   method's choice measured afresh by the evaluation: it moves with genetic Btune's
   timing-dependent choices, e.g. categories outside the set, so it is what a method could
   have had), and ``measured``, the best of the measured ones only (the same whichever
   methods ran);
5. how many chunks are enough: models trained on 25, 50, 100, ... chunks drawn at random (seed
   0) from the even chunks of all the datasets pooled, evaluated on every dataset's odd chunks
   (mean gain over the datasets, ``measured`` oracle), beside the general model and the
   hindsight category.

Printed, and saved in ``<out>``: ``gain.csv`` (one row per oracle, mode and dataset, mean rows
per mode), ``gain.png`` (bars, ``known`` oracle), ``chunks.csv`` and ``chunks.png`` (gain
against the number of training chunks), ``gather.csv`` (the gather's cost per chunk and the
probe's, i.e. the decision's, time per chunk). Default (quick) mode measures at most
``--max-chunks`` chunks per array (40, drawn at random with seed 0 from the whole array);
``--full`` measures every chunk. The machine is shared: gathering takes about 15 minutes of one
core the first time; training and evaluation about 30 minutes.

Usage::

    .venv/bin/python benchmarks/bench_quality.py [--max-chunks 40 | --full] [--only NAME ...]
        [--no-genetic] [--no-curve] [--corpus build/corpus] [--out bench_out/quality]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from btune_wrap import measure, measurements
from btune_wrap import train as tr
from btune_wrap.crossval import Protocol, crossval, even_odd, with_means
from btune_wrap.evaluate import ORACLES, Method, evaluate, gain_table
from btune_wrap.general import GENERAL_CONFIG
from btune_wrap.measurements import Measurements
from btune_wrap.objective import TRADEOFFS, hindsight_best, objective_matrix
from btune_wrap.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
CHUNK_BYTES = 256 * 1024
MODES = ("comp", "decomp")
#: Table columns, in order: the per-dataset model, the general model (leave-one-dataset-out)
#: and its constant rival (:func:`corpus_best`), the alternatives, the oracle (below 0 against
#: ``measured`` when a method's choice beat the measured ones).
METHODS = (
    "model", "model_plugin", "model_verify3", "general", "general_plugin", "general_verify3",
    "corpus_best", "genetic", "defaults", "fixed_best", "oracle",
)  # fmt: skip


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


def layout(
    shape: tuple[int, ...], dtype: np.dtype, target: int = CHUNK_BYTES
) -> tuple[tuple, tuple]:
    """Chunks of about ``target`` bytes (default 256 KB; :func:`chunk_shape`) and blosc2's
    blocks for them, the chunks
    trimmed to whole blocks: blosc2 pads a chunk to whole blocks with zeros (measured: MRI
    slabs of 5 slices in blocks of 4 were stored as 8 slices, 37% zeros, inflating cratio)."""
    import blosc2

    chunks = chunk_shape(shape, dtype.itemsize, target)
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


def run_methods(sets: list, genetic: bool, progress) -> pd.DataFrame:
    """The choices of every method on the odd chunks: per-dataset models (even/odd), the
    general model left-one-dataset-out (renamed ``general``), genetic, defaults, fixed best.

    Models are judged as the Python engine uses them (the extended model where a fold trains
    one), and also as the plugin reads them (``*_plugin``) and with verification of the three
    best categories (``*_verify3``; in comp mode every trial's compression time counts)."""
    methods = [Method.MODEL, Method.FIXED_BEST, Method.DEFAULTS]
    methods += [Method.GENETIC] if genetic else []
    own = crossval(sets, Protocol.EVEN_ODD, "both", TrainConfig(seed=0), methods=methods,
                   variants=_variants("model"), progress=progress)  # fmt: skip
    loo = crossval(sets, Protocol.LEAVE_ONE_OUT, "both", GENERAL_CONFIG,
                   methods=[Method.MODEL], test_chunks="odd", variants=_variants("general"),
                   progress=progress)  # fmt: skip
    general = loo.choices.replace({"method": {"model": "general"}})
    for note in {**own.notes, **loo.notes}.items():
        print(f"note: {note[0]}: {note[1]}")
    return pd.concat([own.choices, general, corpus_best(sets)], ignore_index=True)


def _variants(name: str) -> list[tuple[str, str, int]]:
    return [(f"{name}_plugin", "plugin", 1), (f"{name}_verify3", "engine", 3)]


def corpus_best(sets: list, *, own: bool = False) -> pd.DataFrame:
    """Choice rows (as in :attr:`Evaluation.choices`, the columns :func:`gain_table` reads) of
    ``corpus_best``: for each dataset, at each tradeoff, the category of best mean ``J`` over
    every chunk of all the OTHER datasets (:func:`hindsight_best` of the pooled chunks): what
    a user without measurements of their own could take from the corpus, the general model's
    constant rival. Scored on the dataset's odd chunks. ``own``: the category of best mean
    over the dataset's own odd chunks instead (``fixed_best``, as the evaluation has it)."""
    frames = []
    for mode in MODES:
        js = [objective_matrix(*m.matrices(), mode, TRADEOFFS) for m in sets]
        for i, meas in enumerate(sets):
            others = np.concatenate([j for k, j in enumerate(js) if k != i], axis=1)
            odd = (meas.chunks["chunk"] % 2 == 1).to_numpy()
            j = js[i][:, odd, :]
            best = hindsight_best(j if own else others)
            chosen = np.take_along_axis(j, best[:, None, None], axis=-1)[..., 0]
            n = int(odd.sum())
            frames.append(pd.DataFrame({
                "mode": mode, "dataset": meas.name,
                "chunk": np.tile(meas.chunks["chunk"].to_numpy()[odd], len(TRADEOFFS)),
                "tradeoff": np.repeat(TRADEOFFS, n),
                "method": "fixed_best" if own else "corpus_best",
                "j": chosen.ravel(), "j_measured": j.max(axis=-1).ravel(),
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def gain_tables(choices: pd.DataFrame) -> pd.DataFrame:
    """Both oracles' gain tables (with mean rows), long: ``against``, ``mode``, ``dataset``."""
    parts = []
    for oracle in ORACLES:
        table = with_means(gain_table(choices, oracle))
        table = table[[m for m in METHODS if m in table.columns]]
        parts.append(table.reset_index().assign(against=oracle))
    out = pd.concat(parts, ignore_index=True)
    return out[["against", "mode", "dataset", *[m for m in METHODS if m in out.columns]]]


#: Training set sizes of the chunk-count curve (pooled even chunks; "all" is appended).
CURVE_SIZES = (25, 50, 100, 200, 400)


#: Draws of the training chunks per size (each size's gain is the mean over the draws).
CURVE_DRAWS = 3


def chunk_curve(sets: list, baseline: pd.DataFrame) -> pd.DataFrame:
    """Mean gain (``measured`` oracle, over the datasets' odd chunks) of models trained on
    ``n`` chunks drawn from the pooled even chunks, per mode and ``n`` (mean and spread over
    :data:`CURVE_DRAWS` draws, seeds 0, 1, ...; one for all the chunks); the baseline columns
    are the means of ``baseline`` (a ``measured`` gain table)."""
    halves = [even_odd(m) for m in sets]
    pool = [(i, c) for i, (even, _) in enumerate(halves) for c in even.chunks["chunk"]]
    sizes = sorted({n for n in CURVE_SIZES if n < len(pool)} | {len(pool)})
    rows = []
    for n in sizes:
        gains: dict[str, list[float]] = {mode: [] for mode in MODES}
        for draw in range(CURVE_DRAWS if n < len(pool) else 1):
            rng = np.random.default_rng(draw)
            drawn = [pool[k] for k in rng.choice(len(pool), n, replace=False)]
            train = [even.select([c for i, c in drawn if i == k], f"{even.name}[{n}]")
                     for k, (even, _) in enumerate(halves)]  # fmt: skip
            train = [m for m in train if m.nchunks]
            for mode in MODES:
                with tempfile.TemporaryDirectory() as tmp:
                    # never the shipped general model as fallback: it has seen these arrays
                    config = TrainConfig(seed=draw, fallback=False)
                    for trained in tr.fit_all(train, [mode], config):
                        tr.export(trained, tmp)
                    ev = evaluate(tmp, [odd for _, odd in halves], mode, methods=[Method.MODEL],
                                  progress=False)  # fmt: skip
                gains[mode].append(gain_table(ev.choices, "measured")["model"].mean())
        for mode in MODES:
            row = {"mode": mode, "train_chunks": n, "draws": len(gains[mode]),
                   "model": np.mean(gains[mode]), "model_min": np.min(gains[mode]),
                   "model_max": np.max(gains[mode])}  # fmt: skip
            row.update(baseline.loc[mode].mean().to_dict())
            rows.append(row)
            spread = f"{_pct(row['model_min'])} .. {_pct(row['model_max'])}"
            print(f"{mode:6s} {n:4d} chunks: model {_pct(row['model'])} ({spread})", flush=True)
    return pd.DataFrame(rows)


def baseline_table(sets: list, out: Path) -> pd.DataFrame:
    """The curve's baselines without the evaluations: ``fixed_best`` and ``corpus_best``
    from the measurements, ``general`` from a previous run's ``gain.csv`` if there is one."""
    table = gain_table(pd.concat([corpus_best(sets), corpus_best(sets, own=True)]), "measured")
    previous = out / "gain.csv"
    if previous.is_file():
        old = pd.read_csv(previous)
        old = old[(old["against"] == "measured") & (old["dataset"] != "mean")]
        table["general"] = old.set_index(["mode", "dataset"])["general"]
    return table


def plot_curve(curve: pd.DataFrame, path: Path) -> None:
    """Gain against the number of training chunks, one panel per mode."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, len(MODES))
    for ax, mode in zip(axes, MODES, strict=True):
        part = curve[curve["mode"] == mode]
        x = part["train_chunks"]
        ax.plot(x, 100 * part["model"], "o-", label="model (pooled even chunks)")
        ax.fill_between(x, 100 * part["model_min"], 100 * part["model_max"], alpha=0.2)
        for col, style in (("general", "--"), ("corpus_best", "-."), ("fixed_best", ":")):
            if col in part.columns:
                ax.axhline(100 * part[col].iloc[0], ls=style, color="k", label=col)
        ax.set_xscale("log")
        ax.set_xlabel("training chunks (256 KB)")
        ax.set_ylabel(f"{mode.upper()} mean gain (%)")
        ax.legend(fontsize=8)
    axes[0].set_title("gain vs training chunks (odd chunks of every dataset; best measured)")
    fig.savefig(path, dpi=110)


def _format_row(row: dict) -> str:
    cells = " ".join(f"{_pct(row.get(m, math.nan)):>10s}" for m in METHODS)
    return f"{row['dataset']:16s} {row['mode']:6s} {cells}"


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}%"


def plot(table: pd.DataFrame, path: Path) -> None:
    """Bars of gain per dataset and method, one panel per mode (log scale; known oracle)."""
    from matplotlib.figure import Figure

    shown = [m for m in METHODS if m != "oracle" and m in table.columns]
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
    p.add_argument("--meas", type=Path, default=None, help="gather cache (build/corpus-meas-40)")
    p.add_argument("--out", type=Path, default=ROOT / "bench_out" / "quality")
    p.add_argument("--max-chunks", type=int, default=40, help="chunks per array (default 40)")
    p.add_argument("--full", action="store_true", help="measure every chunk of every array")
    p.add_argument("--only", nargs="+", help="these corpus arrays only")
    p.add_argument("--no-genetic", action="store_true", help="leave out genetic Btune")
    p.add_argument("--no-curve", action="store_true", help="leave out the chunk-count curve")
    p.add_argument(
        "--curve-only", action="store_true", help="only the chunk-count curve (no evaluations)"
    )
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
    sets, costs = [], []
    for name in names:
        t0 = time.perf_counter()
        meas = gathered(args.corpus / f"{name}.npy", args.meas / f"{name}.meas", args.max_chunks)
        costs.append(gather_cost(meas, time.perf_counter() - t0))
        sets.append(meas)
    if args.curve_only:
        run_curve(sets, baseline_table(sets, args.out), args.out)
        return 0
    choices = run_methods(sets, not args.no_genetic, lambda line: print(line, flush=True))
    table = gain_tables(choices)
    heads = " ".join(f"{m:>10s}" for m in METHODS)
    for oracle in ORACLES:
        print(f"-- mean gain against the {oracle!r} oracle (odd chunks, tradeoffs 0..1)")
        print(f"{'dataset':16s} {'mode':6s} {heads}")
        for _, row in table[table["against"] == oracle].iterrows():
            print(_format_row(row.to_dict()))
    table.to_csv(args.out / "gain.csv", index=False)
    plot(table, args.out / "gain.png")
    pd.DataFrame(costs).to_csv(args.out / "gather.csv", index=False)
    print(pd.DataFrame(costs).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not args.no_curve:
        measured = gain_table(choices, "measured")
        run_curve(sets, measured[["general", "corpus_best", "fixed_best"]], args.out)
    print(f"wrote {args.out}/gain.csv, gain.png, gather.csv, chunks.csv, chunks.png")
    return 0


def run_curve(sets: list, baseline: pd.DataFrame, out: Path) -> None:
    """The chunk-count curve, printed and saved as ``chunks.csv`` and ``chunks.png``."""
    curve = chunk_curve(sets, baseline)
    print(curve.to_string(index=False, float_format=lambda v: f"{100 * v:.1f}%"))
    curve.to_csv(out / "chunks.csv", index=False)
    plot_curve(curve, out / "chunks.png")


def gather_cost(meas: Measurements, wall: float) -> dict:
    """The gather's cost per chunk, the probe's (the decision's) time per chunk."""
    return {
        "dataset": meas.name,
        "measured_chunks": meas.nchunks,
        "chunk_kb": float(meas.chunks["nbytes"].mean() / 1024),
        "gather_s_per_chunk": float(meas.meta["elapsed"]) / max(1, meas.nchunks),
        "probe_ms_per_chunk": float(meas.chunks["probe_time"].mean() * 1e3),
        "reused": wall < 0.5 * float(meas.meta["elapsed"]),
    }


if __name__ == "__main__":
    sys.exit(main())
