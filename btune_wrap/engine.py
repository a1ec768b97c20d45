"""The Python engine: the plugin's inference algorithm in Python, on any blosc2.

For each chunk, the plugin's features (:class:`btune_wrap.probe.ChunkProbe`), normalized with
the model's JSON, fed with the tradeoff to the ``.tflite`` network through LiteRT; the argmax is
a category whose parameters compress that chunk (:class:`btune_wrap.compressor.ChunkCodec`).
On request, consecutive chunks share one decision (``decide_every``): deciding costs about the
same whatever the chunk's size, more than compressing a small chunk.
After the inferred chunks, :mod:`btune_wrap.tweak` takes over (see :func:`btune_wrap.infer.compress`
for what ``use_inference`` means).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .categories import Category, SplitMode, default_category
from .compressor import ChunkCodec, DirectWrite, compiled_method, is_special, write_array
from .config import BtuneConfig, PerfMode
from .errors import ConfigError, InputError, ModelError, invalid
from .model import BtuneModel, ExtendedModel, plugin_tradeoff, reads_extended
from .objective import chunk_objective
from .parse import parse_int, parse_optional_shape, parse_threads
from .probe import MIN_CHUNK_NBYTES, ChunkProbe, FeatureArrays
from .runtime import implicit_tuner_off
from .sources import ChunkReader, check_array, region_reader, resolve_layout
from .trace import Banner, InferenceLine, RowState, Trace, TraceRow, assemble, format_trace
from .tweak import TweakSearch, most_predicted

if TYPE_CHECKING:
    import blosc2

    from .neighbors import NeighborsModel


#: Where the Python engine puts each compressed chunk: ``sink(chunk index, chunk bytes)``.
ChunkSink = Callable[[int, bytes], object]

#: Chunks probed before one batched network call (and at most this many bytes of them):
#: 128 chunks of 40 KB wrote 3-5% faster than 64, and as fast as 256.
_BATCH_CHUNKS = 128
_BATCH_BYTES = 16 * 2**20
#: Fewest chunks handed to a model that takes any batch size (the neighbours search).
_LEAST_CHUNKS = 32
#: The probe runs in a background thread only for more inferred chunks than this.
_BACKGROUND_MIN_CHUNKS = 64
#: Chunks of at least this many bytes are compressed by the array's own schunk (its cparams
#: set to the chunk's category: :class:`btune_wrap.compressor.DirectWrite`) instead of apart
#: and then copied in.
_DIRECT_NBYTES = 2**20


class PythonEngine:
    """The plugin's inference algorithm in Python; runs on any blosc2.

    Parameters
    ----------
    config
        ``tradeoff``, ``perf_mode`` and ``use_inference`` are used (see the module docstring
        for what ``use_inference`` means here); ``trace`` makes :meth:`write` also render the
        trace as text (``Trace.raw``).
    model
        The model for ``config.perf_mode``: plugin-format (:func:`btune_wrap.model.load_model`)
        or extended (:func:`btune_wrap.model.load_extended_model`, which also reads the
        dtype and the probe's extended features); may be ``None`` only with
        ``use_inference=0``.
    max_tweaks
        Most neighbour trials in the tweak phase (default 8; 0 disables tweaking).
    repeats
        Timings per tweak measurement, the minimum is kept (default 3).
    decide_every
        The model decides for the first chunk of each group of this many consecutive chunks,
        and the others take that decision (their trace rows' state is ``GROUP``; no
        verification). Default 1: every chunk. Probing and choosing cost about 30 us per
        decision whatever the chunk's size: at 40 KB chunks, 6 wrote at 0.71-0.88x of
        ``blosc2.asarray`` where 1 wrote at 0.33-0.60x (``benchmarks/bench_infer.py``), but
        on the real-data corpus's chunks of 40 KB it made the choices far worse on arrays
        whose consecutive chunks differ (brain MRI, Earth rotation:
        ``benchmarks/bench_groups.py``). Measure it on your data first (``btune evaluate
        --decide-every``).
    verify
        Categories tried per inferred chunk (default 1: the model's choice, no trial). With
        ``k`` > 1 the model's ``k`` best-scored categories each compress the chunk (in DECOMP
        and BALANCED modes also decompress it, once, timed) and the one of best objective
        (:func:`btune_wrap.objective.chunk_objective`) is written; the trace row's
        ``ctime`` is then the sum of the trials' compression times.

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
        model: BtuneModel | ExtendedModel | NeighborsModel | None,
        *,
        max_tweaks: int = 8,
        repeats: int = 3,
        verify: int = 1,
        decide_every: int = 1,
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
        self.verify = parse_int("verify", verify, 1, len(model.categories) if model else 1)
        self.decide_every = check_decide_every(decide_every, self.verify)
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
        """Write ``array`` chunk by chunk with the engine's decisions; see :func:`compress`.
        ``array`` may be read by regions (:func:`btune_wrap.sources.region_reader`): a file's
        array is then read one batch of chunks at a time, never whole."""
        import blosc2

        data = region_reader(array)
        check_array("array", tuple(data.shape), np.dtype(data.dtype), numeric=False)
        kwargs = layout_kwargs(data, chunks, blocks, nthreads)
        with write_array(urlpath) as where:
            with implicit_tuner_off():
                arr = blosc2.empty(tuple(data.shape), dtype=np.dtype(data.dtype), **kwargs, **where)
            trace = self.fill(arr, data)
            if urlpath is not None:
                del arr
        if urlpath is not None:
            arr = blosc2.open(os.fspath(urlpath))
        return arr, trace

    def fill(self, arr: blosc2.NDArray, data: np.ndarray, sink: ChunkSink | None = None) -> Trace:
        """Compress every chunk of ``data`` into ``arr`` (same shape and dtype), in place.

        ``arr`` is typically fresh from ``blosc2.empty``; its chunk and block shapes, typesize
        and thread count are used. ``sink`` (default: ``arr``'s own ``update_chunk``) receives
        each chunk's index and compressed bytes instead, in chunk order; ``arr`` then only gives
        the layout (see :mod:`btune_wrap.h5sink`). Returns the trace of the decisions.
        """
        return _ArrayFill(self, arr, sink).fill(data)


def check_decide_every(decide_every: int, verify: int = 1) -> int:
    """``decide_every`` validated: an int >= 1, and 1 with verification (``verify`` > 1)."""
    decide_every = parse_int("decide_every", decide_every, 1)
    if verify > 1 and decide_every > 1:
        expected = f"1 with verify={verify} (verification tries every chunk)"
        raise ConfigError(invalid("decide_every", decide_every, expected))
    return decide_every


def layout_kwargs(
    data: np.ndarray,
    chunks: Sequence[int] | None,
    blocks: Sequence[int] | None,
    nthreads: int | None,
) -> dict[str, object]:
    """The ``chunks``, ``blocks`` (and ``cparams`` threads) keywords of ``blosc2.empty`` for
    ``data``: the given shapes checked, blosc2's choice for the others (:func:`cached_layout`)."""
    import blosc2

    nthreads = None if nthreads is None else parse_threads("nthreads", nthreads)
    chunks = parse_optional_shape("chunks", chunks, len(data.shape))
    blocks = parse_optional_shape("blocks", blocks, len(data.shape))
    kwargs: dict[str, object] = {}
    if nthreads is not None:
        kwargs["cparams"] = {"nthreads": nthreads}
    kwargs["chunks"], kwargs["blocks"] = cached_layout(
        tuple(data.shape),
        np.dtype(data.dtype).str,
        chunks,
        blocks,
        nthreads,
        repr(sorted(blosc2.cparams_dflts.items())),
    )
    return kwargs


@functools.lru_cache(maxsize=64)
def cached_layout(
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
    return resolve_layout(shape, np.dtype(dtype), chunks, blocks, nthreads=nthreads, where="array")


@dataclass
class CategoryWriter:
    """One category's compressor for an array's chunks, and the fields of its trace rows and
    inference lines that do not change from chunk to chunk (computed once per category)."""

    category: Category
    codec: ChunkCodec
    row: dict[str, object]
    inference: dict[str, object]

    def __post_init__(self) -> None:
        self.compress = self.codec.compress

    @classmethod
    def for_layout(
        cls, cat: Category, typesize: int, blocksize: int, chunk_nbytes: int, nthreads: int
    ) -> CategoryWriter:
        # A chunk of one block is compressed by one thread whatever nthreads says; a one-thread
        # context skips the thread pool's handshake (same bytes).
        one_block = blocksize >= chunk_nbytes
        cparams = cat.to_cparams(
            typesize=typesize, blocksize=blocksize, nthreads=1 if one_block else nthreads
        )
        codec, filter_, clevel, splitmode = (int(v) for v in cat.to_plugin())
        row = {
            "codec": cat.codec.name.lower(),
            "filter": filter_,
            "split": 1 if cat.splitmode == SplitMode.ALWAYS else 0,
            "clevel": cat.clevel,
            "cthreads": nthreads,
            "dthreads": nthreads,
            "readapt": "",
            "score_higher_is_better": True,
            "blocksize": None,
            "shufflesize": None,
        }
        inference = {"codec": codec, "filter": filter_, "clevel": clevel, "splitmode": splitmode}
        return cls(cat, ChunkCodec(cparams, chunk_nbytes), row, inference)


class _ArrayFill:
    """One :meth:`PythonEngine.fill`: the inference phase, then the tweak (:mod:`.tweak`)."""

    def __init__(
        self, engine: PythonEngine, arr: blosc2.NDArray, sink: ChunkSink | None = None
    ) -> None:
        self.engine = engine
        self.arr = arr
        schunk = arr.schunk
        self.typesize = schunk.typesize
        self.blocksize = schunk.blocksize
        self.chunk_nbytes = schunk.chunksize
        self.nthreads = schunk.cparams.nthreads
        self.update_chunk = sink or compiled_method(schunk, "update_chunk")
        self.direct = (
            DirectWrite(schunk) if sink is None and self.chunk_nbytes >= _DIRECT_NBYTES else None
        )
        self.writers: dict[Category, CategoryWriter] = {}
        model = engine.model
        #: The writer of each of the model's categories, by index, once used.
        self._by_index: list[CategoryWriter | None] = [None] * (
            len(model.categories) if model else 0
        )
        #: How often the model chose each category.
        self.counts = [0] * (len(model.categories) if model else 0)
        self.last: Category | None = None
        self.dtype = arr.dtype
        self._probe: ChunkProbe | None = None
        extra = reads_extended(model) and model.needs_extra
        if self.chunk_nbytes >= MIN_CHUNK_NBYTES:
            # Validated once for all chunks (all have the same padded size); a layout the probe
            # refuses leaves every chunk without features.
            with contextlib.suppress(InputError):
                self._probe = ChunkProbe(self.chunk_nbytes, self.typesize, self.blocksize, extra)
        self.trace = Trace(engine="python")
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
        self.rows = RowLog(self)
        #: The writer and row state of the current group's other chunks.
        self.group_writer: tuple[CategoryWriter, RowState] | None = None

    def fill(self, data: np.ndarray) -> Trace:
        engine = self.engine
        model = engine.model
        nchunks = self.arr.schunk.nchunks
        use = engine.config.use_inference
        n_infer = 0 if model is None else (nchunks if use < 0 else min(use, nchunks))
        per_batch = max(1, min(_BATCH_CHUNKS, -(-_BATCH_BYTES // max(self.chunk_nbytes, 1))))
        group = engine.decide_every
        if group <= per_batch:  # whole groups per batch: as many decisions in each
            per_batch -= per_batch % group
        reader = ChunkReader(data, self.arr, per_batch)
        probe = self._probe
        # With a thread to spare, chunks that are views of the data and a network that ignores
        # the speed feature, the probe runs ahead in a background thread while this one
        # compresses the chunks already probed. (Compressing next to it slows the probe's
        # timings: the speed feature's median dropped by up to 16%; the cratio is unchanged.)
        whole = firsts = None
        if (
            probe is not None
            and self.nthreads > 1
            and n_infer > _BACKGROUND_MIN_CHUNKS
            and not model.reads_speed
        ):
            whole = reader.view(0, n_infer)
            # The groups' first chunks (a copy: the probe takes contiguous rows).
            firsts = None if whole is None else _firsts(whole, group, 0)
        with contextlib.ExitStack() as stack:
            job = None
            if firsts is not None:
                # One untimed probe first, so that one-off costs (compilation, the zeros-speed
                # reference) do not distort the first chunk's speed feature.
                probe.many(firsts[:1])
                job = stack.enter_context(probe.start(firsts))
            # A network gets whole batches: each new batch size costs it a re-allocation
            # (measured: taking any ready chunks wrote 40 KB chunks ~30% slower with the
            # extended probe). The neighbours search takes what is ready, at least
            # _LEAST_CHUNKS (each call costs ~30 us besides ~4 us per chunk): waiting for a
            # whole first batch left the writer idle for a third of 400 chunks.
            least = per_batch if model is None or model.whole_batches else _LEAST_CHUNKS
            done = 0
            while done < n_infer:
                if job is not None:  # the job probes the groups' first chunks, in order
                    ready = job.wait((done + min(least, n_infer - done) - 1) // group + 1)
                    count = min(per_batch, ready * group - done, n_infer - done)
                    chunks = whole[done : done + count]
                    feats = job.features(-(-done // group), -(-(done + count) // group))
                else:
                    count = min(per_batch, n_infer - done)
                    chunks = reader.take(done, count)
                    feats = None
                    if probe is not None:
                        ahead = _firsts(chunks, group, done)
                        if done == 0:
                            probe.many(ahead[:1])  # untimed, as above
                        # (no chunk begins a group here: the batch follows the last decision)
                        feats = probe.many(ahead) if ahead.shape[0] else None
                if feats is None:
                    _write_decided(self, done, chunks, [], None)
                else:
                    _write_decided(self, done, chunks, feats.elapsed.tolist(), _decide(self, feats))
                done += count
        TweakSearch(self).run(reader, done)
        if self.direct is not None:
            self.direct.close()
        self.rows.finish()
        if engine.config.trace:
            self.trace.raw = format_trace(self.trace)
        return self.trace

    def writer(self, cat: Category) -> CategoryWriter:
        """The writer of ``cat`` for this array (made once)."""
        found = self.writers.get(cat)
        if found is None:
            found = self.writers[cat] = CategoryWriter.for_layout(
                cat, self.typesize, self.blocksize, self.chunk_nbytes, self.nthreads
            )
        return found


def _firsts(chunks: np.ndarray, group: int, first: int) -> np.ndarray:
    """The rows of ``chunks`` (the first being chunk ``first``) that begin a group of
    ``group`` chunks (chunk indices multiple of ``group``), C-contiguous."""
    return chunks if group == 1 else np.ascontiguousarray(chunks[-first % group :: group])


class Decisions(NamedTuple):
    """The model's choices for consecutive chunks (or the first chunks of consecutive groups,
    :attr:`PythonEngine.decide_every`): the category index per chunk (-1 where the probe
    failed), the ``top`` candidates per chunk for verification (``None`` without) and the
    seconds of deciding, per chunk."""

    picked: np.ndarray
    tops: np.ndarray | None
    seconds: np.ndarray


def _decide(fill: _ArrayFill, feats: FeatureArrays) -> Decisions:
    """The model's choices for chunks of ``fill`` from their features (NaN where the probe
    failed: -1 then), in one call; the seconds are the call's, shared by the chunks."""
    model = fill.engine.model
    assert model is not None
    count = feats.cratio.shape[0]
    picked = np.full(count, -1, dtype=np.int64)
    top = fill.engine.verify
    tops = np.full((count, top), -1, dtype=np.int64) if top > 1 else None
    ok = ~np.isnan(feats.cratio)
    nok = int(ok.sum())
    t_share = 0.0
    if nok:
        t0 = time.perf_counter()
        tradeoff = fill.engine.tradeoff
        if reads_extended(model):
            extra = feats.extra[ok] if feats.extra.shape[1] else feats.extra
            chosen = model.choose_many(feats.cratio[ok], extra, fill.dtype, tradeoff, top)
        else:
            chosen = model.choose_many(feats.cratio[ok], feats.speed[ok], tradeoff, top)
        if tops is not None:
            tops[ok] = chosen
            chosen = chosen[:, 0]
        picked[ok] = chosen
        t_share = (time.perf_counter() - t0) / nok
    return Decisions(picked, tops, np.full(count, t_share))


def _write_decided(
    fill: _ArrayFill,
    first: int,
    chunks: np.ndarray,
    entropy: list[float],
    decisions: Decisions | None,
) -> None:
    """Write the chunks (rows of ``chunks``, the first being chunk ``first``) of ``fill`` with
    the model's ``decisions`` (``None``: the layout gives no features), verifying them when
    asked. Decisions and ``entropy`` (the probe's seconds) are for the chunks that begin a
    group of ``decide_every`` (:func:`_firsts`); the others take their group's category."""
    model = fill.engine.model
    assert model is not None
    group = fill.engine.decide_every
    if decisions is None:
        choices, tops, t_inf = [-1] * chunks.shape[0], None, []
    else:
        choices, tops, t_inf = decisions.picked.tolist(), decisions.tops, decisions.seconds.tolist()
    categories = model.categories
    by_index, counts, write = fill._by_index, fill.counts, fill.rows.write
    j = 0  # the next decision
    for k in range(chunks.shape[0]):
        step = first + k
        if step % group:
            write(step, chunks[k], *fill.group_writer)
            continue
        index = choices[j]
        if index < 0:
            # No usable features (see ChunkProbe): go on with the latest choice.
            cat = fill.last or most_predicted(model, counts) or default_category()
            writer = fill.writer(cat)
            fill.group_writer = (writer, RowState.STOP)
            write(step, chunks[k], writer, RowState.STOP)
        else:
            trial = None
            if tops is not None:
                index, trial = _verify(fill, chunks[k], tops[j])
            counts[index] += 1
            writer = by_index[index]
            if writer is None:
                writer = by_index[index] = fill.writer(categories[index])
            fill.last = writer.category
            fill.group_writer = (writer, RowState.GROUP)
            write(step, chunks[k], writer, RowState.INFERENCE, index, entropy[j], t_inf[j], trial)
        j += 1


def _verify(
    fill: _ArrayFill, buf: np.ndarray, candidates: np.ndarray
) -> tuple[int, tuple[bytes, float]]:
    """Verification (:attr:`PythonEngine.verify`): try each candidate category on the chunk;
    the index of best objective, its compressed chunk and the summed compression time of every
    trial (one timing each; in DECOMP and BALANCED the decompression is timed too)."""
    engine = fill.engine
    best, best_j, kept, total = -1, -math.inf, b"", 0.0
    nbytes = buf.nbytes
    for index in candidates.tolist():
        codec = fill.writer(engine.model.categories[index]).codec
        if engine.decompress:
            chunk, m = codec.measure_chunk(buf, 1)
            ctime, dtime = m.ctime, m.dtime
        else:
            t0 = time.perf_counter()
            chunk = codec.compress(buf)
            ctime, dtime = time.perf_counter() - t0, None
        total += ctime
        j = chunk_objective(nbytes, len(chunk), ctime, dtime, engine.mode, engine.tradeoff)
        if float(j) > best_j:
            best, best_j, kept = index, float(j), chunk
    return best, (kept, total)


class RowLog:
    """Writes chunks into the array and records their trace rows.

    Rows written by :meth:`write` are completed by :meth:`finish`, which scores them in one
    objective call: (row index, step, writer, cbytes, ctime, state, the model's category index
    or -1, time entropy, time inference).
    """

    def __init__(self, fill: _ArrayFill) -> None:
        self.update_chunk = fill.update_chunk
        self.direct = fill.direct
        self.trace = fill.trace
        self.chunk_nbytes = fill.chunk_nbytes
        self.typesize = fill.typesize
        self.engine = fill.engine
        self._pending: list[tuple] = []

    def write(
        self,
        step: int,
        buf: np.ndarray,
        writer: CategoryWriter,
        state: RowState,
        category: int = -1,
        time_entropy: float = 0.0,
        time_inference: float = 0.0,
        compressed: tuple[bytes, float] | None = None,
    ) -> None:
        """Compress one chunk with ``slot`` and store it; its row is completed later.

        ``category`` is the model's index for the chunk (-1: the model did not choose it);
        ``compressed`` is the chunk already compressed with ``writer`` and the seconds it took
        (verification), else it is compressed here.
        """
        if compressed is None and self.direct is not None:
            cbytes, ctime = self.direct.write(step, buf, writer.codec.cparams)
        else:
            if compressed is None:
                t0 = time.perf_counter()
                chunk = writer.compress(buf)
                ctime = time.perf_counter() - t0
            else:
                chunk, ctime = compressed
            self.update_chunk(step, chunk)
            cbytes = len(chunk)
        rows = self.trace.rows
        self._pending.append(
            (
                len(rows),
                step,
                writer,
                cbytes,
                ctime,
                state,
                category,
                time_entropy,
                time_inference,
            )
        )
        rows.append(None)  # type: ignore[arg-type]  # the row, once scored

    def finish(self) -> None:
        """Score the rows :meth:`write` left pending (in one objective call), and fill them in.

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
            scores = chunk_objective(
                nbytes, cbytes, ctime, None, PerfMode.COMP, self.engine.tradeoff
            ).tolist()
        rows, inferences = self.trace.rows, self.trace.inferences
        for (index, step, writer, cb, _, state, category, t_ent, t_inf), score in zip(
            pending, scores, strict=True
        ):
            inference = None
            if category >= 0:
                inference = assemble(
                    InferenceLine,
                    writer.inference,
                    {"category": category, "time_entropy": t_ent, "time_inference": t_inf},
                )
                inferences.append(inference)
            rows[index] = assemble(
                TraceRow,
                writer.row,
                {
                    "step": step,
                    "score": score,
                    "cratio": nbytes / cb,
                    "state": state.value,
                    "winner": "S" if is_special(cb, self.typesize) else "-",
                    "inference": inference,
                },
            )
