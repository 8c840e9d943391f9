"""The pure controller: rule behaviour, bounds, skipping, identity, namespaces agree."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import (
    ALL_COMBOS,
    HOSTILE_VALUES,
    as_float,
    check_bounds_and_finiteness,
    config_for,
    random_stream,
)

import adaptive_sched as A
from adaptive_sched import host

NAMESPACES = {"scalar": host, "numpy": np}


def run(cfg: A.Config, signals: list[A.Signals], xp: Any = np) -> tuple[list[A.Hparams], A.State]:
    state = A.init(cfg, xp=xp)
    out = []
    for sig in signals:
        state, hp = A.update(state, sig)
        out.append(hp)
    return out, state


def lrs(hps: list[A.Hparams]) -> np.ndarray:
    return np.array([as_float(h.lr) for h in hps])


def moms(hps: list[A.Hparams]) -> np.ndarray:
    return np.array([as_float(h.momentum) for h in hps])


# ----------------------------------------------------------------------------- identity


@pytest.mark.parametrize("ns", list(NAMESPACES))
def test_all_none_is_exact_identity_on_hostile_streams(ns: str) -> None:
    cfg = A.Config(base_lr=3.7e-4, base_momentum=0.85)
    hps, _state = run(cfg, random_stream(0, 60, hostile=0.5), NAMESPACES[ns])
    # every namespace computes in float32: the base lr as a float32, bit for bit
    assert all(h.lr == np.float32(3.7e-4) for h in hps)
    assert all(h.momentum == np.float32(0.85) for h in hps)
    assert all(as_float(h.lr_scale) == 1.0 for h in hps)


# ----------------------------------------------------------------------------- bounds (property)

signal_value = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-10, max_value=10),
)
signals_st = st.builds(A.Signals, *[signal_value] * len(A.Signals._fields))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    combo=st.sampled_from(ALL_COMBOS),
    stream=st.lists(signals_st, min_size=1, max_size=40),
    ns=st.sampled_from(list(NAMESPACES)),
)
def test_bounds_and_finiteness_hold_for_every_rule_combination(combo, stream, ns) -> None:  # type: ignore[no-untyped-def]
    check_bounds_and_finiteness(config_for(combo), stream, NAMESPACES[ns])


@settings(max_examples=40, deadline=None)
@given(combo=st.sampled_from(ALL_COMBOS), seed=st.integers(0, 2**16))
def test_scalar_and_numpy_namespaces_agree(combo, seed) -> None:  # type: ignore[no-untyped-def]
    cfg = config_for(combo)
    stream = random_stream(seed, 50)
    a, _ = run(cfg, stream, host)
    b, _ = run(cfg, stream, np)
    np.testing.assert_allclose(lrs(a), lrs(b), rtol=2e-5)
    np.testing.assert_allclose(moms(a), moms(b), rtol=2e-5, atol=1e-6)


# ----------------------------------------------------------------------------- EMA


def test_ema_with_bias_correction_matches_hand_computation() -> None:
    beta = 0.8
    cfg = A.Config(lr_rule="variance", ema_beta=beta)
    xs = [1.0, 2.0, 4.0, -3.0]
    state = A.init(cfg, xp=host)
    m = v = 0.0
    for n, x in enumerate(xs, start=1):
        state, _ = A.update(state, A.Signals(loss=x))
        m = beta * m + (1 - beta) * x
        hat = m / (1 - beta**n)
        v = beta * v + (1 - beta) * (x - hat) ** 2
        assert state.loss.mean == pytest.approx(m, rel=1e-6)
        assert state.loss.var == pytest.approx(v, rel=1e-6)
        assert state.loss.decay_pow == pytest.approx(beta**n, rel=1e-6)
        assert state.loss.ref == pytest.approx(1.0, rel=1e-5)  # first smoothed value
    # the variance rule reads the bias-corrected values
    hat, var_hat = m / (1 - beta**4), v / (1 - beta**4)
    expected = 1e-3 / (1 + math.sqrt(var_hat) / abs(hat))
    _, hp = A.update(state, A.Signals())
    assert hp.lr == pytest.approx(expected, rel=1e-6)


def test_beta_zero_means_no_smoothing() -> None:
    cfg = A.Config(momentum_rule="inverse", ema_beta=0.0)
    hps, _ = run(cfg, [A.Signals(loss=x) for x in (1.0, 3.0, 0.25)], host)
    np.testing.assert_allclose(moms(hps), [0.5, 0.75, 0.2], rtol=1e-6)


# ----------------------------------------------------------------------------- skipping


@pytest.mark.parametrize("ns", list(NAMESPACES))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_unobserved_signal_holds_hparams_and_counts_skips(ns: str, bad: float | None) -> None:
    cfg = A.Config(lr_rule="trend", momentum_rule="relative", reward_rule="scaling", ema_beta=0.5)
    xp = NAMESPACES[ns]
    state = A.init(cfg, xp=xp)
    for x in (3.0, 2.0, 1.5):
        state, hp = A.update(state, A.Signals(loss=x, reward=0.5))
    before = state
    state, hp2 = A.update(state, A.Signals(loss=bad, reward=bad))
    assert as_float(hp2.lr) == as_float(hp.lr)
    assert as_float(hp2.momentum) == as_float(hp.momentum)
    assert as_float(state.loss.mean) == as_float(before.loss.mean)
    assert int(state.skipped) == (0 if bad is None else 2)
    assert int(state.step) == 4


# ----------------------------------------------------------------------------- rules


def test_trend_goes_up_on_improvement_and_down_otherwise() -> None:
    cfg = A.Config(lr_rule="trend", ema_beta=0.0, trend_up=1.1, trend_down=0.5, trend_threshold=0.0)
    hps, _ = run(cfg, [A.Signals(loss=x) for x in (5.0, 4.0, 3.0, 3.5, 3.5)], host)
    np.testing.assert_allclose(lrs(hps), 1e-3 * np.array([1, 1.1, 1.21, 0.605, 0.3025]), rtol=1e-6)


@pytest.mark.parametrize("losses", [[10.0, 9.5, 9.0, 8.5], [-10.0, -10.5, -11.0, -11.5]])
def test_trend_is_correct_for_negative_losses_and_rewards(losses: list[float]) -> None:
    # Improving means the loss falls / the reward rises, whatever the sign. The
    # threshold is relative to |previous|, so a 5% improvement clears a 1% threshold
    # on either side of zero (torch's `best * (1 - threshold)` gets this wrong below 0).
    cfg = A.Config(lr_rule="trend", ema_beta=0.0, trend_up=2.0, trend_down=0.5, trend_threshold=0.01)
    hps, _ = run(cfg, [A.Signals(loss=x) for x in losses], host)
    assert lrs(hps)[-1] == pytest.approx(8e-3, rel=1e-5)
    cfg = A.Config(
        reward_rule="trend", ema_reward_beta=0.0, reward_up=2.0, reward_down=0.5, reward_threshold=0.01
    )
    hps, _ = run(cfg, [A.Signals(reward=-x) for x in losses], host)  # rising reward
    assert lrs(hps)[-1] == pytest.approx(8e-3, rel=1e-5)
    hps, _ = run(cfg, [A.Signals(reward=x) for x in losses], host)  # falling reward
    assert lrs(hps)[-1] == pytest.approx(1e-3 / 8, rel=1e-5)


def test_trend_threshold_counts_small_changes_as_no_improvement() -> None:
    cfg = A.Config(lr_rule="trend", ema_beta=0.0, trend_up=2.0, trend_down=0.5, trend_threshold=0.1)
    hps, _ = run(cfg, [A.Signals(loss=x) for x in (-10.0, -10.5)], host)  # 5% < 10%
    assert lrs(hps)[-1] == pytest.approx(5e-4, rel=1e-5)


def test_stateful_rules_do_not_wind_up_while_clamped() -> None:
    cfg = A.Config(lr_rule="trend", ema_beta=0.0, trend_up=2.0, trend_down=0.5, trend_threshold=0.0, max_lr=4e-3)
    losses = [100.0 - t for t in range(50)] + [1000.0]  # 49 improvements, then one worsening
    hps, state = run(cfg, [A.Signals(loss=x) for x in losses], host)
    assert lrs(hps)[-2] == pytest.approx(4e-3, rel=1e-5)
    assert lrs(hps)[-1] == pytest.approx(2e-3, rel=1e-5)  # leaves the bound at once
    assert state.log_scale == pytest.approx(math.log(2.0), rel=1e-5)


def test_loss_decay_formula() -> None:
    k = 0.5
    cfg = A.Config(lr_rule="loss_decay", ema_beta=0.0, decay_k=k, min_lr=1e-9)
    losses = [1.0, 2.0, -3.0, 0.5]
    hps, _ = run(cfg, [A.Signals(loss=x) for x in losses], host)
    expected, eta = [], 1e-3
    for x in losses:
        eta = eta / (1 + k * max(x, 0.0))
        expected.append(eta)
    np.testing.assert_allclose(lrs(hps), expected, rtol=1e-6)


def test_variance_rule_lowers_lr_under_noise_only() -> None:
    cfg = A.Config(lr_rule="variance", ema_beta=0.9)
    flat, _ = run(cfg, [A.Signals(loss=2.0)] * 30, host)
    rng = np.random.default_rng(0)
    noisy, _ = run(cfg, [A.Signals(loss=2.0 + float(rng.normal())) for _ in range(30)], host)
    assert lrs(flat)[-1] == pytest.approx(1e-3, rel=1e-5)
    assert lrs(noisy)[-1] < 0.8e-3


def test_grad_norm_rule_normalises_by_a_slow_ema_of_the_norm() -> None:
    # Hand computation: g^_t = g_t (ema_beta=0); g_slow the bias-corrected EMA with decay b.
    b = 0.9
    cfg = A.Config(lr_rule="grad_norm", ema_beta=0.0, grad_norm_power=1.0, grad_norm_ref_beta=b)
    norms = (2.0, 4.0, 1.0, 0.0)
    hps, _ = run(cfg, [A.Signals(grad_norm=g) for g in norms], host)
    expected, m = [], 0.0
    for n, g in enumerate(norms, 1):
        m = b * m + (1 - b) * g
        slow = m / (1 - b**n)
        expected.append(min(1e-3 * slow / max(g, 1e-30), 1e-2))  # last: g = 0, clamped at max_lr
    np.testing.assert_allclose(lrs(hps), expected, rtol=1e-6)


def test_grad_norm_rule_damps_a_spike_and_forgets_a_drift() -> None:
    cfg = A.Config(lr_rule="grad_norm", grad_norm_power=1.0)
    drift = [1.0 * 1.01**t for t in range(600)]  # the norm grows ~400x over the run (RL)
    hps, _ = run(cfg, [A.Signals(grad_norm=g) for g in drift], host)
    assert lrs(hps)[-1] > 0.5e-3  # follows the drift: no ratchet towards min_lr
    spike = [1.0] * 200 + [10.0] * 3 + [1.0] * 400
    hps, _ = run(cfg, [A.Signals(grad_norm=g) for g in spike], host)
    lr = lrs(hps)
    assert min(lr[200:210]) < 0.5e-3  # a 10x spike cuts the lr
    assert lr[-1] == pytest.approx(1e-3, rel=0.05)  # and it recovers


def test_reward_scaling_maps_center_plus_minus_span() -> None:
    cfg = A.Config(reward_rule="scaling", ema_reward_beta=0.0, reward_center=0.5, reward_span=2.0, min_lr=1e-9)
    hps, _ = run(cfg, [A.Signals(reward=r) for r in (-1.5, 0.5, 2.5, 1.5)], host)
    lr = lrs(hps)
    assert lr[0] <= 1e-6 * 1e-3 * 1.0001  # about 0: the floor of the mapping
    np.testing.assert_allclose(lr[1:], [1e-3, 2e-3, 1.5e-3], rtol=1e-6)


def test_reward_variance_rule() -> None:
    cfg = A.Config(reward_rule="variance", ema_reward_beta=0.5, reward_span=1.0, reward_variance_k=1.0)
    calm, _ = run(cfg, [A.Signals(reward=1.0)] * 10, host)
    wild, _ = run(cfg, [A.Signals(reward=(-1.0) ** t * 3) for t in range(10)], host)
    assert lrs(calm)[-1] == pytest.approx(1e-3, rel=1e-5)
    assert lrs(wild)[-1] < 0.5e-3


def test_kl_target_lowers_lr_when_kl_overshoots_and_raises_it_below() -> None:
    cfg = A.Config(kl_rule="target", ema_kl_beta=0.0, kl_target=0.1, kl_gain=0.1, kl_clip=0.2)
    high, _ = run(cfg, [A.Signals(kl=0.5)] * 5, host)
    low, _ = run(cfg, [A.Signals(kl=0.01)] * 5, host)
    np.testing.assert_allclose(lrs(high), 1e-3 * np.exp(-0.02 * np.arange(1, 6)), rtol=1e-6)
    np.testing.assert_allclose(lrs(low), 1e-3 * np.exp(0.02 * np.arange(1, 6)), rtol=1e-6)  # error clipped


def test_cyclical_restarts_and_resets_smoothing() -> None:
    cfg = A.Config(
        lr_rule="cyclical", momentum_rule="inverse", cycle_length=4.0, min_lr=1e-4, max_lr=1e-2, ema_beta=0.5
    )
    hps, _ = run(cfg, [A.Signals(loss=1.0)] * 9, host)
    half = 1e-4 + (1e-2 - 1e-4) * 0.5
    np.testing.assert_allclose(lrs(hps)[[0, 2, 4, 8]], [1e-2, half, 1e-2, 1e-2], rtol=1e-6)
    assert lrs(hps)[3] < lrs(hps)[2] < lrs(hps)[1] < lrs(hps)[0]
    state = A.init(cfg, xp=host)
    for t in range(5):
        state, _ = A.update(state, A.Signals(loss=1.0))
        if t == 3:
            assert state.loss.decay_pow == pytest.approx(0.5**4, rel=1e-5)
    assert state.loss.decay_pow == pytest.approx(0.5, rel=1e-5)  # restarted at step 5


def test_warmup_is_linear_then_flat() -> None:
    cfg = A.Config(warmup_steps=4.0)
    hps, _ = run(cfg, [A.Signals()] * 6, host)
    np.testing.assert_allclose(lrs(hps), 1e-3 * np.array([0.25, 0.5, 0.75, 1, 1, 1]), rtol=1e-6)


@pytest.mark.parametrize(
    ("rule", "losses", "expected"),
    [
        ("inverse", [1.0], 0.5),
        ("inverse", [-2.0], 0.0),
        ("exp", [1.0], 1 - math.exp(-1.0)),
        ("relative", [1.0, 0.5], 0.9 + 0.05 * 0.5),
        ("relative", [-1.0, -2.0], 0.9 + 0.05 * 1.0),  # falling negative loss: improving
        ("relative", [1.0, 1.2], 0.9 - 0.05 * 0.2),
        ("relative", [1.0, 9.0], 0.9 - 0.05 * 1.0),  # relative change clipped to 1
        ("normalized", [4.0, 2.0], 1 / 3),
    ],
)
def test_momentum_rules(rule: str, losses: list[float], expected: float) -> None:
    cfg = A.Config(momentum_rule=rule, ema_beta=0.0, max_momentum=0.99, momentum_gain=0.05)
    hps, _ = run(cfg, [A.Signals(loss=x) for x in losses], host)
    assert moms(hps)[-1] == pytest.approx(min(max(expected, 0.0), 0.99), rel=1e-6)


def test_huge_signals_are_clipped_not_dropped() -> None:
    cfg = A.Config(lr_rule="trend", ema_beta=0.0, trend_up=2.0, trend_down=0.5, trend_threshold=0.0)
    hps, state = run(cfg, [A.Signals(loss=x) for x in (1e300, 1.0)], host)
    assert int(state.skipped) == 0
    assert lrs(hps)[-1] == pytest.approx(2e-3, rel=1e-5)


def test_signals_must_be_scalars() -> None:
    cfg = A.Config(lr_rule="trend")
    state = A.init(cfg)
    with pytest.raises(ValueError, match=r"Signals.loss must be a scalar \(shape \(\)\), got shape \(3,\)"):
        A.update(state, A.Signals(loss=np.ones(3)))


def test_init_rejects_non_config() -> None:
    with pytest.raises(TypeError, match=r"adaptive_sched\.Config"):
        A.init({"lr_rule": "trend"})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("ns", list(NAMESPACES))
def test_state_dict_round_trip_continues_bit_for_bit(ns: str, tmp_path: Any) -> None:
    xp = NAMESPACES[ns]
    cfg = config_for(("trend", "relative", "trend", "target"))
    stream = random_stream(3, 80)
    full, _ = run(cfg, stream, xp)
    state = A.init(cfg, xp=xp)
    for sig in stream[:40]:
        state, _ = A.update(state, sig)
    d = A.state_to_dict(state)
    np.savez(tmp_path / "s.npz", **{k: np.asarray(v) for k, v in d.items()})
    loaded = dict(np.load(tmp_path / "s.npz"))
    state = A.state_from_dict(loaded, cfg, xp=xp)
    resumed = []
    for sig in stream[40:]:
        state, hp = A.update(state, sig)
        resumed.append(hp)
    assert [as_float(h.lr) for h in resumed] == [as_float(h.lr) for h in full[40:]]
    assert [as_float(h.momentum) for h in resumed] == [as_float(h.momentum) for h in full[40:]]


def test_state_from_dict_rejects_future_versions_and_bad_keys() -> None:
    d = A.state_to_dict(A.init(A.Config()))
    with pytest.raises(ValueError, match="format_version=99 is not supported"):
        A.state_from_dict({**d, "format_version": 99})
    with pytest.raises(ValueError, match=r"missing \['step'\]"):
        A.state_from_dict({k: v for k, v in d.items() if k != "step"})
    with pytest.raises(ValueError, match=r"config\.lr_rule='warp'"):
        A.state_from_dict({**d, "config.lr_rule": "warp"})


def test_update_takes_the_state_alone_and_refuses_the_config_first_form() -> None:
    cfg = A.Config(lr_rule="trend")
    state = A.init(cfg)
    assert state.config.rules == cfg.rules and float(state.config.base_lr) == np.float32(cfg.base_lr)
    state, _ = A.update(state, A.Signals(loss=1.0))
    with pytest.raises(TypeError, match=r"update\(state, signals\) expects the State.*got Config.*no config argument"):
        A.update(cfg, A.Signals(loss=1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes 2 positional arguments but 3"):
        A.update(cfg, state, A.Signals(loss=1.0))  # type: ignore[call-arg]


@pytest.mark.parametrize("ns", ["scalar", "numpy"])
def test_bounds_hold_when_compared_as_the_users_floats(ns: str) -> None:
    # min_lr=1e-5's nearest float32 (9.99999974e-06) is below it: the bounds are rounded inward instead.
    xp = NAMESPACES[ns]
    for lo, hi, loss in ((1e-5, 1e-1, 10.0), (1e-5, 1.1e-3, 0.0)):
        cfg = A.Config(lr_rule="loss_decay" if loss else "trend", decay_k=100.0, trend_up=2.0, base_lr=1e-3,
                       min_lr=lo, max_lr=hi, momentum_rule="inverse", min_momentum=0.1, base_momentum=0.2,
                       max_momentum=0.3)
        state = A.init(cfg, xp=xp)
        for t in range(30):
            state, hp = A.update(state, A.Signals(loss=loss if loss else 1.0 / (t + 1)))
            assert cfg.min_lr <= float(hp.lr) <= cfg.max_lr
            assert cfg.min_momentum <= float(hp.momentum) <= cfg.max_momentum
        assert float(hp.lr) in (pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6))  # it reached a bound


def test_a_misspelt_keyword_names_the_closest_field() -> None:
    with pytest.raises(TypeError, match=r"'serach_rule'; did you mean 'search_rule'\?"):
        A.Config(serach_rule="range")
    with pytest.raises(TypeError, match=r"'trend_upp'; did you mean 'trend_up'\?"):
        A.recommended(1e-3, trend_upp=1.1)
    with pytest.raises(TypeError, match=r"'zzz'.*help\(adaptive_sched.Config\)"):
        A.Config(zzz=1.0)


def test_host_namespace_keeps_nan_and_rounds_past_float32_to_inf() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warning either
        assert math.isnan(host.f32(math.nan))
        assert host.f32(1e39) == math.inf and host.f32(-1e39) == -math.inf
        assert host.f32(3.4028235e38) == np.float32(3.4028235e38)  # float32's max stays finite
    # A NaN loss is "not observed", never "infinite": the evidence rule does not cut on it (it once did on the host).
    cfg = A.recommended(1e-3)
    stream = [A.Signals(loss=1.0, grad_norm=1.0, grad_cos=0.0), A.Signals(loss=math.nan, grad_norm=1.0, grad_cos=0.0)]
    a, _ = run(cfg, stream, host)
    b, _ = run(cfg, stream, np)
    assert [float(h.lr) for h in a] == [float(h.lr) for h in b]
    assert a[-1].lr > a[0].lr  # still ramping up: no cut
