"""The rule registry: every rule is one declarative :class:`Rule` definition.

A rule says which *family* it belongs to (the Config field that selects it:
``lr_rule``, ``momentum_rule``, ``reward_rule``, ``kl_rule``), which signal it
reads, what *kind* of output it produces, whether it needs the signal's
variance, its knobs (Config fields with defaults, allowed ranges and docs),
any extra per-rule state scalars, and its function. Everything else derives
from the definitions: the Config's fields, validation and docstring, the
core's dispatch (which signals are smoothed, which track a variance, whether
the accumulated log-scale is used), the State's extra slots, the host path,
checkpoints, the README's rule table and the tests' hostile-stream matrix.

Rule functions take one uniform signature ``fn(xp, obs, knobs, ctx)``:

* ``xp``: the array namespace (never branch on traced values: use ``xp.where``);
* ``obs``: this step's view of the rule's signal (``None`` for a rule that
  reads no signal), with ``ok`` (observed this step), ``has_prev``, ``hat``
  (bias-corrected EMA), ``prev_hat``, ``var_hat`` (bias-corrected variance, if
  the rule declares ``variance=True``) and ``ema`` (the raw :class:`EmaState`);
* ``knobs``: the rule's knobs by their local names (``knobs.up``);
* ``ctx``: a :class:`RuleContext` with the config (for core knobs such as
  ``base_lr``), the step ``t`` (float32, 1-based) and the rule's own slots.

and return, by kind:

* ``"increment"``: a log-increment added to the accumulated (clamped, so
  anti-windup) log lr-scale ``a_t`` (stateful multiplicative rules);
* ``"factor"``: a log-factor of the lr recomputed every step (stateless);
* ``"clock"``: ``(log_factor, restart)``; runs before the signals are
  observed, and ``restart`` resets every signal's smoothing;
* ``"momentum"``: the momentum value (clipped to the bounds by the core and
  held while the signal is not observed).

Numbers are float32 in every front door (see :mod:`adaptive_sched._scalar`):
take the ``log`` of a knob with :func:`log_knob` (computed once on the host when
the knob is concrete), and if a rule needs an elementwise function the core
does not call yet, add its row to :data:`adaptive_sched._scalar.UNARY`.

A rule with ``slots`` returns ``(output, {slot: new_value})``; ``ctx.slots``
holds the current values. Slots live in ``State.rule_state`` under
``"<family>.<rule>.<slot>"`` and travel through the host path, checkpoints and
device mode like every other state scalar.

Register a rule with :func:`register` (undo with :func:`unregister`, or use
:func:`registered` as a context manager in tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from adaptive_sched import _scalar

__all__ = [
    "FAMILIES",
    "KINDS",
    "Family",
    "Knob",
    "Rule",
    "RuleContext",
    "Slot",
    "active_rules",
    "knob",
    "log_knob",
    "register",
    "registered",
    "rule_names",
    "rule_table_markdown",
    "unregister",
]

SIGNAL_LIMIT = 1e15
"""Finite signals are clipped to ``[-SIGNAL_LIMIT, SIGNAL_LIMIT]`` (keeps squares finite in float32)."""

_TINY = 1e-30  # floor for values that are divided by or logged
_REL_EPS = 1e-12  # floor of |reference| in relative comparisons
_MIN_SCALING = 1e-6  # "about 0" of the reward scaling rule, as a factor of base_lr

KINDS: tuple[str, ...] = ("increment", "factor", "clock", "momentum")

# --------------------------------------------------------------------------- definitions

Check = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Knob:
    """A numeric Config field.

    Attributes:
      name: the Config field name.
      default: its default value.
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
    """

    name: str
    dtype: str = "float32"
    init: float = 0.0


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
      family: family name (``"lr"``, ``"momentum"``, ``"reward"``, ``"kl"``).
      name: rule name, the value of the family's Config field.
      kind: ``"increment" | "factor" | "clock" | "momentum"`` (see the module doc).
      signal: the :class:`~adaptive_sched.Signals` field it reads, or None.
      fn: ``fn(xp, obs, knobs, ctx)``; its docstring gives the formula and reference.
      knobs: local name -> :class:`Knob` (shared knobs are the same object).
      variance: whether it reads the signal's variance (tracked only then).
      slots: extra per-rule state scalars.
      formula: the README table's formula cell (markdown); default: the
        first paragraph of ``fn``'s docstring.
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

    @property
    def key(self) -> str:
        return f"{self.family}.{self.name}"

    @property
    def summary(self) -> str:
        """The first paragraph of the function's docstring, on one line."""
        doc = (self.fn.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(doc.split())


class RuleContext(NamedTuple):
    """What a rule sees besides its signal and knobs.

    Attributes:
      config: the Config (core knobs: ``base_lr``, ``min_lr``, ...).
      t: the step, 1-based, float32.
      slots: the rule's slots ``{name: value}`` (empty if it declares none).
    """

    config: Any
    t: Any
    slots: Mapping[str, Any]


class _Knobs:
    """Attribute access to a rule's knob values by local name."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)


def knobs_of(rule: Rule, config: Any) -> _Knobs:
    """The rule's knob values from ``config``, by local name."""
    return _Knobs({local: getattr(config, k.name) for local, k in rule.knobs.items()})


# --------------------------------------------------------------------------- registry

FAMILIES: dict[str, Family] = {}
RULES: dict[str, Rule] = {}  # "<family>.<name>" -> Rule, in registration order
KNOBS: dict[str, Knob] = {}  # rule knobs in Config field order
_LISTENERS: list[Callable[[], None]] = []


def _changed() -> None:
    for fn in _LISTENERS:
        fn()


def knob(name: str, default: float | None, check: tuple[Check, str], doc: str) -> Knob:
    """A :class:`Knob` from a ``(predicate, allowed)`` pair."""
    return Knob(name, default, check[0], check[1], doc)


def rule_names(family: str) -> tuple[str, ...]:
    """``("none", ...)``: the rule names of ``family`` in registration order."""
    return ("none", *(r.name for r in RULES.values() if r.family == family))


def active_rules(config: Any) -> list[Rule]:
    """The config's active rules, in family order."""
    out = []
    for fam in FAMILIES.values():
        name = getattr(config, fam.field)
        if name != "none":
            out.append(RULES[f"{fam.name}.{name}"])
    return out


def register(rule: Rule) -> Rule:
    """Add ``rule`` (and its knobs not yet known) to the registry; returns it.

    Raises:
      ValueError: unknown family or kind, a name already taken, a knob name
        taken by a different knob, or a signal that is not a Signals field.
    """
    from adaptive_sched import _signals
    from adaptive_sched._config import core_field_names

    core_fields = core_field_names()

    if rule.family not in FAMILIES:
        raise ValueError(f"Rule.family={rule.family!r} is invalid: must be one of {', '.join(FAMILIES)}.")
    if rule.kind == "clock" and rule.signal is not None:
        raise ValueError("a clock rule reads no signal (it runs before the signals are observed)")
    if rule.kind not in KINDS:
        raise ValueError(f"Rule.kind={rule.kind!r} is invalid: must be one of {', '.join(KINDS)}.")
    if rule.name == "none" or rule.key in RULES:
        raise ValueError(f"rule {rule.family}_rule={rule.name!r} is already registered")
    if rule.signal is not None and rule.signal not in _signals.SIGNAL_NAMES:
        raise ValueError(
            f"Rule.signal={rule.signal!r} is invalid: must be None or one of {', '.join(_signals.SIGNAL_NAMES)}."
        )
    if rule.kind == "momentum" and rule.signal is None:
        raise ValueError("a momentum rule must read a signal (it holds while the signal is not observed)")
    for k in rule.knobs.values():
        if k.name in core_fields or (k.name in KNOBS and KNOBS[k.name] != k):
            raise ValueError(f"knob {k.name!r} of rule {rule.key} clashes with another Config field")
    for s in rule.slots:
        if s.dtype not in ("float32", "int32"):
            raise ValueError(f"Slot.dtype={s.dtype!r} is invalid: must be 'float32' or 'int32'.")
    RULES[rule.key] = rule
    for k in rule.knobs.values():
        KNOBS.setdefault(k.name, k)
    _changed()
    return rule


def unregister(rule: Rule) -> None:
    """Remove ``rule`` and the knobs no other rule uses (undoes :func:`register`)."""
    del RULES[rule.key]
    used = {k.name for r in RULES.values() for k in r.knobs.values()}
    for k in rule.knobs.values():
        if k.name not in used:
            KNOBS.pop(k.name, None)
    _changed()


@contextlib.contextmanager
def registered(*rules: Rule) -> Iterator[tuple[Rule, ...]]:
    """Register ``rules`` for the duration of a ``with`` block (tests, experiments)."""
    done: list[Rule] = []
    try:
        for r in rules:
            done.append(register(r))
        yield tuple(done)
    finally:
        for r in reversed(done):
            unregister(r)


def slot_key(rule: Rule, slot: Slot) -> str:
    return f"{rule.key}.{slot.name}"


def state_slots(config: Any) -> list[tuple[str, Slot]]:
    """``(key, slot)`` for every slot of the config's active rules, in State order."""
    return [(slot_key(r, s), s) for r in active_rules(config) for s in r.slots]


_STATE_COLUMN = {"increment": "stateful", "factor": "stateless", "clock": "stateless", "momentum": ""}
README_BEGIN = "<!-- rule table: generated by adaptive_sched._rules.rule_table_markdown(); do not edit -->"
README_END = "<!-- end of rule table -->"


def rule_table_markdown() -> str:
    """The README's rule table (family, rule, formula, state), generated from the registry."""
    lines = ["| family | rule | formula | state |", "|---|---|---|---|"]
    for r in RULES.values():
        fam = FAMILIES[r.family]
        formula = r.formula or r.summary.replace("|", "\\|")
        state = _STATE_COLUMN[r.kind] + (" (+ slots)" if r.slots else "")
        lines.append(f"| {fam.title or fam.name} | `{r.name}` | {formula} | {state} |".replace(" |  |", " | |"))
    return "\n".join(lines) + "\n"


def update_readme(path: str) -> bool:
    """Rewrite the rule table between the markers in the README at ``path``; True if it changed.

    After adding or changing a rule, run
    ``python -c "from adaptive_sched._rules import update_readme; update_readme('README.md')"``.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(README_BEGIN + "\n", 1)
    _, tail = rest.split(README_END, 1)
    new = head + README_BEGIN + "\n" + rule_table_markdown() + README_END + tail
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


# --------------------------------------------------------------------------- checks

_positive = (lambda v: v > 0, "a finite number > 0")
_nonneg = (lambda v: v >= 0, "a finite number >= 0")
_beta = (lambda v: (v >= 0) & (v < 1), "a number in [0, 1)")
_up = (lambda v: v >= 1, "a finite number >= 1")
_down = (lambda v: (v > 0) & (v <= 1), "a number in (0, 1]")
_any = (lambda v: np.ones_like(v, dtype=bool), "a finite number")
_ge1 = (lambda v: v >= 1, "a finite number >= 1")
CHECKS = {"positive": _positive, "nonneg": _nonneg, "beta": _beta, "up": _up, "down": _down, "any": _any, "ge1": _ge1}

# --------------------------------------------------------------------------- families
# Adding a family is one line here; its rules combine by their kind.

for _fam in (
    Family("lr", "loss-, gradient- or clock-driven lr rule"),
    Family("momentum", "momentum rule, from the smoothed loss"),
    Family("reward", "reward-driven lr rule"),
    Family("kl", "KL-driven lr rule", title="KL"),
    Family("anneal", "horizon-free annealing of the lr by a stationarity test on the loss"),
):
    FAMILIES[_fam.name] = _fam

# --------------------------------------------------------------------------- knobs (Config field order)

TREND_UP = knob("trend_up", 1.01, _up, "lr factor per step when the smoothed loss improves (>= 1).")
TREND_DOWN = knob("trend_down", 0.99, _down, "lr factor per step when it does not (in (0, 1]).")
TREND_THRESHOLD = knob(
    "trend_threshold", 1e-4, _nonneg, "relative improvement needed to count as improving (>= 0)."
)
DECAY_K = knob("decay_k", 1e-3, _nonneg, "``k`` of ``loss_decay``.")
VARIANCE_K = knob("variance_k", 1.0, _nonneg, "strength of the loss ``variance`` rule.")
GRAD_NORM_POWER = knob("grad_norm_power", 1.0, _nonneg, "exponent ``p`` of the ``grad_norm`` rule.")
GRAD_NORM_REF_BETA = knob(
    "grad_norm_ref_beta", 0.99, _beta, "EMA decay of the ``grad_norm`` rule's slow reference norm, in [0, 1)."
)
CYCLE_LENGTH = knob("cycle_length", 1000.0, _ge1, "period of the ``cyclical`` rule, in update calls (>= 1).")
MOMENTUM_A = knob("momentum_a", 1.0, _positive, "``a`` of the ``exp`` momentum rule (> 0).")
MOMENTUM_GAIN = knob("momentum_gain", 1.0, _nonneg, "gain of the ``relative`` momentum rule (>= 0).")
REWARD_CENTER = knob("reward_center", 0.0, _any, "reward mapped to ``base_lr`` by ``scaling``.")
REWARD_SPAN = knob(
    "reward_span",
    1.0,
    _positive,
    "reward scale (> 0): ``scaling`` maps ``center -/+ span`` to about ``0`` / ``2 * base_lr``; "
    "``variance`` measures the reward's standard deviation in units of it.",
)
REWARD_UP = knob("reward_up", 1.01, _up, "lr factor per step when the smoothed reward improves (>= 1).")
REWARD_DOWN = knob("reward_down", 0.99, _down, "lr factor per step when it does not (in (0, 1]).")
REWARD_THRESHOLD = knob("reward_threshold", 1e-4, _nonneg, "relative improvement of the reward needed (>= 0).")
REWARD_VARIANCE_K = knob("reward_variance_k", 1.0, _nonneg, "strength of the reward ``variance`` rule.")
KL_TARGET = knob("kl_target", 0.1, _positive, "KL the ``target`` rule steers towards (> 0).")
KL_GAIN = knob("kl_gain", 0.1, _nonneg, "log-lr change per step per unit of clipped relative KL error.")
KL_CLIP = knob("kl_clip", 0.2, _positive, "clip of the relative KL error ``KL/target - 1`` (> 0).")
_flag = (lambda v: (v == 0) | (v == 1), "0 or 1")
ANNEAL_MIN_SAMPLES = knob(
    "anneal_min_samples", 30.0, _ge1, "observations at the current lr before the first test (``n_min``, >= 1)."
)
ANNEAL_TEST_EVERY = knob("anneal_test_every", 5.0, _ge1, "observations between tests once ``n >= n_min`` (>= 1).")
ANNEAL_WINDOW_POWER = knob(
    "anneal_window_power", 1.0, _nonneg,
    "``c`` of the growing window: observation ``i`` of ``n`` weighs ``(i/n)^c`` (0: plain OLS).",
)
ANNEAL_Z_DROP = knob(
    "anneal_z_drop", 1.0, _nonneg, "one-sided z of the stationarity test: cut unless ``T < -t_q(z)`` (>= 0)."
)
ANNEAL_DROP = knob(
    "anneal_drop", 0.9, _down,
    "lr factor when the slope is negative but not significantly so (``-t_q < T < 0``; in (0, 1]).",
)
ANNEAL_DROP_FLAT = knob(
    "anneal_drop_flat", 0.6, _down, "lr factor when the slope is flat or rising (``T >= 0``; in (0, 1])."
)
ANNEAL_UP = knob("anneal_up", 2.0, _up, "lr factor per growth test passed before the first cut (>= 1).")
ANNEAL_Z_UP = knob("anneal_z_up", 1.645, _nonneg, "z of the growth test: grow only if ``T < -t_q(z_up)`` (>= 0).")
ANNEAL_GROW = knob("anneal_grow", 1.0, _flag, "1 to allow the growth phase before the first cut, 0 to disable.")

for _k in (
    TREND_UP, TREND_DOWN, TREND_THRESHOLD, DECAY_K, VARIANCE_K, GRAD_NORM_POWER, CYCLE_LENGTH,
    MOMENTUM_A, MOMENTUM_GAIN, REWARD_CENTER, REWARD_SPAN, REWARD_UP, REWARD_DOWN, REWARD_THRESHOLD,
    REWARD_VARIANCE_K, KL_TARGET, KL_GAIN, KL_CLIP, GRAD_NORM_REF_BETA, ANNEAL_MIN_SAMPLES,
    ANNEAL_TEST_EVERY, ANNEAL_WINDOW_POWER, ANNEAL_Z_DROP, ANNEAL_DROP, ANNEAL_DROP_FLAT, ANNEAL_UP, ANNEAL_Z_UP, ANNEAL_GROW,
):  # fmt: skip
    KNOBS[_k.name] = _k

# --------------------------------------------------------------------------- shared rule math


def log_knob(xp: Any, v: Any) -> Any:
    """``log`` of a config knob (or of any value that depends on knobs only): on the host when it is a number.

    Rules should take the log of a knob through this. Front doors that hold
    concrete knobs (the optax front door, the torch adapter's host and device
    modes) then share one value, ``log`` in float64 rounded once to float32,
    instead of each backend's own float32 ``log`` (XLA, torch and libm differ
    by an ulp on some inputs, and these constants accumulate in
    ``log_scale``). Traced knobs (a ``vmap`` over configs) use ``xp.log``.
    """
    if isinstance(v, (int, float)):
        host: Any = _scalar  # its elementwise functions come from _scalar.UNARY (invisible to type checkers)
        return host.log(_scalar.float32(v))
    return xp.log(v)



def trend_step(xp: Any, obs: Any, up: Any, down: Any, threshold: Any, maximize: bool) -> Any:
    """``eta <- eta * up`` if the smoothed signal improved, else ``eta * down`` (log-increment).

    Improvement is relative to the magnitude of the previous smoothed value, so
    it is correct for negative losses and rewards (unlike ``best * (1 - thr)``):
    minimising, ``improved = x^_t < x^_{t-1} - thr * |x^_{t-1}|``; maximising,
    ``improved = x^_t > x^_{t-1} + thr * |x^_{t-1}|``. Nothing moves on the first
    observation or when the signal is not observed.
    """
    margin = threshold * xp.abs(obs.prev_hat)
    improved = obs.hat > obs.prev_hat + margin if maximize else obs.hat < obs.prev_hat - margin
    active = xp.logical_and(obs.ok, obs.has_prev)
    step = xp.where(improved, log_knob(xp, up), log_knob(xp, down))
    return xp.where(active, step, 0.0)


def variance_factor(xp: Any, obs: Any, k: Any, scale: Any) -> Any:
    """``eta = base / (1 + k * sqrt(v^_t) / scale)`` as a log-factor."""
    std = xp.sqrt(xp.clip(obs.var_hat, 0.0, SIGNAL_LIMIT * SIGNAL_LIMIT))
    return -xp.log1p(k * xp.clip(std / xp.clip(scale, _REL_EPS, SIGNAL_LIMIT), 0.0, 1e30))


# --------------------------------------------------------------------------- lr rules


def loss_decay(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Loss decay: ``eta_{t+1} = eta_t / (1 + k * max(l^_t, 0))``; a negative smoothed loss counts as 0.

    The classic 1/t-style decay (Bottou, 2012, "Stochastic Gradient Descent
    Tricks", Sec. 5.2) with the loss in place of the step count.
    """
    inc = -xp.log1p(knobs.k * xp.clip(obs.hat, 0.0, SIGNAL_LIMIT))
    return xp.where(obs.ok, inc, 0.0)


def loss_trend(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Trend: ``eta <- eta * up`` when the smoothed loss improves by more than ``threshold`` (relative), else ``eta * down``.

    ``improved = l^_t < l^_{t-1} - threshold * |l^_{t-1}|``, sign-correct for
    negative losses (unlike torch's ``ReduceLROnPlateau`` ``best * (1 - thr)``).
    """
    return trend_step(xp, obs, knobs.up, knobs.down, knobs.threshold, False)


def loss_variance(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Variance: ``eta = base / (1 + k * sqrt(v^_t) / |l^_t|)``, lower lr under noisy loss.

    ``sqrt(v^_t) / |l^_t|`` is the loss's coefficient of variation (scale free).
    """
    return variance_factor(xp, obs, knobs.k, xp.abs(obs.hat))


def grad_norm(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Grad norm: ``eta = base * (g_slow / g^_t)^p``, the smoothed norm against a slow EMA of itself.

    ``g^_t`` is the norm's bias-corrected EMA (decay ``ema_beta``) and
    ``g_slow`` a bias-corrected EMA with the slower decay ``grad_norm_ref_beta``
    (Kingma & Ba, 2015, Sec. 3), kept in the rule's slots. The lr falls on a
    transient rise of the norm (explosions) and recovers as the slow average
    catches up, as in normalised gradient descent (Hazan et al., 2015, "Beyond
    Convexity: Stochastic Quasi-Convex Optimization"); a drift of the norm over
    the run (RL: the policy leaves its starting point and the norm grows
    several-fold) no longer ratchets the lr down, as the first smoothed norm
    did as reference. Scale free.
    """
    b = knobs.ref_beta
    x = xp.clip(obs.x, 0.0, SIGNAL_LIMIT)
    slow = xp.where(obs.ok, b * ctx.slots["slow"] + (1.0 - b) * x, ctx.slots["slow"])
    pow_ = xp.where(obs.ok, ctx.slots["slow_pow"] * b, ctx.slots["slow_pow"])
    seen = obs.ema.decay_pow < 1.0
    slow_hat = slow / xp.where(seen, 1.0 - pow_, 1.0)
    lg = xp.log(xp.clip(obs.hat, _TINY, SIGNAL_LIMIT))
    lref = xp.log(xp.clip(slow_hat, _TINY, SIGNAL_LIMIT))
    out = knobs.power * (lref - lg)
    return xp.where(seen, out, 0.0), {"slow": slow, "slow_pow": pow_}


def cyclical(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> tuple[Any, Any]:
    """Cyclical: cosine from ``max_lr`` to ``min_lr`` every ``cycle_length`` steps; each restart resets the smoothing.

    SGDR (Loshchilov & Hutter, 2017): ``eta_t = min_lr + (max_lr - min_lr) *
    (1 + cos(pi * p_t)) / 2`` with the phase ``p_t = ((t - 1) mod T) / T``,
    ``T = cycle_length``. Returns ``log(eta_t / base_lr)`` and whether step
    ``t`` starts a new cycle.
    """
    cfg, t, length = ctx.config, ctx.t, knobs.length
    tm1 = t - 1.0
    cycles = xp.floor(tm1 / length)
    pos = tm1 - cycles * length
    phase = pos / length
    lr = cfg.min_lr + (cfg.max_lr - cfg.min_lr) * 0.5 * (1.0 + xp.cos(math.pi * phase))
    lr = xp.clip(lr, cfg.min_lr, cfg.max_lr)
    restart = xp.logical_and(pos < 1.0, t > 1.0)
    return xp.log(lr) - log_knob(xp, cfg.base_lr), restart


# --------------------------------------------------------------------------- momentum rules


def momentum_inverse(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Inverse: ``mu = 1 - 1 / (1 + max(l^_t, 0))``: high loss, high momentum."""
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    return 1.0 - 1.0 / (1.0 + pos)


def momentum_exp(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Exp: ``mu = 1 - exp(-a * max(l^_t, 0))``."""
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    return 1.0 - xp.exp(-xp.clip(knobs.a * pos, 0.0, 80.0))


def momentum_relative(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Relative: ``mu = base_momentum - gain * r_t``, ``r_t = clip((l^_t - l^_{t-1}) / |l^_{t-1}|, -1, 1)``.

    Sign-correct for negative losses: momentum rises while the loss falls.
    """
    denom = xp.clip(xp.abs(obs.prev_hat), _REL_EPS, SIGNAL_LIMIT)
    r = xp.clip((obs.hat - obs.prev_hat) / denom, -1.0, 1.0)
    r = xp.where(obs.has_prev, r, 0.0)
    return ctx.config.base_momentum - knobs.gain * r


def momentum_normalized(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Normalized: ``mu = n / (1 + n)``, ``n = max(l^_t, 0) / |l_ref|``, the loss in units of its first smoothed value.

    Scale free: the same momentum path for a loss in nats or in thousands.
    """
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    n = pos / xp.clip(xp.abs(obs.ema.ref), _REL_EPS, SIGNAL_LIMIT)
    return n / (1.0 + n)


# --------------------------------------------------------------------------- reward and KL rules


def reward_scaling(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Scaling: ``eta = base * max(1 + (R^_t - center) / span, 1e-6)``.

    Maps ``center - span`` to about 0 (then ``min_lr``), ``center`` to
    ``base_lr`` and ``center + span`` to ``2 * base_lr``.
    """
    f = xp.clip(1.0 + (obs.hat - knobs.center) / knobs.span, _MIN_SCALING, 1e30)
    out = xp.log(f)
    return xp.where(obs.ema.decay_pow < 1.0, out, 0.0)


def reward_trend(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Trend: ``eta <- eta * up`` when the smoothed reward improves by more than ``threshold`` (relative), else ``eta * down``.

    ``improved = R^_t > R^_{t-1} + threshold * |R^_{t-1}|``, sign-correct for negative rewards.
    """
    return trend_step(xp, obs, knobs.up, knobs.down, knobs.threshold, True)


def reward_variance(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Variance: ``eta = base / (1 + k * sqrt(v^_t) / span)``, lower lr under a noisy reward."""
    return variance_factor(xp, obs, knobs.k, knobs.span)


def kl_target(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Target: ``eta <- eta * exp(-gain * clip(KL^/target - 1, -c, c))``: lr down while the KL overshoots.

    The proportional controller of Ziegler et al. (2019), "Fine-Tuning Language
    Models from Human Preferences", Sec. 2.2, applied to the lr instead of the
    KL coefficient: lr down while the smoothed KL overshoots ``target``, up
    while it is below.
    """
    err = xp.clip(obs.hat / knobs.target - 1.0, -knobs.clip, knobs.clip)
    inc = -knobs.gain * err
    return xp.where(obs.ok, inc, 0.0)


# --------------------------------------------------------------------------- anneal rules


def _or(xp: Any, a: Any, b: Any) -> Any:
    return xp.logical_not(xp.logical_and(xp.logical_not(a), xp.logical_not(b)))


ANNEAL_SLOTS = ("n", "w", "w2", "mt", "my", "ctt", "cty", "cyy", "growing", "prev_slope", "tstat")


def anneal_slope(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    r"""Slope test: cut the lr once the loss shows no significant downward slope at the current lr.

    SASA/SLOPE (Lang, Zhang & Xiao, 2019, "Using Statistics to Automate
    Stochastic Optimization", NeurIPS; the loss-only SLOPE test of the
    ``microsoft/statopt`` reference code) made horizon-free and O(1). Within a
    *leg* (the ``n`` observations since the lr last changed, ``i = 1..n``) the
    rule fits ``y_i ~ a + b*i`` to the raw loss by weighted least squares with
    weights ``w_i = (i/n)^c`` (a growing window, the O(1) analogue of SLOPE's
    leaky bucket that keeps the most recent fraction of the samples), updated
    with forgetting ``rho_n = ((n-1)/n)^c`` as (West, 1979, CACM 22(9))
    ``W = rho*W + 1``, ``t_bar += (n - t_bar)/W``, ``C_ty = rho*C_ty + (n - t_bar_old)(y - y_bar)``
    and likewise ``C_tt``, ``C_yy``. With Kish's effective sample size
    ``n_e = W^2 / sum w_i^2``:

    ``b = C_ty/C_tt``, ``s^2 = (C_yy - b*C_ty)/W * n_e/(n_e - 2)``,
    ``T = b / sqrt(s^2 * W / (n_e * C_tt))``.

    A test runs when ``n >= n_min`` and ``n mod k = 0`` (``anneal_min_samples``,
    ``anneal_test_every``), against the Student-t quantile with ``n_e - 2``
    degrees of freedom (Cornish-Fisher: ``t_q(z) = z*(1 + (z^2 + 1)/(4*(n_e - 2)))``):

    * *anneal*: ``T > -t_q(z_drop)`` (progress is within noise: the iterates are
      stationary at this lr): the lr is cut, by evidence, and the leg restarts:
      ``eta <- eta * drop_flat`` if ``T >= 0`` (the loss is flat or rising: no
      sign of progress), else ``eta <- eta * drop`` (it still leans down, within
      noise: a gentle cut, so the lr stays high while there may be progress,
      as a cosine schedule does early on);
    * *grow* (before the first cut only, when ``anneal_grow = 1``; the warm-up
      role of SALSA, Zhang et al., 2020, without its line search):
      ``T < -t_q(z_up)`` and the slope at least as steep as at the previous
      growth: ``eta <- eta * up`` and the leg restarts; significant progress
      that is not steeper ends the growth phase;
    * otherwise the lr holds.

    So the lr never falls faster than one cut per ``n_min`` observations,
    and needs no total step count. On a stationary stream the first test cuts
    with probability about ``Phi(z_drop)``; a loss falling clearly faster than
    its noise is never cut. Non-finite losses are not observed.
    """
    sl = ctx.slots
    ok = obs.ok
    y = obs.x
    n = sl["n"] + 1.0
    rho = xp.where(n > 1.0, xp.exp(knobs.window_power * xp.log(xp.clip((n - 1.0) / n, _TINY, 1.0))), 0.0)
    w = rho * sl["w"] + 1.0
    w2 = rho * rho * sl["w2"] + 1.0
    dt = n - sl["mt"]
    dy = y - sl["my"]
    mt = sl["mt"] + dt / w
    my = sl["my"] + dy / w
    ctt = rho * sl["ctt"] + dt * (n - mt)
    cty = rho * sl["cty"] + dt * (y - my)
    cyy = rho * sl["cyy"] + dy * (y - my)

    ne = w * w / xp.clip(w2, _TINY, 1e30)
    dof = xp.clip(ne - 2.0, 1.0, 1e30)
    ctt_s = xp.clip(ctt, _TINY, 1e30)
    b = cty / ctt_s
    rss = xp.clip(cyy - b * cty, 0.0, 1e30)
    sigma2 = rss / xp.clip(w, _TINY, 1e30) * ne / dof
    se = xp.sqrt(xp.clip(sigma2 * w / (xp.clip(ne, _TINY, 1e30) * ctt_s), _TINY, 1e30))
    tstat = xp.clip(b / se, -1e30, 1e30)  # a perfectly flat leg (rss = 0, b = 0) has T = 0: stationary
    tq_drop = knobs.z_drop * (1.0 + (knobs.z_drop * knobs.z_drop + 1.0) / (4.0 * dof))
    tq_up = knobs.z_up * (1.0 + (knobs.z_up * knobs.z_up + 1.0) / (4.0 * dof))

    due = xp.logical_and(n >= knobs.min_samples, n - knobs.test_every * xp.floor(n / knobs.test_every) < 0.5)
    test = xp.logical_and(ok, due)
    stationary = xp.logical_and(test, tstat > -tq_drop)
    growing = sl["growing"] > 0.5
    strong = xp.logical_and(xp.logical_and(test, tstat < -tq_up), growing)
    steeper = b <= sl["prev_slope"]
    grow_now = xp.logical_and(xp.logical_and(strong, steeper), knobs.grow > 0.5)
    stop_growing = _or(xp, _or(xp, stationary, xp.logical_and(strong, xp.logical_not(steeper))), knobs.grow < 0.5)
    change = _or(xp, stationary, grow_now)
    cut = xp.where(tstat >= 0.0, log_knob(xp, knobs.drop_flat), log_knob(xp, knobs.drop))
    inc = xp.where(stationary, cut, xp.where(grow_now, log_knob(xp, knobs.up), 0.0))

    fresh = {"n": n, "w": w, "w2": w2, "mt": mt, "my": my, "ctt": ctt, "cty": cty, "cyy": cyy}
    new = {k: xp.where(ok, xp.where(change, 0.0, v), sl[k]) for k, v in fresh.items()}
    new["growing"] = xp.where(xp.logical_and(ok, stop_growing), 0.0, sl["growing"])
    new["prev_slope"] = xp.where(xp.logical_and(ok, grow_now), b, sl["prev_slope"])
    new["tstat"] = xp.where(test, tstat, sl["tstat"])
    return xp.where(ok, inc, 0.0), new


for _rule in (
    Rule("lr", "loss_decay", "increment", "loss", loss_decay, {"k": DECAY_K},
         formula='`η_{t+1} = η_t / (1 + k·max(ℓ̂_t, 0))` (`decay_k`)'),
    Rule("lr", "trend", "increment", "loss", loss_trend,
         {"up": TREND_UP, "down": TREND_DOWN, "threshold": TREND_THRESHOLD},
         formula='`η ← η·up` if `ℓ̂_t < ℓ̂_{t-1} − thr·|ℓ̂_{t-1}|`, else `η·down` (`trend_up/down/threshold`)'),
    Rule("lr", "variance", "factor", "loss", loss_variance, {"k": VARIANCE_K}, variance=True,
         formula='`η = base / (1 + k·σ̂_t/|ℓ̂_t|)` (`variance_k`)'),
    Rule("lr", "grad_norm", "factor", "grad_norm", grad_norm, {"power": GRAD_NORM_POWER, "ref_beta": GRAD_NORM_REF_BETA},
         slots=(Slot("slow"), Slot("slow_pow", init=1.0)),
         formula='`η = base·(ĝ_slow/ĝ_t)^p`, `ĝ_slow` a slow EMA of the norm (`grad_norm_power`, `grad_norm_ref_beta`)'),
    Rule("lr", "cyclical", "clock", None, cyclical, {"length": CYCLE_LENGTH},
         formula='SGDR: `η = min + (max−min)(1+cos(π·p_t))/2`, `p_t = ((t−1) mod T)/T`; smoothing restarts each cycle (`cycle_length`)'),
    Rule("momentum", "inverse", "momentum", "loss", momentum_inverse,
         formula='`μ = 1 − 1/(1 + max(ℓ̂, 0))`'),
    Rule("momentum", "exp", "momentum", "loss", momentum_exp, {"a": MOMENTUM_A},
         formula='`μ = 1 − exp(−a·max(ℓ̂, 0))` (`momentum_a`)'),
    Rule("momentum", "relative", "momentum", "loss", momentum_relative, {"gain": MOMENTUM_GAIN},
         formula='`μ = base_momentum − gain·clip((ℓ̂_t − ℓ̂_{t-1})/|ℓ̂_{t-1}|, −1, 1)` (`momentum_gain`)'),
    Rule("momentum", "normalized", "momentum", "loss", momentum_normalized,
         formula='`μ = n/(1+n)`, `n = max(ℓ̂, 0)/|ℓ̂_ref|` (scale free)'),
    Rule("reward", "scaling", "factor", "reward", reward_scaling, {"center": REWARD_CENTER, "span": REWARD_SPAN},
         formula='`η = base·max(1 + (R̂ − center)/span, 1e−6)`: `center∓span ↦ ≈0 / 2·base`'),
    Rule("reward", "trend", "increment", "reward", reward_trend,
         {"up": REWARD_UP, "down": REWARD_DOWN, "threshold": REWARD_THRESHOLD},
         formula='as `trend`, maximising: up if `R̂_t > R̂_{t-1} + thr·|R̂_{t-1}|` (`reward_up/down/threshold`)'),
    Rule("reward", "variance", "factor", "reward", reward_variance,
         {"k": REWARD_VARIANCE_K, "span": REWARD_SPAN}, variance=True,
         formula='`η = base / (1 + k·σ̂_R/span)` (`reward_variance_k`, `reward_span`)'),
    Rule("kl", "target", "increment", "kl", kl_target, {"target": KL_TARGET, "gain": KL_GAIN, "clip": KL_CLIP},
         formula='`η ← η·exp(−gain·clip(KL̂/target − 1, −c, c))` (`kl_target`, `kl_gain`, `kl_clip`; Ziegler et al. 2019)'),
    Rule("anneal", "slope", "increment", "loss", anneal_slope,
         {"min_samples": ANNEAL_MIN_SAMPLES, "test_every": ANNEAL_TEST_EVERY, "window_power": ANNEAL_WINDOW_POWER,
          "z_drop": ANNEAL_Z_DROP, "drop": ANNEAL_DROP, "drop_flat": ANNEAL_DROP_FLAT, "up": ANNEAL_UP, "z_up": ANNEAL_Z_UP, "grow": ANNEAL_GROW},
         slots=tuple(Slot(k, init=1.0 if k == "growing" else 0.0) for k in ANNEAL_SLOTS),
         formula='weighted LS slope `b` of the raw loss since the last lr change, `T = b/se(b)`; every `k` steps once `n ≥ n_min`: `η ← η·drop_flat` if `T ≥ 0`, `η·drop` if `−t_q(z_drop) < T < 0` (no significant progress), before the first cut `η ← η·up` if `T < −t_q(z_up)` and steeper (SASA/SLOPE, Lang et al. 2019)'),
):  # fmt: skip
    RULES[_rule.key] = _rule

