"""The pure controller: ``init(config) -> State`` and ``update(state, signals) -> (State, Hparams)``.

Written once against an array namespace ``xp``: ``jax.numpy`` (jit/vmap/scan),
NumPy or torch (through array-api-compat), or :mod:`adaptive_sched.host`
(NumPy float32 scalars: one controller on the CPU, the torch adapter's host mode).
The namespace is read off the state's leaves, so the same function serves
every front door. The state carries its config (``state.config``: the rule
names as static pytree metadata, the numeric knobs as leaves), so a config is
given once, to :func:`init`.

The rules are declared in :mod:`adaptive_sched.rules` (one definition each);
:func:`update` runs the config's active rules and combines their outputs by
kind. The signals are :class:`Signals`' fields; the State has one EMA per signal.

Conventions (all rules):

* Every signal is smoothed by a bias-corrected EMA (Kingma & Ba, 2015, Sec. 3):
  ``m_t = b*m_{t-1} + (1-b)*x_t``, ``x^_t = m_t / (1 - b^n_t)`` where ``n_t`` counts
  the observations so far, and ``v_t = b*v_{t-1} + (1-b)*(x_t - x^_t)^2``,
  ``v^_t = v_t / (1 - b^n_t)``. With ``b = 0`` the smoothed value is the raw one.
  Deviations ``|x_t - x^_t| <= 1e-6 * |x^_t|`` count as 0 (rounding noise).
* A signal that is ``None``, NaN or +-inf is not observed this step: its EMA and
  every rule that reads it hold; a non-finite value also increments
  ``State.skipped`` (and a rule may read ``obs.bad``). Finite values are
  clipped to ``+-SIGNAL_LIMIT``.
* The lr is ``lr_t = clip(clip(base_lr * exp(a_t + s_t), min_lr, max_lr) * c_t,
  min_lr, max_lr)`` where ``s_t`` is the sum of the stateless rules'
  log-factors, ``a_t`` the accumulated log-factor of the stateful
  (multiplicative) rules and ``c_t`` the product of the schedule rules'
  factors (1 when there is none, and then the outer clip is skipped). ``a_t`` is
  clipped to ``[log(min_lr/base_lr) - s_t, log(max_lr/base_lr) - s_t]`` so it
  never winds up while the lr sits on a bound; ``c_t`` is outside that clamp,
  so a deep cooldown does not push ``a_t`` up.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from adaptive_sched import _host, _rules
from adaptive_sched._config import Config, _make, ensure_pytree, pytree_if_jax
from adaptive_sched._rules import Obs, Outcome, RuleContext, knobs_of, slot_key
from adaptive_sched._signals import (
    SIGNAL_LIMIT,
    SIGNAL_NAMES,
    Signals,
    beta_field,
    check_signal,
    clip_signal,
    host_array,
)
from adaptive_sched.rules._math import TINY, either, log_knob, warmup_factor

__all__ = [
    "EmaState",
    "Hparams",
    "SIGNAL_LIMIT",
    "Signals",
    "State",
    "diagnostics",
    "format_diagnostics",
    "init",
    "set_slots",
    "update",
]

_NOISE_FLOOR = 1e-6  # relative deviation treated as rounding noise in the variance EMA
_LOG_REPORT = 80.0  # diagnostics report factors in [e^-80, e^80]: finite in float32


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


class State(NamedTuple):
    """Controller state: the :class:`Config` it runs, and fixed-dtype scalars (float32, int32).

    As a JAX pytree, the config's rule names are static metadata and its
    numeric knobs are leaves (the way ``optax.inject_hyperparams`` keeps its
    hyperparameters in its state): ``jax.jit(update)`` traces once per rule
    set, and ``jax.vmap(init)`` over a stacked config gives a batch of
    controllers (sweeps).

    Attributes:
      config: the :class:`Config` this state runs (set by :func:`init`; never
        changed by :func:`update`).
      step: number of ``update`` calls so far.
      skipped: number of signals dropped because they were NaN or infinite.
      log_scale: accumulated log lr-factor of the stateful rules (``a_t``).
      current_momentum: the momentum last set (not named ``momentum`` so that
        ``optax.tree.get(state, "momentum")`` finds only the optimizer's).
      loss, reward, grad_norm, kl, grad_cos (one per :class:`Signals` field): the
        :class:`EmaState` of each signal.
      rule_state: the active rules' extra slots, ``{"<family>.<rule>.<slot>": scalar}``,
        and the core's record of their decisions, ``{"<family>.<rule>/<name>": scalar}``
        (:func:`adaptive_sched._rules.record_slots`; read it with :func:`diagnostics`).
    """

    config: Config
    step: Any
    skipped: Any
    log_scale: Any
    current_momentum: Any
    loss: EmaState
    reward: EmaState
    grad_norm: EmaState
    kl: EmaState
    grad_cos: EmaState
    rule_state: dict[str, Any]


_HEAD = State._fields[1:5]
if State._fields[5:-1] != SIGNAL_NAMES:  # one EMA per Signals field, in order
    raise ImportError(f"State's EMA fields {State._fields[5:-1]} must be Signals' fields {SIGNAL_NAMES}")


def namespace_of(x: Any) -> Any:
    """The array namespace of ``x``: :mod:`adaptive_sched.host` for Python and NumPy scalars.

    For torch it is array-api-compat's namespace with ``exp``, ``log``,
    ``log1p``, ``cos`` and ``sqrt`` computed in float64 and rounded once, as the
    host namespace computes them (so the two agree bit for bit).
    """
    if isinstance(x, (int, float, np.generic)):
        return _host
    if _TORCH and type(x) is _TORCH[1]:  # (no lru_cache'd lookups: torch.compile traces this)
        return _TORCH[0]
    import array_api_compat

    if array_api_compat.is_jax_array(x):
        ensure_pytree()
    xp = array_api_compat.array_namespace(x)
    if array_api_compat.is_torch_namespace(xp):
        return _torch_namespace(xp)
    return xp


class _Torch64:
    """array-api-compat's torch namespace, its transcendental functions in float64 rounded once to float32."""

    __name__ = "array_api_compat.torch"  # array_api_compat.is_torch_namespace recognises it

    def __init__(self, base: Any) -> None:
        self._base = base
        for name in ("exp", "log", "log1p", "cos", "sqrt"):
            fn = getattr(base, name)
            setattr(self, name, lambda x, fn=fn: fn(x.double()).float())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


_TORCH: list[Any] = []


def _torch_namespace(base: Any) -> Any:
    if not _TORCH:
        import torch

        _TORCH.extend([_Torch64(base), torch.Tensor])
    return _TORCH[0]


def _caster(xp: Any, like: Any) -> Any:
    """``cast(value, dtype)``: a value as a scalar of ``xp`` (on ``like``'s device for torch)."""
    if xp is _host:
        return _host.astype
    if _is_torch(xp):
        dev, tensor = like.device, type(like)

        def cast(v: Any, dtype: Any) -> Any:  # a tensor of the dtype already: as it is (no copy, no op)
            return v if type(v) is tensor and v.dtype == dtype else xp.astype(xp.asarray(v, device=dev), dtype)

        return cast
    return lambda v, dtype: xp.astype(xp.asarray(v), dtype)


def knob(xp: Any, value: Any, like: Any = None) -> Any:
    """A config knob as the float32 value the arithmetic in namespace ``xp`` uses.

    A concrete number becomes its float32 value in the form that keeps every
    expression of knobs alone (``1 - beta``) a float32 computation, the same in
    every front door: a ``numpy.float32`` for the host namespace and NumPy, a
    Python float holding the float32 value for JAX (weakly typed: XLA folds it
    into the program), a 0-d float32 tensor on ``like``'s device for torch
    (whose functions refuse Python numbers). Arrays (stacked configs, JAX
    tracers) become float32 arrays of ``xp``.
    """
    if isinstance(value, (int, float, np.generic)) and not isinstance(value, bool):
        v = _host.f32(value)
        if xp is _host:
            return v
        import array_api_compat

        if array_api_compat.is_numpy_namespace(xp):
            return v
        if _is_torch(xp):
            return xp.asarray(float(v), dtype=xp.float32, device=getattr(like, "device", None))
        return float(v)
    return xp.astype(xp.asarray(value), xp.float32)


def knobs32(xp: Any, config: Config, like: Any = None) -> Config:
    """``config`` prepared for the arithmetic: every knob as its float32 value (see :func:`knob`) and its log.

    A state from :func:`init` holds its config prepared already (returned as
    it is). Otherwise (a config of Python numbers, e.g. the user's config given
    back to a state, a checkpoint) it is prepared here.
    """
    if config._logs:
        return config
    return _prepare(config, lambda v: knob(xp, v, like), lambda v: _log32(xp, v, like))


def _prepare(config: Config, value: Any, log: Any) -> Config:
    """``config`` with each knob as ``value(knob)`` and its log as ``log(knob)``.

    The bounds are first rounded inward to float32 values (:func:`_inward`).
    """
    knobs = {n: _inward(n, v) for n, v in config._knobs.items()}
    return _make(config._active, {n: value(v) for n, v in knobs.items()}, {n: log(v) for n, v in knobs.items()})


_LOWER, _UPPER = ("min_lr", "min_momentum"), ("max_lr", "max_momentum")


def _inward(name: str, v: Any) -> Any:
    """A concrete bound as the float32 value nearest to it *inside* the range (other knobs as they are).

    So the float32 lr and momentum compare within the bounds as the user's
    Python floats: ``min_lr <= lr <= max_lr`` holds for ``min_lr=1e-5``,
    whose nearest float32 (9.99999974e-06) is below it.
    """
    number = isinstance(v, (int, float))
    if (name not in _LOWER and name not in _UPPER) or not (number or isinstance(v, (np.ndarray, np.generic))):
        return v  # JAX and torch arrays (traced or on a device) are rounded to nearest by the cast
    host = np.asarray(v, dtype=np.float64)
    f = host.astype(np.float32)
    with np.errstate(over="ignore"):
        if name in _LOWER:
            f = np.where(f.astype(np.float64) < host, np.nextafter(f, np.float32(np.inf)), f)
        else:
            f = np.where(f.astype(np.float64) > host, np.nextafter(f, np.float32(-np.inf)), f)
    return float(f) if number else f


def _log32(xp: Any, v: Any, like: Any = None) -> Any:
    """``log(max(float32(v), TINY))`` for a knob: on the host (float64, rounded once to float32) unless ``v`` is traced.

    The floor keeps the logs of knobs that may be 0 or negative (where no rule takes their log) finite.
    """
    if isinstance(v, (int, float)):
        return knob(xp, log_knob(_host, max(v, TINY)), like)
    host = host_array(v)
    if host is None:  # traced (jit, vmap): the backend's log
        return xp.log(xp.clip(xp.astype(v, xp.float32), TINY, None))
    logs = np.log(np.maximum(host.astype(np.float32).astype(np.float64), TINY)).astype(np.float32)
    if xp is _host:
        return np.float32(logs)
    return xp.asarray(logs, device=getattr(like, "device", None)) if _is_torch(xp) else xp.asarray(logs)


def _is_torch(xp: Any) -> bool:
    if xp is _host:
        return False
    if _TORCH and xp is _TORCH[0]:
        return True
    import array_api_compat

    return bool(array_api_compat.is_torch_namespace(xp))


def init(config: Config, xp: Any = None, device: Any = None) -> State:
    """A fresh controller state for ``config``.

    Args:
      config: the controller's :class:`Config`.
      xp: array namespace for the state (``numpy``, ``jax.numpy``, a torch
        namespace from array-api-compat, or :mod:`adaptive_sched.host` for
        NumPy float32 scalars). Default: the namespace of ``config``'s knobs if they
        are arrays (so ``jax.vmap(init)`` over stacked configs works), else NumPy.
      device: device for the state's arrays (torch), passed to ``xp.asarray``.

    Returns:
      The initial :class:`State`. Its hparams would be ``lr = base_lr`` and
      ``momentum = clip(base_momentum, min_momentum, max_momentum)``.
    """
    if not isinstance(config, Config):
        raise TypeError(f"init(config=...) expects an adaptive_sched.Config, got {type(config).__name__}")
    pytree_if_jax()  # a config built before `import jax` is a pytree once its state exists
    if xp is None:
        leaf = config.base_lr
        if isinstance(leaf, (int, float)):
            import numpy

            xp = numpy
        else:
            xp = namespace_of(leaf)
    if xp is not _host:
        import array_api_compat

        if not array_api_compat.is_array_api_obj(xp.asarray(0.0)):
            raise TypeError(f"init(xp=...) must be an array namespace, got {xp!r}")
        xp = namespace_of(xp.asarray(0.0))

    def f32(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.float32, device=device) if xp is not _host else _host.f32(v)

    def i32(v: Any) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=device) if xp is not _host else int(v)

    # Every leaf is its own array (never one object shared by several leaves):
    # JAX refuses to donate a buffer twice (jax.jit(..., donate_argnums=...)).
    def ema() -> EmaState:
        return EmaState(mean=f32(0.0), var=f32(0.0), decay_pow=f32(1.0), ref=f32(0.0))

    # The config as the state holds it: every knob a float32 scalar of the namespace, and its log computed once
    # (on the host where it is concrete), so update does no conversion and every door uses the same numbers.
    like = f32(0.0)
    cfg = _prepare(config, lambda v: f32(knob(xp, v, like)), lambda v: f32(_log32(xp, v, like)))
    momentum = f32(xp.clip(cfg.base_momentum, cfg.min_momentum, cfg.max_momentum))
    slots = {key: (i32 if slot.dtype == "int32" else f32)(slot.init) for key, slot in _rules.state_slots(config)}
    return State._make([cfg, i32(0), i32(0), f32(0.0), momentum, *(ema() for _ in SIGNAL_NAMES), slots])


def _observe(xp: Any, ema: EmaState, x: Any, beta: Any, track_var: bool) -> Obs:
    """EMA update of one float32 signal value.

    ``track_var`` (static) says whether a rule reads this signal's variance;
    if not, ``var`` stays as it is (0), which saves work on every step.
    """
    ok = xp.isfinite(x)
    xs = xp.where(ok, xp.clip(x, -SIGNAL_LIMIT, SIGNAL_LIMIT), 0.0)
    has_prev = ema.decay_pow < 1.0
    # Before the first observation decay_pow == 1 and mean == 0: divide by 1 (the same value, one op less).
    prev_hat = ema.mean / xp.where(has_prev, 1.0 - ema.decay_pow, 1.0)
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
    var_hat = var / xp.where(pow_ < 1.0, 1.0 - pow_, 1.0)
    return Obs(
        ok=ok,
        bad=xp.logical_not(ok),
        has_prev=has_prev,
        hat=hat,
        prev_hat=prev_hat,
        var_hat=var_hat,
        ema=EmaState(mean=mean, var=var, decay_pow=pow_, ref=ref),
        x=xs,
        inf=xp.isinf(x),
    )


def _variance_step(xp: Any, var: Any, xs: Any, hat: Any, beta: Any) -> Any:
    """``v_t = b*v_{t-1} + (1-b)*(x_t - x^_t)^2``."""
    dev = xs - hat
    # Deviations below a millionth of the signal's magnitude are rounding noise
    # of the bias correction (float32 resolves ~6e-8 relative): count them as 0,
    # so a constant signal has variance 0 in every precision.
    dev = xp.where(xp.abs(dev) > _NOISE_FLOOR * xp.abs(hat), dev, 0.0)
    return beta * var + (1.0 - beta) * dev * dev


def _held(xp: Any, ema: EmaState) -> Obs:
    """The view of a signal that was not supplied this step (``ok`` and ``bad`` are constant False)."""
    has_prev = ema.decay_pow < 1.0
    den = xp.where(has_prev, 1.0 - ema.decay_pow, 1.0)  # decay_pow == 1 (so 1) before the first observation
    hat = ema.mean / den
    var_hat = ema.var / den
    never = xp.zeros_like(has_prev)  # a False of the namespace
    return Obs(ok=never, bad=never, has_prev=has_prev, hat=hat, prev_hat=hat, var_hat=var_hat, ema=ema, x=hat, inf=never)


def signal_usage(config: Config) -> tuple[dict[str, bool], dict[str, bool]]:
    """Which signals the config's active rules read, and which of those need a variance.

    Returns:
      ``(uses, track_var)``, each ``{signal: bool}`` over :data:`SIGNAL_NAMES`.
    """
    st = _rules.structure(config.active)
    return st.uses, st.track_var


def update(state: State, signals: Signals) -> tuple[State, Hparams]:
    """One controller step: fold in this step's signals, return the new state and hparams.

    Pure and namespace-generic: the namespace is read off the state (Python
    numbers, NumPy, ``jax.numpy`` including tracers, torch). Under ``jax.jit``
    it traces once per rule set (``state.config``'s rule names) and per pattern of
    supplied (non-``None``) signals, whatever their values. To mark a signal as
    missing without changing the structure, pass NaN.

    Args:
      state: the current :class:`State` (from :func:`init`; it carries its config).
      signals: this step's :class:`Signals`.

    Returns:
      ``(new_state, hparams)``.

    Raises:
      TypeError: ``state`` is not a :class:`State` (e.g. the older
        ``update(config, state, signals)`` form).
    """
    if not isinstance(state, State):
        raise TypeError(
            f"update(state, signals) expects the State that adaptive_sched.init(config) returned as its first "
            f"argument, got {type(state).__name__} (the state carries its config: no config argument)"
        )
    config = state.config
    xp = namespace_of(state.step)
    cfg = knobs32(xp, config, state.log_scale)
    rule_set = _rules.structure(config.active)  # rules, slots, signal usage: fixed by the rule set
    rules = rule_set.rules
    cast = _caster(xp, state.step)

    t_int = state.step + 1
    t = xp.astype(t_int, xp.float32)
    slots = dict(state.rule_state)

    views: dict[str, Obs | None] = {}  # filled below; clock rules run before any signal is observed
    searching: Any = False  # True while a busy rule (the lr search) that already ran is still acting
    planned: Any = False  # True while a rule will anneal the lr at known steps (a cooldown is scheduled)
    cooling: Any = False  # True while such a rule anneals the lr at this update
    for rule in (r for r in rules if r.planned is not None or r.cooling is not None):
        own = {name: slots[key] for name, key in rule.slot_keys}
        if rule.planned is not None:
            mine = rule.planned(xp, knobs_of(rule, cfg), own)
            planned = either(xp, planned, mine)
        if rule.cooling is not None:
            mine = rule.cooling(xp, knobs_of(rule, cfg), own, t)
            cooling = either(xp, cooling, mine)

    def run(rule: _rules.Rule, obs: Obs | None) -> Any:
        nonlocal searching
        own = {name: slots[key] for name, key in rule.slot_keys}
        extra = {name: views.get(name) for name in rule.reads}
        knobs = knobs_of(rule, cfg)
        ctx = RuleContext(cfg, t, own, extra, searching, planned, cooling)
        out = rule.fn(xp, obs, knobs, ctx)
        new: dict[str, Any] = {}
        if rule.slots:
            out, new = out
            for name, key in rule.slot_keys:
                slots[key] = new[name]
            if rule.busy is not None:
                busy = rule.busy(new)
                searching = either(xp, searching, busy)
        if rule.event is not None:  # the core's record of the rule's last decision (record_slots)
            ev, at = f"{rule.key}/event", f"{rule.key}/event_step"
            code = rule.event(xp, obs, knobs, ctx, Outcome(out, new, slots[ev]))
            fired = code > 0
            slots[ev] = xp.where(fired, code, slots[ev])
            slots[at] = xp.where(fired, t_int, slots[at])
        return out

    emas = [getattr(state, name) for name in SIGNAL_NAMES]
    log_stateless: Any = 0.0
    for rule in rules:
        if rule.kind == "clock":
            log_clock, restart = run(rule, None)
            log_stateless = log_stateless + log_clock
            emas = [_restart(xp, e, restart) for e in emas]

    skipped = state.skipped
    uses, track_var = rule_set.uses, rule_set.track_var
    for name, value, ema in zip(SIGNAL_NAMES, signals, emas):
        check_signal(f"Signals.{name}", value)
        if value is None:
            views[name] = _held(xp, ema) if uses[name] else None
            continue
        x = cast(clip_signal(value), xp.float32)  # finite float64 beyond float32's range: clipped, not dropped
        if uses[name]:
            obs = _observe(xp, ema, x, getattr(cfg, beta_field(name)), track_var[name])
            views[name] = obs
            ok = obs.ok
        else:  # counted, not smoothed: no rule reads it
            views[name] = None
            ok = xp.isfinite(x)
        skipped = skipped + xp.astype(xp.logical_not(ok), xp.int32)

    # ---- lr: stateful increments and stateless log-factors, in family order
    inc: Any = 0.0
    incs: list[tuple[_rules.Rule, Any]] = []
    log_schedule: Any = None
    for rule in rules:
        view = views[rule.signal] if rule.signal else None
        if rule.kind == "increment":
            d = run(rule, view)
            inc = inc + d
            incs.append((rule, d))
        elif rule.kind == "factor":
            log_stateless = log_stateless + run(rule, view)
        elif rule.kind == "schedule":
            out = run(rule, view)
            log_schedule = out if log_schedule is None else log_schedule + out
    # no stateful rule: log_scale stays at its initial 0 (static, so it folds away)
    comb = _combine(xp, cfg, t, log_stateless, log_schedule, state.log_scale + inc if incs else None)
    log_scale = comb.log_scale if incs else state.log_scale
    lr = comb.lr
    if len(incs) > 1:  # each stateful rule's own share but the last's (record_slots), under the same clamp
        # No clock/factor rule and no warmup: the clamp's bounds are the same at every update, so a share
        # (clamped into them at every update since init's 0) is inside them, and a zero increment keeps it.
        w = config.knobs["warmup_steps"]
        fixed = _static(w) and w == 0 and not any(r.kind in ("clock", "factor") for r in rules)
        for rule, d in incs[:-1]:
            if fixed and _static(d) and d == 0.0:
                continue  # a rule that held (statically, e.g. its signal not supplied): no work in the update
            key = f"{rule.key}/log_factor"
            slots[key] = xp.clip(slots[key] + d, comb.lo, comb.hi)

    # ---- momentum: held while its signal is not observed
    momentum = state.current_momentum  # set within bounds by init
    for rule in rules:
        if rule.kind == "momentum":
            seen: Any = views[rule.signal]  # type: ignore[index]
            mu = run(rule, seen)
            momentum = xp.clip(xp.where(seen.ok, mu, momentum), cfg.min_momentum, cfg.max_momentum)

    f32, i32 = xp.float32, xp.int32
    ints = rule_set.int_slots
    new_emas = [view.ema if view else e for view, e in zip(views.values(), emas)]
    new_state = State._make(
        [
            config,
            xp.astype(t_int, i32),
            xp.astype(skipped, i32),
            cast(log_scale, f32),
            cast(momentum, f32),
            *(EmaState(*(cast(v, f32) for v in e)) for e in new_emas),
            {k: cast(v, i32 if k in ints else f32) for k, v in slots.items()},
        ]
    )
    lr = cast(lr, f32)
    hp = Hparams(lr=lr, momentum=new_state.current_momentum, lr_scale=cast(lr / cfg.base_lr, f32))
    return new_state, hp


def _static(x: Any) -> bool:
    """A Python number (a constant of the rule code), not an array or a scalar of a namespace."""
    return isinstance(x, (int, float))


class _Combined(NamedTuple):
    lr: Any  # the lr, after the schedule rules
    adaptive_lr: Any  # the lr before the schedule rules (the adaptive clamp's output)
    log_scale: Any  # the clamped accumulated log-scale (None without stateful rules)
    lo: Any  # the anti-windup clamp's bounds on log_scale (None without stateful rules)
    hi: Any
    warm: Any  # the warmup factor


def _combine(xp: Any, cfg: Any, t: Any, log_stateless: Any, log_schedule: Any, log_scale: Any) -> _Combined:
    """The lr from the rules' outputs: the one formula :func:`update` and :func:`diagnostics` share (so they agree bit for bit).

    ``log_stateless``: the sum of the clock and factor rules' log-factors;
    ``log_schedule``: of the schedule rules' (None: none active);
    ``log_scale``: the accumulated log-scale before its clamp (None: no stateful rule).
    """
    warm = warmup_factor(xp, cfg.warmup_steps, t)
    # log(1) == 0 exactly, so the identity config stays bit exact.
    log_stateless = log_stateless + xp.log(xp.clip(warm, TINY, 1.0))

    log_lo = cfg.log_of("min_lr") - cfg.log_of("base_lr")
    log_hi = cfg.log_of("max_lr") - cfg.log_of("base_lr")
    log_stateless = xp.clip(log_stateless, log_lo - 1.0, log_hi + 1.0)  # finite, bounded
    lo = hi = None
    if log_scale is not None:
        lo, hi = log_lo - log_stateless, log_hi - log_stateless
        log_scale = xp.clip(log_scale, lo, hi)
        log_factor = log_scale + log_stateless
    else:
        log_factor = log_stateless
    lr = adaptive = xp.clip(cfg.base_lr * xp.exp(log_factor), cfg.min_lr, cfg.max_lr)
    if log_schedule is not None:  # after the clamp, outside the anti-windup
        lr = xp.clip(lr * xp.exp(xp.clip(log_schedule, log_lo - log_hi - 1.0, 0.0)), cfg.min_lr, cfg.max_lr)
    return _Combined(lr, adaptive, log_scale, lo, hi, warm)


def _restart(xp: Any, e: EmaState, restart: Any) -> EmaState:
    """Where ``restart``, forget the smoothing (the first-ever reference ``ref`` is kept)."""
    return EmaState(
        mean=xp.where(restart, 0.0, e.mean),
        var=xp.where(restart, 0.0, e.var),
        decay_pow=xp.where(restart, 1.0, e.decay_pow),
        ref=e.ref,
    )


def set_slots(state: State, family: str, **values: Any) -> State:
    """``state`` with slots of ``family``'s active rule set to ``values`` (pure; e.g. "start the cooldown now").

    Front doors use it to act on a rule from outside its signals: the torch
    adapter's :meth:`~adaptive_sched.AdaptiveScheduler.set_slots`, or a JAX
    loop on ``opt_state.controller``. Each value is cast to the slot's dtype
    in the state's namespace (and device).

    Args:
      state: the state.
      family: the family whose active rule owns the slots (``"anneal"``, ...).
      **values: ``slot=value``.

    Raises:
      ValueError: the family has no active rule, or it has no such slot.
    """
    name = getattr(state.config, f"{family}_rule", "none")
    if name == "none":
        raise ValueError(f"set_slots: {family}_rule is 'none' in this config; no rule owns slots there")
    rule = _rules.lookup(family, name)
    known = {s.name: s for s in rule.slots}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"set_slots: rule {rule.key} has no slot(s) {unknown}; its slots are {sorted(known)}")
    xp = namespace_of(state.step)
    cast = _caster(xp, state.step)
    slots = dict(state.rule_state)
    for slot_name, value in values.items():
        s = known[slot_name]
        slots[slot_key(rule, s)] = cast(value, xp.int32 if s.dtype == "int32" else xp.float32)
    return state._replace(rule_state=slots)


# --------------------------------------------------------------------------- diagnostics


def diagnostics(state: State, xp: Any = None) -> dict[str, Any]:
    """What the controller decided at its last update and why: a flat ``{name: value}`` mapping, from the state alone.

    Pure and jit-safe (no Python branch on a value; the names depend on the
    config's rules only), derived from the rule registry: computed only when
    asked, never by :func:`update`. Names:

    * ``"step"``, ``"skipped"``: the update count and the signals dropped as NaN/inf;
    * ``"lr"``, ``"momentum"``, ``"lr_scale"``: the hparams of the last update
      (bit-equal to what :func:`update` returned);
    * ``"<family>.<rule>/factor"`` for each active lr rule: its factor on the
      lr. Stateless rules (clock, factor): their factor at the last update;
      stateful (increment) rules: their accumulated factor, each under the
      anti-windup clamp of the total (:func:`adaptive_sched._rules.record_slots`;
      in family order, the last one's is the rest); schedule rules (the
      cooldown): what they multiplied the adaptive lr by, the ``min_lr`` floor
      included;
    * ``"warmup/factor"`` (1 when ``warmup_steps`` is 0) and
      ``"bounds/factor"``: what the warmup and the lr bounds (the adaptive
      clamp) multiplied, so that ``lr = base_lr * warmup/factor * bounds/factor
      * prod(<rule>/factor)`` (to float32 rounding);
    * ``"<family>.<rule>/momentum"`` for the momentum rule: the momentum it set;
    * ``"<family>.<rule>/<statistic>"``: each rule's statistics
      (:attr:`~adaptive_sched._rules.Rule.explain`: the smoothed signal, the
      slope test's ``tstat`` and ``threshold``, the KL ``error``, ...);
    * ``"<family>.<rule>/event"`` and ``"<family>.<rule>/event_step"`` for a
      rule with events: the code of its last event (0: none yet; the name is
      ``Rule.events[code - 1]``, see :func:`format_diagnostics`) and the step it
      happened at.

    Before the first update every factor is 1 and ``lr`` is ``base_lr``. A
    factor beyond ``e^±80`` (a rule asking for far more than the bounds allow,
    e.g. on a hostile signal) is reported as ``e^±80``, so every value is finite.

    Args:
      state: the controller's State (any namespace: Python numbers, NumPy, JAX, torch).
      xp: the namespace (default: read off the state).

    Returns:
      ``{name: scalar}`` in a fixed order: float32 values, int32 for the
      counters, event codes and event steps.
    """
    config = state.config
    if xp is None:
        xp = namespace_of(state.step)
    cfg = knobs32(xp, config, state.log_scale)
    rule_set = _rules.structure(config.active)
    rules = rule_set.rules
    cast = _caster(xp, state.step)
    f32 = xp.float32
    t = xp.astype(state.step, f32)
    done = state.step > 0
    uses = rule_set.uses
    views = {name: _held(xp, getattr(state, name)) for name in SIGNAL_NAMES if uses[name]}
    slots = state.rule_state

    def context(rule: _rules.Rule) -> RuleContext:
        own = {s.name: slots[slot_key(rule, s)] for s in rule.slots}
        return RuleContext(cfg, t, own, {name: views.get(name) for name in rule.reads})

    def view(rule: _rules.Rule) -> Obs | None:
        return views.get(rule.signal) if rule.signal else None

    def rerun(rule: _rules.Rule) -> Any:
        """A stateless rule's log-factor at the last update, recomputed from the state (its inputs)."""
        out = rule.fn(xp, view(rule), knobs_of(rule, cfg), context(rule))
        if rule.slots:
            out = out[0]
        return out[0] if rule.kind == "clock" else out

    logs: dict[str, Any] = {}  # rule key -> its log-factor on the lr
    log_stateless: Any = 0.0
    for rule in rules:  # in update()'s order, so the sums round alike
        if rule.kind == "clock":
            logs[rule.key] = rerun(rule)
            log_stateless = log_stateless + logs[rule.key]
    log_schedule: Any = None
    for rule in rules:
        if rule.kind == "factor":
            logs[rule.key] = rerun(rule)
            log_stateless = log_stateless + logs[rule.key]
        elif rule.kind == "schedule":
            logs[rule.key] = rerun(rule)
            log_schedule = logs[rule.key] if log_schedule is None else log_schedule + logs[rule.key]
    stateful = [r for r in rules if r.kind == "increment"]
    comb = _combine(xp, cfg, t, log_stateless, log_schedule, state.log_scale if stateful else None)
    if stateful:
        rest = state.log_scale
        for rule in stateful[:-1]:
            logs[rule.key] = slots[f"{rule.key}/log_factor"]
            rest = rest - logs[rule.key]
        logs[stateful[-1].key] = rest
    log_warm = xp.log(xp.clip(comb.warm, TINY, 1.0))
    log_bounds = xp.log(comb.adaptive_lr) - cfg.log_of("base_lr") - log_warm
    for rule in rules:
        if rule.key in logs and rule.kind != "schedule":
            log_bounds = log_bounds - logs[rule.key]
    schedules = [r for r in rules if r.kind == "schedule"]
    if schedules:  # the lr each multiplied, the final clip (the min_lr floor) included; the last gets the rest
        rest = xp.log(comb.lr) - xp.log(comb.adaptive_lr)
        for rule in schedules[:-1]:
            rest = rest - logs[rule.key]
        logs[schedules[-1].key] = rest

    def factor(log: Any) -> Any:  # finite in float32 whatever a rule asked for (its log is clipped to +-80)
        return cast(xp.exp(xp.clip(xp.where(done, log, 0.0), -_LOG_REPORT, _LOG_REPORT)), f32)

    lr = xp.where(done, comb.lr, cfg.base_lr)
    out: dict[str, Any] = {
        "step": state.step,
        "skipped": state.skipped,
        "lr": cast(lr, f32),
        "momentum": state.current_momentum,
        "lr_scale": cast(lr / cfg.base_lr, f32),
    }
    out["warmup/factor"] = factor(log_warm)
    out["bounds/factor"] = factor(log_bounds)
    for rule in rules:
        key = rule.key
        if rule.kind == "momentum":
            out[f"{key}/momentum"] = state.current_momentum
        else:
            out[f"{key}/factor"] = factor(logs[key])
        if rule.explain is not None:
            for name, value in rule.explain(xp, view(rule), knobs_of(rule, cfg), context(rule)).items():
                out[f"{key}/{name}"] = cast(value, f32)
        if rule.events:
            out[f"{key}/event"] = slots[f"{key}/event"]
            out[f"{key}/event_step"] = slots[f"{key}/event_step"]
    return out


def format_diagnostics(state: State | Config, diag: Any = None) -> str:
    """:func:`diagnostics` as text: why the lr is what it is.

    The first line writes the lr as the product of its factors; then one line
    per active rule with its last event and its statistics. For people
    (a ``print``, a ``repr``); loggers take the mapping itself.

    Args:
      state: the controller's State, or the Config of a front door's
        diagnostics (``format_diagnostics(sched.config, sched.diagnostics())``).
      diag: the diagnostics to show (any namespace); default
        ``diagnostics(state)`` (required when ``state`` is a Config).

    Raises:
      TypeError: ``state`` is neither, or a Config without ``diag``.
    """
    if isinstance(state, State):
        config = state.config
        diag = diagnostics(state) if diag is None else diag
    elif isinstance(state, Config) and diag is not None:
        config = state
    else:
        raise TypeError(
            "format_diagnostics(state, diag=None) takes a State, or a Config with the diagnostics mapping "
            f"to show; got {type(state).__name__}" + (" without diag" if isinstance(state, Config) else "")
        )

    v: dict[str, float] = {}
    for k, x in diag.items():
        arr = host_array(x)
        v[k] = float(arr) if arr is not None and arr.size == 1 else math.nan

    def num(x: float) -> str:
        return f"{x:.3g}"

    parts = [f"base_lr {num(float(config.base_lr))}"]
    for name in ("warmup/factor", "bounds/factor"):
        if name in v and abs(v[name] - 1.0) > 1e-5:  # shown where they act (not float32 rounding)
            parts.append(f"{name.split('/')[0]} {num(v[name])}")
    rules = _rules.active_rules(config)
    parts += [f"{r.key} {num(v[f'{r.key}/factor'])}" for r in rules if f"{r.key}/factor" in v]
    head = f"step {int(v['step'])}: lr {num(v['lr'])} = " + " × ".join(parts)
    if any(r.kind == "momentum" for r in rules):
        head += f"; momentum {num(v['momentum'])}"
    if v.get("skipped", 0.0) > 0:
        head += f"; {int(v['skipped'])} signal(s) skipped (NaN/inf)"
    lines = [head]
    for r in rules:
        bits = []
        if r.events:
            event = _rules.event_name(r, v[f"{r.key}/event"])
            bits.append(f"{event} at step {int(v[f'{r.key}/event_step'])}" if event else "no event yet")
        prefix = f"{r.key}/"
        stats = [
            f"{k[len(prefix):]} {num(x)}"
            for k, x in v.items()
            if k.startswith(prefix) and k[len(prefix):] not in ("factor", "event", "event_step")
        ]
        if stats:
            bits.append(", ".join(stats))
        if bits:
            lines.append(f"  {r.key}: " + "; ".join(bits))
    return "\n".join(lines)
