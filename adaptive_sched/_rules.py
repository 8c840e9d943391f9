"""The rule registry: every rule is one declarative :class:`Rule` definition.

A rule says which *family* it belongs to (the Config field that selects it:
``lr_rule``, ``momentum_rule``, ``reward_rule``, ``kl_rule``, ``anneal_rule``),
which signal it reads, what *kind* of output it produces, whether it needs the
signal's variance, its knobs (Config fields with defaults, allowed ranges and
docs), any extra per-rule state slots, and its function. Everything else
derives from the definitions: the Config's fields and validation, the core's
dispatch (which signals are smoothed, which track a variance), the State's
slots, every door (optax, torch host and device mode), checkpoints, the docs' rule table and the tests'
hostile-stream matrix.

The built-in rules live in :mod:`adaptive_sched.rules`, one module per family;
a rule written elsewhere registers the same way, in its own module::

    from adaptive_sched import _rules

    RATE = _rules.knob("my_rate", 0.1, _rules.CHECKS["nonneg"], "log-lr cut per rise (>= 0).")

    def my_rule(xp, obs, knobs, ctx):
        \"\"\"My rule: ``eta <- eta * exp(-rate)`` whenever the smoothed loss rises.\"\"\"
        return xp.where(xp.logical_and(obs.ok, obs.hat > obs.prev_hat), -knobs.rate, 0.0)

    _rules.register(_rules.Rule("lr", "my_rule", "increment", "loss", my_rule, {"rate": RATE}))

Registering never changes an existing object: a :class:`~adaptive_sched.Config`
holds its own rule names and knob values (see :mod:`adaptive_sched._config`);
the registry only answers which names and knobs exist.

Rule functions take one uniform signature ``fn(xp, obs, knobs, ctx)``:

* ``xp``: the array namespace (never branch on traced values: use ``xp.where``);
* ``obs``: this step's :class:`Obs` of the rule's signal (``None`` for a rule
  that reads no signal);
* ``knobs``: the rule's knobs by their local names (``knobs.up``), a NamedTuple
  of type :attr:`Rule.knobs_type`;
* ``ctx``: a :class:`RuleContext` with the config (for core knobs such as
  ``base_lr``), the step ``t`` (float32, 1-based) and the rule's own slots.

and return, by kind:

* ``"increment"``: a log-increment added to the accumulated (clamped, so
  anti-windup) log lr-scale ``a_t`` (stateful multiplicative rules);
* ``"factor"``: a log-factor ``s_t`` of the lr recomputed every step (stateless);
* ``"clock"``: ``(log_factor, restart)``; runs before the signals are
  observed, and ``restart`` resets every signal's smoothing;
* ``"momentum"``: the momentum value (clipped to the bounds by the core and
  held while the signal is not observed);
* ``"schedule"``: a log-factor ``log c_t`` applied *after* the adaptive clamp
  and outside the anti-windup: ``lr = clip(clip(base*exp(a+s), lo, hi) * c_t,
  lo, hi)`` (a cooldown that multiplies whatever the adaptive rules decided).
  Such a rule usually reads ``ctx.t`` and its slots, which a front door sets
  with :func:`adaptive_sched.set_slots` (e.g. "start the cooldown now").

A rule with ``slots`` returns ``(output, {slot: new_value})``; ``ctx.slots``
holds the current values. Slots live in ``State.rule_state`` under
``"<family>.<rule>.<slot>"`` and travel through every door, checkpoints and
device mode like every other state scalar.

A rule explains itself with two optional definitions, which
:func:`adaptive_sched.diagnostics` reads (nothing else does):

* ``explain(xp, obs, knobs, ctx) -> {name: value}``: its statistics, from the
  state alone (``obs``: the held view of its signal's EMA, ``ctx.t``: the
  step of the last update), e.g. the slope test's t statistic;
* ``events`` (names, e.g. ``("grew", "cut")``) and ``event(xp, obs, knobs,
  ctx, outcome) -> code``: which decision this step was (``0``: none, ``i``:
  ``events[i - 1]``), from this step's :class:`Outcome`. The core records the
  last event and its step in the state (:func:`record_slots`), so it costs a
  few operations per update and nothing more.

The core also keeps each stateful rule's own accumulated log-factor when
more than one is active (:func:`record_slots`), so the diagnostics can say
what each one contributed to the lr.

Numbers are float32 in every front door (see :mod:`adaptive_sched._host`):
read the ``log`` of a knob as ``knobs.log_<name>`` (``ctx.config.log_of(name)`` for a core knob; computed
once on the host when the knob is concrete), and if a rule needs an
elementwise function the core does not call yet, add it to
:mod:`adaptive_sched._host` (its float32 value on NumPy scalars; float64 then
rounded where a backend's float32 version is not correctly rounded, as
``_core._Torch64`` does on torch).

Register with :func:`register` (a new family with :func:`register_family`),
undo with :func:`unregister`, or use :func:`registered` as a context manager
in tests.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from adaptive_sched._signals import SIGNAL_NAMES

__all__ = [
    "CHECKS",
    "CORE_KNOBS",
    "FAMILIES",
    "KINDS",
    "RULES",
    "Family",
    "Knob",
    "Obs",
    "Outcome",
    "Rule",
    "RuleContext",
    "Slot",
    "active_rules",
    "knob",
    "knob_named",
    "knobs_of",
    "event_name",
    "record_slots",
    "register",
    "register_family",
    "registered",
    "rule_fields",
    "rule_names",
    "rule_table_markdown",
    "state_slots",
    "unregister",
]

KINDS: tuple[str, ...] = ("increment", "factor", "clock", "momentum", "schedule")

# --------------------------------------------------------------------------- definitions

Check = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Knob:
    """A numeric Config field.

    Attributes:
      name: the Config field name.
      default: its default value (``None`` only for the derived lr bounds).
      check: predicate on a float64 ndarray (finiteness is checked as well).
      allowed: what is allowed, in words (for error messages and docs).
      doc: one-line description (Config docstring, README).
    """

    name: str
    default: float | None
    check: Check
    allowed: str
    doc: str


@dataclasses.dataclass(frozen=True)
class Slot:
    """An extra scalar of per-rule state, carried in ``State.rule_state``.

    Attributes:
      name: slot name (unique within the rule).
      dtype: ``"float32"`` or ``"int32"``.
      init: value in a fresh state.
      late: added after the rule shipped: a checkpoint saved without it loads
        with it at ``init`` (which must then be the right value to continue from).
    """

    name: str
    dtype: str = "float32"
    init: float = 0.0
    late: bool = False


@dataclasses.dataclass(frozen=True)
class Family:
    """A group of mutually exclusive rules selected by one Config field (``<name>_rule``).

    Attributes:
      name: family name; the Config field is ``f"{name}_rule"``.
      doc: one-line description for the Config docstring.
      title: the family's name in the README's rule table (default ``name``).
    """

    name: str
    doc: str
    title: str = ""

    @property
    def field(self) -> str:
        return f"{self.name}_rule"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule, declared once.

    Attributes:
      family: family name (``"lr"``, ``"momentum"``, ``"reward"``, ``"kl"``, ``"anneal"``, ...).
      name: rule name, the value of the family's Config field.
      kind: one of :data:`KINDS` (see the module doc).
      signal: the :class:`~adaptive_sched.Signals` field it reads, or None.
      fn: ``fn(xp, obs, knobs, ctx)``; its docstring gives the formula and reference.
      knobs: local name -> :class:`Knob` (a knob shared by two rules is the same object).
      variance: whether it reads the signal's variance (tracked only then).
      slots: extra per-rule state scalars.
      formula: the README table's formula cell (markdown); default: the
        first paragraph of ``fn``'s docstring.
      reads: other signals the rule conditions on (smoothed like every read
        signal); their :class:`Obs` arrive in ``ctx.signals``.
      busy: for a rule that owns the lr for a while (the ``search`` family):
        ``busy(slots) -> bool``, of its new slots, True while it is still
        acting; rules that run after it see ``ctx.searching`` (the ``anneal``
        rule's legs start once it is False).
      planned: for a rule that will anneal the lr at known steps (the
        ``cooldown`` family): ``planned(xp, knobs, slots) -> bool``, of the state's
        slots, True once it is scheduled (a horizon, or a cooldown started);
        every rule sees ``ctx.planned`` (the ``anneal`` rule then leaves the
        gradual annealing to it).
      cooling: for such a rule, ``cooling(xp, knobs, slots, t) -> bool``: True
        while it anneals at update ``t``; every rule sees ``ctx.cooling`` (the
        ``evidence`` rule does not grow the lr then).
      events: names of the decisions the rule reports as events (``"cut"``,
        ``"grew"``, ...); event ``i`` (1-based) is ``events[i - 1]``.
      event: ``event(xp, obs, knobs, ctx, outcome) -> code``, this step's
        event (an int: 0 for none), from the rule's :class:`Outcome`; required
        with ``events``. Runs in every update: keep it a few operations.
      explain: ``explain(xp, obs, knobs, ctx) -> {name: value}``, the rule's
        statistics from the state (``obs``: its signal's held view, ``ctx.slots``
        its slots, ``ctx.t`` the step of the last update); run only by
        :func:`adaptive_sched.diagnostics`.
    """

    family: str
    name: str
    kind: str
    signal: str | None
    fn: Callable[..., Any]
    knobs: Mapping[str, Knob] = dataclasses.field(default_factory=dict)
    variance: bool = False
    slots: tuple[Slot, ...] = ()
    formula: str = ""
    reads: tuple[str, ...] = ()
    busy: Callable[[Mapping[str, Any]], Any] | None = None
    planned: Callable[[Any, Any, Mapping[str, Any]], Any] | None = None
    cooling: Callable[[Any, Any, Mapping[str, Any], Any], Any] | None = None
    events: tuple[str, ...] = ()
    event: Callable[..., Any] | None = None
    explain: Callable[..., Mapping[str, Any]] | None = None

    key: str = dataclasses.field(init=False, repr=False, compare=False)
    """``"<family>.<name>"``."""
    slot_keys: tuple[tuple[str, str], ...] = dataclasses.field(init=False, repr=False, compare=False)
    """``(slot name, State.rule_state key)`` of each slot."""

    def __post_init__(self) -> None:
        key = f"{self.family}.{self.name}"
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "slot_keys", tuple((s.name, f"{key}.{s.name}") for s in self.slots))

    @property
    def summary(self) -> str:
        """The first paragraph of the function's docstring, on one line."""
        doc = (self.fn.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())

    @property
    def knobs_type(self) -> type:
        """The NamedTuple its function receives as ``knobs``: the local knob names, then ``log_<name>`` of each.

        ``knobs.log_up`` is ``log(up)`` in float32, computed once per config
        (on the host where the knob is concrete), so every front door uses the same number.
        """
        return _knobs_type((*self.knobs, *(f"log_{n}" for n in self.knobs)))


_KNOB_TYPES: dict[tuple[str, ...], type] = {}


def _knobs_type(names: tuple[str, ...]) -> type:
    cls = _KNOB_TYPES.get(names)
    if cls is None:
        cls = _KNOB_TYPES[names] = collections.namedtuple("Knobs", names)
    return cls


class Obs(NamedTuple):
    """One step's view of a signal, after its EMA update: what a rule's ``obs`` is.

    Attributes:
      ok: observed this step (supplied and finite).
      bad: supplied but not finite (NaN/inf) this step; ``False`` when not
        supplied. Every rule holds when ``not ok``; a rule that must tell
        "bad value" (back off) from "no value" (hold) reads this.
      has_prev: there was a smoothed value before this step.
      hat: bias-corrected EMA after this step (held when not ``ok``).
      prev_hat: bias-corrected EMA before this step.
      var_hat: bias-corrected variance (tracked only for rules with ``variance=True``).
      ema: the signal's new :class:`~adaptive_sched.EmaState`.
      x: this step's raw value clipped to ``+-SIGNAL_LIMIT`` (0 when not ``ok``).
      inf: supplied and +-inf this step (a ``bad`` value that is not a NaN: NaN
        also marks a signal as missing, inf only ever as trouble).
    """

    ok: Any
    bad: Any
    has_prev: Any
    hat: Any
    prev_hat: Any
    var_hat: Any
    ema: Any
    x: Any
    inf: Any = False


class Outcome(NamedTuple):
    """What a rule decided this step: the argument its :attr:`Rule.event` function reads.

    Attributes:
      out: the rule's output this step (without its slots).
      slots: its new slots (``{}`` if it has none); ``ctx.slots`` holds the previous values.
      last: the code of its last recorded event (int32; 0 before the first).
    """

    out: Any
    slots: Mapping[str, Any]
    last: Any


class RuleContext(NamedTuple):
    """What a rule sees besides its signal and knobs.

    Attributes:
      config: the Config, its knobs as float32 values (core knobs: ``base_lr``, ``min_lr``, ...).
      t: the step, 1-based, float32.
      slots: the rule's slots ``{name: value}`` (empty if it declares none).
      signals: the :class:`Obs` of each signal in the rule's ``reads`` (``{}`` if none).
      searching: True while a rule that ran before this one is still busy
        (:attr:`Rule.busy`: the lr search); Python ``False`` when no such rule is active.
      planned: True while an active rule will anneal the lr at known steps
        (:attr:`Rule.planned`: a cooldown with a horizon, or started); Python
        ``False`` when no such rule is active.
      cooling: True while such a rule anneals the lr at this update
        (:attr:`Rule.cooling`); Python ``False`` when no such rule is active.
    """

    config: Any
    t: Any
    slots: Mapping[str, Any]
    signals: Mapping[str, Any] = types.MappingProxyType({})
    searching: Any = False
    planned: Any = False
    cooling: Any = False


def knobs_of(rule: Rule, config: Any) -> Any:
    """The rule's knob values from ``config``, as its :attr:`Rule.knobs_type` (by local name).

    Built on first use from the config's own (immutable) knob values and kept
    with it, in ``config._rule_knobs``, so an update does not rebuild it.
    """
    memo = config._rule_knobs
    hit = memo.get(rule.key)
    if hit is None:
        names = [k.name for k in rule.knobs.values()]
        hit = memo[rule.key] = rule.knobs_type(*(getattr(config, n) for n in names), *(config.log_of(n) for n in names))
    return hit


# --------------------------------------------------------------------------- checks and core knobs

_positive = (lambda v: v > 0, "a finite number > 0")
_nonneg = (lambda v: v >= 0, "a finite number >= 0")
_beta = (lambda v: (v >= 0) & (v < 1), "a number in [0, 1)")
_up = (lambda v: v >= 1, "a finite number >= 1")
_down = (lambda v: (v > 0) & (v <= 1), "a number in (0, 1]")
_any = (lambda v: np.ones_like(v, dtype=bool), "a finite number")
_flag = (lambda v: (v == 0) | (v == 1), "0 or 1")
CHECKS: dict[str, tuple[Check, str]] = {
    "positive": _positive, "nonneg": _nonneg, "beta": _beta, "up": _up, "down": _down, "any": _any,
    "ge1": _up, "flag": _flag,
}  # fmt: skip
"""Named ``(predicate, allowed)`` pairs for :func:`knob`."""


def knob(name: str, default: float | None, check: tuple[Check, str], doc: str) -> Knob:
    """A :class:`Knob` from a ``(predicate, allowed)`` pair (e.g. ``CHECKS["nonneg"]``)."""
    return Knob(name, default, check[0], check[1], doc)


CORE_KNOBS: tuple[Knob, ...] = (
    knob("base_lr", 1e-3, _positive, "the lr when no rule moves it (> 0)."),
    knob("min_lr", None, _positive, "lower bound of the lr; default ``base_lr / 1000``."),
    knob("max_lr", None, _positive, "upper bound of the lr; default ``base_lr * 10``."),
    knob(
        "base_momentum",
        0.9,
        _beta,
        "momentum before any loss is observed, and the centre of the ``relative`` rule; "
        "``min_momentum <= base_momentum <= max_momentum``.",
    ),
    knob("min_momentum", 0.0, _beta, "lower bound of momentum, in [0, 1)."),
    knob("max_momentum", 0.999, _beta, "upper bound of momentum, in [0, 1)."),
    knob("ema_beta", 0.9, _beta, "EMA decay for the loss and the gradient norm, in [0, 1); 0 means no smoothing."),
    knob("ema_reward_beta", 0.9, _beta, "EMA decay for the reward, in [0, 1)."),
    knob("ema_kl_beta", 0.9, _beta, "EMA decay for the KL, in [0, 1)."),
    knob(
        "warmup_steps",
        0.0,
        _nonneg,
        "linear warmup length in update calls (0 = none); the lr is multiplied by ``min(1, t / warmup_steps)``.",
    ),
)
"""Knobs every config has (bounds, EMA decays, warmup); a rule's knobs come with its definition."""
_CORE = {k.name: k for k in CORE_KNOBS}

# --------------------------------------------------------------------------- the registry

_FAMILIES: dict[str, Family] = {}
_RULES: dict[str, Rule] = {}  # "<family>.<name>" -> Rule, in registration order
_KNOBS: dict[str, Knob] = {}  # rule knobs by Config field name, in registration order
_FIELDS: dict[str, Family] = {}  # "<family>_rule" -> Family

FAMILIES: Mapping[str, Family] = types.MappingProxyType(_FAMILIES)
"""Family name -> :class:`Family`, in registration order (a read-only view of the registry)."""
RULES: Mapping[str, Rule] = types.MappingProxyType(_RULES)
"""``"<family>.<name>"`` -> :class:`Rule`, in registration order (a read-only view)."""


def register_family(family: Family) -> Family:
    """Add a rule family (a new ``<name>_rule`` Config field, ``"none"`` by default); returns it.

    Existing configs are unchanged: they read ``"none"`` for the new field.

    Raises:
      ValueError: the name is taken or its field clashes with a knob.
    """
    if family.name in _FAMILIES or family.field in _CORE or family.field in _KNOBS:
        raise ValueError(f"rule family {family.name!r} is already registered or clashes with a Config field")
    _FAMILIES[family.name] = family
    _FIELDS[family.field] = family
    return family


def register(rule: Rule) -> Rule:
    """Add ``rule`` (and its knobs not yet known) to the registry; returns it.

    Raises:
      ValueError: unknown family or kind, a name already taken, a knob name
        taken by a different knob, or a signal that is not a Signals field.
    """
    if rule.family not in _FAMILIES:
        raise ValueError(f"Rule.family={rule.family!r} is invalid: must be one of {', '.join(_FAMILIES)}.")
    if rule.kind == "clock" and rule.signal is not None:
        raise ValueError("a clock rule reads no signal (it runs before the signals are observed)")
    if rule.kind not in KINDS:
        raise ValueError(f"Rule.kind={rule.kind!r} is invalid: must be one of {', '.join(KINDS)}.")
    if rule.name == "none" or rule.key in _RULES:
        raise ValueError(f"rule {rule.family}_rule={rule.name!r} is already registered")
    if rule.signal is not None and rule.signal not in SIGNAL_NAMES:
        raise ValueError(
            f"Rule.signal={rule.signal!r} is invalid: must be None or one of {', '.join(SIGNAL_NAMES)}."
        )
    for extra in rule.reads:
        if extra not in SIGNAL_NAMES:
            raise ValueError(f"Rule.reads={rule.reads!r} is invalid: each must be one of {', '.join(SIGNAL_NAMES)}.")
    if rule.kind == "momentum" and rule.signal is None:
        raise ValueError("a momentum rule must read a signal (it holds while the signal is not observed)")
    for k in rule.knobs.values():
        if k.name in _CORE or k.name in _FIELDS or (k.name in _KNOBS and _KNOBS[k.name] != k):
            raise ValueError(f"knob {k.name!r} of rule {rule.key} clashes with another Config field")
    for s in rule.slots:
        if s.dtype not in ("float32", "int32"):
            raise ValueError(f"Slot.dtype={s.dtype!r} is invalid: must be 'float32' or 'int32'.")
    _check_explanation(rule)
    _RULES[rule.key] = rule
    _STRUCTURES.clear()
    for k in rule.knobs.values():
        _KNOBS.setdefault(k.name, k)
    return rule


def _check_explanation(rule: Rule) -> None:
    if bool(rule.events) != (rule.event is not None):
        raise ValueError(
            f"rule {rule.key}: Rule.events={rule.events!r} and Rule.event={rule.event!r} are invalid: "
            "give both (the event names and the function returning a code) or neither."
        )
    bad = [e for e in rule.events if not (isinstance(e, str) and e.isidentifier())]
    if bad or len(set(rule.events)) != len(rule.events):
        raise ValueError(f"Rule.events={rule.events!r} is invalid: must be distinct identifiers (e.g. 'cut').")


def unregister(item: Rule | Family) -> None:
    """Undo :func:`register` (the rule and the knobs no other rule uses) or :func:`register_family`.

    Configs that name the rule keep their values; they just cannot run until it is registered again.
    """
    if isinstance(item, Family):
        if any(r.family == item.name for r in _RULES.values()):
            raise ValueError(f"rule family {item.name!r} still has registered rules")
        del _FAMILIES[item.name], _FIELDS[item.field]
        return
    del _RULES[item.key]
    _STRUCTURES.clear()
    used = {k.name for r in _RULES.values() for k in r.knobs.values()}
    for k in item.knobs.values():
        if k.name not in used:
            _KNOBS.pop(k.name, None)


@contextlib.contextmanager
def registered(*items: Rule | Family) -> Iterator[tuple[Rule | Family, ...]]:
    """Register rules (and families) for the duration of a ``with`` block (tests, experiments)."""
    done: list[Rule | Family] = []
    try:
        for item in items:
            done.append(register_family(item) if isinstance(item, Family) else register(item))
        yield tuple(done)
    finally:
        for item in reversed(done):
            unregister(item)


# --------------------------------------------------------------------------- lookups


def rule_names(family: str) -> tuple[str, ...]:
    """``("none", ...)``: the rule names of ``family`` in registration order."""
    return ("none", *(r.name for r in _RULES.values() if r.family == family))


def rule_fields() -> dict[str, tuple[str, ...]]:
    """Rule field (``"lr_rule"``, ...) -> its allowed names (``"none"`` first), in family order."""
    return {f.field: rule_names(f.name) for f in _FAMILIES.values()}


def family_of_field(field: str) -> Family | None:
    """The family selected by Config field ``field`` (``"lr_rule"``), or None."""
    return _FIELDS.get(field)


def knob_named(name: str) -> Knob | None:
    """The core or rule knob called ``name`` (its Config field), or None."""
    return _CORE.get(name) or _KNOBS.get(name)


def numeric_fields() -> tuple[str, ...]:
    """Every numeric Config field: the core knobs, then the registered rules' knobs."""
    return (*_CORE, *_KNOBS)


def lookup(family: str, name: str) -> Rule:
    """The rule ``name`` of ``family``.

    Raises:
      ValueError: it is not registered (e.g. a config made while a rule module was imported).
    """
    rule = _RULES.get(f"{family}.{name}")
    if rule is None:
        raise ValueError(f"rule {family}_rule={name!r} is not registered (import the module that defines it)")
    return rule


class Structure(NamedTuple):
    """What a rule set (a config's ``active`` pairs) fixes: derived once per rule set, never per config or step."""

    rules: tuple[Rule, ...]  # the active rules, in family order
    record: tuple[tuple[str, Slot], ...]  # the core's record of their decisions (record_slots)
    slots: tuple[tuple[str, Slot], ...]  # record, then every rule's slots, in State order (state_slots)
    int_slots: frozenset[str]  # the keys of the int32 slots
    uses: dict[str, bool]  # {signal: whether a (non-clock) rule reads it}, over SIGNAL_NAMES
    track_var: dict[str, bool]  # {signal: whether a rule needs its variance}


_STRUCTURES: dict[tuple[tuple[str, str], ...], Structure] = {}  # structure()'s memo; the registry's edits clear it


def structure(active: tuple[tuple[str, str], ...]) -> Structure:
    """The :class:`Structure` of the rule set ``active`` (memoised; :func:`register`/:func:`unregister` clear it).

    A pure function of the rule names and the registry, so it is kept per rule set
    rather than on each (immutable) config. (A plain dict, not ``functools.cache``:
    ``torch.compile`` traces the core and warns about cache-wrapped functions.)
    """
    hit = _STRUCTURES.get(active)
    if hit is None:
        hit = _STRUCTURES[active] = _derive_structure(active)
    return hit


def _derive_structure(active: tuple[tuple[str, str], ...]) -> Structure:
    rules = tuple(lookup(f.removesuffix("_rule"), n) for f, n in active)
    stateful = [r for r in rules if r.kind == "increment"]
    record: list[tuple[str, Slot]] = []
    for r in rules:
        if r.kind == "increment" and len(stateful) > 1 and r is not stateful[-1]:
            record.append((f"{r.key}/log_factor", Slot("log_factor")))
        if r.events:
            record += [(f"{r.key}/event", Slot("event", "int32")), (f"{r.key}/event_step", Slot("event_step", "int32"))]
    slots = (*record, *((slot_key(r, s), s) for r in rules for s in r.slots))
    read = [r for r in rules if r.kind != "clock"]
    return Structure(
        rules,
        tuple(record),
        slots,
        frozenset(k for k, s in slots if s.dtype == "int32"),
        {s: any(r.signal == s or s in r.reads for r in read) for s in SIGNAL_NAMES},
        {s: any(r.signal == s and r.variance for r in read) for s in SIGNAL_NAMES},
    )


def active_rules(config: Any) -> tuple[Rule, ...]:
    """The config's active rules, in family order (its ``active`` pairs are in that order)."""
    return structure(config.active).rules


def slot_key(rule: Rule, slot: Slot) -> str:
    return f"{rule.key}.{slot.name}"


def state_slots(config: Any) -> tuple[tuple[str, Slot], ...]:
    """``(key, slot)`` of the core's :func:`record_slots`, then of every slot of the config's active rules, in State order."""
    return structure(config.active).slots


def record_slots(config: Any) -> tuple[tuple[str, Slot], ...]:
    """The core's record of the active rules' decisions, for :func:`adaptive_sched.diagnostics`: ``(key, slot)``.

    * ``"<family>.<rule>/event"`` and ``"<family>.<rule>/event_step"`` (int32)
      for each rule with :attr:`Rule.events`: the code of its last event
      (0: none yet) and the step (update count) at which it happened;
    * ``"<family>.<rule>/log_factor"`` (float32) for each stateful
      (``"increment"``) rule but the last, when more than one is active: the
      rule's own log-increments, accumulated with the same anti-windup clamp as
      the total ``log_scale`` (the last one's share is the rest of ``log_scale``,
      so no slot is needed for it, nor for a single stateful rule).

    The ``/`` keeps these keys apart from the rules' own slots (``"<family>.<rule>.<slot>"``).
    """
    return structure(config.active).record


def is_record_key(key: str) -> bool:
    """Whether a ``State.rule_state`` key is the core's record (:func:`record_slots`) rather than a rule's slot."""
    return "/" in key


def event_name(rule: Rule, code: Any) -> str | None:
    """The name of ``rule``'s event ``code`` (a number; 0 or an unknown code: None)."""
    i = int(code)
    return rule.events[i - 1] if 1 <= i <= len(rule.events) else None


def signals_read(config: Any) -> tuple[str, ...]:
    """The signals the config's active rules read, in :data:`~adaptive_sched.Signals` order."""
    read = {r.signal for r in active_rules(config) if r.kind != "clock"}
    return tuple(s for s in SIGNAL_NAMES if s in read)


# --------------------------------------------------------------------------- the rule table (docs)

_STATE_COLUMN = {"increment": "stateful", "factor": "stateless", "clock": "stateless", "momentum": "", "schedule": "schedule"}


def rule_table_markdown() -> str:
    """The docs' rule table (family, rule, formula, state), from the registry (``tools/update_rule_tables.py`` writes it)."""
    lines = ["| family | rule | formula | state |", "|---|---|---|---|"]
    for r in _RULES.values():
        fam = _FAMILIES[r.family]
        formula = r.formula or r.summary.replace("|", "\\|")
        state = _STATE_COLUMN[r.kind] + (" (+ slots)" if r.slots else "")
        lines.append(f"| {fam.title or fam.name} | `{r.name}` | {formula} | {state} |".replace(" |  |", " | |"))
    return "\n".join(lines) + "\n"
