"""The ``btune`` command. The only module that knows about argparse and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .errors import BtuneWrapError

if TYPE_CHECKING:
    from .train import TrainConfig

#: Packages whose versions ``btune info`` reports.
_REPORTED = (
    "btune_wrap",
    "blosc2",
    "blosc2-btune",
    "numpy",
    "numba",
    "ai-edge-litert",
    "tensorflow",
    "keras",
    "pandas",
    "h5py",
    "zarr",
)


def _version(dist: str) -> str:
    from .runtime import installed_version

    return installed_version(dist) or "not installed"


# -- btune info ----------------------------------------------------------------------------


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, and whether the Btune plugin can run here")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from .plugin import plugin_support

    print(f"Python {platform.python_version()} on {platform.system()} {platform.machine()}")
    width = max(len(d) for d in _REPORTED)
    for dist in _REPORTED:
        print(f"  {dist:<{width}}  {_version(dist)}")
    from .config import GENERAL_MODEL_DIR

    support = plugin_support()
    state = "yes" if support.ok else "no"
    print(f"Btune plugin usable: {state}: {support.reason}")
    print(f"General model: {GENERAL_MODEL_DIR}")
    return 0


# -- btune demo ----------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the tutorial's main job on built-in data")
    p.add_argument("--output", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in data (default: 0)")
    p.add_argument(
        "--full",
        action="store_true",
        help="train on the tutorial's full training file (4000 chunks) instead of 600",
    )
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, seed=args.seed, full=args.full)
    return 0


# -- btune compress ------------------------------------------------------------------------


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers like 100,200")
    return shape


def _add_compress(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compress",
        help="write a Blosc2 array with a trained model choosing each chunk's parameters",
        description="Compress INPUT into OUTPUT (.b2nd) with the parameters a trained Btune "
        "model chooses for each chunk, through the plugin (native) or the Python engine. "
        "OUTPUT 'file.h5:/dataset' writes an HDF5 dataset (Python engine) whose chunks each "
        "carry their own Blosc2 parameters; read it with h5py after 'import hdf5plugin'.",
    )
    p.add_argument("input", metavar="INPUT", help="input array (.b2nd, .npy, file.h5:/ds, Zarr)")
    p.add_argument(
        "output",
        metavar="OUTPUT",
        help="output .b2nd file or file.h5:/dataset (written atomically)",
    )
    p.add_argument(
        "--models",
        help="models directory (model_comp.*, ...); default: the Python engine uses the general "
        "model shipped with btune_wrap (see 'btune info'), the plugin its genetic search",
    )
    p.add_argument("--tradeoff", type=float, default=0.5, help="0 = speed ... 1 = ratio (0.5)")
    p.add_argument(
        "--perf-mode",
        choices=("comp", "decomp", "balanced"),
        default="comp",
        help="optimise compression or decompression speed, or both (default: comp)",
    )
    p.add_argument(
        "--engine",
        choices=("native", "python"),
        help="the plugin (native) or the Python engine (default: the plugin where it can run)",
    )
    p.add_argument(
        "--use-inference",
        type=int,
        default=-1,
        metavar="N",
        help="-1: model on every chunk (default); N: first N chunks, then tweak; 0: no model",
    )
    p.add_argument("--chunks", type=_shape, help="chunk shape, e.g. 100,200 (default: blosc2's)")
    p.add_argument("--blocks", type=_shape, help="block shape (default: blosc2's)")
    p.add_argument("--nthreads", type=int, help="compression threads (default: blosc2's)")
    p.add_argument(
        "--verify",
        type=int,
        default=1,
        metavar="K",
        help="python engine: try the model's K best categories on each chunk and keep the best "
        "(each trial is a compression; worth it in decomp mode). Default 1: off",
    )
    _add_decide_every(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing OUTPUT file (the dataset only, in an HDF5 OUTPUT)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the per-chunk trace")
    p.set_defaults(func=_cmd_compress)


def _cmd_compress(args: argparse.Namespace) -> int:
    from .config import BtuneConfig
    from .infer import compress

    config = BtuneConfig(
        tradeoff=args.tradeoff,
        perf_mode=args.perf_mode,
        models_dir=args.models,
        use_inference=args.use_inference,
        trace=not args.quiet,
    )
    arr, trace = compress(
        args.input,
        config,
        args.engine,
        urlpath=args.output,
        chunks=args.chunks,
        blocks=args.blocks,
        nthreads=args.nthreads,
        echo=not args.quiet,
        force=args.force,
        verify=args.verify,
        decide_every=args.decide_every,
    )
    # The plugin's trace (and so its inference count) exists only when it was asked for.
    known = trace.engine == "python" or not args.quiet
    n = len(trace.inferences)
    counted = f", {n} inference{'' if n == 1 else 's'}" if known else ""
    stats = getattr(arr, "schunk", arr)  # an HDF5 output's H5Dataset has the same two fields
    print(
        f"Wrote {args.output}: shape {arr.shape}, {arr.dtype}, {stats.nchunks} chunks, "
        f"cratio {stats.cratio:.2f}x ({trace.engine} engine{counted})"
    )
    return 0


# -- btune evaluate ------------------------------------------------------------------------


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="how good a model is on measured data, next to the oracle, defaults and genetic",
        description="For every measured chunk and tradeoff 0, 0.1, ..., 1, compare the model's "
        "choice with the best measured category (oracle), the single best category for the "
        "whole dataset, genetic Btune and blosc2's defaults: mean regret, total ratio and "
        "speeds. Prints a table; --output also writes JSON, CSV and plots.",
    )
    p.add_argument("models", metavar="MODELS_DIR", help="models directory (model_comp.*, ...)")
    p.add_argument(
        "meas", metavar="MEAS_DIR", nargs="+", help="measurement directories (btune gather)"
    )
    p.add_argument(
        "--mode",
        choices=("comp", "decomp"),
        default="comp",
        help="speed that counts: compression or decompression (default: comp)",
    )
    p.add_argument(
        "--output", metavar="DIR", help="write evaluation.json, summary.csv and plots here"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --output directory")
    p.add_argument(
        "--no-genetic", action="store_true", help="leave out genetic Btune (the slowest method)"
    )
    _add_judged_model_options(p)
    _add_decide_every(p)
    p.set_defaults(func=_cmd_evaluate)


def _add_judged_model_options(p: argparse.ArgumentParser) -> None:
    """--model-format and --verify: which model evaluate judges, and how."""
    p.add_argument(
        "--model-format",
        choices=("engine", "plugin"),
        default="engine",
        help="judge the Python engine's model (the extended one where the directory has it; "
        "default) or the plugin-format model",
    )
    p.add_argument(
        "--verify",
        type=int,
        default=1,
        metavar="K",
        help="the engine's verification: try the model's K best categories per chunk, keep the "
        "best; in comp mode every trial's time counts (default 1: off)",
    )


def _add_decide_every(p: argparse.ArgumentParser) -> None:
    """--decide-every: the Python engine's groups of chunks that share one decision."""
    p.add_argument(
        "--decide-every",
        type=int,
        default=1,
        metavar="N",
        help="python engine: the model decides for the first chunk of every N consecutive "
        "chunks, the others take its choice: faster on small chunks, worse where consecutive "
        "chunks differ (default 1: every chunk)",
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import ALL_METHODS, Method, check_evaluation_output, evaluate

    if args.output is not None:
        check_evaluation_output(args.output, [args.models, *args.meas], force=args.force)
    methods = [m for m in ALL_METHODS if not (args.no_genetic and m is Method.GENETIC)]
    evaluation = evaluate(
        args.models,
        args.meas,
        args.mode,
        methods=methods,
        model_format=args.model_format,
        verify=args.verify,
        decide_every=args.decide_every,
    )
    print(evaluation.format())
    if args.output is not None:
        out = evaluation.save(args.output, force=args.force)
        print(f"Wrote {out}: {', '.join(sorted(f.name for f in out.iterdir()))}")
    return 0


# -- btune crossval ------------------------------------------------------------------------


def _add_crossval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crossval",
        help="train and evaluate leave-one-dataset-out (or even/odd chunks per dataset)",
        description="Cross-validate on several measurement directories (one per dataset). "
        "--protocol loo: for each dataset, models trained on all the others, evaluated on it "
        "(what the general model does on unseen data); even-odd: per dataset, trained on its "
        "even chunks, evaluated on its odd ones. Prints the mean gain = exp(J_oracle - J) - 1 "
        "per dataset, mode and method, and its mean.",
    )
    p.add_argument(
        "meas", metavar="MEAS_DIR", nargs="+", help="measurement directories (btune gather)"
    )
    p.add_argument(
        "--protocol",
        choices=("loo", "even-odd"),
        default="loo",
        help="leave one dataset out (default) or even/odd chunks per dataset",
    )
    p.add_argument("--mode", default="both", help="comp (c), decomp (d) or both (default: both)")
    p.add_argument(
        "--odd",
        action="store_true",
        help="loo: evaluate the left-out dataset's odd chunks only (the even-odd test chunks)",
    )
    p.add_argument(
        "--genetic", action="store_true", help="also evaluate genetic Btune (the slowest method)"
    )
    p.add_argument("--output", metavar="CSV", help="write the gain tables (both oracles) here")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    _add_judged_model_options(p)
    _add_train_options(p)
    p.set_defaults(func=_cmd_crossval)


def _cmd_crossval(args: argparse.Namespace) -> int:
    from .atomic import write_text
    from .crossval import DEFAULT_METHODS, crossval
    from .evaluate import Method
    from .outputs import check_output

    if args.output is not None:
        check_output(args.output, args.meas, force=args.force, name="output")
    methods = [*DEFAULT_METHODS, *([Method.GENETIC] if args.genetic else [])]
    progress = None if args.quiet else (lambda line: print(line, flush=True))
    result = crossval(
        args.meas,
        args.protocol,
        args.mode,
        _train_config(args),
        methods=methods,
        test_chunks="odd" if args.odd else "all",
        model_format=args.model_format,
        verify=args.verify,
        progress=progress,
    )
    print(result.format())
    if args.output is not None:
        import pandas as pd

        tables = [result.table(o).assign(oracle=o) for o in ("known", "measured")]
        write_text(args.output, pd.concat(tables).to_csv())
        print(f"Wrote {args.output}")
    return 0


# -- btune gather --------------------------------------------------------------------------


def _add_gather(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gather",
        help="measure the probe features and every category's cratio and speeds, per chunk",
        description="Measure every chunk of PATH: the features the Btune plugin computes at "
        "inference time, and the compressed size, compression and decompression times of "
        "every category. Writes PATH.meas/ (meta.json, chunks.parquet, results.parquet), the "
        "input of training.",
    )
    p.add_argument(
        "path", metavar="PATH", help="input: .b2nd/.b2frame, .npy, file.h5:/dataset, Zarr array"
    )
    p.add_argument("--output", help="measurement directory (default: PATH.meas next to PATH)")
    p.add_argument(
        "--categories",
        default="default",
        help="a named set: 'fast' (74: the tutorial's 32, blosc2's default, blosclz and lz4 at "
        "levels 1, 5, 9 never and always split, level 0 = stored as is; the default), "
        "'tutorial' (the tutorial's 32), 'split' (the 64 with 'always split' variants), 'wide' "
        "(138: every codec at levels 1, 5, 9, zstd also 3, 6, never and always split, blosc2's "
        "default, stored), 'default'; or names "
        "like lz4-shuffle-nosplit-5,zstd-bitshuffle-split-9 (default: default)",
    )
    p.add_argument("--chunks", type=_shape, help="chunk shape, e.g. 100,200 (default: blosc2's)")
    p.add_argument("--blocks", type=_shape, help="block shape (default: blosc2's)")
    p.add_argument("--max-chunks", type=int, metavar="N", help="measure only the first N chunks")
    p.add_argument("--sample", type=int, metavar="N", help="measure N chunks drawn at random")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default: 0)")
    p.add_argument(
        "--repeats", type=int, default=3, help="timings per operation, best kept (default: 3)"
    )
    p.add_argument(
        "--cheap-repeats",
        action="store_true",
        help="time each category once, then repeat (up to --repeats) only the compressions and "
        "decompressions whose time could still change a label (default: time every category "
        "--repeats times)",
    )
    p.add_argument("--nthreads", type=int, default=1, help="codec threads (default: 1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--cluster",
        metavar="SPEC",
        help="measure on Dask workers (pip install 'btune_wrap[cluster]'): 'local[:N]' starts N "
        "local worker processes (default N: the cores), 'tcp://HOST:PORT' uses a running "
        "scheduler; every worker must reach PATH at the same path and have the same versions",
    )
    where.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="use the running scheduler that 'dask scheduler --scheduler-file FILE' describes",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for the scheduler and a first worker (default: 10)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between checkpoints for --resume (default: 10)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue an interrupted gather from its checkpoint"
    )
    mode.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=_cmd_gather)


def _cmd_gather(args: argparse.Namespace) -> int:
    from .categories import CATEGORY_SETS

    text = args.categories.strip()
    categories = CATEGORY_SETS.get(text.lower()) or [n for n in text.split(",") if n.strip()]
    if args.cluster is None and args.scheduler_file is None:
        cluster = contextlib.nullcontext(None)
    else:
        from .cluster import connect

        cluster = connect(args.cluster, args.scheduler_file, timeout=args.connect_timeout)
    with cluster as client:
        meas = _run_gather(args, categories, client)
    return _report_gather(args, meas)


def _run_gather(args: argparse.Namespace, categories, client):
    from .measure import gather

    try:
        return gather(
            args.path,
            args.output,
            categories=categories,
            chunks=args.chunks,
            blocks=args.blocks,
            max_chunks=args.max_chunks,
            sample=args.sample,
            seed=args.seed,
            repeats=args.repeats,
            full_repeats=not args.cheap_repeats,
            nthreads=args.nthreads,
            resume=args.resume,
            force=args.force,
            progress=not args.quiet,
            checkpoint_every=args.checkpoint_every,
            client=client,
        )
    except KeyboardInterrupt:
        print(
            "btune gather: the chunks measured so far are kept; run again with --resume to "
            "continue",
            file=sys.stderr,
        )
        raise


def _report_gather(args: argparse.Namespace, meas) -> int:
    from .measurements import summarize

    if args.quiet:
        print(meas.path)
        return 0
    s = summarize(meas)
    spent = f" in {s.elapsed:.1f} s" if s.elapsed is not None else ""
    print(f"Wrote {meas.path}: {s.chunks} chunks x {s.categories} categories{spent}")
    for label, win in (
        ("best cratio", s.best_cratio),
        ("fastest compression", s.best_cspeed),
        ("fastest decompression", s.best_dspeed),
    ):
        print(f"  {label + ':':<23} {win.category} (best on {win.share:.0%} of the chunks)")
    return 0


# -- btune train (and training/training_chunk.py) ------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train per-mode models from measurements; export them where the plugin looks",
        description="Train the compression and/or decompression model on one or more "
        "measurement directories (made by 'btune gather', combined) and write "
        "model_comp.{tflite,json} / model_decomp.{tflite,json} into OUTPUT, with a training "
        "report (model_<mode>.report.json and .png plots).",
    )
    p.add_argument("meas_dirs", nargs="+", metavar="MEAS_DIR", help="measurement directories")
    p.add_argument("--output", required=True, help="models directory to create")
    p.add_argument("--mode", default="both", help="comp (c), decomp (d) or both (default: both)")
    p.add_argument(
        "--force", action="store_true", help="write into an existing OUTPUT, replacing files"
    )
    _add_train_options(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    return _run_train(args, args.meas_dirs, existing_dir=False)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    hidden = ",".join(str(h) for h in d.hidden)
    p.add_argument(
        "--hidden", type=_shape, help=f"hidden layer sizes, e.g. 64,64 (default: {hidden})"
    )
    p.add_argument("--epochs", type=int, help=f"most epochs (default: {d.epochs})")
    p.add_argument("--seed", type=int, help=f"seed of the split and weights (default: {d.seed})")
    p.add_argument(
        "--use-speed",
        action="store_true",
        help="let the network use the speed feature (default: cratio feature and tradeoff)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")


def _train_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The :class:`~btune_wrap.train.TrainConfig` of the training options, on top of ``base``
    (default ``TrainConfig()``)."""
    from .train import TrainConfig

    given = {"hidden": args.hidden, "epochs": args.epochs, "seed": args.seed}
    return dataclasses.replace(
        base or TrainConfig(),
        **{k: v for k, v in given.items() if v is not None},
        use_speed=args.use_speed,
    )


def _run_train(args: argparse.Namespace, meas_dirs: Sequence[str], *, existing_dir: bool) -> int:
    from .train import format_report, train_and_export

    config = _train_config(args)
    progress = None if args.quiet else (lambda line: print(line, flush=True))
    trained = train_and_export(
        meas_dirs,
        args.output,
        args.mode,
        config,
        force=args.force,
        existing_dir=existing_dir,
        progress=progress,
    )
    from .neighbors import NeighborsModel

    networks = [t for t in trained if not isinstance(t, NeighborsModel)]
    for t in trained:
        print()
        print(format_report(t, legend=t is networks[-1]))
    files = {True: ".json + .npz", False: ".tflite + .json"}
    written = ", ".join(f"{t.stem}{files[isinstance(t, NeighborsModel)]}" for t in trained)
    print(f"\nWrote {written} (and the networks' reports) to {args.output}")
    return 0


def training_chunk_main(argv: Sequence[str] | None = None) -> int:
    """``training/training_chunk.py c|d MEAS_ROOT MEAS_DIR...``: the tutorial's training command.

    MEAS_DIRs are relative to MEAS_ROOT; the models go to the current directory unless
    ``--output``. Returns the exit code (2 for bad input).
    """
    p = argparse.ArgumentParser(
        prog="training_chunk.py",
        description="Train the Btune model of one mode ('c'ompression or 'd'ecompression) on "
        "measurement directories; write model_comp.* or model_decomp.* (and the training "
        "report) to the current directory.",
    )
    p.add_argument("mode", metavar="MODE", help="c (comp), d (decomp) or both")
    p.add_argument("meas_root", metavar="MEAS_ROOT", help="directory the MEAS_DIRs are in")
    p.add_argument("meas_dirs", nargs="+", metavar="MEAS_DIR", help="measurement directories")
    p.add_argument("--output", default=".", help="models directory (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite existing model files")
    _add_train_options(p)
    _add_verbose(p)
    args = p.parse_args(argv)
    _set_verbose(args)
    from pathlib import Path

    dirs = [str(Path(args.meas_root) / d) for d in args.meas_dirs]
    return run_command("training_chunk.py", lambda: _run_train(args, dirs, existing_dir=True))


def train_general_main(argv: Sequence[str] | None = None) -> int:
    """``training/train_general.py [MEAS_DIR...]``: train the general model shipped with the
    package on the real-data corpus. Returns the exit code (2 for bad input)."""
    from pathlib import Path

    from .config import GENERAL_MODEL_DIR

    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(
        prog="train_general.py",
        description="Train the comp and decomp models on every chunk of the given measurement "
        "directories (default: the corpus gathers build/corpus-meas-full/*.meas made by "
        "benchmarks/bench_quality.py --full) and write them, with provenance.json, into the "
        "package (btune_wrap/models/general, i.e. btune_wrap.GENERAL_MODEL_DIR). The "
        "plugin-format networks are constant (the best category over the corpus at each "
        "tradeoff) and the Python engine's neighbours models keep every chunk and consult "
        "2 sqrt(n) of them by distance-weighted mean (btune_wrap.general.GENERAL_CONFIG).",
    )
    p.add_argument("meas_dirs", nargs="*", metavar="MEAS_DIR", help="measurement directories")
    p.add_argument("--output", default=str(GENERAL_MODEL_DIR), help="models directory")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    _add_train_options(p)
    _add_verbose(p)
    args = p.parse_args(argv)
    _set_verbose(args)
    dirs = args.meas_dirs or sorted(str(d) for d in root.glob("build/corpus-meas-full/*.meas"))

    def run() -> int:
        from .general import GENERAL_CONFIG, train_general

        progress = None if args.quiet else (lambda line: print(line, flush=True))
        config = _train_config(args, GENERAL_CONFIG)
        trained = train_general(dirs, args.output, config, force=args.force, progress=progress)
        chunks = trained[0].data.nchunks
        print(f"Wrote {args.output}: comp and decomp models, {len(dirs)} datasets, {chunks} chunks")
        return 0

    return run_command("train_general.py", run)


# -- entry point ---------------------------------------------------------------------------

#: In the order of the data's way: measure, train, use, evaluate; then the whole tutorial.
_SUBCOMMANDS = (
    _add_info,
    _add_gather,
    _add_train,
    _add_compress,
    _add_evaluate,
    _add_crossval,
    _add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="btune",
        description="Measure, train, run and evaluate Btune models for Blosc2.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    for command in sub.choices.values():
        _add_verbose(command)
    return parser


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler that makes SIGTERM stop a run as Ctrl-C does: temporaries removed,
    checkpoints kept."""
    raise KeyboardInterrupt


def run_command(
    prog: str, command: Callable[[], int | None], explain: Callable[[str], str] = str
) -> int:
    """Run one command as every script of btune_wrap does: SIGTERM stops it as Ctrl-C (exit
    130, temporaries removed); a :class:`BtuneWrapError` is printed as ``PROG: error: ...``
    (through ``explain``) with exit 2; otherwise the command's own exit code (None is 0)."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        return int(command() or 0)
    except BtuneWrapError as exc:
        print(f"{prog}: error: {explain(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was left half-written", file=sys.stderr)
        return 130


def with_flag(message: str, parser: argparse.ArgumentParser) -> str:
    """Prefix a library error that names an API argument (``nthreads=0 is invalid...``) with
    the command-line flag that set it (``--nthreads``), where the command has one."""
    match = re.match(r"(\w+)=", message)
    if match is None:
        return message
    flag = "--" + match.group(1).replace("_", "-")
    options = {o for action in parser._actions for o in action.option_strings}
    return f"{flag}: {message}" if flag in options else message


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show TensorFlow's and LiteRT's own log lines (hidden by default, and when "
        "TF_CPP_MIN_LOG_LEVEL is set)",
    )


def _set_verbose(args: argparse.Namespace) -> None:
    from . import quiet

    quiet.set_verbose(args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``btune`` command; returns the exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_verbose(args)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    return run_command(
        f"btune {args.command}", lambda: args.func(args), lambda msg: with_flag(msg, sub)
    )


if __name__ == "__main__":
    sys.exit(main())
