"""The extended model's inputs: what the Python engine's network sees about a chunk.

The plugin's network sees one number about the data (the probe's cratio estimate). The
extended model (:mod:`btune_wrap.model`, ``model_<mode>.ext.*``) also sees the array's typesize
and dtype kind and the probe's extended features (:data:`btune_wrap.probe.EXTRA_FEATURES`):
the probe's estimate after shuffle, bitshuffle and shuffle + bytedelta, the share of zero
bytes and the entropy of the items' lowest and highest bytes. This module turns those raw
values into the network's input columns (:data:`FEATURES`), the same way for the gather's
tables (training) and for the engine (inference).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, invalid
from .parse import parse_dtype
from .probe import EXTRA_FEATURES

if TYPE_CHECKING:
    import pandas as pd

    from .measurements import Measurements

#: The raw per-chunk columns the extended features are computed from: the plugin's cratio
#: feature and the probe's extended features.
RAW_COLUMNS: tuple[str, ...] = ("cratio", *EXTRA_FEATURES)

#: The dtype's columns: log2 of the typesize, and whether items are floats / signed.
DTYPE_FEATURES: tuple[str, ...] = ("log2_typesize", "kind_float", "kind_signed")
#: Every input column an extended model may use, before the tradeoff. Ratios enter as their
#: logarithm (they span 1 to thousands); entropies in bits per byte / 8.
FEATURES: tuple[str, ...] = ("cratio", *DTYPE_FEATURES, *EXTRA_FEATURES)
#: The columns that need the probe's extended pass.
NEEDS_EXTRA = frozenset(EXTRA_FEATURES)


def dtype_columns(dtype: str | np.dtype) -> dict[str, float]:
    """The columns that depend only on the dtype: ``log2_typesize``, ``kind_float`` (1 for
    floating and complex kinds) and ``kind_signed`` (1 for signed integers)."""
    return dict(_dtype_columns(parse_dtype("dtype", dtype, error=InputError)))


@functools.lru_cache(maxsize=64)
def _dtype_columns(dt: np.dtype) -> tuple[tuple[str, float], ...]:
    return (
        ("log2_typesize", math.log2(max(dt.itemsize, 1))),
        ("kind_float", float(dt.kind in "fc")),
        ("kind_signed", float(dt.kind == "i")),
    )


def feature_array(cratio: np.ndarray, extra: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """The input columns (:data:`FEATURES`) of ``n`` chunks of one array, float64 ``(n, 10)``.

    Parameters
    ----------
    cratio
        The plugin's cratio feature per chunk, shape ``(n,)``.
    extra
        The probe's extended features (:data:`btune_wrap.probe.EXTRA_FEATURES`), ``(n, 6)``.
    dtype
        The array's dtype.
    """
    cratio = np.asarray(cratio, dtype=np.float64)
    extra = np.asarray(extra, dtype=np.float64)
    if extra.ndim != 2 or extra.shape != (cratio.size, len(EXTRA_FEATURES)):
        expected = f"shape ({cratio.size}, {len(EXTRA_FEATURES)}): one row per chunk"
        raise InputError(invalid("extra", getattr(extra, "shape", None), expected))
    out = np.empty((cratio.size, len(FEATURES)))
    out[:, 0] = np.log(np.maximum(cratio, 1e-3))
    for name, value in dtype_columns(dtype).items():
        out[:, FEATURES.index(name)] = value
    out[:, 4:7] = np.log(np.maximum(extra[:, 0:3], 1e-3))
    out[:, 7] = extra[:, 3]
    out[:, 8:10] = extra[:, 4:6] / 8.0
    return out


def model_inputs(
    cratio: np.ndarray, extra: np.ndarray, dtype: str | np.dtype, names: tuple[str, ...]
) -> np.ndarray:
    """The columns ``names`` of :func:`feature_array` for chunks probed by the engine: the
    plugin's cratio feature and the probe's extended rows (``(n, 0)`` when the probe did not
    compute them: NaN then, for models that do not read them), float64 ``(n, len(names))``."""
    cratio = np.asarray(cratio, dtype=np.float64)
    extra = np.asarray(extra, dtype=np.float64)
    if extra.shape[-1] == 0:
        extra = np.full((cratio.size, len(EXTRA_FEATURES)), np.nan)
    return feature_array(cratio, extra, dtype)[:, _columns(names)]


@functools.lru_cache(maxsize=16)
def _columns(names: tuple[str, ...]) -> list[int]:
    """Where the columns ``names`` are in :data:`FEATURES` (kept: the engine asks per batch)."""
    return [FEATURES.index(f) for f in names]


def feature_matrix(raw: pd.DataFrame, dtype: str | np.dtype) -> pd.DataFrame:
    """:func:`feature_array` of a table with the columns :data:`RAW_COLUMNS` (one row per
    chunk, e.g. the gather's ``chunks.parquet`` renamed), as a table of :data:`FEATURES`."""
    import pandas as pd

    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(invalid("features", sorted(raw.columns), f"columns {missing} too"))
    values = feature_array(
        raw["cratio"].to_numpy(np.float64), raw[list(EXTRA_FEATURES)].to_numpy(np.float64), dtype
    )
    return pd.DataFrame(values, columns=list(FEATURES), index=raw.index)


#: The columns an extended model uses by default: all of them. Chosen on the real-data corpus
#: (``benchmarks/bench_features.py``, ``bench_quality.py``): the typesize and dtype kind (free)
#: and the three filter probes each lowered the pooled and leave-one-dataset-out gain; the zero
#: share and byte entropies added nothing beyond them to plain means of neighbours, but with
#: distance-weighted ones they did (leave one array out, twice ``sqrt(n)`` neighbours, a
#: prototype on the same gathers: 14.7% / 15.5% -> 11.4% / 12.8% in COMP / DECOMP; per array,
#: with the fallback so made, 3.4% / 5.5%). They cost nothing: the probe's extended pass
#: computes them anyway.
DEFAULT_FEATURES: tuple[str, ...] = FEATURES


def measured_features(meas: Measurements) -> np.ndarray | None:
    """The input columns (:data:`FEATURES`) of every measured chunk of ``meas``, in its
    ``chunks`` order, or ``None`` for a gather without the extended features."""
    extra = meas.extra_features()
    dtype = meas.meta.get("dtype")
    if extra is None or not isinstance(dtype, str):
        return None
    cratio = meas.chunks["cratio_feature"].to_numpy(np.float64)
    return feature_array(cratio, extra, dtype)
