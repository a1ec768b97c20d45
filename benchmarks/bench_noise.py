"""How far timing noise alone keeps any chooser from the measured oracle (a script, not a test).

The corpus's gains (``bench_quality.py``) are measured against the best category *measured* on
each chunk, and a measurement is one draw of noisy timings. This benchmark gathers the corpus a
second time (B, same chunks, same categories, same settings) beside the first (A, the cache of
``bench_quality.py --full``) and prints, per array and mode, the mean gain over the odd chunks
and the tradeoffs 0..1 of:

- ``floor``: A's per-chunk best, judged on B: what a perfect knowledge of A is worth on B;
- ``model@A`` / ``model@B``: the neighbours model trained on A's even chunks (the default
  ``btune train`` makes, leaning on a model of the other arrays' A gathers where a user's
  leans on the general model), judged on A and on B;
- ``verify2@A`` ... ``verify3@B``: its two (three) best categories, the best of them by A's
  timings (verification as ``btune evaluate`` scores it in DECOMP, the trials' time not
  counted), judged on A and on B: on A it is judged by the timings it chose with;
- ``fixed_best@B``: B's own hindsight category (at each tradeoff, the best mean over the odd
  chunks), as in ``bench_quality.py``.

Usage::

    .venv/bin/python benchmarks/bench_noise.py [--only NAME ...]

The second gather is cached in ``build/corpus-meas-again`` (about 12 minutes of one core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from bench_quality import ROOT, gathered

from btune_wrap.features import DEFAULT_FEATURES
from btune_wrap.general import general_neighbors
from btune_wrap.measurements import Measurements
from btune_wrap.neighbors import fit_neighbors
from btune_wrap.objective import TRADEOFFS, gain, hindsight_best, objective_matrix

VERIFY = (2, 3)
COLUMNS = (
    "floor", "model@A", "model@B",
    *(f"verify{k}@{g}" for k in VERIFY for g in "AB"),
    "fixed_best@B",
)  # fmt: skip


def _mean_gain(j: np.ndarray, picked: np.ndarray) -> float:
    """Mean gain of the ``picked`` category per (tradeoff, chunk) under ``j``."""
    chosen = np.take_along_axis(j, picked[..., None], axis=-1)[..., 0]
    return float(gain(chosen, j.max(axis=-1)).mean())


def noise_row(
    a: Measurements, b: Measurements, mode: str, others: list[Measurements]
) -> dict[str, float]:
    """The gains of :data:`COLUMNS` for one array and mode (see the module docstring);
    ``others``: the other arrays' A gathers."""
    ids = a.chunks["chunk"].to_numpy()
    if not np.array_equal(ids, b.chunks["chunk"].to_numpy()):
        raise SystemExit(f"{a.name}: the two gathers hold different chunks")
    ma, mb = a.matrices(), b.matrices()
    if not np.array_equal(ma[1], mb[1]):
        raise SystemExit(f"{a.name}: the two gathers compressed to different sizes")
    odd = ids % 2 == 1
    ja = objective_matrix(*ma, mode, TRADEOFFS)[:, odd]
    jb = objective_matrix(*mb, mode, TRADEOFFS)[:, odd]
    fallback = general_neighbors(others, mode, DEFAULT_FEATURES) if others else None
    model = fit_neighbors(a.select(ids[~odd]), mode, fallback=fallback)
    cratio, extra = a.features()[odd, 0], a.extra_features()[odd]
    tops = np.array(
        [model.choose_many(cratio, extra, a.meta["dtype"], t, top=max(VERIFY)) for t in TRADEOFFS]
    )  # (tradeoff, chunk, rank)
    fixed = np.broadcast_to(hindsight_best(jb)[:, None], jb.shape[:2])
    out = {
        "floor": _mean_gain(jb, ja.argmax(axis=-1)),
        "model@A": _mean_gain(ja, tops[..., 0]),
        "model@B": _mean_gain(jb, tops[..., 0]),
    }
    for k in VERIFY:
        top = tops[..., :k]
        by_a = np.take_along_axis(ja, top, axis=-1).argmax(axis=-1)
        verified = np.take_along_axis(top, by_a[..., None], axis=-1)[..., 0]
        out[f"verify{k}@A"] = _mean_gain(ja, verified)
        out[f"verify{k}@B"] = _mean_gain(jb, verified)
    return out | {"fixed_best@B": _mean_gain(jb, fixed)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "build" / "corpus")
    p.add_argument("--meas", type=Path, default=ROOT / "build" / "corpus-meas-full")
    p.add_argument("--again", type=Path, default=ROOT / "build" / "corpus-meas-again")
    p.add_argument("--out", type=Path, default=ROOT / "bench_out" / "noise")
    p.add_argument("--only", nargs="+", help="these corpus arrays only")
    args = p.parse_args(argv)
    npys = sorted(args.corpus.glob("*.npy"))
    if not npys:
        print(f"no arrays in {args.corpus}: build the corpus first", file=sys.stderr)
        return 2
    rows = []
    first = {npy.stem: gathered(npy, args.meas / f"{npy.stem}.meas", None) for npy in npys}
    for npy in npys:
        if args.only and npy.stem not in args.only:
            continue
        a = first[npy.stem]
        b = gathered(npy, args.again / f"{npy.stem}.meas", None)
        others = [m for name, m in first.items() if name != npy.stem]
        for mode in ("comp", "decomp"):
            rows.append({"mode": mode, "dataset": npy.stem, **noise_row(a, b, mode, others)})
            print(_line(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    means = table.groupby("mode", sort=False)[list(COLUMNS)].mean().reset_index()
    means.insert(1, "dataset", "mean")
    print(f"{'mode':7s} {'dataset':16s} " + " ".join(f"{c:>12s}" for c in COLUMNS))
    for row in pd.concat([table, means]).to_dict("records"):
        print(_line(row))
    args.out.mkdir(parents=True, exist_ok=True)
    pd.concat([table, means]).to_csv(args.out / "noise.csv", index=False)
    print(f"wrote {args.out / 'noise.csv'}")
    return 0


def _line(row: dict) -> str:
    return f"{row['mode']:7s} {row['dataset']:16s} " + " ".join(
        f"{100 * row[c]:11.1f}%" for c in COLUMNS
    )


if __name__ == "__main__":
    sys.exit(main())
