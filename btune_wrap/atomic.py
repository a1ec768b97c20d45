"""Write-aside-then-rename helpers, so that no output is ever left half-written.

A temporary is named ``.<target name>.<pid>.<random>.tmp`` next to its target. A run killed
before its cleanup (SIGKILL, a crash) leaves it behind; the next write of the same target removes
the temporaries of processes that no longer run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError, invalid


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, replace_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    Works for files and directories. On error the temporary path is removed and ``target``
    is left as it was. An existing directory at ``target`` is replaced only with
    ``replace_dir`` (the caller checked it is one of ours: :mod:`btune_wrap.outputs`); else it
    is refused with :class:`InputError` before anything is written.
    """
    target = Path(target)
    if target.is_dir() and not target.is_symlink() and not replace_dir:
        raise InputError(invalid("output", str(target), "a file path (a directory is there)"))
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    # Only a name: nothing exists at it before the try below, so an interrupt (SIGTERM is one)
    # at any moment leaves no file behind. Creating it with mkstemp and unlinking it left one
    # when the signal came in between (seen under load).
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            _remove(old)
            target.rename(old)
            tmp.rename(target)
            _remove(old)
        else:
            os.replace(tmp, target)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory; it replaces ``target`` when the block succeeds."""
    with atomic_path(target, replace_dir=True) as tmp:
        tmp.mkdir()
        yield tmp


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``target`` left by processes that no longer run; return them."""
    target = Path(target)
    removed = []
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))
    except OSError:
        return removed
    for path in candidates:
        pid_text = path.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid_text.isdigit() and not _running(int(pid_text)):
            _remove(path)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
