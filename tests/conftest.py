"""Shared fixtures: real data, real plugin, temporary directories."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No BTUNE_* variable from the caller's environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("BTUNE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def bare_path_env(**extra: str) -> dict[str, str]:
    """An environment whose PATH has no ``python``: the unactivated-venv situation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTUNE_")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env
