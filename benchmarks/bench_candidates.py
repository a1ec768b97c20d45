"""How much a wider candidate set buys, and what it costs (a script, not a test).

1. Gathers every array of the real-data corpus (``benchmarks/corpus.py``, cached in
   ``build/corpus``) ONCE with the widest set (:data:`btune_wrap.categories.WIDE_CATEGORIES`),
   in the chunks of ``bench_quality.py`` (about 256 KB, whole blocks), at most ``--max-chunks``
   chunks per array drawn at random (seed 0), 3 repeats, 1 thread; cached in
   ``build/cands-meas/`` and reused.
2. For nested subsets (the tutorial's 32, + always-split variants, + blosc2's default, + the
   level ladders of each codec, up to the widest set) and a few side branches, per mode:
   - *oracle gain*: ``exp(J_best_wide - J_best_subset) - 1``, how much better the per-chunk best
     of the widest set is than the per-chunk best within the subset;
   - *hindsight gain*: the same for the dataset's single category of best mean ``J``
     (:func:`btune_wrap.objective.hindsight_best`) chosen within the subset;
   each a mean over chunks and tradeoffs 0, 0.1, ..., 1, then over datasets; and the gather's
   cost per chunk: CPU seconds, 3 repeats x (ctime + dtime) summed over the subset.
3. Picks the knee: the cheapest subset whose oracle is within ``--within`` (default 1.5%) of
   the widest's in both modes. Prints the table, the categories that are the widest oracle most
   often, a greedy forward selection (how small a set fitted to this corpus could be) and the
   timing-noise floor; saves ``<out>/candidates.csv``, ``<out>/per_dataset.csv`` and
   ``<out>/candidates.png`` (cost against gain, the knee circled).

Usage::

    .venv/bin/python benchmarks/bench_candidates.py [--max-chunks 32] [--within 0.015]
        [--corpus build/corpus] [--meas build/cands-meas] [--out bench_out/candidates]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from btune_wrap import measure
from btune_wrap.categories import (
    BLOSC2_DEFAULT,
    DEFAULT_CATEGORIES,
    FAST_LEVELS,
    SPLIT_CATEGORIES,
    TUTORIAL_CATEGORIES,
    WIDE_CATEGORIES,
    WIDE_LEVELS,
    Category,
    Codec,
    Filter,
    SplitMode,
    category_set,
    union,
)
from btune_wrap.measurements import Measurements
from btune_wrap.objective import TRADEOFFS, best_index, gain, hindsight_best, objective_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import layout  # noqa: E402  (the corpus benchmark's chunk layout)

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3
MODES = ("comp", "decomp")


def gathered(npy: Path, meas_dir: Path, max_chunks: int) -> measure.Measurements:
    """The cached gather of ``npy`` with the widest set (made now if absent, else resumed)."""
    arr = np.load(npy, mmap_mode="r")
    chunks, blocks = layout(arr.shape, arr.dtype)
    nchunks = math.prod(math.ceil(s / c) for s, c in zip(arr.shape, chunks, strict=True))
    sample = max_chunks if nchunks > max_chunks else None
    return measure.gather(
        npy, meas_dir, categories=WIDE_CATEGORIES, chunks=chunks, blocks=blocks, sample=sample,
        seed=0, repeats=REPEATS, nthreads=1, resume=True, progress=False,
    )  # fmt: skip


# -- candidate subsets ----------------------------------------------------------------------


def _chain() -> list[tuple[str, tuple[Category, ...]]]:
    """Nested subsets, each the previous plus one ladder: tutorial -> wide."""
    both = (SplitMode.NEVER, SplitMode.ALWAYS)
    steps = [
        ("tutorial", TUTORIAL_CATEGORIES),
        ("+split", SPLIT_CATEGORIES),
        ("+default", (BLOSC2_DEFAULT,)),
        ("+zstd 5", category_set(((Codec.ZSTD, (5,)),), splits=both)),
        (
            "+blosclz,lz4 1,9",
            category_set(((Codec.BLOSCLZ, (1, 9)), (Codec.LZ4, (1, 9))), splits=both),
        ),
        ("+lz4hc 1,9", category_set(((Codec.LZ4HC, (1, 9)),), splits=both)),
        ("+zlib 1,9", category_set(((Codec.ZLIB, (1, 9)),), splits=both)),
    ]
    out, acc = [], ()
    for label, cats in steps:
        acc = union(acc, cats)
        out.append((label, acc))
    assert set(acc) == set(WIDE_CATEGORIES)
    return out


def _branches() -> list[tuple[str, tuple[Category, ...]]]:
    """Other subsets of the widest set: the default without split; split only where blosc2's
    auto split splits (blosclz, lz4, zstd after a shuffle); the ladders of the fast codecs
    alone; all ladders without split; each then with the split variants of the codec levels
    that are cheap to measure (the gather's time goes to zstd 6 and 9, zlib and lz4hc: blosc2's
    zstd 9 is zstd's level 22)."""
    d = (BLOSC2_DEFAULT,)
    auto_like = tuple(
        Category(c.codec, c.filter, c.clevel, SplitMode.ALWAYS)
        for c in TUTORIAL_CATEGORIES
        if c.codec in (Codec.BLOSCLZ, Codec.LZ4, Codec.ZSTD)
        and c.filter in (Filter.SHUFFLE, Filter.BYTEDELTA)
    )
    ladders = union(category_set(WIDE_LEVELS), d)
    fast = FAST_LEVELS
    zstd_low = ((Codec.ZSTD, (1, 3, 5)),)
    split = (SplitMode.ALWAYS,)
    fast_ladders = union(TUTORIAL_CATEGORIES, d, category_set(fast))
    return [
        ("tutorial+default", union(TUTORIAL_CATEGORIES, d)),
        ("tutorial+default+shuffle-split", union(TUTORIAL_CATEGORIES, d, auto_like)),
        ("tutorial+default+blosclz,lz4 1,9", fast_ladders),
        ("  +split blosclz,lz4 (fast)", union(fast_ladders, category_set(fast, splits=split))),
        (
            "  +split blosclz,lz4,zstd<=5",
            union(fast_ladders, category_set(fast + zstd_low, splits=split)),
        ),
        ("ladders nosplit+default", ladders),
        ("ladders+split blosclz,lz4", union(ladders, category_set(fast, splits=split))),
        (
            "ladders+split blosclz,lz4,zstd<=5",
            union(ladders, category_set(fast + zstd_low, splits=split)),
        ),
    ]


# -- scoring --------------------------------------------------------------------------------


@dataclass
class Dataset:
    """One gathered corpus array: ``J`` per mode (ntradeoffs, nchunks, ncategories of the
    widest set) and the per-chunk seconds a gather spends per category."""

    name: str
    typesize: int
    j: dict[str, np.ndarray]
    seconds: np.ndarray  # (nchunks, ncategories): repeats x (ctime + dtime)


def load(meas: Measurements) -> Dataset:
    """``J`` of every (tradeoff, chunk, category) of ``meas`` in both modes."""
    assert tuple(meas.categories) == WIDE_CATEGORIES, meas.path
    nbytes, cbytes, ctime, dtime = meas.matrices()
    j = {mode: objective_matrix(nbytes, cbytes, ctime, dtime, mode, TRADEOFFS) for mode in MODES}
    return Dataset(meas.name.removesuffix(".meas"), int(meas.meta["typesize"]), j,
                   REPEATS * (ctime + dtime))  # fmt: skip


def oracle_gain(d: Dataset, mode: str, idx: np.ndarray) -> float:
    """Mean over chunks and tradeoffs of the widest oracle's gain over the subset's oracle."""
    j = d.j[mode]
    return float(np.mean(gain(j[..., idx].max(axis=-1), j.max(axis=-1))))


def hindsight_gain(d: Dataset, mode: str, idx: np.ndarray) -> float:
    """The same for the hindsight single category of the dataset, chosen within the subset."""
    j = d.j[mode]
    sub = j[..., idx]
    best = hindsight_best(sub)  # (ntradeoffs,)
    j_fixed = np.take_along_axis(sub, best[:, None, None], axis=-1)[..., 0]
    return float(np.mean(gain(j_fixed, j.max(axis=-1))))


def score(data: list[Dataset], label: str, cats: tuple[Category, ...]) -> dict:
    """One table row: mean over datasets of the gains, and the gather's CPU seconds per chunk."""
    pos = {c: i for i, c in enumerate(WIDE_CATEGORIES)}
    idx = np.array([pos[c] for c in cats])
    row: dict[str, object] = {"subset": label, "categories": len(cats)}
    row["is_default"] = set(cats) == set(DEFAULT_CATEGORIES)
    for mode in MODES:
        row[f"oracle_{mode}"] = float(np.mean([oracle_gain(d, mode, idx) for d in data]))
    for mode in MODES:
        row[f"hindsight_{mode}"] = float(np.mean([hindsight_gain(d, mode, idx) for d in data]))
    per_chunk = np.concatenate([d.seconds[:, idx].sum(axis=1) for d in data])
    row["cost_s_per_chunk"] = float(per_chunk.mean())
    return row


def greedy(data: list[Dataset], steps: int) -> list[tuple[Category, float]]:
    """Forward selection within the widest set: each step adds the category that lowers the
    mean (over datasets and modes) oracle gain most. A reference for how small a set could be
    on this corpus, not a candidate set (it is fitted to the corpus)."""
    chosen: list[int] = []
    out = []
    for _ in range(steps):
        best = None
        for k in range(len(WIDE_CATEGORIES)):
            if k in chosen:
                continue
            idx = np.array([*chosen, k])
            g = np.mean([oracle_gain(d, m, idx) for d in data for m in MODES])
            if best is None or g < best[1]:
                best = (k, g)
        chosen.append(best[0])
        out.append((WIDE_CATEGORIES[best[0]], float(best[1])))
    return out


def noise_floor(data: list[Dataset]) -> dict[str, float]:
    """Oracle gain of ``split`` over ``tutorial`` on the typesize-1 arrays, where splitting
    compresses to the same bytes: what timing noise alone makes a doubled set look worth."""
    pos = {c: i for i, c in enumerate(WIDE_CATEGORIES)}
    tut = np.array([pos[c] for c in TUTORIAL_CATEGORIES])
    both = np.array([pos[c] for c in SPLIT_CATEGORIES])
    ones = [d for d in data if d.typesize == 1]
    out = {}
    for mode in MODES:
        g = [np.mean(gain(d.j[mode][..., tut].max(-1), d.j[mode][..., both].max(-1))) for d in ones]
        out[mode] = float(np.mean(g)) if g else math.nan
    return out


def win_shares(data: list[Dataset]) -> pd.Series:
    """Share of (dataset chunk, tradeoff, mode) where each category is the widest oracle."""
    counts = np.zeros(len(WIDE_CATEGORIES))
    total = 0
    for d in data:
        for mode in MODES:
            b = best_index(d.j[mode]).ravel()
            counts += np.bincount(b, minlength=len(WIDE_CATEGORIES))
            total += b.size
    return pd.Series(counts / total, index=[c.name for c in WIDE_CATEGORIES]).sort_values(
        ascending=False
    )


def knee(table: pd.DataFrame, within: float) -> pd.Series:
    """The cheapest subset whose oracle is within ``within`` of the widest's in both modes."""
    ok = table[(table["oracle_comp"] <= within) & (table["oracle_decomp"] <= within)]
    return ok.sort_values("cost_s_per_chunk").iloc[0]


def plot(table: pd.DataFrame, chosen: str, path: Path) -> None:
    """Gather cost per chunk against the oracle's gain left (log scale), per mode; the subsets
    numbered as in the table, the knee circled."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6), layout="constrained")
    ax = fig.subplots()
    floor = 0.01  # %: a gain of 0 drawn here on the log scale
    for mode, marker in zip(MODES, "os", strict=True):
        y = np.maximum(100 * table[f"oracle_{mode}"], floor)
        ax.plot(table["cost_s_per_chunk"], y, marker, label=mode, alpha=0.8)
    for i, r in table.iterrows():
        y = max(100 * max(r["oracle_comp"], r["oracle_decomp"]), floor)
        ax.annotate(str(i), (r["cost_s_per_chunk"], y), fontsize=8, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    k = table[table["subset"] == chosen].iloc[0]
    ys = [max(100 * k[f"oracle_{m}"], floor) for m in MODES]
    ax.plot([k["cost_s_per_chunk"]] * 2, ys, "o", ms=16, mfc="none", mec="r",
            label=f"knee: {chosen.strip()}")  # fmt: skip
    legend = "\n".join(
        f"{i}: {r['subset'].strip()} ({r['categories']})" for i, r in table.iterrows()
    )
    ax.text(1.01, 1.0, legend, transform=ax.transAxes, va="top", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("gather CPU seconds per 256 KB chunk (3 repeats, ctime + dtime)")
    ax.set_ylabel("oracle gain left vs the widest set (%)")
    ax.set_title(
        "gain = exp(J_best_wide - J_best_subset) - 1: mean over chunks, tradeoffs, datasets"
    )
    ax.legend(loc="center right")
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "build" / "corpus")
    p.add_argument("--meas", type=Path, default=ROOT / "build" / "cands-meas")
    p.add_argument("--out", type=Path, default=ROOT / "bench_out" / "candidates")
    p.add_argument("--max-chunks", type=int, default=32, help="chunks per array (default 32)")
    p.add_argument("--within", type=float, default=0.015, help="knee tolerance (default 0.015)")
    p.add_argument("--greedy", type=int, default=24, help="greedy selection steps (default 24)")
    args = p.parse_args(argv)
    arrays = sorted(args.corpus.glob("*.npy"))
    if not arrays:
        print(f"no .npy in {args.corpus}: build the corpus first (benchmarks/corpus.py)",
              file=sys.stderr)  # fmt: skip
        return 2
    data = []
    for npy in arrays:
        meas = gathered(npy, args.meas / f"{npy.stem}.meas", args.max_chunks)
        print(f"gathered {npy.stem}: {meas.nchunks} chunks x {len(meas.categories)} categories, "
              f"{meas.meta['elapsed'] / meas.nchunks:.2f} s per chunk", flush=True)  # fmt: skip
        data.append(load(meas))
    subsets = _chain() + _branches()
    table = pd.DataFrame([score(data, label, cats) for label, cats in subsets])
    base = table.loc[table["subset"] == "tutorial", "cost_s_per_chunk"].iloc[0]
    table["cost_x_tutorial"] = table["cost_s_per_chunk"] / base
    per_dataset = pd.DataFrame(
        [dict(score([d], label, cats), dataset=d.name) for label, cats in subsets for d in data]
    )
    chosen = knee(table, args.within)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "candidates.csv", index=False)
    per_dataset.to_csv(args.out / "per_dataset.csv", index=False)
    plot(table, chosen["subset"], args.out / "candidates.png")
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    fmt = {c: pct for c in table.columns if c.startswith(("oracle", "hindsight"))}
    print(table.to_string(index=False, formatters=fmt, float_format=lambda v: f"{v:.3f}"))
    print(f"\nknee (cheapest within {pct(args.within)} in both modes): {chosen['subset']} "
          f"({chosen['categories']} categories, "
          f"{chosen['cost_x_tutorial']:.2f}x the tutorial's gather cost)")  # fmt: skip
    noise = noise_floor(data)
    print("timing-noise floor (split over tutorial on typesize-1 arrays, same bytes): "
          + ", ".join(f"{m} {pct(v)}" for m, v in noise.items()))  # fmt: skip
    print("\nwidest oracle most often (share of chunk x tradeoff x mode):")
    print(win_shares(data).head(20).to_string(float_format=pct))
    print("\ngreedy forward selection (mean oracle gain over datasets and modes):")
    for k, (cat, g) in enumerate(greedy(data, args.greedy), 1):
        print(f"  {k:3d} {cat.name:40s} {pct(g)}")
    print(f"wrote {args.out}/candidates.csv, per_dataset.csv, candidates.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
