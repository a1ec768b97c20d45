"""The gather: the probe features of every chunk and the real cost of every category on it.

:func:`gather` makes a measurement directory (:mod:`btune_wrap.measurements`) from an input
(:mod:`btune_wrap.sources`): for each chunk, the plugin's inference-time features
(:func:`btune_wrap.probe.chunk_features`), then for each category its compressed size and best
compression and decompression times, all measured by the one compressor
(:class:`btune_wrap.compressor.ChunkCodec`) that evaluation and the Python engine use too.
Checkpoints make an interrupted gather resumable.
"""

from __future__ import annotations

import collections
import datetime
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .categories import DEFAULT_CATEGORIES, Category, parse_categories
from .checkpoint import Checkpoint, remove_tree
from .compressor import ChunkCodec
from .errors import ConfigError, InputError, invalid
from .measurements import (
    MEAS_FORMAT,
    Measurements,
    is_measurement_dir,
)
from .outputs import check_output, check_target
from .parse import parse_bool, parse_float, parse_int, parse_threads
from .runtime import installed_version

if TYPE_CHECKING:
    from distributed import Client

    from .sources import ChunkSource

#: Suffix of a measurement directory: ``<input>.meas``.
MEAS_SUFFIX = ".meas"
#: The checkpoint of an unfinished gather: ``.<output name>.partial`` next to the output.
PARTIAL_SUFFIX = ".partial"
#: The timing noise the cheaper gather allows for: a category's first timing may be up to this
#: factor slower than the best of ``repeats`` (see :class:`ChunkMeasurer`). Replayed on the same
#: recorded timings as the full gather (``benchmarks/bench_cheap_gather.py --paired``), 2 kept
#: 99.5% or more of each dataset's labels, corpus and built-in (1.5: 97.2% or more), for 0.01
#: more of the timed seconds.
NOISE = 2.0
#: A first timing this many times slower per byte than its category's median over the last
#: :data:`SPIKE_HISTORY` chunks is taken as preempted and timed again (cheaper gather).
SPIKE = 10.0
SPIKE_HISTORY = 32


def default_output(source: ChunkSource) -> Path:
    """``<input>.meas`` next to the input (``file.h5.group.ds.meas`` for ``file.h5:/group/ds``)."""
    name = source.file.name
    if source.inner:
        name += "." + ".".join(p for p in source.inner.split("/") if p)
    return source.file.with_name(name + MEAS_SUFFIX)


def partial_dir(output: str | os.PathLike[str]) -> Path:
    """Where a gather into ``output`` keeps its checkpoints until it completes."""
    output = output_path(output)
    return output.with_name(f".{output.name}{PARTIAL_SUFFIX}")


def output_path(output: object) -> Path:
    """``output`` as a Path, refused (InputError) unless it is a path whose last component
    names the directory to make: ``.``, ``/`` or ``..`` name a directory to write into, and
    the checkpoint beside it (:func:`partial_dir`) would have no name."""
    from .outputs import parse_path

    text = parse_path("output", output)
    path = Path(text)
    if path.name in ("", ".."):
        raise InputError(
            invalid("output", text, "a path whose last component names the directory to make")
        )
    return path


def select_chunks(
    nchunks: int, max_chunks: int | None = None, sample: int | None = None, seed: int = 0
) -> list[int]:
    """The chunk indices a gather measures, sorted.

    ``max_chunks`` keeps the first N chunks; ``sample`` then draws N of those at random
    (``numpy.random.default_rng(seed)``, without replacement). Both are clamped to what there
    is; ``None`` means all.
    """
    limit = nchunks if max_chunks is None else min(parse_int("max_chunks", max_chunks, 1), nchunks)
    if sample is None:
        return list(range(limit))
    size = min(parse_int("sample", sample, 1), limit)
    picked = np.random.default_rng(parse_int("seed", seed, 0, 2**63 - 1)).choice(
        limit, size=size, replace=False
    )
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
    full_repeats: bool = True,
    noise: float = NOISE,
    nthreads: int = 1,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: float = 10.0,
    client: Client | None = None,
) -> Measurements:
    """Measure every chunk of an input: the probe features and the cost of every category.

    For each selected chunk, in order: its features (:func:`btune_wrap.probe.chunk_features`,
    computed first, as the plugin does when the chunk arrives), then for each category its
    ``cbytes`` and best ``ctime``/``dtime`` over up to ``repeats`` timings
    (:class:`ChunkMeasurer`), each decompression checked equal to the chunk. The result is
    written to ``output`` as a measurement directory (see :class:`Measurements`), never
    half-written: checkpoints go to :func:`partial_dir` every ``checkpoint_every`` seconds and
    the directory is renamed into place at the end.

    Parameters
    ----------
    source
        A path :func:`btune_wrap.sources.open_source` accepts, or an open ``ChunkSource``.
    output
        The measurement directory; default ``<input>.meas`` next to the input.
    categories
        The candidates (:class:`Category` or names), in the order of the model's outputs;
        default :data:`DEFAULT_CATEGORIES` (the `fast` set: see :data:`CATEGORY_SETS`).
    chunks, blocks
        Chunk and block shapes for a path ``source`` (default: a Blosc2 input's own, else
        blosc2's choice). Not accepted with a ``ChunkSource`` (open it with them).
    max_chunks, sample, seed
        Measure only the first ``max_chunks`` chunks, and/or ``sample`` of them drawn at
        random with ``seed`` (see :func:`select_chunks`). Default: all chunks; seed 0.
    repeats
        Timings per operation; the minimum is kept (default 3).
    full_repeats
        Time every category ``repeats`` times (True, default), or (False, the cheaper gather)
        time each once and repeat only the operations whose time could still change a label
        (see :class:`ChunkMeasurer`). The ``crepeats``/``drepeats`` columns say how often
        each was timed. The cheaper gather is not the default: on this project's benchmark
        (benchmarks/bench_cheap_gather.py, see README) its labels agree with the full
        gather's less often than two full gathers agree with each other.
    noise
        For the cheaper gather: how much slower a first timing may be than the best of
        ``repeats`` (a factor >= 1; default :data:`NOISE`). Larger repeats more.
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
    client
        A ``distributed.Client``: measure on its cluster's workers (:mod:`btune_wrap.cluster`;
        each opens the input from its path, which must be reachable there). Checkpoints stay
        here, so ``resume`` works across serial and cluster runs. Default ``None``: measure in
        this process.

    Returns
    -------
    Measurements
        What was written (``path`` set to ``output``).

    Raises
    ------
    InputError
        Bad input (see :func:`btune_wrap.sources.open_source`), chunks the probe cannot
        handle, an ``output`` that names no directory to make (``.``, ``/``: see
        :func:`output_path`), an existing ``output`` without ``force``/``resume``, a
        checkpoint made with other options or damaged. Nothing is written in these cases.
    ConfigError
        Invalid categories or options (such as a ``client`` that is not a
        ``distributed.Client``).
    """
    from .sources import ChunkSource, open_source

    output = None if output is None else output_path(output)
    settings = _Settings(
        categories=_as_categories(categories),
        repeats=parse_int("repeats", repeats, 1),
        full_repeats=parse_bool("full_repeats", full_repeats),
        noise=parse_float("noise", noise, 1.0),
        nthreads=parse_threads("nthreads", nthreads),
        progress=progress,
        checkpoint_every=parse_float("checkpoint_every", checkpoint_every, 0.0),
        client=_as_client(client),
    )
    if resume and force:
        raise ConfigError("resume=True and force=True are exclusive: continue, or start over")
    if isinstance(source, ChunkSource):
        if chunks is not None or blocks is not None:
            raise ConfigError(
                "chunks/blocks apply to a path; open the source with them instead "
                "(sources.open_source(path, chunks=..., blocks=...))"
            )
        return _Gather(source, output, settings).run(max_chunks, sample, seed, resume, force)
    src = open_source(source, chunks=chunks, blocks=blocks)
    try:
        return _Gather(src, output, settings, (chunks, blocks)).run(
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


def _as_client(client: object) -> Client | None:
    """``client`` checked: None or a ``distributed.Client``. Looked up where Dask is already
    imported (a Client cannot exist otherwise): a serial gather must not import Dask."""
    if client is None:
        return None
    distributed = sys.modules.get("distributed")
    if distributed is None or not isinstance(client, distributed.Client):
        raise ConfigError(invalid("client", client, "a distributed.Client or None"))
    return client


@dataclass
class ChunkMeasurer:
    """Measures one chunk: its probe features, then every category's cost.

    The one per-chunk rule of the serial and the cluster gather (:mod:`btune_wrap.cluster`).

    Parameters
    ----------
    categories
        The candidates, in order.
    typesize
        The source's item size.
    repeats
        Timings per operation, best kept (default 3).
    nthreads
        Codec threads (default 1).
    full_repeats
        True (default): time every category ``repeats`` times. False: time each once, then
        repeat (``repeats - 1`` more) only the compressions and decompressions of the
        categories whose time could still change a label at a tradeoff of
        :data:`btune_wrap.objective.TRADEOFFS` in mode comp or decomp, within ``noise``
        (:func:`btune_wrap.objective.contested`).
    noise
        How much slower a first timing may be than the best of ``repeats`` (default
        :data:`NOISE`).
    worker
        What the chunk rows' ``worker`` column says (default: this host's name).
    """

    categories: tuple[Category, ...]
    typesize: int
    repeats: int = 3
    nthreads: int = 1
    full_repeats: bool = True
    noise: float = NOISE
    worker: str = field(default_factory=socket.gethostname)
    _codecs: dict[tuple[int, int], list[ChunkCodec]] = field(
        default_factory=dict, init=False, repr=False
    )
    _recent: dict[str, collections.deque] = field(default_factory=dict, init=False, repr=False)

    def measure(self, source: ChunkSource, i: int) -> tuple[tuple, list[tuple]]:
        """Chunk ``i`` of ``source``: its ``chunks.parquet`` row and its ``results.parquet``
        rows (in the order of :data:`btune_wrap.checkpoint.CHUNK_TABLE` and ``RESULT_TABLE``)."""
        from .probe import chunk_features

        buf = source.chunk(i)
        bs = source.chunk_blocksize(i)
        # Probe twice, keep the second: right after the previous chunk's many codec runs the
        # caches are cold and the probe runs ~3x slower than when the plugin (or the Python
        # engine) probes a chunk, which would skew the speed feature.
        chunk_features(buf, source.typesize, bs)
        feats = chunk_features(buf, source.typesize, bs)
        # The extended features apart, so that probe_time stays the plugin's probe.
        extra = chunk_features(buf, source.typesize, bs, True).extra
        codecs = self._codecs_for(buf.nbytes, bs)
        names = [c.name for c in self.categories]
        # The probe reads a few KB of each block: the chunk was mostly cold in the caches when
        # the first category read it (its first timing up to 3 to 7 times its best on the
        # corpus' MRI chunks; 1.6 to 2.2 times after this read). It warms it for all alike.
        buf.max()
        if self.full_repeats or self.repeats == 1:
            r = self.repeats
            rows = [
                (i, name, m.cbytes, m.ctime, m.dtime, r, r)
                for name, m in zip(names, (c.measure(buf, r) for c in codecs), strict=True)
            ]
        else:
            rows = self._measure_contested(i, buf, names, codecs)
        chunk_row = (i, buf.nbytes, feats.cratio, feats.speed, feats.elapsed, self.worker, *extra)
        return chunk_row, rows

    def _measure_contested(
        self, i: int, buf: np.ndarray, names: list[str], codecs: list[ChunkCodec]
    ) -> list[tuple]:
        first = [c.measure(buf, 1) for c in codecs]
        cbytes = np.array([m.cbytes for m in first], dtype=np.float64)
        times = {
            "comp": np.array([m.ctime for m in first]),
            "decomp": np.array([m.dtime for m in first]),
        }
        timed = {mode: np.ones(len(codecs), dtype=np.int64) for mode in times}
        more = self.repeats - 1
        slack = float(np.log(self.noise))
        # A first timing hit by preemption (a few ms on a loaded machine where the codec
        # takes tens of us) would make a winner look like a loser: time again any that is
        # SPIKE times slower per byte than the category's median over the recent chunks.
        for mode in times:
            recent = self._recent.setdefault(mode, collections.deque(maxlen=SPIKE_HISTORY))
            _retime_spikes(mode, recent, buf, codecs, times, timed, more)
        # A first timing is slower than the best of several (cold caches: measured 1.4x
        # median, the spread between categories within 1.5x for 90% of them), so it gets the
        # slack and a repeated one none. Repeating some can unsettle others: until stable.
        _repeat_contested(buf, codecs, cbytes, times, timed, more, slack)
        for mode, t in times.items():
            self._recent[mode].append(t / buf.nbytes)
        return [
            (
                i,
                name,
                m.cbytes,
                times["comp"][k],
                times["decomp"][k],
                timed["comp"][k],
                timed["decomp"][k],
            )
            for k, (name, m) in enumerate(zip(names, first, strict=True))
        ]

    def _codecs_for(self, nbytes: int, blocksize: int) -> list[ChunkCodec]:
        key = (nbytes, blocksize)
        found = self._codecs.get(key)
        if found is None:
            ts = self.typesize
            dst = np.empty(nbytes, dtype=np.uint8)  # shared: see ChunkCodec's dst
            found = self._codecs[key] = [
                ChunkCodec(
                    c.to_cparams(typesize=ts, blocksize=blocksize, nthreads=self.nthreads),
                    nbytes,
                    dst=dst,
                )
                for c in self.categories
            ]
        return found


def _retime_spikes(mode, recent, buf, codecs, times, timed, more) -> None:
    """Time again (``more`` times) the first timings of ``mode`` that are :data:`SPIKE` times
    slower per byte than their category's median over the ``recent`` chunks."""
    if len(recent) < 3:
        return
    t = times[mode]
    usual = np.median(np.array(recent), axis=0) * buf.nbytes
    for k in np.flatnonzero(t > SPIKE * usual):
        nc, nd = (more, 0) if mode == "comp" else (0, more)
        t[k] = min(t[k], codecs[k].time_more(buf, nc, nd)[0 if nc else 1])
        timed[mode][k] += more


def _repeat_contested(buf, codecs, cbytes, times, timed, more, slack) -> None:
    """Time again the categories still contested (:func:`btune_wrap.objective.contested`) in
    either mode, until none is: a repeated time gets no ``slack``, a first one does."""
    from .objective import contested

    while True:
        again = {
            mode: contested(buf.nbytes, cbytes, t, t, mode, np.where(timed[mode] > 1, 0.0, slack))
            & (timed[mode] == 1)
            for mode, t in times.items()
        }
        if not (again["comp"].any() or again["decomp"].any()):
            return
        for k in np.flatnonzero(again["comp"] | again["decomp"]):
            nc, nd = more * int(again["comp"][k]), more * int(again["decomp"][k])
            ct, dt = codecs[k].time_more(buf, nc, nd)
            times["comp"][k] = min(times["comp"][k], ct)
            times["decomp"][k] = min(times["decomp"][k], dt)
            timed["comp"][k] += nc
            timed["decomp"][k] += nd


def worker_info() -> dict[str, object]:
    """What ``meta["workers"]`` records about the process that measures: host, CPU, cores."""
    return {"host": socket.gethostname(), "cpu": _cpu(), "cpu_count": os.cpu_count()}


@dataclass(frozen=True)
class _Settings:
    """The checked options of one gather."""

    categories: tuple[Category, ...]
    repeats: int
    full_repeats: bool
    noise: float
    nthreads: int
    progress: bool
    checkpoint_every: float
    client: Client | None


class _Gather:
    """The state of one gather run."""

    def __init__(
        self,
        source: ChunkSource,
        output: str | os.PathLike[str] | None,
        settings: _Settings,
        opened_with: tuple[Sequence[int] | None, Sequence[int] | None] | None = None,
    ) -> None:
        self.source = source
        if output is None and not source.file.name:
            raise ConfigError(invalid("output", None, "a directory (the source has no file)"))
        self.output = Path(output) if output is not None else default_output(source)
        self.work = partial_dir(self.output)
        self.settings = settings
        self.opened_with = opened_with
        self.categories = settings.categories
        self.names = [c.name for c in settings.categories]
        self.repeats = settings.repeats
        self.nthreads = settings.nthreads
        self.progress = settings.progress
        self.checkpoint_every = float(settings.checkpoint_every)
        self.checkpoint = Checkpoint(self.work, self.names)

    # -- the run ------------------------------------------------------------------------------

    def run(
        self, max_chunks: int | None, sample: int | None, seed: int, resume: bool, force: bool
    ) -> Measurements:
        t_start = time.perf_counter()
        src = self.source
        selection = select_chunks(src.nchunks, max_chunks, sample, seed)
        options = _options(src, self.settings, selection)
        _check_outputs(self.output, self.work, src.file, resume=resume, force=force)
        if resume and not self.work.is_dir() and self.output.is_dir():
            return _reuse_complete(self.output, options)
        _preflight(src, selection)

        done: set[int] = set()
        if resume and self.work.is_dir():
            done = self.checkpoint.resume(options, self.output)
        else:
            self.checkpoint.start(options)
        todo = [i for i in selection if i not in done]
        self._measure(todo, len(selection), len(done))
        chunks, results, workers = self.checkpoint.assemble(selection)
        meta = _meta(src, self.settings, len(selection), len(done), time.perf_counter() - t_start)
        meta["workers"] = workers
        meas = Measurements(meta, chunks, results)
        meas.meta["selection"] = {"max_chunks": max_chunks, "sample": sample, "seed": seed}
        meas.save(self.output)
        remove_tree(self.work)
        return meas

    def _measure(self, todo: list[int], total: int, done: int) -> None:
        from tqdm import tqdm

        src = self.source
        where = "" if self.settings.client is None else " on a cluster"
        bar = tqdm(
            total=total,
            initial=done,
            desc=f"gather {src.file.name}{where}",
            unit="chunk",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        clock = time.perf_counter
        last_flush = clock()
        try:
            for chunk_row, rows, worker in self._measured(todo):
                self.checkpoint.add(chunk_row, rows, worker)
                bar.update(1)
                if clock() - last_flush >= self.checkpoint_every:
                    self.checkpoint.flush()
                    last_flush = clock()
        finally:
            # Keep what was measured (also on Ctrl-C or an error), so --resume goes on from here.
            self.checkpoint.flush()
            bar.close()

    def _measured(self, todo: list[int]) -> Iterator[tuple[tuple, list[tuple], dict]]:
        """Each chunk's rows and who measured it, here or on the cluster, as they come."""
        measurer = ChunkMeasurer(
            self.categories,
            self.source.typesize,
            repeats=self.repeats,
            nthreads=self.nthreads,
            full_repeats=self.settings.full_repeats,
            noise=self.settings.noise,
        )
        if self.settings.client is None:
            info = worker_info()
            for i in todo:
                chunk_row, rows = measurer.measure(self.source, i)
                yield chunk_row, rows, info
            return
        from .cluster import measure_on_cluster

        yield from measure_on_cluster(
            self.settings.client, self.source, self.opened_with, measurer, todo
        )


def _check_outputs(output: Path, work: Path, source: Path, *, resume: bool, force: bool) -> None:
    """The gather's output and checkpoint may be written (:mod:`btune_wrap.outputs`): not the
    input, not a directory we did not make, replaced or continued only when asked."""
    where = str(output)
    inputs = [source]
    check_target(work, inputs, name="output")
    try:
        check_output(output, inputs, force=force, owned=is_measurement_dir)
    except InputError:
        if not (resume and is_measurement_dir(output)):
            if output.exists() and not force and is_measurement_dir(output):
                raise InputError(
                    f"output {where!r} exists: pass force=True (--force) to replace it, "
                    "or resume=True (--resume) to continue or reuse it"
                ) from None
            raise
    if work.exists() and not work.is_dir():
        raise InputError(invalid("checkpoint", str(work), "a directory (a file is there)"))
    if work.is_dir() and not (force or resume):
        raise InputError(
            f"an interrupted gather into {where!r} left its checkpoint {str(work)!r}: "
            "pass resume=True (--resume) to continue it, or force=True (--force) to start over"
        )


def _preflight(src: ChunkSource, selection: list[int]) -> None:
    """Probe the first selected chunk (and a last one of another size) before writing."""
    from .probe import chunk_features

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
            total = math.prod(src.shape) * src.dtype.itemsize
            advice = (
                "Use larger --chunks/--blocks"
                + (" or leave the chunk out with --max-chunks" if i == last != first else "")
                if total > buf.nbytes
                else f"The whole input holds {total} bytes: gather a larger array"
            )
            raise InputError(
                f"{src.name}: chunk {i} ({buf.nbytes} bytes, blocksize "
                f"{src.chunk_blocksize(i)}, typesize {src.typesize}) cannot be probed as "
                f"the plugin does: {exc}. {advice}"
            ) from None


def _options(src: ChunkSource, settings: _Settings, selection: list[int]) -> dict[str, object]:
    """What a resumed gather must share with the interrupted one."""
    from .probe import EXTRA_LAYOUT

    return {
        "format": MEAS_FORMAT,
        "input": src.fingerprint(),
        "chunks": list(src.chunks),
        "blocks": list(src.blocks),
        "categories": [c.name for c in settings.categories],
        "selection": selection,
        "repeats": settings.repeats,
        "full_repeats": settings.full_repeats,
        "noise": None if settings.full_repeats else settings.noise,
        "nthreads": settings.nthreads,
        "extra_layout": EXTRA_LAYOUT,
    }


def _reuse_complete(output: Path, options: dict[str, object]) -> Measurements:
    """``resume`` with a complete output and no checkpoint: return it if it matches."""
    meas = Measurements.load(output)
    meta = meas.meta
    mine = {
        "input": options["input"],
        "chunks": options["chunks"],
        "blocks": options["blocks"],
        "categories": options["categories"],
        "selection": options["selection"],
        "repeats": options["repeats"],
        "full_repeats": options["full_repeats"],
        "noise": options["noise"],
        "nthreads": options["nthreads"],
        "extra_layout": options["extra_layout"],
    }
    theirs = {
        "input": meta.get("input"),
        "chunks": meta.get("chunks"),
        "blocks": meta.get("blocks"),
        "categories": meta.get("categories"),
        "selection": meas.chunks["chunk"].tolist(),
        "repeats": meta.get("repeats"),
        # Gathers before the cheaper one timed every category ``repeats`` times.
        "full_repeats": meta.get("full_repeats", True),
        "noise": meta.get("noise"),
        "nthreads": meta.get("nthreads"),
        "extra_layout": meta.get("extra_layout"),
    }
    differ = sorted(k for k in mine if mine[k] != theirs[k])
    if differ:
        raise InputError(
            f"cannot resume into {str(output)!r}: it is complete and was made with "
            f"other {', '.join(differ)}; use --force to measure again"
        )
    return meas


def _meta(
    src: ChunkSource, settings: _Settings, measured: int, resumed: int, elapsed: float
) -> dict[str, object]:
    """``meta.json`` of a gather (see ARCHITECTURE.md)."""
    from .probe import EXTRA_LAYOUT, zeros_speed

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
        "categories": [c.name for c in settings.categories],
        "repeats": settings.repeats,
        "full_repeats": settings.full_repeats,
        "noise": None if settings.full_repeats else settings.noise,
        "nthreads": settings.nthreads,
        "zeros_speed": zeros_speed(src.chunk_nbytes),
        "extra_layout": EXTRA_LAYOUT,
        "resumed_chunks": resumed,
        "elapsed": round(elapsed, 3),
        "versions": _versions(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


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
