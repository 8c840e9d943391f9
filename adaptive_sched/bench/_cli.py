"""``adaptive-sched bench``: argument parsing and the run (heavy imports happen inside ``run``)."""

from __future__ import annotations

import argparse
import pathlib
import sys

from adaptive_sched._cli import output_dir

__all__ = ["add_arguments", "run"]

# Kept in step with adaptive_sched.bench._tasks.TASK_NAMES (a test checks); importing
# _tasks here would import JAX just to build ``--help``.
_TASK_NAMES: tuple[str, ...] = ("digits-mlp", "logreg", "char-lm", "rl-sentiment", "rl-length")
_DEFAULT_SEEDS = {"quick": 3, "default": 5, "full": 10}


def _task_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--tasks needs at least one task name")
    bad = [n for n in names if n not in _TASK_NAMES]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown task(s) {', '.join(bad)}; choose from {', '.join(_TASK_NAMES)}"
        )
    return list(dict.fromkeys(names))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds={text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--seeds={value} is invalid: must be >= 1")
    return value


def _full_help() -> str:
    """What ``--full`` runs, from the task sizes (``_data`` is NumPy only: no JAX for ``--help``)."""
    from adaptive_sched.bench import _data

    d, lr, lm, rl = _data.DIGITS_SIZES, _data.LOGREG_SIZES, _data.LM_SIZES, _data.RL_SIZES
    return (
        f"a longer run, 10 seeds by default: {d['full']['steps']} steps on digits-mlp (default "
        f"{d['default']['steps']}), {lr['full']['steps']} on logreg (default {lr['default']['steps']}), "
        f"{lm['full']['steps']} on char-lm (default {lm['default']['steps']}) with a larger GRU (hidden "
        f"{lm['full']['hidden']}, batch {lm['full']['batch']}), {rl['full']['steps']} per RL task (default "
        f"{rl['default']['steps']}); where a horizon-free rule should gain. "
        f"{_FULL_TIME}"
    )


_FULL_TIME = (
    "Measured: about 6 minutes on 2 CPU cores with --seeds 3 --no-torch; with the default 10 seeds about 20 "
    "(estimated: the run time grows about linearly with the seeds)."
)
"""How long ``--full`` takes (measured once on the project's 2-core machine; keep in step with the README)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``."""
    parser.description = (
        "Train small offline tasks (sklearn digits MLP, logistic regression, a char-level GRU "
        "language model on stdlib docstrings, and RL fine-tuning of that model for sentiment and "
        "length) with our presets (the recommended configuration with and without the run's length) "
        "and with constant, cosine, one-cycle, reduce-on-plateau, "
        "prodigy and schedule-free, every method at base lr x {0.1, 0.3, 1, 3, 10} over several "
        "seeds (vmapped in one compiled program per task), plus a torch mirror when torch is "
        "installed. Writes report.md, results.json and PNG figures. The default run takes a few "
        "minutes on 2 CPU cores."
    )
    parser.add_argument(
        "--out",
        type=output_dir,
        default=pathlib.Path("adaptive-sched-bench"),
        help="output directory, created if needed; report files in it are overwritten "
        "(default: ./adaptive-sched-bench)",
    )
    parser.add_argument(
        "--tasks",
        type=_task_list,
        default=list(_TASK_NAMES),
        metavar="NAMES",
        help=f"comma-separated tasks to run, from: {', '.join(_TASK_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="seeds per method and lr (default: 5; 3 with --quick, 10 with --full)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="a much smaller run (smaller models, fewer steps; for tests and a first look)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help=_full_help(),
    )
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="skip the torch mirror (it also skips itself, saying why, when torch or the "
        "torch adapter cannot be imported)",
    )
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (default: on, so a repeated run loads its "
        "compiled programs instead of compiling them; kept in $XDG_CACHE_HOME/adaptive-sched/jax or "
        "~/.cache/adaptive-sched/jax; ADAPTIVE_SCHED_COMPILE_CACHE=DIR or =off overrides)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args``; returns the exit status."""
    size = "quick" if args.quick else "full" if args.full else "default"
    seeds = args.seeds if args.seeds is not None else _DEFAULT_SEEDS[size]
    from adaptive_sched.bench import _compile_cache

    cache_dir = _compile_cache.configure(enabled=not args.no_compile_cache)  # before anything compiles
    from adaptive_sched.bench._main import run_bench

    with _compile_cache.counting(cache_dir) as cache:
        done = run_bench(
            out_dir=args.out,
            task_names=list(args.tasks),
            seeds=seeds,
            size=size,
            torch_mirror=not args.no_torch,
            compile_cache=cache,
        )
    print(done.report, file=sys.stdout)
    print(done.describe(), file=sys.stdout)
    return 0
