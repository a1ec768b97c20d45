"""Tuned HDF5: a dataset whose every chunk carries the parameters the Python engine chose for it.

An HDF5 dataset has one filter configuration, but the Blosc2 HDF5 filter (id 32026, in
hdf5plugin and PyTables) decodes each chunk from the chunk's own Blosc2 headers. So chunks
written directly (``write_direct_chunk``) in the layout the filter writes itself are read by any
h5py + hdf5plugin reader, each with its own codec, filters, level and split mode.

The layout, from the filter's sources (``hdf5-blosc2/src/blosc2_filter.c`` in PyTables, which
hdf5plugin builds) and checked on the files hdf5plugin 7.1 writes:

* an HDF5 chunk is a serialized Blosc2 super-chunk (a *cframe*, magic ``b2frame``) holding
  exactly one Blosc2 chunk;
* the filter writes a B2ND array (``b2nd`` metalayer, an opaque ``|V<itemsize>`` dtype, shape =
  chunk shape = the HDF5 chunk shape) for 2-D and more, a plain super-chunk for 1-D; it reads
  either, choosing by the ``b2nd`` metalayer, and takes the item size and the output size from
  its filter values: ``cd_values = (revision, blocksize, typesize, chunk bytes, clevel, shuffle,
  codec[, ndim, chunk shape...])``, filled in by the filter when the dataset is created;
* edge chunks are whole chunks (HDF5 ignores the part outside the dataset).

This module writes the frames the filter writes (a B2ND one for 1-D too when the engine's blocks
do not divide the chunk: the filter reads it the same way and strips the padding), each holding
exactly the chunk the Python engine wrote for a ``.b2nd`` file. b2h5py opens the same cframes
with ``blosc2`` to slice them, so it reads them too. (Plain frames read faster where they can
be used: 1-D chunks of 40 KB in B2ND frames read at 0.9x the speed of plain ones.)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import posixpath
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import atomic_path
from .categories import Category, Filter, default_category
from .engine import PythonEngine, layout_kwargs
from .errors import ConfigError, InputError, invalid
from .outputs import check_target as check_output_path
from .sources import HDF5_SUFFIXES, _is_hdf5, _split_inner, check_array, region_reader

if TYPE_CHECKING:
    import blosc2
    import h5py

    from .infer import Engine
    from .trace import Trace

#: The Blosc2 HDF5 filter's registered id.
BLOSC2_FILTER_ID = 32026
#: The attribute recording how the dataset was tuned (a JSON object).
TUNING_ATTR = "btune_wrap.tuning"
#: The largest item size a Blosc2 chunk header holds (BLOSC_MAX_TYPESIZE).
MAX_ITEMSIZE = 255
#: dtype kinds h5py stores as they are: booleans, integers, floats, complex.
H5_KINDS = "biufc"

_FORM = "'file.h5:/group/dataset'"


@dataclass(frozen=True)
class H5Target:
    """An output dataset inside an HDF5 file (``file.h5:/group/dataset``)."""

    file: Path
    """The HDF5 file (created if missing)."""
    dataset: str
    """The absolute path of the dataset inside the file."""

    def __str__(self) -> str:
        return f"{self.file}:{self.dataset}"


@dataclass(frozen=True)
class H5Dataset:
    """What :func:`write_h5` wrote: read it with ``h5py`` after ``import hdf5plugin``."""

    target: H5Target
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    """The HDF5 chunk shape."""
    blocks: tuple[int, ...]
    """The Blosc2 block shape inside each chunk."""
    nchunks: int
    nbytes: int
    """Uncompressed bytes of the data."""
    cbytes: int
    """Bytes of all the stored chunks (HDF5's own metadata not counted)."""

    @property
    def cratio(self) -> float:
        return self.nbytes / max(self.cbytes, 1)


def parse_target(urlpath: str | os.PathLike[str] | None) -> H5Target | None:
    """``file.h5:/group/ds`` -> :class:`H5Target`; ``None`` for any other output (``.b2nd``).

    A path is an HDF5 target when the part before its last ``:`` ends with an HDF5 suffix
    (:data:`~btune_wrap.sources.HDF5_SUFFIXES`) or is an existing HDF5 file.

    Raises
    ------
    InputError
        An HDF5 file without a dataset path, or a dataset path that is ``/``, holds ``.`` or
        ``..`` components or ends with ``/``.
    """
    if not isinstance(urlpath, (str, os.PathLike)):
        return None  # not a path: the common output checks name it
    name = os.fspath(urlpath)
    cut = name.rfind(":")
    while cut > 0:
        head = Path(name[:cut])
        if head.suffix.lower() in HDF5_SUFFIXES or (head.is_file() and _is_hdf5(head)):
            return H5Target(head, _dataset_path(name, name[cut + 1 :]))
        cut = name.rfind(":", 0, cut)
    file = Path(name)
    if file.suffix.lower() in HDF5_SUFFIXES or (file.is_file() and _is_hdf5(file)):
        raise InputError(invalid("output", name, f"a dataset inside the HDF5 file: {_FORM}"))
    return None


def _dataset_path(name: str, inner: str) -> str:
    parts = inner.strip("/").split("/")
    if inner.endswith("/") or not inner.strip("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(
            invalid("output", name, f"{_FORM} with a dataset path like /group/dataset")
        )
    return "/" + "/".join(parts)


def engine_for_hdf5(engine: Engine | str | None) -> Engine:
    """The engine that writes an HDF5 output: the Python engine (``None`` picks it).

    Raises
    ------
    ConfigError
        ``engine`` is the native engine: the Btune plugin tunes only Blosc2 super-chunks.
    """
    from .infer import Engine

    which = Engine.PYTHON if engine is None else Engine.parse(engine)
    if which is not Engine.PYTHON:
        raise ConfigError(
            invalid(
                "engine",
                which.value,
                "'python' or None for an HDF5 output: the Btune plugin tunes only Blosc2 "
                "super-chunks, so the Python engine writes HDF5 datasets",
            )
        )
    return which


# -- checks before anything is written -----------------------------------------------------


def check_target(target: H5Target, *, force: bool = False, source: object = None) -> None:
    """Refuse outputs that must not be written, before any work is done.

    Raises
    ------
    InputError
        The file's directory cannot take it (:func:`btune_wrap.outputs.check_target`); the file
        is a directory, not HDF5, or read-only (no write permission bit, or not writable by
        this process); the dataset path names a group or lies under a dataset;
        it names an existing dataset and ``force`` is false; or it is the input itself.
    """
    _require_h5py()
    file = target.file
    where = str(target)
    if _same_dataset(target, source):
        raise InputError(invalid("output", where, "a dataset other than the input"))
    # The file's directory, as for any output (another dataset of the input file is fine).
    check_output_path(file, name="output")
    if not file.exists():
        return
    if file.is_dir() or not _is_hdf5(file):
        what = "a directory" if file.is_dir() else "an existing file that is not HDF5"
        raise InputError(invalid("output", where, f"an HDF5 file or a new path, not {what}"))
    mode = file.stat().st_mode
    if not mode & 0o222 or not os.access(file, os.W_OK):
        raise InputError(invalid("output", where, f"a writable file ({file} is read-only)"))
    import h5py

    with h5py.File(file, "r") as h5:
        parts = target.dataset.strip("/").split("/")
        for k in range(1, len(parts) + 1):
            node = h5.get("/" + "/".join(parts[:k]))
            if node is None:
                return
            if k < len(parts) and not isinstance(node, h5py.Group):
                raise InputError(invalid("output", where, "a path below groups, not datasets"))
        if not isinstance(node, h5py.Dataset):
            raise InputError(invalid("output", where, "a dataset path, not a group"))
        if not force:
            raise InputError(
                invalid("output", where, "a new dataset name (or force=True / --force)")
            )


def _same_dataset(target: H5Target, source: object) -> bool:
    inner = reads_target_file(target, source)
    return inner is not None and "/" + inner.strip("/") == target.dataset


def reads_target_file(target: H5Target, source: object) -> str | None:
    """The dataset ``source`` names if it is one in ``target``'s HDF5 file (``file.h5:/ds``
    with the same file), else None."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        file, inner = _split_inner(os.fspath(source))
    except InputError:
        return None
    if inner is None or not target.file.exists() or not file.exists():
        return None
    return inner if os.path.samefile(file, target.file) else None


def check_h5_array(array: np.ndarray, chunks: Sequence[int] | None = None) -> None:
    """Refuse arrays and chunk shapes an HDF5 Blosc2 dataset cannot hold (chunk and block
    shapes themselves are checked by :func:`btune_wrap.sources.resolve_layout`).

    Raises
    ------
    InputError
        What :func:`btune_wrap.sources.check_array` refuses; a dtype h5py does not store as it
        is (see :data:`H5_KINDS`; structured dtypes of those are accepted) or wider than
        :data:`MAX_ITEMSIZE` bytes; chunks larger than the array in some dimension (HDF5
        refuses those for a dataset of fixed size).
    """
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    check_array("data", shape, dtype, numeric=False)
    if not _h5_dtype(dtype) or dtype.itemsize > MAX_ITEMSIZE:
        expected = (
            f"a dtype h5py stores as it is (bool, integer, float, complex, or a structured "
            f"dtype of those) of at most {MAX_ITEMSIZE} bytes"
        )
        raise InputError(invalid("data.dtype", str(dtype), expected))
    if chunks is not None and any(c > s for c, s in zip(chunks, shape, strict=True)):
        raise InputError(
            invalid("chunks", tuple(chunks), f"no larger than the data's shape {shape}")
        )


def _h5_dtype(dtype: np.dtype) -> bool:
    if dtype.names:
        return all(_h5_dtype(dtype.fields[n][0]) for n in dtype.names)
    if dtype.subdtype is not None:  # a sub-array field of a compound type
        return _h5_dtype(dtype.subdtype[0])
    return dtype.kind in H5_KINDS


def _require_h5py() -> None:
    try:
        import h5py  # noqa: F401
        import hdf5plugin  # noqa: F401  (registers the Blosc2 filter)
    except ImportError as exc:
        raise InputError(
            f"an HDF5 output needs h5py and hdf5plugin (pip install 'btune_wrap[io]'): {exc}"
        ) from None


# -- chunk framing ---------------------------------------------------------------------------


class ChunkFramer:
    """Wraps each Blosc2 chunk of an array's layout into the cframe an HDF5 chunk holds.

    A scratch in-memory super-chunk of one chunk gives the frame, as the filter writes it: a
    plain one for 1-D chunks that hold whole blocks, else a B2ND array (the layout's chunk and
    block shapes, the opaque dtype the filter uses; B2ND decoding strips the padding of blocks
    that do not divide the chunk). The first chunk is serialized by blosc2 itself, and
    the frame's header (with its size fields) and tail (chunk index and trailer, the same for
    any chunk) are kept; later chunks are spliced in between, their two size fields updated.
    Serializing each chunk with blosc2 took about 100 us a chunk; splicing takes about 1 us.
    Until a frame is laid out as expected, chunks are serialized by blosc2.
    """

    #: Where the cframe header keeps the frame size and the compressed size (big-endian
    #: 64-bit msgpack integers after their markers 0xcf and 0xd3): c-blosc2's frame format.
    _FRAME_SIZE = 16
    _CBYTES = 39

    def __init__(self, layout: blosc2.NDArray) -> None:
        import blosc2

        itemsize = np.dtype(layout.dtype).itemsize
        chunks, blocks = tuple(layout.chunks), tuple(layout.blocks)
        #: Whether the frames are plain super-chunks (as the filter writes for 1-D) rather than
        #: B2ND arrays: 1-D chunks that are a whole number of blocks (no padding to strip).
        self.plain = len(chunks) == 1 and chunks[0] % blocks[0] == 0
        if self.plain:
            sc = layout.schunk
            self._scratch = blosc2.SChunk(
                chunksize=sc.chunksize,
                data=np.zeros(sc.chunksize, dtype=np.uint8),
                contiguous=False,
                cparams={"typesize": sc.typesize, "blocksize": sc.blocksize},
            )
            self._update = self._scratch.update_chunk
        else:
            self._scratch = blosc2.empty(
                chunks,
                dtype=np.dtype(f"V{itemsize}"),
                chunks=chunks,
                blocks=blocks,
                contiguous=False,
            )
            self._update = self._scratch.schunk.update_chunk
        self._head: bytes | None = None
        self._tail = b""

    def frame(self, chunk: bytes) -> bytes:
        """The HDF5 chunk for ``chunk`` (a Blosc2 chunk of the layout's chunk size)."""
        if self._head is not None:
            head = bytearray(self._head)
            size = len(head) + len(chunk) + len(self._tail)
            struct.pack_into(">q", head, self._FRAME_SIZE, size)
            struct.pack_into(">q", head, self._CBYTES, len(chunk))
            return b"".join((head, chunk, self._tail))
        self._update(0, chunk)
        frame = self._scratch.to_cframe()
        self._learn(frame, chunk)
        return frame

    def _learn(self, frame: bytes, chunk: bytes) -> None:
        """Keep ``frame``'s header and tail if the chunk sits between them as expected (not so
        for a special-value chunk, which blosc2 may record in the frame's index instead)."""
        if frame[: len(b"\x9e\xa8b2frame")] != b"\x9e\xa8b2frame" or frame[10] != 0xD2:
            return
        hsize = struct.unpack_from(">i", frame, 11)[0]
        fields = (frame[self._FRAME_SIZE - 1], frame[self._CBYTES - 1])
        sizes = (
            struct.unpack_from(">q", frame, self._FRAME_SIZE)[0],
            struct.unpack_from(">q", frame, self._CBYTES)[0],
        )
        if (
            fields == (0xCF, 0xD3)
            and sizes == (len(frame), len(chunk))
            and frame[hsize : hsize + len(chunk)] == chunk
        ):
            self._head, self._tail = frame[:hsize], frame[hsize + len(chunk) :]


def chunk_offsets(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """The HDF5 offset (first item) of each chunk, in the C order of the chunk grid: the order
    in which Blosc2 numbers its chunks."""
    grid = [-(-s // c) for s, c in zip(shape, chunks, strict=True)]
    for index in np.ndindex(*grid):
        yield tuple(int(i) * int(c) for i, c in zip(index, chunks, strict=True))


# -- writing -------------------------------------------------------------------------------


def write_h5(
    engine: PythonEngine,
    array: np.ndarray,
    target: H5Target,
    *,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    nthreads: int | None = None,
    force: bool = False,
    attrs: dict[str, Any] | None = None,
) -> tuple[H5Dataset, Trace]:
    """Write ``array`` as the dataset ``target``, each chunk compressed as ``engine`` decides.

    Parameters
    ----------
    engine
        The Python engine (its config and model make the decisions).
    array
        The data (see :func:`check_h5_array`).
    target
        Where to write (see :func:`parse_target` and :func:`check_target`).
    chunks, blocks
        The HDF5 chunk shape and the Blosc2 blocks inside each chunk; ``None`` (default): the
        shapes the Python engine picks for a ``.b2nd`` file.
    nthreads
        Compression threads (``None``: blosc2's default).
    force
        Replace an existing dataset of that name (other objects in the file are kept).
    attrs
        Attributes to copy onto the dataset (an HDF5 input's, see :func:`source_attrs`); the
        :data:`TUNING_ATTR` attribute is added.

    The write is atomic: a new file is written aside and renamed; in an existing file the
    dataset is written under a temporary name and moved into place only when whole (on any
    error it and the groups made for it are deleted).
    """
    import blosc2

    from .runtime import implicit_tuner_off

    data = region_reader(array)
    check_h5_array(data)
    check_target(target, force=force)
    # The shapes PythonEngine.write picks for a .b2nd, from its cache: asking blosc2.empty
    # without blocks compresses 8 MB of zeros for a blocksize hint on every call (8 ms here).
    kwargs: dict[str, Any] = layout_kwargs(data, chunks, blocks, nthreads)
    check_h5_array(data, kwargs["chunks"])
    with implicit_tuner_off():
        layout = blosc2.empty(tuple(data.shape), dtype=np.dtype(data.dtype), **kwargs)
        framer = ChunkFramer(layout)
    filter_ = blosc2_filter(default_category())
    with _dataset_slot(target, force) as (group, name):
        ds = group.create_dataset(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=tuple(layout.chunks),
            compression=BLOSC2_FILTER_ID,
            compression_opts=filter_,
        )
        write = ds.id.write_direct_chunk
        offsets = chunk_offsets(data.shape, layout.chunks)
        cbytes = 0

        def sink(step: int, chunk: bytes) -> None:
            nonlocal cbytes
            frame = framer.frame(chunk)
            cbytes += len(frame)
            write(next(offsets), frame)

        trace = engine.fill(layout, data, sink)
        for key, value in (attrs or {}).items():
            ds.attrs[key] = value
        ds.attrs[TUNING_ATTR] = tuning_record(engine, trace)
    result = H5Dataset(
        target=target,
        shape=tuple(data.shape),
        dtype=np.dtype(data.dtype),
        chunks=tuple(layout.chunks),
        blocks=tuple(layout.blocks),
        nchunks=layout.schunk.nchunks,
        nbytes=math.prod(data.shape) * np.dtype(data.dtype).itemsize,
        cbytes=cbytes,
    )
    return result, trace


def blosc2_filter(category: Category) -> tuple[int, ...]:
    """The filter values a dataset is created with (what the filter uses for chunks written
    through it later): the category's level, shuffle and codec; bytedelta, which the filter
    cannot express, becomes its shuffle. The filter fills in the other values."""
    shuffle = Filter.SHUFFLE if category.filter is Filter.BYTEDELTA else category.filter
    return (0, 0, 0, 0, int(category.clevel), int(shuffle), int(category.codec))


def tuning_record(engine: PythonEngine, trace: Trace) -> str:
    """The :data:`TUNING_ATTR` value: how the dataset was tuned, as a JSON object.

    Keys: ``tradeoff``, ``perf_mode``, ``use_inference``, ``model`` (the ``.tflite`` path or
    null), ``engine``, ``btune_wrap_version`` and ``chunks_per_parameters`` (how many chunks
    each ``codec-filter-clevel[-split]`` compressed).
    """
    from . import __version__

    config, model = engine.config, engine.model
    counts: dict[str, int] = {}
    for row in trace.rows:
        # codec-filter-clevel, "-split" where blocks are always split
        key = f"{row.codec}-{Filter(row.filter).name.lower()}-{row.clevel}"
        key += "-split" if row.split else ""
        counts[key] = counts.get(key, 0) + 1
    tradeoff = config.tradeoff
    return json.dumps(
        {
            "tradeoff": list(tradeoff) if isinstance(tradeoff, tuple) else tradeoff,
            "perf_mode": config.perf_mode.name,
            "use_inference": config.use_inference,
            "model": None if model is None else str(model.tflite_path),
            "engine": trace.engine,
            "btune_wrap_version": __version__,
            "chunks_per_parameters": counts,
        }
    )


@contextlib.contextmanager
def _dataset_slot(target: H5Target, force: bool) -> Iterator[tuple[h5py.Group, str]]:
    """Yield ``(group, name)`` to create the dataset in; it becomes ``target`` on success."""
    import h5py

    parent, leaf = posixpath.split(target.dataset)
    if not target.file.exists():
        with atomic_path(target.file) as tmp, h5py.File(tmp, "w") as h5:
            yield h5.require_group(parent), leaf
        return
    try:
        h5 = h5py.File(target.file, "r+")
    except OSError as exc:
        raise InputError(invalid("output", str(target), f"a writable HDF5 file: {exc}")) from None
    with h5:
        made = _first_missing(h5, parent)
        group = h5.require_group(parent)
        tmp_name = _free_name(group, f".{leaf}.btune-tmp")
        try:
            yield group, tmp_name
            if target.dataset in h5:
                if not force:  # made since check_target: never replaced unasked
                    raise InputError(invalid("output", str(target), "a new dataset name"))
                del h5[target.dataset]
            h5.move(posixpath.join(parent, tmp_name), target.dataset)
        except BaseException:
            if tmp_name in group:
                del group[tmp_name]
            if made is not None and made in h5:
                del h5[made]
            raise


def _first_missing(h5: h5py.File, parent: str) -> str | None:
    """The first group of ``parent`` that does not exist yet (``None``: all exist)."""
    parts = parent.strip("/").split("/") if parent.strip("/") else []
    for k in range(1, len(parts) + 1):
        path = "/" + "/".join(parts[:k])
        if path not in h5:
            return path
    return None


def _free_name(group: h5py.Group, stem: str) -> str:
    name, k = stem, 0
    while name in group:
        k += 1
        name = f"{stem}{k}"
    return name


def source_attrs(source: object) -> dict[str, Any]:
    """The attributes of an HDF5 input dataset (``file.h5:/ds``); ``{}`` for other inputs."""
    if not isinstance(source, (str, os.PathLike)):
        return {}
    try:
        file, inner = _split_inner(os.fspath(source))
    except InputError:
        return {}
    if inner is None or not file.is_file() or not _is_hdf5(file):
        return {}
    import h5py

    with h5py.File(file, "r") as h5:
        node = h5.get(inner)
        if not isinstance(node, h5py.Dataset):
            return {}
        return {k: v for k, v in node.attrs.items() if k != TUNING_ATTR}
