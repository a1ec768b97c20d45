"""btune_wrap: open tooling around C-Blosc2 and its Btune plugin.

Measure every chunk of a dataset, train per-mode models the plugin loads, compress with them
(through the plugin or a Python engine) and evaluate them. See ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import GENERAL_MODEL_DIR, BtuneConfig, PerfMode, RepeatMode
from .errors import (
    BtuneWrapError,
    ChildCrashError,
    ConfigError,
    InputError,
    MeasureError,
    ModelError,
    PluginCrashError,
    PluginUnavailableError,
)

# ``evaluate`` (the function) is bound now, not on first use: the first import of the submodule
# of the same name sets the package attribute to that module, so a lazy binding would give the
# function or the module depending on import order. It costs about 20 ms and nothing heavy.
from .evaluate import evaluate
from .plugin import PluginSupport, plugin_support, write_tuned
from .trace import Banner, InferenceLine, Trace, TraceRow, parse_trace

if TYPE_CHECKING:
    from .infer import compress
    from .measure import gather
    from .model import load_model
    from .train import export, fit

__version__ = "0.1.0"

#: The stages' entry points, imported on first use so that ``import btune_wrap`` loads neither
#: numba (the probe), pandas nor TensorFlow: public name -> defining module.
_LAZY = {
    "gather": "measure",
    "fit": "train",
    "export": "train",
    "load_model": "model",
    "compress": "infer",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Banner",
    "BtuneConfig",
    "BtuneWrapError",
    "ChildCrashError",
    "ConfigError",
    "GENERAL_MODEL_DIR",
    "InferenceLine",
    "InputError",
    "MeasureError",
    "ModelError",
    "PerfMode",
    "PluginCrashError",
    "PluginSupport",
    "PluginUnavailableError",
    "RepeatMode",
    "Trace",
    "TraceRow",
    "compress",
    "evaluate",
    "export",
    "fit",
    "gather",
    "load_model",
    "parse_trace",
    "plugin_support",
    "write_tuned",
]
