"""The rule registry: one definition per rule, and everything else follows from it.

The toy rule below is the contract for contributors: registering it (one
definition, no other file edited) must make it a validated Config choice with
its own knob, run under NumPy, the host namespace, jit, vmap and
both torch modes, carry its extra state slots everywhere a state goes, appear
in the generated docs, and pass the hostile-stream properties.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import (
    HOSTILE_VALUES,
    all_combos,
    as_float,
    check_bounds_and_finiteness,
    check_host_equals_device,
    config_for,
    random_stream,
    run_numpy,
    state_leaves,
)

import adaptive_sched as A
from adaptive_sched import _rules, host
from adaptive_sched._config import config_doc, numeric_fields, rule_fields

README = Path(__file__).resolve().parent.parent / "README.md"

TOY_RATE = _rules.knob("toy_rate", 0.25, _rules.CHECKS["nonneg"], "log-lr cut per new loss peak (>= 0).")


def toy_peak(xp: Any, obs: Any, knobs: Any, ctx: _rules.RuleContext) -> Any:
    """Toy peak (tests only): ``eta <- eta * exp(-rate)`` whenever the smoothed loss exceeds its running peak.

    ``peak_t = max(peak_{t-1}, l^_t)`` and ``count_t`` (observed steps) are the
    rule's state slots; the first observation sets the peak without a cut.
    """
    peak, count = ctx.slots["peak"], ctx.slots["count"]
    seen = count > 0
    rising = xp.logical_and(obs.ok, xp.logical_and(seen, obs.hat > peak))
    inc = xp.where(rising, -knobs.rate, 0.0)
    new_peak = xp.where(obs.ok, xp.where(seen, xp.where(obs.hat > peak, obs.hat, peak), obs.hat), peak)
    new_count = count + xp.astype(obs.ok, xp.int32)
    return inc, {"peak": new_peak, "count": new_count}


TOY = _rules.Rule(
    "lr",
    "toy_peak",
    "increment",
    "loss",
    toy_peak,
    {"rate": TOY_RATE},
    slots=(_rules.Slot("peak", "float32", 0.0), _rules.Slot("count", "int32", 0)),
)
TOY_KEYS = ("lr.toy_peak.peak", "lr.toy_peak.count")


@pytest.fixture
def toy() -> Any:
    with _rules.registered(TOY):
        yield TOY


def registry_snapshot() -> tuple[Any, ...]:
    return (
        tuple(_rules.RULES),
        numeric_fields(),
        rule_fields(),
        config_doc(),
        _rules.rule_table_markdown(),
    )


# ----------------------------------------------------------------------------- registration


def test_registration_is_undone_and_leaves_nothing_behind() -> None:
    before = registry_snapshot()
    with _rules.registered(TOY):
        assert registry_snapshot() != before
    assert registry_snapshot() == before
    with pytest.raises(ValueError, match=r"Config.lr_rule='toy_peak' is invalid: must be one of none, loss_decay"):
        A.Config(lr_rule="toy_peak")
    with pytest.raises(TypeError, match="unexpected keyword argument 'toy_rate'"):
        A.Config(toy_rate=0.5)


def test_a_rule_sets_structure_is_derived_once_and_follows_the_registry() -> None:
    """Slots and active rules come from the rule set, not from a cache on each config, and a re-registered rule's
    new slots are seen at once."""
    with _rules.registered(TOY):
        one, two = A.Config(lr_rule="toy_peak"), A.Config(lr_rule="toy_peak", toy_rate=0.3)
        assert _rules.structure(one.active) is _rules.structure(two.active)
        assert [k for k, _ in _rules.state_slots(one)][-2:] == list(TOY_KEYS)
    other = dataclasses.replace(TOY, slots=(_rules.Slot("peak", "float32", 0.0),))
    with _rules.registered(other):
        assert [k for k, _ in _rules.state_slots(one)] == [*[k for k, _ in _rules.record_slots(one)], TOY_KEYS[0]]
        state = A.init(one)
        assert TOY_KEYS[1] not in state.rule_state
    assert not hasattr(one, "_cache")


def test_toy_rule_validates_like_every_rule(toy: Any) -> None:
    assert "toy_peak" in A.LR_RULES and "toy_peak" in rule_fields()["lr_rule"]
    assert "toy_rate" in numeric_fields() and _rules.knob_named("toy_rate").allowed == "a finite number >= 0"
    cfg = A.Config(lr_rule="toy_peak", toy_rate=0.5)
    assert cfg.toy_rate == 0.5 and cfg.replace(toy_rate=1).toy_rate == 1.0
    assert A.Config().toy_rate == 0.25
    with pytest.raises(ValueError, match=r"Config.toy_rate=-1.0 is invalid: must be a finite number >= 0."):
        A.Config(lr_rule="toy_peak", toy_rate=-1.0)
    assert "toy_rate: log-lr cut per new loss peak" in config_doc()
    assert "``none | loss_decay | trend | variance | grad_norm | cyclical | evidence | toy_peak``" in config_doc()


def test_registry_refuses_inconsistent_definitions() -> None:
    with pytest.raises(ValueError, match="already registered"):
        _rules.register(dataclasses.replace(TOY, name="trend"))
    with pytest.raises(ValueError, match=r"Rule.kind='bogus' is invalid"):
        _rules.register(dataclasses.replace(TOY, kind="bogus"))
    with pytest.raises(ValueError, match=r"Rule.family='bogus' is invalid"):
        _rules.register(dataclasses.replace(TOY, family="bogus"))
    with pytest.raises(ValueError, match=r"Rule.signal='bogus' is invalid"):
        _rules.register(dataclasses.replace(TOY, signal="bogus"))
    with pytest.raises(ValueError, match="clashes with another Config field"):
        _rules.register(dataclasses.replace(TOY, knobs={"rate": dataclasses.replace(TOY_RATE, name="base_lr")}))
    decay_k = _rules.RULES["lr.loss_decay"].knobs["k"]
    with pytest.raises(ValueError, match="clashes with another Config field"):
        _rules.register(dataclasses.replace(TOY, knobs={"rate": dataclasses.replace(decay_k, default=9.0)}))
    with pytest.raises(ValueError, match="a clock rule reads no signal"):
        _rules.register(dataclasses.replace(TOY, kind="clock"))
    assert "lr.toy_peak" not in _rules.RULES


def test_usage_and_statefulness_derive_from_the_definitions(toy: Any) -> None:
    uses, track_var = A._core.signal_usage(A.Config(lr_rule="toy_peak", reward_rule="variance"))
    assert uses == {"loss": True, "reward": True, "grad_norm": False, "kl": False, "grad_cos": False}
    assert track_var == {"loss": False, "reward": True, "grad_norm": False, "kl": False, "grad_cos": False}
    assert A._core.signal_usage(A.Config(lr_rule="cyclical"))[0] == dict.fromkeys(A.Signals._fields, False)


# ----------------------------------------------------------------------------- it runs everywhere


def toy_stream() -> list[A.Signals]:
    # rises (cuts), then falls (no cuts), with hostile values mixed in
    losses = [1.0, 2.0, math.nan, 3.0, None, 2.5, 4.0, math.inf, 1.0, 0.5, 5.0, 0.1]
    return [A.Signals(loss=x, reward=0.3) for x in losses] + random_stream(5, 30, hostile=0.3)


def test_toy_rule_semantics_and_slots_in_plain_python(toy: Any) -> None:
    cfg = A.Config(lr_rule="toy_peak", toy_rate=0.5, ema_beta=0.0, min_lr=1e-9)
    state = A.init(cfg, xp=host)
    assert state.rule_state == {"lr.toy_peak.peak": 0.0, "lr.toy_peak.count": 0}
    lrs = []
    for x in (1.0, 2.0, math.nan, 3.0, 2.5, 4.0):
        state, hp = A.update(state, A.Signals(loss=x))
        lrs.append(hp.lr)
    cuts = [0, 1, 1, 2, 2, 3]  # new peaks at 2, 3 and 4; NaN holds
    assert lrs == pytest.approx([1e-3 * math.exp(-0.5 * c) for c in cuts], rel=1e-6)  # float32 arithmetic
    assert state.rule_state == {"lr.toy_peak.peak": 4.0, "lr.toy_peak.count": 5}
    assert type(state.rule_state["lr.toy_peak.count"]) is int


def test_toy_rule_numpy_jit_and_vmap_agree(toy: Any) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    cfg = config_for(("toy_peak", "exp", "trend", "none"), toy_rate=0.3)
    stream = [A.Signals(*(math.nan if v is None else v for v in s)) for s in toy_stream()]
    lr_n, _ = run_numpy(cfg, stream)

    state = A.init(cfg, xp=np)
    assert state.rule_state["lr.toy_peak.count"].dtype == np.int32
    assert state.rule_state["lr.toy_peak.peak"].dtype == np.float32

    traces = []

    def counted(st: A.State, sig: A.Signals) -> Any:
        traces.append(1)
        return A.update(st, sig)

    step = jax.jit(counted)
    s = A.init(cfg, xp=jnp)
    lr_j = []
    for sig in stream:
        s, hp = step(s, sig)
        lr_j.append(as_float(hp.lr))
    assert len(traces) == 1  # the slots are fixed-dtype leaves: one trace
    assert s.rule_state["lr.toy_peak.count"].dtype == jnp.int32
    assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in jax.tree.leaves(s))
    np.testing.assert_allclose(lr_j, lr_n, rtol=1e-5)

    cfgs = [cfg.replace(toy_rate=r) for r in (0.0, 0.3, 1.0)]
    batch = jax.tree.map(lambda *xs: np.array(xs, np.float32), *cfgs)
    sigs = A.Signals(*(jnp.asarray(np.array(col, np.float64), jnp.float32) for col in zip(*stream)))

    def scan_run(c: A.Config, xs: A.Signals) -> Any:
        def body(st: A.State, sig: A.Signals) -> Any:
            st, hp = A.update(st, sig)
            return st, hp.lr

        return jax.lax.scan(body, A.init(c), xs)[1]

    lr_v = jax.jit(jax.vmap(scan_run, in_axes=(0, None)))(batch, sigs)
    for i, c in enumerate(cfgs):
        np.testing.assert_allclose(np.asarray(lr_v[i]), run_numpy(c, stream)[0], rtol=1e-5)
    assert not np.allclose(np.asarray(lr_v[0]), np.asarray(lr_v[2]))  # the knob is a live leaf


def test_toy_rule_host_path_and_checkpoints_carry_the_slots(toy: Any) -> None:
    cfg = config_for(("toy_peak", "none", "none", "none"))
    assert list(A.init(cfg).rule_state)[-2:] == list(TOY_KEYS)
    check_host_equals_device(cfg, toy_stream())
    state = A.init(cfg, xp=host)
    for sig in toy_stream():
        state, _ = A.update(state, sig)
    count = state.rule_state["lr.toy_peak.count"]
    assert type(count) is int and count > 0
    d = A.state_to_dict(state)
    assert {f"rule_state.{k}" for k in TOY_KEYS} <= set(d)
    back = A.state_from_dict(d, xp=host)
    assert state_leaves(back) == state_leaves(state)
    back_np = A.state_from_dict(d)
    assert back_np.rule_state["lr.toy_peak.count"].dtype == np.int32
    del d["rule_state.lr.toy_peak.count"]
    with pytest.raises(ValueError, match=r"missing \['rule_state.lr.toy_peak.count'\]"):
        A.state_from_dict(d)


@pytest.mark.parametrize("device_mode", [False, True], ids=["host", "device"])
def test_toy_rule_through_the_torch_adapter(toy: Any, device_mode: bool) -> None:
    torch = pytest.importorskip("torch")
    from adaptive_sched.adapters.torch import AdaptiveScheduler

    cfg = config_for(("toy_peak", "none", "trend", "none"), toy_rate=0.2)
    stream = toy_stream()
    lr_n, _ = run_numpy(cfg, stream)
    p = torch.nn.Parameter(torch.zeros(3))
    lr0 = torch.tensor(1e-3) if device_mode else 1e-3
    opt = torch.optim.SGD([p], lr=lr0, momentum=0.5)
    sched = AdaptiveScheduler(opt, device_mode=device_mode, **{**cfg.numeric(), "lr_rule": "toy_peak", "reward_rule": "trend"})
    lrs, saved = [], None
    for i, sig in enumerate(stream):
        opt.step()
        sched.observe(loss=sig.loss, reward=sig.reward, grad_norm=sig.grad_norm, kl=sig.kl)
        lrs.append(float(opt.param_groups[0]["lr"]))
        if i == 20:
            saved = sched.state_dict()
    np.testing.assert_allclose(lrs, lr_n, rtol=2e-5)
    assert saved is not None and "rule_state.lr.toy_peak.count" in saved["controller"]
    opt2 = torch.optim.SGD([p], lr=lr0, momentum=0.5)
    again = AdaptiveScheduler(opt2, device_mode=device_mode, **{**cfg.numeric(), "lr_rule": "toy_peak", "reward_rule": "trend"})
    again.load_state_dict(saved)
    for sig in stream[21:]:
        opt2.step()
        again.observe(loss=sig.loss, R=sig.reward, grad_norm=sig.grad_norm, kl=sig.kl)
    assert float(opt2.param_groups[0]["lr"]) == pytest.approx(lrs[-1], rel=2e-6)


def test_toy_rule_host_and_device_mode_agree_bit_for_bit(toy: Any) -> None:
    # One numeric semantics: the registered rule's slots and the lr are the same float32
    # numbers in host mode (NumPy float32 scalars) and device mode (torch ops).
    torch = pytest.importorskip("torch")

    from adaptive_sched.adapters.torch import AdaptiveScheduler

    cfg = config_for(("toy_peak", "exp", "trend", "target"), toy_rate=0.3, ema_beta=0.0)
    stream = [*toy_stream(), A.Signals(loss=1e40, reward=-1e40), A.Signals(loss=1e15 - 1.0, reward=3e38)]
    check_host_equals_device(cfg, stream)
    state = A.init(cfg, xp=host)
    for sig in stream:
        state, _ = A.update(state, sig)
    # loss=1e40 was observed as the clipped limit (float32(1e15)), the new peak
    assert state.rule_state["lr.toy_peak.count"] > 0
    assert state.rule_state["lr.toy_peak.peak"] == np.float32(1e15)

    # ... and through the torch adapter's observe() in both modes
    lrs = {}
    for device_mode in (False, True):
        p = torch.nn.Parameter(torch.zeros(3))
        as_t = torch.tensor if device_mode else float
        opt = torch.optim.SGD([p], lr=as_t(1e-3), momentum=as_t(0.5))
        sched = AdaptiveScheduler(opt, device_mode=device_mode, config=cfg)
        for sig in stream:
            opt.step()
            sched.observe(*sig[:2], None, *sig[2:])
        lrs[device_mode] = (state_leaves(sched.controller_state), float(sched.hparams.lr))
    assert lrs[False] == lrs[True]


def test_observe_keywords_come_from_signals() -> None:
    torch = pytest.importorskip("torch")
    from adaptive_sched.adapters.torch import AdaptiveScheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    a = AdaptiveScheduler(opt, reward_rule="trend")
    b = AdaptiveScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3), reward_rule="trend")
    for r in (1.0, 2.0, 3.0):
        a.observe(R=r)
        b.observe(reward=r)
        a.optimizer.step()  # one update per optimizer step
        b.optimizer.step()
    assert a.get_last_lr() == b.get_last_lr() and a.get_last_lr()[0] > 1e-3
    with pytest.raises(TypeError, match="both R= and reward=: they are one signal"):
        a.observe(R=1.0, reward=1.0)
    with pytest.raises(TypeError, match=r"unknown signal keyword .rewards.; allowed: R, loss, reward, grad_norm, kl, grad_cos"):
        a.observe(rewards=1.0)


# ----------------------------------------------------------------------------- configs are data

COOL_FAMILY = _rules.Family("toy_cool", "toy post-clamp schedule (tests only)")
COOL_FLOOR = _rules.knob("toy_cool_floor", 0.1, _rules.CHECKS["positive"], "final factor of the toy cooldown.")


def toy_cooldown(xp: Any, obs: Any, knobs: Any, ctx: _rules.RuleContext) -> Any:
    """Toy cooldown (tests only): ``c_t = max(floor, 1 - (t - start) / length)`` once started (``length > 0``).

    Its slots ``start`` and ``length`` are set from outside (``set_slots``): the
    shape of the lead's cooldown rule, which needs a post-clamp kind.
    """
    sl = ctx.slots
    started = sl["length"] > 0.0
    frac = xp.clip((ctx.t - sl["start"]) / xp.where(started, sl["length"], 1.0), 0.0, 1.0)
    c = xp.where(started, 1.0 - (1.0 - knobs.floor) * frac, 1.0)
    return xp.log(xp.clip(c, knobs.floor, 1.0)), {"start": sl["start"], "length": sl["length"]}


COOL = _rules.Rule(
    "toy_cool", "linear", "schedule", None, toy_cooldown, {"floor": COOL_FLOOR},
    slots=(_rules.Slot("start"), _rules.Slot("length")),
)  # fmt: skip


def test_registering_a_rule_and_a_family_changes_no_existing_config() -> None:
    import pickle

    before = A.Config(lr_rule="trend", trend_up=1.05, reward_rule="scaling")
    text, blob, h = repr(before), pickle.dumps(before), hash(before)
    state, _ = A.update(A.init(before, xp=host), A.Signals(loss=1.0, reward=0.5))
    with _rules.registered(TOY, COOL_FAMILY, COOL):
        now = A.Config(lr_rule="trend", trend_up=1.05, reward_rule="scaling")
        assert before == now and hash(before) == h == hash(now)  # compares (and equals one made now)
        assert repr(before) == text  # prints
        assert pickle.loads(blob) == before == pickle.loads(pickle.dumps(before))  # pickles
        assert before.toy_cool_rule == "none" and before.rules[-1] == "none"  # a new family: "none"
        assert before.toy_rate == 0.25 and before.knobs == now.knobs  # a new rule's knob: its default, not stored
        A.update(state, A.Signals(loss=0.5, reward=0.5))  # and it still runs
    assert before == A.Config(lr_rule="trend", trend_up=1.05, reward_rule="scaling") and repr(before) == text


def test_schedule_kind_multiplies_after_the_clamp_outside_the_anti_windup() -> None:
    # trend up at every step pins the adaptive lr at max_lr; the cooldown started at t=4 then scales it
    # down to floor * max_lr, and a_t (log_scale) is neither pushed up nor down by it.
    with _rules.registered(COOL_FAMILY, COOL):
        cfg = A.Config(lr_rule="trend", toy_cool_rule="linear", trend_up=2.0, trend_threshold=0.0, ema_beta=0.0,
                       base_lr=1e-3, max_lr=4e-3, toy_cool_floor=0.25)  # fmt: skip
        for xp in (host, np):
            state, lrs, scales = A.init(cfg, xp=xp), [], []
            for t in range(1, 13):
                if t == 4:
                    state = A.set_slots(state, "toy_cool", start=3.0, length=4.0)
                state, hp = A.update(state, A.Signals(loss=10.0 - t))
                lrs.append(float(hp.lr))
                scales.append(float(state.log_scale))
            hi = float(np.float32(4e-3))
            assert lrs[1:3] == [pytest.approx(2e-3, rel=1e-6), pytest.approx(hi, rel=1e-6)]
            c = [1 - 0.75 * min(1.0, (t - 3) / 4) for t in range(4, 13)]  # 1 -> floor over 4 steps
            assert lrs[3:] == pytest.approx([hi * x for x in c], rel=1e-5)
            assert scales[2:] == pytest.approx([math.log(4.0)] * 10, rel=1e-6)  # a_t stays at the bound
        with pytest.raises(ValueError, match=r"no slot\(s\) \['begin'\]"):
            A.set_slots(state, "toy_cool", begin=1.0)
        check_host_equals_device(cfg, [A.Signals(loss=10.0 - t) for t in range(12)])


def test_a_front_door_starts_a_schedule_rule_with_set_slots_in_both_torch_modes() -> None:
    torch = pytest.importorskip("torch")
    from adaptive_sched.adapters.torch import AdaptiveScheduler

    with _rules.registered(COOL_FAMILY, COOL):
        cfg = A.Config(lr_rule="trend", toy_cool_rule="linear", trend_up=1.5, trend_threshold=0.0, base_lr=1e-3)
        state, expected = A.init(cfg, xp=host), []
        for t in range(1, 9):
            if t == 3:
                state = A.set_slots(state, "toy_cool", start=2.0, length=3.0)
            state, hp = A.update(state, A.Signals(loss=5.0 - t))
            expected.append(float(hp.lr))
        for device_mode in (False, True):
            lr0 = torch.tensor(1e-3) if device_mode else 1e-3
            sched = AdaptiveScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr0), cfg,
                                      device_mode=device_mode)  # fmt: skip
            lrs = []
            for t in range(1, 9):
                if t == 3:
                    sched.set_slots("toy_cool", start=2.0, length=3.0)
                sched.observe(loss=5.0 - t)
                sched.optimizer.step()  # one update per optimizer step
                lrs.append(float(sched.hparams.lr))
            assert lrs == expected, device_mode  # bit for bit, as every rule


def test_obs_bad_tells_a_non_finite_signal_from_a_missing_one() -> None:
    def backoff(xp: Any, obs: Any, knobs: Any, ctx: _rules.RuleContext) -> Any:
        """Toy backoff (tests only): ``eta <- eta * exp(-rate)`` at each NaN/inf loss; a missing loss holds."""
        return xp.where(obs.bad, -knobs.rate, 0.0)

    rate = _rules.knob("backoff_rate", 0.5, _rules.CHECKS["nonneg"], "log-lr cut per bad loss.")
    with _rules.registered(_rules.Rule("lr", "backoff", "increment", "loss", backoff, {"rate": rate})):
        cfg = A.Config(lr_rule="backoff", momentum_rule="inverse", ema_beta=0.0, min_lr=1e-9)
        stream = [A.Signals(loss=x) for x in (1.0, math.nan, None, math.inf, None, 2.0)]
        for xp in (host, np):
            state, lrs = A.init(cfg, xp=xp), []
            for sig in stream:
                state, hp = A.update(state, sig)
                lrs.append(float(hp.lr))
            assert lrs == pytest.approx([1e-3 * math.exp(-0.5 * k) for k in (0, 1, 1, 2, 2, 2)], rel=1e-6)
            assert int(state.skipped) == 2 and float(hp.momentum) == pytest.approx(2 / 3, rel=1e-6)
        check_host_equals_device(cfg, stream)


# ----------------------------------------------------------------------------- docs and hostile streams


def test_toy_rule_appears_in_the_generated_table(toy: Any) -> None:
    row = [line for line in _rules.rule_table_markdown().splitlines() if "`toy_peak`" in line]
    assert row == [
        (
            "| lr | `toy_peak` | Toy peak (tests only): ``eta <- eta * exp(-rate)`` whenever the smoothed loss "
            "exceeds its running peak. | stateful (+ slots) |"
        )
    ]


value = st.one_of(st.sampled_from(HOSTILE_VALUES), st.floats(allow_nan=True, allow_infinity=True))
signals_st = st.builds(A.Signals, *[value] * len(A.Signals._fields))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pick=st.integers(0, 10**6), stream=st.lists(signals_st, min_size=1, max_size=30), ns=st.sampled_from(["scalar", "numpy"]))
def test_toy_rule_gets_the_hostile_stream_properties(pick: int, stream: list[A.Signals], ns: str) -> None:
    with _rules.registered(TOY):
        combos = [c for c in all_combos() if "toy_peak" in c]  # the matrix grew by itself
        assert len(combos) == len(all_combos()) // len(A.LR_RULES)
        cfg = config_for(combos[pick % len(combos)])
        check_bounds_and_finiteness(cfg, stream, host if ns == "scalar" else np)
        check_host_equals_device(cfg, stream)


def _stub_fields(path: str, cls: str) -> tuple[str, ...]:
    import ast

    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    body = node.body
    for n in ast.walk(node):  # Config keeps its declarations under `if TYPE_CHECKING:`
        if isinstance(n, ast.If) and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING":
            body = n.body
    return tuple(
        t.target.id
        for t in body
        if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name) and not t.target.id.startswith("__")
    )


def test_type_checker_views_match_the_derived_classes() -> None:
    # State's and Config's runtime fields derive from Signals and the registry; the
    # declarations type checkers read must follow (a new signal or family updates them).
    assert _stub_fields(A._core.__file__, "State") == A.State._fields
    assert _stub_fields(A._config.__file__, "Config") == tuple(rule_fields())
