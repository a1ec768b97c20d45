"""TensorFlow's and LiteRT's C++ log lines stay out of the output unless the user asks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from btune_wrap import plugin_support, quiet

#: Fragments of the lines TensorFlow 2.21 and LiteRT print on this machine (see quiet.py).
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers", "XNNPACK delegate")

needs_plugin = pytest.mark.skipif(not plugin_support(), reason=plugin_support().reason)


def _btune(*args: str, cwd: Path) -> str:
    """Run ``btune ARGS`` as a user would (no TF_CPP_MIN_LOG_LEVEL); stdout + stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTUNE_")}
    env.pop(quiet.LEVEL_VAR, None)
    result = subprocess.run(
        [sys.executable, "-m", "btune_wrap.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def _noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


@pytest.mark.slow
def test_btune_train_prints_no_tensorflow_log_line_unless_verbose(training_meas, tmp_path):
    args = ("train", str(training_meas), "--mode", "comp", "--epochs", "1", "--quiet")
    assert _noise(_btune(*args, "--output", "quiet", cwd=tmp_path)) == []
    # The lines are real here: --verbose lets them through.
    assert _noise(_btune(*args, "--output", "loud", "--verbose", cwd=tmp_path))


@pytest.mark.parametrize("engine", ["python", pytest.param("native", marks=needs_plugin)], ids=str)
def test_btune_compress_prints_no_litert_log_line_unless_verbose(engine, models_dir, tmp_path):
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(40_000, dtype=np.int64) % 1000)
    args = ("compress", "a.npy", "--models", str(models_dir), "--engine", engine)
    quiet_out = _btune(*args[:2], "quiet.b2nd", *args[2:], cwd=tmp_path)
    assert "Wrote quiet.b2nd" in quiet_out  # the trace and our lines are still there
    assert _noise(quiet_out) == []
    assert _noise(_btune(*args[:2], "loud.b2nd", *args[2:], "--verbose", cwd=tmp_path))


def test_only_the_known_lines_are_dropped(monkeypatch):
    monkeypatch.delenv(quiet.LEVEL_VAR, raising=False)
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795758612.114988   14428 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1795758612.119015   14428 cudart_stub.cc:31] Could not find cuda drivers.\n"
        "E0000 00:00:1795758612.119015   14428 cuda_dnn.cc:8579] Unable to register cuDNN.\n"
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        "INFO: model models/model_comp.tflite\n"
        "our own line\n"
    )
    assert quiet.drop_noise(text) == (
        "E0000 00:00:1795758612.119015   14428 cuda_dnn.cc:8579] Unable to register cuDNN.\n"
        "INFO: model models/model_comp.tflite\n"
        "our own line\n"
    )


def test_other_output_on_the_c_level_stderr_is_passed_on(monkeypatch, capfd):
    monkeypatch.delenv(quiet.LEVEL_VAR, raising=False)
    with quiet.native_logs():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"a real error\n")
        with quiet.native_logs():  # nested: one redirection
            os.write(2, b"nested line\n")
    assert capfd.readouterr().err == "a real error\nnested line\n"


def test_a_log_level_of_the_users_or_verbose_keeps_every_line(monkeypatch, capfd):
    line = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    monkeypatch.setenv(quiet.LEVEL_VAR, "0")
    with quiet.native_logs():
        os.write(2, line)
    monkeypatch.delenv(quiet.LEVEL_VAR)
    quiet.set_verbose(True)
    try:
        with quiet.native_logs():
            os.write(2, line)
    finally:
        quiet.set_verbose(False)
    assert capfd.readouterr().err == line.decode() * 2
