"""The gather on a Dask cluster (``dask.distributed``, the optional extra ``cluster``).

:func:`connect` makes a ``distributed.Client``: a ``LocalCluster`` of process workers (one
thread each) for ``local[:N]``, or a running scheduler given by address or scheduler file.
:func:`measure_on_cluster` is what :func:`btune_wrap.measure.gather` runs with ``client=``:
after checking that every worker has the same btune_wrap and blosc2 as here and sees the same
input at the same path, it sends batches of chunk indices; each worker opens the input itself
and measures them with the one per-chunk rule (:class:`btune_wrap.measure.ChunkMeasurer`),
returning table rows. The gather here keeps the checkpoints, the progress bar and the output.
A worker lost mid-run costs its unfinished batches a rerun on another worker (the scheduler
reschedules them).

Nothing here is imported unless a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BtuneWrapError, ConfigError, InputError, MeasureError, invalid
from .parse import parse_float, parse_int

if TYPE_CHECKING:
    from distributed import Client

    from .measure import ChunkMeasurer
    from .sources import ChunkSource

#: Seconds to wait for a scheduler to answer, and for its first worker (default).
CONNECT_TIMEOUT = 10.0
#: Packages whose versions every worker must share with the client.
SAME_VERSIONS = ("btune_wrap", "blosc2")
#: Most chunks per task: a lost worker costs at most this many chunks' rerun, and the progress
#: bar moves at least this often (a 40 KB chunk x 32 categories x 3 repeats is ~60 ms).
MAX_BATCH = 16
#: Batches in flight per worker (so a worker never waits for the next one).
_IN_FLIGHT = 3
_FORMS = "'local', 'local:N' (N worker processes) or a scheduler address 'tcp://HOST:PORT'"
#: Reads of a scheduler file before it is refused (see :func:`_scheduler_address`).
_FILE_READS = 10


@contextlib.contextmanager
def connect(
    cluster: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT,
) -> Iterator[Client]:
    """A ``distributed.Client`` for the block's duration (closed after, with its LocalCluster).

    Parameters
    ----------
    cluster
        ``"local"`` (one worker process per core), ``"local:N"`` (N worker processes), each
        with one thread; or a scheduler address such as ``"tcp://10.0.0.5:8786"``.
    scheduler_file
        The JSON file a ``dask scheduler --scheduler-file F`` wrote (instead of ``cluster``).
    timeout
        Seconds to wait for the scheduler to answer and for at least one worker (default
        :data:`CONNECT_TIMEOUT`).

    Raises
    ------
    ConfigError
        Neither or both of ``cluster``/``scheduler_file``, a malformed ``cluster``, a
        ``scheduler_file`` that names no scheduler address, dask not installed, a scheduler
        that cannot be reached or has no worker within ``timeout``.
    """
    timeout = parse_float("timeout", timeout, 0.001)
    if (cluster is None) == (scheduler_file is None):
        raise ConfigError(
            invalid("cluster", cluster, f"{_FORMS}, or else a scheduler_file (one of the two)")
        )
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(
            f"a cluster gather needs dask.distributed (pip install 'btune_wrap[cluster]'): {exc}"
        ) from None
    local = None
    if scheduler_file is not None:
        address = _scheduler_address(scheduler_file)
        where = f"the scheduler in {str(scheduler_file)!r} ({address})"
        opts: dict[str, object] = {"address": address}
    else:
        nworkers = _local_workers(cluster)
        if nworkers is not None:
            local = distributed.LocalCluster(
                n_workers=nworkers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            where = f"a local cluster of {nworkers} workers"
            opts = {"address": local}
        else:
            where = f"the scheduler at {cluster!r}"
            opts = {"address": cluster}
    try:
        try:
            client = distributed.Client(timeout=timeout, set_as_default=False, **opts)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"cannot connect to {where} within {timeout:g} s: {exc}. Start it first "
                "('dask scheduler', 'dask worker ADDRESS') or check the address"
            ) from None
        try:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"{where} has no worker after {timeout:g} s ({exc}): start some with "
                    "'dask worker ADDRESS --nthreads 1'"
                ) from None
            yield client
        finally:
            client.close()
    finally:
        if local is not None:
            local.close()


def _local_workers(cluster: str | None) -> int | None:
    """N for ``local``/``local:N`` (None for an address; ConfigError for anything else)."""
    text = str(cluster).strip()
    if text == "local":
        return os.cpu_count() or 1
    if text.startswith("local:"):
        return parse_int("cluster workers", _int_or_text(text[6:]), 1)
    if _is_address(text):
        return None
    raise ConfigError(invalid("cluster", cluster, _FORMS))


def _is_address(text: str) -> bool:
    """``SCHEME://HOST:PORT``, the form of a scheduler address."""
    return "://" in text and text.rsplit(":", 1)[-1].isdigit()


def _scheduler_address(scheduler_file: str | os.PathLike[str]) -> str:
    """The scheduler address a scheduler file names; ConfigError if it is not such a file.

    Checked here because ``distributed.Client`` given a file without an address fails with a
    bare AssertionError, and with a malformed one leaves a half-made client whose cleanup
    times out 2 s later.
    """
    path = Path(scheduler_file)
    if not path.is_file():
        raise ConfigError(invalid("scheduler_file", str(scheduler_file), "an existing file"))
    # 'dask scheduler' writes the file in place, not atomically: a read may catch it half
    # written. distributed's Client reads it up to 10 times, 10 ms apart; so do we.
    for attempt in range(_FILE_READS):
        if attempt:
            time.sleep(0.01)
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        address = found.get("address") if isinstance(found, dict) else None
        if isinstance(address, str) and _is_address(address):
            return address
    raise ConfigError(
        invalid(
            "scheduler_file",
            str(scheduler_file),
            "the JSON file 'dask scheduler --scheduler-file FILE' writes, with the scheduler's "
            "address 'SCHEME://HOST:PORT'",
        )
    )


def _int_or_text(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


# -- the job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """How a worker opens the input, and what it must find there.

    Attributes
    ----------
    path
        Absolute path, with ``:inner`` for an HDF5 dataset or a Zarr array in a group.
    chunks, blocks
        The shapes :func:`btune_wrap.sources.open_source` is given (None: the input's own).
    fingerprint
        :meth:`ChunkSource.fingerprint` here: path, size and modification time.
    layout
        Chunks, blocks, nchunks, typesize and chunk size as opened here.
    """

    path: str
    chunks: tuple[int, ...] | None
    blocks: tuple[int, ...] | None
    fingerprint: dict
    layout: tuple

    @classmethod
    def of(
        cls,
        source: ChunkSource,
        opened_with: tuple[Sequence[int] | None, Sequence[int] | None] | None,
    ) -> InputSpec:
        """The spec of an open source (``opened_with``: the shapes given to ``open_source``,
        None if the source was opened by the caller)."""
        from .sources import FrameSource, NDArraySource

        if not source.file.name or not source.file.exists():
            raise ConfigError(
                invalid("source", source.name, "an input with a path (workers open it there)")
            )
        if opened_with is None:
            own = isinstance(source, (NDArraySource, FrameSource))
            opened_with = (None, None) if own else (source.chunks, source.blocks)
        chunks, blocks = (None if s is None else tuple(int(x) for x in s) for s in opened_with)
        path = str(source.file.resolve()) + (f":{source.inner}" if source.inner else "")
        return cls(path, chunks, blocks, source.fingerprint(), _layout(source))

    def open(self) -> ChunkSource:
        """Open the input here and check it is the same as the client's."""
        from .sources import open_source

        src = open_source(self.path, chunks=self.chunks, blocks=self.blocks)
        try:
            if src.fingerprint() != self.fingerprint:
                raise InputError(
                    f"input {self.path!r} differs from the client's (size or modification "
                    f"time: {src.fingerprint()} here, {self.fingerprint} there)"
                )
            if _layout(src) != self.layout:
                raise InputError(f"input {self.path!r} opens with another chunk layout here")
        except BaseException:
            src.close()
            raise
        return src


def _layout(source: ChunkSource) -> tuple:
    return (
        tuple(source.chunks),
        tuple(source.blocks),
        source.nchunks,
        source.typesize,
        source.chunk_nbytes,
    )


# -- on the workers ----------------------------------------------------------------------------

#: Per worker thread: the open input and the measurer of the last job. A measurer's codecs
#: time through scratch super-chunks and one shared buffer, which one thread at a time may
#: use, and a worker started with several threads (``dask worker`` without ``--nthreads 1``)
#: runs tasks side by side.
_OPEN = threading.local()


def _opened(
    spec: InputSpec, measurer: ChunkMeasurer, worker: str
) -> tuple[ChunkSource, ChunkMeasurer]:
    jobs: dict[tuple, tuple[ChunkSource, ChunkMeasurer]] = vars(_OPEN).setdefault("jobs", {})
    key = (spec.path, spec.chunks, spec.blocks, repr(spec.fingerprint), repr(measurer))
    found = jobs.get(key)
    if found is not None and not _unchanged(found[0], spec):
        found = None  # changed (or gone) since it was opened: open it again, which checks it
    if found is None:
        for src, _ in jobs.values():
            src.close()
        jobs.clear()
        found = jobs[key] = (spec.open(), replace(measurer, worker=worker))
    return found


def _unchanged(source: ChunkSource, spec: InputSpec) -> bool:
    try:
        return source.fingerprint() == spec.fingerprint
    except OSError:
        return False


def check_worker(
    spec: InputSpec, measurer: ChunkMeasurer, dask_worker: object = None
) -> dict[str, object]:
    """Run on every worker (``Client.run``, which passes ``dask_worker``) before measuring:
    open the input; return :func:`worker_info`."""
    from .measure import worker_info

    address = str(getattr(dask_worker, "address", "?"))
    try:
        _opened(spec, measurer, address)
    except BtuneWrapError as exc:
        raise type(exc)(f"worker {address} on {worker_info()['host']}: {exc}") from None
    return worker_info()


def measure_batch(
    spec: InputSpec, measurer: ChunkMeasurer, indices: list[int]
) -> tuple[str, dict[str, object], list[tuple[tuple, list[tuple]]]]:
    """A task: measure chunks ``indices``; return the worker's id and info and each chunk's
    rows (as :meth:`ChunkMeasurer.measure` gives them)."""
    from distributed import get_worker

    from .measure import worker_info

    source, mine = _opened(spec, measurer, get_worker().address)
    try:
        rows = [mine.measure(source, i) for i in indices]
    except BtuneWrapError as exc:
        raise type(exc)(f"worker {mine.worker} on {worker_info()['host']}: {exc}") from None
    return mine.worker, worker_info(), rows


# -- on the client -----------------------------------------------------------------------------


def check_cluster(client: Client, spec: InputSpec, measurer: ChunkMeasurer) -> dict[str, dict]:
    """Check every worker: the same :data:`SAME_VERSIONS` as here, and the input readable.

    Returns each worker's :func:`btune_wrap.measure.worker_info` by its address.

    Raises
    ------
    ConfigError
        A worker lacks btune_wrap or has other versions.
    InputError
        A worker cannot open the input, or sees another file there.
    """
    for dist in SAME_VERSIONS:
        mine = _version(dist)
        theirs = client.run(importlib.metadata.version, dist, on_error="return")
        for address, version in sorted(theirs.items()):
            if isinstance(version, BaseException):
                raise ConfigError(
                    f"worker {address} lacks {dist} ({type(version).__name__}: {version}): "
                    f"install btune_wrap {_version('btune_wrap')} with its extras there"
                )
            if version != mine:
                raise ConfigError(
                    f"worker {address} has {dist} {version}, this process {mine}: install the "
                    "same versions on every worker"
                )
    found = client.run(check_worker, spec, measurer, on_error="return")
    for address, info in sorted(found.items()):
        if isinstance(info, BtuneWrapError):
            raise info
        if isinstance(info, BaseException):
            raise InputError(
                f"worker {address} cannot open the input {spec.path!r}: "
                f"{type(info).__name__}: {info}"
            )
    return found


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def batch_size(nchunks: int, nworkers: int) -> int:
    """Chunks per task: about 4 tasks per worker, at most :data:`MAX_BATCH`, at least 1."""
    return max(1, min(MAX_BATCH, nchunks // (4 * max(nworkers, 1))))


def measure_on_cluster(
    client: Client,
    source: ChunkSource,
    opened_with: tuple[Sequence[int] | None, Sequence[int] | None] | None,
    measurer: ChunkMeasurer,
    todo: list[int],
) -> Iterator[tuple[tuple, list[tuple], dict]]:
    """Measure chunks ``todo`` on the cluster; yield each chunk's rows and its worker's info
    as batches finish (in no particular order). Unfinished tasks are cancelled when the
    caller stops (an error, Ctrl-C)."""
    from distributed import KilledWorker, as_completed

    spec = InputSpec.of(source, opened_with)
    infos = check_cluster(client, spec, measurer)
    size = batch_size(len(todo), len(infos))
    batches = [todo[k : k + size] for k in range(0, len(todo), size)]
    window = _IN_FLIGHT * max(len(infos), 1)

    submitted = []

    def submit(batch: list[int]):
        submitted.append(client.submit(measure_batch, spec, measurer, batch, pure=False))
        return submitted[-1]

    running = as_completed([submit(b) for b in batches[:window]], loop=client.loop)
    queued = iter(batches[window:])
    try:
        for future in running:
            try:
                worker, info, rows = future.result()
            except KilledWorker as exc:
                raise MeasureError(
                    f"a batch of chunks killed every worker that tried it ({exc}); the chunks "
                    "measured so far are kept: run again with --resume"
                ) from None
            following = next(queued, None)
            if following is not None:
                running.add(submit(following))
            for chunk_row, result_rows in rows:
                yield chunk_row, result_rows, info | {"address": worker}
    finally:
        running.clear()
        client.cancel([f for f in submitted if not f.done()])
