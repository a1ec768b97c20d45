"""Training quality and cost, measured in one run (a script, not a test).

1. **End to end** on the tutorial's ``rand_int`` training data (a sample: ``--chunks`` chunks
   of 5000 int64, default 800) and on a mixed dataset (four kinds of int64 series, one per
   chunk, default 600 chunks): the gather's time, each model's training time, and per tradeoff
   the test chunks' mean regret and top-1 accuracy of the comp and decomp models with the
   default :class:`~btune_wrap.train.TrainConfig`, next to the regret of always choosing the
   single category best on the training chunks ("fixed"). Target: test mean regret <= 5% at
   every tradeoff.
2. **Model choice** (``--sweep``, on the mixed data, seeds 0, 1 and 2): hidden layer sizes,
   hard or soft targets, with or without the speed feature. For each: epochs, training time,
   mean and worst-tradeoff test regret, and the test regret when the speed feature is
   re-measured by a probe-only pass over the same chunks (as the Python engine computes it):
   the same cratio feature, a speed feature of another level. That column shows how much a
   model depends on the speed feature's level.

Usage::

    .venv/bin/python benchmarks/bench_train.py [--chunks 800] [--mixed-chunks 600] [--sweep]
        [--output bench_out/train]

Gathers are kept in the output directory and reused by later runs (delete it to re-measure).
Timings on a shared 2-core machine are noisy; the regret figures are not timings of this run
but come from the measured chunks (the regret of a choice is ``1 - exp(J - J_best)``, see
``btune_wrap.objective``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import blosc2
import numpy as np

from btune_wrap import measure, measurements
from btune_wrap import train as tr
from btune_wrap.data import mixed_int, rand_int

TARGET = 0.05


def gathered(name: str, data: np.ndarray, out: Path) -> tuple[measurements.Measurements, float]:
    """The gather of ``data`` (chunks of 5000), made once and reused; returns it and its time
    (0 when reused)."""
    meas_dir = out / f"{name}.b2nd.meas"
    if meas_dir.is_dir():
        meas = measurements.Measurements.load(meas_dir)
        if meas.nchunks == data.size // 5000:
            return meas, 0.0
    source = out / f"{name}.b2nd"
    blosc2.asarray(data, urlpath=str(source), mode="w", chunks=(5000,))
    t0 = time.perf_counter()
    meas = measure.gather(source, meas_dir, progress=False, force=True)
    return meas, time.perf_counter() - t0


def per_tradeoff(trained: tr.TrainedModel) -> dict[str, list[float]]:
    s = trained.scores[trained.scores["split"] == "test"]
    return {
        "tradeoff": s["tradeoff"].tolist(),
        "regret": s["mean_regret"].tolist(),
        "top1": s["top1"].tolist(),
        "fixed": s["fixed_regret"].tolist(),
    }


def end_to_end(name: str, data: np.ndarray, out: Path) -> dict[str, object]:
    meas, t_gather = gathered(name, data, out)
    result: dict[str, object] = {"chunks": meas.nchunks, "gather_s": t_gather}
    for mode in ("comp", "decomp"):
        t0 = time.perf_counter()
        trained = tr.fit(meas, mode)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        tr.export(trained, out / f"{name}.model", force=True)
        result[mode] = {
            "fit_s": t_fit,
            "export_s": time.perf_counter() - t0,
            "epochs": len(trained.history["loss"]),
            **per_tradeoff(trained),
        }
    return result


def print_end_to_end(name: str, res: dict) -> None:
    gather = f"gather {res['gather_s']:.1f} s" if res["gather_s"] else "gather reused"
    fits = ", ".join(
        f"{m} fit {res[m]['fit_s']:.1f} s ({res[m]['epochs']} epochs) + export "
        f"{res[m]['export_s']:.1f} s"
        for m in ("comp", "decomp")
    )
    print(f"\n== {name}: {res['chunks']} chunks; {gather}; {fits}")
    print(
        f"{'tradeoff':>8} | {'comp regret':>11} {'top-1':>6} {'fixed':>6} | "
        f"{'decomp regret':>13} {'top-1':>6} {'fixed':>6}"
    )
    c, d = res["comp"], res["decomp"]
    for i, t in enumerate(c["tradeoff"]):
        print(
            f"{t:>8.1f} | {c['regret'][i]:>11.2%} {c['top1'][i]:>6.1%} {c['fixed'][i]:>6.2%} | "
            f"{d['regret'][i]:>13.2%} {d['top1'][i]:>6.1%} {d['fixed'][i]:>6.2%}"
        )
    worst = max(max(c["regret"]), max(d["regret"]))
    verdict = "met" if worst <= TARGET else "NOT met"
    print(f"worst test mean regret over tradeoffs and modes: {worst:.2%} (target 5%: {verdict})")


def probe_only_features(source: Path, nchunks: int) -> np.ndarray:
    """The features of each chunk from a pass that only probes (no codec runs in between)."""
    from btune_wrap.probe import chunk_features
    from btune_wrap.sources import open_source

    with open_source(source) as src:
        feats = [
            chunk_features(src.chunk(i), src.typesize, src.chunk_blocksize(i))
            for i in range(nchunks)
        ]
    return np.array([[f.cratio, f.speed] for f in feats])


def sweep(
    meas: measurements.Measurements, shifted: np.ndarray, seeds: tuple[int, ...] = (0, 1, 2)
) -> list[dict[str, object]]:
    """Each variant trained with each seed (another split and other initial weights)."""
    variants = [
        ("(16,)", {"hidden": (16,)}),
        ("(32, 32)", {"hidden": (32, 32)}),
        ("(64, 64) [default]", {"hidden": (64, 64)}),
        ("(128, 128, 64)", {"hidden": (128, 128, 64)}),
        ("(64, 64) soft T=0.05", {"hidden": (64, 64), "temperature": 0.05}),
        ("(32, 32) +speed", {"hidden": (32, 32), "use_speed": True}),
        ("(64, 64) +speed", {"hidden": (64, 64), "use_speed": True}),
    ]
    rows = []
    for label, kw in variants:
        for mode in ("comp", "decomp"):
            runs = []
            for seed in seeds:
                t0 = time.perf_counter()
                trained = tr.fit(meas, mode, tr.TrainConfig(**kw, seed=seed))
                elapsed = time.perf_counter() - t0
                test = trained.split["test"]
                s = per_tradeoff(trained)
                x = tr.inputs(trained.meta, shifted, trained.data.tradeoffs)[:, test]
                chosen = trained.scores_of(x.reshape(-1, 3)).argmax(axis=1).reshape(x.shape[:2])
                runs.append(
                    (
                        len(trained.history["loss"]),
                        elapsed,
                        np.mean(s["regret"]),
                        np.max(s["regret"]),
                        np.mean(s["top1"]),
                        trained.data.regret(chosen, test).mean(),
                    )
                )
            r = np.array(runs)
            rows.append(
                {
                    "variant": label,
                    "mode": mode,
                    "seeds": list(seeds),
                    "epochs": float(r[:, 0].mean()),
                    "fit_s": float(r[:, 1].mean()),
                    "mean_regret": float(r[:, 2].mean()),
                    "worst_regret": float(r[:, 3].max()),
                    "top1": float(r[:, 4].mean()),
                    "shifted_regret": float(r[:, 5].mean()),
                }
            )
            row = rows[-1]
            print(
                f"{label:<22} {mode:<6} {row['epochs']:>6.0f} {row['fit_s']:>6.1f} "
                f"{row['mean_regret']:>10.2%} {row['worst_regret']:>10.2%} {row['top1']:>6.1%} "
                f"{row['shifted_regret']:>14.2%}",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=800, help="rand_int chunks (default: 800)")
    p.add_argument("--mixed-chunks", type=int, default=600, help="mixed chunks (default: 600)")
    p.add_argument("--sweep", action="store_true", help="also compare model choices")
    p.add_argument("--output", default="bench_out/train", help="work directory")
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    t_all = time.perf_counter()
    for name, data in (
        ("rand_int", rand_int(args.chunks * 5000, seed=0)),
        ("mixed", mixed_int(args.mixed_chunks, seed=0)),
    ):
        t0 = time.perf_counter()
        results[name] = end_to_end(name, data, out)
        results[name]["end_to_end_s"] = time.perf_counter() - t0
        print_end_to_end(name, results[name])
        print(f"end to end (gather + both models): {results[name]['end_to_end_s']:.1f} s")
    if args.sweep:
        meas = measurements.Measurements.load(out / "mixed.b2nd.meas")
        shifted = probe_only_features(out / "mixed.b2nd", meas.nchunks)
        ratio = np.median(shifted[:, 1]) / np.median(meas.features()[:, 1])
        print(
            f"\n== model choice on mixed ({meas.nchunks} chunks); probe-only speed feature: "
            f"median x{ratio:.1f} the gathered one, cratio feature identical: "
            f"{np.array_equal(shifted[:, 0], meas.features()[:, 0])}"
        )
        print(
            "means over seeds 0, 1, 2 (worst t: the highest per-tradeoff test regret of any "
            "seed; shifted speed: test regret with the probe-only speed feature)"
        )
        print(
            f"{'variant':<22} {'mode':<6} {'epochs':>6} {'fit s':>6} {'mean regr':>10} "
            f"{'worst t':>10} {'top-1':>6} {'shifted speed':>14}"
        )
        results["sweep"] = sweep(meas, shifted)
    (out / "bench_train.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{time.perf_counter() - t_all:.0f} s in all; figures in {out / 'bench_train.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
