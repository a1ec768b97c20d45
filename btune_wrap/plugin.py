"""Running the Btune plugin safely from Python.

Three things stand between a user and a working plugin, and this module handles each:

* **Versions.** The plugin (blosc2-btune 1.2.x) only works with blosc2 4.0 and 4.1; from 4.2 on
  the process dies with SIGFPE, which nothing in Python can catch. :func:`plugin_support`
  decides, and :func:`write_tuned` refuses to call the plugin outside that range.
* **Discovery.** C-Blosc2 finds the plugin by running ``python -c "import blosc2_btune; ..."``
  with whatever ``python`` is first on PATH. :func:`ensure_discovery` puts our own interpreter
  there, so an unactivated virtual environment works.
* **Trace.** The plugin prints on the C-level stdout; :func:`capture_c_output` collects it and
  :mod:`btune_wrap.trace` turns it into data.
* **Crashes.** The plugin is closed C code that can kill its process (SIGSEGV on a
  memory-mapped one-chunk array in DECOMP mode, FACTS.md section 11). :func:`write_tuned` and
  :func:`tuned_traces` run it in a child process (:mod:`btune_wrap.isolate`) on an owned copy
  of the data, so a crash costs the call a :class:`~btune_wrap.errors.PluginCrashError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import blosc2

from . import quiet
from .atomic import atomic_path
from .config import BtuneConfig
from .errors import ConfigError, InputError, PluginCrashError, PluginUnavailableError, invalid
from .outputs import check_output, read_paths
from .parse import parse_bool, parse_optional_shape, parse_threads
from .runtime import implicit_tuner_off, installed_version
from .trace import Trace, parse_trace

#: blosc2 versions the plugin is known to run with: [low, high).
SUPPORTED_BLOSC2 = ((4, 0, 0), (4, 2, 0))
#: blosc2-btune versions known to work: [low, high).
SUPPORTED_BTUNE = ((1, 2, 1), (1, 3, 0))
#: Environment variables the plugin reads, which would override a programmatic config.
#: glibc's line-buffered mode for setvbuf.
_IOLBF = 1
PLUGIN_ENV_VARS = ("BTUNE_TRADEOFF", "BTUNE_PERF_MODE", "BTUNE_MODELS_DIR", "BTUNE_USE_INFERENCE")


@dataclass(frozen=True)
class PluginSupport:
    """Whether the Btune plugin can run here, and why not."""

    ok: bool
    reason: str
    blosc2_version: str | None
    btune_version: str | None

    def __bool__(self) -> bool:
        return self.ok


def version_tuple(version: str) -> tuple[int, ...]:
    """``"4.0.0"`` -> ``(4, 0, 0)``; trailing tags (``.dev1``, ``rc2``) are ignored."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def check_versions(blosc2_version: str | None, btune_version: str | None) -> PluginSupport:
    """Decide whether the plugin may be called with these installed versions (pure function)."""

    def fmt(r: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
        return f">={'.'.join(map(str, r[0]))},<{'.'.join(map(str, r[1]))}"

    if btune_version is None:
        reason = "the blosc2-btune package is not installed (pip install blosc2-btune==1.2.1)"
        return PluginSupport(False, reason, blosc2_version, None)
    if blosc2_version is None:
        return PluginSupport(False, "blosc2 is not installed", None, btune_version)
    b2 = version_tuple(blosc2_version)
    bt = version_tuple(btune_version)
    if not (SUPPORTED_BLOSC2[0] <= b2 < SUPPORTED_BLOSC2[1]):
        more = " (the process would die with SIGFPE)" if b2 >= SUPPORTED_BLOSC2[1] else ""
        reason = (
            f"blosc2 {blosc2_version} is outside the range the Btune plugin runs with "
            f"({fmt(SUPPORTED_BLOSC2)}){more}; install blosc2==4.0.0, or use the Python engine"
        )
        return PluginSupport(False, reason, blosc2_version, btune_version)
    if not (SUPPORTED_BTUNE[0] <= bt < SUPPORTED_BTUNE[1]):
        reason = (
            f"blosc2-btune {btune_version} is outside the known-good range "
            f"({fmt(SUPPORTED_BTUNE)}); install blosc2-btune==1.2.1"
        )
        return PluginSupport(False, reason, blosc2_version, btune_version)
    reason = f"blosc2 {blosc2_version} with blosc2-btune {btune_version} is a known-good pair"
    return PluginSupport(True, reason, blosc2_version, btune_version)


def plugin_support() -> PluginSupport:
    """:func:`check_versions` for the installed packages."""
    return check_versions(installed_version("blosc2"), installed_version("blosc2-btune"))


def require_plugin(*, models: bool = False) -> None:
    """Raise :class:`PluginUnavailableError` unless the plugin can run here.

    With ``models=True`` also refuse when TensorFlow was loaded before the plugin's library:
    the plugin then dies with SIGSEGV as it loads a model.
    """
    support = plugin_support()
    if not support:
        raise PluginUnavailableError(f"cannot use the Btune plugin: {support.reason}")
    if models and TENSORFLOW_FIRST:
        raise PluginUnavailableError(
            "cannot use the Btune plugin with models in this process: TensorFlow was imported "
            "before blosc2_btune, and the plugin would crash (SIGSEGV) loading the model; "
            "import btune_wrap (or blosc2_btune) before tensorflow, or use engine='python'"
        )


#: Whether TensorFlow's libraries were loaded before the plugin's. In that order the plugin
#: crashes (SIGSEGV) the first time it loads a model; in the other order both work. Importing
#: btune_wrap therefore loads the plugin's library (``import blosc2_btune``) right away.
TENSORFLOW_FIRST = "tensorflow" in sys.modules and "blosc2_btune" not in sys.modules
if not TENSORFLOW_FIRST and plugin_support():
    import blosc2_btune  # noqa: F401


@functools.cache
def ensure_discovery() -> str:
    """Make C-Blosc2's plugin lookup find ``blosc2_btune`` from this interpreter.

    C-Blosc2 runs ``python`` from PATH to locate the plugin library. We put a directory whose
    ``python`` is this very interpreter first on PATH (the interpreter's own directory when it
    has one named ``python``, else a private directory with a symlink). Returns that directory.
    """
    exe = Path(sys.executable)
    own_dir = exe.parent
    if (own_dir / "python").exists() and (own_dir / "python").resolve() == exe.resolve():
        directory = own_dir
    else:
        directory = Path(tempfile.mkdtemp(prefix="btune_wrap_python_"))
        (directory / "python").symlink_to(exe)
    path = os.environ.get("PATH", "")
    entries = path.split(os.pathsep) if path else []
    if not entries or entries[0] != str(directory):
        os.environ["PATH"] = os.pathsep.join([str(directory), *entries])
    return str(directory)


@contextlib.contextmanager
def capture_c_output() -> Iterator[list[str]]:
    """Capture everything written to file descriptors 1 and 2 (C ``printf`` included).

    The plugin prints its table on stdout and its ``TRACE:`` lines on stderr; both go to one
    file, with C stdout line-buffered meanwhile so that the lines keep their order. Yields a
    list that holds the captured text once the block exits.
    """
    out: list[str] = []
    libc = ctypes.CDLL(None)
    c_stdout = ctypes.c_void_p.in_dll(libc, "stdout")
    sys.stdout.flush()
    sys.stderr.flush()
    libc.fflush(None)
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        libc.setvbuf(c_stdout, None, _IOLBF, 0)
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            libc.fflush(None)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def plugin_environment(config: BtuneConfig) -> Iterator[None]:
    """Hand ``config`` to the plugin and keep the environment from overriding it.

    The plugin lets ``BTUNE_*`` variables win over programmatic settings, so they are removed
    for the duration of the block (``BTUNE_TRACE`` follows ``config.trace``) and restored after.
    """
    require_plugin(models=config.models_dir is not None)
    ensure_discovery()
    import blosc2_btune

    names = (*PLUGIN_ENV_VARS, "BTUNE_TRACE")
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in PLUGIN_ENV_VARS:
            os.environ.pop(name, None)
        if config.trace:
            os.environ["BTUNE_TRACE"] = "1"
        else:
            os.environ.pop("BTUNE_TRACE", None)
        blosc2_btune.set_params_defaults(**config.plugin_kwargs())
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        blosc2_btune.set_params_defaults()


def write_tuned(
    array: np.ndarray,
    config: BtuneConfig,
    *,
    urlpath: str | os.PathLike[str] | None = None,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    nthreads: int | None = None,
    echo: bool = False,
    force: bool = False,
) -> tuple[blosc2.NDArray, Trace]:
    """Write ``array`` as a Blosc2 NDArray with Btune choosing each chunk's parameters.

    The plugin runs in a child process (:func:`btune_wrap.isolate.run_isolated`) on an owned,
    C-contiguous copy of the data: whatever it does there costs this call a
    :class:`PluginCrashError`, never the caller's process (a child that runs for longer than
    two minutes plus a second per MB is stopped, as stuck).

    Parameters
    ----------
    array
        The data (anything ``numpy.asarray`` accepts).
    config
        The plugin configuration; the ``BTUNE_*`` environment is ignored (use
        :meth:`BtuneConfig.from_env` to honour it).
    urlpath
        Where to write the ``.b2nd`` file (written aside, then renamed into place); ``None``
        (default) keeps the array in memory. An existing file is replaced only with ``force``;
        a directory never (:mod:`btune_wrap.outputs`).
    chunks, blocks
        Chunk and block shapes; ``None`` lets blosc2 choose.
    nthreads
        Compression threads; ``None`` keeps blosc2's default.
    echo
        Also print the plugin's output to this process's stdout as it would have appeared.
    force
        Replace an existing ``urlpath`` file. Default False.

    Returns
    -------
    (NDArray, Trace)
        The written array and the plugin's trace (empty unless ``config.trace``).

    Raises
    ------
    PluginCrashError
        The plugin killed its child process (the message names the signal); nothing was
        written.
    """
    import blosc2

    check_plugin_config(config)
    echo = parse_bool("echo", echo)
    data = _plugin_input(array)
    layout = _layout(data, chunks, blocks, nthreads)
    if urlpath is not None:  # never the file a Blosc2 array was opened from
        check_output(urlpath, read_paths(array), force=parse_bool("force", force), name="urlpath")
    with contextlib.ExitStack() as stack:
        target = None if urlpath is None else str(stack.enter_context(atomic_path(urlpath)))
        [(text, written)] = _run_plugin(data, [config], layout, target, urlpath=urlpath)
    result = blosc2.open(os.fspath(urlpath)) if urlpath is not None else _assemble(*written)
    if echo and text:
        sys.stdout.write(quiet.drop_noise(text))
        sys.stdout.flush()
    trace = parse_trace(text)
    trace.engine = "native"
    return result, trace


def tuned_traces(
    array: np.ndarray,
    configs: Sequence[BtuneConfig],
    *,
    chunks: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    nthreads: int | None = None,
) -> list[Trace]:
    """The plugin's trace for ``array`` under each of ``configs``, nothing kept or written.

    Like :func:`write_tuned` (same parameters) once per config, but all in one child process:
    the array crosses once and the child starts once. Starting it (interpreter, plugin library,
    the plugin's first-call set-up) took 1.0-1.4 s on a loaded 2-core machine, a genetic run of
    8-240 chunks 10-90 ms (``benchmarks/bench_isolate.py``).
    """
    for config in configs:
        check_plugin_config(config)
    data = _plugin_input(array)
    layout = _layout(data, chunks, blocks, nthreads)
    runs = _run_plugin(data, list(configs), layout, None, urlpath=False)
    traces = [parse_trace(text) for text, _ in runs]
    for trace in traces:
        trace.engine = "native"
    return traces


def check_plugin_config(config: object) -> None:
    """Refuse what the plugin cannot run with: anything but a :class:`BtuneConfig`, and a
    ``(cratio, speed, quality)`` tradeoff, with which blosc2_btune 1.2.1 fails to create the
    array ("Error while creating the NDArray", integer and float data alike; the Python engine
    takes it)."""
    if not isinstance(config, BtuneConfig):
        raise ConfigError(invalid("config", config, "a BtuneConfig"))
    if isinstance(config.tradeoff, tuple):
        expected = "a float in [0, 1] with the plugin (the native engine); a triple only with "
        raise ConfigError(invalid("tradeoff", config.tradeoff, expected + "engine='python'"))


def _plugin_input(array: object) -> np.ndarray:
    """``array`` as NumPy, refused when it holds nothing the plugin can compress safely
    (no element, Python objects: their pointers written as bytes crash the reader); the plugin
    must be able to run here (versions)."""
    from .sources import check_array

    if array is None or isinstance(array, (str, bytes, os.PathLike)):
        expected = "an array (anything numpy.asarray accepts; compress() takes file paths)"
        raise InputError(invalid("array", array, expected))
    data = np.asarray(array)
    check_array("array", data.shape, data.dtype, numeric=False)
    require_plugin()
    return data


def _layout(data: np.ndarray, chunks, blocks, nthreads) -> dict[str, object]:
    """The layout keywords of ``blosc2.asarray`` that the caller gave, checked first: the
    plugin divides by zero (SIGFPE) on a thread count of 0 and aborts on shapes blosc2 refuses."""
    from .sources import resolve_layout

    nthreads = None if nthreads is None else parse_threads("nthreads", nthreads)
    chunks = parse_optional_shape("chunks", chunks, data.ndim)
    blocks = parse_optional_shape("blocks", blocks, data.ndim)
    used = resolve_layout(data.shape, data.dtype, chunks, blocks, nthreads=nthreads, where="array")
    _check_block_room(data.dtype.itemsize, *used)
    layout: dict[str, object] = {}
    if chunks is not None:
        layout["chunks"] = chunks
    if blocks is not None:
        layout["blocks"] = blocks
    if nthreads is not None:
        layout["nthreads"] = nthreads
    return layout


def _check_block_room(itemsize: int, chunks: Sequence[int], blocks: Sequence[int]) -> None:
    """Refuse blocks too small for the plugin's instrumentation
    (:func:`btune_wrap.probe.check_block_room`): with 8-byte blocks its child hung, idle, until
    stopped after two minutes."""
    from .probe import check_block_room
    from .sources import ext_chunks

    nbytes = math.prod(ext_chunks(chunks, blocks)) * itemsize
    check_block_room(nbytes, itemsize, math.prod(blocks) * itemsize)


#: Seconds a plugin child may run: two minutes, plus a second per MB of each configuration's
#: write. Genetic Btune writes tens of MB/s here at its slowest (zstd 9 + bitshuffle); a child
#: under 1 MB/s is stuck, and is stopped rather than awaited forever.
_PLUGIN_SECONDS = 120.0
_PLUGIN_BYTES_PER_SECOND = 1e6


def _run_plugin(
    data: np.ndarray,
    configs: list[BtuneConfig],
    layout: dict[str, object],
    target: str | None,
    *,
    urlpath: str | os.PathLike[str] | None | bool,
) -> list[tuple[str, tuple | None]]:
    """:func:`plugin_writes` in a child process; a crash there, or a child still running after
    :data:`_PLUGIN_SECONDS` plus a second per MB written, becomes a PluginCrashError.

    ``target`` is the temporary file written for ``urlpath``; ``urlpath=None`` keeps the
    result in memory, ``False`` keeps nothing.
    """
    from .isolate import run_isolated

    where = f" to {os.fspath(urlpath)!r}" if urlpath not in (None, False) else ""
    return run_isolated(
        plugin_writes,
        (data, configs, layout, target, urlpath is None),
        what="the Btune plugin",
        doing=f"writing a {data.shape} {data.dtype} array{where}; nothing was written",
        error=PluginCrashError,
        env=_loader_env(),
        timeout=_PLUGIN_SECONDS + len(configs) * data.nbytes / _PLUGIN_BYTES_PER_SECOND,
    )


def _loader_env() -> dict[str, str]:
    """``LD_LIBRARY_PATH`` with the plugin library's directory first, for the child.

    C-Blosc2 asks the system loader for ``libblosc2_btune.so`` before it runs ``python`` to
    find it (:func:`ensure_discovery`): found that way, each child saves starting a second
    interpreter (0.54 -> 0.43 s for a first plugin call on a quiet machine).
    """
    import importlib.util

    spec = importlib.util.find_spec("blosc2_btune")
    if spec is None or spec.origin is None:
        return {}
    directory = str(Path(spec.origin).parent)
    old = os.environ.get("LD_LIBRARY_PATH")
    return {"LD_LIBRARY_PATH": os.pathsep.join([directory, old]) if old else directory}


def plugin_writes(
    data: np.ndarray,
    configs: list[BtuneConfig],
    layout: dict[str, object],
    target: str | None,
    keep: bool,
) -> list[tuple[str, tuple | None]]:
    """Write ``data`` with Btune as the tuner once per config, in this process (the child side
    of :func:`write_tuned` and :func:`tuned_traces`; call those instead).

    Returns, per config, the captured C output and, with ``keep``, the in-memory result as
    ``(shape, dtype, chunks, blocks, [compressed chunk, ...])`` (see :func:`_assemble`). With
    ``target`` the (single) write goes to that file.
    """
    import blosc2

    # The plugin gets an owned, C-contiguous copy: handed a memory-mapped one-chunk array in
    # DECOMP mode it died with SIGSEGV (FACTS.md section 11), an in-memory copy worked.
    owned = np.array(data, order="C", copy=True)
    del data
    layout = dict(layout)
    cparams: dict[str, object] = {"tuner": blosc2.Tuner.BTUNE}
    if "nthreads" in layout:
        cparams["nthreads"] = layout.pop("nthreads")
    kwargs: dict[str, object] = {"cparams": cparams, **layout}
    if target is not None:
        kwargs.update(urlpath=target, mode="w")
    out: list[tuple[str, tuple | None]] = []
    for config in configs:
        with plugin_environment(config), capture_c_output() as captured:
            result = blosc2.asarray(owned, **kwargs)
        layout_and_chunks = None
        if keep:
            sc = result.schunk
            chunks = [sc.get_chunk(i) for i in range(sc.nchunks)]
            layout_and_chunks = (result.shape, result.dtype, result.chunks, result.blocks, chunks)
        del result
        out.append((captured[0] if captured else "", layout_and_chunks))
    return out


def _assemble(shape, dtype, chunks, blocks, compressed: list[bytes]) -> blosc2.NDArray:
    """An in-memory NDArray holding these compressed chunks as they are.

    Not ``blosc2.ndarray_from_cframe(..., copy=True)``: on blosc2 4.0.0 that aborts the process
    (``munmap_chunk(): invalid pointer``) on the frames of some plugin-tuned arrays (measured:
    int64 chunks of 5000 mixing random, repeated, cumulative and zero series).
    """
    import blosc2

    with implicit_tuner_off():
        out = blosc2.empty(shape, dtype, chunks=chunks, blocks=blocks)
    for i, chunk in enumerate(compressed):
        out.schunk.update_chunk(i, chunk)
    return out
