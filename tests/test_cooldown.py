"""The ``cooldown`` rules: the decay at the end of a known horizon, or from a start set by hand, after the clamp."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import adaptive_sched as A
from adaptive_sched import host

BASE, LO, HI = 1e-2, 1e-5, 1e-1
SHAPES = {
    "linear": lambda p: 1.0 - p,
    "sqrt": lambda p: 1.0 - math.sqrt(p),
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
}


def lrs_of(cfg: A.Config, n: int, start: tuple[int, int, int | None] | None = None, **signals: Any) -> list[float]:
    """The lr of updates 1..n; ``start=(at_update, steps, from)`` calls start_cooldown before that update."""
    state, out = A.init(cfg, xp=host), []
    for t in range(1, n + 1):
        if start is not None and t == start[0]:
            state = A.start_cooldown(state, start[1], start[2])
        state, hp = A.update(state, A.Signals(**signals))
        out.append(float(hp.lr))
    return out


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_last_fraction_of_a_known_horizon_follows_the_shape_to_min_lr(shape: str) -> None:
    total, fraction = 40, 0.25
    cfg = A.Config(cooldown_rule=shape, cooldown_total_steps=float(total), cooldown_fraction=fraction,
                   base_lr=BASE, min_lr=LO, max_lr=HI)  # fmt: skip
    got = lrs_of(cfg, total)
    t0 = total * (1 - fraction)
    for t, lr in enumerate(got, 1):
        p = min(max((t - t0) / (total - t0), 0.0), 1.0)
        assert lr == pytest.approx(max(BASE * SHAPES[shape](p), LO), rel=1e-5), t
    assert got[: int(t0)] == [pytest.approx(BASE)] * int(t0)  # the stable phase is untouched
    assert got[-1] == pytest.approx(LO)  # the documented end value: min_lr


def test_a_cooldown_started_by_hand_decays_over_its_steps_and_the_further_along_wins() -> None:
    cfg = A.Config(cooldown_rule="linear", base_lr=BASE, min_lr=LO, max_lr=HI)  # no horizon
    got = lrs_of(cfg, 20, start=(6, 10, None))  # before update 6: a cooldown of 10 steps from step 5
    assert got[:5] == [pytest.approx(BASE)] * 5
    for t in range(6, 21):
        assert got[t - 1] == pytest.approx(max(BASE * (1.0 - min((t - 5) / 10, 1.0)), LO), rel=1e-5)
    # scheduled for later (start in the future), and with a horizon too: the further-along decay applies
    later = lrs_of(cfg, 12, start=(1, 4, 8))
    assert later[:8] == [pytest.approx(BASE)] * 8 and later[-1] == pytest.approx(LO)
    both = A.Config(cooldown_rule="linear", cooldown_total_steps=40.0, cooldown_fraction=0.5, base_lr=BASE, min_lr=LO,
                    max_lr=HI)  # fmt: skip
    mixed = lrs_of(both, 30, start=(25, 100, None))
    assert mixed[29] == pytest.approx(BASE * (1.0 - 10 / 20), rel=1e-5)  # the horizon's p = 0.5 beats the manual 0.05


def test_the_cooldown_is_outside_the_anti_windup() -> None:
    # A stateful rule's accumulated factor is the same with and without a (deep) cooldown on top.
    base = A.Config(lr_rule="trend", base_lr=BASE, min_lr=LO, max_lr=HI, trend_up=1.1)
    cooled = base.replace(cooldown_rule="linear", cooldown_total_steps=20.0, cooldown_fraction=1.0)
    s1, s2 = A.init(base, xp=host), A.init(cooled, xp=host)
    for t in range(20):
        s1, hp1 = A.update(s1, A.Signals(loss=1.0 - 0.01 * t))
        s2, hp2 = A.update(s2, A.Signals(loss=1.0 - 0.01 * t))
        assert s1.log_scale == s2.log_scale
    assert float(hp2.lr) == pytest.approx(LO) and float(hp1.lr) > BASE


def test_start_cooldown_is_jit_safe_and_the_optax_door_finds_every_controller() -> None:
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    cfg = A.recommended(BASE)
    state = A.init(cfg, xp=jnp)
    started = jax.jit(lambda st, n: A.start_cooldown(st, n))(state, jnp.float32(7.0))
    assert float(started.rule_state["cooldown.linear.length"]) == 7.0
    assert float(started.rule_state["cooldown.linear.start"]) == 0.0
    tx = optax.chain(optax.clip_by_global_norm(1.0), A.optax.inject_hyperparams(optax.adam, cfg)())
    params = {"w": jnp.ones(3)}
    opt_state = tx.init(params)
    for _ in range(3):
        _, opt_state = tx.update({"w": jnp.ones(3)}, opt_state, params, value=jnp.float32(1.0))
    opt_state = jax.jit(lambda s: A.optax.start_cooldown(s, 4))(opt_state)
    lrs = []
    for _ in range(5):
        _, opt_state = tx.update({"w": jnp.ones(3)}, opt_state, params, value=jnp.float32(1.0))
        lrs.append(float(optax.tree.get(opt_state, "learning_rate")))
    assert lrs[-2] == pytest.approx(float(cfg.min_lr)) and lrs[-1] == pytest.approx(float(cfg.min_lr))
    assert lrs[0] > lrs[1] > lrs[2]
    with pytest.raises(ValueError, match=r"^adaptive_sched\.optax\.start_cooldown: opt_state holds no adaptive_sched controller"):
        A.optax.start_cooldown(optax.adam(1e-3).init(params), 4)
    with pytest.raises(ValueError, match=r"^adaptive_sched.optax.start_cooldown\(steps=-2\) is invalid"):
        A.optax.start_cooldown(opt_state, -2)


def test_errors_name_the_problem() -> None:
    state = A.init(A.Config(), xp=host)
    with pytest.raises(ValueError, match=r"cooldown_rule is 'none'.*cooldown_rule='linear'"):
        A.start_cooldown(state, 10)
    cfg = A.recommended(BASE)
    state = A.init(cfg, xp=host)
    with pytest.raises(ValueError, match=r"start_cooldown\(steps=0\) is invalid: must be a whole number of update calls >= 1"):
        A.start_cooldown(state, 0)
    with pytest.raises(ValueError, match=r"start_cooldown\(steps=2\.5\) is invalid: must be a whole number"):
        A.start_cooldown(state, 2.5)  # a count of update calls (accepted before)
    with pytest.raises(ValueError, match=r"start_cooldown\(start=-3\) is invalid"):
        A.start_cooldown(state, 5, start=-3)
    with pytest.raises(ValueError, match=r"cooldown_fraction=1\.5 is invalid: must be a number in \(0, 1\]"):
        A.Config(cooldown_rule="linear", cooldown_fraction=1.5)
    with pytest.raises(ValueError, match=r"recommended\(total_steps=0\) is invalid: must be a positive integer"):
        A.recommended(BASE, total_steps=0)
    with pytest.raises(ValueError, match=r"recommended\(total_steps=2\.5\) is invalid"):
        A.recommended(BASE, total_steps=2.5)  # type: ignore[arg-type]
    assert A.recommended(BASE, total_steps=np.int64(100)).cooldown_total_steps == 100.0


# ----------------------------------------------------------------------------- torch: cooldown() and resume


def _sched(torch: Any, device_mode: bool = False) -> Any:
    p = torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor(BASE) if device_mode else BASE
    opt = torch.optim.SGD([p], lr=lr, momentum=torch.tensor(0.9) if device_mode else 0.9)
    return opt, A.AdaptiveScheduler(opt, A.recommended(BASE), device_mode=device_mode)


@pytest.mark.parametrize("device_mode", [False, True])
def test_cooldown_resumes_exactly_from_a_checkpoint_taken_mid_cooldown(device_mode: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    losses = [float(1.0 + 0.05 * rng.normal() - 0.01 * t) for t in range(60)]
    opt, sched = _sched(torch, device_mode)
    full = []
    for t, y in enumerate(losses):
        if t == 30:
            sched.cooldown(20)
        if t == 40:
            saved = sched.state_dict()
        opt.step()
        sched.observe(loss=y, grad_norm=1.0)
        full.append(float(opt.param_groups[0]["lr"]))
    opt2, resumed = _sched(torch, device_mode)
    resumed.load_state_dict(saved)
    again = []
    for y in losses[40:]:
        opt2.step()
        resumed.observe(loss=y, grad_norm=1.0)
        again.append(float(opt2.param_groups[0]["lr"]))
    assert again == full[40:]  # bit for bit
    assert full[49] == pytest.approx(BASE / 100)  # min_lr at the 20th step of the cooldown (update 50)
    with pytest.raises(ValueError, match=r"^AdaptiveScheduler\.cooldown: the config's cooldown_rule is 'none'"):
        A.AdaptiveScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), lr_rule="trend").cooldown(5)
    # the errors name the method the user called (they named start_cooldown, new-user finding)
    for bad in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match=rf"^AdaptiveScheduler.cooldown\(steps={bad!r}\) is invalid: must be a whole"):
            resumed.cooldown(bad)


def test_hf_callback_takes_the_horizon_from_max_steps_unless_known_or_resumed() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from adaptive_sched.adapters.hf import AdaptiveSchedulerCallback

    args = SimpleNamespace(logging_steps=1, logging_strategy="steps")
    _, sched = _sched(torch)
    AdaptiveSchedulerCallback(sched).on_train_begin(args, SimpleNamespace(max_steps=100), None)  # type: ignore[arg-type]
    rs = sched.controller_state.rule_state
    # recommended()'s cooldown_fraction=0.2: the last 20 of 100 steps
    assert (float(rs["cooldown.linear.start"]), float(rs["cooldown.linear.length"])) == (80.0, 20.0)
    # resumed (the cooldown is in the restored state) or started by hand: not scheduled again
    AdaptiveSchedulerCallback(sched).on_train_begin(args, SimpleNamespace(max_steps=400), None)  # type: ignore[arg-type]
    assert float(sched.controller_state.rule_state["cooldown.linear.length"]) == 20.0
    # the config knows its horizon: nothing to schedule
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE)
    own = A.AdaptiveScheduler(opt, A.recommended(BASE, total_steps=80))
    AdaptiveSchedulerCallback(own).on_train_begin(args, SimpleNamespace(max_steps=100), None)  # type: ignore[arg-type]
    assert float(own.controller_state.rule_state["cooldown.linear.length"]) == 0.0
