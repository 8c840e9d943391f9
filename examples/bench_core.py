"""Cost of the controller in JAX, measured side by side (medians of interleaved repeats).

1. A jitted training step of a 64-256-256-10 MLP (batch 128) with
   ``adaptive_sched.optax.inject_hyperparams(optax.adamw, config)`` versus plain
   ``optax.adamw``: the ratio of median step times (target: at most 1.05). Also
   optax's own ``optax.inject_hyperparams(optax.adamw)`` with a constant lr, to
   separate the cost of a state-held lr (which perturbs XLA's fusion choices on
   CPU) from the controller's.
2. The core alone under ``jit(vmap(scan(update)))`` over many configs and steps
   versus a hand-written minimal jnp trend rule doing the same job: the
   throughput ratio ours / hand-written (target: at least 0.5).

0. A jitted training step called once per step (the usual loop), for MLPs
   64 and 256 wide: ``recommended()`` and a lone trend rule against plain
   ``optax.adamw`` and ``optax.inject_hyperparams(optax.adamw)`` (targets for
   ``recommended()``: at most 1.2x plain at width 64, 1.05x at 256), with the
   optimizer state's array count and the compiled kernel count.

Run: ``python examples/bench_core.py`` (full sizes) or
``python examples/bench_core.py --configs 64 --steps 500 --repeats 3`` (quick).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adaptive_sched as A

QUICKSTART = A.Config(lr_rule="trend", reward_rule="trend", ema_reward_beta=0.9, base_lr=1e-3, min_lr=1e-6, max_lr=1e-2)


def _median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall time of each fn, calls interleaved so drift hits all of them alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile + warm up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _mlp(width: int, batch: int) -> tuple[Any, Callable[[Any], Any]]:
    """A 64-width-width-10 ReLU MLP's parameters and its cross-entropy loss on one fixed random batch."""
    sizes = (64, width, width, 10)
    keys = jax.random.split(jax.random.PRNGKey(0), len(sizes))
    params = [
        (jax.random.normal(k, (a, b), jnp.float32) / np.sqrt(a), jnp.zeros((b,), jnp.float32))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]
    x = jax.random.normal(keys[-1], (batch, sizes[0]), jnp.float32)
    y = jax.random.randint(keys[-1], (batch,), 0, sizes[-1])

    def loss_fn(p: Any) -> Any:
        h = x
        for i, (w, b) in enumerate(p):
            h = h @ w + b
            if i < len(p) - 1:
                h = jax.nn.relu(h)
        return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

    return params, loss_fn


def mlp_step_ratio(repeats: int = 30, inner_steps: int = 50, batch: int = 128) -> dict[str, float]:
    """Median time of ``inner_steps`` jitted MLP steps, adaptive vs plain adamw."""
    params, loss_fn = _mlp(256, batch)
    losses: dict[str, Any] = {}

    def make_run(tx: optax.GradientTransformationExtraArgs, name: str) -> Callable[[], Any]:
        state = tx.init(params)

        @jax.jit
        def run(p: Any, s: Any) -> Any:
            def body(carry: Any, _: Any) -> Any:
                p, s = carry
                loss, g = jax.value_and_grad(loss_fn)(p)
                u, s = tx.update(g, s, p, value=loss)
                return (optax.apply_updates(p, u), s), loss

            return jax.lax.scan(body, (p, s), None, length=inner_steps)

        losses[name] = np.asarray(run(params, state)[1])
        return lambda: run(params, state)

    plain = optax.with_extra_args_support(optax.adamw(QUICKSTART.base_lr, weight_decay=0.01))
    # optax's own inject_hyperparams with a constant lr: the cost of a runtime
    # (state-held) lr alone, without any controller.
    injected = optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=QUICKSTART.base_lr, weight_decay=0.01
    )
    adaptive = A.optax.inject_hyperparams(optax.adamw, QUICKSTART)(weight_decay=0.01)
    t = _median_times(
        {"plain": make_run(plain, "plain"), "injected": make_run(injected, "injected"),
         "adaptive": make_run(adaptive, "adaptive")},
        repeats,
    )
    return {
        "plain_ms_per_step": 1e3 * t["plain"] / inner_steps,
        "injected_ms_per_step": 1e3 * t["injected"] / inner_steps,
        "adaptive_ms_per_step": 1e3 * t["adaptive"] / inner_steps,
        "ratio": t["adaptive"] / t["plain"],
        "ratio_vs_injected": t["adaptive"] / t["injected"],
        # what the timed programs did: the losses of their inner_steps steps
        "losses": losses,
    }


def _kernels(compiled_text: str) -> int:
    """Operations XLA launches for one call: the ENTRY computation's instructions that do work."""
    entry = compiled_text[compiled_text.index("ENTRY"):]
    entry = entry[: entry.index("\n}")]
    skip = ("parameter(", "constant(", "tuple(", "get-tuple-element(", "bitcast(", "copy-start(", "copy-done(")
    return sum(1 for line in entry.splitlines()[1:] if "=" in line and not any(k in line for k in skip))


def jitted_step(widths: tuple[int, ...] = (64, 256), repeats: int = 15, calls: int = 200, batch: int = 128) -> dict[str, Any]:
    """One ``jax.jit`` call per training step (as most training loops do), adaptive vs plain adamw.

    A 64-W-W-10 MLP, batch 128, for each width W. Unlike :func:`mlp_step_ratio`
    (50 steps inside one ``scan``), each step pays the call's dispatch, which
    grows with the number of arrays in the optimizer state. Methods: plain
    ``optax.adamw``; ``optax.inject_hyperparams(optax.adamw)`` (a state-held
    constant lr); ours with ``recommended()`` (loss and ``grad_cos``) and with a
    lone trend rule. Returns ms per step, ratios to plain, the optimizer
    state's array count and the compiled step's kernel count.
    """
    out: dict[str, Any] = {}
    for width in widths:
        params, loss_fn = _mlp(width, batch)

        txs = {
            "plain": optax.with_extra_args_support(optax.adamw(1e-3, weight_decay=0.01)),
            "injected": optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(
                learning_rate=1e-3, weight_decay=0.01
            ),
            "recommended": A.optax.inject_hyperparams(optax.adamw, A.recommended(1e-3))(weight_decay=0.01),
            "trend": A.optax.inject_hyperparams(optax.adamw, QUICKSTART)(weight_decay=0.01),
        }
        fns, info = {}, {}
        for name, tx in txs.items():

            @jax.jit
            def step(p: Any, s: Any, tx: Any = tx, loss_fn: Any = loss_fn) -> Any:
                loss, g = jax.value_and_grad(loss_fn)(p)
                u, s = tx.update(g, s, p, value=loss)
                return optax.apply_updates(p, u), s

            state = tx.init(params)
            info[name] = {
                "arrays_in_state": len(jax.tree.leaves(state)),
                "kernels": _kernels(step.lower(params, state).compile().as_text()),
            }
            box = [params, state]

            def run(step: Any = step, box: list[Any] = box) -> Any:
                p, s = box
                for _ in range(calls):
                    p, s = step(p, s)
                box[:] = [p, s]
                return p

            fns[name] = run
        t = _median_times(fns, repeats)
        out[width] = {
            name: {**info[name], "ms_per_step": 1e3 * t[name] / calls, "ratio_to_plain": t[name] / t["plain"]}
            for name in txs
        }
    return out


def _hand_trend(up: Any, down: Any, thr: Any, beta: Any, base: Any, lo: Any, hi: Any, losses: Any) -> Any:
    """The minimal trend rule written directly in jnp (the yardstick)."""

    def body(c: Any, loss: Any) -> Any:
        m, p, a = c
        prev = m / jnp.where(p < 1, 1 - p, 1.0)
        m2, p2 = beta * m + (1 - beta) * loss, p * beta
        hat = m2 / (1 - p2)
        inc = jnp.where(p < 1, jnp.where(hat < prev - thr * jnp.abs(prev), jnp.log(up), jnp.log(down)), 0.0)
        a = jnp.clip(a + inc, jnp.log(lo / base), jnp.log(hi / base))
        return (m2, p2, a), base * jnp.exp(a)

    z = jnp.zeros((), jnp.float32)
    return jax.lax.scan(body, (z, z + 1, z), losses)[1]


def core_throughput_ratio(n_configs: int = 1024, steps: int = 10_000, repeats: int = 5) -> dict[str, float]:
    """Config-steps per second of jit(vmap(scan(update))) vs the hand-written rule."""
    rng = np.random.default_rng(0)
    ups = rng.uniform(1.001, 1.1, n_configs).astype(np.float32)
    cfgs = [A.Config(lr_rule="trend", base_lr=1e-3, min_lr=1e-6, max_lr=1e-1, trend_up=float(u)) for u in ups]
    batch = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *cfgs)
    losses = jnp.asarray(np.exp(-np.arange(steps) / 3000) + 0.05 * rng.normal(size=steps), jnp.float32)

    @jax.jit
    def ours(cfgs: A.Config, losses: Any) -> Any:
        def one(c: A.Config) -> Any:
            def body(s: A.State, loss: Any) -> Any:
                s, hp = A.update(s, A.Signals(loss=loss))
                return s, hp.lr

            return jax.lax.scan(body, A.init(c), losses)[1]

        return jax.vmap(one)(cfgs)

    @jax.jit
    def hand(cfgs: A.Config, losses: Any) -> Any:
        return jax.vmap(
            lambda c: _hand_trend(c.trend_up, c.trend_down, c.trend_threshold, c.ema_beta, c.base_lr, c.min_lr, c.max_lr, losses)
        )(cfgs)

    a, b = np.asarray(ours(batch, losses)), np.asarray(hand(batch, losses))
    agree = float(np.max(np.abs(a - b) / b))
    t = _median_times({"ours": lambda: ours(batch, losses), "hand": lambda: hand(batch, losses)}, repeats)
    work = n_configs * steps
    return {
        "ours_Msteps_per_s": work / t["ours"] / 1e6,
        "hand_Msteps_per_s": work / t["hand"] / 1e6,
        "throughput_ratio": t["hand"] / t["ours"],
        "max_rel_diff_vs_hand": agree,
    }


def main(
    configs: int = 1024, steps: int = 10_000, repeats: int = 5, mlp_repeats: int = 30, step_calls: int = 200
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jitted_step": jitted_step(repeats=max(3, mlp_repeats // 2), calls=step_calls),
        "mlp_step": mlp_step_ratio(repeats=mlp_repeats),
        "core_scan": core_throughput_ratio(configs, steps, repeats),
    }
    m, c = out["mlp_step"], out["core_scan"]
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}, optax {optax.__version__}")
    targets = {64: 1.2, 256: 1.05}
    for width, rows in out["jitted_step"].items():
        print(f"one jax.jit call per step, MLP 64-{width}-{width}-10, batch 128 (medians of interleaved repeats):")
        for name, r in rows.items():
            goal = f" (target <= {targets[width]})" if name == "recommended" and width in targets else ""
            print(
                f"  {name:12s} {r['ms_per_step']:.3f} ms/step  x{r['ratio_to_plain']:.2f} plain{goal}  "
                f"{r['arrays_in_state']} arrays in the optimizer state, {r['kernels']} compiled kernels"
            )
    print(
        f"MLP 64-256-256-10 step, batch 128 (median of {mlp_repeats} x 50 steps): plain adamw "
        f"{m['plain_ms_per_step']:.3f} ms, optax.inject_hyperparams(adamw) {m['injected_ms_per_step']:.3f} ms, "
        f"adaptive {m['adaptive_ms_per_step']:.3f} ms; ratio adaptive/plain {m['ratio']:.3f} (target <= 1.05), "
        f"adaptive/inject_hyperparams {m['ratio_vs_injected']:.3f}"
    )
    print(
        f"core jit(vmap(scan(update))), {configs} configs x {steps} steps (median of {repeats}): ours "
        f"{c['ours_Msteps_per_s']:.1f} M config-steps/s, hand-written trend {c['hand_Msteps_per_s']:.1f} M/s, "
        f"throughput ratio {c['throughput_ratio']:.2f} (target >= 0.5); max rel. lr difference {c['max_rel_diff_vs_hand']:.1e}"
    )
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--mlp-repeats", type=int, default=30)
    ap.add_argument("--step-calls", type=int, default=200)
    a = ap.parse_args()
    main(a.configs, a.steps, a.repeats, a.mlp_repeats, a.step_calls)
