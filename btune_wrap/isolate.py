"""Running one call in a fresh child process, so that a crash in C code costs the call only.

The Btune plugin is closed C code, and blosc2 aborts on some corrupted frames: a SIGSEGV or
``free(): invalid pointer`` there would kill the user's interpreter, which nothing in Python can
catch. :func:`run_isolated` runs a picklable top-level function in a new interpreter
(``sys.executable``, never a fork: the caller may hold TensorFlow's threads) and gives back its
return value, its exception, or a :class:`~btune_wrap.errors.ChildCrashError` naming the
signal that killed it.

Protocol: the arguments are pickled into a private temporary directory; the child restores the
caller's ``sys.path``, unpickles and calls the function and pickles ``("ok", value)`` or
``("error", exception, traceback text)`` next to them. Nothing is shared but these two files
and the inherited file descriptors (the child's stderr is collected and shown on failure).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import BtuneWrapError, ChildCrashError

#: The directory holding the ``btune_wrap`` package, put first on the child's path so that it
#: imports this very copy.
_ROOT = str(Path(__file__).resolve().parent.parent)
#: What the child runs (``python -c``): argv[1] is the package root, then the two files.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from btune_wrap.isolate import child_main; sys.exit(child_main(sys.argv[2], sys.argv[3]))"
)
#: Lines of the child's stderr quoted in an error message.
_TAIL_LINES = 5


def run_isolated(
    func: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    what: str = "the isolated call",
    doing: str = "",
    error: type[ChildCrashError] = ChildCrashError,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Any:
    """Call ``func(*args, **kwargs)`` in a fresh child interpreter and return its result.

    Parameters
    ----------
    func
        A top-level function of an importable module (it is pickled by name; functions of
        ``__main__`` or lambdas cannot be sent).
    args, kwargs
        Its arguments; they and the return value must pickle. Arrays arrive as owned copies.
    what, doing
        Who runs and what it does, for messages: ``"{what} crashed (SIGSEGV) while {doing}"``
        (defaults ``"the isolated call"`` and ``""``).
    error
        The :class:`ChildCrashError` subclass raised when a signal kills the child.
    env
        Variables set in the child's environment on top of this process's (default none).
    timeout
        Seconds the child may run before it is killed and ``error`` raised, for calls that
        can hang on bad input (default None: no limit).

    Raises
    ------
    ChildCrashError (or ``error``)
        The child was killed by a signal (the message names it), ended without a result or
        ran past ``timeout``.
    Exception
        The exception ``func`` raised in the child, of the same class when it pickles (the
        child's traceback is attached as a note), else a :class:`BtuneWrapError` quoting it.
    """
    with tempfile.TemporaryDirectory(prefix="btune_wrap_isolate_") as tmp:
        payload = Path(tmp) / "call.pickle"
        result = Path(tmp) / "result.pickle"
        with open(payload, "wb") as fh:
            pickle.dump(list(sys.path), fh)
            pickle.dump((func, tuple(args), dict(kwargs or {})), fh, protocol=5)
        command = [sys.executable, "-c", _BOOT, _ROOT, str(payload), str(result)]
        child_env = {**os.environ, **env} if env else None
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, env=child_env)
        try:
            returncode, stderr = _wait(proc, timeout)
        except subprocess.TimeoutExpired:
            late = f"{what} did not finish within {timeout:.0f} s"
            late += f" while {doing}" if doing else ""
            raise error(late + "; its child process was stopped") from None
        outcome = _read(result)
    if outcome is None:
        raise error(_crash_message(what, doing, returncode, stderr))
    if stderr:
        sys.stderr.write(stderr)
        sys.stderr.flush()
    if outcome[0] == "ok":
        return outcome[1]
    _, exc, text = outcome
    if isinstance(exc, BaseException):
        exc.add_note(f"(raised in the child process running {what}:)\n{text}")
        raise exc
    raise BtuneWrapError(f"{what} failed in its child process: {exc}")


def _wait(proc: subprocess.Popen, timeout: float | None) -> tuple[int, str]:
    """The child's exit code and stderr; the child dies with us (Ctrl-C, any exception) and
    when it runs past ``timeout`` seconds (``subprocess.TimeoutExpired``)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode("utf-8", errors="replace") if err else ""


def _read(result: Path) -> tuple[Any, ...] | None:
    """The child's pickled outcome, or None when it wrote none (it crashed or exited early)."""
    if not result.is_file():
        return None
    with open(result, "rb") as fh:
        try:
            return pickle.load(fh)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception class that cannot rebuild
            return ("error", f"its outcome does not unpickle here ({exc})", "")


def _crash_message(what: str, doing: str, returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        head = f"{what} crashed ({name})"
    else:
        head = f"{what} ended without a result (its child process exited with status {returncode})"
    head += f" while {doing}" if doing else ""
    tail = [line.strip() for line in stderr.splitlines() if line.strip()][-_TAIL_LINES:]
    return head + (f" [child's stderr: {' | '.join(tail)}]" if tail else "")


def child_main(payload: str, result: str) -> int:
    """The child's side of :func:`run_isolated`: run the pickled call, pickle its outcome."""
    with open(payload, "rb") as fh:
        sys.path[:] = pickle.load(fh)
        try:
            func, args, kwargs = pickle.load(fh)
            outcome: tuple[Any, ...] = ("ok", func(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            outcome = ("error", exc, traceback.format_exc())
    tmp = result + ".part"
    with open(tmp, "wb") as fh:
        try:
            pickle.dump(outcome, fh, protocol=5)
        except Exception:  # noqa: BLE001 - an unpicklable value or exception
            fh.seek(0)
            fh.truncate()
            if outcome[0] == "ok":
                detail = f"its result of type {type(outcome[1]).__name__} does not pickle"
            else:
                detail = f"{type(outcome[1]).__name__}: {outcome[1]}"
            pickle.dump(("error", detail, ""), fh, protocol=5)
    os.replace(tmp, result)
    return 0
