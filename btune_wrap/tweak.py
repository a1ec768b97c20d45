"""The tweak: after the model's chunks, try neighbours of the best parameters on real chunks.

The most predicted category (ties to the lowest index, as in the plugin), or blosc2's defaults
without a model, is the starting point. On each following chunk, one neighbour at a time
(compression level +-1, the other split mode) is compressed next to the current best on the
same chunk, both measured by the one compressor (:meth:`ChunkCodec.measure_chunk`), and whichever
scores better under the objective (:func:`btune_wrap.objective.chunk_objective`, in the
engine's performance mode) is written and kept. The tweak ends when no untried neighbour of the
best is left, or after ``max_tweaks`` trials; later chunks use the best parameters found.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .categories import Category, SplitMode, default_category
from .compressor import Measurement, is_special
from .objective import chunk_objective
from .trace import RowState, TraceRow

if TYPE_CHECKING:
    from .engine import _ArrayFill
    from .model import BtuneModel
    from .sources import ChunkReader


def most_predicted(model: BtuneModel | None, counts: list[int]) -> Category | None:
    """The category inferred most often (lowest index on ties), as the plugin picks it."""
    if model is None or not counts or max(counts) == 0:
        return None
    return model.categories[counts.index(max(counts))]


@dataclass
class Tweak:
    """State of the tweak phase: the best parameters and the neighbours left to try."""

    best: Category
    trials_left: int
    tried: set[Category] = dataclasses.field(default_factory=set)
    queue: list[Category] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.tried.add(self.best)
        self.queue = self._neighbours(self.best)

    def _neighbours(self, cat: Category) -> list[Category]:
        out: list[Category] = []
        for clevel in (cat.clevel + 1, cat.clevel - 1):
            if 1 <= clevel <= 9:
                out.append(dataclasses.replace(cat, clevel=clevel))
        for split in other_splits(cat):
            out.append(dataclasses.replace(cat, splitmode=split))
        return [c for c in out if c not in self.tried]

    def next_candidate(self) -> Category | None:
        """The next neighbour to try, or ``None`` when the tweak is over."""
        while self.queue and self.trials_left > 0:
            cand = self.queue.pop(0)
            if cand not in self.tried:
                self.tried.add(cand)
                self.trials_left -= 1
                return cand
        return None

    def accept(self, cand: Category) -> None:
        """``cand`` measured better: it becomes the best; its neighbours are tried next."""
        self.best = cand
        self.queue = self._neighbours(cand)


def other_splits(cat: Category) -> list[SplitMode]:
    always, never = SplitMode.ALWAYS, SplitMode.NEVER
    if cat.splitmode == always:
        return [never]
    if cat.splitmode == never:
        return [always]
    return [always, never]


class TweakSearch:
    """The chunks after the inferred ones, for one :class:`~btune_wrap.engine._ArrayFill`."""

    def __init__(self, fill: _ArrayFill) -> None:
        self.fill = fill
        self.engine = fill.engine

    def run(self, reader: ChunkReader, first: int) -> None:
        """Write chunks ``first`` to the last: tweak steps, then the best parameters."""
        fill, engine = self.fill, self.engine
        tweak: Tweak | None = None
        final = None  # the best parameters' writer, once the tweak is over
        for step in range(first, reader.nchunks):
            buf = reader.take(step, 1)[0]
            if final is not None:
                fill.rows.write(step, buf, final, RowState.STOP)
                continue
            if tweak is None:
                start = most_predicted(engine.model, fill.counts) or default_category()
                tweak = Tweak(start, trials_left=engine.max_tweaks)
            cand = tweak.next_candidate()
            if cand is None:
                # Nothing is left to try: the best stays the best from now on.
                final = fill.writer(tweak.best)
                fill.rows.write(step, buf, final, RowState.STOP)
            else:
                self._step(step, buf, tweak, cand)

    def _score(self, nbytes: int, m: Measurement) -> float:
        engine = self.engine
        return float(
            chunk_objective(nbytes, m.cbytes, m.ctime, m.dtime, engine.mode, engine.tradeoff)
        )

    def _step(self, step: int, buf: np.ndarray, tweak: Tweak, cand: Category) -> None:
        """Try ``cand`` next to the best on this chunk; write the better one and keep it."""
        fill, repeats = self.fill, self.engine.repeats
        nbytes, typesize = buf.nbytes, fill.typesize
        best = fill.writer(tweak.best)
        trial = fill.writer(cand)
        b_chunk, b_m = best.codec.measure_chunk(buf, repeats)
        c_chunk, c_m = trial.codec.measure_chunk(buf, repeats)
        b_score, c_score = self._score(nbytes, b_m), self._score(nbytes, c_m)
        improved = c_score > b_score and not is_special(len(c_chunk), typesize)
        if improved:
            tweak.accept(cand)
        kept, chunk, score = (trial, c_chunk, c_score) if improved else (best, b_chunk, b_score)
        fill.update_chunk(step, chunk)
        fill.trace.messages.append(
            f"TRACE: Tweak step={step} tried {cand.name} score={c_score:.4g} against "
            f"{best.category.name} score={b_score:.4g}: kept {kept.category.name}"
        )
        winner = "S" if is_special(len(chunk), typesize) else "W" if improved else "-"
        fill.trace.rows.append(
            TraceRow(
                **kept.row,
                step=step,
                score=score,
                cratio=nbytes / len(chunk),
                state=RowState.TWEAK.value,
                winner=winner,
                inference=None,
            )
        )
