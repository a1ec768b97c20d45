"""Typed, validated configuration of the Btune plugin.

``BtuneConfig`` holds every knob the plugin has. It is validated at construction, can be read
from the ``BTUNE_*`` environment variables exactly as the plugin reads them
(:meth:`BtuneConfig.from_env`), and is handed to the plugin programmatically by
:mod:`btune_wrap.plugin`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .errors import ConfigError, invalid
from .parse import parse_bool, parse_enum, parse_int, parse_tradeoff

#: The general model shipped with the package: ``model_comp.{tflite,json}`` and
#: ``model_decomp.{tflite,json}`` trained on the whole real-data corpus
#: (``training/train_general.py``). The Python engine uses it when ``models_dir`` is None;
#: point the plugin at it with ``BTUNE_MODELS_DIR`` (or ``models_dir=GENERAL_MODEL_DIR``).
GENERAL_MODEL_DIR: Path = Path(__file__).resolve().parent / "models" / "general"

#: Bandwidth unit of the plugin: KiB/s. Its default is 20 GiB/s.
DEFAULT_BANDWIDTH_KBPS = 20 * 1024 * 1024


class PerfMode(Enum):
    """What the plugin optimises for, besides the compression ratio.

    COMP: compression speed. DECOMP: decompression speed. BALANCED: both.
    AUTO: the plugin's default (it behaves as COMP).
    """

    COMP = 0
    DECOMP = 1
    BALANCED = 2
    AUTO = 3

    @classmethod
    def parse(cls, value: PerfMode | str, field_name: str = "perf_mode") -> PerfMode:
        """Accept a member or its name, case-insensitively (``"comp"``, ``"DECOMP"``)."""
        return parse_enum(field_name, value, cls)


class RepeatMode(Enum):
    """What the genetic tuner does once it has gone through all its hard readapts.

    STOP: keep the winner. SOFT: repeat soft readapts only. ALL: repeat everything.
    """

    STOP = 0
    SOFT = 1
    ALL = 2


Tradeoff = float | tuple[float, float, float]


#: Largest value of the plugin's integer knobs (a C int).
_C_INT = 2**31 - 1


@dataclass(frozen=True)
class BtuneConfig:
    """Every knob of the Btune plugin, validated at construction.

    Parameters
    ----------
    tradeoff
        Balance between speed and compression ratio: a float in [0, 1] (0 = fastest,
        1 = best ratio), or a ``(cratio, speed, quality)`` triple of floats in [0, 1] summing
        to 1 (quality is for lossy codecs; it must be < 1). Default 0.5.
    perf_mode
        :class:`PerfMode` or its name. Default ``AUTO`` (the plugin treats it as COMP).
    models_dir
        Directory with ``model_comp.{tflite,json}`` / ``model_decomp.{tflite,json}``. ``None``
        (default): the Python engine uses the general model (:data:`GENERAL_MODEL_DIR`), the
        plugin runs its genetic search (as it does without ``BTUNE_MODELS_DIR``).
    use_inference
        -1 (default): run the model on every chunk; 0: never; N > 0: on the first N chunks, then
        tweak clevel and split mode from the most predicted category.
    nwaits, nsofts, nhards
        Genetic behaviour: chunks to wait before a readapt (default 0), soft readapts before a
        hard one (default 5), hard readapts before stopping (default 10).
    repeat_mode
        :class:`RepeatMode` or its name. Default ``STOP``.
    bandwidth
        Storage bandwidth in KiB/s used in the plugin's score. Default 20 GiB/s (20971520).
    cparams_hint
        Start the search from the cparams the array was created with. Default False.
    trace
        Ask the plugin for its trace (``BTUNE_TRACE``). Default False.
    """

    tradeoff: Tradeoff = 0.5
    perf_mode: PerfMode = PerfMode.AUTO
    models_dir: Path | None = None
    use_inference: int = -1
    nwaits: int = 0
    nsofts: int = 5
    nhards: int = 10
    repeat_mode: RepeatMode = RepeatMode.STOP
    bandwidth: int = DEFAULT_BANDWIDTH_KBPS
    cparams_hint: bool = False
    trace: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "tradeoff", _check_tradeoff(self.tradeoff))
        set_(self, "perf_mode", PerfMode.parse(self.perf_mode))
        set_(self, "repeat_mode", parse_enum("repeat_mode", self.repeat_mode, RepeatMode))
        if self.models_dir is not None:
            if not isinstance(self.models_dir, (str, os.PathLike)) or str(self.models_dir) == "":
                raise ConfigError(invalid("models_dir", self.models_dir, "a directory path"))
            set_(self, "models_dir", Path(self.models_dir))
            if len(os.fsencode(self.models_dir)) >= 255:
                raise ConfigError(
                    invalid("models_dir", str(self.models_dir), "a path under 255 bytes")
                )
        # The plugin reads these as C ints: 2**32 + 1 waits became 1, 2**31 hards an unreadable
        # banner. The Python engine takes the same bounds.
        set_(self, "use_inference", parse_int("use_inference", self.use_inference, -1, _C_INT))
        for name in ("nwaits", "nsofts", "nhards"):
            set_(self, name, parse_int(name, getattr(self, name), 0, _C_INT))
        set_(self, "bandwidth", parse_int("bandwidth", self.bandwidth, 1, 2**32 - 1))
        for name in ("cparams_hint", "trace"):
            set_(self, name, parse_bool(name, getattr(self, name)))

    # -- construction from the environment -------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> BtuneConfig:
        """Read the ``BTUNE_*`` variables the way the plugin reads them.

        ``BTUNE_TRADEOFF`` (a float of at most 3 characters such as ``0.5`` or ``.25``, or a
        ``(cratio, speed, quality)`` triple), ``BTUNE_PERF_MODE`` (COMP, DECOMP, BALANCED),
        ``BTUNE_MODELS_DIR``, ``BTUNE_USE_INFERENCE`` and ``BTUNE_TRACE`` (set = on). Variables
        that are not set keep the defaults; keyword ``overrides`` win over both.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if (raw := env.get("BTUNE_TRADEOFF")) is not None:
            values["tradeoff"] = parse_env_tradeoff(raw)
        if (raw := env.get("BTUNE_PERF_MODE")) is not None:
            if raw not in ("COMP", "DECOMP", "BALANCED"):
                # The plugin compares case-sensitively and silently falls back to COMP.
                raise ConfigError(invalid("BTUNE_PERF_MODE", raw, "COMP, DECOMP or BALANCED"))
            values["perf_mode"] = PerfMode[raw]
        if (raw := env.get("BTUNE_MODELS_DIR")) is not None:
            values["models_dir"] = raw
        if (raw := env.get("BTUNE_USE_INFERENCE")) is not None:
            try:
                values["use_inference"] = int(raw)
            except ValueError:
                raise ConfigError(
                    invalid("BTUNE_USE_INFERENCE", raw, "an integer: -1, 0 or N > 0")
                ) from None
        if env.get("BTUNE_TRACE") is not None:
            values["trace"] = True
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> BtuneConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # -- views used by the plugin driver ---------------------------------------------------

    def plugin_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``blosc2_btune.set_params_defaults``."""
        import blosc2_btune

        tradeoff = self.tradeoff
        if isinstance(tradeoff, tuple):
            tradeoff = list(tradeoff)
        return {
            "bandwidth": self.bandwidth,
            "perf_mode": blosc2_btune.PerformanceMode[self.perf_mode.name],
            "tradeoff": tradeoff,
            "cparams_hint": self.cparams_hint,
            "use_inference": self.use_inference,
            "models_dir": str(self.models_dir) if self.models_dir is not None else "",
            "nwaits": self.nwaits,
            "nsofts": self.nsofts,
            "nhards": self.nhards,
            "repeat_mode": blosc2_btune.RepeatMode[self.repeat_mode.name],
        }


def parse_env_tradeoff(raw: str) -> Tradeoff:
    """Parse ``BTUNE_TRADEOFF`` as the plugin does.

    The plugin reads a single value only when the string has at most 3 characters; anything
    longer is read as a ``(a, b, c)`` triple, so ``0.25`` would be misread: it is refused here.
    """
    text = raw.strip()
    if len(text) <= 3:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(
                invalid("BTUNE_TRADEOFF", raw, "a number in [0, 1] such as 0.5")
            ) from None
    inner = text[1:-1] if text[:1] in "([" and text[-1:] in ")]" else None
    parts = inner.split(",") if inner is not None else []
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(
            invalid(
                "BTUNE_TRADEOFF",
                raw,
                "a number of at most 3 characters (e.g. 0.5, .25: the plugin misreads longer "
                "ones) or a triple '(cratio, speed, quality)' summing to 1",
            )
        )
    return values  # type: ignore[return-value]


def _check_tradeoff(value: object) -> Tradeoff:
    if isinstance(value, bool):
        raise ConfigError(invalid("tradeoff", value, "a float in [0, 1] or a triple"))
    if isinstance(value, (int, float)):
        return parse_tradeoff("tradeoff", value)
    if isinstance(value, (tuple, list)) and len(value) == 3:
        try:
            triple = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            triple = ()
        if len(triple) == 3:
            if any(not (0.0 <= v <= 1.0) for v in triple):
                raise ConfigError(
                    invalid("tradeoff", value, "a (cratio, speed, quality) triple in [0, 1]")
                )
            if not math.isclose(sum(triple), 1.0, abs_tol=1e-6):
                raise ConfigError(
                    invalid("tradeoff", value, "a (cratio, speed, quality) triple summing to 1")
                )
            if triple[2] == 1.0:
                raise ConfigError(invalid("tradeoff", value, "a quality weight below 1"))
            return triple  # type: ignore[return-value]
    raise ConfigError(
        invalid("tradeoff", value, "a float in [0, 1] or a (cratio, speed, quality) triple")
    )
