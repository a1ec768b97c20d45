"""Evaluation: how good a model is on measured data, next to the alternatives a user has.

For every measured chunk and every tradeoff, five *methods* choose a category (codec, filter,
clevel, split mode), and each choice is scored with the one objective of
:mod:`btune_wrap.objective` (``J = t log(cratio) + (1 - t) log(speed)``):

``oracle``
    The best category measured on that chunk: the one of maximal ``J`` among every category
    whose cost is known for the chunk (the measurement's set, plus any category another method
    chose outside it, measured here). Its regret is 0 by construction and no method can beat it.
``model``
    The category the models directory picks from the chunk's features stored by the gather, run
    through LiteRT. By default (``model_format="engine"``) the choice the Python engine would
    make: its extended model where the directory has one
    (:func:`btune_wrap.model.load_engine_model`, features from the gather's extended columns),
    else the plugin-format model; with verification (``verify=k`` > 1) the model's ``k``
    best-scored categories are tried and the best measured one kept, and in COMP the
    compression time of every trial counts in that chunk's time (:func:`verified_choices`;
    DECOMP readers do not pay for them). With ``model_format="plugin"``, the plugin-format
    model only (what the plugin infers).
``fixed_best``
    The single measured category a user would pick after trying every one on the whole dataset
    once: per measurement directory and tradeoff, the category of best mean ``J`` over its
    chunks (:func:`btune_wrap.objective.hindsight_best`; lowest index in the measured order on
    ties).
``genetic``
    The parameters the Btune plugin's genetic search settles on (the last winner of its trace)
    when it writes the whole source at that tradeoff in this mode, used for every chunk. Only
    where :func:`btune_wrap.plugin.plugin_support` allows the plugin; elsewhere the method is
    absent and :attr:`Evaluation.notes` says why.
``defaults``
    blosc2's default compression parameters (``blosc2.CParams()``, i.e.
    ``zstd-shuffle-autosplit-5``) with the measurement's typesize, blocksize and threads.

A chosen category that the measurement holds is looked up in its tables; any other (blosc2's
defaults, the genetic winner, model categories outside the measured set) is measured on the
chunk itself with :func:`btune_wrap.compressor.measure_cparams`, the gather's own routine, with
the measurement's repeats and threads, so every method is compared on equal terms.

Per tradeoff and method :class:`Evaluation` holds the mean regret against the oracle and the
dataset totals: ``cratio = sum nbytes / sum cbytes``, throughputs ``sum nbytes / sum time``;
the best method of a tradeoff is the one (oracle aside) of lowest mean regret.

Two oracles. The ``oracle`` method above is the best *known* category of the chunk: the
measured ones plus every other method's choice, measured afresh here. It moves with what the
other methods choose (genetic Btune's timing-dependent choices, e.g. split variants that the
measured set lacks), so one method's gain against it depends on which others ran. Every choice
is therefore also scored against the best of the *measured* categories only (``j_measured``,
``gain_measured``; the same whichever methods run, so gains from separate evaluations of the
same chunks compare; a choice outside the measured set can score below 0).
:func:`gain_table` gives the mean gain per dataset and method against either.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import outputs
from .atomic import atomic_dir
from .categories import Category, SplitMode, default_category
from .config import BtuneConfig, PerfMode
from .errors import ConfigError, InputError, ModelError, invalid
from .model import reads_extended
from .objective import (
    TRADEOFFS,
    best_index,
    chunk_objective,
    cost_mode,
    gain,
    hindsight_best,
    objective_matrix,
    parse_mode,
    regret,
    totals,
)
from .parse import parse_enum, parse_int, parse_tradeoffs
from .plugin import plugin_support, tuned_traces
from .runtime import installed_version

if TYPE_CHECKING:
    import pandas as pd

    from .measurements import Measurements
    from .model import BtuneModel, ExtendedModel
    from .neighbors import NeighborsModel
    from .sources import ChunkSource
    from .trace import TraceRow

    #: A measurement directory, or measurements in memory.
    MeasInput = str | os.PathLike[str] | Measurements

#: Version of the layout :meth:`Evaluation.save` writes.
EVAL_FORMAT = 1
JSON_FILE = "evaluation.json"
SUMMARY_FILE = "summary.csv"
CHOICES_FILE = "choices.parquet"
REGRET_PLOT = "regret.png"
FRONTIER_PLOT = "frontier.png"


class ModelFormat(str, Enum):
    """Which model of a models directory :func:`evaluate` judges."""

    #: What the Python engine reads: the extended model where there is one, else the plugin's.
    ENGINE = "engine"
    #: The plugin-format model (``model_<mode>.tflite`` + ``.json``), as the plugin infers.
    PLUGIN = "plugin"


class Method(str, Enum):
    """The ways of choosing a chunk's category that an evaluation compares."""

    ORACLE = "oracle"
    MODEL = "model"
    FIXED_BEST = "fixed_best"
    GENETIC = "genetic"
    DEFAULTS = "defaults"

    @classmethod
    def parse(cls, value: Method | str, field_name: str = "methods") -> Method:
        """A member, or its value/name case-insensitively (``"fixed_best"``, ``"GENETIC"``)."""
        return parse_enum(field_name, value, cls)


#: Every method, in the order tables and plots show them.
ALL_METHODS: tuple[Method, ...] = tuple(Method)

#: Where a choice's cost comes from: the measurement's tables, or a measurement made here.
FROM_GATHER = "gather"
FROM_EVALUATE = "evaluate"


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: plain DataFrames and dicts.

    Attributes
    ----------
    mode
        ``PerfMode.COMP`` or ``PerfMode.DECOMP``: which speed the objective uses.
    summary
        One row per (tradeoff, method): ``tradeoff``, ``method``, ``mean_regret``,
        ``mean_gain`` (:func:`btune_wrap.objective.gain`), ``mean_gain_measured`` (against the
        best measured category), ``max_regret``, ``cratio``,
        ``cspeed_gbs``, ``dspeed_gbs`` (dataset totals; GB = 1e9 bytes), ``speed_gbs`` (the
        mode's one), ``choice`` (the category, or how many and the most frequent), ``best``
        (lowest mean regret of the tradeoff, oracle aside).
    choices
        One row per (dataset, chunk, tradeoff, method): ``dataset``, ``chunk``, ``tradeoff``,
        ``method``, ``category``, ``nbytes``, ``cbytes``, ``ctime``, ``dtime``, ``j`` (the
        objective), ``j_oracle`` (the known oracle's), ``regret``, ``gain``, ``j_measured``
        (the best measured category's ``J``), ``gain_measured`` (against it) and
        ``cost_from`` (``"gather"`` when looked up in the measurement, ``"evaluate"`` when
        measured by the evaluation).
    frontier
        One row per measured category: ``category``, ``cratio``, ``cspeed_gbs``,
        ``dspeed_gbs``, ``speed_gbs`` (totals over the dataset) and ``pareto`` (no other
        category is as good in ratio and speed of this mode and better in one).
    notes
        ``{method: reason}`` for each requested method that could not be evaluated.
    meta
        What was evaluated: models, measurements, tradeoffs, versions, date.
    inputs
        The paths the evaluation read (models, measurements, their sources): :meth:`save`
        never writes over them.
    """

    mode: PerfMode
    summary: pd.DataFrame
    choices: pd.DataFrame
    frontier: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()

    @property
    def tradeoffs(self) -> tuple[float, ...]:
        """The tradeoffs evaluated, in order."""
        return tuple(float(t) for t in dict.fromkeys(self.summary["tradeoff"]))

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods present, in table order."""
        return tuple(dict.fromkeys(self.summary["method"]))

    def best_methods(self) -> dict[float, str]:
        """``{tradeoff: method}``: the method of lowest mean regret, oracle aside."""
        rows = self.summary[self.summary["best"]]
        return {float(t): str(m) for t, m in zip(rows["tradeoff"], rows["method"], strict=True)}

    def to_dict(self) -> dict[str, object]:
        """The JSON document :meth:`save` writes (NaN becomes ``null``)."""
        return _clean_json(
            {
                "format": EVAL_FORMAT,
                "mode": self.mode.name.lower(),
                "meta": self.meta,
                "notes": self.notes,
                "best": {f"{t:g}": m for t, m in self.best_methods().items()},
                "summary": self.summary.to_dict(orient="records"),
                "frontier": self.frontier.to_dict(orient="records"),
            }
        )

    def format(self) -> str:
        """The printed table (see :func:`btune_wrap.report.format_evaluation`)."""
        from .report import format_evaluation

        return format_evaluation(self)

    def save(self, directory: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write ``evaluation.json``, ``summary.csv``, ``choices.parquet``, ``regret.png`` and
        ``frontier.png`` into ``directory``, atomically (aside, then renamed).

        Parameters
        ----------
        directory
            The output directory; it must not exist unless ``force``.
        force
            Replace an existing directory. Default False.
        """
        from .report import plot_evaluation_frontier, plot_evaluation_regret

        directory = check_evaluation_output(directory, self.inputs, force=force)
        with atomic_dir(directory) as tmp:
            doc = json.dumps(self.to_dict(), indent=1, allow_nan=False)
            (tmp / JSON_FILE).write_text(doc + "\n")
            self.summary.to_csv(tmp / SUMMARY_FILE, index=False)
            self.choices.to_parquet(tmp / CHOICES_FILE, index=False)
            title = self.meta.get("title", "")
            plot_evaluation_regret(self.summary, tmp / REGRET_PLOT, title=title)
            plot_evaluation_frontier(
                self.frontier,
                self.summary,
                tmp / FRONTIER_PLOT,
                mode=self.mode.name.lower(),
                title=title,
            )
        return directory


def is_evaluation_dir(path: Path) -> bool:
    """Whether ``path`` is a directory :meth:`Evaluation.save` wrote."""
    return (Path(path) / JSON_FILE).is_file() and (Path(path) / SUMMARY_FILE).is_file()


def check_evaluation_output(
    directory: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    *,
    force: bool = False,
) -> Path:
    """:func:`btune_wrap.outputs.check_output` for an evaluation directory: called before any
    work so that a bad ``--output`` fails at once; returns it as a Path."""
    return outputs.check_output(directory, inputs, force=force, owned=is_evaluation_dir)


# -- the evaluation ------------------------------------------------------------------------


def evaluate(
    models_dir: str | os.PathLike[str] | None,
    meas_dirs: MeasInput | Sequence[MeasInput],
    mode: str | PerfMode = "comp",
    *,
    tradeoffs: Sequence[float] = TRADEOFFS,
    methods: Sequence[Method | str] = ALL_METHODS,
    model_format: ModelFormat | str = ModelFormat.ENGINE,
    verify: int = 1,
    decide_every: int = 1,
    progress: bool = True,
) -> Evaluation:
    """Evaluate a model on measured chunks against the oracle, fixed best, genetic and defaults.

    Parameters
    ----------
    models_dir
        A models directory holding the mode's model (``model_comp.*`` or ``model_decomp.*``);
        may be ``None`` only when ``methods`` leaves out ``"model"``.
    meas_dirs
        One or more measurement directories (``btune gather``) or :class:`Measurements` (e.g.
        a :meth:`~btune_wrap.measurements.Measurements.select` subset), made with one category
        set; their sources must still be readable (defaults and genetic are measured on them).
    mode
        ``"comp"`` (default) or ``"decomp"``: the speed in the objective, the model used and
        the genetic search's performance mode.
    tradeoffs
        Tradeoffs in [0, 1]. Default :data:`btune_wrap.objective.TRADEOFFS` (0, 0.1, ..., 1).
    methods
        Which methods to compare (the oracle is always included). Default all of
        :class:`Method`.
    model_format
        ``"engine"`` (default): the model the Python engine uses (the extended one where the
        directory has it); ``"plugin"``: the plugin-format model (:class:`ModelFormat`).
    verify
        The Python engine's verification: the model's ``verify`` best categories tried per
        chunk, the best kept; their compression times count in COMP. Default 1 (off). The
        trials are judged by the timings they are chosen by, which flatters them (see
        ``benchmarks/bench_noise.py``).
    decide_every
        The Python engine's ``decide_every``: each measured chunk takes the choice made for
        the first measured chunk of its group of ``decide_every`` consecutive chunk indices
        (the group's first chunk itself where it was measured, as in the engine). Default 1:
        every chunk decides (the plugin's way; the only one with ``model_format="plugin"``
        or verification).
    progress
        Show progress bars on stderr. Default True.

    Raises
    ------
    ModelError
        The models directory has no model for ``mode``, or it is invalid.
    InputError
        A measurement is incomplete, or its source is missing or changed since the gather.
    ConfigError
        Invalid ``mode``, ``tradeoffs`` or ``methods``.
    """
    import pandas as pd

    perf = parse_mode(mode)
    tradeoffs = parse_tradeoffs("tradeoffs", tradeoffs)
    wanted = _check_methods(methods)
    model_format = parse_enum("model_format", model_format, ModelFormat)
    model = None
    if Method.MODEL in wanted:
        if models_dir is None:
            raise ModelError(invalid("models_dir", None, "a models directory (method 'model')"))
        model = load_mode_model(models_dir, perf, model_format)
        verify = parse_int("verify", verify, 1, len(model.categories))
    from .engine import check_decide_every

    decide_every = check_decide_every(decide_every, verify)
    if decide_every > 1 and model_format is ModelFormat.PLUGIN:
        expected = "1 with model_format='plugin' (the plugin decides every chunk)"
        raise ConfigError(invalid("decide_every", decide_every, expected))
    loaded, meas_dirs = _load_measurements(meas_dirs)
    if reads_extended(model):
        for m in loaded:
            _check_extended_features(m)
    datasets = [_Dataset(m) for m in loaded]
    names = [ds.name for ds in datasets]
    for ds in datasets:  # same directory names in different places: label them by path
        if names.count(ds.name) > 1 and ds.meas.path is not None:
            ds.name = str(ds.meas.path)
    measured = datasets[0].meas.categories
    catalog = _Catalog(measured)
    notes: dict[str, str] = {}
    genetic_info: list[dict[str, object]] = []
    try:
        if {Method.GENETIC, Method.DEFAULTS} & set(wanted):
            for ds in datasets:  # both run on the data: a missing or changed source fails now
                ds.source()
        # 1. every method's choice, as catalog ids; 2. the costs of the choices
        picks = _choose(
            model, datasets, catalog, perf, tradeoffs, wanted, notes, genetic_info, progress,
            verify, decide_every,
        )  # fmt: skip
        for i, ds in enumerate(datasets):
            ds.fill_costs(catalog, [p[i] for p in picks.values()], progress=progress)
        trials = None
        if model is not None:  # the candidates' costs are known now: keep the best of each
            picks[Method.MODEL], trials = verified_choices(datasets, picks[Method.MODEL], perf,
                                                           tradeoffs)  # fmt: skip
    finally:
        for ds in datasets:
            ds.close()

    # 3. objective, oracles (the best known and the best measured category of each chunk)
    frames = []
    for i, ds in enumerate(datasets):
        j = objective_matrix(ds.nbytes, ds.cbytes, ds.ctime, ds.dtime, perf, tradeoffs)
        known = np.where(np.isnan(j), -np.inf, j)
        oracle = best_index(known)
        best = np.take_along_axis(known, oracle[..., None], axis=-1)[..., 0]
        best = (best, j[..., : catalog.nmeasured].max(axis=-1))
        frames.append(_frame(ds, Method.ORACLE, oracle, j, best, tradeoffs, catalog))
        for method in ALL_METHODS:
            if method in picks:
                extra = trials[i] if method is Method.MODEL and trials is not None else None
                ids = picks[method][i]
                frames.append(_frame(ds, method, ids, j, best, tradeoffs, catalog, extra, perf))
    choices = pd.concat(frames, ignore_index=True)
    summary = summary_table(choices, perf)
    frontier = frontier_table(datasets_matrices(datasets), measured, perf)
    meta = _meta(models_dir, model, datasets, perf, tradeoffs, wanted, genetic_info)
    if model is not None:
        meta["model_format"] = model_format.value
        meta["model_file"] = str(Path(model.tflite_path).name)
        meta["verify"] = verify
        meta["decide_every"] = decide_every
    inputs = [*([models_dir] if models_dir is not None else []), *meas_dirs]
    inputs += [ds.meas.meta["input"]["path"] for ds in datasets if _recorded_path(ds.meas)]
    return Evaluation(perf, summary, choices, frontier, notes, meta, tuple(map(str, inputs)))


def _load_measurements(
    items: MeasInput | Sequence[MeasInput],
) -> tuple[list[Measurements], list[str | os.PathLike[str]]]:
    """The measurements to evaluate (loaded where given as directories; one category set),
    and the directories among them (each named once)."""
    from .measurements import Measurements, check_each_once, check_same_categories

    if isinstance(items, (str, os.PathLike, Measurements)):
        items = [items]
    expected = "measurement directories (paths) or Measurements, at least one"
    if not isinstance(items, (list, tuple)) or not items:
        raise InputError(invalid("measurement directories", items, expected))
    items = list(items)
    if not all(isinstance(m, (str, os.PathLike, Measurements)) for m in items):
        raise InputError(invalid("measurement directories", items, expected))
    dirs = [d for d in items if not isinstance(d, Measurements)]
    check_each_once(dirs)
    loaded = [m if isinstance(m, Measurements) else Measurements.load(m) for m in items]
    check_same_categories(loaded)
    return loaded, dirs


def group_firsts(chunk_ids: np.ndarray, group: int) -> np.ndarray:
    """For each of the sorted ``chunk_ids``, the position of the first of them in its group of
    ``group`` consecutive chunk indices (the chunk whose decision it takes)."""
    _, first, inverse = np.unique(chunk_ids // group, return_index=True, return_inverse=True)
    return first[inverse]


def model_candidates(
    model: BtuneModel | ExtendedModel | NeighborsModel,
    meas: Measurements,
    tradeoffs: Sequence[float],
    verify: int = 1,
    group: int = 1,
) -> np.ndarray:
    """The model's ``verify`` best-scored category indices for every measured chunk, as the
    Python engine computes them: int64 ``(ntradeoffs, verify, nchunks)``, best first; with
    ``group`` > 1 each chunk takes those of the first measured chunk of its group
    (:func:`group_firsts`).

    A plugin-format model reads the gather's cratio and speed features, an extended model its
    cratio and extended features (:func:`btune_wrap.features.measured_features`)."""
    from .model import plugin_tradeoff

    out = np.empty((len(tradeoffs), verify, meas.nchunks), dtype=np.int64)
    feats = meas.features()
    extra = meas.extra_features() if reads_extended(model) else None
    for k, t in enumerate(tradeoffs):
        t = plugin_tradeoff(t)
        if extra is not None:
            rows = model.choose_many(feats[:, 0], extra, meas.meta["dtype"], t, verify)
        else:
            rows = model.choose_many(feats[:, 0], feats[:, 1], t, verify)
        out[k] = np.asarray(rows, dtype=np.int64).reshape(meas.nchunks, verify).T
    if group > 1:
        out = out[..., group_firsts(meas.chunks["chunk"].to_numpy(np.int64), group)]
    return out


def verified_choices(
    datasets: Sequence[_Dataset],
    candidates: Sequence[np.ndarray],
    mode: PerfMode,
    tradeoffs: Sequence[float],
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Verification as the Python engine does it (:func:`btune_wrap.engine._verify`), on the
    measured costs: per dataset, of the candidates ``(ntradeoffs, k, nchunks)`` (catalog ids)
    the one of best ``J``, ``(ntradeoffs, nchunks)``; and the compression seconds of the
    other trials, which count in that chunk's time in COMP (``None`` when ``k`` is 1; zero in
    DECOMP, whose readers do not pay for them)."""
    if candidates[0].shape[1] == 1:
        return [c[:, 0, :] for c in candidates], None
    t = np.asarray(tradeoffs, dtype=np.float64)[:, None, None]
    chosen, trials = [], []
    for ds, cand in zip(datasets, candidates, strict=True):
        rows = np.arange(ds.nchunks)[None, None, :]
        ctime = ds.ctime[rows, cand]
        j = chunk_objective(ds.nbytes[rows], ds.cbytes[rows, cand], ctime, ds.dtime[rows, cand],
                            mode, t)  # fmt: skip
        best = np.argmax(j, axis=1)  # the first (best-scored) on ties, as the engine
        chosen.append(np.take_along_axis(cand, best[:, None, :], axis=1)[:, 0, :])
        kept = np.take_along_axis(ctime, best[:, None, :], axis=1)[:, 0, :]
        counts = cost_mode(mode) is not PerfMode.DECOMP
        trials.append(ctime.sum(axis=1) - kept if counts else np.zeros_like(kept))
    return chosen, trials


def _choose(
    model: BtuneModel | ExtendedModel | NeighborsModel | None,
    datasets: Sequence[_Dataset],
    catalog: _Catalog,
    perf: PerfMode,
    tradeoffs: tuple[float, ...],
    wanted: tuple[Method, ...],
    notes: dict[str, str],
    genetic_info: list[dict[str, object]],
    progress: bool,
    verify: int = 1,
    group: int = 1,
) -> dict[Method, list[np.ndarray]]:
    """Each method's choices: per dataset, catalog ids of shape (ntradeoffs, nchunks); the
    model's are its candidates ``(ntradeoffs, verify, nchunks)``, resolved after their costs
    are known (:func:`verified_choices`)."""
    ntrade = len(tradeoffs)
    picks: dict[Method, list[np.ndarray]] = {}
    if model is not None:
        model_ids = np.array([catalog.add(c) for c in model.categories])
        picks[Method.MODEL] = [
            model_ids[model_candidates(model, ds.meas, tradeoffs, verify, group)] for ds in datasets
        ]
    if Method.FIXED_BEST in wanted:
        picks[Method.FIXED_BEST] = [
            np.repeat(ds.fixed_best(perf, tradeoffs)[:, None], ds.nchunks, axis=1)
            for ds in datasets
        ]
    if Method.GENETIC in wanted:
        support = plugin_support()
        if not support:
            notes[Method.GENETIC.value] = f"not evaluated: {support.reason}"
        else:
            picks[Method.GENETIC] = []
            # One child process per dataset runs the plugin for every tradeoff: starting one
            # cost 1.0-1.4 s, a genetic run 10-90 ms (benchmarks/bench_isolate.py, loaded).
            for ds in _progress(datasets, progress, "genetic"):
                ids = np.empty((ntrade, ds.nchunks), dtype=np.int64)
                array = np.asarray(ds.source().load_array())
                choices = genetic_choices(
                    array,
                    perf,
                    tradeoffs,
                    chunks=ds.meas.meta.get("chunks"),
                    blocks=ds.meas.meta.get("blocks"),
                    nthreads=ds.nthreads,
                )
                for k, (t, (cat, row)) in enumerate(zip(tradeoffs, choices, strict=True)):
                    ids[k] = catalog.add(cat)
                    genetic_info.append(
                        {
                            "dataset": ds.name,
                            "tradeoff": t,
                            "category": cat.name,
                            "cthreads": row.cthreads,
                            "dthreads": row.dthreads,
                            "trace_cratio": row.cratio,
                        }
                    )
                picks[Method.GENETIC].append(ids)
    if Method.DEFAULTS in wanted:
        default_id = catalog.add(default_category())
        picks[Method.DEFAULTS] = [
            np.full((ntrade, ds.nchunks), default_id, dtype=np.int64) for ds in datasets
        ]
    return picks


def _check_methods(methods: Sequence[Method | str]) -> tuple[Method, ...]:
    if isinstance(methods, (str, Method)):
        methods = [methods]
    chosen = {Method.parse(m) for m in methods}
    if not chosen - {Method.ORACLE}:
        raise ConfigError(
            invalid("methods", list(methods), "at least one method besides the oracle")
        )
    return tuple(m for m in ALL_METHODS if m in chosen or m is Method.ORACLE)


def load_mode_model(
    models_dir: str | os.PathLike[str],
    mode: PerfMode,
    model_format: ModelFormat | str = ModelFormat.PLUGIN,
) -> BtuneModel | ExtendedModel | NeighborsModel:
    """The model ``mode`` uses in ``models_dir`` in ``model_format`` (``"engine"``: the
    extended one where there is one); a clear :class:`ModelError` when it has none."""
    from .model import (
        has_extended_model,
        load_extended_model,
        load_model,
        model_paths,
        models_path,
    )

    directory = models_path(models_dir)
    engine = parse_enum("model_format", model_format, ModelFormat) is ModelFormat.ENGINE
    if engine and directory.is_dir() and has_extended_model(directory, mode):
        return load_extended_model(directory, mode)
    tflite, meta_json = model_paths(directory, mode)
    if directory.is_dir() and not (tflite.is_file() and meta_json.is_file()):
        present = [
            m.name.lower()
            for m in (PerfMode.COMP, PerfMode.DECOMP)
            if all(p.is_file() for p in model_paths(directory, m))
        ]
        has = f"it has a model for {' and '.join(present)} only" if present else "it has none"
        raise ModelError(
            f"models_dir={str(directory)!r} has no model for mode {mode.name.lower()} "
            f"({tflite.name} and {meta_json.name}): {has}; evaluate with the mode the models "
            "were trained for, or train that mode"
        )
    return load_model(directory, mode)


def _check_extended_features(meas: Measurements) -> None:
    """An extended model reads the gather's extended feature columns: refuse a gather
    without them (made before they were recorded)."""
    if meas.extra_features() is None or not isinstance(meas.meta.get("dtype"), str):
        raise InputError(
            f"measurements {meas.name!r} lack the probe's extended features (gathered before "
            "they were recorded), which the extended model reads: gather them again, or "
            "evaluate the plugin-format model (model_format='plugin', --model-format plugin)"
        )


def trace_category(row: TraceRow) -> Category:
    """The category of a row of the plugin's table (``split`` 1 = always, else never)."""
    split = SplitMode.ALWAYS if row.split == 1 else SplitMode.NEVER
    return Category(row.codec, row.filter, row.clevel, split)


def genetic_choice(
    array: np.ndarray,
    mode: PerfMode,
    tradeoff: float,
    *,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    nthreads: int | None = None,
) -> tuple[Category, TraceRow]:
    """Run the plugin's genetic search over ``array``; return its final choice.

    The array is written in memory with Btune as the tuner (no models, ``tradeoff`` and
    ``mode`` as given, trace on); the final choice is the last winner row of the trace (the
    last row if no row won, as with chunks of special values). Returns the category and the row.
    """
    [choice] = genetic_choices(
        array, mode, [tradeoff], chunks=chunks, blocks=blocks, nthreads=nthreads
    )
    return choice


def genetic_choices(
    array: np.ndarray,
    mode: PerfMode,
    tradeoffs: Sequence[float],
    *,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    nthreads: int | None = None,
) -> list[tuple[Category, TraceRow]]:
    """:func:`genetic_choice` for each of ``tradeoffs``, all in one plugin child process."""
    configs = [BtuneConfig(tradeoff=float(t), perf_mode=mode, trace=True) for t in tradeoffs]
    traces = tuned_traces(
        array,
        configs,
        chunks=tuple(chunks) if chunks else None,
        blocks=tuple(blocks) if blocks else None,
        nthreads=nthreads,
    )
    choices = []
    for tradeoff, trace in zip(tradeoffs, traces, strict=True):
        rows = trace.winners or trace.rows
        if not rows:
            raise InputError(
                f"the Btune plugin printed no trace row for an array of shape {array.shape} "
                f"(tradeoff {tradeoff}, mode {mode.name}): its genetic choice is unknown"
            )
        choices.append((trace_category(rows[-1]), rows[-1]))
    return choices


def datasets_matrices(datasets: Sequence[_Dataset]) -> tuple[np.ndarray, ...]:
    """``(nbytes, cbytes, ctime, dtime)`` of the measured categories, all datasets stacked."""
    k = len(datasets[0].meas.categories)
    return (
        np.concatenate([ds.nbytes for ds in datasets]),
        *(np.concatenate([getattr(ds, n)[:, :k] for ds in datasets]) for n in _COSTS),
    )


def frontier_table(
    matrices: tuple[np.ndarray, ...], categories: Sequence[Category], mode: PerfMode
) -> pd.DataFrame:
    """Dataset totals of each measured category and whether it is on the ratio/speed frontier."""
    import pandas as pd

    cratio, cspeed, dspeed = totals(*matrices)
    speed = dspeed if mode is PerfMode.DECOMP else cspeed
    better = (cratio[None, :] >= cratio[:, None]) & (speed[None, :] >= speed[:, None])
    strictly = (cratio[None, :] > cratio[:, None]) | (speed[None, :] > speed[:, None])
    dominated = (better & strictly).any(axis=1)
    return pd.DataFrame(
        {
            "category": [c.name for c in categories],
            "cratio": cratio,
            "cspeed_gbs": cspeed / 1e9,
            "dspeed_gbs": dspeed / 1e9,
            "speed_gbs": speed / 1e9,
            "pareto": ~dominated,
        }
    )


def summary_table(choices: pd.DataFrame, mode: PerfMode) -> pd.DataFrame:
    """Per (tradeoff, method): mean/max regret, dataset totals, the choice and the best method."""
    import pandas as pd

    order = {m.value: i for i, m in enumerate(ALL_METHODS)}
    records = []
    for (t, method), g in choices.groupby(["tradeoff", "method"], sort=False):
        nbytes = float(g["nbytes"].sum())
        counts = g["category"].value_counts()
        if len(counts) == 1:
            choice = str(counts.index[0])
        else:
            choice = f"{len(counts)} categories, mostly {counts.index[0]}"
        _, cspeed, dspeed = totals(nbytes, g["cbytes"].sum(), g["ctime"].sum(), g["dtime"].sum())
        cspeed, dspeed = float(cspeed), float(dspeed)
        records.append(
            {
                "tradeoff": float(t),
                "method": method,
                "mean_regret": float(g["regret"].mean()),
                "mean_gain": float(g["gain"].mean()),
                "mean_gain_measured": float(g["gain_measured"].mean()),
                "max_regret": float(g["regret"].max()),
                "cratio": nbytes / float(g["cbytes"].sum()),
                "cspeed_gbs": cspeed / 1e9,
                "dspeed_gbs": dspeed / 1e9,
                "speed_gbs": (dspeed if mode is PerfMode.DECOMP else cspeed) / 1e9,
                "choice": choice,
            }
        )
    summary = pd.DataFrame.from_records(records)
    summary["_order"] = summary["method"].map(order)
    summary = summary.sort_values(["tradeoff", "_order"], ignore_index=True).drop(columns="_order")
    summary["best"] = False
    others = summary[summary["method"] != Method.ORACLE.value]
    if len(others):
        best_rows = others.groupby("tradeoff", sort=False)["mean_regret"].idxmin()
        summary.loc[best_rows.to_numpy(), "best"] = True
    return summary


#: The oracles :func:`gain_table` scores against (see the module docstring).
ORACLES = ("known", "measured")


def gain_table(choices: pd.DataFrame, oracle: str = "known") -> pd.DataFrame:
    """Mean gain per dataset and method, over chunks and tradeoffs.

    Parameters
    ----------
    choices
        :attr:`Evaluation.choices`, or several concatenated: evaluations of the same chunks
        by different methods (methods may be renamed, e.g. ``"general"``), a ``mode`` column
        telling modes apart.
    oracle
        ``"known"`` (default): against the best ``J`` any row holds for the same (mode,
        dataset, chunk, tradeoff): each evaluation's oracle and every choice, so the best known
        over all the evaluations given. ``"measured"``: against the best measured category
        (``j_measured``), the same whichever methods ran.

    Returns
    -------
    pandas.DataFrame
        Index ``dataset`` (``(mode, dataset)`` with a ``mode`` column), one column per method
        in :data:`ALL_METHODS` order then the others in order of appearance.
    """
    import pandas as pd

    from .parse import parse_choice

    oracle = parse_choice("oracle", oracle, ORACLES)
    rows = ["mode", "dataset"] if "mode" in choices.columns else ["dataset"]
    if oracle == "known":
        best = choices.groupby([*rows, "chunk", "tradeoff"], sort=False)["j"].transform("max")
    else:
        best = choices["j_measured"]
    gains = pd.DataFrame({k: choices[k] for k in [*rows, "method"]})
    gains["gain"] = gain(choices["j"].to_numpy(), best.to_numpy())
    table = gains.pivot_table(
        index=rows, columns="method", values="gain", aggfunc="mean", sort=False
    )
    order = [m.value for m in ALL_METHODS if m.value in table.columns]
    table = table[order + [m for m in table.columns if m not in order]]
    table.columns.name = None
    return table


# -- internals -----------------------------------------------------------------------------

_COSTS = ("cbytes", "ctime", "dtime")


class _Catalog:
    """Every category any method chose: the measured ones first, then the others."""

    def __init__(self, measured: Sequence[Category]) -> None:
        self.categories: list[Category] = list(measured)
        self.nmeasured = len(self.categories)
        self._index = {c: i for i, c in enumerate(self.categories)}

    def add(self, category: Category) -> int:
        if category not in self._index:
            self._index[category] = len(self.categories)
            self.categories.append(category)
        return self._index[category]


class _Dataset:
    """One measurement directory with cost matrices over the catalog (NaN where unknown)."""

    def __init__(self, meas: Measurements) -> None:
        self.meas = meas
        self.name = meas.name
        _check_complete(meas, self.name)
        nbytes, cbytes, ctime, dtime = meas.matrices()
        self.nbytes = nbytes
        self.cbytes, self.ctime, self.dtime = cbytes, ctime, dtime
        self.from_gather = np.ones(cbytes.shape, dtype=bool)
        self._source = None

    @property
    def nchunks(self) -> int:
        return self.meas.nchunks

    @property
    def nthreads(self) -> int:
        return int(self.meas.meta.get("nthreads") or 1)

    @property
    def repeats(self) -> int:
        return int(self.meas.meta.get("repeats") or 1)

    def fixed_best(self, mode: PerfMode, tradeoffs: Sequence[float]) -> np.ndarray:
        """Per tradeoff, the index of the measured category of best mean ``J`` over this
        dataset's chunks (the hindsight single category)."""
        k = len(self.meas.categories)
        j = objective_matrix(
            self.nbytes, self.cbytes[:, :k], self.ctime[:, :k], self.dtime[:, :k], mode, tradeoffs
        )
        return hindsight_best(j)

    def close(self) -> None:
        """Close the source, if it was opened."""
        if self._source is not None:
            self._source.close()
            self._source = None

    def source(self) -> ChunkSource:
        """The measured source, checked against the measurement's meta (opened once)."""
        if self._source is None:
            self._source = _open_source(self.meas)
        return self._source

    def fill_costs(self, catalog: _Catalog, picks: Sequence[np.ndarray], *, progress: bool):
        """Grow the cost matrices to the catalog and measure the chosen unknown costs."""
        n, k = self.cbytes.shape
        extra = len(catalog.categories) - k
        if extra > 0:
            pad = np.full((n, extra), np.nan)
            self.cbytes, self.ctime, self.dtime = (
                np.hstack([getattr(self, name), pad]) for name in _COSTS
            )
            self.from_gather = np.hstack([self.from_gather, np.zeros((n, extra), dtype=bool)])
        need = np.zeros(self.cbytes.shape, dtype=bool)
        for ids in picks:
            rows = np.broadcast_to(np.arange(n), ids.shape)
            need[rows.ravel(), ids.ravel()] = True
        need &= np.isnan(self.cbytes)
        for pos in _progress(np.flatnonzero(need.any(axis=1)), progress, f"measuring {self.name}"):
            self._measure_chunk(int(pos), np.flatnonzero(need[pos]), catalog)

    def _measure_chunk(self, pos: int, columns: np.ndarray, catalog: _Catalog) -> None:
        """Measure the categories ``columns`` on the chunk of row ``pos`` (the gather's codec)."""
        from .compressor import measure_cparams

        i = int(self.meas.chunks["chunk"].iloc[pos])
        source = self.source()
        buf = source.chunk(i)
        if buf.nbytes != self.nbytes[pos]:
            raise InputError(
                f"measurements {self.name!r}: chunk {i} of {self.meas.meta.get('source')!r} now "
                f"has {buf.nbytes} bytes, {int(self.nbytes[pos])} when measured: the source "
                "changed since the gather (gather it again)"
            )
        typesize, blocksize = int(self.meas.meta["typesize"]), source.chunk_blocksize(i)
        for col in columns:
            cparams = catalog.categories[col].to_cparams(
                typesize=typesize, blocksize=blocksize, nthreads=self.nthreads
            )
            m = measure_cparams(buf, cparams, repeats=self.repeats, nthreads=self.nthreads)
            self.cbytes[pos, col], self.ctime[pos, col], self.dtime[pos, col] = (
                m.cbytes,
                m.ctime,
                m.dtime,
            )


def _frame(
    ds: _Dataset,
    method: Method,
    ids: np.ndarray,
    j: np.ndarray,
    best: tuple[np.ndarray, np.ndarray],
    tradeoffs: Sequence[float],
    catalog: _Catalog,
    trials: np.ndarray | None = None,
    mode: PerfMode = PerfMode.COMP,
) -> pd.DataFrame:
    """Long rows (tradeoff-major) of dataset ``ds`` for one method's choices ``ids``
    (ntradeoffs, nchunks); ``best`` is the known and the measured oracle's ``J`` (ntradeoffs,
    nchunks);
    ``trials``, seconds of compression spent on other categories (verification), added
    to each chunk's ``ctime`` in ``mode``'s objective."""
    import pandas as pd

    j_oracle, j_measured = best
    ntrade, n = ids.shape
    rows = np.tile(np.arange(n), ntrade)
    cols = ids.ravel()
    names = np.array([c.name for c in catalog.categories], dtype=object)
    ctime = ds.ctime[rows, cols]
    j_chosen = np.take_along_axis(j, ids[..., None], axis=-1)[..., 0]
    if trials is not None:
        ctime = ctime + trials.ravel()
        t = np.repeat(np.asarray(tradeoffs, dtype=np.float64), n)
        cbytes, dtime = ds.cbytes[rows, cols], ds.dtime[rows, cols]
        j_chosen = chunk_objective(ds.nbytes[rows], cbytes, ctime, dtime, mode, t)
        j_chosen = j_chosen.reshape(ntrade, n)
    return pd.DataFrame(
        {
            "dataset": ds.name,
            "chunk": np.tile(ds.meas.chunks["chunk"].to_numpy(np.int64), ntrade),
            "tradeoff": np.repeat(np.asarray(tradeoffs, dtype=np.float64), n),
            "method": method.value,
            "category": names[cols],
            "nbytes": ds.nbytes[rows].astype(np.int64),
            "cbytes": ds.cbytes[rows, cols].astype(np.int64),
            "ctime": ctime,
            "dtime": ds.dtime[rows, cols],
            "j": j_chosen.ravel(),
            "j_oracle": j_oracle.ravel(),
            "regret": regret(j_chosen, j_oracle).ravel(),
            "gain": gain(j_chosen, j_oracle).ravel(),
            "j_measured": j_measured.ravel(),
            "gain_measured": gain(j_chosen, j_measured).ravel(),
            "cost_from": np.where(ds.from_gather[rows, cols], FROM_GATHER, FROM_EVALUATE),
        }
    )


def _check_complete(meas: Measurements, name: str) -> None:
    """Refuse measurements that lack chunks or features, or name chunks the source lacks."""
    meta, where = meas.meta, f"measurements {name!r}"
    n = meas.nchunks
    if n == 0:
        raise InputError(f"{where}: no chunk was measured")
    expected = meta.get("measured_chunks")
    if isinstance(expected, int) and expected != n:
        raise InputError(
            f"{where}: meta.json says {expected} chunks were measured but chunks.parquet "
            f"holds {n}: the measurement lacks chunks (an interrupted gather? use --resume)"
        )
    ids = meas.chunks["chunk"].to_numpy()
    total = meta.get("nchunks")
    if isinstance(total, int) and ((ids < 0).any() or (ids >= total).any()):
        raise InputError(
            f"{where}: chunk ids {sorted(set(ids[(ids < 0) | (ids >= total)].tolist()))[:10]}"
            f" are outside the source's {total} chunks"
        )
    if not np.isfinite(meas.features()).all():
        raise InputError(f"{where}: chunks.parquet has missing features")


def _recorded_path(meas: Measurements) -> bool:
    recorded = meas.meta.get("input")
    return isinstance(recorded, dict) and isinstance(recorded.get("path"), str)


def _open_source(meas: Measurements) -> ChunkSource:
    """Open the source a measurement was made from, with its chunk layout, and check it."""
    from .sources import open_source

    meta, where = meas.meta, f"measurements {meas.name!r}"
    name = str(meta.get("source", ""))
    fingerprint = meta.get("input") if isinstance(meta.get("input"), dict) else {}
    candidates = []
    if fingerprint.get("path"):
        inner = fingerprint.get("inner")
        candidates.append(str(fingerprint["path"]) + (f":{inner}" if inner else ""))
    if name:
        candidates.append(name)
        if meas.path is not None and not Path(name).is_absolute():
            candidates.append(str(meas.path.parent / name))
    source = None
    for candidate in candidates:
        try:
            source = open_source(candidate)
            break
        except InputError:
            continue
    if source is None:
        raise InputError(
            f"{where}: its source {name!r} cannot be opened; the evaluation measures blosc2's "
            "defaults and the genetic choice on the data itself, so the source must be readable"
        )
    layout = {"chunks": meta.get("chunks"), "blocks": meta.get("blocks")}
    if any(v is not None and list(v) != list(getattr(source, k)) for k, v in layout.items()):
        source.close()
        source = open_source(candidate, chunks=layout["chunks"], blocks=layout["blocks"])
    if not _same_input(meas, source):
        source.close()
        raise InputError(
            f"{where}: its source {candidate!r} was modified since the gather (its size or "
            "time and the chunks' probe features differ): the measurements no longer describe "
            "it; gather it again"
        )
    checks = {
        "shape": list(source.shape),
        "chunks": list(source.chunks),
        "blocks": list(source.blocks),
        "typesize": int(source.typesize),
        "nchunks": int(source.nchunks),
    }
    for key, value in checks.items():
        recorded = meta.get(key)
        if recorded is not None and recorded != value:
            source.close()
            raise InputError(
                f"{where}: its source {candidate!r} now has {key}={value}, {recorded} when "
                "measured: the source changed since the gather (gather it again)"
            )
    return source


#: Measured chunks whose probe features are compared when a source's size or time changed.
_RECHECKED_CHUNKS = 16


def _same_input(meas: Measurements, source: ChunkSource) -> bool:
    """Whether ``source`` still holds what ``meas`` measured.

    Same size and modification time as recorded: yes. Otherwise (a copy, a touch, a rewrite)
    the probe's cratio feature, which is deterministic, is computed again on up to
    :data:`_RECHECKED_CHUNKS` measured chunks spread over the data and must equal the recorded
    one bit for bit.
    """
    from .probe import chunk_features

    recorded = meas.meta.get("input") if isinstance(meas.meta.get("input"), dict) else {}
    now = source.fingerprint()
    if all(recorded.get(k) == now.get(k) for k in ("size", "mtime_ns") if k in recorded):
        return True
    chunks = meas.chunks
    picks = np.unique(np.linspace(0, len(chunks) - 1, _RECHECKED_CHUNKS).astype(int))
    for pos in picks:
        i = int(chunks["chunk"].iloc[pos])
        if i >= source.nchunks:
            return False
        buf = source.chunk(i)
        if buf.nbytes != int(chunks["nbytes"].iloc[pos]):
            return False
        feats = chunk_features(buf, source.typesize, source.chunk_blocksize(i))
        if feats.cratio != float(chunks["cratio_feature"].iloc[pos]):
            return False
    return True


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False)


def _meta(models_dir, model, datasets, mode, tradeoffs, methods, genetic_info) -> dict[str, object]:
    names = ", ".join(ds.name for ds in datasets)
    model_name = Path(models_dir).name if models_dir is not None else "-"
    return {
        "title": f"model {model_name!r} on {names} (mode {mode.name.lower()})",
        "mode": mode.name.lower(),
        "models_dir": str(Path(models_dir).resolve()) if models_dir is not None else None,
        "model_categories": [c.name for c in model.categories] if model is not None else None,
        "measurements": [
            {
                "name": ds.name,
                "path": str(ds.meas.path.resolve()) if ds.meas.path is not None else None,
                "source": ds.meas.meta.get("source"),
                "chunks": ds.nchunks,
                "repeats": ds.repeats,
                "nthreads": ds.nthreads,
            }
            for ds in datasets
        ],
        "measured_categories": [c.name for c in datasets[0].meas.categories],
        "tradeoffs": list(tradeoffs),
        "methods": [m.value for m in methods],
        "genetic": genetic_info,
        "plugin": plugin_support().reason,
        "versions": {d: installed_version(d) for d in ("btune_wrap", "blosc2", "blosc2-btune")},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _clean_json(value):
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
