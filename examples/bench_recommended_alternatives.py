"""What drives ``recommended()``: the loss alone, the gradient's direction alone, or both, measured side by side.

The alternatives behind the recommended configuration, each measured against a constant lr *at the same lr*, on
the bench's tasks and on tasks outside it (``bench_heldout_tasks.py``, the linear regression included). Each alternative runs on each task's optimizer
(Adam, b1 0.9; AdamW with weight decay 1e-4 on the linear regression), with the
recommended bounds and, ``+h``, told the run's length (the linear cooldown over
its last half, ``recommended(lr, total_steps=steps)``):

* **range**: the loss-only configuration before the evidence rule: the lr range test in
  the run, the slope test, the grad-norm guard (:data:`RANGE_TEST`, every other
  rule off).
* **hypergrad**: the gradient's direction alone: the multiplicative
  hypergradient ``lr <- lr * exp(k * grad_cos)``, ``k = 0.05`` (Baydin et al.,
  2018, "Online Learning Rate Adaptation with Hypergradient Descent", ICLR),
  ``grad_cos`` the cosine between this step's gradient and the previous
  applied update, which the optax door computes; clamped to the bounds (the
  core's anti-windup clamp). A rule registered for the run only
  (:data:`HYPERGRAD`); skipped, saying so, on a version without the signal.
* **recommended**: :func:`adaptive_sched.recommended` as it is in this version.

For each task: the seed-mean final metric at the task's base lr x0.1, x1 and
x10 and its ratio to constant at the same lr, oriented so that **> 1 is worse**
(``ours / constant`` for a lower-is-better metric, ``constant / ours`` for a
higher-is-better one); the worst ratio over the three, and the worst P of the
bench's no-harm table (:func:`adaptive_sched.bench._summary.no_harm`: P that a
seed beats constant at the same lr). At the end, each alternative's worst
ratio over every task.

Run: ``python examples/bench_recommended_alternatives.py`` (the bench's
supervised tasks at the default size and every held-out task, 5 seeds: several
minutes), ``--tasks logreg,linreg-order --seeds 2``, or ``--quick`` (tiny sizes,
1 seed; for the test).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

import adaptive_sched
from adaptive_sched import _rules
from adaptive_sched._config import rule_fields
from adaptive_sched._rules import Rule
from adaptive_sched.bench import _methods, _runner, _summary, _tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_heldout_tasks as heldout

from adaptive_sched._recommended import RANGE_TEST_RULES

BENCH_TASKS: tuple[str, ...] = ("digits-mlp", "logreg", "char-lm")
TASKS: tuple[str, ...] = (*BENCH_TASKS, *heldout.TASKS)
QUICK_TASKS: tuple[str, ...] = ("logreg", "linreg-order")
GRID: tuple[float, ...] = (0.1, 1.0, 10.0)
K = 0.05
"""The hypergradient's rate: ``lr <- lr * exp(K * grad_cos)`` per step."""

RANGE_TEST: dict[str, Any] = RANGE_TEST_RULES
"""The loss-only recommended configuration before the evidence rule (its rules; bounds and horizon from ``recommended()``)."""
NO_GRAD_COS = "grad_cos not available in this version"


def hypergrad(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
    """Multiplicative hypergradient: ``eta_{t+1} = eta_t * exp(k * cos(g_t, -u_{t-1}))``, ``k = 0.05``.

    Baydin et al. (2018), normalised: the lr grows while successive steps agree
    (``cos > 0``: the lr is too small) and shrinks when they reverse
    (``cos < 0``: overshoot). Holds while ``grad_cos`` is not observed (the
    first step, a zero gradient or update, a non-finite value).
    """
    c = ctx.signals["grad_cos"]
    return xp.where(c.ok, K * c.x, 0.0)


HYPERGRAD = Rule("lr", "alt_hypergrad", "increment", None, hypergrad, {}, reads=("grad_cos",))
"""The hypergradient as an lr rule (registered only while :func:`run` runs)."""


def _only(**rules: Any) -> dict[str, Any]:
    """Every rule field ``"none"`` but those given: an alternative built on ``recommended()`` whatever it holds."""
    return {**{f: "none" for f in rule_fields()}, **rules}


def range_test(lr: Any, total: int | None) -> adaptive_sched.Config:
    return adaptive_sched.recommended(lr, total_steps=total, **_only(**RANGE_TEST))


def hypergradient(lr: Any, total: int | None) -> adaptive_sched.Config:
    return adaptive_sched.recommended(lr, total_steps=total, **_only(lr_rule=HYPERGRAD.name, cooldown_rule="linear"))


def recommended(lr: Any, total: int | None) -> adaptive_sched.Config:
    return adaptive_sched.recommended(lr, total_steps=total)


ALTERNATIVES: dict[str, Any] = {"range": range_test, "hypergrad": hypergradient, "recommended": recommended}
"""Label -> ``(lr, total_steps or None) -> Config``."""


def grad_cos_flows() -> bool:
    """Whether the optax door feeds ``grad_cos`` to :data:`HYPERGRAD` (registered): steps that keep agreeing grow the lr."""
    cfg = adaptive_sched.Config(base_lr=0.1, min_lr=1e-3, max_lr=10.0, lr_rule=HYPERGRAD.name)
    tx = adaptive_sched.optax.inject_hyperparams(optax.sgd, cfg)()
    params = {"x": jnp.ones(3, jnp.float32)}
    state = tx.init(params)
    for _ in range(4):  # gradient descent on 0.5 ||x||^2: every step along the same direction, cos = +1
        updates, state = tx.update(params, state, params, value=0.5 * jnp.sum(params["x"] ** 2))
        params = optax.apply_updates(params, updates)
    lr, _ = _tasks.read_hparams(state)
    return bool(float(lr) > 0.1 * 1.01)


def _available(stack: contextlib.ExitStack) -> dict[str, str]:
    """Register :data:`HYPERGRAD` for the run; ``{label: why}`` for the alternatives this version cannot run."""
    skipped: dict[str, str] = {}
    try:
        stack.enter_context(_rules.registered(HYPERGRAD))
        if not grad_cos_flows():
            raise RuntimeError("the optax door does not feed it")
    except Exception as err:  # an older core without the signal: say so and run the rest
        skipped["hypergrad"] = f"{NO_GRAD_COS} ({type(err).__name__}: {err})"
    for label, make in ALTERNATIVES.items():
        if label in skipped:
            continue
        try:
            make(1e-3, None)
        except ValueError as err:  # a rule this version no longer has
            skipped[label] = f"not available in this version ({err})"
    return skipped


def _task(name: str, size: str, steps: int | None) -> Any:
    if name in heldout.TASKS:
        return heldout.TASKS[name](heldout.STEPS.get(name, 400) if steps is None else steps)
    return _tasks.get_tasks((name,), size)[name]


def _constant(task: Any) -> _methods.Method:
    peers = heldout._adamw_peers() if task.name in heldout.OPTIMIZERS else _methods._peers()
    return next(m for m in peers if m.name == "constant")


def ratio(ours: float, constant: float, higher_is_better: bool) -> float:
    """Final metric against constant's at the same lr, > 1 = worse: ``ours/constant`` (lower is better), else inverted."""
    num, den = (constant, ours) if higher_is_better else (ours, constant)
    if not (math.isfinite(num) and math.isfinite(den)) or den == 0.0:
        return float("nan") if math.isfinite(num) and math.isfinite(den) else float("inf")
    return num / den


def _badness(v: float) -> float:
    return math.inf if not math.isfinite(v) else v


def _worst(values: list[float]) -> float:
    return max(values, key=_badness)


def run(task_names: tuple[str, ...], size: str = "default", seeds: int = 5, steps: int | None = None) -> dict[str, Any]:
    """Every available alternative, with and without the horizon, and constant, on each task at base lr x0.1, x1, x10.

    Args:
      task_names: from :data:`TASKS` (the bench's supervised tasks and the held-out ones).
      size: the bench tasks' size.
      seeds: seeds per method and lr.
      steps: the held-out tasks' steps (None: their own, 320 on the linear regression, 400 on the others).

    Returns:
      ``{"tasks": {task: {method: {"final": [3 seed means], "ratio": [3], "worst_ratio", "worst_p"}}},
      "worst": {method: {"ratio", "task", "multiplier"}}, "skipped": {alternative: why}}``; ``constant``'s
      rows hold ``"final"`` only.
    """
    out: dict[str, Any] = {"tasks": {}, "worst": {}, "skipped": {}}
    with contextlib.ExitStack() as stack:
        skipped = _available(stack)
        out["skipped"] = skipped
        for label, why in skipped.items():
            print(f"{label}: {why}; skipped.")
        labels = [lab for lab in ALTERNATIVES if lab not in skipped]
        for name in task_names:
            task = _task(name, size, steps)
            methods = [heldout._ours(lab + ("+h" if h else ""), ALTERNATIVES[lab], h) for lab in labels for h in (False, True)]
            methods.append(_constant(task))
            res = _runner.run_task(task, methods, GRID, seeds)
            final = res.arrays["metric"].astype(np.float64).mean(axis=2)  # (methods, grid) seed means
            harm = _summary.no_harm(res)
            assert harm is not None
            rows: dict[str, Any] = {"constant": {"final": final[-1].tolist()}}
            for i, m in enumerate(methods[:-1]):
                r = [ratio(final[i, j], final[-1, j], task.higher_is_better) for j in range(len(GRID))]
                rows[m.name] = {"final": final[i].tolist(), "ratio": r, "worst_ratio": _worst(r),
                                "worst_p": harm["methods"][m.name]["worst"]["p"]}  # fmt: skip
                j = max(range(len(r)), key=lambda k: _badness(r[k]))
                w = out["worst"].get(m.name)
                if w is None or _badness(r[j]) > _badness(w["ratio"]):
                    out["worst"][m.name] = {"ratio": r[j], "task": name, "multiplier": GRID[j]}
            out["tasks"][name] = rows
            opt = "AdamW" if name in heldout.OPTIMIZERS else "Adam"
            arrow = "higher" if task.higher_is_better else "lower"
            print(f"\n## {name} ({task.metric_name}, {arrow} is better; base lr {task.base_lr:g}; {opt}; "
                  f"{res.steps} steps, {seeds} seed(s)): final (ratio to constant at the same lr, > 1 = worse)")  # fmt: skip
            print("| method | " + " | ".join(f"x{g:g}" for g in GRID) + " | worst ratio | worst P vs constant |")
            print("|---|" + "---|" * len(GRID) + "---|---|")
            print("| constant | " + " | ".join(heldout._num(v) for v in rows["constant"]["final"]) + " | – | – |")
            for m in methods[:-1]:
                x = rows[m.name]
                cells = " | ".join(f"{heldout._num(v)} ({q:.2f})" for v, q in zip(x["final"], x["ratio"]))
                print(f"| {m.name} | {cells} | {x['worst_ratio']:.2f} | {x['worst_p']:.2f} |")
    print("\n## Worst ratio to constant at the same lr, over every task run (> 1 = worse than constant)")
    print("| method | worst ratio | where | tasks with a ratio > 1.02 |")
    print("|---|---|---|---|")
    for m, w in out["worst"].items():
        bad = [t for t, rows in out["tasks"].items() if rows[m]["worst_ratio"] > 1.02]
        print(f"| {m} | {w['ratio']:.2f} | {w['task']} x{w['multiplier']:g} | {len(bad)}"
              + (f" ({', '.join(bad)})" if bad else "") + " |")  # fmt: skip
    for label, why in out["skipped"].items():
        print(f"| {label}, {label}+h | – | skipped: {why} | – |")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default=None, help="comma-separated, from: " + ", ".join(TASKS) + " (default: all)")
    parser.add_argument("--size", default="default", help="the bench tasks' size (tiny, quick, default, full)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per method and lr (default: 5; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="the held-out tasks' steps (default: their own)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: " + ", ".join(QUICK_TASKS) + ", tiny sizes, 40 held-out steps, 1 seed")
    args = parser.parse_args(argv)
    if args.quick:
        tasks = QUICK_TASKS if args.tasks is None else tuple(args.tasks.split(","))
        return run(tasks, "tiny", args.seeds or 1, args.steps or 40)
    tasks = TASKS if args.tasks is None else tuple(args.tasks.split(","))
    return run(tasks, args.size, args.seeds or 5, args.steps)


if __name__ == "__main__":
    main()
