"""The one objective: how good a category is for a chunk at a tradeoff.

For a chunk of ``nbytes`` compressed by a category into ``cbytes`` in ``ctime`` seconds and
decompressed in ``dtime`` seconds:

* ``cratio = nbytes / cbytes``;
* ``speed = nbytes / ctime`` in mode comp (also used for BALANCED and AUTO, whose plugin model
  is the compression one), ``nbytes / dtime`` in mode decomp;
* at tradeoff ``t`` in [0, 1]: ``J = t * log(cratio) + (1 - t) * log(speed)``.

``t = 0`` picks the fastest category, ``t = 1`` the one with the best ratio, and values between
trade smoothly (``exp(J)`` is a weighted geometric mean of ratio and speed). The best category
of a chunk is the one of maximal ``J`` (the training label); the regret of choosing ``c`` is
``1 - exp(J(c) - J(best))``: the fraction by which its weighted geometric mean falls short of
the best one (0 for the best, always below 1).

Training (labels), evaluation and reports all use these functions and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import PerfMode
from .errors import ConfigError, invalid

#: The tradeoffs labels are made for and reports are given at: 0, 0.1, ..., 1.
TRADEOFFS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))

_MODE_NAMES = {
    "c": PerfMode.COMP,
    "comp": PerfMode.COMP,
    "d": PerfMode.DECOMP,
    "decomp": PerfMode.DECOMP,
}


def parse_mode(mode: str | PerfMode, field: str = "mode") -> PerfMode:
    """``"c"``/``"comp"`` -> COMP, ``"d"``/``"decomp"`` -> DECOMP (PerfMode members as is;
    BALANCED and AUTO map to COMP, whose model the plugin uses for them)."""
    if isinstance(mode, PerfMode):
        return PerfMode.DECOMP if mode is PerfMode.DECOMP else PerfMode.COMP
    if isinstance(mode, str) and mode.strip().lower() in _MODE_NAMES:
        return _MODE_NAMES[mode.strip().lower()]
    raise ConfigError(invalid(field, mode, "'c', 'comp', 'd' or 'decomp'"))


def speed(nbytes, ctime, dtime, mode: str | PerfMode):
    """Bytes per second of the operation ``mode`` cares about (arrays broadcast)."""
    seconds = dtime if parse_mode(mode) is PerfMode.DECOMP else ctime
    return np.asarray(nbytes, dtype=np.float64) / np.maximum(np.asarray(seconds, float), 1e-12)


def objective(cratio, speed, tradeoff):
    """``t * log(cratio) + (1 - t) * log(speed)``; arrays broadcast."""
    t = np.asarray(tradeoff, dtype=np.float64)
    return t * np.log(cratio) + (1.0 - t) * np.log(speed)


def objective_matrix(
    nbytes: np.ndarray,
    cbytes: np.ndarray,
    ctime: np.ndarray,
    dtime: np.ndarray,
    mode: str | PerfMode,
    tradeoffs: Sequence[float] = TRADEOFFS,
) -> np.ndarray:
    """``J`` for every (tradeoff, chunk, category).

    Parameters
    ----------
    nbytes
        Uncompressed bytes per chunk, shape ``(nchunks,)``.
    cbytes, ctime, dtime
        Per (chunk, category), shape ``(nchunks, ncategories)``.
    mode
        ``"comp"`` or ``"decomp"`` (see :func:`parse_mode`).
    tradeoffs
        The tradeoffs (default :data:`TRADEOFFS`).

    Returns
    -------
    numpy.ndarray
        Shape ``(ntradeoffs, nchunks, ncategories)``.
    """
    nb = np.asarray(nbytes, dtype=np.float64)[:, None]
    cratio = nb / np.asarray(cbytes, dtype=np.float64)
    sp = speed(nb, ctime, dtime, mode)
    t = np.asarray(tradeoffs, dtype=np.float64)[:, None, None]
    return objective(cratio[None], sp[None], t)


def regret(j_chosen, j_best):
    """``1 - exp(J(chosen) - J(best))``: 0 for the best choice, below 1 always."""
    return 1.0 - np.exp(np.asarray(j_chosen, float) - np.asarray(j_best, float))


def best_index(j: np.ndarray) -> np.ndarray:
    """Index of the best category along the last axis (the label; lowest index on ties)."""
    return np.argmax(j, axis=-1)
