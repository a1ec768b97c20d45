"""The ``btune`` command. The only module that knows about argparse and exit codes."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
from collections.abc import Sequence

from .errors import BtuneWrapError

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
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


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
    support = plugin_support()
    state = "yes" if support.ok else "no"
    print(f"Btune plugin usable: {state}: {support.reason}")
    return 0


# -- btune demo ----------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the tutorial's main job on built-in data")
    p.add_argument("--output", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in data (default: 0)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, seed=args.seed)
    return 0


# -- entry point ---------------------------------------------------------------------------

_SUBCOMMANDS = (_add_info, _add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="btune",
        description="Measure, train, run and evaluate Btune models for Blosc2.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``btune`` command; returns the exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BtuneWrapError as exc:
        print(f"btune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"btune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
