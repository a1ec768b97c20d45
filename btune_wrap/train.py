"""Training: one small Keras network per performance mode, exported as the Btune plugin reads it.

From measurements (:mod:`btune_wrap.measure`) of a set of chunks:

* **Labels.** For every chunk and every tradeoff ``t`` of :attr:`TrainConfig.tradeoffs`, the
  best category under :mod:`btune_wrap.objective` (``J = t log cratio + (1 - t) log speed``,
  speed being compression speed in mode comp, decompression speed in mode decomp). The whole
  ``J`` matrix is kept so that the regret of any choice can be computed.
* **Inputs.** ``[cratio feature, speed feature, tradeoff]`` per (chunk, tradeoff), the two
  features normalized with the mean and standard deviation of the training chunks, in float32
  as the plugin computes them. The mean/std go into the model's JSON.
* **Split.** By chunk (all the rows of one chunk stay on one side), seeded: test chunks, then
  validation chunks (early stopping) out of the rest.
* **Network.** ``3 -> clip -> hidden ReLU layers -> one softmax score per category``. The clip
  holds each input inside its training range (an unseen feature value is read as the nearest
  seen one); the speed feature is zeroed unless :attr:`TrainConfig.use_speed`; the softmax
  keeps every score above -1, so the plugin's choice is exactly the argmax. Early stopping
  keeps the weights of the epoch with the lowest mean regret on the validation chunks.
* **Export.** ``model_<mode>.tflite`` (TFLite, converted from the Keras model) and
  ``model_<mode>.json`` (:class:`~btune_wrap.model.ModelMeta`), written atomically, plus the
  training report next to them: ``model_<mode>.report.json``, ``model_<mode>.history.png``
  and ``model_<mode>.tradeoffs.png``.

**Extended models** (Python engine only): where every measurement directory has the probe's
extended features, :func:`train_and_export` also fits ``model_<mode>.ext.*`` (inputs: the columns
:attr:`TrainConfig.features` of :mod:`btune_wrap.features`, normalized, and the tradeoff; same
labels, split, network and early stopping), after and apart from the plugin-format models, which
come out the same as without it.

TensorFlow is imported only when a model is trained or exported (inference needs only LiteRT).
:func:`fit` trains one mode, :func:`export` writes it; :func:`train_and_export` does both for
measurement directories, checking everything before it trains.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import quiet
from .atomic import atomic_dir, write_bytes, write_text
from .categories import Category
from .config import PerfMode
from .errors import ConfigError, InputError, invalid
from .features import DEFAULT_FEATURES, FEATURES, measured_features
from .measurements import Measurements, check_same_categories, load_many
from .model import EXT_INFIX, ExtendedMeta, ModelMeta, Normalization, model_stem
from .neighbors import SCALE_RANGE, WEIGHTINGS
from .objective import (
    TRADEOFFS,
    best_index,
    gain,
    hindsight_best,
    objective_matrix,
    parse_mode,
    regret,
)
from .outputs import check_target
from .parse import (
    parse_bool,
    parse_callback,
    parse_choice,
    parse_float,
    parse_int,
    parse_shape,
    parse_tradeoffs,
)

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from .neighbors import NeighborsModel

#: Fewest chunks :func:`fit` accepts: enough for at least one test, one validation and a few
#: training chunks.
MIN_CHUNKS = 10
#: Fewest chunks for which ``TrainConfig(extended=None)`` trains the extended model. Measured
#: on the real-data corpus (``benchmarks/bench_features.py --learner net``): trained on the
#: ~20 even chunks of one array, the extended network chose categories 30-100x worse than the
#: best on the odd chunks of 3 of 9 arrays in COMP mode (overfitting inputs that barely vary
#: within an array), while trained on the ~190 even chunks of all arrays it cut the mean gain
#: from 93% to 26%.
EXT_MIN_CHUNKS = 100
#: How many of the most predicted categories the per-tradeoff table shows.
TOP_PREDICTED = 3
#: File suffixes of the training report written next to ``model_<mode>.*``.
REPORT_SUFFIXES = (".report.json", ".history.png", ".tradeoffs.png")
SPLITS = ("train", "validation", "test")

_MODES_HELP = "'c', 'comp', 'd', 'decomp' or 'both'"
#: Bounds of the network's shape: the plugin's tiny models have 2 hidden layers of 64; these
#: leave room to experiment and keep TensorFlow from asking for terabytes.
MAX_LAYERS = 8
#: Below this many chunks a plugin-format model is the constant one (:attr:`TrainConfig.constant`).
CONSTANT_BELOW = 100
#: What an extended model may be (:attr:`TrainConfig.extended_kind`).
EXT_KINDS = ("neighbors", "network")
#: What training may minimize (:attr:`TrainConfig.loss`).
LOSSES = ("labels", "gain")
#: Largest gain a training target counts (``loss="gain"``): one chunk 100x worse than its
#: best must not outweigh everything else.
MAX_GAIN = 10.0
MAX_LAYER_SIZE = 4096


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model (validated at construction).

    Parameters
    ----------
    hidden
        Sizes of the hidden ReLU layers. Default ``(64, 64)`` (chosen by measurement, see
        ``benchmarks/bench_train.py``).
    epochs
        Most passes over the training rows. Default 300.
    batch_size
        Rows per gradient step. Default 256.
    learning_rate
        Adam's learning rate. Default 0.003.
    patience
        Epochs without a better validation regret before stopping (the best weights are kept).
        Default 25.
    temperature
        0 (default) trains on the best category only (cross-entropy on the label). A positive
        value trains on soft targets ``softmax((J - J_best) / temperature)`` instead, giving
        categories almost as good as the best some of the credit (measured: no better).
    loss
        What training minimizes: ``"labels"`` (default) the cross-entropy with the targets
        above; ``"gain"`` the expected gain of the network's softmax over the categories,
        ``sum_c p_c * min(exp(J_best - J_c) - 1, MAX_GAIN)``: the quantity evaluation reports,
        so a category that is rarely best but never far from it is preferred to one that is
        often best and sometimes very bad.
    constant
        True: train a network that reads the tradeoff only (every feature multiplied by 0),
        on the one category of best mean ``J`` over the training and validation chunks at
        each tradeoff (:func:`btune_wrap.objective.hindsight_best`): the dataset's hindsight
        category as a model. None (default): so for a plugin-format model from fewer than
        :data:`CONSTANT_BELOW` chunks. Measured on the real-data corpus (a model per dataset
        from its ~14 even chunks, tested on the odd ones, ``benchmarks/bench_quality.py``), the
        networks that read the cratio feature chose far worse than that constant (mean gain
        79% COMP / 186% DECOMP against 35% / 27%). False: never.
    use_speed
        Let the network use the speed feature. Default False: the input keeps its place but is
        multiplied by 0. The speed feature is a timing, relative to the machine and to what
        the process does around the probe; measured, it added nothing over the cratio feature
        and made the choices fragile when its level shifts between gather and inference (see
        ``benchmarks/bench_train.py``).
    test_fraction
        Share of the chunks held out for testing. Default 0.2.
    validation_fraction
        Share of the remaining chunks used for early stopping. Default 0.15.
    seed
        Seed of the split, the initial weights and the shuffling. Default 0.
    tradeoffs
        Tradeoffs the labels are made for (each in [0, 1]). Default :data:`TRADEOFFS`
        (0, 0.1, ..., 1).
    extended
        Whether :func:`train_and_export` also trains the extended model of each mode
        (``model_<mode>.ext.*``, read by the Python engine only; the plugin-format files are
        written as without it): ``None`` (default) when every measurement directory has the
        extended features (gathers since they are recorded) and there are at least
        :data:`EXT_MIN_CHUNKS` chunks, True whenever they have the features (an error if
        not), False never.
    extended_kind
        What the extended model is: ``"neighbors"`` (default; :mod:`btune_wrap.neighbors`, the
        category of least mean gain over the nearest training chunks, trained from any number
        of chunks) or ``"network"`` (a network of the features and the tradeoff, from
        :data:`EXT_MIN_CHUNKS` chunks when ``extended`` is None). Measured on the real-data
        corpus, the neighbours chose better both per dataset and on unseen kinds of data.
    features
        The extended model's input columns (names of :data:`btune_wrap.features.FEATURES`).
        Default :data:`btune_wrap.features.DEFAULT_FEATURES`.
    fallback
        Whether a neighbours model of one dataset leans (weight
        :data:`btune_wrap.neighbors.ONE_ARRAY_PRIOR`) on the general model shipped with the
        package, where that has the same categories and features
        (:func:`btune_wrap.neighbors.general_fallback`); default True. False: on its own
        table's mean gain.
    weighting
        How a neighbours model averages its neighbours' gains
        (:data:`btune_wrap.neighbors.WEIGHTINGS`); default ``"gaussian"``.
    neighbors_scale
        A neighbours model consults ``max(5, round(neighbors_scale * sqrt(n)))`` of its ``n``
        training chunks (:func:`btune_wrap.neighbors.default_neighbors`); default 1.
    """

    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 300
    batch_size: int = 256
    learning_rate: float = 3e-3
    patience: int = 25
    temperature: float = 0.0
    loss: str = "labels"
    constant: bool | None = None
    use_speed: bool = False
    test_fraction: float = 0.2
    validation_fraction: float = 0.15
    seed: int = 0
    tradeoffs: tuple[float, ...] = TRADEOFFS
    extended: bool | None = None
    extended_kind: str = "neighbors"
    features: tuple[str, ...] = DEFAULT_FEATURES
    fallback: bool = True
    weighting: str = "gaussian"
    neighbors_scale: float = 1.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.hidden, (Sequence, np.ndarray)) and len(self.hidden) > MAX_LAYERS:
            raise ConfigError(invalid("hidden", self.hidden, f"at most {MAX_LAYERS} layers"))
        set_(self, "hidden", parse_shape("hidden", self.hidden, high=MAX_LAYER_SIZE))
        set_(self, "epochs", parse_int("epochs", self.epochs, 1))
        set_(self, "batch_size", parse_int("batch_size", self.batch_size, 1))
        set_(self, "seed", parse_int("seed", self.seed, 0, 2**32 - 1))
        set_(self, "patience", parse_int("patience", self.patience, 1))
        set_(self, "learning_rate", parse_float("learning_rate", self.learning_rate, 1e-9, 0.999))
        set_(self, "temperature", parse_float("temperature", self.temperature, 0.0))
        set_(self, "loss", parse_choice("loss", self.loss, LOSSES))
        if self.constant is not None:
            set_(self, "constant", parse_bool("constant", self.constant))
        set_(self, "extended_kind", parse_choice("extended_kind", self.extended_kind, EXT_KINDS))
        set_(self, "use_speed", parse_bool("use_speed", self.use_speed))
        set_(self, "fallback", parse_bool("fallback", self.fallback))
        set_(self, "weighting", parse_choice("weighting", self.weighting, WEIGHTINGS))
        scale = parse_float("neighbors_scale", self.neighbors_scale, *SCALE_RANGE)
        set_(self, "neighbors_scale", scale)
        for name in ("test_fraction", "validation_fraction"):
            set_(self, name, parse_float(name, getattr(self, name), 0.01, 0.49))
        set_(self, "tradeoffs", parse_tradeoffs("tradeoffs", self.tradeoffs))
        if self.extended is not None:
            set_(self, "extended", parse_bool("extended", self.extended))
        names = self.features
        if (
            isinstance(names, str)
            or not isinstance(names, (Sequence, np.ndarray))
            or not len(names)
            or any(n not in FEATURES for n in names)
            or len(set(names)) != len(names)
        ):
            expected = f"a non-empty sequence of distinct names among {list(FEATURES)}"
            raise ConfigError(invalid("features", names, expected))
        set_(self, "features", tuple(str(n) for n in names))


def parse_modes(mode: str | PerfMode) -> tuple[PerfMode, ...]:
    """The modes to train: ``c``/``comp`` -> (COMP,), ``d``/``decomp`` -> (DECOMP,),
    ``both`` -> (COMP, DECOMP)."""
    if isinstance(mode, str) and mode.strip().lower() == "both":
        return (PerfMode.COMP, PerfMode.DECOMP)
    try:
        return (parse_mode(mode),)
    except ConfigError:
        raise ConfigError(invalid("mode", mode, _MODES_HELP)) from None


# -- the data: labels, objective values, inputs, split --------------------------------------


@dataclass
class TrainingSet:
    """Everything training needs from one or more measurement sets, for one mode.

    Attributes
    ----------
    mode
        COMP or DECOMP: which speed the objective uses.
    categories
        The categories, in the order of the network's outputs.
    tradeoffs
        Shape ``(ntradeoffs,)``.
    sources, chunks
        Per chunk: the name of its measurement set and its index there, shape ``(nchunks,)``.
    features
        Raw ``(cratio feature, speed feature)`` per chunk, shape ``(nchunks, 2)``.
    nbytes, cbytes, ctime, dtime
        The measurements (see :meth:`Measurements.matrices`).
    j
        The objective of every (tradeoff, chunk, category), shape
        ``(ntradeoffs, nchunks, ncategories)`` (:func:`btune_wrap.objective.objective_matrix`).
    labels
        The best category per (tradeoff, chunk): :func:`btune_wrap.objective.best_index` of ``j``.
    extended
        The extended model's input columns (:data:`btune_wrap.features.FEATURES`) per chunk,
        shape ``(nchunks, len(FEATURES))``; ``None`` unless every set has them.
    """

    mode: PerfMode
    categories: tuple[Category, ...]
    tradeoffs: np.ndarray
    sources: np.ndarray
    chunks: np.ndarray
    features: np.ndarray
    nbytes: np.ndarray
    cbytes: np.ndarray
    ctime: np.ndarray
    dtime: np.ndarray
    j: np.ndarray
    labels: np.ndarray
    extended: np.ndarray | None = None

    @property
    def nchunks(self) -> int:
        return len(self.chunks)

    def regret(self, chosen: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Regret of choosing ``chosen[t, k]`` for chunk ``rows[k]`` at tradeoff ``t``.

        ``chosen`` has shape ``(ntradeoffs, len(rows))``; ``rows`` defaults to every chunk.
        """
        rows = np.arange(self.nchunks) if rows is None else np.asarray(rows)
        j = self.j[:, rows, :]
        picked = np.take_along_axis(j, np.asarray(chosen)[..., None], axis=-1)[..., 0]
        return regret(picked, j.max(axis=-1))


def prepare(
    measurements: Measurements | Sequence[Measurements],
    mode: str | PerfMode,
    tradeoffs: Sequence[float] = TRADEOFFS,
) -> TrainingSet:
    """Combine measurement sets and compute the objective and labels for ``mode``.

    Parameters
    ----------
    measurements
        One :class:`Measurements` or several measured with the same categories.
    mode
        ``"c"``/``"comp"`` or ``"d"``/``"decomp"``.
    tradeoffs
        Tradeoffs to label for. Default :data:`TRADEOFFS`.
    """
    perf_mode = parse_mode(mode)
    if isinstance(measurements, Measurements):
        sets = [measurements]
    elif isinstance(measurements, (list, tuple)):
        sets = list(measurements)
    else:
        sets = []
    if not sets or not all(isinstance(m, Measurements) for m in sets):
        raise InputError(
            invalid("measurements", measurements, "a Measurements or a non-empty list of them")
        )
    check_same_categories(sets)
    first = sets[0]
    parts = [m.matrices() for m in sets]
    nbytes, cbytes, ctime, dtime = (np.concatenate([p[i] for p in parts]) for i in range(4))
    t = np.asarray(tradeoffs, dtype=np.float64)
    j = objective_matrix(nbytes, cbytes, ctime, dtime, perf_mode, t)
    ext = [measured_features(m) for m in sets]
    return TrainingSet(
        mode=perf_mode,
        categories=first.categories,
        tradeoffs=t,
        sources=np.concatenate([np.full(m.nchunks, m.name, dtype=object) for m in sets]),
        chunks=np.concatenate([m.chunks["chunk"].to_numpy(np.int64) for m in sets]),
        features=np.concatenate([m.features() for m in sets]),
        nbytes=nbytes,
        cbytes=cbytes,
        ctime=ctime,
        dtime=dtime,
        j=j,
        labels=best_index(j),
        extended=None if any(e is None for e in ext) else np.concatenate(ext),
    )


def split_chunks(nchunks: int, config: TrainConfig = TrainConfig()) -> dict[str, np.ndarray]:
    """Seeded split of chunk indices into ``train``, ``validation`` and ``test`` (sorted).

    Raises :class:`InputError` when there are too few chunks for three non-empty sides.
    """
    n_test = max(1, round(nchunks * config.test_fraction))
    n_val = max(1, round((nchunks - n_test) * config.validation_fraction))
    if nchunks < MIN_CHUNKS or nchunks - n_test - n_val < 1:
        raise InputError(
            invalid(
                "measured chunks",
                nchunks,
                f"at least {MIN_CHUNKS} to split into training, validation and test chunks "
                "(gather more chunks, e.g. a larger input or a higher --max-chunks)",
            )
        )
    order = np.random.default_rng(config.seed).permutation(nchunks)
    return {
        "test": np.sort(order[:n_test]),
        "validation": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }


def normalization(features: np.ndarray) -> tuple[Normalization, Normalization]:
    """Mean/std of the cratio and speed features (a zero or non-finite std becomes 1)."""
    norms = []
    for col in range(2):
        values = features[:, col]
        mean, std = float(np.mean(values)), float(np.std(values))
        if not math.isfinite(std) or np.float32(std) == 0:
            std = 1.0
        norms.append(Normalization(mean, std))
    return norms[0], norms[1]


def inputs(meta: ModelMeta, features: np.ndarray, tradeoffs: Sequence[float]) -> np.ndarray:
    """Network inputs for every (tradeoff, chunk): float32 ``(ntradeoffs, nchunks, 3)``.

    The features are normalized in float32 exactly as the plugin does (see
    :meth:`Normalization.apply`); the tradeoff is the float32 value the plugin feeds.
    """
    t = np.asarray(tradeoffs, dtype=np.float32)
    out = np.empty((len(t), len(features), 3), dtype=np.float32)
    out[:, :, 0] = meta.cratio.apply(features[:, 0])
    out[:, :, 1] = meta.speed.apply(features[:, 1])
    out[:, :, 2] = t[:, None]
    return out


# -- the model ----------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted model for one mode and everything known about its training.

    Attributes
    ----------
    mode
        COMP (file ``model_comp.*``) or DECOMP (``model_decomp.*``).
    model
        The Keras model: float32 ``(n, 3)`` inputs -> ``(n, ncategories)`` softmax scores.
    meta
        The JSON the plugin reads (normalization and categories).
    config
        The training configuration.
    data
        The training set (labels, objective values, measurements).
    split
        Chunk indices into ``data`` per side: ``train``, ``validation``, ``test``.
    history
        Per epoch: ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy``, ``val_regret``.
    predictions
        The category the model picks per (tradeoff, chunk), shape ``(ntradeoffs, nchunks)``.
    scores
        Per (split, tradeoff): top-1/top-3 accuracy and mean regret (see :func:`score_table`).
    predicted
        Per tradeoff: the most predicted categories and what they measured
        (see :func:`predicted_table`).
    elapsed
        Seconds spent fitting.
    """

    mode: PerfMode
    model: keras.Model
    meta: ModelMeta
    config: TrainConfig
    data: TrainingSet
    split: dict[str, np.ndarray]
    history: dict[str, list[float]]
    predictions: np.ndarray
    scores: pd.DataFrame
    predicted: pd.DataFrame
    elapsed: float
    best_epoch: int = 0
    extended: bool = False

    @property
    def stem(self) -> str:
        """``model_comp`` or ``model_decomp`` (``model_comp.ext``, ``model_decomp.ext`` for
        an extended model)."""
        return model_stem(self.mode) + (EXT_INFIX if self.extended else "")

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """The network's scores for float32 input rows ``(n, width)`` -> ``(n, ncategories)``."""
        return _predict(self.model, rows)

    def report(self) -> dict[str, Any]:
        """The training report as plain JSON-ready data."""
        return {
            "mode": self.mode.name.lower(),
            "files": [f"{self.stem}.tflite", f"{self.stem}.json"],
            "legend": [
                [i, c.name, list(c.to_plugin())] for i, c in enumerate(self.meta.categories)
            ],
            "normalization": {k: v for k, v in self.meta.to_dict().items() if k != "categories"},
            "config": asdict(self.config),
            "chunks": {
                side: [[str(self.data.sources[i]), int(self.data.chunks[i])] for i in idx]
                for side, idx in self.split.items()
            },
            "epochs": len(self.history.get("loss", [])),
            "best_epoch": self.best_epoch,
            "elapsed_s": round(self.elapsed, 3),
            "history": self.history,
            "scores": self.scores.to_dict(orient="records"),
            "predicted": self.predicted.to_dict(orient="records"),
        }


def _keras():
    """Import Keras (TensorFlow backend) quietly; :class:`ConfigError` if it is missing."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # The plugin's library is already loaded (btune_wrap.plugin does it on import), so the
    # plugin can still load models in this process once TensorFlow is in.
    try:
        with quiet.tensorflow_logs():
            import keras
            import tensorflow  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"training needs TensorFlow and Keras ({exc}): install btune_wrap[train]"
        ) from None
    return keras


def _predict(model: keras.Model, rows: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    rows = rows.reshape(-1, rows.shape[-1])
    out = model(rows, training=False)
    return np.asarray(out)


def _build(
    keras,
    config: TrainConfig,
    ncategories: int,
    low: np.ndarray,
    high: np.ndarray,
    mask: np.ndarray | None = None,
) -> keras.Model:
    """The network: the inputs clipped to the training range ``[low, high]`` (features never
    seen in training are read as the nearest seen ones) and multiplied by ``mask`` (the
    plugin's format zeroes the speed feature unless ``config.use_speed``; default all ones),
    then the hidden ReLU layers and a softmax over the categories.

    The clip is made of two fixed fully-connected layers, ``low + relu(x - low) -
    relu(x - high)``, because the plugin's TFLite runtime crashes on MAXIMUM/MINIMUM ops.
    """
    low = np.asarray(low, dtype=np.float32)
    high = np.maximum(np.asarray(high, dtype=np.float32), low)
    width = low.size
    mask = np.ones(width, dtype=np.float32) if mask is None else mask
    eye = np.eye(width, dtype=np.float32)
    inp = keras.Input(shape=(width,), dtype="float32", name="features")
    excess = keras.layers.Dense(2 * width, activation="relu", trainable=False, name="clip_excess")
    clipped = keras.layers.Dense(width, trainable=False, name="clip")
    x = clipped(excess(inp))
    excess.set_weights([np.concatenate([eye, eye], axis=1), np.concatenate([-low, -high])])
    clipped.set_weights([np.concatenate([eye, -eye], axis=0) * mask, low * mask])
    for h in config.hidden:
        x = keras.layers.Dense(h, activation="relu")(x)
    out = keras.layers.Dense(ncategories, activation="softmax", name="scores")(x)
    model = keras.Model(inp, out)

    if config.loss == "gain":  # targets are gains: the best category has the least

        def expected_gain(gains, scores):
            return keras.ops.sum(gains * scores, axis=-1)

        def accuracy(gains, scores):
            best = keras.ops.argmin(gains, axis=-1)
            return keras.ops.cast(keras.ops.argmax(scores, axis=-1) == best, "float32")

        loss, metric = expected_gain, accuracy
    else:
        loss = keras.losses.CategoricalCrossentropy()
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=loss,
        metrics=[metric],
    )
    return model


def _one_hot(labels: np.ndarray, nchunks: int, ncategories: int) -> np.ndarray:
    """One-hot rows for the label of each tradeoff, repeated for ``nchunks`` chunks."""
    p = np.zeros((len(labels), nchunks, ncategories), dtype=np.float32)
    p[np.arange(len(labels)), :, labels] = 1.0
    return p.reshape(-1, ncategories)


def _targets(
    data: TrainingSet, rows: np.ndarray, temperature: float, loss: str = "labels"
) -> np.ndarray:
    """Training targets for ``rows``: one-hot labels, soft ones at ``temperature`` > 0, or
    each category's gain (clipped at :data:`MAX_GAIN`) for ``loss="gain"``."""
    j = data.j[:, rows, :]
    if loss == "gain":
        p = np.minimum(gain(j, j.max(axis=-1, keepdims=True)), MAX_GAIN)
    elif temperature > 0:
        z = (j - j.max(axis=-1, keepdims=True)) / temperature
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
    else:
        p = np.zeros_like(j)
        np.put_along_axis(p, data.labels[:, rows, None], 1.0, axis=-1)
    return p.reshape(-1, j.shape[-1]).astype(np.float32)


def fit(
    measurements: Measurements | Sequence[Measurements],
    mode: str | PerfMode = "comp",
    config: TrainConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    extended: bool = False,
) -> TrainedModel:
    """Train the model of one mode (the plugin's format, or the extended one).

    Parameters
    ----------
    measurements
        One :class:`Measurements` or several (same categories), e.g. from
        :func:`btune_wrap.measurements.load_many`.
    mode
        ``"c"``/``"comp"`` or ``"d"``/``"decomp"``. Default ``"comp"``.
    config
        How to train; default :class:`TrainConfig()`.
    progress
        Called with one line per epoch (and a last summary line); ``None`` (default) is silent.
    extended
        Train the extended model (inputs: ``config.features`` and the tradeoff; exported as
        ``model_<mode>.ext.*``) instead of the plugin's. Default False.

    Raises
    ------
    InputError
        Too few chunks to split, measurement sets with different categories, or (``extended``)
        measurements without the extended features.
    ConfigError
        A bad mode, or TensorFlow is not installed.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ConfigError(invalid("config", config, "a TrainConfig"))
    progress = parse_callback("progress", progress)
    extended = parse_bool("extended", extended)
    data = prepare(measurements, mode, config.tradeoffs)
    if extended and data.extended is None:
        raise InputError(_NO_EXTENDED)
    split = split_chunks(data.nchunks, config)
    keras = _keras()
    t_start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    _deterministic()

    if extended:
        meta, mask = _extended_meta(data, split["train"], config), None
        values = data.extended[:, [FEATURES.index(f) for f in meta.features]]
        x_all = meta.inputs(values, data.tradeoffs)  # (nt, nchunks, nfeatures + 1)
    else:
        norm_c, norm_s = normalization(data.features[split["train"]])
        meta = ModelMeta(norm_c, norm_s, data.categories)
        mask = np.array([1, 1 if config.use_speed else 0, 1], dtype=np.float32)
        x_all = inputs(meta, data.features, data.tradeoffs)  # (nt, nchunks, 3)
    width = x_all.shape[-1]
    x_train = x_all[:, split["train"]].reshape(-1, width)
    x_val = x_all[:, split["validation"]].reshape(-1, width)
    constant = _is_constant(config, data.nchunks, extended)
    if constant:  # the tradeoff only, one label per tradeoff, from every chunk but the test's
        mask = np.zeros(width, dtype=np.float32)
        mask[-1] = 1
        seen = np.concatenate([split["train"], split["validation"]])
        fixed = hindsight_best(data.j[:, seen, :])
        y_train = _one_hot(fixed, len(split["train"]), len(data.categories))
        y_val = _one_hot(fixed, len(split["validation"]), len(data.categories))
    else:
        y_train = _targets(data, split["train"], config.temperature, config.loss)
        y_val = _targets(data, split["validation"], 0.0, config.loss)

    low, high = x_train.min(0), x_train.max(0)
    model = _build(keras, config, len(data.categories), low, high, mask)
    monitor = _epoch_callback(keras, data, split["validation"], x_val, config, progress)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_regret", mode="min", patience=config.patience, restore_best_weights=True
    )
    if constant:  # nothing to generalize: train until every tradeoff's label is learnt
        stop = _until_exact(keras)
    hist = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[monitor, stop],
    )
    elapsed = time.perf_counter() - t_start
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best_epoch = int(np.argmin(history["val_regret"])) + 1 if history.get("val_regret") else 0

    scores = _predict(model, x_all).reshape(len(data.tradeoffs), data.nchunks, -1)
    predictions = scores.argmax(axis=-1)
    top3 = np.argsort(-scores, axis=-1, kind="stable")[..., :3]
    trained = TrainedModel(
        mode=data.mode,
        model=model,
        meta=meta,
        config=config,
        data=data,
        split=split,
        history=history,
        predictions=predictions,
        scores=score_table(data, split, predictions, top3),
        predicted=predicted_table(data, predictions),
        elapsed=elapsed,
        best_epoch=best_epoch,
        extended=extended,
    )
    if progress is not None:
        test = trained.scores[trained.scores["split"] == "test"]
        progress(
            f"{data.mode.name.lower()}: {len(history.get('loss', []))} epochs "
            f"(best {best_epoch}) in {elapsed:.1f} s; test top-1 "
            f"{test['top1'].mean():.1%}, mean regret {test['mean_regret'].mean():.2%}"
        )
    return trained


_NO_EXTENDED = (
    "the measurements lack the extended features (columns of btune_wrap.probe.EXTRA_FEATURES "
    "in chunks.parquet of the layout btune_wrap.probe.EXTRA_LAYOUT, or 'dtype' in meta.json): "
    "gather again to train an extended model"
)


def _extended_meta(data: TrainingSet, train: np.ndarray, config: TrainConfig) -> ExtendedMeta:
    """The extended model's JSON: ``config.features``, normalized by the training chunks
    (a zero or non-finite std becomes 1, e.g. the typesize of one dataset)."""
    cols = [FEATURES.index(f) for f in config.features]
    values = data.extended[np.asarray(train)][:, cols]
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std = np.where(np.isfinite(std) & (std.astype(np.float32) != 0), std, 1.0)
    return ExtendedMeta(
        config.features,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in std),
        data.categories,
    )


def _deterministic() -> None:
    """Deterministic TensorFlow ops (same seed -> same model); set once per process."""
    import tensorflow as tf

    with contextlib.suppress(AttributeError, RuntimeError):  # older TF
        tf.config.experimental.enable_op_determinism()


def _is_constant(config: TrainConfig, nchunks: int, extended: bool) -> bool:
    """:attr:`TrainConfig.constant`, resolved (None: a plugin-format model from fewer than
    :data:`CONSTANT_BELOW` chunks)."""
    if config.constant is not None:
        return bool(config.constant)
    return not extended and nchunks < CONSTANT_BELOW


def _until_exact(keras):
    """A callback that stops training once every training row's label is predicted."""

    class UntilExact(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (logs or {}).get("accuracy", 0.0) >= 1.0:
                self.model.stop_training = True

    return UntilExact()


def _epoch_callback(keras, data, rows, x_val, config, progress):
    """A Keras callback adding ``val_regret`` (mean over validation rows) to each epoch's logs,
    and printing one line per epoch through ``progress``."""

    class ValidationRegret(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            chosen = _predict(self.model, x_val).argmax(axis=-1)
            chosen = chosen.reshape(len(data.tradeoffs), len(rows))
            logs["val_regret"] = float(data.regret(chosen, rows).mean())
            if progress is not None:
                progress(
                    f"{data.mode.name.lower()} epoch {epoch + 1:>3}/{config.epochs}: "
                    f"loss {logs.get('loss', float('nan')):.4f} "
                    f"val_loss {logs.get('val_loss', float('nan')):.4f} "
                    f"val_acc {logs.get('val_accuracy', float('nan')):.3f} "
                    f"val_regret {logs['val_regret']:.4f} "
                    f"({time.perf_counter() - self._t0:.1f} s)"
                )

    return ValidationRegret()


# -- scores -------------------------------------------------------------------------------


def score_table(
    data: TrainingSet,
    split: dict[str, np.ndarray],
    predictions: np.ndarray,
    top3: np.ndarray,
) -> pd.DataFrame:
    """Per (split, tradeoff): ``chunks``, ``top1`` and ``top3`` accuracy, ``mean_regret`` and
    ``max_regret`` of the model's choices, and ``fixed_regret``: the mean regret of always
    choosing the one category that is best on average over the training chunks (a baseline).
    """
    import pandas as pd

    best_fixed = hindsight_best(data.j[:, split["train"], :])  # per tradeoff
    records = []
    for side in SPLITS:
        rows = split[side]
        labels = data.labels[:, rows]
        reg = data.regret(predictions[:, rows], rows)
        fixed = data.regret(np.repeat(best_fixed[:, None], len(rows), axis=1), rows)
        in_top3 = (top3[:, rows, :] == labels[..., None]).any(axis=-1)
        for ti, t in enumerate(data.tradeoffs):
            records.append(
                {
                    "split": side,
                    "tradeoff": float(t),
                    "chunks": int(len(rows)),
                    "top1": float(np.mean(predictions[ti, rows] == labels[ti])),
                    "top3": float(np.mean(in_top3[ti])),
                    "mean_regret": float(reg[ti].mean()),
                    "max_regret": float(reg[ti].max()),
                    "fixed_regret": float(fixed[ti].mean()),
                }
            )
    return pd.DataFrame.from_records(records)


def predicted_table(data: TrainingSet, predictions: np.ndarray) -> pd.DataFrame:
    """Per tradeoff, over every chunk: the :data:`TOP_PREDICTED` most predicted categories
    (``first``, ``second``, ``third``: names, ``-`` if fewer were predicted) and their shares,
    and the mean ``cratio``, ``cspeed_gbs`` and ``dspeed_gbs`` that the predicted categories
    measured on their chunks (the tutorial's table)."""
    import pandas as pd

    names = [c.name for c in data.categories]
    rows = np.arange(data.nchunks)
    records = []
    for ti, t in enumerate(data.tradeoffs):
        chosen = predictions[ti]
        counts = np.bincount(chosen, minlength=len(names))
        order = np.argsort(-counts, kind="stable")[:TOP_PREDICTED]
        rec: dict[str, object] = {"tradeoff": float(t)}
        for rank, key in enumerate(("first", "second", "third")[:TOP_PREDICTED]):
            idx = order[rank] if rank < len(order) else 0
            hit = rank < len(order) and counts[idx] > 0
            rec[key] = names[idx] if hit else "-"
            rec[f"{key}_share"] = float(counts[idx] / data.nchunks) if hit else 0.0
        rec["cratio"] = float(np.mean(data.nbytes / data.cbytes[rows, chosen]))
        rec["cspeed_gbs"] = float(np.mean(data.nbytes / data.ctime[rows, chosen]) / 1e9)
        rec["dspeed_gbs"] = float(np.mean(data.nbytes / data.dtime[rows, chosen]) / 1e9)
        records.append(rec)
    return pd.DataFrame.from_records(records)


# -- export -------------------------------------------------------------------------------


def tflite_bytes(trained: TrainedModel) -> bytes:
    """The model converted to TFLite (float32, input ``[1, 3]``, output ``[1, ncategories]``)."""
    _keras()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(trained.model)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its saved artifact
        return converter.convert()


def output_files(directory: str | os.PathLike[str], stem: str) -> list[Path]:
    """Every file :func:`export` writes for model ``stem`` in ``directory``."""
    directory = Path(directory)
    names = [f"{stem}.tflite", f"{stem}.json"] + [stem + s for s in REPORT_SUFFIXES]
    return [directory / n for n in names]


def check_models_output(
    directory: str | os.PathLike[str],
    modes: Sequence[PerfMode],
    *,
    force: bool = False,
    existing_dir: bool = True,
    inputs: Sequence[str | os.PathLike[str]] = (),
    extended: bool = False,
    stems: Sequence[str] | None = None,
) -> None:
    """Refuse (:class:`InputError`) to overwrite anything unless ``force``, and any output that
    overlaps ``inputs`` or cannot be created (:func:`btune_wrap.outputs.check_target`).

    Parameters
    ----------
    directory
        The output directory.
    modes
        The modes whose files will be written.
    force
        Overwrite freely. Default False.
    existing_dir
        True (default): an existing directory is fine as long as none of the files to write
        are in it. False: an existing, non-empty directory is refused as a whole.
    inputs
        The measurement directories the models are trained on.
    extended
        The extended models' files (``model_<mode>.ext.*``) will be written too. Default False.
    stems
        The models whose files will be written, instead of those ``modes`` and ``extended``
        name (e.g. ``["model_comp.ext"]``).
    """
    directory = check_target(directory, inputs)
    if directory.exists() and not directory.is_dir():
        raise InputError(invalid("output", str(directory), "a directory (it is a file)"))
    if force or not directory.is_dir():
        return
    if not existing_dir and any(directory.iterdir()):
        raise InputError(
            f"output={str(directory)!r} already exists and is not empty: "
            "choose another directory or pass --force to write the models into it"
        )
    if stems is None:
        infixes = ("", EXT_INFIX) if extended else ("",)
        stems = [model_stem(m) + infix for m in modes for infix in infixes]
    # the files of a network, and the table of a neighbours model
    files = [p for stem in stems for p in output_files(directory, stem)]
    files += [directory / f"{stem}.npz" for stem in stems]
    clash = [p.name for p in files if p.exists()]
    if clash:
        raise InputError(
            f"output={str(directory)!r} already holds {', '.join(clash)}: "
            "pass --force to overwrite them"
        )


def export(
    trained: TrainedModel | NeighborsModel,
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
) -> list[Path]:
    """Write ``model_<mode>.tflite`` and ``.json`` and the training report into ``directory``
    (a neighbours model: ``model_<mode>.ext.json`` and ``.ext.npz``).

    The directory is created if needed; every file is written aside and renamed into place.
    Unless ``force``, a file that already exists is refused (:class:`InputError`) before
    anything is written. Returns the paths written.
    """
    from .neighbors import NeighborsModel

    if not isinstance(trained, (TrainedModel, NeighborsModel)):
        expected = "a model from fit() (a TrainedModel or a NeighborsModel)"
        raise ConfigError(invalid("trained", trained, expected))
    force = parse_bool("force", force)
    check_models_output(directory, [trained.mode], force=force, stems=[trained.stem])
    from . import report
    from .neighbors import NeighborsModel, write_neighbors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(trained, NeighborsModel):
        return write_neighbors(trained, directory / f"{trained.stem}.json")
    tfl, js, rep, hist_png, trade_png = output_files(directory, trained.stem)
    model_bytes = tflite_bytes(trained)
    write_bytes(tfl, model_bytes)
    write_text(js, json.dumps(trained.meta.to_dict(), indent=1) + "\n")
    write_text(rep, json.dumps(trained.report(), indent=1) + "\n")
    title = f"{trained.stem} ({len(trained.meta.categories)} categories)"
    report.plot_training_history(trained.history, hist_png, title=title)
    report.plot_training_scores(trained.scores, trade_png, title=title)
    return [tfl, js, rep, hist_png, trade_png]


def format_report(trained: TrainedModel | NeighborsModel, *, legend: bool = True) -> str:
    """The printed report: the most predicted categories per tradeoff, accuracy and regret per
    tradeoff on training and test chunks, and (if ``legend``, the default) the legend; one line
    for a neighbours model."""
    from . import report
    from .neighbors import NeighborsModel

    if isinstance(trained, NeighborsModel):
        return (
            f"== {trained.stem}: neighbours model of {len(trained.x)} chunks (k = "
            f"{trained.neighbors}; features {', '.join(trained.features)})"
        )

    name = trained.mode.name.lower()
    parts = [
        f"== {name}: most predicted categories per tradeoff (all {trained.data.nchunks} "
        "chunks; mean cratio and speeds that the predicted categories measured)",
        report.format_predicted(trained.predicted),
        f"== {name}: accuracy and mean regret per tradeoff (regret = 1 - exp(J - J_best); "
        "fixed: always the category best on average over the training chunks)",
        report.format_training_scores(trained.scores),
    ]
    if legend:
        parts += ["== legend (output index, category, plugin tuple)"]
        parts += [report.format_legend(trained.meta.categories)]
    return "\n\n".join(parts)


def wants_extended(measurements: Sequence[Measurements], config: TrainConfig) -> bool:
    """Whether :func:`fit_all` trains extended models too (:attr:`TrainConfig.extended`);
    :class:`InputError` when they are asked for and the measurements lack their features."""
    has_extended = all(measured_features(m) is not None for m in measurements)
    if config.extended and not has_extended:
        raise InputError(_NO_EXTENDED)
    nchunks = sum(m.nchunks for m in measurements)
    enough = config.extended_kind == "neighbors" or nchunks >= EXT_MIN_CHUNKS
    return has_extended and (bool(config.extended) or (config.extended is None and enough))


def fit_table(
    measurements: Sequence[Measurements],
    mode: PerfMode | str,
    config: TrainConfig,
    *,
    prior: float | None = None,
    fallback: NeighborsModel | None = None,
) -> NeighborsModel:
    """The neighbours model of ``mode`` that ``config`` asks for (its features, weighting and
    neighbours' scale; :func:`btune_wrap.neighbors.fit_neighbors` for ``prior`` and
    ``fallback``)."""
    from .neighbors import fit_neighbors

    return fit_neighbors(
        measurements, mode, config.features, prior=prior, fallback=fallback,
        weighting=config.weighting, neighbors_scale=config.neighbors_scale,
    )  # fmt: skip


def fit_all(
    measurements: Sequence[Measurements],
    modes: Sequence[PerfMode],
    config: TrainConfig,
    *,
    extended: bool | None = None,
    fallbacks: Mapping[PerfMode, NeighborsModel | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TrainedModel | NeighborsModel]:
    """Every model a models directory gets from ``measurements``: the plugin-format model of
    each mode, then the extended ones (networks, or neighbours models:
    :attr:`TrainConfig.extended_kind`) where ``extended`` (default :func:`wants_extended`).

    A neighbours model of one dataset leans on ``fallbacks[mode]`` where given (cross
    validation passes models of the other datasets), else on the general model
    (:attr:`TrainConfig.fallback`)."""
    from .neighbors import general_fallback

    trained: list = [fit(measurements, m, config, progress=progress) for m in modes]
    if not (wants_extended(measurements, config) if extended is None else extended):
        return trained
    if config.extended_kind == "network":
        return trained + [fit(measurements, m, config, progress=progress, extended=True)
                          for m in modes]  # fmt: skip

    def fallback(mode: PerfMode) -> NeighborsModel | None:
        if fallbacks is not None:
            return fallbacks.get(mode)
        if not config.fallback or len(measurements) != 1:
            return None
        return general_fallback(mode, measurements[0].categories, config.features)

    return trained + [fit_table(measurements, m, config, fallback=fallback(m)) for m in modes]


def train_and_export(
    meas_dirs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    mode: str | PerfMode = "both",
    config: TrainConfig | None = None,
    *,
    force: bool = False,
    existing_dir: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[TrainedModel]:
    """Load measurement directories, train the model(s) of ``mode``, export into ``output``.

    Returns the plugin-format models (one per mode), followed by the extended ones where they
    are trained (see :attr:`TrainConfig.extended`).

    Everything is checked before training (mode, measurements, chunk count, output), and the
    files are written only once every model is trained: a new ``output`` directory appears
    whole (written aside, then renamed).

    Parameters
    ----------
    meas_dirs
        Measurement directories (``*.meas``), combined; same categories required.
    output
        The models directory.
    mode
        ``c``/``comp``, ``d``/``decomp`` or ``both`` (default).
    config
        How to train; default :class:`TrainConfig()`.
    force
        Overwrite existing files (and accept a non-empty directory). Default False.
    existing_dir
        Whether an existing non-empty ``output`` is acceptable when none of the files to write
        are in it (see :func:`check_models_output`). Default True.
    progress
        Called with progress and report lines; ``None`` (default) is silent.
    """
    modes = parse_modes(mode)
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ConfigError(invalid("config", config, "a TrainConfig"))
    loaded = load_many(list(meas_dirs))
    split_chunks(sum(m.nchunks for m in loaded), config)
    extended = wants_extended(loaded, config)
    check = {"force": force, "existing_dir": existing_dir, "inputs": list(meas_dirs)}
    check_models_output(output, modes, **check, extended=extended)
    trained = fit_all(loaded, modes, config, extended=extended, progress=progress)
    out = Path(output)
    check_models_output(out, modes, **check, extended=extended)
    if out.exists():
        for t in trained:
            export(t, out, force=force)
    else:
        with atomic_dir(out) as tmp:
            for t in trained:
                export(t, tmp)
    return trained
