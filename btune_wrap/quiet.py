"""Keeping TensorFlow's and LiteRT's C++ log lines out of the user's terminal.

Importing TensorFlow 2.21 prints, on the C-level stderr and whatever ``TF_CPP_MIN_LOG_LEVEL``
says (they come before absl's logging is initialized), a notice that oneDNN is on and one that
no CUDA driver was found, twice; LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate
for CPU.`` when its first interpreter allocates its tensors. None of it is ours or actionable, so
:func:`tensorflow_logs` sets ``TF_CPP_MIN_LOG_LEVEL=3`` before TensorFlow loads and
:func:`native_logs` drops those lines (only those: anything else written meanwhile is passed on)
from file descriptor 2 around the calls that print them.

They are left alone when the user asks for them: :func:`set_verbose` (the ``--verbose`` flag
of the ``btune`` command), or a ``TF_CPP_MIN_LOG_LEVEL`` of their own in the environment.
``TF_ENABLE_ONEDNN_OPTS`` is not touched: it switches TensorFlow's numerics, and its notice is
dropped anyway (turning oneDNN off gave byte-identical models on a 30-chunk gather trained for
20 epochs, which is no guarantee for other data).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

#: The variable TensorFlow reads for its C++ log level, and the level we set (errors only).
LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"
_QUIET_LEVEL = "3"

#: Lines dropped: absl's early-logging warning, absl's INFO and WARNING lines
#: (``I0000 00:00:00.000 123 port.cc:153] ...``; errors and fatal ones are kept) and LiteRT's
#: XNNPACK notice.
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+-]+:\d+\] .*"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
)

_verbose = False
#: Whether TF_CPP_MIN_LOG_LEVEL holds our value rather than the user's.
_set_by_us = False
_lock = threading.RLock()
_depth = 0


def set_verbose(verbose: bool = True) -> None:
    """Let TensorFlow's and LiteRT's log lines through (``True``) or drop them (the default)."""
    global _verbose
    _verbose = bool(verbose)


def wanted() -> bool:
    """Whether the lines are dropped: not verbose, and no ``TF_CPP_MIN_LOG_LEVEL`` of the user's."""
    level = os.environ.get(LEVEL_VAR)
    return not _verbose and (level is None or (level == _QUIET_LEVEL and _set_by_us))


def drop_noise(text: str) -> str:
    """``text`` without the log lines of :data:`NOISE` (unless not :func:`wanted`)."""
    if not wanted():
        return text
    return "".join(
        line for line in text.splitlines(keepends=True) if not NOISE.fullmatch(line.rstrip("\n"))
    )


@contextlib.contextmanager
def native_logs() -> Iterator[None]:
    """Drop the :data:`NOISE` lines written to file descriptor 2 in the block.

    The descriptor goes to a temporary file for the block; on exit everything else it received
    is written back to stderr. One block at a time in the process (nested blocks run inside
    the outer one), since the descriptor is shared by every thread.
    """
    global _depth
    if not wanted():
        yield
        return
    with _lock:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        _flush_stderr()
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2 (a daemon): nothing to keep clean
            saved = None
        if saved is None:
            yield
            return
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            os.dup2(tmp.fileno(), 2)
            _depth = 1
            try:
                yield
            finally:
                _depth = 0
                _flush_stderr()
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                rest = drop_noise(tmp.read().decode("utf-8", errors="replace"))
                if rest and sys.stderr is not None:
                    sys.stderr.write(rest)
                    sys.stderr.flush()


def _flush_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


def tensorflow_logs() -> contextlib.AbstractContextManager[None]:
    """Set TensorFlow's log level (unless the user did) and drop its import-time lines.

    Use around the first ``import tensorflow``/``import keras``.
    """
    global _set_by_us
    if not _verbose and LEVEL_VAR not in os.environ:
        os.environ[LEVEL_VAR] = _QUIET_LEVEL
        _set_by_us = True
    return native_logs()
