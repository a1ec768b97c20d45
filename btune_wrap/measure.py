"""The gather: the probe features of every chunk and the real cost of every category on it.

:func:`gather` makes a measurement directory (:mod:`btune_wrap.measurements`) from an input
(:mod:`btune_wrap.sources`): for each chunk, the plugin's inference-time features
(:func:`btune_wrap.probe.chunk_features`), then for each category its compressed size and best
compression and decompression times, all measured by the one compressor
(:class:`btune_wrap.compressor.ChunkCodec`) that evaluation and the Python engine use too.
Checkpoints make an interrupted gather resumable.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_dir
from .categories import DEFAULT_CATEGORIES, Category, parse_categories
from .compressor import ChunkCodec
from .errors import ConfigError, InputError, invalid
from .measurements import (
    CHUNK_COLUMNS,
    CHUNKS_FILE,
    MEAS_FORMAT,
    RESULT_COLUMNS,
    RESULTS_FILE,
    Measurements,
    chunk_columns,
    extra_chunk_columns,
    is_measurement_dir,
)
from .outputs import check_output, check_target
from .parse import parse_float, parse_int, parse_threads
from .plugin import installed_version

if TYPE_CHECKING:
    from .sources import ChunkSource

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
    nthreads: int = 1,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: float = 10.0,
) -> Measurements:
    """Measure every chunk of an input: the probe features and the cost of every category.

    For each selected chunk, in order: its features (:func:`btune_wrap.probe.chunk_features`,
    computed first, as the plugin does when the chunk arrives), then for each category its
    ``cbytes`` and best ``ctime``/``dtime`` over ``repeats`` (:class:`ChunkCodec`), each
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
    repeats = parse_int("repeats", repeats, 1)
    nthreads = parse_threads("nthreads", nthreads)
    if resume and force:
        raise ConfigError("resume=True and force=True are exclusive: continue, or start over")
    checkpoint_every = parse_float("checkpoint_every", checkpoint_every, 0.0)
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
        self.measurers: dict[tuple[int, int], list[ChunkCodec]] = {}
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
        inputs = [src.file]
        check_target(self.work, inputs, name="output")
        try:
            check_output(self.output, inputs, force=force, owned=is_measurement_dir)
        except InputError:
            if not (resume and is_measurement_dir(self.output)):
                if self.output.exists() and not force and is_measurement_dir(self.output):
                    raise InputError(
                        f"output {where!r} exists: pass force=True (--force) to replace it, "
                        "or resume=True (--resume) to continue or reuse it"
                    ) from None
                raise
        if self.work.exists() and not self.work.is_dir():
            raise InputError(invalid("checkpoint", str(self.work), "a directory (a file is there)"))
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
                # The extended features apart, so that probe_time stays the plugin's probe.
                extra = chunk_features(buf, src.typesize, src.chunk_blocksize(i), True).extra
                rows = []
                for name, measurer in zip(names, self._measurers(i, buf.nbytes), strict=True):
                    m = measurer.measure(buf, repeats)
                    rows.append((i, name, m.cbytes, m.ctime, m.dtime))
                pending_r.extend(rows)
                pending_c.append((i, buf.nbytes, feats.cratio, feats.speed, feats.elapsed, *extra))
                bar.update(1)
                if clock() - last_flush >= self.checkpoint_every:
                    self._flush()
                    last_flush = clock()
        finally:
            # Keep what was measured (also on Ctrl-C or an error), so --resume goes on from here.
            self._flush()
            bar.close()

    def _measurers(self, i: int, nbytes: int) -> list[ChunkCodec]:
        bs = self.source.chunk_blocksize(i)
        key = (nbytes, bs)
        found = self.measurers.get(key)
        if found is None:
            ts = self.source.typesize
            found = self.measurers[key] = [
                ChunkCodec(c.to_cparams(typesize=ts, blocksize=bs, nthreads=self.nthreads), nbytes)
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
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
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
            done.update(_part_chunks(part))
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

        columns = {**CHUNK_COLUMNS, **extra_chunk_columns()}
        chunks = pd.DataFrame(self._pending_chunks, columns=list(columns))
        results = pd.DataFrame(self._pending_results, columns=list(RESULT_COLUMNS))
        with atomic_dir(self.work / f"{_PART_PREFIX}{self._nparts:06d}") as tmp:
            chunks.astype(columns).to_parquet(tmp / CHUNKS_FILE, index=False)
            results.astype(RESULT_COLUMNS).to_parquet(tmp / RESULTS_FILE, index=False)
        self._nparts += 1
        self._pending_chunks.clear()
        self._pending_results.clear()

    def _assemble(self, selection: list[int], resumed: int, elapsed: float) -> Measurements:
        import pandas as pd

        parts = self._parts()
        chunks = pd.concat([pd.read_parquet(p / CHUNKS_FILE) for p in parts], ignore_index=True)
        extra = list(extra_chunk_columns())
        complete = set(extra) <= set(chunks.columns) and not chunks[extra].isna().any().any()
        if not complete:
            # Parts checkpointed before the extended features were recorded: none are kept.
            chunks = chunks.drop(columns=[c for c in extra if c in chunks.columns])
        chunks = chunks.astype(chunk_columns(chunks))
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


def _part_chunks(part: Path) -> list[int]:
    """The chunk ids a checkpoint part holds, both of its tables read and checked first."""
    import pandas as pd

    try:
        ids = pd.read_parquet(part / CHUNKS_FILE, columns=["chunk"])["chunk"]
        results = pd.read_parquet(part / RESULTS_FILE, columns=["chunk"])["chunk"]
    except (OSError, ValueError) as exc:
        raise InputError(
            f"checkpoint part {str(part)!r} is damaged ({type(exc).__name__}: {exc}): delete "
            "that directory to measure its chunks again with --resume, or start over with --force"
        ) from None
    if set(results.tolist()) != set(ids.tolist()):
        raise InputError(
            f"checkpoint part {str(part)!r} is damaged (its two tables name other chunks): "
            "delete that directory to measure its chunks again with --resume, or start over "
            "with --force"
        )
    return [int(i) for i in ids]


def _show_differences(keys: list[str], saved: dict, now: dict) -> str:
    return "; ".join(f"{k}: {_difference(saved.get(k), now.get(k))}" for k in keys)


def _difference(was: object, now: object) -> str:
    """Where two option values differ, said briefly (the first differing key or item)."""

    def short(v: object) -> str:
        text = json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."

    if isinstance(was, dict) and isinstance(now, dict):
        keys = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        return ", ".join(f"{k} was {short(was.get(k))}, now {short(now.get(k))}" for k in keys)
    if isinstance(was, list) and isinstance(now, list):
        first = next((i for i, (a, b) in enumerate(zip(was, now, strict=False)) if a != b), None)
        if first is None:
            return f"{len(was)} items before, {len(now)} now"
        return (
            f"item {first} was {short(was[first])}, now {short(now[first])} "
            f"({len(was)} items before, {len(now)} now)"
        )
    return f"was {short(was)}, now {short(now)}"


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
