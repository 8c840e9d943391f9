"""The controller's configuration: static rule names plus numeric knobs as pytree leaves.

The fields derive from the rule registry (:mod:`adaptive_sched._rules`): one
``<family>_rule`` field per family, the core knobs below, then every registered
rule's knobs. Registering a rule adds its knobs as Config fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from adaptive_sched import _pytree, _rules

__all__ = [
    "CORE_KNOBS",
    "FIELD_CHECKS",
    "ANNEAL_RULES",
    "KL_RULES",
    "LR_RULES",
    "MOMENTUM_RULES",
    "NUMERIC_FIELDS",
    "REWARD_RULES",
    "RULE_FIELDS",
    "Config",
    "check_field",
]

_C = _rules.CHECKS
CORE_KNOBS: tuple[_rules.Knob, ...] = (
    _rules.knob("base_lr", 1e-3, _C["positive"], "the lr when no rule moves it (> 0)."),
    _rules.knob("min_lr", None, _C["positive"], "lower bound of the lr; default ``base_lr / 1000``."),
    _rules.knob("max_lr", None, _C["positive"], "upper bound of the lr; default ``base_lr * 10``."),
    _rules.knob(
        "base_momentum",
        0.9,
        _C["beta"],
        "momentum before any loss is observed, and the centre of the ``relative`` rule; "
        "``min_momentum <= base_momentum <= max_momentum``.",
    ),
    _rules.knob("min_momentum", 0.0, _C["beta"], "lower bound of momentum, in [0, 1)."),
    _rules.knob("max_momentum", 0.999, _C["beta"], "upper bound of momentum, in [0, 1)."),
    _rules.knob(
        "ema_beta", 0.9, _C["beta"], "EMA decay for the loss and the gradient norm, in [0, 1); 0 means no smoothing."
    ),
    _rules.knob("ema_reward_beta", 0.9, _C["beta"], "EMA decay for the reward, in [0, 1)."),
    _rules.knob("ema_kl_beta", 0.9, _C["beta"], "EMA decay for the KL, in [0, 1)."),
    _rules.knob(
        "warmup_steps",
        0.0,
        _C["nonneg"],
        "linear warmup length in update calls (0 = none); the lr is multiplied by ``min(1, t / warmup_steps)``.",
    ),
)
"""Knobs shared by every rule (bounds, EMA decays, warmup); rule knobs come from the registry."""
_CORE_NAMES = tuple(k.name for k in CORE_KNOBS)


class _LiveSeq(Sequence[str]):
    """A read-only tuple-like view that always reflects the registry."""

    def __init__(self, get: Callable[[], tuple[str, ...]]) -> None:
        self._get = get

    def __getitem__(self, i: Any) -> Any:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (Sequence, _LiveSeq)) else other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(self._get())


class _LiveMap(Mapping[str, Any]):
    """A read-only dict-like view that always reflects the registry."""

    def __init__(self, get: Callable[[], dict[str, Any]]) -> None:
        self._get = get

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


_Check = tuple[Callable[[np.ndarray], np.ndarray], str]


class _Derived:
    """What the registry implies for the Config, recomputed whenever it changes."""

    def __init__(self) -> None:
        self.rule_fields: dict[str, tuple[str, ...]] = {}
        self.knobs: dict[str, _rules.Knob] = {}
        self.checks: dict[str, _Check] = {}
        self.numeric: tuple[str, ...] = ()
        self.fields: tuple[str, ...] = ()


_D = _Derived()

LR_RULES: Sequence[str] = _LiveSeq(lambda: _D.rule_fields["lr_rule"])
MOMENTUM_RULES: Sequence[str] = _LiveSeq(lambda: _D.rule_fields["momentum_rule"])
REWARD_RULES: Sequence[str] = _LiveSeq(lambda: _D.rule_fields["reward_rule"])
KL_RULES: Sequence[str] = _LiveSeq(lambda: _D.rule_fields["kl_rule"])
ANNEAL_RULES: Sequence[str] = _LiveSeq(lambda: _D.rule_fields["anneal_rule"])

RULE_FIELDS: Mapping[str, tuple[str, ...]] = _LiveMap(lambda: _D.rule_fields)
"""Rule field -> allowed rule names (``"none"`` first), from the registry."""

FIELD_CHECKS: Mapping[str, _Check] = _LiveMap(lambda: _D.checks)
"""Numeric field -> (predicate on a float64 ndarray, what is allowed), from the knobs."""

NUMERIC_FIELDS: Sequence[str] = _LiveSeq(lambda: _D.numeric)
"""The numeric knobs (pytree leaves) in order: the core knobs, then the rules' knobs."""

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
    if name not in _D.checks:
        raise ValueError(
            f"unknown Config field {name!r}; numeric fields are: {', '.join(NUMERIC_FIELDS)}"
        )
    if isinstance(value, (bool, str)) or value is None:
        raise ValueError(f"Config.{name}={value!r} is invalid: must be {_D.checks[name][1]}.")
    arr = _concrete(value)
    if arr is None:
        return
    pred, allowed = _D.checks[name]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & pred(arr)
    if not np.all(ok):
        raise ValueError(f"Config.{name}={_fmt(value)} is invalid: must be {allowed}.")


_DOC_HEAD = """What the controller does: which rules run, and every numeric knob they use.

    Rule names are static (they pick the code that runs); every numeric field is
    a pytree leaf, so configs that share rule names can be stacked along a
    leading axis and ``jax.vmap``-ed (see :func:`adaptive_sched.sweep`). Every
    field is validated at construction; a bad value raises ``ValueError`` naming
    the field, the value and what is allowed.

    The learning rate is ``lr_t = clip(base_lr * exp(s_t), min_lr, max_lr)``,
    where ``s_t`` is the sum of the active rules' log-factors (see the rule
    functions in ``adaptive_sched._rules`` and the README's rule table). With
    every rule ``"none"`` the lr is ``base_lr`` exactly and momentum is left
    alone.

    The fields derive from the rule registry (``adaptive_sched._rules``).

    Attributes:
"""


class Config:
    # A frozen dataclass whose fields and docstring are generated from the
    # registry (_sync below), so type checkers see an open attribute set.
    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
        lr_rule: str
        momentum_rule: str
        reward_rule: str
        kl_rule: str
        anneal_rule: str

        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = _D.fields
        if len(args) > len(names):
            raise TypeError(f"Config() takes at most {len(names)} positional arguments but {len(args)} were given")
        for name, value in zip(names, args):
            if name in kwargs:
                raise TypeError(f"Config.__init__() got multiple values for argument {name!r}")
            kwargs[name] = value
        for name in kwargs:
            if name not in _D.knobs and name not in _D.rule_fields:
                raise TypeError(f"Config.__init__() got an unexpected keyword argument {name!r}")
        for name in _D.rule_fields:
            object.__setattr__(self, name, kwargs.get(name, "none"))
        for name, k in _D.knobs.items():
            object.__setattr__(self, name, kwargs.get(name, k.default))
        self.__post_init__()

    def __post_init__(self) -> None:
        for field, allowed in _D.rule_fields.items():
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
        for name in _D.numeric:
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

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in _D.fields)
        return f"Config({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return tuple(getattr(self, n) for n in _D.fields) == tuple(getattr(other, n) for n in _D.fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in _D.fields))

    @property
    def rules(self) -> tuple[str, ...]:
        """The static part: the rule names, one per family in registry order (``lr_rule, momentum_rule, reward_rule, kl_rule, anneal_rule``)."""
        return tuple(getattr(self, n) for n in _D.rule_fields)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, validated like a new Config."""
        return dataclasses.replace(self, **changes)

    def numeric(self) -> dict[str, Any]:
        """The numeric knobs as a ``{name: value}`` dict."""
        return {name: getattr(self, name) for name in _D.numeric}

    def _map(self, fn: Callable[[Any], Any]) -> Config:
        """Apply ``fn`` to every numeric leaf, skipping validation (internal)."""
        return _unflatten(self.rules, tuple(fn(getattr(self, n)) for n in _D.numeric))


if not TYPE_CHECKING:  # decorated at runtime only (type checkers would check against no fields)
    Config = dataclasses.dataclass(frozen=True, init=False, repr=False, eq=False)(Config)


def _derive(base: Any, factor: float) -> Any:
    if isinstance(base, (int, float)) and not isinstance(base, bool):
        return float(base) * factor
    return base * factor


def _unflatten(rules: tuple[str, ...], leaves: Any) -> Config:
    obj = object.__new__(Config)
    for name, value in zip(_D.rule_fields, rules):
        object.__setattr__(obj, name, value)
    for name, value in zip(_D.numeric, leaves):
        object.__setattr__(obj, name, value)
    return obj


def _config_doc() -> str:
    lines = [_DOC_HEAD]
    for fam in _rules.FAMILIES.values():
        lines.append(f"      {fam.field}: {fam.doc}: ``{' | '.join(_D.rule_fields[fam.field])}``.\n")
    for k in _D.knobs.values():
        lines.append(f"      {k.name}: {k.doc}\n")
    return "".join(lines)


def _sync() -> None:
    """Recompute the Config's fields, checks and docstring from the registry."""
    _D.rule_fields = {f.field: _rules.rule_names(f.name) for f in _rules.FAMILIES.values()}
    _D.knobs = {**{k.name: k for k in CORE_KNOBS}, **_rules.KNOBS}
    _D.checks = {n: (k.check, k.allowed) for n, k in _D.knobs.items()}
    _D.numeric = tuple(_D.knobs)
    _D.fields = (*_D.rule_fields, *_D.numeric)
    spec: list[tuple[str, Any, Any]] = [(n, str, dataclasses.field(default="none")) for n in _D.rule_fields]
    spec += [(n, Any, dataclasses.field(default=k.default)) for n, k in _D.knobs.items()]
    Config.__dataclass_fields__ = dataclasses.make_dataclass("Config", spec).__dataclass_fields__  # type: ignore[attr-defined]
    Config.__doc__ = _config_doc()


def core_field_names() -> tuple[str, ...]:
    """Fields a rule's knobs may not take: the rule fields and the core knobs."""
    return (*_D.rule_fields, *_CORE_NAMES)


_rules._LISTENERS.append(_sync)
_sync()


def _register_with_jax() -> None:
    import jax

    def flatten_with_keys(cfg: Config) -> tuple[Any, Any]:
        children = tuple(
            (jax.tree_util.GetAttrKey(n), getattr(cfg, n)) for n in _D.numeric
        )
        return children, cfg.rules

    def flatten(cfg: Config) -> tuple[Any, Any]:
        return tuple(getattr(cfg, n) for n in _D.numeric), cfg.rules

    jax.tree_util.register_pytree_with_keys(
        Config, flatten_with_keys, _unflatten, flatten_func=flatten
    )


_pytree.when_jax_imported(_register_with_jax)
