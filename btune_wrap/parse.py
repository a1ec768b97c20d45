"""The validation vocabulary: one parser per kind of value, each naming what it refuses.

Every public function of btune_wrap that takes a number, a shape or a tradeoff passes it through
one of these, so one rule holds everywhere and every refusal reads the same:
``name=value is invalid: expected ...`` (:func:`btune_wrap.errors.invalid`), raised as
:class:`~btune_wrap.errors.ConfigError`. Library code names the API argument (``nthreads``);
:mod:`btune_wrap.cli` adds the flag names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TypeVar

import numpy as np

from .errors import BtuneWrapError, ConfigError, invalid

#: Most codec threads accepted: blosc2 keeps a per-thread context, and 100000 threads end in an
#: ``OverflowError`` or an exhausted machine long before any gain.
MAX_THREADS = 1024
#: Largest chunk blosc2 accepts, in bytes (``BLOSC2_MAX_BUFFERSIZE``: INT32_MAX minus the
#: largest header, 32 bytes).
MAX_CHUNK_NBYTES = 2**31 - 1 - 32


_Enum = TypeVar("_Enum", bound=Enum)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in [{_number(low)}, {_number(high)}]"
    if low is not None:
        return f">= {_number(low)}"
    if high is not None:
        return f"<= {_number(high)}"
    return ""


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), booleans excluded."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def parse_int(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    *,
    error: type[BtuneWrapError] = ConfigError,
) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound may be ``None``).

    Booleans, floats and strings are refused: ``error`` (default :class:`ConfigError`; an
    :class:`InputError` for values read from a file) naming ``name``.
    """
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = _range_text(low, high)
        raise error(invalid(name, value, f"an integer {bounds}".rstrip()))
    return int(value)  # type: ignore[arg-type]


def parse_float(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    error: type[BtuneWrapError] = ConfigError,
) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (NaN and infinities refused; ``error``
    as in :func:`parse_int`)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    ok = (
        number
        and math.isfinite(float(value))  # type: ignore[arg-type]
        and (low is None or float(value) >= low)  # type: ignore[arg-type]
        and (high is None or float(value) <= high)  # type: ignore[arg-type]
    )
    if not ok:
        bounds = _range_text(low, high)
        raise error(invalid(name, value, f"a finite number {bounds}".rstrip()))
    return float(value)  # type: ignore[arg-type]


def parse_bool(name: str, value: object) -> bool:
    """``value`` if it is a ``bool`` (``0``/``1`` and strings are refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(invalid(name, value, "True or False"))
    return bool(value)


def parse_threads(name: str, value: object) -> int:
    """A thread count: an integer from 1 to :data:`MAX_THREADS` (0 makes blosc2 divide by 0)."""
    return parse_int(name, value, 1, MAX_THREADS)


def parse_tradeoff(name: str, value: object) -> float:
    """One tradeoff: a finite number from 0 (speed) to 1 (ratio)."""
    return parse_float(name, value, 0.0, 1.0)


def parse_tradeoffs(name: str, values: object) -> tuple[float, ...]:
    """A non-empty sequence of tradeoffs in [0, 1], without repeats, kept in its order."""
    items = None if isinstance(values, (str, bytes)) else values
    if not isinstance(items, (Sequence, np.ndarray)) or len(items) == 0:
        raise ConfigError(invalid(name, values, "a non-empty sequence of numbers in [0, 1]"))
    try:
        out = tuple(parse_tradeoff(name, t) for t in items)
    except ConfigError:
        raise ConfigError(
            invalid(name, values, "a non-empty sequence of numbers in [0, 1]")
        ) from None
    if len(set(out)) != len(out):
        raise ConfigError(invalid(name, values, "each tradeoff once"))
    return out


def parse_shape(
    name: str, value: object, ndim: int | None = None, *, high: int | None = None
) -> tuple[int, ...]:
    """A shape: a non-empty sequence of positive integers (each at most ``high``), of length
    ``ndim`` when given."""
    what = "positive integers" if ndim is None else f"{ndim} positive integer" + "s" * (ndim != 1)
    if high is not None:
        what += f" (each <= {high})"
    items = None if isinstance(value, (str, bytes)) else value
    if not isinstance(items, (Sequence, np.ndarray)) or len(items) == 0:
        raise ConfigError(invalid(name, value, what))
    if ndim is not None and len(items) != ndim:
        raise ConfigError(invalid(name, value, f"{what}: one per dimension of the data"))
    if not all(is_int(v) and v >= 1 and (high is None or v <= high) for v in items):
        raise ConfigError(invalid(name, value, what))
    return tuple(int(v) for v in items)


def parse_optional_shape(
    name: str, value: object, ndim: int | None = None, *, high: int | None = None
) -> tuple[int, ...] | None:
    """``None`` as is, anything else as :func:`parse_shape`."""
    return None if value is None else parse_shape(name, value, ndim, high=high)


def parse_enum(name: str, value: object, enum: type[_Enum]) -> _Enum:
    """A member of ``enum``, or its name or string value, case-insensitively."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        for member in enum:
            names = [member.name.lower()]
            if isinstance(member.value, str):
                names.append(member.value.lower())
            if key in names:
                return member
    choices = ", ".join(m.name for m in enum)
    raise ConfigError(invalid(name, value, f"one of {choices}"))


def parse_choice(
    name: str,
    value: object,
    choices: Sequence[str],
    *,
    error: type[BtuneWrapError] = ConfigError,
) -> str:
    """A string among ``choices``, matched case-insensitively after stripping spaces; else
    ``error`` (default :class:`ConfigError`) naming ``name``."""
    if isinstance(value, str):
        key = value.strip().lower()
        for choice in choices:
            if key == choice.lower():
                return choice
    raise error(invalid(name, value, "one of " + ", ".join(repr(c) for c in choices)))


def parse_dtype(name: str, value: object, *, error: type[BtuneWrapError] = ConfigError) -> np.dtype:
    """A NumPy dtype from a dtype or its ``str()`` as ``meta.json`` records it (a structured
    dtype's is the list of its fields, ``"[('a', '<i4'), ('b', '<f8')]"``, which
    ``numpy.dtype`` does not read back); ``error`` naming ``name`` otherwise."""
    import ast

    try:
        if isinstance(value, str) and value.startswith("["):
            return np.dtype(ast.literal_eval(value))
        return np.dtype(value)
    except (TypeError, ValueError, SyntaxError):
        raise error(invalid(name, value, "a NumPy dtype")) from None


def parse_callback(name: str, value: object) -> Callable | None:
    """``value`` if it is callable or None (a progress callback), else :class:`ConfigError`."""
    if value is not None and not callable(value):
        raise ConfigError(invalid(name, value, "a function (called with one str) or None"))
    return value
