"""Cost of the chunk features: our probe against the plugin's own (a script, not a test).

Same data, same machine, one run: the tutorial's 200 chunks of 5000 int64 (40 KB) from
``numpy.random.default_rng(0).integers(0, 10000, ...)``.

* ours: the wall time of each :func:`btune_wrap.probe.chunk_features` call (validation, block
  loop and reduction), and its ``elapsed`` (the timed probe only);
* the plugin: its ``time entropy`` trace per chunk (context creation, probe compression,
  decompression of the instrumentation), with the example model of Blosc2-Btune run on every
  chunk (``BTUNE_USE_INFERENCE=-1``) in a subprocess.

The first chunk of both includes one-off costs (zeros-speed reference, compilation or cache
load), so it is shown apart and left out of the median/mean.

Usage::

    .venv/bin/python benchmarks/bench_probe.py [--models DIR] [--btune-repo GIT_DIR] [--chunks 200]

``--models`` is a directory with ``model_comp.tflite`` + ``model_comp.json``; without it they
are extracted (to a temporary directory) from a Blosc2-Btune git repository's
``examples/models``. Timings on a shared 2-core machine are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from btune_wrap.plugin import plugin_support
from btune_wrap.probe import chunk_features, zeros_speed

CHUNK_ITEMS = 5000
DEFAULT_BTUNE_REPO = "/work/.mirror/ironArray+Blosc2-Btune/repo"

CHILD = """
import sys
import blosc2
import numpy as np
n = int(sys.argv[1])
a = np.random.default_rng(0).integers(0, 10_000, n * 5000)
blosc2.asarray(a, chunks=(5000,), cparams={"tuner": blosc2.Tuner.BTUNE})
"""


def tutorial_data(nchunks: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 10_000, nchunks * CHUNK_ITEMS)


def ours(data: np.ndarray, nchunks: int) -> tuple[list[float], list[float]]:
    """Wall time of each chunk_features call and its ``elapsed``, in seconds."""
    walls, probes = [], []
    clock = time.perf_counter
    for i in range(nchunks):
        chunk = data[i * CHUNK_ITEMS : (i + 1) * CHUNK_ITEMS]
        t0 = clock()
        feats = chunk_features(chunk, 8, CHUNK_ITEMS * 8)
        walls.append(clock() - t0)
        probes.append(feats.elapsed)
    return walls, probes


def extract_models(btune_repo: str, directory: Path) -> Path:
    """``examples/models/model_comp.*`` of a Blosc2-Btune git repository, into ``directory``."""
    for name in ("model_comp.json", "model_comp.tflite"):
        blob = subprocess.run(
            ["git", "-C", btune_repo, "show", f"HEAD:examples/models/{name}"],
            capture_output=True,
            check=True,
        ).stdout
        (directory / name).write_bytes(blob)
    return directory


def plugin(models: Path, nchunks: int) -> list[float]:
    """The plugin's ``time entropy`` per chunk, in seconds, from its trace."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.reveal import run_plugin_child

    times = re.findall(r"time entropy=([0-9.eE+-]+)", run_plugin_child(CHILD, nchunks, models))
    return [float(t) for t in times]


def row(name: str, values: list[float]) -> str:
    rest = values[1:]
    return (
        f"{name:<34} {values[0] * 1e6:10.1f} {statistics.median(rest) * 1e6:10.1f} "
        f"{statistics.fmean(rest) * 1e6:10.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="directory with model_comp.{tflite,json}")
    parser.add_argument("--btune-repo", default=DEFAULT_BTUNE_REPO, help="Blosc2-Btune git dir")
    parser.add_argument("--chunks", type=int, default=200, help="number of 40 KB chunks")
    args = parser.parse_args(argv)
    nchunks = max(args.chunks, 2)

    data = tutorial_data(nchunks)
    walls, probes = ours(data, nchunks)
    print(f"{nchunks} chunks of {CHUNK_ITEMS} int64 (40 KB), one block each")
    print(f"zeros_speed reference: {zeros_speed(CHUNK_ITEMS * 8) / 1e9:.3f} GB/s (ours)")
    print()
    print(f"{'per chunk, microseconds':<34} {'first':>10} {'median':>10} {'mean':>10}")
    print(row("ours: chunk_features() call", walls))
    print(row("ours: probe only (elapsed)", probes))

    support = plugin_support()
    if not support:
        print(f"\nplugin: skipped ({support.reason})")
        return 0
    speed_feature(min(nchunks, 50))
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models
        if models is None:
            if not Path(args.btune_repo).exists():
                print(f"\nplugin: skipped (no --models and no repository at {args.btune_repo})")
                return 0
            models = extract_models(args.btune_repo, Path(tmp))
        entropy = plugin(models, nchunks)
    if len(entropy) != nchunks:
        print(f"\nplugin: expected {nchunks} inference lines, got {len(entropy)}")
        return 1
    print(row("plugin: time entropy", entropy))
    print()
    for label, mine in (("call", walls), ("probe only", probes)):
        ratio_median = statistics.median(entropy[1:]) / statistics.median(mine[1:])
        ratio_mean = statistics.fmean(entropy[1:]) / statistics.fmean(mine[1:])
        print(f"plugin / ours ({label}): {ratio_median:.1f}x by median, {ratio_mean:.1f}x by mean")
    return 0


def speed_feature(nchunks: int) -> None:
    """The plugin's speed feature over ours (median; about 1.0-1.3 on an idle machine).

    tests/test_probe.py checks only its order of magnitude, which a loaded machine keeps.
    """
    from btune_wrap import quiet

    try:
        with quiet.tensorflow_logs():
            import tensorflow  # noqa: F401  (writes the model that reveals the plugin's feature)
    except ImportError:
        print("speed feature, plugin / ours: skipped (no TensorFlow)")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.reveal import speed_feature_ratio

    with tempfile.TemporaryDirectory() as tmp:
        ratio = speed_feature_ratio(tmp, nchunks)
    print(f"speed feature, plugin / ours ({nchunks} chunks, median): {ratio:.2f}\n")


if __name__ == "__main__":
    sys.exit(main())
