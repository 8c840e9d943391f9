"""Diagnostics: what each rule decided and why, checked against hand computations on short streams."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import numpy as np
import pytest
from streams import ALL_COMBOS, config_for, random_stream

import adaptive_sched as A
from adaptive_sched import _rules, host

LOSSES = [2.0, 1.0, 1.5, 0.5, math.nan, 0.8, 0.9, 0.4]
WIDE = {"base_lr": 1e-2, "min_lr": 1e-8, "max_lr": 1e4}  # bounds that never bind on these streams


def run(cfg: A.Config, stream: list[A.Signals]) -> tuple[A.State, list[float]]:
    state, lrs = A.init(cfg, xp=np), []
    for sig in stream:
        state, hp = A.update(state, sig)
        lrs.append(float(hp.lr))
    return state, lrs


def diag_of(cfg: A.Config, stream: list[A.Signals]) -> dict[str, float]:
    state, _ = run(cfg, stream)
    return {k: float(v) for k, v in A.diagnostics(state).items()}


def ema(xs: list[float], beta: float) -> tuple[list[float], list[float]]:
    """Bias-corrected EMA of the finite values (held across NaN) and its bias-corrected variance, by hand."""
    m = v = 0.0
    n = 0
    hats, vhats = [], []
    for x in xs:
        if math.isfinite(x):
            n += 1
            m = beta * m + (1 - beta) * x
            hat = m / (1 - beta**n)
            v = beta * v + (1 - beta) * (x - hat) ** 2
        hats.append(m / (1 - beta**n) if n else 0.0)
        vhats.append(v / (1 - beta**n) if n else 0.0)
    return hats, vhats


def loss_stream(xs: list[float] = LOSSES) -> list[A.Signals]:
    return [A.Signals(loss=x) for x in xs]


# ----------------------------------------------------------------------------- each rule vs a hand computation


def test_loss_rules_factors_and_statistics_by_hand() -> None:
    hats, vhats = ema(LOSSES, 0.5)
    ok = [math.isfinite(x) for x in LOSSES]

    d = diag_of(A.Config(lr_rule="loss_decay", decay_k=0.3, ema_beta=0.5, **WIDE), loss_stream())
    want = math.prod(1 / (1 + 0.3 * h) for h, o in zip(hats, ok) if o)
    assert d["lr.loss_decay/factor"] == pytest.approx(want, rel=1e-5)
    assert d["lr.loss_decay/loss"] == pytest.approx(hats[-1], rel=1e-6)
    assert d["lr"] == pytest.approx(1e-2 * want, rel=1e-5) and d["bounds/factor"] == pytest.approx(1.0)

    d = diag_of(A.Config(lr_rule="trend", trend_up=1.1, trend_down=0.8, ema_beta=0.5, **WIDE), loss_stream())
    prev, want = None, 1.0
    for h, o in zip(hats, ok):
        if o and prev is not None:
            want *= 1.1 if h < prev - 1e-4 * abs(prev) else 0.8
        prev = h if o else prev
    assert d["lr.trend/factor"] == pytest.approx(want, rel=1e-5)
    assert d["lr.trend/loss"] == pytest.approx(hats[-1], rel=1e-6)

    d = diag_of(A.Config(lr_rule="variance", variance_k=2.0, ema_beta=0.5, **WIDE), loss_stream())
    cv = math.sqrt(vhats[-1]) / abs(hats[-1])
    assert d["lr.variance/cv"] == pytest.approx(cv, rel=1e-4)
    assert d["lr.variance/factor"] == pytest.approx(1 / (1 + 2.0 * cv), rel=1e-4)

    d = diag_of(A.Config(momentum_rule="inverse", ema_beta=0.5, **WIDE), loss_stream())
    assert d["momentum.inverse/momentum"] == pytest.approx(1 - 1 / (1 + hats[-1]), rel=1e-6) == d["momentum"]
    assert d["momentum.inverse/loss"] == pytest.approx(hats[-1], rel=1e-6)
    assert "momentum.inverse/factor" not in d


def test_grad_norm_rule_reference_and_factor_by_hand() -> None:
    norms = [1.0, 4.0, 2.0, 8.0, 1.0]
    cfg = A.Config(lr_rule="grad_norm", grad_norm_power=0.5, grad_norm_ref_beta=0.8, ema_beta=0.5, **WIDE)
    d = diag_of(cfg, [A.Signals(grad_norm=g) for g in norms])
    hat = ema(norms, 0.5)[0][-1]
    slow = ema(norms, 0.8)[0][-1]
    assert d["lr.grad_norm/grad_norm"] == pytest.approx(hat, rel=1e-6)
    assert d["lr.grad_norm/reference"] == pytest.approx(slow, rel=1e-6)
    assert d["lr.grad_norm/factor"] == pytest.approx((slow / hat) ** 0.5, rel=1e-5)


def test_reward_rules_by_hand() -> None:
    rewards = [0.1, 0.5, 0.3, 0.9, 0.7]
    hats, vhats = ema(rewards, 0.5)
    stream = [A.Signals(reward=r) for r in rewards]
    d = diag_of(A.Config(reward_rule="scaling", reward_center=0.2, reward_span=2.0, ema_reward_beta=0.5, **WIDE), stream)
    assert d["reward.scaling/factor"] == pytest.approx(1 + (hats[-1] - 0.2) / 2.0, rel=1e-6)
    assert d["reward.scaling/reward"] == pytest.approx(hats[-1], rel=1e-6)
    d = diag_of(A.Config(reward_rule="variance", reward_variance_k=3.0, reward_span=0.5, ema_reward_beta=0.5, **WIDE), stream)
    assert d["reward.variance/std"] == pytest.approx(math.sqrt(vhats[-1]), rel=1e-4)
    assert d["reward.variance/factor"] == pytest.approx(1 / (1 + 3.0 * math.sqrt(vhats[-1]) / 0.5), rel=1e-4)
    d = diag_of(A.Config(reward_rule="trend", reward_up=1.2, reward_down=0.9, ema_reward_beta=0.5, **WIDE), stream)
    want = math.prod(1.2 if b > a + 1e-4 * abs(a) else 0.9 for a, b in itertools.pairwise(hats))
    assert d["reward.trend/factor"] == pytest.approx(want, rel=1e-5)


def test_kl_rule_error_factor_and_its_push_events_by_hand() -> None:
    kls = [0.05, 0.05, 0.3, 0.3, 0.3, 0.01, 0.01, 0.01]  # below the target, then above, then far below
    cfg = A.Config(kl_rule="target", kl_target=0.1, kl_gain=0.5, kl_clip=0.4, ema_kl_beta=0.5, **WIDE)
    hats = ema(kls, 0.5)[0]
    errors = [max(-0.4, min(0.4, h / 0.1 - 1)) for h in hats]
    state = A.init(cfg, xp=np)
    events = []
    for k in kls:
        state, _ = A.update(state, A.Signals(kl=k))
        d = A.diagnostics(state)
        events.append((_rules.event_name(_rules.RULES["kl.target"], d["kl.target/event"]), int(d["kl.target/event_step"])))
    assert float(d["kl.target/error"]) == pytest.approx(errors[-1], rel=1e-5)
    assert float(d["kl.target/kl"]) == pytest.approx(hats[-1], rel=1e-6)
    assert float(d["kl.target/factor"]) == pytest.approx(math.exp(-0.5 * sum(errors)), rel=1e-5)
    first_above = next(i for i, e in enumerate(errors) if e > 0) + 1
    first_below_again = next(i for i, e in enumerate(errors) if i >= first_above and e < 0) + 1
    assert events[0] == ("push_up", 1)  # below the target from the start: the lr goes up
    assert events[first_above - 1] == ("push_down", first_above)  # the step the KL crossed the target
    assert events[first_below_again - 1] == ("push_up", first_below_again)
    assert events[first_above] == ("push_down", first_above)  # held while the direction is unchanged


def test_slope_test_statistic_and_threshold_match_ordinary_least_squares() -> None:
    # window_power=0: the test is a plain OLS t-test of the raw losses on the leg step.
    rng = np.random.default_rng(3)
    ys = [float(1.0 - 0.004 * i + 0.05 * rng.normal()) for i in range(1, 11)]
    cfg = A.Config(anneal_rule="slope", anneal_min_samples=10.0, anneal_test_every=5.0, anneal_window_power=0.0,
                   anneal_grow=0.0, anneal_z_drop=0.1, **WIDE)  # fmt: skip
    d = diag_of(cfg, loss_stream(ys))
    i = np.arange(1.0, 11.0)
    b, a = np.polyfit(i, ys, 1)
    s2 = np.sum((np.asarray(ys) - (a + b * i)) ** 2) / (len(ys) - 2)
    t = b / math.sqrt(s2 / np.sum((i - i.mean()) ** 2))
    assert d["anneal.slope/tstat"] == pytest.approx(t, rel=1e-3)
    assert d["anneal.slope/tests"] == 1.0
    cut = t > -0.1 * (1 + (0.01 + 1) / (4 * 8))  # the hand-made decision
    name = _rules.event_name(_rules.RULES["anneal.slope"], d["anneal.slope/event"])
    assert name == ("cut" if cut else "held") and d["anneal.slope/event_step"] == 10
    if not cut:  # the leg goes on: n_e = 10 observations, 8 degrees of freedom
        assert d["anneal.slope/threshold"] == pytest.approx(-0.1 * (1 + 1.01 / 32), rel=1e-6)
        assert d["anneal.slope/leg_steps"] == 10 and d["anneal.slope/next_test"] == 15


def test_the_cut_event_appears_at_the_step_the_lr_was_cut() -> None:
    rng = random.Random(0)
    ys = [1.0 + 0.1 * rng.gauss(0, 1) for _ in range(80)]  # stationary: the slope test cuts
    cfg = A.Config(anneal_rule="slope", anneal_grow=0.0, **WIDE)
    state, lrs = A.init(cfg, xp=np), []
    cuts, events = [], []
    for t, y in enumerate(ys, start=1):
        before = float(A.update(state, A.Signals())[1].lr)  # what a step without the loss would set
        state, hp = A.update(state, A.Signals(loss=y))
        if float(hp.lr) < before:
            cuts.append(t)
        d = A.diagnostics(state)
        events.append((int(d["anneal.slope/event"]), int(d["anneal.slope/event_step"])))
        lrs.append(float(hp.lr))
    assert cuts, "the stream was meant to be cut"
    cut_code = 1 + _rules.RULES["anneal.slope"].events.index("cut")
    recorded = sorted({step for code, step in events if code == cut_code})
    assert recorded == cuts  # every cut recorded at its step, and nothing else recorded as a cut
    for t in cuts:
        assert events[t - 1] == (cut_code, t)


def test_search_landing_and_phase_events_at_the_steps_they_happened() -> None:
    # gradient descent on 50 w^2 (unstable above lr = 0.02) from lr 1e-3: the search grows the lr, then lands
    cfg = A.Config(search_rule="range", base_lr=1e-3, min_lr=1e-6, max_lr=1.0)
    state = A.init(cfg, xp=np)
    phases, events, lrs = [], [], []
    w = 1.0
    for t in range(1, 120):
        loss = 50 * w * w + 0.01 * (1 + 0.1 * math.sin(7 * t))
        state, hp = A.update(state, A.Signals(loss=loss))
        w -= float(hp.lr) * 100 * w
        d = A.diagnostics(state)
        phases.append(float(state.rule_state["search.range.phase"]))
        events.append((int(d["search.range/event"]), int(d["search.range/event_step"])))
        lrs.append(float(hp.lr))
        assert float(d["search.range/factor"]) == pytest.approx(float(hp.lr) / 1e-3, rel=1e-5)  # the only lr rule
        assert float(d["search.range/phase"]) == phases[-1]
    rule = _rules.RULES["search.range"]
    done_at = phases.index(3.0) + 1
    assert _rules.event_name(rule, events[-1][0]) == "landed" and events[-1][1] == done_at
    assert lrs[done_at - 1] < lrs[done_at - 2]  # it landed below where it stopped growing
    changes = [t for t in range(2, len(phases) + 1) if phases[t - 1] != phases[t - 2]]
    assert sorted({s for _, s in events if s}) == changes  # one event per phase change, at its step


def test_cooldown_factor_and_start_event_by_hand() -> None:
    cfg = A.Config(cooldown_rule="linear", cooldown_total_steps=20.0, cooldown_fraction=0.25, **WIDE)
    state = A.init(cfg, xp=np)
    for t in range(1, 21):
        state, hp = A.update(state, A.Signals())
        d = {k: float(v) for k, v in A.diagnostics(state).items()}
        p = min(max((t - 15) / 5, 0.0), 1.0)
        want = max(1 - p, 1e-8 / 1e-2)  # the min_lr floor at the end
        assert d["cooldown.linear/factor"] == pytest.approx(want, rel=1e-5)
        assert d["lr"] == float(hp.lr)
        assert (d["cooldown.linear/event"], d["cooldown.linear/event_step"]) == ((1.0, 16.0) if t > 15 else (0.0, 0.0))


def test_cyclical_restart_events_and_factor() -> None:
    cfg = A.Config(lr_rule="cyclical", cycle_length=4.0, **WIDE)
    state = A.init(cfg, xp=np)
    for _ in range(10):
        state, hp = A.update(state, A.Signals())
        d = A.diagnostics(state)
        assert float(d["lr.cyclical/factor"]) == pytest.approx(float(hp.lr) / 1e-2, rel=1e-6)
    assert int(d["lr.cyclical/event"]) == 1 and int(d["lr.cyclical/event_step"]) == 9  # cycles start at 1, 5, 9


# ----------------------------------------------------------------------------- several stateful rules, bounds


def test_each_stateful_rules_share_and_the_bounds_take_what_they_clamp() -> None:
    # trend votes up every step (falling loss), kl pushes down (KL above target): wide bounds, shares by hand.
    ys = [2.0 / t for t in range(1, 9)]
    stream = [A.Signals(loss=y, kl=0.3) for y in ys]
    cfg = A.Config(lr_rule="trend", trend_up=1.5, kl_rule="target", kl_target=0.1, kl_gain=0.1, kl_clip=0.5,
                   ema_beta=0.0, ema_kl_beta=0.0, **WIDE)  # fmt: skip
    d = diag_of(cfg, stream)
    assert d["lr.trend/factor"] == pytest.approx(1.5**7, rel=1e-5)
    assert d["kl.target/factor"] == pytest.approx(math.exp(-0.1 * 0.5 * 8), rel=1e-5)
    assert d["bounds/factor"] == pytest.approx(1.0, abs=1e-6)
    # max_lr = 4 x base: the clamp stops trend's growth at 4 (its share is clamped too); kl, last, gets the rest.
    cfg = cfg.replace(max_lr=4e-2, kl_gain=0.0)
    d = diag_of(cfg, stream)
    assert d["lr"] == pytest.approx(4e-2, rel=1e-6)
    assert d["lr.trend/factor"] == pytest.approx(4.0, rel=1e-5) and d["kl.target/factor"] == pytest.approx(1.0, rel=1e-5)


def test_identity_config_has_no_record_and_its_diagnostics_are_trivial() -> None:
    cfg = A.Config()
    state = A.init(cfg, xp=host)
    assert state.rule_state == {}
    for _ in range(3):
        state, hp = A.update(state, A.Signals(loss=1.0))
    d = A.diagnostics(state)
    assert d == {
        "step": 3, "skipped": 0, "lr": hp.lr, "momentum": hp.momentum, "lr_scale": 1.0, "warmup/factor": 1.0,
        "bounds/factor": 1.0,
    }
    assert d["lr"] == float(np.float32(cfg.base_lr))  # bit for bit


def test_before_the_first_update_every_factor_is_one() -> None:
    cfg = A.recommended(1e-3, total_steps=100, warmup_steps=5.0)
    d = A.diagnostics(A.init(cfg, xp=np))
    assert float(d["lr"]) == pytest.approx(1e-3) and int(d["step"]) == 0
    assert all(float(v) == 1.0 for k, v in d.items() if k.endswith("/factor"))
    assert all(int(v) == 0 for k, v in d.items() if k.endswith("/event"))


# ----------------------------------------------------------------------------- one implementation, every namespace


COMBOS = random.Random(18).sample(ALL_COMBOS, 24)


@pytest.mark.parametrize("combo", COMBOS, ids="-".join)
def test_diagnostics_lr_is_the_update_lr_and_the_factors_multiply_to_it(combo: tuple[str, ...]) -> None:
    cfg = config_for(combo, cooldown_total_steps=30.0)
    stream = random_stream(18, 40, hostile=0.2)
    state = A.init(cfg, xp=host)
    names = tuple(A.diagnostics(state))
    for sig in stream:
        state, hp = A.update(state, sig)
        d = A.diagnostics(state)
        assert (d["lr"], d["momentum"], d["lr_scale"]) == (hp.lr, hp.momentum, hp.lr_scale)  # bit for bit
        assert tuple(d) == names  # the names depend on the config alone
        factors = [float(v) for k, v in d.items() if k.endswith("/factor")]
        assert all(math.isfinite(v) for v in d.values()) and all(f > 0 for f in factors)
        if all(1e-34 < f < 1e34 for f in factors):  # else a factor beyond e^80 was reported as e^80
            assert cfg.base_lr * math.prod(factors) == pytest.approx(float(hp.lr), rel=1e-4)


def test_diagnostics_are_jit_safe_and_agree_with_numpy() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    cfg = A.recommended(1e-3, total_steps=60)
    stream = random_stream(4, 60, hostile=0.1)
    s_np, s_jx = A.init(cfg, xp=np), A.init(cfg, xp=jnp)
    step = jax.jit(lambda s, sig: A.update(s, sig)[0])
    diag = jax.jit(lambda s: A.diagnostics(s))
    for sig in stream:
        sig = A.Signals(*(math.nan if v is None else v for v in sig))  # one structure for jit
        s_np = A.update(s_np, sig)[0]
        s_jx = step(s_jx, A.Signals(*(jnp.float32(v) for v in sig)))
    a, b = A.diagnostics(s_np), diag(s_jx)
    assert set(a) == set(b)  # (a dict out of jit comes back with its keys sorted)
    np.testing.assert_allclose([float(b[k]) for k in a], [float(v) for v in a.values()], rtol=2e-5)


def test_torch_diagnostics_equal_host_bit_for_bit() -> None:
    torch = pytest.importorskip("torch")

    cfg = A.recommended(1e-3, total_steps=50)
    s_host, s_dev = A.init(cfg, xp=host), A.init(cfg, xp=torch)
    for sig in random_stream(7, 50, hostile=0.1):
        s_host = A.update(s_host, sig)[0]
        s_dev = A.update(s_dev, A.Signals(*(None if v is None else torch.tensor(float(v), dtype=torch.float32) for v in sig)))[0]
    a, b = A.diagnostics(s_host), A.diagnostics(s_dev)
    assert list(a) == list(b) and [float(v) for v in b.values()] == [float(v) for v in a.values()]


# ----------------------------------------------------------------------------- text, registry, checkpoints


def test_format_diagnostics_reads_as_the_lr_product_and_the_decisions() -> None:
    cfg = A.Config(anneal_rule="slope", anneal_grow=0.0, **WIDE)
    rng = random.Random(1)
    state, _ = run(cfg, loss_stream([1.0 + 0.1 * rng.gauss(0, 1) for _ in range(40)]))
    text = A.format_diagnostics(cfg, A.diagnostics(state))
    first, second = text.splitlines()
    assert first.startswith("step 40: lr ") and "= base_lr 0.01 × anneal.slope 0.6" in first
    assert second.startswith("  anneal.slope: cut at step 30; tstat ")


def test_rule_explanations_are_validated_and_derive_the_record() -> None:
    def fn(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
        """Toy: lr x0.5 whenever the loss is above 1."""
        return xp.where(xp.logical_and(obs.ok, obs.x > 1.0), -0.69, 0.0)

    def event(xp: Any, obs: Any, knobs: Any, ctx: Any, outcome: Any) -> Any:
        return xp.where(outcome.out < 0.0, 1, 0)

    rule = _rules.Rule("lr", "toy_halve", "increment", "loss", fn, events=("halved",), event=event)
    with pytest.raises(ValueError, match="give both"):
        _rules.register(_rules.Rule("lr", "toy_bad", "increment", "loss", fn, events=("halved",)))
    with pytest.raises(ValueError, match="distinct identifiers"):
        _rules.register(_rules.Rule("lr", "toy_bad", "increment", "loss", fn, events=("a b",), event=event))
    with _rules.registered(rule):
        cfg = A.Config(lr_rule="toy_halve", reward_rule="trend", **WIDE)
        assert [k for k, _ in _rules.record_slots(cfg)] == ["lr.toy_halve/log_factor", "lr.toy_halve/event",
                                                            "lr.toy_halve/event_step"]  # fmt: skip
        d = diag_of(cfg, [A.Signals(loss=x, reward=0.0) for x in (0.5, 2.0, 0.5)])
        assert (d["lr.toy_halve/event"], d["lr.toy_halve/event_step"]) == (1.0, 2.0)
        assert d["lr.toy_halve/factor"] == pytest.approx(math.exp(-0.69), rel=1e-6)


def test_checkpoints_carry_the_record_and_old_checkpoints_load_with_it_empty() -> None:
    # the range test and the slope test: two stateful rules, so the record holds a share and events
    cfg = A.Config(base_lr=1e-3, min_lr=1e-5, max_lr=1e-1, cooldown_total_steps=80.0, **A._recommended.RANGE_TEST_RULES)
    state = A.init(cfg, xp=host)
    for sig in random_stream(2, 70, hostile=0.1):
        state = A.update(state, sig)[0]
    d = A.state_to_dict(state)
    assert "rule_state.anneal.slope/event" in d and "rule_state.search.range/log_factor" in d
    assert A.diagnostics(A.state_from_dict(d, cfg, xp=host)) == A.diagnostics(state)

    old = {k: v for k, v in d.items() if "/" not in k}  # as saved before the record existed
    back = A.state_from_dict(old, cfg, xp=host)
    assert all(v == 0 for k, v in back.rule_state.items() if "/" in k)
    assert A.update(back, A.Signals(loss=0.5))[1] == A.update(state, A.Signals(loss=0.5))[1]  # the lr continues exactly
    diag = A.diagnostics(back)
    assert int(diag["anneal.slope/event"]) == 0 and float(diag["search.range/factor"]) == 1.0

    partial = dict(d)
    del partial["rule_state.anneal.slope/event"]
    with pytest.raises(ValueError, match=r"missing \['rule_state.anneal.slope/event'\]"):
        A.state_from_dict(partial, cfg)
    bad = dict(d, **{"rule_state.anneal.slope/event": 7})
    with pytest.raises(ValueError, match=r"'rule_state.anneal.slope/event'=7 is invalid: must be an integer in \[0, 3\]"):
        A.state_from_dict(bad, cfg)
    late = dict(d, **{"rule_state.anneal.slope/event_step": int(d["step"]) + 1})
    with pytest.raises(ValueError, match="event_step"):
        A.state_from_dict(late, cfg)


# ----------------------------------------------------------------------------- optax


def test_optax_diagnostics_read_from_the_transformation_state() -> None:
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    import adaptive_sched.optax as aso

    cfg = A.recommended(1e-2, total_steps=40)
    params = {"w": jnp.ones(3)}
    for tx, schedule in ((aso.inject_hyperparams(optax.sgd, cfg)(), None),
                         (optax.chain(optax.sgd(1e-2), aso.scale_by_controller(cfg)), None),
                         (aso.inject_hyperparams(optax.sgd, cfg, schedule=optax.linear_schedule(1e-2, 5e-3, 40))(), 1)):  # fmt: skip
        state = tx.init(params)

        @jax.jit
        def step(params: Any, state: Any, tx: Any = tx) -> Any:
            loss, grads = jax.value_and_grad(lambda q: jnp.sum((q["w"] - 3.0) ** 2))(params)
            updates, state = tx.update(grads, state, params, value=loss)
            return optax.apply_updates(params, updates), state

        p = params
        for _ in range(30):
            p, state = step(p, state)
        d = jax.jit(lambda s: aso.diagnostics(s))(state)
        ctl = next(x.controller for x in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "controller"))
                   if hasattr(x, "controller"))  # fmt: skip
        core = A.diagnostics(ctl)
        assert set(d) == set(core) and int(d["step"]) == 30
        for k in core:
            if k not in ("lr", "lr_scale"):
                assert float(d[k]) == pytest.approx(float(core[k]), rel=1e-6), k
        if schedule:  # the scheduled lr the transformation used, not the controller's own
            lr = optax.tree.get(state, "learning_rate")
            assert float(d["lr"]) == pytest.approx(float(lr)) and float(d["lr"]) != pytest.approx(float(core["lr"]))
        else:
            assert float(d["lr"]) == pytest.approx(float(core["lr"]), rel=1e-6)
    with pytest.raises(ValueError, match="holds 0 adaptive_sched controller states"):
        aso.diagnostics(optax.sgd(0.1).init(params))


def test_an_optax_state_saved_without_the_record_is_refused_with_a_clear_message() -> None:
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import adaptive_sched.optax as aso

    cfg = A.recommended(1e-2)
    tx = aso.inject_hyperparams(optax.sgd, cfg)()
    params = {"w": jax.numpy.ones(2)}
    state = tx.init(params)
    ctl = state.controller
    old = state._replace(packed=aso.PackedState.of(ctl._replace(
        rule_state={k: v for k, v in ctl.rule_state.items() if "/" not in k})))  # fmt: skip
    with pytest.raises(ValueError, match="did not keep the rules' decision record"):
        tx.update(params, old, params, value=1.0)
