"""Write the tutorial's rand_int dataset as a Blosc2 NDArray, tuned by Btune when asked.

As in the Btune tutorial, the plugin is driven by the environment:

    BTUNE_TRACE=1 BTUNE_TRADEOFF=0.5 BTUNE_PERF_MODE=COMP python inference/rand_int.py

writes ``rand_int_inference.b2nd`` (1e5 int64) and prints the plugin's banner and per-chunk
trace table; ``-t`` writes the training file ``rand_int_training.b2nd`` (2e7 int64) instead.
With trained models (``BTUNE_MODELS_DIR=dir BTUNE_USE_INFERENCE=-1|0|N``) each chunk's
parameters come from the model; ``--engine python`` makes the same decisions without the
plugin (on any blosc2), ``--engine native`` insists on the plugin; by default the plugin is
used where it can run. With no ``BTUNE_*`` variable set the array is written with blosc2's
default parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from btune_wrap import BtuneConfig
from btune_wrap.cli import run_command
from btune_wrap.compressor import write_array
from btune_wrap.data import (
    RAND_INT_CHUNKS,
    RAND_INT_INFERENCE_SIZE,
    RAND_INT_TRAINING_SIZE,
    rand_int,
)
from btune_wrap.infer import compress
from btune_wrap.outputs import check_output
from btune_wrap.parse import parse_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "-t",
        "--training",
        action="store_true",
        help=f"write the training file ({RAND_INT_TRAINING_SIZE:.0e} elements) instead",
    )
    p.add_argument("--size", type=int, help="number of int64 elements (default: 1e5, 2e7 with -t)")
    p.add_argument(
        "--chunks", type=int, default=RAND_INT_CHUNKS[0], help="elements per chunk (default: 5000)"
    )
    p.add_argument("--seed", type=int, help="random seed (default: fresh data)")
    p.add_argument("--output", help="output path (default: rand_int_{inference,training}.b2nd)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--engine",
        choices=("native", "python"),
        help="who applies Btune: the plugin (native) or the Python engine "
        "(default: the plugin where it can run, else python)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("rand_int.py", lambda: write(args))


def write(args: argparse.Namespace) -> int:
    """Write the array as the options say; print what was written."""
    kind = "training" if args.training else "inference"
    default = RAND_INT_TRAINING_SIZE if args.training else RAND_INT_INFERENCE_SIZE
    size = parse_int("--size", default if args.size is None else args.size, 1)
    output = args.output or f"rand_int_{kind}.b2nd"
    # An array smaller than one chunk is one chunk (blosc2 refuses a larger chunk for size 1).
    chunks = (min(parse_int("--chunks", args.chunks, 1), size),)
    check_output(output, force=args.force, name="--output")
    print(f"Creating data for {kind} purposes...", flush=True)
    data = rand_int(size, seed=args.seed)
    use_btune = args.engine is not None or any(n.startswith("BTUNE_") for n in os.environ)
    t0 = time.perf_counter()
    if use_btune:
        config = BtuneConfig.from_env()
        arr, trace = compress(
            data, config, args.engine, urlpath=output, chunks=chunks, echo=True, force=args.force
        )
    else:
        import blosc2

        with write_array(output) as where:
            blosc2.asarray(data, chunks=chunks, **where)
        arr, trace = blosc2.open(output), None
    elapsed = time.perf_counter() - t0
    print(
        f"NDArray '{output}' created! ({arr.schunk.nchunks} chunks, "
        f"cratio {arr.schunk.cratio:.2f}x, {elapsed:.2f} s)"
    )
    if trace is not None and trace.rows:
        winner = trace.winners[-1] if trace.winners else trace.rows[-1]
        print(
            f"Btune ({trace.engine} engine): {len(trace.rows)} steps, "
            f"{len(trace.inferences)} inferences, {len(trace.winners)} winners; last winner: "
            f"{winner.codec} filter={winner.filter} split={winner.split} "
            f"clevel={winner.clevel} (cratio {winner.cratio:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
