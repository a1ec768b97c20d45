"""Run a command while every core is kept busy: ``make test-loaded``.

    python tests/cpu_burner.py [--procs N] -- COMMAND [ARG...]

starts N busy-looping processes (default: one per core), runs COMMAND, then stops them, also
when COMMAND fails or this script is interrupted; if this script itself is killed, the kernel
stops them (PR_SET_PDEATHSIG). Exits with COMMAND's exit code. A test that passes idle but not
here depends on timing: see the README's Layout section.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys

#: The busy loop of one burner process.
BURN = "while True:\n    pass\n"
#: prctl option: signal sent to the child when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_burners(procs: int) -> list[subprocess.Popen]:
    """Start ``procs`` busy processes that die with this one."""
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return [
        subprocess.Popen([sys.executable, "-c", BURN], preexec_fn=preexec) for _ in range(procs)
    ]


def stop_burners(burners: list[subprocess.Popen]) -> None:
    for p in burners:
        p.kill()
    for p in burners:
        p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--procs", type=int, default=os.cpu_count() or 1, help="busy processes (default: cores)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: expected -- COMMAND [ARG...]")
    if args.procs < 1:
        parser.error(f"--procs={args.procs} is invalid: expected an integer >= 1")
    # SIGTERM (e.g. a CI timeout) becomes an exception, so the finally block runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    burners = start_burners(args.procs)
    print(f"cpu_burner: {args.procs} busy processes while running: {' '.join(command)}")
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        stop_burners(burners)


if __name__ == "__main__":
    sys.exit(main())
