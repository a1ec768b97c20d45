"""tests/cpu_burner.py (``make test-loaded``) keeps the cores busy and cleans up after itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BURNER = Path(__file__).resolve().parent / "cpu_burner.py"

#: Run by the burner: prints the pids of its sibling burners (busy, same parent), then fails.
SIBLINGS = """
import os, sys
mine = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    sibling = int(stat.rsplit(")", 1)[1].split()[1]) == os.getppid() and pid != str(os.getpid())
    if sibling and b"while True" in cmd:
        mine.append(pid)
print(" ".join(mine))
sys.exit(3)
"""


def test_the_burners_run_beside_the_command_and_are_gone_after_it_fails():
    result = subprocess.run(
        [sys.executable, str(BURNER), "--procs", "2", "--", sys.executable, "-c", SIBLINGS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    pids = result.stdout.splitlines()[-1].split()
    assert len(pids) == 2
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]


def test_no_command_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, str(BURNER)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "no command given" in result.stderr
