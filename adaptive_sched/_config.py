"""The controller's configuration: static rule names plus numeric knobs as pytree leaves."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from adaptive_sched import _pytree

__all__ = [
    "FIELD_CHECKS",
    "Config",
    "KL_RULES",
    "LR_RULES",
    "MOMENTUM_RULES",
    "NUMERIC_FIELDS",
    "REWARD_RULES",
    "RULE_FIELDS",
    "check_field",
]

LR_RULES: tuple[str, ...] = ("none", "loss_decay", "trend", "variance", "grad_norm", "cyclical")
MOMENTUM_RULES: tuple[str, ...] = ("none", "inverse", "exp", "relative", "normalized")
REWARD_RULES: tuple[str, ...] = ("none", "scaling", "trend", "variance")
KL_RULES: tuple[str, ...] = ("none", "target")

RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "lr_rule": LR_RULES,
    "momentum_rule": MOMENTUM_RULES,
    "reward_rule": REWARD_RULES,
    "kl_rule": KL_RULES,
}

# Single-field constraints: name -> (predicate on a float64 ndarray, what is allowed).
_Check = tuple[Callable[[np.ndarray], np.ndarray], str]
_positive: _Check = (lambda v: v > 0, "a finite number > 0")
_nonneg: _Check = (lambda v: v >= 0, "a finite number >= 0")
_beta: _Check = (lambda v: (v >= 0) & (v < 1), "a number in [0, 1)")
_up: _Check = (lambda v: v >= 1, "a finite number >= 1")
_down: _Check = (lambda v: (v > 0) & (v <= 1), "a number in (0, 1]")
_any: _Check = (lambda v: np.ones_like(v, dtype=bool), "a finite number")

FIELD_CHECKS: dict[str, _Check] = {
    "base_lr": _positive,
    "min_lr": _positive,
    "max_lr": _positive,
    "base_momentum": _beta,
    "min_momentum": _beta,
    "max_momentum": _beta,
    "ema_beta": _beta,
    "ema_reward_beta": _beta,
    "ema_kl_beta": _beta,
    "warmup_steps": _nonneg,
    "trend_up": _up,
    "trend_down": _down,
    "trend_threshold": _nonneg,
    "decay_k": _nonneg,
    "variance_k": _nonneg,
    "grad_norm_power": _nonneg,
    "cycle_length": (lambda v: v >= 1, "a finite number >= 1"),
    "momentum_a": _positive,
    "momentum_gain": _nonneg,
    "reward_center": _any,
    "reward_span": _positive,
    "reward_up": _up,
    "reward_down": _down,
    "reward_threshold": _nonneg,
    "reward_variance_k": _nonneg,
    "kl_target": _positive,
    "kl_gain": _nonneg,
    "kl_clip": _positive,
}

NUMERIC_FIELDS: tuple[str, ...] = tuple(FIELD_CHECKS)

# Pairs that must be ordered (low <= high), checked elementwise.
_ORDERED: tuple[tuple[str, str], ...] = (
    ("min_lr", "base_lr"),
    ("base_lr", "max_lr"),
    ("min_momentum", "base_momentum"),
    ("base_momentum", "max_momentum"),
)


def _concrete(value: Any) -> np.ndarray | None:
    """``value`` as a float64 ndarray, or None when it is abstract (a JAX tracer)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:  # tracers and other abstract values: checked where they were built
        return None


def _fmt(value: Any) -> str:
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else np.array2string(arr, threshold=8)


def check_field(name: str, value: Any) -> None:
    """Raise ``ValueError`` if ``value`` is not allowed for numeric field ``name``."""
    if name not in FIELD_CHECKS:
        raise ValueError(
            f"unknown Config field {name!r}; numeric fields are: {', '.join(NUMERIC_FIELDS)}"
        )
    if isinstance(value, (bool, str)) or value is None:
        raise ValueError(f"Config.{name}={value!r} is invalid: must be {FIELD_CHECKS[name][1]}.")
    arr = _concrete(value)
    if arr is None:
        return
    pred, allowed = FIELD_CHECKS[name]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & pred(arr)
    if not np.all(ok):
        raise ValueError(f"Config.{name}={_fmt(value)} is invalid: must be {allowed}.")


@dataclasses.dataclass(frozen=True)
class Config:
    """What the controller does: which rules run, and every numeric knob they use.

    Rule names are static (they pick the code that runs); every numeric field is
    a pytree leaf, so configs that share rule names can be stacked along a
    leading axis and ``jax.vmap``-ed (see :func:`adaptive_sched.sweep`). Every
    field is validated at construction; a bad value raises ``ValueError`` naming
    the field, the value and what is allowed.

    The learning rate is ``lr_t = clip(base_lr * exp(s_t), min_lr, max_lr)``,
    where ``s_t`` is the sum of the active rules' log-factors (see the rule
    functions in ``adaptive_sched._core`` and the README's rule table). With
    every rule ``"none"`` the lr is ``base_lr`` exactly and momentum is left
    alone.

    Attributes:
      lr_rule: loss- or clock-driven lr rule: ``none | loss_decay | trend |
        variance | grad_norm | cyclical``.
      momentum_rule: ``none | inverse | exp | relative | normalized``.
      reward_rule: ``none | scaling | trend | variance``.
      kl_rule: ``none | target`` (lr down when the KL overshoots ``kl_target``).
      base_lr: the lr when no rule moves it (> 0).
      min_lr: lower bound of the lr; default ``base_lr / 1000``.
      max_lr: upper bound of the lr; default ``base_lr * 10``.
      base_momentum: momentum before any loss is observed, and the centre of
        the ``relative`` rule; ``min_momentum <= base_momentum <= max_momentum``.
      min_momentum: lower bound of momentum, in [0, 1).
      max_momentum: upper bound of momentum, in [0, 1).
      ema_beta: EMA decay for the loss and the gradient norm, in [0, 1); 0 means
        no smoothing.
      ema_reward_beta: EMA decay for the reward, in [0, 1).
      ema_kl_beta: EMA decay for the KL, in [0, 1).
      warmup_steps: linear warmup length in update calls (0 = none); the lr is
        multiplied by ``min(1, t / warmup_steps)``.
      trend_up: lr factor per step when the smoothed loss improves (>= 1).
      trend_down: lr factor per step when it does not (in (0, 1]).
      trend_threshold: relative improvement needed to count as improving (>= 0).
      decay_k: ``k`` of ``loss_decay``.
      variance_k: strength of the loss ``variance`` rule.
      grad_norm_power: exponent ``p`` of the ``grad_norm`` rule.
      cycle_length: period of the ``cyclical`` rule, in update calls (>= 1).
      momentum_a: ``a`` of the ``exp`` momentum rule (> 0).
      momentum_gain: gain of the ``relative`` momentum rule (>= 0).
      reward_center: reward mapped to ``base_lr`` by ``scaling``.
      reward_span: reward scale (> 0): ``scaling`` maps ``center -/+ span`` to
        about ``0`` / ``2 * base_lr``; ``variance`` measures the reward's
        standard deviation in units of it.
      reward_up: lr factor per step when the smoothed reward improves (>= 1).
      reward_down: lr factor per step when it does not (in (0, 1]).
      reward_threshold: relative improvement of the reward needed (>= 0).
      reward_variance_k: strength of the reward ``variance`` rule.
      kl_target: KL the ``target`` rule steers towards (> 0).
      kl_gain: log-lr change per step per unit of clipped relative KL error.
      kl_clip: clip of the relative KL error ``KL/target - 1`` (> 0).
    """

    lr_rule: str = "none"
    momentum_rule: str = "none"
    reward_rule: str = "none"
    kl_rule: str = "none"
    base_lr: Any = 1e-3
    min_lr: Any = None
    max_lr: Any = None
    base_momentum: Any = 0.9
    min_momentum: Any = 0.0
    max_momentum: Any = 0.999
    ema_beta: Any = 0.9
    ema_reward_beta: Any = 0.9
    ema_kl_beta: Any = 0.9
    warmup_steps: Any = 0.0
    trend_up: Any = 1.01
    trend_down: Any = 0.99
    trend_threshold: Any = 1e-4
    decay_k: Any = 1e-3
    variance_k: Any = 1.0
    grad_norm_power: Any = 1.0
    cycle_length: Any = 1000.0
    momentum_a: Any = 1.0
    momentum_gain: Any = 1.0
    reward_center: Any = 0.0
    reward_span: Any = 1.0
    reward_up: Any = 1.01
    reward_down: Any = 0.99
    reward_threshold: Any = 1e-4
    reward_variance_k: Any = 1.0
    kl_target: Any = 0.1
    kl_gain: Any = 0.1
    kl_clip: Any = 0.2

    def __post_init__(self) -> None:
        for field, allowed in RULE_FIELDS.items():
            value = getattr(self, field)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(
                    f"Config.{field}={value!r} is invalid: must be one of {', '.join(allowed)}."
                )
        check_field("base_lr", self.base_lr)  # before deriving the bounds from it
        if self.min_lr is None:
            object.__setattr__(self, "min_lr", _derive(self.base_lr, 1e-3))
        if self.max_lr is None:
            object.__setattr__(self, "max_lr", _derive(self.base_lr, 10.0))
        for name in NUMERIC_FIELDS:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, name, value)
            check_field(name, value)
        for low, high in _ORDERED:
            lo, hi = _concrete(getattr(self, low)), _concrete(getattr(self, high))
            if lo is not None and hi is not None and not np.all(lo <= hi):
                raise ValueError(
                    f"Config.{low}={_fmt(lo)} and Config.{high}={_fmt(hi)} are invalid: "
                    f"must satisfy {low} <= {high}."
                )

    @property
    def rules(self) -> tuple[str, str, str, str]:
        """The static part: ``(lr_rule, momentum_rule, reward_rule, kl_rule)``."""
        return (self.lr_rule, self.momentum_rule, self.reward_rule, self.kl_rule)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, validated like a new Config."""
        return dataclasses.replace(self, **changes)

    def numeric(self) -> dict[str, Any]:
        """The numeric knobs as a ``{name: value}`` dict."""
        return {name: getattr(self, name) for name in NUMERIC_FIELDS}

    def _map(self, fn: Callable[[Any], Any]) -> Config:
        """Apply ``fn`` to every numeric leaf, skipping validation (internal)."""
        return _unflatten(self.rules, tuple(fn(getattr(self, n)) for n in NUMERIC_FIELDS))


def _derive(base: Any, factor: float) -> Any:
    if isinstance(base, (int, float)) and not isinstance(base, bool):
        return float(base) * factor
    return base * factor


def _unflatten(rules: tuple[str, ...], leaves: Any) -> Config:
    obj = object.__new__(Config)
    for name, value in zip(RULE_FIELDS, rules):
        object.__setattr__(obj, name, value)
    for name, value in zip(NUMERIC_FIELDS, leaves):
        object.__setattr__(obj, name, value)
    return obj


def _register_with_jax() -> None:
    import jax

    def flatten_with_keys(cfg: Config) -> tuple[Any, Any]:
        children = tuple(
            (jax.tree_util.GetAttrKey(n), getattr(cfg, n)) for n in NUMERIC_FIELDS
        )
        return children, cfg.rules

    def flatten(cfg: Config) -> tuple[Any, Any]:
        return tuple(getattr(cfg, n) for n in NUMERIC_FIELDS), cfg.rules

    jax.tree_util.register_pytree_with_keys(
        Config, flatten_with_keys, _unflatten, flatten_func=flatten
    )


_pytree.when_jax_imported(_register_with_jax)

