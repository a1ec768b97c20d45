"""The one objective: how good a category is for a chunk at a tradeoff.

For a chunk of ``nbytes`` compressed by a category into ``cbytes`` in ``ctime`` seconds and
decompressed in ``dtime`` seconds:

* ``cratio = nbytes / cbytes``;
* ``speed = nbytes / seconds``, where the seconds that count depend on the performance mode, as
  in the plugin's own score: ``ctime`` in COMP (and AUTO), ``dtime`` in DECOMP, ``ctime + dtime``
  in BALANCED; never below :data:`TIME_FLOOR`;
* at tradeoff ``t`` in [0, 1]: ``J = t * log(cratio) + (1 - t) * log(speed)``.

``t = 0`` picks the fastest category, ``t = 1`` the one with the best ratio, and values between
trade smoothly (``exp(J)`` is a weighted geometric mean of ratio and speed). The best category
of a chunk is the one of maximal ``J`` (the training label); the regret of choosing ``c`` is
``1 - exp(J(c) - J(best))``: the fraction by which its weighted geometric mean falls short of
the best one (0 for the best, always below 1).

Over a dataset, the *hindsight single category* (:func:`hindsight_best`) is, at each tradeoff,
the category of best mean ``J`` over the dataset's chunks: what a user who tried every category
once on the whole dataset would keep, judged by the same per-chunk mean as every other method.
The *gain* of the per-chunk best over a choice is ``exp(J(best) - J(c)) - 1``
(:func:`gain`): how much better the best would have been (0 for the best).

Training (labels), evaluation, the Python engine's tweak, the gather's summary and reports all
use these functions and nothing else. Models exist for two modes only: BALANCED (and AUTO) use
the compression model, as in the plugin (:func:`parse_mode`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import PerfMode
from .errors import ConfigError, invalid

#: The tradeoffs labels are made for and reports are given at: 0, 0.1, ..., 1.
TRADEOFFS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))

#: Shortest time a measurement is taken to have lasted, in seconds (no real timing is below it;
#: it only keeps a zero from dividing).
TIME_FLOOR = 1e-9

_MODE_NAMES = {
    "c": PerfMode.COMP,
    "comp": PerfMode.COMP,
    "d": PerfMode.DECOMP,
    "decomp": PerfMode.DECOMP,
}
_COST_NAMES = {**_MODE_NAMES, "b": PerfMode.BALANCED, "balanced": PerfMode.BALANCED}


def parse_mode(mode: str | PerfMode, field: str = "mode") -> PerfMode:
    """``"c"``/``"comp"`` -> COMP, ``"d"``/``"decomp"`` -> DECOMP (PerfMode members as is;
    BALANCED and AUTO map to COMP, whose model the plugin uses for them)."""
    if isinstance(mode, PerfMode):
        return PerfMode.DECOMP if mode is PerfMode.DECOMP else PerfMode.COMP
    if isinstance(mode, str) and mode.strip().lower() in _MODE_NAMES:
        return _MODE_NAMES[mode.strip().lower()]
    raise ConfigError(invalid(field, mode, "'c', 'comp', 'd' or 'decomp'"))


def cost_mode(mode: str | PerfMode, field: str = "mode") -> PerfMode:
    """The mode whose seconds count: COMP, DECOMP or BALANCED (AUTO counts as COMP).

    Accepts the members and ``"c"``/``"comp"``, ``"d"``/``"decomp"``, ``"b"``/``"balanced"``.
    """
    if isinstance(mode, PerfMode):
        return PerfMode.COMP if mode is PerfMode.AUTO else mode
    if isinstance(mode, str) and mode.strip().lower() in _COST_NAMES:
        return _COST_NAMES[mode.strip().lower()]
    raise ConfigError(invalid(field, mode, "'comp', 'decomp' or 'balanced'"))


def seconds(ctime, dtime, mode: str | PerfMode):
    """The time that counts in ``mode`` (see the module docstring), floored at
    :data:`TIME_FLOOR`; arrays broadcast. ``dtime`` may be ``None`` in COMP mode."""
    which = cost_mode(mode)
    if which is PerfMode.COMP:
        t = np.asarray(ctime, dtype=np.float64)
    elif which is PerfMode.DECOMP:
        t = np.asarray(dtime, dtype=np.float64)
    else:
        t = np.asarray(ctime, dtype=np.float64) + np.asarray(dtime, dtype=np.float64)
    return np.maximum(t, TIME_FLOOR)


def speed(nbytes, ctime, dtime, mode: str | PerfMode):
    """Bytes per second of the operations ``mode`` counts (arrays broadcast)."""
    return np.asarray(nbytes, dtype=np.float64) / seconds(ctime, dtime, mode)


def objective(cratio, speed, tradeoff):
    """``t * log(cratio) + (1 - t) * log(speed)``; arrays broadcast."""
    t = np.asarray(tradeoff, dtype=np.float64)
    return t * np.log(cratio) + (1.0 - t) * np.log(speed)


def chunk_objective(nbytes, cbytes, ctime, dtime, mode: str | PerfMode, tradeoff):
    """``J`` of chunks of ``nbytes`` compressed into ``cbytes`` in ``ctime`` and decompressed in
    ``dtime`` seconds (arrays broadcast; ``dtime`` may be ``None`` in COMP mode)."""
    cratio = np.asarray(nbytes, dtype=np.float64) / np.asarray(cbytes, dtype=np.float64)
    return objective(cratio, speed(nbytes, ctime, dtime, mode), tradeoff)


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
        ``"comp"``, ``"decomp"`` or ``"balanced"`` (see :func:`cost_mode`).
    tradeoffs
        The tradeoffs (default :data:`TRADEOFFS`).

    Returns
    -------
    numpy.ndarray
        Shape ``(ntradeoffs, nchunks, ncategories)``.
    """
    nb = np.asarray(nbytes, dtype=np.float64)[:, None]
    t = np.asarray(tradeoffs, dtype=np.float64)[:, None, None]
    return chunk_objective(nb[None], cbytes, ctime, dtime, mode, t)


def regret(j_chosen, j_best):
    """``1 - exp(J(chosen) - J(best))``: 0 for the best choice, below 1 always."""
    return 1.0 - np.exp(np.asarray(j_chosen, float) - np.asarray(j_best, float))


def best_index(j: np.ndarray) -> np.ndarray:
    """Index of the best category along the last axis (the label; lowest index on ties)."""
    return np.argmax(j, axis=-1)


def gain(j_chosen, j_best):
    """``exp(J(best) - J(chosen)) - 1``: how much better the best choice is (0 for the best)."""
    return np.expm1(np.asarray(j_best, float) - np.asarray(j_chosen, float))


def hindsight_best(j: np.ndarray) -> np.ndarray:
    """Per tradeoff, the category of best mean ``J`` over the chunks (the hindsight single
    category; lowest index on ties). ``j`` has shape ``(ntradeoffs, nchunks, ncategories)``."""
    return np.argmax(np.asarray(j, dtype=np.float64).mean(axis=1), axis=-1)


def totals(nbytes, cbytes, ctime, dtime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dataset totals per category (last axis): cratio, compression and decompression speed.

    ``sum nbytes / sum cbytes`` and ``sum nbytes / sum time`` over the chunks (axis 0).
    """
    total = float(np.sum(nbytes))
    return (
        total / np.sum(cbytes, axis=0),
        total / seconds(np.sum(ctime, axis=0), None, PerfMode.COMP),
        total / seconds(None, np.sum(dtime, axis=0), PerfMode.DECOMP),
    )


def contested(
    nbytes: float,
    cbytes,
    ctime,
    dtime,
    mode: str | PerfMode,
    slack,
    tradeoffs: Sequence[float] | None = TRADEOFFS,
) -> np.ndarray:
    """Which categories of one chunk could still change its label if timed again.

    A category *could be best* at tradeoff ``t`` if, with its time that counts in ``mode``
    shorter by a factor ``exp(slack)`` (the timing noise: the best of more timings can be that
    much faster), its ``J`` would reach the best measured ``J`` at ``t``; that is, if it lies
    within the noise of the upper hull of ``log(cratio)`` vs ``log(speed)`` there. A category is
    *contested* if it could be best at some tradeoff where at least one other one could too:
    more timings of it might change a label. Where a single category could be best, its label
    is settled however often it is timed.

    Parameters
    ----------
    nbytes
        The chunk's uncompressed bytes.
    cbytes, ctime, dtime
        Per category, shape ``(ncategories,)`` (``dtime`` may be ``None`` in COMP mode).
    mode
        ``"comp"``, ``"decomp"`` or ``"balanced"`` (:func:`cost_mode`).
    slack
        The noise, as a log factor on the time (>= 0; 0 asks for exact ties only): one for
        all categories, or one per category (shape ``(ncategories,)``, e.g. 0 for those
        already timed often enough).
    tradeoffs
        The tradeoffs that count (default :data:`TRADEOFFS`, where labels are made); ``None``
        for the whole interval [0, 1] (checked exactly, at its ends and at every tradeoff
        where a shifted category's ``J`` crosses another's).

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(ncategories,)``.
    """
    ratio_j = chunk_objective(nbytes, cbytes, ctime, dtime, mode, 1.0)  # log(cratio)
    speed_j = chunk_objective(nbytes, cbytes, ctime, dtime, mode, 0.0)  # log(speed)
    try:
        slack = np.broadcast_to(np.asarray(slack, dtype=np.float64), speed_j.shape)
    except (TypeError, ValueError):
        raise ConfigError(
            invalid("slack", slack, "numbers >= 0, one or one per category")
        ) from None
    if not (np.isfinite(slack).all() and (slack >= 0).all()):
        raise ConfigError(invalid("slack", slack.tolist(), "finite numbers >= 0"))
    if tradeoffs is None:
        # J_c(t) + (1 - t) * slack == J_d(t), for every (c shifted, d) pair.
        shifted = speed_j + slack
        num = speed_j[None, :] - shifted[:, None]
        den = (ratio_j[:, None] - shifted[:, None]) - (ratio_j[None, :] - speed_j[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = num / den
        cross = cross[np.isfinite(cross) & (cross > 0) & (cross < 1)]
        t = np.concatenate(([0.0, 1.0], cross))
    else:
        t = np.asarray(tradeoffs, dtype=np.float64)
    j = objective(np.exp(ratio_j)[None, :], np.exp(speed_j)[None, :], t[:, None])
    best = j.max(axis=1, keepdims=True)
    # A relative tolerance keeps a category from losing to itself through rounding.
    could = j + (1.0 - t[:, None]) * slack[None, :] >= best - 1e-12 * np.abs(best)
    # At t = 1 the time has no weight: a tie there is one of ratios, which no timing changes
    # (on photographs, zstd-9 with and without shuffle give the same bytes: repeating both
    # made most of the cheaper gather's cost).
    shared = (could.sum(axis=1) >= 2) & (t < 1.0)
    return could[shared].any(axis=0)
