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


# -- session data: a small real gather and models trained on it ---------------------------

# The Btune plugin bundles its own TFLite: if TensorFlow is loaded into a process before the
# plugin library, the plugin's first model load there dies with SIGSEGV. Tests train models
# and run the plugin in one process: importing btune_wrap first loads the plugin library
# (see btune_wrap.plugin.TENSORFLOW_FIRST) before any test module imports TensorFlow.
import btune_wrap  # noqa: E402, F401

#: Environment variable naming a ready models directory (used by the newest-blosc2 CI job,
#: which has no TensorFlow; see tests/test_engines_newest.py).
MODELS_ENV = "BTUNE_WRAP_TEST_MODELS"
#: Chunks (of 5000 int64) of the session's training data.
TRAINING_CHUNKS = 240


def training_data(nchunks: int = TRAINING_CHUNKS, seed: int = 0):
    """Mixed int64 data, one kind per chunk of 5000 (:func:`btune_wrap.data.mixed_int`), so
    the models have choices to make."""
    from btune_wrap.data import mixed_int

    return mixed_int(nchunks, seed=seed)


def build_training_meas(
    workdir: Path, *, nchunks: int = TRAINING_CHUNKS, seed: int = 0, categories=None
) -> Path:
    """Write :func:`training_data` as ``workdir/mixed.b2nd`` (chunks of 5000) and gather it
    (real measurements of every category; default: the tutorial's 32, which keeps the session's
    gather and training short); returns the measurement directory."""
    import blosc2

    from btune_wrap import measure
    from btune_wrap.categories import TUTORIAL_CATEGORIES

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "mixed.b2nd"
    blosc2.asarray(training_data(nchunks, seed), urlpath=str(source), mode="w", chunks=(5000,))
    meas = measure.gather(
        source,
        workdir / "mixed.b2nd.meas",
        categories=categories or TUTORIAL_CATEGORIES,
        progress=False,
        force=True,
    )
    return Path(meas.path)


def build_models(meas_dir: Path, directory: Path) -> list:
    """Train the comp and decomp models on ``meas_dir`` and export them to ``directory``
    (replacing its model files; needs TensorFlow). Returns the two ``TrainedModel``.

    Plugin-format models only (the extended ones are tested in tests/test_features.py)."""
    from btune_wrap import train

    config = train.TrainConfig(extended=False)
    return train.train_and_export([meas_dir], directory, "both", config, force=True)


@pytest.fixture(scope="session")
def training_meas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real gather of :func:`training_data` (240 chunks x the tutorial's 32 categories)."""
    return build_training_meas(tmp_path_factory.mktemp("training"))


@pytest.fixture(scope="session")
def trained_models(training_meas: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's models as trained: ``{"dir": Path, "comp": TrainedModel, "decomp":
    TrainedModel}`` (skipped without TensorFlow)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("no TensorFlow to train the test models")
    directory = tmp_path_factory.mktemp("trained") / "models"
    comp, decomp = build_models(training_meas, directory)
    return {"dir": directory, "comp": comp, "decomp": decomp}


@pytest.fixture(scope="session")
def models_dir(request: pytest.FixtureRequest) -> Path:
    """A models directory with comp and decomp models trained once per session on
    ``training_meas`` (see ``trained_models``).

    ``BTUNE_WRAP_TEST_MODELS`` names a ready directory instead (no gather, no training); else
    training needs TensorFlow, and the tests using this fixture are skipped without it.
    """
    import importlib.util

    given = os.environ.get(MODELS_ENV)
    if given:
        path = Path(given)
        assert path.is_dir(), f"{MODELS_ENV}={given!r} is not a directory"
        return path
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip(f"no TensorFlow to train the test models, and {MODELS_ENV} is not set")
    return request.getfixturevalue("trained_models")["dir"]


def mixed_series(size: int):
    """Five int64 series of ``size`` elements each, one after the other: random, runs,
    a slow random walk, zeros and full-range random values (chunks of very different kinds,
    special values included)."""
    import numpy as np

    from btune_wrap.data import rand_int

    rng = np.random.default_rng(13)
    parts = [
        rand_int(size, seed=14),
        np.repeat(rng.integers(0, 1000, size // 10), 10),
        np.cumsum(rng.integers(0, 3, size)),
        np.zeros(size, dtype=np.int64),
        rng.integers(0, 2**62, size),
    ]
    return np.concatenate(parts).astype(np.int64)
