"""Measure a training file: the tutorial's ``gather_data.py``, open.

    python training/gather_data.py ../inference/rand_int_training.b2nd

writes ``rand_int_training.b2nd.meas/`` next to the input: for every chunk, the features the
Btune plugin computes at inference time, and the compressed size, compression and
decompression times of every category (the ``fast`` set of 74 by default; ``--categories
tutorial`` for the tutorial's 32). Options are those of ``btune gather`` (``--help``): other
inputs (``.npy``, ``file.h5:/dataset``, Zarr), ``--chunks``/``--blocks``,
``--max-chunks``/``--sample``, ``--resume`` after an interruption, ``--force`` to measure again.
"""

from __future__ import annotations

import sys

from btune_wrap.cli import main

if __name__ == "__main__":
    sys.exit(main(["gather", *sys.argv[1:]]))
