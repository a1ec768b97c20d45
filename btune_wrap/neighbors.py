"""The neighbours model: the Python engine's choice from the measured chunks most like this one.

The extended model of a models directory (``model_<mode>.ext.json`` with ``"kind":
"neighbors"``, and its table ``model_<mode>.ext.npz``) keeps, for every training chunk, its
extended features (:mod:`btune_wrap.features`) and what each category measured on it: the log
of its compression ratio and of its seconds per byte in the model's mode (compression time for
COMP, decompression time for DECOMP). For a new chunk it finds the ``k`` training chunks nearest
in standardized feature space and picks the category of least mean *gain* over them
(:func:`btune_wrap.objective.gain`: how much better each neighbour's own best category was),
at the tradeoff asked for; the nearer neighbours count more (``weighting``). A table of one
array's chunks blends in, with weight ``prior``, the expected gain of a *fallback*: a model of
other data (by default the general model shipped with the package, :func:`general_fallback`),
so that a chunk unlike every training chunk is not decided by neighbours that do not resemble
it; without a fallback, the table's own mean gain. Training is storing the table: no
TensorFlow is needed.

Why not a network: on the real-data corpus (``benchmarks/bench_quality.py``, fast set) the
extended network overfits the few chunks a user gathers of one dataset (mean gain 525% in COMP
on odd chunks, trained on the ~14 even ones, against 32% for the single category best on those
chunks), and it did worse than the plugin's network on data of a kind it never saw. The
neighbours of the least mean gain measured 24% (COMP) / 18.5% (DECOMP) per dataset then, below
the odd chunks' own hindsight category (26% / 20%), and 75% / 68% leave one dataset out; with
74 categories, the fallback and distance weights, 3.4% / 5.5% per array and 11.4% / 12.8% leave
one array out (``benchmarks/README.md``).

The JSON layout (``format`` 2)::

    {"format": 2, "kind": "neighbors", "mode": "comp", "features": [names],
     "mean": [...], "std": [...], "neighbors": k, "prior": w, "weighting": "gaussian",
     "extra_layout": "2x1024/h10", "categories": [[codec, filter, clevel, split]]}

(``prior``, the weight of the fallback's or else the table's mean gain beside the neighbours',
is 0 when absent; ``weighting``, :data:`WEIGHTINGS`, is ``"uniform"`` when absent), with, for a
model that has a fallback, ``"fallback": {"neighbors": k, "prior": 0, "weighting": ...,
"mean": [...], "std": [...]}`` (same mode, features and categories); and the table (NumPy
``.npz``): ``x`` float32 ``(n, nfeatures)``, the standardized features of the ``n`` training
chunks; ``log_cratio`` and ``log_seconds``
float16 ``(n, ncategories)`` (logarithms lose at most 0.8% to float16 rounding, below the
timing noise); the fallback's the same, named ``fallback_x``, ``fallback_log_cratio`` and
``fallback_log_seconds``.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .categories import Category
from .config import PerfMode
from .errors import ConfigError, ModelError, invalid
from .objective import gain, objective, parse_mode, seconds
from .parse import parse_choice, parse_float, parse_int

if TYPE_CHECKING:
    from .measurements import Measurements
    from .model import ExtendedMeta

#: Version of the neighbours model's JSON layout (the network's extended JSON is format 1).
KNN_FORMAT = 2
KIND = "neighbors"
#: Fewest neighbours consulted; more (``sqrt(n)``) when there are many training chunks.
MIN_NEIGHBORS = 5
#: Most training chunks a table keeps (evenly spread over them): the search costs time in
#: proportion to the table, measured 8 / 21 / 43 / 194 us per chunk decided for 300 / 1000 /
#: 3000 / 10000 rows, against the plugin's 130 us for its probe and network; the corpus's
#: chunk-count curve was flat from about 50 chunks on.
MAX_TABLE_CHUNKS = 1024
#: The prior's weight for a table of one array's chunks (:func:`fit_neighbors`). Measured on
#: the corpus (even chunks train, odd chunks test, mean gain COMP / DECOMP, 73 categories, the
#: table's own mean as the prior): 0 gave 24.2% / 18.5%, 0.1 gave 23.5% / 15.2%, 0.3 gave
#: 25.3% / 18.4%. With 74 categories and the fallback a model of the other arrays (as the
#: general model is for a user's), 0.1 gave 4.4% / 6.0% against 5.4% / 7.7% with the own
#: mean (ocr_rec_weights in DECOMP: 11% against 23%, most of it one held-out chunk of weights
#: ending in zeros, unlike all 21 training chunks). Across unrelated arrays (leave one array
#: out) a prior did worse than none (79% / 81% against 75% / 68%).
ONE_ARRAY_PRIOR = 0.1


#: How the neighbours' gains are averaged: ``"uniform"`` (a plain mean) or ``"gaussian"``
#: (weights ``exp(-(d / d_k)**2)``, :func:`btune_wrap.nearest.mean_gain_of_nearest`).
WEIGHTINGS = ("uniform", "gaussian")
#: The range of ``neighbors_scale`` (:func:`default_neighbors`'s ``scale``) a model is fitted with.
SCALE_RANGE = (0.01, 100.0)


def default_neighbors(nchunks: int, scale: float = 1.0) -> int:
    """``max(5, round(scale * sqrt(n)))`` of ``n`` training chunks, at most ``n``: with
    ``scale`` 1 (default), 5 for the few dozen chunks of one dataset, ~17 for the 300 of the
    corpus. Measured on the corpus: fewer (3, 4) let single noisy chunks decide (mean gain
    49-72% in COMP per dataset), a fixed 20 was as good on unseen kinds of data and worse on a
    user's own (34% / 21% per dataset). The general model takes more (``scale`` 2, see
    :data:`btune_wrap.general.GENERAL_CONFIG`)."""
    return max(1, min(nchunks, max(MIN_NEIGHBORS, round(scale * math.sqrt(nchunks)))))


@dataclass(frozen=True, eq=False)
class NeighborsModel:
    """A neighbours model for one performance mode (see the module docstring).

    Parameters
    ----------
    perf_mode
        ``PerfMode.COMP`` (also used by BALANCED and AUTO) or ``PerfMode.DECOMP``.
    features
        The input columns (names of :data:`btune_wrap.features.FEATURES`), in order.
    mean, std
        Standardization of each column (``std`` > 0).
    neighbors
        How many training chunks decide (``k``).
    categories
        The candidates, in the table's column order.
    x
        Standardized features of the training chunks, float32 ``(n, nfeatures)``.
    log_cratio, log_seconds
        Per training chunk and category: log of the ratio and of seconds per byte in the
        mode, float32 ``(n, ncategories)``.
    path
        The JSON file it was loaded from (``None`` in memory).
    prior
        Weight (0 to 1) of the fallback's expected gain per category (or, without one, of the
        table's mean gain) beside the neighbours'; see :func:`fit_neighbors`.
    fallback
        A model of other data with the same mode, features and categories, or ``None``.
    weighting
        How the neighbours' gains are averaged (:data:`WEIGHTINGS`); default ``"uniform"``.
    """

    perf_mode: PerfMode
    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    neighbors: int
    categories: tuple[Category, ...]
    x: np.ndarray
    log_cratio: np.ndarray
    log_seconds: np.ndarray
    path: Path | None = None
    prior: float = 0.0
    fallback: NeighborsModel | None = None
    weighting: str = "uniform"

    #: The choice never reads the probe's (timing-based) speed feature.
    reads_speed = False
    #: Any number of chunks costs the search the same per chunk: the engine hands it the
    #: chunks probed so far instead of waiting for whole batches.
    whole_batches = False

    @property
    def stem(self) -> str:
        """``model_comp.ext`` or ``model_decomp.ext``: its files' names without suffix."""
        from .model import EXT_INFIX, model_stem

        return model_stem(self.perf_mode) + EXT_INFIX

    @property
    def mode(self) -> PerfMode:
        """The performance mode (as :attr:`btune_wrap.train.TrainedModel.mode`)."""
        return self.perf_mode

    @property
    def tflite_path(self) -> Path | None:
        """The file a models directory holds it in (the JSON; named so for the reports)."""
        return self.path

    @property
    def needs_extra(self) -> bool:
        """Whether the features need the probe's extended pass."""
        from .features import NEEDS_EXTRA

        return any(f in NEEDS_EXTRA for f in self.features)

    def expected_gain(self, values: np.ndarray, tradeoff: float) -> np.ndarray:
        """Mean gain (weighted as :attr:`weighting` says) of each category over the
        neighbours of each row of ``values`` (the feature columns :attr:`features`,
        unstandardized), blended (weight :attr:`prior`) with
        the fallback's expected gain or else the whole table's mean, float64
        ``(n, ncategories)``."""
        gains, overall = self._gains(float(tradeoff))
        if self.neighbors >= len(self.x) and self.weighting == "uniform":  # all of them, alike
            out = np.repeat(overall[None, :], len(values), axis=0)
        else:
            from .nearest import mean_gain_of_nearest

            z = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
            xt, norms = self._table
            out = np.empty((len(z), gains.shape[1]))
            mean_gain_of_nearest(
                np.ascontiguousarray(z), xt, norms, gains, self.neighbors, out,
                self.weighting == "gaussian",
            )  # fmt: skip
        if self.prior:
            out *= 1.0 - self.prior
            if self.fallback is None:
                out += self.prior * overall
            else:
                out += self.prior * self.fallback.expected_gain(values, tradeoff)
        return out

    @functools.cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """The training features in float64, transposed (``(nfeatures, n)``), and their squared
        norms, computed once."""
        x = self.x.astype(np.float64)
        return np.ascontiguousarray(x.T), (x * x).sum(axis=1)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a few tradeoffs per frozen model
    def _gains(self, tradeoff: float) -> tuple[np.ndarray, np.ndarray]:
        """Each training chunk's gain per category at ``tradeoff``, ``(n, ncategories)`` (the
        objective of :mod:`btune_wrap.objective`, speed in bytes per second), and its mean
        over the chunks, ``(ncategories,)``."""
        cratio = np.exp(self.log_cratio.astype(np.float64))
        speed = np.exp(-self.log_seconds.astype(np.float64))
        j = objective(cratio, speed, tradeoff)
        gains = gain(j, j.max(axis=-1, keepdims=True))
        return gains, gains.mean(axis=0)

    def choose_many(
        self,
        cratios: np.ndarray,
        extra: np.ndarray,
        dtype: str | np.dtype,
        tradeoff: float,
        top: int = 1,
    ) -> np.ndarray:
        """The category index per chunk (int64) from the probe's ``cratio`` feature and its
        ``extra`` rows of an array of ``dtype`` at ``tradeoff``; with ``top`` > 1, the ``top``
        of least expected gain per chunk (``(n, top)``, best first)."""
        from .features import model_inputs

        g = self.expected_gain(model_inputs(cratios, extra, dtype, self.features), tradeoff)
        if top > 1:
            return np.argsort(g, axis=1, kind="stable")[:, :top].astype(np.int64)
        return g.argmin(axis=1).astype(np.int64)


_TABLE = ("x", "log_cratio", "log_seconds")
_FALLBACK = "fallback_"


def is_neighbors_doc(doc: object) -> bool:
    """Whether a parsed extended-model JSON is a neighbours model's."""
    return isinstance(doc, dict) and doc.get("kind") == KIND


def fit_neighbors(
    measurements: Measurements | Sequence[Measurements],
    mode: str | PerfMode,
    features: Sequence[str] | None = None,
    neighbors: int | None = None,
    max_chunks: int = MAX_TABLE_CHUNKS,
    prior: float | None = None,
    fallback: NeighborsModel | None = None,
    weighting: str = "gaussian",
    neighbors_scale: float = 1.0,
) -> NeighborsModel:
    """The neighbours model of ``mode`` from measurements with the extended features.

    Parameters
    ----------
    measurements
        One or several :class:`Measurements` of one category set, gathered with the extended
        features (:func:`btune_wrap.features.measured_features`).
    mode
        ``"comp"`` or ``"decomp"``.
    features
        Input columns; default :data:`btune_wrap.features.DEFAULT_FEATURES`.
    neighbors
        ``k``; default :func:`default_neighbors` of the number of chunks kept (and of
        ``neighbors_scale``).
    max_chunks
        Most chunks the table keeps, evenly spread over them in order; default
        :data:`MAX_TABLE_CHUNKS`.
    prior
        Weight (0 to 1) of the fallback's expected gain per category (or, without one, of the
        table's mean gain) beside the neighbours' mean gain; default :data:`ONE_ARRAY_PRIOR`
        for one :class:`Measurements` (the chunks of one array, often a few dozen), 0 for
        several (unrelated arrays).
    fallback
        A model of other data (same mode, features and categories; e.g.
        :func:`general_fallback`) whose expected gain is the prior; default none (the
        table's own mean gain). Kept only where ``prior`` > 0.
    weighting
        How the neighbours' gains are averaged (:data:`WEIGHTINGS`); default ``"gaussian"``.
    neighbors_scale
        The ``scale`` of :func:`default_neighbors` when ``neighbors`` is None; default 1.
    """
    from .errors import InputError, invalid
    from .features import DEFAULT_FEATURES, FEATURES, measured_features
    from .measurements import Measurements, check_same_categories

    sets = [measurements] if isinstance(measurements, Measurements) else list(measurements)
    if not sets:
        raise InputError(invalid("measurements", [], "at least one Measurements"))
    check_same_categories(sets)
    perf = parse_mode(mode)
    max_chunks = parse_int("max_chunks", max_chunks, 1, error=InputError)
    if prior is None:
        prior = ONE_ARRAY_PRIOR if len(sets) == 1 else 0.0
    prior = parse_float("prior", prior, 0.0, 1.0, error=InputError)
    weighting = parse_choice("weighting", weighting, WEIGHTINGS, error=InputError)
    names = tuple(features or DEFAULT_FEATURES)
    if not names or any(f not in FEATURES for f in names):
        raise InputError(invalid("features", names, f"names among {list(FEATURES)}"))
    if fallback is not None and not _fits(fallback, perf, sets[0].categories, names):
        shown = getattr(fallback, "perf_mode", type(fallback).__name__)
        expected = f"a neighbours model of mode {perf.name}, these features and categories"
        raise InputError(invalid("fallback", str(shown), expected))
    values, ratios, secs = [], [], []
    for meas in sets:
        feats = measured_features(meas)
        if feats is None:
            raise InputError(
                f"measurements {meas.name!r} lack the probe's extended features (gathered "
                "before they were recorded, or with another layout of them): gather again to "
                "train a neighbours model"
            )
        nbytes, cbytes, ctime, dtime = meas.matrices()
        values.append(feats[:, [FEATURES.index(f) for f in names]])
        ratios.append(np.log(nbytes[:, None] / cbytes))
        secs.append(np.log(seconds(ctime, dtime, perf) / nbytes[:, None]))
    x, ratio, sec = (np.concatenate(a) for a in (values, ratios, secs))
    if len(x) > max_chunks:  # evenly spread over the chunks, so over every dataset
        keep = np.unique(np.linspace(0, len(x) - 1, max_chunks).round().astype(np.int64))
        x, ratio, sec = x[keep], ratio[keep], sec[keep]
    if neighbors is None:
        scale = parse_float("neighbors_scale", neighbors_scale, *SCALE_RANGE, error=InputError)
        k = default_neighbors(len(x), scale)
    else:
        k = parse_int("neighbors", neighbors, 1, error=InputError)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(np.isfinite(std) & (std.astype(np.float32) > 0), std, 1.0)
    z = ((x - mean) / std).astype(np.float32)
    # Rounded as the table stores them, so a model chooses the same in memory and from files.
    ratio, sec = (a.astype(np.float16).astype(np.float32) for a in (ratio, sec))
    return NeighborsModel(
        perf, names, mean.astype(np.float32), std.astype(np.float32), k, sets[0].categories, z,
        ratio, sec, prior=prior, fallback=fallback if prior else None, weighting=weighting,
    )  # fmt: skip


def _fits(model: object, perf: PerfMode, categories: Sequence[Category], features) -> bool:
    """Whether ``model`` is a neighbours model that can be the fallback of one of ``perf``
    with these categories and features."""
    return (
        isinstance(model, NeighborsModel)
        and model.perf_mode is perf
        and tuple(model.categories) == tuple(categories)
        and tuple(model.features) == tuple(features)
    )


def general_fallback(
    mode: str | PerfMode, categories: Sequence[Category], features: Sequence[str]
) -> NeighborsModel | None:
    """The general model's neighbours model of ``mode`` (:data:`btune_wrap.GENERAL_MODEL_DIR`)
    if it has these categories and features (else ``None``): the fallback a model of one
    array leans on."""
    from .config import GENERAL_MODEL_DIR
    from .model import ext_model_paths, read_model_json

    perf = parse_mode(mode)
    _, json_path = ext_model_paths(GENERAL_MODEL_DIR, perf)
    try:
        doc = read_model_json(json_path)
        model = read_neighbors(json_path, doc) if is_neighbors_doc(doc) else None
    except (ModelError, OSError):
        return None
    return model if _fits(model, perf, categories, features) else None


def neighbors_doc(model: NeighborsModel) -> dict[str, object]:
    """The JSON document of ``model`` (see the module docstring)."""
    from .probe import EXTRA_LAYOUT

    fallback = model.fallback
    more = {} if fallback is None else {"fallback": {
        "neighbors": fallback.neighbors, "prior": fallback.prior,
        "weighting": fallback.weighting,
        "mean": [float(v) for v in fallback.mean], "std": [float(v) for v in fallback.std],
    }}  # fmt: skip
    return {
        "format": KNN_FORMAT,
        "kind": KIND,
        "mode": model.perf_mode.name.lower(),
        "features": list(model.features),
        "mean": [float(v) for v in model.mean],
        "std": [float(v) for v in model.std],
        "neighbors": model.neighbors,
        "prior": model.prior,
        "weighting": model.weighting,
        "categories": [list(c.to_plugin()) for c in model.categories],
        "extra_layout": EXTRA_LAYOUT,
        **more,
    }


def table_bytes(model: NeighborsModel) -> bytes:
    """The ``.npz`` table of ``model`` (and its fallback's, names prefixed ``fallback_``)."""
    arrays = {}
    for prefix, m in (("", model), (_FALLBACK, model.fallback)):
        if m is not None:
            arrays[f"{prefix}x"] = m.x.astype(np.float32)
            arrays[f"{prefix}log_cratio"] = m.log_cratio.astype(np.float16)
            arrays[f"{prefix}log_seconds"] = m.log_seconds.astype(np.float16)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def read_neighbors(json_path: str | os.PathLike[str], doc: dict) -> NeighborsModel:
    """The model of a parsed JSON ``doc`` (read from ``json_path``) and its ``.npz`` table
    beside it (with its fallback's, where the JSON has one); :class:`ModelError` naming what
    is wrong."""
    from .model import ExtendedMeta

    json_path = Path(json_path)
    source = f"model metadata {str(json_path)!r}"
    try:
        mode = parse_mode(doc.get("mode", ""), field=f"{source}: 'mode'")
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    meta = ExtendedMeta.from_dict({**doc, "format": 1}, source)
    sub = doc.get("fallback")
    if sub is not None and not isinstance(sub, dict):
        expected = "an object with 'neighbors', 'prior', 'mean' and 'std'"
        raise ModelError(invalid(f"{source}: 'fallback'", sub, expected))
    prefixes = ("",) if sub is None else ("", _FALLBACK)
    tables = _read_tables(json_path.with_suffix(".npz"), source, prefixes)
    fallback = None
    if sub is not None:
        where = f"{source}: 'fallback'"
        sub_meta = ExtendedMeta.from_dict({**doc, **sub, "format": 1}, where)
        fallback = _table_model(mode, sub_meta, sub, tables[_FALLBACK], where)
    return _table_model(mode, meta, doc, tables[""], source, json_path, fallback)


def _read_tables(
    table: Path, source: str, prefixes: Sequence[str]
) -> dict[str, tuple[np.ndarray, ...]]:
    """The ``(x, log_cratio, log_seconds)`` arrays of each prefix in the ``.npz`` ``table``."""
    try:
        with np.load(table, allow_pickle=False) as npz:
            return {p: tuple(np.asarray(npz[p + n], np.float32) for n in _TABLE) for p in prefixes}
    except FileNotFoundError:
        raise ModelError(f"{source}: its table {str(table)!r} does not exist") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelError(f"{source}: its table {str(table)!r} cannot be read: {exc}") from None


def _table_model(
    mode: PerfMode,
    meta: ExtendedMeta,
    doc: dict,
    arrays: tuple[np.ndarray, ...],
    source: str,
    path: Path | None = None,
    fallback: NeighborsModel | None = None,
) -> NeighborsModel:
    """A :class:`NeighborsModel` from its validated JSON ``meta``, ``doc`` (for ``neighbors``,
    ``prior`` and ``weighting``) and table ``arrays``, checked."""
    k = parse_int(f"{source}: 'neighbors'", doc.get("neighbors"), 1, error=ModelError)
    # Absent from the first tables: no prior.
    prior = parse_float(f"{source}: 'prior'", doc.get("prior", 0.0), 0.0, 1.0, error=ModelError)
    # Absent from tables written before it: the plain mean.
    weighting = parse_choice(
        f"{source}: 'weighting'", doc.get("weighting", "uniform"), WEIGHTINGS, error=ModelError
    )
    x, lr, ls = arrays
    n = x.shape[0] if x.ndim == 2 else -1
    ncat, nfeat = len(meta.categories), len(meta.features)
    shapes_ok = x.shape == (n, nfeat) and lr.shape == ls.shape == (n, ncat) and n >= 1
    if not shapes_ok or not all(np.isfinite(a).all() for a in (x, lr, ls)):
        raise ModelError(
            f"{source}: its table is invalid: expected finite arrays x (n, {nfeat}), "
            f"log_cratio and log_seconds (n, {ncat}); got {x.shape}, {lr.shape}, {ls.shape}"
        )
    return NeighborsModel(
        mode, meta.features, np.asarray(meta.mean, np.float32),
        np.asarray(meta.std, np.float32), k, meta.categories, x, lr, ls, path, prior=prior,
        fallback=fallback, weighting=weighting,
    )  # fmt: skip


def write_neighbors(model: NeighborsModel, json_path: str | os.PathLike[str]) -> list[Path]:
    """Write the model's JSON at ``json_path`` and its table beside it (each atomically)."""
    from .atomic import write_bytes, write_text

    json_path = Path(json_path)
    table = json_path.with_suffix(".npz")
    write_bytes(table, table_bytes(model))
    write_text(json_path, json.dumps(neighbors_doc(model), indent=1) + "\n")
    return [json_path, table]
