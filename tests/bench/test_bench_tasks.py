"""The bench tasks: the Task.run contract, learning on easy cases, determinism, x64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")
pytest.importorskip("sklearn")

import adaptive_sched  # noqa: E402
from adaptive_sched.bench import _data, _tasks  # noqa: E402
from adaptive_sched.bench._tasks import TASK_NAMES, get_task  # noqa: E402

# (lr multiplier, minimum improvement of the metric over the untrained model, in its direction)
EASY = {
    "digits-mlp": (1.0, 0.5),
    "logreg": (1.0, 0.3),
    "char-lm": (1.0, 0.4),
    "rl-sentiment": (1.0, 0.4),
    "rl-length": (1.0, 0.15),
}


def _task(name: str, policy: Any) -> _tasks.Task:
    return get_task(name, "tiny", policy=policy if name in _tasks.RL_TASKS else None)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_learns_at_tiny_size(name: str, tiny_policy: Any) -> None:
    task = _task(name, tiny_policy)
    mult, gain = EASY[name]
    keys = jax.random.split(jax.random.key(0), 2)
    run = jax.jit(jax.vmap(lambda k: task.run(optax.adam(task.base_lr * mult), k)))
    out = run(keys)
    n = task.steps
    assert out["loss"].shape == (2, n) and out["loss"].dtype == jnp.float32
    assert out["lr"].shape == (2, n) and out["momentum"].shape == (2, n)
    assert out["metric"].shape == (2,) and out["metric_init"].shape == (2,)
    assert out["metric_curve"].shape == out["eval_steps"].shape[0:1] or out["metric_curve"].shape[0] == 2
    assert np.all(np.isfinite(np.asarray(out["loss"])))
    # plain optax.adam keeps its lr in a closure: not readable, so NaN (documented)
    assert np.all(np.isnan(np.asarray(out["lr"])))
    improvement = np.asarray(out["metric"] - out["metric_init"])
    if not task.higher_is_better:
        improvement = -improvement
    assert np.all(improvement > gain), (name, out["metric_init"], out["metric"])
    if task.is_rl:
        for key in ("reward", "reward_std", "kl"):
            assert out[key].shape == (2, n)
        kl = np.asarray(out["kl"])
        assert np.all(kl >= -1e-5) and kl[:, 0].max() < 1e-3  # starts at the reference
        assert np.all(kl[:, -1] > kl[:, 0])
        assert np.all(np.asarray(out["reward"])[:, -5:].mean(1) > np.asarray(out["reward"])[:, :5].mean(1))


@pytest.mark.parametrize("name", ["logreg", "rl-length"])
def test_tasks_keep_float32_in_x64_mode(name: str, tiny_policy: Any) -> None:
    """CI also runs with JAX_ENABLE_X64=1: data, params, lr and curves stay float32 and trace."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        task = _task(name, tiny_policy)
        cfg = adaptive_sched.Config(lr_rule="trend", reward_rule="trend", base_lr=task.base_lr)
        tx = adaptive_sched.optax.inject_hyperparams(optax.adam, cfg)()
        out = jax.jit(lambda k: task.run(tx, k, steps=8))(jax.random.key(0))
        cos = optax.inject_hyperparams(optax.adam)(learning_rate=optax.cosine_decay_schedule(task.base_lr, 8))
        out_cos = jax.jit(lambda k: task.run(cos, k, steps=8))(jax.random.key(0))
    finally:
        jax.config.update("jax_enable_x64", previous)
    for o in (out, out_cos):
        for key in ("loss", "lr", "metric"):
            assert o[key].dtype == jnp.float32, key
        assert np.all(np.isfinite(np.asarray(o["lr"])))


def test_contract_vmap_over_traced_configs() -> None:
    """The sweep helper's pattern: tx built inside vmap from a traced Config."""
    task = get_task("logreg", "tiny")
    lrs = jnp.asarray([0.003, 0.03], jnp.float32)
    cfgs = jax.vmap(lambda lr: adaptive_sched.Config(lr_rule="trend", base_lr=lr, min_lr=lr / 100, max_lr=lr * 10))(lrs)
    keys = jax.random.split(jax.random.key(1), 2)
    fn = jax.jit(
        jax.vmap(lambda cfg, k: task.run(adaptive_sched.optax.inject_hyperparams(optax.adam, cfg)(), k, steps=12))
    )
    out = fn(cfgs, keys)
    lr = np.asarray(out["lr"])
    assert lr.shape == (2, 12)
    np.testing.assert_allclose(lr[:, 0], [0.003, 0.03], rtol=1e-6)  # the first step uses the base lr
    assert np.all(lr > np.asarray(lrs)[:, None] / 100 * 0.999) and np.all(lr < np.asarray(lrs)[:, None] * 10.001)
    assert np.any(lr[:, -1] != lr[:, 0])  # the trend rule moved it


def test_same_key_same_run_and_common_random_numbers() -> None:
    task = get_task("digits-mlp", "tiny")
    key = jax.random.key(3)
    a = task.run(optax.adam(1e-2), key, steps=5)
    b = task.run(optax.adam(1e-2), key, steps=5)
    np.testing.assert_array_equal(np.asarray(a["loss"]), np.asarray(b["loss"]))
    c = task.run(optax.sgd(1e-2), key, steps=5)
    # same init and first batch whatever the optimizer: the first loss is identical
    assert float(a["loss"][0]) == float(c["loss"][0])
    assert float(a["metric_init"]) == float(c["metric_init"])


def test_lr_read_from_injected_and_peer_states() -> None:
    task = get_task("logreg", "tiny")
    key = jax.random.key(0)
    inj = optax.inject_hyperparams(optax.adam)(learning_rate=optax.linear_schedule(0.1, 0.0, 10))
    out = task.run(inj, key, steps=10)
    np.testing.assert_allclose(np.asarray(out["lr"]), 0.1 - 0.01 * np.arange(10), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(out["momentum"]), 0.9)
    plateau = optax.chain(
        optax.inject_hyperparams(optax.adam)(learning_rate=0.1),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=1, accumulation_size=1),
    )
    out = task.run(plateau, key, steps=30)
    lr = np.asarray(out["lr"])
    halvings = np.log2(0.1 / lr)  # the effective lr is 0.1 * plateau scale: 0.1 / 2**k
    np.testing.assert_allclose(halvings, np.round(halvings), atol=1e-4)
    assert halvings[0] == pytest.approx(0.0, abs=1e-6) and halvings[-1] >= 1
    ctrl = adaptive_sched.optax.scale_by_controller(adaptive_sched.Config(lr_rule="trend", base_lr=0.1))
    out = task.run(optax.chain(optax.adam(0.1), ctrl), key, steps=5)  # falls back to Hparams.lr
    assert np.all(np.isfinite(np.asarray(out["lr"])))


def test_schedule_free_is_evaluated_at_its_averaged_iterate() -> None:
    task = get_task("logreg", "tiny")
    tx = optax.contrib.schedule_free_adamw(0.05)
    params = {"w": jnp.ones((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    expected = optax.contrib.schedule_free_eval_params(state, params)
    got = _tasks.eval_params(state, params)
    np.testing.assert_allclose(np.asarray(got["w"]), np.asarray(expected["w"]))
    assert not np.allclose(np.asarray(got["w"]), np.asarray(params["w"]))
    assert _tasks.eval_params(optax.adam(0.1).init(params), params) is params
    assert np.isfinite(float(task.run(optax.contrib.schedule_free_adamw(0.05), jax.random.key(0), 5)["metric"]))


def test_rewards_by_hand() -> None:
    enc = _data.encode
    toks = jnp.asarray(np.stack([enc("ab.cdefgh"), enc("abcdefgh."), enc("abcdefghi")]))
    mask = np.asarray(_tasks.end_mask(toks))
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(mask[1], np.ones(9))
    # lengths before the first ".": 2, 8, 9 (no "."); target 8
    np.testing.assert_allclose(np.asarray(_tasks.length_reward(toks, mask)), [-6 / 8, 0.0, -1 / 8])
    w = _data.sentiment_weights()
    idx = {c: i for i, c in enumerate(_data.VOCAB)}
    good = jnp.asarray(enc(" good ")[None])
    score = sum(w[idx[a], idx[b]] for a, b in zip(" good ", "good "))
    got = float(_tasks.sentiment_reward(good, jnp.ones((1, 6)), jnp.asarray(w))[0])
    assert got == pytest.approx(np.tanh(score / 2), rel=1e-6) and got > 0
    bad = jnp.asarray(enc(" error ")[None])
    assert float(_tasks.sentiment_reward(bad, jnp.ones((1, 7)), jnp.asarray(w))[0]) < 0


def test_stdlib_text_is_offline_and_in_vocab() -> None:
    text = _data.stdlib_text(5000)
    assert len(text) == 5000 and set(text) <= set(_data.VOCAB)
    assert _data.decode(_data.encode(text[:50])) == text[:50]


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="task name='nope'"):
        get_task("nope")
    with pytest.raises(ValueError, match="size='huge'"):
        get_task("logreg", "huge")
    task = get_task("logreg", "tiny")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="steps="):
            task.run(optax.adam(0.1), jax.random.key(0), steps=bad)


def test_get_tasks_shares_one_policy() -> None:
    tasks = _tasks.get_tasks(["logreg"], "tiny")
    assert list(tasks) == ["logreg"] and tasks["logreg"].name == "logreg"


@pytest.mark.parametrize("name", ["digits-mlp", "char-lm"])
def test_full_runs_at_least_four_times_the_default_steps(name: str) -> None:
    assert get_task(name, "full").steps >= 4 * get_task(name, "default").steps
