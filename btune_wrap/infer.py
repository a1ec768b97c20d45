"""Tuned compression with trained models: through the plugin, or through a Python engine.

:func:`compress` writes an array (or a file opened with :mod:`btune_wrap.sources`) as a Blosc2
NDArray whose chunks are compressed with the parameters a trained Btune model chooses, and
returns the array with a :class:`~btune_wrap.trace.Trace` of the per-chunk decisions.

Two engines make the same decisions:

``native``
    The Btune plugin itself (:func:`btune_wrap.plugin.write_tuned`), configured from a
    :class:`~btune_wrap.config.BtuneConfig`. Runs only with the blosc2 versions the plugin
    supports (see :func:`btune_wrap.plugin.plugin_support`).
``python``
    The same algorithm in Python, on any blosc2: for each chunk, the plugin's features
    (:func:`btune_wrap.probe.chunk_features`), normalized with the model's JSON, fed with the
    tradeoff to the ``.tflite`` network through the LiteRT runtime; the argmax is a category
    whose parameters compress that chunk.

``use_inference`` (from the config) means, for the Python engine:

* ``-1``: the model chooses every chunk's parameters.
* ``N > 0``: the model chooses the first N chunks; from then on the most predicted category
  (ties go to the lowest index, as in the plugin) is the starting point of a *tweak*: on the
  following chunks, one neighbour at a time (compression level +-1, the other split mode) is
  compressed next to the current best on the same chunk, and whichever scores better under
  the objective (:mod:`btune_wrap.objective`) is written and kept. The tweak ends when no
  untried neighbour of the best is left, or after ``max_tweaks`` trials; later chunks use
  the best parameters found.
* ``0``: the model is not run. The tweak starts from blosc2's default parameters (ZSTD,
  shuffle, its default level and split mode). No models directory is needed.

(The plugin itself, with ``use_inference=0`` and a models directory, starts from the first
category of the model's list and tunes threads and levels; without a models directory it
runs its genetic search.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_path
from .categories import Category, SplitMode, default_category
from .config import BtuneConfig, PerfMode
from .errors import ConfigError, InputError, ModelError, PluginUnavailableError, invalid
from .model import BtuneModel, load_model, plugin_tradeoff
from .objective import objective
from .plugin import plugin_support, require_plugin, write_tuned
from .probe import MIN_CHUNK_NBYTES, ChunkProbe, FeatureArrays
from .runtime import implicit_tuner_off
from .trace import Banner, InferenceLine, Trace, TraceRow, assemble

if TYPE_CHECKING:
    import blosc2

#: Bytes of a Blosc2 chunk header: a chunk of at most this plus one item holds special values.
_MAX_OVERHEAD = 32


class Engine(Enum):
    """Who makes the per-chunk decisions: the Btune plugin or the Python engine."""

    NATIVE = "native"
    PYTHON = "python"

    @classmethod
    def parse(cls, value: Engine | str | None) -> Engine:
        """Accept a member or its value (``"native"``, ``"python"``); ``None`` picks the default.

        The default is the plugin where it can run (:func:`btune_wrap.plugin.plugin_support`),
        the Python engine elsewhere.
        """
        if value is None:
            return cls.NATIVE if plugin_support() else cls.PYTHON
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.strip().lower() in ("native", "python"):
            return cls(value.strip().lower())
        raise ConfigError(invalid("engine", value, "'native', 'python' or None"))


class RowState(str, Enum):
    """What the Python engine did for one chunk (the ``state`` column of its trace rows)."""

    INFERENCE = "INFERENCE"
    """The model chose the parameters."""
    TWEAK = "TWEAK"
    """A neighbour of the best parameters was tried on this chunk next to the best."""
    STOP = "STOP"
    """Tuning has ended: the best parameters were used as they are."""


# -- entry point --------------------------------------------------------------------------


def compress(
    data: object,
    config: BtuneConfig | None = None,
    engine: Engine | str | None = None,
    *,
    urlpath: str | os.PathLike[str] | None = None,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    nthreads: int | None = None,
    max_tweaks: int = 8,
    repeats: int = 3,
    echo: bool = False,
) -> tuple[blosc2.NDArray, Trace]:
    """Write ``data`` as a Blosc2 NDArray with a trained model choosing each chunk's parameters.

    Parameters
    ----------
    data
        A NumPy array (or anything ``numpy.asarray`` accepts), a ``blosc2.NDArray``, or the
        path of an input :mod:`btune_wrap.sources` opens (``.b2nd``, ``.npy``,
        ``file.h5:/dataset``, a Zarr store). A Blosc2 input keeps its chunk and block shapes
        unless ``chunks``/``blocks`` are given.
    config
        The tuning configuration: ``tradeoff``, ``perf_mode`` (DECOMP uses
        ``model_decomp.*``, the other modes ``model_comp.*``), ``models_dir``,
        ``use_inference``; the native engine also uses the genetic knobs. ``None`` (default)
        reads the ``BTUNE_*`` environment (:meth:`BtuneConfig.from_env`).
    engine
        ``"native"`` (the plugin), ``"python"``, or ``None`` (default): the plugin where it
        can run, the Python engine elsewhere. ``Trace.engine`` says which ran.
    urlpath
        Where to write the ``.b2nd`` file (written aside, then renamed over it); ``None``
        (default) keeps the array in memory.
    chunks, blocks
        Chunk and block shapes; ``None`` lets blosc2 choose (or keeps a Blosc2 input's).
    nthreads
        Compression threads; ``None`` keeps blosc2's default.
    max_tweaks
        Python engine: the most neighbour trials of the tweak phase (default 8).
    repeats
        Python engine: timings per measurement in the tweak phase; the minimum is kept
        (default 3).
    echo
        Print the trace as the plugin would have (the plugin's own output for the native
        engine; the same layout for the Python engine). Default False.

    Returns
    -------
    (NDArray, Trace)
        The written array and the per-chunk decisions. The native trace is empty unless
        ``config.trace``; the Python engine always records its rows.

    Raises
    ------
    PluginUnavailableError
        ``engine="native"`` where the plugin cannot run; nothing is written.
    ModelError
        The models directory lacks the mode's files or they are inconsistent (checked for both
        engines before anything is written), or the Python engine needs a model and
        ``config.models_dir`` is None.
    """
    cfg = BtuneConfig.from_env() if config is None else config
    if not isinstance(cfg, BtuneConfig):
        raise ConfigError(invalid("config", cfg, "a BtuneConfig or None"))
    which = Engine.parse(engine)
    auto_python = engine is None and which is Engine.PYTHON
    if auto_python and cfg.models_dir is None and cfg.use_inference != 0:
        raise PluginUnavailableError(
            "genetic tuning (models_dir=None) needs the Btune plugin, which cannot run "
            f"here: {plugin_support().reason}; give a models directory to use the Python "
            "engine"
        )
    for name, value, low in (("max_tweaks", max_tweaks, 0), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(invalid(name, value, f"an integer >= {low}"))
    if which is Engine.NATIVE:
        require_plugin()
    model = _model_for(cfg, which)
    array, src_chunks, src_blocks = _load_input(data)
    chunks = tuple(chunks) if chunks is not None else src_chunks
    blocks = tuple(blocks) if blocks is not None else src_blocks
    if which is Engine.NATIVE:
        return write_tuned(
            array, cfg, urlpath=urlpath, chunks=chunks, blocks=blocks, nthreads=nthreads, echo=echo
        )
    engine_ = PythonEngine(cfg, model, max_tweaks=max_tweaks, repeats=repeats)
    result, trace = engine_.write(
        array, urlpath=urlpath, chunks=chunks, blocks=blocks, nthreads=nthreads
    )
    if echo and trace.raw:
        sys.stdout.write(trace.raw)
        sys.stdout.flush()
    return result, trace


def _model_for(config: BtuneConfig, engine: Engine) -> BtuneModel | None:
    """Validate the model the run will use, before anything is written."""
    if config.models_dir is None:
        if engine is Engine.PYTHON and config.use_inference != 0:
            raise ModelError(
                f"models_dir=None is invalid with use_inference={config.use_inference}: the "
                "Python engine needs a models directory (or use_inference=0)"
            )
        return None
    return load_model(config.models_dir, config.perf_mode)


def _load_input(data: object) -> tuple[np.ndarray, tuple[int, ...] | None, tuple[int, ...] | None]:
    """The data as a NumPy array, with the chunk/block shapes of a Blosc2 input."""
    import blosc2

    if isinstance(data, (str, os.PathLike)):
        from .sources import open_source

        source = open_source(data)
        array = np.asarray(source.load_array())
        chunks = getattr(source, "chunks", None)
        blocks = getattr(source, "blocks", None)
        is_b2 = str(data).endswith((".b2nd", ".b2frame"))
        return (
            array,
            tuple(chunks) if is_b2 and chunks else None,
            tuple(blocks) if is_b2 and blocks else None,
        )
    if isinstance(data, blosc2.NDArray):
        return data[()], tuple(data.chunks), tuple(data.blocks)
    array = np.asarray(data)
    if array.dtype.hasobject:
        raise InputError(invalid("data.dtype", str(array.dtype), "a dtype without objects"))
    return array, None, None


# -- the Python engine --------------------------------------------------------------------


def compiled_method(schunk: blosc2.SChunk, name: str) -> Callable:
    """``schunk``'s method ``name``, from python-blosc2's compiled base class where it has one.

    The Python ``SChunk`` methods that change a super-chunk first check its access mode, about
    a microsecond per call; the Python engine makes several calls per chunk on super-chunks it
    opened for writing itself, so it calls the compiled method directly. Falls back to the
    public method where the class layout differs.
    """
    for cls in type(schunk).__mro__[1:]:
        if cls.__module__ == "blosc2.blosc2_ext" and name in vars(cls):
            return getattr(cls, name).__get__(schunk)
    return getattr(schunk, name)


class ChunkCompressor:
    """Compresses chunk buffers with one set of parameters, reusing one Blosc2 context.

    A scratch in-memory SChunk holds the context; each buffer is appended, taken out as a
    standalone chunk (bytes that ``SChunk.update_chunk`` accepts) and deleted again.
    """

    def __init__(self, cparams: blosc2.CParams, chunk_nbytes: int) -> None:
        import blosc2

        self.cparams = cparams
        with implicit_tuner_off():
            self._schunk = blosc2.SChunk(chunksize=chunk_nbytes, cparams=cparams)
        sc = self._schunk
        self._append = compiled_method(sc, "append_data")
        self._get = compiled_method(sc, "get_chunk")
        self._delete = compiled_method(sc, "delete_chunk")

    def compress(self, buf: np.ndarray) -> bytes:
        """The compressed chunk for ``buf`` (a contiguous buffer of one chunk's bytes)."""
        self._append(buf)
        chunk = self._get(0)
        self._delete(0)
        return chunk

    def timed(self, buf: np.ndarray, repeats: int, decompress: bool) -> tuple[bytes, float, float]:
        """``(chunk, ctime, dtime)``: best of ``repeats`` timings (dtime 0 unless asked)."""
        sc = self._schunk
        ctime = dtime = math.inf
        chunk = b""
        for _ in range(repeats):
            t0 = time.perf_counter()
            sc.append_data(buf)
            t1 = time.perf_counter()
            ctime = min(ctime, t1 - t0)
            if decompress:
                t1 = time.perf_counter()
                sc.decompress_chunk(0)
                dtime = min(dtime, time.perf_counter() - t1)
            chunk = sc.get_chunk(0)
            sc.delete_chunk(0)
        return chunk, ctime, (dtime if decompress else 0.0)


@dataclass
class _Tweak:
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
        for split in _other_splits(cat):
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


def _other_splits(cat: Category) -> list[SplitMode]:
    always, never = SplitMode.ALWAYS, SplitMode.NEVER
    if cat.splitmode == always:
        return [never]
    if cat.splitmode == never:
        return [always]
    return [always, never]


#: Chunks probed before one batched network call (and at most this many bytes of them):
#: 128 chunks of 40 KB wrote 3-5% faster than 64, and as fast as 256.
_BATCH_CHUNKS = 128
_BATCH_BYTES = 16 * 2**20
#: The probe runs in a background thread only for more inferred chunks than this.
_BACKGROUND_MIN_CHUNKS = 64


@dataclass
class _Slot:
    """Everything the writer needs per category, computed once."""

    category: Category
    compressor: ChunkCompressor
    row: dict[str, object]
    """The fields of this category's trace rows that do not change from chunk to chunk."""
    inference: dict[str, object]
    """The same for its inference lines (all but ``category`` and the two times)."""

    def __post_init__(self) -> None:
        self.compress = self.compressor.compress


class PythonEngine:
    """The plugin's inference algorithm in Python; runs on any blosc2.

    Parameters
    ----------
    config
        ``tradeoff``, ``perf_mode`` and ``use_inference`` are used (see the module docstring
        for what ``use_inference`` means here); ``trace`` makes :meth:`write` also render the
        trace as text (``Trace.raw``).
    model
        The model for ``config.perf_mode`` (:func:`btune_wrap.model.load_model`); may be
        ``None`` only with ``use_inference=0``.
    max_tweaks
        Most neighbour trials in the tweak phase (default 8; 0 disables tweaking).
    repeats
        Timings per tweak measurement, the minimum is kept (default 3).

    Notes
    -----
    Up to 128 chunks are probed in one compiled call (each timed on its own), then the network
    runs once for them (the outputs are the same as one call per chunk); each chunk's
    ``time_inference`` is its share of that call.

    When the array's cparams allow more than one thread, the chunks are views of the data
    (whole chunks of 1-D C-contiguous data whose blocks divide them), more than 64 chunks are
    inferred and the network ignores the speed feature (:attr:`BtuneModel.reads_speed`), the
    probe runs ahead in a background thread (:meth:`ChunkProbe.start`) while the calling thread
    compresses the chunks already probed: the same decisions and bytes, written sooner. It is
    not used for networks that read the speed feature, because compressing next to the probe
    slows its timings (the speed's median dropped by up to 16% in our measurements).
    """

    def __init__(
        self,
        config: BtuneConfig,
        model: BtuneModel | None,
        *,
        max_tweaks: int = 8,
        repeats: int = 3,
    ) -> None:
        if model is None and config.use_inference != 0:
            raise ModelError(
                f"model=None is invalid with use_inference={config.use_inference}: "
                "expected a loaded model"
            )
        self.config = config
        self.model = model
        self.max_tweaks = max_tweaks
        self.repeats = repeats
        self.tradeoff = plugin_tradeoff(config.tradeoff)
        mode = config.perf_mode
        #: The mode the objective uses (AUTO behaves as COMP, as in the plugin).
        self.mode = PerfMode.COMP if mode is PerfMode.AUTO else mode
        #: Whether tweak measurements time decompression (DECOMP, BALANCED).
        self.decompress = self.mode in (PerfMode.DECOMP, PerfMode.BALANCED)

    # -- public ----------------------------------------------------------------------------

    def write(
        self,
        array: np.ndarray,
        *,
        urlpath: str | os.PathLike[str] | None = None,
        chunks: Sequence[int] | None = None,
        blocks: Sequence[int] | None = None,
        nthreads: int | None = None,
    ) -> tuple[blosc2.NDArray, Trace]:
        """Write ``array`` chunk by chunk with the engine's decisions; see :func:`compress`."""
        import blosc2

        data = np.asarray(array)
        if data.dtype.hasobject:
            raise InputError(invalid("array.dtype", str(data.dtype), "a dtype without objects"))
        kwargs: dict[str, object] = {}
        if nthreads is not None:
            kwargs["cparams"] = {"nthreads": nthreads}
        kwargs["chunks"], kwargs["blocks"] = _layout(
            data.shape,
            data.dtype.str,
            None if chunks is None else tuple(int(c) for c in chunks),
            None if blocks is None else tuple(int(b) for b in blocks),
            nthreads,
            repr(sorted(blosc2.cparams_dflts.items())),
        )
        with contextlib.ExitStack() as stack:
            if urlpath is not None:
                tmp = stack.enter_context(atomic_path(urlpath))
                kwargs.update(urlpath=str(tmp), mode="w")
            with implicit_tuner_off():
                arr = blosc2.empty(data.shape, dtype=data.dtype, **kwargs)
            trace = self.fill(arr, data)
            if urlpath is not None:
                del arr
        if urlpath is not None:
            arr = blosc2.open(os.fspath(urlpath))
        return arr, trace

    def fill(self, arr: blosc2.NDArray, data: np.ndarray) -> Trace:
        """Compress every chunk of ``data`` into ``arr`` (same shape and dtype), in place.

        ``arr`` is typically fresh from ``blosc2.empty``; its chunk and block shapes, typesize
        and thread count are used. Returns the trace of the decisions.
        """
        return _Run(self, arr).fill(data)


@functools.lru_cache(maxsize=64)
def _layout(
    shape: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...] | None,
    blocks: tuple[int, ...] | None,
    nthreads: int | None,
    defaults: str,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The chunk and block shapes ``blosc2.empty`` picks for these arguments, computed once.

    Without ``blocks``, blosc2 compresses an 8 MB buffer of zeros to get a blocksize hint on
    every call, which costs as much as writing a few MB; the result depends only on the
    arguments and on blosc2's default parameters (``defaults``, their ``repr``).
    """
    import blosc2

    kwargs = {} if nthreads is None else {"cparams": {"nthreads": nthreads}}
    got = blosc2.compute_chunks_blocks(shape, chunks, blocks, np.dtype(dtype), **kwargs)
    return tuple(int(c) for c in got[0]), tuple(int(b) for b in got[1])


class _Run:
    """The state of one :meth:`PythonEngine.fill`: per-category slots, counts, the trace."""

    def __init__(self, engine: PythonEngine, arr: blosc2.NDArray) -> None:
        self.engine = engine
        self.arr = arr
        schunk = arr.schunk
        self.typesize = schunk.typesize
        self.blocksize = schunk.blocksize
        self.chunk_nbytes = schunk.chunksize
        self.nthreads = schunk.cparams.nthreads
        self.update_chunk = compiled_method(schunk, "update_chunk")
        self.slots: dict[Category, _Slot] = {}
        model = engine.model
        #: The slot of each of the model's categories, by index, once used.
        self._by_index: list[_Slot | None] = [None] * (len(model.categories) if model else 0)
        #: How often the model chose each category.
        self.counts = [0] * (len(model.categories) if model else 0)
        self.last: Category | None = None
        self._probe: ChunkProbe | None = None
        if self.chunk_nbytes >= MIN_CHUNK_NBYTES:
            # Validated once for all chunks (all have the same padded size); a layout the probe
            # refuses leaves every chunk without features.
            with contextlib.suppress(InputError):
                self._probe = ChunkProbe(self.chunk_nbytes, self.typesize, self.blocksize)
        self.trace = Trace(engine="python")
        #: Rows written by _write, completed by _finish_rows: (row index, step, slot, cbytes,
        #: ctime, state, model's category index or -1, time entropy, time inference); their
        #: scores are computed in one call.
        self._pending: list[tuple] = []
        self.trace.banners.append(
            Banner(
                version="btune_wrap python engine",
                perf_mode=engine.mode.name,
                tradeoff=engine.config.tradeoff,
                bandwidth="-",
            )
        )
        if model is not None:
            self.trace.messages.append(f"INFO: model {model.tflite_path}")

    def fill(self, data: np.ndarray) -> Trace:
        engine = self.engine
        model = engine.model
        nchunks = self.arr.schunk.nchunks
        use = engine.config.use_inference
        n_infer = 0 if model is None else (nchunks if use < 0 else min(use, nchunks))
        per_batch = max(1, min(_BATCH_CHUNKS, -(-_BATCH_BYTES // max(self.chunk_nbytes, 1))))
        reader = ChunkReader(data, self.arr, per_batch)
        probe = self._probe
        # With a thread to spare, chunks that are views of the data and a network that ignores
        # the speed feature, the probe runs ahead in a background thread while this one
        # compresses the chunks already probed. (Compressing next to it slows the probe's
        # timings: the speed feature's median dropped by up to 16%; the cratio is unchanged.)
        whole = None
        if (
            probe is not None
            and self.nthreads > 1
            and n_infer > _BACKGROUND_MIN_CHUNKS
            and not model.reads_speed
        ):
            whole = reader.view(0, n_infer)
        with contextlib.ExitStack() as stack:
            job = None
            if whole is not None:
                # One untimed probe first, so that one-off costs (compilation, the zeros-speed
                # reference) do not distort the first chunk's speed feature.
                probe.many(whole[:1])
                job = stack.enter_context(probe.start(whole))
            done = 0
            while done < n_infer:
                if job is not None:
                    ready = job.wait(done + 1)
                    count = min(per_batch, ready - done)
                    chunks = whole[done : done + count]
                    feats = job.features(done, done + count)
                else:
                    count = min(per_batch, n_infer - done)
                    chunks = reader.take(done, count)
                    feats = None
                    if probe is not None:
                        if done == 0:
                            probe.many(chunks[:1])  # untimed, as above
                        feats = probe.many(chunks)
                self._infer_batch(done, chunks, feats)
                done += count

        tweak: _Tweak | None = None
        final: _Slot | None = None  # the best parameters, once the tweak is over
        for step in range(done, nchunks):
            buf = reader.take(step, 1)[0]
            if final is not None:
                self._write(step, buf, final, RowState.STOP)
                continue
            if tweak is None:
                start = _most_predicted(model, self.counts) or default_category()
                tweak = _Tweak(start, trials_left=engine.max_tweaks)
            cand = tweak.next_candidate()
            if cand is None:
                # Nothing is left to try: the best stays the best from now on.
                final = self._slot(tweak.best)
                self._write(step, buf, final, RowState.STOP)
            else:
                self._tweak_step(step, buf, tweak, cand)
        self._finish_rows()
        if engine.config.trace:
            self.trace.raw = format_trace(self.trace)
        return self.trace

    def _slot(self, cat: Category) -> _Slot:
        slot = self.slots.get(cat)
        if slot is None:
            # A chunk of one block is compressed by one thread whatever nthreads says; a
            # one-thread context skips the thread pool's handshake (same bytes).
            one_block = self.blocksize >= self.chunk_nbytes
            cparams = cat.to_cparams(
                typesize=self.typesize,
                blocksize=self.blocksize,
                nthreads=1 if one_block else self.nthreads,
            )
            codec, filter_, clevel, splitmode = (int(v) for v in cat.to_plugin())
            row = {
                "codec": cat.codec.name.lower(),
                "filter": filter_,
                "split": 1 if cat.splitmode == SplitMode.ALWAYS else 0,
                "clevel": cat.clevel,
                "cthreads": self.nthreads,
                "dthreads": self.nthreads,
                "readapt": "",
                "score_higher_is_better": True,
                "blocksize": None,
                "shufflesize": None,
            }
            inference = {
                "codec": codec,
                "filter": filter_,
                "clevel": clevel,
                "splitmode": splitmode,
            }
            slot = self.slots[cat] = _Slot(
                category=cat,
                compressor=ChunkCompressor(cparams, self.chunk_nbytes),
                row=row,
                inference=inference,
            )
        return slot

    def _infer_batch(self, first: int, chunks: np.ndarray, feats: FeatureArrays | None) -> None:
        """Run the network once for the chunks (rows of ``chunks``) and write each.

        ``feats`` holds their features (NaN where the probe failed), ``None`` when the layout
        gives none.
        """
        model = self.engine.model
        assert model is not None
        count = chunks.shape[0]
        choices = [-1] * count
        entropy = [0.0] * count
        t_share = 0.0
        if feats is not None:
            entropy = feats.elapsed.tolist()
            ok = ~np.isnan(feats.cratio)
            nok = int(ok.sum())
            if nok:
                t0 = time.perf_counter()
                chosen = model.choose_many(feats.cratio[ok], feats.speed[ok], self.engine.tradeoff)
                t_share = (time.perf_counter() - t0) / nok
                picked = np.full(count, -1, dtype=np.int64)
                picked[ok] = chosen
                choices = picked.tolist()
        categories = model.categories
        by_index, counts, write = self._by_index, self.counts, self._write
        inference = RowState.INFERENCE
        for k, index in enumerate(choices):
            step = first + k
            if index < 0:
                # No usable features (see ChunkProbe): go on with the latest choice.
                cat = self.last or _most_predicted(model, counts) or default_category()
                write(step, chunks[k], self._slot(cat), RowState.STOP)
                continue
            counts[index] += 1
            slot = by_index[index]
            if slot is None:
                slot = by_index[index] = self._slot(categories[index])
            self.last = slot.category
            write(step, chunks[k], slot, inference, index, entropy[k], t_share)

    def _write(
        self,
        step: int,
        buf: np.ndarray,
        slot: _Slot,
        state: RowState,
        category: int = -1,
        time_entropy: float = 0.0,
        time_inference: float = 0.0,
    ) -> None:
        """Compress one chunk with ``slot`` and store it; its row is completed later.

        ``category`` is the model's index for the chunk (-1: the model did not choose it).
        """
        t0 = time.perf_counter()
        chunk = slot.compress(buf)
        ctime = time.perf_counter() - t0
        self.update_chunk(step, chunk)
        rows = self.trace.rows
        self._pending.append(
            (
                len(rows),
                step,
                slot,
                len(chunk),
                ctime,
                state,
                category,
                time_entropy,
                time_inference,
            )
        )
        rows.append(None)  # type: ignore[arg-type]  # the row, once scored

    def _finish_rows(self) -> None:
        """Score the rows :meth:`_write` left pending (in one objective call), and fill them in.

        The score is the objective of the chunk's cratio and compression speed (NaN in DECOMP
        and BALANCED modes, where the write does not time decompression).
        """
        pending, self._pending = self._pending, []
        if not pending:
            return
        nbytes = self.chunk_nbytes
        if self.engine.decompress:
            scores = [math.nan] * len(pending)
        else:
            columns = list(zip(*pending, strict=True))
            cbytes, ctime = (np.array(columns[k], dtype=np.float64) for k in (3, 4))
            scores = objective(
                nbytes / cbytes, nbytes / np.maximum(ctime, 1e-9), self.engine.tradeoff
            ).tolist()
        rows, inferences = self.trace.rows, self.trace.inferences
        special = _MAX_OVERHEAD + self.typesize
        for (index, step, slot, cb, _, state, category, t_ent, t_inf), score in zip(
            pending, scores, strict=True
        ):
            inference = None
            if category >= 0:
                inference = assemble(
                    InferenceLine,
                    slot.inference,
                    {"category": category, "time_entropy": t_ent, "time_inference": t_inf},
                )
                inferences.append(inference)
            rows[index] = assemble(
                TraceRow,
                slot.row,
                {
                    "step": step,
                    "score": score,
                    "cratio": nbytes / cb,
                    "state": state.value,
                    "winner": "S" if cb <= special else "-",
                    "inference": inference,
                },
            )

    def _score(self, nbytes: int, cbytes: int, ctime: float, dtime: float) -> float:
        if self.engine.mode is PerfMode.DECOMP:
            t = dtime
        elif self.engine.mode is PerfMode.BALANCED:
            t = ctime + dtime
        else:
            t = ctime
        return float(objective(nbytes / cbytes, nbytes / max(t, 1e-9), self.engine.tradeoff))

    def _tweak_step(self, step: int, buf: np.ndarray, tweak: _Tweak, cand: Category) -> None:
        """Try ``cand`` next to the best on this chunk; write the better one and keep it."""
        nbytes = buf.nbytes
        best = self._slot(tweak.best)
        trial = self._slot(cand)
        b_chunk, b_ct, b_dt = best.compressor.timed(
            buf, self.engine.repeats, self.engine.decompress
        )
        c_chunk, c_ct, c_dt = trial.compressor.timed(
            buf, self.engine.repeats, self.engine.decompress
        )
        b_score = self._score(nbytes, len(b_chunk), b_ct, b_dt)
        c_score = self._score(nbytes, len(c_chunk), c_ct, c_dt)
        special = len(c_chunk) <= _MAX_OVERHEAD + self.typesize
        improved = c_score > b_score and not special
        if improved:
            tweak.accept(cand)
        kept, chunk, score = (trial, c_chunk, c_score) if improved else (best, b_chunk, b_score)
        self.update_chunk(step, chunk)
        self.trace.messages.append(
            f"TRACE: Tweak step={step} tried {cand.name} score={c_score:.4g} against "
            f"{best.category.name} score={b_score:.4g}: kept {kept.category.name}"
        )
        winner = "S" if len(chunk) <= _MAX_OVERHEAD + self.typesize else "W" if improved else "-"
        self.trace.rows.append(
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


def _most_predicted(model: BtuneModel | None, counts: list[int]) -> Category | None:
    """The category inferred most often (lowest index on ties), as the plugin picks it."""
    if model is None or not counts or max(counts) == 0:
        return None
    return model.categories[counts.index(max(counts))]


# -- chunk buffers ------------------------------------------------------------------------


class ChunkReader:
    """The chunks of ``data`` as the bytes blosc2 hands to the codecs for ``arr``.

    ``take(first, count)`` gives chunks ``first`` to ``first + count - 1`` as the rows of a
    C-contiguous uint8 array of shape ``(count, chunk nbytes)``: blocks follow one another
    inside each chunk, edge chunks and blocks are padded, as
    :func:`btune_wrap.sources.chunk_buffer` lays them out. Whole chunks of 1-D C-contiguous
    data whose blocks divide the chunk are that layout already: they come as views of ``data``
    (no copy). Other chunks are copied into one buffer of ``max_count`` rows, reused by the next
    call: use the rows before taking more.
    """

    def __init__(self, data: np.ndarray, arr: blosc2.NDArray, max_count: int = 1) -> None:
        self.data = data
        self.chunks, self.blocks = tuple(arr.chunks), tuple(arr.blocks)
        self.nchunks = arr.schunk.nchunks
        self.nbytes = arr.schunk.chunksize
        self.max_count = max_count
        chunks, blocks = self.chunks, self.blocks
        # A whole 1-D chunk whose blocks divide it is a plain slice of contiguous data: a view.
        step = chunks[0] if len(chunks) == 1 and chunks[0] % blocks[0] == 0 else 0
        self.full = (
            data.shape[0] // step if step and data.ndim == 1 and data.flags.c_contiguous else 0
        )
        self._raw = data.reshape(-1).view(np.uint8) if self.full else None
        self._scratch: np.ndarray | None = None

    def view(self, first: int, count: int) -> np.ndarray | None:
        """Chunks ``first`` to ``first + count - 1`` as a view of the data (any ``count``), or
        ``None`` where they are not one (see the class documentation)."""
        if first < 0 or count < 1 or first + count > self.full:
            return None
        nbytes = self.nbytes
        return self._raw[first * nbytes : (first + count) * nbytes].reshape(count, nbytes)

    def take(self, first: int, count: int) -> np.ndarray:
        if not (first >= 0 and 1 <= count <= self.max_count and first + count <= self.nchunks):
            raise InputError(
                invalid(
                    "first, count",
                    (first, count),
                    f"1 to {self.max_count} chunks from the {self.nchunks}",
                )
            )
        nbytes = self.nbytes
        if first + count <= self.full:
            return self._raw[first * nbytes : (first + count) * nbytes].reshape(count, nbytes)
        from .sources import chunk_buffer

        if self._scratch is None:
            self._scratch = np.empty((self.max_count, nbytes), dtype=np.uint8)
        out = self._scratch[:count]
        for k in range(count):
            buf = chunk_buffer(self.data, first + k, self.chunks, self.blocks)
            out[k] = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
        return out


def iter_chunk_buffers(data: np.ndarray, arr: blosc2.NDArray) -> Iterator[np.ndarray]:
    """Each chunk of ``data`` as the bytes (1-D uint8) blosc2 hands to the codecs for ``arr``.

    The layout of :class:`ChunkReader`; each buffer is a view of ``data`` or its own copy.
    """
    reader = ChunkReader(data, arr)
    for i in range(reader.nchunks):
        buf = reader.take(i, 1)[0]
        yield buf if i < reader.full else buf.copy()


# -- text rendering -----------------------------------------------------------------------

_HEADER = (
    "|    Codec   | Filter | Split | C.Level | C.Threads | D.Threads |  S.Score  |  C.Ratio   |"
    "   Btune State   | Readapt | Winner"
)


_TWEAK_STEP = re.compile(r"^TRACE: Tweak step=(\d+) ")


def format_trace(trace: Trace) -> str:
    """Render a trace in the plugin's layout (``TRACE: Inference ...`` lines and the table).

    For the Python engine ``S.Score`` holds the objective value (higher is better).
    """
    lines: list[str] = []
    for banner in trace.banners:
        lines.append("-=" * 39)
        lines.append(f"Btune version: {banner.version}")
        tradeoff = banner.tradeoff
        shown = (
            f"({', '.join(f'{v:f}' for v in tradeoff)})"
            if isinstance(tradeoff, tuple)
            else f"{tradeoff:f}"
        )
        lines.append(
            f"Performance Mode: {banner.perf_mode}, Compression tradeoff: {shown}, "
            f"Bandwidth: {banner.bandwidth}"
        )
    per_step: dict[int, list[str]] = {}
    for msg in trace.messages:
        m = _TWEAK_STEP.match(msg)
        if m:
            per_step.setdefault(int(m.group(1)), []).append(msg)
        else:
            lines.append(msg)
    if trace.rows:
        lines.append(_HEADER)
    for row in trace.rows:
        lines.extend(per_step.get(row.step, ()))
        inf = row.inference
        if inf is not None:
            lines.append(
                f"TRACE: Inference category={inf.category} codec={inf.codec} "
                f"filter={inf.filter} clevel={inf.clevel} splitmode={inf.splitmode} "
                f"time entropy={inf.time_entropy:f} inference={inf.time_inference:f}"
            )
        lines.append(
            f"| {row.codec:>10} | {row.filter:6d} | {row.split:5d} | {row.clevel:7d} | "
            f"{row.cthreads:9d} | {row.dthreads:9d} | {row.score:9.3g} | {row.cratio:9.3g}x | "
            f"{row.state:>15} | {row.readapt:>7} | {row.winner}"
        )
    return "\n".join(lines) + "\n"
