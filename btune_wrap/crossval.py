"""Cross-validation: how well a model trained on some measurements chooses on others.

Two protocols (:class:`Protocol`), both over datasets (one :class:`Measurements` each):

``loo`` (leave one dataset out)
    For each dataset, models trained (:func:`btune_wrap.train.fit`) on every chunk of all the
    *other* datasets, evaluated on this one: what a general model, such as the one shipped in
    :data:`btune_wrap.GENERAL_MODEL_DIR`, does on data it never saw. ``test_chunks="odd"``
    evaluates on the dataset's odd chunks only, so that its figures line up with the
    ``even-odd`` protocol's, chunk for chunk.
``even-odd``
    For each dataset, models trained on its even chunks (by index in the source), evaluated on
    its odd chunks (:func:`even_odd`): a user who gathers part of their own data. A dataset
    whose even half has fewer than :data:`btune_wrap.train.MIN_CHUNKS` chunks gets no model
    (its other methods are still evaluated). Its neighbours model leans on a neighbours model
    of the *other* datasets where a user's would lean on the shipped general model (which
    has seen every corpus dataset; :attr:`btune_wrap.train.TrainConfig.fallback`).

Each fold is evaluated with :func:`btune_wrap.evaluate.evaluate` (the model, and by default
the dataset's own fixed-best category and blosc2's defaults; genetic Btune on request), so the
gains are those of ``btune evaluate``; :meth:`CrossValidation.table` gives the mean gain per
dataset and method (:func:`btune_wrap.evaluate.gain_table`) with a mean row per mode.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from .config import PerfMode
from .errors import ConfigError, invalid
from .evaluate import Method, ModelFormat, evaluate, gain_table
from .measurements import Measurements, check_same_categories
from .parse import parse_choice, parse_enum

if TYPE_CHECKING:
    import pandas as pd

    from .neighbors import NeighborsModel
    from .train import TrainConfig

#: Methods evaluated beside the model unless told otherwise (genetic Btune is the slowest).
DEFAULT_METHODS: tuple[Method, ...] = (Method.MODEL, Method.FIXED_BEST, Method.DEFAULTS)
#: Which chunks of a left-out dataset are evaluated.
TEST_CHUNKS = ("all", "odd")


class Protocol(str, Enum):
    """Which chunks train and which evaluate (see the module docstring)."""

    LEAVE_ONE_OUT = "loo"
    EVEN_ODD = "even-odd"

    @classmethod
    def parse(cls, value: Protocol | str) -> Protocol:
        """A member, or its value or name (``"loo"``, ``"even-odd"``, ``"LEAVE_ONE_OUT"``)."""
        if isinstance(value, str) and value.strip().lower() in ("even_odd", "evenodd"):
            return cls.EVEN_ODD
        return parse_enum("protocol", value, cls)


def even_odd(meas: Measurements) -> tuple[Measurements, Measurements]:
    """The even and the odd measured chunks (by index in the source), in memory; the odd
    half keeps the dataset's name, the even one is named ``<name>:even``."""
    ids = meas.chunks["chunk"].to_numpy(np.int64)
    even = meas.select(ids[ids % 2 == 0], label=f"{meas.name}:even")
    return even, meas.select(ids[ids % 2 == 1], label=meas.name)


@dataclass(frozen=True)
class Fold:
    """One dataset's turn: the models train on ``train`` and are evaluated on ``test``;
    ``others`` are the other datasets (whole), which a neighbours model of ``train`` leans on
    in place of the general model (trained on them all, this one included)."""

    name: str
    train: tuple[Measurements, ...]
    test: Measurements
    others: tuple[Measurements, ...] = ()

    @property
    def train_chunks(self) -> int:
        return sum(m.nchunks for m in self.train)


def folds(
    measurements: Sequence[Measurements],
    protocol: Protocol | str = Protocol.LEAVE_ONE_OUT,
    *,
    test_chunks: str = "all",
) -> list[Fold]:
    """The folds of ``protocol`` over ``measurements`` (one per dataset, in order).

    ``test_chunks`` (``"all"``, the default, or ``"odd"``) applies to ``loo`` only; a dataset
    without any test chunk gets no fold.
    """
    protocol = Protocol.parse(protocol)
    test_chunks = parse_choice("test_chunks", test_chunks, TEST_CHUNKS)
    sets = list(measurements)
    if len(sets) < (2 if protocol is Protocol.LEAVE_ONE_OUT else 1):
        expected = "at least two datasets" if protocol is Protocol.LEAVE_ONE_OUT else "one"
        raise ConfigError(invalid("measurements", len(sets), expected))
    check_same_categories(sets)
    names = [m.name for m in sets]
    if len(set(names)) < len(names):
        raise ConfigError(invalid("measurements", names, "datasets of distinct names"))
    out = []
    for i, meas in enumerate(sets):
        even, odd = even_odd(meas)
        others = tuple(m for k, m in enumerate(sets) if k != i)
        if protocol is Protocol.EVEN_ODD:
            train, test = (even,), odd
        else:
            train = others
            test = odd if test_chunks == "odd" else meas.select(meas.chunks["chunk"], meas.name)
        if test.nchunks:
            out.append(Fold(meas.name, train, test, others))
    return out


@dataclass
class CrossValidation:
    """The result of :func:`crossval`.

    Attributes
    ----------
    protocol
        The protocol run.
    choices
        Every fold's :attr:`Evaluation.choices <btune_wrap.evaluate.Evaluation.choices>`,
        concatenated, with a ``mode`` column (``comp``/``decomp``); ``dataset`` is the fold.
    folds
        One row per (mode, dataset): ``train_chunks``, ``test_chunks``, ``model`` (whether a
        model was trained), ``model_file`` (the file the model was judged from), ``train_s``
        and ``evaluate_s`` (seconds), ``note``.
    """

    protocol: Protocol
    choices: pd.DataFrame
    folds: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)

    def table(self, oracle: str = "known") -> pd.DataFrame:
        """Mean gain per (mode, dataset) and method (:func:`~btune_wrap.evaluate.gain_table`)
        with a ``mean`` row per mode (over the datasets that have the method)."""
        return with_means(gain_table(self.choices, oracle))

    def format(self) -> str:
        """The gain tables against both oracles, as text."""
        from .report import format_gain_table

        parts = []
        for oracle in ("known", "measured"):
            head = "best known category" if oracle == "known" else "best measured category"
            parts.append(f"Mean gain per dataset against the {head} ({self.protocol.value}):")
            parts.append(format_gain_table(self.table(oracle)))
        parts += [f"{k}: {v}" for k, v in self.notes.items()]
        return "\n".join(parts)


def with_means(table: pd.DataFrame) -> pd.DataFrame:
    """A (mode, dataset) x method table with a ``mean`` row after each mode's datasets."""
    import pandas as pd

    parts = []
    for mode, part in table.groupby(level="mode", sort=False):
        mean = part.mean(axis=0).to_frame().T
        mean.index = pd.MultiIndex.from_tuples([(mode, "mean")], names=table.index.names)
        parts += [part, mean]
    return pd.concat(parts)


def crossval(
    measurements: Sequence[Measurements | str | os.PathLike[str]],
    protocol: Protocol | str = Protocol.LEAVE_ONE_OUT,
    mode: str | PerfMode = "both",
    config: TrainConfig | None = None,
    *,
    methods: Sequence[Method | str] = DEFAULT_METHODS,
    test_chunks: str = "all",
    model_format: ModelFormat | str = ModelFormat.ENGINE,
    verify: int = 1,
    variants: Sequence[tuple[str, ModelFormat | str, int]] = (),
    progress: Callable[[str], None] | None = None,
) -> CrossValidation:
    """Train and evaluate every fold of ``protocol`` (see the module docstring).

    Parameters
    ----------
    measurements
        Datasets: measurement directories or :class:`Measurements`, one category set.
    protocol
        ``"loo"`` (default) or ``"even-odd"``.
    mode
        ``"comp"``, ``"decomp"`` or ``"both"`` (default).
    config
        How to train (:class:`btune_wrap.train.TrainConfig`); default its defaults.
    methods
        Methods to evaluate; default :data:`DEFAULT_METHODS` (``"genetic"`` adds the plugin's
        search, which writes every test dataset once per tradeoff).
    test_chunks
        ``"all"`` (default) or ``"odd"``: a left-out dataset's chunks evaluated (``loo``).
    model_format, verify
        As in :func:`btune_wrap.evaluate.evaluate`: by default each fold's models directory
        is judged as the Python engine uses it (its extended model, trained where the fold has
        enough chunks: :func:`btune_wrap.train.wants_extended`), without verification.
    variants
        More ways of judging the same trained models, each ``(name, model_format, verify)``:
        its choices are added as method ``name`` (e.g. ``("plugin", "plugin", 1)`` or
        ``("verify3", "engine", 3)``). Default none.
    progress
        Called with one line per fold; ``None`` (default) is silent.
    """
    import pandas as pd

    from .train import MIN_CHUNKS, TrainConfig, export, fit_all, parse_modes

    config = config or TrainConfig()
    modes = parse_modes(mode)
    sets = [m if isinstance(m, Measurements) else Measurements.load(m) for m in measurements]
    chosen = [Method.parse(m) for m in methods]
    frames, rows, notes = [], [], {}
    for fold in folds(sets, protocol, test_chunks=test_chunks):
        for perf in modes:
            name = perf.name.lower()
            row = {"mode": name, "dataset": fold.name, "train_chunks": fold.train_chunks,
                   "test_chunks": fold.test.nchunks, "model": False, "train_s": np.nan}  # fmt: skip
            wanted = list(chosen)
            with tempfile.TemporaryDirectory(prefix="btune-crossval-") as tmp:
                if Method.MODEL in wanted and fold.train_chunks >= MIN_CHUNKS:
                    t0 = time.perf_counter()
                    fallbacks = {perf: _fallback(fold, perf, config)}
                    for trained in fit_all(list(fold.train), [perf], config, fallbacks=fallbacks):
                        export(trained, tmp)
                    row.update(model=True, train_s=time.perf_counter() - t0)
                elif Method.MODEL in wanted:
                    wanted.remove(Method.MODEL)
                    notes[f"{fold.name} ({name})"] = (
                        f"no model: {fold.train_chunks} training chunks, fewer than {MIN_CHUNKS}"
                    )
                if not set(wanted) - {Method.ORACLE}:
                    continue
                t0 = time.perf_counter()
                ev = evaluate(tmp if row["model"] else None, [fold.test], perf, methods=wanted,
                              model_format=model_format, verify=verify, progress=False)  # fmt: skip
                row["model_file"] = ev.meta.get("model_file")
                if row["model"]:
                    extra = [_variant(tmp, fold.test, perf, v) for v in variants]
                    ev.choices = pd.concat([ev.choices, *extra], ignore_index=True)
                row["evaluate_s"] = time.perf_counter() - t0
            notes.update({f"{fold.name} ({name}) {k}": v for k, v in ev.notes.items()})
            frames.append(ev.choices.assign(mode=name))
            rows.append(row)
            if progress is not None:
                means = ev.summary.groupby("method", sort=False)["mean_gain"].mean()
                shown = ", ".join(f"{m} {g:.1%}" for m, g in means.items() if m != "oracle")
                progress(f"{fold.name} {name}: {fold.train_chunks} training chunks; {shown}")
    if not frames:
        raise ConfigError(invalid("methods", [m.value for m in chosen], "something to evaluate"))
    return CrossValidation(
        Protocol.parse(protocol), pd.concat(frames, ignore_index=True), pd.DataFrame(rows), notes
    )


def _fallback(fold: Fold, perf: PerfMode, config: TrainConfig) -> NeighborsModel | None:
    """What a neighbours model of one dataset's chunks leans on in this fold: a model of the
    other datasets (never the shipped general model: it has seen this one)."""
    from .features import measured_features
    from .general import general_neighbors

    if len(fold.train) != 1 or not config.fallback:  # several datasets train: no prior
        return None
    usable = [m for m in fold.others if measured_features(m) is not None]
    return general_neighbors(usable, perf, config.features) if usable else None


def _variant(models_dir, test: Measurements, perf: PerfMode, variant) -> pd.DataFrame:
    """The model's choices on ``test`` judged as ``variant`` = ``(name, model_format, verify)``,
    renamed to method ``name``."""
    name, model_format, verify = variant
    ev = evaluate(models_dir, [test], perf, methods=[Method.MODEL], model_format=model_format,
                  verify=verify, progress=False)  # fmt: skip
    rows = ev.choices[ev.choices["method"] == Method.MODEL.value]
    return rows.assign(method=str(name))
