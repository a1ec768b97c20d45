"""Which decision-time features separate kinds of data (a script, not a test).

On gathered real-data measurements (``*.meas`` of the corpus, e.g. ``bench_quality.py``'s
``build/corpus-meas-40``; their sources must still be where the gather found them):

1. the features of every measured chunk: the plugin's cratio feature (from the gather), the
   typesize and dtype kind (from its meta) and the extended features of the probe
   (:data:`btune_wrap.probe.EXTRA_FEATURES`, recomputed from the source's chunks);
2. held-out gain (:func:`btune_wrap.objective.gain`, mean over chunks and tradeoffs 0..1) of
   choosing by each feature set, three ways: per dataset (train on its even chunks, test on
   its odd ones), pooled (train on the even chunks of every dataset, test on each dataset's
   odd ones) and leave-one-dataset-out (train on every other dataset). The learner is
   ``--learner knn`` (fast, deterministic: at each tradeoff the category of best mean ``J``
   over the ``k`` nearest training chunks in standardized feature space) or ``net`` (the
   extended network of :func:`btune_wrap.train.fit`);
3. the cost per chunk (median µs) of the plugin's probe alone and with the extended features,
   at 40 KB (the tutorial's 5000 int64) and 256 KB chunks;
4. with ``--learner net``, also the gain of verification (the network's 1, 2, 3 best-scored
   categories tried per chunk, the best kept; in comp mode every trial's compression time
   counts); with ``--verify-models DIR`` only the Python engine's write throughput with
   verification k = 1, 2, 3 (40 KB chunks of the tutorial's data).

Usage::

    .venv/bin/python benchmarks/bench_features.py --meas ../wt-corpus/build/corpus-meas-40
        [--learner knn|net] [--out bench_out/features] [--verify-models DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from btune_wrap import features as ft
from btune_wrap import probe
from btune_wrap.measurements import Measurements, is_measurement_dir
from btune_wrap.objective import TRADEOFFS, chunk_objective, gain, objective_matrix
from btune_wrap.sources import open_source

MODES = ("comp", "decomp")
#: Feature sets compared (names of :data:`btune_wrap.features.FEATURES` columns).
SETS = {
    "plugin (cratio)": ("cratio",),
    "+ typesize, kind": ("cratio", "log2_typesize", "kind_float", "kind_signed"),
    "+ filter probes": ("cratio", "shuffle_cratio", "bitshuffle_cratio", "bytedelta_cratio"),
    "+ byte stats": ("cratio", "zero_share", "low_entropy", "high_entropy"),
    "typesize, kind, filter probes": ("cratio", *ft.DTYPE_FEATURES, *ft.EXTRA_FEATURES[:3]),
    "all (the default)": ft.FEATURES,
}


def with_extra(meas: Measurements, window: int, windows: int) -> Measurements:
    """``meas`` with the extended features of its chunks as columns (recomputed from its
    source with this sampling), as a gather records them."""
    raw = raw_extra(meas, window, windows)
    chunks = meas.chunks.copy()
    for k, name in enumerate(probe.EXTRA_FEATURES):
        chunks[name] = raw[:, k]
    meta = dict(meas.meta, extra_layout=probe.EXTRA_LAYOUT)  # recomputed: comparable
    return Measurements(meta, chunks, meas.results.copy())


def chunk_table(meas: Measurements, window: int, windows: int) -> pd.DataFrame:
    """The input columns (:data:`btune_wrap.features.FEATURES`) of every measured chunk."""
    extra = pd.DataFrame(raw_extra(meas, window, windows), columns=list(probe.EXTRA_FEATURES))
    raw = pd.DataFrame({"cratio": meas.chunks["cratio_feature"].to_numpy()})
    return ft.feature_matrix(raw.join(extra), meta_dtype(meas))


def meta_dtype(meas: Measurements) -> str:
    return meas.meta["dtype"]


def raw_extra(meas: Measurements, window: int, windows: int) -> np.ndarray:
    """The probe's extended features of every measured chunk (recomputed from its source), from
    ``windows`` windows of ``window`` bytes spread over the chunk."""
    meta = meas.meta
    src = open_source(meta["source"], chunks=meta["chunks"], blocks=meta["blocks"])
    scratch = np.empty((3, probe.PROBE_WINDOW + 64), dtype=np.uint8)
    hist = np.zeros((2, 256), dtype=np.int64)
    rows = []
    for i in meas.chunks["chunk"].to_numpy():
        buf = src.chunk(int(i))
        out = np.empty(len(probe.EXTRA_FEATURES))
        ts = src.typesize if src.typesize <= probe.MAX_TYPESIZE else 1
        probe._extra_features(buf, ts, scratch, hist, out, window, windows)
        rows.append(out)
    src.close()
    return np.array(rows)


def knn_choose(x_train, j_train, x_test, k: int) -> np.ndarray:
    """Per (tradeoff, test chunk): the category of best mean ``J`` over the ``k`` nearest
    training chunks (standardized features; all of them when ``k`` >= their count)."""
    mean, std = x_train.mean(0), x_train.std(0)
    std[std == 0] = 1
    a, b = (x_train - mean) / std, (x_test - mean) / std
    d = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d, axis=1, kind="stable")[:, : min(k, len(a))]  # (ntest, k)
    jn = j_train[:, near, :].mean(axis=2)  # (nt, ntest, ncat)
    return jn.argmax(-1)


def subset(meas: Measurements, keep: np.ndarray) -> Measurements:
    """The measurements of the chunks where ``keep`` (a mask over ``meas.chunks`` rows)."""
    ids = meas.chunks["chunk"].to_numpy()[keep]
    chunks = meas.chunks[keep].reset_index(drop=True)
    results = meas.results[meas.results["chunk"].isin(ids)].reset_index(drop=True)
    return Measurements(dict(meas.meta, measured_chunks=len(chunks)), chunks, results)


def net_fit(train: list[Measurements], mode: str, cols):
    """A network trained by :func:`btune_wrap.train.fit` (the plugin's format for
    ``("cratio",)``, else extended), as a function: test measurements -> choice per
    (tradeoff, chunk)."""
    from btune_wrap import train as tr

    plugin = tuple(cols) == ("cratio",)
    config = tr.TrainConfig(seed=0) if plugin else tr.TrainConfig(seed=0, features=cols)
    fitted = tr.fit(train, mode, config, extended=not plugin)

    def choose(test: Measurements) -> np.ndarray:
        if plugin:
            x = tr.inputs(fitted.meta, test.features(), TRADEOFFS)
        else:
            idx = [ft.FEATURES.index(c) for c in cols]
            x = fitted.meta.inputs(ft.measured_features(test)[:, idx], TRADEOFFS)
        return fitted.scores_of(x).reshape(len(TRADEOFFS), test.nchunks, -1)

    return choose


def topk_gain(test: Measurements, mode: str, scores: np.ndarray, k: int) -> float:
    """Mean gain of verification: the network's ``k`` best-scored categories tried on each
    chunk, the best measured one kept. In comp mode every trial's compression time counts
    (the chunk's time is their sum); in decomp mode the trials are free to the reader."""
    nb, cb, ct, dt = test.matrices()
    t = np.asarray(TRADEOFFS)[:, None]
    j = objective_matrix(nb, cb, ct, dt, mode, TRADEOFFS)  # (nt, n, ncat)
    top = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    tried = np.take_along_axis(j, top, -1)
    pick = np.take_along_axis(top, tried.argmax(-1)[..., None], -1)[..., 0]
    picked = np.take_along_axis(j, pick[..., None], -1)[..., 0]
    if mode == "comp" and k > 1:
        full = j.shape
        ctot = np.take_along_axis(np.broadcast_to(ct, full), top, -1).sum(-1)
        cbp = np.take_along_axis(np.broadcast_to(cb, full), pick[..., None], -1)[..., 0]
        picked = chunk_objective(nb[None, :], cbp, ctot, None, mode, t)
    return float(gain(picked, j.max(-1)).mean())


def evaluate_net(meas: dict[str, Measurements], sets: dict, protocols) -> pd.DataFrame:
    """Gain per (feature set, mode, protocol, dataset) with the network of ``train.fit``."""
    from btune_wrap.train import MIN_CHUNKS

    records = []
    names = sorted(meas)
    halves = {}
    for n in names:
        even = meas[n].chunks["chunk"].to_numpy() % 2 == 0
        halves[n] = (subset(meas[n], even), subset(meas[n], ~even))
    for mode in MODES:
        for set_name, cols in sets.items():
            for proto in protocols:
                pooled = None
                for n in names:
                    even, odd = halves[n]
                    if proto == "per-dataset":
                        if even.nchunks < MIN_CHUNKS:
                            continue
                        chosen, test = net_fit([even], mode, cols)(odd), odd
                    elif proto == "pooled":
                        if pooled is None:
                            pooled = net_fit([halves[m][0] for m in names], mode, cols)
                        chosen, test = pooled(odd), odd
                    else:  # leave one dataset out
                        others = [meas[m] for m in names if m != n]
                        chosen, test = net_fit(others, mode, cols)(meas[n]), meas[n]
                    rec = {"mode": mode, "set": set_name, "protocol": proto, "dataset": n}
                    for k in (1, 2, 3):
                        rec["gain" if k == 1 else f"gain_top{k}"] = topk_gain(test, mode, chosen, k)
                    records.append(rec)
                    print(f"  {rec}", flush=True)
    return pd.DataFrame.from_records(records)


def held_out_gain(j_test, chosen) -> float:
    picked = np.take_along_axis(j_test, chosen[..., None], axis=-1)[..., 0]
    return float(gain(picked, j_test.max(-1)).mean())


def evaluate_sets(data: dict[str, tuple], k: int) -> pd.DataFrame:
    """Gain per (feature set, mode, protocol, dataset) with the kNN learner."""
    records = []
    names = sorted(data)
    for mode in MODES:
        js = {n: objective_matrix(*data[n][0].matrices(), mode, TRADEOFFS) for n in names}
        for set_name, cols in SETS.items():
            xs = {n: data[n][1][list(cols)].to_numpy(np.float64) for n in names}
            ids = {n: data[n][0].chunks["chunk"].to_numpy() for n in names}
            even = {n: ids[n] % 2 == 0 for n in names}
            for n in names:
                odd = ~even[n]
                per = knn_choose(xs[n][even[n]], js[n][:, even[n]], xs[n][odd], k)
                others = [m for m in names if m != n]
                xp = np.concatenate([xs[m][even[m]] for m in names])
                jp = np.concatenate([js[m][:, even[m]] for m in names], axis=1)
                pooled = knn_choose(xp, jp, xs[n][odd], k)
                xl = np.concatenate([xs[m] for m in others])
                jl = np.concatenate([js[m] for m in others], axis=1)
                lodo = knn_choose(xl, jl, xs[n], k)
                for proto, chosen, jt in (
                    ("per-dataset", per, js[n][:, odd]),
                    ("pooled", pooled, js[n][:, odd]),
                    ("lodo", lodo, js[n]),
                ):
                    records.append(
                        {
                            "mode": mode,
                            "set": set_name,
                            "protocol": proto,
                            "dataset": n,
                            "gain": held_out_gain(jt, chosen),
                        }  # fmt: skip
                    )
    return pd.DataFrame.from_records(records)


def costs(meas: dict[str, Measurements], repeats: int = 5) -> pd.DataFrame:
    """Median µs per chunk of the probe without and with the extended features."""
    from btune_wrap.data import rand_int

    cases = {"rand_int 40 KB": (rand_int(5000 * 64, seed=1).view(np.uint8).reshape(64, -1), 8,
                                40000)}  # fmt: skip
    for name, m in sorted(meas.items()):
        meta = m.meta
        src = open_source(meta["source"], chunks=meta["chunks"], blocks=meta["blocks"])
        nb = meta["chunk_nbytes"]
        bufs = [src.chunk(i) for i in range(min(src.nchunks, 16))]
        bufs = [b for b in bufs if b.nbytes == nb]
        cases[f"{name} {nb // 1024} KB"] = (np.stack(bufs), src.typesize, meta["blocksize"])
        # The same data in 40 KB chunks (blosc2's blocks for them).
        flat = np.concatenate(bufs)
        n40 = 40960 // src.typesize * src.typesize
        rows = flat[: flat.size // n40 * n40].reshape(-1, n40)
        cases[f"{name} 40 KB"] = (np.ascontiguousarray(rows), src.typesize, min(n40, 16384))
        src.close()
    records = []
    for case, (chunks, ts, bs) in cases.items():
        rec = {"case": case, "blocksize": bs}
        for label, extra in (("probe_us", False), ("probe_extra_us", True)):
            p = probe.ChunkProbe(chunks.shape[1], ts, bs, extra=extra)
            p.many(chunks[:1])
            runs = [statistics.median(p.many(chunks).elapsed) for _ in range(repeats)]
            rec[label] = min(runs) * 1e6
        records.append(rec)
    return pd.DataFrame.from_records(records)


def verify_throughput(models: Path, repeats: int = 3) -> pd.DataFrame:
    """Write throughput (MB/s, best of ``repeats``, default 3) of the Python engine with
    verification ``k`` = 1, 2, 3, beside ``blosc2.asarray`` with the category the model chose
    most, on the tutorial's data in 40 KB chunks, blosc2's default threads."""
    import blosc2

    from btune_wrap import BtuneConfig
    from btune_wrap.data import rand_int
    from btune_wrap.infer import compress
    from btune_wrap.model import load_engine_model

    records = []
    # rand_int only: on mixed, a model trained on rand_int picks zstd-bitshuffle-9 for half the
    # chunks (4 MB/s whatever the engine), which says nothing about verification.
    for name, data in (("rand_int", rand_int(2_000_000, seed=1)),):
        for mode in ("COMP", "DECOMP"):
            cfg = BtuneConfig(tradeoff=0.5, perf_mode=mode, models_dir=models, use_inference=-1)
            _, trace = compress(data, cfg, "python", chunks=(5000,))
            model = load_engine_model(models, mode)
            counts = np.bincount([i.category for i in trace.inferences])
            cat = model.categories[int(np.argmax(counts))]
            cp = cat.to_cparams(typesize=8, blocksize=0, nthreads=blosc2.nthreads)
            best = dict.fromkeys(("asarray", 1, 2, 3), np.inf)
            for _ in range(repeats):
                t0 = time.perf_counter()
                blosc2.asarray(data, cparams=cp, chunks=(5000,))
                best["asarray"] = min(best["asarray"], time.perf_counter() - t0)
                for k in (1, 2, 3):
                    t0 = time.perf_counter()
                    compress(data, cfg, "python", chunks=(5000,), verify=k)
                    best[k] = min(best[k], time.perf_counter() - t0)
            mb = data.nbytes / 1e6
            rec = {"data": name, "mode": mode, "fixed": cat.name}
            rec.update(
                {f"{k}_mbs" if k == "asarray" else f"k{k}_mbs": mb / v for k, v in best.items()}
            )
            records.append(rec)
    return pd.DataFrame.from_records(records)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meas", type=Path, required=True, help="directory of *.meas")
    p.add_argument("--k", type=int, default=5, help="neighbours of the kNN learner (5)")
    p.add_argument("--out", type=Path, default=Path("bench_out/features"))
    p.add_argument("--no-cost", action="store_true", help="skip the timing part")
    p.add_argument("--learner", choices=("knn", "net"), default="knn", help="learner (knn)")
    p.add_argument("--protocols", default="per-dataset,pooled,lodo", help="with --learner net")
    p.add_argument("--verify-models", type=Path, help="models directory: only measure the write "
                   "throughput of verification k = 1, 2, 3 with it")  # fmt: skip
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    meas = {
        d.name.removesuffix(".meas"): Measurements.load(d)
        for d in sorted(args.meas.iterdir())
        if d.name.endswith(".meas") and is_measurement_dir(d)
    }
    pd.set_option("display.width", 200)
    if args.verify_models is not None:
        table = verify_throughput(args.verify_models)
        table.to_csv(args.out / "verify_throughput.csv", index=False)
        print("\n== write throughput (MB/s, 40 KB chunks) with verification k = 1, 2, 3")
        print(table.round(0).to_string(index=False))
        return 0
    if args.learner == "net":
        ext = {n: with_extra(m, probe.EXTRA_WINDOW, probe.EXTRA_WINDOWS) for n, m in meas.items()}
        sets = {k: SETS[k] for k in ("plugin (cratio)", "+ typesize, kind")}
        sets["typesize, kind, filter probes"] = SETS["typesize, kind, filter probes"]
        table = evaluate_net(ext, sets, args.protocols.split(","))
        table.to_csv(args.out / "gain_net.csv", index=False)
        summary = table.pivot_table(index="set", columns=["protocol", "mode"], values="gain")
        print("\n== mean gain over datasets (network of train.fit)")
        print((summary.reindex(index=list(sets)) * 100).round(1).to_string())
        summary = table.pivot_table(
            index="set", columns=["protocol", "mode"], values=["gain", "gain_top2", "gain_top3"]
        )
        print("\n== verification: mean gain with the top 1 / 2 / 3 categories tried per chunk")
        print((summary.reindex(index=list(sets)) * 100).round(1).T.to_string())
        return 0
    for window, blocks in ((probe.EXTRA_WINDOW, probe.EXTRA_WINDOWS), (2048, 1), (512, 4)):
        t0 = time.perf_counter()
        data = {n: (m, chunk_table(m, window, blocks)) for n, m in meas.items()}
        table = evaluate_sets(data, args.k)
        table.to_csv(args.out / f"gain_w{window}_b{blocks}.csv", index=False)
        summary = table.pivot_table(index="set", columns=["protocol", "mode"], values="gain")
        summary = summary.reindex(index=list(SETS))
        took = time.perf_counter() - t0
        print(f"\n== mean gain over datasets (kNN k={args.k}); extended features from "
              f"{blocks} windows of {window} B spread over the chunk ({took:.0f} s)")  # fmt: skip
        print((summary * 100).round(1).to_string())
    if not args.no_cost:
        cost = costs(meas)
        cost["ratio"] = cost["probe_extra_us"] / cost["probe_us"]
        cost.to_csv(args.out / "cost.csv", index=False)
        print("\n== cost per chunk (median µs, best of 5 batches)")
        print(cost.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
