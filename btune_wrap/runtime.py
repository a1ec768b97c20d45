"""Process-wide facts every stage may need, below the stages: installed versions, and keeping
C-Blosc2 from switching the Btune tuner on behind our back."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from collections.abc import Iterator


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None if it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def implicit_tuner_off() -> Iterator[None]:
    """Keep C-Blosc2 from switching Btune on for the super-chunks created in the block.

    C-Blosc2 gives every new super-chunk the Btune tuner, whatever its cparams say, when
    ``BTUNE_TRADEOFF`` is set in the environment (as the tutorial's scripts do). Code that
    compresses with parameters of its own (the Python engine, measurements) must not get the
    plugin behind its back: it would override those parameters, and on a blosc2 the plugin
    does not support it kills the process. The variable is hidden for the block, then restored.
    """
    saved = os.environ.pop("BTUNE_TRADEOFF", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["BTUNE_TRADEOFF"] = saved
