"""The Btune tutorial end to end on built-in data (``make demo`` / ``btune demo``).

1. Genetic tuning of the tutorial's ``rand_int`` data, with the plugin's trace shown as a table.
2. A training file of the same kind (600 chunks by default, the tutorial's 4000 with
   ``full=True``), its gather (features and measurements of every category per chunk) and
   the training of a compression and a decompression model, exported where the plugin looks.
3. Fresh data of the same kind compressed with blosc2's defaults, with genetic Btune, with
   the models through both engines (the plugin and the Python engine, which reads the extended
   model where training made one) and with the general model shipped with the package (Python
   engine, no training), at tradeoffs 0, 0.5 and 1: one table (ratio, compression and
   decompression speed), a plot of it, and a check that blosc2's defaults beat no Python
   engine choice on both ratio and the mode's speed (:func:`dominated_by_defaults`).

Everything is written under the output directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import data
from .atomic import atomic_path
from .config import BtuneConfig, PerfMode
from .errors import InputError
from .parse import parse_int
from .plugin import plugin_support, write_tuned
from .runtime import implicit_tuner_off

if TYPE_CHECKING:
    import pandas as pd

#: Chunks of the demo's training file: default and ``full`` (the tutorial's 2e7 int64).
DEMO_TRAINING_CHUNKS = 600
FULL_TRAINING_CHUNKS = data.RAND_INT_TRAINING_SIZE // data.RAND_INT_CHUNKS[0]
#: Elements of the fresh data the methods are compared on (400 chunks of 5000 int64).
DEMO_EVAL_SIZE = 2_000_000
DEMO_TRADEOFFS = (0.0, 0.5, 1.0)

_TRACE_COLUMNS = [
    "step", "codec", "filter", "split", "clevel", "cthreads", "dthreads", "score", "cratio",
    "state", "readapt", "winner",
]  # fmt: skip


@dataclass(frozen=True)
class DemoMethod:
    """One way of writing the evaluation data: a label, an engine and a performance mode."""

    label: str
    kind: str
    """``defaults`` (blosc2's), ``genetic`` (the plugin without models), ``native`` or
    ``python`` (the trained models through that engine), ``general`` (the general model
    shipped with the package, Python engine)."""
    perf_mode: PerfMode = PerfMode.COMP


def run_demo(
    output_dir: str | Path = "demo_out",
    *,
    full: bool = False,
    training_chunks: int | None = None,
    eval_size: int = DEMO_EVAL_SIZE,
    tradeoffs: Sequence[float] = DEMO_TRADEOFFS,
    repeats: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run the tutorial on built-in data; see the module docstring.

    Parameters
    ----------
    output_dir
        Where everything goes (created). Default ``demo_out``.
    full
        Use the tutorial's full training size (4000 chunks of 5000 int64) instead of 600.
    training_chunks
        Override the number of training chunks (for quick runs).
    eval_size
        Elements of the fresh evaluation data. Default 2 000 000 (400 chunks).
    tradeoffs
        Tradeoffs of the comparison. Default (0, 0.5, 1).
    repeats
        Timings per measurement; the best is kept. Default 3.
    seed
        Seed of the built-in data (training uses ``seed``, evaluation ``seed + 1``).
    log
        Called with each line of the report. Default ``print``.

    Returns
    -------
    dict
        ``genetic_trace`` (the first step's Trace), ``models_dir``, ``table`` (the comparison
        as a DataFrame), ``table_path`` (CSV), ``plot_path`` (PNG), ``elapsed`` (seconds).
    """
    import pandas as pd

    t_start = time.perf_counter()
    support = plugin_support()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    nchunks = training_chunks or (FULL_TRAINING_CHUNKS if full else DEMO_TRAINING_CHUNKS)
    parse_int("training_chunks", nchunks, 10, error=InputError)
    chunk = data.RAND_INT_CHUNKS

    # 1. Genetic tuning, as in the first part of the tutorial ---------------------------------
    genetic_trace = None
    if support:
        array = data.rand_int(data.RAND_INT_INFERENCE_SIZE, seed=seed)
        target = out / "rand_int_inference.b2nd"
        config = BtuneConfig(tradeoff=0.5, perf_mode=PerfMode.COMP, trace=True)
        log(
            f"== 1. Genetic tuning of {array.size:,} int64 in chunks of {chunk[0]} "
            f"(tradeoff {config.tradeoff}, {config.perf_mode.name})"
        )
        arr, genetic_trace = write_tuned(array, config, urlpath=target, chunks=chunk, force=True)
        with pd.option_context("display.width", 140, "display.max_rows", 200):
            log(genetic_trace.to_dataframe()[_TRACE_COLUMNS].to_string(index=False))
        if genetic_trace.winners:
            w = genetic_trace.winners[-1]
            log(
                f"Final winner: {w.codec} filter={w.filter} clevel={w.clevel} split={w.split} "
                f"(cratio {w.cratio:.2f}x)"
            )
        log(f"Wrote {target} ({arr.schunk.nchunks} chunks, cratio {arr.schunk.cratio:.2f}x)")
    else:
        log(f"== 1. Genetic tuning skipped: {support.reason}")

    # 2. Training file, gather, models --------------------------------------------------------
    training = data.rand_int(nchunks * chunk[0], seed=seed)
    models_dir = out / "rand_int_training.model"
    log(
        f"== 2. Training on {training.size:,} int64 ({nchunks} chunks; "
        f"{'the tutorial size' if full else 'use --full for the tutorial size'})"
    )
    t0 = time.perf_counter()
    info = train_models(training, out, models_dir, chunks=chunk, log=log)
    log(f"Models in {models_dir} ({time.perf_counter() - t0:.1f} s): {', '.join(info['files'])}")

    # 3. Compare the methods on fresh data ----------------------------------------------------
    fresh = data.rand_int(eval_size, seed=seed + 1)
    log(f"== 3. Compressing {fresh.size:,} fresh int64 with each method")
    methods = demo_methods(bool(support))
    table = compare_methods(
        fresh, methods, models_dir, tradeoffs, chunks=chunk, repeats=repeats, workdir=out, log=log
    )
    table_path = out / "comparison.csv"
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False)
    plot_path = plot_comparison(table, out / "comparison.png")
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        log(format_comparison(table))
    beaten = dominated_by_defaults(table)
    if beaten.empty:
        log("blosc2's defaults beat no Python engine choice on both ratio and speed.")
    for _, row in beaten.iterrows():
        log(
            f"Note: blosc2's defaults beat {row['method']} at tradeoff {row['tradeoff']:g} on "
            f"both ratio ({row['defaults_cratio']:.2f} vs {row['cratio']:.2f}) and speed "
            f"({row['defaults_speed']:.2f} vs {row['speed_gbs']:.2f} GB/s)"
        )
    elapsed = time.perf_counter() - t_start
    log(f"Table: {table_path}  Plot: {plot_path}  ({elapsed:.0f} s in all)")
    return {
        "genetic_trace": genetic_trace,
        "models_dir": models_dir,
        "table": table,
        "table_path": table_path,
        "plot_path": plot_path,
        "elapsed": elapsed,
    }


# -- training -----------------------------------------------------------------------------


def train_models(
    array: np.ndarray,
    workdir: str | Path,
    models_dir: str | Path,
    *,
    chunks: Sequence[int] = data.RAND_INT_CHUNKS,
    log: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Write ``array`` as a training file, gather it, train and export comp and decomp models.

    The training file and its ``.meas`` directory go to ``workdir``, the model files to
    ``models_dir``; all three replace those of an earlier run (atomically). Returns
    ``{"meas": path, "files": [names]}``.
    """
    import blosc2

    from . import measure, train

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    b2 = workdir / "rand_int_training.b2nd"
    with atomic_path(b2) as tmp, implicit_tuner_off():
        blosc2.asarray(array, urlpath=str(tmp), mode="w", chunks=tuple(chunks))
    meas_dir = workdir / f"{b2.name}.meas"
    t0 = time.perf_counter()
    # The training file was just rewritten: measurements of an earlier one are replaced.
    measure.gather(b2, meas_dir, force=True)
    if log:
        log(f"Gathered {meas_dir} ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    # The plugin's networks and the neighbours models the Python engine reads.
    trained = train.train_and_export([meas_dir], models_dir, "both", force=True)
    if log:
        stems = ", ".join(m.stem for m in trained)
        log(f"Trained {stems} ({time.perf_counter() - t0:.1f} s)")
    return {"meas": meas_dir, "files": sorted(p.name for p in Path(models_dir).iterdir())}


# -- comparison ---------------------------------------------------------------------------


def demo_methods(with_plugin: bool) -> list[DemoMethod]:
    """The methods compared: defaults, then per mode genetic, native and python engines."""
    methods = [DemoMethod("blosc2 defaults", "defaults")]
    for mode in (PerfMode.COMP, PerfMode.DECOMP):
        tag = mode.name.lower()
        if with_plugin:
            methods.append(DemoMethod(f"genetic {tag}", "genetic", mode))
            methods.append(DemoMethod(f"model native {tag}", "native", mode))
        methods.append(DemoMethod(f"model python {tag}", "python", mode))
        methods.append(DemoMethod(f"general python {tag}", "general", mode))
    return methods


def compare_methods(
    array: np.ndarray,
    methods: Sequence[DemoMethod],
    models_dir: str | Path,
    tradeoffs: Sequence[float] = DEMO_TRADEOFFS,
    *,
    chunks: Sequence[int] | None = None,
    repeats: int = 3,
    workdir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Write ``array`` with each method at each tradeoff; measure ratio and speeds.

    The compression speed is the input size over the best wall time of writing the whole
    array in memory (decisions included); the decompression speed the size over the best
    time of reading it back. ``blosc2 defaults`` does not depend on the tradeoff: it is
    measured once and shown at every tradeoff. The arrays written last are saved in
    ``workdir`` (if given) as ``<method>-<tradeoff>.b2nd``.

    Returns a DataFrame: ``method``, ``kind``, ``perf_mode``, ``tradeoff``, ``cratio``,
    ``cspeed_gbs``, ``dspeed_gbs``, ``engine`` (which engine really ran, for models).
    """
    import blosc2
    import pandas as pd

    from .infer import compress

    nbytes = array.nbytes
    records: list[dict[str, object]] = []
    cached_defaults: dict[str, object] | None = None
    for method in methods:
        for t in tradeoffs:
            if method.kind == "defaults" and cached_defaults is not None:
                records.append({**cached_defaults, "tradeoff": float(t)})
                continue
            config = BtuneConfig(tradeoff=float(t), perf_mode=method.perf_mode)
            if method.kind in ("native", "python"):
                config = config.replace(models_dir=Path(models_dir), use_inference=-1)
            elif method.kind == "general":  # no models_dir: the general model
                config = config.replace(use_inference=-1)

            def write(method: DemoMethod = method, config: BtuneConfig = config):
                kw = {"chunks": tuple(chunks)} if chunks is not None else {}
                if method.kind == "defaults":
                    with implicit_tuner_off():
                        return blosc2.asarray(array, **kw), "-"
                if method.kind == "genetic":
                    return write_tuned(array, config, **kw)[0], "native"
                engine = "python" if method.kind == "general" else method.kind
                arr, trace = compress(array, config, engine, **kw)
                return arr, trace.engine

            ctime = dtime = float("inf")
            arr = None
            engine = "-"
            for _ in range(repeats):
                t0 = time.perf_counter()
                arr, engine = write()
                ctime = min(ctime, time.perf_counter() - t0)
                t0 = time.perf_counter()
                arr[()]
                dtime = min(dtime, time.perf_counter() - t0)
            assert arr is not None
            rec = {
                "method": method.label,
                "kind": method.kind,
                "perf_mode": method.perf_mode.name if method.kind != "defaults" else "-",
                "tradeoff": float(t),
                "cratio": nbytes / arr.schunk.cbytes,
                "cspeed_gbs": nbytes / ctime / 1e9,
                "dspeed_gbs": nbytes / dtime / 1e9,
                "engine": engine,
            }
            records.append(rec)
            if method.kind == "defaults":
                cached_defaults = rec
            if workdir is not None:
                name = method.label.replace(" ", "_")
                target = Path(workdir) / "compared" / f"{name}-{t:g}.b2nd"
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp:
                    arr.save(str(tmp))
            if log:
                log(
                    f"  {method.label:<22} tradeoff {t:<4g} cratio {rec['cratio']:6.2f}x  "
                    f"comp {rec['cspeed_gbs']:6.2f} GB/s  decomp {rec['dspeed_gbs']:6.2f} GB/s"
                )
    return pd.DataFrame.from_records(records)


def dominated_by_defaults(table: pd.DataFrame) -> pd.DataFrame:
    """The Python engine's rows (kinds ``python`` and ``general``) of a :func:`compare_methods`
    table that blosc2's defaults beat on both the ratio and the speed of the row's mode
    (compression in COMP, decompression in DECOMP) at the same tradeoff, with the defaults'
    ``defaults_cratio`` and ``defaults_speed``; empty when there are none."""
    defaults = table[table["kind"] == "defaults"].set_index("tradeoff")
    rows = table[table["kind"].isin(["python", "general"])].copy()
    column = np.where(rows["perf_mode"] == PerfMode.DECOMP.name, "dspeed_gbs", "cspeed_gbs")
    rows["speed_gbs"] = [row[c] for (_, row), c in zip(rows.iterrows(), column, strict=True)]
    rows["defaults_cratio"] = defaults["cratio"].reindex(rows["tradeoff"]).to_numpy()
    rows["defaults_speed"] = [
        defaults.loc[t, c] for t, c in zip(rows["tradeoff"], column, strict=True)
    ]
    beaten = (rows["defaults_cratio"] > rows["cratio"]) & (
        rows["defaults_speed"] > rows["speed_gbs"]
    )
    return rows[beaten].reset_index(drop=True)


def format_comparison(table: pd.DataFrame) -> str:
    """One line per method, one column group per tradeoff (ratio / comp / decomp GB/s)."""
    wide = table.pivot_table(
        index="method",
        columns="tradeoff",
        values=["cratio", "cspeed_gbs", "dspeed_gbs"],
        sort=False,
    )
    wide = wide.reorder_levels([1, 0], axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    wide.columns = [f"t={t:g} {_SHORT[v]}" for t, v in wide.columns]
    return wide.to_string(float_format=lambda v: f"{v:.2f}")


_SHORT = {"cratio": "ratio", "cspeed_gbs": "comp GB/s", "dspeed_gbs": "decomp GB/s"}


def plot_comparison(table: pd.DataFrame, path: str | Path) -> Path:
    """Save the comparison as a PNG: ratio, compression and decompression speed by tradeoff."""
    import matplotlib
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no global backend switch, so notebooks keep inline plots.
    path = Path(path)
    fig = Figure(figsize=(15, 5.4), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [
        ("cratio", "compression ratio (x)"),
        ("cspeed_gbs", "compression speed (GB/s)"),
        ("dspeed_gbs", "decompression speed (GB/s)"),
    ]
    methods = list(dict.fromkeys(table["method"]))
    tradeoffs = sorted(table["tradeoff"].unique())
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(tradeoffs))
    colors = matplotlib.colormaps["tab10"]
    for ax, (column, title) in zip(axes, panels, strict=True):
        for i, method in enumerate(methods):
            rows = table[table["method"] == method].set_index("tradeoff").reindex(tradeoffs)
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, rows[column], width,
                   label=method, color=colors(i % 10))  # fmt: skip
        ax.set_xticks(x, [f"{t:g}" for t in tradeoffs])
        ax.set_xlabel("tradeoff (0 = speed, 1 = ratio)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(methods), 7), fontsize=8)
    fig.suptitle("rand_int: blosc2 defaults, genetic Btune and trained models (both engines)")
    with atomic_path(path.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path.with_suffix(".png")
