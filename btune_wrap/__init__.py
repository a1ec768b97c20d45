"""btune_wrap: open tooling around C-Blosc2 and its Btune plugin.

Measure every chunk of a dataset, train per-mode models the plugin loads, compress with them
(through the plugin or a Python engine) and evaluate them. See ARCHITECTURE.md.
"""

from __future__ import annotations

from .config import BtuneConfig, PerfMode, RepeatMode
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
from .plugin import PluginSupport, plugin_support, write_tuned
from .trace import Banner, InferenceLine, Trace, TraceRow, parse_trace

__version__ = "0.1.0"

__all__ = [
    "Banner",
    "BtuneConfig",
    "BtuneWrapError",
    "ChildCrashError",
    "ConfigError",
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
    "parse_trace",
    "plugin_support",
    "write_tuned",
]
