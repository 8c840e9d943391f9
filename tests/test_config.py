"""Config: validation at construction, derived defaults, pytree behaviour."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import adaptive_sched as A
from adaptive_sched import _rules
from adaptive_sched._config import numeric_fields, rule_fields


def test_defaults_are_valid_and_derived_bounds() -> None:
    cfg = A.Config(base_lr=0.02)
    assert cfg.min_lr == pytest.approx(2e-5)
    assert cfg.max_lr == pytest.approx(0.2)
    assert cfg.rules == ("none",) * len(rule_fields())


def test_every_numeric_field_has_a_check_and_a_default() -> None:
    cfg = A.Config()
    assert all(_rules.knob_named(name) is not None for name in numeric_fields())
    for name in numeric_fields():
        assert math.isfinite(float(getattr(cfg, name))), name


@pytest.mark.parametrize("field", list(rule_fields()))
def test_unknown_rule_name_names_field_value_and_choices(field: str) -> None:
    with pytest.raises(ValueError, match=rf"Config\.{field}='bogus'") as err:
        A.Config(**{field: "bogus"})
    msg = str(err.value)
    assert f"Config.{field}='bogus'" in msg
    for choice in rule_fields()[field]:
        assert choice in msg


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_lr": 0.0}, "Config.base_lr=0.0 is invalid: must be a finite number > 0"),
        ({"base_lr": -1e-3}, "Config.base_lr=-0.001"),
        ({"min_lr": 0.0}, "Config.min_lr=0.0"),
        ({"base_lr": float("nan")}, "Config.base_lr=nan"),
        ({"max_lr": float("inf")}, "Config.max_lr=inf"),
        ({"ema_beta": 1.0}, "Config.ema_beta=1.0 is invalid: must be a number in [0, 1)"),
        ({"ema_reward_beta": -0.1}, "Config.ema_reward_beta=-0.1"),
        ({"max_momentum": 1.0}, "Config.max_momentum=1.0"),
        ({"trend_up": 0.9}, "Config.trend_up=0.9 is invalid: must be a finite number >= 1"),
        ({"trend_down": 1.1}, "Config.trend_down=1.1 is invalid: must be a number in (0, 1]"),
        ({"cycle_length": 0.5}, "Config.cycle_length=0.5"),
        ({"reward_span": 0.0}, "Config.reward_span=0.0"),
        ({"kl_target": -1.0}, "Config.kl_target=-1.0"),
        ({"base_lr": True}, "Config.base_lr=True"),
        ({"base_lr": "0.1"}, "Config.base_lr='0.1'"),
    ],
)
def test_bad_numbers_raise_with_field_value_and_allowed(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        A.Config(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_lr": 1e-3, "min_lr": 1e-2, "max_lr": 1.0}, "min_lr <= base_lr"),
        ({"base_lr": 1e-3, "min_lr": 1e-5, "max_lr": 1e-4}, "base_lr <= max_lr"),
        ({"min_momentum": 0.95, "base_momentum": 0.9}, "min_momentum <= base_momentum"),
        ({"base_momentum": 0.9, "max_momentum": 0.5}, "base_momentum <= max_momentum"),
    ],
)
def test_inverted_bounds_raise(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=r"Config\.") as err:
        A.Config(**kwargs)
    assert needle in str(err.value)


def test_array_valued_knobs_are_checked_elementwise() -> None:
    A.Config(trend_up=np.array([1.0, 1.5]))
    with pytest.raises(ValueError, match=r"Config.trend_up=\[1.  0.5\]"):
        A.Config(trend_up=np.array([1.0, 0.5]))


def test_replace_validates() -> None:
    cfg = A.Config(lr_rule="trend")
    assert cfg.replace(trend_up=1.2).trend_up == 1.2
    with pytest.raises(ValueError, match=r"Config\.trend_up"):
        cfg.replace(trend_up=0.5)


def test_ints_become_floats() -> None:
    cfg = A.Config(cycle_length=10, base_lr=1, max_lr=2, min_lr=1)
    assert isinstance(cfg.cycle_length, float) and isinstance(cfg.base_lr, float)


def test_config_is_a_pytree_with_static_rule_names() -> None:
    jax = pytest.importorskip("jax")
    cfg = A.Config(lr_rule="trend", trend_up=1.5)
    leaves, treedef = jax.tree.flatten(cfg)
    assert len(leaves) == len(cfg.knobs) == 13  # the core knobs and trend's: only what its rules read
    assert "trend" not in [str(x) for x in leaves]
    back = jax.tree.unflatten(treedef, leaves)
    assert back == cfg
    other = jax.tree.structure(A.Config(lr_rule="variance"))
    assert other != treedef  # rule names are part of the structure
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(cfg)]
    assert ".trend_up" in paths


def test_stacked_configs_vmap() -> None:
    jax = pytest.importorskip("jax")
    cfgs = [A.Config(lr_rule="trend", trend_up=u) for u in (1.0, 1.1, 1.2)]
    stacked = jax.tree.map(lambda *xs: np.stack([np.float32(x) for x in xs]), *cfgs)
    out = jax.vmap(lambda c: c.trend_up * 2.0)(stacked)
    np.testing.assert_allclose(np.asarray(out), [2.0, 2.2, 2.4], rtol=1e-6)


def test_repr_shows_the_active_rules_the_base_lr_and_only_the_non_default_knobs() -> None:
    assert repr(A.Config()) == "Config(base_lr=0.001)"  # the base lr always: a logged config names the run's lr
    cfg = A.Config(lr_rule="trend", trend_up=1.05, base_lr=1e-2)
    assert repr(cfg) == "Config(lr_rule='trend', base_lr=0.01, trend_up=1.05)"
    assert eval(repr(cfg), {"Config": A.Config}) == cfg  # it reads back
    assert repr(A.Config(base_lr=1e-2, max_lr=0.05)) == "Config(base_lr=0.01, max_lr=0.05)"  # derived bounds are defaults
    text = repr(A.recommended(1e-3))
    assert text == (
        "Config(lr_rule='evidence', cooldown_rule='linear', base_lr=0.001, min_lr=1e-05, max_lr=0.1, cooldown_fraction=0.2)"
    )
    assert "trend_up" not in text and "evidence_growth" not in text  # defaults are not shown


def test_config_is_immutable_data() -> None:
    import dataclasses
    import pickle

    cfg = A.Config(lr_rule="trend", trend_up=1.05)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trend_up = 2.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(cfg)) == cfg and hash(cfg) == hash(A.Config(lr_rule="trend", trend_up=1.05))
    assert A.Config(**cfg.asdict()) == cfg
    # a knob of an inactive rule is kept (not dropped) when it is not the default, and used once the rule is on
    other = A.Config(decay_k=0.5)
    assert other.decay_k == 0.5 and other.replace(lr_rule="loss_decay").decay_k == 0.5
    assert A.Config(decay_k=1e-3) == A.Config()  # at its default it changes nothing
