"""The plugin's own chunk features, revealed through a model (for tests and benchmarks).

The plugin does not print its features, but a model can reveal them: with one input weighted,
scores 2*c*x - c**2 (+ a constant) peak at the grid point c nearest to the normalized feature x,
and the plugin traces the index of the best score. With the JSON's mean/std the grid covers
[lo, hi) in 250 steps. Used by ``tests/test_probe.py`` (the cratio feature exactly, the speed
feature's order of magnitude) and ``benchmarks/bench_probe.py`` (the speed feature's ratio).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys

import numpy as np

REVEAL_CHILD = """
import sys
import blosc2
import numpy as np
a = np.random.default_rng(0).integers(0, 10_000, 5000 * int(sys.argv[1])).astype(np.int64)
blosc2.asarray(a, chunks=(5000,), cparams={"tuner": blosc2.Tuner.BTUNE})
"""


OUR_SPEED_CHILD = """
import json
import sys
import numpy as np
from btune_wrap.probe import chunk_features
n = int(sys.argv[1])
a = np.random.default_rng(0).integers(0, 10_000, 5000 * n).astype(np.int64)
print(json.dumps([chunk_features(a[i * 5000 : (i + 1) * 5000], 8, 40_000).speed for i in range(n)]))
"""


def write_reveal_model(directory: str, feature: int, lo: float, hi: float, k: int = 250) -> float:
    """Write a ``model_comp`` whose argmax is the grid index of input ``feature`` in ``[lo, hi)``
    (``k`` steps) into ``directory``; returns the grid step. Needs TensorFlow."""
    import tensorflow as tf

    grid = np.arange(k, dtype=np.float32)
    weights = np.zeros((3, k), dtype=np.float32)
    weights[feature] = 2 * grid
    bias = np.float32(k * k + 10) - grid**2  # all scores > -1, as the plugin's argmax needs
    inputs = tf.keras.Input(shape=(3,), batch_size=1)
    layer = tf.keras.layers.Dense(k)
    model = tf.keras.Model(inputs, layer(inputs))
    layer.set_weights([weights, bias])
    with open(os.path.join(directory, "model_comp.tflite"), "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    std = (hi - lo) / k
    norm = {"mean": lo, "std": std}
    unit = {"mean": 0.0, "std": 1.0}
    meta = {
        "cratio": norm if feature == 0 else unit,
        "speed": norm if feature == 1 else unit,
        "categories": [[0, 0, 5, 2]] * k,
    }
    with open(os.path.join(directory, "model_comp.json"), "w") as f:
        json.dump(meta, f)
    return std


def plugin_features(directory: str, lo: float, std: float, nchunks: int) -> list[float]:
    """The feature the model in ``directory`` reveals, per chunk of :data:`REVEAL_CHILD`'s data,
    as the plugin computes it (to the grid step ``std``)."""
    # The table goes to stdout, the TRACE lines to stderr.
    found = re.findall(
        r"Inference category=(\d+)", run_plugin_child(REVEAL_CHILD, nchunks, directory)
    )
    return [lo + std * int(c) for c in found]


def our_speed_features(nchunks: int) -> list[float]:
    """Our speed feature per chunk of the same data, measured in a fresh process as the
    plugin's is (the zeros-speed reference depends on what a process did before)."""
    child = subprocess.run(
        [sys.executable, "-c", OUR_SPEED_CHILD, str(nchunks)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(child.stdout)


def speed_feature_ratio(directory: str, nchunks: int) -> float:
    """Median speed feature of the plugin over ours, on ``nchunks`` chunks of the tutorial's data
    (the model is written to ``directory``)."""
    lo, hi = 0.0, 100.0
    std = write_reveal_model(directory, 1, lo, hi)
    theirs = plugin_features(directory, lo, std, nchunks)
    return statistics.median(theirs) / statistics.median(our_speed_features(nchunks))


def run_plugin_child(code: str, nchunks: int, models: str | os.PathLike[str]) -> str:
    """Run ``code`` (with ``nchunks`` as its argument) in a child where the plugin infers
    with ``models`` at tradeoff 0.5, COMP, its trace on; return the child's stdout + stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTUNE_")}
    env.update(
        BTUNE_TRACE="1",
        BTUNE_MODELS_DIR=str(models),
        BTUNE_USE_INFERENCE="-1",
        BTUNE_TRADEOFF="0.5",
        BTUNE_PERF_MODE="COMP",
        # C-Blosc2 finds the plugin through the first `python` on PATH: make it ours.
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    argv = [sys.executable, "-c", code, str(nchunks)]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=True)
    return run.stdout + run.stderr
