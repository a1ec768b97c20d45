"""The project's main job on built-in data, end to end (``make demo`` / ``btune demo``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import data
from .config import BtuneConfig, PerfMode
from .plugin import plugin_support, write_tuned


def run_demo(
    output_dir: str | Path = "demo_out",
    *,
    size: int = data.RAND_INT_INFERENCE_SIZE,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, object]:
    """Genetic tuning of the tutorial's ``rand_int`` data, with the trace shown as a table.

    Writes ``<output_dir>/rand_int_inference.b2nd`` and returns a summary dict.
    """
    import pandas as pd

    support = plugin_support()
    if not support:
        raise RuntimeError(f"the demo needs the Btune plugin: {support.reason}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    array = data.rand_int(size, seed=seed)
    target = out / "rand_int_inference.b2nd"
    config = BtuneConfig(tradeoff=0.5, perf_mode=PerfMode.COMP, trace=True)
    log(
        f"Genetic tuning of {array.size:,} int64 in chunks of {data.RAND_INT_CHUNKS[0]} "
        f"(tradeoff {config.tradeoff}, {config.perf_mode.name})"
    )
    arr, trace = write_tuned(array, config, urlpath=target, chunks=data.RAND_INT_CHUNKS)
    table = trace.to_dataframe()
    columns = [
        "step",
        "codec",
        "filter",
        "split",
        "clevel",
        "cthreads",
        "dthreads",
        "score",
        "cratio",
        "state",
        "readapt",
        "winner",
    ]
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        log(table[columns].to_string(index=False))
    winner = trace.winners[-1] if trace.winners else None
    if winner is not None:
        log(
            f"Final winner: {winner.codec} filter={winner.filter} clevel={winner.clevel} "
            f"split={winner.split} (cratio {winner.cratio:.2f}x)"
        )
    log(f"Wrote {target} ({arr.schunk.nchunks} chunks, cratio {arr.schunk.cratio:.2f}x)")
    return {"path": str(target), "trace": trace, "cratio": arr.schunk.cratio}
