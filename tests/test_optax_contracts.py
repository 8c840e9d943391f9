"""Contracts JAX users rely on: buffer donation, loud misuse, restoring into another config."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import adaptive_sched as A

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

LOSS_CFG = A.Config(lr_rule="trend", base_lr=1e-2, max_lr=0.1, trend_up=1.1, trend_down=0.7, ema_beta=0.5)


def _params() -> dict[str, Any]:
    return {"w": jnp.ones((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def _front_doors(cfg: A.Config) -> dict[str, Any]:
    return {
        "inject_hyperparams": A.optax.inject_hyperparams(optax.adam, cfg)(),
        "scale_by_controller": optax.chain(optax.adam(cfg.base_lr), A.optax.scale_by_controller(cfg)),
    }


# --------------------------------------------------------------------------- donation


@pytest.mark.parametrize("door", ["inject_hyperparams", "scale_by_controller"])
def test_state_from_init_can_be_donated_to_a_jitted_step(door: str) -> None:
    tx = _front_doors(LOSS_CFG)[door]
    params = _params()
    state = tx.init(params)
    leaves = jax.tree.leaves(state)
    assert len({id(x) for x in leaves}) == len(leaves), "init must give every leaf its own array"

    def step(params: Any, state: Any, loss: Any) -> Any:
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    plain = jax.jit(step)
    p1, s1 = params, state
    p2, s2 = params, tx.init(params)
    for loss in (3.0, 2.0, 2.5, 1.0):
        p2, s2 = plain(p2, s2, jnp.float32(loss))
    for loss in (3.0, 2.0, 2.5, 1.0):
        p1, s1 = donated(p1, s1, jnp.float32(loss))
    for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_core_state_from_init_can_be_donated() -> None:
    state = A.init(LOSS_CFG, xp=jnp)
    leaves = jax.tree.leaves(state)
    assert len({id(x) for x in leaves}) == len(leaves)
    step = jax.jit(lambda s, loss: A.update(s, A.Signals(loss=loss)), donate_argnums=0)
    for loss in (3.0, 2.0, 1.0):
        state, hp = step(state, jnp.float32(loss))
    assert float(hp.lr) == pytest.approx(1e-2 * 1.1 * 1.1)  # two improvements
