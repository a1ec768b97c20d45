"""The one compressor: a chunk compressed with one set of parameters, fast or timed.

Everything btune_wrap compresses with parameters of its own goes through :class:`ChunkCodec`:
the gather's measurements, the evaluation's extra measurements, the Python engine's writes and
its tweak trials, and the demo's baselines. So "measured on equal terms" holds by construction:
one scratch in-memory super-chunk per (parameters, chunk size) holds the compression and
decompression contexts (and their threads), reused for every call as when an array is written
and read. :func:`write_array` is the one atomic write of a Blosc2 array file.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_path
from .categories import Category
from .errors import BtuneWrapError, ConfigError, InputError, MeasureError, invalid
from .parse import parse_int, parse_threads
from .runtime import implicit_tuner_off

if TYPE_CHECKING:
    import blosc2


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


#: Bytes of a Blosc2 chunk header: a chunk of at most this plus one item holds special values.
CHUNK_OVERHEAD = 32


def is_special(cbytes: int, typesize: int) -> bool:
    """Whether a compressed chunk of ``cbytes`` holds only special values (a run of zeros, of
    NaNs or of one repeated value): it compresses the same whatever the parameters."""
    return cbytes <= CHUNK_OVERHEAD + typesize


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


class ChunkCodec:
    """Compresses (and times) chunks of one size with one set of parameters.

    Each call appends the chunk to a scratch super-chunk, takes it out as a standalone chunk
    (bytes that ``SChunk.update_chunk`` accepts) or decompresses it into a reused buffer, and
    deletes it again.

    Parameters
    ----------
    cparams
        ``blosc2.CParams`` (or a dict of its fields), with the typesize and blocksize of the
        chunks (e.g. :meth:`Category.to_cparams`).
    nbytes
        Size of the chunks in bytes.
    nthreads
        Compression and decompression threads; ``None`` (default) keeps ``cparams.nthreads``.
    dst
        The buffer decompressions write to: a C-contiguous, writeable 1-D uint8 array of
        ``nbytes`` bytes, which codecs timed one after the other should share (default: one of
        its own). With a buffer each, the 74 categories' buffers were cold in the caches when a
        chunk's first decompression wrote to them: that timing took 1.1 to 1.9 times the best
        of three (median; 3.5 to 4.1 times at the 90th percentile) on the built-in data,
        photographs and network weights, and 1.06 to 1.46 times (1.25 to 2.25) with one buffer
        shared. The best of three hardly changes: the later decompressions found it warm.
    """

    def __init__(
        self,
        cparams: blosc2.CParams | dict,
        nbytes: int,
        *,
        nthreads: int | None = None,
        dst: np.ndarray | None = None,
    ) -> None:
        import blosc2

        cp = as_cparams(cparams)
        if nthreads is not None:
            cp = dataclasses.replace(cp, nthreads=parse_threads("nthreads", nthreads))
        self.cparams = cp
        self.nbytes = parse_int("nbytes", nbytes, 1)
        self.nthreads = parse_threads("cparams.nthreads", cp.nthreads)
        with implicit_tuner_off():
            self._schunk = blosc2.SChunk(
                chunksize=self.nbytes, cparams=cp, dparams={"nthreads": self.nthreads}
            )
        sc = self._schunk
        self._append = compiled_method(sc, "append_data")
        self._get = compiled_method(sc, "get_chunk")
        self._delete = compiled_method(sc, "delete_chunk")
        if dst is None:
            dst = np.empty(self.nbytes, dtype=np.uint8)
        elif (
            dst.dtype != np.uint8
            or dst.shape != (self.nbytes,)
            or not dst.flags.c_contiguous
            or not dst.flags.writeable
        ):
            raise InputError(
                invalid(
                    "dst",
                    f"{dst.dtype} array of shape {dst.shape}",
                    f"a C-contiguous, writeable uint8 array of shape ({self.nbytes},)",
                )
            )
        self._dst = dst

    def _check_round_trip(self, got: np.ndarray, buf: np.ndarray) -> None:
        if not np.array_equal(got, buf):
            raise RoundTripError(
                f"decompressing the chunk compressed with {describe_cparams(self.cparams)} did "
                "not give the chunk back"
            )

    def compress(self, buf: np.ndarray) -> bytes:
        """The compressed chunk for ``buf`` (a contiguous buffer of one chunk's bytes)."""
        self._append(buf)
        chunk = self._get(0)
        self._delete(0)
        return chunk

    def measure(self, buf: np.ndarray, repeats: int = 3) -> Measurement:
        """Compress and decompress ``buf`` ``repeats`` times; keep the best times.

        ``buf`` is a C-contiguous 1-D uint8 array of :attr:`nbytes` bytes (a chunk as blosc2
        hands it to the codecs). Every decompression is compared with ``buf``.

        Raises
        ------
        RoundTripError
            If a decompressed chunk differs from ``buf``.
        """
        return self.measure_chunk(buf, repeats)[1]

    def measure_chunk(self, buf: np.ndarray, repeats: int = 3) -> tuple[bytes, Measurement]:
        """:meth:`measure`, also returning the compressed chunk."""
        ctime, dtime, chunk = self._timed(buf, repeats, repeats, keep=True)
        return chunk, Measurement(len(chunk), ctime, dtime)

    def time_more(
        self, buf: np.ndarray, compressions: int, decompressions: int
    ) -> tuple[float, float]:
        """The best of ``compressions`` more compression times and of ``decompressions`` more
        decompression times of ``buf`` (``inf`` where 0), taken as :meth:`measure_chunk` takes
        them: each decompression right after a compression of the chunk (untimed where no
        compression time is asked for), and checked like there. The cheaper gather repeats only
        the operation whose time can still change a label.

        Decompressions are never timed in a row, nor on a copy kept from an earlier
        compression: a compression at a high level leaves the caches to its own tables, and
        zstd-9 decompressed right after compressing took up to 1.85 times as long as in a row
        (the median category 1.03 times). Kept copies saved a sixth of the cheaper gather's
        CPU but made zstd-6/9 look faster than the full gather measures them, and its DECOMP
        models chose 1.0 to 1.7 points worse than the full gather's
        (``benchmarks/bench_cheap_gather.py --gain 480``, five runs)."""
        return self._timed(buf, compressions, decompressions)[:2]

    def _timed(
        self, buf: np.ndarray, compressions: int, decompressions: int, keep: bool = False
    ) -> tuple[float, float, bytes]:
        """The best compression and decompression times of ``buf`` over ``compressions`` and
        ``decompressions`` runs, each decompression right after a compression (untimed beyond
        ``compressions``) and checked; with ``keep`` also the last compressed chunk."""
        if buf.nbytes != self.nbytes:
            raise InputError(invalid("buf.nbytes", buf.nbytes, f"{self.nbytes} bytes"))
        sc, dst = self._schunk, self._dst
        clock = time.perf_counter
        ctime = dtime = math.inf
        chunk = b""
        for k in range(max(compressions, decompressions)):
            t0 = clock()
            sc.append_data(buf)
            t1 = clock()
            try:
                if k < decompressions:
                    sc.decompress_chunk(0, dst)
                    dtime = min(dtime, clock() - t1)
                    self._check_round_trip(dst, buf)
                if keep:
                    # The chunk's own length: schunk.cbytes is not reliable here (blosc2 4.0.0
                    # does not subtract a deleted special-value chunk from it).
                    chunk = sc.get_chunk(0)
            finally:
                sc.delete_chunk(0)
            if k < compressions:
                ctime = min(ctime, t1 - t0)
        return ctime, dtime, chunk


class DirectWrite:
    """Compresses chunks straight into an array's super-chunk, each with its own parameters.

    The schunk's cparams are set to a chunk's parameters when they differ from the previous
    chunk's (they must carry the array's blocksize: FACTS.md section 6) and restored by
    :meth:`close`. The Python engine uses it for big chunks: a chunk compressed apart
    (:meth:`ChunkCodec.compress`) and then copied in costs two more copies of it, and with one
    chunk of 16 MB the engine wrote at 0.2-0.5x of ``blosc2.asarray``. Setting cparams costs
    about 11-19 us, so small chunks whose categories alternate are better compressed apart.
    """

    def __init__(self, schunk: blosc2.SChunk) -> None:
        import blosc2

        self.schunk = schunk
        self.original = schunk.cparams
        self.current: blosc2.CParams | None = None
        self.last = -1
        self._sizes = blosc2.get_cbuffer_sizes  # (nbytes, cbytes, blocksize) of a chunk header

    def write(self, step: int, buf: np.ndarray, cparams: blosc2.CParams) -> tuple[int, float]:
        """Compress ``buf`` (one chunk's bytes) into chunk ``step`` with ``cparams``: its
        compressed size and the seconds it took."""
        if self.current is not cparams:
            self.schunk.cparams = cparams
            self.current = cparams
        t0 = time.perf_counter()
        self.schunk.update_data(step, buf, True)
        seconds = time.perf_counter() - t0
        self.last = step
        return self._sizes(self.schunk.get_lazychunk(step))[1], seconds

    def close(self) -> None:
        """Give the schunk back its own cparams.

        A file records them in its header only when a chunk is written (blosc2 4.0.0 and
        4.14.1): the last chunk written is stored again, as it is, so that a reopened file
        keeps its own cparams rather than the last chunk's."""
        if self.current is None:
            return
        self.schunk.cparams = self.original
        self.current = None
        if self.schunk.urlpath is not None and self.last >= 0:
            self.schunk.update_chunk(self.last, self.schunk.get_chunk(self.last))


def describe_cparams(cp: blosc2.CParams) -> str:
    """Compression parameters in a few words: their category's name when they form one."""
    try:
        name = Category.from_cparams(cp).name
    except BtuneWrapError:
        filters = [getattr(f, "name", f) for f in cp.filters]
        name = f"codec {getattr(cp.codec, 'name', cp.codec)}, filters {filters}"
    return f"{name} (typesize {cp.typesize}, blocksize {cp.blocksize})"


_CODECS: collections.OrderedDict[tuple, ChunkCodec] = collections.OrderedDict()
_CODECS_KEPT = 64


def measure_cparams(
    buf: bytes | memoryview | np.ndarray,
    cparams: blosc2.CParams | dict,
    *,
    repeats: int = 3,
    nthreads: int | None = None,
) -> Measurement:
    """Measure one chunk with one set of compression parameters (:meth:`ChunkCodec.measure`).

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
        (:class:`RoundTripError` otherwise). Codecs are cached per parameters and size.
    """
    data = as_buffer(buf)
    repeats = parse_int("repeats", repeats, 1)
    cp = as_cparams(cparams)
    if nthreads is not None:
        cp = dataclasses.replace(cp, nthreads=parse_threads("nthreads", nthreads))
    key = (_cparams_key(cp), data.nbytes)
    codec = _CODECS.get(key)
    if codec is None:
        codec = _CODECS[key] = ChunkCodec(cp, data.nbytes)
        while len(_CODECS) > _CODECS_KEPT:
            _CODECS.popitem(last=False)
    else:
        _CODECS.move_to_end(key)
    return codec.measure(data, repeats)


def as_cparams(cparams: object) -> blosc2.CParams:
    """``blosc2.CParams`` as is, or built from a dict of its fields (:class:`ConfigError` if
    neither)."""
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


def as_buffer(buf: object) -> np.ndarray:
    """A chunk's bytes as a 1-D uint8 view (bytes, memoryview or a C-contiguous array)."""
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


@contextlib.contextmanager
def write_array(urlpath: str | os.PathLike[str] | None) -> Iterator[dict[str, object]]:
    """Where to create a Blosc2 array so that ``urlpath`` appears whole or not at all.

    Yields the keyword arguments for ``blosc2.empty``/``asarray`` (``{}`` for an in-memory
    array; else a temporary ``urlpath`` next to the target and ``mode="w"``). The array made
    inside the block must be closed (deleted) before it ends; on success the file is renamed
    over ``urlpath``, on error it is removed.
    """
    if urlpath is None:
        yield {}
        return
    with atomic_path(urlpath) as tmp:
        yield {"urlpath": str(tmp), "mode": "w"}
