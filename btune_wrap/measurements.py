"""The measurement directory: its layout, its validation, and what it says in a few figures.

A measurement directory ``<input>.meas/`` (see ARCHITECTURE.md) holds ``meta.json``,
``chunks.parquet`` (one row per chunk: ``chunk``, ``nbytes``, ``cratio_feature``,
``speed_feature``, ``probe_time``) and ``results.parquet`` (one row per (chunk, category):
``chunk``, ``category``, ``cbytes``, ``ctime``, ``dtime``), plus the optional columns
:data:`CHUNK_EXTRA` (who measured the chunk) and :data:`RESULT_EXTRA` (how often each time was
taken) that gathers since then write and older directories lack. :class:`Measurements` is its
in-memory form, checked on construction (columns, types, ranges, finite values,
completeness); training and evaluation read nothing else. :func:`btune_wrap.measure.gather`
makes such directories.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_dir
from .categories import Category, parse_categories
from .errors import BtuneWrapError, InputError, invalid
from .parse import parse_int

if TYPE_CHECKING:
    import pandas as pd

#: Version of the directory layout written by :meth:`Measurements.save`.
MEAS_FORMAT = 1
META_FILE = "meta.json"
CHUNKS_FILE = "chunks.parquet"
RESULTS_FILE = "results.parquet"

CHUNK_COLUMNS = {
    "chunk": "int64",
    "nbytes": "int64",
    "cratio_feature": "float64",
    "speed_feature": "float64",
    "probe_time": "float64",
}
RESULT_COLUMNS = {
    "chunk": "int64",
    "category": "string",
    "cbytes": "int64",
    "ctime": "float64",
    "dtime": "float64",
}
#: Optional columns (format 1 directories made before them lack them): ``worker``, the key in
#: ``meta["workers"]`` of the process that measured the chunk (its host name for a serial
#: gather, the Dask worker's address on a cluster).
CHUNK_EXTRA = {"worker": "string"}
#: Optional columns: ``crepeats``/``drepeats``, how many compressions/decompressions were
#: timed for the row (``ctime``/``dtime`` is the best of them).
RESULT_EXTRA = {"crepeats": "int64", "drepeats": "int64"}
_META_KEYS = ("format", "source", "categories", "nchunks", "measured_chunks")


@dataclass
class Measurements:
    """The contents of one measurement directory (or several combined).

    Attributes
    ----------
    meta
        ``meta.json`` as a dict (see ARCHITECTURE.md); ``meta["categories"]`` lists the
        category names in order.
    chunks
        One row per measured chunk, sorted by ``chunk`` (columns :data:`CHUNK_COLUMNS`, and
        :data:`CHUNK_EXTRA` if present).
    results
        One row per (chunk, category) (columns :data:`RESULT_COLUMNS`, and
        :data:`RESULT_EXTRA` if present).
    path
        The directory it was loaded from, if any.
    label
        Its name in tables (:attr:`name`) when it has no directory, e.g. a :meth:`select`
        subset. Default None.
    """

    meta: dict
    chunks: pd.DataFrame
    results: pd.DataFrame
    path: Path | None = None
    label: str | None = None
    _cats: tuple[Category, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # -- views ----------------------------------------------------------------------------

    @property
    def categories(self) -> tuple[Category, ...]:
        """The measured categories, in ``meta["categories"]`` order."""
        return self._cats

    @property
    def nchunks(self) -> int:
        """Number of measured chunks."""
        return len(self.chunks)

    @property
    def name(self) -> str:
        """A short label: :attr:`label` if set, else the directory name, else the source."""
        if self.label is not None:
            return self.label
        return self.path.name if self.path is not None else str(self.meta.get("source", "?"))

    def features(self) -> np.ndarray:
        """``(nchunks, 2)`` float64: raw cratio and speed features, in ``chunks`` order."""
        return self.chunks[["cratio_feature", "speed_feature"]].to_numpy(np.float64)

    def extra_features(self) -> np.ndarray | None:
        """``(nchunks, 6)`` float64: the probe's extended features per chunk
        (:data:`btune_wrap.probe.EXTRA_FEATURES`, in ``chunks`` order), or ``None`` for a
        directory gathered before they were recorded or with another layout of them
        (``meta["extra_layout"]`` other than :data:`btune_wrap.probe.EXTRA_LAYOUT`)."""
        from .probe import EXTRA_LAYOUT

        cols = list(extra_chunk_columns())
        if self.meta.get("extra_layout") != EXTRA_LAYOUT:
            return None
        if not all(c in self.chunks.columns for c in cols):
            return None
        return self.chunks[cols].to_numpy(np.float64)

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(nbytes, cbytes, ctime, dtime)`` aligned with ``chunks`` rows and categories.

        ``nbytes`` has shape ``(nchunks,)``; the others ``(nchunks, ncategories)``.
        """
        names = [c.name for c in self._cats]
        wide = self.results.pivot(index="chunk", columns="category")
        order = self.chunks["chunk"].to_numpy()
        out = [self.chunks["nbytes"].to_numpy(np.float64)]
        for col in ("cbytes", "ctime", "dtime"):
            out.append(wide[col].reindex(index=order, columns=names).to_numpy(np.float64))
        return tuple(out)  # type: ignore[return-value]

    def select(self, chunks: Sequence[int] | np.ndarray, label: str | None = None) -> Measurements:
        """The measurements of some of the measured chunks, in memory (validated).

        Parameters
        ----------
        chunks
            Source chunk indices (the ``chunk`` column), each measured here; order and
            repeats do not matter.
        label
            The subset's :attr:`name`. Default: this one's name.

        The tables keep only those chunks' rows; ``meta["measured_chunks"]`` is their number
        and everything else in ``meta`` (the source, the layout, the categories) is kept.
        :class:`InputError` if a chunk was not measured.
        """
        return _select(self, chunks, label)

    # -- checks ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Check meta.json, the tables' columns, types and values, and completeness; raise
        :class:`InputError` naming the file, the column and what was expected."""
        where = f"measurements {self.name!r}"
        self._cats = _check_meta(self.meta, where)
        for frame, cols, extra, label in (
            (self.chunks, CHUNK_COLUMNS, CHUNK_EXTRA | extra_chunk_columns(), CHUNKS_FILE),
            (self.results, RESULT_COLUMNS, RESULT_EXTRA, RESULTS_FILE),
        ):
            _check_table(frame, cols, f"{where}: {label}")
            _check_table(frame, column_types(frame, {}, extra), f"{where}: {label}")
        self.chunks = self.chunks.sort_values("chunk", ignore_index=True)
        _check_complete(self.chunks, self.results, self._cats, where)

    # -- files ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Measurements:
        """Read a measurement directory; :class:`InputError` if it is not a complete one."""
        meta, chunks, results = _read_dir(Path(path))
        return cls(meta, chunks, results, path=Path(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the directory atomically (aside, then renamed over ``path``)."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            (tmp / META_FILE).write_text(json.dumps(self.meta, indent=1) + "\n")
            extra = CHUNK_EXTRA | extra_chunk_columns()
            self.chunks.astype(column_types(self.chunks, CHUNK_COLUMNS, extra)).to_parquet(
                tmp / CHUNKS_FILE, index=False
            )
            self.results.astype(
                column_types(self.results, RESULT_COLUMNS, RESULT_EXTRA)
            ).to_parquet(tmp / RESULTS_FILE, index=False)
        self.path = path
        return path


def extra_chunk_columns() -> dict[str, str]:
    """The optional columns of ``chunks.parquet`` with the probe's extended features
    (:data:`btune_wrap.probe.EXTRA_FEATURES`), all or none (older gathers have none)."""
    from .probe import EXTRA_FEATURES

    return dict.fromkeys(EXTRA_FEATURES, "float64")


def column_types(
    frame: pd.DataFrame, required: dict[str, str], extra: dict[str, str]
) -> dict[str, str]:
    """The types of the columns ``frame`` holds: the required ones and the optional present."""
    return required | {c: t for c, t in extra.items() if c in frame.columns}


#: What each column may hold: (integer only, lowest value, lowest value excluded).
_COLUMN_RANGES: dict[str, tuple[bool, float, bool]] = {
    "chunk": (True, 0, False),
    "nbytes": (True, 1, False),
    "cratio_feature": (False, 0, False),
    "speed_feature": (False, 0, False),
    "probe_time": (False, 0, False),
    "cbytes": (True, 1, False),
    "ctime": (False, 0, False),
    "dtime": (False, 0, False),
    "crepeats": (True, 1, False),
    "drepeats": (True, 1, False),
}


def _check_complete(
    chunks: pd.DataFrame, results: pd.DataFrame, categories: tuple[Category, ...], where: str
) -> None:
    """Every chunk once, with every category once, and nothing else."""
    if chunks["chunk"].duplicated().any():
        raise InputError(f"{where}: {CHUNKS_FILE} lists a chunk twice")
    names = {c.name for c in categories}
    unknown = set(results["category"].unique()) - names
    if unknown:
        raise InputError(f"{where}: results name categories not in meta.json: {unknown}")
    counts = results.groupby("chunk")["category"].nunique()
    chunk_ids = chunks["chunk"]
    incomplete = chunk_ids[~chunk_ids.isin(counts[counts == len(names)].index)]
    if len(incomplete):
        raise InputError(
            f"{where}: chunks {incomplete.tolist()[:10]} lack some of the "
            f"{len(names)} categories in {RESULTS_FILE} (an interrupted gather? use --resume)"
        )
    if len(results) != len(chunk_ids) * len(names):
        raise InputError(f"{where}: {RESULTS_FILE} holds a (chunk, category) row twice")
    extra = set(results["chunk"].unique()) - set(chunk_ids)
    if extra:
        raise InputError(f"{where}: results for chunks not in {CHUNKS_FILE}: {sorted(extra)}")


def _check_meta(meta: dict, where: str) -> tuple[Category, ...]:
    """The categories of a valid ``meta.json`` (the keys training and evaluation read)."""
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise InputError(f"{where}: meta.json lacks {missing}")
    if meta["format"] != MEAS_FORMAT:
        raise InputError(invalid(f"{where}: format", meta["format"], str(MEAS_FORMAT)))
    for key in ("nchunks", "measured_chunks"):
        parse_int(f"{where}: meta.json {key}", meta[key], 0, error=InputError)
    names = meta["categories"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(
            invalid(f"{where}: meta.json categories", names, "a list of category names")
        )
    try:
        cats = parse_categories(names)
    except BtuneWrapError as exc:
        raise InputError(f"{where}: {exc}") from None
    if not cats:
        raise InputError(f"{where}: no category was measured")
    return cats


def _check_table(frame: pd.DataFrame, columns: dict[str, str], where: str) -> None:
    """Columns present, numeric where they should be, finite and in range."""
    import pandas as pd

    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise InputError(f"{where} lacks the columns {absent}")
    ranges = {**_COLUMN_RANGES, **dict.fromkeys(extra_chunk_columns(), (False, 0, False))}
    for col, (integer, low, exclusive) in ranges.items():
        if col not in columns:
            continue
        values = frame[col]
        kind_ok = (
            pd.api.types.is_integer_dtype(values)
            if integer
            else pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        )
        if not kind_ok:
            expected = "integers" if integer else "numbers"
            raise InputError(invalid(f"{where} column {col!r}", str(values.dtype), expected))
        arr = values.to_numpy(np.float64)
        bad = ~np.isfinite(arr) | ((arr <= low) if exclusive else (arr < low))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            relation = ">" if exclusive else ">="
            raise InputError(
                invalid(
                    f"{where} column {col!r} (row {first})",
                    float(arr[first]),
                    f"finite values {relation} {low}",
                )
            )


def is_measurement_dir(path: Path) -> bool:
    """Whether ``path`` is a directory ``btune gather`` wrote (it has the three files)."""
    return all((Path(path) / f).is_file() for f in (META_FILE, CHUNKS_FILE, RESULTS_FILE))


def _select(
    meas: Measurements, chunks: Sequence[int] | np.ndarray, label: str | None
) -> Measurements:
    """:meth:`Measurements.select`."""
    keep = np.unique(np.asarray(chunks, dtype=np.int64).ravel())
    measured = meas.chunks["chunk"].to_numpy(np.int64)
    absent = np.setdiff1d(keep, measured)
    if len(absent):
        raise InputError(
            invalid("chunks", absent[:10].tolist(), f"chunks measured in {meas.name!r}")
        )
    rows = meas.chunks["chunk"].isin(keep)
    return Measurements(
        dict(meas.meta, measured_chunks=int(rows.sum())),
        meas.chunks[rows].reset_index(drop=True),
        meas.results[meas.results["chunk"].isin(keep)].reset_index(drop=True),
        label=label if label is not None else meas.name,
    )


def _read_dir(path: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """``meta.json`` and the two tables of a measurement directory, or :class:`InputError`."""
    import pandas as pd

    if not path.is_dir():
        raise InputError(invalid("measurement directory", str(path), "an existing directory"))
    files = [path / META_FILE, path / CHUNKS_FILE, path / RESULTS_FILE]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise InputError(
            f"{str(path)!r} is not a measurement directory: it lacks {', '.join(absent)} "
            "(make one with 'btune gather')"
        )
    try:
        meta = json.loads(files[0].read_text())
        chunks = pd.read_parquet(files[1])
        results = pd.read_parquet(files[2])
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{str(path)!r} cannot be read as measurements: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{str(files[0])!r}: expected a JSON object")
    return meta, chunks, results


def load_many(paths: Sequence[str | os.PathLike[str]]) -> list[Measurements]:
    """Load several measurement directories that share one category set (in one order)."""
    if not paths:
        raise InputError(invalid("measurement directories", [], "at least one"))
    check_each_once(paths)
    loaded = [Measurements.load(p) for p in paths]
    check_same_categories(loaded)
    return loaded


def check_each_once(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse a measurement directory named twice (its chunks would count twice) with
    InputError."""
    seen = [Path(p).resolve() for p in paths]
    twice = sorted({os.fspath(p) for p, r in zip(paths, seen, strict=True) if seen.count(r) > 1})
    if twice:
        raise InputError(invalid("measurement directories", twice, "each directory once"))


def check_same_categories(sets: Sequence[Measurements]) -> None:
    """Refuse measurements made with different category sets (or orders) with InputError."""
    first = sets[0]
    for other in sets[1:]:
        if other.categories != first.categories:
            raise InputError(
                f"measurements {other.name!r} and {first.name!r} were made with different "
                f"category sets ({len(other.categories)} and {len(first.categories)} "
                "categories): measure them with the same --categories"
            )


# -- summary ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Winner:
    """The category most often best for one goal, and the share of chunks where it is."""

    category: str
    share: float


@dataclass(frozen=True)
class GatherSummary:
    """What a gather found, in a few figures.

    Attributes
    ----------
    chunks, categories : int
        Number of measured chunks and of categories.
    best_cratio, best_cspeed, best_dspeed : Winner
        Most frequent label at tradeoff 1 (ratio), and at tradeoff 0 in modes comp and decomp
        (speed), under :mod:`btune_wrap.objective`.
    elapsed : float or None
        Seconds the gather took (``meta["elapsed"]``), if known.
    """

    chunks: int
    categories: int
    best_cratio: Winner
    best_cspeed: Winner
    best_dspeed: Winner
    elapsed: float | None


def summarize(meas: Measurements) -> GatherSummary:
    """The :class:`GatherSummary` of some measurements."""
    from .objective import best_index, objective_matrix

    nbytes, cbytes, ctime, dtime = meas.matrices()
    names = [c.name for c in meas.categories]

    def winner(mode: str, tradeoff: float) -> Winner:
        j = objective_matrix(nbytes, cbytes, ctime, dtime, mode, (tradeoff,))[0]
        counts = np.bincount(best_index(j), minlength=len(names))
        k = int(np.argmax(counts))
        return Winner(names[k], float(counts[k] / max(len(nbytes), 1)))

    elapsed = meas.meta.get("elapsed")
    return GatherSummary(
        chunks=meas.nchunks,
        categories=len(names),
        best_cratio=winner("comp", 1.0),
        best_cspeed=winner("comp", 0.0),
        best_dspeed=winner("decomp", 0.0),
        elapsed=float(elapsed) if isinstance(elapsed, (int, float)) else None,
    )
