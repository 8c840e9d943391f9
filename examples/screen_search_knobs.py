"""Screen knob variants of :func:`adaptive_sched.recommended` at the base lr, on bench and held-out tasks.

How the defaults of the lr search were checked against nearby settings: each
variant (a dict of :func:`~adaptive_sched.recommended` overrides) runs
untuned, at the task's base lr, horizon-free and with ``total_steps``; the
figure is its gap to the best *tuned* baseline (the peers over the task's lr
grid: the bench's x0.1..x10 for bench tasks, x0.1..x100 for the held-out tasks
of ``bench_heldout_tasks.py``), % of the baseline's value, positive = better.
One default set must serve every task: a variant is only worth taking if it
is no worse anywhere.

Run: ``python examples/screen_search_knobs.py`` (the variants in
:data:`VARIANTS`, about 3 minutes), or with your own
``--variants '{"bo3": {"search_backoff": 3.0}}' --tasks logreg,quadratic``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optax

import adaptive_sched
from adaptive_sched.bench import _methods, _runner, _tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_heldout_tasks as heldout

TASKS = ("digits-mlp", "logreg", "char-lm", *heldout.TASKS)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "backoff 1.5": {"search_backoff": 1.5},
    "backoff 3": {"search_backoff": 3.0},
    "patience 8, x2.5": {"search_patience": 8.0, "search_patience_growth": 2.5},
    "tau 20": {"search_tau": 20.0},
    "z_rise 4": {"search_z_rise": 4.0},
    "no grad-norm rule": {"grad_norm_power": 0.0},
}
"""The variants screened by default: one knob of the search (or the grad-norm rule) moved each."""


def _task(name: str, size: str, steps: int) -> tuple[Any, tuple[float, ...]]:
    if name in heldout.TASKS:
        return heldout.TASKS[name](steps), heldout.GRID
    return _tasks.get_tasks((name,), size)[name], tuple(_methods.GRID)


def _ours(label: str, overrides: dict[str, Any], horizon: bool) -> _methods.Method:
    def build(lr: Any, task: Any, steps: int) -> Any:
        cfg = adaptive_sched.recommended(lr, total_steps=steps if horizon else None, **overrides)
        return adaptive_sched.optax.inject_hyperparams(optax.adam, cfg)(b1=0.9)

    return _methods.Method(label, "ours: variant", True, label, build, uses_horizon=horizon)


def _mean_final(res: Any, i: int, g: int) -> float:
    return float(np.mean(res.arrays["metric"][i, g].astype(np.float64)))


def run(
    task_names: tuple[str, ...], variants: dict[str, dict[str, Any]], size: str = "default", steps: int = 400,
    seeds: int = 5,
) -> dict[str, dict[str, Any]]:
    """Per task: the best tuned peer and each variant's untuned gap to it, horizon-free and horizon known.

    Returns:
      ``{task: {"best": (peer, multiplier, value), "gaps": {variant: (gap_free, gap_horizon)}}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in task_names:
        task, grid = _task(name, size, steps)
        peers = _methods._peers()
        res = _runner.run_task(task, peers, grid, seeds)
        sign = 1.0 if task.higher_is_better else -1.0
        cells = [(sign * _mean_final(res, i, g), m.name, mult, _mean_final(res, i, g))
                 for i, m in enumerate(peers) for g, mult in enumerate(res.grid)]  # fmt: skip
        _, peer, mult, best = max(c for c in cells if np.isfinite(c[0]))
        ours = [_ours(f"{label}{'/H' if h else ''}", ov, h) for label, ov in variants.items() for h in (False, True)]
        mine = _runner.run_task(task, ours, [1.0], seeds)
        gaps = [sign * (_mean_final(mine, i, 0) - best) / abs(best) * 100.0 for i in range(len(ours))]
        out[name] = {"best": (peer, mult, best),
                     "gaps": {label: (gaps[2 * k], gaps[2 * k + 1]) for k, label in enumerate(variants)}}  # fmt: skip
        print(f"{name}: best tuned {peer} x{mult:g} = {best:.4f}; untuned gap % (horizon-free / known): "
              + ", ".join(f"{lab} {a:+.1f}/{b:+.1f}" for lab, (a, b) in out[name]["gaps"].items()), flush=True)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from: " + ", ".join(TASKS))
    parser.add_argument("--variants", default=None, help="JSON {label: {override: value}} (default: VARIANTS)")
    parser.add_argument("--size", default="default", help="bench size for the bench tasks")
    parser.add_argument("--steps", type=int, default=400, help="steps of the held-out tasks")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    variants = VARIANTS if args.variants is None else json.loads(args.variants)
    return run(tuple(args.tasks.split(",")), variants, args.size, args.steps, args.seeds)


if __name__ == "__main__":
    main()
