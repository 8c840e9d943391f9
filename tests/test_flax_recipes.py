"""The README's Flax recipes: Linen's TrainState needs a few lines to forward ``value=``; NNX forwards it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import adaptive_sched as A

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
flax = pytest.importorskip("flax")
jnp = jax.numpy

CFG = A.Config(lr_rule="trend", base_lr=1e-2, max_lr=0.1, trend_up=1.1, trend_down=0.7, ema_beta=0.5)


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1))).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def _replayed_lr(losses: list[float]) -> float:
    state = A.init(CFG)
    for loss in losses:
        state, hp = A.update(state, A.Signals(loss=np.float32(loss)))
    return float(hp.lr)


def test_linen_train_state_recipe_forwards_the_loss() -> None:
    from flax import linen as nn
    from flax.training import train_state

    # The README's recipe: Linen's apply_gradients does not forward value=.
    class TrainState(train_state.TrainState):
        def apply_gradients(self, *, grads: Any, value: Any, **kwargs: Any) -> Any:
            updates, opt_state = self.tx.update(grads, self.opt_state, self.params, value=value)
            params = optax.apply_updates(self.params, updates)
            return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)

    x, y = _data()
    model = nn.Dense(1)
    tx = A.optax.inject_hyperparams(optax.sgd, CFG)()
    state = TrainState.create(apply_fn=model.apply, params=model.init(jax.random.key(0), x), tx=tx)

    @jax.jit
    def step(state: Any) -> Any:
        def loss_fn(p: Any) -> Any:
            return jnp.mean((state.apply_fn(p, x) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads, value=loss), loss

    losses = []
    for _ in range(20):
        state, loss = step(state)
        losses.append(float(loss))
    lr = float(optax.tree.get(state.opt_state, "learning_rate"))
    assert lr != CFG.base_lr
    assert lr == pytest.approx(_replayed_lr(losses), rel=1e-6)


def test_nnx_optimizer_forwards_value_as_it_is() -> None:
    from flax import nnx

    x, y = _data()
    model = nnx.Linear(4, 1, rngs=nnx.Rngs(0))
    tx = A.optax.inject_hyperparams(optax.sgd, CFG)()
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model: Any, optimizer: Any) -> Any:
        def loss_fn(m: Any) -> Any:
            return jnp.mean((m(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, value=loss)  # the README's line
        return loss

    losses = [float(step(model, optimizer)) for _ in range(20)]
    lr = float(optax.tree.get(nnx.state(optimizer, nnx.optimizer.OptState), "learning_rate"))
    assert lr != CFG.base_lr
    assert lr == pytest.approx(_replayed_lr(losses), rel=1e-6)
