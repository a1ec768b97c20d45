"""Cost of running the Btune plugin in a child process (a script, not a test).

Same data, same machine, one run, best of ``--repeats``:

* in-process: :func:`btune_wrap.plugin.plugin_writes` called here (what ``write_tuned`` did
  before it isolated the plugin; safe here because nothing in this script crashes it);
* one child per call: :func:`btune_wrap.plugin.write_tuned` (in memory, trace on);
* one child per batch: :func:`btune_wrap.plugin.tuned_traces` with the tradeoffs of
  ``btune evaluate`` (one per config), divided by the number of configs;
* an empty child: :func:`btune_wrap.isolate.run_isolated` of a function that does nothing.

Data: :func:`btune_wrap.data.mixed_int` (chunks of 5000 int64), genetic runs (no models),
COMP mode. Usage::

    .venv/bin/python benchmarks/bench_isolate.py [--chunks 8 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

from btune_wrap.config import BtuneConfig
from btune_wrap.data import mixed_int
from btune_wrap.isolate import run_isolated
from btune_wrap.plugin import plugin_support, plugin_writes, tuned_traces, write_tuned

TRADEOFFS = (0.0, 0.25, 0.5, 0.75, 1.0)


def best_of(repeats: int, func) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not plugin_support():
        raise SystemExit(f"the plugin cannot run here: {plugin_support().reason}")
    empty = best_of(args.repeats, partial(run_isolated, int))
    print(f"empty child: {empty * 1e3:.0f} ms")
    configs = [BtuneConfig(tradeoff=t, trace=True) for t in TRADEOFFS]
    layout = {"chunks": (5000,)}
    for nchunks in args.chunks:
        data = mixed_int(nchunks, seed=0)
        here = best_of(args.repeats, partial(plugin_writes, data, configs[:1], layout, None, True))
        child = best_of(args.repeats, partial(write_tuned, data, configs[0], chunks=(5000,)))
        batch = best_of(args.repeats, partial(tuned_traces, data, configs, chunks=(5000,)))
        batch /= len(configs)
        print(
            f"{nchunks:4d} chunks ({data.nbytes / 1e6:.1f} MB): in-process {here * 1e3:.0f} ms, "
            f"child per call {child * 1e3:.0f} ms (+{(child - here) * 1e3:.0f}), "
            f"batch of {len(configs)} per call {batch * 1e3:.0f} ms (+{(batch - here) * 1e3:.0f})"
        )


if __name__ == "__main__":
    main()
