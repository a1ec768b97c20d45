"""The Btune plugin's trace, turned into data.

With ``BTUNE_TRACE`` set the plugin prints, on the C-level stdout, a banner per tuner
initialisation, ``TRACE:`` lines (among them one ``Inference category=...`` line per chunk when a
model is used) and a table with one row per tuning step. :func:`parse_trace` reads all of it;
table columns are found by their header names, so both the current layout (``S.Score``, an
inverse score where higher is better) and the older one (``Score`` where lower is better, plus
``Blocksize`` and ``Shufflesize``) parse.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

#: A trace record type (see :func:`assemble`).
_Record = TypeVar("_Record", "InferenceLine", "TraceRow")

#: How a header name maps to a ``TraceRow`` field.
_COLUMNS = {
    "codec": "codec",
    "filter": "filter",
    "split": "split",
    "c.level": "clevel",
    "blocksize": "blocksize",
    "shufflesize": "shufflesize",
    "c.threads": "cthreads",
    "d.threads": "dthreads",
    "s.score": "score",
    "score": "score",
    "c.ratio": "cratio",
    "btune state": "state",
    "readapt": "readapt",
    "winner": "winner",
}
_INT_FIELDS = {"filter", "split", "clevel", "blocksize", "shufflesize", "cthreads", "dthreads"}

_BANNER_RULE = re.compile(r"^(-=){10,}")
_VERSION = re.compile(r"^Btune version:\s*(\S+)")
_MODE = re.compile(
    r"^Performance Mode:\s*(\w+),\s*Compression tradeoff:\s*(\([^)]*\)|[-+.\deE]+),"
    r"\s*Bandwidth:\s*(.+?)\s*$"
)
_BEHAVIOUR = re.compile(
    r"^Behaviour:\s*Waits - (\d+),\s*Softs - (\d+),\s*Hards - (\d+),\s*Repeat Mode - (\w+)"
)
_INFERENCE = re.compile(
    r"Inference category=(-?\d+) codec=(-?\d+) filter=(-?\d+) clevel=(-?\d+) "
    r"splitmode=(-?\d+) time entropy=([-+.\deE]+) inference=([-+.\deE]+)"
)


@dataclass(frozen=True)
class Banner:
    """One tuner initialisation, as printed by the plugin."""

    version: str
    perf_mode: str
    tradeoff: float | tuple[float, ...]
    bandwidth: str
    nwaits: int | None = None
    nsofts: int | None = None
    nhards: int | None = None
    repeat_mode: str | None = None


@dataclass(frozen=True)
class InferenceLine:
    """A ``TRACE: Inference category=...`` line: the model's choice for one chunk."""

    category: int
    codec: int
    filter: int
    clevel: int
    splitmode: int
    time_entropy: float
    """Seconds the plugin spent computing the chunk's features (the entropy probe)."""
    time_inference: float
    """Seconds the plugin spent running the network."""


@dataclass(frozen=True)
class TraceRow:
    """One row of the plugin's table: a tuning step (one compressed chunk).

    ``split`` is 1 for "always split", 0 otherwise. ``score`` is as printed: with
    ``score_higher_is_better`` True (``S.Score``, Btune >= 1.2) it is an inverse score.
    ``inference`` is the model's line printed just before this row, if any.
    """

    step: int
    codec: str
    filter: int
    split: int
    clevel: int
    cthreads: int
    dthreads: int
    score: float
    cratio: float
    state: str
    readapt: str
    winner: str
    score_higher_is_better: bool = True
    blocksize: int | None = None
    shufflesize: int | None = None
    inference: InferenceLine | None = None

    @property
    def is_winner(self) -> bool:
        return self.winner == "W"

    @property
    def is_special(self) -> bool:
        """A chunk of special values (e.g. all zeros) that any parameters compress alike."""
        return self.winner == "S"


def assemble(cls: type[_Record], base: dict[str, Any], fields: dict[str, Any]) -> _Record:
    """An instance of the frozen dataclass ``cls`` (a trace record) from two dicts of fields.

    ``base`` and ``fields`` together must hold every field of ``cls`` (``fields`` wins), each
    already of its type: nothing is checked and ``__init__`` does not run, which makes this
    about 7x cheaper than calling ``cls``. It is for code that records one row per chunk (the
    Python engine); the result equals ``cls(**base, **fields)``.
    """
    record = object.__new__(cls)
    values = record.__dict__
    values.update(base)
    values.update(fields)
    return record


@dataclass
class Trace:
    """Everything the plugin printed during one run, as data."""

    banners: list[Banner] = field(default_factory=list)
    rows: list[TraceRow] = field(default_factory=list)
    inferences: list[InferenceLine] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    """``TRACE:``, ``INFO:`` and ``WARNING:`` lines other than inference lines."""
    raw: str = ""
    engine: str = "native"
    """Which engine produced it: ``native`` (the plugin) or ``python``."""

    @property
    def winners(self) -> list[TraceRow]:
        return [r for r in self.rows if r.is_winner]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per table row; inference fields are flattened with an ``inf_`` prefix."""
        import pandas as pd

        records = []
        for row in self.rows:
            rec = asdict(row)
            inf = rec.pop("inference")
            for key in InferenceLine.__dataclass_fields__:
                rec[f"inf_{key}"] = None if inf is None else inf[key]
            records.append(rec)
        columns = [f for f in TraceRow.__dataclass_fields__ if f != "inference"] + [
            f"inf_{k}" for k in InferenceLine.__dataclass_fields__
        ]
        return pd.DataFrame.from_records(records, columns=columns)


def parse_trace(text: str) -> Trace:
    """Parse the plugin's output (banners, ``TRACE:`` lines and table) into a :class:`Trace`.

    Lines that belong to none of these (e.g. the caller's own prints) are ignored.
    """
    trace = Trace(raw=text)
    header: list[str | None] | None = None
    score_higher = True
    pending_banner: dict[str, object] = {}
    pending_inference: InferenceLine | None = None

    def flush_banner() -> None:
        if "version" in pending_banner and "perf_mode" in pending_banner:
            trace.banners.append(Banner(**pending_banner))  # type: ignore[arg-type]
        pending_banner.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if _BANNER_RULE.match(stripped):
            flush_banner()
            continue
        if m := _VERSION.match(stripped):
            flush_banner()
            pending_banner["version"] = m.group(1)
            continue
        if m := _MODE.match(stripped):
            pending_banner.update(
                perf_mode=m.group(1), tradeoff=_parse_tradeoff(m.group(2)), bandwidth=m.group(3)
            )
            continue
        if m := _BEHAVIOUR.match(stripped):
            pending_banner.update(
                nwaits=int(m.group(1)),
                nsofts=int(m.group(2)),
                nhards=int(m.group(3)),
                repeat_mode=m.group(4),
            )
            flush_banner()
            continue
        if m := _INFERENCE.search(stripped):
            pending_inference = InferenceLine(
                category=int(m.group(1)),
                codec=int(m.group(2)),
                filter=int(m.group(3)),
                clevel=int(m.group(4)),
                splitmode=int(m.group(5)),
                time_entropy=float(m.group(6)),
                time_inference=float(m.group(7)),
            )
            trace.inferences.append(pending_inference)
            continue
        if stripped.startswith(("TRACE:", "INFO:", "WARNING:")):
            trace.messages.append(stripped)
            continue
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if cells and cells[0].lower() == "codec":
                header = [_COLUMNS.get(c.lower()) for c in cells]
                score_higher = any(c.lower() == "s.score" for c in cells)
                continue
            if header is None or len(cells) != len(header):
                continue
            row = _parse_row(cells, header, len(trace.rows), score_higher, pending_inference)
            if row is not None:
                trace.rows.append(row)
                pending_inference = None
    flush_banner()
    return trace


def _parse_row(
    cells: list[str],
    header: list[str | None],
    step: int,
    score_higher: bool,
    inference: InferenceLine | None,
) -> TraceRow | None:
    values: dict[str, object] = {}
    try:
        for name, cell in zip(header, cells, strict=True):
            if name is None:
                continue
            if name in _INT_FIELDS:
                values[name] = int(cell)
            elif name == "score":
                values[name] = float(cell)
            elif name == "cratio":
                values[name] = float(cell.rstrip("x"))
            else:
                values[name] = cell
    except ValueError:
        return None
    required = {"codec", "filter", "split", "clevel", "cthreads", "dthreads", "score", "cratio"}
    if not required <= values.keys():
        return None
    values.setdefault("state", "")
    values.setdefault("readapt", "")
    values.setdefault("winner", "")
    return TraceRow(step=step, score_higher_is_better=score_higher, inference=inference, **values)  # type: ignore[arg-type]


def _parse_tradeoff(text: str) -> float | tuple[float, ...]:
    if text.startswith("("):
        return tuple(float(v) for v in text.strip("()").split(","))
    return float(text)


class RowState(str, Enum):
    """What the Python engine did for one chunk (the ``state`` column of its trace rows)."""

    INFERENCE = "INFERENCE"
    """The model chose the parameters."""
    TWEAK = "TWEAK"
    """A neighbour of the best parameters was tried on this chunk next to the best."""
    STOP = "STOP"
    """Tuning has ended: the best parameters were used as they are."""
    GROUP = "GROUP"
    """The chunk took the parameters the model chose for the first chunk of its group
    (:attr:`btune_wrap.engine.PythonEngine.decide_every`)."""


# -- rendering: the inverse of parse_trace --------------------------------------------------------

_HEADER = (
    "|    Codec   | Filter | Split | C.Level | C.Threads | D.Threads |  S.Score  |  C.Ratio   |"
    "   Btune State   | Readapt | Winner"
)


_TWEAK_STEP = re.compile(r"^TRACE: Tweak step=(\d+) ")


def format_trace(trace: Trace) -> str:
    """Render a trace in the plugin's layout (``TRACE: Inference ...`` lines and the table).

    For the Python engine ``S.Score`` holds the objective value (higher is better).
    """
    lines: list[str] = []
    for banner in trace.banners:
        lines.append("-=" * 39)
        lines.append(f"Btune version: {banner.version}")
        tradeoff = banner.tradeoff
        shown = (
            f"({', '.join(f'{v:f}' for v in tradeoff)})"
            if isinstance(tradeoff, tuple)
            else f"{tradeoff:f}"
        )
        lines.append(
            f"Performance Mode: {banner.perf_mode}, Compression tradeoff: {shown}, "
            f"Bandwidth: {banner.bandwidth}"
        )
    per_step: dict[int, list[str]] = {}
    for msg in trace.messages:
        m = _TWEAK_STEP.match(msg)
        if m:
            per_step.setdefault(int(m.group(1)), []).append(msg)
        else:
            lines.append(msg)
    if trace.rows:
        lines.append(_HEADER)
    for row in trace.rows:
        lines.extend(per_step.get(row.step, ()))
        inf = row.inference
        if inf is not None:
            lines.append(
                f"TRACE: Inference category={inf.category} codec={inf.codec} "
                f"filter={inf.filter} clevel={inf.clevel} splitmode={inf.splitmode} "
                f"time entropy={inf.time_entropy:f} inference={inf.time_inference:f}"
            )
        lines.append(
            f"| {row.codec:>10} | {row.filter:6d} | {row.split:5d} | {row.clevel:7d} | "
            f"{row.cthreads:9d} | {row.dthreads:9d} | {row.score:9.3g} | {row.cratio:9.3g}x | "
            f"{row.state:>15} | {row.readapt:>7} | {row.winner}"
        )
    return "\n".join(lines) + "\n"
