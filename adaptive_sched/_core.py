"""The pure controller: ``init(config) -> State`` and ``update(state, signals) -> (State, Hparams)``.

Written once against an array namespace ``xp``: ``jax.numpy`` (jit/vmap/scan),
NumPy or torch (through array-api-compat), or ``adaptive_sched._scalar`` (plain
Python floats, the torch adapter's host mode). The namespace is read off the
state's leaves, so the same function serves every front door.

The rules themselves are declared in :mod:`adaptive_sched._rules` (one
definition each); :func:`update_with` runs the config's active rules and
combines their outputs by kind. The signals are :class:`Signals`' fields
(:mod:`adaptive_sched._signals`); the State has one EMA per signal.

Conventions (all rules):

* Every signal is smoothed by a bias-corrected EMA (Kingma & Ba, 2015, Sec. 3):
  ``m_t = b*m_{t-1} + (1-b)*x_t``, ``x^_t = m_t / (1 - b^n_t)`` where ``n_t`` counts
  the observations so far, and ``v_t = b*v_{t-1} + (1-b)*(x_t - x^_t)^2``,
  ``v^_t = v_t / (1 - b^n_t)``. With ``b = 0`` the smoothed value is the raw one.
  Deviations ``|x_t - x^_t| <= 1e-6 * |x^_t|`` count as 0 (rounding noise).
* A signal that is ``None``, NaN or +-inf is not observed this step: its EMA and
  every rule that reads it hold; a non-finite value also increments
  ``State.skipped``. Finite values are clipped to ``+-SIGNAL_LIMIT``.
* The lr is ``lr_t = clip(base_lr * exp(a_t + s_t), min_lr, max_lr)`` where
  ``s_t`` is the sum of the stateless rules' log-factors and ``a_t`` the
  accumulated log-factor of the stateful (multiplicative) rules. ``a_t`` is
  clipped to ``[log(min_lr/base_lr) - s_t, log(max_lr/base_lr) - s_t]`` so it
  never winds up while the lr sits on a bound.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from adaptive_sched import _rules, _scalar
from adaptive_sched._config import Config
from adaptive_sched._rules import SIGNAL_LIMIT, RuleContext, knobs_of, log_knob, slot_key
from adaptive_sched._signals import SIGNAL_NAMES, Signals, beta_field

__all__ = ["EmaState", "Hparams", "SIGNAL_LIMIT", "Signals", "State", "init", "update"]

_NOISE_FLOOR = 1e-6  # relative deviation treated as rounding noise in the variance EMA


class Hparams(NamedTuple):
    """What the controller sets. Always finite and inside the configured bounds.

    Attributes:
      lr: learning rate, in ``[min_lr, max_lr]``.
      momentum: momentum (SGD ``momentum`` / Adam ``b1``), in
        ``[min_momentum, max_momentum]``; ``base_momentum`` when the momentum
        rule is ``"none"`` (front doors then leave the optimizer's momentum alone).
      lr_scale: ``lr / base_lr``, for front doors that scale updates or keep
        per-group base lrs.
    """

    lr: Any
    momentum: Any
    lr_scale: Any


class EmaState(NamedTuple):
    """Bias-corrected EMA of one signal.

    Attributes:
      mean: uncorrected EMA ``m_t``.
      var: uncorrected EMA of squared deviations ``v_t``.
      decay_pow: ``b^n_t``; 1 until the first observation (and after a cyclical restart).
      ref: the first smoothed value ever observed (scale reference); 0 before it.
    """

    mean: Any
    var: Any
    decay_pow: Any
    ref: Any


_STATE_CORE: tuple[tuple[str, Any], ...] = (
    ("config", Config),
    ("step", Any),
    ("skipped", Any),
    ("log_scale", Any),
    ("current_momentum", Any),
)
if TYPE_CHECKING:  # what type checkers see; at runtime the EMA fields derive from Signals

    class State(NamedTuple):
        config: Config
        step: Any
        skipped: Any
        log_scale: Any
        current_momentum: Any
        loss: EmaState
        reward: EmaState
        grad_norm: EmaState
        kl: EmaState
        rule_state: dict[str, Any] = {}  # noqa: RUF012

else:
    State = NamedTuple(
        "State", [*_STATE_CORE, *((name, EmaState) for name in SIGNAL_NAMES), ("rule_state", dict)]
    )
    State.__new__.__defaults__ = ({},)  # no rule slots; never mutated (update builds a new dict)
    State.__module__ = __name__
State.__doc__ = """Controller state: fixed-dtype scalars (float32, int32), plus the config.

    Attributes:
      config: the :class:`Config` (numeric knobs as float32 leaves).
      step: number of ``update`` calls so far.
      skipped: number of signals dropped because they were NaN or infinite.
      log_scale: accumulated log lr-factor of the stateful rules (``a_t``).
      current_momentum: the momentum last set (not named ``momentum`` so that
        ``optax.tree.get(state, "momentum")`` finds only the optimizer's).
      loss, reward, grad_norm, kl (one per :class:`Signals` field): the
        :class:`EmaState` of each signal.
      rule_state: the active rules' extra slots, ``{"<family>.<rule>.<slot>": scalar}``
        (empty unless a rule declares slots).
    """


def namespace_of(x: Any) -> Any:
    """The array namespace of ``x``; Python scalars map to :mod:`adaptive_sched._scalar`."""
    if isinstance(x, (int, float)):
        return _scalar
    import array_api_compat

    return array_api_compat.array_namespace(x)


def _caster(xp: Any, like: Any, dtype: str = "float32") -> Any:
    """A function converting a value to a ``dtype`` scalar of ``xp`` (on ``like``'s device for torch)."""
    if getattr(xp, "IS_SCALAR", False):
        return float if dtype == "float32" else int
    import array_api_compat

    target = getattr(xp, dtype)
    if array_api_compat.is_torch_namespace(xp):
        dev = like.device

        def cast_torch(v: Any) -> Any:
            return xp.astype(xp.asarray(v, device=dev), target)

        return cast_torch

    def cast(v: Any) -> Any:
        return xp.astype(xp.asarray(v), target)

    return cast


def _preclip(v: Any) -> Any:
    """Clip a concrete float64 signal to +-SIGNAL_LIMIT on the host, before any float32 cast.

    A finite float64 beyond float32's range would otherwise become inf in the
    cast and be dropped; clipped first, it is observed like any other large
    value. NaN and +-inf pass through (they are "not observed"). Arrays that are
    already float32 or narrower, tensors and JAX tracers pass through unchanged
    (they cannot exceed float32's range).
    """
    if isinstance(v, float):  # Python floats and numpy.float64 scalars
        return min(max(v, -SIGNAL_LIMIT), SIGNAL_LIMIT) if math.isfinite(v) else v
    if isinstance(v, np.ndarray) and v.dtype == np.float64:
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(v), np.clip(v, -SIGNAL_LIMIT, SIGNAL_LIMIT), v)
    return v


def init(config: Config, xp: Any = None, device: Any = None) -> State:
    """A fresh controller state for ``config``.

    Args:
      config: the controller's :class:`Config`.
      xp: array namespace for the state (``numpy``, ``jax.numpy``, a torch
        namespace from array-api-compat, or ``adaptive_sched._scalar`` for plain
        Python floats). Default: the namespace of ``config``'s numeric leaves if
        they are arrays (so ``jax.vmap(init)`` over stacked configs works), else
        NumPy.
      device: device for the state's arrays (torch), passed to ``xp.asarray``.

    Returns:
      The initial :class:`State`. Its hparams would be ``lr = base_lr`` and
      ``momentum = clip(base_momentum, min_momentum, max_momentum)``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"init(config=...) expects an adaptive_sched.Config, got {type(config).__name__}")
    if xp is None:
        leaf = config.base_lr
        if isinstance(leaf, (int, float)):
            import numpy

            xp = numpy
        else:
            xp = namespace_of(leaf)
    if xp is not _scalar:
        import array_api_compat

        if not array_api_compat.is_array_api_obj(xp.asarray(0.0)):
            raise TypeError(f"init(xp=...) must be an array namespace, got {xp!r}")
        xp = array_api_compat.array_namespace(xp.asarray(0.0))

    def f32(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.float32, device=device) if xp is not _scalar else _scalar.float32(v)

    def i32(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=device) if xp is not _scalar else int(v)

    # Every leaf is its own array (never one object shared by several leaves):
    # JAX refuses to donate a buffer twice (jax.jit(..., donate_argnums=...)).
    cfg = config._map(f32)

    def ema() -> EmaState:
        return EmaState(mean=f32(0.0), var=f32(0.0), decay_pow=f32(1.0), ref=f32(0.0))

    momentum = xp.clip(cfg.base_momentum, cfg.min_momentum, cfg.max_momentum)  # a new array
    # each slot its own array too (one call per slot)
    slots = {key: (i32 if slot.dtype == "int32" else f32)(slot.init) for key, slot in _rules.state_slots(cfg)}
    return State._make([cfg, i32(0), i32(0), f32(0.0), f32(momentum), *(ema() for _ in SIGNAL_NAMES), slots])


class _Obs(NamedTuple):
    """One step's view of a signal after its EMA update (internal)."""

    ok: Any  # observed this step (finite)
    has_prev: Any  # there was a previous smoothed value to compare against
    hat: Any  # smoothed value after this step (held if not ok)
    prev_hat: Any  # smoothed value before this step
    var_hat: Any  # bias-corrected variance after this step
    ema: EmaState
    x: Any = 0.0  # this step's raw value, clipped to +-SIGNAL_LIMIT (0 if not observed)


def _observe(xp: Any, ema: EmaState, x: Any, beta: Any, track_var: bool) -> _Obs:
    """EMA update of one (float32 or Python float) signal value.

    ``track_var`` (static) says whether a rule reads this signal's variance;
    if not, ``var`` stays as it is (0), which saves work on every step.
    """
    ok = xp.isfinite(x)
    xs = xp.where(ok, xp.clip(x, -SIGNAL_LIMIT, SIGNAL_LIMIT), 0.0)
    has_prev = ema.decay_pow < 1.0
    one_m_pow = 1.0 - ema.decay_pow
    prev_hat = ema.mean / xp.where(has_prev, one_m_pow, one_m_pow + 1.0)
    new_pow = ema.decay_pow * beta
    new_mean = beta * ema.mean + (1.0 - beta) * xs
    # 1 - b^n >= 1 - b > 0 once observed, because b < 1 is validated.
    den = 1.0 - new_pow
    hat = new_mean / den
    new_ref = xp.where(has_prev, ema.ref, hat)
    mean = xp.where(ok, new_mean, ema.mean)
    var = xp.where(ok, _variance_step(xp, ema.var, xs, hat, beta), ema.var) if track_var else ema.var
    pow_ = xp.where(ok, new_pow, ema.decay_pow)
    ref = xp.where(ok, new_ref, ema.ref)
    hat = xp.where(ok, hat, prev_hat)
    var_hat = var / xp.where(pow_ < 1.0, 1.0 - pow_, 1.0 - pow_ + 1.0)
    return _Obs(
        ok=ok,
        has_prev=has_prev,
        hat=hat,
        prev_hat=prev_hat,
        var_hat=var_hat,
        ema=EmaState(mean=mean, var=var, decay_pow=pow_, ref=ref),
        x=xs,
    )


def _variance_step(xp: Any, var: Any, xs: Any, hat: Any, beta: Any) -> Any:
    """``v_t = b*v_{t-1} + (1-b)*(x_t - x^_t)^2``."""
    dev = xs - hat
    # Deviations below a millionth of the signal's magnitude are rounding noise
    # of the bias correction (float32 resolves ~6e-8 relative): count them as 0,
    # so a constant signal has variance 0 in every precision.
    dev = xp.where(xp.abs(dev) > _NOISE_FLOOR * xp.abs(hat), dev, 0.0)
    return beta * var + (1.0 - beta) * dev * dev


def _held(xp: Any, ema: EmaState) -> _Obs:
    """The view of a signal that was not supplied this step."""
    has_prev = ema.decay_pow < 1.0
    one_m_pow = 1.0 - ema.decay_pow
    hat = ema.mean / xp.where(has_prev, one_m_pow, one_m_pow + 1.0)
    var_hat = ema.var / xp.where(has_prev, one_m_pow, one_m_pow + 1.0)
    # Python False lets the host-path compiler prune every rule that reads this
    # signal; array namespaces need an array (torch's where rejects a bool).
    never = False if getattr(xp, "IS_SCALAR", False) else xp.logical_and(has_prev, xp.logical_not(has_prev))
    return _Obs(ok=never, has_prev=has_prev, hat=hat, prev_hat=hat, var_hat=var_hat, ema=ema, x=hat)


# --------------------------------------------------------------------------- the step
# The rules themselves are declared in adaptive_sched._rules; update_with runs
# the config's active ones and combines their outputs by kind.


def update(state: State, signals: Signals) -> tuple[State, Hparams]:
    """One controller step: fold in this step's signals, return the new state and hparams.

    Pure and namespace-generic: the namespace is read off the state (Python
    numbers, NumPy, ``jax.numpy`` including tracers, torch). Under ``jax.jit``
    it traces once per config structure (rule names) and per pattern of
    supplied (non-``None``) signals, whatever their values. To mark a signal as
    missing without changing the structure, pass NaN.

    Args:
      state: the current :class:`State`.
      signals: this step's :class:`Signals`.

    Returns:
      ``(new_state, hparams)``.
    """
    xp = _scalar if isinstance(state.step, int) else namespace_of(state.step)
    return update_with(xp, state, signals)


def signal_usage(config: Config) -> tuple[dict[str, bool], dict[str, bool]]:
    """Which signals the config's active rules read, and which of those need a variance.

    Returns:
      ``(uses, track_var)``, each ``{signal: bool}`` over :data:`SIGNAL_NAMES`.
    """
    rules = [r for r in _rules.active_rules(config) if r.kind != "clock"]
    uses = {s: any(r.signal == s for r in rules) for s in SIGNAL_NAMES}
    track_var = {s: any(r.signal == s and r.variance for r in rules) for s in SIGNAL_NAMES}
    return uses, track_var


def update_with(xp: Any, state: State, signals: Signals) -> tuple[State, Hparams]:
    """:func:`update` with an explicit namespace (the host-path compiler traces it this way)."""
    cfg = state.config
    rules = _rules.active_rules(cfg)
    scalar = getattr(xp, "IS_SCALAR", False)

    to_f32 = _caster(xp, state.step)

    def f32_signal(v: Any) -> Any:
        # Finite float64 values beyond float32's range are clipped before the cast (not dropped).
        return xp.asarray(_preclip(v), dtype=xp.float32) if scalar else to_f32(_preclip(v))

    t_int = state.step + 1
    t = xp.astype(t_int, xp.float32)
    slots = dict(state.rule_state)

    def run(rule: _rules.Rule, obs: _Obs | None) -> Any:
        own = {s.name: slots[slot_key(rule, s)] for s in rule.slots}
        out = rule.fn(xp, obs, knobs_of(rule, cfg), RuleContext(cfg, t, own))
        if rule.slots:
            out, new = out
            for s in rule.slots:
                slots[slot_key(rule, s)] = new[s.name]
        return out

    emas = [getattr(state, name) for name in SIGNAL_NAMES]
    log_stateless: Any = 0.0
    for rule in rules:
        if rule.kind == "clock":
            log_clock, restart = run(rule, None)
            log_stateless = log_stateless + log_clock
            emas = [_restart(xp, e, restart) for e in emas]

    skipped = state.skipped
    uses, track_var = signal_usage(cfg)
    views: dict[str, _Obs | None] = {}
    for name, value, ema in zip(SIGNAL_NAMES, signals, emas):
        used = uses[name]
        if getattr(value, "ndim", 0) != 0:
            raise ValueError(
                f"Signals.{name} must be a scalar (shape ()), got shape {tuple(value.shape)}; "
                "reduce it first (e.g. the batch mean)."
            )
        if value is None:
            views[name] = _held(xp, ema) if used else None
            continue
        x = f32_signal(value)
        if used:
            obs = _observe(xp, ema, x, getattr(cfg, beta_field(name)), track_var[name])
            views[name] = obs
            ok = obs.ok
        else:  # counted, not smoothed: no rule reads it
            views[name] = None
            ok = xp.isfinite(x)
        skipped = skipped + xp.astype(xp.logical_not(ok), xp.int32)

    # ---- lr: stateful increments and stateless log-factors, in family order
    inc: Any = 0.0
    for rule in rules:
        if rule.kind == "increment":
            inc = inc + run(rule, views[rule.signal])  # type: ignore[index]
        elif rule.kind == "factor":
            log_stateless = log_stateless + run(rule, views[rule.signal] if rule.signal else None)
    w = cfg.warmup_steps
    warm = xp.where(w > 0.0, xp.clip(t / xp.where(w > 0.0, w, w + 1.0), 0.0, 1.0), 1.0)
    # log(1) == 0 exactly, so the identity config stays bit exact.
    log_stateless = log_stateless + xp.log(xp.clip(warm, _rules._TINY, 1.0))

    log_lo = log_knob(xp, cfg.min_lr) - log_knob(xp, cfg.base_lr)
    log_hi = log_knob(xp, cfg.max_lr) - log_knob(xp, cfg.base_lr)
    log_stateless = xp.clip(log_stateless, log_lo - 1.0, log_hi + 1.0)  # finite, bounded
    if any(r.kind == "increment" for r in rules):
        log_scale = xp.clip(state.log_scale + inc, log_lo - log_stateless, log_hi - log_stateless)
        log_factor = log_scale + log_stateless
    else:  # no stateful rule: log_scale stays at its initial 0 (static, so it folds away)
        log_scale, log_factor = state.log_scale, log_stateless
    lr = xp.clip(cfg.base_lr * xp.exp(log_factor), cfg.min_lr, cfg.max_lr)

    # ---- momentum: held while its signal is not observed
    momentum = state.current_momentum  # set within bounds by init
    for rule in rules:
        if rule.kind == "momentum":
            seen: Any = views[rule.signal]  # type: ignore[index]
            mu = run(rule, seen)
            momentum = xp.clip(xp.where(seen.ok, mu, momentum), cfg.min_momentum, cfg.max_momentum)

    ema_out = [v.ema if v is not None else e for v, e in zip(views.values(), emas)]
    new_state = State._make(
        [
            cfg,
            t_int,
            skipped,
            log_scale if scalar else to_f32(log_scale),
            momentum if scalar else to_f32(momentum),
            *ema_out,
            slots,
        ]
    )
    lr_scale = lr / cfg.base_lr
    if not scalar:
        new_state = _cast_floats(xp, new_state, to_f32, _caster(xp, state.step, "int32"))
        lr, lr_scale = to_f32(lr), to_f32(lr_scale)
    hp = Hparams(lr=lr, momentum=new_state.current_momentum, lr_scale=lr_scale)
    return new_state, hp


def _restart(xp: Any, e: EmaState, restart: Any) -> EmaState:
    """Where ``restart``, forget the smoothing (the first-ever reference ``ref`` is kept)."""
    return EmaState(
        mean=xp.where(restart, 0.0, e.mean),
        var=xp.where(restart, 0.0, e.var),
        decay_pow=xp.where(restart, 1.0, e.decay_pow),
        ref=e.ref,
    )


def _cast_floats(xp: Any, state: State, f32: Any, i32: Any) -> State:
    def ema(e: EmaState) -> EmaState:
        return EmaState(*(f32(v) for v in e))

    dtypes = {key: slot.dtype for key, slot in _rules.state_slots(state.config)}
    slots = {k: i32(v) if dtypes[k] == "int32" else f32(v) for k, v in state.rule_state.items()}
    return State._make(
        [
            state.config,
            xp.astype(state.step, xp.int32),
            xp.astype(state.skipped, xp.int32),
            state.log_scale,
            state.current_momentum,
            *(ema(getattr(state, name)) for name in SIGNAL_NAMES),
            slots,
        ]
    )
