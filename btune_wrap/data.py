"""Built-in datasets, so that every command can run without the user's own data."""

from __future__ import annotations

import numpy as np

from .errors import InputError, invalid

#: The tutorial's chunk shape for ``rand_int``: 5000 int64 = 40 KB per chunk.
RAND_INT_CHUNKS = (5000,)
#: Sizes of the tutorial's inference and training files.
RAND_INT_INFERENCE_SIZE = 100_000
RAND_INT_TRAINING_SIZE = 20_000_000


def rand_int(size: int = RAND_INT_INFERENCE_SIZE, seed: int | None = None) -> np.ndarray:
    """The tutorial's dataset: uniform random int64 in [0, 10000).

    Parameters
    ----------
    size
        Number of elements. Default 100 000 (the tutorial's inference file; its training file
        has 20 000 000).
    seed
        Seed for ``numpy.random.default_rng``; ``None`` (default) draws fresh data.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise InputError(invalid("size", size, "a positive integer"))
    rng = np.random.default_rng(seed)
    return rng.integers(low=0, high=10_000, size=int(size), dtype=np.int64)
