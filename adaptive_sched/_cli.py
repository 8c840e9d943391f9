"""The ``adaptive-sched`` console script: ``bench`` (the main job) and ``sweep``.

Each subcommand lives in its own module, imported only when it runs, so
``adaptive-sched --help`` is fast and needs no optional framework.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). The module provides add_arguments(parser) and run(args) -> int.
_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": (
        "adaptive_sched.bench._cli",
        "benchmark the adaptive schedules against constant, cosine, one-cycle, plateau and lr-free peers",
    ),
    "sweep": (
        "adaptive_sched._sweep_cli",
        "sweep scheduler knobs x seeds of a bench task as one compiled program",
    ),
}


def output_dir(text: str) -> pathlib.Path:
    """argparse type for ``--out``: a directory that exists or can be created (not an existing file)."""
    path = pathlib.Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"--out={text!r} exists and is not a directory")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptive-sched",
        description="Signal-driven learning-rate and momentum control: benchmarks and sweeps.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(_COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
