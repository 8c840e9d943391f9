"""Sweep scheduler knobs x seeds as one compiled program per rule structure.

A noisy linear-regression problem trained with Adam through the optax front
door. The grid varies the lr rule (two structures, so two compiled programs)
and the base lr (a numeric knob, vmapped); every configuration runs with
several seeds. The script prints the best configurations (a pandas DataFrame;
pandas comes with the ``[bench]`` extra) and writes a heatmap of the final loss
and a CSV of every run.

Run: ``python examples/sweep_example.py [--steps 300] [--seeds 8] [--out sweep-example]``
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import jax
import jax.numpy as jnp
import optax

import adaptive_sched
from adaptive_sched import Config


def make_train(steps: int, dim: int = 16, n: int = 256, batch: int = 16) -> Any:
    """``train(config, key)`` for ONE config and ONE seed; the sweep vmaps it."""

    def train(config: Config, key: jax.Array) -> dict[str, jax.Array]:
        k_x, k_w, k_noise, k_batches = jax.random.split(key, 4)
        x = jax.random.normal(k_x, (n, dim))
        y = x @ jax.random.normal(k_w, (dim,)) + 0.5 * jax.random.normal(k_noise, (n,))
        tx = adaptive_sched.optax.inject_hyperparams(optax.adam, config)()
        w = jnp.zeros(dim)
        opt_state = tx.init(w)

        def step(carry: Any, k: jax.Array) -> Any:
            w, opt_state = carry
            idx = jax.random.randint(k, (batch,), 0, n)
            loss, grads = jax.value_and_grad(lambda w: jnp.mean((x[idx] @ w - y[idx]) ** 2))(w)
            updates, opt_state = tx.update(grads, opt_state, w, value=loss)  # loss drives the lr
            return (optax.apply_updates(w, updates), opt_state), loss

        (w, opt_state), _ = jax.lax.scan(step, (w, opt_state), jax.random.split(k_batches, steps))
        return {
            "final_loss": jnp.mean((x @ w - y) ** 2),
            "final_lr": optax.tree.get(opt_state, "learning_rate"),
        }

    return train


def main(steps: int = 300, seeds: int = 8, out: str | None = "sweep-example") -> Any:
    """Run the sweep; print the 5 best configs; write ``heatmap.png`` and ``sweep.csv`` into ``out``."""
    base = Config(lr_rule="trend", trend_up=1.02, trend_down=0.9, ema_beta=0.9)
    grid = {"lr_rule": ["trend", "variance"], "base_lr": [3e-3, 1e-2, 3e-2, 1e-1]}
    result = adaptive_sched.sweep(make_train(steps), base, grid, seeds=seeds)

    for g in result.groups:
        print(f"group {g.rules[0]:>8}: {len(g.indices)} configs x {seeds} seeds, compile {g.compile_seconds:.1f} s, "
              f"run {g.run_seconds:.2f} s")
    best = result.best(5, key="final_loss")  # a pandas DataFrame indexed by rank
    print(best.to_string(float_format=lambda v: f"{v:.4g}"))
    if out is not None:
        os.makedirs(out, exist_ok=True)
        result.heatmap(os.path.join(out, "heatmap.png"), key="final_loss")
        result.to_csv(os.path.join(out, "sweep.csv"))  # result.to_table(): one row per (config, seed)
        print(f"wrote {out}/heatmap.png and {out}/sweep.csv")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", default="sweep-example")
    args = parser.parse_args()
    main(args.steps, args.seeds, args.out)
