"""The controller's configuration as immutable data: static rule names plus numeric knobs as pytree leaves.

A :class:`Config` holds exactly two things, both fixed at construction:

* the active rules, ``(("lr_rule", "trend"), ("reward_rule", "trend"))``: the
  static part (a JAX pytree's auxiliary data, so one trace per rule set);
* its knobs, ``{name: value}``: the core knobs (bounds, EMA decays, warmup),
  every knob of its active rules (defaults filled in) and any other known knob
  given with a non-default value (kept, so ``replace(lr_rule=...)`` later
  uses it). These are the pytree leaves, so configs that share rule names can
  be stacked along a leading axis and ``jax.vmap``-ed (sweeps).

Reading ``config.<knob>`` gives the stored value or, for a knob of an inactive
rule, its registered default; ``config.<family>_rule`` gives the active name
or ``"none"``. Validation, the names and the defaults come from the rule
registry (:mod:`adaptive_sched._rules`); the registry is only read, never
written, and a Config never changes: registering a rule (or a family) later
leaves every existing Config comparing, printing and pickling as before.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptive_sched import _rules

__all__ = ["Config", "check_field", "config_doc", "numeric_fields", "rule_fields"]

rule_fields = _rules.rule_fields
numeric_fields = _rules.numeric_fields

# Pairs that must be ordered (low <= high), checked elementwise.
_ORDERED: tuple[tuple[str, str], ...] = (
    ("min_lr", "base_lr"),
    ("base_lr", "max_lr"),
    ("min_momentum", "base_momentum"),
    ("base_momentum", "max_momentum"),
)
_DERIVED = {"min_lr": 1e-3, "max_lr": 10.0}  # default bound = base_lr * factor
_CORE = tuple(k.name for k in _rules.CORE_KNOBS)


def _concrete(value: Any) -> np.ndarray | None:
    """``value`` as a float64 ndarray, or None when it is abstract (a JAX tracer)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except Exception:  # tracers and other abstract values: checked where they were built
        return None


def _fmt(value: Any) -> str:
    arr = np.asarray(value)
    return repr(arr.item()) if arr.ndim == 0 else np.array2string(arr, threshold=8)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_field(name: str, value: Any) -> None:
    """Raise ``ValueError`` if ``value`` is not allowed for numeric field ``name``."""
    k = _rules.knob_named(name)
    if k is None:
        raise ValueError(f"unknown Config field {name!r}; numeric fields are: {', '.join(numeric_fields())}")
    if isinstance(value, (bool, str)) or value is None:
        raise ValueError(f"Config.{name}={value!r} is invalid: must be {k.allowed}.")
    arr = _concrete(value)
    if arr is None:
        return
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & k.check(arr)
    if not np.all(ok):
        raise ValueError(f"Config.{name}={_fmt(value)} is invalid: must be {k.allowed}.")


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if _number(a) and _number(b):
        return bool(a == b)
    x, y = _concrete(a), _concrete(b)
    return x is not None and y is not None and x.shape == y.shape and bool(np.all(x == y))


_DOC_HEAD = """What the controller does: which rules run, and every numeric knob they use.

    Build it from flat keyword arguments, ``Config(lr_rule="trend", trend_up=1.05,
    base_lr=1e-3)``; read any field as an attribute (``config.trend_up``,
    ``config.lr_rule``); derive a variant with :meth:`replace`. Rule names are
    static (they pick the code that runs); every numeric knob is a pytree leaf,
    so configs that share rule names can be stacked along a leading axis and
    ``jax.vmap``-ed (see :func:`adaptive_sched.sweep`). Every field is validated
    at construction; a bad value raises ``ValueError`` naming the field, the
    value and what is allowed. A Config is immutable, hashable (with scalar
    knobs), compares by value and pickles.

    The learning rate is ``lr_t = clip(base_lr * exp(a_t + s_t), min_lr, max_lr)``,
    where ``a_t + s_t`` is the sum of the active rules' log-factors (see the rules
    in ``adaptive_sched.rules`` and the README's rule table). With every rule
    ``"none"`` the lr is ``base_lr`` exactly and momentum is left alone.

    Fields (from the rule registry; :func:`adaptive_sched._config.config_doc`
    lists the ones registered since):

"""


def config_doc() -> str:
    """The Config docstring: the construction notes, then every field the registry knows now."""
    lines = [_DOC_HEAD]
    for fam in _rules.FAMILIES.values():
        lines.append(f"      {fam.field}: {fam.doc}: ``{' | '.join(_rules.rule_names(fam.name))}``.\n")
    for name in numeric_fields():
        k = _rules.knob_named(name)
        assert k is not None
        lines.append(f"      {k.name}: {k.doc}\n")
    return "".join(lines)


class Config:
    # The fields exist as attributes through __getattr__ (they derive from the
    # registry); type checkers see the rule fields below and Any for the knobs.
    if TYPE_CHECKING:
        lr_rule: str
        momentum_rule: str
        reward_rule: str
        kl_rule: str
        search_rule: str
        anneal_rule: str
        cooldown_rule: str

    __slots__ = ("_active", "_knobs", "_logs", "_rule_knobs")
    _active: tuple[tuple[str, str], ...]
    _knobs: dict[str, Any]
    # The float32 log of every knob, computed once (on the host where the knob is concrete) when the core
    # prepares a config for its arithmetic (adaptive_sched._core.prepare); empty in a Config you build.
    _logs: dict[str, Any]
    _rule_knobs: dict[str, Any]  # each active rule's knob tuple of these values, built on first use (knobs_of)

    def __init__(self, **fields: Any) -> None:
        active: dict[str, str] = {}
        given: dict[str, Any] = {}
        for name, value in fields.items():
            fam = _rules.family_of_field(name)
            if fam is not None:
                allowed = _rules.rule_names(fam.name)
                if not isinstance(value, str) or value not in allowed:
                    raise ValueError(f"Config.{name}={value!r} is invalid: must be one of {', '.join(allowed)}.")
                if value != "none":
                    active[name] = value
            elif _rules.knob_named(name) is not None:
                given[name] = float(value) if _number(value) else value
            else:
                known = [*_rules.rule_fields(), *numeric_fields()]
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else " (Config's fields: help(adaptive_sched.Config))"
                raise TypeError(f"Config.__init__() got an unexpected keyword argument {name!r}{hint}")
        order = list(_rules.FAMILIES)
        pairs = tuple(sorted(active.items(), key=lambda p: order.index(p[0].removesuffix("_rule"))))
        knobs: dict[str, Any] = {}
        for k in _rules.CORE_KNOBS:
            knobs[k.name] = given.pop(k.name, k.default)
        check_field("base_lr", knobs["base_lr"])  # before deriving the bounds from it
        for bound, factor in _DERIVED.items():
            if knobs[bound] is None:
                base = knobs["base_lr"]
                knobs[bound] = float(base) * factor if _number(base) else base * factor
        for field, name in pairs:
            for k in _rules.lookup(field.removesuffix("_rule"), name).knobs.values():
                knobs.setdefault(k.name, given.pop(k.name, k.default))
        # Knobs of inactive rules: kept when they differ from the default (not dropped), in registry order.
        for name in numeric_fields():
            if name in given:
                value = given.pop(name)
                default = _rules.knob_named(name).default  # type: ignore[union-attr]
                if not (_number(value) and value == default):
                    knobs.setdefault(name, value)
        for name, value in knobs.items():
            check_field(name, value)
        for low, high in _ORDERED:
            lo, hi = _concrete(knobs[low]), _concrete(knobs[high])
            if lo is not None and hi is not None and not np.all(lo <= hi):
                raise ValueError(
                    f"Config.{low}={_fmt(lo)} and Config.{high}={_fmt(hi)} are invalid: must satisfy {low} <= {high}."
                )
        _init(self, pairs, knobs, {})

    # ------------------------------------------------------------------ reading

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        knobs = self._knobs
        if name in knobs:
            return knobs[name]
        if _rules.family_of_field(name) is not None:
            return dict(self._active).get(name, "none")
        k = _rules.knob_named(name)
        if k is not None:
            return k.default
        raise AttributeError(f"'Config' object has no attribute {name!r}")

    @property
    def rules(self) -> tuple[str, ...]:
        """The static part: one rule name per family, in family order (``lr_rule, momentum_rule, ...``)."""
        active = dict(self._active)
        return tuple(active.get(f.field, "none") for f in _rules.FAMILIES.values())

    @property
    def active(self) -> tuple[tuple[str, str], ...]:
        """The active rules as ``(field, name)`` pairs, e.g. ``(("lr_rule", "trend"),)``."""
        return self._active

    @property
    def knobs(self) -> dict[str, Any]:
        """The stored knobs (the pytree leaves), ``{name: value}``: core knobs, the active rules', other non-defaults."""
        return dict(self._knobs)

    def numeric(self) -> dict[str, Any]:
        """Every numeric knob as a ``{name: value}`` dict (defaults for the inactive rules' knobs)."""
        out = {name: getattr(self, name) for name in numeric_fields()}
        return {**out, **self._knobs}

    def asdict(self) -> dict[str, Any]:
        """The flat keyword form: the active rule fields and the stored knobs (``Config(**c.asdict()) == c``)."""
        return {**dict(self._active), **self._knobs}

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, validated like a new Config."""
        return Config(**{**self.asdict(), **changes})

    def log_of(self, name: str) -> Any:
        """The float32 ``log`` of knob ``name`` (of ``1e-30`` at least) as the core computed it once (a prepared config).

        Rules read it through their knobs (``knobs.log_up``); a log taken once
        on the host (float64, rounded to float32) is the same number in every
        front door, where each backend's own float32 ``log`` may differ by an ulp.
        """
        try:
            return self._logs[name]
        except KeyError:
            raise KeyError(f"Config.log_of({name!r}): this config was not prepared by the core") from None

    def _map(self, fn: Callable[[Any], Any]) -> Config:
        """Apply ``fn`` to every stored knob (and prepared log), skipping validation (internal)."""
        return _make(self._active, {n: fn(v) for n, v in self._knobs.items()}, {n: fn(v) for n, v in self._logs.items()})

    # ------------------------------------------------------------------ value semantics

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: a Config is immutable (use replace)")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}: a Config is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Config:
            return NotImplemented
        a, b = self._knobs, other._knobs
        return self._active == other._active and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)

    def __hash__(self) -> int:
        return hash((self._active, tuple(self._knobs.items())))

    def __reduce__(self) -> Any:
        return (_make, (self._active, dict(self._knobs), dict(self._logs)))

    def __repr__(self) -> str:
        """The active rules, ``base_lr`` (always: a logged config names the run's lr) and the other knobs that
        differ from their defaults (lr bounds: from ``base_lr``)."""
        parts = [f"{field}={name!r}" for field, name in self._active]
        base = self._knobs["base_lr"]
        for name, value in self._knobs.items():
            if name == "base_lr":
                parts.append(f"base_lr={_show(value)}")
                continue
            if name in _DERIVED and _number(base):
                default: Any = float(base) * _DERIVED[name]
            else:
                k = _rules.knob_named(name)
                default = k.default if k is not None else None
            if not (_number(value) and _number(default) and math.isclose(value, default, rel_tol=1e-12)):
                parts.append(f"{name}={_show(value)}")
        return f"Config({', '.join(parts)})"


def _show(value: Any) -> str:
    if _number(value):
        return repr(value)
    arr = _concrete(value)
    if arr is None:
        return f"<{type(value).__name__}>"
    return repr(arr.item()) if arr.ndim == 0 else np.array2string(arr, threshold=6, separator=", ")


def _init(obj: Config, active: tuple[tuple[str, str], ...], knobs: dict[str, Any], logs: dict[str, Any]) -> None:
    object.__setattr__(obj, "_active", active)
    object.__setattr__(obj, "_knobs", knobs)
    object.__setattr__(obj, "_logs", logs)
    object.__setattr__(obj, "_rule_knobs", {})
    pytree_if_jax()


def _make(active: tuple[tuple[str, str], ...], knobs: dict[str, Any], logs: dict[str, Any] | None = None) -> Config:
    """A Config from its parts, without validation (pytree unflatten, pickle, the core's prepared form)."""
    obj = object.__new__(Config)
    _init(obj, tuple(active), dict(knobs), dict(logs or {}))
    return obj


# --------------------------------------------------------------------------- JAX pytree
# Registered when JAX is in use: at import if JAX is already imported, else at the
# first Config built (or unpickled) or state made (init) once it is, and by every
# module that uses JAX with configs (adaptive_sched.optax, sweeps, the core under
# JAX). No import hook.

_registered = [False]


def _register_with_jax() -> None:
    if _registered[0]:
        return
    import jax

    _registered[0] = True

    # Leaves: the knobs, then the prepared logs (keyed "log_<knob>"); the rule names are static metadata.
    def flatten_with_keys(cfg: Config) -> tuple[Any, Any]:
        children = tuple((jax.tree_util.GetAttrKey(n), v) for n, v in cfg._knobs.items())
        children += tuple((jax.tree_util.GetAttrKey(f"log_{n}"), v) for n, v in cfg._logs.items())
        return children, (cfg._active, tuple(cfg._knobs), tuple(cfg._logs))

    def flatten(cfg: Config) -> tuple[Any, Any]:
        return (*cfg._knobs.values(), *cfg._logs.values()), (cfg._active, tuple(cfg._knobs), tuple(cfg._logs))

    def unflatten(aux: Any, leaves: Any) -> Config:
        active, names, log_names = aux
        leaves = tuple(leaves)
        return _make(active, dict(zip(names, leaves)), dict(zip(log_names, leaves[len(names):])))

    jax.tree_util.register_pytree_with_keys(Config, flatten_with_keys, unflatten, flatten_func=flatten)


def ensure_pytree() -> None:
    """Register :class:`Config` with JAX's pytree registry now (imports JAX)."""
    _register_with_jax()


def pytree_if_jax() -> None:
    """Register :class:`Config` with JAX's pytree registry if JAX is imported (never imports it).

    Called when a Config is built and by :func:`adaptive_sched.init`, so a
    config built before ``import jax`` is a pytree by the time its state
    exists (and ``jax.jit(update)`` sees it).
    """
    if not _registered[0] and "jax.tree_util" in sys.modules:
        _register_with_jax()


pytree_if_jax()
