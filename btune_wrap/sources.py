"""Inputs opened as chunk sources: each chunk's bytes exactly as blosc2 hands them to the codecs.

A :class:`ChunkSource` is an array split into Blosc2 chunks and blocks. Its
:meth:`ChunkSource.chunk` gives chunk ``i`` as the buffer C-Blosc2 compresses for an NDArray
with that chunk and block shape, so that features and measurements match what the plugin sees
when the user compresses the same data:

* the chunk is padded to a whole number of blocks in every dimension (``ext_chunks``), and
  edge chunks are padded to the full chunk shape, with zero bytes;
* blocks follow one another in C order of the block grid, each block's items in C order
  (for more than one dimension this is not the C-order slice of the chunk).

:func:`open_source` accepts

* ``x.b2nd`` / ``x.b2frame``: a Blosc2 NDArray (its own chunks and blocks) or a super-chunk
  (its own chunks, read as raw items of its typesize);
* ``x.npy`` (memory-mapped);
* ``file.h5:/group/dataset`` (HDF5; :mod:`hdf5plugin` is imported so that datasets compressed
  with its filters read);
* a Zarr array directory, or ``store.zarr:/group/array`` for an array inside a group.

Sources without Blosc2 chunks get the chunk and block shapes blosc2 would choose for them
(``blosc2.compute_chunks_blocks``), unless ``chunks``/``blocks`` are given; given shapes
re-chunk a Blosc2 input too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, invalid
from .parse import parse_int

if TYPE_CHECKING:
    import blosc2

#: Suffixes read as HDF5 files.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
#: Files whose presence makes a directory a Zarr store (v3, then v2).
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
#: dtype kinds accepted: booleans, integers, floats, complex, timedeltas and datetimes.
NUMERIC_KINDS = "biufcmM"

_FORMS = "a .b2nd or .b2frame file, a .npy file, 'file.h5:/group/dataset' or a Zarr directory"


class SourceKind(str, Enum):
    """The format of an input."""

    B2ND = "b2nd"
    B2FRAME = "b2frame"
    NPY = "npy"
    HDF5 = "hdf5"
    ZARR = "zarr"


# -- chunk layout ----------------------------------------------------------------------------


def chunk_grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """Number of chunks along each dimension (edge chunks included)."""
    return tuple(-(-int(s) // int(c)) for s, c in zip(shape, chunks, strict=True))


def ext_chunks(chunks: Sequence[int], blocks: Sequence[int]) -> tuple[int, ...]:
    """The chunk shape padded to a whole number of blocks in every dimension (what blosc2
    stores per chunk)."""
    return tuple(-(-int(c) // int(b)) * int(b) for c, b in zip(chunks, blocks, strict=True))


def chunk_buffer(data: Any, i: int, chunks: Sequence[int], blocks: Sequence[int]) -> np.ndarray:
    """Chunk ``i`` of ``data`` laid out as blosc2 hands it to the codecs.

    Equal, byte for byte, to ``schunk.decompress_chunk(i)`` of
    ``blosc2.asarray(data, chunks=chunks, blocks=blocks)``: the chunk's region (C order of the
    chunk grid) zero-padded to the full chunk and to whole blocks, then cut into blocks that
    follow one another, each in C order.

    Parameters
    ----------
    data
        A NumPy array, or anything with ``shape``, ``dtype`` and NumPy-style slicing that
        returns arrays (``numpy.memmap``, an h5py dataset, a Zarr array, a ``blosc2.NDArray``).
        Only the chunk's region is read.
    i
        Chunk index, in C order of the chunk grid.
    chunks, blocks
        Chunk and block shapes, one entry per dimension.

    Returns
    -------
    numpy.ndarray
        1-D, C-contiguous, of ``data``'s dtype; ``.view(np.uint8)`` gives the bytes.
    """
    shape = tuple(int(s) for s in data.shape)
    chunks = tuple(int(c) for c in chunks)
    blocks = tuple(int(b) for b in blocks)
    if not (len(chunks) == len(blocks) == len(shape)):
        raise InputError(
            invalid("chunks, blocks", (chunks, blocks), f"{len(shape)} entries each for {shape}")
        )
    grid = chunk_grid(shape, chunks)
    nchunks = math.prod(grid)
    parse_int("chunk index", i, 0, nchunks - 1, error=InputError)
    coords = np.unravel_index(int(i), grid)
    region = tuple(
        slice(k * c, min((k + 1) * c, s)) for k, c, s in zip(coords, chunks, shape, strict=True)
    )
    part = np.asarray(data[region])
    ext = ext_chunks(chunks, blocks)
    if part.shape != ext:
        padded = np.zeros(ext, dtype=part.dtype)
        padded[tuple(slice(0, n) for n in part.shape)] = part
        part = padded
    if part.ndim > 1 and blocks != ext:
        split: list[int] = []
        for e, b in zip(ext, blocks, strict=True):
            split += [e // b, b]
        order = list(range(0, 2 * part.ndim, 2)) + list(range(1, 2 * part.ndim, 2))
        part = part.reshape(split).transpose(order)
    return np.ascontiguousarray(part).reshape(-1)


def _as_uint8(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values).reshape(-1).view(np.uint8)


# -- sources ---------------------------------------------------------------------------------


class ChunkSource:
    """An input array split into Blosc2 chunks and blocks.

    Attributes
    ----------
    name : str
        The input as given (``file.h5:/group/ds`` for a dataset).
    kind : SourceKind
        Its format.
    file : pathlib.Path
        The file or directory holding it.
    inner : str or None
        The dataset or array inside ``file`` (HDF5, Zarr group), else None.
    shape, dtype
        The array's shape and dtype.
    chunks, blocks : tuple of int
        Chunk and block shapes (a Blosc2 input's own unless re-chunked).
    typesize : int
        Item size in bytes (``schunk.typesize``).
    blocksize : int
        Block size in bytes, the one blosc2 uses for these shapes (``schunk.blocksize``).
    nchunks : int
        Number of chunks.
    chunk_nbytes : int
        Bytes of one chunk's buffer, padding included (``schunk.chunksize``).
    """

    name: str
    kind: SourceKind
    file: Path
    inner: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    blocks: tuple[int, ...]
    typesize: int
    blocksize: int
    nchunks: int
    chunk_nbytes: int

    def chunk(self, i: int) -> np.ndarray:
        """Chunk ``i``'s bytes (1-D uint8) exactly as blosc2 hands them to the codecs."""
        raise NotImplementedError

    def chunk_blocksize(self, i: int) -> int:
        """The blocksize (bytes) blosc2 uses for chunk ``i`` (:attr:`blocksize` but for
        super-chunks whose chunks carry their own)."""
        return self.blocksize

    def load_array(self) -> np.ndarray:
        """The whole array as NumPy."""
        raise NotImplementedError

    def region_array(self) -> Any:
        """The array to read the chunks' regions from, one region at a time (``shape``,
        ``dtype`` and NumPy-style slicing; valid until :meth:`close`): the input's own array
        object where reading a region reads little more (a memory-mapped ``.npy``, an h5py
        dataset, a Zarr array, a Blosc2 NDArray), else the whole array (:meth:`load_array`)."""
        return self.load_array()

    def close(self) -> None:
        """Release open files."""

    def fingerprint(self) -> dict[str, object]:
        """What identifies the input's contents: path, size and modification time."""
        path = self.file.resolve()
        stat = path.stat()
        out: dict[str, object] = {"path": str(path), "inner": self.inner}
        if path.is_dir():
            marker = next((path / m for m in ZARR_MARKERS if (path / m).exists()), path)
            out["mtime_ns"] = max(stat.st_mtime_ns, marker.stat().st_mtime_ns)
        else:
            out.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        return out

    def describe(self) -> str:
        """One line: name, format, dtype, shape, chunk layout."""
        return (
            f"{self.name} ({self.kind.value}): {self.dtype} {self.shape}, chunks {self.chunks}, "
            f"blocks {self.blocks}; {self.nchunks} chunks of {self.chunk_nbytes} bytes, "
            f"blocksize {self.blocksize}, typesize {self.typesize}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def __enter__(self) -> ChunkSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _set_layout(
        self, shape: Sequence[int], dtype: np.dtype, chunks: Sequence[int], blocks: Sequence[int]
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(int(c) for c in chunks)
        self.blocks = tuple(int(b) for b in blocks)
        self.typesize = self.dtype.itemsize
        self.blocksize = math.prod(self.blocks) * self.typesize
        self.nchunks = math.prod(chunk_grid(self.shape, self.chunks))
        self.chunk_nbytes = math.prod(ext_chunks(self.chunks, self.blocks)) * self.typesize


class ArraySource(ChunkSource):
    """Any sliceable array (NumPy, memmap, h5py dataset, Zarr array, NDArray) with the chunk and
    block shapes given, or blosc2's choice for them. Chunks are laid out by
    :func:`chunk_buffer`."""

    def __init__(
        self,
        data: Any,
        *,
        name: str = "<array>",
        kind: SourceKind = SourceKind.NPY,
        file: str | os.PathLike[str] = "",
        inner: str | None = None,
        chunks: Sequence[int] | None = None,
        blocks: Sequence[int] | None = None,
        closer: Any = None,
    ) -> None:
        self.name, self.kind, self.file, self.inner = name, kind, Path(file), inner
        self._data = data
        self._closer = closer
        shape = tuple(int(s) for s in data.shape)
        dtype = check_array(name, shape, np.dtype(data.dtype))
        chunks, blocks = resolve_layout(shape, dtype, chunks, blocks, where=name)
        self._set_layout(shape, dtype, chunks, blocks)

    def chunk(self, i: int) -> np.ndarray:
        return _as_uint8(chunk_buffer(self._data, i, self.chunks, self.blocks))

    def load_array(self) -> np.ndarray:
        return np.asarray(self._data[...])

    def region_array(self) -> Any:
        return self._data

    def close(self) -> None:
        if self._closer is not None:
            self._closer.close()
            self._closer = None


class NDArraySource(ChunkSource):
    """A Blosc2 NDArray with its own chunks: chunk ``i`` is ``schunk.decompress_chunk(i)``."""

    def __init__(self, arr: Any, *, name: str, kind: SourceKind, file: str | os.PathLike[str]):
        self.name, self.kind, self.file, self.inner = name, kind, Path(file), None
        self._arr = arr
        self._schunk = arr.schunk
        dtype = check_array(name, tuple(arr.shape), np.dtype(arr.dtype))
        self._set_layout(arr.shape, dtype, arr.chunks, arr.blocks)
        # blosc2's own figures (equal to the computed ones for an NDArray).
        self.typesize = int(self._schunk.typesize)
        self.blocksize = int(self._schunk.blocksize)
        self.chunk_nbytes = int(self._schunk.chunksize)

    def chunk(self, i: int) -> np.ndarray:
        _check_index(i, self.nchunks)
        return np.frombuffer(self._schunk.decompress_chunk(int(i)), dtype=np.uint8)

    def load_array(self) -> np.ndarray:
        return self._arr[()]

    def region_array(self) -> Any:
        return self._arr


class FrameSource(ChunkSource):
    """A Blosc2 super-chunk (no NDArray metadata): 1-D raw items of its typesize. Its chunks
    are used as they are (the last one may be shorter), each with the blocksize recorded in
    its header."""

    def __init__(self, schunk: Any, *, name: str, file: str | os.PathLike[str]):
        self.name, self.kind, self.file, self.inner = name, SourceKind.B2FRAME, Path(file), None
        self._schunk = schunk
        ts = int(schunk.typesize)
        dtype = np.dtype(f"u{ts}") if ts in (1, 2, 4, 8) else np.dtype(f"V{ts}")
        nchunks = int(schunk.nchunks)
        if nchunks == 0 or int(schunk.nbytes) == 0:
            raise InputError(invalid(f"{name}: size", 0, "a non-empty super-chunk"))
        items = int(schunk.nbytes) // ts
        per_chunk = int(schunk.chunksize) // ts
        self._blocksizes: dict[int, int] = {}
        bs = self.chunk_blocksize(0)
        self.shape = (items,)
        self.dtype = dtype
        self.chunks = (per_chunk,)
        self.blocks = (max(bs // ts, 1),)
        self.typesize = ts
        self.blocksize = bs
        self.nchunks = nchunks
        self.chunk_nbytes = int(schunk.chunksize)

    def chunk(self, i: int) -> np.ndarray:
        _check_index(i, self.nchunks)
        return np.frombuffer(self._schunk.decompress_chunk(int(i)), dtype=np.uint8)

    def chunk_blocksize(self, i: int) -> int:
        bs = self._blocksizes.get(i)
        if bs is None:
            import blosc2

            _check_index(i, int(self._schunk.nchunks))
            _, _, bs = blosc2.get_cbuffer_sizes(self._schunk.get_chunk(int(i)))
            bs = self._blocksizes[i] = int(bs)
        return bs

    def load_array(self) -> np.ndarray:
        return np.frombuffer(self._schunk[:], dtype=self.dtype)


# -- opening ---------------------------------------------------------------------------------


def open_source(
    path: str | os.PathLike[str],
    *,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
) -> ChunkSource:
    """Open an input as a :class:`ChunkSource`.

    Parameters
    ----------
    path
        ``x.b2nd``/``x.b2frame``, ``x.npy``, ``file.h5:/group/dataset``, a Zarr array directory
        or ``store.zarr:/path/to/array``.
    chunks, blocks
        Chunk and block shapes (one positive entry per dimension). ``None`` (default) keeps a
        Blosc2 input's own and lets blosc2 choose for the others (or the blocks for given
        chunks).

    Raises
    ------
    InputError
        Missing file, unknown format, an HDF5/Zarr path that is not a dataset/array, an empty
        or 0-d array, a non-numeric dtype (see :data:`NUMERIC_KINDS`; structured dtypes
        whose fields are all numeric are accepted), unusable chunk or block shapes.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(invalid("path", path, _FORMS))
    from .outputs import parse_path

    name = parse_path("input", path)
    file, inner = _split_inner(name)
    suffix = file.suffix.lower()
    if inner is None and file.is_file() and suffix in (".b2nd", ".b2frame"):
        return _open_blosc2(name, file, chunks, blocks)
    if inner is None and file.is_file() and suffix == ".npy":
        return _open_npy(name, file, chunks, blocks)
    if file.is_file() and (suffix in HDF5_SUFFIXES or _is_hdf5(file)):
        return _open_hdf5(name, file, inner, chunks, blocks)
    if file.is_dir() and any((file / m).exists() for m in ZARR_MARKERS):
        return _open_zarr(name, file, inner, chunks, blocks)
    what = "a directory" if file.is_dir() else f"a file of unknown format ({suffix or 'no suffix'})"
    if inner is not None:
        what += f" followed by {':' + inner!r}"
    raise InputError(f"input {name!r} is {what}: expected {_FORMS}")


def _split_inner(name: str) -> tuple[Path, str | None]:
    """``file.h5:/group/ds`` -> (``file.h5``, ``/group/ds``); a plain existing path -> (path,
    None). Missing files raise :class:`InputError`."""
    if os.path.exists(name):
        return Path(name), None
    cut = name.rfind(":")
    while cut > 0:
        head = name[:cut]
        if os.path.exists(head):
            inner = name[cut + 1 :]
            return Path(head), inner if inner.startswith("/") else "/" + inner
        cut = name.rfind(":", 0, cut)
    raise InputError(invalid("input", name, f"an existing file or directory: {_FORMS}"))


def _is_hdf5(file: Path) -> bool:
    try:
        with open(file, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _open_blosc2(name: str, file: Path, chunks, blocks) -> ChunkSource:
    import blosc2

    kind = SourceKind.B2ND if file.suffix.lower() == ".b2nd" else SourceKind.B2FRAME
    check_blosc2_file(name, file)
    try:
        obj = blosc2.open(str(file), mode="r")
    except (RuntimeError, ValueError, OSError, KeyError) as exc:
        raise InputError(f"input {name!r} cannot be opened by blosc2: {exc}") from None
    if isinstance(obj, blosc2.NDArray):
        if chunks is None and blocks is None:
            return NDArraySource(obj, name=name, kind=kind, file=file)
        check_array(name, tuple(obj.shape), np.dtype(obj.dtype))
        chunks = tuple(obj.chunks) if chunks is None else chunks
        return ArraySource(obj, name=name, kind=kind, file=file, chunks=chunks, blocks=blocks)
    if isinstance(obj, blosc2.SChunk):
        frame = FrameSource(obj, name=name, file=file)
        if chunks is None and blocks is None:
            return frame
        return ArraySource(
            frame.load_array(), name=name, kind=kind, file=file, chunks=chunks, blocks=blocks
        )
    raise InputError(f"input {name!r}: blosc2 opened a {type(obj).__name__}: expected an array")


#: Seconds the child reading a Blosc2 file may take before the file counts as unreadable: a
#: minute, plus a second per 10 MB (blosc2 decompresses at GB/s; this leaves room for a slow
#: disk). Should a corrupted frame make blosc2 loop instead of crash, the gather stops too.
_CHECK_SECONDS = 60.0
_CHECK_BYTES_PER_SECOND = 10e6
#: Fingerprints (path, size, mtime, inode) of Blosc2 files that opened and read in a child.
_SOUND_FILES: set[tuple[str, int, int, int]] = set()


def check_blosc2_file(name: str, file: Path) -> None:
    """Open and read the Blosc2 file ``file`` in a child process before this process does.

    blosc2 kills the process on some corrupted frames (measured on a 1.5 KB ``.b2nd``, one byte
    overwritten: 31 header and trailer offsets abort on open with ``free(): invalid pointer``,
    SIGFPE or SIGSEGV, and two more offsets inside a chunk crash on reading it), so the child
    opens the file and decompresses every chunk. A file that passes is remembered by its
    fingerprint for the life of the process; a crash, or a read that does not end within a
    minute plus a second per 10 MB, becomes an :class:`InputError` naming it.
    """
    from .errors import ChildCrashError
    from .isolate import run_isolated

    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key in _SOUND_FILES:
        return
    try:
        run_isolated(
            read_blosc2_file,
            (str(file),),
            what="blosc2",
            doing=f"reading {name!r}",
            timeout=_CHECK_SECONDS + stat.st_size / _CHECK_BYTES_PER_SECOND,
        )
    except ChildCrashError as exc:
        raise InputError(
            f"input {name!r} is not a readable Blosc2 file (corrupted?): {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever blosc2 raises on a file it cannot read
        raise InputError(f"input {name!r} cannot be opened by blosc2: {exc}") from None
    _SOUND_FILES.add(key)


def read_blosc2_file(path: str) -> None:
    """Open ``path`` with blosc2 and decompress each of its chunks, in this process (the child
    side of :func:`check_blosc2_file`; call that instead)."""
    import blosc2

    obj = blosc2.open(path, mode="r")
    schunk = obj.schunk if isinstance(obj, blosc2.NDArray) else obj
    for i in range(int(schunk.nchunks)):
        schunk.decompress_chunk(i)


def _open_npy(name: str, file: Path, chunks, blocks) -> ChunkSource:
    with open(file, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":
        what = "an empty file" if not magic else "not a .npy file (no NumPy header)"
        raise InputError(invalid("input", name, f"a .npy file written by numpy.save: it is {what}"))
    try:
        data = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "object" in str(exc):
            raise InputError(
                invalid(f"{name}: dtype", "object", f"a numeric dtype ({NUMERIC_KINDS!r} kinds)")
            ) from None
        raise InputError(f"input {name!r} cannot be read as .npy: {exc}") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"input {name!r} cannot be read as .npy: {exc}") from None
    if not isinstance(data, np.ndarray):
        raise InputError(f"input {name!r}: expected one array in the .npy file")
    return ArraySource(
        data, name=name, kind=SourceKind.NPY, file=file, chunks=chunks, blocks=blocks
    )


def _needs(name: str, what: str, *modules: str) -> list[Any]:
    """Import the optional ``modules`` an input of kind ``what`` needs, or say how to get them."""
    import importlib

    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as exc:
        raise InputError(
            f"input {name!r} is {what}, which needs {' and '.join(modules)} "
            f"(pip install 'btune_wrap[io]'): {exc}"
        ) from None


def _open_hdf5(name: str, file: Path, inner: str | None, chunks, blocks) -> ChunkSource:
    # hdf5plugin registers the compression filters when imported.
    h5py, _ = _needs(name, "HDF5", "h5py", "hdf5plugin")
    try:
        h5 = h5py.File(file, "r")
    except OSError as exc:
        raise InputError(f"input {name!r} cannot be opened as HDF5: {exc}") from None
    try:
        datasets: list[str] = []
        h5.visititems(lambda key, obj: datasets.append("/" + key) if _is_dataset(obj) else None)
        listed = ", ".join(datasets[:10]) + (" ..." if len(datasets) > 10 else "")
        expected = f"'{file}:/path/to/dataset' naming one of: {listed or 'no dataset in the file'}"
        if inner is None:
            raise InputError(invalid("input", name, expected))
        node = h5.get(inner)
        if node is None:
            raise InputError(f"input {name!r}: {inner!r} does not exist; expected {expected}")
        if not _is_dataset(node):
            raise InputError(
                f"input {name!r}: {inner!r} is a {type(node).__name__.lower()}, not a dataset; "
                f"expected {expected}"
            )
        return ArraySource(
            node,
            name=name,
            kind=SourceKind.HDF5,
            file=file,
            inner=inner,
            chunks=chunks,
            blocks=blocks,
            closer=h5,
        )
    except BaseException:
        h5.close()
        raise


def _is_dataset(obj: object) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset)


def _open_zarr(name: str, file: Path, inner: str | None, chunks, blocks) -> ChunkSource:
    (zarr,) = _needs(name, "a Zarr store", "zarr")
    try:
        node = zarr.open(store=str(file), mode="r")
        if inner is not None:
            node = node[inner.strip("/")] if inner.strip("/") else node
    except KeyError:
        raise InputError(f"input {name!r}: {inner!r} does not exist in the Zarr store") from None
    except Exception as exc:  # zarr raises many types for unreadable stores
        raise InputError(f"input {name!r} cannot be opened as Zarr: {exc}") from None
    if not isinstance(node, zarr.Array):
        arrays = [key for key, _ in node.arrays()] if isinstance(node, zarr.Group) else []
        hint = f"one of the group's arrays: {', '.join(arrays[:10])}" if arrays else "an array"
        raise InputError(
            f"input {name!r} is a Zarr group, not an array: expected '{file}:/path' naming {hint}"
        )
    return ArraySource(
        node, name=name, kind=SourceKind.ZARR, file=file, inner=inner, chunks=chunks, blocks=blocks
    )


# -- checks ----------------------------------------------------------------------------------


def is_numeric(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is numeric (:data:`NUMERIC_KINDS`, or structured with only numeric
    fields, including sub-arrays of them)."""
    dtype = np.dtype(dtype)
    if dtype.names:
        return all(is_numeric(dtype.fields[n][0]) for n in dtype.names)
    if dtype.subdtype is not None:
        return is_numeric(dtype.subdtype[0])
    return dtype.kind in NUMERIC_KINDS


#: Most dimensions of a Blosc2 array (B2ND_MAX_DIM): blosc2 raises on more, the plugin crashes
#: (SIGSEGV with 17, SIGFPE with 32).
MAX_DIMS = 16


def check_array(
    name: str, shape: tuple[int, ...], dtype: np.dtype, *, numeric: bool = True
) -> np.dtype:
    """Refuse what cannot be measured or stored safely: no dimension, no element, a dtype with
    objects (their pointers, written as bytes, crash the reader), and with ``numeric`` (the
    default: measuring needs it) any dtype that is not numeric."""
    if len(shape) == 0:
        raise InputError(invalid(f"{name}: shape", shape, "an array of at least one dimension"))
    if len(shape) > MAX_DIMS:
        expected = f"an array of at most {MAX_DIMS} dimensions (blosc2's limit)"
        raise InputError(invalid(f"{name}: shape", shape, expected))
    if math.prod(shape) == 0:
        raise InputError(invalid(f"{name}: shape", shape, "a non-empty array"))
    if dtype.hasobject or (numeric and not is_numeric(dtype)):
        expected = (
            "a numeric dtype (bool, integer, float, complex, datetime, timedelta, or a "
            "structured dtype of those)"
            if numeric
            else "a dtype without Python objects"
        )
        raise InputError(invalid(f"{name}: dtype", str(dtype), expected))
    return dtype


def region_reader(data: object) -> Any:
    """``data`` as the Python engine reads it, one chunk's region at a time: a NumPy array, or
    an array object that reads a region without the rest (an h5py dataset, a Zarr array, a
    Blosc2 NDArray: anything with ``shape``, ``dtype`` and NumPy-style slicing), as it is;
    anything else through ``numpy.asarray``."""
    if isinstance(data, np.ndarray):
        return data
    if all(hasattr(data, a) for a in ("shape", "dtype", "__getitem__")) and not isinstance(
        data, (list, tuple, str, bytes)
    ):
        return data
    return np.asarray(data)


def _check_index(i: int, nchunks: int) -> None:
    parse_int("chunk index", i, 0, nchunks - 1, error=InputError)


def _check_shape(field: str, value: object, ndim: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        shape = None
    ok = (
        shape is not None
        and len(shape) == ndim
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape)
        and all(int(v) > 0 for v in shape)
    )
    if not ok:
        raise InputError(invalid(field, value, f"{ndim} positive integers (one per dimension)"))
    return tuple(int(v) for v in shape)  # type: ignore[union-attr]


def resolve_layout(
    shape: Sequence[int],
    dtype: np.dtype,
    chunks: Sequence[int] | None,
    blocks: Sequence[int] | None,
    *,
    nthreads: int | None = None,
    where: str = "input",
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk and block shapes for an array: the ones given, blosc2's choice for the others
    (``blosc2.compute_chunks_blocks``, as ``blosc2.asarray`` does, with ``nthreads``
    compression threads), checked before blosc2 sees them: a chunk of more than
    :data:`btune_wrap.parse.MAX_CHUNK_NBYTES` bytes, blocks larger than chunks or a shape of the
    wrong length would end in a raw error or a crash inside blosc2."""
    import blosc2

    from .parse import MAX_CHUNK_NBYTES, parse_threads

    ndim = len(shape)
    chunks = _check_shape(f"{where}: chunks", chunks, ndim)
    blocks = _check_shape(f"{where}: blocks", blocks, ndim)
    if chunks is not None and blocks is not None:
        bad = [d for d in range(ndim) if blocks[d] > chunks[d]]
        if bad:
            raise InputError(
                invalid(f"{where}: blocks", blocks, f"no larger than chunks={chunks} in each dim")
            )
    itemsize = np.dtype(dtype).itemsize
    for label, sizes in (("chunks", chunks), ("blocks", blocks)):
        if sizes is not None and math.prod(sizes) * itemsize > MAX_CHUNK_NBYTES:
            raise InputError(
                invalid(
                    f"{where}: {label}",
                    sizes,
                    f"at most {MAX_CHUNK_NBYTES} bytes per chunk ({itemsize}-byte items)",
                )
            )
    kwargs = (
        {} if nthreads is None else {"cparams": {"nthreads": parse_threads("nthreads", nthreads)}}
    )
    try:
        got = blosc2.compute_chunks_blocks(
            tuple(shape), chunks, blocks, dtype=np.dtype(dtype), **kwargs
        )
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise InputError(
            f"{where}: chunks={chunks}, blocks={blocks} are invalid for shape {tuple(shape)}: {exc}"
        ) from None
    out = tuple(int(c) for c in got[0]), tuple(int(b) for b in got[1])
    for label, given, used in (("chunks", chunks, out[0]), ("blocks", blocks, out[1])):
        if given is not None and given != used:
            raise InputError(
                invalid(
                    f"{where}: {label}",
                    given,
                    f"a shape blosc2 keeps as it is (it would use {used} with "
                    f"chunks={out[0]} for shape {tuple(shape)})",
                )
            )
    return out


# -- chunk buffers for the Python engine ---------------------------------------------------


class ChunkReader:
    """The chunks of ``data`` as the bytes blosc2 hands to the codecs for ``arr``.

    ``take(first, count)`` gives chunks ``first`` to ``first + count - 1`` as the rows of a
    C-contiguous uint8 array of shape ``(count, chunk nbytes)``: blocks follow one another
    inside each chunk, edge chunks and blocks are padded, as
    :func:`btune_wrap.sources.chunk_buffer` lays them out. Whole chunks of 1-D C-contiguous
    data whose blocks divide the chunk are that layout already: they come as views of ``data``
    (no copy). Other chunks are copied into one buffer of ``max_count`` rows, reused by the next
    call: use the rows before taking more. ``data`` may be an array read by regions
    (:func:`region_reader`): only the chunks taken are read, 1-D data one slab per call.
    """

    def __init__(self, data: Any, arr: blosc2.NDArray, max_count: int = 1) -> None:
        self.data = data
        self.chunks, self.blocks = tuple(arr.chunks), tuple(arr.blocks)
        self.nchunks = arr.schunk.nchunks
        self.nbytes = arr.schunk.chunksize
        self.max_count = max_count
        chunks, blocks = self.chunks, self.blocks
        # A whole 1-D chunk whose blocks divide it is a plain slice of contiguous data: a view
        # of a NumPy array; of another array (read by regions), one read per batch of chunks.
        step = chunks[0] if len(chunks) == 1 and chunks[0] % blocks[0] == 0 else 0
        self.slab = step if step and len(data.shape) == 1 else 0
        viewable = isinstance(data, np.ndarray) and data.flags.c_contiguous
        self.full = data.shape[0] // step if self.slab and viewable else 0
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
        if self._scratch is None:
            self._scratch = np.empty((self.max_count, nbytes), dtype=np.uint8)
        out = self._scratch[:count]
        if self.slab:
            part = np.asarray(self.data[first * self.slab : (first + count) * self.slab])
            flat = out.reshape(-1)
            got = np.ascontiguousarray(part).reshape(-1).view(np.uint8)
            flat[: got.size] = got
            flat[got.size :] = 0  # the last chunk's padding
            return out
        for k in range(count):
            buf = chunk_buffer(self.data, first + k, self.chunks, self.blocks)
            out[k] = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
        return out
