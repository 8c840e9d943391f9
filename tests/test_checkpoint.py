"""state_from_dict validates every entry of a controller checkpoint (finite, in bounds, right dtype)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import adaptive_sched as A


def saved() -> dict[str, Any]:
    cfg = A.Config(lr_rule="trend", momentum_rule="relative", reward_rule="scaling", min_lr=1e-5, max_lr=1e-1)
    state = A.init(cfg, xp=np)
    for t in range(5):
        state, _ = A.update(state, A.Signals(loss=5.0 - t, reward=float(t)))
    return A.state_to_dict(state)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("log_scale", math.nan, "'log_scale'=nan"),
        ("log_scale", 1e4, "'log_scale'=10000.0"),
        ("current_momentum", 5.0, "'current_momentum'=5.0"),
        ("current_momentum", np.float32(-0.5), "'current_momentum'"),
        ("step", -1, "'step'=-1"),
        ("step", 2**40, "'step'"),
        ("step", 2.5, "'step'=2.5.*integer"),
        ("step", np.float32(3.0), "'step'.*integer"),
        ("skipped", True, "'skipped'"),
        ("loss.mean", np.float32(np.inf), "'loss.mean'"),
        ("loss.mean", 1e30, "'loss.mean'"),
        ("loss.var", -2.0, "'loss.var'"),
        ("loss.decay_pow", 1.5, "'loss.decay_pow'"),
        ("reward.ref", "0.3", "'reward.ref'"),
        ("kl.ref", 1 + 2j, "'kl.ref'"),
        ("grad_norm.mean", np.zeros(3, np.float32), r"'grad_norm.mean'.*shape \(3,\)"),
        ("config.base_lr", math.nan, "'config.base_lr'"),
        ("config.max_lr", 1e-6, "Config.base_lr=.*Config.max_lr=1e-06"),
        ("config.trend_down", 1.5, "'config.trend_down'"),
        ("config.ema_beta", np.float64(1.0), "'config.ema_beta'"),
    ],
)
def test_state_from_dict_refuses_poisoned_entries_naming_them(key: str, value: Any, match: str) -> None:
    d = saved()
    d[key] = value
    with pytest.raises(ValueError, match=match):
        A.state_from_dict(d)


def test_state_from_dict_accepts_what_every_namespace_saved() -> None:
    d = saved()
    for xp_name in ("numpy", "scalar"):
        xp = np if xp_name == "numpy" else A.host
        state = A.state_from_dict(d, xp=xp)
        assert A.state_to_dict(A.state_from_dict(A.state_to_dict(state), xp=xp)).keys() == d.keys()
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as tx

    td = A.state_to_dict(A.state_from_dict(d, xp=tx))
    # the state's entries keep the namespace's type; the config's are what the Config holds (names, floats)
    assert all(isinstance(v, torch.Tensor) for k, v in td.items() if k != "format_version" and not k.startswith("config."))
    assert all(isinstance(v, (str, float)) for k, v in td.items() if k.startswith("config."))
    A.state_from_dict(td)


def test_a_checkpoint_saved_before_grad_cos_existed_loads_with_its_smoothing_fresh() -> None:
    cfg = A.recommended(1e-3)
    state = A.init(cfg, xp=np)
    for t in range(5):
        state, _ = A.update(state, A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=0.3))
    d = A.state_to_dict(state)
    old = {k: v for k, v in d.items() if not k.startswith("grad_cos.")}  # as saved before the signal existed
    back = A.state_from_dict(old, cfg)
    assert float(back.grad_cos.decay_pow) == 1.0 and float(back.grad_cos.mean) == 0.0
    assert float(back.loss.mean) == float(state.loss.mean)
    with pytest.raises(ValueError, match="keys do not match"):
        A.state_from_dict({k: v for k, v in d.items() if k != "grad_cos.var"}, cfg)  # a partial one is refused


def test_a_checkpoint_saved_before_a_late_slot_existed_loads_with_it_at_init() -> None:
    # recommended() gained the cooldown's "waited" and the evidence rule's "rl" slots after it shipped
    cfg = A.recommended(1e-3, total_steps=50)
    state = A.init(cfg, xp=A.host)
    for t in range(10):
        state, _ = A.update(state, A.Signals(loss=1.0 / (t + 1), grad_norm=1.0, grad_cos=0.2))
    d = A.state_to_dict(state)
    old = {k: v for k, v in d.items() if k not in ("rule_state.cooldown.linear.waited", "rule_state.lr.evidence.rl")}
    back = A.state_from_dict(old, cfg, xp=A.host)
    assert back.rule_state["cooldown.linear.waited"] == 0.0 and back.rule_state["lr.evidence.rl"] == 0.0
    nxt = A.Signals(loss=0.05, grad_norm=1.0, grad_cos=0.2)
    assert A.update(back, nxt)[1] == A.update(state, nxt)[1]  # continues exactly
    del old["rule_state.lr.evidence.s"]  # a slot that is not late is still required
    with pytest.raises(ValueError, match=r"missing \['rule_state.lr.evidence.s'\]"):
        A.state_from_dict(old, cfg, xp=A.host)
