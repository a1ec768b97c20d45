"""The general model: trained on a whole corpus of datasets, shipped with the package.

:func:`train_general` trains the comp and decomp models on every chunk of every measurement
directory given (``training/train_general.py`` runs it on the real-data corpus of
``benchmarks/corpus.py``), reproducibly from :attr:`TrainConfig.seed
<btune_wrap.train.TrainConfig.seed>`, and writes the models directory
(:data:`btune_wrap.GENERAL_MODEL_DIR` by default): every model file
:func:`btune_wrap.train.export` writes except the plots, plus ``provenance.json`` (the
datasets and their chunk counts, the training configuration, versions, date). How well it
does on data it never saw is measured leave-one-dataset-out (:mod:`btune_wrap.crossval`,
``benchmarks/bench_quality.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_dir
from .config import GENERAL_MODEL_DIR
from .measurements import load_many
from .outputs import check_output
from .plugin import installed_version
from .train import TrainConfig, TrainedModel, fit_table, train_and_export

if TYPE_CHECKING:
    from .config import PerfMode
    from .measurements import Measurements
    from .neighbors import NeighborsModel

PROVENANCE_FILE = "provenance.json"
#: How the general model trains by default: seed 0, and the plugin-format network *constant*
#: (the category best on average over the corpus at each tradeoff; the extended neighbours
#: model is unchanged). Measured leave one array out on the corpus (74 categories,
#: ``benchmarks/bench_quality.py``, ``general_plugin``): the network of the plugin's cratio
#: feature chose 1495% / 432% worse than the per-chunk best (COMP / DECOMP; it stored chunks as
#: is where they compressed 30x), the constant one 62% / 53%: on data of a kind it has not
#: seen, one number about the chunk misleads more than it tells.
#:
#: Its neighbours model consults twice as many chunks as a user's (35 of 312, by
#: distance-weighted mean): leave one array out, 11.4% / 12.8% so (the land mask 65% / 60%,
#: decided by MRI chunks the features cannot tell from it), 20.1% / 15.9% with 18 plain
#: neighbours of seven features (the land mask 125% / 71%). Three times (10.4% / 11.4%) cost
#: word_counts 6 points and made ``make demo``'s general rows choose zstd without shuffle on
#: int64 (3.54x against 4.30x). Caveat: the factor was chosen with the land mask's fold in
#: view; chosen within each fold on the other arrays alone, 1.5 to 3 won in 9 folds of 10,
#: but the land mask's own fold kept 1 (and 126% / 73%).
GENERAL_CONFIG = TrainConfig(constant=True, neighbors_scale=2.0)


def general_neighbors(
    measurements: Sequence[Measurements], mode: str | PerfMode, features: Sequence[str]
) -> NeighborsModel:
    """The neighbours model :data:`GENERAL_CONFIG` trains on ``measurements`` (several arrays'
    chunks) with ``features``: what cross validation and the benchmarks give a model of one
    array as its fallback in place of the shipped general model, which has seen that array."""
    recipe = dataclasses.replace(GENERAL_CONFIG, features=tuple(features))
    return fit_table(measurements, mode, recipe, prior=0.0)


#: Files of a trained models directory left out of the package (plots).
_LEFT_OUT = (".png",)


def is_general_dir(path: Path) -> bool:
    """Whether ``path`` is a directory :func:`train_general` wrote."""
    return (Path(path) / PROVENANCE_FILE).is_file()


def train_general(
    meas_dirs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] = GENERAL_MODEL_DIR,
    config: TrainConfig | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[TrainedModel]:
    """Train the comp and decomp models on all of ``meas_dirs`` and write them to ``output``.

    Parameters
    ----------
    meas_dirs
        Measurement directories (one category set), combined.
    output
        The models directory; default :data:`btune_wrap.GENERAL_MODEL_DIR`. An existing one is
        replaced (whole, atomically) only with ``force``, and only if this function wrote it.
    config
        How to train; default :data:`GENERAL_CONFIG`.
    force
        Replace an existing ``output``. Default False.
    progress
        Called with training progress lines; ``None`` (default) is silent.
    """
    config = config or GENERAL_CONFIG
    output = check_output(output, meas_dirs, force=force, owned=is_general_dir)
    loaded = load_many(list(meas_dirs))
    with tempfile.TemporaryDirectory(prefix="btune-general-") as tmp:
        trained = train_and_export(
            meas_dirs, Path(tmp) / "models", "both", config, progress=progress
        )
        with atomic_dir(output) as out:
            for f in sorted((Path(tmp) / "models").iterdir()):
                if f.suffix not in _LEFT_OUT:
                    shutil.copy2(f, out / f.name)
            doc = {
                "datasets": {m.name: m.nchunks for m in loaded},
                "chunks": sum(m.nchunks for m in loaded),
                "categories": [c.name for c in loaded[0].categories],
                "config": asdict(config),
                "versions": {
                    d: installed_version(d)
                    for d in ("btune_wrap", "blosc2", "tensorflow", "keras", "numpy")
                },
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            (out / PROVENANCE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    return trained
