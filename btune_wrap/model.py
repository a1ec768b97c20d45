"""Loading a trained Btune model and running it with the LiteRT runtime.

A models directory holds one model per performance mode, exactly as the Btune plugin reads it:
``model_comp.{tflite,json}`` (modes COMP, BALANCED and AUTO) and ``model_decomp.{tflite,json}``
(mode DECOMP). The JSON gives the mean/std used to normalize the two features and the
categories in the order of the network's outputs; the ``.tflite`` maps
``[[norm cratio, norm speed, tradeoff]]`` (float32, shape [1, 3]) to one score per category.

:func:`load_model` validates both files against each other and returns a :class:`BtuneModel`
whose :meth:`BtuneModel.choose` makes the plugin's decision for one chunk's features. The
LiteRT interpreter is created once per model file (and reused across calls while the file is
unchanged); TensorFlow is not needed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import quiet
from .categories import Category
from .config import PerfMode, Tradeoff
from .errors import ModelError, invalid
from .parse import parse_float

if TYPE_CHECKING:
    from .neighbors import NeighborsModel

#: File stem of the model each performance mode uses (the plugin's rule: DECOMP uses the
#: decompression model, every other mode the compression one).
MODEL_STEMS = {
    PerfMode.COMP: "model_comp",
    PerfMode.BALANCED: "model_comp",
    PerfMode.AUTO: "model_comp",
    PerfMode.DECOMP: "model_decomp",
}


def model_stem(perf_mode: PerfMode | str) -> str:
    """``"model_comp"`` or ``"model_decomp"``: the model files a performance mode reads."""
    return MODEL_STEMS[PerfMode.parse(perf_mode)]


def read_model_json(path: str | os.PathLike[str]) -> object:
    """A model's JSON file, parsed (any model format); :class:`ModelError` when it does not
    exist, cannot be read or is not valid JSON."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelError(f"model metadata {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ModelError(f"model metadata {str(path)!r} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"model metadata {str(path)!r} is not valid JSON: {exc}") from None


def model_paths(models_dir: str | os.PathLike[str], perf_mode: PerfMode | str) -> tuple[Path, Path]:
    """The ``(.tflite, .json)`` paths the plugin reads for ``perf_mode`` in ``models_dir``."""
    stem = model_stem(perf_mode)
    directory = Path(models_dir)
    return directory / f"{stem}.tflite", directory / f"{stem}.json"


def plugin_tradeoff(tradeoff: Tradeoff) -> float:
    """The single tradeoff value the plugin feeds the network.

    A float is used as is; for a ``(cratio, speed, quality)`` triple the plugin uses
    ``cratio + quality / 2``. Computed in float32, as the plugin does.
    """
    if isinstance(tradeoff, tuple):
        return float(np.float32(tradeoff[0]) + np.float32(tradeoff[2]) / np.float32(2))
    return float(np.float32(tradeoff))


@dataclass(frozen=True)
class Normalization:
    """Mean and standard deviation of one feature over the training set."""

    mean: float
    std: float

    def apply(self, value: float) -> np.float32:
        """``(value - mean) / std`` in float32, as the plugin computes it."""
        return (np.float32(value) - np.float32(self.mean)) / np.float32(self.std)


@dataclass(frozen=True)
class ModelMeta:
    """The contents of a model's JSON file.

    Parameters
    ----------
    cratio, speed
        Normalization of the cratio and speed features.
    categories
        The categories, in the order of the network's outputs.
    """

    cratio: Normalization
    speed: Normalization
    categories: tuple[Category, ...]

    @classmethod
    def from_dict(cls, doc: object, source: str = "model JSON") -> ModelMeta:
        """Validate a parsed JSON document; ``source`` names it in error messages."""
        if not isinstance(doc, dict):
            raise ModelError(f"{source}: expected a JSON object, got {type(doc).__name__}")
        norms = {}
        for key in ("cratio", "speed"):
            norms[key] = _read_norm(doc, key, source)
        raw = doc.get("categories")
        if not isinstance(raw, list) or not raw:
            raise ModelError(
                f"{source}: 'categories'={raw!r} is invalid: expected a non-empty list of "
                "[codec, filter, clevel, splitmode]"
            )
        categories = []
        for i, item in enumerate(raw):
            try:
                categories.append(Category.from_plugin(item))
            except (ValueError, TypeError) as exc:
                raise ModelError(f"{source}: categories[{i}]={item!r} is invalid: {exc}") from None
        return cls(norms["cratio"], norms["speed"], tuple(categories))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelMeta:
        """Read and validate a model's JSON file."""
        path = Path(path)
        return cls.from_dict(read_model_json(path), source=f"model metadata {str(path)!r}")

    def to_dict(self) -> dict[str, object]:
        """The JSON document the plugin reads."""
        return {
            "cratio": {"mean": self.cratio.mean, "std": self.cratio.std},
            "speed": {"mean": self.speed.mean, "std": self.speed.std},
            "categories": [list(c.to_plugin()) for c in self.categories],
        }


def _read_norm(doc: dict, key: str, source: str) -> Normalization:
    entry = doc.get(key)
    expected = f"an object {{'mean': number, 'std': non-zero number}} under {key!r}"
    if not isinstance(entry, dict):
        raise ModelError(f"{source}: {key!r}={entry!r} is invalid: expected {expected}")
    values = []
    for name in ("mean", "std"):
        values.append(parse_float(f"{source}: {key}.{name}", entry.get(name), error=ModelError))
    if np.float32(values[1]) == 0:
        raise ModelError(
            f"{source}: {key}.std={entry['std']!r} is invalid: expected a non-zero number"
        )
    return Normalization(*values)


class ModelRunner:
    """One LiteRT interpreter for one ``.tflite`` file, checked against a category count.

    Parameters
    ----------
    path
        The ``.tflite`` file.
    ncategories
        Number of outputs the network must have (the JSON's category count).
    ninputs
        Width of the network's input row: 3 for the plugin's format (default), the number of
        features + 1 for an extended model.
    """

    def __init__(self, path: str | os.PathLike[str], ncategories: int, ninputs: int = 3) -> None:
        self.path = Path(path)
        self.ncategories = ncategories
        self.ninputs = ninputs
        if not self.path.is_file():
            raise ModelError(f"model file {str(self.path)!r} does not exist")
        from ai_edge_litert.interpreter import Interpreter

        try:
            with quiet.native_logs():  # LiteRT's INFO line on the first allocation
                interpreter = Interpreter(model_path=str(self.path), num_threads=1)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"model file {str(self.path)!r} is not a loadable TFLite model: {exc}"
            ) from None
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"model file {str(self.path)!r} has {len(inputs)} inputs and {len(outputs)} "
                "outputs: expected one input and one output"
            )
        inp, out = inputs[0], outputs[0]
        in_shape = tuple(int(s) for s in inp["shape"])
        out_shape = tuple(int(s) for s in out["shape"])
        if in_shape != (1, ninputs) or inp["dtype"] is not np.float32:
            what = (
                "(normalized cratio, normalized speed, tradeoff)"
                if ninputs == 3
                else f"({ninputs - 1} normalized features, tradeoff)"
            )
            raise ModelError(
                f"model file {str(self.path)!r} has input shape {list(in_shape)} "
                f"({np.dtype(inp['dtype']).name}): expected [1, {ninputs}] float32 {what}"
            )
        if out_shape != (1, ncategories) or out["dtype"] is not np.float32:
            raise ModelError(
                f"model file {str(self.path)!r} has output shape {list(out_shape)} "
                f"({np.dtype(out['dtype']).name}): expected [1, {ncategories}] float32, one "
                f"score per category of its JSON ({ncategories} categories)"
            )
        self._interpreter = interpreter
        self._in_index = inp["index"]
        self._out_index = out["index"]
        self._input = np.zeros((1, ninputs), dtype=np.float32)
        self._lock = threading.Lock()
        self._batch = None
        self._batch_n = 0

    def scores(self, cratio_norm: float, speed_norm: float, tradeoff: float) -> np.ndarray:
        """The network's output for one input row (a copy, shape ``(ncategories,)``)."""
        with self._lock:
            x = self._input
            x[0, 0] = cratio_norm
            x[0, 1] = speed_norm
            x[0, 2] = tradeoff
            self._interpreter.set_tensor(self._in_index, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._out_index)[0].copy()

    def predict_many(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`predict` for each row of a float32 ``(n, ninputs)`` array, in one network call."""
        out = self.scores_many(rows)
        n = out.shape[0]
        best = out.argmax(axis=1)
        best[out[np.arange(n), best] <= -1.0] = 0
        return best

    def top_many(self, rows: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` best-scored indices per row (int64 ``(n, k)``, best first; ties by index),
        in one network call; ``k`` = 1 gives :meth:`predict_many` as a column."""
        if k == 1:
            return self.predict_many(rows)[:, None]
        out = self.scores_many(rows)
        return np.argsort(-out, axis=1, kind="stable")[:, :k].astype(np.int64)

    def scores_many(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`scores` for each row of a float32 ``(n, ninputs)`` array, in one network call.

        The interpreter built for the file has batch size 1; a second one is kept for batches
        (resized when ``n`` changes). The outputs are the same as row by row.
        """
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n = rows.shape[0]
        with self._lock:
            if n == 1:
                it, in_index, out_index = self._interpreter, self._in_index, self._out_index
            else:
                if self._batch is None or self._batch_n != n:
                    from ai_edge_litert.interpreter import Interpreter

                    with quiet.native_logs():
                        if self._batch is None:
                            self._batch = Interpreter(model_path=str(self.path), num_threads=1)
                        self._batch.resize_tensor_input(self._in_index, [n, self.ninputs])
                        self._batch.allocate_tensors()
                    self._batch_n = n
                it, in_index, out_index = self._batch, self._in_index, self._out_index
            it.set_tensor(in_index, rows)
            it.invoke()
            return it.get_tensor(out_index).copy()

    def predict(self, cratio_norm: float, speed_norm: float, tradeoff: float) -> int:
        """The index the plugin picks: the first score above all earlier ones, starting at -1.

        This is an argmax except that, like the plugin, index 0 wins when no score exceeds -1.
        """
        out = self.scores(cratio_norm, speed_norm, tradeoff)
        best = int(np.argmax(out))
        return best if out[best] > -1.0 else 0


#: :attr:`BtuneModel.reads_speed` by network file (path, modification time, size, outputs).
_READS_SPEED: dict[tuple[str, int, int, int], bool] = {}


@dataclass(frozen=True)
class BtuneModel:
    """A validated model for one performance mode: its metadata and its interpreter.

    Build it with :func:`load_model`.
    """

    directory: Path
    perf_mode: PerfMode
    tflite_path: Path
    json_path: Path
    meta: ModelMeta
    runner: ModelRunner

    #: Each new batch size costs the interpreter a re-allocation: the engine hands it whole
    #: batches of probed chunks.
    whole_batches = True

    @property
    def categories(self) -> tuple[Category, ...]:
        return self.meta.categories

    @property
    def reads_speed(self) -> bool:
        """Whether the network's output depends on the speed feature at all.

        Checked on a grid of inputs (normalized cratio from -4 to 4, tradeoffs from 0 to 1):
        False when the scores are identical for normalized speeds -4, 0 and 4 everywhere, as
        for networks trained with ``TrainConfig.use_speed=False``, which zero that input.
        The answer is kept for the process, per network file.
        """
        stat = self.tflite_path.stat()
        key = (str(self.tflite_path), stat.st_mtime_ns, stat.st_size, len(self.categories))
        known = _READS_SPEED.get(key)
        if known is not None:
            return known
        cratios = np.linspace(-4.0, 4.0, 17)
        tradeoffs = np.linspace(0.0, 1.0, 5)
        speeds = (-4.0, 0.0, 4.0)
        grid = np.array(
            [(c, s, t) for c in cratios for t in tradeoffs for s in speeds], dtype=np.float32
        )
        out = self.runner.scores_many(grid).reshape(-1, len(speeds), len(self.categories))
        reads = _READS_SPEED[key] = not bool((out == out[:, :1]).all())
        return reads

    def normalize(self, cratio: float, speed: float) -> tuple[np.float32, np.float32]:
        """The two features, normalized with this model's mean/std (float32)."""
        return self.meta.cratio.apply(cratio), self.meta.speed.apply(speed)

    def choose(self, cratio: float, speed: float, tradeoff: float) -> int:
        """The category index for a chunk with these raw features at ``tradeoff``.

        ``tradeoff`` is the single value the network takes (see :func:`plugin_tradeoff`).
        """
        c, s = self.normalize(cratio, speed)
        return self.runner.predict(float(c), float(s), tradeoff)

    def choose_many(
        self, cratios: Sequence[float], speeds: Sequence[float], tradeoff: float, top: int = 1
    ) -> np.ndarray:
        """:meth:`choose` for many chunks in one network call; returns the indices (int64);
        with ``top`` > 1, the ``top`` best-scored ones per chunk (``(n, top)``, best first)."""
        rows = np.empty((len(cratios), 3), dtype=np.float32)
        rows[:, 0] = cratios
        rows[:, 1] = speeds
        rows[:, 0] -= np.float32(self.meta.cratio.mean)
        rows[:, 0] /= np.float32(self.meta.cratio.std)
        rows[:, 1] -= np.float32(self.meta.speed.mean)
        rows[:, 1] /= np.float32(self.meta.speed.std)
        rows[:, 2] = tradeoff
        if top > 1:
            return self.runner.top_many(rows, top)
        return self.runner.predict_many(rows)


def load_model(models_dir: str | os.PathLike[str], perf_mode: PerfMode | str) -> BtuneModel:
    """Load and validate the model ``perf_mode`` uses from ``models_dir``.

    Parameters
    ----------
    models_dir
        A directory with ``model_comp.{tflite,json}`` and/or ``model_decomp.{tflite,json}``.
    perf_mode
        COMP, BALANCED and AUTO read ``model_comp.*``, DECOMP reads ``model_decomp.*``.

    Raises
    ------
    ModelError
        The directory or a file is missing, the JSON is malformed or names unknown codec or
        filter ids, or the network's input/output shapes do not match [1, 3] -> [1, ncategories].
    """
    mode = PerfMode.parse(perf_mode)
    directory, tflite_path, json_path = _model_files(models_dir, mode, model_paths)
    meta, runner = _load_cached(
        str(tflite_path.resolve()), _stamp(tflite_path), str(json_path.resolve()), _stamp(json_path)
    )
    return BtuneModel(directory, mode, tflite_path, json_path, meta, runner)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def _load_cached(
    tflite: str, tflite_stamp: tuple[int, int], json_file: str, json_stamp: tuple[int, int]
) -> tuple[ModelMeta, ModelRunner]:
    meta = ModelMeta.load(json_file)
    return meta, ModelRunner(tflite, len(meta.categories))


# -- the extended model (Python engine only) -------------------------------------------------

#: Infix of the extended model's files: ``model_comp.ext.tflite`` + ``model_comp.ext.json``.
EXT_INFIX = ".ext"
#: Version of the extended model's JSON layout.
EXT_FORMAT = 1


def ext_model_paths(
    models_dir: str | os.PathLike[str], perf_mode: PerfMode | str
) -> tuple[Path, Path]:
    """The ``(.ext.tflite, .ext.json)`` paths of the extended model ``perf_mode`` uses."""
    stem = model_stem(perf_mode) + EXT_INFIX
    directory = Path(models_dir)
    return directory / f"{stem}.tflite", directory / f"{stem}.json"


@dataclass(frozen=True)
class ExtendedMeta:
    """The contents of an extended model's JSON file (``model_<mode>.ext.json``)::

        {"format": 1, "features": [names], "mean": [...], "std": [...],
         "categories": [[codec, filter, clevel, splitmode], ...], "extra_layout": "2x1024/h10"}

    The network's input row is the features (names of :data:`btune_wrap.features.FEATURES`,
    in this order, each normalized as ``(value - mean) / std`` in float32) then the tradeoff.
    ``extra_layout`` is the probe's :data:`~btune_wrap.probe.EXTRA_LAYOUT` the model was
    trained with; a model using extended features of another layout (or of none recorded) is
    refused, since its inputs would mean something else.

    Parameters
    ----------
    features
        The input columns, in order.
    mean, std
        Normalization of each column (``std`` non-zero).
    categories
        The categories, in the order of the network's outputs.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    categories: tuple[Category, ...]

    @property
    def ninputs(self) -> int:
        """Width of the network's input row (the features and the tradeoff)."""
        return len(self.features) + 1

    @property
    def needs_extra(self) -> bool:
        """Whether the features need the probe's extended pass."""
        from .features import NEEDS_EXTRA

        return any(f in NEEDS_EXTRA for f in self.features)

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """``(values - mean) / std`` of ``(n, nfeatures)`` rows, in float32."""
        x = np.asarray(values, dtype=np.float32)
        return (x - np.asarray(self.mean, dtype=np.float32)) / np.asarray(
            self.std, dtype=np.float32
        )

    def inputs(self, values: np.ndarray, tradeoffs: Sequence[float]) -> np.ndarray:
        """Network inputs for every (tradeoff, chunk): float32 ``(ntradeoffs, n, ninputs)``."""
        t = np.asarray(tradeoffs, dtype=np.float32)
        x = self.normalize(values)
        out = np.empty((len(t), len(x), self.ninputs), dtype=np.float32)
        out[:, :, :-1] = x[None]
        out[:, :, -1] = t[:, None]
        return out

    @classmethod
    def from_dict(cls, doc: object, source: str = "extended model JSON") -> ExtendedMeta:
        """Validate a parsed JSON document; ``source`` names it in error messages."""
        from .features import FEATURES, NEEDS_EXTRA
        from .probe import EXTRA_LAYOUT

        if not isinstance(doc, dict):
            raise ModelError(f"{source}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != EXT_FORMAT:
            raise ModelError(
                f"{source}: 'format'={doc.get('format')!r} is invalid: expected {EXT_FORMAT}"
            )
        names = doc.get("features")
        if (
            not isinstance(names, list)
            or not names
            or any(n not in FEATURES for n in names)
            or len(set(names)) != len(names)
        ):
            raise ModelError(
                f"{source}: 'features'={names!r} is invalid: expected a non-empty list of "
                f"distinct names among {list(FEATURES)}"
            )
        layout = doc.get("extra_layout")
        if any(n in NEEDS_EXTRA for n in names) and layout != EXTRA_LAYOUT:
            raise ModelError(
                f"{source}: 'extra_layout'={layout!r} is invalid: expected {EXTRA_LAYOUT!r}, "
                "the probe's extended features of this version (train the model again on a "
                "gather made with it)"
            )
        norms = []
        for key in ("mean", "std"):
            vals = doc.get(key)
            ok = isinstance(vals, list) and len(vals) == len(names)
            ok = ok and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in vals
            )
            if ok and key == "std":
                ok = all(np.float32(v) != 0 for v in vals)
            if not ok:
                raise ModelError(
                    f"{source}: {key!r}={vals!r} is invalid: expected {len(names)} finite "
                    f"numbers{' (non-zero)' if key == 'std' else ''}, one per feature"
                )
            norms.append(tuple(float(v) for v in vals))
        plugin = ModelMeta.from_dict(
            {"cratio": {"mean": 0, "std": 1}, "speed": {"mean": 0, "std": 1}, **doc}, source
        )
        return cls(tuple(names), norms[0], norms[1], plugin.categories)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExtendedMeta:
        """Read and validate an extended model's JSON file."""
        path = Path(path)
        return cls.from_dict(read_model_json(path), source=f"model metadata {str(path)!r}")

    def to_dict(self) -> dict[str, object]:
        """The JSON document (see the class documentation)."""
        from .probe import EXTRA_LAYOUT

        return {
            "format": EXT_FORMAT,
            "features": list(self.features),
            "mean": list(self.mean),
            "std": list(self.std),
            "categories": [list(c.to_plugin()) for c in self.categories],
            "extra_layout": EXTRA_LAYOUT,
        }


@dataclass(frozen=True)
class ExtendedModel:
    """A validated extended model for one performance mode (:func:`load_extended_model`).

    Chooses like :class:`BtuneModel` but from more features of the chunk (see
    :mod:`btune_wrap.features`); only the Python engine reads it.
    """

    directory: Path
    perf_mode: PerfMode
    tflite_path: Path
    json_path: Path
    meta: ExtendedMeta
    runner: ModelRunner

    #: The network never reads the probe's (timing-based) speed feature.
    reads_speed = False
    #: As :attr:`BtuneModel.whole_batches`.
    whole_batches = True

    @property
    def categories(self) -> tuple[Category, ...]:
        return self.meta.categories

    @property
    def needs_extra(self) -> bool:
        """Whether the probe must compute its extended features for this model."""
        return self.meta.needs_extra

    def choose_many(
        self,
        cratios: np.ndarray,
        extra: np.ndarray,
        dtype: str | np.dtype,
        tradeoff: float,
        top: int = 1,
    ) -> np.ndarray:
        """The category index per chunk (int64) from the probe's ``cratio`` feature and its
        ``extra`` rows (:class:`btune_wrap.probe.FeatureArrays`) of an array of ``dtype``, at
        the network's ``tradeoff`` (:func:`plugin_tradeoff`); with ``top`` > 1, the ``top``
        best-scored ones per chunk (``(n, top)``, best first)."""
        from .features import model_inputs

        values = model_inputs(cratios, extra, dtype, self.meta.features)
        rows = np.empty((len(values), self.meta.ninputs), dtype=np.float32)
        rows[:, :-1] = self.meta.normalize(values)
        rows[:, -1] = tradeoff
        if top > 1:
            return self.runner.top_many(rows, top)
        return self.runner.predict_many(rows)


def reads_extended(model: object) -> bool:
    """Whether ``model`` chooses from the extended features (``choose_many(cratios, extra,
    dtype, tradeoff, top)``): every engine model but the plugin's format."""
    return model is not None and not isinstance(model, BtuneModel)


def has_extended_model(models_dir: str | os.PathLike[str], perf_mode: PerfMode | str) -> bool:
    """Whether ``models_dir`` holds the extended model of ``perf_mode``: its JSON, and its
    network (``.ext.tflite``) or its neighbours table (``.ext.npz``)."""
    tflite, json_path = ext_model_paths(models_dir, perf_mode)
    return json_path.is_file() and (tflite.is_file() or json_path.with_suffix(".npz").is_file())


def models_path(models_dir: object) -> Path:
    """``models_dir`` as a Path, or :class:`ModelError` where it is not a path."""
    if not isinstance(models_dir, (str, os.PathLike)):
        raise ModelError(invalid("models_dir", models_dir, "a models directory (a path)"))
    return Path(models_dir)


def _model_files(models_dir, mode: PerfMode, paths) -> tuple[Path, Path, Path]:
    """The directory and the ``.tflite`` and ``.json`` files ``paths(directory, mode)`` names,
    or :class:`ModelError` if any is missing."""
    directory = models_path(models_dir)
    if not directory.is_dir():
        raise ModelError(f"models_dir={str(directory)!r} is not a directory")
    tflite_path, json_path = paths(directory, mode)
    missing = [p.name for p in (tflite_path, json_path) if not p.is_file()]
    if missing:
        raise ModelError(
            f"models_dir={str(directory)!r} lacks {' and '.join(missing)}: perf mode "
            f"{mode.name} needs {tflite_path.name} and {json_path.name}"
        )
    return directory, tflite_path, json_path


def load_extended_model(
    models_dir: str | os.PathLike[str], perf_mode: PerfMode | str
) -> ExtendedModel | NeighborsModel:
    """Load and validate the extended model ``perf_mode`` uses from ``models_dir``
    (``model_<mode>.ext.tflite`` + ``.ext.json``); :class:`ModelError` as :func:`load_model`."""
    from .objective import parse_mode

    mode = PerfMode.parse(perf_mode)
    json_path = ext_model_paths(models_dir, mode)[1]
    if json_path.is_file() and _is_neighbors_file(str(json_path.resolve()), _stamp(json_path)):
        table = json_path.with_suffix(".npz")
        table_stamp = _stamp(table) if table.is_file() else None
        model = _load_neighbors_cached(str(json_path.resolve()), _stamp(json_path), table_stamp)
        expected = parse_mode(mode)  # BALANCED and AUTO read the COMP files
        if model.perf_mode is not expected:
            raise ModelError(
                f"model metadata {str(json_path)!r}: 'mode'={model.perf_mode.name.lower()!r} "
                f"is invalid: expected {expected.name.lower()!r} (the file's mode)"
            )
        return model
    directory, tflite_path, json_path = _model_files(models_dir, mode, ext_model_paths)
    meta, runner = _load_ext_cached(
        str(tflite_path.resolve()), _stamp(tflite_path), str(json_path.resolve()), _stamp(json_path)
    )
    return ExtendedModel(directory, mode, tflite_path, json_path, meta, runner)


def load_engine_model(
    models_dir: str | os.PathLike[str], perf_mode: PerfMode | str
) -> BtuneModel | ExtendedModel | NeighborsModel:
    """The model the Python engine uses: the extended one where ``models_dir`` holds it
    (:func:`has_extended_model`), else the plugin-format one (:func:`load_model`)."""
    if Path(models_dir).is_dir() and has_extended_model(models_dir, perf_mode):
        return load_extended_model(models_dir, perf_mode)
    return load_model(models_dir, perf_mode)


@functools.lru_cache(maxsize=16)
def _load_ext_cached(
    tflite: str, tflite_stamp: tuple[int, int], json_file: str, json_stamp: tuple[int, int]
) -> tuple[ExtendedMeta, ModelRunner]:
    meta = ExtendedMeta.load(json_file)
    return meta, ModelRunner(tflite, len(meta.categories), meta.ninputs)


@functools.lru_cache(maxsize=16)
def _is_neighbors_file(json_file: str, json_stamp: tuple[int, int]) -> bool:
    """Whether an extended model's JSON is a neighbours model's (read once per version)."""
    from .neighbors import is_neighbors_doc

    return is_neighbors_doc(read_model_json(json_file))


@functools.lru_cache(maxsize=16)
def _load_neighbors_cached(
    json_file: str, json_stamp: tuple[int, int], table_stamp: tuple[int, int] | None
) -> NeighborsModel:
    from .neighbors import read_neighbors

    return read_neighbors(json_file, read_model_json(json_file))
