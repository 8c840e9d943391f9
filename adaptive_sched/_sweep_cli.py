"""``adaptive-sched sweep``: sweep scheduler knobs x seeds of a bench task as one compiled program.

Example::

    adaptive-sched sweep --task digits-mlp --grid trend_up=1.01,1.05,1.1 \\
        --grid ema_beta=0.5,0.9 --seeds 5 --steps 300 --top 5 --out sweep-results

prints the best configs with their scores, and writes ``sweep.csv`` (one row per
config and seed) and, for two-knob grids, ``heatmap.png`` into ``--out``.
Compiled programs are kept in JAX's persistent compilation cache, so a repeated
sweep skips compilation (``--no-compile-cache`` to opt out; see
:mod:`adaptive_sched.bench._compile_cache`).

This module imports nothing heavy at import time (it is imported to build
``adaptive-sched --help``); JAX, optax and the tasks load in :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from adaptive_sched._cli import output_dir

_OPTIMIZERS = ("adam", "adamw", "sgd")
_DEFAULT_RULES = {"lr_rule": "trend"}


def _value(text: str) -> Any:
    """A number if ``text`` parses as one, else the string (a rule name)."""
    try:
        return float(text)
    except ValueError:
        return text


def _grid_arg(text: str) -> tuple[str, list[Any]]:
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form KNOB=V1,V2,...")
    return name.strip(), [_value(v.strip()) for v in values.split(",") if v.strip()]


def _set_arg(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form FIELD=VALUE")
    return name.strip(), _value(value.strip())


def _memory_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of bytes nor 'auto'") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` subcommand's options to ``parser``."""
    parser.add_argument("--task", required=True, help="bench task to train (e.g. digits-mlp; see `adaptive-sched bench`)")
    parser.add_argument(
        "--grid",
        action="append",
        type=_grid_arg,
        default=[],
        metavar="KNOB=V1,V2,...",
        help="a Config knob and its values (repeat for a product grid); rule knobs take rule names, "
        "e.g. --grid lr_rule=trend,variance",
    )
    parser.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="FIELD=VALUE",
        help="a base Config field (repeatable); defaults: lr_rule=trend and base_lr=the task's lr",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per config (0..N-1); default 3")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the task's)")
    parser.add_argument("--size", default="default", help="task size: tiny, quick, default or full")
    parser.add_argument("--optimizer", choices=_OPTIMIZERS, default="adam", help="optax optimizer; default adam")
    parser.add_argument("--top", type=int, default=5, help="how many of the best configs to print; default 5")
    parser.add_argument(
        "--out", type=output_dir, default="sweep-results", help="output directory; default ./sweep-results"
    )
    parser.add_argument("--chunk-size", type=int, default=None, help="configs per compiled call (default: all)")
    parser.add_argument(
        "--memory-budget",
        type=_memory_arg,
        default=None,
        help="bytes per device a chunk may use, or 'auto' (estimated from XLA's memory analysis)",
    )
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (default: on, in $XDG_CACHE_HOME/adaptive-sched/jax "
        "or ~/.cache/adaptive-sched/jax; ADAPTIVE_SCHED_COMPILE_CACHE=DIR or =off overrides)",
    )


def _error(message: str) -> int:
    print(f"adaptive-sched sweep: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the sweep described by ``args``; print the best configs; write the CSV and heatmap."""
    from adaptive_sched._config import Config, numeric_fields, rule_fields
    from adaptive_sched._sweep import config_grid

    grid: dict[str, list[Any]] = {}
    for name, values in args.grid:
        if name in grid:
            return _error(f"--grid {name}=... is given twice; give all its values in one --grid.")
        grid[name] = values
    if not grid:
        return _error("give at least one --grid KNOB=V1,V2,...")
    sets = dict(_DEFAULT_RULES, **dict(args.set))
    fields = (*rule_fields(), *numeric_fields())
    unknown = [name for name in sets if name not in fields]
    if unknown:
        return _error(f"unknown Config field {unknown[0]!r} in --set; fields are: {', '.join(fields)}.")
    for name, value in (("--seeds", args.seeds), ("--top", args.top)):
        if value < 1:
            return _error(f"{name}={value} is invalid: must be >= 1.")
    try:
        config_grid(Config(**sets), grid)  # fail fast, before the task loads its data
    except (TypeError, ValueError) as err:
        return _error(str(err))

    from adaptive_sched.bench import _compile_cache

    cache_dir = _compile_cache.configure(enabled=not args.no_compile_cache)  # before anything compiles

    import jax.numpy as jnp
    import optax

    import adaptive_sched
    from adaptive_sched._sweep import sweep
    from adaptive_sched.bench._tasks import get_task

    try:
        task = get_task(args.task, args.size)
        base = Config(**{"base_lr": task.base_lr, **sets})
    except (TypeError, ValueError) as err:
        return _error(str(err))
    steps = task.steps if args.steps is None else args.steps
    factory = getattr(optax, args.optimizer)
    metric = task.metric_name

    def train(config: Config, key: Any) -> dict[str, Any]:
        tx = adaptive_sched.optax.inject_hyperparams(factory, config)()
        out = task.run(tx, key, steps=steps)
        tail = max(1, steps // 10)
        return {
            metric: out["metric"],
            "train_loss_last10pct": jnp.mean(out["loss"][-tail:]),
            "final_lr": out["lr"][-1],
        }

    try:
        with _compile_cache.counting(cache_dir) as cache:
            result = sweep(
                train,
                base,
                grid,
                seeds=args.seeds,
                chunk_size=args.chunk_size,
                memory_budget=args.memory_budget,
            )
    except (TypeError, ValueError) as err:
        return _error(str(err))

    n_cfg, n_seed = len(result.configs), len(result.seeds)
    compile_s = sum(g.compile_seconds for g in result.groups)
    run_s = sum(g.run_seconds for g in result.groups)
    direction = "higher" if task.higher_is_better else "lower"
    print(
        f"{task.name} (size {task.size}, {steps} steps, {args.optimizer}): {n_cfg} configs x {n_seed} seeds = "
        f"{n_cfg * n_seed} runs in {len(result.groups)} compiled program(s); "
        f"compile {compile_s:.1f} s, run {run_s:.1f} s"
    )
    print(cache.describe())
    best = result.best(min(args.top, n_cfg), key=metric, higher_is_better=task.higher_is_better)
    cols = [*result.knobs, f"{metric}_mean", f"{metric}_std"]
    print(f"best {len(best)} by {metric} ({direction} is better; mean and std over {n_seed} seeds):")
    print(best[cols].reset_index().to_string(index=False, float_format=lambda v: f"{v:.6g}"))

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "sweep.csv")
    result.to_csv(csv_path)
    written = [csv_path]
    if sum(len(v) > 1 for v in result.grid_values.values()) == 2:
        png = os.path.join(args.out, "heatmap.png")
        result.heatmap(
            png,
            key=metric,
            higher_is_better=task.higher_is_better,
            title=f"{task.name}: {metric} ({direction} is better), {steps} steps",
        )
        written.append(png)
    else:
        print("(no heatmap: it needs exactly two --grid knobs with several values)")
    print("wrote " + ", ".join(written))
    return 0
