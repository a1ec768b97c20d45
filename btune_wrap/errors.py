"""Exceptions raised by btune_wrap.

Every error is a ``BtuneWrapError`` (a ``ValueError``) whose message names the argument or
field, the value received and what was expected, so a CLI can print it as it is.
"""

from __future__ import annotations


class BtuneWrapError(ValueError):
    """Base class of all btune_wrap errors."""


class ConfigError(BtuneWrapError):
    """A configuration field has an invalid value."""


class InputError(BtuneWrapError):
    """An input (file, dataset, directory) cannot be used."""


class PluginUnavailableError(BtuneWrapError):
    """The Btune plugin cannot run safely with the installed packages."""


class ChildCrashError(BtuneWrapError):
    """A call run in a child process (:func:`btune_wrap.isolate.run_isolated`) killed it with a
    signal (SIGSEGV, SIGFPE, SIGABRT, ...): that call failed, the caller's process lives on."""


class PluginCrashError(ChildCrashError):
    """The Btune plugin (closed C code) crashed while writing; nothing was written."""


class ModelError(BtuneWrapError):
    """A models directory or model file is missing or inconsistent."""


class MeasureError(BtuneWrapError):
    """A measurement went wrong (e.g. a codec did not give the chunk back)."""


def invalid(field: str, value: object, expected: str) -> str:
    """Format the standard message: ``field=value is invalid: expected ...``."""
    return f"{field}={value!r} is invalid: expected {expected}"
