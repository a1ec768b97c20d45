"""The one rule for outputs: nothing of the user's is ever replaced by accident.

Every command and function that writes a file or a directory checks its output here, before
any work starts:

* an output that is (or contains, or is inside) one of the inputs is refused, ``force`` or not;
* an output whose parent is a file, or a directory we cannot write into, is refused;
* an existing output is replaced only with ``force=True`` (``--force``), and then only if it
  is of the kind we write there: a file where we write a file, and a directory that one of our
  own commands made (a measurement or an evaluation directory) where we write a directory.
  A directory we did not make is never replaced.

The write itself then goes through :mod:`btune_wrap.atomic` (aside, then renamed), so an
output appears whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import InputError, invalid


def read_paths(data: object) -> list[str]:
    """The files a run reads for ``data``: a path (``file.h5:/ds`` included) as it is, the
    file of a Blosc2 array or super-chunk opened from one; nothing for data in memory."""
    if isinstance(data, (str, os.PathLike)):
        return [os.fspath(data)]
    schunk = getattr(data, "schunk", data)
    if not type(schunk).__module__.startswith("blosc2"):
        return []
    urlpath = getattr(schunk, "urlpath", None)
    return [os.fspath(urlpath)] if urlpath else []


def parse_path(name: str, path: object) -> str:
    """``path`` as text, refused (named) where it is not a path or not UTF-8: blosc2 and
    pyarrow raise ``UnicodeEncodeError`` on names such as ``b'\\xff.npy'`` decoded by Python
    with ``surrogateescape``."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise InputError(invalid(name, path, "a path (str or os.PathLike)"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(invalid(name, text, "a path in UTF-8")) from None
    return text


def input_path(spec: str | os.PathLike[str]) -> Path:
    """The file or directory behind an input: ``file.h5:/group/ds`` -> ``file.h5``."""
    text = os.fspath(spec)
    if os.path.exists(text):
        return Path(text)
    cut = text.rfind(":")
    while cut > 0:
        if os.path.exists(text[:cut]):
            return Path(text[:cut])
        cut = text.rfind(":", 0, cut)
    return Path(text)


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_target(
    path: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    name: str = "output",
) -> Path:
    """Refuse an output that overlaps an input or cannot be created; return it as a Path.

    ``inputs`` are paths (or ``file.h5:/dataset`` specs) the same run reads.
    """
    text = parse_path(name, path)
    if not text:
        raise InputError(invalid(name, path, "a file or directory path"))
    out = Path(text)
    resolved = out.resolve()
    for spec in inputs:
        source = input_path(spec).resolve()
        if _overlaps(resolved, source):
            raise InputError(
                invalid(
                    name,
                    text,
                    f"a path apart from the input {os.fspath(spec)!r} (writing there would "
                    "destroy what is being read)",
                )
            )
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(invalid(name, text, f"a path whose parent {str(parent)!r} is a directory"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(invalid(name, text, f"a path in a writable directory ({str(parent)!r})"))
    return out


def check_output(
    path: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    force: bool = False,
    owned: Callable[[Path], bool] | None = None,
    name: str = "output",
) -> Path:
    """Check an output before any work (see the module docstring); return it as a Path.

    Parameters
    ----------
    path
        The file or directory to write.
    inputs
        What the same run reads: never overwritten.
    force
        Replace an existing output of the right kind. Default False.
    owned
        For a directory output: tells whether an existing directory is one of ours (e.g.
        :func:`btune_wrap.measurements.is_measurement_dir`). ``None`` (default): the output is
        a file, and an existing directory there is never replaced.
    name
        How to name the output in messages (the API argument; the CLI says the flag).
    """
    out = check_target(path, inputs, name=name)
    if not (out.exists() or out.is_symlink()):
        return out
    text = os.fspath(out)
    if owned is None and out.is_dir() and not out.is_symlink():
        raise InputError(invalid(name, text, "a file path (a directory is there)"))
    if owned is not None and (out.is_symlink() or not out.is_dir()):
        raise InputError(invalid(name, text, "a directory path (a file is there)"))
    if owned is not None and not owned(out):
        raise InputError(
            invalid(name, text, "a new directory, or one btune_wrap wrote (this one is not)")
        )
    if not force:
        raise InputError(
            invalid(name, text, "a path that does not exist yet (or force=True, --force)")
        )
    return out
