"""Train a Btune model from measurements, as in the Btune tutorial.

    python training_chunk.py c ../inference rand_int_training.b2nd.meas
    python training_chunk.py d ../inference rand_int_training.b2nd.meas

trains the compression (``c``) or decompression (``d``) model on the measurement directories
(made by ``btune gather``; several are combined, all relative to the second argument) and
writes ``model_comp.{tflite,json}`` or ``model_decomp.{tflite,json}`` to the current directory
(``--output DIR`` elsewhere; existing model files are kept unless ``--force``), with the
training report next to them. It prints one line per epoch, then the most predicted
categories per tradeoff, the accuracy and regret per tradeoff on training and test chunks, and
the legend. Move the models where the plugin will find them, e.g.::

    mkdir ../inference/rand_int_training.model
    mv model* ../inference/rand_int_training.model

``python training_chunk.py --help`` lists the options (network size, epochs, seed...).
"""

from __future__ import annotations

import sys

from btune_wrap.cli import training_chunk_main

if __name__ == "__main__":
    sys.exit(training_chunk_main())
