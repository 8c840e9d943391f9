"""Gradient accumulation: adaptive_sched.optax.multi_steps feeds the controller the window's mean signals."""

from __future__ import annotations

import math
from typing import Any

import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
chex = pytest.importorskip("chex")

import jax.numpy as jnp  # noqa: E402
from absl.testing import parameterized  # noqa: E402

import adaptive_sched  # noqa: E402
from adaptive_sched.optax import inject_hyperparams, multi_steps  # noqa: E402

CONFIG = adaptive_sched.Config(lr_rule="loss_decay", reward_rule="scaling", base_lr=0.1)
K = 4
# Micro-losses per window (the 5, 5, 5, 1 first), a NaN micro-loss in the third window.
LOSSES = [[5.0, 5.0, 5.0, 1.0], [2.0, 3.0, 2.0, 1.0], [math.nan, 1.5, 0.5, 1.0]]
REWARDS = [[0.0, 1.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]


def finite_mean(xs: list[float]) -> float:
    f = [x for x in xs if math.isfinite(x)]
    return sum(f) / len(f)


def inner() -> optax.GradientTransformationExtraArgs:
    return inject_hyperparams(optax.sgd, CONFIG)()


def reference() -> list[float]:
    """One update per window fed the window's mean signals."""
    tx = inner()
    params = jnp.zeros(2)
    state = tx.init(params)
    lrs = []
    for losses, rewards in zip(LOSSES, REWARDS):
        _, state = tx.update(jnp.ones(2), state, params, value=finite_mean(losses), reward=finite_mean(rewards))
        lrs.append(float(optax.tree.get(state, "learning_rate")))
    return lrs


def accumulated(tx: Any, update: Any) -> tuple[list[float], Any]:
    params = jnp.zeros(2)
    state = tx.init(params)
    lrs = []
    for losses, rewards in zip(LOSSES, REWARDS):
        for loss, reward in zip(losses, rewards):
            _, state = update(jnp.ones(2), state, params, jnp.float32(loss), jnp.float32(reward))
        lrs.append(float(optax.tree.get(state, "learning_rate")))
    return lrs, state


class MultiStepsTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_lr_is_the_one_from_the_mean_signal(self) -> None:
        tx = multi_steps(inner(), K)
        update = self.variant(lambda g, s, p, v, r: tx.update(g, s, p, value=v, reward=r))
        lrs, state = accumulated(tx, update)
        assert lrs == reference()
        # The controller advanced once per real optimizer step, not per micro-step.
        assert int(state.inner.inner_opt_state.controller.step) == len(LOSSES)
        assert int(state.inner.mini_step) == 0

    def test_plain_multisteps_sees_only_the_last_micro_loss(self) -> None:
        # What multi_steps fixes (so this test can tell the two apart): optax.MultiSteps
        # hands the inner update the last micro-step's loss, 1.0 for the first window.
        tx = optax.MultiSteps(inner(), K)
        lrs, _ = accumulated(tx, jax.jit(lambda g, s, p, v, r: tx.update(g, s, p, value=v, reward=r)))
        assert lrs[0] != reference()[0]

    def test_inside_chain_value_reaches_the_controller(self) -> None:
        tx = optax.chain(optax.clip_by_global_norm(10.0), multi_steps(inner(), K))
        update = jax.jit(lambda g, s, p, v, r: tx.update(g, s, p, value=v, reward=r))
        lrs, _ = accumulated(tx, update)
        assert lrs == reference()

    def test_traces_once(self) -> None:
        tx = multi_steps(inner(), K)

        @jax.jit
        @chex.assert_max_traces(n=1)
        def update(g: Any, s: Any, p: Any, v: Any, r: Any) -> Any:
            return tx.update(g, s, p, value=v, reward=r)

        accumulated(tx, update)

    def test_skipped_micro_steps_are_left_out_of_the_mean(self) -> None:
        tx = multi_steps(inner(), 2, should_skip_update_fn=optax.skip_not_finite)
        params = jnp.zeros(2)
        state = tx.init(params)
        # Micro-step 1: non-finite gradient (skipped, its loss 100 must not count); then 2 and 4.
        for g, loss in ((jnp.array([jnp.nan, 0.0]), 100.0), (jnp.ones(2), 2.0), (jnp.ones(2), 4.0)):
            _, state = tx.update(g, state, params, value=jnp.float32(loss))
        ref = inner()
        rstate = ref.init(params)
        _, rstate = ref.update(jnp.ones(2), rstate, params, value=3.0)
        assert float(optax.tree.get(state, "learning_rate")) == float(optax.tree.get(rstate, "learning_rate"))

    def test_non_scalar_signal_is_refused(self) -> None:
        tx = multi_steps(inner(), K)
        state = tx.init(jnp.zeros(2))
        with pytest.raises(ValueError, match=r"update\(value=...\) must be a scalar"):
            tx.update(jnp.ones(2), state, jnp.zeros(2), value=jnp.ones(3))
