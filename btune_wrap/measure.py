"""Measurements: the probe features of every chunk and the real cost of every category on it.

A measurement directory ``<input>.meas/`` (see ARCHITECTURE.md) holds ``meta.json``,
``chunks.parquet`` (one row per chunk: ``chunk``, ``nbytes``, ``cratio_feature``,
``speed_feature``, ``probe_time``) and ``results.parquet`` (one row per (chunk, category):
``chunk``, ``category``, ``cbytes``, ``ctime``, ``dtime``). :class:`Measurements` is its
in-memory form; training and evaluation read nothing else.

:func:`gather` makes such a directory from an input (:mod:`btune_wrap.sources`): for each chunk,
the plugin's inference-time features (:func:`btune_wrap.probe.chunk_features`), then for each
category its compressed size and best compression and decompression times, all measured by
one routine (:class:`Measurer`, :func:`measure_cparams`) that evaluation uses too.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_dir
from .categories import DEFAULT_CATEGORIES, Category, parse_categories
from .errors import BtuneWrapError, ConfigError, InputError, MeasureError, invalid
from .runtime import implicit_tuner_off, installed_version

if TYPE_CHECKING:
    import blosc2
    import pandas as pd

    from .sources import ChunkSource

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
        One row per measured chunk, sorted by ``chunk`` (columns :data:`CHUNK_COLUMNS`).
    results
        One row per (chunk, category) (columns :data:`RESULT_COLUMNS`).
    path
        The directory it was loaded from, if any.
    """

    meta: dict
    chunks: pd.DataFrame
    results: pd.DataFrame
    path: Path | None = None
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
        """A short label: the directory name, else the source."""
        return self.path.name if self.path is not None else str(self.meta.get("source", "?"))

    def features(self) -> np.ndarray:
        """``(nchunks, 2)`` float64: raw cratio and speed features, in ``chunks`` order."""
        return self.chunks[["cratio_feature", "speed_feature"]].to_numpy(np.float64)

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

    # -- checks ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Check columns, category names and completeness; raise :class:`InputError`."""
        where = f"measurements {self.name!r}"
        missing = [k for k in _META_KEYS if k not in self.meta]
        if missing:
            raise InputError(f"{where}: meta.json lacks {missing}")
        if self.meta["format"] != MEAS_FORMAT:
            raise InputError(invalid(f"{where}: format", self.meta["format"], str(MEAS_FORMAT)))
        try:
            self._cats = parse_categories(self.meta["categories"])
        except BtuneWrapError as exc:
            raise InputError(f"{where}: {exc}") from None
        if not self._cats:
            raise InputError(f"{where}: no category was measured")
        for frame, cols, label in (
            (self.chunks, CHUNK_COLUMNS, CHUNKS_FILE),
            (self.results, RESULT_COLUMNS, RESULTS_FILE),
        ):
            absent = [c for c in cols if c not in frame.columns]
            if absent:
                raise InputError(f"{where}: {label} lacks the columns {absent}")
        if self.chunks["chunk"].duplicated().any():
            raise InputError(f"{where}: {CHUNKS_FILE} lists a chunk twice")
        self.chunks = self.chunks.sort_values("chunk", ignore_index=True)
        names = {c.name for c in self._cats}
        unknown = set(self.results["category"].unique()) - names
        if unknown:
            raise InputError(f"{where}: results name categories not in meta.json: {unknown}")
        counts = self.results.groupby("chunk")["category"].nunique()
        chunk_ids = self.chunks["chunk"]
        incomplete = chunk_ids[~chunk_ids.isin(counts[counts == len(names)].index)]
        if len(incomplete):
            raise InputError(
                f"{where}: chunks {incomplete.tolist()[:10]} lack some of the "
                f"{len(names)} categories in {RESULTS_FILE} (an interrupted gather? use --resume)"
            )
        extra = set(self.results["chunk"].unique()) - set(chunk_ids)
        if extra:
            raise InputError(f"{where}: results for chunks not in {CHUNKS_FILE}: {sorted(extra)}")

    # -- files ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Measurements:
        """Read a measurement directory; :class:`InputError` if it is not a complete one."""
        import pandas as pd

        path = Path(path)
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
        except (OSError, ValueError) as exc:
            raise InputError(f"{str(path)!r} cannot be read as measurements: {exc}") from None
        if not isinstance(meta, dict):
            raise InputError(f"{str(files[0])!r}: expected a JSON object")
        return cls(meta, chunks, results, path=path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the directory atomically (aside, then renamed over ``path``)."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            (tmp / META_FILE).write_text(json.dumps(self.meta, indent=1) + "\n")
            self.chunks.astype(CHUNK_COLUMNS).to_parquet(tmp / CHUNKS_FILE, index=False)
            self.results.astype(RESULT_COLUMNS).to_parquet(tmp / RESULTS_FILE, index=False)
        self.path = path
        return path


def load_many(paths: Sequence[str | os.PathLike[str]]) -> list[Measurements]:
    """Load several measurement directories that share one category set (in one order)."""
    if not paths:
        raise InputError(invalid("measurement directories", [], "at least one"))
    loaded = [Measurements.load(p) for p in paths]
    check_same_categories(loaded)
    return loaded


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


# -- measuring one chunk with one set of parameters -------------------------------------------


class RoundTripError(MeasureError):
    """A decompressed chunk differs from the chunk that was compressed."""


@dataclass(frozen=True)
class Measurement:
    """The cost of one set of compression parameters on one chunk.

    Attributes
    ----------
    cbytes : int
        Size of the compressed chunk in bytes (header included, as blosc2 stores it).
    ctime, dtime : float
        Best (minimum) compression and decompression wall times over the repeats, in seconds.
    """

    cbytes: int
    ctime: float
    dtime: float


class Measurer:
    """Times compression and decompression of chunks of one size with one set of parameters.

    One scratch in-memory super-chunk holds the compression and decompression contexts (and
    their threads), reused for every call as when an array is written and read: each
    measurement appends the chunk, decompresses it into a reused buffer and deletes it again.

    Parameters
    ----------
    cparams
        ``blosc2.CParams`` (or a dict of its fields), with the typesize and blocksize of the
        chunks to measure (e.g. :meth:`Category.to_cparams`).
    nbytes
        Size of the chunks in bytes.
    nthreads
        Compression and decompression threads; ``None`` (default) keeps ``cparams.nthreads``.
    """

    def __init__(
        self,
        cparams: blosc2.CParams | dict,
        nbytes: int,
        *,
        nthreads: int | None = None,
    ) -> None:
        import blosc2

        cp = _as_cparams(cparams)
        if nthreads is not None:
            cp = dataclasses.replace(cp, nthreads=_positive_int("nthreads", nthreads))
        self.cparams = cp
        self.nbytes = _positive_int("nbytes", nbytes)
        self.nthreads = int(cp.nthreads)
        with implicit_tuner_off():
            self._schunk = blosc2.SChunk(
                chunksize=self.nbytes, cparams=cp, dparams={"nthreads": self.nthreads}
            )
        self._dst = np.empty(self.nbytes, dtype=np.uint8)

    def measure(self, buf: np.ndarray, repeats: int = 3) -> Measurement:
        """Compress and decompress ``buf`` ``repeats`` times; keep the best times.

        ``buf`` is a C-contiguous 1-D uint8 array of :attr:`nbytes` bytes (a chunk as blosc2
        hands it to the codecs). Every decompression is compared with ``buf``.

        Raises
        ------
        RoundTripError
            If a decompressed chunk differs from ``buf``.
        """
        if buf.nbytes != self.nbytes:
            raise InputError(invalid("buf.nbytes", buf.nbytes, f"{self.nbytes} bytes"))
        sc, dst = self._schunk, self._dst
        clock = time.perf_counter
        ctime = dtime = math.inf
        cbytes = 0
        for _ in range(repeats):
            t0 = clock()
            sc.append_data(buf)
            t1 = clock()
            sc.decompress_chunk(0, dst)
            t2 = clock()
            # The chunk's own length: schunk.cbytes is not reliable here (blosc2 4.0.0 does not
            # subtract a deleted special-value chunk from it).
            cbytes = len(sc.get_chunk(0))
            sc.delete_chunk(0)
            if t1 - t0 < ctime:
                ctime = t1 - t0
            if t2 - t1 < dtime:
                dtime = t2 - t1
            if not np.array_equal(dst, buf):
                raise RoundTripError(
                    f"decompressing the chunk compressed with {self.describe()} did not give "
                    "the chunk back"
                )
        return Measurement(int(cbytes), ctime, dtime)

    def describe(self) -> str:
        """The parameters, as a category name when they form one."""
        try:
            name = Category.from_cparams(self.cparams).name
        except BtuneWrapError:
            cp = self.cparams
            filters = [getattr(f, "name", f) for f in cp.filters]
            name = f"codec {getattr(cp.codec, 'name', cp.codec)}, filters {filters}"
        return f"{name} (typesize {self.cparams.typesize}, blocksize {self.cparams.blocksize})"


_MEASURERS: collections.OrderedDict[tuple, Measurer] = collections.OrderedDict()
_MEASURERS_KEPT = 64


def measure_cparams(
    buf: bytes | memoryview | np.ndarray,
    cparams: blosc2.CParams | dict,
    *,
    repeats: int = 3,
    nthreads: int | None = None,
) -> Measurement:
    """Measure one chunk with one set of compression parameters (the one routine used by the
    gather and by evaluation, so every method is measured on equal terms).

    Parameters
    ----------
    buf
        The chunk's bytes as blosc2 hands them to the codecs (any C-contiguous buffer).
    cparams
        ``blosc2.CParams`` or a dict of its fields; set ``typesize`` and ``blocksize`` to the
        chunk's (a blocksize of 0 lets blosc2 choose).
    repeats
        Timings per operation; the minimum is kept (default 3).
    nthreads
        Compression and decompression threads; ``None`` (default) keeps ``cparams.nthreads``.

    Returns
    -------
    Measurement
        ``cbytes``, ``ctime``, ``dtime``. The decompressed chunk is checked equal to ``buf``
        (:class:`RoundTripError` otherwise). Contexts are cached per parameters and size.
    """
    data = _as_buffer(buf)
    repeats = _positive_int("repeats", repeats)
    cp = _as_cparams(cparams)
    if nthreads is not None:
        cp = dataclasses.replace(cp, nthreads=_positive_int("nthreads", nthreads))
    key = (_cparams_key(cp), data.nbytes)
    measurer = _MEASURERS.get(key)
    if measurer is None:
        measurer = _MEASURERS[key] = Measurer(cp, data.nbytes)
        while len(_MEASURERS) > _MEASURERS_KEPT:
            _MEASURERS.popitem(last=False)
    else:
        _MEASURERS.move_to_end(key)
    return measurer.measure(data, repeats)


def _as_cparams(cparams: object) -> blosc2.CParams:
    import blosc2

    if isinstance(cparams, blosc2.CParams):
        return cparams
    if isinstance(cparams, dict):
        try:
            return blosc2.CParams(**cparams)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                invalid("cparams", cparams, f"blosc2.CParams fields ({exc})")
            ) from None
    raise ConfigError(invalid("cparams", cparams, "a blosc2.CParams or a dict of its fields"))


def _cparams_key(cp: blosc2.CParams) -> tuple:
    def plain(v: object) -> object:
        if isinstance(v, (list, tuple)):
            return tuple(plain(x) for x in v)
        return int(v.value) if hasattr(v, "value") else v

    return tuple((k, plain(v)) for k, v in sorted(dataclasses.asdict(cp).items()))


def _as_buffer(buf: object) -> np.ndarray:
    if isinstance(buf, np.ndarray):
        if not buf.flags.c_contiguous:
            raise InputError(invalid("buf", "a non-contiguous array", "a C-contiguous buffer"))
        out = buf.reshape(-1).view(np.uint8)
    else:
        try:
            out = np.frombuffer(memoryview(buf), dtype=np.uint8)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(
                invalid("buf", type(buf).__name__, "bytes, a memoryview or a numpy array")
            ) from None
    if out.size == 0:
        raise InputError(invalid("buf.nbytes", 0, "at least 1 byte"))
    return out


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(invalid(name, value, "a positive integer"))
    return int(value)


# -- the gather -------------------------------------------------------------------------------

#: Suffix of a measurement directory: ``<input>.meas``.
MEAS_SUFFIX = ".meas"
#: The checkpoint of an unfinished gather: ``.<output name>.partial`` next to the output.
PARTIAL_SUFFIX = ".partial"
_PARTIAL_META = "gather.json"
_PART_PREFIX = "part-"


def default_output(source: ChunkSource) -> Path:
    """``<input>.meas`` next to the input (``file.h5.group.ds.meas`` for ``file.h5:/group/ds``)."""
    name = source.file.name
    if source.inner:
        name += "." + ".".join(p for p in source.inner.split("/") if p)
    return source.file.with_name(name + MEAS_SUFFIX)


def partial_dir(output: str | os.PathLike[str]) -> Path:
    """Where a gather into ``output`` keeps its checkpoints until it completes."""
    output = Path(output)
    return output.with_name(f".{output.name}{PARTIAL_SUFFIX}")


def select_chunks(
    nchunks: int, max_chunks: int | None = None, sample: int | None = None, seed: int = 0
) -> list[int]:
    """The chunk indices a gather measures, sorted.

    ``max_chunks`` keeps the first N chunks; ``sample`` then draws N of those at random
    (``numpy.random.default_rng(seed)``, without replacement). Both are clamped to what there
    is; ``None`` means all.
    """
    limit = nchunks if max_chunks is None else min(_positive_int("max_chunks", max_chunks), nchunks)
    if sample is None:
        return list(range(limit))
    size = min(_positive_int("sample", sample), limit)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(invalid("seed", seed, "an integer"))
    picked = np.random.default_rng(int(seed)).choice(limit, size=size, replace=False)
    return sorted(int(i) for i in picked)


def gather(
    source: str | os.PathLike[str] | ChunkSource,
    output: str | os.PathLike[str] | None = None,
    *,
    categories: Iterable[Category | str] = DEFAULT_CATEGORIES,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    max_chunks: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    repeats: int = 3,
    nthreads: int = 1,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: float = 10.0,
) -> Measurements:
    """Measure every chunk of an input: the probe features and the cost of every category.

    For each selected chunk, in order: its features (:func:`btune_wrap.probe.chunk_features`,
    computed first, as the plugin does when the chunk arrives), then for each category its
    ``cbytes`` and best ``ctime``/``dtime`` over ``repeats`` (:class:`Measurer`), each
    decompression checked equal to the chunk. The result is written to ``output`` as a
    measurement directory (see :class:`Measurements`), never half-written: checkpoints go to
    :func:`partial_dir` every ``checkpoint_every`` seconds and the directory is renamed into
    place at the end.

    Parameters
    ----------
    source
        A path :func:`btune_wrap.sources.open_source` accepts, or an open ``ChunkSource``.
    output
        The measurement directory; default ``<input>.meas`` next to the input.
    categories
        The candidates (:class:`Category` or names), in the order of the model's outputs;
        default :data:`DEFAULT_CATEGORIES` (the tutorial's 32).
    chunks, blocks
        Chunk and block shapes for a path ``source`` (default: a Blosc2 input's own, else
        blosc2's choice). Not accepted with a ``ChunkSource`` (open it with them).
    max_chunks, sample, seed
        Measure only the first ``max_chunks`` chunks, and/or ``sample`` of them drawn at
        random with ``seed`` (see :func:`select_chunks`). Default: all chunks; seed 0.
    repeats
        Timings per operation; the minimum is kept (default 3).
    nthreads
        Compression and decompression threads, as at run time (default 1).
    resume
        Continue an interrupted gather into ``output`` from its last checkpoint (refused if
        its options differ); an already complete ``output`` made with the same options is
        returned as it is. The tables equal those of an uninterrupted run but for timings
        (and the speed feature, relative to each process's zeros speed). Default False.
    force
        Replace an existing ``output`` and drop any checkpoint (default False: both are
        refused).
    progress
        Show a progress bar with ETA on stderr (default True).
    checkpoint_every
        Seconds between checkpoints (default 10).

    Returns
    -------
    Measurements
        What was written (``path`` set to ``output``).

    Raises
    ------
    InputError
        Bad input (see :func:`btune_wrap.sources.open_source`), chunks the probe cannot
        handle, an existing ``output`` without ``force``/``resume``, a checkpoint made with
        other options. Nothing is written in these cases.
    ConfigError
        Invalid categories or options.
    """
    from .sources import ChunkSource, open_source

    cats = _as_categories(categories)
    repeats = _positive_int("repeats", repeats)
    nthreads = _positive_int("nthreads", nthreads)
    if resume and force:
        raise ConfigError("resume=True and force=True are exclusive: continue, or start over")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, float)):
        raise ConfigError(invalid("checkpoint_every", checkpoint_every, "seconds (a number)"))
    if isinstance(source, ChunkSource):
        if chunks is not None or blocks is not None:
            raise ConfigError(
                "chunks/blocks apply to a path; open the source with them instead "
                "(sources.open_source(path, chunks=..., blocks=...))"
            )
        return _Gather(source, output, cats, repeats, nthreads, progress, checkpoint_every).run(
            max_chunks, sample, seed, resume, force
        )
    src = open_source(source, chunks=chunks, blocks=blocks)
    try:
        return _Gather(src, output, cats, repeats, nthreads, progress, checkpoint_every).run(
            max_chunks, sample, seed, resume, force
        )
    finally:
        src.close()


def _as_categories(categories: Iterable[Category | str]) -> tuple[Category, ...]:
    if isinstance(categories, (str, Category)):
        categories = [categories]
    try:
        items = list(categories)
    except TypeError:
        raise ConfigError(invalid("categories", categories, "categories or their names")) from None
    names = [c.name if isinstance(c, Category) else c for c in items]
    cats = parse_categories(names)
    if not cats:
        raise ConfigError(invalid("categories", [], "at least one category"))
    return cats


class _Gather:
    """The state of one gather run."""

    def __init__(
        self,
        source: ChunkSource,
        output: str | os.PathLike[str] | None,
        categories: tuple[Category, ...],
        repeats: int,
        nthreads: int,
        progress: bool,
        checkpoint_every: float,
    ) -> None:
        self.source = source
        if output is None and not source.file.name:
            raise ConfigError(invalid("output", None, "a directory (the source has no file)"))
        self.output = Path(output) if output is not None else default_output(source)
        self.work = partial_dir(self.output)
        self.categories = categories
        self.names = [c.name for c in categories]
        self.repeats = repeats
        self.nthreads = nthreads
        self.progress = progress
        self.checkpoint_every = float(checkpoint_every)
        self.measurers: dict[tuple[int, int], list[Measurer]] = {}
        self._pending_chunks: list[tuple] = []
        self._pending_results: list[tuple] = []
        self._nparts = 0

    # -- the run ------------------------------------------------------------------------------

    def run(
        self, max_chunks: int | None, sample: int | None, seed: int, resume: bool, force: bool
    ) -> Measurements:
        t_start = time.perf_counter()
        src = self.source
        selection = select_chunks(src.nchunks, max_chunks, sample, seed)
        options = self._options(selection)
        where = str(self.output)
        if self.output.exists() and not (force or resume):
            raise InputError(
                f"output {where!r} exists: pass force=True (--force) to replace it, or "
                "resume=True (--resume) to continue or reuse it"
            )
        if self.output.exists() and not self.output.is_dir() and not force:
            raise InputError(invalid("output", where, "a directory (a file is in the way)"))
        if self.work.is_dir() and not (force or resume):
            raise InputError(
                f"an interrupted gather into {where!r} left its checkpoint {str(self.work)!r}: "
                "pass resume=True (--resume) to continue it, or force=True (--force) to start over"
            )
        if resume and not self.work.is_dir() and self.output.is_dir():
            return self._reuse_complete(options)
        self._preflight(selection)

        done: set[int] = set()
        if resume and self.work.is_dir():
            done = self._load_checkpoint(options)
        else:
            _remove_tree(self.work)
            with atomic_dir(self.work) as tmp:
                (tmp / _PARTIAL_META).write_text(json.dumps({"options": options}, indent=1))
        todo = [i for i in selection if i not in done]
        self._measure(todo, len(selection), len(done))
        meas = self._assemble(selection, len(done), time.perf_counter() - t_start)
        meas.meta["selection"] = {"max_chunks": max_chunks, "sample": sample, "seed": seed}
        meas.save(self.output)
        _remove_tree(self.work)
        return meas

    def _measure(self, todo: list[int], total: int, done: int) -> None:
        from tqdm import tqdm

        from .probe import chunk_features

        src = self.source
        bar = tqdm(
            total=total,
            initial=done,
            desc=f"gather {src.file.name}",
            unit="chunk",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        clock = time.perf_counter
        last_flush = clock()
        repeats = self.repeats
        names = self.names
        pending_c, pending_r = self._pending_chunks, self._pending_results
        try:
            for i in todo:
                buf = src.chunk(i)
                # Probe twice, keep the second: right after the previous chunk's many codec
                # runs the caches are cold and the probe runs ~3x slower than when the plugin
                # (or the Python engine) probes a chunk, which would skew the speed feature.
                chunk_features(buf, src.typesize, src.chunk_blocksize(i))
                feats = chunk_features(buf, src.typesize, src.chunk_blocksize(i))
                rows = []
                for name, measurer in zip(names, self._measurers(i, buf.nbytes), strict=True):
                    m = measurer.measure(buf, repeats)
                    rows.append((i, name, m.cbytes, m.ctime, m.dtime))
                pending_r.extend(rows)
                pending_c.append((i, buf.nbytes, feats.cratio, feats.speed, feats.elapsed))
                bar.update(1)
                if clock() - last_flush >= self.checkpoint_every:
                    self._flush()
                    last_flush = clock()
        finally:
            # Keep what was measured (also on Ctrl-C or an error), so --resume goes on from here.
            self._flush()
            bar.close()

    def _measurers(self, i: int, nbytes: int) -> list[Measurer]:
        bs = self.source.chunk_blocksize(i)
        key = (nbytes, bs)
        found = self.measurers.get(key)
        if found is None:
            ts = self.source.typesize
            found = self.measurers[key] = [
                Measurer(c.to_cparams(typesize=ts, blocksize=bs, nthreads=self.nthreads), nbytes)
                for c in self.categories
            ]
        return found

    # -- checks ------------------------------------------------------------------------------

    def _preflight(self, selection: list[int]) -> None:
        """Probe the first selected chunk (and a last one of another size) before writing."""
        from .probe import chunk_features

        src = self.source
        first = selection[0]
        checks = [first]
        last = selection[-1]
        if last != first and src.chunk(last).nbytes != src.chunk(first).nbytes:
            checks.append(last)
        for i in checks:
            buf = src.chunk(i)
            try:
                chunk_features(buf, src.typesize, src.chunk_blocksize(i))
            except InputError as exc:
                raise InputError(
                    f"{src.name}: chunk {i} ({buf.nbytes} bytes, blocksize "
                    f"{src.chunk_blocksize(i)}, typesize {src.typesize}) cannot be probed as "
                    f"the plugin does: {exc}. Use larger --chunks/--blocks"
                    + (" or leave the chunk out with --max-chunks" if i == last != first else "")
                ) from None

    def _options(self, selection: list[int]) -> dict[str, object]:
        src = self.source
        return {
            "format": MEAS_FORMAT,
            "input": src.fingerprint(),
            "chunks": list(src.chunks),
            "blocks": list(src.blocks),
            "categories": self.names,
            "selection": selection,
            "repeats": self.repeats,
            "nthreads": self.nthreads,
        }

    def _load_checkpoint(self, options: dict[str, object]) -> set[int]:
        try:
            saved = json.loads((self.work / _PARTIAL_META).read_text())["options"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"checkpoint {str(self.work)!r} cannot be read ({exc}): remove it, or start "
                "over with --force"
            ) from None
        differ = sorted(k for k in set(options) | set(saved) if options.get(k) != saved.get(k))
        if differ:
            raise InputError(
                f"cannot resume into {str(self.output)!r}: the interrupted gather was made with "
                f"other {', '.join(differ)} ({_show_differences(differ, saved, options)}); use "
                "the same options, or start over with --force"
            )
        for stale in self.work.glob(f".{_PART_PREFIX}*"):
            _remove_tree(stale)
        done: set[int] = set()
        parts = self._parts()
        for part in parts:
            import pandas as pd

            ids = pd.read_parquet(part / CHUNKS_FILE, columns=["chunk"])["chunk"].tolist()
            done.update(int(i) for i in ids)
        self._nparts = len(parts)
        return done

    def _reuse_complete(self, options: dict[str, object]) -> Measurements:
        """``resume`` with a complete output and no checkpoint: return it if it matches."""
        meas = Measurements.load(self.output)
        meta = meas.meta
        mine = {
            "input": options["input"],
            "chunks": options["chunks"],
            "blocks": options["blocks"],
            "categories": options["categories"],
            "selection": options["selection"],
            "repeats": options["repeats"],
            "nthreads": options["nthreads"],
        }
        theirs = {
            "input": meta.get("input"),
            "chunks": meta.get("chunks"),
            "blocks": meta.get("blocks"),
            "categories": meta.get("categories"),
            "selection": meas.chunks["chunk"].tolist(),
            "repeats": meta.get("repeats"),
            "nthreads": meta.get("nthreads"),
        }
        differ = sorted(k for k in mine if mine[k] != theirs[k])
        if differ:
            raise InputError(
                f"cannot resume into {str(self.output)!r}: it is complete and was made with "
                f"other {', '.join(differ)}; use --force to measure again"
            )
        return meas

    # -- files -------------------------------------------------------------------------------

    def _parts(self) -> list[Path]:
        return sorted(p for p in self.work.glob(f"{_PART_PREFIX}*") if p.is_dir())

    def _flush(self) -> None:
        if not self._pending_chunks:
            return
        import pandas as pd

        chunks = pd.DataFrame(self._pending_chunks, columns=list(CHUNK_COLUMNS))
        results = pd.DataFrame(self._pending_results, columns=list(RESULT_COLUMNS))
        with atomic_dir(self.work / f"{_PART_PREFIX}{self._nparts:06d}") as tmp:
            chunks.astype(CHUNK_COLUMNS).to_parquet(tmp / CHUNKS_FILE, index=False)
            results.astype(RESULT_COLUMNS).to_parquet(tmp / RESULTS_FILE, index=False)
        self._nparts += 1
        self._pending_chunks.clear()
        self._pending_results.clear()

    def _assemble(self, selection: list[int], resumed: int, elapsed: float) -> Measurements:
        import pandas as pd

        parts = self._parts()
        chunks = pd.concat(
            [pd.read_parquet(p / CHUNKS_FILE) for p in parts], ignore_index=True
        ).astype(CHUNK_COLUMNS)
        results = pd.concat(
            [pd.read_parquet(p / RESULTS_FILE) for p in parts], ignore_index=True
        ).astype(RESULT_COLUMNS)
        if sorted(chunks["chunk"].tolist()) != selection:
            raise InputError(
                f"checkpoint {str(self.work)!r} does not hold exactly the selected chunks: "
                "start over with --force"
            )
        chunks = chunks.sort_values("chunk", ignore_index=True)
        order = {name: k for k, name in enumerate(self.names)}
        results = (
            results.assign(_k=results["category"].map(order))
            .sort_values(["chunk", "_k"], ignore_index=True)
            .drop(columns="_k")
        )
        return Measurements(self._meta(len(selection), resumed, elapsed), chunks, results)

    def _meta(self, measured: int, resumed: int, elapsed: float) -> dict[str, object]:
        from .probe import zeros_speed

        src = self.source
        return {
            "format": MEAS_FORMAT,
            "source": src.name,
            "kind": src.kind.value,
            "input": src.fingerprint(),
            "dtype": str(src.dtype),
            "shape": list(src.shape),
            "chunks": list(src.chunks),
            "blocks": list(src.blocks),
            "typesize": src.typesize,
            "blocksize": src.blocksize,
            "chunk_nbytes": src.chunk_nbytes,
            "nchunks": src.nchunks,
            "measured_chunks": measured,
            "categories": self.names,
            "repeats": self.repeats,
            "nthreads": self.nthreads,
            "zeros_speed": zeros_speed(src.chunk_nbytes),
            "resumed_chunks": resumed,
            "elapsed": round(elapsed, 3),
            "versions": _versions(),
            "cpu": _cpu(),
            "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }


def _show_differences(keys: list[str], saved: dict, now: dict) -> str:
    def short(v: object) -> str:
        text = json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    return "; ".join(f"{k}: was {short(saved.get(k))}, now {short(now.get(k))}" for k in keys)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("btune_wrap", "blosc2", "numpy", "numba", "pandas", "pyarrow"):
        out[dist] = installed_version(dist) or "not installed"
    return out


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
