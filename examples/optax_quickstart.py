"""Quickstart: the recommended configuration sets adamw's lr from the loss (optax front door).

Trains a small MLP on scikit-learn-free synthetic data with
``adaptive_sched.optax.inject_hyperparams(optax.adamw, config)``; the loss goes
to the optimizer as optax's ``value=`` extra argument, and the lr the
controller chose is read back with ``optax.tree.get(state, "learning_rate")``.

Run: ``python examples/optax_quickstart.py``
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import adaptive_sched as A


def main(steps: int = 300, seed: int = 0) -> dict[str, list[float]]:
    key_x, key_w, key_init = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(key_x, (256, 16))
    y = jnp.tanh(x @ jax.random.normal(key_w, (16,)))
    params = {"w1": 0.3 * jax.random.normal(key_init, (16, 32)), "w2": jnp.zeros((32,))}

    def loss_fn(p: Any) -> Any:
        return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)

    # The one to start from: finds the lr on evidence, holds it while the loss improves, cuts it when
    # progress stalls (no horizon needed), damps gradient-norm spikes; any Config field overrides.
    config = A.recommended(base_lr=3e-3)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        A.optax.inject_hyperparams(optax.adamw, config)(weight_decay=1e-4),
    )
    state = tx.init(params)

    @jax.jit
    def step(p: Any, s: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = tx.update(grads, s, p, value=loss)
        return optax.apply_updates(p, updates), s, loss

    history: dict[str, list[float]] = {"loss": [], "lr": []}
    for t in range(steps):
        params, state, loss = step(params, state)
        history["loss"].append(float(loss))
        history["lr"].append(float(optax.tree.get(state, "learning_rate")))
        if t % max(steps // 6, 1) == 0 or t == steps - 1:
            print(f"step {t:4d}  loss {history['loss'][-1]:.4f}  lr {history['lr'][-1]:.2e}")
    return history


if __name__ == "__main__":
    main()
