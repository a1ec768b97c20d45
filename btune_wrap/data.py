"""Built-in datasets, so that every command can run without the user's own data."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .parse import parse_int

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
    size = parse_int("size", size, 1, error=InputError)
    rng = np.random.default_rng(seed)
    return rng.integers(low=0, high=10_000, size=size, dtype=np.int64)


def mixed_int(nchunks: int, *, chunk: int = 5000, run: int = 1, seed: int = 0) -> np.ndarray:
    """int64 series of four kinds, one kind per chunk, so that models have choices to make.

    The kinds, in turn: the tutorial's random integers in [0, 10000), a random walk with steps
    in [-3, 3], runs of 16 repeated values in [0, 1000), and random integers in [0, 2**40).

    Parameters
    ----------
    nchunks
        Number of chunks.
    chunk
        Elements per chunk. Default 5000 (the tutorial's chunk shape).
    run
        Consecutive chunks of the same kind before the next kind. Default 1.
    seed
        Seed for ``numpy.random.default_rng``. Default 0.
    """
    for name, value in (("nchunks", nchunks), ("chunk", chunk), ("run", run)):
        parse_int(name, value, 1, error=InputError)
    rng = np.random.default_rng(seed)
    kinds = (
        lambda n: rng.integers(0, 10_000, n),
        lambda n: np.cumsum(rng.integers(-3, 4, n)),
        lambda n: np.repeat(rng.integers(0, 1000, n // 16 + 1), 16)[:n],
        lambda n: rng.integers(0, 2**40, n),
    )
    parts = [kinds[(i // run) % len(kinds)](chunk) for i in range(nchunks)]
    return np.concatenate(parts).astype(np.int64)
