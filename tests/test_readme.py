"""Every fenced ```python and ```shell block of README.md runs, so a stale example fails here.

How the blocks run:

* In README order, in one temporary directory laid out like the repository: ``inference/`` and
  ``training/`` (the scripts, copied), and ``.venv`` (a symlink to the environment running the
  suite), with ``.venv/bin`` first on PATH and no ``BTUNE_*`` variable from outside.
* Each ``shell`` block in a fresh ``bash -e -o pipefail`` started at that root (as the README
  says: its ``cd``s come back out); each ``python`` block in a fresh interpreter started there,
  so every Python example is self-contained. Later blocks use the files earlier ones wrote
  (models, measurements), as a reader following the README does.
* Full sizes are replaced by small ones through :data:`SMALLER` (README text -> what runs), each
  entry applied where its text appears and required to appear somewhere, so the table cannot
  go stale silently. The README itself keeps the real commands.
* Blocks that cannot run here are listed in :data:`NOT_RUN` by their first line, with the
  reason; every other block, a new one included, runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

README = ROOT / "README.md"

#: README text -> the smaller command the test runs (a 40-chunk training file instead of
#: 4000, one timing per measurement instead of 3, 3 epochs, a 20-chunk test file).
SMALLER = {
    "rand_int.py -t": "rand_int.py -t --size 200000",
    "gather_data.py ../inference/rand_int_training.b2nd": (
        "gather_data.py ../inference/rand_int_training.b2nd --repeats 1"
    ),
    "training_chunk.py c ../inference rand_int_training.b2nd.meas": (
        "training_chunk.py c ../inference rand_int_training.b2nd.meas --epochs 3"
    ),
    "training_chunk.py d ../inference rand_int_training.b2nd.meas": (
        "training_chunk.py d ../inference rand_int_training.b2nd.meas --epochs 3"
    ),
    "--size 2000000": "--size 100000",
    "btune gather inference/rand_int_test.b2nd": (
        "btune gather inference/rand_int_test.b2nd --repeats 1"
    ),
    "--mode comp --quiet": "--mode comp --quiet --epochs 3",
}

#: First line of a block -> why the suite does not run it.
NOT_RUN = {
    ".venv/bin/dask scheduler --host 127.0.0.1 --scheduler-file sched.json &": (
        "starts a scheduler and two workers that stay up in the background; tests/test_cluster.py "
        "runs the same gather on a real LocalCluster"
    ),
    "make demo   # creates .venv with the pinned versions, runs the main job on built-in data": (
        "make demo takes minutes (tests/test_demo.py runs the demo) and make test is this suite"
    ),
    "make notebook    # installs JupyterLab into .venv, then opens notebooks/": (
        "installs JupyterLab from the network and opens it (tests/test_notebooks.py runs the "
        "notebooks headless)"
    ),
    ".venv/bin/python -m pip install -c constraints.txt jupyterlab==4.6.6 && "
    ".venv/bin/jupyter lab notebooks/": "the same as make notebook, by hand",
}

#: A hang guard per block (seconds), not a timing check.
BLOCK_TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README: its language, first line number and text."""

    lang: str
    line: int
    code: str

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0].strip() if self.code.strip() else ""


def readme_blocks(text: str) -> list[Block]:
    """The ```python and ```shell blocks of ``text``, in order (other fences are skipped)."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = re.fullmatch(r"```(\w*)\s*", lines[i])
        if match is None:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: unclosed code fence"
        if match.group(1) in ("python", "shell"):
            code = "\n".join(lines[start + 1 : i]) + "\n"
            blocks.append(Block(match.group(1), start + 1, code))
        i += 1
    return blocks


def smaller(code: str) -> str:
    """``code`` with the :data:`SMALLER` substitutions applied."""
    for full, small in SMALLER.items():
        code = code.replace(full, small)
    return code


def _layout(root: Path) -> dict[str, str]:
    """Lay out ``root`` like the repository; returns the environment the blocks run in."""
    for name in ("inference", "training"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTUNE_")}
    env["PATH"] = os.pathsep.join([str(root / ".venv" / "bin"), env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"
    return env


def _run(block: Block, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = smaller(block.code)
    if block.lang == "shell":
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        command = [str(root / ".venv" / "bin" / "python"), "-c", code]
    run = {"cwd": root, "env": env, "capture_output": True, "text": True}
    return subprocess.run(command, timeout=BLOCK_TIMEOUT_S, check=False, **run)


def test_the_readme_has_python_and_shell_examples():
    blocks = readme_blocks(README.read_text())
    assert {b.lang for b in blocks} == {"python", "shell"}
    assert len(blocks) >= 10


def test_every_block_left_out_is_in_the_readme_and_every_smaller_size_applies():
    blocks = readme_blocks(README.read_text())
    firsts = {b.first_line for b in blocks}
    assert set(NOT_RUN) <= firsts, f"stale NOT_RUN entries: {set(NOT_RUN) - firsts}"
    run = "".join(b.code for b in blocks if b.first_line not in NOT_RUN)
    unused = [full for full in SMALLER if full not in run]
    assert not unused, f"SMALLER entries that match no README block any more: {unused}"


def test_blocks_are_found_with_their_language_and_line():
    text = "intro\n```shell\necho a\n```\n```text\nnot code\n```\n\n```python\nx = 1\ny = 2\n```\n"
    assert readme_blocks(text) == [
        Block("shell", 2, "echo a\n"),
        Block("python", 9, "x = 1\ny = 2\n"),
    ]


@pytest.mark.slow
def test_every_readme_example_runs(tmp_path):
    env = _layout(tmp_path)
    ran = 0
    for block in readme_blocks(README.read_text()):
        if block.first_line in NOT_RUN:
            continue
        result = _run(block, tmp_path, env)
        assert result.returncode == 0, (
            f"README.md:{block.line}: the {block.lang} block failed (exit {result.returncode})"
            f"\n--- block as run:\n{smaller(block.code)}--- stdout:\n{result.stdout[-3000:]}"
            f"\n--- stderr:\n{result.stderr[-3000:]}"
        )
        ran += 1
    assert ran >= 10
    # What the examples say they write is there.
    for path in (
        "inference/rand_int_inference.b2nd",
        "genetic.b2nd",
        "inference/rand_int_training.model/model_comp.tflite",
        "inference/rand_int_training.model/model_decomp.json",
        "eval_out/evaluation.json",
        "inference/model.b2nd",
        "tuned.b2nd",
        "tuned_test.b2nd",
    ):
        assert (tmp_path / path).exists(), path
