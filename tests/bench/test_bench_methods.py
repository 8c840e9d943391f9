"""Bench methods: presets, the method switch (one program for all methods) and the runner."""

from __future__ import annotations

import time

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")
pytest.importorskip("sklearn")

import adaptive_sched  # noqa: E402
from adaptive_sched.bench import _methods  # noqa: E402
from adaptive_sched.bench._runner import run_task  # noqa: E402
from adaptive_sched.bench._tasks import get_task  # noqa: E402


def test_methods_per_task_family() -> None:
    sup = get_task("logreg", "tiny")
    names = [m.name for m in _methods.get_methods(sup)]
    assert names[:7] == [
        "ours", "ours-horizon", "ours-quickstart", "ours-variance", "ours-momentum", "ours-gradnorm", "ours-cosine",
    ]  # fmt: skip
    assert names[7:] == list(_methods.PEER_NAMES)
    assert not any(n in names for n in ("ours-reward-trend", "ours-reward-scaling", "ours-kl"))
    with pytest.raises(ValueError, match="method name='ours-kl' is invalid for task 'logreg'"):
        _methods.get_methods(sup, ["ours-kl"])
    assert [m.name for m in _methods.get_methods(sup, ["cosine", "ours"])] == ["cosine", "ours"]


def test_presets_resolve_per_task_and_bounds_follow_the_grid(tiny_policy: object) -> None:
    length = get_task("rl-length", "tiny", policy=tiny_policy)
    names = [m.name for m in _methods.get_methods(length)]
    assert {"ours-reward-trend", "ours-reward-scaling", "ours-kl", "ours-gradnorm"} <= set(names)
    cfg = _methods.preset_config("ours-reward-scaling", length, 0.02)
    assert cfg.reward_rule == "scaling"
    assert cfg.reward_center == pytest.approx(-0.5) and cfg.reward_span == pytest.approx(0.5)
    assert cfg.min_lr == pytest.approx(0.02 * _methods.LR_BOUNDS[0])
    assert cfg.max_lr == pytest.approx(0.02 * _methods.LR_BOUNDS[1])
    assert _methods.preset_config("ours-kl", length, 0.02).kl_target == pytest.approx(length.details["kl_target"])
    assert "ours-cosine" in names
    quick = _methods.preset_config("ours-quickstart", length, 0.02)
    assert (quick.lr_rule, quick.reward_rule, quick.ema_reward_beta) == ("trend", "trend", 0.9)
    assert _methods.preset_config("ours", length, 0.02) == adaptive_sched.recommended(base_lr=0.02)
    with pytest.raises(ValueError, match="preset name='fast'"):
        _methods.preset_config("fast", length, 0.02)


def test_every_method_says_whether_it_uses_the_runs_length(tiny_policy: object) -> None:
    expected = {
        "constant": False, "cosine": True, "onecycle": True, "plateau": False, "prodigy": False,
        "schedule-free": False, "ours": False, "ours-horizon": True, "ours-quickstart": False,
        "ours-variance": False, "ours-momentum": False, "ours-gradnorm": False, "ours-reward-trend": False,
        "ours-reward-scaling": False, "ours-kl": False, "ours-cosine": True,
    }  # fmt: skip
    assert set(expected) == set(_methods.PRESETS) | set(_methods.PEER_NAMES)
    seen = {}
    for task in (get_task("logreg", "tiny"), get_task("rl-length", "tiny", policy=tiny_policy)):
        seen.update({m.name: m.uses_horizon for m in _methods.get_methods(task)})
    assert seen == expected
    rows = _methods.method_table(get_task("logreg", "tiny"), _methods.get_methods(get_task("logreg", "tiny")))
    assert {r["name"]: r["uses_horizon"] for r in rows} == {
        n: "yes" if v else "no" for n, v in expected.items() if n in {r["name"] for r in rows}
    }


def test_ours_horizon_is_recommended_given_the_runs_length(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    real = adaptive_sched.recommended

    def spy(base_lr: object, **kwargs: object) -> adaptive_sched.Config:
        calls.append(dict(kwargs))
        return real(base_lr)  # the horizon itself is the core's to apply (issue 16's cooldown)

    monkeypatch.setattr(adaptive_sched, "recommended", spy)
    task = get_task("logreg", "tiny")
    horizon, free = _methods.get_methods(task, ["ours-horizon", "ours"])
    assert {"total_steps": 17} not in calls  # the method list is built before any run length is known
    calls.clear()
    horizon.build(jnp.float32(0.03), task, 17)
    free.build(jnp.float32(0.03), task, 17)
    assert calls == [{"total_steps": 17}, {}]  # the run's steps, not the task's default
    calls.clear()
    _methods.preset_config("ours-horizon", task, 0.02)
    assert calls == [{"total_steps": task.steps}]


def test_switch_follows_each_method_exactly() -> None:
    """A run through the switch with index i equals a run of method i alone."""
    task = get_task("logreg", "tiny")
    picked = _methods.get_methods(task, ["ours-gradnorm", "plateau", "prodigy", "schedule-free"])
    steps, lr = 25, jnp.float32(task.base_lr)
    key = jax.random.key(7)
    via_switch = jax.jit(
        jax.vmap(lambda i: task.run(_methods.switch([m.build(lr, task, steps) for m in picked], i), key, steps))
    )(jnp.arange(len(picked)))
    for i, m in enumerate(picked):
        alone = jax.jit(lambda k, m=m: task.run(m.build(lr, task, steps), k, steps))(key)
        for out in ("loss", "lr", "metric"):
            np.testing.assert_allclose(
                np.asarray(via_switch[out][i]), np.asarray(alone[out]), rtol=2e-5, atol=1e-7, err_msg=f"{m.name} {out}"
            )


def test_run_task_shapes_and_grid() -> None:
    task = get_task("logreg", "tiny")
    methods = _methods.get_methods(task, ["ours", "constant", "cosine"])
    t0 = time.perf_counter()
    res = run_task(task, methods, (0.1, 1.0, 10.0), seeds=2, steps=6)
    wall = time.perf_counter() - t0
    assert res.methods == ["ours", "constant", "cosine"] and res.grid == [0.1, 1.0, 10.0]
    assert res.arrays["loss"].shape == (3, 3, 2, 6) and res.arrays["metric"].shape == (3, 3, 2)
    lr = res.arrays["lr"]
    np.testing.assert_allclose(lr[1, :, :, 0], task.base_lr * np.array([[0.1] * 2, [1.0] * 2, [10.0] * 2]), rtol=1e-6)
    np.testing.assert_allclose(lr[1], lr[1][..., :1] * np.ones(6), rtol=1e-6)  # constant stays constant
    assert np.all(np.diff(lr[2], axis=-1) <= 0)  # cosine decays
    # common random numbers: seed s starts every method and lr from the same init
    init = res.arrays["metric_init"]
    np.testing.assert_array_equal(init, np.broadcast_to(init[0, 0], init.shape))
    # compile and run are two disjoint phases of this one call
    assert res.compile_s > 0 and res.run_s > 0 and res.compile_s + res.run_s <= wall
    with pytest.raises(ValueError, match="seeds=0"):
        run_task(task, methods, (1.0,), seeds=0)
    with pytest.raises(ValueError, match="grid="):
        run_task(task, methods, (1.0, -1.0), seeds=1)
    with pytest.raises(ValueError, match=r"methods=\(\)"):
        run_task(task, (), (1.0,), seeds=1)


def test_ours_is_the_optax_front_door() -> None:
    task = get_task("logreg", "tiny")
    tx = _methods.get_methods(task, ["ours"])[0].build(jnp.float32(0.03), task, 10)
    state = tx.init({"w": jnp.zeros(3), "b": jnp.zeros(())})
    assert isinstance(state, adaptive_sched.optax.AdaptiveHyperparamsState)


def test_cosine_preset_is_the_quickstart_times_the_cosine_schedule() -> None:
    import jax.numpy as jnp
    import optax

    task = get_task("logreg", "tiny")
    (method,) = _methods.get_methods(task, ["ours-cosine"])
    tx = method.build(0.1, task, 10)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    sched = optax.cosine_decay_schedule(0.1, 10)
    for t in range(10):
        _, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.float32(5.0 - t))
        factor = 1.01**t  # the loss improves at every step after the first
        lr = float(optax.tree.get(state, "learning_rate"))
        assert lr == pytest.approx(max(float(sched(t)) * factor, 0.1 * _methods.LR_BOUNDS[0]), rel=1e-4)


def test_every_method_has_its_own_colour_and_style() -> None:
    from adaptive_sched.bench._report import method_colors

    names = list(_methods.PRESETS) + list(_methods.PEER_NAMES)
    colors = method_colors(names, set(_methods.PRESETS))
    assert len(set(colors.values())) == len(names)


def test_the_recommended_preset_comes_from_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task("logreg", "tiny")
    assert _methods.RECOMMENDED == "ours"
    assert _methods.preset_config("ours", task, 0.02) == _methods.recommended_config(0.02)
    rows = _methods.method_table(task, _methods.get_methods(task, ["ours"]))
    # Whatever recommended() holds (the range test of issue 16, the evidence controller of issue 27): its rules,
    # the cooldown, the bounds base/100 .. 100 base.
    description = rows[0]["description"]
    assert description == _methods.describe_config(adaptive_sched.recommended(1.0))
    assert "cooldown_rule='linear'" in description and "min_lr=lr*0.01, max_lr=lr*100" in description

    # Swapping the recommended config is one function: the method, its description and the report follow.
    calls: list[object] = []

    def other(base_lr: object) -> adaptive_sched.Config:
        calls.append(base_lr)
        return adaptive_sched.Config(lr_rule="variance", variance_k=2.0, base_lr=base_lr)

    monkeypatch.setattr(_methods, "recommended_config", other)
    assert _methods.preset_config("ours", task, 0.02) == other(0.02)
    (method,) = _methods.get_methods(task, ["ours"])
    expected = "Config(lr_rule='variance', min_lr=lr*0.001, max_lr=lr*10, variance_k=2)"
    assert method.description == expected
    assert _methods.method_table(task, [method])[0]["description"] == expected
    calls.clear()
    tx = method.build(jnp.float32(0.03), task, 10)
    assert calls == [jnp.float32(0.03)]  # the optax transformation is built from it
    state = tx.init({"w": jnp.zeros(3), "b": jnp.zeros(())})
    assert optax.tree.get(state, "learning_rate") == pytest.approx(0.03)
