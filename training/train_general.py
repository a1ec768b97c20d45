"""Train the general model shipped with btune_wrap (``btune_wrap.GENERAL_MODEL_DIR``).

    python benchmarks/corpus.py                           # the real-data corpus, once
    .venv/bin/python benchmarks/bench_quality.py --full   # gathers it: build/corpus-meas-full/
    .venv/bin/python training/train_general.py --force

trains the models on every chunk of every corpus gather (or of the measurement directories
given) with the default training configuration and seed 0 (``--seed``), and replaces
``btune_wrap/models/general/``: the plugin's comp and decomp networks (model_comp/model_decomp
.tflite, .json and .report.json), the Python engine's neighbours models (model_comp.ext and
model_decomp.ext .json and .npz) and provenance.json. ``--help`` lists the options.
"""

from __future__ import annotations

import sys

from btune_wrap.cli import train_general_main

if __name__ == "__main__":
    sys.exit(train_general_main())
