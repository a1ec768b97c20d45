"""Candidate compression parameters: codec, filter, compression level and split mode.

A :class:`Category` is one candidate the models choose among. Its name follows the Btune
tutorial, ``codec-filter-split-clevel``::

    lz4-shuffle-bytedelta-nosplit-5      zstd-bitshuffle-nosplit-9      blosclz-nofilter-split-5

It maps to ``blosc2.CParams`` (to compress with it) and to the ``[codec, filter, clevel,
splitmode]`` tuple of the plugin's model JSON (FACTS.md §3). :func:`category_set` builds sets
from level ladders, filters and split modes; :data:`CATEGORY_SETS` names them: the tutorial's 32
(:data:`TUTORIAL_CATEGORIES`), with their "always split" variants (64), the widest (138) and
the default, :data:`FAST_CATEGORIES` (74), chosen on the real-data corpus by
``benchmarks/bench_candidates.py``. Level 0 (:data:`STORED`) is blosc2's "store as is".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from .errors import ConfigError, invalid
from .parse import parse_int

if TYPE_CHECKING:
    import blosc2


class Codec(IntEnum):
    """Codec ids, as C-Blosc2 and the plugin's JSON number them."""

    BLOSCLZ = 0
    LZ4 = 1
    LZ4HC = 2
    ZLIB = 4
    ZSTD = 5


class Filter(IntEnum):
    """Filter ids of the plugin's JSON. ``BYTEDELTA`` means a shuffle followed by bytedelta."""

    NOFILTER = 0
    SHUFFLE = 1
    BITSHUFFLE = 2
    BYTEDELTA = 35


class SplitMode(IntEnum):
    """Split modes: whether blocks are split into one stream per byte of the type."""

    ALWAYS = 1
    NEVER = 2
    AUTO = 3
    FORWARD_COMPAT = 4


_FILTER_NAMES = {
    Filter.NOFILTER: "nofilter",
    Filter.SHUFFLE: "shuffle",
    Filter.BITSHUFFLE: "bitshuffle",
    Filter.BYTEDELTA: "shuffle-bytedelta",
}
_SPLIT_NAMES = {
    SplitMode.ALWAYS: "split",
    SplitMode.NEVER: "nosplit",
    SplitMode.AUTO: "autosplit",
    SplitMode.FORWARD_COMPAT: "fcsplit",
}
_FILTER_BY_NAME = {v: k for k, v in _FILTER_NAMES.items()}
_SPLIT_BY_NAME = {v: k for k, v in _SPLIT_NAMES.items()}
_CODEC_BY_NAME = {c.name.lower(): c for c in Codec}


def _enum(kind: type[IntEnum], field: str, value: object) -> IntEnum:
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value.strip().upper() in kind.__members__:
        return kind[value.strip().upper()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return kind(value)
        except ValueError:
            pass
    choices = ", ".join(f"{m.name.lower()} ({m.value})" for m in kind)
    raise ConfigError(invalid(field, value, f"one of {choices}"))


@dataclass(frozen=True, order=True)
class Category:
    """One candidate: codec, filter, compression level and split mode (validated).

    Parameters
    ----------
    codec
        :class:`Codec`, its id or its name (``"zstd"``).
    filter
        :class:`Filter`, its id or its name; ``BYTEDELTA`` is shuffle + bytedelta.
    clevel
        Compression level, 0 to 9.
    splitmode
        :class:`SplitMode`, its id or its name. Default ``NEVER`` (the tutorial's ``nosplit``).
    """

    codec: Codec
    filter: Filter
    clevel: int
    splitmode: SplitMode = SplitMode.NEVER

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "codec", _enum(Codec, "codec", self.codec))
        set_(self, "filter", _enum(Filter, "filter", self.filter))
        set_(self, "splitmode", _enum(SplitMode, "splitmode", self.splitmode))
        set_(self, "clevel", parse_int("clevel", self.clevel, 0, 9))

    # -- names ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The tutorial's name, e.g. ``lz4-shuffle-bytedelta-nosplit-5``."""
        return (
            f"{self.codec.name.lower()}-{_FILTER_NAMES[self.filter]}-"
            f"{_SPLIT_NAMES[self.splitmode]}-{self.clevel}"
        )

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Category:
        """The category named ``name`` (the inverse of :attr:`name`)."""
        expected = "a name like 'lz4-shuffle-bytedelta-nosplit-5' (codec-filter-split-clevel)"
        if not isinstance(name, str):
            raise ConfigError(invalid("category", name, expected))
        parts = name.strip().lower().split("-")
        if len(parts) < 4 or not parts[-1].isdigit():
            raise ConfigError(invalid("category", name, expected))
        codec = _CODEC_BY_NAME.get(parts[0])
        filter_ = _FILTER_BY_NAME.get("-".join(parts[1:-2]))
        split = _SPLIT_BY_NAME.get(parts[-2])
        if codec is None or filter_ is None or split is None:
            raise ConfigError(invalid("category", name, expected))
        return cls(codec, filter_, int(parts[-1]), split)

    # -- the plugin's JSON tuple ----------------------------------------------------------

    def to_plugin(self) -> tuple[int, int, int, int]:
        """``(codec, filter, clevel, splitmode)`` ids, as in the model JSON's categories."""
        return (int(self.codec), int(self.filter), self.clevel, int(self.splitmode))

    @classmethod
    def from_plugin(cls, item: Sequence[int]) -> Category:
        """Read a ``[codec, filter, clevel, splitmode]`` entry of a model JSON."""
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 4:
            raise ConfigError(invalid("category", item, "[codec, filter, clevel, splitmode]"))
        if any(isinstance(v, bool) or not isinstance(v, int) for v in item):
            raise ConfigError(invalid("category", item, "four integers"))
        return cls(*item)

    # -- blosc2 ---------------------------------------------------------------------------

    def to_cparams(
        self, *, typesize: int = 8, blocksize: int = 0, nthreads: int = 1
    ) -> blosc2.CParams:
        """``blosc2.CParams`` that compress with this category.

        Parameters
        ----------
        typesize
            Item size in bytes (default 8).
        blocksize
            Block size in bytes; 0 (default) lets blosc2 choose. When writing into an existing
            array pass its ``schunk.blocksize`` (FACTS.md §6).
        nthreads
            Compression threads (default 1).
        """
        import blosc2

        nofilter = blosc2.Filter.NOFILTER
        filters = [nofilter] * 6
        if self.filter is Filter.BYTEDELTA:
            filters[4], filters[5] = blosc2.Filter.SHUFFLE, blosc2.Filter.BYTEDELTA
        else:
            filters[5] = blosc2.Filter(int(self.filter))
        return blosc2.CParams(
            codec=blosc2.Codec(int(self.codec)),
            clevel=self.clevel,
            typesize=typesize,
            nthreads=nthreads,
            blocksize=blocksize,
            splitmode=blosc2.SplitMode(int(self.splitmode)),
            filters=filters,
            filters_meta=[0] * 6,
        )

    @classmethod
    def from_cparams(cls, cparams: blosc2.CParams) -> Category:
        """The category of ``cparams``; refuses filters a category cannot express."""
        used = [_id(f) for f in cparams.filters if _id(f) != 0]
        if not used:
            filter_ = Filter.NOFILTER
        elif used == [int(Filter.SHUFFLE), int(Filter.BYTEDELTA)]:
            filter_ = Filter.BYTEDELTA
        elif len(used) == 1 and used[0] in (Filter.SHUFFLE, Filter.BITSHUFFLE):
            filter_ = Filter(used[0])
        else:
            raise ConfigError(
                invalid(
                    "cparams.filters",
                    [getattr(f, "name", f) for f in cparams.filters],
                    "no filter, shuffle, bitshuffle or shuffle then bytedelta",
                )
            )
        return cls(_id(cparams.codec), filter_, int(cparams.clevel), _id(cparams.splitmode))


def default_category() -> Category:
    """blosc2's default compression parameters as a :class:`Category` (``zstd-shuffle-autosplit-5``
    on blosc2 4.x)."""
    import blosc2

    return Category.from_cparams(blosc2.CParams())


def _id(member: object) -> int:
    """The integer id of a blosc2 enum member (a plain Enum) or of an int."""
    return int(getattr(member, "value", member))


#: Codec levels of the tutorial: blosclz, lz4, lz4hc, zlib at 5; zstd at 1, 3, 6, 9.
TUTORIAL_LEVELS: tuple[tuple[Codec, tuple[int, ...]], ...] = (
    (Codec.BLOSCLZ, (5,)),
    (Codec.LZ4, (5,)),
    (Codec.LZ4HC, (5,)),
    (Codec.ZLIB, (5,)),
    (Codec.ZSTD, (1, 3, 6, 9)),
)
#: Level ladders of the widest set: 1, 5, 9 for every codec, and zstd at 1, 3, 5, 6, 9.
WIDE_LEVELS: tuple[tuple[Codec, tuple[int, ...]], ...] = (
    (Codec.BLOSCLZ, (1, 5, 9)),
    (Codec.LZ4, (1, 5, 9)),
    (Codec.LZ4HC, (1, 5, 9)),
    (Codec.ZLIB, (1, 5, 9)),
    (Codec.ZSTD, (1, 3, 5, 6, 9)),
)
#: Level ladders of the fast codecs: blosclz and lz4 at 1, 5, 9 (nearly free to measure; blosclz
#: at level 1 stores a chunk it cannot compress at once, the fastest choice at low tradeoffs).
FAST_LEVELS: tuple[tuple[Codec, tuple[int, ...]], ...] = (
    (Codec.BLOSCLZ, (1, 5, 9)),
    (Codec.LZ4, (1, 5, 9)),
)
#: blosc2's default parameters (``blosc2.CParams()`` on blosc2 4.x) as a category; equal to
#: :func:`default_category` on the installed blosc2 (checked by the tests).
BLOSC2_DEFAULT = Category(Codec.ZSTD, Filter.SHUFFLE, 5, SplitMode.AUTO)
#: Level 0: blosc2 copies the chunk as is (no filter, no codec runs; ratio just below 1). The
#: fastest choice at low tradeoffs, and a sure one: on barely compressible chunks blosclz gives
#: up (stores the chunk) at some levels and not at others, chunk by chunk, and a model that bets
#: on it giving up pays 10-40x its time when it does not (real-data corpus, 2026-11-27: per
#: array gain over the per-chunk best 24.7% -> 5.8% in COMP, 22.7% -> 8.7% in DECOMP with
#: this category among the candidates).
STORED = Category(Codec.BLOSCLZ, Filter.NOFILTER, 0, SplitMode.NEVER)


def category_set(
    codecs: Iterable[tuple[Codec | str, Sequence[int]]] = TUTORIAL_LEVELS,
    filters: Sequence[Filter] = tuple(Filter),
    *,
    splits: Sequence[SplitMode] = (SplitMode.NEVER,),
) -> tuple[Category, ...]:
    """Every combination of codec (with its levels), filter and split mode, codec-major.

    The defaults give the tutorial's 32 categories (:data:`TUTORIAL_LEVELS` times nofilter,
    shuffle, bitshuffle, shuffle+bytedelta; never split). ``splits=(NEVER, ALWAYS)`` puts the
    "always split" variant of each right after it (64).
    """
    return tuple(
        Category(codec, filter_, clevel, mode)
        for codec, clevels in codecs
        for clevel in clevels
        for filter_ in filters
        for mode in splits
    )


def union(*sets: Iterable[Category]) -> tuple[Category, ...]:
    """The categories of ``sets`` in order of first appearance, each once."""
    return tuple(dict.fromkeys(c for s in sets for c in s))


_BOTH = (SplitMode.NEVER, SplitMode.ALWAYS)

#: The tutorial's 32 categories, in the order of a model's outputs (never split).
TUTORIAL_CATEGORIES: tuple[Category, ...] = category_set()
#: The same with the "always split" variants (64).
SPLIT_CATEGORIES: tuple[Category, ...] = category_set(splits=_BOTH)
#: The widest set: :data:`WIDE_LEVELS` x the four filters x never/always split, then
#: :data:`BLOSC2_DEFAULT` and :data:`STORED` (138). Auto split is no other candidate: on every
#: codec, filter and typesize of the corpus (1, 4, 8) it compresses to the bytes of "always" or
#: of "never" (blosc2 splits only blosclz, lz4 and zstd after a shuffle), so only blosc2's
#: default carries it.
WIDE_CATEGORIES: tuple[Category, ...] = union(
    category_set(WIDE_LEVELS, splits=_BOTH), (BLOSC2_DEFAULT, STORED)
)

#: The tutorial's 32, blosc2's default, blosclz and lz4 at levels 1, 5, 9, never and always
#: split, and :data:`STORED` (74): the knee of ``benchmarks/bench_candidates.py`` on the
#: real-data corpus (2026-11-27, 245 chunks of 10 arrays): without STORED its per-chunk best is
#: 0.4% (COMP) / 0.4% (DECOMP) behind the widest set's, against 97% / 42% for the tutorial's 32,
#: for 1.03x their gather time; STORED costs a memcpy per chunk.
FAST_CATEGORIES: tuple[Category, ...] = union(
    TUTORIAL_CATEGORIES, (BLOSC2_DEFAULT,), category_set(FAST_LEVELS, splits=_BOTH), (STORED,)
)

#: The default candidates of a gather (:data:`FAST_CATEGORIES`).
DEFAULT_CATEGORIES: tuple[Category, ...] = FAST_CATEGORIES

#: Named candidate sets (``btune gather --categories NAME``).
CATEGORY_SETS: dict[str, tuple[Category, ...]] = {
    "default": DEFAULT_CATEGORIES,
    "tutorial": TUTORIAL_CATEGORIES,
    "split": SPLIT_CATEGORIES,
    "fast": FAST_CATEGORIES,
    "wide": WIDE_CATEGORIES,
}


def parse_categories(names: Iterable[str]) -> tuple[Category, ...]:
    """Categories from their names; duplicates are refused."""
    cats = tuple(Category.parse(n) for n in names)
    if len(set(cats)) != len(cats):
        dup = sorted({c.name for c in cats if cats.count(c) > 1})
        raise ConfigError(invalid("categories", dup, "each category at most once"))
    return cats
