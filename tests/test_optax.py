"""The optax front door: inject_hyperparams and scale_by_controller."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import adaptive_sched as A

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy


def regression(seed: int = 0, n: int = 64, d: int = 8) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d,)).astype(np.float32)
    y = x @ w + 0.1 * rng.normal(size=n).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y), {"w": jnp.zeros((d,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def loss_fn(params: Any, x: Any, y: Any) -> Any:
    pred = x @ params["w"].astype(jnp.float32) + params["b"].astype(jnp.float32)
    return jnp.mean((pred - y) ** 2)


def train(tx: Any, params: Any, x: Any, y: Any, steps: int, **extra: Any) -> tuple[Any, Any, list[float], list[float]]:
    state = tx.init(params)

    @jax.jit
    def step(params: Any, state: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params, value=loss, **extra)
        return optax.apply_updates(params, updates), state, loss

    losses, lrs = [], []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
        lrs.append(float(optax.tree.get(state, "learning_rate", default=np.nan)))
    return params, state, losses, lrs


def replay(cfg: A.Config, losses: list[float]) -> list[float]:
    state = A.init(cfg)
    out = []
    for loss in losses:
        state, hp = A.update(state, A.Signals(loss=np.float32(loss)))
        out.append(float(hp.lr))
    return out


def test_chain_trains_and_lr_moves_as_the_rule_says(x64: bool) -> None:
    x, y, params = regression()
    cfg = A.Config(lr_rule="trend", base_lr=1e-3, max_lr=0.05, trend_up=1.1, trend_down=0.7, ema_beta=0.5)
    tx = optax.chain(optax.clip_by_global_norm(10.0), A.optax.inject_hyperparams(optax.adamw, cfg)(weight_decay=0.0))
    params, state, losses, lrs = train(tx, params, x, y, 80, some_other_arg=3)
    assert losses[-1] < 0.1 * losses[0]
    assert max(lrs) > 10 * cfg.base_lr  # the loss kept improving, so the lr rose
    np.testing.assert_allclose(lrs, replay(cfg, losses), rtol=1e-5)  # exactly the core's lrs
    assert optax.tree.get(state, "learning_rate").dtype == jnp.float32


def test_b1_written_for_adam_family_only_when_momentum_rule_active() -> None:
    x, y, params = regression()
    cfg = A.Config(momentum_rule="inverse", ema_beta=0.0, max_momentum=0.99)
    _, state, losses, _ = train(A.optax.inject_hyperparams(optax.adam, cfg)(), params, x, y, 5)
    assert float(optax.tree.get(state, "b1")) == pytest.approx(1 - 1 / (1 + losses[-1]), rel=1e-5)
    _, state, _, _ = train(A.optax.inject_hyperparams(optax.adam, A.Config())(b1=0.8), params, x, y, 5)
    assert float(optax.tree.get(state, "b1")) == pytest.approx(0.8)  # untouched


def test_sgd_momentum_written_and_absent_when_not_asked() -> None:
    x, y, params = regression()
    cfg = A.Config(momentum_rule="exp", momentum_a=0.5, ema_beta=0.0, max_momentum=0.95)
    _, state, losses, _ = train(A.optax.inject_hyperparams(optax.sgd, cfg)(), params, x, y, 5)
    expected = min(1 - np.exp(-0.5 * losses[-1]), 0.95)
    assert float(optax.tree.get(state, "momentum")) == pytest.approx(expected, rel=1e-5)
    assert optax.tree.get(state, "trace") is not None  # momentum buffer exists
    tx = A.optax.inject_hyperparams(optax.sgd, A.Config(lr_rule="trend"))()
    state = tx.init(params)
    assert "momentum" not in state.inner_state.hyperparams or state.inner_state.hyperparams["momentum"] is None


def test_momentum_arg_detection() -> None:
    assert A.optax.momentum_arg(optax.adamw) == "b1"
    assert A.optax.momentum_arg(optax.sgd) == "momentum"
    assert A.optax.momentum_arg(optax.adagrad) is None


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="factory='adagrad' has no momentum argument"):
        A.optax.inject_hyperparams(optax.adagrad, A.Config(momentum_rule="inverse"))
    with pytest.raises(ValueError, match=r"has no \'learning_rate\' argument; use adaptive_sched\.optax\.scale_by_controller"):
        A.optax.inject_hyperparams(optax.scale_by_adam, A.Config())
    with pytest.raises(ValueError, match=r"learning_rate is set by the controller.*got learning_rate=0.1"):
        A.optax.inject_hyperparams(optax.adam, A.Config())(learning_rate=0.1)
    with pytest.raises(ValueError, match="b1 is set by the controller"):
        A.optax.inject_hyperparams(optax.adam, A.Config(momentum_rule="exp"))(b1=0.9)
    with pytest.raises(TypeError, match=r"adaptive_sched\.Config"):
        A.optax.inject_hyperparams(optax.adam, {"lr_rule": "trend"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be applied by scaling updates"):
        A.optax.scale_by_controller(A.Config(momentum_rule="exp"))


def test_low_precision_params_keep_float32_hparams(x64: bool) -> None:
    x, y, params = regression()
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    cfg = A.Config(lr_rule="trend", momentum_rule="inverse", base_lr=1e-2)
    _, state, losses, _lrs = train(A.optax.inject_hyperparams(optax.adamw, cfg)(), params, x, y, 10)
    assert optax.tree.get(state, "learning_rate").dtype == jnp.float32
    assert optax.tree.get(state, "b1").dtype == jnp.float32
    assert losses[-1] < losses[0]


def test_grad_norm_is_the_global_norm_of_incoming_updates() -> None:
    x, y, params = regression()
    cfg = A.Config(lr_rule="grad_norm", ema_beta=0.0, base_lr=1e-2, max_lr=1.0, min_lr=1e-6)
    tx = A.optax.inject_hyperparams(optax.sgd, cfg)()
    state = tx.init(params)
    norms = []
    for _ in range(3):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        norms.append(float(optax.tree.norm(grads)))
        updates, state = tx.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
    def slow(values: list[float], b: float = 0.99) -> float:  # the rule's reference: a bias-corrected slow EMA
        m = 0.0
        for v in values:
            m = b * m + (1 - b) * v
        return m / (1 - b ** len(values))

    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-2 * slow(norms) / norms[-1], rel=1e-5)
    # an explicit grad_norm= wins over the computed one
    _, state = tx.update(grads, state, params, grad_norm=norms[0] * 4)
    norms.append(norms[0] * 4)
    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-2 * slow(norms) / norms[-1], rel=1e-5)


def test_reward_and_kl_extra_args_drive_the_lr() -> None:
    cfg = A.Config(reward_rule="scaling", kl_rule="target", ema_reward_beta=0.0, ema_kl_beta=0.0, kl_gain=0.1)
    tx = A.optax.inject_hyperparams(optax.sgd, cfg)()
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones(3)}, state, params, reward=0.5, kl=1.0)
    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(1e-3 * 1.5 * np.exp(-0.02), rel=1e-5)


def test_scale_by_controller_scales_any_chain() -> None:
    x, y, params = regression()
    cfg = A.Config(lr_rule="trend", base_lr=1e-2, trend_up=1.2, ema_beta=0.0, max_lr=0.05)
    tx = optax.chain(optax.sgd(cfg.base_lr), A.optax.scale_by_controller(cfg))
    state = tx.init(params)
    losses, scales = [], []
    for _ in range(10):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params, value=loss)
        scale = float(optax.tree.get(state, "lr_scale"))
        np.testing.assert_allclose(
            np.asarray(updates["w"]), -cfg.base_lr * scale * np.asarray(grads["w"]), rtol=1e-5, atol=1e-8
        )
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
        scales.append(scale)
    np.testing.assert_allclose(scales, np.array(replay(cfg, losses)) / cfg.base_lr, rtol=1e-5)
    assert scales[-1] > 1.0


def test_vmapped_configs_through_the_optax_front_door() -> None:
    x, y, params = regression()
    cfgs = [A.Config(lr_rule="trend", base_lr=lr, trend_up=1.1, ema_beta=0.5) for lr in (1e-3, 1e-2)]
    batch = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *cfgs)

    def run(cfg: A.Config) -> Any:
        tx = A.optax.inject_hyperparams(optax.adam, cfg)()

        def body(carry: Any, _: Any) -> Any:
            p, s = carry
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            u, s = tx.update(g, s, p, value=loss)
            return (optax.apply_updates(p, u), s), loss

        (_, s), losses = jax.lax.scan(body, (params, tx.init(params)), None, length=20)
        return losses, optax.tree.get(s, "learning_rate")

    losses_v, lr_v = jax.jit(jax.vmap(run))(batch)
    for i, cfg in enumerate(cfgs):
        losses_i, lr_i = jax.jit(run)(cfg)
        np.testing.assert_allclose(np.asarray(losses_v[i]), np.asarray(losses_i), rtol=1e-5)
        assert float(lr_v[i]) == pytest.approx(float(lr_i), rel=1e-5)


def test_time_based_schedule_times_the_adaptive_factor() -> None:
    cfg = A.Config(kl_rule="target", ema_kl_beta=0.0, kl_gain=0.1, base_lr=1e-2, min_lr=1e-5, max_lr=1e-1)
    schedule = optax.linear_schedule(1e-2, 2e-3, transition_steps=4)
    params = {"w": jnp.ones(3)}
    for tx in (
        A.optax.inject_hyperparams(optax.sgd, cfg, schedule=schedule)(),
        optax.chain(optax.sgd(cfg.base_lr), A.optax.scale_by_controller(cfg, schedule=schedule)),
    ):
        state = tx.init(params)
        for t in range(6):
            updates, state = tx.update({"w": jnp.ones(3)}, state, params, kl=1.0)  # KL over target
            expected = float(schedule(t)) * np.exp(-0.02 * (t + 1))
            np.testing.assert_allclose(np.asarray(updates["w"]), -expected, rtol=1e-5)
    # the clamp still holds: a schedule far above max_lr is cut to max_lr
    tx = A.optax.inject_hyperparams(optax.sgd, A.Config(base_lr=1e-2, max_lr=2e-2), schedule=lambda t: 5.0)()
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones(3)}, state, params)
    assert float(optax.tree.get(state, "learning_rate")) == pytest.approx(2e-2)


def test_packed_state_round_trips_bit_for_bit_and_keeps_the_arrays_few() -> None:
    """The optimizer state holds the controller as two arrays; unpacking gives back the State, leaf for leaf."""
    import adaptive_sched.optax as aso

    state = A.init(A.recommended(1e-3), xp=jnp)
    for _ in range(3):  # non-trivial values in every kind of leaf
        state, _ = A.update(state, A.Signals(loss=1.5, grad_norm=2.0, grad_cos=0.3))
    packed = aso.PackedState.of(state)
    assert len(jax.tree.leaves(packed)) == 2 and len(jax.tree.leaves(state)) > 90
    back = packed.state
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    # a jitted step through the packed form is the eager step
    tx = aso.inject_hyperparams(optax.sgd, A.recommended(1e-2))()
    params = {"w": jnp.ones(3)}
    s0 = tx.init(params)
    assert len(jax.tree.leaves(s0.packed)) == 2 and isinstance(s0.controller, A.State)
    eager = tx.update(params, s0, params, value=1.0)[1]
    jitted = jax.jit(lambda s: tx.update(params, s, params, value=1.0)[1])(s0)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # stacked configs (a sweep's leading axis) pack along the last axis and unpack per config
    stacked = jax.vmap(lambda lr: aso.PackedState.of(A.init(A.recommended(lr), xp=jnp)))(jnp.asarray([1e-3, 1e-2]))
    assert stacked.floats.shape[0] == 2
    assert np.allclose(np.asarray(stacked.state.config.base_lr), [1e-3, 1e-2])
