"""What several benchmarks share: the models they run with (trained once into the work
directory when not given)."""

from __future__ import annotations

import argparse
from pathlib import Path


def models_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """``--models``, ``--repeats`` (default ``repeats``) and ``--out``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", type=Path, help="models directory (default: train small ones)")
    p.add_argument(
        "--repeats", type=int, default=repeats, help=f"timings per case, best kept ({repeats})"
    )
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="work directory")
    return p


def ensure_models(args: argparse.Namespace) -> Path:
    """``args.models``, or small models trained on the tutorial's data into ``args.out``."""
    if args.models is not None:
        return args.models
    models = args.out / "models"
    if not (models / "model_comp.tflite").exists():
        from btune_wrap.data import rand_int
        from btune_wrap.demo import train_models

        print(f"Training small models into {models} ...", flush=True)
        train_models(rand_int(600 * 5000, seed=42), args.out, models)
    return models
