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
    The same algorithm in Python, on any blosc2 (:mod:`btune_wrap.engine`): for each chunk, the
    plugin's features (:func:`btune_wrap.probe.chunk_features`), normalized with the model's
    JSON, fed with the tradeoff to the ``.tflite`` network through the LiteRT runtime; the
    argmax is a category whose parameters compress that chunk.

``use_inference`` (from the config) means, for the Python engine:

* ``-1``: the model chooses every chunk's parameters.
* ``N > 0``: the model chooses the first N chunks; from then on the most predicted category
  (ties go to the lowest index, as in the plugin) is the starting point of a *tweak*: on the
  following chunks, one neighbour at a time (compression level +-1, the other split mode) is
  compressed next to the current best on the same chunk, and whichever scores better under
  the objective (:mod:`btune_wrap.objective`) is written and kept (:mod:`btune_wrap.tweak`).
  The tweak ends when no untried neighbour of the best is left, or after ``max_tweaks``
  trials; later chunks use the best parameters found.
* ``0``: the model is not run. The tweak starts from blosc2's default parameters (ZSTD,
  shuffle, its default level and split mode). No models directory is needed.

Without a models directory (``models_dir=None``) the Python engine uses the general model
shipped with the package (:data:`btune_wrap.config.GENERAL_MODEL_DIR`).

(The plugin itself, with ``use_inference=0`` and a models directory, starts from the first
category of the model's list and tunes threads and levels; without a models directory it
runs its genetic search.)
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import GENERAL_MODEL_DIR, BtuneConfig
from .engine import PythonEngine, check_decide_every
from .errors import ConfigError, InputError, invalid
from .h5sink import (
    H5Dataset,
    check_target,
    engine_for_hdf5,
    parse_target,
    reads_target_file,
    source_attrs,
    write_h5,
)
from .model import BtuneModel, ExtendedModel, load_engine_model, load_model
from .outputs import check_output, read_paths
from .parse import parse_bool, parse_enum, parse_int, parse_optional_shape, parse_threads
from .plugin import plugin_support, require_plugin, write_tuned
from .sources import check_array
from .trace import Trace

if TYPE_CHECKING:
    import blosc2

    from .neighbors import NeighborsModel


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
        return parse_enum("engine", value, cls)


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
    force: bool = False,
    verify: int = 1,
    decide_every: int = 1,
) -> tuple[blosc2.NDArray | H5Dataset, Trace]:
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
        Where to write the ``.b2nd`` file (written aside, then renamed into place; an existing
        file is replaced only with ``force``, an input or a directory never); ``None``
        (default) keeps the array in memory. ``file.h5:/group/dataset`` writes an HDF5 dataset
        instead, each chunk with its own parameters (Python engine only; see
        :mod:`btune_wrap.h5sink`), and returns an :class:`~btune_wrap.h5sink.H5Dataset`.
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
    force
        Replace an existing ``urlpath`` file (for an HDF5 output: the dataset of that name, the
        file's other objects kept). Default False.
    verify
        Python engine: categories tried per inferred chunk, the model's best-scored first; the
        one of best objective is written (default 1: the model's choice, no trial; see
        :class:`btune_wrap.engine.PythonEngine`).
    decide_every
        Python engine: the model decides for the first chunk of each group of this many
        consecutive chunks, the others take its choice (default 1: every chunk). Faster on
        small chunks, worse where consecutive chunks differ: see
        :class:`btune_wrap.engine.PythonEngine`.

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
        engines before anything is written).

    Notes
    -----
    With ``config.models_dir`` None the Python engine uses the general model shipped with the
    package (:data:`btune_wrap.GENERAL_MODEL_DIR`), while the plugin runs its genetic search,
    as it does without ``BTUNE_MODELS_DIR``; ``models_dir=GENERAL_MODEL_DIR`` gives the plugin
    the general model too.
    """
    cfg = BtuneConfig.from_env() if config is None else config
    if not isinstance(cfg, BtuneConfig):
        raise ConfigError(invalid("config", cfg, "a BtuneConfig or None"))
    force = parse_bool("force", force)
    target = parse_target(urlpath)
    which = Engine.parse(engine) if target is None else engine_for_hdf5(engine)
    if target is not None:
        check_target(target, force=force, source=data)
    elif urlpath is not None:
        check_output(urlpath, read_paths(data), force=force, name="urlpath")
    max_tweaks = parse_int("max_tweaks", max_tweaks, 0)
    repeats = parse_int("repeats", repeats, 1)
    verify = parse_int("verify", verify, 1)
    if which is Engine.NATIVE and verify != 1:
        raise ConfigError(invalid("verify", verify, "1 with the native engine (the plugin)"))
    decide_every = check_decide_every(decide_every, verify)
    if which is Engine.NATIVE and decide_every != 1:
        expected = "1 with the native engine (the plugin decides every chunk)"
        raise ConfigError(invalid("decide_every", decide_every, expected))
    if which is Engine.NATIVE:
        require_plugin()
    model = _model_for(cfg, which)
    # The plugin takes the whole array, and HDF5 cannot open a file for writing that this
    # process holds open for reading: those inputs are loaded; the Python engine reads the
    # others one batch of chunks at a time.
    whole = which is Engine.NATIVE or (
        target is not None and reads_target_file(target, data) is not None
    )
    with _open_input(data, whole) as (array, src_chunks, src_blocks):
        check_array("data", tuple(array.shape), np.dtype(array.dtype), numeric=False)
        ndim = len(array.shape)
        nthreads = None if nthreads is None else parse_threads("nthreads", nthreads)
        chunks = parse_optional_shape("chunks", chunks, ndim) or src_chunks
        blocks = parse_optional_shape("blocks", blocks, ndim) or src_blocks
        layout = {"chunks": chunks, "blocks": blocks, "nthreads": nthreads}
        if which is Engine.NATIVE:
            return write_tuned(array, cfg, urlpath=urlpath, echo=echo, force=force, **layout)
        engine_ = PythonEngine(
            cfg, model, max_tweaks=max_tweaks, repeats=repeats, verify=verify,
            decide_every=decide_every,
        )  # fmt: skip
        if target is not None:
            attrs = source_attrs(data)
            result, trace = write_h5(engine_, array, target, force=force, attrs=attrs, **layout)
        else:
            result, trace = engine_.write(array, urlpath=urlpath, **layout)
    if echo and trace.raw:
        sys.stdout.write(trace.raw)
        sys.stdout.flush()
    return result, trace


def _model_for(
    config: BtuneConfig, engine: Engine
) -> BtuneModel | ExtendedModel | NeighborsModel | None:
    """Validate the model the run will use, before anything is written: the configured one;
    without one, the general model (:data:`~btune_wrap.config.GENERAL_MODEL_DIR`) for the
    Python engine, nothing for the plugin (its genetic search) or with ``use_inference=0``. The
    Python engine uses the extended model where the directory holds one."""
    if config.models_dir is None:
        if engine is Engine.PYTHON and config.use_inference != 0:
            return load_engine_model(GENERAL_MODEL_DIR, config.perf_mode)
        return None
    if engine is Engine.PYTHON:
        return load_engine_model(config.models_dir, config.perf_mode)
    return load_model(config.models_dir, config.perf_mode)


@contextlib.contextmanager
def _open_input(
    data: object, whole: bool
) -> Iterator[tuple[Any, tuple[int, ...] | None, tuple[int, ...] | None]]:
    """The data to compress, with the chunk/block shapes of a Blosc2 input: a file path opened
    (:func:`btune_wrap.sources.open_source`) and read by regions
    (:meth:`~btune_wrap.sources.ChunkSource.region_array`, the file kept open until the block
    ends) or, with ``whole``, loaded; a Blosc2 NDArray read by regions or loaded; anything
    else as a NumPy array."""
    import blosc2

    if isinstance(data, (str, os.PathLike)):
        from .sources import open_source

        source = open_source(data)
        try:
            array = np.asarray(source.load_array()) if whole else source.region_array()
            is_b2 = str(data).endswith((".b2nd", ".b2frame"))
            chunks = tuple(source.chunks) if is_b2 else None
            blocks = tuple(source.blocks) if is_b2 else None
            if whole:
                source.close()
            yield array, chunks, blocks
        finally:
            source.close()
        return
    if isinstance(data, blosc2.NDArray):
        yield data[()] if whole else data, tuple(data.chunks), tuple(data.blocks)
        return
    if data is None:
        raise InputError(invalid("data", None, "an array, a Blosc2 array or a file path"))
    yield np.asarray(data), None, None
