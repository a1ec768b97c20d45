"""The neighbours model: the Python engine's choice from the measured chunks most like this one.

The extended model of a models directory (``model_<mode>.ext.json`` with ``"kind":
"neighbors"``, and its table ``model_<mode>.ext.npz``) keeps, for every training chunk, its
extended features (:mod:`btune_wrap.features`) and what each category measured on it: the log
of its compression ratio and of its seconds per byte in the model's mode (compression time for
COMP, decompression time for DECOMP). For a new chunk it finds the ``k`` training chunks nearest
in standardized feature space and picks the category of least mean *gain* over them
(:func:`btune_wrap.objective.gain`: how much better each neighbour's own best category was),
at the tradeoff asked for (blended with the whole table's mean gain, weight ``prior``, when the
table holds one array's chunks). Training is storing the table: no TensorFlow is needed.

Why not a network: on the real-data corpus (``benchmarks/bench_quality.py``, fast set) the
extended network overfits the few chunks a user gathers of one dataset (mean gain 525% in COMP
on odd chunks, trained on the ~14 even ones, against 32% for the single category best on those
chunks), and it did worse than the plugin's network on data of a kind it never saw. The
neighbours of the least mean gain measured 24% (COMP) / 18.5% (DECOMP) per dataset, below the
odd chunks' own hindsight category (26% / 20%), and 75% / 68% leave one dataset out.

The JSON layout (``format`` 2)::

    {"format": 2, "kind": "neighbors", "mode": "comp", "features": [names],
     "mean": [...], "std": [...], "neighbors": k, "prior": w,
     "categories": [[codec, filter, clevel, split]]}

(``prior``, the weight of the table's mean gain beside the neighbours', is 0 when absent)

and the table (NumPy ``.npz``): ``x`` float32 ``(n, nfeatures)``, the standardized features of
the ``n`` training chunks; ``log_cratio`` and ``log_seconds`` float16 ``(n, ncategories)``
(logarithms lose at most 0.8% to float16 rounding, below the timing noise).
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
from .errors import ConfigError, ModelError
from .objective import gain, objective, parse_mode, seconds
from .parse import parse_float, parse_int

if TYPE_CHECKING:
    from .measurements import Measurements

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
#: the corpus (even chunks train, odd chunks test, mean gain COMP / DECOMP): 0 gave 24.2% /
#: 18.5%, 0.1 gave 23.5% / 15.2%, 0.3 gave 25.3% / 18.4%; judged on a second gather of the same
#: chunks, 28.8% / 23.6% and 28.0% / 20.0% for 0 and 0.1. Across unrelated arrays (leave one
#: array out) 0.1 did worse than 0 (79% / 81% against 75% / 68%).
ONE_ARRAY_PRIOR = 0.1


def default_neighbors(nchunks: int) -> int:
    """``max(5, round(sqrt(n)))`` of ``n`` training chunks, at most ``n``: 5 for the few dozen
    chunks of one dataset, ~17 for the 300 of the corpus. Measured on the corpus: fewer (3, 4)
    let single noisy chunks decide (mean gain 49-72% in COMP per dataset), a fixed 20 was as good
    on unseen kinds of data and worse on a user's own (34% / 21% per dataset)."""
    return max(1, min(nchunks, max(MIN_NEIGHBORS, round(math.sqrt(nchunks)))))


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
        Weight of the table's mean gain per category beside the neighbours' (0 to 1); see
        :func:`fit_neighbors`.
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
        """Mean gain of each category over the neighbours of each row of ``values`` (the
        feature columns :attr:`features`, unstandardized), blended with the whole table's
        (weight :attr:`prior`), float64 ``(n, ncategories)``."""
        gains, overall = self._gains(float(tradeoff))
        if self.neighbors >= len(self.x):  # every training chunk is a neighbour
            return np.repeat(overall[None, :], len(values), axis=0)
        from .nearest import mean_gain_of_nearest

        z = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
        xt, norms = self._table
        out = np.empty((len(z), gains.shape[1]))
        mean_gain_of_nearest(np.ascontiguousarray(z), xt, norms, gains, self.neighbors, out)
        if self.prior:
            out *= 1.0 - self.prior
            out += self.prior * overall
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
        ``k``; default :func:`default_neighbors` of the number of chunks kept.
    max_chunks
        Most chunks the table keeps, evenly spread over them in order; default
        :data:`MAX_TABLE_CHUNKS`.
    prior
        Weight (0 to 1) of the table's mean gain per category beside the neighbours' mean
        gain; default :data:`ONE_ARRAY_PRIOR` for one :class:`Measurements` (the chunks of
        one array: their mean is a good prior), 0 for several (unrelated arrays).
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
    names = tuple(features or DEFAULT_FEATURES)
    if not names or any(f not in FEATURES for f in names):
        raise InputError(invalid("features", names, f"names among {list(FEATURES)}"))
    values, ratios, secs = [], [], []
    for meas in sets:
        feats = measured_features(meas)
        if feats is None:
            raise InputError(
                f"measurements {meas.name!r} lack the probe's extended features (gathered "
                "before they were recorded): gather again to train a neighbours model"
            )
        nbytes, cbytes, ctime, dtime = meas.matrices()
        values.append(feats[:, [FEATURES.index(f) for f in names]])
        ratios.append(np.log(nbytes[:, None] / cbytes))
        secs.append(np.log(seconds(ctime, dtime, perf) / nbytes[:, None]))
    x, ratio, sec = (np.concatenate(a) for a in (values, ratios, secs))
    if len(x) > max_chunks:  # evenly spread over the chunks, so over every dataset
        keep = np.unique(np.linspace(0, len(x) - 1, max_chunks).round().astype(np.int64))
        x, ratio, sec = x[keep], ratio[keep], sec[keep]
    k = default_neighbors(len(x)) if neighbors is None else parse_int("neighbors", neighbors, 1)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(np.isfinite(std) & (std.astype(np.float32) > 0), std, 1.0)
    z = ((x - mean) / std).astype(np.float32)
    # Rounded as the table stores them, so a model chooses the same in memory and from files.
    ratio, sec = (a.astype(np.float16).astype(np.float32) for a in (ratio, sec))
    return NeighborsModel(
        perf, names, mean.astype(np.float32), std.astype(np.float32), k, sets[0].categories, z,
        ratio, sec, prior=prior,
    )  # fmt: skip


def neighbors_doc(model: NeighborsModel) -> dict[str, object]:
    """The JSON document of ``model`` (see the module docstring)."""
    return {
        "format": KNN_FORMAT,
        "kind": KIND,
        "mode": model.perf_mode.name.lower(),
        "features": list(model.features),
        "mean": [float(v) for v in model.mean],
        "std": [float(v) for v in model.std],
        "neighbors": model.neighbors,
        "prior": model.prior,
        "categories": [list(c.to_plugin()) for c in model.categories],
    }


def table_bytes(model: NeighborsModel) -> bytes:
    """The ``.npz`` table of ``model``."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        x=model.x.astype(np.float32),
        log_cratio=model.log_cratio.astype(np.float16),
        log_seconds=model.log_seconds.astype(np.float16),
    )
    return buf.getvalue()


def read_neighbors(json_path: str | os.PathLike[str], doc: dict) -> NeighborsModel:
    """The model of a parsed JSON ``doc`` (read from ``json_path``) and its ``.npz`` table
    beside it; :class:`ModelError` naming what is wrong."""
    from .model import ExtendedMeta

    json_path = Path(json_path)
    source = f"model metadata {str(json_path)!r}"
    k = parse_int(f"{source}: 'neighbors'", doc.get("neighbors"), 1, error=ModelError)
    # Absent from the first tables: no prior.
    prior = parse_float(f"{source}: 'prior'", doc.get("prior", 0.0), 0.0, 1.0, error=ModelError)
    try:
        mode = parse_mode(doc.get("mode", ""), field=f"{source}: 'mode'")
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    meta = ExtendedMeta.from_dict({**doc, "format": 1}, source)
    table = json_path.with_suffix(".npz")
    try:
        with np.load(table, allow_pickle=False) as npz:
            x, lr, ls = (np.asarray(npz[n], np.float32) for n in _TABLE)
    except FileNotFoundError:
        raise ModelError(f"{source}: its table {str(table)!r} does not exist") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelError(f"{source}: its table {str(table)!r} cannot be read: {exc}") from None
    n = x.shape[0] if x.ndim == 2 else -1
    ncat, nfeat = len(meta.categories), len(meta.features)
    shapes_ok = x.shape == (n, nfeat) and lr.shape == ls.shape == (n, ncat) and n >= 1
    if not shapes_ok or not all(np.isfinite(a).all() for a in (x, lr, ls)):
        raise ModelError(
            f"{source}: table {str(table)!r} is invalid: expected finite arrays x "
            f"(n, {nfeat}), log_cratio and log_seconds (n, {ncat}); got "
            f"{x.shape}, {lr.shape}, {ls.shape}"
        )
    return NeighborsModel(
        mode, meta.features, np.asarray(meta.mean, np.float32),
        np.asarray(meta.std, np.float32), k, meta.categories, x, lr, ls, json_path, prior=prior,
    )  # fmt: skip


def write_neighbors(model: NeighborsModel, json_path: str | os.PathLike[str]) -> list[Path]:
    """Write the model's JSON at ``json_path`` and its table beside it (each atomically)."""
    from .atomic import write_bytes, write_text

    json_path = Path(json_path)
    table = json_path.with_suffix(".npz")
    write_bytes(table, table_bytes(model))
    write_text(json_path, json.dumps(neighbors_doc(model), indent=1) + "\n")
    return [json_path, table]
