"""The checkpoint of an unfinished gather: parts written as chunks are measured, so that an
interrupted gather continues where it stopped (``--resume``).

The checkpoint of a gather into ``X.meas`` is the directory ``.X.meas.partial`` next to it:
``gather.json`` (the gather's options, compared on resume) and one ``part-NNNNNN/`` per flush,
each with the two tables of :mod:`btune_wrap.measurements` for its chunks and ``workers.json``
(who measured them). :class:`Checkpoint` owns that layout.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from .atomic import atomic_dir
from .errors import InputError
from .measurements import (
    CHUNK_COLUMNS,
    CHUNK_EXTRA,
    CHUNKS_FILE,
    RESULT_COLUMNS,
    RESULT_EXTRA,
    RESULTS_FILE,
    extra_chunk_columns,
)

PARTIAL_META = "gather.json"
PART_PREFIX = "part-"
PART_WORKERS = "workers.json"
#: The columns a gather writes, in order.
CHUNK_TABLE = CHUNK_COLUMNS | CHUNK_EXTRA | extra_chunk_columns()
RESULT_TABLE = RESULT_COLUMNS | RESULT_EXTRA


class Checkpoint:
    """The parts of one gather in ``work``, its category names in order ``names``."""

    def __init__(self, work: Path, names: Sequence[str]) -> None:
        self.work = work
        self.names = list(names)
        self.workers: dict[str, dict[str, object]] = {}
        self._chunks: list[tuple] = []
        self._results: list[tuple] = []
        self._nparts = 0

    def start(self, options: dict[str, object]) -> None:
        """Drop any earlier checkpoint and begin an empty one for ``options``."""
        remove_tree(self.work)
        with atomic_dir(self.work) as tmp:
            (tmp / PARTIAL_META).write_text(json.dumps({"options": options}, indent=1))

    def resume(self, options: dict[str, object], output: Path) -> set[int]:
        """The chunks already measured, after checking ``options`` and every part."""
        try:
            saved = json.loads((self.work / PARTIAL_META).read_text())["options"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise InputError(
                f"checkpoint {str(self.work)!r} cannot be read ({exc}): remove it, or start "
                "over with --force"
            ) from None
        differ = sorted(k for k in set(options) | set(saved) if options.get(k) != saved.get(k))
        if differ:
            raise InputError(
                f"cannot resume into {str(output)!r}: the interrupted gather was made with "
                f"other {', '.join(differ)} ({show_differences(differ, saved, options)}); use "
                "the same options, or start over with --force"
            )
        for stale in self.work.glob(f".{PART_PREFIX}*"):
            remove_tree(stale)
        done: set[int] = set()
        parts = self._parts()
        for part in parts:
            done.update(_part_chunks(part))
            part_workers(part)
        self._nparts = len(parts)
        return done

    def add(self, chunk_row: tuple, rows: list[tuple], worker: dict[str, object]) -> None:
        """One measured chunk: its row, its categories' rows and who measured it."""
        self.workers.setdefault(str(chunk_row[len(CHUNK_COLUMNS)]), worker)
        self._results.extend(rows)
        self._chunks.append(chunk_row)

    def flush(self) -> None:
        """Write the chunks added since the last flush as a new part."""
        if not self._chunks:
            return
        import pandas as pd

        chunks = pd.DataFrame(self._chunks, columns=list(CHUNK_TABLE))
        results = pd.DataFrame(self._results, columns=list(RESULT_TABLE))
        with atomic_dir(self.work / f"{PART_PREFIX}{self._nparts:06d}") as tmp:
            chunks.astype(CHUNK_TABLE).to_parquet(tmp / CHUNKS_FILE, index=False)
            results.astype(RESULT_TABLE).to_parquet(tmp / RESULTS_FILE, index=False)
            (tmp / PART_WORKERS).write_text(json.dumps(self.workers, indent=1))
        self._nparts += 1
        self._chunks.clear()
        self._results.clear()

    def assemble(self, selection: list[int]):
        """``(chunks, results, workers)``: every part joined, sorted by chunk and category;
        refused unless the parts hold exactly the ``selection``."""
        import pandas as pd

        parts = self._parts()
        chunks = pd.concat([pd.read_parquet(p / CHUNKS_FILE) for p in parts], ignore_index=True)
        extra = [c for c in extra_chunk_columns() if c in chunks.columns]
        if len(extra) < len(extra_chunk_columns()) or chunks[extra].isna().any().any():
            # Parts checkpointed before the extended features were recorded: none are kept.
            chunks = chunks.drop(columns=extra)
        chunks = chunks.astype({c: t for c, t in CHUNK_TABLE.items() if c in chunks.columns})
        results = pd.concat(
            [pd.read_parquet(p / RESULTS_FILE) for p in parts], ignore_index=True
        ).astype(RESULT_TABLE)
        known: dict[str, dict[str, object]] = {}
        for p in parts:
            known.update(part_workers(p))
        known.update(self.workers)
        workers = {w: known.get(w, {}) for w in sorted(set(chunks["worker"]))}
        if sorted(chunks["chunk"].tolist()) != selection:
            raise InputError(
                f"checkpoint {str(self.work)!r} does not hold exactly the selected chunks: "
                "start over with --force"
            )
        chunks = chunks.sort_values("chunk", ignore_index=True)
        order = {name: k for k, name in enumerate(self.names)}
        results = (
            results.assign(_k=results["category"].map(order))
            .sort_values(["chunk", "_k"], ignore_index=True)
            .drop(columns="_k")
        )
        return chunks, results, workers

    def _parts(self) -> list[Path]:
        return sorted(p for p in self.work.glob(f"{PART_PREFIX}*") if p.is_dir())


def _part_chunks(part: Path) -> list[int]:
    """The chunk ids a checkpoint part holds, both of its tables read and checked first."""
    import pandas as pd

    try:
        ids = pd.read_parquet(part / CHUNKS_FILE, columns=["chunk"])["chunk"]
        results = pd.read_parquet(part / RESULTS_FILE, columns=["chunk"])["chunk"]
    except (OSError, ValueError) as exc:
        raise _damaged(part, f"{type(exc).__name__}: {exc}") from None
    if set(results.tolist()) != set(ids.tolist()):
        raise _damaged(part, "its two tables name other chunks")
    return [int(i) for i in ids]


def part_workers(part: Path) -> dict[str, dict[str, object]]:
    """Who measured a part's chunks (its ``workers.json``: ``{worker: info}``), read and
    checked; ``{}`` for a part without one (checkpoints from before the file existed)."""
    path = part / PART_WORKERS
    if not path.is_file():
        return {}
    try:
        workers = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _damaged(part, f"{str(path)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(workers, dict) or not all(isinstance(v, dict) for v in workers.values()):
        raise _damaged(part, f"{str(path)!r} is not an object of worker descriptions")
    return workers


def _damaged(part: Path, why: str) -> InputError:
    return InputError(
        f"checkpoint part {str(part)!r} is damaged ({why}): delete that directory to measure "
        "its chunks again with --resume, or start over with --force"
    )


def show_differences(keys: list[str], saved: dict, now: dict) -> str:
    return "; ".join(f"{k}: {_difference(saved.get(k), now.get(k))}" for k in keys)


def _difference(was: object, now: object) -> str:
    """Where two option values differ, said briefly (the first differing key or item)."""

    def short(v: object) -> str:
        text = json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."

    if isinstance(was, dict) and isinstance(now, dict):
        keys = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        return ", ".join(f"{k} was {short(was.get(k))}, now {short(now.get(k))}" for k in keys)
    if isinstance(was, list) and isinstance(now, list):
        first = next((i for i, (a, b) in enumerate(zip(was, now, strict=False)) if a != b), None)
        if first is None:
            return f"{len(was)} items before, {len(now)} now"
        return (
            f"item {first} was {short(was[first])}, now {short(now[first])} "
            f"({len(was)} items before, {len(now)} now)"
        )
    return f"was {short(was)}, now {short(now)}"


def remove_tree(path: Path) -> None:
    """Remove a file, a link or a whole directory, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
